//! Response-rate limiting over UDP, as Knot, NSD and BIND do it: responses are counted
//! per client prefix (`rate_prefix_v4`/`_v6`) in one-second windows; over `rate`, every
//! `slip`th response is sent truncated (TC, no records: a real client retries over TCP,
//! which a spoofed source cannot) and the others are dropped.
//!
//! Memory is fixed: a table of 2^16 slots of one atomic word each (512 KiB), indexed by
//! a keyed hash of the prefix. A slot holds a tag of the prefix, the window's second and
//! the count; a prefix that lands on a slot held by another takes it over (counting
//! restarts), so the table never grows with the number of sources. Counting is lock-free
//! and approximate under races, which only ever lets a response or two more through.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::config::DnsLimits;

/// Slots in the table (a power of two).
const SLOTS: usize = 1 << 16;
/// Largest count a slot holds (24 bits); the rate is validated below it.
pub const MAX_RATE: u32 = (1 << 24) - 2;

/// What to do with one response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Send,
    /// Send it truncated: TC set, no records.
    Slip,
    Drop,
}

pub struct RateLimiter {
    slots: Box<[AtomicU64]>,
    seed: u64,
}

impl RateLimiter {
    /// A table with a random hash key (so a client cannot aim at another's slot).
    pub fn new() -> RateLimiter {
        RateLimiter::with_seed(rand::random())
    }

    pub fn with_seed(seed: u64) -> RateLimiter {
        RateLimiter { slots: (0..SLOTS).map(|_| AtomicU64::new(0)).collect(), seed }
    }

    /// Counts one response to `client` in second `now` and says what to do with it.
    pub fn check(&self, client: IpAddr, now: u64, limits: &DnsLimits) -> Verdict {
        if limits.rate == 0 {
            return Verdict::Send;
        }
        let hash = mix(prefix_key(client, limits.rate_prefix_v4, limits.rate_prefix_v6) ^ u128::from(self.seed));
        let slot = &self.slots[(hash as usize) & (SLOTS - 1)];
        let tag = (hash >> 40) as u32 & 0xFF_FFFF;
        let second = now as u16;
        let mut current = slot.load(Ordering::Relaxed);
        let count = loop {
            let (t, s, c) = unpack(current);
            let next = if t == tag && s == second { (c + 1).min(MAX_RATE + 1) } else { 1 };
            match slot.compare_exchange_weak(current, pack(tag, second, next), Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => break next,
                Err(seen) => current = seen,
            }
        };
        if count <= limits.rate {
            return Verdict::Send;
        }
        let over = count - limits.rate;
        if limits.slip > 0 && over % limits.slip == 0 {
            Verdict::Slip
        } else {
            Verdict::Drop
        }
    }
}

impl Default for RateLimiter {
    fn default() -> Self {
        RateLimiter::new()
    }
}

/// The client's prefix as one integer, the family in the top bit.
fn prefix_key(client: IpAddr, v4: u8, v6: u8) -> u128 {
    match client.to_canonical() {
        IpAddr::V4(ip) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(v4.min(32))).unwrap_or(0);
            u128::from(u32::from(ip) & mask) | 1 << 127
        }
        IpAddr::V6(ip) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(v6.min(128))).unwrap_or(0);
            u128::from(ip) & mask & !(1 << 127)
        }
    }
}

/// A 64-bit mix of the key (splitmix64's finaliser over both halves).
fn mix(key: u128) -> u64 {
    let mut x = (key as u64) ^ ((key >> 64) as u64).rotate_left(29).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    x ^= x >> 30;
    x = x.wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x ^= x >> 27;
    x = x.wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

fn pack(tag: u32, second: u16, count: u32) -> u64 {
    u64::from(tag) << 40 | u64::from(second) << 24 | u64::from(count & 0xFF_FFFF)
}

fn unpack(v: u64) -> (u32, u16, u32) {
    ((v >> 40) as u32, (v >> 24) as u16, (v & 0xFF_FFFF) as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(rate: u32, slip: u32) -> DnsLimits {
        DnsLimits { rate, slip, ..DnsLimits::default() }
    }

    fn run(rrl: &RateLimiter, client: &str, now: u64, n: usize, l: &DnsLimits) -> Vec<Verdict> {
        (0..n).map(|_| rrl.check(client.parse().unwrap(), now, l)).collect()
    }

    #[test]
    fn over_the_rate_every_slipth_is_truncated_and_the_rest_dropped() {
        use Verdict::*;
        let rrl = RateLimiter::with_seed(1);
        let l = limits(3, 2);
        assert_eq!(run(&rrl, "192.0.2.1", 10, 8, &l), [Send, Send, Send, Drop, Slip, Drop, Slip, Drop]);
        // the same /24 shares the count; the next second starts again
        assert_eq!(run(&rrl, "192.0.2.200", 10, 1, &l), [Slip]);
        assert_eq!(run(&rrl, "192.0.2.1", 11, 4, &l), [Send, Send, Send, Drop]);
        // another prefix has its own count
        assert_eq!(run(&rrl, "192.0.3.1", 10, 3, &l), [Send, Send, Send]);
        // slip 0 drops all, slip 1 truncates all, rate 0 is off
        assert!(run(&rrl, "198.51.100.1", 5, 10, &limits(2, 0))[2..].iter().all(|v| *v == Drop));
        assert!(run(&rrl, "198.51.100.2", 6, 10, &limits(2, 1))[2..].iter().all(|v| *v == Slip));
        assert!(run(&rrl, "198.51.100.3", 7, 1000, &limits(0, 2)).iter().all(|v| *v == Send));
    }

    #[test]
    fn prefixes_follow_the_configured_lengths() {
        let key = |ip: &str, v4, v6| prefix_key(ip.parse().unwrap(), v4, v6);
        assert_eq!(key("10.1.2.3", 24, 56), key("10.1.2.99", 24, 56));
        assert_ne!(key("10.1.2.3", 32, 56), key("10.1.2.99", 32, 56));
        assert_eq!(key("10.1.2.3", 8, 56), key("10.200.0.1", 8, 56));
        assert_eq!(key("2001:db8:0:1::1", 24, 56), key("2001:db8:0:1:ffff::9", 24, 56));
        assert_ne!(key("2001:db8:0:1::1", 24, 64), key("2001:db8:0:2::1", 24, 64));
        assert_eq!(key("::ffff:10.1.2.3", 24, 56), key("10.1.2.3", 24, 56));
        assert_ne!(key("0.0.0.1", 24, 56), key("::", 24, 128), "families never share a key");
        assert_eq!(key("2001:db8::1", 24, 128), u128::from("2001:db8::1".parse::<std::net::Ipv6Addr>().unwrap()));
    }

    #[test]
    fn memory_is_fixed_whatever_the_number_of_sources() {
        let rrl = RateLimiter::with_seed(7);
        let l = limits(5, 2);
        for i in 0..200_000u32 {
            rrl.check(std::net::Ipv4Addr::from(i << 8).into(), 1, &l);
        }
        assert_eq!(rrl.slots.len(), SLOTS);
        // a busy source is still limited among them
        let v = run(&rrl, "203.0.113.9", 1, 20, &l);
        assert_eq!(v.iter().filter(|v| **v == Verdict::Send).count(), 5, "{v:?}");
    }
}
