//! Table tests for config validation: defaults, and the exact `file:line: key: message`
//! of each kind of error.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::parse;
use crate::config::*;
use crate::locality::Locations;
use crate::net::Allow;

/// The smallest valid config: one cluster with one node (4 lines per block below).
const MIN: &str = r#"[[cluster]]
name = "main"
[[cluster.node]]
name = "pg1"
address = "127.0.0.11"
dsn = "host=127.0.0.11"
"#;

fn ok(text: &str) -> Config {
    parse(text, "t.toml").unwrap_or_else(|e| panic!("{e}"))
}

fn err(text: &str) -> String {
    match parse(text, "t.toml") {
        Ok(cfg) => panic!("parsed, expected an error: {cfg:?}"),
        Err(e) => e.to_string(),
    }
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

#[test]
fn minimal_config_gets_every_default() {
    let cfg = ok(MIN);
    let want = Config {
        dns: DnsConfig {
            listen: vec!["127.0.0.1:5353".parse().unwrap()],
            zone: "db.internal".into(),
            ttl: ms(1000),
            negative_ttl: ms(1000),
            nameservers: vec![Nameserver { name: "ns1.db.internal".into(), address: "127.0.0.1".parse().unwrap() }],
            nsid: None,
            allow: Allow::everyone(),
            // SPEC §12's defaults
            limits: DnsLimits {
                tcp_connections: 1024,
                tcp_connections_per_client: 16,
                tcp_idle: ms(10_000),
                tcp_lifetime: ms(120_000),
                rate: 0,
                rate_prefix_v4: 24,
                rate_prefix_v6: 56,
                slip: 2,
            },
        },
        http: HttpConfig { listen: "127.0.0.1:8053".parse().unwrap(), allow: Allow::everyone(), agent_listen: None },
        probe: ProbeConfig { interval: ms(250), timeout: ms(1000), fall: 2, rise: 2 },
        clusters: vec![ClusterConfig {
            name: "main".into(),
            write: "write".into(),
            endpoints: vec![EndpointConfig {
                label: "read".into(),
                nodes: vec!["pg1".into()],
                listed: false,
                policy: Policy {
                    max_lag: ms(1000),
                    max_lag_bytes: None,
                    answers: Answers::Count(1),
                    fallback: Fallback::Primary,
                    locality: LocalityPolicy::Prefer,
                },
            }],
            nodes: vec![NodeConfig {
                name: "pg1".into(),
                addresses: vec!["127.0.0.11".parse().unwrap()],
                host: None,
                port: 5432,
                dsn: "host=127.0.0.11".parse().unwrap(),
                weight: 100,
                password_file: None,
                location: None,
            }],
            patroni: None,
        }],
        locations: Locations::default(),
        locality: None,
    };
    assert_eq!(cfg, want);
}

#[test]
fn default_nameserver_follows_zone_and_first_listen_address() {
    let table = [
        (r#"listen = ["127.0.0.2:53", "[::1]:53"]"#, "ns1.example.test", "127.0.0.2"),
        (r#"listen = ["[::1]:53"]"#, "ns1.example.test", "::1"),
        (r#"listen = ["0.0.0.0:53"]"#, "ns1.example.test", "127.0.0.1"),
        (r#"listen = ["[::]:53"]"#, "ns1.example.test", "127.0.0.1"),
    ];
    for (listen, name, address) in table {
        let cfg = ok(&format!("[dns]\nzone = \"Example.Test.\"\n{listen}\n{MIN}"));
        assert_eq!(cfg.dns.zone, "example.test");
        assert_eq!(cfg.dns.nameservers.len(), 1, "{listen}");
        assert_eq!(cfg.dns.nameservers[0].name, name, "{listen}");
        assert_eq!(cfg.dns.nameservers[0].address.to_string(), address, "{listen}");
    }
}

#[test]
fn endpoints_inherit_the_cluster_policy_and_follow_read_in_file_order() {
    let text = r#"[[cluster]]
name = "main"
read = "Reads"
max_lag = "100ms"
max_lag_bytes = "16MiB"
answers = "all"
fallback = "open"
read_nodes = ["pg2", "pg1"]
[[cluster.endpoint]]
name = "analytics"
nodes = ["pg2"]
max_lag = "5m"
fallback = "none"
[[cluster.endpoint]]
name = "batch"
answers = 2
max_lag_bytes = 4096
[[cluster.node]]
name = "pg1"
address = "127.0.0.11"
dsn = "host=a"
weight = 0
password_file = "/run/secrets/pg"
[[cluster.node]]
name = "pg2"
address = "::1"
dsn = "host=b"
"#;
    let c = &ok(text).clusters[0];
    let summary: Vec<_> = c.endpoints.iter().map(|e| (e.label.as_str(), e.nodes.join(","), e.policy)).collect();
    let policy = |max_lag, bytes, answers, fallback| Policy {
        max_lag,
        max_lag_bytes: bytes,
        answers,
        fallback,
        locality: LocalityPolicy::Prefer,
    };
    assert_eq!(
        summary,
        vec![
            ("reads", "pg2,pg1".into(), policy(ms(100), Some(16 << 20), Answers::All, Fallback::Open)),
            ("analytics", "pg2".into(), policy(ms(300_000), Some(16 << 20), Answers::All, Fallback::None)),
            ("batch", "pg1,pg2".into(), policy(ms(100), Some(4096), Answers::Count(2), Fallback::Open)),
        ]
    );
    assert_eq!(c.nodes[0].weight, 0);
    assert_eq!(c.nodes[0].password_file, Some(PathBuf::from("/run/secrets/pg")));
    assert_eq!(c.nodes[1].addresses, ["::1".parse::<IpAddr>().unwrap()]);
    assert_eq!(c.nodes[1].weight, 100);
}

#[test]
fn several_clusters_share_the_zone() {
    let second = MIN.replace("\"main\"", "\"other\"");
    let second = second.replacen("name = \"other\"", "name = \"other\"\nread = \"read2\"\nwrite = \"write2\"", 1);
    let cfg = ok(&format!("{MIN}{second}"));
    let labels: Vec<_> = cfg.clusters.iter().map(|c| (c.write.as_str(), c.endpoints[0].label.as_str())).collect();
    assert_eq!(labels, [("write", "read"), ("write2", "read2")]);
}

#[test]
fn dns_http_probe_keys_are_read() {
    let text = format!(
        r#"[dns]
listen = ["127.0.0.1:5354", "[::1]:5354"]
ttl = "5s"
negative_ttl = "0s"
nameservers = [{{ name = "NS1.db.internal.", address = "127.0.0.1" }}, {{ name = "ns.other.test", address = "::1" }}]
nsid = "lagdns-a"
[http]
listen = "[::1]:9000"
[probe]
interval = "100ms"
timeout = "1.5s"
fall = 3
rise = 1
{MIN}"#
    );
    let cfg = ok(&text);
    assert_eq!(cfg.dns.listen.len(), 2);
    assert_eq!((cfg.dns.ttl, cfg.dns.negative_ttl), (ms(5000), ms(0)));
    let ns: Vec<_> = cfg.dns.nameservers.iter().map(|n| n.name.as_str()).collect();
    assert_eq!(ns, ["ns1.db.internal", "ns.other.test"]);
    assert_eq!(cfg.dns.nsid.as_deref(), Some("lagdns-a"));
    assert_eq!(cfg.http.listen, "[::1]:9000".parse().unwrap());
    assert_eq!(cfg.probe, ProbeConfig { interval: ms(100), timeout: ms(1500), fall: 3, rise: 1 });
}

/// `(config text, exact error)`. Line numbers count from the first line of the text.
const ERRORS: &[(&str, &str)] = &[
    // syntax and unknown keys (from the TOML parser, with the key found by span)
    ("colour = 1\n", "t.toml:1: colour: unknown field `colour`, expected one of `dns`, `http`, `probe`, `locality`, `cluster`"),
    ("[dns]\nzone = \"db.internal\"\nzonee = \"x\"\n", "t.toml:3: dns.zonee: unknown field `zonee`, expected one of `listen`, `zone`, `ttl`, `negative_ttl`, `nameservers`, `nsid`, `allow`, `limits`"),
    ("[[cluster]]\nname = \"main\"\n[[cluster.node]]\nname = \"pg1\"\nweigth = 5\n", "t.toml:5: cluster[main].node[pg1].weigth: unknown field `weigth`, expected one of `name`, `address`, `port`, `dsn`, `weight`, `password_file`, `location`"),
    ("[dns]\nnameservers = [{ name = \"ns1.db.internal\", adress = \"127.0.0.1\" }]\n", "t.toml:2: dns.nameservers[ns1.db.internal].adress: unknown field `adress`, expected `name` or `address`"),
    ("[[cluster]]\nname = \"main\"\n[[cluster.endpoint]]\nname = \"a\"\nmax_lagg = \"1s\"\n", "t.toml:5: cluster[main].endpoint[a].max_lagg: unknown field `max_lagg`, expected one of `name`, `nodes`, `max_lag`, `max_lag_bytes`, `answers`, `fallback`, `locality`"),
    ("[probe]\nfall = \"2\"\n", "t.toml:2: probe.fall: invalid type: string \"2\", expected an integer"),
    ("[dns]\nzone = \"db.internal\n", "t.toml:2: dns.zone: invalid basic string"),
    ("[dns]\nttl = \"1s\"\nttl = \"2s\"\n", "t.toml:3: dns.ttl: duplicate key `ttl` in table `dns`"),
    ("[http]\n[http]\n", "t.toml:2: http: invalid table header; duplicate key `http` in document root"),
    ("[http] # web\n[http]\n", "t.toml:2: http: invalid table header; duplicate key `http` in document root"),
    ("[[cluster]] # c\nname = \"é\"\nname = 1\n", "t.toml:3: cluster.name: duplicate key `name` in table `cluster`"),
    // [dns]
    ("[dns]\nlisten = []\n", "t.toml:2: dns.listen: needs at least one address"),
    ("[dns]\nlisten = [\"127.0.0.1:53\", \"127.0.0.1\"]\n", "t.toml:2: dns.listen[1]: \"127.0.0.1\" is not an address with a port, like \"127.0.0.1:5353\" or \"[::1]:5353\""),
    ("[dns]\nzone = \"db..internal\"\n", "t.toml:2: dns.zone: \"db..internal\" is not a domain name like \"db.internal\""),
    ("[dns]\nzone = \"db_internal\"\n", "t.toml:2: dns.zone: \"db_internal\" is not a domain name like \"db.internal\""),
    ("[dns]\nttl = \"1500ms\"\n", "t.toml:2: dns.ttl: must be a whole number of seconds (DNS TTLs are in seconds)"),
    ("[dns]\nnegative_ttl = \"2d\"\n", "t.toml:2: dns.negative_ttl: \"2d\" has an unknown unit: use ms, s, m or h, like \"250ms\""),
    ("[dns]\nttl = \"25h\"\n", "t.toml:2: dns.ttl: must be at most 1 day (24h)"),
    ("[dns]\nttl = 5\n", "t.toml:2: dns.ttl: a duration needs a unit: write \"5ms\" or \"5s\""),
    ("[dns]\nnameservers = [{ name = \"ns1.db.internal\", address = \"localhost\" }]\n", "t.toml:2: dns.nameservers[ns1.db.internal].address: \"localhost\" is not an IPv4 or IPv6 address"),
    ("[dns]\nnameservers = [{ name = \"ns1.db.internal\" }]\n", "t.toml:2: dns.nameservers[ns1.db.internal].address: is required"),
    ("[dns]\nnsid = \"\"\n", "t.toml:2: dns.nsid: must not be empty (leave it out to use the host name)"),
    // [http], [probe]
    ("[http]\nlisten = \"8053\"\n", "t.toml:2: http.listen: \"8053\" is not an address with a port, like \"127.0.0.1:5353\" or \"[::1]:5353\""),
    ("[probe]\ninterval = \"0s\"\n", "t.toml:2: probe.interval: must be more than 0"),
    ("[probe]\ntimeout = \"250\"\n", "t.toml:2: probe.timeout: \"250\" has no unit: use ms, s, m or h, like \"250ms\""),
    ("[probe]\ntimeout = \"-1s\"\n", "t.toml:2: probe.timeout: \"-1s\" is not a duration: expected a number and a unit, like \"250ms\""),
    ("[probe]\nrise = 0\n", "t.toml:2: probe.rise: must be an integer of at least 1, not 0"),
    (
        "[dns]\nlisten = [\"127.0.0.1:53\", \"127.0.0.1:53\"]\n",
        "t.toml:2: dns.listen[1]: 127.0.0.1:53 is listed twice",
    ),
    (
        "[dns]\nnameservers = [\n  { name = \"ns1.db.internal\", address = \"127.0.0.1\" },\n  { name = \"NS1.db.internal.\", address = \"::1\" },\n]\n",
        "t.toml:4: dns.nameservers[NS1.db.internal.].name: \"ns1.db.internal\" is listed twice",
    ),
    // clusters
    (
        "# main\n\n[[cluster]] # primary site\nname = \"main\"\n",
        "t.toml:3: cluster[main].node: a cluster needs at least one [[cluster.node]], or `patroni` to discover them",
    ),
    ("[dns]\nzone = \"db.internal\"\n", "t.toml:1: cluster: at least one [[cluster]] is required"),
    ("[[cluster]]\nread = \"read\"\n", "t.toml:1: cluster[0].name: is required"),
    ("[[cluster]]\nname = \"main\"\n", "t.toml:1: cluster[main].node: a cluster needs at least one [[cluster.node]], or `patroni` to discover them"),
];

/// Errors in a config built from [`MIN`] by replacing one line (MIN's line numbers:
/// 1 `[[cluster]]`, 2 name, 3 `[[cluster.node]]`, 4 name, 5 address, 6 dsn).
const MIN_ERRORS: &[(&str, &str, &str)] = &[
    ("name = \"main\"\n", "name = \"main\"\nmax_lag = \"fast\"\n", "t.toml:3: cluster[main].max_lag: \"fast\" is not a duration: expected a number and a unit, like \"250ms\""),
    ("name = \"main\"\n", "name = \"main\"\nmax_lag_bytes = \"16MB/s\"\n", "t.toml:3: cluster[main].max_lag_bytes: \"16MB/s\" has an unknown unit: use B, KiB, MiB, GiB, kB, MB or GB"),
    ("name = \"main\"\n", "name = \"main\"\nmax_lag_bytes = -1\n", "t.toml:3: cluster[main].max_lag_bytes: must not be negative"),
    ("name = \"main\"\n", "name = \"main\"\nanswers = 0\n", "t.toml:3: cluster[main].answers: must be an integer of at least 1 or \"all\", not 0"),
    ("name = \"main\"\n", "name = \"main\"\nanswers = \"every\"\n", "t.toml:3: cluster[main].answers: must be an integer of at least 1 or \"all\", not \"every\""),
    ("name = \"main\"\n", "name = \"main\"\nanswers = 1.5\n", "t.toml:3: cluster[main].answers: invalid type: floating point `1.5`, expected a string or an integer"),
    ("name = \"main\"\n", "name = \"main\"\nfallback = \"replica\"\n", "t.toml:3: cluster[main].fallback: must be \"primary\", \"none\" or \"open\", not \"replica\""),
    ("name = \"main\"\n", "name = \"main\"\nread_nodes = [\"pg1\", \"pg9\"]\n", "t.toml:3: cluster[main].read_nodes: no node named \"pg9\" in this cluster"),
    ("name = \"main\"\n", "name = \"main\"\nread_nodes = [\"pg1\", \"pg1\"]\n", "t.toml:3: cluster[main].read_nodes: node \"pg1\" is listed twice"),
    ("name = \"main\"\n", "name = \"main\"\nread_nodes = []\n", "t.toml:3: cluster[main].read_nodes: must name at least one node (leave it out for all nodes)"),
    ("name = \"main\"\n", "name = \"main\"\nread = \"read.db\"\n", "t.toml:3: cluster[main].read: \"read.db\" is not a DNS label (letters, digits and inner hyphens, at most 63 characters)"),
    ("name = \"main\"\n", "name = \"main\"\nwrite = \"-write\"\n", "t.toml:3: cluster[main].write: \"-write\" is not a DNS label (letters, digits and inner hyphens, at most 63 characters)"),
    ("name = \"main\"\n", "name = \"main\"\nread = \"maxlag-read\"\n", "t.toml:3: cluster[main].read: must not start with \"maxlag-\" (reserved for queries)"),
    ("name = \"main\"\n", "name = \"main\"\nwrite = \"LSN-w\"\n", "t.toml:3: cluster[main].write: must not start with \"lsn-\" (reserved for queries)"),
    ("name = \"main\"\n", "name = \"main\"\nwrite = \"Read\"\n", "t.toml:2: cluster[main].read: \"read\" is already used by cluster[main].write"),
    ("name = \"main\"\n", "name = \"main\"\nread = \"ns1\"\n", "t.toml:3: cluster[main].read: \"ns1\" is already used by dns.nameservers"),
    // cluster and node names are DNS labels: <node>.<cluster>.<zone> (SPEC §9)
    ("name = \"main\"\n", "name = \"main two\"\n", "t.toml:2: cluster[0].name: \"main two\" is not a DNS label (letters, digits and inner hyphens, at most 63 characters): node names are <node>.<cluster>.<zone>"),
    ("name = \"main\"\n", "name = \"main_site\"\n", "t.toml:2: cluster[0].name: \"main_site\" is not a DNS label (letters, digits and inner hyphens, at most 63 characters; no underscores in host names): node names are <node>.<cluster>.<zone>"),
    ("name = \"main\"\n", "name = \"main.eu\"\n", "t.toml:2: cluster[0].name: \"main.eu\" is not a DNS label (letters, digits and inner hyphens, at most 63 characters): node names are <node>.<cluster>.<zone>"),
    ("name = \"main\"\n", "name = \"lsn-main\"\n", "t.toml:2: cluster[lsn-main].name: must not start with \"lsn-\" (reserved for queries)"),
    ("name = \"main\"\n", "name = \"read\"\n", "t.toml:2: cluster[read].read: \"read\" is already used by cluster[read].name"),
    ("name = \"main\"\n", "name = \"Write\"\n", "t.toml:2: cluster[Write].write: \"write\" is already used by cluster[Write].name"),
    ("name = \"main\"\n", "name = \"ns1\"\n", "t.toml:2: cluster[ns1].name: \"ns1\" is already used by dns.nameservers"),
    ("name = \"main\"\n", "name = \"main\"\nread = \"main\"\n", "t.toml:3: cluster[main].read: \"main\" is already used by cluster[main].name"),
    ("name = \"pg1\"\n", "name = \"\"\n", "t.toml:4: cluster[main].node[0].name: \"\" is not a DNS label (letters, digits and inner hyphens, at most 63 characters): node names are <node>.<cluster>.<zone>"),
    ("name = \"pg1\"\n", "name = \"pg_1\"\n", "t.toml:4: cluster[main].node[0].name: \"pg_1\" is not a DNS label (letters, digits and inner hyphens, at most 63 characters; no underscores in host names): node names are <node>.<cluster>.<zone>"),
    ("name = \"pg1\"\n", "name = \"pg1-\"\n", "t.toml:4: cluster[main].node[0].name: \"pg1-\" is not a DNS label (letters, digits and inner hyphens, at most 63 characters): node names are <node>.<cluster>.<zone>"),
    // port: what applications use at `address` (SRV)
    ("address = \"127.0.0.11\"\n", "address = \"127.0.0.11\"\nport = 0\n", "t.toml:6: cluster[main].node[pg1].port: must be an integer from 1 to 65535, not 0"),
    ("address = \"127.0.0.11\"\n", "address = \"127.0.0.11\"\nport = 65536\n", "t.toml:6: cluster[main].node[pg1].port: must be an integer from 1 to 65535, not 65536"),
    ("address = \"127.0.0.11\"\n", "address = \"127.0.0.11\"\nport = \"5432\"\n", "t.toml:6: cluster[main].node[pg1].port: invalid type: string \"5432\", expected an integer"),
    ("address = \"127.0.0.11\"\n", "address = \"10.0.0\"\n", "t.toml:5: cluster[main].node[pg1].address: \"10.0.0\" is not an IPv4 or IPv6 address or a host name"),
    ("address = \"127.0.0.11\"\n", "address = \"db_1.internal\"\n", "t.toml:5: cluster[main].node[pg1].address: \"db_1.internal\" is not an IPv4 or IPv6 address or a host name"),
    ("address = \"127.0.0.11\"\n", "address = \"0.0.0.0\"\n", "t.toml:5: cluster[main].node[pg1].address: 0.0.0.0 cannot be answered to clients"),
    ("address = \"127.0.0.11\"\n", "", "t.toml:3: cluster[main].node[pg1].address: is required"),
    ("dsn = \"host=127.0.0.11\"\n", "", "t.toml:3: cluster[main].node[pg1].dsn: is required"),
    ("dsn = \"host=127.0.0.11\"\n", "dsn = \" \"\n", "t.toml:6: cluster[main].node[pg1].dsn: must not be empty"),
    // `dsn = "x"` (not a DSN) in the next three rows: a node's other keys and the
    // node names are checked before any DSN is parsed
    ("dsn = \"host=127.0.0.11\"\n", "dsn = \"x\"\nweight = -1\n", "t.toml:7: cluster[main].node[pg1].weight: must be an integer of at least 0, not -1"),
    ("dsn = \"host=127.0.0.11\"\n", "dsn = \"x\"\npassword_file = \"\"\n", "t.toml:7: cluster[main].node[pg1].password_file: must not be empty"),
    // a second node named like the first (node names match case-insensitively, as DNS does)
    ("dsn = \"host=127.0.0.11\"\n", "dsn = \"x\"\n[[cluster.node]]\nname = \"pg1\"\naddress = \"127.0.0.12\"\ndsn = \"y\"\n", "t.toml:8: cluster[main].node[pg1].name: node \"pg1\" is defined twice"),
    ("dsn = \"host=127.0.0.11\"\n", "dsn = \"x\"\n[[cluster.node]]\nname = \"PG1\"\naddress = \"127.0.0.12\"\ndsn = \"y\"\n", "t.toml:8: cluster[main].node[PG1].name: node \"PG1\" is defined twice"),
    // the DSN is parsed (and its TLS keys checked) at validation; no error repeats it
    ("dsn = \"host=127.0.0.11\"\n", "dsn = \"host=h password=hunter2 sslmode=verify\"\n", "t.toml:6: cluster[main].node[pg1].dsn: invalid sslmode \"verify\" (disable, allow, prefer, require, verify-ca, verify-full)"),
    ("dsn = \"host=127.0.0.11\"\n", "dsn = \"host=h password=hunter2 sslmode=verify-ca\"\n", "t.toml:6: cluster[main].node[pg1].dsn: sslmode=verify-ca needs sslrootcert (a PEM file of CA certificates, or `system` for the operating system's roots)"),
    ("dsn = \"host=127.0.0.11\"\n", "dsn = \"postgres://h/db?sslmode=verify-full&sslcert=%2Fc.pem&sslkey=%2Fk.pem\"\n", "t.toml:6: cluster[main].node[pg1].dsn: sslmode=verify-full needs sslrootcert (a PEM file of CA certificates, or `system` for the operating system's roots)"),
    ("dsn = \"host=127.0.0.11\"\n", "dsn = \"host=h sslcert=/c.pem\"\n", "t.toml:6: cluster[main].node[pg1].dsn: sslcert without sslkey (give both or neither)"),
    ("dsn = \"host=127.0.0.11\"\n", "dsn = \"postgres://u:hunter2@h?sslkey=%2Fk.pem\"\n", "t.toml:6: cluster[main].node[pg1].dsn: sslkey without sslcert (give both or neither)"),
    ("dsn = \"host=127.0.0.11\"\n", "dsn = \"host=h password=hunter2 bogus=1\"\n", "t.toml:6: cluster[main].node[pg1].dsn: invalid connection string: unknown option `bogus`"),
    ("dsn = \"host=127.0.0.11\"\n", "dsn = \"host=h password hunter2\"\n", "t.toml:6: cluster[main].node[pg1].dsn: expected `=` at byte 16"),
    ("dsn = \"host=127.0.0.11\"\n", "dsn = \"host=h password='hunter2\"\n", "t.toml:6: cluster[main].node[pg1].dsn: unterminated quoted value from byte 16"),
    ("dsn = \"host=127.0.0.11\"\n", "dsn = \"postgres://u:hunter2@h:port/db\"\n", "t.toml:6: cluster[main].node[pg1].dsn: invalid connection string: invalid value for option `port`"),
    ("dsn = \"host=127.0.0.11\"\n", "dsn = \"postgres://h/db?sslrootcert=%2\"\n", "t.toml:6: cluster[main].node[pg1].dsn: invalid percent-encoding in sslrootcert"),
    // endpoints
    ("name = \"main\"\n", "name = \"main\"\n[[cluster.endpoint]]\nname = \"write\"\n", "t.toml:4: cluster[main].endpoint[write].name: \"write\" is already used by cluster[main].write"),
    ("name = \"main\"\n", "name = \"main\"\n[[cluster.endpoint]]\nnodes = [\"pg1\"]\n", "t.toml:3: cluster[main].endpoint[0].name: is required"),
    ("name = \"main\"\n", "name = \"main\"\n[[cluster.endpoint]]\nname = \"bi\"\nnodes = [\"pg2\"]\n", "t.toml:5: cluster[main].endpoint[bi].nodes: no node named \"pg2\" in this cluster"),
    ("name = \"main\"\n", "name = \"main\"\n[[cluster.endpoint]]\nname = \"bi\"\nfallback = \"all\"\n", "t.toml:5: cluster[main].endpoint[bi].fallback: must be \"primary\", \"none\" or \"open\", not \"all\""),
    // locality (SPEC §8)
    ("name = \"main\"\n", "name = \"main\"\nlocality = \"near\"\n", "t.toml:3: cluster[main].locality: must be \"prefer\", \"only\" or \"ignore\", not \"near\""),
    ("name = \"main\"\n", "name = \"main\"\n[[cluster.endpoint]]\nname = \"bi\"\nlocality = \"\"\n", "t.toml:5: cluster[main].endpoint[bi].locality: must be \"prefer\", \"only\" or \"ignore\", not \"\""),
    ("dsn = \"host=127.0.0.11\"\n", "dsn = \"host=h\"\nlocation = \"eu west\"\n", "t.toml:7: cluster[main].node[pg1].location: \"eu west\" is not a location label (letters, digits, '-', '_', '.', ':', at most 63 characters)"),
    ("dsn = \"host=127.0.0.11\"\n", "dsn = \"host=h\"\n[locality]\ndefault = \"\"\n", "t.toml:8: locality.default: \"\" is not a location label (letters, digits, '-', '_', '.', ':', at most 63 characters)"),
    ("dsn = \"host=127.0.0.11\"\n", "dsn = \"host=h\"\n[locality]\necs = \"yes\"\n", "t.toml:8: locality.ecs: invalid type: string \"yes\", expected a boolean"),
    ("dsn = \"host=127.0.0.11\"\n", "dsn = \"host=h\"\n[[locality.network]]\nprefix = \"10.1.0.0/16\"\n", "t.toml:7: locality.network[0].location: is required"),
    ("dsn = \"host=127.0.0.11\"\n", "dsn = \"host=h\"\n[[locality.network]]\nlocation = \"a\"\n", "t.toml:7: locality.network[0].prefix: is required"),
    ("dsn = \"host=127.0.0.11\"\n", "dsn = \"host=h\"\n[[locality.network]]\nprefix = \"10.1.0.1/16\"\nlocation = \"a\"\n", "t.toml:8: locality.network[0].prefix: \"10.1.0.1/16\" has host bits set: write 10.1.0.0/16"),
    ("dsn = \"host=127.0.0.11\"\n", "dsn = \"host=h\"\n[[locality.network]]\nprefix = \"10.1.0.0/16\"\nlocation = \"a\"\n[[locality.network]]\nprefix = \"10.1.0.0/16\"\nlocation = \"b\"\n", "t.toml:11: locality.network[1].prefix: 10.1.0.0/16 is listed twice (first for location \"a\")"),
    ("dsn = \"host=127.0.0.11\"\n", "dsn = \"host=h\"\n[[locality.network]]\nprefix = \"10.1.0.0/16\"\nlocation = \"a\"\nzone = \"x\"\n", "t.toml:10: locality.network.zone: unknown field `zone`, expected `prefix` or `location`"),
];

#[test]
fn errors_name_file_line_and_key() {
    for (text, want) in ERRORS {
        assert_eq!(err(text), *want, "config:\n{text}");
    }
}

#[test]
fn errors_in_a_cluster_name_the_cluster_and_node() {
    for (from, to, want) in MIN_ERRORS {
        assert!(MIN.contains(from), "{from}");
        let text = MIN.replacen(from, to, 1);
        assert_eq!(err(&text), *want, "config:\n{text}");
    }
}

#[test]
fn clusters_collide_by_name_and_by_label() {
    let second = |name: &str, extra: &str| MIN.replace("name = \"main\"\n", &format!("name = \"{name}\"\n{extra}"));
    let table = [
        // a second cluster with the default labels: reported at its name (line 8)
        (second("other", ""), "t.toml:8: cluster[other].write: \"write\" is already used by cluster[main].write"),
        (
            second("other", "write = \"w2\"\n"),
            "t.toml:8: cluster[other].read: \"read\" is already used by cluster[main].read",
        ),
        (
            second("other", "write = \"w2\"\nread = \"READ\"\n"),
            "t.toml:10: cluster[other].read: \"read\" is already used by cluster[main].read",
        ),
        (second("main", "write = \"w2\"\n"), "t.toml:8: cluster[main].name: cluster \"main\" is defined twice"),
        (second("MAIN", "write = \"w2\"\n"), "t.toml:8: cluster[MAIN].name: cluster \"MAIN\" is defined twice"),
        // a cluster name is a label under the zone like any other, both ways round
        (
            second("read", "write = \"w2\"\n"),
            "t.toml:8: cluster[read].name: \"read\" is already used by cluster[main].read",
        ),
        (
            second("other", "write = \"main\"\n"),
            "t.toml:9: cluster[other].write: \"main\" is already used by cluster[main].name",
        ),
        (
            second("other", "write = \"w2\"\nread = \"r2\"\n[[cluster.endpoint]]\nname = \"Main\"\n"),
            "t.toml:12: cluster[other].endpoint[main].name: \"main\" is already used by cluster[main].name",
        ),
    ];
    for (tail, want) in table {
        let text = format!("{MIN}{tail}");
        assert_eq!(err(&text), want, "config:\n{text}");
    }
}

#[test]
fn cluster_names_keep_clear_of_in_zone_nameservers_and_fit_the_node_names() {
    let ns = |name: &str| format!("[dns]\nnameservers = [{{ name = \"{name}\", address = \"127.0.0.1\" }}]\n");
    // ns3.sub.db.internal: `sub` is an empty non-terminal no cluster may take (its node
    // ns3 would be the nameserver's name); an endpoint may still be called `sub`.
    let text = format!("{}{}", ns("ns3.sub.db.internal"), MIN.replace("\"main\"", "\"sub\""));
    let want = "t.toml:4: cluster[sub].name: \"sub\" is already used by dns.nameservers (a name under sub.<zone>)";
    assert_eq!(err(&text), want);
    let text = format!(
        "{}{}",
        ns("ns3.sub.db.internal"),
        MIN.replace("name = \"main\"\n", "name = \"main\"\nread = \"sub\"\n")
    );
    assert_eq!(ok(&text).clusters[0].endpoints[0].label, "sub");
    // outside the zone, a nameserver takes nothing
    let text = format!("{}{}", ns("ns3.main.other.test"), MIN);
    assert_eq!(ok(&text).clusters[0].name, "main");

    // <node>.<cluster>.<zone> must fit 253 characters
    let zone = ["a".repeat(63), "b".repeat(63), "c".repeat(50)].join(".");
    let cluster = "m".repeat(63);
    let config = |node: &str| {
        format!(
            "[dns]\nzone = \"{zone}\"\n{}",
            MIN.replace("\"main\"", &format!("\"{cluster}\"")).replace("\"pg1\"", &format!("\"{node}\""))
        )
    };
    let longest = "n".repeat(253 - zone.len() - cluster.len() - 2);
    assert_eq!(ok(&config(&longest)).clusters[0].nodes[0].name, longest);
    let message = err(&config(&format!("{longest}x")));
    assert!(
        message.starts_with(&format!("t.toml:6: cluster[{cluster}].node[{longest}x].name: makes the node name \"")),
        "{message}"
    );
    assert!(message.ends_with("\" longer than 253 characters"), "{message}");
}

#[test]
fn node_ports_default_to_5432() {
    let text = MIN.replace("address = \"127.0.0.11\"\n", "address = \"127.0.0.11\"\nport = 6432\n");
    assert_eq!(ok(&text).clusters[0].nodes[0].port, 6432);
    assert_eq!(ok(MIN).clusters[0].nodes[0].port, 5432);
    assert_eq!(
        ok(&MIN.replace("address = \"127.0.0.11\"\n", "address = \"127.0.0.11\"\nport = 65535\n")).clusters[0].nodes[0]
            .port,
        65535
    );
}

#[test]
fn nameservers_outside_the_zone_take_no_label() {
    let text = format!("[dns]\nnameservers = [{{ name = \"read.other.test\", address = \"127.0.0.1\" }}]\n{MIN}");
    assert_eq!(ok(&text).clusters[0].endpoints[0].label, "read");
}

#[test]
fn nsid_is_at_most_128_bytes() {
    let cfg = |n: usize| format!("[dns]\nnsid = \"{}\"\n{MIN}", "a".repeat(n));
    assert_eq!(ok(&cfg(128)).dns.nsid.map(|s| s.len()), Some(128));
    assert_eq!(err(&cfg(129)), "t.toml:2: dns.nsid: is longer than 128 bytes");
}

#[test]
fn edge_keys_are_read() {
    let cfg = ok(&format!(
        r#"[dns]
allow = ["10.0.0.0/8", "127.0.0.1", "::1/128"]
[dns.limits]
tcp_connections = 100
tcp_connections_per_client = 4
tcp_idle = "2s"
tcp_lifetime = "30s"
rate = 50
rate_prefix_v4 = 32
rate_prefix_v6 = 64
slip = 0
[http]
allow = ["127.0.0.0/8"]
{MIN}"#
    ));
    let nets = |a: &Allow| a.networks().unwrap().iter().map(|n| n.to_string()).collect::<Vec<_>>();
    assert_eq!(nets(&cfg.dns.allow), ["10.0.0.0/8", "127.0.0.1/32", "::1/128"]);
    assert_eq!(nets(&cfg.http.allow), ["127.0.0.0/8"]);
    assert_eq!(cfg.http.agent_listen, None, "no agent listener unless configured");
    let l = cfg.dns.limits;
    assert_eq!(
        (l.tcp_connections, l.tcp_connections_per_client, l.tcp_idle, l.tcp_lifetime),
        (100, 4, ms(2000), ms(30_000))
    );
    assert_eq!((l.rate, l.rate_prefix_v4, l.rate_prefix_v6, l.slip), (50, 32, 64, 0));
}

#[test]
fn agent_listen_is_read_and_may_share_port_0() {
    let cfg = ok(&format!("[http]\nagent_listen = \"[::1]:8054\"\n{MIN}"));
    assert_eq!(cfg.http.agent_listen, Some("[::1]:8054".parse().unwrap()));
    // port 0 (a free port each) collides with nothing
    let text = format!(
        "[dns]\nlisten = [\"127.0.0.1:0\"]\n[http]\nlisten = \"127.0.0.1:0\"\nagent_listen = \"127.0.0.1:0\"\n{MIN}"
    );
    assert_eq!(ok(&text).http.agent_listen, Some("127.0.0.1:0".parse().unwrap()));
}

#[test]
fn edge_errors_name_the_line_and_key() {
    let cases = [
        (
            "[dns]\nallow = [\"10.0.0.0/8\", \"db.internal\"]\n",
            "t.toml:2: dns.allow[1]: \"db.internal\" is not a network",
        ),
        (
            "[dns]\nallow = [\"10.0.0.1/8\"]\n",
            "t.toml:2: dns.allow[0]: \"10.0.0.1/8\" has host bits set: write 10.0.0.0/8",
        ),
        ("[dns]\nallow = []\n", "t.toml:2: dns.allow: is empty, which would refuse everyone"),
        ("[http]\nallow = [\"300.0.0.0/8\"]\n", "t.toml:2: http.allow[0]: \"300.0.0.0/8\" is not a network"),
        (
            "[dns.limits]\ntcp_connections = 0\n",
            "t.toml:2: dns.limits.tcp_connections: must be an integer from 1 to 65535, not 0",
        ),
        (
            "[dns.limits]\nrate_prefix_v4 = 33\n",
            "t.toml:2: dns.limits.rate_prefix_v4: must be an integer from 1 to 32, not 33",
        ),
        ("[dns.limits]\nslip = -1\n", "t.toml:2: dns.limits.slip: must be an integer from 0 to 100, not -1"),
        ("[dns.limits]\ntcp_idle = \"0s\"\n", "t.toml:2: dns.limits.tcp_idle: must be more than 0"),
        ("[dns.limits]\nrate = 5000000\n", "t.toml:2: dns.limits.rate: must be an integer from 0 to 1000000"),
        ("[dns.limits]\nburst = 1\n", "t.toml:2: dns.limits.burst: unknown field `burst`"),
        (
            "[http]\nagent_listen = \"8054\"\n",
            "t.toml:2: http.agent_listen: \"8054\" is not an address with a port, like \"127.0.0.1:5353\"",
        ),
        (
            "[http]\nlisten = \"127.0.0.1:8053\"\nagent_listen = \"127.0.0.1:8053\"\n",
            "t.toml:3: http.agent_listen: 127.0.0.1:8053 is http.listen's address already",
        ),
        (
            "[dns]\nlisten = [\"127.0.0.1:5353\"]\n[http]\nagent_listen = \"127.0.0.1:5353\"\n",
            "t.toml:4: http.agent_listen: 127.0.0.1:5353 is in dns.listen already (DNS listens on TCP too)",
        ),
        ("[http]\nagent_list = \"127.0.0.1:8054\"\n", "t.toml:2: http.agent_list: unknown field `agent_list`"),
    ];
    for (text, want) in cases {
        let err = Config::parse(&format!("{text}{MIN}"), "t.toml").unwrap_err().to_string();
        assert!(err.starts_with(want), "{text}\n got: {err}\nwant: {want}");
    }
}

#[test]
fn locality_keys_are_read() {
    let text = format!(
        "{}location = \"eu-1a\"\n[[cluster.node]]\nname = \"pg2\"\naddress = \"127.0.0.12\"\ndsn = \"host=b\"\n\
         [[cluster.endpoint]]\nname = \"near\"\nlocality = \"only\"\n\
         [locality]\ndefault = \"eu-1b\"\n[[locality.network]]\nprefix = \"10.1.0.0/16\"\nlocation = \"eu-1a\"\n\
         [[locality.network]]\nprefix = \"2001:db8::/32\"\nlocation = \"eu-1c\"\n",
        MIN.replace("name = \"main\"\n", "name = \"main\"\nlocality = \"ignore\"\n")
    );
    let cfg = ok(&text);
    let c = &cfg.clusters[0];
    let name = |id: Option<crate::locality::LocationId>| id.map(|l| cfg.locations.name(l).to_owned());
    assert_eq!(name(c.nodes[0].location).as_deref(), Some("eu-1a"));
    assert_eq!(c.nodes[1].location, None);
    assert_eq!(
        c.endpoints.iter().map(|e| e.policy.locality).collect::<Vec<_>>(),
        [LocalityPolicy::Ignore, LocalityPolicy::Only]
    );
    let l = cfg.locality.as_ref().unwrap();
    assert!(l.ecs);
    assert_eq!(name(l.default).as_deref(), Some("eu-1b"));
    assert_eq!(l.networks.len(), 2);
    let found = l.networks.lookup("10.1.7.7".parse().unwrap(), 32);
    assert_eq!(name(found.matched).as_deref(), Some("eu-1a"));
    // without [locality] nothing is placed, and `prefer` is the default policy
    let plain = ok(MIN);
    assert_eq!((plain.locality, plain.clusters[0].endpoints[0].policy.locality), (None, LocalityPolicy::Prefer));
    assert!(!ok(&format!("{MIN}[locality]\necs = false\n")).locality.unwrap().ecs);
}

#[test]
fn patroni_keys_are_read_and_checked() {
    let text = "[[cluster]]\nname = \"main\"\npatroni = [\"http://10.0.0.11:8008/\", \"http://10.0.0.12:8008\"]\n\
                node_dsn = \"host={host} port={port} user=mon dbname=postgres\"\ndiscovery_interval = \"500ms\"\n\
                read_nodes = [\"pg7\"]\n";
    let cfg = ok(text);
    let p = cfg.clusters[0].patroni.as_ref().unwrap();
    assert_eq!(p.members, ["http://10.0.0.11:8008", "http://10.0.0.12:8008"]);
    assert_eq!(p.interval, ms(500));
    assert!(cfg.clusters[0].nodes.is_empty());
    // a member to be discovered may be listed
    assert_eq!(
        (cfg.clusters[0].endpoints[0].nodes.clone(), cfg.clusters[0].endpoints[0].listed),
        (vec!["pg7".to_string()], true)
    );
    let base = "[[cluster]]\nname = \"main\"\n";
    let cases = [
        ("patroni = []\n", "t.toml:3: cluster[main].patroni: needs at least one member's REST API URL"),
        ("patroni = [\"10.0.0.1:8008\"]\n", "t.toml:3: cluster[main].patroni[0]: \"10.0.0.1:8008\" is not a REST API URL like \"http://10.0.0.11:8008\""),
        ("patroni = [\"http://h:8008\"]\ndiscovery_interval = \"10ms\"\n", "t.toml:4: cluster[main].discovery_interval: must be at least 100ms"),
        ("node_dsn = \"host={host}\"\n[[cluster.node]]\nname = \"pg1\"\naddress = \"10.0.0.1\"\ndsn = \"host=a\"\n", "t.toml:3: cluster[main].node_dsn: needs `patroni` (the members to discover nodes from)"),
    ];
    for (tail, want) in cases {
        assert_eq!(err(&format!("{base}{tail}")), want, "{tail}");
    }
}
