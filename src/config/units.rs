//! Units in config values: durations (`250ms`, `1s`, `2m`) and sizes (`16MiB`).

use std::time::Duration;

/// Parses `250ms`, `1s`, `1.5s`, `2m`, `1h`.
pub fn parse_duration(_text: &str) -> Result<Duration, String> {
    todo!()
}

/// Parses `16MiB`, `512kB`, `1GiB`, `4096` (bytes).
pub fn parse_size(_text: &str) -> Result<u64, String> {
    todo!()
}

/// Short human form: `0ms`, `87ms`, `1.5s`, `2m`.
pub fn format_duration(d: Duration) -> String {
    format!("{}ms", d.as_millis())
}

/// Short human form of a byte count: `16MiB`, `1234B`.
pub fn format_size(bytes: u64) -> String {
    format!("{bytes}B")
}
