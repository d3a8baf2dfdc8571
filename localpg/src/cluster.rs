//! A primary `pg1` and streaming replicas `pg2`, `pg3`, ... in one temp directory on one
//! slot's loopback addresses; built step by step so that a failure half-way still tears
//! down everything that was started (the half-built cluster is dropped).

use super::error::LocalPgError;
use super::node::{LocalNode, TOOL_TIMEOUT};
use super::run::{chown_to_pg, pg_tool, run};
use super::slot::{self, Slot};
use super::writer::WRITES_TABLE;
use super::{bin_dir, port};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Clusters started by this process so far: names their directories uniquely.
static CLUSTERS: AtomicU64 = AtomicU64::new(0);

/// A running local streaming-replication cluster; dropping it removes every trace.
#[derive(Debug)]
pub struct LocalCluster {
    dir: PathBuf,
    nodes: Vec<LocalNode>,
    slot: Option<Slot>,
}

/// How a [`LocalCluster`] is built, for the rare caller that needs more than
/// [`LocalCluster::start`]: `LocalCluster::builder(2).max_connections(400).start()`.
#[derive(Debug, Clone)]
pub struct ClusterBuilder {
    replicas: usize,
    max_connections: u32,
}

/// `max_connections` of every node unless [`ClusterBuilder::max_connections`] says
/// otherwise: small, so many clusters fit on one machine at once (the tests run several).
pub const DEFAULT_MAX_CONNECTIONS: u32 = 40;

impl ClusterBuilder {
    /// PostgreSQL's `max_connections` on every node (replicas inherit the primary's
    /// through pg_basebackup, which hot standby requires). At least 10: replication
    /// and the harness's own psql sessions need a few.
    pub fn max_connections(mut self, n: u32) -> ClusterBuilder {
        self.max_connections = n.max(10);
        self
    }

    /// Starts the cluster (see [`LocalCluster::start`]).
    pub fn start(self) -> Result<LocalCluster, LocalPgError> {
        self.start_reporting(|_| {})
    }

    /// [`ClusterBuilder::start`], telling `progress` as each node comes up.
    pub fn start_reporting(self, progress: impl Fn(&str) + Sync) -> Result<LocalCluster, LocalPgError> {
        LocalCluster::start_built(self, progress)
    }
}

impl LocalCluster {
    /// Starts primary `pg1` and `replicas` replicas streaming from it; returns once all
    /// accept connections and every replica's WAL receiver is streaming.
    pub fn start(replicas: usize) -> Result<LocalCluster, LocalPgError> {
        LocalCluster::builder(replicas).start()
    }

    /// [`LocalCluster::start`], telling `progress` as each node comes up (the demo
    /// prints these lines while PostgreSQL starts).
    pub fn start_reporting(replicas: usize, progress: impl Fn(&str) + Sync) -> Result<LocalCluster, LocalPgError> {
        LocalCluster::builder(replicas).start_reporting(progress)
    }

    /// A cluster of `replicas` replicas with settings other than the defaults.
    pub fn builder(replicas: usize) -> ClusterBuilder {
        ClusterBuilder { replicas, max_connections: DEFAULT_MAX_CONNECTIONS }
    }

    fn start_built(options: ClusterBuilder, progress: impl Fn(&str) + Sync) -> Result<LocalCluster, LocalPgError> {
        let ClusterBuilder { replicas, max_connections } = options;
        if replicas > 200 {
            return Err(LocalPgError::Other(format!("{replicas} replicas: at most 200 per cluster")));
        }
        let bin = bin_dir()?;
        let port = port()?;
        let slot = Slot::acquire(&slot::PG)?;
        let k = CLUSTERS.fetch_add(1, Ordering::Relaxed);
        let dir = slot::PG.cluster_dir(k);
        let mut cluster = LocalCluster { dir: dir.clone(), nodes: Vec::new(), slot: None };
        let _ = std::fs::remove_dir_all(&dir); // a stale one from a recycled pid
        make_dir(&dir)?;
        slot.record_dir(&dir)?;
        cluster.nodes = (0..=replicas)
            .map(|i| {
                let name = format!("pg{}", i + 1);
                let node_dir = dir.join(&name);
                LocalNode::new(&name, slot.address(i), port, node_dir, bin.clone(), slot.pids_file())
            })
            .collect();
        cluster.slot = Some(slot);
        cluster.build(&bin, max_connections, &progress)?;
        Ok(cluster)
    }

    fn build(&self, bin: &Path, max_connections: u32, progress: &(impl Fn(&str) + Sync)) -> Result<(), LocalPgError> {
        let (primary, replicas) = self.nodes.split_first().expect("pg1 always exists");
        progress(&format!("{}: initdb and start the primary on {}:{}", primary.name, primary.address, primary.port));
        init_primary(primary, bin, max_connections)?;
        progress(&format!("{}: primary up", primary.name));
        std::thread::scope(|s| {
            let jobs: Vec<_> = replicas
                .iter()
                .map(|r| {
                    s.spawn(|| {
                        progress(&format!(
                            "{}: copying {} (pg_basebackup) for a replica on {}:{}",
                            r.name, primary.name, r.address, r.port
                        ));
                        let done = init_replica(r, primary, bin);
                        if done.is_ok() {
                            progress(&format!("{}: replica started", r.name));
                        }
                        done
                    })
                })
                .collect();
            jobs.into_iter()
                .map(|j| j.join().unwrap_or_else(|_| Err(LocalPgError::Other("replica setup panicked".into()))))
                .collect::<Result<Vec<()>, _>>()
        })?;
        for r in replicas {
            r.wait_streaming(Duration::from_secs(60))?;
            progress(&format!("{}: streaming from {}", r.name, primary.name));
        }
        Ok(())
    }

    pub fn nodes(&self) -> &[LocalNode] {
        &self.nodes
    }

    /// The node called `name` (`pg1`, `pg2`, ...); panics if there is none (test helper).
    pub fn node(&self, name: &str) -> &LocalNode {
        self.nodes
            .iter()
            .find(|n| n.name == name)
            .unwrap_or_else(|| panic!("no node {name:?} in this cluster (have {:?})", self.names()))
    }

    /// The node created as primary (`pg1`); after a promotion it may no longer be one.
    pub fn primary(&self) -> &LocalNode {
        &self.nodes[0]
    }

    fn names(&self) -> Vec<&str> {
        self.nodes.iter().map(|n| n.name.as_str()).collect()
    }

    /// The cluster's temp directory (one subdirectory per node).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The slot number `n`: nodes listen on 127.77.n.1, 127.77.n.2, ...
    pub fn slot(&self) -> Option<u8> {
        self.slot.as_ref().map(|s| s.n)
    }

    fn teardown(&mut self) {
        for node in self.nodes.iter().rev() {
            node.teardown();
        }
        self.nodes.clear();
        if slot::PG.owns(&self.dir) {
            // Retried: a straggling client (e.g. a Writer's psql) may still touch it.
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

impl Drop for LocalCluster {
    fn drop(&mut self) {
        self.teardown();
    }
}

fn make_dir(path: &Path) -> Result<(), LocalPgError> {
    std::fs::create_dir(path).map_err(LocalPgError::io(format!("create {}", path.display())))?;
    chown_to_pg(path)
}

fn append(path: &Path, text: &str) -> Result<(), LocalPgError> {
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(path)
        .map_err(LocalPgError::io(format!("open {}", path.display())))?;
    f.write_all(text.as_bytes()).map_err(LocalPgError::io(format!("append to {}", path.display())))
}

fn write_new(path: &Path, text: &str) -> Result<(), LocalPgError> {
    std::fs::write(path, text).map_err(LocalPgError::io(format!("write {}", path.display())))?;
    chown_to_pg(path)
}

/// Settings shared by all nodes (replicas inherit them through pg_basebackup).
const CLUSTER_CONF: &str = "
# --- lagdns localpg ---
wal_level = replica
max_wal_senders = 10
wal_keep_size = 64MB
hot_standby = on
fsync = off
synchronous_commit = off
full_page_writes = off
shared_buffers = 16MB
wal_receiver_status_interval = 1s
wal_retrieve_retry_interval = 200ms
log_line_prefix = '%m [%p] %q%a '
";

/// Everyone is trusted (loopback only); `LocalNode::require_password` puts a rule first.
pub(crate) const HBA: &str = "\
local all all trust
local replication all trust
host all all 127.0.0.0/8 trust
host replication all 127.0.0.0/8 trust
";

/// Settings that differ per node; appended last, so they win.
fn node_conf(node: &LocalNode) -> String {
    format!(
        "\n# --- node {name} ---\nlisten_addresses = '{addr}'\nport = {port}\nunix_socket_directories = '{dir}'\ncluster_name = '{name}'\n",
        name = node.name,
        addr = node.address,
        port = node.port,
        dir = node.dir().display()
    )
}

fn init_primary(node: &LocalNode, bin: &Path, max_connections: u32) -> Result<(), LocalPgError> {
    make_dir(node.dir())?;
    let data = node.data_dir();
    let mut initdb = pg_tool(bin, "initdb")?;
    initdb.args(["-N", "--auth=trust", "-U", "postgres", "-E", "UTF8", "--locale=C", "-D"]).arg(&data);
    run(initdb, TOOL_TIMEOUT, None)?;
    let conf = format!("{CLUSTER_CONF}max_connections = {max_connections}\n{}", node_conf(node));
    append(&data.join("postgresql.conf"), &conf)?;
    std::fs::write(data.join("pg_hba.conf"), HBA).map_err(LocalPgError::io("write pg_hba.conf"))?;
    node.start()?;
    node.sql(&format!(
        "CREATE ROLE lagdns LOGIN; GRANT pg_monitor TO lagdns; \
         CREATE TABLE {WRITES_TABLE} (id bigserial PRIMARY KEY, at timestamptz NOT NULL DEFAULT now())"
    ))?;
    Ok(())
}

fn init_replica(node: &LocalNode, primary: &LocalNode, bin: &Path) -> Result<(), LocalPgError> {
    make_dir(node.dir())?;
    let data = node.data_dir();
    let upstream = primary.upstream_conninfo(&node.name);
    let mut backup = pg_tool(bin, "pg_basebackup")?;
    backup.arg("-D").arg(&data).args(["-X", "stream", "-c", "fast", "-d", &upstream]);
    run(backup, TOOL_TIMEOUT, Some(&primary.log_path()))?;
    // Our own -R: a clean primary_conninfo that reconnect_upstream can restore verbatim.
    write_new(&data.join("standby.signal"), "")?;
    append(&data.join("postgresql.auto.conf"), &format!("primary_conninfo = '{upstream}'\n"))?;
    append(&data.join("postgresql.conf"), &node_conf(node))?;
    node.set_upstream(Some(upstream));
    node.start()
}
