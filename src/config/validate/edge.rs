//! The network edge's keys: `[dns] allow`, `[http] allow`, `[http] agent_listen` and
//! `[dns.limits]`.

use std::net::SocketAddr;

use toml::Spanned;

use super::raw::{RawLimits, S};
use super::values::{duration, int_in, socket_addr, Cx};
use super::Result;
use crate::config::DnsLimits;
use crate::net::{parse_network, Allow};

/// Largest `rate` accepted (responses per second per prefix).
const MAX_RATE: i64 = 1_000_000;
/// Largest `slip` accepted (BIND allows 0–10, Knot 0–100).
const MAX_SLIP: i64 = 100;

/// An `allow` list: absent = everyone; empty = an error (it would refuse everyone).
pub(super) fn allow(cx: &Cx, list: &S<Vec<Spanned<String>>>, key: &str) -> Result<Allow> {
    let Some(list) = list else { return Ok(Allow::everyone()) };
    if list.get_ref().is_empty() {
        return Err(cx.err(list.span(), key, "is empty, which would refuse everyone (leave it out to allow everyone)"));
    }
    let mut nets = Vec::with_capacity(list.get_ref().len());
    for (i, item) in list.get_ref().iter().enumerate() {
        let net = parse_network(item.get_ref()).map_err(|m| cx.err(item.span(), &format!("{key}[{i}]"), m))?;
        nets.push(net);
    }
    Ok(Allow::only(nets))
}

/// `[http] agent_listen`: absent = no agent listener. Its address may not be one that
/// `http.listen` or `dns.listen` (whose TCP side it would collide with) already binds;
/// port 0 (any free port) collides with nothing.
pub(super) fn agent_listen(
    cx: &Cx,
    raw: &S<String>,
    http: SocketAddr,
    dns: &[SocketAddr],
) -> Result<Option<SocketAddr>> {
    let Some(raw) = raw else { return Ok(None) };
    let key = "http.agent_listen";
    let addr = socket_addr(cx, raw, key)?;
    let taken = |other: &SocketAddr| addr.port() != 0 && *other == addr;
    if taken(&http) {
        return Err(cx.err(raw.span(), key, format!("{addr} is http.listen's address already")));
    }
    if dns.iter().any(taken) {
        return Err(cx.err(raw.span(), key, format!("{addr} is in dns.listen already (DNS listens on TCP too)")));
    }
    Ok(Some(addr))
}

pub(super) fn limits(cx: &Cx, raw: &S<RawLimits>) -> Result<DnsLimits> {
    let mut out = DnsLimits::default();
    let Some(raw) = raw else { return Ok(out) };
    let raw = raw.get_ref();
    let int = |v: &S<i64>, key: &str, min: i64, max: i64, default: u32| -> Result<u32> {
        let Some(v) = v else { return Ok(default) };
        int_in(cx, v, key, min..=max).map(|n| n as u32)
    };
    let positive = |v: &S<_>, key: &str, default| -> Result<std::time::Duration> {
        let Some(v) = v else { return Ok(default) };
        let d = duration(cx, v, key)?;
        if d.is_zero() {
            return Err(cx.err(v.span(), key, "must be more than 0"));
        }
        Ok(d)
    };
    let max_conns = i64::from(u16::MAX);
    out.tcp_connections = int(&raw.tcp_connections, "dns.limits.tcp_connections", 1, max_conns, out.tcp_connections)?;
    out.tcp_connections_per_client = int(
        &raw.tcp_connections_per_client,
        "dns.limits.tcp_connections_per_client",
        1,
        max_conns,
        out.tcp_connections_per_client,
    )?;
    out.tcp_idle = positive(&raw.tcp_idle, "dns.limits.tcp_idle", out.tcp_idle)?;
    out.tcp_lifetime = positive(&raw.tcp_lifetime, "dns.limits.tcp_lifetime", out.tcp_lifetime)?;
    out.rate = int(&raw.rate, "dns.limits.rate", 0, MAX_RATE, out.rate)?;
    out.rate_prefix_v4 =
        int(&raw.rate_prefix_v4, "dns.limits.rate_prefix_v4", 1, 32, u32::from(out.rate_prefix_v4))? as u8;
    out.rate_prefix_v6 =
        int(&raw.rate_prefix_v6, "dns.limits.rate_prefix_v6", 1, 128, u32::from(out.rate_prefix_v6))? as u8;
    out.slip = int(&raw.slip, "dns.limits.slip", 0, MAX_SLIP, out.slip)?;
    Ok(out)
}
