//! Faults injected into a real primary and real streaming replicas while lagdns
//! serves: what DNS answers before, during and after, and what it must never answer.
//! Deadlines derive from the probe settings each test writes, with margin for a
//! loaded 2-core machine; conditions are polled, never slept on.

use std::time::Duration;

use crate::common::{
    self, addrs, eventually, free_port, http_get, probe_connections, query, rcode, start_cluster, txt, Proto,
    ServeProcess, Settings, Stack,
};
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;
use tokio::time::Instant;

const READ: &str = "read.db.internal.";
const WRITE: &str = "write.db.internal.";

fn all() -> Settings {
    Settings { answers: "all", ..Settings::default() }
}

/// Queries `name` for `period` and fails if any answer names `forbidden`.
async fn never_answers(stack: &Stack, name: &str, forbidden: &str, period: Duration) {
    let until = Instant::now() + period;
    while Instant::now() < until {
        let (_, names) = stack.answer(name).await;
        assert!(!names.iter().any(|n| n == forbidden), "{name} answered {forbidden}: {names:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn status(stack: &Stack) -> serde_json::Value {
    let (code, body) = http_get(stack.http(), "/status").await;
    assert_eq!(code, 200);
    serde_json::from_str(&body).unwrap()
}

fn node<'a>(doc: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    doc["clusters"][0]["nodes"].as_array().unwrap().iter().find(|n| n["name"] == name).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paused_replay_is_never_answered_while_lagging() {
    let mut stack = Stack::start(2, all()).await;
    let within = stack.settings.rounds(6);
    stack.wait_answer(READ, &["pg2", "pg3"], within).await;
    let _writer = stack.cluster.node("pg1").start_writer(Duration::from_millis(20));
    stack.cluster.node("pg2").pause_replay().unwrap();
    stack.wait_answer(READ, &["pg3"], within).await;
    never_answers(&stack, READ, "pg2", Duration::from_secs(3)).await;
    let doc = status(&stack).await;
    assert!(node(&doc, "pg2")["lag_ms"].as_u64().unwrap() > 500, "{doc}");
    stack.cluster.node("pg2").resume_replay().unwrap();
    stack.wait_answer(READ, &["pg2", "pg3"], within).await;
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_cut_off_from_the_primary_shows_growing_lag_and_is_removed() {
    let mut stack = Stack::start(2, all()).await;
    let within = stack.settings.rounds(6);
    stack.wait_answer(READ, &["pg2", "pg3"], within).await;
    let _writer = stack.cluster.node("pg1").start_writer(Duration::from_millis(20));
    stack.cluster.node("pg3").disconnect_upstream().unwrap();
    stack.wait_answer(READ, &["pg2"], within).await;
    let first = node(&status(&stack).await, "pg3")["lag_ms"].as_u64().unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await; // let real time pass: lag must grow with it
    let later = node(&status(&stack).await, "pg3")["lag_ms"].as_u64().unwrap();
    assert!(later >= first + 1000, "lag grows with real time: {first}ms then {later}ms");
    never_answers(&stack, READ, "pg3", Duration::from_secs(1)).await;
    stack.cluster.node("pg3").reconnect_upstream().unwrap();
    stack.wait_answer(READ, &["pg2", "pg3"], within).await;
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_replica_goes_down_without_delaying_answers_or_other_probes() {
    let settings = Settings { timeout_ms: 1000, ..all() };
    let mut stack = Stack::start(2, settings).await;
    let s = stack.settings.clone();
    stack.wait_answer(READ, &["pg2", "pg3"], s.rounds(4)).await;
    let frozen_at = Instant::now();
    stack.cluster.node("pg2").freeze().unwrap();
    // every answer during the freeze comes back fast: the answer path never waits on a probe
    let mut slowest = Duration::ZERO;
    let mut pg3_probes = Vec::new();
    let deadline = frozen_at + s.rounds(s.fall as u64 + 2);
    loop {
        let t = Instant::now();
        let (code, names) = stack.answer(READ).await;
        slowest = slowest.max(t.elapsed());
        assert_eq!(code, ResponseCode::NoError);
        if names == ["pg3"] {
            break;
        }
        assert!(Instant::now() < deadline, "pg2 still answered after {:?}: {names:?}", frozen_at.elapsed());
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let removed_after = frozen_at.elapsed();
    assert!(slowest < Duration::from_millis(500), "a query took {slowest:?} during the freeze");
    for _ in 0..2 {
        pg3_probes.push(node(&status(&stack).await, "pg3")["last_probe"].as_str().unwrap().to_string());
        tokio::time::sleep(Duration::from_millis(s.interval_ms * 3)).await;
    }
    assert_ne!(pg3_probes[0], pg3_probes[1], "pg3 is still probed every interval while pg2 hangs");
    let doc = status(&stack).await;
    assert_eq!(node(&doc, "pg2")["state"], "down", "{doc}");
    assert!(node(&doc, "pg2")["last_error"].as_str().unwrap_or_default().contains("timeout"), "{doc}");
    eprintln!("frozen replica removed after {removed_after:?} (fall {} × timeout {}ms)", s.fall, s.timeout_ms);
    stack.cluster.node("pg2").thaw().unwrap();
    stack.wait_answer(READ, &["pg2", "pg3"], s.rounds(s.rise as u64 + 4)).await;
    // the probe left nothing behind: one connection, no transaction open, no query running
    eventually(s.rounds(4), "one idle probe connection on pg2", || async {
        let pg2 = stack.cluster.node("pg2");
        let busy = pg2
            .sql("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'lagdns' AND state <> 'idle' AND pid <> pg_backend_pid()")
            .unwrap();
        let n = probe_connections(pg2);
        if busy.trim() == "0" && n == 1 { Ok(()) } else { Err(format!("{n} connections, {busy} not idle")) }
    })
    .await;
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_replica_is_down_quickly_and_reconnects_when_it_returns() {
    let mut stack = Stack::start(2, all()).await;
    let s = stack.settings.clone();
    stack.wait_answer(READ, &["pg2", "pg3"], s.rounds(4)).await;
    let stopped = Instant::now();
    stack.cluster.node("pg3").stop().unwrap();
    stack.wait_answer(READ, &["pg2"], s.rounds(s.fall as u64 + 2)).await;
    eprintln!("stopped replica removed after {:?}", stopped.elapsed());
    let doc = status(&stack).await;
    assert!(node(&doc, "pg3")["last_error"].as_str().unwrap_or_default().contains("connect"), "{doc}");
    stack.cluster.node("pg3").start().unwrap();
    stack.wait_answer(READ, &["pg2", "pg3"], s.rounds(s.rise as u64 + 8)).await;
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_primary_outage_keeps_write_on_the_last_primary_flagged_stale_and_reads_working() {
    let mut stack = Stack::start(2, all()).await;
    let s = stack.settings.clone();
    stack.wait_answer(READ, &["pg2", "pg3"], s.rounds(4)).await;
    stack.cluster.node("pg1").stop().unwrap();
    eventually(s.rounds(s.fall as u64 + 2), "write flagged stale", || async {
        let doc = status(&stack).await;
        if doc["clusters"][0]["write_state"] == "stale" {
            Ok(())
        } else {
            Err(doc.to_string())
        }
    })
    .await;
    let (code, names) = stack.answer(WRITE).await;
    assert_eq!((code, names), (ResponseCode::NoError, vec!["pg1".to_string()]), "fail open to the last primary");
    let t = txt(&query(stack.dns(), WRITE, RecordType::TXT, Proto::Udp).await);
    assert!(t.iter().any(|l| l.starts_with("pg1 ") && l.contains("stale")), "{t:?}");
    // both replicas had replayed the primary's last position: reads keep working
    for _ in 0..20 {
        assert_eq!(stack.answer(READ).await.1, ["pg2", "pg3"]);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failover_moves_write_and_an_unfenced_old_primary_loses_to_the_newer_timeline() {
    let mut stack = Stack::start(2, all()).await;
    let s = stack.settings.clone();
    stack.wait_answer(WRITE, &["pg1"], s.rounds(4)).await;
    stack.cluster.node("pg1").stop().unwrap();
    let promoted = Instant::now();
    stack.cluster.node("pg2").promote().unwrap();
    stack.wait_answer(WRITE, &["pg2"], s.rounds(2)).await;
    eprintln!("write followed the promotion after {:?}", promoted.elapsed());
    never_answers(&stack, WRITE, "pg1", Duration::from_secs(2)).await;
    // the old primary comes back unfenced: two nodes out of recovery, same system
    stack.cluster.node("pg1").start().unwrap();
    eventually(s.rounds(s.rise as u64 + 4), "the rival is reported", || async {
        let doc = status(&stack).await;
        let c = &doc["clusters"][0];
        if c["rivals"] == serde_json::json!(["pg1"]) && node(&doc, "pg1")["role"] == "primary" {
            Ok(())
        } else {
            Err(doc.to_string())
        }
    })
    .await;
    never_answers(&stack, WRITE, "pg1", Duration::from_secs(2)).await;
    assert_eq!(stack.answer(WRITE).await.1, ["pg2"]);
    let t = txt(&query(stack.dns(), WRITE, RecordType::TXT, Proto::Udp).await);
    assert!(t.iter().any(|l| l.starts_with("pg1 ") && l.contains("split brain")), "{t:?}");
    let (_, metrics) = http_get(stack.http(), "/metrics").await;
    assert!(
        metrics.lines().any(|l| l.starts_with("lagdns_split_brain_events_total{") && !l.ends_with(" 0")),
        "{metrics}"
    );
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_failover_a_replica_holding_wal_the_new_primary_never_had_is_not_answered() {
    let mut stack = Stack::start(2, all()).await;
    let s = stack.settings.clone();
    stack.wait_answer(READ, &["pg2", "pg3"], s.rounds(4)).await;
    let (pg1, pg2, pg3) = (stack.cluster.node("pg1"), stack.cluster.node("pg2"), stack.cluster.node("pg3"));
    // pg2 stops receiving; pg3 keeps replaying writes that pg2 will never see
    pg2.disconnect_upstream().unwrap();
    let writer = pg1.start_writer(Duration::from_millis(10));
    let pg2_at = pg2.replay_lsn().unwrap();
    eventually(s.rounds(8), "pg3 well ahead of pg2", || async {
        let ahead = pg3.replay_lsn().unwrap().0.saturating_sub(pg2_at.0);
        if ahead > 64 * 1024 {
            Ok(())
        } else {
            Err(format!("{ahead} bytes ahead"))
        }
    })
    .await;
    drop(writer);
    pg1.stop().unwrap();
    pg2.promote().unwrap();
    stack.wait_answer(WRITE, &["pg2"], s.rounds(4)).await;
    assert!(pg3.replay_lsn().unwrap() > pg2.current_lsn().unwrap(), "pg3 holds WAL beyond the new primary");
    // by position pg3 looks caught up, but it is on the old timeline: never a read answer
    never_answers(&stack, READ, "pg3", Duration::from_secs(3)).await;
    assert_eq!(stack.answer(READ).await.1, ["pg2"], "no replica qualifies: the primary");
    let t = txt(&query(stack.dns(), READ, RecordType::TXT, Proto::Udp).await);
    assert!(t.iter().any(|l| l.starts_with("pg3 ") && l.contains("timeline 1 behind the primary's 2")), "{t:?}");
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_unrelated_primaries_make_write_fail_closed() {
    let main = start_cluster(1).await;
    let stranger = start_cluster(0).await; // its own initdb: another system identifier
    let other = &stranger.nodes()[0];
    let extra = other.config_table(100).replace("name = \"pg1\"", "name = \"stranger\"");
    let mut stack = Stack::serve(main, Settings { extra_nodes: extra, ..all() }).await;
    let s = stack.settings.clone();
    let doc = eventually(s.rounds(4), "split brain reported", || async {
        let doc = status(&stack).await;
        if doc["ready"] == true && doc["clusters"][0]["write_state"] == "split_brain" {
            Ok(doc)
        } else {
            Err(doc.to_string())
        }
    })
    .await;
    assert_eq!(stack.answer(WRITE).await.0, ResponseCode::ServFail, "write fails closed");
    assert_eq!(doc["clusters"][0]["write_state"], "split_brain", "{doc}");
    assert_eq!(doc["clusters"][0]["conflict"]["reason"], "system identifiers differ", "{doc}");
    let t = txt(&query(stack.dns(), WRITE, RecordType::TXT, Proto::Tcp).await);
    assert!(t.iter().filter(|l| l.contains("split brain (system identifiers differ)")).count() == 2, "{t:?}");
    let (_, metrics) = http_get(stack.http(), "/metrics").await;
    assert!(metrics.lines().any(|l| l.starts_with("lagdns_split_brain{") && l.ends_with(" 1")), "{metrics}");
    stack.shutdown().await;
    drop(stranger);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drained_replica_is_answered_only_through_the_open_fallback() {
    let extra = "\n[[cluster.endpoint]]\nname = \"open\"\nfallback = \"open\"\nmax_lag = \"100ms\"\n".to_string();
    let settings = Settings { weights: vec![("pg3", 0)], cluster_extra: extra, ..all() };
    let mut stack = Stack::start(2, settings).await;
    let s = stack.settings.clone();
    stack.wait_answer(READ, &["pg2"], s.rounds(4)).await;
    never_answers(&stack, READ, "pg3", Duration::from_secs(1)).await;
    stack.wait_answer("open.db.internal.", &["pg2"], s.rounds(2)).await;
    // pg2 falls behind: nobody qualifies, `open` answers every up replica, pg3 included
    let _writer = stack.cluster.node("pg1").start_writer(Duration::from_millis(20));
    stack.cluster.node("pg2").pause_replay().unwrap();
    stack.wait_answer("open.db.internal.", &["pg2", "pg3"], s.rounds(6)).await;
    stack.wait_answer(READ, &["pg1"], s.rounds(2)).await;
    stack.cluster.node("pg2").resume_replay().unwrap();
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_fallback_mode_when_no_replica_qualifies() {
    let extra = "\n[[cluster.endpoint]]\nname = \"fb-none\"\nfallback = \"none\"\n\n[[cluster.endpoint]]\nname = \"fb-open\"\nfallback = \"open\"\n".to_string();
    let mut stack = Stack::start(2, Settings { cluster_extra: extra, ..all() }).await;
    let s = stack.settings.clone();
    stack.wait_answer(READ, &["pg2", "pg3"], s.rounds(4)).await;
    let _writer = stack.cluster.node("pg1").start_writer(Duration::from_millis(20));
    stack.cluster.node("pg2").pause_replay().unwrap();
    stack.cluster.node("pg3").pause_replay().unwrap();
    stack.wait_answer(READ, &["pg1"], s.rounds(6)).await; // fallback = "primary"
    let none = query(stack.dns(), "fb-none.db.internal.", RecordType::A, Proto::Udp).await;
    assert_eq!(rcode(&none), ResponseCode::NoError, "NODATA");
    assert!(none.answers.is_empty() && none.metadata.authoritative);
    assert!(none.authorities.iter().any(|r| r.record_type() == RecordType::SOA), "SOA in authority");
    let open = query(stack.dns(), "fb-open.db.internal.", RecordType::A, Proto::Udp).await;
    let got: Vec<_> = addrs(&open);
    assert_eq!(got.len(), 2, "every up replica: {got:?}");
    // least lag first
    let doc = status(&stack).await;
    let lag = |n: &str| node(&doc, n)["lag_ms"].as_u64().unwrap_or(u64::MAX);
    let first = stack.name_of(got[0]);
    let other = if first == "pg2" { "pg3" } else { "pg2" };
    assert!(lag(&first) <= lag(other) + 300, "least lag first: {first} {} vs {other} {}", lag(&first), lag(other));
    stack.cluster.node("pg2").resume_replay().unwrap();
    stack.cluster.node("pg3").resume_replay().unwrap();
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starting_with_a_node_down_servfails_only_until_the_first_round_ends() {
    let cluster = start_cluster(2).await;
    cluster.node("pg3").stop().unwrap();
    cluster.node("pg2").freeze().unwrap(); // makes the first round last a full timeout
    let settings = Settings { timeout_ms: 2000, ..all() };
    let mut stack = Stack::serve(cluster, settings).await;
    let (code, _) = stack.answer(WRITE).await;
    assert_eq!(code, ResponseCode::ServFail, "before the first round: lagdns never guesses");
    stack.wait_answer(WRITE, &["pg1"], stack.settings.rounds(2)).await;
    let doc = status(&stack).await;
    assert_eq!(node(&doc, "pg3")["state"], "down", "down from the first round: {doc}");
    assert_eq!(node(&doc, "pg2")["state"], "down", "{doc}");
    assert_eq!(stack.answer(READ).await.1, ["pg1"], "no replica: fallback to the primary");
    stack.cluster.node("pg2").thaw().unwrap();
    stack.wait_answer(READ, &["pg2"], stack.settings.rounds(6)).await;
    stack.shutdown().await;
}

/// Waits until the real binary's `read` answers exactly `want`.
async fn wait_read(p: &ServeProcess, cluster: &localpg::LocalCluster, want: &[&str], within: Duration) {
    eventually(within, &format!("read → {want:?}"), || async {
        let got = p.answer(READ, cluster).await;
        if got.1 == want {
            Ok(())
        } else {
            Err(format!("{got:?}"))
        }
    })
    .await
}

/// A config for the real binary on fixed free ports.
fn serve_config(cluster: &localpg::LocalCluster, settings: &Settings) -> (String, (u16, u16)) {
    let ports = (free_port(), free_port());
    let s = Settings { ports, ..settings.clone() };
    (common::config_text(cluster, &s), ports)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_with_an_invalid_config_keeps_the_old_one_and_drops_no_query() {
    let cluster = start_cluster(2).await;
    let s = all();
    let (text, ports) = serve_config(&cluster, &s);
    let mut p = ServeProcess::spawn(cluster.dir(), &text, ports);
    p.wait_listening(Duration::from_secs(30)).await;
    wait_read(&p, &cluster, &["pg2", "pg3"], s.rounds(6)).await;
    std::fs::write(&p.config, text.replace("fall = 2", "fall = 2\nfalll = 3")).unwrap();
    p.signal(libc::SIGHUP);
    let until = Instant::now() + Duration::from_secs(3);
    let mut answered = 0;
    while Instant::now() < until {
        assert_eq!(p.answer(READ, &cluster).await, (ResponseCode::NoError, vec!["pg2".into(), "pg3".into()]));
        answered += 1;
    }
    assert!(answered > 10);
    let log = p.log_text();
    assert!(log.contains("config reload failed") && log.contains("falll"), "{log}");
    let reload_metrics = || async {
        let (_, m) = http_get(p.http, "/metrics").await;
        let value = |name: &str| m.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse::<f64>().ok());
        (value("lagdns_config_last_reload_successful"), value("lagdns_config_last_reload_success_timestamp_seconds"))
    };
    let (ok, at) = reload_metrics().await;
    assert_eq!(ok, Some(0.0), "a failed reload shows in /metrics");
    // a good reload sets it back, with a newer timestamp
    std::fs::write(&p.config, &text).unwrap();
    p.signal(libc::SIGHUP);
    let (ok2, at2) = eventually(Duration::from_secs(5), "a good reload", || async {
        let got = reload_metrics().await;
        if got.0 == Some(1.0) {
            Ok(got)
        } else {
            Err(format!("{got:?}"))
        }
    })
    .await;
    assert!(ok2 == Some(1.0) && at2 > at, "{at:?} → {at2:?}");
    p.signal(libc::SIGTERM);
    assert!(p.wait_exit(Duration::from_secs(10)).await.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_adds_removes_and_reweights_nodes_within_an_interval() {
    let cluster = start_cluster(2).await;
    let s = Settings { skip: vec!["pg3"], ..all() };
    let (text, ports) = serve_config(&cluster, &s);
    let mut p = ServeProcess::spawn(cluster.dir(), &text, ports);
    p.wait_listening(Duration::from_secs(30)).await;
    let within = s.rounds(6);
    wait_read(&p, &cluster, &["pg2"], within).await;
    assert_eq!(probe_connections(cluster.node("pg3")), 0);
    // add pg3
    let with_all = common::config_text(&cluster, &Settings { ports, ..all() });
    std::fs::write(&p.config, &with_all).unwrap();
    p.signal(libc::SIGHUP);
    wait_read(&p, &cluster, &["pg2", "pg3"], within).await;
    // remove pg2: its probe stops and its connection closes
    let without_pg2 = common::config_text(&cluster, &Settings { ports, skip: vec!["pg2"], ..all() });
    std::fs::write(&p.config, &without_pg2).unwrap();
    p.signal(libc::SIGHUP);
    wait_read(&p, &cluster, &["pg3"], within).await;
    eventually(s.rounds(4), "pg2's probe connection closed", || async {
        match probe_connections(cluster.node("pg2")) {
            0 => Ok(()),
            n => Err(format!("{n} connections")),
        }
    })
    .await;
    // drain pg3: nobody qualifies, read falls back to the primary
    let drained =
        common::config_text(&cluster, &Settings { ports, skip: vec!["pg2"], weights: vec![("pg3", 0)], ..all() });
    std::fs::write(&p.config, &drained).unwrap();
    p.signal(libc::SIGHUP);
    wait_read(&p, &cluster, &["pg1"], within).await;
    p.signal(libc::SIGTERM);
    assert!(p.wait_exit(Duration::from_secs(10)).await.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_load_answers_in_flight_queries_closes_probes_and_exits_zero() {
    let cluster = start_cluster(2).await;
    let s = all();
    let (text, ports) = serve_config(&cluster, &s);
    let mut p = ServeProcess::spawn(cluster.dir(), &text, ports);
    p.wait_listening(Duration::from_secs(30)).await;
    wait_read(&p, &cluster, &["pg2", "pg3"], s.rounds(6)).await;
    // load: 4 clients over TCP, each query must be answered until the server closes
    let dns = p.dns;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut clients = Vec::new();
    for _ in 0..4 {
        let stop = stop.clone();
        clients.push(tokio::spawn(async move {
            let mut answered = 0u32;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                match tokio::time::timeout(Duration::from_secs(2), common::try_query(dns, READ)).await {
                    Ok(Ok(m)) => {
                        assert_eq!(m.metadata.response_code, ResponseCode::NoError);
                        answered += 1;
                    }
                    Ok(Err(_)) => break, // connection refused or closed: the server is gone
                    Err(_) => panic!("a query hung during shutdown"),
                }
            }
            answered
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    p.signal(libc::SIGTERM);
    let status = p.wait_exit(Duration::from_secs(15)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut total = 0;
    for c in clients {
        total += c.await.unwrap();
    }
    assert!(status.success(), "exit 0 on SIGTERM: {status:?}\n{}", p.log_text());
    assert!(total > 50, "the load ran: {total} answered");
    for n in cluster.nodes() {
        eventually(Duration::from_secs(10), "probe connections closed", || async {
            match probe_connections(n) {
                0 => Ok(()),
                k => Err(format!("{}: {k}", n.name)),
            }
        })
        .await;
    }
}
