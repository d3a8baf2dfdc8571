//! The real binary: `lagdns check` exit codes and messages, `LAGDNS_CONFIG`, and
//! `lagdns demo` starting real PostgreSQL, answering `dig`, and cleaning up on Ctrl-C.

// Synchronous tests of real processes: their deadlines are real time (std Instant);
// there is no tokio clock here to pause.
#![allow(clippy::disallowed_methods)]

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn lagdns() -> Command {
    Command::new(env!("CARGO_BIN_EXE_lagdns"))
}

/// A config file in a fresh temp directory, removed on drop.
struct TempConfig(PathBuf);

impl std::ops::Deref for TempConfig {
    type Target = PathBuf;
    fn deref(&self) -> &PathBuf {
        &self.0
    }
}

impl Drop for TempConfig {
    fn drop(&mut self) {
        if let Some(dir) = self.0.parent() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

fn write_config(name: &str, text: &str) -> TempConfig {
    let dir = std::env::temp_dir().join(format!("lagdns-cli-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("lagdns.toml");
    std::fs::write(&path, text).unwrap();
    TempConfig(path)
}

const VALID: &str = r#"[dns]
zone = "db.internal"

[[cluster]]
name = "main"

[[cluster.node]]
name = "pg1"
address = "10.0.0.11"
dsn = "host=10.0.0.11 user=lagdns password=hunter2 dbname=postgres"
"#;

#[test]
fn check_accepts_the_shipped_example_and_prints_names_and_nodes() {
    let out = lagdns().args(["check", "--config", "config/lagdns.toml"]).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "stdout: {stdout}\nstderr: {}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("write.db.internal."), "{stdout}");
    assert!(stdout.contains("read.db.internal."), "{stdout}");
}

#[test]
fn check_rejects_a_cluster_named_like_a_read_name() {
    // SPEC §9: cluster names are labels of the zone (<node>.<cluster>.<zone>)
    let text = VALID.replacen("name = \"main\"", "name = \"main\"\n[[cluster.endpoint]]\nname = \"main\"", 1);
    let path = write_config("clustername", &text);
    let out = lagdns().args(["check", "--config"]).arg(&*path).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let want = format!(
        "{}:7: cluster[main].endpoint[main].name: \"main\" is already used by cluster[main].name",
        path.display()
    );
    assert!(stderr.contains(&want), "wants {want} in: {stderr}");
}

#[test]
fn check_never_prints_a_password() {
    let path = write_config("secret", VALID);
    let out = lagdns().arg("check").env("LAGDNS_CONFIG", &*path).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "LAGDNS_CONFIG is read: {}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("main/pg1"), "{stdout}");
    assert!(!stdout.contains("hunter2"), "{stdout}");
}

#[test]
fn check_rejects_an_unknown_key_naming_file_line_and_key() {
    let text = VALID.replace("name = \"pg1\"", "name = \"pg1\"\nweigth = 5");
    let path = write_config("unknown", &text);
    let out = lagdns().args(["check", "--config"]).arg(&*path).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let want = format!("{}:9:", path.display());
    assert!(stderr.contains(&want), "wants {want} in: {stderr}");
    assert!(stderr.contains("weigth"), "{stderr}");
}

#[test]
fn check_rejects_a_bad_value_naming_file_line_and_key() {
    let text = VALID.replace("address = \"10.0.0.11\"", "address = \"not an ip\"");
    let path = write_config("badaddr", &text);
    let out = lagdns().args(["check", "--config"]).arg(&*path).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains(&format!("{}:9:", path.display())), "{stderr}");
    assert!(stderr.contains("address"), "{stderr}");
}

#[test]
fn check_opens_the_files_a_config_names() {
    let dsn = "dbname=postgres sslmode=verify-full sslrootcert=/nonexistent/lagdns/ca.pem\"";
    let path = write_config("rootcert", &VALID.replace("dbname=postgres\"", dsn));
    let out = lagdns().args(["check", "--config"]).arg(&*path).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let want = format!(
        "{}:10: cluster[main].node[pg1].dsn: cannot read sslrootcert /nonexistent/lagdns/ca.pem: No such file or \
         directory (os error 2)",
        path.display()
    );
    assert!(stderr.contains(&want), "wants {want} in: {stderr}");
    assert!(!stderr.contains("hunter2"), "{stderr}");
}

/// libpq: verify-ca needs a root certificate; without one the config is an error (never
/// a silent fallback to the system's roots).
#[test]
fn check_rejects_verify_ca_without_sslrootcert_naming_file_line_and_key() {
    let path = write_config("noroot", &VALID.replace("dbname=postgres\"", "dbname=postgres sslmode=verify-ca\""));
    let out = lagdns().args(["check", "--config"]).arg(&*path).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let want = format!(
        "{}:10: cluster[main].node[pg1].dsn: sslmode=verify-ca needs sslrootcert (a PEM file of CA certificates, or \
         `system` for the operating system's roots)",
        path.display()
    );
    assert!(stderr.contains(&want), "wants {want} in: {stderr}");
    assert!(!stderr.contains("hunter2"), "{stderr}");
}

#[test]
fn check_reports_a_missing_file() {
    let out = lagdns().args(["check", "--config", "/nonexistent/lagdns.toml"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr.contains("/nonexistent/lagdns.toml"), "{stderr}");
}

#[test]
fn status_fails_clearly_when_no_server_runs() {
    let port = free_port();
    let out = lagdns().args(["status", "--http", &format!("127.0.0.1:{port}")]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains(&port.to_string()));
}

fn free_port() -> u16 {
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = udp.local_addr().unwrap().port();
    // also free over TCP, for the DNS TCP listener and HTTP
    std::net::TcpListener::bind(("127.0.0.1", port)).map(|_| port).unwrap_or_else(|_| free_port())
}

/// Kills the child on drop, so a failing assertion never leaves a demo running.
struct Child(std::process::Child);

impl Child {
    /// Waits for the process to exit, panicking after `within`.
    fn wait_exit(&mut self, within: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(s) = self.0.try_wait().unwrap() {
                return s;
            }
            assert!(Instant::now() < deadline, "lagdns did not exit within {within:?}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// The lines a child writes to `pipe`, as they come.
fn lines(pipe: impl std::io::Read + Send + 'static) -> std::sync::mpsc::Receiver<String> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    rx
}

impl Drop for Child {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            unsafe { libc::kill(self.0.id() as i32, libc::SIGINT) };
            let deadline = Instant::now() + Duration::from_secs(30);
            while Instant::now() < deadline && matches!(self.0.try_wait(), Ok(None)) {
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = self.0.kill();
        }
    }
}

#[cfg(feature = "demo")]
fn dig(port: u16, args: &[&str]) -> String {
    let out = Command::new("dig")
        .args(["@127.0.0.1", "-p", &port.to_string(), "+short", "+time=2", "+tries=1"])
        .args(args)
        .output()
        .expect("dig is installed (./dev test installs bind9-dnsutils)");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
#[cfg(feature = "demo")] // `lagdns demo` exists only with the `demo` feature
fn demo_serves_real_postgres_and_cleans_up_on_ctrl_c() {
    let (dns, http) = (free_port(), free_port());
    let mut child = Child(
        lagdns()
            .args(["demo", "--dns", &format!("127.0.0.1:{dns}"), "--http", &format!("127.0.0.1:{http}")])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let rx = lines(child.0.stdout.take().unwrap());
    let progress = lines(child.0.stderr.take().unwrap());
    let mut config_path = None;
    let deadline = Instant::now() + Duration::from_secs(120);
    while config_path.is_none() {
        let line =
            rx.recv_timeout(deadline.saturating_duration_since(Instant::now())).expect("demo prints its config path");
        if let Some(p) = line.strip_prefix("config: ") {
            config_path = Some(PathBuf::from(p.trim()));
        }
    }
    let dir = config_path.unwrap().parent().unwrap().to_path_buf();
    assert!(dir.exists());
    // while PostgreSQL started, the demo said what it was doing, node by node
    let said: Vec<String> = progress.try_iter().collect();
    for step in ["pg1: primary up", "pg2: replica started", "pg3: streaming from pg1"] {
        assert!(said.iter().any(|l| l.contains(step)), "no {step:?} in {said:?}");
    }

    // write answers the primary, read a replica, once the first round is done
    let deadline = Instant::now() + Duration::from_secs(30);
    let (write, read) = loop {
        let (w, r) = (dig(dns, &["write.db.internal"]), dig(dns, &["read.db.internal"]));
        if (!w.trim().is_empty() && !r.trim().is_empty()) || Instant::now() > deadline {
            break (w, r);
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(write.trim().ends_with(".1"), "write is pg1 (127.77.x.1): {write:?}");
    assert!(!read.trim().is_empty() && !read.trim().ends_with(".1"), "read is a replica: {read:?}");
    let txt = dig(dns, &["TXT", "read.db.internal"]);
    assert_eq!(txt.lines().count(), 3, "one TXT string per node: {txt}");

    unsafe { libc::kill(child.0.id() as i32, libc::SIGINT) };
    let status = child.wait_exit(Duration::from_secs(60));
    assert!(status.success(), "{status:?}");
    assert!(!dir.exists(), "demo removed {}", dir.display());
}

#[test]
fn serve_logs_json_from_the_environment_and_stops_cleanly_on_sigterm() {
    let (dns, http) = (free_port(), free_port());
    let text = format!(
        "[dns]\nlisten = [\"127.0.0.1:{dns}\"]\n[http]\nlisten = \"127.0.0.1:{http}\"\n{}",
        VALID.replace("[dns]\nzone = \"db.internal\"\n", "").replace("host=10.0.0.11", "host=127.0.0.1 port=1")
    );
    let path = write_config("json", &text);
    let mut child = Child(
        lagdns()
            .env("LAGDNS_LOG_FORMAT", "json") // SPEC §13: stands for --log-format
            .env("LAGDNS_LOG_LEVEL", "info")
            .args(["serve", "--config"])
            .arg(&*path)
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let rx = lines(child.0.stderr.take().unwrap());
    // the node's port is closed: it goes down, and that is logged as a JSON event
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut seen = Vec::new();
    while !seen.iter().any(|l: &String| l.contains("node state changed")) {
        let line =
            rx.recv_timeout(deadline.saturating_duration_since(Instant::now())).expect("a state change is logged");
        let v: serde_json::Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(v["level"].is_string() && v["message"].is_string(), "{line}");
        assert!(!line.contains("hunter2"), "the password is never logged: {line}");
        seen.push(line);
    }
    unsafe { libc::kill(child.0.id() as i32, libc::SIGTERM) };
    let status = child.wait_exit(Duration::from_secs(15));
    assert!(status.success(), "{status:?}");
}
