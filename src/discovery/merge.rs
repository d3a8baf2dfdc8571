//! The config the probes and the answers follow: the loaded config plus, for each
//! cluster with `patroni`, the members discovered so far (SPEC §11). Pure.
//!
//! A discovered member becomes a node after the static `[[cluster.node]]` tables; a
//! static node wins a name clash (names compared case-insensitively). It joins every
//! endpoint whose node list was not written out, and the ones that list its name. A
//! member whose node name would not fit a DNS name is left out.
//!
//! Host names (a static node's `address`, a member's `host`) get the addresses they
//! last resolved to (none before the first success: such a node is probed but answers
//! nothing).

use std::collections::HashMap;
use std::net::IpAddr;

use crate::config::{Config, NodeConfig};
use crate::patroni::DiscoveredNode;

/// The longest domain name, in characters without the trailing dot.
const MAX_NAME_LEN: usize = 253;

/// Why a discovered member is not a node of the effective config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Left {
    /// A static node has its name.
    StaticClash,
    /// `<member>.<cluster>.<zone>` would be longer than a DNS name.
    NameTooLong,
}

/// `base` with the discovered members of each cluster (by cluster name) added as nodes,
/// and the members left out, with why.
pub fn effective(
    base: &Config,
    found: &HashMap<String, Vec<DiscoveredNode>>,
    resolved: &HashMap<String, Vec<IpAddr>>,
) -> (Config, Vec<(String, String, Left)>) {
    let mut config = base.clone();
    let mut left = Vec::new();
    let zone = config.dns.zone.clone();
    for cluster in config.clusters.iter_mut().filter(|c| c.patroni.is_some()) {
        let Some(members) = found.get(&cluster.name) else { continue };
        for m in members {
            let why = if cluster.nodes.iter().any(|n| n.name.eq_ignore_ascii_case(&m.name)) {
                Some(Left::StaticClash)
            } else if m.name.len() + cluster.name.len() + zone.len() + 2 > MAX_NAME_LEN {
                Some(Left::NameTooLong)
            } else {
                None
            };
            if let Some(why) = why {
                left.push((cluster.name.clone(), m.name.clone(), why));
                continue;
            }
            let (addresses, host) = match m.host.parse::<IpAddr>() {
                Ok(ip) => (vec![ip], None),
                Err(_) => (Vec::new(), Some(m.host.to_ascii_lowercase())),
            };
            cluster.nodes.push(NodeConfig {
                name: m.name.clone(),
                addresses,
                host,
                port: m.port,
                dsn: m.dsn.clone(),
                weight: m.weight,
                password_file: None,
                location: None,
            });
            for ep in cluster.endpoints.iter_mut().filter(|e| !e.listed) {
                ep.nodes.push(m.name.clone());
            }
        }
    }
    for node in config.clusters.iter_mut().flat_map(|c| c.nodes.iter_mut()) {
        if let Some(ips) = node.host.as_ref().and_then(|h| resolved.get(h)) {
            node.addresses = ips.clone();
        }
    }
    (config, left)
}

/// Every host name the config's nodes are written with.
pub fn host_names(config: &Config) -> Vec<String> {
    let mut hosts: Vec<String> =
        config.clusters.iter().flat_map(|c| c.nodes.iter()).filter_map(|n| n.host.clone()).collect();
    hosts.sort();
    hosts.dedup();
    hosts
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::patroni::{discover, parse_cluster};

    const CONFIG: &str = r#"
[[cluster]]
name = "main"
patroni = ["http://127.0.0.1:8008"]
[[cluster.node]]
name = "pg2"
address = "10.9.9.9"
dsn = "host=10.9.9.9"
weight = 5
[[cluster.endpoint]]
name = "reports"
nodes = ["pg3"]
"#;

    fn members(fixture: &str) -> Vec<DiscoveredNode> {
        let config = Config::parse(CONFIG, "t.toml").unwrap();
        let source = config.clusters[0].patroni.as_ref().unwrap();
        discover(&parse_cluster(fixture.as_bytes()).unwrap(), &source.node_dsn).nodes
    }

    #[test]
    fn discovered_members_join_after_the_static_nodes_which_win_a_clash() {
        let base = Config::parse(CONFIG, "t.toml").unwrap();
        let found = members(include_str!("../../tests/fixtures/patroni/tags_noloadbalance.json"));
        let names: Vec<&str> = found.iter().map(|n| n.name.as_str()).collect();
        assert_eq!(names, ["pg1", "pg2", "pg3"]);
        let (config, left) = effective(&base, &HashMap::from([("main".to_string(), found.clone())]), &HashMap::new());
        let c = &config.clusters[0];
        let nodes: Vec<(&str, String, u32)> =
            c.nodes.iter().map(|n| (n.name.as_str(), n.address_text(), n.weight)).collect();
        assert_eq!(nodes[0], ("pg2", "10.9.9.9".to_string(), 5), "the static node kept");
        assert_eq!(nodes.iter().map(|n| n.0).collect::<Vec<_>>(), ["pg2", "pg1", "pg3"]);
        assert_eq!(nodes[2].2, 0, "noloadbalance → weight 0");
        assert_eq!(left, [("main".to_string(), "pg2".to_string(), Left::StaticClash)]);
        // read (no list) gets every discovered node; reports keeps its list, which names pg3
        assert_eq!(c.endpoints[0].nodes, ["pg2", "pg1", "pg3"]);
        assert_eq!(c.endpoints[1].nodes, ["pg3"]);
        let pg1 = &found[0];
        assert_eq!(c.nodes[1].dsn, pg1.dsn);
        assert_eq!(c.nodes[1].port, pg1.port);
        // nothing found yet: the loaded config as it is
        assert_eq!(effective(&base, &HashMap::new(), &HashMap::new()).0, base);
    }

    #[test]
    fn host_names_get_what_they_resolved_to_and_overlong_names_are_left_out() {
        let text = CONFIG.replace("address = \"10.9.9.9\"", "address = \"Pooler.Example.Internal\"");
        let base = Config::parse(&text, "t.toml").unwrap();
        assert_eq!(host_names(&base), ["pooler.example.internal"]);
        let mut found = members(include_str!("../../tests/fixtures/patroni/all_running.json"));
        found[0].host = "db-1.example.internal".into();
        found[2].name = "n".repeat(250);
        let found = HashMap::from([("main".to_string(), found)]);
        // nothing resolved yet: the nodes are there, with no address
        let (config, left) = effective(&base, &found, &HashMap::new());
        let nodes = &config.clusters[0].nodes;
        assert_eq!(
            nodes.iter().map(|n| n.address_text()).collect::<Vec<_>>(),
            ["pooler.example.internal=?", "db-1.example.internal=?"]
        );
        let why: Vec<&Left> = left.iter().map(|l| &l.2).collect();
        assert_eq!(why, [&Left::StaticClash, &Left::NameTooLong]);
        let resolved = HashMap::from([
            ("pooler.example.internal".to_string(), vec!["10.1.1.1".parse().unwrap(), "2001:db8::1".parse().unwrap()]),
            ("db-1.example.internal".to_string(), vec!["10.2.2.2".parse().unwrap()]),
        ]);
        let (config, _) = effective(&base, &found, &resolved);
        let nodes = &config.clusters[0].nodes;
        assert_eq!(
            nodes.iter().map(|n| n.address_text()).collect::<Vec<_>>(),
            ["pooler.example.internal=10.1.1.1,2001:db8::1", "db-1.example.internal=10.2.2.2"]
        );
    }
}
