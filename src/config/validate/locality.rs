//! The locality keys (SPEC §8): a node's `location`, the `[locality]` table with its
//! `[[locality.network]]` prefixes, and `locality = "prefer" | "only" | "ignore"`.

use toml::Spanned;

use super::values::{required, Cx};
use super::Result;
use crate::config::raw::RawLocality;
use crate::config::LocalityPolicy;
use crate::locality::{Locality, LocationId, Locations, Networks};
use crate::net::parse_network;

/// The longest location label.
const MAX_LOCATION: usize = 63;

/// A location label (`eu-west-1a`, `rack-7`, `dc1.row2`): interned as written.
pub(super) fn location(cx: &Cx, v: &Spanned<String>, key: &str, locations: &mut Locations) -> Result<LocationId> {
    let text = v.get_ref();
    let ok = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':');
    if text.is_empty() || text.len() > MAX_LOCATION || !text.bytes().all(ok) {
        let why = format!(
            "{text:?} is not a location label (letters, digits, '-', '_', '.', ':', at most {MAX_LOCATION} characters)"
        );
        return Err(cx.err(v.span(), key, why));
    }
    locations.intern(text).ok_or_else(|| cx.err(v.span(), key, "too many distinct locations (at most 65536)"))
}

/// `[locality]`, or `None` when the table is absent.
pub(super) fn locality(cx: &Cx, raw: &Option<RawLocality>, locations: &mut Locations) -> Result<Option<Locality>> {
    let Some(r) = raw else { return Ok(None) };
    let default = match &r.default {
        Some(v) => Some(location(cx, v, "locality.default", locations)?),
        None => None,
    };
    let mut networks = Networks::default();
    for (i, n) in r.network.iter().enumerate() {
        let key = format!("locality.network[{i}]");
        let prefix = required(cx, &n.get_ref().prefix, n.span(), &format!("{key}.prefix"))?;
        let net = parse_network(prefix.get_ref()).map_err(|m| cx.err(prefix.span(), &format!("{key}.prefix"), m))?;
        let loc = required(cx, &n.get_ref().location, n.span(), &format!("{key}.location"))?;
        let loc = location(cx, loc, &format!("{key}.location"), locations)?;
        if let Err(earlier) = networks.insert(net, loc) {
            let why = format!("{net} is listed twice (first for location {:?})", locations.name(earlier));
            return Err(cx.err(prefix.span(), &format!("{key}.prefix"), why));
        }
    }
    Ok(Some(Locality { ecs: r.ecs.as_ref().is_none_or(|v| *v.get_ref()), default, networks }))
}

pub(super) fn policy(cx: &Cx, v: &Spanned<String>, key: &str) -> Result<LocalityPolicy> {
    match v.get_ref().as_str() {
        "prefer" => Ok(LocalityPolicy::Prefer),
        "only" => Ok(LocalityPolicy::Only),
        "ignore" => Ok(LocalityPolicy::Ignore),
        other => Err(cx.err(v.span(), key, format!("must be \"prefer\", \"only\" or \"ignore\", not {other:?}"))),
    }
}
