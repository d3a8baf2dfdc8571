//! The one error type of the local-cluster harness; every message carries enough context
//! (command, exit status, stderr tail, server log tail) to debug a failed CI run from it alone.

use std::path::PathBuf;
use std::time::Duration;

/// Anything that went wrong while starting, driving or tearing down a local cluster.
#[derive(Debug, thiserror::Error)]
pub enum LocalPgError {
    #[error(
        "PostgreSQL server binaries not found ({0}). Install them, e.g. \
         `apt-get install postgresql-15`, or set LAGDNS_PG_BIN to the directory \
         that holds initdb, pg_ctl, pg_basebackup and postgres"
    )]
    BinariesNotFound(String),

    #[error(
        "`{tool}` not found on PATH, /usr/bin or /usr/sbin: install it (Debian: `apt-get install {package}`; \
         `./dev deps` installs what the tests need)"
    )]
    ToolNotFound { tool: String, package: String },

    #[error("`{command}` failed: {status}{}", tails(stderr, log))]
    Command { command: String, status: String, stderr: String, log: Option<(PathBuf, String)> },

    #[error("`{command}` timed out after {after:?} (killed){}", tails(stderr, log))]
    CommandTimeout { command: String, after: Duration, stderr: String, log: Option<(PathBuf, String)> },

    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },

    #[error("no free cluster slot under {0} (all in use by live processes)")]
    NoFreeSlot(PathBuf),

    #[error("timed out after {after:?} waiting until {what} (last seen: {last}){}", tails("", log))]
    WaitTimeout { what: String, after: Duration, last: String, log: Option<(PathBuf, String)> },

    #[error("unexpected answer from {node} to `{query}`: {output:?}")]
    Unexpected { node: String, query: String, output: String },

    #[error("{0}")]
    Other(String),
}

impl LocalPgError {
    /// Wraps an IO error with a description of what was being attempted.
    pub(crate) fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> LocalPgError {
        let what = what.into();
        move |source| LocalPgError::Io { what, source }
    }
}

fn tails(stderr: &str, log: &Option<(PathBuf, String)>) -> String {
    let mut out = String::new();
    if !stderr.trim().is_empty() {
        out.push_str("\n--- stderr (tail) ---\n");
        out.push_str(stderr.trim_end());
    }
    if let Some((path, tail)) = log {
        out.push_str(&format!("\n--- {} (tail) ---\n", path.display()));
        out.push_str(tail.trim_end());
    }
    out
}

/// The last `lines` lines of `text`.
pub(crate) fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// The last lines of a server log file, for error messages (empty if unreadable).
pub(crate) fn log_tail(path: &std::path::Path) -> Option<(PathBuf, String)> {
    let text = std::fs::read(path).ok()?;
    Some((path.to_path_buf(), tail(&String::from_utf8_lossy(&text), 25)))
}
