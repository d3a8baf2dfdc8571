//! One local PostgreSQL server (primary or streaming replica) and the faults a test can
//! inflict on it: stop/start, freeze/thaw, promote, pause replay, cut it off upstream;
//! and password authentication for a role, where a test needs it.

use super::cluster::HBA;
use super::error::{log_tail, LocalPgError};
use super::run::{client_tool, pg_tool, run};
use super::{procs, slot};
use crate::wal::{Lsn, Timeline};
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a single tool invocation (pg_ctl, psql, ...) may take before it is killed.
pub(crate) const TOOL_TIMEOUT: Duration = Duration::from_secs(60);
/// How long state changes we poll for (replay paused, receiver gone, ...) may take.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(30);

/// A PostgreSQL server of a [`super::LocalCluster`], listening on its own loopback address.
#[derive(Debug)]
pub struct LocalNode {
    pub name: String,
    pub address: Ipv4Addr,
    pub port: u16,
    dir: PathBuf,
    bin: PathBuf,
    pids_file: PathBuf,
    postmaster: Mutex<Option<u32>>,
    /// `primary_conninfo` to restore on reconnect; None for a node created as primary.
    upstream: Mutex<Option<String>>,
}

impl LocalNode {
    pub(crate) fn new(
        name: &str,
        address: Ipv4Addr,
        port: u16,
        dir: PathBuf,
        bin: PathBuf,
        pids_file: PathBuf,
    ) -> Self {
        LocalNode {
            name: name.to_string(),
            address,
            port,
            dir,
            bin,
            pids_file,
            postmaster: Mutex::new(None),
            upstream: Mutex::new(None),
        }
    }

    /// libpq DSN for the monitoring role `lagdns` (LOGIN, member of pg_monitor) over TCP.
    pub fn dsn(&self) -> String {
        format!("host={} port={} user=lagdns dbname=postgres", self.address, self.port)
    }

    /// This node as a `[[cluster.node]]` table of a lagdns config (name, address and
    /// port, DSN of the monitoring role, `weight`).
    pub fn config_table(&self, weight: u32) -> String {
        format!(
            "\n[[cluster.node]]\nname = \"{}\"\naddress = \"{}\"\nport = {}\ndsn = \"{}\"\nweight = {weight}\n",
            self.name,
            self.address,
            self.port,
            self.dsn()
        )
    }

    /// `address:port` of the server.
    pub fn socket_addr(&self) -> SocketAddr {
        SocketAddr::from((self.address, self.port))
    }

    /// The node's directory: `data/`, `postgres.log` and the unix socket live here.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.join("postgres.log")
    }

    /// The primary_conninfo a replica of `self` named `app` uses.
    pub(crate) fn upstream_conninfo(&self, app: &str) -> String {
        format!("host={} port={} user=postgres application_name={app}", self.address, self.port)
    }

    pub(crate) fn set_upstream(&self, conninfo: Option<String>) {
        *self.upstream.lock().unwrap_or_else(|e| e.into_inner()) = conninfo;
    }

    /// A psql invocation connected as superuser through the node's unix socket.
    pub(crate) fn psql(&self) -> Command {
        let mut cmd = client_tool(&self.bin, "psql");
        let conninfo = format!(
            "host={} port={} user=postgres dbname=postgres connect_timeout=5 application_name=localpg",
            self.dir.display(),
            self.port
        );
        cmd.args(["-X", "-q", "-d", &conninfo]);
        cmd
    }

    /// Runs `query` as superuser (`psql -Atc`) and returns its trimmed output.
    pub fn sql(&self, query: &str) -> Result<String, LocalPgError> {
        let mut cmd = self.psql();
        cmd.args(["-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", query]);
        Ok(run(cmd, TOOL_TIMEOUT, None)?.trim().to_string())
    }

    fn pg_ctl(&self, args: &[&str]) -> Result<(), LocalPgError> {
        let mut cmd = pg_tool(&self.bin, "pg_ctl")?;
        cmd.arg("-D").arg(self.data_dir()).args(args);
        run(cmd, TOOL_TIMEOUT + Duration::from_secs(5), Some(&self.log_path())).map(|_| ())
    }

    /// Starts the server and waits until it accepts connections (`pg_ctl start -w`).
    pub fn start(&self) -> Result<(), LocalPgError> {
        let log = self.log_path();
        let log = log.to_string_lossy();
        let started = self.pg_ctl(&["start", "-w", "-t", "60", "-s", "-l", &log]);
        if let Some(pid) = self.read_pid() {
            *self.postmaster.lock().unwrap_or_else(|e| e.into_inner()) = Some(pid);
            slot::record_postmaster(&self.pids_file, pid, &self.data_dir());
        }
        started
    }

    /// Makes TCP logins of `role` (a plain identifier) on this node need `password`
    /// (scram-sha-256); every other login, and the unix socket that `sql` uses, stays
    /// `trust`. Restarts the server, so the rule is in force when this returns (and no
    /// connection made before it survives).
    pub fn require_password(&self, role: &str, password: &str) -> Result<(), LocalPgError> {
        let password = password.replace('\'', "''");
        self.sql(&format!("SET password_encryption = 'scram-sha-256'; ALTER ROLE {role} PASSWORD '{password}'"))?;
        let hba = format!("host all {role} 127.0.0.0/8 scram-sha-256\n{HBA}");
        std::fs::write(self.data_dir().join("pg_hba.conf"), hba).map_err(LocalPgError::io("write pg_hba.conf"))?;
        self.stop()?;
        self.start()
    }

    /// Fast shutdown (`pg_ctl stop -m fast -w`); the port is closed when this returns.
    pub fn stop(&self) -> Result<(), LocalPgError> {
        self.pg_ctl(&["stop", "-m", "fast", "-w", "-t", "60", "-s"])
    }

    /// Promotes a replica and waits until it is out of recovery (`pg_ctl promote -w`).
    pub fn promote(&self) -> Result<(), LocalPgError> {
        self.pg_ctl(&["promote", "-w", "-t", "60", "-s"])
    }

    /// SIGSTOPs the postmaster and all its children: the server is up but answers nothing
    /// (TCP handshakes still complete in the kernel backlog, then nothing). `sql`, `stop`
    /// etc. block until their timeout on a frozen node: thaw first. Drop handles it.
    pub fn freeze(&self) -> Result<(), LocalPgError> {
        procs::stop_tree(self.running_pid()?);
        Ok(())
    }

    /// SIGCONTs everything [`freeze`](Self::freeze) stopped.
    pub fn thaw(&self) -> Result<(), LocalPgError> {
        procs::continue_tree(self.running_pid()?);
        Ok(())
    }

    /// The running postmaster's pid (from `postmaster.pid`), if any.
    pub fn postmaster_pid(&self) -> Option<u32> {
        self.read_pid().filter(|&pid| procs::is_postmaster_of(pid, &self.data_dir()))
    }

    fn running_pid(&self) -> Result<u32, LocalPgError> {
        self.postmaster_pid().ok_or_else(|| LocalPgError::Other(format!("{}: postmaster is not running", self.name)))
    }

    fn read_pid(&self) -> Option<u32> {
        let text = std::fs::read_to_string(self.data_dir().join("postmaster.pid")).ok()?;
        text.lines().next()?.trim().parse().ok()
    }

    /// True if the server answers a TLS probe (SSLRequest) on its TCP port within `timeout`:
    /// a frozen server completes the TCP handshake (kernel backlog) but never answers.
    pub fn accepts_connections(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let Ok(mut tcp) = TcpStream::connect_timeout(&self.socket_addr(), timeout) else {
            return false;
        };
        let left = deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(1));
        let _ = tcp.set_read_timeout(Some(left));
        // SSLRequest: length 8, code 80877103; the server answers 'S' or 'N'.
        if tcp.write_all(&[0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f]).is_err() {
            return false;
        }
        let mut answer = [0u8; 1];
        matches!(tcp.read(&mut answer), Ok(1) if answer[0] == b'N' || answer[0] == b'S')
    }

    pub fn is_in_recovery(&self) -> Result<bool, LocalPgError> {
        self.sql_bool("SELECT pg_is_in_recovery()")
    }

    /// Requests a replay pause and waits until replay is actually paused.
    pub fn pause_replay(&self) -> Result<(), LocalPgError> {
        self.sql("SELECT pg_wal_replay_pause()")?;
        self.wait_sql("replay is paused", "SELECT pg_get_wal_replay_pause_state()", "paused", SETTLE_TIMEOUT)
    }

    pub fn resume_replay(&self) -> Result<(), LocalPgError> {
        self.sql("SELECT pg_wal_replay_resume()")?;
        self.wait_sql("replay is resumed", "SELECT pg_get_wal_replay_pause_state()", "not paused", SETTLE_TIMEOUT)
    }

    /// Cuts a replica off from its upstream (empty primary_conninfo) and waits until its
    /// WAL receiver is gone. The server keeps running and answering queries.
    pub fn disconnect_upstream(&self) -> Result<(), LocalPgError> {
        self.set_primary_conninfo("")?;
        self.wait_sql("the WAL receiver stopped", "SELECT count(*) FROM pg_stat_wal_receiver", "0", SETTLE_TIMEOUT)
    }

    /// Restores the replica's upstream connection (the value it had before
    /// [`disconnect_upstream`](Self::disconnect_upstream), or the last [`follow`](Self::follow)).
    /// Does not wait; see [`wait_streaming`](Self::wait_streaming).
    pub fn reconnect_upstream(&self) -> Result<(), LocalPgError> {
        let upstream = self.upstream.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let upstream = upstream.ok_or_else(|| {
            LocalPgError::Other(format!("{} was created as a primary: no upstream to reconnect to", self.name))
        })?;
        self.set_primary_conninfo(&upstream)
    }

    /// Points a replica at another primary (timeline `latest` is the default), reloads.
    pub fn follow(&self, new_primary: &LocalNode) -> Result<(), LocalPgError> {
        let conninfo = new_primary.upstream_conninfo(&self.name);
        self.set_upstream(Some(conninfo.clone()));
        self.set_primary_conninfo(&conninfo)
    }

    fn set_primary_conninfo(&self, conninfo: &str) -> Result<(), LocalPgError> {
        let quoted = conninfo.replace('\'', "''");
        self.sql(&format!("ALTER SYSTEM SET primary_conninfo = '{quoted}'"))?;
        self.sql("SELECT pg_reload_conf()").map(|_| ())
    }

    /// Waits until this replica's WAL receiver reports `streaming`.
    pub fn wait_streaming(&self, timeout: Duration) -> Result<(), LocalPgError> {
        self.wait_sql("the WAL receiver is streaming", "SELECT status FROM pg_stat_wal_receiver", "streaming", timeout)
    }

    /// Last WAL position replayed (replica; error on a primary).
    pub fn replay_lsn(&self) -> Result<Lsn, LocalPgError> {
        self.sql_lsn("pg_last_wal_replay_lsn()")
    }

    /// Last WAL position received and flushed by the WAL receiver (replica).
    pub fn receive_lsn(&self) -> Result<Lsn, LocalPgError> {
        self.sql_lsn("pg_last_wal_receive_lsn()")
    }

    /// Current WAL write position (primary; error on a replica).
    pub fn current_lsn(&self) -> Result<Lsn, LocalPgError> {
        self.sql_lsn("pg_current_wal_lsn()")
    }

    /// Timeline: of the current WAL file on a primary, of the last checkpoint on a replica.
    pub fn timeline(&self) -> Result<Timeline, LocalPgError> {
        let q = "SELECT CASE WHEN pg_is_in_recovery() THEN (SELECT timeline_id FROM pg_control_checkpoint()) \
                 ELSE ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int END";
        let out = self.sql(q)?;
        out.parse().map(Timeline).map_err(|_| self.unexpected(q, &out))
    }

    /// The value of the pg_lsn expression `lsn`, as a byte position.
    fn sql_lsn(&self, lsn: &str) -> Result<Lsn, LocalPgError> {
        let q = format!("SELECT {lsn} - '0/0'::pg_lsn");
        let out = self.sql(&q)?;
        out.parse().map(Lsn).map_err(|_| self.unexpected(&q, &out))
    }

    fn sql_bool(&self, q: &str) -> Result<bool, LocalPgError> {
        match self.sql(q)?.as_str() {
            "t" => Ok(true),
            "f" => Ok(false),
            other => Err(self.unexpected(q, other)),
        }
    }

    fn unexpected(&self, query: &str, output: &str) -> LocalPgError {
        LocalPgError::Unexpected { node: self.name.clone(), query: query.into(), output: output.into() }
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
            std::thread::sleep(Duration::from_millis(40));
        }
    }

    /// Stops the server hard, whatever state it is in: resume if frozen, immediate
    /// shutdown, SIGKILL as a fallback. Only touches the postmaster we recorded for this
    /// data directory. Idempotent.
    pub(crate) fn teardown(&self) {
        let data = self.data_dir();
        let recorded = *self.postmaster.lock().unwrap_or_else(|e| e.into_inner());
        let pid = self.read_pid().or(recorded).filter(|&p| procs::is_postmaster_of(p, &data));
        let Some(pid) = pid else { return };
        procs::continue_tree(pid);
        let _ = self.pg_ctl(&["stop", "-m", "immediate", "-w", "-t", "10", "-s"]);
        if !procs::wait_gone(pid, Duration::from_millis(500)) && procs::is_postmaster_of(pid, &data) {
            procs::kill_tree(pid);
            procs::wait_gone(pid, Duration::from_secs(5));
        }
    }
}
