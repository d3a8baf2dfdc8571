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

/// A place in a config file that an error can blame: file, line and key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Site {
    pub file: String,
    pub line: usize,
    pub key: String,
}

impl Site {
    pub fn error(&self, message: impl Into<String>) -> ConfigError {
        let Site { file, line, key } = self.clone();
        ConfigError::Invalid { file, line, key, message: message.into() }
    }
}
