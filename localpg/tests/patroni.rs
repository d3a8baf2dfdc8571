//! The Patroni harness against real Patroni, etcd and PostgreSQL: bootstrap, the
//! monitoring role, switchover, a member stopped and started, tags, and complete teardown
//! (also on panic, and after the owner was SIGKILLed).
//!
//! Patroni and etcd are real and a missing one fails with how to get it, never a skip
//! (`./dev deps` installs Debian's `patroni`, `etcd-server` and `etcd-client`).

// Synchronous tests of real processes: their deadlines are real time (std Instant).
#![allow(clippy::disallowed_methods)]

use localpg::{PatroniCluster, ETCD_CLIENT_PORT};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const DEADLINE: Duration = Duration::from_secs(30);

fn start(members: usize) -> PatroniCluster {
    let t0 = Instant::now();
    let cluster = PatroniCluster::start(members).unwrap_or_else(|e| panic!("PatroniCluster::start({members}): {e}"));
    eprintln!("PatroniCluster::start({members}) took {:?}", t0.elapsed());
    cluster
}

/// True if `pid` exists and is not a zombie.
fn running(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .is_ok_and(|s| !matches!(s.rsplit(')').next().unwrap_or("").trim_start().chars().next(), Some('Z' | 'X')))
}

fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + DEADLINE;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// Everything a cluster runs and listens on, to check it is all gone after teardown.
struct Traces {
    dir: PathBuf,
    pids: Vec<u32>,
    addrs: Vec<SocketAddr>,
}

impl Traces {
    fn of(cluster: &PatroniCluster) -> Traces {
        let mut pids = Vec::new();
        let mut addrs = vec![cluster.etcd().client_addr()];
        for m in cluster.members() {
            pids.extend(m.patroni_pid());
            pids.extend(m.postmaster_pid());
            addrs.extend([m.socket_addr(), m.api_addr()]);
        }
        Traces { dir: cluster.dir().to_path_buf(), pids, addrs }
    }

    fn assert_gone(&self) {
        assert!(!self.dir.exists(), "{} removed", self.dir.display());
        for &pid in &self.pids {
            eventually(&format!("process {pid} is gone"), || !running(pid));
        }
        assert!(processes_in(&self.dir).is_empty(), "left running: {:?}", processes_in(&self.dir));
        for addr in &self.addrs {
            assert!(std::net::TcpStream::connect_timeout(addr, Duration::from_secs(1)).is_err(), "{addr} closed");
        }
    }
}

/// Command lines of live processes that name a path inside `dir`.
fn processes_in(dir: &Path) -> Vec<String> {
    let inside = format!("{}/", dir.display());
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| {
            let pid: u32 = e.file_name().to_str()?.parse().ok()?;
            let cmdline = String::from_utf8_lossy(&std::fs::read(e.path().join("cmdline")).ok()?).replace('\0', " ");
            (cmdline.contains(&inside) && running(pid)).then_some(cmdline)
        })
        .collect()
}

#[test]
fn bootstrap_switchover_stop_start_tags_and_complete_teardown() {
    let cluster = start(3);
    let slot = cluster.slot().expect("holds a slot");
    let names: Vec<&str> = cluster.members().iter().map(|m| m.name.as_str()).collect();
    assert_eq!(names, ["pg1", "pg2", "pg3"]);
    for (i, m) in cluster.members().iter().enumerate() {
        assert_eq!(m.address.octets(), [127, 78, slot, i as u8 + 1]);
        assert_eq!(m.api_url(), format!("http://127.78.{slot}.{}:8008", i + 1));
    }
    assert_eq!(cluster.etcd().client_addr(), SocketAddr::from(([127, 78, slot, 250], ETCD_CLIENT_PORT)));
    let status = cluster.status().unwrap();
    assert_eq!(status.leader().map(|m| m.name.as_str()), Some("pg1"), "{}", status.summary());
    assert!(status.members.iter().all(|m| m.is_running()), "{}", status.summary());

    // The monitoring role, over TCP, on a replica.
    let out = Command::new("psql")
        .args(["-X", "-A", "-t", "-d", &cluster.member(1).dsn(), "-c"])
        .arg("SELECT current_user, pg_has_role('pg_monitor', 'member'), pg_is_in_recovery(), inet_server_addr()")
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), format!("lagdns|t|t|{}", cluster.member(1).address));

    // patronictl works on a member's config.
    let list = Command::new("patronictl").arg("-c").arg(cluster.member(0).config_path()).arg("list").output().unwrap();
    let text = String::from_utf8_lossy(&list.stdout);
    assert!(list.status.success() && text.contains("pg1") && text.contains("Leader"), "{list:?}");

    let t0 = Instant::now();
    cluster.switchover("pg2").unwrap();
    eprintln!("switchover to pg2 (until all run and stream) took {:?}", t0.elapsed());
    let status = cluster.status().unwrap();
    assert_eq!(status.leader().map(|m| m.name.as_str()), Some("pg2"));
    assert!(status.members.iter().all(|m| m.timeline == Some(2)), "{status:?}");
    assert!(cluster.member(0).sql("SELECT pg_is_in_recovery()").unwrap() == "t", "pg1 follows now");

    let t0 = Instant::now();
    cluster.stop_member(2).unwrap();
    eprintln!("stop_member(pg3) took {:?}", t0.elapsed());
    assert!(cluster.member(2).postmaster_pid().is_none(), "Patroni stopped its PostgreSQL");
    let status = cluster.status().unwrap();
    assert_eq!(status.member("pg3").map(|m| m.state.as_str()), Some("stopped"), "{}", status.summary());

    let t0 = Instant::now();
    cluster.start_member(2).unwrap();
    eprintln!("start_member(pg3) took {:?}", t0.elapsed());
    assert_eq!(cluster.member(2).sql("SELECT pg_is_in_recovery()").unwrap(), "t");

    cluster.set_tags(2, &[("noloadbalance", "true")]).unwrap();
    let status = cluster.status().unwrap();
    assert_eq!(status.member("pg3").unwrap().tags, [("noloadbalance".to_string(), "true".to_string())]);

    let traces = Traces::of(&cluster);
    assert_eq!(traces.pids.len(), 6, "three Patronis, three postmasters");
    let t0 = Instant::now();
    drop(cluster);
    eprintln!("teardown took {:?}", t0.elapsed());
    traces.assert_gone();
}

#[test]
fn a_panic_tears_everything_down() {
    let traces = std::sync::Mutex::new(None);
    let result = std::panic::catch_unwind(|| {
        let cluster = start(1);
        *traces.lock().unwrap() = Some(Traces::of(&cluster));
        panic!("a test fails while the cluster runs");
    });
    assert!(result.is_err());
    let traces = traces.into_inner().unwrap().expect("the cluster started");
    assert_eq!(traces.pids.len(), 2, "Patroni and its postmaster");
    traces.assert_gone();
}

/// Helper for `a_crashed_owner_is_cleaned_up`: run in a child process (this test binary),
/// starts a cluster, reports it, and waits to be SIGKILLed. A no-op unless asked for.
#[test]
#[ignore = "only run as a child process by a_crashed_owner_is_cleaned_up"]
fn patroni_crash_helper() {
    let Some(report) = std::env::var_os("LAGDNS_PATRONI_CRASH_REPORT") else {
        return;
    };
    let cluster = start(2);
    let traces = Traces::of(&cluster);
    let pids: Vec<String> = traces.pids.iter().map(u32::to_string).collect();
    let tmp = PathBuf::from(&report).with_extension("tmp");
    std::fs::write(&tmp, format!("{}\n{}", cluster.dir().display(), pids.join(" "))).unwrap();
    std::fs::rename(&tmp, &report).unwrap();
    loop {
        std::thread::sleep(Duration::from_secs(1));
    }
}

#[test]
fn a_crashed_owner_is_cleaned_up() {
    let report = std::env::temp_dir().join(format!("lagdns-patroni-crash-report-{}", std::process::id()));
    let _ = std::fs::remove_file(&report);
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["patroni_crash_helper", "--exact", "--ignored", "--nocapture", "--test-threads=1"])
        .env("LAGDNS_PATRONI_CRASH_REPORT", &report)
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    let text = loop {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("crash helper exited early: {status}");
        }
        if let Ok(text) = std::fs::read_to_string(&report) {
            break text;
        }
        assert!(Instant::now() < deadline, "the child never reported its cluster");
        std::thread::sleep(Duration::from_millis(50));
    };
    let _ = std::fs::remove_file(&report);
    let (dir, pids) = text.split_once('\n').unwrap();
    let dir = PathBuf::from(dir);
    let pids: Vec<u32> = pids.split_whitespace().map(|p| p.parse().unwrap()).collect();

    // SIGKILL: no Drop runs. Patroni and etcd are children of the dead test process; the
    // postmasters were never Patroni's children. All of them outlive their owner.
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(pids.len(), 4, "two Patronis, two postmasters");
    assert!(pids.iter().all(|&p| running(p)), "orphans outlive their owner");
    assert!(!processes_in(&dir).is_empty(), "etcd too");

    localpg::reclaim_stale_slots();
    assert!(!dir.exists(), "{} removed", dir.display());
    for pid in pids {
        eventually(&format!("process {pid} is gone"), || !running(pid));
    }
    assert!(processes_in(&dir).is_empty(), "left running: {:?}", processes_in(&dir));
}
