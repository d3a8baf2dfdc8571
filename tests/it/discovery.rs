//! SPEC §11 for real: lagdns discovers a real Patroni cluster's members (no static
//! nodes), `write` follows a Patroni switchover, a stopped member leaves `read` and,
//! once Patroni stops listing it, the node list, and a started one comes back.
//!
//! Patroni and etcd are real (localpg's `PatroniCluster`); a missing one fails the test
//! with how to get it.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use hickory_proto::rr::RecordType;
use lagdns::cmd::serve::Server;
use lagdns::config::Config;
use lagdns::http::status::StatusDoc;
use localpg::PatroniCluster;

use crate::common::{addrs, eventually, free_port, http_get, query, Proto};

async fn start_patroni(members: usize) -> Arc<PatroniCluster> {
    if let Err(e) = localpg::patroni_programs() {
        panic!("{e}: this test needs a real Patroni and etcd");
    }
    let cluster = tokio::task::spawn_blocking(move || PatroniCluster::start(members)).await.unwrap();
    Arc::new(cluster.unwrap_or_else(|e| panic!("PatroniCluster::start({members}): {e}")))
}

fn config(patroni: &PatroniCluster) -> Config {
    let urls: Vec<String> = patroni.api_urls().iter().map(|u| format!("{u:?}")).collect();
    let text = format!(
        r#"[dns]
listen = ["127.0.0.1:{}"]
zone = "db.internal"
[http]
listen = "127.0.0.1:{}"
[probe]
interval = "250ms"
timeout = "1s"
[[cluster]]
name = "main"
max_lag = "2s"
patroni = [{}]
discovery_interval = "500ms"
"#,
        free_port(),
        free_port(),
        urls.join(", ")
    );
    Config::parse(&text, "discovery.toml").unwrap()
}

async fn status(server: &Server) -> StatusDoc {
    let (code, body) = http_get(server.http_addr, "/status").await;
    assert_eq!(code, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

async fn answer(server: &Server, name: &str) -> Vec<IpAddr> {
    addrs(&query(server.dns_addrs[0], name, RecordType::A, Proto::Udp).await)
}

fn member_ip(patroni: &PatroniCluster, name: &str) -> IpAddr {
    patroni.member_named(name).socket_addr().ip()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lagdns_discovers_patroni_members_and_follows_switchover_and_stopped_members() {
    let patroni = start_patroni(3).await;
    let server = Server::start(config(&patroni)).await.unwrap();
    let (pg1, pg2, pg3) = (member_ip(&patroni, "pg1"), member_ip(&patroni, "pg2"), member_ip(&patroni, "pg3"));

    // all three discovered and probed, with Patroni's own view beside lagdns's
    eventually(Duration::from_secs(20), "three discovered nodes, write = pg1", || async {
        let doc = status(&server).await;
        let c = &doc.clusters[0];
        let names: Vec<&str> = c.nodes.iter().map(|n| n.name.as_str()).collect();
        let leader = c.nodes.iter().find(|n| n.patroni.as_ref().is_some_and(|p| p.role == "leader"));
        match (names.len(), c.primary.as_deref(), leader.map(|n| n.name.as_str())) {
            (3, Some("pg1"), Some("pg1")) if c.discovery.as_ref().is_some_and(|d| d.failed_rounds == 0) => Ok(()),
            _ => Err(format!("{names:?} primary {:?} discovery {:?}", c.primary, c.discovery)),
        }
    })
    .await;
    assert_eq!(answer(&server, "write.db.internal.").await, [pg1]);
    eventually(Duration::from_secs(10), "read on a replica", || async {
        let got = answer(&server, "read.db.internal.").await;
        if got == [pg2] || got == [pg3] {
            Ok(())
        } else {
            Err(format!("{got:?}"))
        }
    })
    .await;
    let (_, txt) = http_get(server.http_addr, "/metrics").await;
    assert!(txt.contains("lagdns_discovered_nodes{cluster=\"main\"} 3"), "{txt}");

    // switchover: write follows lagdns's own probes of the new primary
    let p = patroni.clone();
    let t0 = Instant::now();
    tokio::task::spawn_blocking(move || p.switchover("pg2")).await.unwrap().unwrap();
    let switched = t0.elapsed();
    eventually(Duration::from_secs(15), "write = pg2", || async {
        let got = answer(&server, "write.db.internal.").await;
        if got == [pg2] {
            Ok(())
        } else {
            Err(format!("{got:?}"))
        }
    })
    .await;
    eprintln!("switchover to pg2: Patroni done after {switched:?}, write answered pg2 after {:?}", t0.elapsed());

    // pg3 stopped: out of read at once (down), then out of the node list once Patroni
    // stops listing it (its ttl) and three more rounds pass
    let p = patroni.clone();
    let t0 = Instant::now();
    tokio::task::spawn_blocking(move || p.stop_member(2)).await.unwrap().unwrap();
    eventually(Duration::from_secs(10), "read without pg3", || async {
        for _ in 0..10 {
            let got = answer(&server, "read.db.internal.").await;
            if got.contains(&pg3) {
                return Err(format!("{got:?}"));
            }
        }
        Ok(())
    })
    .await;
    let out_of_read = t0.elapsed();
    eventually(Duration::from_secs(40), "pg3 removed from the node list", || async {
        let doc = status(&server).await;
        let names: Vec<String> = doc.clusters[0].nodes.iter().map(|n| n.name.clone()).collect();
        if names.len() == 2 && !names.contains(&"pg3".to_string()) {
            Ok(())
        } else {
            Err(format!("{names:?}"))
        }
    })
    .await;
    eprintln!("pg3 stopped: out of read after {out_of_read:?}, out of the node list after {:?}", t0.elapsed());

    // started again: back in the list and, after `rise` good probes, in read
    let p = patroni.clone();
    let t0 = Instant::now();
    tokio::task::spawn_blocking(move || p.start_member(2)).await.unwrap().unwrap();
    eventually(Duration::from_secs(40), "pg3 back in read", || async {
        for _ in 0..20 {
            if answer(&server, "read.db.internal.").await.contains(&pg3) {
                return Ok(());
            }
        }
        Err("not yet".to_string())
    })
    .await;
    eprintln!("pg3 started: back in read after {:?}", t0.elapsed());
    server.shutdown().await;
}

/// SPEC §11 host names: a node's `address` may be a host name, resolved with the system
/// resolver; what it resolves to is answered (TXT and `/status` show `name=ip`), and one
/// that does not resolve is reported and answers nothing.
#[tokio::test]
async fn host_name_addresses_are_resolved_answered_and_reported() {
    let dead = free_port(); // nothing listens: the probes fail, node names answer anyway
    let text = format!(
        r#"[dns]
listen = ["127.0.0.1:{}"]
zone = "db.internal"
[http]
listen = "127.0.0.1:{}"
[probe]
interval = "250ms"
timeout = "500ms"
[[cluster]]
name = "main"
[[cluster.node]]
name = "pg1"
address = "localhost"
dsn = "host=127.0.0.1 port={dead} user=lagdns dbname=postgres connect_timeout=1"
[[cluster.node]]
name = "pg2"
address = "nosuch.invalid"
dsn = "host=127.0.0.1 port={dead} user=lagdns dbname=postgres connect_timeout=1"
"#,
        free_port(),
        free_port(),
    );
    let server = Server::start(Config::parse(&text, "hosts.toml").unwrap()).await.unwrap();
    let localhost: Vec<IpAddr> = tokio::net::lookup_host(("localhost", 0)).await.unwrap().map(|a| a.ip()).collect();
    let v4: Vec<IpAddr> = localhost.iter().copied().filter(IpAddr::is_ipv4).collect();
    assert!(!v4.is_empty(), "localhost resolves to an IPv4 address here: {localhost:?}");
    let mut got = answer(&server, "pg1.main.db.internal.").await;
    got.sort();
    let mut want = v4.clone();
    want.sort();
    want.dedup();
    assert_eq!(got, want, "pg1's node name answers what localhost resolves to");
    assert!(answer(&server, "pg2.main.db.internal.").await.is_empty(), "an unresolved name answers nothing");
    let doc = status(&server).await;
    let c = &doc.clusters[0];
    assert!(c.nodes[0].address.starts_with("localhost="), "{}", c.nodes[0].address);
    assert_eq!(c.nodes[1].address, "nosuch.invalid=?");
    let unresolved = &c.discovery.as_ref().expect("a discovery section for a cluster with host names").unresolved;
    assert_eq!(unresolved.iter().map(|u| u.name.as_str()).collect::<Vec<_>>(), ["nosuch.invalid"], "{unresolved:?}");
    let txt =
        crate::common::txt(&query(server.dns_addrs[0], "pg1.main.db.internal.", RecordType::TXT, Proto::Udp).await);
    assert!(txt[0].starts_with("pg1 localhost=127."), "{txt:?}");
    server.shutdown().await;
}
