//! `node_dsn` (SPEC §11): a DSN with `{host}` and `{port}` placeholders, filled in for
//! each member Patroni lists and parsed like any node's `dsn`. It lives beside the DSN
//! parser, not in `patroni`, because the config checks a template once, when it is
//! loaded (so `lagdns check` names a bad one), and the config is below `patroni`.
//!
//! A member's host comes from the network (Patroni's REST API), so it is only ever
//! substituted when it is a plain IP address or host name: a host such as
//! `10.0.0.1 sslmode=disable` would otherwise rewrite the DSN's other settings.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use super::{Dsn, DsnError};

/// `node_dsn` when the config names none.
pub const DEFAULT_NODE_DSN: &str = "host={host} port={port} user=lagdns dbname=postgres";

const HOST: &str = "{host}";
const PORT: &str = "{port}";

/// A checked `node_dsn`: it has `{host}` as the DSN's host and parses once filled in.
/// Built by [`str::parse`]; [`DsnTemplate::render`] fills it in for one member.
#[derive(Clone, PartialEq, Eq)]
pub struct DsnTemplate {
    /// As written; it may hold a password, so it is never formatted.
    text: String,
    /// `postgres://` or `postgresql://` form: an IPv6 host goes in brackets.
    url: bool,
}

/// Why a `node_dsn` is refused, or why a member's host cannot be filled into it. The text
/// never quotes the template (it may hold a password).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DsnTemplateError {
    #[error("has no {{host}}: every member would be probed at the same host")]
    NoHost,
    #[error("{{host}} must be the DSN's host (`host={{host}}`, or the host of a postgres:// URL)")]
    HostNotUsed,
    #[error("member host {0:?} is not an IP address or a host name")]
    Host(String),
    #[error("{0}")]
    Dsn(#[from] DsnError),
}

impl FromStr for DsnTemplate {
    type Err = DsnTemplateError;

    /// Checks the template by filling it in with a sample member (`127.0.0.1`, port
    /// 5432): it must then parse, and its host must be the sample's.
    fn from_str(text: &str) -> Result<DsnTemplate, DsnTemplateError> {
        if !text.contains(HOST) {
            return Err(DsnTemplateError::NoHost);
        }
        let trimmed = text.trim_start();
        let url = trimmed.starts_with("postgres://") || trimmed.starts_with("postgresql://");
        let template = DsnTemplate { text: text.to_string(), url };
        let sample = template.render("127.0.0.1", 5432)?;
        if sample.tcp_hosts() != ["127.0.0.1"] {
            return Err(DsnTemplateError::HostNotUsed);
        }
        Ok(template)
    }
}

impl Default for DsnTemplate {
    fn default() -> Self {
        DEFAULT_NODE_DSN.parse().expect("the default node_dsn is valid")
    }
}

impl DsnTemplate {
    /// The DSN for a member at `host` and `port`: `{host}` and `{port}` replaced, then
    /// parsed. `host` must be an IP address or a host name (letters, digits, `-`, `_`,
    /// dots).
    pub fn render(&self, host: &str, port: u16) -> Result<Dsn, DsnTemplateError> {
        let ip = host.parse::<IpAddr>().ok();
        if ip.is_none() && !is_host_name(host) {
            return Err(DsnTemplateError::Host(host.to_string()));
        }
        let host = match ip {
            Some(IpAddr::V6(v6)) if self.url => format!("[{v6}]"),
            _ => host.to_string(),
        };
        let text = self.text.replace(HOST, &host).replace(PORT, &port.to_string());
        Ok(text.parse()?)
    }
}

/// Letters, digits, `-` and `_` in dot-separated labels of at most 63 that neither start
/// nor end with `-`, 253 in all; one trailing dot allowed.
fn is_host_name(host: &str) -> bool {
    let host = host.strip_suffix('.').unwrap_or(host);
    !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

/// Stand-ins the redacted rendering fills in, then shows as the placeholders again.
const SHOWN_HOST: &str = "lagdns-node-dsn-host";
const SHOWN_PORT: u16 = 65535;

/// The template as a filled-in DSN shows (key=value, `password=***`), with the
/// placeholders where they were: for logs and `check`.
impl fmt::Display for DsnTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Ok(dsn) = self.render(SHOWN_HOST, SHOWN_PORT) else {
            return f.write_str("(invalid node_dsn)");
        };
        let mut shown = dsn.to_string().replacen(&format!("host={SHOWN_HOST}"), "host={host}", 1);
        if self.text.contains(PORT) {
            shown = shown.replacen(&format!("port={SHOWN_PORT}"), "port={port}", 1);
        }
        f.write_str(&shown)
    }
}

impl fmt::Debug for DsnTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("DsnTemplate").field(&format_args!("{self}")).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(template: &str, host: &str, port: u16) -> Result<String, DsnTemplateError> {
        let t: DsnTemplate = template.parse()?;
        Ok(t.render(host, port)?.to_string())
    }

    #[test]
    fn fills_in_host_and_port() {
        let cases = [
            (DEFAULT_NODE_DSN, "10.0.0.11", 5432, "host=10.0.0.11 port=5432 user=lagdns dbname=postgres"),
            (DEFAULT_NODE_DSN, "pg-1.db.internal", 6432, "host=pg-1.db.internal port=6432 user=lagdns dbname=postgres"),
            (DEFAULT_NODE_DSN, "::1", 5432, "host=::1 port=5432 user=lagdns dbname=postgres"),
            ("host={host} user=lagdns", "10.0.0.11", 5433, "host=10.0.0.11 user=lagdns"),
            (
                "host={host} port={port} user=lagdns password=s3cret sslmode=require",
                "10.0.0.11",
                5432,
                "host=10.0.0.11 port=5432 user=lagdns password=*** sslmode=require",
            ),
            (
                "postgres://lagdns@{host}:{port}/postgres",
                "10.0.0.11",
                5432,
                "host=10.0.0.11 port=5432 user=lagdns dbname=postgres",
            ),
            (
                "postgresql://lagdns@{host}:{port}/postgres",
                "fd00::11",
                5432,
                "host=fd00::11 port=5432 user=lagdns dbname=postgres",
            ),
        ];
        for (template, host, port, want) in cases {
            assert_eq!(render(template, host, port).as_deref(), Ok(want), "{template} with {host}:{port}");
        }
    }

    #[test]
    fn refuses_templates_that_do_not_place_the_member() {
        use DsnTemplateError::*;
        let cases = [
            ("host=10.0.0.1 port={port}", NoHost),
            ("", NoHost),
            ("host=10.0.0.1 application_name={host}", HostNotUsed),
            ("host={host},10.0.0.2 port={port}", HostNotUsed),
            ("host={host} sslmode=bogus", Dsn(DsnError::SslMode("bogus".into()))),
            (
                "host={host} port=notaport",
                Dsn(DsnError::Postgres("invalid connection string: invalid value for option `port`".into())),
            ),
        ];
        for (template, want) in cases {
            assert_eq!(template.parse::<DsnTemplate>().err(), Some(want), "{template:?}");
        }
    }

    #[test]
    fn only_plain_hosts_are_filled_in() {
        let t = DsnTemplate::default();
        for bad in ["", "10.0.0.1 sslmode=disable", "h'x", "a..b", "-", "host=x", "a/b", &"x".repeat(64)] {
            assert_eq!(t.render(bad, 5432).err(), Some(DsnTemplateError::Host(bad.to_string())), "{bad:?}");
        }
        for good in ["10.0.0.1", "::1", "fe80::1", "pg1", "pg_1.example.com", "pg1.example.com."] {
            assert!(t.render(good, 5432).is_ok(), "{good:?}");
        }
    }

    #[test]
    fn shows_the_template_redacted() {
        let t: DsnTemplate = "host={host} port={port} user=lagdns password=s3cret".parse().unwrap();
        assert_eq!(t.to_string(), "host={host} port={port} user=lagdns password=***");
        assert_eq!(format!("{t:?}"), "DsnTemplate(host={host} port={port} user=lagdns password=***)");
        assert_eq!(DsnTemplate::default().to_string(), DEFAULT_NODE_DSN);
        let t: DsnTemplate = "postgres://lagdns@{host}:5433/postgres".parse().unwrap();
        assert_eq!(t.to_string(), "host={host} port=5433 user=lagdns dbname=postgres");
    }
}
