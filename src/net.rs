//! Networks as operators write them (`10.0.0.0/8`, `::1/128`, or a bare address), and
//! [`Allow`], the list of networks a listener admits: `[dns] allow` and `[http] allow`.
//!
//! Matching is a scan over masked integers (a handful of entries in practice), cheap
//! enough to run on every packet before anything else. An IPv4 client seen through a
//! dual-stack socket (`::ffff:10.0.0.1`) is matched as the IPv4 address it is.

use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;

/// A network in CIDR form; a bare address is a /32 or /128. A network with host bits
/// set (`10.0.0.1/8`) is refused, since it is almost always a typo.
pub fn parse_network(text: &str) -> Result<IpNet, String> {
    let text = text.trim();
    let net = match text.parse::<IpNet>() {
        Ok(net) => net,
        Err(_) => match text.parse::<IpAddr>() {
            Ok(ip) => IpNet::from(ip),
            Err(_) => return Err(format!("{text:?} is not a network like \"10.0.0.0/8\", \"::1/128\" or an address")),
        },
    };
    if net.trunc() != net {
        return Err(format!("{text:?} has host bits set: write {}", net.trunc()));
    }
    Ok(net)
}

/// Who may use a listener: everyone, or the clients inside one of the networks.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Allow {
    /// `None`: everyone.
    nets: Option<Nets>,
}

#[derive(Clone, PartialEq, Eq)]
struct Nets {
    /// (network, mask) pairs, as integers.
    v4: Vec<(u32, u32)>,
    v6: Vec<(u128, u128)>,
    listed: Vec<IpNet>,
}

impl Allow {
    /// Admits every client (the default).
    pub fn everyone() -> Allow {
        Allow { nets: None }
    }

    /// Admits the clients inside one of `nets`.
    pub fn only(nets: Vec<IpNet>) -> Allow {
        let mut v4 = Vec::new();
        let mut v6 = Vec::new();
        for net in &nets {
            match net {
                IpNet::V4(n) => v4.push((u32::from(n.network()), u32::from(n.netmask()))),
                IpNet::V6(n) => v6.push((u128::from(n.network()), u128::from(n.netmask()))),
            }
        }
        Allow { nets: Some(Nets { v4, v6, listed: nets }) }
    }

    /// Whether `client` may ask.
    pub fn admits(&self, client: IpAddr) -> bool {
        let Some(nets) = &self.nets else { return true };
        match client.to_canonical() {
            IpAddr::V4(ip) => {
                let ip = u32::from(ip);
                nets.v4.iter().any(|&(net, mask)| ip & mask == net)
            }
            IpAddr::V6(ip) => {
                let ip = u128::from(ip);
                nets.v6.iter().any(|&(net, mask)| ip & mask == net)
            }
        }
    }

    /// The networks as listed, or `None` for everyone.
    pub fn networks(&self) -> Option<&[IpNet]> {
        self.nets.as_ref().map(|n| n.listed.as_slice())
    }
}

impl fmt::Debug for Allow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.networks() {
            None => f.write_str("everyone"),
            Some(nets) => f.debug_list().entries(nets.iter().map(|n| n.to_string())).finish(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allow(nets: &[&str]) -> Allow {
        Allow::only(nets.iter().map(|n| parse_network(n).unwrap()).collect())
    }

    #[test]
    fn networks_parse_as_written_and_typos_are_refused() {
        let cases: [(&str, Result<&str, &str>); 8] = [
            ("10.0.0.0/8", Ok("10.0.0.0/8")),
            (" 127.0.0.1 ", Ok("127.0.0.1/32")),
            ("::1", Ok("::1/128")),
            ("2001:db8::/32", Ok("2001:db8::/32")),
            ("0.0.0.0/0", Ok("0.0.0.0/0")),
            ("10.0.0.1/8", Err("has host bits set: write 10.0.0.0/8")),
            ("10.0.0.0/33", Err("is not a network")),
            ("db.internal", Err("is not a network")),
        ];
        for (text, want) in cases {
            match (parse_network(text), want) {
                (Ok(net), Ok(w)) => assert_eq!(net.to_string(), w, "{text}"),
                (Err(e), Err(w)) => assert!(e.contains(w), "{text}: {e}"),
                (got, want) => panic!("{text}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn admits_inside_and_refuses_outside() {
        let a = allow(&["10.0.0.0/8", "127.0.0.1/32", "2001:db8::/32"]);
        let cases = [
            ("10.1.2.3", true),
            ("11.0.0.1", false),
            ("127.0.0.1", true),
            ("127.0.0.2", false),
            ("2001:db8::1", true),
            ("2001:db9::1", false),
            ("::ffff:10.9.9.9", true),
            ("::ffff:12.0.0.1", false),
            ("::1", false),
        ];
        for (ip, want) in cases {
            assert_eq!(a.admits(ip.parse().unwrap()), want, "{ip}");
        }
        assert!(Allow::everyone().admits("192.0.2.1".parse().unwrap()));
        assert!(allow(&["0.0.0.0/0"]).admits("192.0.2.1".parse().unwrap()));
        assert!(!allow(&["0.0.0.0/0"]).admits("::2".parse().unwrap()));
        assert_eq!(format!("{a:?}"), r#"["10.0.0.0/8", "127.0.0.1/32", "2001:db8::/32"]"#);
    }
}
