//! DNS: query-name parsing (`name`), the SPEC §5 answer table (`answer`), wire records
//! derived from a snapshot (`records`), and the hickory-server adapter (`server`).

pub mod answer;
pub mod name;
pub mod records;
pub mod server;

pub use server::DnsServer;

#[cfg(test)]
mod testdata;

#[cfg(test)]
mod layering {
    /// Only `dns/server.rs` may name the DNS server library.
    #[test]
    fn only_the_adapter_names_the_server_library() {
        let needle = concat!("hickory", "_server::");
        let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut offenders = Vec::new();
        let mut dirs = vec![src.clone()];
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    dirs.push(path);
                } else if path.extension().is_some_and(|e| e == "rs")
                    && path != src.join("dns").join("server.rs")
                    && std::fs::read_to_string(&path).unwrap().contains(needle)
                {
                    offenders.push(path);
                }
            }
        }
        assert!(
            offenders.is_empty(),
            "{needle} named outside dns/server.rs: {offenders:?}"
        );
    }
}
