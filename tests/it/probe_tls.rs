//! Probe TLS against real PostgreSQL: libpq `sslmode` semantics (prefer falls back to
//! plain, require insists on TLS without checking the certificate, verify-ca checks the
//! chain, verify-full also the address, `sslrootcert=system` means verify-full), clear
//! connect errors without the password, a client certificate, and refusals that put the
//! node down in `/status` with the reason. Certificates come from the `openssl` CLI;
//! servers from `localpg::LocalCluster`.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::common::{eventually, http_get, start_cluster, Settings, Stack};
use lagdns::config::{NodeConfig, ProbeConfig};
use lagdns::probe::{task, NodeId, Observation, ProbeFailure};
use localpg::{LocalCluster, LocalNode};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

const DEADLINE: Duration = Duration::from_secs(20);
/// Sent in every DSN (trust auth ignores it); must never appear in an error.
const PASSWORD: &str = "hunter2-tls";
/// The connect failure of `sslrootcert=system` on a machine without system roots (the
/// probe is refused either way; this machine's roots sign no test certificate).
const NO_SYSTEM_ROOTS: &str = "sslrootcert=system: no root certificates in the operating system's store";

/// A probe task for one DSN of `node`, and its first observation.
struct Probe {
    first: Observation,
    cancel: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl Probe {
    async fn start(node: &LocalNode, dsn: &str) -> Probe {
        let (tx, mut rx) = mpsc::channel(16);
        let cancel = CancellationToken::new();
        let config = NodeConfig {
            name: node.name.clone(),
            addresses: vec![node.address.into()],
            host: None,
            port: node.port,
            dsn: dsn.parse().unwrap(),
            weight: 1,
            password_file: None,
            location: None,
        };
        let probe =
            ProbeConfig { interval: Duration::from_millis(200), timeout: Duration::from_secs(3), fall: 3, rise: 2 };
        let id = NodeId::new("c", &node.name);
        let task = tokio::spawn(task::run(id, config, probe, Duration::ZERO, tx, cancel.clone()));
        let first = tokio::time::timeout(DEADLINE, rx.recv())
            .await
            .expect("an observation in time")
            .expect("the task sends one");
        Probe { first, cancel, task }
    }

    async fn stop(self) {
        self.cancel.cancel();
        tokio::time::timeout(Duration::from_secs(5), self.task).await.expect("probe task stops on cancel").unwrap();
    }
}

/// The first observation of a probe of `dsn` (the task is stopped afterwards).
async fn probe_once(node: &LocalNode, dsn: &str) -> Result<(), ProbeFailure> {
    let probe = Probe::start(node, dsn).await;
    let result = probe.first.result.clone().map(|_| ());
    probe.stop().await;
    result
}

fn connect_error(result: Result<(), ProbeFailure>, dsn: &str) -> String {
    match result {
        Err(ProbeFailure::Connect(message)) => {
            assert!(!message.contains(PASSWORD), "{message}");
            message
        }
        other => panic!("{dsn}: want a connect failure, got {other:?}"),
    }
}

/// `ssl` and `client_dn` of the backend whose application_name is `app`, as psql prints
/// them (`t|/CN=x`), or "" if there is none.
fn ssl_of(node: &LocalNode, app: &str) -> String {
    tokio::task::block_in_place(|| {
        node.sql(&format!(
            "SELECT s.ssl, coalesce(s.client_dn, '') FROM pg_stat_ssl s \
             JOIN pg_stat_activity a USING (pid) WHERE a.application_name = '{app}'"
        ))
    })
    .unwrap()
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl").args(args).current_dir(dir).output().expect("openssl runs");
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// A test PKI in `dir`: CA `name.pem`/`name.key`, certificates signed by it.
struct Ca {
    dir: PathBuf,
    name: String,
}

impl Ca {
    fn new(dir: &Path, name: &str) -> Ca {
        let (key, pem) = (format!("{name}.key"), format!("{name}.pem"));
        let subject = format!("/CN=lagdns test {name}");
        openssl(
            dir,
            &[
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-keyout",
                &key,
                "-out",
                &pem,
                "-days",
                "2",
                "-subj",
                &subject,
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign,cRLSign",
            ],
        );
        Ca { dir: dir.to_path_buf(), name: name.to_string() }
    }

    fn pem(&self) -> PathBuf {
        self.dir.join(format!("{}.pem", self.name))
    }

    /// Signs a new key as `file.pem`/`file.key` with `extensions`; returns their paths.
    fn issue(&self, file: &str, cn: &str, extensions: &str) -> (PathBuf, PathBuf) {
        let (key, csr, pem, ext) =
            (format!("{file}.key"), format!("{file}.csr"), format!("{file}.pem"), format!("{file}.ext"));
        std::fs::write(self.dir.join(&ext), format!("basicConstraints=CA:FALSE\n{extensions}\n")).unwrap();
        let subject = format!("/CN={cn}");
        openssl(
            &self.dir,
            &[
                "req",
                "-new",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-keyout",
                &key,
                "-out",
                &csr,
                "-subj",
                &subject,
            ],
        );
        let (ca_pem, ca_key) = (format!("{}.pem", self.name), format!("{}.key", self.name));
        openssl(
            &self.dir,
            &[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                &ca_pem,
                "-CAkey",
                &ca_key,
                "-CAcreateserial",
                "-out",
                &pem,
                "-days",
                "2",
                "-extfile",
                &ext,
            ],
        );
        (self.dir.join(pem), self.dir.join(key))
    }
}

/// Gives `path` to the server's OS user (the owner of its data directory) with `mode`.
fn hand_to_server(node: &LocalNode, path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    let owner = std::fs::metadata(node.data_dir()).unwrap();
    std::os::unix::fs::chown(path, Some(owner.uid()), Some(owner.gid())).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// Serves `cert`/`key` (and asks clients for certificates signed by `client_ca`), by
/// ALTER SYSTEM and a restart, so the new certificate is certainly in use on return.
fn serve_tls(node: &LocalNode, cert: &Path, key: &Path, client_ca: Option<&Path>) {
    hand_to_server(node, cert, 0o644);
    hand_to_server(node, key, 0o600);
    let ca = client_ca.map_or(String::new(), |p| p.display().to_string());
    let settings = [
        ("ssl_cert_file", cert.display().to_string()),
        ("ssl_key_file", key.display().to_string()),
        ("ssl_ca_file", ca),
        ("ssl", "on".to_string()),
    ];
    tokio::task::block_in_place(|| {
        for (name, value) in settings {
            // One statement per call: ALTER SYSTEM refuses a transaction block.
            node.sql(&format!("ALTER SYSTEM SET {name} = '{value}'")).unwrap();
        }
        node.stop().unwrap();
        node.start().unwrap();
        assert_eq!(node.sql("SHOW ssl").unwrap(), "on");
    });
}

fn tls_dir(node: &LocalNode) -> PathBuf {
    let dir = node.dir().join("tls");
    std::fs::create_dir_all(&dir).unwrap();
    hand_to_server(node, &dir, 0o755);
    dir
}

fn dsn(node: &LocalNode, extra: &str) -> String {
    format!("{} password={PASSWORD} {extra}", node.dsn())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_without_tls_prefer_falls_back_and_require_fails() {
    let cluster = LocalCluster::start(0).unwrap();
    let node = cluster.primary();
    assert_eq!(tokio::task::block_in_place(|| node.sql("SHOW ssl")).unwrap(), "off");

    // The default (no sslmode) is prefer: plain TCP here.
    let probe = Probe::start(node, &dsn(node, "")).await;
    assert!(probe.first.result.is_ok(), "{:?}", probe.first.result);
    assert_eq!(ssl_of(node, "lagdns"), "f|");
    probe.stop().await;
    let explicit = dsn(node, "sslmode=prefer application_name=lagdns-prefer");
    assert_eq!(probe_once(node, &explicit).await, Ok(()));

    let ca = Ca::new(&tls_dir(node), "ca");
    let root = format!("sslrootcert={}", ca.pem().display());
    for mode in ["require", "verify-ca", "verify-full"] {
        let d = dsn(node, &format!("sslmode={mode} {root}"));
        let message = connect_error(probe_once(node, &d).await, &d);
        assert_eq!(message, format!("TLS: server does not support TLS, sslmode={mode}"));
    }
    // sslrootcert=system is verify-full: it insists on TLS, even with sslmode=prefer.
    for extra in ["sslrootcert=system", "sslmode=prefer sslrootcert=system"] {
        let d = dsn(node, extra);
        let message = connect_error(probe_once(node, &d).await, &d);
        if message != NO_SYSTEM_ROOTS {
            assert_eq!(message, "TLS: server does not support TLS, sslmode=verify-full", "{extra}");
        }
    }
    let d = dsn(node, "sslmode=disable");
    assert_eq!(probe_once(node, &d).await, Ok(()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_with_tls_is_verified_per_sslmode() {
    let cluster = LocalCluster::start(0).unwrap();
    let node = cluster.primary();
    let dir = tls_dir(node);
    let ca = Ca::new(&dir, "ca");
    let other_ca = Ca::new(&dir, "other-ca");
    let right_ip = format!("subjectAltName=IP:{}", node.address);
    let (cert, key) = ca.issue("server", "server", &right_ip);
    serve_tls(node, &cert, &key, None);
    let (ca_pem, other_pem) = (ca.pem().display().to_string(), other_ca.pem().display().to_string());

    // require: TLS, certificate unchecked (it is signed by a CA the probe never saw).
    let probe = Probe::start(node, &dsn(node, "sslmode=require")).await;
    assert!(probe.first.result.is_ok(), "{:?}", probe.first.result);
    assert_eq!(ssl_of(node, "lagdns"), "t|");
    probe.stop().await;
    // sslmode=disable stays plain even against a TLS server.
    let probe = Probe::start(node, &dsn(node, "sslmode=disable application_name=lagdns-plain")).await;
    assert!(probe.first.result.is_ok(), "{:?}", probe.first.result);
    assert_eq!(ssl_of(node, "lagdns-plain"), "f|");
    probe.stop().await;

    let ok = [
        "sslmode=prefer application_name=lagdns-prefer".to_string(),
        format!("sslmode=verify-full sslrootcert={ca_pem}"),
        format!("sslmode=verify-ca sslrootcert='{ca_pem}'"),
        format!("sslmode=require sslrootcert={ca_pem}"),
    ];
    for extra in &ok {
        let d = dsn(node, extra);
        assert_eq!(probe_once(node, &d).await, Ok(()), "{extra}");
    }
    // The URL form, with the root certificate's path percent-encoded.
    let url = format!(
        "postgres://lagdns:{PASSWORD}@{}:{}/postgres?application_name=lagdns-url&sslmode=verify-full&sslrootcert={}",
        node.address,
        node.port,
        ca_pem.replace('/', "%2F")
    );
    let probe = Probe::start(node, &url).await;
    assert!(probe.first.result.is_ok(), "{:?}", probe.first.result);
    assert_eq!(ssl_of(node, "lagdns-url"), "t|");
    probe.stop().await;

    // A CA that did not sign the server's certificate: every verifying mode refuses.
    for mode in ["verify-full", "verify-ca", "require"] {
        let d = dsn(node, &format!("sslmode={mode} sslrootcert={other_pem}"));
        let message = connect_error(probe_once(node, &d).await, &d);
        assert_eq!(message, format!("TLS: certificate not signed by a CA in sslrootcert {other_pem}"));
    }
    let d = dsn(node, "sslmode=verify-full sslrootcert=/nonexistent/ca.pem");
    let message = connect_error(probe_once(node, &d).await, &d);
    assert!(message.contains("sslrootcert /nonexistent/ca.pem"), "{message}");

    // A certificate for another address, and clients asked for certificates by `ca`.
    let (cert, key) = ca.issue("elsewhere", "server", "subjectAltName=IP:127.0.0.1");
    serve_tls(node, &cert, &key, Some(&ca.pem()));
    let d = dsn(node, &format!("sslmode=verify-full sslrootcert={ca_pem}"));
    let message = connect_error(probe_once(node, &d).await, &d);
    assert_eq!(message, format!("TLS: certificate not valid for name {}", node.address));
    let d = dsn(node, &format!("sslmode=verify-ca sslrootcert={ca_pem}"));
    assert_eq!(probe_once(node, &d).await, Ok(()), "verify-ca does not check the name");

    // A client certificate (sslcert/sslkey) reaches the server.
    let (client_cert, client_key) = ca.issue("client", "lagdns", "extendedKeyUsage=clientAuth");
    let extra = format!(
        "sslmode=verify-ca sslrootcert={ca_pem} sslcert={} sslkey={} application_name=lagdns-cert",
        client_cert.display(),
        client_key.display()
    );
    let probe = Probe::start(node, &dsn(node, &extra)).await;
    assert!(probe.first.result.is_ok(), "{:?}", probe.first.result);
    assert_eq!(ssl_of(node, "lagdns-cert"), "t|/CN=lagdns");
    probe.stop().await;
}

/// The node table of a lagdns config for `node` under `name`, probed with `extra`.
fn node_table(node: &LocalNode, name: &str, extra: &str) -> String {
    format!("\n[[cluster.node]]\nname = \"{name}\"\naddress = \"{}\"\ndsn = \"{}\"\n", node.address, dsn(node, extra))
}

/// Refused certificates as lagdns serving shows them: each refusing node goes down with
/// the reason as `last_error` (and no password in `/status`); the node that checks the
/// chain against the right CA, and not the name, is up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_certificates_put_the_node_down_with_the_reason() {
    let cluster = start_cluster(0).await;
    let node = cluster.primary();
    let dir = tls_dir(node);
    let ca = Ca::new(&dir, "ca");
    let other_ca = Ca::new(&dir, "other-ca");
    // Signed by `ca`, for another address than the node's.
    let (cert, key) = ca.issue("elsewhere", "server", "subjectAltName=IP:127.0.0.1");
    serve_tls(node, &cert, &key, None);
    let (ca_pem, other_pem) = (ca.pem().display().to_string(), other_ca.pem().display().to_string());
    let cases = [
        ("right-ca", format!("sslmode=verify-ca sslrootcert={ca_pem}"), None),
        (
            "wrong-name",
            format!("sslmode=verify-full sslrootcert={ca_pem}"),
            Some(format!("connect: TLS: certificate not valid for name {}", node.address)),
        ),
        (
            "wrong-ca",
            format!("sslmode=verify-ca sslrootcert={other_pem}"),
            Some(format!("connect: TLS: certificate not signed by a CA in sslrootcert {other_pem}")),
        ),
        (
            "system",
            "sslmode=prefer sslrootcert=system".to_string(),
            Some("connect: TLS: certificate not signed by a CA in the system roots".to_string()),
        ),
    ];
    let settings = Settings {
        skip: vec!["pg1"],
        extra_nodes: cases.iter().map(|(name, extra, _)| node_table(node, name, extra)).collect(),
        ..Settings::default()
    };
    let mut stack = Stack::serve(cluster, settings).await;
    let within = stack.settings.rounds(stack.settings.fall as u64 + 4);
    let doc = eventually(within, "the refusing nodes down, right-ca up", || async {
        let (_, body) = http_get(stack.http(), "/status").await;
        let doc: serde_json::Value = serde_json::from_str(&body).map_err(|e| format!("{e}: {body}"))?;
        let nodes = doc["clusters"][0]["nodes"].as_array().cloned().unwrap_or_default();
        let state = |name: &str| nodes.iter().find(|n| n["name"] == name).map(|n| n["state"].clone());
        let settled = cases
            .iter()
            .all(|(name, _, refused)| state(name) == Some(if refused.is_some() { "down" } else { "up" }.into()));
        if settled {
            Ok(doc)
        } else {
            Err(body)
        }
    })
    .await;
    let text = doc.to_string();
    assert!(!text.contains(PASSWORD), "{text}");
    let no_system_roots = format!("connect: {NO_SYSTEM_ROOTS}");
    for (name, _, refused) in &cases {
        let n = doc["clusters"][0]["nodes"].as_array().unwrap().iter().find(|n| n["name"] == *name).unwrap();
        let error = n["last_error"].as_str().map(str::to_string);
        if *name == "system" && error.as_ref() == Some(&no_system_roots) {
            continue;
        }
        assert_eq!(&error, refused, "{name}: {n}");
    }
    stack.shutdown().await;
}
