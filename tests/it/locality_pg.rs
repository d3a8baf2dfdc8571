//! Locality (SPEC §8) against a real primary and two real streaming replicas: pg1 (the
//! primary) and pg2 in location `a`, pg3 in `b`; clients bound to 127.0.1.x are in `a`,
//! 127.0.2.x in `b`. Pausing pg2's replay while pg1 writes sends `a`'s `read` clients to
//! pg3 (`prefer`) and its `near` clients (`locality = "only"`) to the primary (the
//! fallback), and resuming brings both back to pg2; the reaction times are printed.
//! `/status` shows the locations and `/metrics` counts the answers as local or remote.

use std::net::IpAddr;
use std::time::Duration;

use hickory_proto::op::{Message, Query, ResponseCode};
use hickory_proto::rr::{Name, RecordType};
use tokio::time::Instant;

use crate::common::{addrs, http_get, query_from, txt, Settings, Stack};

/// Client sources (x values no other test uses).
const A1: &str = "127.0.1.111";
const A2: &str = "127.0.1.112";
const B1: &str = "127.0.2.111";

/// Where the nodes are, and the networks of the clients.
pub(crate) fn locality_settings() -> Settings {
    Settings {
        locations: vec![("pg1", "a"), ("pg2", "a"), ("pg3", "b")],
        cluster_extra: "\n[[cluster.endpoint]]\nname = \"near\"\nlocality = \"only\"\n".into(),
        tail: r#"
[locality]
[[locality.network]]
prefix = "127.0.1.0/24"
location = "a"
[[locality.network]]
prefix = "127.0.2.0/24"
location = "b"
"#
        .into(),
        ..Settings::default()
    }
}

/// The location of a node, as configured above.
fn location_of(node: &str) -> &'static str {
    match node {
        "pg3" => "b",
        _ => "a",
    }
}

fn location_of_client(source: &str) -> &'static str {
    if source.starts_with("127.0.1.") {
        "a"
    } else {
        "b"
    }
}

/// Waits until lagdns answers `read` with pg2 to `a`'s clients and pg3 to `b`'s.
pub(crate) async fn wait_placed(stack: &Stack, within: Duration) {
    crate::common::eventually(within, "each location's clients on its replica", || async {
        let (a, b) =
            (nodes_from(stack, A1, "read.db.internal.").await, nodes_from(stack, B1, "read.db.internal.").await);
        match a == ["pg2"] && b == ["pg3"] {
            true => Ok(()),
            false => Err(format!("a: {a:?}, b: {b:?}")),
        }
    })
    .await
}

/// The node names answered for `name` A over UDP from `source`.
async fn nodes_from(stack: &Stack, source: &str, name: &str) -> Vec<String> {
    let mut msg = Message::query();
    msg.add_query(Query::query(name.parse::<Name>().unwrap(), RecordType::A));
    let r = query_from(source.parse::<IpAddr>().unwrap(), stack.dns(), &msg).await;
    assert_eq!(r.metadata.response_code, ResponseCode::NoError, "{name} from {source}");
    addrs(&r).into_iter().map(|a| stack.name_of(a)).collect()
}

/// `lagdns_read_answers_total{locality="..."}` now.
async fn read_answers(stack: &Stack, locality: &str) -> u64 {
    let (_, metrics) = http_get(stack.http(), "/metrics").await;
    let prefix = format!("lagdns_read_answers_total{{locality=\"{locality}\"}} ");
    let line = metrics.lines().find(|l| l.starts_with(&prefix));
    let value = line.and_then(|l| l[prefix.len()..].trim().parse::<f64>().ok());
    value.unwrap_or_else(|| panic!("no {prefix} in /metrics:\n{metrics}")) as u64
}

/// Asks `read` and `near` from each source `times` times, checks every answer with
/// `check`, and returns how many answers were local and remote (the first record's
/// node in the client's location or not), for the metrics.
async fn ask_counted(stack: &Stack, sources: &[&str], times: usize, check: impl Fn(&str, &str, &str)) -> (u64, u64) {
    let (mut local, mut remote) = (0, 0);
    for _ in 0..times {
        for source in sources {
            for name in ["read", "near"] {
                let got = nodes_from(stack, source, &format!("{name}.db.internal.")).await;
                assert_eq!(got.len(), 1, "{name} from {source}: {got:?}");
                check(source, name, &got[0]);
                if location_of(&got[0]) == location_of_client(source) {
                    local += 1;
                } else {
                    remote += 1;
                }
            }
        }
    }
    (local, remote)
}

/// Checks that the metrics moved by exactly what `ask` counted.
async fn metrics_count(stack: &Stack, before: (u64, u64), counted: (u64, u64)) {
    let after = (read_answers(stack, "local").await, read_answers(stack, "remote").await);
    assert_eq!((after.0 - before.0, after.1 - before.1), counted, "local, remote answers: {before:?} → {after:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paused_replay_moves_a_locations_clients_to_the_other_replica_or_the_primary_and_back() {
    let mut stack = Stack::start(2, locality_settings()).await;
    let within = stack.settings.rounds(8);
    let settled = |want_a: &'static str| {
        let stack = &stack;
        async move {
            let (read, near) =
                (nodes_from(stack, A1, "read.db.internal.").await, nodes_from(stack, A1, "near.db.internal.").await);
            match read == [want_a] && near == [want_a] {
                true => Ok(()),
                false => Err(format!("read {read:?}, near {near:?}")),
            }
        }
    };
    crate::common::eventually(within, "a's clients on pg2", || settled("pg2")).await;

    // /status: each node's location, the [locality] summary, the endpoint's policy
    let (code, body) = http_get(stack.http(), "/status").await;
    assert_eq!(code, 200);
    let doc: serde_json::Value = serde_json::from_str(&body).unwrap();
    let cluster = &doc["clusters"][0];
    for node in cluster["nodes"].as_array().unwrap() {
        let name = node["name"].as_str().unwrap();
        assert_eq!(node["location"], location_of(name), "{name}: {body}");
    }
    assert_eq!(doc["locality"], serde_json::json!({ "ecs": true, "default": null, "networks": 2 }), "{body}");
    let near = cluster["endpoints"].as_array().unwrap().iter().find(|e| e["label"] == "near").unwrap();
    assert_eq!(near["locality"], "only", "{body}");

    // healthy: every client gets its own location's replica; all of it local
    let before = (read_answers(&stack, "local").await, read_answers(&stack, "remote").await);
    let healthy = |source: &str, name: &str, got: &str| {
        let want = if location_of_client(source) == "a" { "pg2" } else { "pg3" };
        assert_eq!(got, want, "{name} from {source} while every replica is healthy");
    };
    let counted = ask_counted(&stack, &[A1, A2, B1], 5, healthy).await;
    assert_eq!(counted, (30, 0));
    metrics_count(&stack, before, counted).await;
    let t = txt(&query_txt(&stack, A1).await);
    assert_eq!(t[0], format!("client {A1} location=a via source"));
    assert!(t.iter().any(|l| l.starts_with("pg2 ") && l.contains(" location=a ") && l.ends_with(" eligible")), "{t:?}");

    // pg2 stops replaying while pg1 writes
    let writer = stack.cluster.node("pg1").start_writer(Duration::from_millis(50));
    stack.cluster.node("pg2").pause_replay().unwrap();
    let paused = Instant::now();
    let (read_moved, near_moved) = watch(&stack, within, ("pg3", "pg1"), "the pause").await;
    eprintln!(
        "locality_pg: replay paused on pg2 → a's read on pg3 after {read_moved:?}, a's near (only) on the \
         primary after {near_moved:?} (max_lag {} ms, probe every {} ms, rise {})",
        stack.settings.max_lag_ms, stack.settings.interval_ms, stack.settings.rise
    );
    assert!(paused.elapsed() < within);

    // while paused: prefer spills to pg3 (remote), only falls back to the primary (in
    // `a`: local); b is unaffected
    let t = txt(&query_txt(&stack, A2).await);
    assert!(t.iter().any(|l| l.starts_with("pg2 ") && l.contains("ineligible: lag")), "{t:?}");
    let before = (read_answers(&stack, "local").await, read_answers(&stack, "remote").await);
    let spilled = |source: &str, name: &str, got: &str| {
        let want = match (location_of_client(source), name) {
            ("a", "read") => "pg3",
            ("a", _) => "pg1",
            _ => "pg3",
        };
        assert_eq!(got, want, "{name} from {source} while pg2 lags");
    };
    let counted = ask_counted(&stack, &[A1, A2, B1], 4, spilled).await;
    assert_eq!(counted, (16, 8));
    metrics_count(&stack, before, counted).await;

    stack.cluster.node("pg2").resume_replay().unwrap();
    let (read_back, near_back) = watch(&stack, within, ("pg2", "pg2"), "the resume").await;
    eprintln!("locality_pg: replay resumed on pg2 → a's read back after {read_back:?}, near back after {near_back:?}");
    let counted = ask_counted(&stack, &[A1, B1], 3, healthy).await;
    assert_eq!(counted, (12, 0));
    eprintln!("locality_pg: the writer committed {} transactions meanwhile", writer.sent());
    drop(writer);
    stack.shutdown().await;
}

async fn query_txt(stack: &Stack, source: &str) -> Message {
    let mut msg = Message::query();
    msg.add_query(Query::query("read.db.internal.".parse::<Name>().unwrap(), RecordType::TXT));
    query_from(source.parse::<IpAddr>().unwrap(), stack.dns(), &msg).await
}

/// Polls `read` and `near` from `a` (and `read` from `b`, which must stay on pg3) every
/// 20 ms until `a`'s answers are `(read, near)`; returns when each first was.
async fn watch(stack: &Stack, within: Duration, want: (&str, &str), after: &str) -> (Duration, Duration) {
    let start = Instant::now();
    let (mut read_at, mut near_at) = (None, None);
    loop {
        let read = nodes_from(stack, A1, "read.db.internal.").await;
        let near = nodes_from(stack, A1, "near.db.internal.").await;
        assert_eq!(nodes_from(stack, B1, "read.db.internal.").await, ["pg3"], "b's read after {after}");
        if read_at.is_none() && read == [want.0] {
            read_at = Some(start.elapsed());
        }
        if near_at.is_none() && near == [want.1] {
            near_at = Some(start.elapsed());
        }
        if let (Some(r), Some(n)) = (read_at, near_at) {
            // and they stay
            if read == [want.0] && near == [want.1] {
                return (r, n);
            }
        }
        assert!(start.elapsed() < within, "after {after}: a's read {read:?}, near {near:?}, want {want:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
