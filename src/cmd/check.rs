//! `lagdns check`: validate a config and print the zone's names and the nodes; the
//! error (file, line, key) goes to stderr and the exit code is 1.

use std::fmt::Write as _;
use std::path::Path;

use crate::config::{format_duration, format_size, Answers, Config, Policy};

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
        "zone {zone}: ttl {}, negative ttl {}, DNS on {}, HTTP on {}",
        format_duration(config.dns.ttl),
        format_duration(config.dns.negative_ttl),
        config.dns.listen.iter().map(|a| a.to_string()).collect::<Vec<_>>().join(", "),
        config.http.listen,
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
                policy_text(&ep.policy)
            );
        }
    }
    let _ = writeln!(out, "nodes:");
    for c in &config.clusters {
        for n in &c.nodes {
            let _ = writeln!(
                out,
                "  {:<20} {:<24} weight {:<4} probe {}",
                format!("{}/{}", c.name, n.name),
                n.address,
                n.weight,
                n.dsn
            );
        }
    }
    out
}

fn policy_text(p: &Policy) -> String {
    let answers = match p.answers {
        Answers::All => "all".to_string(),
        Answers::Count(n) => n.to_string(),
    };
    let bytes = p.max_lag_bytes.map(|b| format!(", max_lag_bytes {}", format_size(b))).unwrap_or_default();
    format!("max_lag {}{bytes}, answers {answers}, fallback {}", format_duration(p.max_lag), p.fallback.as_str())
}
