//! Table tests for the DSN lexer: what is taken out for TLS and what tokio-postgres gets,
//! the redacted rendering, equality, and the text of every error.

use super::*;

fn tls(mode: SslMode, root: Option<&str>) -> TlsOptions {
    let root_cert = root.map(|r| if r == "system" { RootCert::System } else { RootCert::File(r.into()) });
    TlsOptions { mode, root_cert, client_cert: None }
}

fn split_ok(dsn: &str) -> (String, TlsOptions) {
    let (rest, keys) = split(dsn).unwrap_or_else(|e| panic!("{dsn:?}: {e}"));
    (rest, keys.options().unwrap_or_else(|e| panic!("{dsn:?}: {e}")))
}

#[test]
fn takes_tls_keys_out_of_key_value_dsns() {
    use SslMode::*;
    let cases = [
        ("host=h user=u", "host=h user=u", tls(Prefer, None)),
        ("", "", tls(Prefer, None)),
        ("host=h sslmode=require", "host=h", tls(Require, None)),
        ("sslmode=verify-full host=h sslrootcert=/ca.pem", "host=h", tls(VerifyFull, Some("/ca.pem"))),
        (
            "host=h sslmode = verify-ca  sslrootcert='/a b/c\\'s.pem' user=u",
            "host=h user=u",
            tls(VerifyCa, Some("/a b/c's.pem")),
        ),
        ("sslrootcert=/x\\ y.pem", "", tls(Prefer, Some("/x y.pem"))),
        ("sslrootcert=system sslmode=verify-full", "", tls(VerifyFull, Some("system"))),
        ("sslrootcert=system", "", tls(VerifyFull, Some("system"))),
        ("sslmode=require sslrootcert=system", "", tls(VerifyFull, Some("system"))),
        ("sslmode=disable sslmode=allow", "", tls(Prefer, None)),
        (
            "password='p w' sslmode=require application_name='sslmode=disable'",
            "password='p w' application_name='sslmode=disable'",
            tls(Require, None),
        ),
        ("  host=h\tport=5432\n", "host=h port=5432", tls(Prefer, None)),
    ];
    for (dsn, rest, want) in cases {
        assert_eq!(split_ok(dsn), (rest.to_string(), want), "{dsn:?}");
    }
    let (rest, o) = split_ok("host=h sslcert=/c.pem sslkey='/k.pem'");
    assert_eq!(rest, "host=h");
    assert_eq!(o.client_cert, Some(ClientCert { cert: "/c.pem".into(), key: "/k.pem".into() }));
}

#[test]
fn takes_tls_keys_out_of_url_query_parameters() {
    use SslMode::*;
    let cases = [
        ("postgres://u:pw@h/db", "postgres://u:pw@h/db", tls(Prefer, None)),
        (
            "postgres://u:pw@h/db?sslmode=verify-full&sslrootcert=%2Fetc%2Fca%20x.pem",
            "postgres://u:pw@h/db",
            tls(VerifyFull, Some("/etc/ca x.pem")),
        ),
        (
            "postgresql://h:5432/db?application_name=a&sslmode=require&connect_timeout=2",
            "postgresql://h:5432/db?application_name=a&connect_timeout=2",
            tls(Require, None),
        ),
        ("postgres://u:p?w@h/db?sslmode=disable", "postgres://u:p?w@h/db", tls(Disable, None)),
        ("postgres://h?sslmode=verify-ca&sslrootcert=ca.pem", "postgres://h", tls(VerifyCa, Some("ca.pem"))),
        ("postgres://h?sslrootcert=system&sslmode=prefer", "postgres://h", tls(VerifyFull, Some("system"))),
        ("postgres://h?%73slmode=require", "postgres://h", tls(Require, None)),
        (" postgres://h", "postgres://h", tls(Prefer, None)),
    ];
    for (dsn, rest, want) in cases {
        assert_eq!(split_ok(dsn), (rest.to_string(), want), "{dsn:?}");
    }
}

/// libpq's rules for `sslmode` × `sslrootcert`: the verify modes need a root certificate
/// (no fallback to other roots), and `system` implies `verify-full` (lagdns raises a
/// weaker mode, which libpq 16 refuses).
#[test]
fn effective_sslmode_follows_libpq() {
    use SslMode::*;
    let file = RootCert::File("/ca.pem".into());
    let cases = [
        (Disable, None, Ok(Disable)),
        (Prefer, None, Ok(Prefer)),
        (Require, None, Ok(Require)),
        (VerifyCa, None, Err(DsnError::NoRootCert(VerifyCa))),
        (VerifyFull, None, Err(DsnError::NoRootCert(VerifyFull))),
        (Disable, Some(&file), Ok(Disable)),
        (Prefer, Some(&file), Ok(Prefer)),
        (Require, Some(&file), Ok(Require)),
        (VerifyCa, Some(&file), Ok(VerifyCa)),
        (VerifyFull, Some(&file), Ok(VerifyFull)),
        (Disable, Some(&RootCert::System), Ok(VerifyFull)),
        (Prefer, Some(&RootCert::System), Ok(VerifyFull)),
        (Require, Some(&RootCert::System), Ok(VerifyFull)),
        (VerifyCa, Some(&RootCert::System), Ok(VerifyFull)),
        (VerifyFull, Some(&RootCert::System), Ok(VerifyFull)),
    ];
    for (mode, root, want) in cases {
        assert_eq!(effective_mode(mode, root), want, "{mode:?} {root:?}");
    }
    // `system` insists on TLS even where the DSN says `prefer` (or nothing).
    for dsn in ["host=h sslrootcert=system", "host=h sslmode=prefer sslrootcert=system"] {
        assert_eq!(dsn.parse::<Dsn>().unwrap().connection().get_ssl_mode(), Negotiation::Require, "{dsn}");
    }
}

#[test]
fn tokio_postgres_parses_the_rest_and_negotiates_per_sslmode() {
    let dsn: Dsn = "host=h port=5433 user=u dbname='my db' sslmode=verify-ca sslrootcert=/ca.pem".parse().unwrap();
    let c = dsn.connection();
    assert_eq!(c.get_hosts(), [Host::Tcp("h".into())]);
    assert_eq!((c.get_ports(), c.get_user(), c.get_dbname()), (&[5433][..], Some("u"), Some("my db")));
    assert_eq!(c.get_ssl_mode(), Negotiation::Require);
    assert_eq!(dsn.tls(), &tls(SslMode::VerifyCa, Some("/ca.pem")));

    let url: Dsn = "postgresql://u:p%40w@h/db?sslmode=disable".parse().unwrap();
    assert_eq!(url.connection().get_password(), Some(&b"p@w"[..]));
    assert_eq!(url.connection().get_ssl_mode(), Negotiation::Disable);
    let plain: Dsn = "host=h".parse().unwrap();
    assert_eq!(plain.connection().get_ssl_mode(), Negotiation::Prefer);
    for (mode, want) in [
        (SslMode::Disable, Negotiation::Disable),
        (SslMode::Prefer, Negotiation::Prefer),
        (SslMode::Require, Negotiation::Require),
        (SslMode::VerifyCa, Negotiation::Require),
        (SslMode::VerifyFull, Negotiation::Require),
    ] {
        assert_eq!(mode.negotiation(), want, "{mode:?}");
    }
}

/// Every error, by its text; none repeats the password `hunter2`.
#[test]
fn errors_say_where_without_quoting_the_dsn() {
    let unknown_mode = "(disable, allow, prefer, require, verify-ca, verify-full)";
    let no_root = "needs sslrootcert (a PEM file of CA certificates, or `system` for the operating system's roots)";
    let cases = [
        ("password=hunter2 sslmode=verify", format!("invalid sslmode \"verify\" {unknown_mode}")),
        ("postgres://h?sslmode=full", format!("invalid sslmode \"full\" {unknown_mode}")),
        ("host=h sslmode= password=hunter2", format!("invalid sslmode {unknown_mode}")),
        ("postgres://u:hunter2@h?sslrootcert=%zz", "invalid percent-encoding in sslrootcert".into()),
        ("postgres://u:hunter2@h?sslcert=%ff&sslkey=/k", "sslcert is not UTF-8".into()),
        ("host=h bogus", "expected `=` at byte 12".into()),
        ("host=h password hunter2", "expected `=` at byte 16".into()),
        ("=hunter2", "expected a key at byte 0".into()),
        ("host=h user=", "expected a value at byte 12".into()),
        ("host=h password='hunter2", "unterminated quoted value from byte 16".into()),
        ("host=h sslcert=/c.pem", "sslcert without sslkey (give both or neither)".into()),
        ("postgres://h?sslkey=/k.pem", "sslkey without sslcert (give both or neither)".into()),
        ("host=h sslrootcert=''", "sslrootcert must not be empty".into()),
        ("host=h password=hunter2 sslmode=verify-ca", format!("sslmode=verify-ca {no_root}")),
        ("postgres://u:hunter2@h/db?sslmode=verify-full", format!("sslmode=verify-full {no_root}")),
        ("host=h password=hunter2 bogus=1", "invalid connection string: unknown option `bogus`".into()),
        ("host=h port=hunter2", "invalid connection string: invalid value for option `port`".into()),
        ("postgres://u:hunter2@h/db?connect_timeout", "invalid connection string: unterminated parameter".into()),
    ];
    for (dsn, want) in cases {
        let err = dsn.parse::<Dsn>().err().unwrap_or_else(|| panic!("{dsn:?} parsed"));
        assert_eq!(err.to_string(), want, "{dsn:?}");
        assert!(!err.to_string().contains("hunter2"), "{err}");
    }
}

#[test]
fn display_is_rendered_from_the_parsed_value_and_hides_the_password() {
    let cases = [
        ("host=h password=pw user=u", "host=h user=u password=***"),
        ("host=h password='a b\\' c' user=u", "host=h user=u password=***"),
        ("application_name=password user=password", "user=password application_name=password"),
        (
            "postgres://u:p%40w@h:5433/db?sslmode=disable",
            "host=h port=5433 user=u password=*** dbname=db sslmode=disable",
        ),
        ("postgres://u@h/db", "host=h port=5432 user=u dbname=db"),
        (
            "postgres://h/db?user=u&password=pw&connect_timeout=2",
            "host=h port=5432 user=u password=*** dbname=db connect_timeout=2",
        ),
        (
            "host=/run/postgresql,h2 port=5432,5433 dbname='my db' options='-c x=1' sslmode=verify-full \
             sslrootcert='/a b/ca.pem' sslcert=/c.pem sslkey=/k.pem",
            "host=/run/postgresql,h2 port=5432,5433 dbname='my db' options='-c x=1' sslmode=verify-full \
             sslrootcert='/a b/ca.pem' sslcert=/c.pem sslkey=/k.pem",
        ),
        ("hostaddr=10.0.0.1 sslmode=allow", "hostaddr=10.0.0.1"),
        ("hostaddr=10.0.0.1 sslrootcert=system", "hostaddr=10.0.0.1 sslmode=verify-full sslrootcert=system"),
        ("host=h sslmode=require", "host=h sslmode=require"),
        ("dbname='it\\'s'", "dbname='it\\'s'"),
    ];
    for (dsn, want) in cases {
        let parsed: Dsn = dsn.parse().unwrap_or_else(|e| panic!("{dsn:?}: {e}"));
        assert_eq!(parsed.to_string(), want, "{dsn:?}");
        assert_eq!(format!("{parsed:?}"), format!("Dsn({want})"), "{dsn:?}");
        // The rendering is itself a DSN that means the same (minus the password).
        let again: Dsn = want.replace("password=***", "").parse().unwrap();
        assert_eq!(again.to_string(), want.replace(" password=***", ""), "{dsn:?}");
    }
}

#[test]
fn equality_is_on_the_text_as_written() {
    let dsn = |s: &str| s.parse::<Dsn>().unwrap();
    assert_eq!(dsn("host=h password=a"), dsn("host=h password=a"));
    assert_ne!(dsn("host=h password=a"), dsn("host=h password=b"), "a new password restarts the probe");
    assert_ne!(dsn("host=h sslrootcert=/a"), dsn("host=h sslrootcert=/b"));
    assert_ne!(dsn("host=h  user=u"), dsn("host=h user=u"), "spacing counts: a harmless reconnect");
}
