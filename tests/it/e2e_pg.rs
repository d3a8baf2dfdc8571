//! End to end against a real primary and two real streaming replicas on loopback
//! addresses: lagdns serves them in-process and is queried over real UDP and TCP (A,
//! TXT, SRV and node names).

use std::time::Duration;

use crate::common::{addrs, eventually, http_get, query, rcode, srv, txt, Proto, Settings, Stack};
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{RData, RecordType};

fn all_answers() -> Settings {
    Settings { answers: "all", ..Settings::default() }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_is_the_primary_and_read_only_replicas_over_udp_and_tcp() {
    let mut stack = Stack::start(2, all_answers()).await;
    let within = stack.settings.rounds(4);
    stack.wait_answer("read.db.internal.", &["pg2", "pg3"], within).await;
    for proto in [Proto::Udp, Proto::Tcp] {
        let w = query(stack.dns(), "write.db.internal.", RecordType::A, proto).await;
        assert_eq!(rcode(&w), ResponseCode::NoError);
        assert!(w.metadata.authoritative, "AA set");
        assert_eq!(addrs(&w), vec![stack.addr_of("pg1")], "{proto:?}");
        assert_eq!(w.answers[0].ttl, 1);
        let r = query(stack.dns(), "read.db.internal.", RecordType::A, proto).await;
        let mut got = addrs(&r);
        got.sort();
        assert_eq!(got, vec![stack.addr_of("pg2"), stack.addr_of("pg3")], "{proto:?}");
    }
    // TXT: one string per node, and they agree with the A answers
    let t = txt(&query(stack.dns(), "read.db.internal.", RecordType::TXT, Proto::Udp).await);
    assert_eq!(t.len(), 3, "{t:?}");
    assert!(
        t.iter().any(|l| l.starts_with("pg1 ") && l.contains("role=primary") && l.contains("ineligible: primary")),
        "{t:?}"
    );
    for r in ["pg2 ", "pg3 "] {
        assert!(t.iter().any(|l| l.starts_with(r) && l.contains("role=replica") && l.ends_with(" eligible")), "{t:?}");
    }
    let wt = txt(&query(stack.dns(), "write.db.internal.", RecordType::TXT, Proto::Tcp).await);
    assert!(wt.iter().any(|l| l.starts_with("pg1 ") && l.ends_with("write: answered")), "{wt:?}");
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paused_replay_leaves_read_while_the_primary_writes_and_comes_back_on_resume() {
    let mut stack = Stack::start(2, all_answers()).await;
    let within = stack.settings.rounds(6);
    stack.wait_answer("read.db.internal.", &["pg2", "pg3"], within).await;
    let _writer = stack.cluster.node("pg1").start_writer(Duration::from_millis(50));
    stack.cluster.node("pg2").pause_replay().unwrap();
    stack.wait_answer("read.db.internal.", &["pg3"], within).await;
    let t = txt(&query(stack.dns(), "read.db.internal.", RecordType::TXT, Proto::Udp).await);
    assert!(t.iter().any(|l| l.starts_with("pg2 ") && l.contains("ineligible: lag")), "{t:?}");
    stack.cluster.node("pg2").resume_replay().unwrap();
    stack.wait_answer("read.db.internal.", &["pg2", "pg3"], within).await;
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_primary_keeps_both_replicas_eligible() {
    let mut stack = Stack::start(2, all_answers()).await;
    stack.wait_answer("read.db.internal.", &["pg2", "pg3"], stack.settings.rounds(4)).await;
    // several seconds without a single write: time lag must stay zero
    let until = tokio::time::Instant::now() + Duration::from_secs(6);
    while tokio::time::Instant::now() < until {
        let (code, names) = stack.answer("read.db.internal.").await;
        assert_eq!((code, names), (ResponseCode::NoError, vec!["pg2".to_string(), "pg3".to_string()]));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lsn_names_answer_only_replicas_that_replayed_the_position() {
    let mut stack = Stack::start(2, all_answers()).await;
    let within = stack.settings.rounds(6);
    stack.wait_answer("read.db.internal.", &["pg2", "pg3"], within).await;
    let pg2 = stack.cluster.node("pg2");
    pg2.pause_replay().unwrap();
    let pg1 = stack.cluster.node("pg1");
    pg1.sql("CREATE TABLE IF NOT EXISTS lsn_probe (x int); INSERT INTO lsn_probe VALUES (1)").unwrap();
    // the position just after the write (the insert position: the test cluster runs
    // with synchronous_commit = off, so the flushed position may not include it yet)
    let lsn: lagdns::wal::Lsn = pg1.sql("SELECT pg_current_wal_insert_lsn()").unwrap().trim().parse().unwrap();
    let name = format!("lsn-{}.read.db.internal.", lsn.to_string().replace('/', "-"));
    // pg3 replays it; pg2 never does while paused
    stack.wait_answer(&name, &["pg3"], within).await;
    let m = query(stack.dns(), &name, RecordType::A, Proto::Udp).await;
    assert_eq!(m.answers[0].ttl, 0, "lsn- answers have TTL 0");
    // a position nobody has replayed yet: only the primary is sure to have it
    let future = format!("lsn-{:X}-0.read.db.internal.", (lsn.0 >> 32) + 16);
    stack.wait_answer(&future, &["pg1"], within).await;
    pg2.resume_replay().unwrap();
    stack.wait_answer(&name, &["pg2", "pg3"], within).await;
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_and_metrics_agree_with_the_dns_answers() {
    let mut stack = Stack::start(2, all_answers()).await;
    let within = stack.settings.rounds(6);
    stack.wait_answer("read.db.internal.", &["pg2", "pg3"], within).await;
    let _writer = stack.cluster.node("pg1").start_writer(Duration::from_millis(50));
    stack.cluster.node("pg3").pause_replay().unwrap();
    stack.wait_answer("read.db.internal.", &["pg2"], within).await;
    let (code, body) = http_get(stack.http(), "/status").await;
    assert_eq!(code, 200);
    let doc: serde_json::Value = serde_json::from_str(&body).unwrap();
    let cluster = &doc["clusters"][0];
    assert_eq!(cluster["primary"], "pg1", "{body}");
    let nodes = cluster["nodes"].as_array().unwrap();
    let by_name = |n: &str| nodes.iter().find(|x| x["name"] == n).unwrap().clone();
    assert_eq!(by_name("pg1")["role"], "primary");
    assert_eq!(by_name("pg2")["role"], "replica");
    let verdict = |n: &str| {
        let node = by_name(n);
        node["endpoints"]
            .as_array()
            .and_then(|e| e.iter().find(|x| x["endpoint"] == "read").cloned())
            .unwrap_or_default()
    };
    assert_eq!(verdict("pg2")["eligible"], true, "{body}");
    assert_eq!(verdict("pg3")["eligible"], false, "{body}");
    let reason = verdict("pg3")["reason"].as_str().unwrap_or_default().to_string();
    let t = txt(&query(stack.dns(), "read.db.internal.", RecordType::TXT, Proto::Udp).await);
    assert!(reason.starts_with("lag "), "{reason}");
    assert!(t.iter().any(|l| l.starts_with("pg3 ") && l.contains("ineligible: lag")), "{t:?}");
    let (code, metrics) = http_get(stack.http(), "/metrics").await;
    assert_eq!(code, 200);
    assert!(
        metrics.lines().any(|l| l.starts_with("lagdns_node_eligible")
            && l.contains("node=\"pg3\"")
            && l.contains("endpoint=\"read\"")
            && l.ends_with(" 0")),
        "{metrics}"
    );
    assert!(
        metrics.lines().any(|l| l.starts_with("lagdns_node_eligible")
            && l.contains("node=\"pg2\"")
            && l.contains("endpoint=\"read\"")
            && l.ends_with(" 1")),
        "{metrics}"
    );
    stack.cluster.node("pg3").resume_replay().unwrap();
    eventually(within, "pg3 back in /status", || async {
        let (_, body) = http_get(stack.http(), "/status").await;
        if body.contains("\"eligible\":true") && stack.answer("read.db.internal.").await.1.len() == 2 {
            Ok(())
        } else {
            Err(body)
        }
    })
    .await;
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn srv_lists_the_replicas_then_the_primary_at_their_node_names_and_ports() {
    let mut stack = Stack::start(2, all_answers()).await;
    let within = stack.settings.rounds(4);
    stack.wait_answer("read.db.internal.", &["pg2", "pg3"], within).await;
    let port = stack.cluster.node("pg1").port;
    for proto in [Proto::Udp, Proto::Tcp] {
        let r = query(stack.dns(), "_postgresql._tcp.read.db.internal.", RecordType::SRV, proto).await;
        assert_eq!(rcode(&r), ResponseCode::NoError);
        assert_eq!(srv(&r).len(), r.answers.len(), "only SRV records: {r:?}");
        let target = |n: &str| format!("{n}.main.db.internal.");
        assert_eq!(
            srv(&r),
            [(10, 100, port, target("pg2")), (10, 100, port, target("pg3")), (30, 100, port, target("pg1"))],
            "{proto:?}"
        );
        // the targets' addresses ride along, and are the node names' own answers
        for (extra, name) in r.additionals.iter().zip(["pg2", "pg3", "pg1"]) {
            assert_eq!(extra.name.to_ascii(), target(name));
            assert_eq!(extra.data, RData::A(A(stack.cluster.node(name).address)));
            let own = query(stack.dns(), &target(name), RecordType::A, proto).await;
            assert_eq!(addrs(&own), [stack.addr_of(name)]);
        }
        assert_eq!(r.additionals.len(), 3);
    }
    let w = query(stack.dns(), "_postgresql._tcp.write.db.internal.", RecordType::SRV, Proto::Udp).await;
    assert_eq!(srv(&w), [(0, 0, port, "pg1.main.db.internal.".to_string())]);
    stack.shutdown().await;
}
