//! The TOML as written: a serde mirror with `deny_unknown_fields` and spans.
