//! A cluster's Patroni keys (SPEC §11): `patroni` (the members' REST APIs), `node_dsn`
//! and `discovery_interval`.

use std::time::Duration;

use super::values::{duration, Cx};
use super::Result;
use crate::config::raw::RawCluster;
use crate::config::{DsnTemplate, PatroniSource, DEFAULT_NODE_DSN};

/// `discovery_interval` when not set.
const DEFAULT_INTERVAL: Duration = Duration::from_secs(1);

/// The cluster's Patroni source, or `None` without `patroni`. `node_dsn` and
/// `discovery_interval` without `patroni` are errors (they would do nothing).
pub(super) fn source(cx: &Cx, c: &RawCluster, key: &str) -> Result<Option<PatroniSource>> {
    let Some(list) = &c.patroni else {
        for (value, name) in [
            (c.node_dsn.as_ref().map(|v| v.span()), "node_dsn"),
            (c.discovery_interval.as_ref().map(|v| v.span()), "discovery_interval"),
        ] {
            if let Some(span) = value {
                return Err(cx.err(
                    span,
                    &format!("{key}.{name}"),
                    "needs `patroni` (the members to discover nodes from)",
                ));
            }
        }
        return Ok(None);
    };
    if list.get_ref().is_empty() {
        return Err(cx.err(list.span(), &format!("{key}.patroni"), "needs at least one member's REST API URL"));
    }
    let mut members = Vec::new();
    for (i, url) in list.get_ref().iter().enumerate() {
        let text = url.get_ref().trim().trim_end_matches('/');
        let rest = text.strip_prefix("http://").unwrap_or("");
        if rest.is_empty() || rest.contains(char::is_whitespace) || rest.contains('/') {
            let why = format!("{:?} is not a REST API URL like \"http://10.0.0.11:8008\"", url.get_ref());
            return Err(cx.err(url.span(), &format!("{key}.patroni[{i}]"), why));
        }
        members.push(text.to_owned());
    }
    let node_dsn = match &c.node_dsn {
        Some(v) => v
            .get_ref()
            .parse::<DsnTemplate>()
            .map_err(|e| cx.err(v.span(), &format!("{key}.node_dsn"), e.to_string()))?,
        None => DEFAULT_NODE_DSN.parse().expect("the default node_dsn"),
    };
    let interval = match &c.discovery_interval {
        Some(v) => {
            let d = duration(cx, v, &format!("{key}.discovery_interval"))?;
            if d < Duration::from_millis(100) {
                return Err(cx.err(v.span(), &format!("{key}.discovery_interval"), "must be at least 100ms"));
            }
            d
        }
        None => DEFAULT_INTERVAL,
    };
    Ok(Some(PatroniSource { members, node_dsn, interval }))
}
