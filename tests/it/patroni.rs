//! SPEC §11's source, for real: a Patroni cluster (localpg's `PatroniCluster`: etcd and
//! three Patroni members, each managing its own PostgreSQL) whose `GET /cluster` is read
//! from every member and parsed with `lagdns::patroni`, through a switchover and a
//! member stopped and started; and the capture of the fixtures in
//! `tests/fixtures/patroni/` (an ignored test, see its README).
//!
//! Patroni and etcd are real and a missing one fails the test with how to get it, never
//! a skip (`./dev deps` installs Debian's `patroni`, `etcd-server` and `etcd-client`).

// Blocking tests of real processes: their deadlines are real time (std Instant).
#![allow(clippy::disallowed_methods)]

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use lagdns::config::DsnTemplate;
use lagdns::patroni::{discover, parse_cluster, ClusterDoc, Membership, PatroniLag, PatroniRole, PatroniState, Round};
use localpg::{PatroniCluster, PatroniMember};

use crate::common::http_get_blocking;

/// How long the listing may take to reflect a change every member has already made.
const SETTLE: Duration = Duration::from_secs(30);

/// Starts a Patroni cluster, or fails saying what is missing and how to get it.
fn start(members: usize) -> PatroniCluster {
    if let Err(e) = localpg::patroni_programs() {
        panic!("{e}: this test needs a real Patroni and etcd");
    }
    let t0 = Instant::now();
    let cluster = PatroniCluster::start(members).unwrap_or_else(|e| panic!("PatroniCluster::start({members}): {e}"));
    eprintln!("PatroniCluster::start({members}) took {:?}", t0.elapsed());
    cluster
}

/// `GET /cluster` from `member`'s REST API: the raw body (an error unless 200).
fn fetch(member: &PatroniMember) -> Result<String, String> {
    match http_get_blocking(&format!("{}/cluster", member.api_url()))? {
        (200, body) => Ok(body),
        (status, body) => Err(format!("{}: {status} {body}", member.name)),
    }
}

/// The listing as `member` serves it, parsed by lagdns.
fn listing(member: &PatroniMember) -> Result<ClusterDoc, String> {
    let body = fetch(member)?;
    parse_cluster(body.as_bytes()).map_err(|e| format!("{e}: {body}"))
}

fn summary(doc: &ClusterDoc) -> String {
    doc.members.iter().map(|m| format!("{}={}/{}", m.name, m.role, m.state)).collect::<Vec<_>>().join(" ")
}

/// Polls every member in `from` until each one's listing satisfies `done`.
fn wait_each(cluster: &PatroniCluster, from: &[usize], what: &str, done: impl Fn(&ClusterDoc) -> bool) {
    let deadline = Instant::now() + SETTLE;
    for &i in from {
        let member = cluster.member(i);
        loop {
            let last = match listing(member) {
                Ok(doc) if done(&doc) => break,
                Ok(doc) => summary(&doc),
                Err(e) => e,
            };
            assert!(Instant::now() < deadline, "{} never listed {what}; last: {last}", member.name);
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

fn leaders(doc: &ClusterDoc) -> Vec<&str> {
    doc.members.iter().filter(|m| m.role.is_leader()).map(|m| m.name.as_str()).collect()
}

/// `SELECT pg_is_in_recovery()` through `dsn` (a discovered node's, as lagdns would probe).
fn in_recovery(dsn: &str) -> String {
    let out = Command::new("psql").args(["-X", "-A", "-t", "-d", dsn, "-c", "SELECT pg_is_in_recovery()"]).output();
    let out = out.expect("psql runs (./dev deps installs it)");
    assert!(out.status.success(), "psql -d {dsn:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn cluster_listing_through_switchover_and_a_stopped_member() {
    let cluster = start(3);
    let all = [0, 1, 2];

    // Every member serves the same listing (each reads it from etcd through a watch
    // cache of its own, hence the polling): three members, pg1 the one leader, all running.
    wait_each(&cluster, &all, "three running members led by pg1", |doc| {
        doc.members.len() == 3
            && leaders(doc) == ["pg1"]
            && doc.members.iter().all(|m| m.state.is_running())
            && !doc.pause
    });

    // The discovered nodes are the members, on their own addresses, and their DSNs reach
    // the PostgreSQL Patroni says they are.
    let doc = listing(cluster.member(0)).unwrap();
    let found = discover(&doc, &DsnTemplate::default());
    assert!(found.skipped.is_empty(), "{:?}", found.skipped);
    assert_eq!(found.nodes.len(), 3);
    for (node, member) in found.nodes.iter().zip(cluster.members()) {
        assert_eq!(
            (node.name.as_str(), node.host.as_str(), node.port),
            (member.name.as_str(), &*member.address.to_string(), member.port)
        );
        assert_eq!(node.weight, 100);
        assert_eq!(node.dsn.to_string(), member.dsn());
        let want = if node.patroni.role == PatroniRole::Leader { "f" } else { "t" };
        assert_eq!(in_recovery(&node.dsn.to_string()), want, "{} is a {}", node.name, node.patroni.role);
    }
    let (membership, changes) = Membership::default().next(Round::Listed(found.nodes));
    assert_eq!(changes.added, ["pg1", "pg2", "pg3"]);

    // A switchover moves the leader key; every member lists pg2 as the one leader.
    let t0 = Instant::now();
    cluster.switchover("pg2").unwrap();
    eprintln!("switchover to pg2 (until all run and stream) took {:?}", t0.elapsed());
    wait_each(&cluster, &all, "pg2 as the one leader", |doc| leaders(doc) == ["pg2"]);
    let doc = listing(cluster.member(2)).unwrap();
    assert!(doc.members.iter().all(|m| m.timeline == Some(2)), "a new timeline: {doc:?}");

    // A stopped member: its Patroni stops its PostgreSQL and marks it stopped; the
    // listing keeps it (until its key's TTL runs out) with no lag known.
    let t0 = Instant::now();
    cluster.stop_member(2).unwrap();
    eprintln!("stop_member(pg3) took {:?}", t0.elapsed());
    wait_each(&cluster, &[0, 1], "pg3 stopped or gone", |doc| {
        doc.members.iter().find(|m| m.name == "pg3").is_none_or(|m| m.state == PatroniState::Stopped)
    });
    assert!(fetch(cluster.member(2)).is_err(), "pg3's REST API is down with its Patroni");
    let doc = listing(cluster.member(0)).unwrap();
    if let Some(pg3) = doc.members.iter().find(|m| m.name == "pg3") {
        assert_eq!(pg3.lag, Some(PatroniLag::Unknown), "{pg3:?}");
    }
    let (membership, changes) = membership.next(Round::Listed(discover(&doc, &DsnTemplate::default()).nodes));
    assert!(changes.removed.is_empty(), "one round without pg3 does not remove it: {changes:?}");
    assert_eq!(membership.members.len(), 3);

    // Started again, it is back as a running replica in every member's listing.
    let t0 = Instant::now();
    cluster.start_member(2).unwrap();
    eprintln!("start_member(pg3) took {:?}", t0.elapsed());
    wait_each(&cluster, &all, "pg3 running again", |doc| {
        doc.members.iter().any(|m| m.name == "pg3" && m.state.is_running() && m.role == PatroniRole::Replica)
            && leaders(doc) == ["pg2"]
    });
}

/// Where `capture_fixtures` writes, e.g. `tests/fixtures/patroni` (relative to the
/// crate); unset, it does nothing.
const CAPTURE_ENV: &str = "LAGDNS_PATRONI_FIXTURES";

/// Captures `GET /cluster` in the states `tests/fixtures/patroni/README.md` lists.
/// `LAGDNS_PATRONI_FIXTURES=tests/fixtures/patroni cargo test --test it
/// patroni::capture_fixtures -- --ignored --nocapture`
#[test]
#[ignore = "writes the fixtures: set LAGDNS_PATRONI_FIXTURES and run with --ignored"]
fn capture_fixtures() {
    let Some(dir) = std::env::var_os(CAPTURE_ENV) else {
        eprintln!("{CAPTURE_ENV} is unset: nothing captured (see tests/fixtures/patroni/README.md)");
        return;
    };
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(dir);
    std::fs::create_dir_all(&dir).unwrap();
    let cluster = start(3);
    let save = |name: &str, body: String| {
        parse_cluster(body.as_bytes()).unwrap_or_else(|e| panic!("{name}: {e}"));
        std::fs::write(dir.join(name), &body).unwrap();
        eprintln!("{name}: {body}");
    };
    let status = |what: &str, done: &dyn Fn(&localpg::ClusterStatus) -> bool| {
        cluster.wait_until(what, SETTLE, done).unwrap();
    };
    // Patroni updates a member's entry once per loop_wait (1 s): let lag settle at 0.
    status("replicas at lag 0", &|c| c.members.iter().filter(|m| m.role == "replica").all(|m| m.lag == Some(0)));
    save("all_running.json", fetch(cluster.member(0)).unwrap());

    cluster.set_tags(2, &[("noloadbalance", "true"), ("nofailover", "true")]).unwrap();
    save("tags_noloadbalance.json", fetch(cluster.member(0)).unwrap());
    cluster.set_tags(2, &[]).unwrap();

    let pg1 = cluster.member(0);
    pg1.sql("CREATE TABLE capture_lag (id int, pad text)").unwrap();
    cluster.member(2).freeze_wal_receiver().unwrap();
    pg1.sql("INSERT INTO capture_lag SELECT g, repeat('x', 100) FROM generate_series(1, 20000) g").unwrap();
    // pg2 keeps receiving: wait until its entry (updated once a loop) says so, too.
    status("pg3 lags, pg2 does not", &|c| {
        c.member("pg3").and_then(|m| m.lag).is_some_and(|lag| lag > 0) && c.member("pg2").and_then(|m| m.lag) == Some(0)
    });
    save("replica_lagging.json", fetch(cluster.member(0)).unwrap());
    cluster.member(2).thaw_wal_receiver();
    status("pg3 caught up", &|c| c.member("pg3").and_then(|m| m.lag) == Some(0));

    cluster.set_paused(true).unwrap();
    save("paused.json", fetch(cluster.member(1)).unwrap());
    cluster.set_paused(false).unwrap();

    cluster.switchover("pg2").unwrap();
    status("lag 0 after the switchover", &|c| {
        c.members.iter().filter(|m| m.role == "replica").all(|m| m.lag == Some(0))
    });
    save("after_switchover.json", fetch(cluster.member(1)).unwrap());

    cluster.stop_member(2).unwrap();
    save("member_stopped.json", fetch(cluster.member(1)).unwrap());
    let t0 = Instant::now();
    status("pg3 is no longer listed", &|c| c.member("pg3").is_none());
    eprintln!("pg3 left the listing {:?} after its Patroni stopped", t0.elapsed());
    save("member_gone.json", fetch(cluster.member(1)).unwrap());
}
