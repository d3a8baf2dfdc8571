//! `lagdns check`: validate a config and print the zone's names (nameservers, write and
//! read names, node names, the SRV names) and the nodes; the error (file, line, key)
//! goes to stderr and the exit code is 1.

use std::fmt::Write as _;
use std::path::Path;

use crate::config::{format_duration, format_size, Answers, Config, Policy};
use crate::dns::name::SRV_PREFIX;

pub fn run(path: &Path) -> anyhow::Result<()> {
    let config = Config::load(path)?;
    print!("{}", describe(&config, &path.display().to_string()));
    Ok(())
}

/// The report `check` prints for a valid config.
pub fn describe(config: &Config, file: &str) -> String {
    let zone = &config.dns.zone;
    let mut out = String::new();
    let _ = writeln!(out, "{file}: ok");
    let _ = writeln!(
        out,
        "zone {zone}: ttl {}, negative ttl {}, DNS on {}, HTTP on {}{}",
        format_duration(config.dns.ttl),
        format_duration(config.dns.negative_ttl),
        config.dns.listen.iter().map(|a| a.to_string()).collect::<Vec<_>>().join(", "),
        config.http.listen,
        config.http.agent_listen.map(|a| format!(", HAProxy agent checks on {a}")).unwrap_or_default(),
    );
    let l = &config.dns.limits;
    let allow = |a: &crate::net::Allow| match a.networks() {
        None => "everyone".to_string(),
        Some(nets) => nets.iter().map(|n| n.to_string()).collect::<Vec<_>>().join(" "),
    };
    let rate = match l.rate {
        0 => "off".to_string(),
        r => format!("{r}/s per /{} or /{}, slip {}", l.rate_prefix_v4, l.rate_prefix_v6, l.slip),
    };
    let _ = writeln!(
        out,
        "edge: DNS from {}, HTTP from {}; TCP {} connections ({} per client), idle {}, lifetime {}; rate limit {rate}",
        allow(&config.dns.allow),
        allow(&config.http.allow),
        l.tcp_connections,
        l.tcp_connections_per_client,
        format_duration(l.tcp_idle),
        format_duration(l.tcp_lifetime),
    );
    if let Some(loc) = &config.locality {
        let default = loc.default.map_or("unknown", |d| config.locations.name(d));
        let ecs = if loc.ecs { "ECS subnet, else source address" } else { "source address (ECS ignored)" };
        let _ = writeln!(out, "locality: clients placed by {ecs} over {} networks, else {default}", loc.networks.len());
    }
    let _ = writeln!(out, "names:");
    for ns in &config.dns.nameservers {
        let _ = writeln!(out, "  {:<32} NS {}", format!("{}.", ns.name), ns.address);
    }
    for c in &config.clusters {
        let _ = writeln!(out, "  {:<32} write: primary of cluster {}", format!("{}.{zone}.", c.write), c.name);
        for ep in &c.endpoints {
            let _ = writeln!(
                out,
                "  {:<32} read: {} of cluster {} ({})",
                format!("{}.{zone}.", ep.label),
                ep.nodes.join(" "),
                c.name,
                policy_text(&ep.policy, config.locality.is_some())
            );
        }
        for n in &c.nodes {
            let name = format!("{}.{}.{zone}.", n.name, c.name).to_ascii_lowercase();
            let _ = writeln!(out, "  {name:<32} node {} of cluster {}", n.name, c.name);
        }
    }
    let _ =
        writeln!(out, "  SRV {SRV_PREFIX}<name>.{zone}. for each write and read name above (maxlag-/lsn- forms too)");
    let _ = writeln!(out, "nodes:");
    for c in &config.clusters {
        for n in &c.nodes {
            let _ = writeln!(
                out,
                "  {:<20} {:<24} port {:<5} weight {:<4} {}probe {}",
                format!("{}/{}", c.name, n.name),
                n.address_text(),
                n.port,
                n.weight,
                n.location.map(|l| format!("location {}  ", config.locations.name(l))).unwrap_or_default(),
                n.dsn
            );
        }
    }
    out
}

fn policy_text(p: &Policy, locality: bool) -> String {
    let answers = match p.answers {
        Answers::All => "all".to_string(),
        Answers::Count(n) => n.to_string(),
    };
    let bytes = p.max_lag_bytes.map(|b| format!(", max_lag_bytes {}", format_size(b))).unwrap_or_default();
    let near = if locality { format!(", locality {}", p.locality.as_str()) } else { String::new() };
    format!("max_lag {}{bytes}, answers {answers}, fallback {}{near}", format_duration(p.max_lag), p.fallback.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn describes_node_names_srv_names_and_ports() {
        let text = "[[cluster]]\nname = \"main\"\n\
                    [[cluster.node]]\nname = \"PG1\"\naddress = \"10.0.0.11\"\ndsn = \"host=10.0.0.11\"\n\
                    [[cluster.node]]\nname = \"pg2\"\naddress = \"10.0.0.12\"\nport = 6432\ndsn = \"host=10.0.0.12\"\n";
        let out = describe(&Config::parse(text, "t.toml").unwrap(), "t.toml");
        let lines: Vec<&str> = out.lines().collect();
        let at = |prefix: &str| lines.iter().find(|l| l.trim_start().starts_with(prefix)).copied();
        assert_eq!(at("pg1.main.db.internal."), Some("  pg1.main.db.internal.            node PG1 of cluster main"));
        assert_eq!(at("pg2.main.db.internal."), Some("  pg2.main.db.internal.            node pg2 of cluster main"));
        assert_eq!(
            at("SRV"),
            Some("  SRV _postgresql._tcp.<name>.db.internal. for each write and read name above (maxlag-/lsn- forms too)")
        );
        assert_eq!(
            at("main/pg2"),
            Some("  main/pg2             10.0.0.12                port 6432  weight 100  probe host=10.0.0.12")
        );
        assert!(at("main/PG1").is_some_and(|l| l.contains(" port 5432  weight 100 ")), "{out}");
        assert!(at("zone ").is_some_and(|l| l.ends_with("HTTP on 127.0.0.1:8053")), "no agent listener: {out}");
        let agent = format!("[http]\nagent_listen = \"127.0.0.1:8054\"\n{text}");
        let out = describe(&Config::parse(&agent, "t.toml").unwrap(), "t.toml");
        assert!(out.contains(", HTTP on 127.0.0.1:8053, HAProxy agent checks on 127.0.0.1:8054\n"), "{out}");
    }
}
