//! The TOML as written: a serde mirror with `deny_unknown_fields` and spans, plus a
//! generic spanned tree used to name the key behind a serde error.
//!
//! Required keys are `Option` here so that `validate` can report them with the
//! cluster's and node's names; only syntax, type and unknown-key errors come from serde.

use std::fmt;
use std::ops::Range;

use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use toml::Spanned;

pub type S<T> = Option<Spanned<T>>;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    pub dns: Option<RawDns>,
    pub http: Option<RawHttp>,
    pub probe: Option<RawProbe>,
    pub locality: Option<RawLocality>,
    #[serde(default)]
    pub cluster: Vec<Spanned<RawCluster>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDns {
    pub listen: S<Vec<Spanned<String>>>,
    pub zone: S<String>,
    pub ttl: S<Scalar>,
    pub negative_ttl: S<Scalar>,
    pub nameservers: S<Vec<Spanned<RawNameserver>>>,
    pub nsid: S<String>,
    pub allow: S<Vec<Spanned<String>>>,
    pub limits: S<RawLimits>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLimits {
    pub tcp_connections: S<i64>,
    pub tcp_connections_per_client: S<i64>,
    pub tcp_idle: S<Scalar>,
    pub tcp_lifetime: S<Scalar>,
    pub rate: S<i64>,
    pub rate_prefix_v4: S<i64>,
    pub rate_prefix_v6: S<i64>,
    pub slip: S<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawNameserver {
    pub name: S<String>,
    pub address: S<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHttp {
    pub listen: S<String>,
    pub allow: S<Vec<Spanned<String>>>,
    pub agent_listen: S<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawProbe {
    pub interval: S<Scalar>,
    pub timeout: S<Scalar>,
    pub fall: S<i64>,
    pub rise: S<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLocality {
    pub ecs: S<bool>,
    pub default: S<String>,
    #[serde(default)]
    pub network: Vec<Spanned<RawNetwork>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawNetwork {
    pub prefix: S<String>,
    pub location: S<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCluster {
    pub name: S<String>,
    pub read: S<String>,
    pub write: S<String>,
    pub max_lag: S<Scalar>,
    pub max_lag_bytes: S<Scalar>,
    pub answers: S<Scalar>,
    pub fallback: S<String>,
    pub locality: S<String>,
    pub patroni: S<Vec<Spanned<String>>>,
    pub node_dsn: S<String>,
    pub discovery_interval: S<Scalar>,
    pub read_nodes: S<Vec<Spanned<String>>>,
    #[serde(default)]
    pub endpoint: Vec<Spanned<RawEndpoint>>,
    #[serde(default)]
    pub node: Vec<Spanned<RawNode>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawEndpoint {
    pub name: S<String>,
    pub nodes: S<Vec<Spanned<String>>>,
    pub max_lag: S<Scalar>,
    pub max_lag_bytes: S<Scalar>,
    pub answers: S<Scalar>,
    pub fallback: S<String>,
    pub locality: S<String>,
}

/// The policy keys shared by `[[cluster]]` and `[[cluster.endpoint]]`, borrowed.
/// (Not a `#[serde(flatten)]` struct: flatten loses spans and `deny_unknown_fields`.)
pub struct RawPolicy<'a> {
    pub max_lag: &'a S<Scalar>,
    pub max_lag_bytes: &'a S<Scalar>,
    pub answers: &'a S<Scalar>,
    pub fallback: &'a S<String>,
    pub locality: &'a S<String>,
}

impl RawCluster {
    pub fn policy(&self) -> RawPolicy<'_> {
        RawPolicy {
            max_lag: &self.max_lag,
            max_lag_bytes: &self.max_lag_bytes,
            answers: &self.answers,
            fallback: &self.fallback,
            locality: &self.locality,
        }
    }
}

impl RawEndpoint {
    pub fn policy(&self) -> RawPolicy<'_> {
        RawPolicy {
            max_lag: &self.max_lag,
            max_lag_bytes: &self.max_lag_bytes,
            answers: &self.answers,
            fallback: &self.fallback,
            locality: &self.locality,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawNode {
    pub name: S<String>,
    pub address: S<String>,
    pub port: S<i64>,
    pub dsn: S<String>,
    pub weight: S<i64>,
    pub password_file: S<String>,
    pub location: S<String>,
}

/// A value that may be written as a string or an integer (`answers = 1` / `"all"`,
/// `max_lag_bytes = 4096` / `"16MiB"`); validation decides what each key accepts.
#[derive(Debug, Clone, PartialEq)]
pub enum Scalar {
    Int(i64),
    Str(String),
}

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct ScalarVisitor;
        impl Visitor<'_> for ScalarVisitor {
            type Value = Scalar;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string or an integer")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Scalar, E> {
                Ok(Scalar::Int(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Scalar, E> {
                i64::try_from(v).map(Scalar::Int).map_err(|_| E::custom("integer too large"))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Scalar, E> {
                Ok(Scalar::Str(v.to_owned()))
            }
        }
        d.deserialize_any(ScalarVisitor)
    }
}

/// Any TOML document with the span of every key and value, so an error's byte offset
/// can be turned back into the key path it belongs to.
#[derive(Debug)]
pub enum Tree {
    Table(Vec<(Spanned<String>, Spanned<Tree>)>),
    Array(Vec<Spanned<Tree>>),
    /// A scalar; strings keep their text (for `name` keys used in paths).
    Leaf(Option<String>),
}

impl Tree {
    /// The `name = "..."` string of a table, if it has one.
    pub fn name(&self) -> Option<&str> {
        let Tree::Table(entries) = self else {
            return None;
        };
        entries.iter().find(|(k, _)| k.get_ref() == "name").and_then(|(_, v)| match v.get_ref() {
            Tree::Leaf(Some(s)) => Some(s.as_str()),
            _ => None,
        })
    }
}

impl<'de> Deserialize<'de> for Tree {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(TreeVisitor)
    }
}

struct TreeVisitor;

impl<'de> Visitor<'de> for TreeVisitor {
    type Value = Tree;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any TOML value")
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Tree, E> {
        Ok(Tree::Leaf(None))
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Tree, E> {
        Ok(Tree::Leaf(None))
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Tree, E> {
        Ok(Tree::Leaf(None))
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Tree, E> {
        Ok(Tree::Leaf(None))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Tree, E> {
        Ok(Tree::Leaf(Some(v.to_owned())))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Tree, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Spanned<Tree>>()? {
            items.push(item);
        }
        Ok(Tree::Array(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Tree, A::Error> {
        let mut entries = Vec::new();
        while let Some(key) = map.next_key::<Spanned<String>>()? {
            let value = map.next_value::<Spanned<Tree>>()?;
            entries.push((key, value));
        }
        Ok(Tree::Table(entries))
    }
}

/// The key path (`cluster[main].node[pg1].weigth`) of the key or value whose span
/// holds `offset`, preferring the innermost match.
pub fn path_at(tree: &Tree, offset: usize) -> Option<String> {
    let mut path = String::new();
    find(tree, offset, &mut path).then_some(path)
}

fn contains(span: Range<usize>, offset: usize) -> bool {
    span.start <= offset && offset < span.end.max(span.start + 1)
}

fn find(tree: &Tree, offset: usize, path: &mut String) -> bool {
    match tree {
        Tree::Table(entries) => entries.iter().any(|(key, value)| {
            let len = path.len();
            if !path.is_empty() {
                path.push('.');
            }
            path.push_str(key.get_ref());
            if find(value.get_ref(), offset, path) || contains(key.span(), offset) || contains(value.span(), offset) {
                return true;
            }
            path.truncate(len);
            false
        }),
        Tree::Array(items) => items.iter().enumerate().any(|(i, item)| {
            let len = path.len();
            match item.get_ref().name() {
                Some(name) => path.push_str(&format!("[{name}]")),
                None => path.push_str(&format!("[{i}]")),
            }
            if find(item.get_ref(), offset, path) || contains(item.span(), offset) {
                return true;
            }
            path.truncate(len);
            false
        }),
        Tree::Leaf(_) => false,
    }
}
