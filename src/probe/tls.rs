//! TLS for probe connections, with libpq's `sslmode` semantics.
//!
//! The DSN's TLS settings are parsed with it, in `config::dsn` ([`TlsOptions`]);
//! [`connector`] turns them into a rustls client configuration (ring provider, built once
//! per probe task, when it starts, and used for both the connection and its cancel
//! requests), and [`explain`] turns a failed handshake into a clear message.
//!
//! | `sslmode` | transport | certificate check ([`verify`]) |
//! | --- | --- | --- |
//! | `disable` | plain TCP | — |
//! | `allow`, `prefer` (default) | TLS if the server offers it, else plain | none |
//! | `require` | TLS or fail | none; with `sslrootcert`, as `verify-ca` (as libpq) |
//! | `verify-ca` | TLS or fail | chain up to `sslrootcert`; name not checked |
//! | `verify-full` | TLS or fail | chain up to `sslrootcert`, and the DSN's host (name or IP) must be in the certificate |
//!
//! `sslrootcert` is a PEM file of trusted CA certificates, or `system` for the operating
//! system's store (rustls-native-certs). `verify-ca`/`verify-full` without `sslrootcert`
//! is a config error (`config::dsn`), never a silent fallback to the system roots; should
//! such options reach [`verify`] anyway, it refuses them. `sslrootcert=system` implies
//! `verify-full`: libpq 16 makes it the default there and refuses a weaker `sslmode`;
//! lagdns raises a weaker one (even `disable`) to `verify-full` instead, when the DSN is
//! parsed, so the options seen here already say `verify-full`. `sslcert` + `sslkey` (PEM
//! files, both or neither) present a client certificate. libpq's default files under
//! `~/.postgresql/` are not read: name them explicitly. `allow` is treated as `prefer`
//! (tokio-postgres cannot try plain first).
//!
//! The connector is built here, in the probe task, rather than at config validation: it
//! reads the certificate files (IO, which validation does not do beyond checking that
//! they open), and a probe that starts again after a reload picks up renewed files.

use std::error::Error as StdError;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{verify_server_cert_signed_by_trust_anchor, WebPkiServerVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::ParsedCertificate;
use rustls::{CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::config::{ClientCert, RootCert, SslMode, TlsOptions};

/// What the server's certificate is checked for, and against which trusted roots.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verify<'a> {
    Nothing,
    Chain(&'a RootCert),
    ChainAndName(&'a RootCert),
}

/// What `opts` checks (the module's table); libpq: `require` verifies the chain once a
/// root certificate is named. A verify mode without `sslrootcert` is refused, never
/// checked against roots the DSN did not name.
pub fn verify(opts: &TlsOptions) -> Result<Verify<'_>, TlsError> {
    match (opts.mode, opts.root_cert.as_ref()) {
        (SslMode::Disable | SslMode::Prefer, _) | (SslMode::Require, None) => Ok(Verify::Nothing),
        (SslMode::Require | SslMode::VerifyCa, Some(roots)) => Ok(Verify::Chain(roots)),
        (SslMode::VerifyFull, Some(roots)) => Ok(Verify::ChainAndName(roots)),
        (mode @ (SslMode::VerifyCa | SslMode::VerifyFull), None) => Err(TlsError::NoRootCert(mode)),
    }
}

/// Why the connector could not be built. Names files, never their contents.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("sslmode={} needs sslrootcert", .0.name())]
    NoRootCert(SslMode),
    #[error("sslrootcert {}: {source}", path.display())]
    ReadRoots { path: PathBuf, source: pem::Error },
    #[error("sslrootcert {}: {source}", path.display())]
    BadRoot { path: PathBuf, source: rustls::Error },
    #[error("sslrootcert {}: no certificates in the file", path.display())]
    NoRoots { path: PathBuf },
    #[error("sslrootcert=system: no root certificates in the operating system's store")]
    NoSystemRoots,
    #[error("sslcert {}: {source}", path.display())]
    ReadCert { path: PathBuf, source: pem::Error },
    #[error("sslkey {}: {source}", path.display())]
    ReadKey { path: PathBuf, source: pem::Error },
    #[error("sslcert/sslkey: {0}")]
    ClientAuth(rustls::Error),
    #[error("TLS: {0}")]
    Verifier(rustls::client::VerifierBuilderError),
    #[error("TLS: {0}")]
    Setup(rustls::Error),
}

/// A failed TLS negotiation, explained; `Display` is the probe's connect failure text.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum HandshakeError {
    #[error("TLS: certificate not valid for name {host}")]
    NotValidForName { host: String },
    #[error("TLS: certificate not signed by a CA in {}", roots_name(.roots))]
    UnknownIssuer { roots: RootCert },
    #[error("TLS: invalid certificate: {0}")]
    InvalidCertificate(CertificateError),
    #[error("TLS: {0}")]
    Other(rustls::Error),
    #[error("TLS: server does not support TLS, sslmode={}", .0.name())]
    NotOffered(SslMode),
}

/// How the trusted roots are named in messages.
fn roots_name(roots: &RootCert) -> String {
    match roots {
        RootCert::File(path) => format!("sslrootcert {}", path.display()),
        RootCert::System => "the system roots".to_string(),
    }
}

/// The rustls connector for `opts` (ring provider, no process-global default needed).
/// Reads `sslrootcert`/`sslcert`/`sslkey` (or the system roots) now.
pub fn connector(opts: &TlsOptions) -> Result<MakeRustlsConnect, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier: Arc<dyn ServerCertVerifier> = match verify(opts)? {
        Verify::Nothing => Arc::new(Unverified { provider: provider.clone() }),
        Verify::Chain(root_cert) => {
            Arc::new(ChainOnly { roots: Arc::new(roots(root_cert)?), provider: provider.clone() })
        }
        Verify::ChainAndName(root_cert) => {
            let roots = Arc::new(roots(root_cert)?);
            WebPkiServerVerifier::builder_with_provider(roots, provider.clone()).build().map_err(TlsError::Verifier)?
        }
    };
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(TlsError::Setup)?
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    let config = match &opts.client_cert {
        Some(ClientCert { cert, key }) if opts.mode != SslMode::Disable => {
            let chain = CertificateDer::pem_file_iter(cert)
                .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
                .map_err(|source| TlsError::ReadCert { path: cert.clone(), source })?;
            let key_der =
                PrivateKeyDer::from_pem_file(key).map_err(|source| TlsError::ReadKey { path: key.clone(), source })?;
            builder.with_client_auth_cert(chain, key_der).map_err(TlsError::ClientAuth)?
        }
        _ => builder.with_no_client_auth(),
    };
    Ok(MakeRustlsConnect::new(config))
}

/// Trusted CAs: the PEM file named, or the operating system's store for `system`.
fn roots(root_cert: &RootCert) -> Result<RootCertStore, TlsError> {
    let mut store = RootCertStore::empty();
    match root_cert {
        RootCert::File(path) => {
            let path: &Path = path;
            let certs = CertificateDer::pem_file_iter(path)
                .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
                .map_err(|source| TlsError::ReadRoots { path: path.into(), source })?;
            for cert in certs {
                store.add(cert).map_err(|source| TlsError::BadRoot { path: path.into(), source })?;
            }
            if store.is_empty() {
                return Err(TlsError::NoRoots { path: path.into() });
            }
        }
        RootCert::System => {
            let found = rustls_native_certs::load_native_certs();
            store.add_parsable_certificates(found.certs);
            if store.is_empty() {
                return Err(TlsError::NoSystemRoots);
            }
        }
    }
    Ok(store)
}

/// `prefer`, and `require` without a root: accept any certificate (libpq does not check it);
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

/// A clear account of a TLS failure of a connect to `host` under `opts`, if `error`
/// (tokio-postgres's, or anything in its source chain) is one; None otherwise.
pub fn explain(error: &(dyn StdError + 'static), opts: &TlsOptions, host: &str) -> Option<HandshakeError> {
    let mut current = Some(error);
    while let Some(e) = current {
        let rustls_error = e.downcast_ref::<rustls::Error>().or_else(|| {
            e.downcast_ref::<std::io::Error>()
                .and_then(|io| io.get_ref())
                .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        });
        if let Some(r) = rustls_error {
            return Some(handshake_error(r, opts, host));
        }
        // tokio-postgres's own text when the server answers the SSLRequest with 'N'.
        if e.to_string() == "server does not support TLS" {
            return Some(HandshakeError::NotOffered(opts.mode));
        }
        current = e.source();
    }
    None
}

fn handshake_error(error: &rustls::Error, opts: &TlsOptions, host: &str) -> HandshakeError {
    match error {
        rustls::Error::InvalidCertificate(
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
        ) => HandshakeError::NotValidForName { host: host.to_string() },
        rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer) => match &opts.root_cert {
            Some(roots) => HandshakeError::UnknownIssuer { roots: roots.clone() },
            None => HandshakeError::InvalidCertificate(CertificateError::UnknownIssuer),
        },
        rustls::Error::InvalidCertificate(e) => HandshakeError::InvalidCertificate(e.clone()),
        other => HandshakeError::Other(other.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(mode: SslMode, root: Option<&str>) -> TlsOptions {
        let root_cert = root.map(|r| if r == "system" { RootCert::System } else { RootCert::File(r.into()) });
        TlsOptions { mode, root_cert, client_cert: None }
    }

    /// The module's table, row by row. `sslrootcert=system` with a weaker mode does not
    /// reach here (the DSN says `verify-full` then; see `config::dsn`).
    #[test]
    fn what_each_sslmode_verifies() {
        use SslMode::*;
        let (file, system) = (RootCert::File("/ca".into()), RootCert::System);
        let cases = [
            (opts(Disable, None), Ok(Verify::Nothing)),
            (opts(Disable, Some("/ca")), Ok(Verify::Nothing)),
            (opts(Prefer, None), Ok(Verify::Nothing)),
            (opts(Prefer, Some("/ca")), Ok(Verify::Nothing)),
            (opts(Require, None), Ok(Verify::Nothing)),
            (opts(Require, Some("/ca")), Ok(Verify::Chain(&file))),
            (opts(VerifyCa, Some("/ca")), Ok(Verify::Chain(&file))),
            (opts(VerifyCa, Some("system")), Ok(Verify::Chain(&system))),
            (opts(VerifyFull, Some("/ca")), Ok(Verify::ChainAndName(&file))),
            (opts(VerifyFull, Some("system")), Ok(Verify::ChainAndName(&system))),
            // never a fallback to the system roots
            (opts(VerifyCa, None), Err("sslmode=verify-ca needs sslrootcert".to_string())),
            (opts(VerifyFull, None), Err("sslmode=verify-full needs sslrootcert".to_string())),
        ];
        for (o, want) in &cases {
            assert_eq!(&verify(o).map_err(|e| e.to_string()), want, "{o:?}");
        }
        let err = connector(&opts(VerifyFull, None)).err().unwrap();
        assert_eq!(err.to_string(), "sslmode=verify-full needs sslrootcert");
    }

    #[test]
    fn connector_errors_name_the_file() {
        let err = connector(&opts(SslMode::VerifyFull, Some("/nonexistent/ca.pem"))).err().unwrap();
        assert!(err.to_string().contains("sslrootcert /nonexistent/ca.pem"), "{err}");
        let mut client = opts(SslMode::Require, None);
        client.client_cert = Some(ClientCert { cert: "/nonexistent/c.pem".into(), key: "/k.pem".into() });
        let err = connector(&client).err().unwrap();
        assert!(err.to_string().starts_with("sslcert /nonexistent/c.pem: "), "{err}");
        client.mode = SslMode::Disable;
        assert!(connector(&client).is_ok(), "sslmode=disable reads no client certificate");
        assert!(connector(&opts(SslMode::Require, None)).is_ok());
    }

    #[test]
    fn explains_certificate_failures() {
        let o = opts(SslMode::VerifyFull, Some("/ca.pem"));
        let text = |e: &(dyn StdError + 'static), o: &TlsOptions| explain(e, o, "h").map(|x| x.to_string());
        let name = rustls::Error::InvalidCertificate(CertificateError::NotValidForName);
        let io = std::io::Error::new(std::io::ErrorKind::InvalidData, name);
        assert_eq!(
            explain(&io, &o, "127.0.0.9").map(|e| e.to_string()).as_deref(),
            Some("TLS: certificate not valid for name 127.0.0.9")
        );
        let issuer = rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer);
        assert_eq!(text(&issuer, &o).as_deref(), Some("TLS: certificate not signed by a CA in sslrootcert /ca.pem"));
        let system = opts(SslMode::VerifyFull, Some("system"));
        assert_eq!(text(&issuer, &system).as_deref(), Some("TLS: certificate not signed by a CA in the system roots"));
        let unverified = opts(SslMode::Require, None);
        assert_eq!(text(&issuer, &unverified).as_deref(), Some("TLS: invalid certificate: UnknownIssuer"));
        let expired = rustls::Error::InvalidCertificate(CertificateError::Expired);
        assert_eq!(text(&expired, &o).as_deref(), Some("TLS: invalid certificate: Expired"));
        let refused = std::io::Error::other("server does not support TLS");
        assert_eq!(text(&refused, &o).as_deref(), Some("TLS: server does not support TLS, sslmode=verify-full"));
        let other = std::io::Error::other("connection refused");
        assert_eq!(text(&other, &o), None);
    }
}
