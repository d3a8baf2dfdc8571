//! Metrics: every metric name (prefix `lagdns_`), and the Prometheus text rendering of
//! a snapshot plus the DNS query counters (`dns::query::QueryStats`).

use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::dns::edge::EdgeStats;
use crate::dns::query::QueryStats;
use crate::health::NodeState;
use crate::snapshot::{ClusterView, NodeView, Snapshot, WriteTarget};
use crate::topology::Role;

// ---------------------------------------------------------------------------------
// Metric names. Every metric lagdns exports is named here and nowhere else.

pub const BUILD_INFO: &str = "lagdns_build_info";
pub const RELOAD_OK: &str = "lagdns_config_last_reload_successful";
pub const RELOAD_SUCCESS_TIMESTAMP: &str = "lagdns_config_last_reload_success_timestamp_seconds";
pub const READY: &str = "lagdns_ready";
pub const SOA_SERIAL: &str = "lagdns_soa_serial";
pub const ANSWER_CHANGES: &str = "lagdns_answer_changes_total";
pub const SNAPSHOT_TIMESTAMP: &str = "lagdns_snapshot_timestamp_seconds";
pub const QUERIES: &str = "lagdns_queries_total";
pub const READ_ANSWERS: &str = "lagdns_read_answers_total";
pub const RRL_LIMITED: &str = "lagdns_rrl_limited_total";
pub const RRL_RESPONSES: &str = "lagdns_rrl_responses_total";
pub const TCP_ACCEPTED: &str = "lagdns_dns_tcp_accepted_total";
pub const TCP_OPEN: &str = "lagdns_dns_tcp_connections";
pub const TCP_REFUSED: &str = "lagdns_dns_tcp_refused_total";
pub const TCP_CLOSED: &str = "lagdns_dns_tcp_closed_total";
pub const TCP_ACCEPT_ERRORS: &str = "lagdns_dns_tcp_accept_errors_total";
pub const HTTP_DENIED: &str = "lagdns_http_denied_total";
pub const AGENT_CHECKS: &str = "lagdns_agent_checks_total";
pub const SPLIT_BRAIN: &str = "lagdns_split_brain";
pub const DISCOVERY_FAILED_ROUNDS: &str = "lagdns_discovery_failed_rounds";
pub const DISCOVERY_FAILURES: &str = "lagdns_discovery_failures_total";
pub const DISCOVERED_NODES: &str = "lagdns_discovered_nodes";
pub const SPLIT_BRAIN_EVENTS: &str = "lagdns_split_brain_events_total";
pub const SPLIT_BRAIN_RIVALS: &str = "lagdns_split_brain_rivals";
pub const WRITE_STALE: &str = "lagdns_write_stale";
pub const WRITE_KNOWN: &str = "lagdns_write_known";
pub const PRIMARY_LSN: &str = "lagdns_primary_lsn_bytes";
pub const ENDPOINT_ELIGIBLE_NODES: &str = "lagdns_endpoint_eligible_nodes";
pub const NODE_UP: &str = "lagdns_node_up";
pub const NODE_STATE: &str = "lagdns_node_state";
pub const NODE_IS_PRIMARY: &str = "lagdns_node_is_primary";
pub const NODE_LAG_SECONDS: &str = "lagdns_node_lag_seconds";
pub const NODE_LAG_BYTES: &str = "lagdns_node_lag_bytes";
pub const NODE_REPLAY_PAUSED: &str = "lagdns_node_replay_paused";
pub const NODE_WEIGHT: &str = "lagdns_node_weight";
pub const NODE_ELIGIBLE: &str = "lagdns_node_eligible";
pub const PROBES: &str = "lagdns_probes_total";
pub const PROBE_ERRORS: &str = "lagdns_probe_errors_total";
pub const PROBE_DURATION: &str = "lagdns_probe_duration_seconds_total";
pub const PROBE_LAST_DURATION: &str = "lagdns_probe_last_duration_seconds";

// ---------------------------------------------------------------------------------
// Prometheus text exposition (format 0.0.4) of a snapshot plus the query counters.

/// The `Content-Type` of [`render`]'s output.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The outcome of the last config reload (SIGHUP), written by `cmd::serve`. Starts as
/// a success at start-up, as Prometheus's own `config_last_reload_*` metrics do.
pub struct Reloads {
    ok: AtomicBool,
    success_at_ms: AtomicU64,
}

impl Reloads {
    pub fn new(started: SystemTime) -> Reloads {
        Reloads { ok: AtomicBool::new(true), success_at_ms: AtomicU64::new(unix_ms(started)) }
    }

    pub fn succeeded(&self, at: SystemTime) {
        self.success_at_ms.store(unix_ms(at), Ordering::Relaxed);
        self.ok.store(true, Ordering::Relaxed);
    }

    pub fn failed(&self) {
        self.ok.store(false, Ordering::Relaxed);
    }

    /// (last reload successful, Unix time of the last successful one).
    pub fn read(&self) -> (bool, f64) {
        (self.ok.load(Ordering::Relaxed), self.success_at_ms.load(Ordering::Relaxed) as f64 / 1000.0)
    }
}

fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).unwrap_or_default().as_millis() as u64
}

/// Renders every metric; pure (reads only the snapshot and the counters).
pub fn render(snap: &Snapshot, stats: &QueryStats, reloads: &Reloads) -> String {
    let mut out = Out(String::with_capacity(8 * 1024));
    let (reload_ok, reload_at) = reloads.read();
    out.family(BUILD_INFO, "Always 1; the version of the running lagdns in a label.", "gauge");
    out.sample(BUILD_INFO, &[("version", env!("CARGO_PKG_VERSION"))], 1.0);
    out.single(
        RELOAD_OK,
        "1 if the last config reload (SIGHUP) succeeded, 0 if it failed.",
        "gauge",
        bool_f(reload_ok),
    );
    out.single(RELOAD_SUCCESS_TIMESTAMP, "Unix time of the last successful config load.", "gauge", reload_at);
    render_global(&mut out, snap, stats);
    render_clusters(&mut out, &snap.clusters);
    render_nodes(&mut out, &snap.clusters);
    out.0
}

fn render_global(out: &mut Out, snap: &Snapshot, stats: &QueryStats) {
    let built = snap.built.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs_f64();
    out.single(READY, "1 once the first full probe round has finished, else 0.", "gauge", bool_f(snap.ready));
    out.single(SOA_SERIAL, "The zone's current SOA serial.", "gauge", f64::from(snap.serial));
    out.single(ANSWER_CHANGES, "Times any endpoint's answer set changed.", "counter", snap.answer_changes as f64);
    out.single(SNAPSHOT_TIMESTAMP, "Unix time the current snapshot was built.", "gauge", built);
    out.family(QUERIES, "DNS queries answered, by name kind, query type and rcode.", "counter");
    for (kind, qtype, rcode, n) in stats.nonzero() {
        out.sample(QUERIES, &[("kind", kind.as_str()), ("qtype", qtype.as_str()), ("rcode", rcode.as_str())], n as f64);
    }
    let help = "Read answers with addresses, by whether the first is in the client's location (SPEC §8).";
    out.family(READ_ANSWERS, help, "counter");
    for (nearness, n) in stats.by_nearness() {
        out.sample(READ_ANSWERS, &[("locality", nearness.as_str())], n as f64);
    }
    render_edge(out, &stats.edge);
}

fn render_edge(out: &mut Out, edge: &EdgeStats) {
    let (slipped, dropped) = edge.rrl();
    let limited = "UDP responses over dns.limits.rate (slipped + dropped).";
    out.single(RRL_LIMITED, limited, "counter", (slipped + dropped) as f64);
    out.family(RRL_RESPONSES, "UDP responses over the rate, by what was done: sent truncated or dropped.", "counter");
    out.sample(RRL_RESPONSES, &[("action", "slipped")], slipped as f64);
    out.sample(RRL_RESPONSES, &[("action", "dropped")], dropped as f64);
    let (accepted, open, accept_errors) = edge.tcp_totals();
    out.single(TCP_ACCEPTED, "DNS TCP connections admitted under the caps.", "counter", accepted as f64);
    out.single(TCP_OPEN, "DNS TCP connections open now.", "gauge", open as f64);
    out.family(TCP_REFUSED, "DNS TCP connections closed at accept, by the cap they were over.", "counter");
    for (event, n) in edge.tcp_events().filter(|(e, _)| e.is_refusal()) {
        out.sample(TCP_REFUSED, &[("reason", event.as_str())], n as f64);
    }
    out.family(TCP_CLOSED, "Admitted DNS TCP connections closed, by reason.", "counter");
    for (event, n) in edge.tcp_events().filter(|(e, _)| !e.is_refusal()) {
        out.sample(TCP_CLOSED, &[("reason", event.as_str())], n as f64);
    }
    out.single(
        TCP_ACCEPT_ERRORS,
        "DNS TCP accept calls that failed (e.g. out of file descriptors).",
        "counter",
        accept_errors as f64,
    );
    out.single(
        HTTP_DENIED,
        "HTTP and agent connections from clients outside http.allow, closed at once.",
        "counter",
        edge.http_denied_total() as f64,
    );
    out.family(AGENT_CHECKS, "HAProxy agent checks, by reply (none: closed without one).", "counter");
    for (reply, n) in edge.agent_replies() {
        out.sample(AGENT_CHECKS, &[("reply", reply)], n as f64);
    }
}

/// A per-cluster or per-node metric family: name, help, type and the value (if any).
type Family<T> = (&'static str, &'static str, &'static str, fn(&T) -> Option<f64>);

const CLUSTER_METRICS: [Family<ClusterView>; 9] = [
    (
        DISCOVERY_FAILED_ROUNDS,
        "Consecutive Patroni discovery rounds in which no member answered (clusters with `patroni`).",
        "gauge",
        |c| c.discovery.as_ref().map(|d| f64::from(d.failed_rounds)),
    ),
    (DISCOVERY_FAILURES, "Patroni discovery rounds in which no member answered.", "counter", |c| {
        c.discovery.as_ref().map(|d| d.failures as f64)
    }),
    (DISCOVERED_NODES, "Nodes discovered from Patroni and probed.", "gauge", |c| {
        c.discovery.as_ref().map(|_| c.nodes.iter().filter(|n| n.patroni.is_some()).count() as f64)
    }),
    (SPLIT_BRAIN, "1 while several nodes claim to be primary and write answers SERVFAIL.", "gauge", |c| {
        Some(bool_f(matches!(c.write, WriteTarget::Conflict(_))))
    }),
    (SPLIT_BRAIN_RIVALS, "Nodes also out of recovery that lost the election to a newer timeline.", "gauge", |c| {
        Some(c.rivals.len() as f64)
    }),
    (SPLIT_BRAIN_EVENTS, "Times two or more nodes claimed to be primary at once (settled or not).", "counter", |c| {
        Some(c.split_brain_events as f64)
    }),
    (WRITE_STALE, "1 while no primary is reachable and write answers the last known one.", "gauge", |c| {
        Some(bool_f(matches!(c.write, WriteTarget::Stale { .. })))
    }),
    (WRITE_KNOWN, "1 while write answers a node (fresh or stale), 0 on SERVFAIL.", "gauge", |c| {
        Some(bool_f(c.write.node().is_some()))
    }),
    (PRIMARY_LSN, "Newest WAL position seen on the primary, in bytes.", "gauge", |c| c.primary_lsn.map(|l| l.0 as f64)),
];

fn render_clusters(out: &mut Out, clusters: &[Arc<ClusterView>]) {
    for (name, help, kind, value) in CLUSTER_METRICS {
        out.family(name, help, kind);
        for c in clusters {
            if let Some(v) = value(c) {
                out.sample(name, &[("cluster", &c.name)], v);
            }
        }
    }
    out.family(ENDPOINT_ELIGIBLE_NODES, "Nodes eligible for a read endpoint.", "gauge");
    for c in clusters {
        for e in &c.endpoints {
            out.sample(
                ENDPOINT_ELIGIBLE_NODES,
                &[("cluster", &c.name), ("endpoint", &e.label)],
                e.eligible.len() as f64,
            );
        }
    }
}

const NODE_METRICS: [Family<NodeView>; 10] = [
    (NODE_UP, "1 if the node is up (its first probe succeeded, or `rise` in a row since it was down), 0 once `fall` probes in a row failed.", "gauge", |n| {
        Some(bool_f(n.state == NodeState::Up))
    }),
    (NODE_IS_PRIMARY, "1 if the node reported it is not in recovery.", "gauge", |n| {
        Some(bool_f(n.role == Role::Primary))
    }),
    (NODE_LAG_SECONDS, "Replication lag in time (absent when not measurable).", "gauge", |n| {
        n.lag.map(|d| d.as_secs_f64())
    }),
    (NODE_LAG_BYTES, "WAL bytes the replica has not replayed yet.", "gauge", |n| n.lag_bytes.map(|b| b as f64)),
    (NODE_REPLAY_PAUSED, "1 if WAL replay is paused on the replica.", "gauge", |n| Some(bool_f(n.replay_paused))),
    (NODE_WEIGHT, "Configured weight (0 = drained).", "gauge", |n| Some(f64::from(n.weight))),
    (PROBES, "Probes finished.", "counter", |n| Some(n.probes as f64)),
    (PROBE_ERRORS, "Probes failed.", "counter", |n| Some(n.probe_errors as f64)),
    (PROBE_DURATION, "Total time spent probing.", "counter", |n| Some(n.probe_seconds)),
    (PROBE_LAST_DURATION, "Duration of the last probe.", "gauge", |n| n.last_probe_duration.map(|d| d.as_secs_f64())),
];

fn render_nodes(out: &mut Out, clusters: &[Arc<ClusterView>]) {
    for (name, help, kind, value) in NODE_METRICS {
        out.family(name, help, kind);
        for c in clusters {
            for n in &c.nodes {
                if let Some(v) = value(n) {
                    out.sample(name, &[("cluster", &c.name), ("node", &n.name)], v);
                }
            }
        }
    }
    out.family(NODE_STATE, "1 for the node's current state (unknown, up, down).", "gauge");
    for c in clusters {
        for n in &c.nodes {
            for s in [NodeState::Unknown, NodeState::Up, NodeState::Down] {
                out.sample(
                    NODE_STATE,
                    &[("cluster", &c.name), ("node", &n.name), ("state", s.as_str())],
                    bool_f(n.state == s),
                );
            }
        }
    }
    out.family(NODE_ELIGIBLE, "1 if the node is eligible for the read endpoint.", "gauge");
    for c in clusters {
        for e in &c.endpoints {
            for (n, v) in c.nodes.iter().zip(&e.verdicts) {
                let labels = [("cluster", c.name.as_str()), ("node", &n.name), ("endpoint", &e.label)];
                out.sample(NODE_ELIGIBLE, &labels, bool_f(v.is_eligible()));
            }
        }
    }
}

fn bool_f(b: bool) -> f64 {
    if b {
        1.0
    } else {
        0.0
    }
}

/// The output buffer with the exposition format's few rules.
struct Out(String);

impl Out {
    fn family(&mut self, name: &str, help: &str, kind: &str) {
        let _ = writeln!(self.0, "# HELP {name} {}", escape_help(help));
        let _ = writeln!(self.0, "# TYPE {name} {kind}");
    }

    fn single(&mut self, name: &str, help: &str, kind: &str, value: f64) {
        self.family(name, help, kind);
        self.sample(name, &[], value);
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.0.push_str(name);
        if !labels.is_empty() {
            self.0.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                let sep = if i == 0 { "" } else { "," };
                let _ = write!(self.0, "{sep}{k}=\"{}\"", escape_label(v));
            }
            self.0.push('}');
        }
        let _ = writeln!(self.0, " {}", format_value(value));
    }
}

/// Label values escape `\`, `"` and newline.
pub fn escape_label(v: &str) -> String {
    let mut s = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => s.push_str("\\\\"),
            '"' => s.push_str("\\\""),
            '\n' => s.push_str("\\n"),
            c => s.push(c),
        }
    }
    s
}

/// HELP text escapes `\` and newline.
fn escape_help(v: &str) -> String {
    v.replace('\\', "\\\\").replace('\n', "\\n")
}

/// Go-style float text: `+Inf`, `-Inf`, `NaN`, otherwise Rust's shortest round-trip form.
fn format_value(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else {
        v.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dns::query::{Qtype, QueryKind, Rcode};
    use crate::http::fixture;
    use std::collections::{BTreeMap, HashSet};

    type Labels = BTreeMap<String, String>;

    fn valid_name(s: &str) -> bool {
        let mut chars = s.chars();
        chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
    }

    /// Parses `name{k="v",...} value`, undoing label escapes.
    fn parse_sample(line: &str) -> (String, Labels, f64) {
        let name_end = line.find(['{', ' ']).expect("sample has a value");
        let name = line[..name_end].to_string();
        let mut labels = Labels::new();
        let mut rest = &line[name_end..];
        if let Some(body) = rest.strip_prefix('{') {
            let mut chars = body.char_indices();
            loop {
                let (start, _) = chars.next().expect("label or }");
                if body[start..].starts_with('}') {
                    rest = &body[start + 1..];
                    break;
                }
                let eq = start + body[start..].find("=\"").expect("label =\"");
                let key = body[start..eq].to_string();
                assert!(valid_name(&key) && !key.starts_with("__"), "label name {key:?}");
                while chars.next().is_some_and(|(i, _)| i < eq + 1) {}
                let mut value = String::new();
                loop {
                    match chars.next().expect("unterminated label value").1 {
                        '\\' => match chars.next().unwrap().1 {
                            'n' => value.push('\n'),
                            c @ ('\\' | '"') => value.push(c),
                            c => panic!("bad escape \\{c} in {line}"),
                        },
                        '"' => break,
                        '\n' => panic!("raw newline in {line}"),
                        c => value.push(c),
                    }
                }
                labels.insert(key, value);
                if chars.clone().next().is_some_and(|(_, c)| c == ',') {
                    chars.next();
                }
            }
        }
        let value = rest.strip_prefix(' ').expect("space before value");
        let value = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v.parse().unwrap_or_else(|_| panic!("value {v:?} in {line}")),
        };
        (name, labels, value)
    }

    /// Checks the format rules and returns every sample.
    fn parse(text: &str) -> Vec<(String, Labels, f64)> {
        let (mut help, mut typed, mut seen) = (None::<String>, None::<String>, HashSet::new());
        let mut samples = Vec::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# HELP ") {
                let name = rest.split(' ').next().unwrap();
                assert!(seen.insert(name.to_string()), "family {name} declared twice");
                help = Some(name.to_string());
            } else if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').unwrap();
                assert_eq!(help.as_deref(), Some(name), "TYPE right after HELP");
                assert!(["gauge", "counter"].contains(&kind), "{line}");
                assert!(kind != "counter" || name.ends_with("_total"), "counter {name} ends in _total");
                typed = Some(name.to_string());
            } else {
                let (name, labels, value) = parse_sample(line);
                assert!(valid_name(&name) && name.starts_with("lagdns_"), "name {name}");
                assert_eq!(typed.as_deref(), Some(name.as_str()), "sample {line} under its own HELP/TYPE");
                samples.push((name, labels, value));
            }
        }
        let keys: HashSet<_> = samples.iter().map(|(n, l, _)| (n.clone(), l.clone())).collect();
        assert_eq!(keys.len(), samples.len(), "duplicate series");
        samples
    }

    fn value(samples: &[(String, Labels, f64)], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let want: Labels = labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        samples.iter().find(|(n, l, _)| n == name && *l == want).map(|s| s.2)
    }

    #[test]
    fn fixture_renders_well_formed_text_with_the_snapshot_values() {
        let stats = QueryStats::default();
        stats.record(QueryKind::Read, Qtype::A, Rcode::NoError);
        stats.record(QueryKind::Read, Qtype::A, Rcode::NoError);
        stats.record(QueryKind::OutOfZone, Qtype::Txt, Rcode::Refused);
        stats.record(QueryKind::Srv, Qtype::Srv, Rcode::NoError);
        stats.record(QueryKind::Node, Qtype::Aaaa, Rcode::NoError);
        stats.record(QueryKind::Empty, Qtype::A, Rcode::NoError);
        stats.edge.agent(Some(crate::check::AgentReply::Up { percent: 50 }));
        stats.edge.agent(Some(crate::check::AgentReply::Up { percent: 100 }));
        stats.edge.agent(None);
        stats.nearness(crate::dns::query::Nearness::Local);
        stats.nearness(crate::dns::query::Nearness::Local);
        stats.nearness(crate::dns::query::Nearness::Remote);
        let s = parse(&render(&fixture::snapshot(), &stats, &Reloads::new(UNIX_EPOCH)));
        let agent = |reply| value(&s, AGENT_CHECKS, &[("reply", reply)]);
        assert_eq!(
            [agent("up"), agent("drain"), agent("down"), agent("none")],
            [Some(2.0), Some(0.0), Some(0.0), Some(1.0)]
        );
        let node = |n: &'static str| [("cluster", "main"), ("node", n)];
        assert_eq!(value(&s, READY, &[]), Some(1.0));
        assert_eq!(value(&s, SOA_SERIAL, &[]), Some(7.0));
        assert_eq!(value(&s, ANSWER_CHANGES, &[]), Some(3.0));
        assert_eq!(value(&s, NODE_LAG_SECONDS, &node("pg3")), Some(2.5));
        assert_eq!(value(&s, NODE_LAG_SECONDS, &node("pg1")), None, "no lag on the primary");
        assert_eq!(value(&s, NODE_LAG_BYTES, &node("pg3")), Some(4096.0));
        assert_eq!(value(&s, NODE_UP, &node("pg4")), Some(0.0));
        assert_eq!(value(&s, NODE_UP, &node("pg2")), Some(1.0));
        assert_eq!(value(&s, NODE_STATE, &[("cluster", "main"), ("node", "pg4"), ("state", "down")]), Some(1.0));
        assert_eq!(value(&s, NODE_STATE, &[("cluster", "main"), ("node", "pg4"), ("state", "up")]), Some(0.0));
        assert_eq!(value(&s, NODE_IS_PRIMARY, &node("pg1")), Some(1.0));
        assert_eq!(value(&s, NODE_REPLAY_PAUSED, &node("pg3")), Some(1.0));
        assert_eq!(value(&s, PROBE_ERRORS, &node("pg4")), Some(5.0));
        assert_eq!(value(&s, PROBES, &node("pg3")), Some(42.0));
        assert_eq!(value(&s, PROBE_LAST_DURATION, &node("pg1")), Some(0.0015));
        let elig = |n, e| value(&s, NODE_ELIGIBLE, &[("cluster", "main"), ("node", n), ("endpoint", e)]);
        assert_eq!(
            (elig("pg2", "read"), elig("pg3", "read"), elig("pg3", "analytics")),
            (Some(1.0), Some(0.0), Some(1.0))
        );
        assert_eq!(value(&s, ENDPOINT_ELIGIBLE_NODES, &[("cluster", "main"), ("endpoint", "read")]), Some(1.0));
        let main = [("cluster", "main")];
        assert_eq!(value(&s, SPLIT_BRAIN_EVENTS, &main), Some(1.0));
        assert_eq!(value(&s, SPLIT_BRAIN, &main), Some(0.0));
        assert_eq!(value(&s, WRITE_STALE, &main), Some(0.0));
        assert_eq!(value(&s, PRIMARY_LSN, &main), Some(12288.0));
        let q = |k, t, r| value(&s, QUERIES, &[("kind", k), ("qtype", t), ("rcode", r)]);
        assert_eq!(q("read", "A", "NOERROR"), Some(2.0));
        assert_eq!(q("out_of_zone", "TXT", "REFUSED"), Some(1.0));
        assert_eq!(q("srv", "SRV", "NOERROR"), Some(1.0));
        assert_eq!(q("node", "AAAA", "NOERROR"), Some(1.0));
        assert_eq!(q("empty", "A", "NOERROR"), Some(1.0));
        assert_eq!(q("write", "A", "NOERROR"), None);
        let near = |l| value(&s, READ_ANSWERS, &[("locality", l)]);
        assert_eq!((near("local"), near("remote"), near("unknown")), (Some(2.0), Some(1.0), Some(0.0)));
    }

    #[test]
    fn write_conflict_and_stale_are_flagged() {
        use crate::topology::{Conflict, ConflictKind};
        let mut snap = fixture::snapshot();
        snap.clusters.push(snap.clusters[0].clone());
        snap.cluster_mut(0).write =
            WriteTarget::Conflict(Conflict { nodes: vec![0, 1], why: ConflictKind::SameTimeline });
        snap.cluster_mut(1).name = "other".into();
        snap.cluster_mut(1).write = WriteTarget::Stale { node: 0, since: snap.built };
        let s = parse(&render(&snap, &QueryStats::default(), &Reloads::new(UNIX_EPOCH)));
        let (a, b) = ([("cluster", "main")], [("cluster", "other")]);
        assert_eq!((value(&s, SPLIT_BRAIN, &a), value(&s, SPLIT_BRAIN, &b)), (Some(1.0), Some(0.0)));
        assert_eq!((value(&s, WRITE_STALE, &a), value(&s, WRITE_STALE, &b)), (Some(0.0), Some(1.0)));
        assert_eq!((value(&s, WRITE_KNOWN, &a), value(&s, WRITE_KNOWN, &b)), (Some(0.0), Some(1.0)));
    }

    #[test]
    fn label_values_are_escaped_and_round_trip() {
        let mut snap = fixture::snapshot();
        let odd = "we\"ird\\name\nx";
        snap.cluster_mut(0).name = odd.into();
        let text = render(&snap, &QueryStats::default(), &Reloads::new(UNIX_EPOCH));
        assert!(text.contains(r#"cluster="we\"ird\\name\nx""#), "{text}");
        let s = parse(&text);
        assert_eq!(value(&s, NODE_LAG_BYTES, &[("cluster", odd), ("node", "pg3")]), Some(4096.0));
    }

    #[test]
    fn empty_stats_still_declare_every_family() {
        let text = render(&fixture::snapshot(), &QueryStats::default(), &Reloads::new(UNIX_EPOCH));
        for name in [QUERIES, READY, NODE_LAG_SECONDS, PROBE_DURATION, SPLIT_BRAIN_EVENTS, NODE_ELIGIBLE] {
            assert!(text.contains(&format!("# TYPE {name} ")), "{name} missing");
        }
    }

    #[test]
    fn special_values_use_prometheus_spelling() {
        assert_eq!(format_value(f64::INFINITY), "+Inf");
        assert_eq!(format_value(f64::NEG_INFINITY), "-Inf");
        assert_eq!(format_value(f64::NAN), "NaN");
        assert_eq!(format_value(0.25), "0.25");
        assert_eq!(format_value(3.0), "3");
    }
}
