//! A background writer: keeps committing small INSERTs on a node (one long-lived psql fed
//! through stdin from a thread, restarted if the server went away) until dropped.

use super::node::LocalNode;
use super::run::wait_deadline;
use std::io::Write;
use std::process::{Child, ChildStdin, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The table every cluster is created with; the writer inserts into it.
pub(crate) const WRITES_TABLE: &str = "lagdns_writes";

/// psql is restarted at most this often while the server is unreachable.
const RESPAWN_EVERY: Duration = Duration::from_millis(250);

type Shared = Arc<Mutex<Option<Child>>>;

/// Running background writer; dropping it stops the writes and waits for psql to exit.
#[derive(Debug)]
pub struct Writer {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
    child: Shared,
    sent: Arc<AtomicU64>,
}

impl Writer {
    /// How many INSERT statements have been handed to psql so far.
    pub fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }
}

impl LocalNode {
    /// Starts committing one small INSERT every `every` on this node until the returned
    /// [`Writer`] is dropped. If the server goes away, psql is restarted on the next tick.
    pub fn start_writer(&self, every: Duration) -> Writer {
        let (tx, rx) = mpsc::channel();
        let child: Shared = Arc::new(Mutex::new(None));
        let sent = Arc::new(AtomicU64::new(0));
        let spawn = {
            // Opened once: respawns must never create files (the cluster may be gone).
            let log = std::fs::OpenOptions::new().create(true).append(true).open(self.dir().join("writer.log")).ok();
            let mut cmd = self.psql();
            cmd.args(["-v", "ON_ERROR_STOP=0"]);
            move || -> Option<(Child, ChildStdin)> {
                let err = log.as_ref().and_then(|f| f.try_clone().ok());
                cmd.stdin(Stdio::piped()).stdout(Stdio::null());
                cmd.stderr(err.map(Stdio::from).unwrap_or_else(Stdio::null));
                let mut child = cmd.spawn().ok()?;
                let stdin = child.stdin.take()?;
                Some((child, stdin))
            }
        };
        let thread = {
            let (child, sent) = (child.clone(), sent.clone());
            std::thread::spawn(move || write_loop(spawn, every, rx, child, sent))
        };
        Writer { stop: Some(tx), thread: Some(thread), child, sent }
    }
}

fn write_loop(
    mut spawn: impl FnMut() -> Option<(Child, ChildStdin)>,
    every: Duration,
    stop: mpsc::Receiver<()>,
    child: Shared,
    sent: Arc<AtomicU64>,
) {
    let line = format!("INSERT INTO {WRITES_TABLE} DEFAULT VALUES;\n");
    let mut stdin: Option<ChildStdin> = None;
    let mut last_spawn: Option<Instant> = None;
    loop {
        let may_respawn = last_spawn.is_none_or(|t| t.elapsed() >= RESPAWN_EVERY);
        if (stdin.is_none() || exited(&child)) && may_respawn {
            finish(&child, stdin.take(), Duration::from_millis(100));
            last_spawn = Some(Instant::now());
            if let Some((c, i)) = spawn() {
                *lock(&child) = Some(c);
                stdin = Some(i);
            }
        }
        if let Some(pipe) = stdin.as_mut() {
            match pipe.write_all(line.as_bytes()) {
                Ok(()) => {
                    sent.fetch_add(1, Ordering::Relaxed);
                }
                Err(_) => stdin = None,
            }
        }
        match stop.recv_timeout(every) {
            Err(RecvTimeoutError::Timeout) => continue,
            _ => break,
        }
    }
    finish(&child, stdin, Duration::from_secs(5));
}

fn lock(child: &Shared) -> std::sync::MutexGuard<'_, Option<Child>> {
    child.lock().unwrap_or_else(|e| e.into_inner())
}

fn exited(child: &Shared) -> bool {
    match lock(child).as_mut() {
        Some(c) => !matches!(c.try_wait(), Ok(None)),
        None => true,
    }
}

/// Closes psql's stdin (it then exits after the last statement) and reaps it, killing it
/// if it does not exit within `grace`.
fn finish(child: &Shared, stdin: Option<ChildStdin>, grace: Duration) {
    drop(stdin);
    let taken = lock(child).take();
    if let Some(mut c) = taken {
        wait_deadline(&mut c, grace);
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        drop(self.stop.take());
        let Some(thread) = self.thread.take() else {
            return;
        };
        // The thread may be blocked writing into a full pipe (server frozen): kill psql then.
        let deadline = Instant::now() + Duration::from_secs(2);
        while !thread.is_finished() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        if !thread.is_finished() {
            if let Some(c) = lock(&self.child).as_mut() {
                let _ = c.kill();
            }
        }
        let _ = thread.join();
    }
}
