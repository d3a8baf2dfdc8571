//! Cluster slots: a machine-wide, cross-process lease on a loopback subnet. Each kind of
//! cluster has a [`Pool`] of its own: slot `n` of the PostgreSQL pool ([`PG`]) owns the
//! addresses 127.77.n.1, 127.77.n.2, ... and is the directory `/tmp/lagdns-slots/<n>`;
//! slot `n` of the Patroni pool ([`PATRONI`]) owns 127.78.n.x and is
//! `/tmp/lagdns-patroni-slots/<n>`. A slot is claimed atomically by rename(2) with the
//! owner's pid and start time inside. A slot whose owner died is reclaimed: postmasters it
//! recorded are killed (after checking they really are those postmasters), then every
//! process still running from its cluster directory (Patroni first, so that it restarts
//! nothing, then PostgreSQL and etcd), and its cluster directory is removed.

use super::error::LocalPgError;
use super::procs;
use std::io::Write;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

const FIRST: u8 = 1;
const LAST: u8 = 254;

/// A family of slots: where its leases live, the loopback /16 its slots divide into /24s,
/// and where its cluster directories go (reclaim only ever removes such paths).
#[derive(Debug)]
pub(crate) struct Pool {
    root: &'static str,
    /// The second octet of the pool's addresses: slot `n` owns `127.<octet>.n.0/24`.
    octet: u8,
    /// Cluster directories are `<parent>/<dir_name><pid>-<k>`, in the first usable parent.
    parents: &'static [&'static str],
    dir_name: &'static str,
}

/// The slots of [`crate::LocalCluster`]s.
pub(crate) const PG: Pool = Pool { root: "/tmp/lagdns-slots", octet: 77, parents: &["/tmp"], dir_name: "lagdns-pg-" };
/// The slots of [`crate::PatroniCluster`]s. Their directories prefer the tmpfs
/// `/dev/shm`: removing three data directories that the kernel has already written back
/// takes seconds on a disk (ext4 mounted with `discard` frees every block synchronously),
/// and etcd preallocates 128 MB of WAL.
pub(crate) const PATRONI: Pool =
    Pool { root: "/tmp/lagdns-patroni-slots", octet: 78, parents: &["/dev/shm", "/tmp"], dir_name: "lagdns-patroni-" };
const POOLS: [&Pool; 2] = [&PG, &PATRONI];

/// Free space a parent other than the last needs to be chosen for a cluster directory.
const MIN_FREE: u64 = 1 << 30;

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// A held slot; released (directory removed) on drop.
#[derive(Debug)]
pub(crate) struct Slot {
    pub n: u8,
    pool: &'static Pool,
    path: PathBuf,
}

impl Pool {
    /// A new cluster directory's path (not created): `<parent>/<dir_name><pid>-<k>` in the
    /// first parent that is a writable directory with 1 GiB free, else the last one.
    pub fn cluster_dir(&self, k: u64) -> PathBuf {
        let usable = |p: &&&str| {
            let Ok(path) = std::ffi::CString::new(**p) else { return false };
            // SAFETY: `path` is a valid C string; `stat` is written by statvfs before we read it.
            unsafe {
                let mut stat: libc::statvfs = std::mem::zeroed();
                libc::access(path.as_ptr(), libc::W_OK) == 0
                    && libc::statvfs(path.as_ptr(), &mut stat) == 0
                    && (stat.f_bavail as u64).saturating_mul(stat.f_frsize as u64) >= MIN_FREE
            }
        };
        let (last, rest) = self.parents.split_last().expect("a pool has a parent");
        let parent = rest.iter().find(usable).unwrap_or(last);
        Path::new(parent).join(format!("{}{}-{k}", self.dir_name, std::process::id()))
    }

    /// True if `dir` is a cluster directory of this pool (`<parent>/<dir_name>...`).
    pub fn owns(&self, dir: &Path) -> bool {
        let text = dir.to_string_lossy();
        !text.contains("..")
            && self.parents.iter().any(|p| {
                dir.parent() == Some(Path::new(p))
                    && dir.file_name().is_some_and(|n| n.to_string_lossy().starts_with(self.dir_name))
            })
    }

    fn root(&self) -> PathBuf {
        PathBuf::from(self.root)
    }

    fn unique(&self, prefix: &str) -> PathBuf {
        let k = COUNTER.fetch_add(1, Ordering::Relaxed);
        self.root().join(format!(".{prefix}-{}-{k}", std::process::id()))
    }
}

impl Slot {
    /// Claims the lowest free slot of `pool`, reclaiming slots of dead owners on the way.
    pub fn acquire(pool: &'static Pool) -> Result<Slot, LocalPgError> {
        let root = pool.root();
        std::fs::create_dir_all(&root).map_err(LocalPgError::io(format!("create {}", root.display())))?;
        // Shared by every user of the machine: world-writable and sticky, like /tmp.
        let _ = std::fs::set_permissions(&root, std::os::unix::fs::PermissionsExt::from_mode(0o1777));
        sweep_pool(pool);
        for n in FIRST..=LAST {
            if let Some(slot) = Slot::try_claim(pool, n)? {
                return Ok(slot);
            }
        }
        Err(LocalPgError::NoFreeSlot(root))
    }

    fn try_claim(pool: &'static Pool, n: u8) -> Result<Option<Slot>, LocalPgError> {
        let stage = pool.unique("claim");
        std::fs::create_dir(&stage).map_err(LocalPgError::io(format!("create {}", stage.display())))?;
        let me = std::process::id();
        let owner = format!("{me} {}\n", procs::start_time(me).unwrap_or(0));
        std::fs::write(stage.join("owner"), owner).map_err(LocalPgError::io("write slot owner"))?;
        let path = pool.root().join(n.to_string());
        // rename onto an existing (non-empty) slot directory fails: the claim is atomic.
        match std::fs::rename(&stage, &path) {
            Ok(()) => Ok(Some(Slot { n, pool, path })),
            Err(_) => {
                let _ = std::fs::remove_dir_all(&stage);
                Ok(None)
            }
        }
    }

    /// The loopback address of the `i`-th node (0-based) of this slot's cluster.
    pub fn address(&self, i: usize) -> Ipv4Addr {
        self.host((i + 1) as u8)
    }

    /// The address `127.<pool>.<n>.<last>` of this slot's subnet.
    pub fn host(&self, last: u8) -> Ipv4Addr {
        Ipv4Addr::new(127, self.pool.octet, self.n, last)
    }

    /// Records the cluster directory, so a reclaimer can remove it.
    pub fn record_dir(&self, dir: &Path) -> Result<(), LocalPgError> {
        std::fs::write(self.path.join("dir"), dir.to_string_lossy().as_bytes())
            .map_err(LocalPgError::io("write slot dir"))
    }

    /// The file in which postmasters of this slot are recorded (see [`record_postmaster`]).
    pub fn pids_file(&self) -> PathBuf {
        self.path.join("pids")
    }
}

/// Records a postmaster we started (pid + data directory), for reclaim after a crash.
pub(crate) fn record_postmaster(pids_file: &Path, pid: u32, data: &Path) {
    if let Ok(mut f) = std::fs::OpenOptions::new().create(true).append(true).open(pids_file) {
        let _ = writeln!(f, "{pid} {}", data.display());
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        // Move it out of the way atomically first, so the number is never half-released.
        let tomb = self.pool.unique("free");
        if std::fs::rename(&self.path, &tomb).is_ok() {
            let _ = std::fs::remove_dir_all(&tomb);
        }
    }
}

/// Reclaims every slot whose owner died, and scratch directories of dead processes, in
/// every pool.
pub(crate) fn sweep() {
    for pool in POOLS {
        sweep_pool(pool);
    }
}

fn sweep_pool(pool: &Pool) {
    let Ok(entries) = std::fs::read_dir(pool.root()) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        let dead = match name.strip_prefix('.') {
            // .claim-<pid>-<k>, .free-<pid>-<k>, .dead-<pid>-<k>
            Some(scratch) => {
                scratch.split('-').nth(1).and_then(|pid| pid.parse::<u32>().ok()).is_some_and(|pid| !procs::alive(pid))
            }
            None => owner_is_dead(&path),
        };
        if dead {
            reclaim(pool, &path);
        }
    }
}

fn owner_is_dead(slot: &Path) -> bool {
    let Ok(text) = std::fs::read_to_string(slot.join("owner")) else {
        return false; // being created or released right now: not ours to judge
    };
    let mut parts = text.split_whitespace().map(|p| p.parse::<u64>().ok());
    let (Some(Some(pid)), Some(Some(started))) = (parts.next(), parts.next()) else {
        return false;
    };
    let pid = pid as u32;
    !procs::alive(pid) || procs::start_time(pid) != Some(started)
}

/// Takes over a dead owner's slot (or scratch directory): kills the postmasters recorded
/// in it and every process running from the cluster directory it names, removes that
/// directory, then the slot itself.
fn reclaim(pool: &Pool, slot: &Path) {
    let tomb = pool.unique("dead");
    if std::fs::rename(slot, &tomb).is_err() {
        return; // someone else reclaimed it first
    }
    if let Ok(pids) = std::fs::read_to_string(tomb.join("pids")) {
        for line in pids.lines() {
            let Some((pid, data)) = line.split_once(' ') else {
                continue;
            };
            let Ok(pid) = pid.parse::<u32>() else {
                continue;
            };
            if procs::is_postmaster_of(pid, Path::new(data)) {
                procs::kill_tree(pid);
                procs::wait_gone(pid, Duration::from_secs(5));
            }
        }
    }
    if let Ok(dir) = std::fs::read_to_string(tomb.join("dir")) {
        let dir = Path::new(dir.trim());
        if pool.owns(dir) {
            kill_running_from(dir);
            let _ = std::fs::remove_dir_all(dir);
        }
    }
    let _ = std::fs::remove_dir_all(&tomb);
}

/// SIGKILLs every live Patroni, PostgreSQL or etcd process whose command line names a path
/// inside `dir` (a Patroni member's config, a data directory, etcd's data directory):
/// Patroni first, so that it cannot start PostgreSQL again, then the rest with their
/// children. A postmaster that Patroni started is not Patroni's child (it runs in a
/// session of its own), so it is found here by its `-D`.
pub(crate) fn kill_running_from(dir: &Path) {
    let found = procs::mentioning(dir, &["patroni", "postgres", "etcd"]);
    let (patroni, rest): (Vec<_>, Vec<_>) = found.into_iter().partition(|(_, cmdline)| cmdline.contains("patroni"));
    for (pid, _) in patroni.iter().chain(&rest) {
        procs::kill_tree(*pid);
    }
    for (pid, _) in patroni.iter().chain(&rest) {
        procs::wait_gone(*pid, Duration::from_secs(5));
    }
}
