//! Local PostgreSQL clusters made from the installed binaries: a primary and streaming
//! replicas, each on its own loopback address, torn down on drop. Used by `lagdns demo`
//! (lagdns's cargo feature `demo`), lagdns's integration tests and its benchmarks.
//!
//! ```no_run
//! use localpg::LocalCluster;
//! let cluster = LocalCluster::start(2)?;            // pg1 (primary), pg2, pg3
//! let replica = cluster.node("pg2");
//! assert_eq!(replica.sql("SELECT pg_is_in_recovery()")?, "t");
//! replica.freeze()?;                                 // up, but answers nothing
//! replica.thaw()?;
//! # Ok::<(), localpg::LocalPgError>(())
//! ```
//!
//! Parallel safety (threads and processes): each cluster holds a machine-wide slot `n`
//! (see `slot`), owns the addresses `127.77.n.1..` and the directory
//! `/tmp/lagdns-pg-<pid>-<k>`; all nodes share one port ([`DEFAULT_PORT`] or
//! `$LAGDNS_PG_PORT`). When running as root, every server-side tool runs as `postgres`.
//!
//! [`PatroniCluster`] (`patroni`, with `etcd` and a small `http` client) is a real Patroni
//! cluster from Debian's `patroni` and `etcd-server` packages: etcd and `n` Patroni
//! members, each managing its own PostgreSQL, on the addresses `127.78.n.x` of a slot of
//! its own pool, in `/dev/shm/lagdns-patroni-<pid>-<k>` (or `/tmp`), torn down and
//! reclaimed the same way.

mod cluster;
mod error;
mod etcd;
mod http;
mod node;
mod patroni;
mod procs;
mod run;
mod slot;
mod wal;
mod writer;

pub use cluster::{ClusterBuilder, LocalCluster, DEFAULT_MAX_CONNECTIONS};
pub use error::LocalPgError;
pub use etcd::Etcd;
pub use node::LocalNode;
pub use patroni::{
    patroni_programs, ClusterStatus, MemberStatus, PatroniCluster, PatroniMember, ETCD_CLIENT_PORT, ETCD_PEER_PORT,
    PATRONI_API_PORT, SCOPE,
};
pub use wal::{Lsn, Timeline};
pub use writer::Writer;

use std::path::{Path, PathBuf};

/// Port every node listens on (each on its own address) unless `$LAGDNS_PG_PORT` is set.
pub const DEFAULT_PORT: u16 = 54321;

const TOOLS: &[&str] = &["initdb", "pg_ctl", "pg_basebackup", "postgres"];

/// Directory of the PostgreSQL server binaries: `$LAGDNS_PG_BIN`, else the newest
/// `/usr/lib/postgresql/<version>/bin`, else `pg_config --bindir`.
pub fn bin_dir() -> Result<PathBuf, LocalPgError> {
    if let Some(dir) = std::env::var_os("LAGDNS_PG_BIN") {
        let dir = PathBuf::from(dir);
        return match check_tools(&dir) {
            Ok(()) => Ok(dir),
            Err(missing) => {
                Err(LocalPgError::BinariesNotFound(format!("LAGDNS_PG_BIN={} has no {missing}", dir.display())))
            }
        };
    }
    if let Some(dir) = newest_debian_bin(Path::new("/usr/lib/postgresql")) {
        return Ok(dir);
    }
    if let Some(dir) = pg_config_bindir().filter(|d| check_tools(d).is_ok()) {
        return Ok(dir);
    }
    Err(LocalPgError::BinariesNotFound(
        "LAGDNS_PG_BIN is unset, no /usr/lib/postgresql/<version>/bin has them, \
         and `pg_config --bindir` does not name a directory that has them"
            .into(),
    ))
}

/// Cleans up after processes that died holding clusters (killed test runs): kills the
/// postmasters they recorded, removes their directories, frees their slots. Runs
/// automatically whenever a cluster is started; safe to call any time.
pub fn reclaim_stale_slots() {
    slot::sweep();
}

/// The port nodes listen on: `$LAGDNS_PG_PORT` or [`DEFAULT_PORT`].
pub fn port() -> Result<u16, LocalPgError> {
    match std::env::var("LAGDNS_PG_PORT") {
        Err(_) => Ok(DEFAULT_PORT),
        Ok(v) => v
            .trim()
            .parse::<u16>()
            .ok()
            .filter(|&p| p > 0)
            .ok_or_else(|| LocalPgError::Other(format!("LAGDNS_PG_PORT={v:?} is not a port number"))),
    }
}

fn check_tools(dir: &Path) -> Result<(), String> {
    match TOOLS.iter().find(|t| !dir.join(t).is_file()) {
        Some(missing) => Err(missing.to_string()),
        None => Ok(()),
    }
}

/// `/usr/lib/postgresql/<v>/bin` with the highest version `v` that has all the tools.
fn newest_debian_bin(root: &Path) -> Option<PathBuf> {
    let mut found: Vec<(Vec<u32>, PathBuf)> = std::fs::read_dir(root)
        .ok()?
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_str()?.split('.').map(|p| p.parse().ok()).collect::<Option<Vec<u32>>>()?;
            let bin = e.path().join("bin");
            check_tools(&bin).is_ok().then_some((version, bin))
        })
        .collect();
    found.sort();
    found.pop().map(|(_, bin)| bin)
}

fn pg_config_bindir() -> Option<PathBuf> {
    let out = std::process::Command::new("pg_config").arg("--bindir").output().ok()?;
    let dir = String::from_utf8(out.stdout).ok()?;
    (out.status.success() && !dir.trim().is_empty()).then(|| PathBuf::from(dir.trim()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newest_version_with_all_tools_wins() {
        let root = std::env::temp_dir().join(format!("lagdns-bin-test-{}", std::process::id()));
        for (v, complete) in [("9.6", true), ("15", true), ("16", false), ("notaversion", true)] {
            let bin = root.join(v).join("bin");
            std::fs::create_dir_all(&bin).unwrap();
            let tools = if complete { TOOLS } else { &TOOLS[..1] };
            for t in tools {
                std::fs::write(bin.join(t), "").unwrap();
            }
        }
        assert_eq!(newest_debian_bin(&root), Some(root.join("15").join("bin")));
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn missing_root_gives_none() {
        assert_eq!(newest_debian_bin(Path::new("/nonexistent/lagdns")), None);
    }
}
