//! Fuzz target `dns`: the whole answer path (parse → checks → answer → encode), as the
//! sockets drive it. The first byte chooses: bit 0 = a TCP stream (split into messages
//! by the production codec, each answered in turn) or a UDP datagram; bit 1 = a server
//! whose first probe round has finished or not; bit 2 = with a rate limit and an allow
//! list. Every response must parse back with hickory-proto, echo the ID, and fit the
//! size limit; anything else (or a panic, or an overflow with the fuzz profile's
//! checks) is a crash.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use bytes::BytesMut;
use hickory_proto::op::Message;
use lagdns::dns::query::QueryStats;
use lagdns::dns::records::Zone;
use lagdns::dns::respond::{Ask, Reply, Responder, Transport};
use lagdns::dns::tcp::message_codec;
use lagdns::store::Store;
use lagdns::testkit::SnapshotBuilder;
use tokio_util::codec::Decoder;

const CONFIG: &str = r#"
[dns]
zone = "db.internal"
nsid = "fuzz"
nameservers = [{ name = "ns1.db.internal", address = "192.0.2.1" }, { name = "ns2.sub.db.internal", address = "2001:db8::53" }]
[[cluster]]
name = "main"
answers = "all"
fallback = "open"
[[cluster.endpoint]]
name = "analytics"
nodes = ["pg3"]
fallback = "none"
[[cluster.node]]
name = "pg1"
address = "10.0.0.1"
dsn = "host=h"
[[cluster.node]]
name = "pg2"
address = "10.0.0.2"
dsn = "host=h"
[[cluster.node]]
name = "pg3"
address = "2001:db8::3"
dsn = "host=h"
[[cluster]]
name = "billing"
read = "billing-read"
write = "billing-write"
[[cluster.node]]
name = "b1"
address = "10.1.0.1"
dsn = "host=h"
"#;

const EDGE: &str = "\n[dns.limits]\nrate = 3\nslip = 2\n";

fn responder(ready: bool, edge: bool) -> Responder {
    let mut text = CONFIG.to_string();
    if edge {
        text = text.replace("nsid = \"fuzz\"", "nsid = \"fuzz\"\nallow = [\"10.0.0.0/8\"]") + EDGE;
    }
    let snap = SnapshotBuilder::new(&text).ready(ready).build();
    Responder::new(Store::new(snap, Zone::derive), Arc::new(QueryStats::default()), b"fuzz".to_vec())
}

fn check(packet: &[u8], out: &[u8], transport: Transport) {
    let m = Message::from_vec(out).unwrap_or_else(|e| panic!("unparseable response ({e}) to {packet:02x?}: {out:02x?}"));
    assert_eq!(&out[..2], &packet[..2], "ID not echoed");
    let limit = match transport {
        Transport::Tcp => 65_535,
        Transport::Udp => m.edns.as_ref().map_or(512, |e| usize::from(e.max_payload())),
    };
    assert!(out.len() <= limit, "{} bytes over {limit}", out.len());
}

fn main() {
    let servers = [responder(true, false), responder(false, false), responder(true, true), responder(false, true)];
    // (a panic is the crash AFL looks for: nothing is used after one)
    let state = std::panic::AssertUnwindSafe(std::cell::RefCell::new((Vec::new(), 0u64)));
    let servers = std::panic::AssertUnwindSafe(servers);
    afl::fuzz!(|data: &[u8]| {
        let Some((&mode, input)) = data.split_first() else { return };
        let server = &servers[usize::from(mode >> 1 & 3)];
        let mut state = state.borrow_mut();
        let (out, n) = &mut *state;
        *n += 1;
        let n = *n;
        let client = IpAddr::V4(Ipv4Addr::new(10, 0, 0, (mode >> 3) & 3));
        let mut ask = |packet: &[u8], transport| {
            let first = Ask { may_hold: true, ..Ask::new(packet, client, transport, n / 64) };
            let mut reply = server.respond(&first, out);
            if reply == Reply::Hold {
                reply = server.respond(&Ask { released: true, ..Ask::new(packet, client, transport, n / 64) }, out);
                assert_ne!(reply, Reply::Hold, "held again after release");
            }
            if reply == Reply::Send {
                check(packet, out, transport);
            }
        };
        if mode & 1 == 0 {
            ask(input, Transport::Udp);
        } else {
            let (mut codec, mut stream) = (message_codec(), BytesMut::from(input));
            while let Ok(Some(message)) = codec.decode(&mut stream) {
                ask(&message, Transport::Tcp);
            }
        }
    });
}
