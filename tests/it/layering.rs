//! The architecture, checked: each IO library is named in its one home only, and the
//! decision modules use no clock, no sockets, no database and no runtime.

use std::path::{Path, PathBuf};

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// `src/`-relative paths of the files whose code (comments aside) contains `needle`.
fn naming(needle: &str) -> Vec<String> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    let mut hits: Vec<String> = files
        .into_iter()
        .filter(|f| {
            std::fs::read_to_string(f)
                .unwrap()
                .lines()
                .map(str::trim_start)
                .filter(|l| !l.starts_with("//"))
                .any(|l| l.contains(needle))
        })
        .map(|f| f.strip_prefix(&src).unwrap().display().to_string())
        .collect();
    hits.sort();
    hits
}

#[test]
fn each_io_library_has_one_home() {
    assert!(naming("hickory_server::").is_empty(), "the answer path is ours: hickory-proto parses and encodes");
    // the DNS sockets: bound in dns/server.rs; TCP served by the runtime in dns/tcp.rs,
    // UDP by threads on std sockets in dns/udp.rs (batched IO in dns/mmsg.rs)
    let sockets: Vec<String> = naming("tokio::net::").into_iter().filter(|f| f.starts_with("dns/")).collect();
    assert_eq!(sockets, ["dns/server.rs", "dns/tcp.rs"], "DNS sockets");
    assert_eq!(naming("libc::recvmmsg"), ["dns/mmsg.rs"], "batched UDP IO");
    // config/dsn.rs: each node's DSN is parsed once, at validation, into tokio-postgres's
    // own `Config` (a value; nothing connects there). The probe connects with it.
    assert_eq!(naming("tokio_postgres::"), ["config/dsn.rs", "probe/sql.rs", "probe/task.rs"], "the PostgreSQL client");
    assert_eq!(naming("axum::"), ["http/edge.rs", "http/mod.rs"], "the HTTP library");
}

/// The test cluster is the workspace crate `localpg`, not part of the library: only the
/// demo (cargo feature `demo`) uses it.
#[test]
fn only_the_demo_uses_the_test_cluster() {
    assert_eq!(naming("localpg::"), ["cmd/demo.rs"]);
}

#[test]
fn decision_modules_use_no_clock_socket_database_or_runtime() {
    let decisions = [
        "check.rs",
        "config/dsn.rs",
        "config/dsn/template.rs",
        "config/units.rs",
        "config/validate.rs",
        "config/validate/cluster.rs",
        "config/validate/edge.rs",
        "config/validate/locality.rs",
        "config/validate/values.rs",
        "discovery/merge.rs",
        "dns/answer.rs",
        "dns/ecs.rs",
        "dns/name.rs",
        "dns/rrl.rs",
        "dns/txt.rs",
        "dns/wire.rs",
        "health.rs",
        "lag.rs",
        "locality.rs",
        "net.rs",
        "patroni.rs",
        "select.rs",
        "snapshot.rs",
        "state.rs",
        "testkit.rs",
        "topology.rs",
        "wal.rs",
    ];
    // What a decision module may name anyway, and why: config/dsn.rs parses a DSN into
    // tokio-postgres's `Config`, a plain value (the file IO of validation is config/files.rs).
    let allowed = [("config/dsn.rs", "tokio_postgres")];
    for forbidden in ["::now()", "tokio::", "std::net::UdpSocket", "std::net::TcpStream", "std::fs::", "tokio_postgres"]
    {
        let offenders: Vec<String> = naming(forbidden)
            .into_iter()
            .filter(|f| decisions.contains(&f.as_str()) && !allowed.contains(&(f.as_str(), forbidden)))
            .collect();
        // test code inside a decision file may take a base instant from the clock
        let offenders: Vec<String> = offenders
            .into_iter()
            .filter(|f| {
                let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("src").join(f)).unwrap();
                let code = text.split("#[cfg(test)]").next().unwrap_or_default();
                code.contains(forbidden)
            })
            .collect();
        assert!(offenders.is_empty(), "{forbidden} in decision modules: {offenders:?}");
    }
}

/// Dependencies point down (DESIGN.md): the snapshot is plain domain data that knows
/// nothing of DNS or HTTP, decisions know nothing of the snapshot, and the publisher and
/// its store never name the front ends they feed.
#[test]
fn dependencies_point_down() {
    let never: [(&str, &[&str]); 10] = [
        ("wal.rs", &["crate::"]),
        // discovery decides from Patroni's document and the config alone; what it
        // feeds (probes, snapshots, the front ends) is wired above it
        (
            "patroni.rs",
            &["crate::probe", "crate::state", "crate::snapshot", "crate::publisher", "crate::dns", "crate::http"],
        ),
        ("health.rs", &["crate::"]),
        ("topology.rs", &["crate::snapshot", "crate::state", "crate::dns", "crate::http", "crate::metrics"]),
        ("snapshot.rs", &["crate::state", "crate::publisher", "crate::dns", "crate::http", "crate::metrics"]),
        ("check.rs", &["crate::state", "crate::publisher", "crate::dns", "crate::http", "crate::metrics"]),
        ("state.rs", &["crate::publisher", "crate::dns", "crate::http", "crate::metrics"]),
        ("store.rs", &["crate::dns", "crate::http", "crate::metrics"]),
        ("publisher.rs", &["crate::dns", "crate::http", "crate::metrics"]),
        ("metrics.rs", &["crate::http", "crate::dns::server", "crate::dns::answer"]),
    ];
    for (file, forbidden) in never {
        let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("src").join(file)).unwrap();
        let code = text.split("#[cfg(test)]").next().unwrap_or_default();
        for needle in forbidden {
            let hit = code.lines().map(str::trim_start).filter(|l| !l.starts_with("//")).find(|l| l.contains(needle));
            assert!(hit.is_none(), "{file} names {needle}: {hit:?}");
        }
    }
    // and nothing under dns/ counts its own metrics or serves HTTP
    for needle in ["crate::metrics", "crate::http"] {
        let offenders: Vec<String> = naming(needle).into_iter().filter(|f| f.starts_with("dns/")).collect();
        assert!(offenders.is_empty(), "{needle} in {offenders:?}");
    }
}
