//! Shared helpers for the tests that run against real PostgreSQL: a DNS client over
//! real UDP/TCP sockets, HTTP GET, polling with deadlines, and a running lagdns over a
//! local cluster.

use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;
use std::time::Duration;

use hickory_proto::op::{Message, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;

use lagdns::cmd::serve::Server;
use lagdns::config::Config;
use localpg::LocalCluster;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    Udp,
    Tcp,
}

/// Sends one query and returns the decoded response.
pub async fn query(server: SocketAddr, name: &str, qtype: RecordType, proto: Proto) -> Message {
    let mut msg = Message::query();
    msg.add_query(Query::query(Name::from_str(name).unwrap(), qtype));
    let bytes = msg.to_vec().unwrap();
    let deadline = Duration::from_secs(5);
    let reply = match proto {
        Proto::Udp => tokio::time::timeout(deadline, udp_exchange(server, &bytes)).await,
        Proto::Tcp => tokio::time::timeout(deadline, tcp_exchange(server, &bytes)).await,
    };
    let reply = reply.unwrap_or_else(|_| panic!("no DNS answer for {name} {qtype} from {server} within 5 s"));
    let resp = Message::from_vec(&reply).expect("a decodable DNS response");
    assert_eq!(resp.metadata.id, msg.metadata.id, "response id matches");
    resp
}

async fn udp_exchange(server: SocketAddr, bytes: &[u8]) -> Vec<u8> {
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    sock.send_to(bytes, server).await.unwrap();
    let mut buf = vec![0u8; 65535];
    let (n, _) = sock.recv_from(&mut buf).await.unwrap();
    buf.truncate(n);
    buf
}

/// Sends `msg` over UDP from a socket bound to `source` (any port; Linux routes all of
/// 127.0.0.0/8 to loopback, so a test can stand for clients in several networks) and
/// returns the reply with the same id, decoded; panics after 5 s.
pub async fn query_from(source: IpAddr, server: SocketAddr, msg: &Message) -> Message {
    let bytes = msg.to_vec().unwrap();
    let reply = udp_from(source, server, &bytes).await;
    Message::from_vec(&reply).unwrap_or_else(|e| panic!("undecodable response to a query from {source}: {e}"))
}

/// Sends `bytes` over UDP from `source` and returns the first reply carrying the
/// query's id; panics after 5 s.
pub async fn udp_from(source: IpAddr, server: SocketAddr, bytes: &[u8]) -> Vec<u8> {
    let sock = tokio::net::UdpSocket::bind(SocketAddr::new(source, 0))
        .await
        .unwrap_or_else(|e| panic!("bind a UDP client to {source}: {e}"));
    sock.send_to(bytes, server).await.unwrap();
    let mut buf = vec![0u8; 65535];
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let got = tokio::time::timeout_at(deadline, sock.recv_from(&mut buf)).await;
        let (n, _) = got.unwrap_or_else(|_| panic!("no UDP reply from {server} to {source} within 5 s")).unwrap();
        if n >= 2 && buf[..2] == bytes[..2] {
            return buf[..n].to_vec();
        }
    }
}

/// Sends `msg` over a TCP connection from `source` and returns the decoded reply;
/// panics after 5 s.
pub async fn tcp_query_from(source: IpAddr, server: SocketAddr, msg: &Message) -> Message {
    let exchange = async {
        let socket = match source {
            IpAddr::V4(_) => tokio::net::TcpSocket::new_v4(),
            IpAddr::V6(_) => tokio::net::TcpSocket::new_v6(),
        }?;
        socket.bind(SocketAddr::new(source, 0))?;
        let mut s = socket.connect(server).await?;
        let bytes = msg.to_vec().unwrap();
        let mut framed = (bytes.len() as u16).to_be_bytes().to_vec();
        framed.extend_from_slice(&bytes);
        s.write_all(&framed).await?;
        let mut buf = vec![0u8; s.read_u16().await? as usize];
        s.read_exact(&mut buf).await?;
        Ok::<_, std::io::Error>(buf)
    };
    let reply = tokio::time::timeout(Duration::from_secs(5), exchange).await;
    let reply = reply.unwrap_or_else(|_| panic!("no TCP reply from {server} to {source} within 5 s")).unwrap();
    let resp = Message::from_vec(&reply).expect("a decodable DNS response");
    assert_eq!(resp.metadata.id, msg.metadata.id, "response id matches");
    resp
}

async fn tcp_exchange(server: SocketAddr, bytes: &[u8]) -> Vec<u8> {
    let mut s = tokio::net::TcpStream::connect(server).await.unwrap();
    let mut framed = (bytes.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(bytes);
    s.write_all(&framed).await.unwrap();
    let len = s.read_u16().await.unwrap() as usize;
    let mut buf = vec![0u8; len];
    s.read_exact(&mut buf).await.unwrap();
    buf
}

/// The A/AAAA addresses in the answer section, in order.
pub fn addrs(m: &Message) -> Vec<IpAddr> {
    m.answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(IpAddr::V4(a.0)),
            RData::AAAA(a) => Some(IpAddr::V6(a.0)),
            _ => None,
        })
        .collect()
}

/// Every SRV record in the answer section as (priority, weight, port, target).
pub fn srv(m: &Message) -> Vec<(u16, u16, u16, String)> {
    m.answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::SRV(s) => Some((s.priority, s.weight, s.port, s.target.to_ascii())),
            _ => None,
        })
        .collect()
}

/// Every TXT string in the answer section.
pub fn txt(m: &Message) -> Vec<String> {
    m.answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::TXT(t) => {
                Some(t.txt_data.iter().map(|s| String::from_utf8_lossy(s).into_owned()).collect::<Vec<_>>())
            }
            _ => None,
        })
        .flatten()
        .collect()
}

pub fn rcode(m: &Message) -> ResponseCode {
    m.metadata.response_code
}

/// `GET http://addr/path` → (status, body).
pub async fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let url = format!("http://{addr}{path}");
    tokio::task::spawn_blocking(move || http_get_blocking(&url).unwrap_or_else(|e| panic!("{e}"))).await.unwrap()
}

/// `GET url` from blocking code → (status, body), or the error (connection refused...);
/// a status other than 200 is not an error.
pub fn http_get_blocking(url: &str) -> Result<(u16, String), String> {
    let get = ureq::get(url).config().timeout_global(Some(Duration::from_secs(5))).http_status_as_error(false);
    match get.build().call() {
        Ok(mut r) => {
            let body = r.body_mut().read_to_string().map_err(|e| format!("GET {url}: reading the body: {e}"))?;
            Ok((r.status().as_u16(), body))
        }
        Err(e) => Err(format!("GET {url}: {e}")),
    }
}

/// Polls `check` every 50 ms until it returns `Some`, or panics after `within` with
/// the last observed value described by `what`.
pub async fn eventually<T, F, Fut>(within: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let deadline = Instant::now() + within;
    loop {
        match check().await {
            Ok(v) => return v,
            Err(last) if Instant::now() >= deadline => {
                panic!("timed out after {within:?} waiting for {what}; last: {last}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

/// Probe and policy settings a test writes into its config.
#[derive(Debug, Clone)]
pub struct Settings {
    pub interval_ms: u64,
    pub timeout_ms: u64,
    pub fall: u32,
    pub rise: u32,
    pub max_lag_ms: u64,
    pub fallback: &'static str,
    pub answers: &'static str,
    /// Extra TOML appended to the `[[cluster]]` table (before the nodes).
    pub cluster_extra: String,
    /// Per-node weight overrides by node name.
    pub weights: Vec<(&'static str, u32)>,
    /// Nodes of the cluster left out of the config.
    pub skip: Vec<&'static str>,
    /// Extra `[[cluster.node]]` tables appended verbatim.
    pub extra_nodes: String,
    /// Fixed DNS and HTTP ports (for the real binary); 0 = ephemeral.
    pub ports: (u16, u16),
    /// `location = ...` of nodes, by node name (SPEC §8).
    pub locations: Vec<(&'static str, &'static str)>,
    /// Top-level TOML appended at the end (e.g. `[locality]`).
    pub tail: String,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            interval_ms: 250,
            timeout_ms: 1000,
            fall: 2,
            rise: 2,
            max_lag_ms: 500,
            fallback: "primary",
            answers: "1",
            cluster_extra: String::new(),
            weights: Vec::new(),
            skip: Vec::new(),
            extra_nodes: String::new(),
            ports: (0, 0),
            locations: Vec::new(),
            tail: String::new(),
        }
    }
}

impl Settings {
    /// A generous deadline for `n` probe intervals (plus timeouts) on a loaded 2-core
    /// machine.
    pub fn rounds(&self, n: u64) -> Duration {
        Duration::from_millis(n * (self.interval_ms + self.timeout_ms) + 5000)
    }
}

/// A config for `cluster` served on ephemeral loopback ports.
pub fn config_text(cluster: &LocalCluster, s: &Settings) -> String {
    let mut t = format!(
        r#"[dns]
listen = ["127.0.0.1:{dns_port}"]
zone = "db.internal"
ttl = "1s"
negative_ttl = "1s"
nameservers = [{{ name = "ns1.db.internal", address = "127.0.0.1" }}]
nsid = "lagdns-test"

[http]
listen = "127.0.0.1:{http_port}"

[probe]
interval = "{}ms"
timeout = "{}ms"
fall = {}
rise = {}

[[cluster]]
name = "main"
max_lag = "{}ms"
fallback = "{}"
answers = {}
{}
"#,
        s.interval_ms,
        s.timeout_ms,
        s.fall,
        s.rise,
        s.max_lag_ms,
        s.fallback,
        if s.answers == "all" { "\"all\"".to_string() } else { s.answers.to_string() },
        s.cluster_extra,
        dns_port = s.ports.0,
        http_port = s.ports.1,
    );
    for n in cluster.nodes().iter().filter(|n| !s.skip.contains(&n.name.as_str())) {
        let weight = s.weights.iter().find(|(name, _)| *name == n.name).map(|(_, w)| *w).unwrap_or(100);
        t.push_str(&n.config_table(weight));
        if let Some((_, location)) = s.locations.iter().find(|(name, _)| *name == n.name) {
            t.push_str(&format!("location = \"{location}\"\n"));
        }
    }
    t.push_str(&s.extra_nodes);
    t.push_str(&s.tail);
    t
}

/// A free loopback port (UDP and TCP).
pub fn free_port() -> u16 {
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = udp.local_addr().unwrap().port();
    match std::net::TcpListener::bind(("127.0.0.1", port)) {
        Ok(_) => port,
        Err(_) => free_port(),
    }
}

/// Starts a local cluster (off the async runtime's worker).
pub async fn start_cluster(replicas: usize) -> LocalCluster {
    tokio::task::spawn_blocking(move || LocalCluster::start(replicas))
        .await
        .unwrap()
        .expect("start a local PostgreSQL cluster (is PostgreSQL installed? ./dev test installs it)")
}

/// A real cluster (primary pg1 + replicas) with lagdns serving it in-process.
pub struct Stack {
    pub server: Option<Server>,
    pub settings: Settings,
    pub cluster: LocalCluster,
}

impl Stack {
    pub async fn start(replicas: usize, settings: Settings) -> Stack {
        Stack::serve(start_cluster(replicas).await, settings).await
    }

    /// Serves an already started cluster (to inject a fault before lagdns starts).
    pub async fn serve(cluster: LocalCluster, settings: Settings) -> Stack {
        let text = config_text(&cluster, &settings);
        let config = Config::parse(&text, "test.toml").expect("test config is valid");
        let server = Server::start(config).await.expect("lagdns starts");
        Stack { server: Some(server), settings, cluster }
    }

    pub fn server(&self) -> &Server {
        self.server.as_ref().expect("server running")
    }

    pub fn dns(&self) -> SocketAddr {
        self.server().dns_addrs[0]
    }

    pub fn http(&self) -> SocketAddr {
        self.server().http_addr
    }

    pub fn addr_of(&self, node: &str) -> IpAddr {
        IpAddr::V4(self.cluster.node(node).address)
    }

    pub fn name_of(&self, addr: IpAddr) -> String {
        self.cluster
            .nodes()
            .iter()
            .find(|n| IpAddr::V4(n.address) == addr)
            .map(|n| n.name.clone())
            .unwrap_or_else(|| addr.to_string())
    }

    /// Node names answered for `name` A (UDP).
    pub async fn answer(&self, name: &str) -> (ResponseCode, Vec<String>) {
        let m = query(self.dns(), name, RecordType::A, Proto::Udp).await;
        let mut names: Vec<String> = addrs(&m).into_iter().map(|a| self.name_of(a)).collect();
        names.sort();
        (rcode(&m), names)
    }

    /// Waits until `name` answers exactly `want` (sorted node names, NOERROR).
    pub async fn wait_answer(&self, name: &str, want: &[&str], within: Duration) {
        let want: Vec<String> = want.iter().map(|s| s.to_string()).collect();
        eventually(within, &format!("{name} → {want:?}"), || async {
            let got = self.answer(name).await;
            if got.0 == ResponseCode::NoError && got.1 == want {
                Ok(())
            } else {
                Err(format!("{got:?}"))
            }
        })
        .await
    }

    pub async fn shutdown(&mut self) {
        if let Some(s) = self.server.take() {
            s.shutdown().await;
        }
    }
}

/// `lagdns serve` as a real process (for signals), killed on drop if still running.
pub struct ServeProcess {
    pub child: std::process::Child,
    pub config: std::path::PathBuf,
    pub log: std::path::PathBuf,
    pub dns: SocketAddr,
    pub http: SocketAddr,
}

impl ServeProcess {
    /// Writes `text` to a config file in `dir` and starts `lagdns serve` on it; `text`
    /// must listen on the fixed `ports`.
    pub fn spawn(dir: &std::path::Path, text: &str, ports: (u16, u16)) -> ServeProcess {
        ServeProcess::spawn_full(dir, text, ports, &[], None)
    }

    /// [`ServeProcess::spawn`] with `env` set in the process's environment (`PGPASSWORD`
    /// is only ever set this way: the test binary's own environment is shared by every
    /// test); `PGPASSWORD` is unset unless `env` sets it.
    pub fn spawn_with_env(dir: &std::path::Path, text: &str, ports: (u16, u16), env: &[(&str, &str)]) -> ServeProcess {
        ServeProcess::spawn_full(dir, text, ports, env, None)
    }

    /// [`ServeProcess::spawn`] with soft and hard `RLIMIT_NOFILE` set to `nofile`.
    pub fn spawn_limited(dir: &std::path::Path, text: &str, ports: (u16, u16), nofile: u64) -> ServeProcess {
        ServeProcess::spawn_full(dir, text, ports, &[], Some(nofile))
    }

    fn spawn_full(
        dir: &std::path::Path,
        text: &str,
        ports: (u16, u16),
        env: &[(&str, &str)],
        nofile: Option<u64>,
    ) -> ServeProcess {
        use std::os::unix::process::CommandExt;
        let config = dir.join("lagdns-serve.toml");
        let log = dir.join("lagdns-serve.log");
        std::fs::write(&config, text).unwrap();
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_lagdns"));
        command
            .args(["--log-level", "info", "serve", "--config"])
            .arg(&config)
            .env_remove("PGPASSWORD")
            .envs(env.iter().copied())
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap());
        if let Some(n) = nofile {
            let lim = libc::rlimit { rlim_cur: n, rlim_max: n };
            // SAFETY: setrlimit is async-signal-safe and only reads `lim`.
            unsafe {
                command.pre_exec(move || match libc::setrlimit(libc::RLIMIT_NOFILE, &lim) {
                    0 => Ok(()),
                    _ => Err(std::io::Error::last_os_error()),
                });
            }
        }
        let child = command.spawn().unwrap();
        let at = |p: u16| SocketAddr::from(([127, 0, 0, 1], p));
        ServeProcess { child, config, log, dns: at(ports.0), http: at(ports.1) }
    }

    /// Waits until the server accepts HTTP connections (its sockets are bound).
    pub async fn wait_listening(&mut self, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("lagdns exited early ({status:?}); log:\n{}", self.log_text());
            }
            if tokio::net::TcpStream::connect(self.http).await.is_ok() {
                return;
            }
            assert!(Instant::now() < deadline, "lagdns not listening within {within:?}; log:\n{}", self.log_text());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Open file descriptors of the process now.
    pub fn open_fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.child.id())).map_or(0, |d| d.count())
    }

    /// CPU time the process has used (user + system).
    pub fn cpu_time(&self) -> Duration {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap_or_default();
        let after_name = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
        let fields: Vec<u64> = after_name.split_whitespace().filter_map(|f| f.parse().ok()).collect();
        // fields 14 and 15 of stat(5), counted from the state field (3)
        let ticks = fields.get(10).copied().unwrap_or(0) + fields.get(11).copied().unwrap_or(0);
        Duration::from_millis(ticks * 10)
    }

    pub fn signal(&self, sig: i32) {
        unsafe { libc::kill(self.child.id() as i32, sig) };
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits for the process to exit, up to `within`.
    pub async fn wait_exit(&mut self, within: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "lagdns did not exit within {within:?}; log:\n{}", self.log_text());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Node names (via `name_of`) answered for `name` A.
    pub async fn answer(&self, name: &str, cluster: &LocalCluster) -> (ResponseCode, Vec<String>) {
        let m = query(self.dns, name, RecordType::A, Proto::Udp).await;
        let mut names: Vec<String> = addrs(&m)
            .into_iter()
            .map(|a| {
                cluster
                    .nodes()
                    .iter()
                    .find(|n| IpAddr::V4(n.address) == a)
                    .map(|n| n.name.clone())
                    .unwrap_or(a.to_string())
            })
            .collect();
        names.sort();
        (rcode(&m), names)
    }
}

impl Drop for ServeProcess {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Number of lagdns probe connections the node currently has.
pub fn probe_connections(node: &localpg::LocalNode) -> usize {
    node.sql("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'lagdns'")
        .map(|s| s.trim().parse().unwrap_or(usize::MAX))
        .unwrap_or(usize::MAX)
}

/// One TCP query that reports connection errors instead of panicking.
pub async fn try_query(server: SocketAddr, name: &str) -> std::io::Result<Message> {
    let mut msg = Message::query();
    msg.add_query(Query::query(Name::from_str(name).unwrap(), RecordType::A));
    let bytes = msg.to_vec().unwrap();
    let mut s = tokio::net::TcpStream::connect(server).await?;
    let mut framed = (bytes.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(&bytes);
    s.write_all(&framed).await?;
    let len = s.read_u16().await? as usize;
    let mut buf = vec![0u8; len];
    s.read_exact(&mut buf).await?;
    Message::from_vec(&buf).map_err(|e| std::io::Error::other(e.to_string()))
}
