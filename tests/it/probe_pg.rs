//! The probe task against real PostgreSQL: samples from a primary and a replica, one
//! persistent connection, timeouts on a frozen node that never delay another node,
//! fast failures on a stopped node, cleanup on cancel and after a timeout. Clusters come
//! from `localpg::LocalCluster` (real servers on loopback, torn down on drop).

use std::time::{Duration, Instant};

use lagdns::config::{NodeConfig, ProbeConfig};
use lagdns::probe::{task, NodeId, Observation, ProbeFailure};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use localpg::{LocalCluster, LocalNode};

const INTERVAL: Duration = Duration::from_millis(200);
const TIMEOUT: Duration = Duration::from_millis(1500);
/// Generous: the machine has 2 cores shared with other builds and tests.
const DEADLINE: Duration = Duration::from_secs(20);

fn probe_config() -> ProbeConfig {
    ProbeConfig { interval: INTERVAL, timeout: TIMEOUT, fall: 3, rise: 2 }
}

fn node_config(node: &LocalNode) -> NodeConfig {
    NodeConfig {
        name: node.name.clone(),
        addresses: vec![node.address.into()],
        host: None,
        port: node.port,
        dsn: node.dsn().parse().unwrap(),
        weight: 1,
        password_file: None,
        location: None,
    }
}

/// Probe tasks for some nodes, and everything they reported so far.
struct Probes {
    rx: mpsc::Receiver<Observation>,
    seen: Vec<Observation>,
    cancel: CancellationToken,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Probes {
    fn start(nodes: &[&LocalNode]) -> Probes {
        let (tx, rx) = mpsc::channel(256);
        let cancel = CancellationToken::new();
        let tasks = nodes
            .iter()
            .map(|n| {
                let id = NodeId::new("c", &n.name);
                tokio::spawn(task::run(id, node_config(n), probe_config(), Duration::ZERO, tx.clone(), cancel.clone()))
            })
            .collect();
        Probes { rx, seen: Vec::new(), cancel, tasks }
    }

    /// Receives until an observation of `node` satisfies `pred`; returns it.
    async fn until(&mut self, node: &str, what: &str, pred: impl Fn(&Observation) -> bool) -> Observation {
        let deadline = tokio::time::Instant::now() + DEADLINE;
        loop {
            match tokio::time::timeout_at(deadline, self.rx.recv()).await {
                Ok(Some(o)) => {
                    self.seen.push(o.clone());
                    if &*o.node.node == node && pred(&o) {
                        return o;
                    }
                }
                Ok(None) => panic!("all probe tasks ended while waiting for {node}: {what}"),
                Err(_) => panic!("timed out waiting for {node}: {what}; seen: {:#?}", self.tail(node)),
            }
        }
    }

    fn tail(&self, node: &str) -> Vec<&Observation> {
        let mine: Vec<_> = self.seen.iter().filter(|o| &*o.node.node == node).collect();
        mine[mine.len().saturating_sub(5)..].to_vec()
    }

    /// Cancels every task and waits for all of them to return.
    async fn stop(self) {
        self.cancel.cancel();
        for t in self.tasks {
            tokio::time::timeout(Duration::from_secs(5), t)
                .await
                .expect("probe task returns promptly on cancel")
                .unwrap();
        }
    }
}

fn is_ok(o: &Observation) -> bool {
    o.result.is_ok()
}

/// Backend pids of lagdns connections on `node`, optionally only those in `state`.
fn lagdns_backends(node: &LocalNode, state: Option<&str>) -> Vec<i32> {
    let filter = state.map(|s| format!(" AND state = '{s}'")).unwrap_or_default();
    let out = tokio::task::block_in_place(|| {
        node.sql(&format!("SELECT pid FROM pg_stat_activity WHERE application_name = 'lagdns'{filter} ORDER BY pid"))
    })
    .unwrap();
    out.lines().filter(|l| !l.trim().is_empty()).map(|l| l.trim().parse().unwrap()).collect()
}

/// Polls `f` until it returns true or the deadline passes.
async fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while !f() {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn samples_primary_and_replica_over_one_persistent_connection() {
    let cluster = LocalCluster::start(1).unwrap();
    let [primary, replica] = [&cluster.nodes()[0], &cluster.nodes()[1]];
    let mut probes = Probes::start(&[primary, replica]);

    let p = probes.until(&primary.name, "a primary sample", is_ok).await;
    let p = p.result.unwrap();
    assert!(!p.in_recovery);
    assert!(p.current_lsn.is_some_and(|l| l.0 > 0), "{p:?}");
    assert_eq!(p.timeline.map(|t| t.0), Some(1), "{p:?}");
    assert_eq!((p.receive_lsn, p.replay_lsn, p.replay_paused), (None, None, false));

    let r = probes.until(&replica.name, "a replica sample", is_ok).await;
    let r = r.result.unwrap();
    assert!(r.in_recovery);
    assert!(r.replay_lsn.is_some() && r.receive_lsn.is_some(), "{r:?}");
    assert_eq!(r.current_lsn, None);
    assert_eq!(r.system_id, p.system_id, "a replica shares its primary's system identifier");

    // Persistent: the same single backend serves several probes.
    let pids = lagdns_backends(primary, None);
    assert_eq!(pids.len(), 1, "one lagdns connection on the primary: {pids:?}");
    let before = probes.seen.iter().filter(|o| &*o.node.node == primary.name.as_str()).count();
    let mut n = 0;
    while n < 4 {
        probes.until(&primary.name, "more primary samples", is_ok).await;
        n += 1;
    }
    let after = probes.seen.iter().filter(|o| &*o.node.node == primary.name.as_str()).count();
    assert!(after >= before + 4);
    assert_eq!(lagdns_backends(primary, None), pids, "same backend across probes");
    assert_eq!(lagdns_backends(replica, None).len(), 1);

    // The observation timing fields are coherent.
    let o = probes.until(&primary.name, "one more sample", is_ok).await;
    assert!(o.duration < TIMEOUT, "{:?}", o.duration);
    assert!(o.at <= tokio::time::Instant::now().into_std());

    probes.stop().await;
    eventually("cancel closed the primary's connection", || lagdns_backends(primary, None).is_empty()).await;
    eventually("cancel closed the replica's connection", || lagdns_backends(replica, None).is_empty()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replica_sample_follows_a_writing_primary() {
    let cluster = LocalCluster::start(1).unwrap();
    let [primary, replica] = [&cluster.nodes()[0], &cluster.nodes()[1]];
    let mut probes = Probes::start(&[primary, replica]);
    let first = probes.until(&replica.name, "a replica sample", is_ok).await.result.unwrap();
    tokio::task::block_in_place(|| {
        primary.sql("CREATE TABLE t AS SELECT g FROM generate_series(1, 10000) g").unwrap();
    });
    let moved = probes
        .until(&replica.name, "replay LSN to advance", |o| {
            o.result.as_ref().is_ok_and(|s| s.replay_lsn > first.replay_lsn)
        })
        .await
        .result
        .unwrap();
    assert!(moved.receive_lsn >= moved.replay_lsn, "{moved:?}");
    let p = probes.until(&primary.name, "a primary sample", is_ok).await.result.unwrap();
    assert!(p.current_lsn >= moved.replay_lsn, "primary {p:?} replica {moved:?}");

    // Paused replay: the replica keeps receiving, replay stands still, and says so.
    tokio::task::block_in_place(|| replica.pause_replay()).unwrap();
    eventually("replay actually paused", || {
        tokio::task::block_in_place(|| replica.sql("SELECT pg_get_wal_replay_pause_state()")).unwrap() == "paused"
    })
    .await;
    let confirmed = tokio::time::Instant::now().into_std();
    let paused = probes
        .until(&replica.name, "replay_paused", |o| o.at > confirmed && o.result.as_ref().is_ok_and(|s| s.replay_paused))
        .await
        .result
        .unwrap();
    let _writer = primary.start_writer(Duration::from_millis(20));
    let behind = probes
        .until(&replica.name, "receive ahead of a paused replay", |o| {
            o.result.as_ref().is_ok_and(|s| s.receive_lsn > paused.receive_lsn)
        })
        .await
        .result
        .unwrap();
    assert!(behind.replay_paused, "{behind:?}");
    assert_eq!(behind.replay_lsn, paused.replay_lsn, "replay is paused");
    assert!(behind.receive_lsn > behind.replay_lsn, "{behind:?}");
    probes.stop().await;
}

/// The production role is a LOGIN member of `pg_monitor` (the harness's `lagdns` role):
/// it reads everything. A plain role still probes, but cannot see the replica's receive
/// timeline and gets the (possibly older) checkpoint timeline instead.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_monitor_member_reads_every_field_plain_role_falls_back_to_the_checkpoint_timeline() {
    let cluster = LocalCluster::start(1).unwrap();
    let [primary, replica] = [&cluster.nodes()[0], &cluster.nodes()[1]];
    tokio::task::block_in_place(|| primary.sql("CREATE ROLE lagdns_plain LOGIN")).unwrap();
    let monitor = tokio::task::block_in_place(|| primary.sql("SELECT pg_has_role('lagdns', 'pg_monitor', 'MEMBER')"));
    assert_eq!(monitor.unwrap(), "t", "the harness's lagdns role is the production role");
    let as_role = |node: &LocalNode, role: &str| NodeConfig {
        dsn: node.dsn().replace("user=lagdns", &format!("user={role}")).parse().unwrap(),
        ..node_config(node)
    };
    assert!(as_role(replica, "x").dsn.to_string().contains("user=x"), "dsn shape: {}", replica.dsn());
    let (tx, mut rx) = mpsc::channel(64);
    let cancel = CancellationToken::new();
    for (name, node, role) in [
        ("primary-monitor", primary, "lagdns"),
        ("replica-monitor", replica, "lagdns"),
        ("replica-plain", replica, "lagdns_plain"),
    ] {
        tokio::spawn(task::run(
            NodeId::new("c", name),
            as_role(node, role),
            probe_config(),
            Duration::ZERO,
            tx.clone(),
            cancel.clone(),
        ));
    }
    let mut samples = std::collections::HashMap::new();
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while samples.len() < 3 {
        // The role reaches the replica by replication; until then connects may fail.
        let o = tokio::time::timeout_at(deadline, rx.recv()).await.expect("samples from all three").unwrap();
        if let Ok(s) = o.result {
            samples.insert(o.node.node.to_string(), s);
        }
    }
    cancel.cancel();
    let p = &samples["primary-monitor"];
    assert!(!p.in_recovery && p.current_lsn.is_some() && p.timeline.is_some(), "{p:?}");
    let r = &samples["replica-monitor"];
    assert!(r.in_recovery && r.replay_lsn.is_some(), "{r:?}");
    assert_eq!(r.timeline, p.timeline, "pg_monitor sees received_tli");
    let plain = &samples["replica-plain"];
    assert!(plain.in_recovery && plain.replay_lsn.is_some(), "{plain:?}");
    assert_eq!(plain.system_id, r.system_id);
    assert_eq!(
        plain.timeline, p.timeline,
        "received_tli is hidden without pg_read_all_stats: the checkpoint timeline stands in"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frozen_node_times_out_without_delaying_others_and_leaves_no_query() {
    let cluster = LocalCluster::start(1).unwrap();
    let [primary, replica] = [&cluster.nodes()[0], &cluster.nodes()[1]];
    let mut probes = Probes::start(&[primary, replica]);
    probes.until(&primary.name, "a primary sample", is_ok).await;
    probes.until(&replica.name, "a replica sample", is_ok).await;
    let old_pids = lagdns_backends(primary, None);
    assert_eq!(old_pids.len(), 1);

    tokio::task::block_in_place(|| primary.freeze().unwrap());
    let frozen_at = probes.seen.len();
    let t = probes.until(&primary.name, "a timeout", |o| matches!(o.result, Err(ProbeFailure::Timeout(_)))).await;
    assert_eq!(t.result, Err(ProbeFailure::Timeout(TIMEOUT)));
    assert!(t.duration >= TIMEOUT && t.duration < TIMEOUT * 2, "{:?}", t.duration);
    // While the primary hangs, keep watching: it only times out, and the replica keeps
    // reporting at the interval.
    let mut timeouts = 1;
    while timeouts < 3 {
        probes.until(&primary.name, "another timeout", |o| o.result.is_err()).await;
        timeouts += 1;
    }
    let during: Vec<&Observation> = probes.seen[frozen_at..].iter().collect();
    let primary_obs: Vec<&Observation> =
        during.iter().copied().filter(|o| &*o.node.node == primary.name.as_str()).collect();
    let first_timeout = primary_obs.iter().position(|o| o.result.is_err()).unwrap();
    for o in &primary_obs[first_timeout..] {
        assert_eq!(o.result, Err(ProbeFailure::Timeout(TIMEOUT)), "a frozen node only times out: {o:?}");
    }
    let replica_ok: Vec<Instant> =
        during.iter().filter(|o| &*o.node.node == replica.name.as_str() && o.result.is_ok()).map(|o| o.at).collect();
    let span = primary_obs.last().unwrap().at - primary_obs[first_timeout].at;
    let expected = (span.as_secs_f64() / INTERVAL.as_secs_f64()) as usize;
    assert!(
        replica_ok.len() * 3 >= expected * 2,
        "replica reported {} times in {span:?} (interval {INTERVAL:?})",
        replica_ok.len()
    );
    // Never stalled for anything like the primary's timeout.
    let worst_gap = replica_ok.windows(2).map(|w| w[1] - w[0]).max().unwrap();
    assert!(worst_gap < INTERVAL * 4 && worst_gap < TIMEOUT, "replica gap {worst_gap:?} while the primary hung");

    tokio::task::block_in_place(|| primary.thaw().unwrap());
    probes.until(&primary.name, "recovery after thaw", is_ok).await;
    // The backend that was mid-query when the probe gave up is gone, and no lagdns
    // query is left running.
    eventually("the abandoned backend is gone", || {
        let now = lagdns_backends(primary, None);
        !old_pids.iter().any(|p| now.contains(p))
    })
    .await;
    probes.stop().await;
    eventually("no lagdns query stays active", || lagdns_backends(primary, Some("active")).is_empty()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopped_node_fails_fast_and_recovers_after_start() {
    let cluster = LocalCluster::start(0).unwrap();
    let primary = &cluster.nodes()[0];
    let mut probes = Probes::start(&[primary]);
    probes.until(&primary.name, "a sample", is_ok).await;

    tokio::task::block_in_place(|| primary.stop().unwrap());
    // The first failure may be the query racing the shutdown; the rest are refused connects.
    let mut failures = Vec::new();
    while failures.len() < 5 {
        failures.push(probes.until(&primary.name, "failures", |o| o.result.is_err()).await);
    }
    let failures = failures.split_off(1);
    for f in &failures {
        assert!(matches!(f.result, Err(ProbeFailure::Connect(_))), "{f:?}");
        assert!(f.duration < TIMEOUT / 2, "a refused port fails fast: {:?}", f.duration);
    }
    // Backoff never stretches past a second between attempts.
    for w in failures.windows(2) {
        let gap = w[1].at - w[0].at;
        assert!(gap >= INTERVAL / 2 && gap < Duration::from_millis(1600), "gap {gap:?}");
    }

    tokio::task::block_in_place(|| primary.start().unwrap());
    probes.until(&primary.name, "recovery after start", is_ok).await;
    assert_eq!(lagdns_backends(primary, None).len(), 1);
    probes.stop().await;
    eventually("cancel closed the connection", || lagdns_backends(primary, None).is_empty()).await;
}

/// A connect that outlasts the probe timeout goes on into the next ticks: a node frozen
/// before its probe starts (the kernel accepts the TCP connection, the startup is never
/// answered) times out tick after tick, yet the server receives one connection from the
/// probe, on which it succeeds once the node thaws. (Dropping the connect at each
/// timeout and dialling again made a thousand nodes starting at once on three servers
/// never connect: the servers received connections faster than they authorized them.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connect_slower_than_the_timeout_is_waited_on_not_dialled_again() {
    let cluster = LocalCluster::start(0).unwrap();
    let primary = &cluster.nodes()[0];
    primary.sql("ALTER SYSTEM SET log_connections = on").unwrap();
    primary.sql("SELECT pg_reload_conf()").unwrap();
    primary.wait_sql("log_connections", "SHOW log_connections", "on", DEADLINE).unwrap();
    let log_from = std::fs::metadata(primary.log_path()).unwrap().len() as usize;

    tokio::task::block_in_place(|| primary.freeze().unwrap());
    let mut probes = Probes::start(&[primary]);
    for _ in 0..3 {
        let o = probes.until(&primary.name, "a timeout", |o| o.result.is_err()).await;
        assert_eq!(o.result, Err(ProbeFailure::Timeout(TIMEOUT)), "{o:?}");
    }
    tokio::task::block_in_place(|| primary.thaw().unwrap());
    probes.until(&primary.name, "a sample after the thaw", is_ok).await;
    probes.stop().await;

    let log = std::fs::read_to_string(primary.log_path()).unwrap();
    // the probe connects over TCP; psql (the test's own queries) over the unix socket
    let dialled = log[log_from..].lines().filter(|l| l.contains("connection received: host=127.")).count();
    assert_eq!(dialled, 1, "connections the probe made over 3 timeouts:\n{}", &log[log_from..]);
}
