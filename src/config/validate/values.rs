//! Located errors ([`Cx`]) and the checks of single values: durations, sizes, integer
//! ranges, labels, names, addresses, `answers` and `fallback`.

use std::net::{IpAddr, SocketAddr};
use std::ops::{Range, RangeInclusive};
use std::time::Duration;

use toml::Spanned;

use super::Result;
use crate::config::error::Site;
use crate::config::raw::{self, Scalar, S};
use crate::config::units::{parse_duration, parse_size};
use crate::config::{Answers, ConfigError, Fallback};

/// The text being parsed, to turn byte offsets into lines.
pub(super) struct Cx<'a> {
    pub text: &'a str,
    pub file: &'a str,
}

impl Cx<'_> {
    pub(super) fn err(&self, span: Range<usize>, key: &str, message: impl Into<String>) -> ConfigError {
        self.site(span, key).error(message)
    }

    /// The file, line and key of `span`, for an error found later (see `config::files`).
    pub(super) fn site(&self, span: Range<usize>, key: &str) -> Site {
        let end = span.start.min(self.text.len());
        let line = 1 + self.text.as_bytes()[..end].iter().filter(|&&b| b == b'\n').count();
        Site { file: self.file.to_owned(), line, key: key.to_owned() }
    }

    /// A syntax, type or unknown-key error from the TOML parser, with the key it is at.
    pub(super) fn serde_error(&self, e: &toml::de::Error) -> ConfigError {
        let span = e.span().unwrap_or(0..0);
        let key = toml::from_str::<raw::Tree>(self.text)
            .ok()
            .and_then(|tree| raw::path_at(&tree, span.start))
            .unwrap_or_else(|| syntax_key(self.text, span.start));
        let message = e.message().trim().replace('\n', "; ").replace("expected i64", "expected an integer");
        self.err(span, &key, message)
    }
}

/// Best-effort key for text that does not parse as TOML: the last table header before
/// `offset` and the key on the offending line.
pub(super) fn syntax_key(text: &str, offset: usize) -> String {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let line_start = text[..offset].rfind('\n').map_or(0, |i| i + 1);
    let line_end = text[offset..].find('\n').map_or(text.len(), |i| offset + i);
    let header = text[..line_end].lines().map(str::trim).rfind(|l| l.starts_with('[')).map(|l| {
        let l = l.trim_start_matches('[');
        l.split(']').next().unwrap_or(l).trim().to_owned()
    });
    let line = text[line_start..line_end].trim();
    let key = line.split_once('=').map(|(k, _)| k.trim().trim_matches('"').to_owned());
    match (header, key) {
        (Some(h), Some(k)) => format!("{h}.{k}"),
        (Some(h), None) => h,
        (None, Some(k)) => k,
        (None, None) => "toml".to_owned(),
    }
}

pub(super) fn required<'a, T>(cx: &Cx, value: &'a S<T>, table: Range<usize>, key: &str) -> Result<&'a Spanned<T>> {
    value.as_ref().ok_or_else(|| cx.err(table, key, "is required"))
}

/// A cluster or node name: a DNS label, since both are part of the node names
/// `<node>.<cluster>.<zone>` (SPEC §9). Returned as written; compare it lower-cased.
/// Underscores are refused: node names are host names (RFC 952/1123) and SRV targets,
/// and `_` starts the service labels (`_postgresql._tcp`).
pub(super) fn name_label(cx: &Cx, v: &Spanned<String>, key: &str) -> Result<String> {
    let s = v.get_ref();
    if dns_label(s).is_err() {
        let underscore = if s.contains('_') { "; no underscores in host names" } else { "" };
        let message = format!(
            "{s:?} is not a DNS label (letters, digits and inner hyphens, at most 63 characters{underscore}): \
             node names are <node>.<cluster>.<zone>"
        );
        return Err(cx.err(v.span(), key, message));
    }
    Ok(s.clone())
}

/// An integer key within `range`.
pub(super) fn int_in(cx: &Cx, v: &Spanned<i64>, key: &str, range: RangeInclusive<i64>) -> Result<i64> {
    let n = *v.get_ref();
    if !range.contains(&n) {
        let (min, max) = (range.start(), range.end());
        return Err(cx.err(v.span(), key, format!("must be an integer from {min} to {max}, not {n}")));
    }
    Ok(n)
}

pub(super) fn duration(cx: &Cx, v: &Spanned<Scalar>, key: &str) -> Result<Duration> {
    match v.get_ref() {
        Scalar::Str(s) => parse_duration(s).map_err(|m| cx.err(v.span(), key, m)),
        Scalar::Int(n) => Err(cx.err(v.span(), key, format!("a duration needs a unit: write \"{n}ms\" or \"{n}s\""))),
    }
}

pub(super) fn size(cx: &Cx, v: &Spanned<Scalar>, key: &str) -> Result<u64> {
    match v.get_ref() {
        Scalar::Str(s) => parse_size(s).map_err(|m| cx.err(v.span(), key, m)),
        Scalar::Int(n) => u64::try_from(*n).map_err(|_| cx.err(v.span(), key, "must not be negative")),
    }
}

pub(super) fn answers(cx: &Cx, v: &Spanned<Scalar>, key: &str) -> Result<Answers> {
    match v.get_ref() {
        Scalar::Str(s) if s == "all" => Ok(Answers::All),
        Scalar::Int(n) if *n >= 1 => {
            u32::try_from(*n).map(Answers::Count).map_err(|_| cx.err(v.span(), key, "is too large"))
        }
        Scalar::Int(n) => Err(cx.err(v.span(), key, format!("must be an integer of at least 1 or \"all\", not {n}"))),
        Scalar::Str(s) => Err(cx.err(v.span(), key, format!("must be an integer of at least 1 or \"all\", not {s:?}"))),
    }
}

pub(super) fn fallback(cx: &Cx, v: &Spanned<String>, key: &str) -> Result<Fallback> {
    match v.get_ref().as_str() {
        "primary" => Ok(Fallback::Primary),
        "none" => Ok(Fallback::None),
        "open" => Ok(Fallback::Open),
        other => Err(cx.err(v.span(), key, format!("must be \"primary\", \"none\" or \"open\", not {other:?}"))),
    }
}

pub(super) fn ip(cx: &Cx, v: &Spanned<String>, key: &str) -> Result<IpAddr> {
    v.get_ref().parse().map_err(|_| cx.err(v.span(), key, format!("{:?} is not an IPv4 or IPv6 address", v.get_ref())))
}

pub(super) fn socket_addr(cx: &Cx, v: &Spanned<String>, key: &str) -> Result<SocketAddr> {
    v.get_ref().parse().map_err(|_| {
        let msg = format!("{:?} is not an address with a port, like \"127.0.0.1:5353\" or \"[::1]:5353\"", v.get_ref());
        cx.err(v.span(), key, msg)
    })
}

/// A single DNS label, lower-cased: letters, digits and inner hyphens, at most 63.
pub(crate) fn dns_label(text: &str) -> std::result::Result<String, String> {
    let label = text.to_ascii_lowercase();
    let ok_chars = label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    if label.is_empty() || label.len() > 63 || !ok_chars || label.starts_with('-') || label.ends_with('-') {
        return Err(format!("{text:?} is not a DNS label (letters, digits and inner hyphens, at most 63 characters)"));
    }
    Ok(label)
}

/// A domain name, lower-cased, without the trailing dot.
pub(super) fn dns_name(text: &str) -> std::result::Result<String, String> {
    let name = text.strip_suffix('.').unwrap_or(text).to_ascii_lowercase();
    if name.is_empty() || name.len() > 253 || name.split('.').any(|l| dns_label(l).is_err()) {
        return Err(format!("{text:?} is not a domain name like \"db.internal\""));
    }
    Ok(name)
}
