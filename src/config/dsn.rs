//! A node's `dsn`, parsed once when the config is validated: what tokio-postgres connects
//! with, plus the TLS settings libpq reads from the same string.
//!
//! tokio-postgres 0.7 knows only `sslmode=disable|prefer|require` and rejects libpq's
//! `verify-ca`, `verify-full` and the certificate keys. So the one lexer here takes the
//! four TLS keys (`sslmode`, `sslrootcert`, `sslcert`, `sslkey`) out of the DSN — in
//! key=value form (quoting and `\` escapes) or from a `postgres://`/`postgresql://` URL's
//! query (percent-decoded) — and tokio-postgres parses the rest, once, here.
//!
//! The TLS keys are checked together as libpq does (`effective_mode`): `verify-ca` and
//! `verify-full` need `sslrootcert` (without it the DSN is an error, never a silent
//! fallback to other roots), and `sslrootcert=system` (the operating system's roots)
//! implies `verify-full`. libpq 16 makes `verify-full` the default with
//! `sslrootcert=system` and refuses a weaker `sslmode` next to it; lagdns raises a weaker
//! one (even `disable`) to `verify-full` instead: naming the system's roots asks for the
//! check libpq would make, a probe never checks less than that, and `check` prints the
//! effective `sslmode=verify-full`.
//!
//! `template` is `node_dsn` (SPEC §11): the DSN of a member Patroni lists, with `{host}`
//! and `{port}` filled in, then parsed here like any other.
//!
//! Pure: no file is opened here (`config::files` opens the named files when a config is
//! loaded; the probe reads them when it connects). `Display` is the redacted form for
//! logs and `check` (`password=***`); no error quotes the DSN's text.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use tokio_postgres::config::{Host, SslMode as Negotiation};

use crate::telemetry::error_chain;

mod template;
pub use template::{DsnTemplate, DsnTemplateError, DEFAULT_NODE_DSN};

/// A parsed DSN. Built by [`str::parse`]; see the module docs.
///
/// Equality is on the text as written: tokio-postgres's `Config` has no `PartialEq`, and
/// a rendering of it could miss a setting (or the password, which `Display` hides). Two
/// equal texts parse alike; an edit that changes only spacing compares unequal, which
/// costs one reconnect of that node's probe on reload and is never wrong.
#[derive(Clone)]
pub struct Dsn {
    /// The DSN as written, for `PartialEq` only: it may hold a password, so it is never
    /// formatted.
    text: String,
    /// Everything but the TLS keys; its `ssl_mode` is `tls.mode.negotiation()`.
    connection: tokio_postgres::Config,
    tls: TlsOptions,
}

/// libpq's `sslmode` values (`allow` reads as `Prefer`: tokio-postgres cannot try plain
/// TCP first).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SslMode {
    Disable,
    #[default]
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

/// The TLS settings of a DSN. From a parsed DSN, `mode` is the effective one (see
/// `effective_mode`): a verify mode always has a `root_cert`, and `sslrootcert=system`
/// always has `verify-full`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TlsOptions {
    pub mode: SslMode,
    /// `sslrootcert`.
    pub root_cert: Option<RootCert>,
    /// `sslcert` + `sslkey` (both or neither).
    pub client_cert: Option<ClientCert>,
}

/// `sslrootcert`: a PEM file of trusted CA certificates, or `system` for the operating
/// system's store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RootCert {
    File(PathBuf),
    System,
}

/// A client certificate: `sslcert` (PEM chain) and `sslkey` (its PEM private key).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientCert {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Why a DSN does not parse. The text never quotes the DSN (it may hold a password),
/// only byte offsets, key names and a word-like `sslmode` value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DsnError {
    #[error("expected {expected} at byte {at}")]
    Syntax { expected: &'static str, at: usize },
    #[error("unterminated quoted value from byte {at}")]
    Unterminated { at: usize },
    #[error("invalid percent-encoding in {key}")]
    PercentEncoding { key: &'static str },
    #[error("{key} is not UTF-8")]
    NotUtf8 { key: &'static str },
    #[error("invalid sslmode{} (disable, allow, prefer, require, verify-ca, verify-full)", quoted_word(.0))]
    SslMode(String),
    #[error("{key} must not be empty")]
    Empty { key: &'static str },
    #[error(
        "sslmode={} needs sslrootcert (a PEM file of CA certificates, or `system` for the operating system's roots)",
        .0.name()
    )]
    NoRootCert(SslMode),
    #[error("{given} without {missing} (give both or neither)")]
    HalfClientCert { given: &'static str, missing: &'static str },
    /// What tokio-postgres says about the rest (unknown key, bad port...): key names only.
    #[error("{0}")]
    Postgres(String),
}

/// ` "value"` for an `sslmode` that looks like a mode word, else nothing: a value that
/// swallowed the next pair (`sslmode= password=x`) is not repeated.
fn quoted_word(value: &str) -> String {
    if value.len() <= 16 && value.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
        format!(" {value:?}")
    } else {
        String::new()
    }
}

const TLS_KEYS: [&str; 4] = ["sslmode", "sslrootcert", "sslcert", "sslkey"];

impl SslMode {
    fn parse(value: &str) -> Result<SslMode, DsnError> {
        Ok(match value {
            "disable" => SslMode::Disable,
            "allow" | "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            other => return Err(DsnError::SslMode(other.to_string())),
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }

    /// The mode tokio-postgres negotiates with: the verify modes insist on TLS.
    pub fn negotiation(self) -> Negotiation {
        match self {
            SslMode::Disable => Negotiation::Disable,
            SslMode::Prefer => Negotiation::Prefer,
            _ => Negotiation::Require,
        }
    }
}

impl TlsOptions {
    /// The files these settings name, with the DSN key naming each (`sslrootcert=system`
    /// names none).
    pub fn files(&self) -> Vec<(&'static str, &Path)> {
        let root = match &self.root_cert {
            Some(RootCert::File(path)) => Some(("sslrootcert", path.as_path())),
            Some(RootCert::System) | None => None,
        };
        let client = self.client_cert.iter().flat_map(|c| [("sslcert", c.cert.as_path()), ("sslkey", c.key.as_path())]);
        root.into_iter().chain(client).collect()
    }
}

impl fmt::Display for RootCert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RootCert::File(path) => write!(f, "{}", path.display()),
            RootCert::System => f.write_str("system"),
        }
    }
}

impl Dsn {
    /// The connection settings for tokio-postgres, the DSN's own password included (the
    /// probe uses `password_file`, then `PGPASSWORD`, only when the DSN has none).
    pub fn connection(&self) -> &tokio_postgres::Config {
        &self.connection
    }

    pub fn tls(&self) -> &TlsOptions {
        &self.tls
    }

    /// The TCP hosts the DSN names (`host=`), in order; unix socket directories left out.
    pub fn tcp_hosts(&self) -> Vec<&str> {
        let hosts = self.connection.get_hosts().iter();
        hosts
            .filter_map(|h| match h {
                Host::Tcp(name) => Some(name.as_str()),
                Host::Unix(_) => None,
            })
            .collect()
    }
}

impl FromStr for Dsn {
    type Err = DsnError;

    fn from_str(text: &str) -> Result<Dsn, DsnError> {
        let (rest, keys) = split(text)?;
        let tls = keys.options()?;
        let mut connection: tokio_postgres::Config = rest.parse().map_err(|e| DsnError::Postgres(error_chain(&e)))?; // names keys, never values
        connection.ssl_mode(tls.mode.negotiation());
        Ok(Dsn { text: text.to_string(), connection, tls })
    }
}

impl PartialEq for Dsn {
    fn eq(&self, other: &Dsn) -> bool {
        self.text == other.text
    }
}

impl Eq for Dsn {}

/// The redacted DSN in key=value form: the settings that say where and as whom the
/// probe connects, `password=***` if the DSN has a password, and the TLS settings
/// (`sslmode` unless it is the default, `prefer`).
impl fmt::Display for Dsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = &self.connection;
        let join = |items: Vec<String>| (!items.is_empty()).then(|| items.join(","));
        let hosts = c
            .get_hosts()
            .iter()
            .map(|h| match h {
                Host::Tcp(name) => name.clone(),
                Host::Unix(path) => path.display().to_string(),
            })
            .collect();
        let pairs = [
            ("host", join(hosts)),
            ("hostaddr", join(c.get_hostaddrs().iter().map(|a| a.to_string()).collect())),
            ("port", join(c.get_ports().iter().map(|p| p.to_string()).collect())),
            ("user", c.get_user().map(str::to_string)),
            ("password", c.get_password().map(|_| "***".to_string())),
            ("dbname", c.get_dbname().map(str::to_string)),
            ("options", c.get_options().map(str::to_string)),
            ("application_name", c.get_application_name().map(str::to_string)),
            ("connect_timeout", c.get_connect_timeout().map(|t| t.as_secs().to_string())),
            ("sslmode", (self.tls.mode != SslMode::default()).then(|| self.tls.mode.name().to_string())),
            ("sslrootcert", self.tls.root_cert.as_ref().map(|r| r.to_string())),
            ("sslcert", self.tls.client_cert.as_ref().map(|c| c.cert.display().to_string())),
            ("sslkey", self.tls.client_cert.as_ref().map(|c| c.key.display().to_string())),
        ];
        let mut first = true;
        for (key, value) in pairs {
            let Some(value) = value else { continue };
            let sep = if first { "" } else { " " };
            first = false;
            write!(f, "{sep}{key}={}", Quoted(&value))?;
        }
        Ok(())
    }
}

impl fmt::Debug for Dsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Dsn").field(&format_args!("{self}")).finish()
    }
}

/// A libpq value, quoted when it has to be (empty, whitespace, `'` or `\`).
struct Quoted<'a>(&'a str);

impl fmt::Display for Quoted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let v = self.0;
        if !v.is_empty() && !v.contains(|c: char| c.is_whitespace() || c == '\'' || c == '\\') {
            return f.write_str(v);
        }
        f.write_str("'")?;
        for c in v.chars() {
            if c == '\'' || c == '\\' {
                f.write_str("\\")?;
            }
            write!(f, "{c}")?;
        }
        f.write_str("'")
    }
}

/// The TLS keys as found (last one wins, as in libpq), before they are checked together.
#[derive(Default)]
struct TlsKeys {
    mode: Option<String>,
    root_cert: Option<String>,
    cert: Option<String>,
    key: Option<String>,
}

impl TlsKeys {
    fn set(&mut self, key: &str, value: String) {
        let slot = match key {
            "sslmode" => &mut self.mode,
            "sslrootcert" => &mut self.root_cert,
            "sslcert" => &mut self.cert,
            "sslkey" => &mut self.key,
            _ => unreachable!("only TLS keys are taken"),
        };
        *slot = Some(value);
    }

    fn options(self) -> Result<TlsOptions, DsnError> {
        let given = self.mode.as_deref().map(SslMode::parse).transpose()?.unwrap_or_default();
        let path = |value: String, key: &'static str| {
            if value.is_empty() {
                Err(DsnError::Empty { key })
            } else {
                Ok(PathBuf::from(value))
            }
        };
        let root_cert = match self.root_cert {
            Some(v) if v == "system" => Some(RootCert::System),
            Some(v) => Some(RootCert::File(path(v, "sslrootcert")?)),
            None => None,
        };
        let mode = effective_mode(given, root_cert.as_ref())?;
        let client_cert = match (self.cert, self.key) {
            (Some(cert), Some(key)) => Some(ClientCert { cert: path(cert, "sslcert")?, key: path(key, "sslkey")? }),
            (None, None) => None,
            (Some(_), None) => return Err(DsnError::HalfClientCert { given: "sslcert", missing: "sslkey" }),
            (None, Some(_)) => return Err(DsnError::HalfClientCert { given: "sslkey", missing: "sslcert" }),
        };
        Ok(TlsOptions { mode, root_cert, client_cert })
    }
}

/// The `sslmode` a DSN that gives `mode` (or the default, `prefer`) and `root_cert` is
/// probed with, as libpq: `sslrootcert=system` means `verify-full` (libpq 16's default
/// with it; a weaker mode, which libpq 16 refuses, is raised to it), and the verify modes
/// need a `sslrootcert`.
fn effective_mode(mode: SslMode, root_cert: Option<&RootCert>) -> Result<SslMode, DsnError> {
    match (mode, root_cert) {
        (_, Some(RootCert::System)) => Ok(SslMode::VerifyFull),
        (SslMode::VerifyCa | SslMode::VerifyFull, None) => Err(DsnError::NoRootCert(mode)),
        (mode, _) => Ok(mode),
    }
}

/// Splits `dsn` into the DSN tokio-postgres should parse (the TLS keys removed, all else
/// kept verbatim) and the TLS keys' values.
fn split(dsn: &str) -> Result<(String, TlsKeys), DsnError> {
    let trimmed = dsn.trim_start();
    if trimmed.starts_with("postgres://") || trimmed.starts_with("postgresql://") {
        split_url(trimmed)
    } else {
        split_key_value(dsn)
    }
}

fn split_key_value(dsn: &str) -> Result<(String, TlsKeys), DsnError> {
    let mut keys = TlsKeys::default();
    let mut kept: Vec<&str> = Vec::new();
    let mut rest = dsn.trim_start();
    while !rest.is_empty() {
        let at = dsn.len() - rest.len();
        let (key, value, len) = pair(rest, at)?;
        if let Some(tls_key) = TLS_KEYS.iter().find(|k| **k == key) {
            keys.set(tls_key, unescape(value));
        } else {
            kept.push(&rest[..len]);
        }
        rest = rest[len..].trim_start();
    }
    Ok((kept.join(" "), keys))
}

/// The `key = value` pair at the start of `s` (which is at byte `at` of the DSN): the
/// key, the value as written (quotes and escapes still in) and the pair's length.
fn pair(s: &str, at: usize) -> Result<(&str, &str, usize), DsnError> {
    let key_len = s.find(|c: char| c == '=' || c.is_whitespace()).unwrap_or(s.len());
    if key_len == 0 {
        return Err(DsnError::Syntax { expected: "a key", at });
    }
    let after_key = s[key_len..].trim_start();
    let eq_at = s.len() - after_key.len();
    let Some(after_eq) = after_key.strip_prefix('=') else {
        return Err(DsnError::Syntax { expected: "`=`", at: at + eq_at });
    };
    let value = after_eq.trim_start();
    let value_at = s.len() - value.len();
    let value_len = value_len(value).map_err(|()| match value.starts_with('\'') {
        true => DsnError::Unterminated { at: at + value_at },
        false => DsnError::Syntax { expected: "a value", at: at + value_at },
    })?;
    Ok((&s[..key_len], &value[..value_len], value_at + value_len))
}

/// Length of the libpq value at the start of `s`: `'quoted \' text'`, or up to
/// whitespace; `\` escapes the next character in both.
fn value_len(s: &str) -> Result<usize, ()> {
    let quoted = s.starts_with('\'');
    let mut chars = s.char_indices().skip(usize::from(quoted));
    while let Some((i, c)) = chars.next() {
        match c {
            '\\' => {
                chars.next();
            }
            '\'' if quoted => return Ok(i + 1),
            c if !quoted && c.is_whitespace() => return if i > 0 { Ok(i) } else { Err(()) },
            _ => {}
        }
    }
    if quoted || s.is_empty() {
        Err(())
    } else {
        Ok(s.len())
    }
}

/// The value of a libpq value token: quotes removed, `\x` → `x`.
fn unescape(raw: &str) -> String {
    let inner = raw.strip_prefix('\'').and_then(|r| r.strip_suffix('\'')).unwrap_or(raw);
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.extend(chars.next()),
            c => out.push(c),
        }
    }
    out
}

fn split_url(dsn: &str) -> Result<(String, TlsKeys), DsnError> {
    let mut keys = TlsKeys::default();
    // As tokio-postgres reads it: credentials run to the first '@'; the query starts
    // at the first '?' after them.
    let scheme_end = dsn.find("://").map_or(0, |i| i + 3);
    let from = dsn[scheme_end..].find('@').map_or(scheme_end, |i| scheme_end + i + 1);
    let Some(q) = dsn[from..].find('?').map(|i| from + i) else {
        return Ok((dsn.to_string(), keys));
    };
    let mut kept = Vec::new();
    for param in dsn[q + 1..].split('&') {
        // A parameter without `=`, or whose key does not decode, is not a TLS key:
        // tokio-postgres reports it.
        let tls = param.split_once('=').and_then(|(key, value)| {
            let key = percent_decode(key).ok()?;
            TLS_KEYS.iter().find(|k| **k == key).map(|k| (*k, value))
        });
        match tls {
            Some((key, value)) => keys.set(key, percent_decode(value).map_err(|e| e.at(key))?),
            None => kept.push(param),
        }
    }
    let base = &dsn[..q];
    let rest = if kept.is_empty() { base.to_string() } else { format!("{base}?{}", kept.join("&")) };
    Ok((rest, keys))
}

/// How `%XX` decoding failed; [`Self::at`] names the key.
enum Decode {
    Percent,
    Utf8,
}

impl Decode {
    fn at(self, key: &'static str) -> DsnError {
        match self {
            Decode::Percent => DsnError::PercentEncoding { key },
            Decode::Utf8 => DsnError::NotUtf8 { key },
        }
    }
}

/// `%XX` decoding of a URL query component.
fn percent_decode(s: &str) -> Result<String, Decode> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s.get(i + 1..i + 3).and_then(|h| u8::from_str_radix(h, 16).ok());
            out.push(hex.ok_or(Decode::Percent)?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| Decode::Utf8)
}

#[cfg(test)]
mod tests;
