//! Process plumbing over /proc and signals: liveness, identity (so we never signal a
//! reused pid), and the process tree of a postmaster (its backends are children, each in
//! its own process group, so they are found by parent pid).

use std::collections::HashSet;
use std::path::Path;
use std::time::{Duration, Instant};

/// Sends `sig` to `pid`; false if it did not exist (or is not ours to signal).
pub(crate) fn signal(pid: u32, sig: libc::c_int) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    if pid <= 1 {
        return false;
    }
    // SAFETY: kill has no memory-safety preconditions; pid > 1 so never a group/broadcast.
    unsafe { libc::kill(pid, sig) == 0 }
}

/// `/proc/<pid>/stat` fields after the command name: index 0 = state, 1 = ppid, 19 = starttime.
fn stat_fields(pid: u32) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    Some(rest.split_whitespace().map(str::to_string).collect())
}

/// True if `pid` exists and is not a zombie.
pub(crate) fn alive(pid: u32) -> bool {
    match stat_fields(pid) {
        Some(f) => f.first().map(String::as_str) != Some("Z") && f.first().map(String::as_str) != Some("X"),
        None => false,
    }
}

/// Kernel start time of `pid` (clock ticks since boot); with the pid it names one process.
pub(crate) fn start_time(pid: u32) -> Option<u64> {
    stat_fields(pid)?.get(19)?.parse().ok()
}

fn parent(pid: u32) -> Option<u32> {
    stat_fields(pid)?.get(1)?.parse().ok()
}

/// True if `pid` is a postgres postmaster started on data directory `data`.
pub(crate) fn is_postmaster_of(pid: u32, data: &Path) -> bool {
    let Ok(raw) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    let cmdline = String::from_utf8_lossy(&raw).replace('\0', " ");
    alive(pid) && cmdline.contains("postgres") && cmdline.contains(&*data.to_string_lossy())
}

/// All live descendants of `root` (children, grandchildren, ...), not `root` itself.
pub(crate) fn descendants(root: u32) -> Vec<u32> {
    let mut by_parent: Vec<(u32, u32)> = Vec::new();
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for entry in dir.flatten() {
            let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                continue;
            };
            if let Some(ppid) = parent(pid) {
                by_parent.push((pid, ppid));
            }
        }
    }
    let mut found = Vec::new();
    let mut seen: HashSet<u32> = HashSet::from([root]);
    let mut frontier = vec![root];
    while let Some(p) = frontier.pop() {
        for &(pid, ppid) in &by_parent {
            if ppid == p && seen.insert(pid) {
                found.push(pid);
                frontier.push(pid);
            }
        }
    }
    found
}

/// Stops `root` first (so it cannot fork more), then every descendant.
pub(crate) fn stop_tree(root: u32) {
    signal(root, libc::SIGSTOP);
    for _ in 0..2 {
        for pid in descendants(root) {
            signal(pid, libc::SIGSTOP);
        }
    }
}

/// Resumes every descendant, then `root`.
pub(crate) fn continue_tree(root: u32) {
    for pid in descendants(root) {
        signal(pid, libc::SIGCONT);
    }
    signal(root, libc::SIGCONT);
}

/// SIGKILLs `root` and its descendants (resumed first so they die promptly).
pub(crate) fn kill_tree(root: u32) {
    let kids = descendants(root);
    signal(root, libc::SIGKILL);
    for pid in kids {
        signal(pid, libc::SIGCONT);
        signal(pid, libc::SIGKILL);
    }
}

/// Polls until `pid` is gone or `timeout` passes; true if gone.
pub(crate) fn wait_gone(pid: u32, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while alive(pid) {
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    true
}

/// Live processes whose command line names a path inside `dir` and one of `programs`
/// (matched in the command line too: `postgres -D <dir>/pg1/data`, `python3
/// /usr/bin/patroni <dir>/pg1/patroni.yml`), with their command lines.
pub(crate) fn mentioning(dir: &Path, programs: &[&str]) -> Vec<(u32, String)> {
    let inside = format!("{}/", dir.display());
    let me = std::process::id();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| pid != me)
        .filter_map(|pid| {
            let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
            let cmdline = String::from_utf8_lossy(&raw).replace('\0', " ");
            let ours = cmdline.contains(&inside) && programs.iter().any(|p| cmdline.contains(p));
            (ours && alive(pid)).then_some((pid, cmdline))
        })
        .collect()
}
