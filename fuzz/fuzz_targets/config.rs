//! Fuzz target `config`: any bytes that are UTF-8 go to `Config::parse` as a config file's
//! text. An `Err` is the expected answer to nonsense; a panic (or an overflow, with the
//! fuzz profile's overflow checks) is a bug.

fn main() {
    afl::fuzz!(|data: &[u8]| {
        if let Ok(text) = std::str::from_utf8(data) {
            let _ = lagdns::config::Config::parse(text, "fuzz.toml");
        }
    });
}
