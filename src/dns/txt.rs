//! The TXT text of a name: one line per node (name, address, role, state, lag,
//! lag_bytes, weight and the verdict), rendered from the snapshot's node views and the
//! eligibility decided in `topology`. The wording is part of the contract (SPEC §5).
//! When any node of the cluster has a `port` other than 5432, every line of the cluster
//! shows `port=<port>` after the address, and when any has a `location`, every line
//! shows `location=<label>` (`-` for none) after that (SPEC §8), so a config without
//! either keeps its lines. A node discovered from Patroni also shows Patroni's own role
//! and lag after its weight: `patroni=replica patroni_lag=0` (SPEC §11).

use std::fmt;
use std::time::SystemTime;

use crate::config::{format_duration, DEFAULT_PG_PORT};
use crate::locality::{Locations, Placement};
use crate::snapshot::{ClusterView, NodeView, WriteTarget};
use crate::topology::Eligibility;

/// One node's line in TXT answers: name, address, role, state,
/// lag, lag_bytes, weight and the verdict.
struct NodeLine<'a> {
    node: &'a NodeView,
    show_port: bool,
    /// The location names, when the cluster's lines carry `location=`.
    locations: Option<&'a Locations>,
    verdict: Verdict<'a>,
}

/// The last field of a [`NodeLine`]: for a read endpoint the node's eligibility, for
/// the write name whether `write` answers it.
enum Verdict<'a> {
    Read(Eligibility),
    Write { target: &'a WriteTarget, rivals: &'a [usize], me: usize, now: SystemTime },
}

impl fmt::Display for NodeLine<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.node;
        let lag = n.lag.map(format_duration).unwrap_or_else(|| "-".into());
        let bytes = n.lag_bytes.map(|b| b.to_string()).unwrap_or_else(|| "-".into());
        write!(f, "{} {} ", n.name, n.address_text())?;
        if self.show_port {
            write!(f, "port={} ", n.port)?;
        }
        if let Some(names) = self.locations {
            write!(f, "location={} ", n.location.map_or("-", |l| names.name(l)))?;
        }
        write!(f, "role={} state={} lag={} lag_bytes={} weight={} ", n.role, n.state, lag, bytes, n.weight)?;
        if let Some(p) = &n.patroni {
            // Patroni's own view of a discovered node, beside lagdns's (SPEC §11)
            let role = p.role.to_string();
            let lag = p.lag.map_or("-".to_string(), |l| l.to_string());
            write!(f, "patroni={} patroni_lag={lag} ", if role.is_empty() { "-" } else { &role })?;
        }
        match &self.verdict {
            Verdict::Read(e) => write!(f, "{e}"),
            Verdict::Write { target, rivals, me, now } => write_verdict(f, target, rivals, *me, *now),
        }
    }
}

fn write_verdict(
    f: &mut fmt::Formatter<'_>,
    target: &WriteTarget,
    rivals: &[usize],
    me: usize,
    now: SystemTime,
) -> fmt::Result {
    match target {
        WriteTarget::Primary(i) if *i == me => f.write_str("write: answered"),
        WriteTarget::Stale { node, since } if *node == me => {
            let ago = now.duration_since(*since).unwrap_or_default();
            write!(f, "write: answered, stale (no primary reachable for {})", format_duration(ago))
        }
        WriteTarget::Conflict(c) if c.nodes.contains(&me) => {
            write!(f, "write: SERVFAIL, split brain ({})", c.why)
        }
        _ if rivals.contains(&me) => f.write_str("write: not answered, split brain (older timeline)"),
        _ => f.write_str("write: not answered"),
    }
}

/// TXT strings for the write name: one per node (`now` dates a stale primary).
pub fn write_lines(cluster: &ClusterView, now: SystemTime, locations: &Locations) -> Vec<String> {
    let show_port = shows_ports(cluster);
    let locations = shows_locations(cluster).then_some(locations);
    (0..cluster.nodes.len())
        .map(|i| {
            let verdict = Verdict::Write { target: &cluster.write, rivals: &cluster.rivals, me: i, now };
            NodeLine { node: &cluster.nodes[i], show_port, locations, verdict }.to_string()
        })
        .collect()
}

/// TXT strings for read endpoint `ep`: one per node.
pub fn endpoint_lines(cluster: &ClusterView, ep: usize, locations: &Locations) -> Vec<String> {
    let view = &cluster.endpoints[ep];
    let show_port = shows_ports(cluster);
    let locations = shows_locations(cluster).then_some(locations);
    cluster
        .nodes
        .iter()
        .zip(&view.verdicts)
        .map(|(node, v)| NodeLine { node, show_port, locations, verdict: Verdict::Read(*v) }.to_string())
        .collect()
}

/// One node's line of the write name's TXT (HTTP `/check` bodies).
pub fn write_line(cluster: &ClusterView, node: usize, now: SystemTime, locations: &Locations) -> String {
    let verdict = Verdict::Write { target: &cluster.write, rivals: &cluster.rivals, me: node, now };
    let locations = shows_locations(cluster).then_some(locations);
    NodeLine { node: &cluster.nodes[node], show_port: shows_ports(cluster), locations, verdict }.to_string()
}

/// One node's line of a read name's TXT with `verdict` as its eligibility: its
/// endpoint's own, or one judged under a check's `max_lag` (HTTP `/check` bodies).
pub fn read_line(cluster: &ClusterView, node: usize, verdict: Eligibility, locations: &Locations) -> String {
    let (show_port, locations) = (shows_ports(cluster), shows_locations(cluster).then_some(locations));
    NodeLine { node: &cluster.nodes[node], show_port, locations, verdict: Verdict::Read(verdict) }.to_string()
}

/// The string before the node lines of an endpoint's TXT when `[locality]` exists:
/// where lagdns placed the asker (SPEC §8).
pub fn client_line(p: &Placement, locations: &Locations) -> String {
    let location = p.location.map_or("unknown", |l| locations.name(l));
    format!("client {} location={location} via {}", p.client, p.via.as_str())
}

/// Whether the cluster's lines carry `location=`: when any node of it has a location.
fn shows_locations(cluster: &ClusterView) -> bool {
    cluster.nodes.iter().any(|n| n.location.is_some())
}

/// Whether the cluster's lines carry `port=`: when any node has a non-default port.
fn shows_ports(cluster: &ClusterView) -> bool {
    cluster.nodes.iter().any(|n| n.port != DEFAULT_PG_PORT)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dns::testdata::snapshot;

    #[test]
    fn lines_show_ports_only_when_a_node_of_the_cluster_has_its_own() {
        let mut snap = snapshot();
        // main: pg3 has port 6432, so every line of main says its port
        let main = endpoint_lines(&snap.clusters[0], 0, &snap.config.locations);
        assert!(main[0].starts_with("pg1 10.0.0.11 port=5432 role=primary state=up "), "{}", main[0]);
        assert!(main[2].starts_with("pg3 10.0.0.13 port=6432 role=replica "), "{}", main[2]);
        assert!(write_lines(&snap.clusters[0], snap.built, &snap.config.locations)[2]
            .starts_with("pg3 10.0.0.13 port=6432 "));
        // billing: every node on 5432, the lines as they were before `port`
        let billing = write_lines(&snap.clusters[1], snap.built, &snap.config.locations);
        assert!(billing[0].starts_with("b1 10.1.0.1 role=primary state=up "), "{}", billing[0]);
        snap.cluster_mut(0).nodes[2].port = DEFAULT_PG_PORT;
        assert!(
            endpoint_lines(&snap.clusters[0], 0, &snap.config.locations)[2].starts_with("pg3 10.0.0.13 role=replica ")
        );
    }

    #[test]
    fn one_node_lines_are_the_lines_of_the_name() {
        let mut snap = snapshot();
        let mut locations = Locations::default();
        let zone = locations.intern("eu-west-1a").unwrap();
        // without a location, then with one on a node of main (every line of main shows it)
        for located in [None, Some(zone)] {
            snap.cluster_mut(0).nodes[1].location = located;
            for c in &snap.clusters {
                let write = write_lines(c, snap.built, &locations);
                for (ep, view) in c.endpoints.iter().enumerate() {
                    let read = endpoint_lines(c, ep, &locations);
                    for (i, verdict) in view.verdicts.iter().enumerate() {
                        assert_eq!(read_line(c, i, *verdict, &locations), read[i]);
                        assert_eq!(write_line(c, i, snap.built, &locations), write[i]);
                    }
                }
            }
        }
        assert!(read_line(&snap.clusters[0], 0, Eligibility::Eligible, &locations).contains(" location=- "));
    }
}
