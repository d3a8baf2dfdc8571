//! TLS for probe connections, with libpq's `sslmode` semantics.
//!
//! tokio-postgres knows only `sslmode=disable|prefer|require` and rejects libpq's
//! `verify-ca`, `verify-full` and the certificate keys, so [`split_dsn`] takes them out of
//! the DSN (key=value or URL form) before tokio-postgres parses the rest, and
//! [`connector`] turns them into a rustls client configuration (ring provider, built once
//! per probe task and used for both the connection and its cancel requests).
//!
//! | `sslmode` | transport | certificate check |
//! | --- | --- | --- |
//! | `disable` | plain TCP | — |
//! | `allow`, `prefer` (default) | TLS if the server offers it, else plain | none |
//! | `require` | TLS or fail | none; with `sslrootcert`, as `verify-ca` (as libpq) |
//! | `verify-ca` | TLS or fail | chain up to `sslrootcert` (else the system roots); name not checked |
//! | `verify-full` | TLS or fail | chain, and the DSN's host (name or IP) must be in the certificate |
//!
//! `sslrootcert` is a PEM file of trusted CA certificates, or `system` for the system
//! store. `sslcert` + `sslkey` (PEM files, both or neither) present a client certificate.
//! libpq's default files under `~/.postgresql/` are not read: name them explicitly.
//! `allow` is treated as `prefer` (tokio-postgres cannot try plain first).

use std::error::Error as StdError;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{verify_server_cert_signed_by_trust_anchor, WebPkiServerVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::ParsedCertificate;
use rustls::{CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio_postgres_rustls::MakeRustlsConnect;

/// libpq's `sslmode` values (`allow` reads as `Prefer`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SslMode {
    Disable,
    #[default]
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl SslMode {
    fn parse(value: &str) -> Result<SslMode, String> {
        Ok(match value {
            "disable" => SslMode::Disable,
            "allow" | "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            other => {
                return Err(format!(
                    "invalid sslmode {other:?} (disable, allow, prefer, require, verify-ca, verify-full)"
                ))
            }
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
    pub fn negotiation(self) -> tokio_postgres::config::SslMode {
        match self {
            SslMode::Disable => tokio_postgres::config::SslMode::Disable,
            SslMode::Prefer => tokio_postgres::config::SslMode::Prefer,
            _ => tokio_postgres::config::SslMode::Require,
        }
    }
}

/// The TLS settings taken out of a DSN.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TlsOptions {
    pub mode: SslMode,
    /// `sslrootcert`: PEM file of trusted CAs, or `system`.
    pub root_cert: Option<String>,
    /// `sslcert`: PEM client certificate chain.
    pub cert: Option<String>,
    /// `sslkey`: PEM private key of `cert`.
    pub key: Option<String>,
}

/// What the server's certificate is checked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verify {
    Nothing,
    Chain,
    ChainAndName,
}

impl TlsOptions {
    /// libpq: `require` verifies the chain once a root certificate is named.
    pub fn verify(&self) -> Verify {
        match self.mode {
            SslMode::Disable | SslMode::Prefer => Verify::Nothing,
            SslMode::Require if self.root_cert.is_none() => Verify::Nothing,
            SslMode::Require | SslMode::VerifyCa => Verify::Chain,
            SslMode::VerifyFull => Verify::ChainAndName,
        }
    }

    fn set(&mut self, key: &str, value: String) -> Result<(), String> {
        match key {
            "sslmode" => self.mode = SslMode::parse(&value)?,
            "sslrootcert" => self.root_cert = Some(value),
            "sslcert" => self.cert = Some(value),
            "sslkey" => self.key = Some(value),
            _ => unreachable!("only TLS keys are taken"),
        }
        Ok(())
    }
}

const TLS_KEYS: [&str; 4] = ["sslmode", "sslrootcert", "sslcert", "sslkey"];

/// Splits `dsn` into the DSN tokio-postgres should parse (the TLS keys removed, all else
/// kept verbatim) and the TLS settings. Errors never quote a value other than `sslmode`'s.
pub fn split_dsn(dsn: &str) -> Result<(String, TlsOptions), String> {
    let trimmed = dsn.trim_start();
    if trimmed.starts_with("postgres://") || trimmed.starts_with("postgresql://") {
        split_url(dsn)
    } else {
        split_key_value(dsn)
    }
}

fn split_key_value(dsn: &str) -> Result<(String, TlsOptions), String> {
    let mut opts = TlsOptions::default();
    let mut kept: Vec<&str> = Vec::new();
    let mut rest = dsn.trim_start();
    while !rest.is_empty() {
        let Some(pair_len) = pair_len(rest) else {
            kept.push(rest); // malformed: tokio-postgres reports it
            break;
        };
        let pair = &rest[..pair_len];
        let (key, value) = pair.split_once('=').expect("a pair has '='");
        let key = key.trim_end();
        if TLS_KEYS.contains(&key) {
            opts.set(key, unescape(value.trim_start()))?;
        } else {
            kept.push(pair);
        }
        rest = rest[pair_len..].trim_start();
    }
    Ok((kept.join(" "), opts))
}

/// Length of the `key = value` pair at the start of `s`, or None if it is malformed.
fn pair_len(s: &str) -> Option<usize> {
    let key_len = s.find(|c: char| c == '=' || c.is_whitespace())?;
    let after_key = &s[key_len..];
    let eq = after_key.len() - after_key.trim_start().len();
    let after_eq = after_key[eq..].strip_prefix('=')?;
    let ws = after_eq.len() - after_eq.trim_start().len();
    let value = &after_eq[ws..];
    let value_len = value_len(value)?;
    Some(s.len() - value.len() + value_len)
}

/// Length of a libpq value: `'quoted \' text'` or up to whitespace, `\` escaping.
fn value_len(s: &str) -> Option<usize> {
    let quoted = s.starts_with('\'');
    let mut chars = s.char_indices().skip(usize::from(quoted));
    while let Some((i, c)) = chars.next() {
        match c {
            '\\' => {
                chars.next();
            }
            '\'' if quoted => return Some(i + 1),
            c if !quoted && c.is_whitespace() => return (i > 0).then_some(i),
            _ => {}
        }
    }
    (!quoted && !s.is_empty()).then_some(s.len())
}

/// The value of a libpq `value` token: quotes removed, `\x` → `x`.
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

fn split_url(dsn: &str) -> Result<(String, TlsOptions), String> {
    let mut opts = TlsOptions::default();
    // Like tokio-postgres: credentials run to the first '@'; the query starts after them.
    let scheme_end = dsn.find("://").map_or(0, |i| i + 3);
    let from = dsn[scheme_end..].find('@').map_or(scheme_end, |i| scheme_end + i + 1);
    let Some(q) = dsn[from..].find('?').map(|i| from + i) else {
        return Ok((dsn.to_string(), opts));
    };
    let mut kept = Vec::new();
    for param in dsn[q + 1..].split('&') {
        match param.split_once('=') {
            Some((key, value)) if TLS_KEYS.contains(&percent_decode(key)?.as_str()) => {
                opts.set(&percent_decode(key)?, percent_decode(value)?)?;
            }
            _ => kept.push(param),
        }
    }
    let base = &dsn[..q];
    let rest = if kept.is_empty() { base.to_string() } else { format!("{base}?{}", kept.join("&")) };
    Ok((rest, opts))
}

/// `%XX` decoding of a URL query component (the value is not quoted in errors).
fn percent_decode(s: &str) -> Result<String, String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s.get(i + 1..i + 3).and_then(|h| u8::from_str_radix(h, 16).ok());
            let byte = hex.ok_or("dsn: invalid percent-encoding in a TLS parameter")?;
            out.push(byte);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| "dsn: TLS parameter is not UTF-8".to_string())
}

/// A probe task's transport, prepared once: the DSN for tokio-postgres, the TLS
/// settings and the connector (cheap to clone; shared by connects and cancel requests).
#[derive(Clone)]
pub struct ProbeTls {
    /// The DSN without its TLS keys.
    pub dsn: String,
    pub options: TlsOptions,
    pub connector: MakeRustlsConnect,
}

impl ProbeTls {
    pub fn from_dsn(dsn: &str) -> Result<ProbeTls, String> {
        let (dsn, options) = split_dsn(dsn).map_err(|e| format!("dsn: {e}"))?;
        let connector = connector(&options)?;
        Ok(ProbeTls { dsn, options, connector })
    }
}

/// The rustls connector for `opts` (ring provider, no process-global default needed).
/// Reads `sslrootcert`/`sslcert`/`sslkey` (or the system roots) now; errors name files,
/// never their contents.
pub fn connector(opts: &TlsOptions) -> Result<MakeRustlsConnect, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier: Arc<dyn ServerCertVerifier> = match opts.verify() {
        Verify::Nothing => Arc::new(Unverified { provider: provider.clone() }),
        Verify::Chain => {
            Arc::new(ChainOnly { roots: Arc::new(roots(opts.root_cert.as_deref())?), provider: provider.clone() })
        }
        Verify::ChainAndName => {
            let roots = Arc::new(roots(opts.root_cert.as_deref())?);
            WebPkiServerVerifier::builder_with_provider(roots, provider.clone())
                .build()
                .map_err(|e| format!("TLS: {e}"))?
        }
    };
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    let config = match (&opts.cert, &opts.key) {
        (None, None) => builder.with_no_client_auth(),
        (Some(cert), Some(key)) if opts.mode != SslMode::Disable => {
            let chain = CertificateDer::pem_file_iter(cert)
                .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
                .map_err(|e| format!("sslcert {cert}: {e}"))?;
            let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| format!("sslkey {key}: {e}"))?;
            builder.with_client_auth_cert(chain, key_der).map_err(|e| format!("sslcert/sslkey: {e}"))?
        }
        (Some(_), Some(_)) => builder.with_no_client_auth(),
        _ => return Err("sslcert and sslkey must be given together".into()),
    };
    Ok(MakeRustlsConnect::new(config))
}

/// Trusted CAs: the PEM file `path`, or the system store when absent or `system`.
fn roots(path: Option<&str>) -> Result<RootCertStore, String> {
    let mut store = RootCertStore::empty();
    match path {
        Some(path) if path != "system" => {
            let certs = CertificateDer::pem_file_iter(path)
                .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
                .map_err(|e| format!("sslrootcert {path}: {e}"))?;
            for cert in certs {
                store.add(cert).map_err(|e| format!("sslrootcert {path}: {e}"))?;
            }
            if store.is_empty() {
                return Err(format!("sslrootcert {path}: no certificates in the file"));
            }
        }
        _ => {
            let found = rustls_native_certs::load_native_certs();
            store.add_parsable_certificates(found.certs);
            if store.is_empty() {
                return Err("no system root certificates found; set sslrootcert".into());
            }
        }
    }
    Ok(store)
}

/// `prefer`/`require` without a root: accept any certificate (libpq does not check it);
/// the handshake signatures are still verified.
#[derive(Debug)]
struct Unverified {
    provider: Arc<CryptoProvider>,
}

/// `verify-ca`: the chain must lead to a trusted root; the name is not checked.
#[derive(Debug)]
struct ChainOnly {
    roots: Arc<RootCertStore>,
    provider: Arc<CryptoProvider>,
}

/// The handshake-signature half of a verifier, by `self.provider`'s algorithms.
macro_rules! signatures_via_provider {
    () => {
        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            let algs = &self.provider.signature_verification_algorithms;
            verify_tls12_signature(message, cert, dss, algs)
        }

        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            let algs = &self.provider.signature_verification_algorithms;
            verify_tls13_signature(message, cert, dss, algs)
        }

        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            self.provider.signature_verification_algorithms.supported_schemes()
        }
    };
}

impl ServerCertVerifier for Unverified {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    signatures_via_provider!();
}

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let cert = ParsedCertificate::try_from(end_entity)?;
        let algs = self.provider.signature_verification_algorithms.all;
        verify_server_cert_signed_by_trust_anchor(&cert, &self.roots, intermediates, now, algs)?;
        Ok(ServerCertVerified::assertion())
    }

    signatures_via_provider!();
}

/// A clear message for a TLS failure of a connect to `host` under `opts`, if `error`
/// (tokio-postgres's, or anything in its source chain) is one; None otherwise.
pub fn explain(error: &(dyn StdError + 'static), opts: &TlsOptions, host: &str) -> Option<String> {
    let mut current = Some(error);
    while let Some(e) = current {
        let rustls_error = e.downcast_ref::<rustls::Error>().or_else(|| {
            e.downcast_ref::<std::io::Error>()
                .and_then(|io| io.get_ref())
                .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        });
        if let Some(r) = rustls_error {
            return Some(rustls_message(r, opts, host));
        }
        // tokio-postgres's own text when the server answers the SSLRequest with 'N'.
        if e.to_string() == "server does not support TLS" {
            let mode = opts.mode.name();
            return Some(format!("TLS: server does not support TLS, sslmode={mode}"));
        }
        current = e.source();
    }
    None
}

fn rustls_message(error: &rustls::Error, opts: &TlsOptions, host: &str) -> String {
    let roots = || match opts.root_cert.as_deref() {
        Some(path) if path != "system" => format!("sslrootcert {path}"),
        _ => "the system roots".to_string(),
    };
    match error {
        rustls::Error::InvalidCertificate(
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
        ) => format!("TLS: certificate not valid for name {host}"),
        rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer) => {
            format!("TLS: certificate not signed by a CA in {}", roots())
        }
        rustls::Error::InvalidCertificate(e) => format!("TLS: invalid certificate: {e}"),
        other => format!("TLS: {other}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(mode: SslMode, root: Option<&str>) -> TlsOptions {
        TlsOptions { mode, root_cert: root.map(str::to_string), ..TlsOptions::default() }
    }

    #[test]
    fn takes_tls_keys_out_of_key_value_dsns() {
        use SslMode::*;
        let cases = [
            ("host=h user=u", "host=h user=u", opts(Prefer, None)),
            ("", "", opts(Prefer, None)),
            ("host=h sslmode=require", "host=h", opts(Require, None)),
            ("sslmode=verify-full host=h", "host=h", opts(VerifyFull, None)),
            (
                "host=h sslmode = verify-ca  sslrootcert='/a b/c\\'s.pem' user=u",
                "host=h user=u",
                opts(VerifyCa, Some("/a b/c's.pem")),
            ),
            ("sslrootcert=/x\\ y.pem", "", opts(Prefer, Some("/x y.pem"))),
            ("sslmode=disable sslmode=allow", "", opts(Prefer, None)),
            (
                "password='p w' sslmode=require application_name='sslmode=disable'",
                "password='p w' application_name='sslmode=disable'",
                opts(Require, None),
            ),
            ("host=h bogus", "host=h bogus", opts(Prefer, None)),
        ];
        for (dsn, rest, want) in cases {
            assert_eq!(split_dsn(dsn), Ok((rest.to_string(), want)), "{dsn:?}");
        }
        let (rest, o) = split_dsn("host=h sslcert=/c.pem sslkey='/k.pem'").unwrap();
        assert_eq!(rest, "host=h");
        assert_eq!((o.cert.as_deref(), o.key.as_deref()), (Some("/c.pem"), Some("/k.pem")));
    }

    #[test]
    fn takes_tls_keys_out_of_url_query_parameters() {
        use SslMode::*;
        let cases = [
            ("postgres://u:pw@h/db", "postgres://u:pw@h/db", opts(Prefer, None)),
            (
                "postgres://u:pw@h/db?sslmode=verify-full&sslrootcert=%2Fetc%2Fca%20x.pem",
                "postgres://u:pw@h/db",
                opts(VerifyFull, Some("/etc/ca x.pem")),
            ),
            (
                "postgresql://h:5432/db?application_name=a&sslmode=require&connect_timeout=2",
                "postgresql://h:5432/db?application_name=a&connect_timeout=2",
                opts(Require, None),
            ),
            ("postgres://u:p?w@h/db?sslmode=disable", "postgres://u:p?w@h/db", opts(Disable, None)),
            ("postgres://h?sslmode=verify-ca", "postgres://h", opts(VerifyCa, None)),
        ];
        for (dsn, rest, want) in cases {
            assert_eq!(split_dsn(dsn), Ok((rest.to_string(), want)), "{dsn:?}");
        }
    }

    #[test]
    fn rejects_bad_values_without_leaking_other_values() {
        let err = split_dsn("password=hunter2 sslmode=verify").unwrap_err();
        assert!(err.contains("\"verify\"") && !err.contains("hunter2"), "{err}");
        let err = split_dsn("postgres://u:hunter2@h?sslrootcert=%zz").unwrap_err();
        assert!(err.contains("percent") && !err.contains("hunter2"), "{err}");
        assert!(split_dsn("postgres://h?sslmode=full").is_err());
    }

    #[test]
    fn redaction_still_hides_passwords_next_to_tls_keys() {
        use crate::probe::secret::redact_dsn;
        let cases = [
            (
                "host=h password='p w' sslmode=verify-full sslrootcert='/ca.pem'",
                "host=h password=*** sslmode=verify-full sslrootcert='/ca.pem'",
            ),
            (
                "postgres://u:pw@h/db?sslmode=require&password=pw2&sslrootcert=%2Fca",
                "postgres://u:***@h/db?sslmode=require&password=***&sslrootcert=%2Fca",
            ),
        ];
        for (dsn, want) in cases {
            assert_eq!(redact_dsn(dsn), want);
            let (rest, _) = split_dsn(dsn).unwrap();
            assert!(!redact_dsn(&rest).contains("pw"), "{rest}");
        }
    }

    #[test]
    fn require_verifies_the_chain_only_with_a_root_cert() {
        use SslMode::*;
        let cases = [
            (opts(Disable, Some("/ca")), Verify::Nothing),
            (opts(Prefer, Some("/ca")), Verify::Nothing),
            (opts(Require, None), Verify::Nothing),
            (opts(Require, Some("/ca")), Verify::Chain),
            (opts(VerifyCa, None), Verify::Chain),
            (opts(VerifyFull, Some("/ca")), Verify::ChainAndName),
        ];
        for (o, want) in cases {
            assert_eq!(o.verify(), want, "{o:?}");
        }
        assert_eq!(VerifyCa.negotiation(), tokio_postgres::config::SslMode::Require);
        assert_eq!(Prefer.negotiation(), tokio_postgres::config::SslMode::Prefer);
    }

    #[test]
    fn connector_errors_name_the_file() {
        let err = connector(&opts(SslMode::VerifyFull, Some("/nonexistent/ca.pem"))).err().unwrap();
        assert!(err.contains("sslrootcert /nonexistent/ca.pem"), "{err}");
        let mut half = opts(SslMode::Require, None);
        half.cert = Some("/c.pem".into());
        assert!(connector(&half).err().unwrap().contains("together"));
        assert!(connector(&opts(SslMode::Require, None)).is_ok());
    }

    #[test]
    fn explains_certificate_failures() {
        let o = opts(SslMode::VerifyFull, Some("/ca.pem"));
        let name = rustls::Error::InvalidCertificate(CertificateError::NotValidForName);
        let io = std::io::Error::new(std::io::ErrorKind::InvalidData, name);
        assert_eq!(explain(&io, &o, "127.0.0.9").as_deref(), Some("TLS: certificate not valid for name 127.0.0.9"));
        let issuer = rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer);
        assert_eq!(
            explain(&issuer, &o, "h").as_deref(),
            Some("TLS: certificate not signed by a CA in sslrootcert /ca.pem")
        );
        let refused = std::io::Error::other("server does not support TLS");
        assert_eq!(
            explain(&refused, &o, "h").as_deref(),
            Some("TLS: server does not support TLS, sslmode=verify-full")
        );
        let other = std::io::Error::other("connection refused");
        assert_eq!(explain(&other, &o, "h"), None);
    }
}
