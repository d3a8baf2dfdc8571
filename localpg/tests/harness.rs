//! The local-cluster harness against real PostgreSQL: roles, replication, every fault it
//! can inject, concurrent clusters, and complete teardown.

// Synchronous tests of real PostgreSQL processes: their deadlines are real time (std
// Instant); there is no tokio clock here to pause.
#![allow(clippy::disallowed_methods)]

use localpg::{LocalCluster, LocalNode, Lsn};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const DEADLINE: Duration = Duration::from_secs(30);

/// Polls `f` until it returns Some, panicking with `what` after `DEADLINE`.
fn eventually<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + DEADLINE;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(25));
    }
}

fn insert_marker(primary: &LocalNode, marker: &str) {
    primary.sql(&format!("CREATE TABLE IF NOT EXISTS marks(m text); INSERT INTO marks VALUES ('{marker}')")).unwrap();
}

fn has_marker(node: &LocalNode, marker: &str) -> bool {
    node.sql("SELECT count(*) FROM pg_class WHERE relname = 'marks'").unwrap() == "1"
        && node.sql(&format!("SELECT count(*) FROM marks WHERE m = '{marker}'")).unwrap() == "1"
}

/// Forces WAL on the primary and returns its new position.
fn advance(primary: &LocalNode) -> Lsn {
    primary.sql("INSERT INTO lagdns_writes DEFAULT VALUES").unwrap();
    primary.current_lsn().unwrap()
}

fn slot_dirs_pointing_at(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir("/tmp/lagdns-slots") else {
        return vec![];
    };
    entries
        .flatten()
        .filter(|e| std::fs::read_to_string(e.path().join("dir")).is_ok_and(|d| Path::new(&d) == dir))
        .map(|e| e.path())
        .collect()
}

/// True if `pid` exists and is not a zombie (an exited postmaster is reaped by init later).
fn running(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .is_ok_and(|s| !matches!(s.rsplit(')').next().unwrap_or("").trim_start().chars().next(), Some('Z' | 'X')))
}

#[test]
fn start_roles_replication_and_complete_teardown() {
    let t0 = Instant::now();
    let cluster = LocalCluster::start(2).expect("start(2)");
    eprintln!("LocalCluster::start(2) took {:?}", t0.elapsed());

    let names: Vec<&str> = cluster.nodes().iter().map(|n| n.name.as_str()).collect();
    assert_eq!(names, ["pg1", "pg2", "pg3"]);
    let slot = cluster.slot().expect("holds a slot");
    for (i, node) in cluster.nodes().iter().enumerate() {
        assert_eq!(node.address.octets(), [127, 77, slot, i as u8 + 1]);
        assert!(node.accepts_connections(Duration::from_secs(2)), "{} answers", node.name);
    }
    assert!(!cluster.node("pg1").is_in_recovery().unwrap());
    assert!(cluster.node("pg2").is_in_recovery().unwrap());
    assert!(cluster.node("pg3").is_in_recovery().unwrap());

    // The monitoring role works through the public DSN, over TCP, and is in pg_monitor.
    let out = Command::new("psql")
        .args(["-X", "-A", "-t", "-d", &cluster.node("pg2").dsn(), "-c"])
        .arg("SELECT current_user, pg_has_role('pg_monitor', 'member'), inet_server_addr()")
        .output()
        .unwrap();
    let expected = format!("lagdns|t|{}", cluster.node("pg2").address);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), expected, "{out:?}");

    insert_marker(cluster.node("pg1"), "hello");
    for replica in ["pg2", "pg3"] {
        eventually(&format!("{replica} sees the write"), || has_marker(cluster.node(replica), "hello").then_some(()));
    }

    let dir = cluster.dir().to_path_buf();
    assert!(dir.join("pg1/data/PG_VERSION").is_file());
    assert_eq!(slot_dirs_pointing_at(&dir).len(), 1, "the slot records the cluster dir");
    let pids: Vec<u32> = cluster.nodes().iter().map(|n| n.postmaster_pid().expect("running")).collect();
    let addrs: Vec<_> = cluster.nodes().iter().map(|n| n.socket_addr()).collect();
    drop(cluster);

    assert!(!dir.exists(), "{} removed", dir.display());
    assert!(slot_dirs_pointing_at(&dir).is_empty(), "slot released");
    for pid in pids {
        assert!(!running(pid), "postmaster {pid} gone");
    }
    for addr in addrs {
        assert!(std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_err(), "{addr} closed");
    }
}

#[test]
fn paused_replay_stands_still_and_resume_catches_up() {
    let cluster = LocalCluster::start(2).unwrap();
    let (primary, paused, free) = (cluster.node("pg1"), cluster.node("pg2"), cluster.node("pg3"));
    let _writer = primary.start_writer(Duration::from_millis(20));

    paused.pause_replay().unwrap();
    let held = paused.replay_lsn().unwrap();
    let target = eventually("the primary moves on", || {
        let now = advance(primary);
        (now > held).then_some(now)
    });
    eventually("the unpaused replica replays past the paused one", || {
        (free.replay_lsn().unwrap() >= target).then_some(())
    });
    assert!(paused.receive_lsn().unwrap() >= target, "WAL still arrives while paused");
    assert_eq!(paused.replay_lsn().unwrap(), held, "replay did not advance while paused");

    paused.resume_replay().unwrap();
    eventually("the resumed replica catches up", || (paused.replay_lsn().unwrap() >= target).then_some(()));
}

#[test]
fn disconnected_replica_stops_receiving_until_reconnected() {
    let cluster = LocalCluster::start(1).unwrap();
    let (primary, replica) = (cluster.node("pg1"), cluster.node("pg2"));
    let before = replica.sql("SHOW primary_conninfo").unwrap();
    assert!(before.contains(&primary.address.to_string()), "{before}");

    replica.disconnect_upstream().unwrap();
    assert_eq!(replica.sql("SHOW primary_conninfo").unwrap(), "");
    let received = replica.receive_lsn().unwrap();
    insert_marker(primary, "while-cut-off");
    let target = advance(primary);
    assert!(target > received);
    assert!(replica.accepts_connections(Duration::from_secs(2)), "the replica itself stays up");
    // Give it a fair chance to (wrongly) receive: the primary's sender would need < 1 s.
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(replica.receive_lsn().unwrap(), received, "nothing received while cut off");
    assert!(!has_marker(replica, "while-cut-off"));

    replica.reconnect_upstream().unwrap();
    assert_eq!(replica.sql("SHOW primary_conninfo").unwrap(), before, "original value restored");
    replica.wait_streaming(DEADLINE).unwrap();
    eventually("the reconnected replica sees the write", || has_marker(replica, "while-cut-off").then_some(()));
    assert!(replica.replay_lsn().unwrap() >= target);

    // The writer survives a restart of its server: psql is restarted and inserts resume.
    let writer = primary.start_writer(Duration::from_millis(20));
    let rows = || primary.sql("SELECT count(*) FROM lagdns_writes").unwrap().parse::<u64>().unwrap();
    let before = eventually("the writer writes", || Some(rows()).filter(|&n| n > 2));
    primary.stop().unwrap();
    primary.start().unwrap();
    let after = rows();
    assert!(after >= before);
    eventually("the writer writes again after the restart", || (rows() > after + 2).then_some(()));
    drop(writer);
}

#[test]
fn frozen_node_times_out_new_connections_and_thaw_restores() {
    let cluster = LocalCluster::start(1).unwrap();
    let replica = cluster.node("pg2");
    let writer = cluster.node("pg1").start_writer(Duration::from_millis(20));
    assert!(replica.accepts_connections(Duration::from_secs(2)));

    replica.freeze().unwrap();
    let t = Instant::now();
    assert!(!replica.accepts_connections(Duration::from_millis(500)), "a frozen server must not answer");
    assert!(t.elapsed() >= Duration::from_millis(400), "it timed out rather than being refused");
    let out = Command::new("psql")
        .args(["-X", "-A", "-t", "-c", "SELECT 1", "-d"])
        .arg(format!("{} connect_timeout=2", replica.dsn()))
        .output()
        .unwrap();
    assert!(!out.status.success(), "psql must fail against a frozen server: {out:?}");

    replica.thaw().unwrap();
    assert!(replica.accepts_connections(Duration::from_secs(5)));
    assert_eq!(replica.sql("SELECT 1").unwrap(), "1");
    replica.wait_streaming(DEADLINE).unwrap();
    assert!(writer.sent() > 0, "the writer kept writing");

    // Dropping a cluster with a frozen node (and a live writer) still cleans up, promptly.
    let pid = replica.postmaster_pid().unwrap();
    replica.freeze().unwrap();
    let dir = cluster.dir().to_path_buf();
    let t = Instant::now();
    drop(cluster);
    drop(writer);
    assert!(t.elapsed() < Duration::from_secs(20), "teardown took {:?}", t.elapsed());
    assert!(!dir.exists());
    assert!(!running(pid), "frozen postmaster {pid} was stopped");
}

#[test]
fn stop_start_and_promote() {
    let cluster = LocalCluster::start(2).unwrap();
    let (primary, stopped, promoted) = (cluster.node("pg1"), cluster.node("pg2"), cluster.node("pg3"));

    stopped.stop().unwrap();
    assert!(!stopped.accepts_connections(Duration::from_millis(500)));
    assert!(
        std::net::TcpStream::connect_timeout(&stopped.socket_addr(), Duration::from_secs(1)).is_err(),
        "port closed"
    );
    assert!(stopped.sql("SELECT 1").is_err());
    assert!(stopped.postmaster_pid().is_none());
    stopped.start().unwrap();
    assert!(stopped.is_in_recovery().unwrap());
    stopped.wait_streaming(DEADLINE).unwrap();

    let before = promoted.timeline().unwrap();
    promoted.promote().unwrap();
    assert!(!promoted.is_in_recovery().unwrap());
    let after = promoted.timeline().unwrap();
    assert!(after.0 > before.0, "timeline {before} -> {after}");
    assert!(!primary.is_in_recovery().unwrap(), "old primary still up: two primaries");
    insert_marker(promoted, "on-the-new-primary");

    // The remaining replica can be pointed at the new primary and follows its timeline.
    stopped.follow(promoted).unwrap();
    stopped.wait_streaming(DEADLINE).unwrap();
    eventually("pg2 replicates from the new primary", || has_marker(stopped, "on-the-new-primary").then_some(()));
}

#[test]
fn concurrent_clusters_do_not_collide() {
    let threads: Vec<_> = (0..2)
        .map(|i| {
            std::thread::spawn(move || {
                let cluster = LocalCluster::start(1).unwrap();
                insert_marker(cluster.node("pg1"), &format!("cluster-{i}"));
                let replica = cluster.node("pg2");
                eventually("replica sees its own primary's write", || {
                    has_marker(replica, &format!("cluster-{i}")).then_some(())
                });
                let addrs: Vec<_> = cluster.nodes().iter().map(|n| n.address).collect();
                let sysid = cluster.node("pg1").sql("SELECT system_identifier FROM pg_control_system()").unwrap();
                (cluster, addrs, sysid)
            })
        })
        .collect();
    let results: Vec<_> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    let [(a, a_addrs, a_id), (b, b_addrs, b_id)] = <[_; 2]>::try_from(results).unwrap();
    assert_ne!(a.slot(), b.slot());
    assert_ne!(a.dir(), b.dir());
    assert!(a_addrs.iter().all(|x| !b_addrs.contains(x)), "{a_addrs:?} vs {b_addrs:?}");
    assert_ne!(a_id, b_id, "independent clusters have distinct system identifiers");
    assert!(!has_marker(b.node("pg2"), "cluster-0"), "no cross-talk");
    assert!(!has_marker(a.node("pg2"), "cluster-1"), "no cross-talk");
}

/// Helper for `a_crashed_owner_is_cleaned_up`: run in a child process (this test binary),
/// starts a cluster, reports it, and waits to be SIGKILLed. A no-op unless asked for.
#[test]
#[ignore = "only run as a child process by a_crashed_owner_is_cleaned_up"]
fn crash_helper() {
    let Some(report) = std::env::var_os("LAGDNS_LOCALPG_CRASH_REPORT") else {
        return;
    };
    let cluster = LocalCluster::start(1).unwrap();
    let pids: Vec<String> = cluster.nodes().iter().map(|n| n.postmaster_pid().unwrap().to_string()).collect();
    let tmp = PathBuf::from(&report).with_extension("tmp");
    std::fs::write(&tmp, format!("{}\n{}", cluster.dir().display(), pids.join(" "))).unwrap();
    std::fs::rename(&tmp, &report).unwrap();
    loop {
        std::thread::sleep(Duration::from_secs(1));
    }
}

#[test]
fn a_crashed_owner_is_cleaned_up() {
    let report = std::env::temp_dir().join(format!("lagdns-crash-report-{}", std::process::id()));
    let _ = std::fs::remove_file(&report);
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["crash_helper", "--exact", "--ignored", "--nocapture", "--test-threads=1"])
        .env("LAGDNS_LOCALPG_CRASH_REPORT", &report)
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let text = eventually("the child reports its cluster", || {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("crash helper exited early: {status}");
        }
        std::fs::read_to_string(&report).ok()
    });
    let _ = std::fs::remove_file(&report);
    let (dir, pids) = text.split_once('\n').unwrap();
    let dir = PathBuf::from(dir);
    let pids: Vec<u32> = pids.split_whitespace().map(|p| p.parse().unwrap()).collect();

    child.kill().unwrap(); // SIGKILL: no Drop runs, the postmasters are orphaned
    child.wait().unwrap();
    assert!(pids.iter().all(|&p| running(p)), "orphaned postmasters outlive their owner");
    assert!(dir.exists());

    localpg::reclaim_stale_slots();
    assert!(!dir.exists(), "{} removed", dir.display());
    assert!(slot_dirs_pointing_at(&dir).is_empty(), "slot freed");
    for pid in pids {
        eventually(&format!("postmaster {pid} is gone"), || (!running(pid)).then_some(()));
    }
}

/// Helper for `a_failed_start_leaves_nothing_behind`: run in a child process whose
/// LAGDNS_PG_BIN has a pg_basebackup that always fails. A no-op unless asked for.
#[test]
#[ignore = "only run as a child process by a_failed_start_leaves_nothing_behind"]
fn half_built_helper() {
    if std::env::var_os("LAGDNS_LOCALPG_HALF_BUILT").is_none() {
        return;
    }
    let err = LocalCluster::start(1).expect_err("pg_basebackup is broken").to_string();
    println!("ERROR MESSAGE: {err}");
    assert!(err.contains("pg_basebackup"), "names the command: {err}");
    assert!(err.contains("exit status: 3"), "gives the status: {err}");
    assert!(err.contains("boom: simulated failure"), "quotes stderr: {err}");
    let mine = format!("/tmp/lagdns-pg-{}-", std::process::id());
    let leftovers: Vec<_> = std::fs::read_dir("/tmp")
        .unwrap()
        .flatten()
        .filter(|e| e.path().to_string_lossy().starts_with(&mine))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        let pid: u32 = entry.file_name().to_str().and_then(|p| p.parse().ok()).unwrap_or(0);
        assert!(!(cmdline.contains(&mine) && running(pid)), "left running: {cmdline}");
    }
}

#[test]
fn a_failed_start_leaves_nothing_behind() {
    use std::os::unix::fs::{symlink, PermissionsExt};
    let real = localpg::bin_dir().unwrap();
    let fake = std::env::temp_dir().join(format!("lagdns-fake-bin-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&fake);
    std::fs::create_dir(&fake).unwrap();
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    for tool in ["initdb", "pg_ctl", "postgres", "psql"] {
        symlink(real.join(tool), fake.join(tool)).unwrap();
    }
    let script = fake.join("pg_basebackup");
    std::fs::write(&script, "#!/bin/sh\necho 'boom: simulated failure' >&2\nexit 3\n").unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();

    let out = Command::new(std::env::current_exe().unwrap())
        .args(["half_built_helper", "--exact", "--ignored", "--nocapture", "--test-threads=1"])
        .env("LAGDNS_LOCALPG_HALF_BUILT", "1")
        .env("LAGDNS_PG_BIN", &fake)
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&fake);
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && text.contains("ERROR MESSAGE"), "{text}");
    eprintln!("{}", text.lines().find(|l| l.contains("ERROR MESSAGE")).unwrap_or(""));
}

#[test]
fn max_connections_is_the_default_or_what_the_builder_says() {
    let small = LocalCluster::start(0).unwrap();
    let default = localpg::DEFAULT_MAX_CONNECTIONS.to_string();
    assert_eq!(small.node("pg1").sql("SHOW max_connections").unwrap(), default);
    drop(small);
    let big = LocalCluster::builder(1).max_connections(120).start().unwrap();
    for node in big.nodes() {
        assert_eq!(node.sql("SHOW max_connections").unwrap(), "120", "{} (a replica inherits it)", node.name);
    }
}
