//! The HTTP server over real TCP: `/healthz`, `/status` and `/metrics` render the
//! published snapshot, `lagdns status` reads it back, and shutdown is graceful.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use lagdns::config::Config;
use lagdns::dns::query::{Qtype, QueryKind, QueryStats, Rcode};
use lagdns::health::NodeState;
use lagdns::http::status::{StatusDoc, WriteState};
use lagdns::snapshot::{Snapshot, WriteTarget};
use lagdns::store::{Snapshots, Store};
use lagdns::testkit::SnapshotBuilder;
use lagdns::topology::{Eligibility, Reason, Role};
use lagdns::wal::{Lsn, Timeline};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

const SECRET: &str = "hunter2";

/// Five nodes: the config is written the way operators write it, and parsed.
fn config() -> Config {
    let mut text = String::from(
        r#"[dns]
listen = ["127.0.0.1:0"]
zone = "db.internal"

[http]
listen = "127.0.0.1:0"

[[cluster]]
name = "main"
max_lag = "100ms"
max_lag_bytes = "1MiB"
answers = "all"
fallback = "primary"

[[cluster.endpoint]]
name = "batch"
nodes = ["pg3", "pg4"]
max_lag = "5m"
fallback = "none"
"#,
    );
    for (i, name) in ["pg1", "pg2", "pg3", "pg4", "pg5"].iter().enumerate() {
        let last = 11 + i;
        let weight = if *name == "pg5" { 0 } else { 50 };
        text += &format!(
            "\n[[cluster.node]]\nname = \"{name}\"\naddress = \"127.0.0.{last}\"\n\
             dsn = \"host=127.0.0.{last} user=lagdns password={SECRET}\"\nweight = {weight}\n"
        );
    }
    Config::parse(&text, "http_status.toml").expect("valid test config")
}

/// pg1 primary; pg2 caught up; pg3 lagging 1.5s; pg4 down with an error; pg5 drained.
fn snapshot(serial: u32) -> Snapshot {
    let built = UNIX_EPOCH + Duration::from_secs(1_750_000_000);
    let at = Lsn(0x1_0000_5000);
    SnapshotBuilder::from_config(config())
        .serial(serial)
        .built(built)
        .answer_changes(4)
        .cluster("main", |c| (c.write, c.primary_lsn) = (WriteTarget::Primary(0), Some(at)))
        .each_node("main", |i, n| {
            n.state = NodeState::Up;
            n.role = Role::Replica;
            n.timeline = Some(Timeline(2));
            n.last_probe = Some(built - Duration::from_millis(50));
            n.last_probe_duration = Some(Duration::from_millis(2));
            n.probes = 100 + i as u64;
            n.probe_seconds = 0.5;
            (n.lag, n.lag_bytes, n.replay_lsn) = (Some(Duration::ZERO), Some(0), Some(at));
        })
        .node("main", "pg1", |n| {
            n.role = Role::Primary;
            (n.lag, n.lag_bytes, n.replay_lsn, n.current_lsn) = (None, None, None, Some(at));
        })
        .node("main", "pg3", |n| {
            (n.lag, n.lag_bytes, n.replay_lsn) =
                (Some(Duration::from_millis(1500)), Some(8192), Some(Lsn(0x1_0000_3000)))
        })
        .node("main", "pg4", |n| {
            n.state = NodeState::Down;
            n.last_error = Some("connect: connection refused".into());
            n.probe_errors = 7;
        })
        .build()
}

struct Server {
    addr: SocketAddr,
    store: Arc<Store<()>>,
    cancel: CancellationToken,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

async fn start(stats: Arc<QueryStats>) -> Server {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let store = Store::new(snapshot(9), |_, _| ());
    let cancel = CancellationToken::new();
    let reloads = Arc::new(lagdns::metrics::Reloads::new(SystemTime::now()));
    let sources = lagdns::http::Sources { snapshots: store.clone(), stats, reloads };
    let task = tokio::spawn(lagdns::http::serve(listener, sources, cancel.clone()));
    Server { addr, store, cancel, task }
}

/// (status, content type, body) of a GET, over a real TCP connection.
async fn get(addr: SocketAddr, path: &str) -> (u16, String, String) {
    let url = format!("http://{addr}{path}");
    tokio::task::spawn_blocking(move || {
        let get = ureq::get(&url).config().timeout_global(Some(Duration::from_secs(5))).http_status_as_error(false);
        let mut resp = get.build().call().unwrap_or_else(|e| panic!("GET {url}: {e}"));
        let ctype = resp.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
        (resp.status().as_u16(), ctype, resp.body_mut().read_to_string().unwrap())
    })
    .await
    .unwrap()
}

fn reason(e: Eligibility) -> Option<String> {
    match e {
        Eligibility::Eligible => None,
        Eligibility::Ineligible(r) => Some(r.to_string()),
    }
}

fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoints_render_the_published_snapshot() {
    let stats = Arc::new(QueryStats::default());
    stats.record(QueryKind::Write, Qtype::A, Rcode::NoError);
    let server = start(stats.clone()).await;
    let snap = server.store.snapshot();

    let (code, _, body) = get(server.addr, "/healthz").await;
    assert_eq!((code, body.trim()), (200, "ok"));
    assert_eq!(get(server.addr, "/nope").await.0, 404);

    let (code, ctype, body) = get(server.addr, "/status").await;
    assert_eq!(code, 200);
    assert!(ctype.starts_with("application/json"), "{ctype}");
    let json: Value = serde_json::from_str(&body).unwrap();
    let doc: StatusDoc = serde_json::from_str(&body).unwrap();
    assert_eq!(doc, StatusDoc::from_snapshot(&snap));
    assert_eq!((json["serial"].as_u64(), json["ready"].as_bool()), (Some(9), Some(true)));
    let cluster = &json["clusters"][0];
    assert_eq!((cluster["name"].as_str(), cluster["primary"].as_str()), (Some("main"), Some("pg1")));
    assert_eq!(cluster["write_state"], "primary");
    assert_eq!(cluster["primary_lsn"], "1/5000");
    assert_eq!(doc.clusters[0].write_state, WriteState::Primary);
    let view = &snap.clusters[0];
    for (i, node) in json["clusters"][0]["nodes"].as_array().unwrap().iter().enumerate() {
        let n = &view.nodes[i];
        assert_eq!(node["name"], n.name.as_str());
        assert_eq!(node["address"], n.address_text());
        assert_eq!(node["port"].as_u64(), Some(u64::from(n.port)));
        assert_eq!((node["role"].as_str(), node["state"].as_str()), (Some(n.role.as_str()), Some(n.state.as_str())));
        assert_eq!(node["lag_ms"].as_u64(), n.lag.map(|d| d.as_millis() as u64));
        assert_eq!(node["lag_bytes"].as_u64(), n.lag_bytes);
        assert_eq!(node["replay_lsn"].as_str(), n.replay_lsn.map(|l| l.to_string()).as_deref());
        assert_eq!(node["weight"].as_u64(), Some(u64::from(n.weight)));
        assert_eq!(node["last_error"].as_str(), n.last_error.as_deref());
        assert_eq!(node["last_probe_ms"].as_f64(), Some(2.0));
        assert_eq!(node["eligible"].as_bool(), Some(view.endpoints[0].verdicts[i].is_eligible()));
        for (e, verdict) in view.endpoints.iter().zip(node["endpoints"].as_array().unwrap()) {
            assert_eq!(verdict["endpoint"], e.label.as_str());
            assert_eq!(verdict["eligible"].as_bool(), Some(e.verdicts[i].is_eligible()));
            assert_eq!(verdict["reason"].as_str(), reason(e.verdicts[i]).as_deref(), "{} {}", n.name, e.label);
        }
    }
    // The fixture covers every interesting verdict, so the loop above compared them all.
    let read: Vec<_> = view.endpoints[0].verdicts.iter().map(|v| reason(*v)).collect();
    let lag = Reason::Lag { lag: Duration::from_millis(1500), max: Duration::from_millis(100) };
    let want = [Some(Reason::Primary), None, Some(lag), Some(Reason::Down), Some(Reason::Drained)];
    assert_eq!(read, want.map(|r| r.map(|r| r.to_string())));
    assert_eq!(json["clusters"][0]["endpoints"][0]["eligible"], serde_json::json!(["pg2"]));
    assert_eq!(json["clusters"][0]["endpoints"][1]["eligible"], serde_json::json!(["pg3"]));

    let (code, ctype, text) = get(server.addr, "/metrics").await;
    assert_eq!(code, 200);
    assert!(ctype.starts_with("text/plain; version=0.0.4"), "{ctype}");
    assert_eq!(metric(&text, r#"lagdns_node_lag_seconds{cluster="main",node="pg3"}"#), Some(1.5));
    assert_eq!(metric(&text, r#"lagdns_node_lag_bytes{cluster="main",node="pg3"}"#), Some(8192.0));
    assert_eq!(metric(&text, r#"lagdns_node_up{cluster="main",node="pg4"}"#), Some(0.0));
    assert_eq!(metric(&text, r#"lagdns_node_is_primary{cluster="main",node="pg1"}"#), Some(1.0));
    assert_eq!(metric(&text, r#"lagdns_node_eligible{cluster="main",node="pg2",endpoint="read"}"#), Some(1.0));
    assert_eq!(metric(&text, r#"lagdns_node_eligible{cluster="main",node="pg5",endpoint="read"}"#), Some(0.0));
    assert_eq!(metric(&text, r#"lagdns_probe_errors_total{cluster="main",node="pg4"}"#), Some(7.0));
    assert_eq!(metric(&text, r#"lagdns_queries_total{kind="write",qtype="A",rcode="NOERROR"}"#), Some(1.0));
    assert_eq!(metric(&text, "lagdns_soa_serial"), Some(9.0));
    assert_eq!(metric(&text, "lagdns_ready"), Some(1.0));
    assert_eq!(metric(&text, r#"lagdns_split_brain{cluster="main"}"#), Some(0.0));

    for body in [&body, &text] {
        assert!(!body.contains(SECRET) && !body.contains("host=127") && !body.contains("dsn"), "a DSN leaked");
    }

    // Each request loads the current snapshot.
    let mut next = snapshot(10);
    next.cluster_mut(0).write = WriteTarget::Stale { node: 0, since: next.built - Duration::from_secs(2) };
    server.store.publish(next);
    stats.record(QueryKind::Write, Qtype::A, Rcode::NoError);
    let doc: StatusDoc = serde_json::from_str(&get(server.addr, "/status").await.2).unwrap();
    assert_eq!(
        (doc.serial, doc.clusters[0].write_state, doc.clusters[0].stale_for_ms),
        (10, WriteState::Stale, Some(2000))
    );
    let text = get(server.addr, "/metrics").await.2;
    assert_eq!(metric(&text, r#"lagdns_write_stale{cluster="main"}"#), Some(1.0));
    assert_eq!(metric(&text, r#"lagdns_queries_total{kind="write",qtype="A",rcode="NOERROR"}"#), Some(2.0));

    server.cancel.cancel();
    let stopped = tokio::time::timeout(Duration::from_secs(5), server.task).await;
    assert!(matches!(stopped, Ok(Ok(Ok(())))), "serve stops cleanly on cancel: {stopped:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_command_reads_the_server() {
    let server = start(Arc::new(QueryStats::default())).await;
    let addr = server.addr;
    let (doc, printed) = tokio::task::spawn_blocking(move || {
        let doc = lagdns::cmd::status::fetch(&format!("http://{addr}/")).unwrap();
        lagdns::cmd::status::run(&addr.to_string(), false).map(|_| doc)
    })
    .await
    .unwrap()
    .map(|doc| {
        let table = lagdns::cmd::status::render_table(&doc);
        (doc, table)
    })
    .expect("lagdns status succeeds against a running server");
    assert_eq!(doc, StatusDoc::from_snapshot(&server.store.snapshot()));
    assert!(printed.contains("cluster main: write.db.internal: pg1 (primary)"), "{printed}");
    let row =
        |name: &str| printed.lines().find(|l| l.split_whitespace().take(2).eq(["main", name])).unwrap().to_string();
    assert!(row("pg3").contains("lag 1500ms > max_lag 100ms"), "{printed}");
    assert!(row("pg5").contains("drained (weight 0)"), "{printed}");
    assert!(row("pg2").contains("eligible"), "{printed}");
    assert!(printed.contains("pg4: last error: connect: connection refused"), "{printed}");
    assert!(!printed.contains(SECRET));

    server.cancel.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(5), server.task).await.expect("serve stops");
    let err = tokio::task::spawn_blocking(move || lagdns::cmd::status::run(&addr.to_string(), false)).await.unwrap();
    assert!(err.unwrap_err().to_string().contains("cannot reach lagdns"), "a stopped server is a clear error");
}

/// `lagdns status` (the real binary): exit code and output for `http`.
fn status_binary(http: SocketAddr, json: bool) -> (i32, String, String) {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_lagdns"));
    cmd.args(["status", "--http", &http.to_string()]);
    if json {
        cmd.arg("--json");
    }
    let out = cmd.output().unwrap();
    let text = |b: Vec<u8>| String::from_utf8(b).unwrap();
    (out.status.code().unwrap_or(-1), text(out.stdout), text(out.stderr))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_and_status_exit_codes_follow_readiness_and_conflicts() {
    let server = start(Arc::new(QueryStats::default())).await;
    let addr = server.addr;
    let status = |json| tokio::task::spawn_blocking(move || status_binary(addr, json));
    // ready, a primary, no conflict
    server
        .store
        .publish(SnapshotBuilder::from_config(config()).ready(true).write("main", WriteTarget::Primary(0)).build());
    assert_eq!(get(addr, "/readyz").await.0, 200);
    let (code, out, err) = status(true).await.unwrap();
    assert_eq!(code, 0, "{out}{err}");
    let doc: StatusDoc = serde_json::from_str(&out).expect("--json prints the /status document");
    assert_eq!(doc, StatusDoc::from_snapshot(&server.store.snapshot()));
    // a split brain: exit 2, saying why
    let conflict =
        lagdns::topology::Conflict { nodes: vec![0, 1], why: lagdns::topology::ConflictKind::TimelineUnknown };
    server.store.publish(
        SnapshotBuilder::from_config(config()).ready(true).write("main", WriteTarget::Conflict(conflict)).build(),
    );
    let (code, out, err) = status(false).await.unwrap();
    assert_eq!(code, 2, "{out}{err}");
    assert!(err.contains("cluster main: split brain"), "{err}");
    assert!(out.contains("SPLIT BRAIN"), "the table is still printed: {out}");
    // not ready: /readyz 503 (while /healthz stays 200), exit 2
    server.store.publish(SnapshotBuilder::from_config(config()).ready(false).build());
    let (code, body, _) = get(addr, "/readyz").await;
    assert_eq!((code, get(addr, "/healthz").await.0), (503, 200), "{body}");
    let (code, _, err) = status(false).await.unwrap();
    assert_eq!(code, 2);
    assert!(err.contains("not ready") && err.contains("no known primary"), "{err}");
    // unreachable: exit 1
    server.cancel.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(5), server.task).await.expect("serve stops");
    let (code, _, err) = status(false).await.unwrap();
    assert_eq!(code, 1, "{err}");
}
