//! Secrets: a password wrapper whose `Debug`/`Display` print `***`, and where a node's
//! password comes from (`password_file`, else `PGPASSWORD`, else the DSN).
//!
//! A DSN's redacted form (for logs and `check`) is `config::Dsn`'s `Display`.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use crate::config::NodeConfig;

/// A password. It is only ever revealed by [`Secret::expose`]; formatting prints `***`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The password itself, for handing to the database driver and nothing else.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// A `password_file` that could not be read; names the file, never its contents.
#[derive(Debug, thiserror::Error)]
#[error("password_file {}: {source}", path.display())]
pub struct PasswordFileError {
    pub path: PathBuf,
    pub source: io::Error,
}

/// The password for `node`: the contents of `password_file` (one trailing newline
/// trimmed), else `PGPASSWORD`, else `None` (the DSN may carry its own).
///
/// Read at every connect, so a rotated file is picked up on the next reconnect.
pub fn password_for(node: &NodeConfig) -> Result<Option<Secret>, PasswordFileError> {
    password_from(node.password_file.as_deref(), std::env::var("PGPASSWORD").ok())
}

fn password_from(file: Option<&Path>, env: Option<String>) -> Result<Option<Secret>, PasswordFileError> {
    let Some(path) = file else {
        return Ok(env.map(Secret));
    };
    let text = std::fs::read_to_string(path).map_err(|source| PasswordFileError { path: path.into(), source })?;
    let text = text.strip_suffix('\n').unwrap_or(&text);
    let text = text.strip_suffix('\r').unwrap_or(text);
    Ok(Some(Secret(text.to_string())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_never_formats_its_value() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s}"), "***");
        assert_eq!(format!("{s:?}"), "***");
        assert_eq!(format!("{:?}", Some(s.clone())), "Some(***)");
        assert_eq!(s.expose(), "hunter2");
    }

    #[test]
    fn password_file_wins_and_is_trimmed() {
        let dir = std::env::temp_dir().join(format!("lagdns-secret-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("pw");
        std::fs::write(&file, "s3cret\n").unwrap();
        let got = password_from(Some(&file), Some("env".into())).unwrap();
        assert_eq!(got.unwrap().expose(), "s3cret");
        std::fs::write(&file, "two\nlines\r\n").unwrap();
        assert_eq!(password_from(Some(&file), None).unwrap().unwrap().expose(), "two\nlines");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn falls_back_to_env_then_none() {
        assert_eq!(password_from(None, Some("e".into())).unwrap().unwrap().expose(), "e");
        assert!(password_from(None, None).unwrap().is_none());
    }

    #[test]
    fn missing_file_error_names_the_file() {
        let path = Path::new("/nonexistent/lagdns/pw");
        let err = password_from(Some(path), Some("envpw".into())).unwrap_err();
        assert_eq!(err.source.kind(), io::ErrorKind::NotFound);
        assert!(err.to_string().contains("/nonexistent/lagdns/pw"), "{err}");
    }
}
