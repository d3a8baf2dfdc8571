//! Logging setup: `--log-format json|text`, `--log-level`.
