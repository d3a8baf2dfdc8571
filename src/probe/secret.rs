//! Secrets: a password wrapper whose `Debug`/`Display` print `***`, and where a node's
//! password comes from, in libpq's order (SPEC §12): a password in the DSN, else the
//! node's `password_file`, else `PGPASSWORD` ([`password_source`] decides, [`password_for`]
//! reads).
//!
//! As in libpq, an empty password in the DSN or `PGPASSWORD` counts as none, and a
//! password that is given is used even when the server rejects it (no next source is
//! tried). libpq ranks `PGPASSWORD` above its `~/.pgpass`; `password_file` ranks above
//! `PGPASSWORD` because it is the node's own, explicit setting, while the environment
//! applies to every node.
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

/// Where a node's password comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PasswordSource<'a> {
    /// The DSN's own `password` (key=value or URL): nothing to apply over it.
    Dsn,
    /// The node's `password_file`, read at connect.
    File(&'a Path),
    /// `PGPASSWORD`.
    Env,
    /// No password anywhere (trust or certificate authentication).
    Absent,
}

/// The source of the password, in libpq's order: the DSN's password (`dsn`), else the
/// `password_file`, else `PGPASSWORD` (`env`, as read from the environment). Empty
/// values count as none; a `password_file` is used whatever it holds.
pub fn password_source<'a>(dsn: Option<&[u8]>, file: Option<&'a Path>, env: Option<&str>) -> PasswordSource<'a> {
    let given = |value: Option<&[u8]>| value.is_some_and(|v| !v.is_empty());
    if given(dsn) {
        PasswordSource::Dsn
    } else if let Some(path) = file {
        PasswordSource::File(path)
    } else if given(env.map(str::as_bytes)) {
        PasswordSource::Env
    } else {
        PasswordSource::Absent
    }
}

/// The password to set over the DSN's for `node`: None when the DSN's own password
/// stands (or there is none), else the contents of `password_file` (one trailing newline
/// trimmed) or `PGPASSWORD`, per [`password_source`].
///
/// Read at every connect, so a rotated file is picked up on the next reconnect.
pub fn password_for(node: &NodeConfig) -> Result<Option<Secret>, PasswordFileError> {
    let env = std::env::var("PGPASSWORD").ok();
    let dsn = node.dsn.connection().get_password();
    match password_source(dsn, node.password_file.as_deref(), env.as_deref()) {
        PasswordSource::Dsn | PasswordSource::Absent => Ok(None),
        PasswordSource::File(path) => read_password_file(path).map(Some),
        PasswordSource::Env => Ok(env.map(Secret)),
    }
}

fn read_password_file(path: &Path) -> Result<Secret, PasswordFileError> {
    let text = std::fs::read_to_string(path).map_err(|source| PasswordFileError { path: path.into(), source })?;
    let text = text.strip_suffix('\n').unwrap_or(&text);
    let text = text.strip_suffix('\r').unwrap_or(text);
    Ok(Secret(text.to_string()))
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

    /// libpq's order, row by row: DSN, then `password_file`, then `PGPASSWORD`.
    #[test]
    fn the_dsn_password_comes_first_then_the_file_then_the_environment() {
        use PasswordSource::*;
        let file = Path::new("/run/secrets/pg");
        let cases = [
            (Some("dsn"), Some(file), Some("env"), Dsn),
            (Some("dsn"), None, Some("env"), Dsn),
            (Some("dsn"), Some(file), None, Dsn),
            (Some("dsn"), None, None, Dsn),
            (None, Some(file), Some("env"), File(file)),
            (None, Some(file), None, File(file)),
            (None, None, Some("env"), Env),
            (None, None, None, Absent),
            // empty counts as none (libpq)
            (Some(""), Some(file), Some("env"), File(file)),
            (Some(""), None, Some(""), Absent),
        ];
        for (dsn, f, env, want) in cases {
            assert_eq!(password_source(dsn.map(str::as_bytes), f, env), want, "dsn {dsn:?}, file {f:?}, env {env:?}");
        }
    }

    #[test]
    fn password_file_is_trimmed() {
        let dir = std::env::temp_dir().join(format!("lagdns-secret-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("pw");
        std::fs::write(&file, "s3cret\n").unwrap();
        assert_eq!(read_password_file(&file).unwrap().expose(), "s3cret");
        std::fs::write(&file, "two\nlines\r\n").unwrap();
        assert_eq!(read_password_file(&file).unwrap().expose(), "two\nlines");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn missing_file_error_names_the_file() {
        let path = Path::new("/nonexistent/lagdns/pw");
        let err = read_password_file(path).unwrap_err();
        assert_eq!(err.source.kind(), io::ErrorKind::NotFound);
        assert!(err.to_string().contains("/nonexistent/lagdns/pw"), "{err}");
    }
}
