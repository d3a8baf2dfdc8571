//! A real Patroni cluster for tests: one etcd and `n` Patroni members (`pg1`, `pg2`, ...),
//! each managing its own PostgreSQL, every process on its own loopback address of one
//! Patroni slot (`127.78.n.x`), torn down on drop (even on panic) and reclaimed after a
//! crash of its owner like a [`crate::LocalCluster`].
//!
//! ```no_run
//! use localpg::PatroniCluster;
//! let cluster = PatroniCluster::start(3)?;           // pg1 bootstraps and leads
//! assert_eq!(cluster.leader()?.as_deref(), Some("pg1"));
//! let doc = cluster.member(0).cluster_json()?;       // GET /cluster, as Patroni serves it
//! cluster.switchover("pg2")?;                        // returns once pg2 leads and all run
//! cluster.stop_member(2)?;                           // pg3's Patroni stops its PostgreSQL
//! cluster.start_member(2)?;
//! # Ok::<(), localpg::LocalPgError>(())
//! ```
//!
//! Layout of slot `n`: etcd on `127.78.n.250` ([`ETCD_CLIENT_PORT`], [`ETCD_PEER_PORT`]);
//! member `i` (0-based) on `127.78.n.(i+1)`: PostgreSQL on [`crate::port`] (54321 unless
//! `$LAGDNS_PG_PORT`), the REST API on [`PATRONI_API_PORT`]. Files in
//! `/dev/shm/lagdns-patroni-<pid>-<k>/` (the tmpfs, when it has 1 GiB free; else `/tmp`):
//! `etcd/`, `etcd.log`, `post_bootstrap.sh`, and per member `pgN/patroni.yml` (also what
//! `patronictl -c` takes), `pgN/patroni.log` (Patroni's and PostgreSQL's output),
//! `pgN/data/`.
//!
//! The settings are for fast tests: DCS `ttl` 10 s, `loop_wait` 1 s, `retry_timeout` 4 s
//! (Patroni wants `loop_wait + 2 × retry_timeout ≤ ttl`), asynchronous replication,
//! `fsync = off`; every login from 127.0.0.0/8 is `trust`. The bootstrap creates the
//! monitoring role `lagdns` (LOGIN, pg_monitor), as [`crate::LocalCluster`] does.
//!
//! Teardown order: every member's Patroni gets SIGTERM at once (each stops its own
//! PostgreSQL; Patroni starts the postmaster in a session of its own, so it is not
//! Patroni's child), a straggler is SIGKILLed; then any postmaster left on a member's data
//! directory is stopped; etcd last.

use super::error::{log_tail, LocalPgError};
use super::etcd::{scrub_env, stop_child, Etcd};
use super::http;
use super::procs;
use super::run::{chown_to_pg, client_tool, run, server_command};
use super::slot::{self, Slot};
use super::{bin_dir, port};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub use super::etcd::{ETCD_CLIENT_PORT, ETCD_PEER_PORT};

/// Port of every member's REST API (each member has an address of its own).
pub const PATRONI_API_PORT: u16 = 8008;
/// The last octet of etcd's address in the slot's subnet.
const ETCD_HOST: u8 = 250;
/// Patroni's `scope`: the cluster's name in the DCS (and `cluster_name` in PostgreSQL).
pub const SCOPE: &str = "lagdns";
/// How long a bootstrap, a member's (re)start or a switchover may take.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(90);
/// How long a member's Patroni may take to stop its PostgreSQL and exit after SIGTERM.
const STOP_GRACE: Duration = Duration::from_secs(30);
/// One REST call.
const HTTP_TIMEOUT: Duration = Duration::from_secs(5);
/// One psql call.
const SQL_TIMEOUT: Duration = Duration::from_secs(30);

/// Patroni clusters started by this process so far: names their directories uniquely.
static CLUSTERS: AtomicU64 = AtomicU64::new(0);

/// A running Patroni cluster; dropping it stops and removes everything.
#[derive(Debug)]
pub struct PatroniCluster {
    dir: PathBuf,
    etcd: Option<Etcd>,
    members: Vec<PatroniMember>,
    slot: Option<Slot>,
}

/// One Patroni member and the PostgreSQL it manages.
#[derive(Debug)]
pub struct PatroniMember {
    /// Patroni's member name: `pg1`, `pg2`, ...
    pub name: String,
    /// The member's loopback address: PostgreSQL and the REST API listen here.
    pub address: Ipv4Addr,
    /// PostgreSQL's port.
    pub port: u16,
    /// The REST API's port.
    pub api_port: u16,
    dir: PathBuf,
    bin: PathBuf,
    patroni: PathBuf,
    etcd_hosts: String,
    tags: Mutex<Vec<(String, String)>>,
    process: Mutex<Option<Child>>,
    /// A WAL receiver we SIGSTOPped (see [`PatroniMember::freeze_wal_receiver`]).
    frozen_receiver: Mutex<Option<u32>>,
}

/// One member as `GET /cluster` lists it (what the harness itself needs to wait on).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberStatus {
    pub name: String,
    /// `leader`, `replica`, `sync_standby`, `standby_leader`, ...
    pub role: String,
    /// `running`, `stopped`, `starting`, `creating replica`, ...
    pub state: String,
    pub timeline: Option<u64>,
    /// Bytes behind the leader; `None` for the leader and when Patroni says `unknown`.
    pub lag: Option<u64>,
    /// The member's tags, each value as JSON text (`true`, `"x"`).
    pub tags: Vec<(String, String)>,
}

impl MemberStatus {
    /// PostgreSQL runs: `running`, or what Patroni 3.0.4+ says of a healthy replica
    /// (`streaming`, `in archive recovery`).
    pub fn is_running(&self) -> bool {
        matches!(self.state.as_str(), "running" | "streaming" | "in archive recovery")
    }
}

/// The whole `GET /cluster` document, as far as the harness reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterStatus {
    pub members: Vec<MemberStatus>,
    /// Maintenance mode (`patronictl pause`): Patroni changes nothing.
    pub paused: bool,
}

impl ClusterStatus {
    /// The member currently holding the leader key.
    pub fn leader(&self) -> Option<&MemberStatus> {
        self.members.iter().find(|m| m.role == "leader" || m.role == "standby_leader")
    }

    pub fn member(&self, name: &str) -> Option<&MemberStatus> {
        self.members.iter().find(|m| m.name == name)
    }

    /// `pg1=leader/running pg2=replica/stopped ...`, for error messages.
    pub fn summary(&self) -> String {
        let mut s: Vec<String> = self.members.iter().map(|m| format!("{}={}/{}", m.name, m.role, m.state)).collect();
        if self.paused {
            s.push("(paused)".into());
        }
        s.join(" ")
    }

    fn parse(body: &str) -> Result<ClusterStatus, String> {
        let doc: serde_json::Value = serde_json::from_str(body).map_err(|e| format!("not JSON ({e}): {body:?}"))?;
        let members = doc.get("members").and_then(|m| m.as_array()).ok_or_else(|| format!("no members: {body}"))?;
        let text = |m: &serde_json::Value, key: &str| m.get(key).and_then(|v| v.as_str()).unwrap_or("").to_string();
        let members = members
            .iter()
            .map(|m| MemberStatus {
                name: text(m, "name"),
                role: text(m, "role"),
                state: text(m, "state"),
                timeline: m.get("timeline").and_then(|t| t.as_u64()),
                lag: m.get("lag").and_then(|l| l.as_u64()),
                tags: m
                    .get("tags")
                    .and_then(|t| t.as_object())
                    .map(|t| t.iter().map(|(k, v)| (k.clone(), v.to_string())).collect())
                    .unwrap_or_default(),
            })
            .collect();
        let paused = doc.get("pause").and_then(|p| p.as_bool()).unwrap_or(false);
        Ok(ClusterStatus { members, paused })
    }
}

/// A program that must be installed, or the error saying how to get it.
fn program(name: &str, package: &str) -> Result<PathBuf, LocalPgError> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let dirs = std::env::split_paths(&path).chain(["/usr/bin", "/usr/sbin"].map(PathBuf::from));
    dirs.map(|d| d.join(name))
        .find(|p| p.is_file())
        .ok_or_else(|| LocalPgError::ToolNotFound { tool: name.to_string(), package: package.to_string() })
}

/// The programs a Patroni cluster needs: `patroni` and `etcd`, or the error naming the
/// Debian package that brings the missing one.
pub fn patroni_programs() -> Result<(PathBuf, PathBuf), LocalPgError> {
    Ok((program("patroni", "patroni")?, program("etcd", "etcd-server")?))
}

impl PatroniCluster {
    /// Starts etcd, then `pg1` (which bootstraps the cluster and becomes its leader), then
    /// the other members (cloned from `pg1` by Patroni with pg_basebackup); returns once
    /// every member is `running` in `GET /cluster` and every replica's WAL receiver is
    /// streaming.
    pub fn start(members: usize) -> Result<PatroniCluster, LocalPgError> {
        if members == 0 || members > 200 {
            return Err(LocalPgError::Other(format!("{members} members: from 1 to 200 per cluster")));
        }
        let (patroni, etcd_program) = patroni_programs()?;
        let bin = bin_dir()?;
        let port = port()?;
        let slot = Slot::acquire(&slot::PATRONI)?;
        let k = CLUSTERS.fetch_add(1, Ordering::Relaxed);
        let dir = slot::PATRONI.cluster_dir(k);
        let mut cluster = PatroniCluster { dir: dir.clone(), etcd: None, members: Vec::new(), slot: None };
        let _ = std::fs::remove_dir_all(&dir); // a stale one from a recycled pid
        make_dir(&dir)?;
        slot.record_dir(&dir)?;
        let etcd_address = slot.host(ETCD_HOST);
        let etcd_hosts = format!("{etcd_address}:{ETCD_CLIENT_PORT}");
        cluster.members = (0..members)
            .map(|i| PatroniMember {
                name: format!("pg{}", i + 1),
                address: slot.address(i),
                port,
                api_port: PATRONI_API_PORT,
                dir: dir.join(format!("pg{}", i + 1)),
                bin: bin.clone(),
                patroni: patroni.clone(),
                etcd_hosts: etcd_hosts.clone(),
                tags: Mutex::new(Vec::new()),
                process: Mutex::new(None),
                frozen_receiver: Mutex::new(None),
            })
            .collect();
        cluster.slot = Some(slot);
        cluster.etcd = Some(Etcd::start(&etcd_program, etcd_address, &dir)?);
        cluster.build(&bin)?;
        Ok(cluster)
    }

    fn build(&self, bin: &Path) -> Result<(), LocalPgError> {
        write_script(&self.post_bootstrap(), &post_bootstrap_script(bin))?;
        for m in &self.members {
            make_dir(&m.dir)?;
            m.write_config(&self.post_bootstrap())?;
        }
        let (first, rest) = self.members.split_first().expect("at least one member");
        first.spawn()?;
        self.wait_until("pg1 bootstrapped the cluster and leads it", SETTLE_TIMEOUT, |c| {
            c.member(&first.name).is_some_and(|m| m.role == "leader" && m.is_running())
        })?;
        for m in rest {
            m.spawn()?;
        }
        self.wait_all_running(SETTLE_TIMEOUT)?;
        self.wait_replicas_streaming(SETTLE_TIMEOUT)
    }

    fn post_bootstrap(&self) -> PathBuf {
        self.dir.join("post_bootstrap.sh")
    }

    pub fn members(&self) -> &[PatroniMember] {
        &self.members
    }

    /// Member `i` (0-based: `member(0)` is `pg1`); panics if there is none (test helper).
    pub fn member(&self, i: usize) -> &PatroniMember {
        self.members.get(i).unwrap_or_else(|| panic!("no member {i}: the cluster has {}", self.members.len()))
    }

    /// The member called `name`; panics if there is none (test helper).
    pub fn member_named(&self, name: &str) -> &PatroniMember {
        self.members.iter().find(|m| m.name == name).unwrap_or_else(|| panic!("no member {name:?} in this cluster"))
    }

    /// The cluster's temp directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The slot number `n`: members listen on 127.78.n.1, 127.78.n.2, ..., etcd on 127.78.n.250.
    pub fn slot(&self) -> Option<u8> {
        self.slot.as_ref().map(|s| s.n)
    }

    pub fn etcd(&self) -> &Etcd {
        self.etcd.as_ref().expect("etcd runs while the cluster exists")
    }

    /// The REST API base URLs of all members (`http://127.78.n.i:8008`), what lagdns's
    /// `patroni = [...]` lists.
    pub fn api_urls(&self) -> Vec<String> {
        self.members.iter().map(PatroniMember::api_url).collect()
    }

    /// `GET /cluster` from the first member (in order) whose REST API answers 200: the
    /// raw document.
    pub fn cluster_json(&self) -> Result<String, LocalPgError> {
        let mut errors = Vec::new();
        for m in &self.members {
            match m.cluster_json() {
                Ok(body) => return Ok(body),
                Err(e) => errors.push(format!("{}: {e}", m.name)),
            }
        }
        Err(LocalPgError::Other(format!("no member answered GET /cluster: {}", errors.join("; "))))
    }

    /// The cluster as any member lists it.
    pub fn status(&self) -> Result<ClusterStatus, LocalPgError> {
        let body = self.cluster_json()?;
        ClusterStatus::parse(&body).map_err(|e| LocalPgError::Other(format!("GET /cluster: {e}")))
    }

    /// The name of the member holding the leader key, if any.
    pub fn leader(&self) -> Result<Option<String>, LocalPgError> {
        Ok(self.status()?.leader().map(|m| m.name.clone()))
    }

    /// Polls `GET /cluster` until `done` holds, or fails after `timeout` with the last
    /// listing and the log tail of the first member that is not running.
    pub fn wait_until(
        &self,
        what: &str,
        timeout: Duration,
        done: impl Fn(&ClusterStatus) -> bool,
    ) -> Result<ClusterStatus, LocalPgError> {
        let deadline = Instant::now() + timeout;
        loop {
            let (last, culprit) = match self.status() {
                Ok(status) if done(&status) => return Ok(status),
                Ok(status) => {
                    let culprit = status.members.iter().find(|m| !m.is_running()).map(|m| m.name.clone());
                    (status.summary(), culprit)
                }
                Err(e) => (e.to_string(), None),
            };
            if Instant::now() >= deadline {
                let log = culprit
                    .and_then(|name| self.members.iter().find(|m| m.name == name))
                    .or(self.members.first())
                    .and_then(|m| log_tail(&m.log_path()));
                return Err(LocalPgError::WaitTimeout { what: what.to_string(), after: timeout, last, log });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits until every member is listed, `running`, and one of them leads.
    pub fn wait_all_running(&self, timeout: Duration) -> Result<ClusterStatus, LocalPgError> {
        let names: Vec<&str> = self.members.iter().map(|m| m.name.as_str()).collect();
        self.wait_until("every member is running and one leads", timeout, |c| {
            c.leader().is_some() && names.iter().all(|n| c.member(n).is_some_and(MemberStatus::is_running))
        })
    }

    /// Waits until the WAL receiver of every member that is not the leader is streaming.
    pub fn wait_replicas_streaming(&self, timeout: Duration) -> Result<(), LocalPgError> {
        let deadline = Instant::now() + timeout;
        let leader = self.leader()?;
        for m in self.members.iter().filter(|m| Some(&m.name) != leader.as_ref() && m.is_running()) {
            let left = deadline.saturating_duration_since(Instant::now());
            m.wait_sql("the WAL receiver is streaming", "SELECT status FROM pg_stat_wal_receiver", "streaming", left)?;
        }
        Ok(())
    }

    /// Switches the leader over to `candidate` through the current leader's REST API
    /// (`POST /switchover`, what `patronictl switchover --force` does); returns once
    /// `candidate` leads, every running member is `running` again (the old leader rejoined
    /// as a replica) on the new leader's timeline, and every replica streams.
    pub fn switchover(&self, candidate: &str) -> Result<(), LocalPgError> {
        let leader =
            self.leader()?.ok_or_else(|| LocalPgError::Other("switchover: the cluster has no leader".into()))?;
        let body = format!(r#"{{"leader":"{leader}","candidate":"{candidate}"}}"#);
        let via = self.member_named(&leader);
        let r = http::send_json(via.api_addr(), "POST", "/switchover", &body, SETTLE_TIMEOUT)?;
        if r.status != 200 {
            return Err(LocalPgError::Other(format!(
                "POST {}/switchover {body}: {} {}",
                via.api_url(),
                r.status,
                r.body.trim()
            )));
        }
        let running: Vec<&str> = self.members.iter().filter(|m| m.is_running()).map(|m| m.name.as_str()).collect();
        let what = format!("{candidate} leads after the switchover, and all run on its timeline");
        self.wait_until(&what, SETTLE_TIMEOUT, |c| {
            // A replica's entry shows the new timeline a loop or so after it streams on it.
            let Some(leader) = c.leader().filter(|l| l.name == candidate) else { return false };
            running.iter().all(|n| c.member(n).is_some_and(|m| m.is_running() && m.timeline == leader.timeline))
        })?;
        self.wait_replicas_streaming(SETTLE_TIMEOUT)
    }

    /// Stops member `i`'s Patroni (SIGTERM: it stops its PostgreSQL and marks itself
    /// `stopped` in the DCS; the listing keeps it until its member key's TTL expires).
    /// Returns once Patroni has exited and no postmaster is left on its data directory.
    pub fn stop_member(&self, i: usize) -> Result<(), LocalPgError> {
        self.member(i).stop()
    }

    /// Starts member `i`'s Patroni again; returns once it is `running` in the listing
    /// (and, if it is a replica, streaming).
    pub fn start_member(&self, i: usize) -> Result<(), LocalPgError> {
        let m = self.member(i);
        m.spawn()?;
        self.wait_until(&format!("{} is running again", m.name), SETTLE_TIMEOUT, |c| {
            c.member(&m.name).is_some_and(MemberStatus::is_running)
        })?;
        if self.leader()?.as_deref() != Some(m.name.as_str()) {
            m.wait_sql(
                "the WAL receiver is streaming",
                "SELECT status FROM pg_stat_wal_receiver",
                "streaming",
                SETTLE_TIMEOUT,
            )?;
        }
        Ok(())
    }

    /// Sets member `i`'s Patroni tags (`[("noloadbalance", "true")]`: each value is YAML;
    /// `&[]` removes them all) in its config, reloads it (SIGHUP), and waits until the
    /// listing shows exactly these tags. Patroni leaves its own tags out of the listing
    /// when they are false, so set only true ones.
    pub fn set_tags(&self, i: usize, tags: &[(&str, &str)]) -> Result<(), LocalPgError> {
        let m = self.member(i);
        *m.tags.lock().unwrap_or_else(|e| e.into_inner()) =
            tags.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        m.write_config(&self.post_bootstrap())?;
        m.reload()?;
        let mut keys: Vec<&str> = tags.iter().map(|(k, _)| *k).collect();
        keys.sort();
        self.wait_until(&format!("{} lists exactly the tags {keys:?}", m.name), SETTLE_TIMEOUT, |c| {
            c.member(&m.name).is_some_and(|s| {
                let mut listed: Vec<&str> = s.tags.iter().map(|(k, _)| k.as_str()).collect();
                listed.sort();
                listed == keys
            })
        })
        .map(|_| ())
    }

    /// Maintenance mode on or off (`PATCH /config {"pause": ...}`, what `patronictl
    /// pause`/`resume` do); waits until the listing agrees.
    pub fn set_paused(&self, paused: bool) -> Result<(), LocalPgError> {
        let via =
            self.members.iter().find(|m| m.is_running()).ok_or_else(|| LocalPgError::Other("no member runs".into()))?;
        let body = format!(r#"{{"pause":{paused}}}"#);
        let r = http::send_json(via.api_addr(), "PATCH", "/config", &body, HTTP_TIMEOUT)?;
        if r.status != 200 {
            return Err(LocalPgError::Other(format!("PATCH {}/config {body}: {} {}", via.api_url(), r.status, r.body)));
        }
        self.wait_until(&format!("the listing shows pause={paused}"), SETTLE_TIMEOUT, |c| c.paused == paused)
            .map(|_| ())
    }

    fn teardown(&mut self) {
        for m in &self.members {
            m.thaw_wal_receiver();
        }
        // All at once: no replica gets the time to take over from a stopping leader.
        for m in &self.members {
            m.signal_stop();
        }
        for m in &self.members {
            m.reap(STOP_GRACE);
            m.kill_postmaster();
        }
        if let Some(etcd) = self.etcd.take() {
            etcd.teardown();
        }
        slot::kill_running_from(&self.dir); // anything that escaped the steps above
        self.members.clear();
        if slot::PATRONI.owns(&self.dir) {
            for _ in 0..5 {
                if std::fs::remove_dir_all(&self.dir).is_ok() || !self.dir.exists() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        self.slot.take(); // releases the slot last, once nothing of ours uses its addresses
    }
}

impl Drop for PatroniCluster {
    fn drop(&mut self) {
        self.teardown();
    }
}

impl PatroniMember {
    /// `http://<address>:8008`.
    pub fn api_url(&self) -> String {
        format!("http://{}:{}", self.address, self.api_port)
    }

    pub fn api_addr(&self) -> SocketAddr {
        SocketAddr::from((self.address, self.api_port))
    }

    /// PostgreSQL's `address:port`.
    pub fn socket_addr(&self) -> SocketAddr {
        SocketAddr::from((self.address, self.port))
    }

    /// libpq DSN for the monitoring role `lagdns` over TCP (lagdns's default `node_dsn`
    /// filled in with this member's host and port).
    pub fn dsn(&self) -> String {
        format!("host={} port={} user=lagdns dbname=postgres", self.address, self.port)
    }

    /// The member's directory: `patroni.yml`, `patroni.log`, `data/`, the unix socket.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Patroni's config file (`patronictl -c <this> list` works on it).
    pub fn config_path(&self) -> PathBuf {
        self.dir.join("patroni.yml")
    }

    /// Patroni's output, PostgreSQL's server log included.
    pub fn log_path(&self) -> PathBuf {
        self.dir.join("patroni.log")
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// True while this member's Patroni process runs.
    pub fn is_running(&self) -> bool {
        let mut process = self.process.lock().unwrap_or_else(|e| e.into_inner());
        process.as_mut().is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// `GET <path>` from this member's REST API: (status, body).
    pub fn get(&self, path: &str) -> Result<(u16, String), LocalPgError> {
        let r = http::get(self.api_addr(), path, HTTP_TIMEOUT)?;
        Ok((r.status, r.body))
    }

    /// `GET /cluster` from this member: the raw JSON document (an error unless 200).
    pub fn cluster_json(&self) -> Result<String, LocalPgError> {
        match self.get("/cluster")? {
            (200, body) => Ok(body),
            (status, body) => Err(LocalPgError::Other(format!("GET {}/cluster: {status} {body}", self.api_url()))),
        }
    }

    /// Runs `query` as superuser through the member's unix socket (`psql -Atc`).
    pub fn sql(&self, query: &str) -> Result<String, LocalPgError> {
        let mut cmd = client_tool(&self.bin, "psql");
        let conninfo = format!(
            "host={} port={} user=postgres dbname=postgres connect_timeout=5 application_name=localpg",
            self.dir.display(),
            self.port
        );
        cmd.args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", &conninfo, "-c", query]);
        Ok(run(cmd, SQL_TIMEOUT, None)?.trim().to_string())
    }

    /// Polls `query` until it returns `want`, or fails after `timeout`.
    pub fn wait_sql(&self, what: &str, query: &str, want: &str, timeout: Duration) -> Result<(), LocalPgError> {
        let deadline = Instant::now() + timeout;
        loop {
            let last = match self.sql(query) {
                Ok(out) if out == want => return Ok(()),
                Ok(out) => format!("{out:?}"),
                Err(e) => e.to_string(),
            };
            if Instant::now() >= deadline {
                return Err(LocalPgError::WaitTimeout {
                    what: format!("{}: {what}", self.name),
                    after: timeout,
                    last,
                    log: log_tail(&self.log_path()),
                });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGSTOPs this replica's WAL receiver: it stops receiving WAL (and Patroni, which
    /// measures lag against what a replica has received, reports it lagging) while the
    /// server keeps answering. Undone by [`thaw_wal_receiver`](Self::thaw_wal_receiver)
    /// and by teardown.
    pub fn freeze_wal_receiver(&self) -> Result<(), LocalPgError> {
        let q = "SELECT pid FROM pg_stat_wal_receiver";
        let out = self.sql(q)?;
        let pid: u32 = out.parse().map_err(|_| LocalPgError::Unexpected {
            node: self.name.clone(),
            query: q.into(),
            output: out.clone(),
        })?;
        procs::signal(pid, libc::SIGSTOP);
        *self.frozen_receiver.lock().unwrap_or_else(|e| e.into_inner()) = Some(pid);
        Ok(())
    }

    /// Resumes a WAL receiver [`freeze_wal_receiver`](Self::freeze_wal_receiver) stopped.
    pub fn thaw_wal_receiver(&self) {
        if let Some(pid) = self.frozen_receiver.lock().unwrap_or_else(|e| e.into_inner()).take() {
            procs::signal(pid, libc::SIGCONT);
        }
    }

    /// The running postmaster's pid (from `postmaster.pid`), if any.
    pub fn postmaster_pid(&self) -> Option<u32> {
        let text = std::fs::read_to_string(self.data_dir().join("postmaster.pid")).ok()?;
        let pid = text.lines().next()?.trim().parse().ok()?;
        procs::is_postmaster_of(pid, &self.data_dir()).then_some(pid)
    }

    /// Patroni's process id while it runs.
    pub fn patroni_pid(&self) -> Option<u32> {
        let mut process = self.process.lock().unwrap_or_else(|e| e.into_inner());
        let child = process.as_mut()?;
        matches!(child.try_wait(), Ok(None)).then(|| child.id())
    }

    fn write_config(&self, post_bootstrap: &Path) -> Result<(), LocalPgError> {
        let tags = self.tags.lock().unwrap_or_else(|e| e.into_inner()).clone();
        write_file(&self.config_path(), &patroni_yaml(self, post_bootstrap, &tags))
    }

    fn spawn(&self) -> Result<(), LocalPgError> {
        let mut process = self.process.lock().unwrap_or_else(|e| e.into_inner());
        if process.as_mut().is_some_and(|c| matches!(c.try_wait(), Ok(None))) {
            return Err(LocalPgError::Other(format!("{}: Patroni is already running", self.name)));
        }
        let log_path = self.log_path();
        let open = || {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&log_path)
                .map_err(LocalPgError::io(format!("open {}", log_path.display())))
        };
        let mut cmd: Command = server_command(&self.patroni)?;
        scrub_env(&mut cmd);
        cmd.arg(self.config_path()).stdout(Stdio::from(open()?)).stderr(Stdio::from(open()?));
        let child = cmd.spawn().map_err(LocalPgError::io(format!("cannot start {}", self.patroni.display())))?;
        *process = Some(child);
        Ok(())
    }

    fn reload(&self) -> Result<(), LocalPgError> {
        match self.patroni_pid() {
            Some(pid) => {
                procs::signal(pid, libc::SIGHUP);
                Ok(())
            }
            None => Err(LocalPgError::Other(format!("{}: Patroni is not running", self.name))),
        }
    }

    fn stop(&self) -> Result<(), LocalPgError> {
        self.thaw_wal_receiver();
        if !self.signal_stop() {
            return Err(LocalPgError::Other(format!("{}: Patroni is not running", self.name)));
        }
        let clean = self.reap(STOP_GRACE);
        let postmaster_left = self.kill_postmaster();
        if !clean || postmaster_left {
            return Err(LocalPgError::Other(format!(
                "{}: Patroni {} after SIGTERM{}{}",
                self.name,
                if clean { "exited" } else { "did not exit within the grace period (killed)" },
                if postmaster_left { " and left its postmaster running (killed)" } else { "" },
                log_tail(&self.log_path()).map(|(p, t)| format!("\n--- {} ---\n{t}", p.display())).unwrap_or_default()
            )));
        }
        Ok(())
    }

    /// SIGTERM to Patroni; false if it was not running.
    fn signal_stop(&self) -> bool {
        self.patroni_pid().is_some_and(|pid| procs::signal(pid, libc::SIGTERM))
    }

    /// Waits up to `grace` for Patroni to exit (SIGKILL after that); true if it exited
    /// by itself (or was not running).
    fn reap(&self, grace: Duration) -> bool {
        let Some(mut child) = self.process.lock().unwrap_or_else(|e| e.into_inner()).take() else {
            return true;
        };
        let deadline = Instant::now() + grace;
        while matches!(child.try_wait(), Ok(None)) {
            if Instant::now() >= deadline {
                stop_child(&mut child, Duration::ZERO);
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        true
    }

    /// Stops a postmaster left on the data directory (Patroni did not stop it: it was
    /// killed or wedged); true if there was one.
    fn kill_postmaster(&self) -> bool {
        let Some(pid) = self.postmaster_pid() else {
            return false;
        };
        procs::signal(pid, libc::SIGQUIT); // immediate shutdown
        if !procs::wait_gone(pid, Duration::from_secs(5)) && procs::is_postmaster_of(pid, &self.data_dir()) {
            procs::kill_tree(pid);
            procs::wait_gone(pid, Duration::from_secs(5));
        }
        true
    }
}

/// The post_bootstrap hook: Patroni runs it once, on the bootstrapping member, with a
/// superuser connection string as `$1`.
fn post_bootstrap_script(bin: &Path) -> String {
    format!(
        "#!/bin/sh\n# localpg: the monitoring role lagdns probes with (as LocalCluster makes it)\n\
         exec '{}' -X -q -v ON_ERROR_STOP=1 -d \"$1\" -c 'CREATE ROLE lagdns LOGIN; GRANT pg_monitor TO lagdns'\n",
        bin.join("psql").display()
    )
}

/// A member's `patroni.yml`. JSON is YAML: every scalar is written as a JSON string or
/// number, so nothing needs YAML quoting rules; tag values are YAML as given.
fn patroni_yaml(m: &PatroniMember, post_bootstrap: &Path, tags: &[(String, String)]) -> String {
    let q = |s: &str| serde_json::Value::from(s).to_string();
    let dir = m.dir.display().to_string();
    let pg = format!("{}:{}", m.address, m.port);
    let api = format!("{}:{}", m.address, m.api_port);
    let tags = if tags.is_empty() {
        String::new()
    } else {
        let lines: String = tags.iter().map(|(k, v)| format!("  {}: {v}\n", q(k))).collect();
        format!("tags:\n{lines}")
    };
    format!(
        r#"# localpg: member {name} of a throwaway Patroni cluster (written by the test harness)
scope: {scope}
namespace: "/lagdns/"
name: {name_q}
log:
  level: INFO
restapi:
  listen: {api}
  connect_address: {api}
etcd3:
  hosts: [{etcd}]
watchdog:
  mode: "off"
bootstrap:
  dcs:
    ttl: 10
    loop_wait: 1
    retry_timeout: 4
    maximum_lag_on_failover: 1048576
    synchronous_mode: false
    postgresql:
      use_pg_rewind: true
      use_slots: true
      remove_data_directory_on_rewind_failure: true
      remove_data_directory_on_diverged_timelines: true
      parameters:
        wal_level: "replica"
        hot_standby: "on"
        wal_log_hints: "on"
        max_connections: 40
        max_wal_senders: 10
        max_replication_slots: 10
        wal_keep_size: "64MB"
        fsync: "off"
        synchronous_commit: "off"
        shared_buffers: "16MB"
        wal_receiver_status_interval: "1s"
        wal_retrieve_retry_interval: "200ms"
  initdb:
  - encoding: "UTF8"
  - locale: "C"
  - auth: "trust"
  post_bootstrap: {post_bootstrap}
postgresql:
  listen: {pg}
  connect_address: {pg}
  data_dir: {data}
  bin_dir: {bin}
  pgpass: {pgpass}
  authentication:
    superuser:
      username: "postgres"
    replication:
      username: "replicator"
    rewind:
      username: "postgres"
  basebackup:
  - checkpoint: "fast"
  pg_hba:
  - "local all all trust"
  - "local replication all trust"
  - "host all all 127.0.0.0/8 trust"
  - "host replication all 127.0.0.0/8 trust"
  parameters:
    unix_socket_directories: {dir_q}
    log_line_prefix: "%m [%p] {name} %q%a "
{tags}"#,
        name = m.name,
        scope = q(SCOPE),
        name_q = q(&m.name),
        api = q(&api),
        etcd = q(&m.etcd_hosts),
        post_bootstrap = q(&post_bootstrap.display().to_string()),
        pg = q(&pg),
        data = q(&m.data_dir().display().to_string()),
        bin = q(&m.bin.display().to_string()),
        pgpass = q(&format!("{dir}/pgpass")),
        dir_q = q(&dir),
    )
}

fn make_dir(path: &Path) -> Result<(), LocalPgError> {
    std::fs::create_dir(path).map_err(LocalPgError::io(format!("create {}", path.display())))?;
    std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o700))
        .map_err(LocalPgError::io(format!("chmod {}", path.display())))?;
    chown_to_pg(path)
}

fn write_file(path: &Path, text: &str) -> Result<(), LocalPgError> {
    std::fs::write(path, text).map_err(LocalPgError::io(format!("write {}", path.display())))?;
    chown_to_pg(path)
}

fn write_script(path: &Path, text: &str) -> Result<(), LocalPgError> {
    write_file(path, text)?;
    std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .map_err(LocalPgError::io(format!("chmod {}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_status_reads_what_patroni_serves() {
        let body = r#"{"members":[
            {"name":"pg1","role":"leader","state":"running","host":"127.78.1.1","port":54321,"timeline":2},
            {"name":"pg2","role":"replica","state":"stopped","lag":"unknown","tags":{"noloadbalance":true}},
            {"name":"pg3","role":"replica","state":"running","timeline":2,"lag":4096}],"pause":true}"#;
        let s = ClusterStatus::parse(body).unwrap();
        assert_eq!(s.leader().map(|m| m.name.as_str()), Some("pg1"));
        assert_eq!(s.member("pg2").unwrap().lag, None);
        assert_eq!(s.member("pg2").unwrap().tags, [("noloadbalance".to_string(), "true".to_string())]);
        assert_eq!(s.member("pg3").unwrap().lag, Some(4096));
        assert!(s.paused);
        assert_eq!(s.summary(), "pg1=leader/running pg2=replica/stopped pg3=replica/running (paused)");
        assert!(ClusterStatus::parse("<html>").is_err());
    }
}
