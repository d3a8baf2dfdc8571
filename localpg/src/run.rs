//! Running PostgreSQL tools: as the `postgres` user when we are root (the server refuses
//! root), with a deadline, capturing output into errors that explain themselves.

use super::error::{log_tail, tail, LocalPgError};
use std::ffi::CString;
use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// libpq environment variables that would silently change where our tools connect.
const PG_ENV: &[&str] = &[
    "PGHOST",
    "PGHOSTADDR",
    "PGPORT",
    "PGUSER",
    "PGDATABASE",
    "PGPASSWORD",
    "PGPASSFILE",
    "PGSERVICE",
    "PGSERVICEFILE",
    "PGOPTIONS",
    "PGSSLMODE",
    "PGDATA",
    "PGTARGETSESSIONATTRS",
    "PGCONNECT_TIMEOUT",
    "PGAPPNAME",
];

/// The account PostgreSQL processes run as when we are root.
#[derive(Debug, Clone)]
pub(crate) struct PgUser {
    pub uid: u32,
    pub gid: u32,
    pub home: PathBuf,
}

/// `Some(postgres account)` when running as root, `None` when tools can run as ourselves.
pub(crate) fn run_as() -> Result<Option<PgUser>, LocalPgError> {
    static USER: OnceLock<Result<Option<PgUser>, String>> = OnceLock::new();
    USER.get_or_init(lookup_pg_user).clone().map_err(LocalPgError::Other)
}

fn lookup_pg_user() -> Result<Option<PgUser>, String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Ok(None);
    }
    let name = CString::new("postgres").expect("no NUL");
    // SAFETY: getpwnam returns NULL or a pointer to static storage; we copy out at once.
    // Called once per process under OnceLock.
    unsafe {
        let pw = libc::getpwnam(name.as_ptr());
        if pw.is_null() {
            return Err("running as root, but there is no `postgres` user to run PostgreSQL \
                        as (PostgreSQL refuses to run as root); create one (the \
                        postgresql package does) or run as an ordinary user"
                .into());
        }
        let home = std::ffi::CStr::from_ptr((*pw).pw_dir).to_string_lossy().into_owned();
        Ok(Some(PgUser { uid: (*pw).pw_uid, gid: (*pw).pw_gid, home: home.into() }))
    }
}

/// Makes `path` owned by the postgres account when we are root (no-op otherwise).
pub(crate) fn chown_to_pg(path: &Path) -> Result<(), LocalPgError> {
    if let Some(user) = run_as()? {
        std::os::unix::fs::chown(path, Some(user.uid), Some(user.gid))
            .map_err(LocalPgError::io(format!("chown {} to postgres", path.display())))?;
    }
    Ok(())
}

/// A command for a server-side tool (`initdb`, `pg_ctl`, ...) from `bin`, run as the
/// postgres account when we are root, with a neutral working directory and environment.
pub(crate) fn pg_tool(bin: &Path, tool: &str) -> Result<Command, LocalPgError> {
    server_command(bin.join(tool))
}

/// A command for `program` (a server-side tool, Patroni, etcd), run as the postgres
/// account when we are root, with a neutral working directory and environment.
pub(crate) fn server_command(program: impl AsRef<std::ffi::OsStr>) -> Result<Command, LocalPgError> {
    let mut cmd = Command::new(program);
    neutral_env(&mut cmd);
    if let Some(user) = run_as()? {
        cmd.uid(user.uid).gid(user.gid);
        cmd.env("HOME", &user.home).env("USER", "postgres").env("LOGNAME", "postgres");
    }
    Ok(cmd)
}

/// A client command (`psql`) run as ourselves; clients do not mind root.
pub(crate) fn client_tool(bin: &Path, tool: &str) -> Command {
    let mut cmd = Command::new(bin.join(tool));
    neutral_env(&mut cmd);
    cmd
}

fn neutral_env(cmd: &mut Command) {
    for var in PG_ENV {
        cmd.env_remove(var);
    }
    cmd.current_dir("/").env("LC_ALL", "C").stdin(Stdio::null());
}

/// Shell-like rendering of a command for error messages.
pub(crate) fn describe(cmd: &Command) -> String {
    let mut parts = vec![cmd.get_program().to_string_lossy().into_owned()];
    for arg in cmd.get_args() {
        let arg = arg.to_string_lossy();
        if arg.is_empty() || arg.contains(char::is_whitespace) {
            parts.push(format!("'{arg}'"));
        } else {
            parts.push(arg.into_owned());
        }
    }
    parts.join(" ")
}

/// Runs `cmd` to completion within `timeout`; returns its stdout. On failure the error
/// carries the stderr tail and, if `log` is given, the tail of that server log.
pub(crate) fn run(mut cmd: Command, timeout: Duration, log: Option<&Path>) -> Result<String, LocalPgError> {
    let command = describe(&cmd);
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(LocalPgError::io(format!("cannot start `{command}`")))?;
    let out = drain(child.stdout.take());
    let err = drain(child.stderr.take());
    let status = wait_deadline(&mut child, timeout);
    let stdout = out.join().unwrap_or_default();
    let stderr = tail(&err.join().unwrap_or_default(), 20);
    let log = log.and_then(log_tail);
    match status {
        Some(Ok(s)) if s.success() => Ok(stdout),
        Some(Ok(s)) => Err(LocalPgError::Command { command, status: s.to_string(), stderr, log }),
        Some(Err(e)) => Err(LocalPgError::Io { what: format!("waiting for `{command}`"), source: e }),
        None => Err(LocalPgError::CommandTimeout { command, after: timeout, stderr, log }),
    }
}

fn drain<R: Read + Send + 'static>(pipe: Option<R>) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(mut p) = pipe {
            let _ = p.read_to_end(&mut buf);
        }
        String::from_utf8_lossy(&buf).into_owned()
    })
}

/// Waits for `child` until `timeout`; on timeout kills it (and reaps it) and returns None.
pub(crate) fn wait_deadline(child: &mut Child, timeout: Duration) -> Option<std::io::Result<std::process::ExitStatus>> {
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_millis(2);
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Some(Ok(status)),
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
            Ok(None) => {
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(50));
            }
            Err(e) => return Some(Err(e)),
        }
    }
}
