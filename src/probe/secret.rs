//! Secrets: a password wrapper whose `Debug`/`Display` print `***`, and where a node's
//! password comes from (`password_file`, else `PGPASSWORD`, else the DSN).

use std::fmt;
use std::io;

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

/// The password for `node`: the contents of `password_file` (one trailing newline
/// trimmed), else `PGPASSWORD`, else `None` (the DSN may carry its own).
///
/// Read at every connect, so a rotated file is picked up on the next reconnect. The
/// error names the file, never its contents.
pub fn password_for(node: &NodeConfig) -> Result<Option<Secret>, io::Error> {
    password_from(node.password_file.as_deref(), std::env::var("PGPASSWORD").ok())
}

fn password_from(file: Option<&std::path::Path>, env: Option<String>) -> Result<Option<Secret>, io::Error> {
    let Some(path) = file else {
        return Ok(env.map(Secret));
    };
    let text = std::fs::read_to_string(path)
        .map_err(|e| io::Error::new(e.kind(), format!("password_file {}: {e}", path.display())))?;
    let text = text.strip_suffix('\n').unwrap_or(&text);
    let text = text.strip_suffix('\r').unwrap_or(text);
    Ok(Some(Secret(text.to_string())))
}

/// `dsn` with every password value replaced by `***`: `password=...` in key=value form
/// (bare or single-quoted, with `\` escapes) and `user:pw@` in URL form, plus a
/// `password=` query parameter of a URL.
pub fn redact_dsn(dsn: &str) -> String {
    let trimmed = dsn.trim_start();
    if trimmed.starts_with("postgres://") || trimmed.starts_with("postgresql://") {
        redact_url(dsn)
    } else {
        redact_key_value(dsn)
    }
}

fn redact_url(dsn: &str) -> String {
    let scheme_end = dsn.find("://").map_or(0, |i| i + 3);
    let (head, rest) = dsn.split_at(scheme_end);
    // The authority ends at the first '/', '?' or '#'; user info ends at its last '@'.
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let authority = match authority.rfind('@') {
        Some(at) => match authority[..at].find(':') {
            Some(colon) => format!("{}:***{}", &authority[..colon], &authority[at..]),
            None => authority.to_string(),
        },
        None => authority.to_string(),
    };
    format!("{head}{authority}{}", redact_query_password(tail))
}

fn redact_query_password(tail: &str) -> String {
    let Some(q) = tail.find('?') else {
        return tail.to_string();
    };
    let (path, query) = tail.split_at(q + 1);
    let params: Vec<String> = query
        .split('&')
        .map(|p| match p.split_once('=') {
            Some((k, _)) if k.eq_ignore_ascii_case("password") => format!("{k}=***"),
            _ => p.to_string(),
        })
        .collect();
    format!("{path}{}", params.join("&"))
}

fn redact_key_value(dsn: &str) -> String {
    let mut out = String::with_capacity(dsn.len());
    let mut rest = dsn;
    while !rest.is_empty() {
        // Copy whitespace, then one `key = value` pair.
        let ws = rest.len() - rest.trim_start().len();
        out.push_str(&rest[..ws]);
        rest = &rest[ws..];
        let key_len = rest.find(|c: char| c == '=' || c.is_whitespace()).unwrap_or(rest.len());
        let key = &rest[..key_len];
        out.push_str(key);
        rest = &rest[key_len..];
        let eq_ws = rest.len() - rest.trim_start().len();
        if !rest[eq_ws..].starts_with('=') {
            continue; // malformed; keep going so nothing after it leaks unparsed
        }
        let after_eq = &rest[eq_ws + 1..];
        let val_ws = after_eq.len() - after_eq.trim_start().len();
        out.push_str(&rest[..eq_ws + 1 + val_ws]);
        rest = &after_eq[val_ws..];
        let value_len = value_len(rest);
        if key == "password" {
            out.push_str("***");
        } else {
            out.push_str(&rest[..value_len]);
        }
        rest = &rest[value_len..];
    }
    out
}

/// Length of a libpq value at the start of `s`: quoted (`'a b\'c'`) or up to whitespace.
fn value_len(s: &str) -> usize {
    let mut chars = s.char_indices();
    if s.starts_with('\'') {
        chars.next();
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => {
                    chars.next();
                }
                '\'' => return i + 1,
                _ => {}
            }
        }
        return s.len();
    }
    while let Some((i, c)) = chars.next() {
        match c {
            '\\' => {
                chars.next();
            }
            c if c.is_whitespace() => return i,
            _ => {}
        }
    }
    s.len()
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
    fn redacts_key_value_passwords() {
        let cases = [
            ("host=h password=pw user=u", "host=h password=*** user=u"),
            ("password=pw", "password=***"),
            ("host=h password = pw", "host=h password = ***"),
            ("host=h password='a b\\' c' user=u", "host=h password=*** user=u"),
            ("password='unterminated and more", "password=***"),
            ("password=p\\ w user=u", "password=*** user=u"),
            ("host=h user=u dbname=postgres", "host=h user=u dbname=postgres"),
            ("application_name=password user=password", "application_name=password user=password"),
            ("host=h  password=x password=y", "host=h  password=*** password=***"),
            ("", ""),
        ];
        for (dsn, want) in cases {
            assert_eq!(redact_dsn(dsn), want, "{dsn:?}");
        }
    }

    #[test]
    fn redacts_url_passwords() {
        let cases = [
            ("postgres://u:pw@h:5432/db", "postgres://u:***@h:5432/db"),
            ("postgresql://u:p%40w@h/db?sslmode=disable", "postgresql://u:***@h/db?sslmode=disable"),
            ("postgres://u:p@ss@h", "postgres://u:***@h"),
            ("postgres://u@h/db", "postgres://u@h/db"),
            ("postgres://h/db?user=u&password=pw&x=1", "postgres://h/db?user=u&password=***&x=1"),
            ("postgres://h", "postgres://h"),
        ];
        for (dsn, want) in cases {
            assert_eq!(redact_dsn(dsn), want, "{dsn:?}");
        }
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
        let path = std::path::Path::new("/nonexistent/lagdns/pw");
        let err = password_from(Some(path), Some("envpw".into())).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
        assert!(err.to_string().contains("/nonexistent/lagdns/pw"), "{err}");
    }
}
