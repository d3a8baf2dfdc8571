//! The EDNS Client Subnet option (RFC 7871) on the wire: found in a query's OPT record,
//! checked as §7.1.2 asks (FORMERR for a bad family, a source prefix longer than the
//! address, an address longer or shorter than the prefix needs, or bits set past the
//! prefix), and echoed in the response with the same family, address and source prefix
//! and our SCOPE PREFIX-LENGTH (§7.2).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::locality::Subnet;

/// EDNS option code of ECS.
const OPTION_CODE: u16 = 8;
const OPT_TYPE: u16 = 41;

/// A valid ECS option from a query, kept to echo it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientSubnet {
    family: u16,
    source: u8,
    /// The address bytes as sent (`ceil(source / 8)` of them).
    addr: [u8; 16],
    addr_len: u8,
}

/// Why an ECS option is refused (FORMERR).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum EcsError {
    #[error("ECS option shorter than its fixed part")]
    Short,
    #[error("ECS family {0} is neither IPv4 (1) nor IPv6 (2)")]
    Family(u16),
    #[error("ECS source prefix {0} is longer than the address")]
    PrefixTooLong(u8),
    #[error("ECS address is not as long as its source prefix needs")]
    AddressLength,
    #[error("ECS address has bits set past its source prefix")]
    HostBits,
    #[error("more than one ECS option")]
    Twice,
}

impl ClientSubnet {
    /// Parses an ECS option's data.
    pub fn parse(data: &[u8]) -> Result<ClientSubnet, EcsError> {
        let [f0, f1, source, _scope, addr @ ..] = data else { return Err(EcsError::Short) };
        let family = u16::from_be_bytes([*f0, *f1]);
        let width = match family {
            1 => 32,
            2 => 128,
            other => return Err(EcsError::Family(other)),
        };
        if *source > width {
            return Err(EcsError::PrefixTooLong(*source));
        }
        if addr.len() != usize::from(source.div_ceil(8)) {
            return Err(EcsError::AddressLength);
        }
        let spare = source % 8;
        if let (Some(last), true) = (addr.last(), spare != 0) {
            if last & (0xFF >> spare) != 0 {
                return Err(EcsError::HostBits);
            }
        }
        let mut bytes = [0u8; 16];
        bytes[..addr.len()].copy_from_slice(addr);
        Ok(ClientSubnet { family, source: *source, addr: bytes, addr_len: addr.len() as u8 })
    }

    /// The subnet, for placing the client.
    pub fn subnet(&self) -> Subnet {
        let ip = match self.family {
            1 => IpAddr::V4(Ipv4Addr::new(self.addr[0], self.addr[1], self.addr[2], self.addr[3])),
            _ => IpAddr::V6(Ipv6Addr::from(self.addr)),
        };
        Subnet { ip, prefix: self.source }
    }

    /// The option's length on the wire, code and length included.
    pub fn wire_len(&self) -> usize {
        4 + 4 + usize::from(self.addr_len)
    }

    /// Writes the option (code, length, data) with `scope` as SCOPE PREFIX-LENGTH.
    pub fn write(&self, out: &mut Vec<u8>, scope: u8) {
        out.extend_from_slice(&OPTION_CODE.to_be_bytes());
        out.extend_from_slice(&(4 + u16::from(self.addr_len)).to_be_bytes());
        out.extend_from_slice(&self.family.to_be_bytes());
        out.push(self.source);
        out.push(scope);
        out.extend_from_slice(&self.addr[..usize::from(self.addr_len)]);
    }
}

/// The ECS option of a message whose records start at `records` (after the question
/// section) and number `count` in the answer, authority and additional sections
/// together. The walk is defensive (a record that runs past the packet ends it), so it
/// also serves a message hickory-proto refused to decode because of its ECS option.
pub fn find(packet: &[u8], records: usize, count: usize) -> Result<Option<ClientSubnet>, EcsError> {
    let mut found = None;
    for (rtype, _, rdata) in raw_records(packet, records, count) {
        if rtype == OPT_TYPE {
            for (code, data) in options(rdata) {
                if code == OPTION_CODE {
                    if found.is_some() {
                        return Err(EcsError::Twice);
                    }
                    found = Some(ClientSubnet::parse(data)?);
                }
            }
        }
    }
    Ok(found)
}

/// The UDP payload size and EDNS version of the first OPT record, read from the bytes:
/// for answering (FORMERR, with an OPT as RFC 6891 §6.1.1 requires) a message whose ECS
/// option hickory-proto refused to decode.
pub fn opt_header(packet: &[u8], records: usize, count: usize) -> Option<(u16, u8)> {
    raw_records(packet, records, count)
        .find(|(rtype, ..)| *rtype == OPT_TYPE)
        .map(|(_, fixed, _)| (u16::from_be_bytes([fixed[2], fixed[3]]), fixed[5]))
}

/// Each record as (type, its 10 fixed bytes from the type on, its data), until `count`
/// or the first that runs past the packet.
fn raw_records(packet: &[u8], records: usize, count: usize) -> impl Iterator<Item = (u16, &[u8], &[u8])> {
    let mut at = records;
    (0..count).map_while(move |_| {
        let after_name = skip_name(packet, at)?;
        let fixed = packet.get(after_name..after_name + 10)?;
        let rtype = u16::from_be_bytes([fixed[0], fixed[1]]);
        let rdlen = usize::from(u16::from_be_bytes([fixed[8], fixed[9]]));
        let start = after_name + 10;
        let rdata = packet.get(start..start + rdlen)?;
        at = start + rdlen;
        Some((rtype, fixed, rdata))
    })
}

/// The (code, data) pairs of an OPT record's data.
fn options(mut rdata: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    std::iter::from_fn(move || {
        let [c0, c1, l0, l1, rest @ ..] = rdata else { return None };
        let len = usize::from(u16::from_be_bytes([*l0, *l1]));
        let data = rest.get(..len)?;
        rdata = &rest[len..];
        Some((u16::from_be_bytes([*c0, *c1]), data))
    })
}

/// The offset after the name at `at`.
fn skip_name(packet: &[u8], mut at: usize) -> Option<usize> {
    loop {
        let len = *packet.get(at)?;
        match len {
            0 => return Some(at + 1),
            l if l & 0xC0 == 0xC0 => return Some(at + 2),
            l => at += 1 + usize::from(l),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ecs(family: u16, source: u8, addr: &[u8]) -> Vec<u8> {
        let mut d = family.to_be_bytes().to_vec();
        d.extend_from_slice(&[source, 0]);
        d.extend_from_slice(addr);
        d
    }

    #[test]
    fn options_are_checked_as_rfc_7871_asks() {
        let cases: Vec<(Vec<u8>, Result<&str, EcsError>)> = vec![
            (ecs(1, 24, &[10, 1, 2]), Ok("10.1.2.0/24")),
            (ecs(1, 32, &[10, 1, 2, 3]), Ok("10.1.2.3/32")),
            (ecs(1, 0, &[]), Ok("0.0.0.0/0")),
            (ecs(1, 20, &[10, 1, 0x20]), Ok("10.1.32.0/20")),
            (ecs(2, 56, &[0x20, 0x01, 0x0d, 0xb8, 0, 1, 2]), Ok("2001:db8:1:200::/56")),
            (ecs(3, 24, &[10, 1, 2]), Err(EcsError::Family(3))),
            (ecs(0, 0, &[]), Err(EcsError::Family(0))),
            (ecs(1, 33, &[10, 1, 2, 3, 0]), Err(EcsError::PrefixTooLong(33))),
            (ecs(2, 129, &[0; 17]), Err(EcsError::PrefixTooLong(129))),
            (ecs(1, 24, &[10, 1, 2, 0]), Err(EcsError::AddressLength)),
            (ecs(1, 24, &[10, 1]), Err(EcsError::AddressLength)),
            (ecs(1, 20, &[10, 1, 0x21]), Err(EcsError::HostBits)),
            (ecs(1, 23, &[10, 1, 3]), Err(EcsError::HostBits)),
            (vec![0, 1, 24], Err(EcsError::Short)),
        ];
        for (data, want) in cases {
            let got = ClientSubnet::parse(&data).map(|c| {
                let s = c.subnet();
                format!("{}/{}", s.ip, s.prefix)
            });
            assert_eq!(got.as_deref().map_err(|e| *e), want, "{data:?}");
        }
    }

    #[test]
    fn echo_keeps_family_address_and_source_and_sets_scope() {
        let data = ecs(1, 24, &[10, 1, 2]);
        let c = ClientSubnet::parse(&data).unwrap();
        let mut out = Vec::new();
        c.write(&mut out, 16);
        assert_eq!(out, [0, 8, 0, 7, 0, 1, 24, 16, 10, 1, 2]);
        assert_eq!(c.wire_len(), out.len());
    }

    /// A query for `a.` with an OPT carrying `opts`.
    fn query(opts: &[(u16, Vec<u8>)]) -> Vec<u8> {
        let mut p = vec![0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 1, 1, b'a', 0, 0, 1, 0, 1];
        let mut rdata = Vec::new();
        for (code, data) in opts {
            rdata.extend_from_slice(&code.to_be_bytes());
            rdata.extend_from_slice(&(data.len() as u16).to_be_bytes());
            rdata.extend_from_slice(data);
        }
        p.extend_from_slice(&[0, 0, 41, 4, 208, 0, 0, 0, 0]);
        p.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
        p.extend_from_slice(&rdata);
        p
    }

    #[test]
    fn found_in_the_opt_record_among_other_options() {
        let subnet = ecs(1, 24, &[10, 1, 2]);
        let p = query(&[(3, vec![]), (8, subnet.clone()), (10, vec![1; 8])]);
        let got = find(&p, 19, 1).unwrap().unwrap();
        assert_eq!(got, ClientSubnet::parse(&subnet).unwrap());
        assert_eq!(find(&query(&[(3, vec![])]), 19, 1), Ok(None));
        assert_eq!(find(&query(&[(8, subnet.clone()), (8, subnet)]), 19, 1), Err(EcsError::Twice));
        assert_eq!(find(&query(&[(8, ecs(9, 0, &[]))]), 19, 1), Err(EcsError::Family(9)));
        // the OPT's own fields, read from the bytes: 1232, version 0
        assert_eq!(opt_header(&query(&[(8, ecs(9, 0, &[]))]), 19, 1), Some((1232, 0)));
        assert_eq!(opt_header(&query(&[])[..19], 19, 1), None);
    }
}
