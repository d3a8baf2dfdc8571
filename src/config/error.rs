//! Config errors: every one names the file, and where it can, the line and the key.

use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{file}: cannot read: {source}")]
    Io { file: String, source: std::io::Error },
    /// `file:line: key: message`.
    #[error("{file}:{line}: {key}: {message}")]
    Invalid { file: String, line: usize, key: String, message: String },
}

impl ConfigError {
    pub fn io(path: &Path, source: std::io::Error) -> ConfigError {
        ConfigError::Io { file: path.display().to_string(), source }
    }
}
