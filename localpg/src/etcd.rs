//! The etcd of a [`crate::PatroniCluster`]: one single-member etcd (v3 API, which
//! Patroni's `etcd3` DCS speaks through etcd's JSON gateway) on its own loopback address,
//! its data in the cluster directory, run as `postgres` when we are root, stopped by PID.

use super::error::{log_tail, LocalPgError};
use super::http;
use super::procs;
use super::run::{server_command, wait_deadline};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// etcd's client port (each cluster's etcd has an address of its own).
pub const ETCD_CLIENT_PORT: u16 = 2379;
/// etcd's peer port (a single member: nothing connects to it but etcd itself).
pub const ETCD_PEER_PORT: u16 = 2380;

/// How long etcd may take to answer `/health` after it was started.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// A running etcd; [`Etcd::teardown`] (called by the cluster's drop) stops it.
#[derive(Debug)]
pub struct Etcd {
    pub address: Ipv4Addr,
    dir: PathBuf,
    child: Mutex<Option<Child>>,
}

impl Etcd {
    /// Starts `etcd` with its data in `dir/etcd` and its log in `dir/etcd.log`, and waits
    /// until it reports itself healthy.
    pub(crate) fn start(program: &Path, address: Ipv4Addr, dir: &Path) -> Result<Etcd, LocalPgError> {
        let log_path = dir.join("etcd.log");
        let log =
            std::fs::File::create(&log_path).map_err(LocalPgError::io(format!("create {}", log_path.display())))?;
        let err = log.try_clone().map_err(LocalPgError::io("dup etcd log"))?;
        let client = format!("http://{address}:{ETCD_CLIENT_PORT}");
        let peer = format!("http://{address}:{ETCD_PEER_PORT}");
        let token = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "lagdns".into());
        let mut cmd = server_command(program)?;
        scrub_env(&mut cmd);
        cmd.arg("--name")
            .arg("lagdns")
            .arg("--data-dir")
            .arg(dir.join("etcd"))
            .args(["--listen-client-urls", &client, "--advertise-client-urls", &client])
            .args(["--listen-peer-urls", &peer, "--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &format!("lagdns={peer}"), "--initial-cluster-state", "new"])
            .args(["--initial-cluster-token", &token])
            // Throwaway data: no fsync (like the PostgreSQL servers' fsync = off). One
            // member has no peers to wait for: a short election makes it leader sooner.
            .args(["--unsafe-no-fsync", "--heartbeat-interval", "50", "--election-timeout", "500"])
            .args(["--logger", "zap", "--log-outputs", "stderr"])
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(err));
        let child = cmd.spawn().map_err(LocalPgError::io(format!("cannot start {}", program.display())))?;
        let etcd = Etcd { address, dir: dir.to_path_buf(), child: Mutex::new(Some(child)) };
        etcd.wait_healthy()?;
        Ok(etcd)
    }

    /// `http://<address>:2379`, what Patroni's `etcd3.hosts` and `etcdctl --endpoints` take.
    pub fn client_url(&self) -> String {
        format!("http://{}:{ETCD_CLIENT_PORT}", self.address)
    }

    pub fn client_addr(&self) -> SocketAddr {
        SocketAddr::from((self.address, ETCD_CLIENT_PORT))
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.join("etcd.log")
    }

    fn wait_healthy(&self) -> Result<(), LocalPgError> {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let last = match http::get(self.client_addr(), "/health", Duration::from_secs(2)) {
                Ok(r) if r.status == 200 && r.body.contains("\"true\"") => return Ok(()),
                Ok(r) => format!("{} {}", r.status, r.body.trim()),
                Err(e) => e.to_string(),
            };
            let exited =
                self.child.lock().unwrap_or_else(|e| e.into_inner()).as_mut().and_then(|c| c.try_wait().ok()?);
            if let Some(status) = exited {
                return Err(LocalPgError::Other(format!(
                    "etcd exited while starting ({status}){}",
                    log_tail(&self.log_path())
                        .map(|(p, t)| format!("\n--- {} ---\n{t}", p.display()))
                        .unwrap_or_default()
                )));
            }
            if Instant::now() >= deadline {
                return Err(LocalPgError::WaitTimeout {
                    what: format!("etcd on {} is healthy", self.client_url()),
                    after: START_TIMEOUT,
                    last,
                    log: log_tail(&self.log_path()),
                });
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// SIGTERM, then SIGKILL after a grace period; reaps the process. Idempotent.
    pub(crate) fn teardown(&self) {
        if let Some(mut child) = self.child.lock().unwrap_or_else(|e| e.into_inner()).take() {
            stop_child(&mut child, Duration::from_secs(5));
        }
    }
}

/// Stops a child we started: SIGTERM, up to `grace` to exit, then SIGKILL; always reaped.
pub(crate) fn stop_child(child: &mut Child, grace: Duration) {
    if matches!(child.try_wait(), Ok(None)) {
        procs::signal(child.id(), libc::SIGTERM);
        wait_deadline(child, grace); // kills and reaps on timeout
    }
}

/// Removes the environment variables etcd and Patroni read their settings from
/// (`ETCD_*`, `ETCDCTL_*`, `PATRONI_*`), so the caller's environment cannot move them.
pub(crate) fn scrub_env(cmd: &mut std::process::Command) {
    for (key, _) in std::env::vars_os() {
        let k = key.to_string_lossy();
        if k.starts_with("ETCD") || k.starts_with("PATRONI") {
            cmd.env_remove(&key);
        }
    }
}
