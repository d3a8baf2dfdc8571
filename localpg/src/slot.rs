//! Cluster slots: a machine-wide, cross-process lease on a loopback subnet. Slot `n` owns
//! the addresses 127.77.n.1, 127.77.n.2, ... and is the directory `/tmp/lagdns-slots/<n>`,
//! claimed atomically by rename(2) with the owner's pid and start time inside. A slot whose
//! owner died is reclaimed: postmasters it recorded are killed (after checking they really
//! are those postmasters) and its cluster directory is removed.

use super::error::LocalPgError;
use super::procs;
use std::io::Write;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

const FIRST: u8 = 1;
const LAST: u8 = 254;
/// Cluster directories live under this prefix; reclaim only ever removes such paths.
pub(crate) const CLUSTER_DIR_PREFIX: &str = "/tmp/lagdns-pg-";

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// A held slot; released (directory removed) on drop.
#[derive(Debug)]
pub(crate) struct Slot {
    pub n: u8,
    path: PathBuf,
}

fn root() -> PathBuf {
    PathBuf::from("/tmp/lagdns-slots")
}

fn unique(prefix: &str) -> PathBuf {
    let k = COUNTER.fetch_add(1, Ordering::Relaxed);
    root().join(format!(".{prefix}-{}-{k}", std::process::id()))
}

impl Slot {
    /// Claims the lowest free slot, reclaiming slots of dead owners on the way.
    pub fn acquire() -> Result<Slot, LocalPgError> {
        let root = root();
        std::fs::create_dir_all(&root).map_err(LocalPgError::io(format!("create {}", root.display())))?;
        // Shared by every user of the machine: world-writable and sticky, like /tmp.
        let _ = std::fs::set_permissions(&root, std::os::unix::fs::PermissionsExt::from_mode(0o1777));
        sweep();
        for n in FIRST..=LAST {
            if let Some(slot) = Slot::try_claim(n)? {
                return Ok(slot);
            }
        }
        Err(LocalPgError::NoFreeSlot(root))
    }

    fn try_claim(n: u8) -> Result<Option<Slot>, LocalPgError> {
        let stage = unique("claim");
        std::fs::create_dir(&stage).map_err(LocalPgError::io(format!("create {}", stage.display())))?;
        let me = std::process::id();
        let owner = format!("{me} {}\n", procs::start_time(me).unwrap_or(0));
        std::fs::write(stage.join("owner"), owner).map_err(LocalPgError::io("write slot owner"))?;
        let path = root().join(n.to_string());
        // rename onto an existing (non-empty) slot directory fails: the claim is atomic.
        match std::fs::rename(&stage, &path) {
            Ok(()) => Ok(Some(Slot { n, path })),
            Err(_) => {
                let _ = std::fs::remove_dir_all(&stage);
                Ok(None)
            }
        }
    }

    /// The loopback address of the `i`-th node (0-based) of this slot's cluster.
    pub fn address(&self, i: usize) -> Ipv4Addr {
        Ipv4Addr::new(127, 77, self.n, (i + 1) as u8)
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
        let tomb = unique("free");
        if std::fs::rename(&self.path, &tomb).is_ok() {
            let _ = std::fs::remove_dir_all(&tomb);
        }
    }
}

/// Reclaims every slot whose owner died, and scratch directories of dead processes.
pub(crate) fn sweep() {
    let Ok(entries) = std::fs::read_dir(root()) else {
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
            reclaim(&path);
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
/// in it, removes the cluster directory it names, then the slot itself.
fn reclaim(slot: &Path) {
    let tomb = unique("dead");
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
        if dir.starts_with(CLUSTER_DIR_PREFIX) && !dir.contains("..") {
            let _ = std::fs::remove_dir_all(dir.trim());
        }
    }
    let _ = std::fs::remove_dir_all(&tomb);
}
