//! Locality (SPEC §8): the locations nodes are in, where a client is, and how far an
//! answer depended on it.
//!
//! Location labels are interned once per config into [`LocationId`]s, so the answer
//! path compares small integers. The `[[locality.network]]` prefixes live in a binary
//! trie per address family ([`Networks`]): placing a client is one walk down at most
//! 32 or 128 bits, whatever the number of networks.
//!
//! [`place`] decides a client's location: the ECS subnet (RFC 7871) when `ecs` is on and
//! its source prefix is not 0, else the packet's source address, matched by longest
//! prefix; else `default`; else unknown. It also returns the ECS SCOPE PREFIX-LENGTH an
//! answer that depends on the location carries: the matched network's length, raised
//! when a more specific network lies inside it on the client's side, so that a resolver
//! caching the answer for `address/scope` never serves it to a client another network
//! would place elsewhere (SPEC-silent refinement; see docs/design.md); when no network
//! matches, the source prefix length.

use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;

/// An interned location label: an index into [`Locations`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LocationId(pub u16);

impl LocationId {
    pub fn index(self) -> usize {
        usize::from(self.0)
    }
}

/// Every location label a config names (nodes, networks, `default`), in first-seen order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Locations {
    names: Vec<String>,
}

impl Locations {
    /// The id of `label`, added if new; `None` past 65,536 distinct labels.
    pub fn intern(&mut self, label: &str) -> Option<LocationId> {
        if let Some(i) = self.names.iter().position(|n| n == label) {
            return Some(LocationId(i as u16));
        }
        let id = u16::try_from(self.names.len()).ok()?;
        self.names.push(label.to_owned());
        Some(LocationId(id))
    }

    pub fn name(&self, id: LocationId) -> &str {
        self.names.get(id.index()).map_or("?", String::as_str)
    }

    pub fn len(&self) -> usize {
        self.names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }
}

/// The validated `[locality]` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Locality {
    /// Whether the ECS option resolvers send places the client.
    pub ecs: bool,
    /// The location of clients no network matches.
    pub default: Option<LocationId>,
    pub networks: Networks,
}

/// How a client was placed (shown in TXT: `via <ecs|source|default>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// A network matched the ECS subnet.
    Ecs,
    /// A network matched the packet's source address.
    Source,
    /// No network matched: `default`, or unknown without one.
    Default,
}

impl Via {
    pub fn as_str(self) -> &'static str {
        match self {
            Via::Ecs => "ecs",
            Via::Source => "source",
            Via::Default => "default",
        }
    }
}

/// The address a client was placed by: the ECS subnet or the source address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddr {
    pub ip: IpAddr,
    /// The ECS source prefix length; `None` for the source address.
    pub prefix: Option<u8>,
}

impl fmt::Display for ClientAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.prefix {
            Some(p) => write!(f, "{}/{p}", self.ip),
            None => write!(f, "{}", self.ip),
        }
    }
}

/// Where a client is, for one query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Placement {
    pub client: ClientAddr,
    pub location: Option<LocationId>,
    pub via: Via,
    /// The ECS SCOPE PREFIX-LENGTH of an answer that depends on the location (only
    /// meaningful when the client was placed by ECS, or the query carried ECS).
    pub scope: u8,
}

/// An ECS subnet from a query: the address (bits past the prefix zero) and its source
/// prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Subnet {
    pub ip: IpAddr,
    pub prefix: u8,
}

/// Places a client: by `ecs` (when used and its prefix is not 0), else by `source`.
pub fn place(locality: &Locality, source: IpAddr, ecs: Option<Subnet>) -> Placement {
    let by_ecs = ecs.filter(|s| locality.ecs && s.prefix > 0);
    let (client, known, via) = match by_ecs {
        Some(s) => (ClientAddr { ip: s.ip, prefix: Some(s.prefix) }, s.prefix, Via::Ecs),
        None => {
            let ip = source.to_canonical();
            (ClientAddr { ip, prefix: None }, if ip.is_ipv4() { 32 } else { 128 }, Via::Source)
        }
    };
    let found = locality.networks.lookup(client.ip, known);
    match found.matched {
        Some(location) => Placement { client, location: Some(location), via, scope: found.scope },
        None => Placement { client, location: locality.default, via: Via::Default, scope: known },
    }
}

/// The `[[locality.network]]` prefixes, one trie per family.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Networks {
    v4: Trie,
    v6: Trie,
    len: usize,
}

/// What a lookup found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Found {
    /// The location of the longest matching network.
    pub matched: Option<LocationId>,
    /// How many leading bits decided it: every address sharing that many bits with the
    /// looked-up one gets the same result (at most the known bits).
    pub scope: u8,
}

impl Networks {
    /// Adds a network (host bits zero); `Err` with the earlier location when the same
    /// prefix is already listed.
    pub fn insert(&mut self, net: IpNet, location: LocationId) -> Result<(), LocationId> {
        let (trie, bits, width) = match net {
            IpNet::V4(n) => (&mut self.v4, u128::from(u32::from(n.network())), 32),
            IpNet::V6(n) => (&mut self.v6, u128::from(n.network()), 128),
        };
        trie.insert(bits, width, net.prefix_len(), location)?;
        self.len += 1;
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The longest network holding `ip`, looking at its first `known` bits only.
    pub fn lookup(&self, ip: IpAddr, known: u8) -> Found {
        match ip {
            IpAddr::V4(v4) => self.v4.lookup(u128::from(u32::from(v4)), 32, known.min(32)),
            IpAddr::V6(v6) => self.v6.lookup(u128::from(v6), 128, known.min(128)),
        }
    }
}

/// A binary trie over address bits, nodes in one vector (node 0 is the root).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Trie {
    nodes: Vec<TrieNode>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct TrieNode {
    /// Child per next bit; 0 = none (the root is never a child).
    child: [u32; 2],
    location: Option<LocationId>,
}

impl Default for Trie {
    fn default() -> Self {
        Trie { nodes: vec![TrieNode::default()] }
    }
}

fn bit(bits: u128, width: u8, depth: u8) -> usize {
    (bits >> (width - 1 - depth) & 1) as usize
}

impl Trie {
    fn insert(&mut self, bits: u128, width: u8, len: u8, location: LocationId) -> Result<(), LocationId> {
        let mut at = 0usize;
        for depth in 0..len {
            let b = bit(bits, width, depth);
            at = match self.nodes[at].child[b] {
                0 => {
                    self.nodes.push(TrieNode::default());
                    let new = self.nodes.len() - 1;
                    self.nodes[at].child[b] = new as u32;
                    new
                }
                next => next as usize,
            };
        }
        match self.nodes[at].location {
            Some(earlier) => Err(earlier),
            None => {
                self.nodes[at].location = Some(location);
                Ok(())
            }
        }
    }

    fn lookup(&self, bits: u128, width: u8, known: u8) -> Found {
        let mut at = 0usize;
        let mut depth = 0u8;
        let mut matched = self.nodes[0].location;
        while depth < known {
            let next = self.nodes[at].child[bit(bits, width, depth)];
            if next == 0 {
                break;
            }
            at = next as usize;
            depth += 1;
            if let Some(l) = self.nodes[at].location {
                matched = Some(l);
            }
        }
        // Stopped inside the known bits where the path leaves the trie: one more bit
        // tells this address apart from a network beside it, if there is one.
        let forks = self.nodes[at].child != [0, 0];
        let scope = if depth < known && forks { depth + 1 } else { depth };
        Found { matched, scope }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::parse_network;

    fn networks(list: &[(&str, u16)]) -> Networks {
        let mut n = Networks::default();
        for (net, loc) in list {
            n.insert(parse_network(net).unwrap(), LocationId(*loc)).unwrap();
        }
        n
    }

    #[test]
    fn longest_prefix_wins_and_scope_covers_what_decided() {
        let nets = networks(&[
            ("10.0.0.0/8", 1),
            ("10.1.0.0/16", 2),
            ("10.1.2.0/24", 3),
            ("192.168.0.0/16", 4),
            ("2001:db8::/32", 5),
            ("2001:db8:1::/48", 6),
            ("0.0.0.0/0", 7),
        ]);
        // (address, known bits, location, scope)
        let cases: &[(&str, u8, Option<u16>, u8)] = &[
            ("10.1.2.3", 32, Some(3), 24),
            ("10.1.3.3", 32, Some(2), 24), // 10.1.2.0/24 sits beside it: /23 would not do
            ("10.1.128.1", 32, Some(2), 17),
            ("10.2.0.1", 32, Some(1), 15), // 10.1/16 differs in the 15th bit
            ("10.200.0.1", 32, Some(1), 9),
            ("192.168.77.1", 32, Some(4), 16),
            ("11.0.0.1", 32, Some(7), 8),  // 10/8 beside it
            ("200.0.0.1", 32, Some(7), 5), // 11001000 leaves 192 (11000000) at the 5th bit
            // ECS subnets: only the known bits count
            ("10.1.2.0", 24, Some(3), 24),
            ("10.1.0.0", 16, Some(2), 16), // a /24 inside: cannot tell, so the client's whole /16
            ("10.0.0.0", 8, Some(1), 8),
            ("2001:db8:1::", 56, Some(6), 48),
            ("2001:db8:2::", 56, Some(5), 47),
            ("2001:db9::", 48, None, 32),
        ];
        for &(ip, known, loc, scope) in cases {
            let got = nets.lookup(ip.parse().unwrap(), known);
            assert_eq!(got, Found { matched: loc.map(LocationId), scope }, "{ip}/{known}");
        }
    }

    #[test]
    fn a_prefix_listed_twice_is_refused() {
        let mut n = networks(&[("10.0.0.0/8", 1)]);
        assert_eq!(n.insert(parse_network("10.0.0.0/8").unwrap(), LocationId(2)), Err(LocationId(1)));
        assert!(n.insert(parse_network("10.0.0.0/9").unwrap(), LocationId(2)).is_ok());
        assert_eq!(n.len(), 2);
    }

    fn locality(ecs: bool, default: Option<u16>) -> Locality {
        Locality {
            ecs,
            default: default.map(LocationId),
            networks: networks(&[("127.0.1.0/24", 0), ("10.2.0.0/16", 1)]),
        }
    }

    fn subnet(text: &str) -> Option<Subnet> {
        let net: IpNet = text.parse().unwrap();
        Some(Subnet { ip: net.addr(), prefix: net.prefix_len() })
    }

    #[test]
    fn clients_are_placed_by_ecs_then_source_then_default() {
        let src: IpAddr = "127.0.1.9".parse().unwrap();
        let far: IpAddr = "192.0.2.1".parse().unwrap();
        type Case = (bool, Option<u16>, IpAddr, Option<Subnet>, Option<u16>, Via, u8, &'static str);
        let cases: Vec<Case> = vec![
            (true, None, src, None, Some(0), Via::Source, 24, "127.0.1.9"),
            (true, None, src, subnet("10.2.3.0/24"), Some(1), Via::Ecs, 16, "10.2.3.0/24"),
            // ECS off, or a /0 subnet: the source decides
            (false, None, src, subnet("10.2.3.0/24"), Some(0), Via::Source, 24, "127.0.1.9"),
            (true, None, src, subnet("0.0.0.0/0"), Some(0), Via::Source, 24, "127.0.1.9"),
            // no network: default (or unknown), scope = what the client told us
            (true, Some(1), far, None, Some(1), Via::Default, 32, "192.0.2.1"),
            (true, None, far, None, None, Via::Default, 32, "192.0.2.1"),
            (true, Some(0), src, subnet("10.3.0.0/20"), Some(0), Via::Default, 20, "10.3.0.0/20"),
            // an IPv4 client through a dual-stack socket is its IPv4 address
            (true, None, "::ffff:127.0.1.9".parse().unwrap(), None, Some(0), Via::Source, 24, "127.0.1.9"),
        ];
        for (i, (ecs, default, source, subnet, want, via, scope, shown)) in cases.into_iter().enumerate() {
            let p = place(&locality(ecs, default), source, subnet);
            assert_eq!((p.location, p.via, p.scope), (want.map(LocationId), via, scope), "case {i}");
            assert_eq!(p.client.to_string(), shown, "case {i}");
        }
    }

    #[test]
    fn labels_are_interned_once() {
        let mut l = Locations::default();
        assert_eq!(l.intern("a"), Some(LocationId(0)));
        assert_eq!(l.intern("b"), Some(LocationId(1)));
        assert_eq!(l.intern("a"), Some(LocationId(0)));
        assert_eq!((l.len(), l.name(LocationId(1)), l.name(LocationId(9))), (2, "b", "?"));
    }
}
