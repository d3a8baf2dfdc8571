//! The `/status` JSON document: a plain rendering of one [`Snapshot`], and the type
//! `lagdns status` parses back. It never recomputes a decision (eligibility, reasons,
//! the write target) and never carries a DSN or a password.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::config::{Answers, Policy};
use crate::locality::Locations;
use crate::snapshot::{ClusterView, EndpointView, NodeView, Snapshot, WriteTarget};
use crate::topology::Eligibility;

/// The whole `/status` document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusDoc {
    /// SOA serial of the snapshot.
    pub serial: u32,
    /// False until the first full probe round has finished.
    pub ready: bool,
    /// When the snapshot was built, RFC 3339 UTC.
    pub built: String,
    /// How many times an answer set changed since start.
    pub answer_changes: u64,
    pub zone: String,
    /// `[locality]`, when configured (SPEC §8).
    #[serde(default)]
    pub locality: Option<LocalityDoc>,
    pub clusters: Vec<ClusterDoc>,
}

/// How clients are placed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LocalityDoc {
    /// Whether the ECS option places clients.
    pub ecs: bool,
    /// The location of clients no network matches.
    pub default: Option<String>,
    /// How many `[[locality.network]]` prefixes there are.
    pub networks: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClusterDoc {
    pub name: String,
    /// Label of the write name (`write` → `write.<zone>`).
    pub write: String,
    /// The node `write` answers (fresh or stale), if any.
    pub primary: Option<String>,
    pub write_state: WriteState,
    /// While `write_state` is `stale`: since when no primary is reachable (RFC 3339).
    pub stale_since: Option<String>,
    /// While `write_state` is `stale`: for how long, at snapshot time.
    pub stale_for_ms: Option<u64>,
    /// While `write_state` is `split_brain`: who claims to be primary, and why the
    /// election could not settle it.
    pub conflict: Option<ConflictDoc>,
    /// Nodes also out of recovery that lost the election to a strictly newer timeline
    /// (e.g. an old primary back unfenced); `write` keeps the winner.
    #[serde(default)]
    pub rivals: Vec<String>,
    pub split_brain_events: u64,
    /// Newest WAL position seen on the primary, `X/Y`.
    pub primary_lsn: Option<String>,
    pub endpoints: Vec<EndpointDoc>,
    pub nodes: Vec<NodeDoc>,
    /// Patroni discovery, for a cluster with `patroni` (SPEC §11).
    #[serde(default)]
    pub discovery: Option<DiscoveryDoc>,
}

/// How a cluster's Patroni discovery goes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DiscoveryDoc {
    /// Consecutive rounds in which no Patroni member answered (the last list is kept).
    pub failed_rounds: u32,
    /// Such rounds since start.
    pub failures: u64,
    pub last_error: Option<String>,
    /// When a member last answered (RFC 3339).
    pub last_listed: Option<String>,
    /// Listed members that are not nodes, with why.
    pub left_out: Vec<LeftOutDoc>,
    /// Host names whose last resolution failed (their last addresses are kept).
    #[serde(default)]
    pub unresolved: Vec<LeftOutDoc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LeftOutDoc {
    pub name: String,
    pub reason: String,
}

/// What Patroni says of a discovered node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PatroniDoc {
    pub role: String,
    pub state: String,
    /// Bytes, `"unknown"`, or null (the leader).
    pub lag: Option<String>,
    pub timeline: Option<u64>,
}

/// What `write.<zone>` answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WriteState {
    /// The primary is up.
    Primary,
    /// No primary reachable: the last known one is answered (fail open).
    Stale,
    /// No primary ever seen: SERVFAIL.
    Unknown,
    /// Several primaries, election unsettled: SERVFAIL.
    SplitBrain,
}

impl WriteState {
    pub fn as_str(self) -> &'static str {
        match self {
            WriteState::Primary => "primary",
            WriteState::Stale => "stale",
            WriteState::Unknown => "unknown",
            WriteState::SplitBrain => "split_brain",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConflictDoc {
    /// Names of the nodes claiming to be primary.
    pub nodes: Vec<String>,
    /// `ConflictKind` display text, e.g. `no strictly newer timeline`.
    pub reason: String,
}

/// A read endpoint and its policy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EndpointDoc {
    /// `read`, `analytics`, ...
    pub label: String,
    pub max_lag_ms: u64,
    pub max_lag_bytes: Option<u64>,
    /// A count, or `"all"`.
    pub answers: AnswersDoc,
    /// `primary`, `none` or `open`.
    pub fallback: String,
    /// `prefer`, `only` or `ignore`.
    #[serde(default = "default_locality")]
    pub locality: String,
    /// Names of the nodes eligible right now.
    pub eligible: Vec<String>,
}

/// `answers` as written in the config: a number or `"all"`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum AnswersDoc {
    Count(u32),
    Word(String),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeDoc {
    pub name: String,
    pub address: String,
    /// The port applications use at `address` (SRV); 5432 from a server without it.
    #[serde(default = "default_port")]
    pub port: u16,
    /// Where the node is (SPEC §8), if configured.
    #[serde(default)]
    pub location: Option<String>,
    /// Patroni's own view, for a node discovered from Patroni (SPEC §11).
    #[serde(default)]
    pub patroni: Option<PatroniDoc>,
    /// `primary`, `replica` or `unknown`.
    pub role: String,
    /// `up`, `down` or `unknown`.
    pub state: String,
    pub lag_ms: Option<u64>,
    pub lag_bytes: Option<u64>,
    pub replay_lsn: Option<String>,
    pub current_lsn: Option<String>,
    pub timeline: Option<u32>,
    pub weight: u32,
    pub replay_paused: bool,
    /// Eligibility for the cluster's `read` endpoint (same as `endpoints[0]`).
    pub eligible: bool,
    /// Why not eligible for `read` (`Reason` display text); null when eligible.
    pub reason: Option<String>,
    /// When the last probe finished (RFC 3339).
    pub last_probe: Option<String>,
    /// How long the last probe took.
    pub last_probe_ms: Option<f64>,
    /// The last probe failure, if the last probe failed (passwords redacted upstream).
    pub last_error: Option<String>,
    /// One verdict per read endpoint, in the order of `ClusterDoc::endpoints`.
    pub endpoints: Vec<VerdictDoc>,
}

/// A node's verdict for one read endpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VerdictDoc {
    pub endpoint: String,
    pub eligible: bool,
    /// `Reason` display text; null when eligible.
    pub reason: Option<String>,
}

impl StatusDoc {
    /// Renders a snapshot; pure.
    pub fn from_snapshot(snap: &Snapshot) -> StatusDoc {
        StatusDoc {
            serial: snap.serial,
            ready: snap.ready,
            built: rfc3339(snap.built),
            answer_changes: snap.answer_changes,
            zone: snap.config.dns.zone.clone(),
            locality: snap.config.locality.as_ref().map(|l| LocalityDoc {
                ecs: l.ecs,
                default: l.default.map(|d| snap.config.locations.name(d).to_owned()),
                networks: l.networks.len(),
            }),
            clusters: snap
                .clusters
                .iter()
                .enumerate()
                .map(|(i, c)| cluster_doc(c, write_label(snap, i), snap.built, &snap.config.locations))
                .collect(),
        }
    }
}

fn write_label(snap: &Snapshot, cluster: usize) -> String {
    snap.config.clusters.get(cluster).map(|c| c.write.clone()).unwrap_or_default()
}

fn cluster_doc(c: &ClusterView, write: String, built: SystemTime, locations: &Locations) -> ClusterDoc {
    let name_of = |i: usize| c.nodes.get(i).map(|n| n.name.clone()).unwrap_or_default();
    let (write_state, stale_since, conflict) = match &c.write {
        WriteTarget::Unknown => (WriteState::Unknown, None, None),
        WriteTarget::Primary(_) => (WriteState::Primary, None, None),
        WriteTarget::Stale { since, .. } => (WriteState::Stale, Some(*since), None),
        WriteTarget::Conflict(k) => {
            let doc = ConflictDoc { nodes: k.nodes.iter().map(|&i| name_of(i)).collect(), reason: k.why.to_string() };
            (WriteState::SplitBrain, None, Some(doc))
        }
    };
    ClusterDoc {
        name: c.name.clone(),
        write,
        primary: c.write.node().map(name_of),
        write_state,
        stale_since: stale_since.map(rfc3339),
        stale_for_ms: stale_since.map(|s| millis(built.duration_since(s).unwrap_or_default())),
        conflict,
        rivals: c.rivals.iter().map(|&i| name_of(i)).collect(),
        split_brain_events: c.split_brain_events,
        primary_lsn: c.primary_lsn.map(|l| l.to_string()),
        endpoints: c.endpoints.iter().map(|e| endpoint_doc(c, e)).collect(),
        nodes: c.nodes.iter().enumerate().map(|(i, n)| node_doc(n, i, &c.endpoints, locations)).collect(),
        discovery: c.discovery.as_ref().map(|d| DiscoveryDoc {
            failed_rounds: d.failed_rounds,
            failures: d.failures,
            last_error: d.last_error.clone(),
            last_listed: d.last_listed.map(rfc3339),
            left_out: d.left_out.iter().map(left_out_doc).collect(),
            unresolved: d.unresolved.iter().map(left_out_doc).collect(),
        }),
    }
}

fn endpoint_doc(c: &ClusterView, e: &EndpointView) -> EndpointDoc {
    let Policy { max_lag, max_lag_bytes, answers, fallback, locality } = e.policy;
    EndpointDoc {
        label: e.label.clone(),
        max_lag_ms: millis(max_lag),
        max_lag_bytes,
        answers: match answers {
            Answers::Count(n) => AnswersDoc::Count(n),
            Answers::All => AnswersDoc::Word("all".into()),
        },
        fallback: fallback.as_str().into(),
        locality: locality.as_str().into(),
        eligible: e.eligible.iter().filter_map(|&i| c.nodes.get(i)).map(|n| n.name.clone()).collect(),
    }
}

fn node_doc(n: &NodeView, index: usize, endpoints: &[EndpointView], locations: &Locations) -> NodeDoc {
    let verdicts: Vec<VerdictDoc> = endpoints.iter().map(|e| verdict_doc(e, index)).collect();
    let (eligible, reason) = verdicts.first().map(|v| (v.eligible, v.reason.clone())).unwrap_or((false, None));
    NodeDoc {
        name: n.name.clone(),
        address: n.address_text(),
        port: n.port,
        location: n.location.map(|l| locations.name(l).to_owned()),
        patroni: n.patroni.as_ref().map(|p| PatroniDoc {
            role: p.role.to_string(),
            state: p.state.to_string(),
            lag: p.lag.map(|l| l.to_string()),
            timeline: p.timeline,
        }),
        role: n.role.to_string(),
        state: n.state.to_string(),
        lag_ms: n.lag.map(millis),
        lag_bytes: n.lag_bytes,
        replay_lsn: n.replay_lsn.map(|l| l.to_string()),
        current_lsn: n.current_lsn.map(|l| l.to_string()),
        timeline: n.timeline.map(|t| t.0),
        weight: n.weight,
        replay_paused: n.replay_paused,
        eligible,
        reason,
        last_probe: n.last_probe.map(rfc3339),
        last_probe_ms: n.last_probe_duration.map(|d| d.as_secs_f64() * 1000.0),
        last_error: n.last_error.clone(),
        endpoints: verdicts,
    }
}

fn verdict_doc(e: &EndpointView, node: usize) -> VerdictDoc {
    let verdict = e.verdicts.get(node).copied();
    VerdictDoc {
        endpoint: e.label.clone(),
        eligible: verdict.is_some_and(Eligibility::is_eligible),
        reason: match verdict {
            Some(Eligibility::Ineligible(r)) => Some(r.to_string()),
            Some(Eligibility::Eligible) => None,
            None => Some("no verdict".into()),
        },
    }
}

fn left_out_doc((name, reason): &(String, String)) -> LeftOutDoc {
    LeftOutDoc { name: name.clone(), reason: reason.clone() }
}

fn default_locality() -> String {
    crate::config::LocalityPolicy::Prefer.as_str().into()
}

fn default_port() -> u16 {
    crate::config::DEFAULT_PG_PORT
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// `2024-05-01T12:00:00.123Z`; times before 1970 print as the epoch.
pub fn rfc3339(t: SystemTime) -> String {
    let since = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    let (hh, mm, ss) = (rem / 3600, rem % 3600 / 60, rem % 60);
    format!("{y:04}-{m:02}-{d:02}T{hh:02}:{mm:02}:{ss:02}.{:03}Z", since.subsec_millis())
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian (H. Hinnant).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_known_instants() {
        let at = |s: u64, ms: u64| UNIX_EPOCH + Duration::from_secs(s) + Duration::from_millis(ms);
        for (t, want) in [
            (at(0, 0), "1970-01-01T00:00:00.000Z"),
            (at(951_782_400, 5), "2000-02-29T00:00:00.005Z"),
            (at(1_714_564_800, 123), "2024-05-01T12:00:00.123Z"),
            (at(4_102_444_799, 999), "2099-12-31T23:59:59.999Z"),
        ] {
            assert_eq!(rfc3339(t), want);
        }
    }

    #[test]
    fn renders_the_fixture_without_recomputing() {
        let snap = crate::http::fixture::snapshot();
        let doc = StatusDoc::from_snapshot(&snap);
        assert_eq!((doc.serial, doc.ready, doc.answer_changes), (7, true, 3));
        assert_eq!(doc.built, "2024-05-01T12:00:00.000Z");
        let c = &doc.clusters[0];
        assert_eq!(
            (c.write.as_str(), c.primary.as_deref(), c.write_state),
            ("write", Some("pg1"), WriteState::Primary)
        );
        assert_eq!((c.primary_lsn.as_deref(), c.split_brain_events, c.conflict.is_none()), (Some("0/3000"), 1, true));
        assert_eq!(c.endpoints[0].eligible, ["pg2"]);
        assert_eq!(c.endpoints[1].answers, AnswersDoc::Count(1));
        assert_eq!((c.endpoints[1].max_lag_ms, c.endpoints[1].fallback.as_str()), (300_000, "none"));
        let by_name = |n: &str| c.nodes.iter().find(|x| x.name == n).unwrap();
        let pg3 = by_name("pg3");
        let view = &snap.clusters[0];
        assert_eq!(
            pg3.reason,
            Some(format!(
                "{}",
                match view.endpoints[0].verdicts[2] {
                    Eligibility::Ineligible(r) => r,
                    Eligibility::Eligible => panic!("fixture pg3 lags"),
                }
            ))
        );
        assert_eq!((pg3.lag_ms, pg3.lag_bytes, pg3.replay_paused), (Some(2500), Some(4096), true));
        assert_eq!(pg3.endpoints[1], VerdictDoc { endpoint: "analytics".into(), eligible: true, reason: None });
        let pg4 = by_name("pg4");
        assert_eq!((pg4.state.as_str(), pg4.eligible, pg4.reason.as_deref()), ("down", false, Some("down")));
        assert_eq!(pg4.last_error.as_deref(), Some("connect: connection refused"));
        assert_eq!(by_name("pg1").last_probe_ms, Some(1.5));
        assert!(by_name("pg2").eligible && by_name("pg2").reason.is_none());
    }

    #[test]
    fn round_trips_through_json_and_never_carries_a_dsn() {
        let doc = StatusDoc::from_snapshot(&crate::http::fixture::snapshot());
        let text = serde_json::to_string(&doc).unwrap();
        assert!(!text.contains("hunter2") && !text.contains("host=") && !text.contains("dsn"), "{text}");
        assert_eq!(serde_json::from_str::<StatusDoc>(&text).unwrap(), doc);
    }

    #[test]
    fn nodes_carry_their_port_and_an_older_document_reads_as_5432() {
        let mut snap = crate::http::fixture::snapshot();
        snap.cluster_mut(0).nodes[1].port = 6432;
        let doc = StatusDoc::from_snapshot(&snap);
        let ports: Vec<u16> = doc.clusters[0].nodes.iter().map(|n| n.port).collect();
        assert_eq!(ports[..2], [5432, 6432]);
        let text = serde_json::to_string(&doc).unwrap();
        assert!(text.contains(r#""address":"10.0.0.12","port":6432,"#), "{text}");
        let older = text.replace(r#","port":6432"#, "");
        let back: StatusDoc = serde_json::from_str(&older).unwrap();
        assert_eq!(back.clusters[0].nodes[1].port, 5432);
    }

    #[test]
    fn stale_and_split_brain_states() {
        use crate::topology::{Conflict, ConflictKind};
        let mut snap = crate::http::fixture::snapshot();
        let since = snap.built - Duration::from_secs(3);
        snap.cluster_mut(0).write = WriteTarget::Stale { node: 0, since };
        let c = StatusDoc::from_snapshot(&snap).clusters.remove(0);
        assert_eq!((c.write_state, c.primary.as_deref(), c.stale_for_ms), (WriteState::Stale, Some("pg1"), Some(3000)));
        assert_eq!(c.stale_since.as_deref(), Some("2024-05-01T11:59:57.000Z"));
        snap.cluster_mut(0).write =
            WriteTarget::Conflict(Conflict { nodes: vec![0, 2], why: ConflictKind::SystemIdMismatch });
        let c = StatusDoc::from_snapshot(&snap).clusters.remove(0);
        assert_eq!((c.write_state, c.primary), (WriteState::SplitBrain, None));
        let want = ConflictDoc { nodes: vec!["pg1".into(), "pg3".into()], reason: "system identifiers differ".into() };
        assert_eq!(c.conflict, Some(want));
    }

    #[test]
    fn write_state_serializes_snake_case() {
        assert_eq!(serde_json::to_string(&WriteState::SplitBrain).unwrap(), "\"split_brain\"");
        for s in [WriteState::Primary, WriteState::Stale, WriteState::Unknown, WriteState::SplitBrain] {
            assert_eq!(serde_json::to_string(&s).unwrap(), format!("\"{}\"", s.as_str()));
        }
    }
}
