//! A real Unbound with its EDNS Client Subnet module (`subnetcache`) in front of lagdns
//! serving a real primary and two replicas in two locations (`locality_pg`'s setup):
//! Unbound sends each client's /24 to lagdns as ECS (`send-client-subnet`), lagdns
//! places the client by it and answers with SCOPE 24, and Unbound's ECS cache keeps
//! the answers of the two locations apart. Unbound is the shipped snippet
//! (examples/resolvers/unbound.conf) plus the ECS settings below.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use hickory_proto::op::{Edns, Message, Query, ResponseCode};
use hickory_proto::rr::rdata::opt::{ClientSubnet, EdnsOption};
use hickory_proto::rr::{Name, RecordType};
use tokio::time::Instant;

use crate::common::{addrs, http_get, query_from, rcode, txt, Stack};
use crate::locality_pg::{locality_settings, wait_placed};
use crate::resolver_unbound::Unbound;

/// Client sources: two in each location's /24 (x values no other test uses).
const A1: &str = "127.0.1.121";
const A2: &str = "127.0.1.122";
const B1: &str = "127.0.2.121";
const B2: &str = "127.0.2.122";

/// What Unbound needs to send ECS to lagdns: the module (the default module-config of
/// an Unbound built with `--enable-subnet`, written out so the test does not depend on
/// the build), lagdns' address as an authority that may receive client subnets, and
/// the /24 it sends for an IPv4 client (the default, written out).
fn ecs_clause(lagdns: SocketAddr) -> String {
    format!(
        r#"
server:
    module-config: "subnetcache validator iterator"
    send-client-subnet: {}
    max-client-subnet-ipv4: 24
"#,
        lagdns.ip()
    )
}

/// `name` `qtype` with RD set, through Unbound, from a socket bound to `source`,
/// optionally with the client's own ECS option.
async fn via_from(unbound: SocketAddr, source: &str, name: &str, qtype: RecordType, ecs: Option<&str>) -> Message {
    let mut msg = Message::query();
    msg.add_query(Query::query(name.parse::<Name>().unwrap(), qtype));
    msg.metadata.recursion_desired = true;
    if let Some(subnet) = ecs {
        let mut e = Edns::new();
        e.set_max_payload(1232);
        e.options_mut().insert(EdnsOption::Subnet(subnet.parse::<ClientSubnet>().unwrap()));
        msg.set_edns(e);
    }
    query_from(source.parse::<IpAddr>().unwrap(), unbound, &msg).await
}

/// The `client ...` string of a TXT answer. lagdns sends it first, but a resolver
/// need not keep the order of an RRset (Unbound rotates it: `rrset-roundrobin`).
fn client_line(t: &[String]) -> Option<&str> {
    t.iter().map(String::as_str).find(|s| s.starts_with("client "))
}

/// The node names Unbound answers for `read` A from `source`.
async fn read_via(stack: &Stack, unbound: SocketAddr, source: &str) -> Vec<String> {
    let m = via_from(unbound, source, "read.db.internal.", RecordType::A, None).await;
    assert_eq!(rcode(&m), ResponseCode::NoError, "read via unbound from {source}");
    addrs(&m).into_iter().map(|a| stack.name_of(a)).collect()
}

/// `lagdns_queries_total` of `read` A NOERROR answers so far: how many of the queries
/// reached lagdns rather than Unbound's cache.
async fn read_queries(stack: &Stack) -> u64 {
    let (_, metrics) = http_get(stack.http(), "/metrics").await;
    metrics
        .lines()
        .filter(|l| l.starts_with("lagdns_queries_total{") && l.contains("kind=\"read\"") && l.contains("qtype=\"A\""))
        .filter(|l| l.contains("rcode=\"NOERROR\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unbound_sends_each_clients_subnet_and_its_ecs_cache_keeps_the_locations_apart() {
    crate::resolver_unbound::unbound_bin(); // fails (never skips) without Unbound, before PostgreSQL starts
    let mut stack = Stack::start(2, locality_settings()).await;
    let within = stack.settings.rounds(8);
    wait_placed(&stack, within).await;
    let unbound = Unbound::start_with(stack.cluster.dir(), stack.dns(), &ecs_clause(stack.dns())).await;
    let ub = unbound.addr;

    // lagdns says where it placed each asker: by the ECS subnet Unbound sent (lagdns
    // itself only ever sees Unbound's 127.0.0.1, which no network matches)
    for (source, want) in [
        (A1, "client 127.0.1.0/24 location=a via ecs"),
        (B1, "client 127.0.2.0/24 location=b via ecs"),
        (A2, "client 127.0.1.0/24 location=a via ecs"),
    ] {
        let t = txt(&via_from(ub, source, "read.db.internal.", RecordType::TXT, None).await);
        assert_eq!(client_line(&t), Some(want), "TXT via unbound from {source}: {t:?}; {}", unbound.logs());
    }

    // interleaved, several times over more than the 1 s TTL: each location its replica
    let before = read_queries(&stack).await;
    let started = Instant::now();
    let mut asked = 0;
    for round in 0..12 {
        for (source, want) in [(A1, "pg2"), (B1, "pg3"), (A2, "pg2"), (B2, "pg3")] {
            let got = read_via(&stack, ub, source).await;
            assert_eq!(got, [want], "round {round}: read via unbound from {source}; {}", unbound.logs());
            asked += 1;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let reached = read_queries(&stack).await - before;
    eprintln!(
        "locality_unbound: {asked} read queries through unbound over {:?}, {reached} reached lagdns (the rest \
         from unbound's ECS cache)",
        started.elapsed()
    );
    assert!(reached >= 2, "both subnets were asked of lagdns: {reached}");
    assert!(reached < asked, "unbound cached nothing: {reached} of {asked} reached lagdns");

    // a client's own ECS option is forwarded to lagdns (listed in send-client-subnet)
    let t = txt(&via_from(ub, "127.0.0.1", "read.db.internal.", RecordType::TXT, Some("127.0.2.0/24")).await);
    assert_eq!(client_line(&t), Some("client 127.0.2.0/24 location=b via ecs"), "{t:?}");

    // pg2 stops replaying while pg1 writes: a's clients move to pg3 through Unbound
    // too once lagdns moves them (its ECS cache entries expire with the 1 s TTL)
    let _writer = stack.cluster.node("pg1").start_writer(Duration::from_millis(50));
    stack.cluster.node("pg2").pause_replay().unwrap();
    let paused = Instant::now();
    crate::common::eventually(within, "a's read via unbound on pg3", || async {
        match (read_via(&stack, ub, A1).await, read_via(&stack, ub, B1).await) {
            (a, b) if a == ["pg3"] && b == ["pg3"] => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    eprintln!("locality_unbound: replay paused on pg2 → a's read via unbound on pg3 after {:?}", paused.elapsed());
    stack.cluster.node("pg2").resume_replay().unwrap();
    let resumed = Instant::now();
    crate::common::eventually(within, "a's read via unbound back on pg2", || async {
        match (read_via(&stack, ub, A2).await, read_via(&stack, ub, B2).await) {
            (a, b) if a == ["pg2"] && b == ["pg3"] => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    eprintln!("locality_unbound: replay resumed → a's read via unbound back on pg2 after {:?}", resumed.elapsed());
    drop(unbound);
    stack.shutdown().await;
}
