//! Passwords against real PostgreSQL with scram-sha-256 authentication, in libpq's order
//! (SPEC §12): a password in the DSN, then the node's `password_file`, then `PGPASSWORD`.
//! `PGPASSWORD` is given to a real `lagdns serve` process: the test binary's environment
//! is shared by every test, so it is never set here. No password appears in `/status`,
//! `/metrics`, TXT, the log or `check`.

use std::path::Path;
use std::time::Duration;

use crate::common::{eventually, free_port, http_get, query, start_cluster, txt, Proto, ServeProcess};
use hickory_proto::rr::RecordType;

/// The role's password; the others are wrong, and each would fail the login.
const RIGHT: &str = "right-pw-5d1c";
const WRONG_DSN: &str = "wrong-dsn-pw-93ab";
const WRONG_FILE: &str = "wrong-file-pw-7e20";
const WRONG_ENV: &str = "wrong-env-pw-c4f1";

/// One cluster per case (one node each, all the same server): its name, the DSN's
/// password, the `password_file`'s contents, and whether the login succeeds with
/// `PGPASSWORD` = [`WRONG_ENV`].
const CASES: &[(&str, Option<&str>, Option<&str>, bool)] = &[
    // the DSN's password comes first: neither a wrong file nor a wrong environment matters
    ("dsn-over-file-and-env", Some(RIGHT), Some(WRONG_FILE), true),
    ("dsn-over-env", Some(RIGHT), None, true),
    // and it is used even when it is wrong (libpq tries no other source)
    ("dsn-even-if-wrong", Some(WRONG_DSN), Some(RIGHT), false),
    // without one in the DSN, the file beats the environment
    ("file-over-env", None, Some(RIGHT), true),
    // the environment is the last resort (and is sent: the server refuses it)
    ("env-last", None, None, false),
];

fn config(node: &localpg::LocalNode, dir: &Path, ports: (u16, u16)) -> String {
    let mut text = format!(
        "[dns]\nlisten = [\"127.0.0.1:{}\"]\n[http]\nlisten = \"127.0.0.1:{}\"\n\
         [probe]\ninterval = \"200ms\"\ntimeout = \"2s\"\nfall = 2\nrise = 1\n",
        ports.0, ports.1
    );
    for (i, (name, dsn_password, file, _)) in CASES.iter().enumerate() {
        let password = dsn_password.map(|p| format!(" password={p}")).unwrap_or_default();
        text.push_str(&format!(
            "\n[[cluster]]\nname = \"{name}\"\nwrite = \"{name}-write\"\nread = \"{name}-read\"\n\
             [[cluster.node]]\nname = \"pg\"\naddress = \"127.0.1.{}\"\ndsn = \"{}{password}\"\n",
            i + 1,
            node.dsn()
        ));
        if let Some(contents) = file {
            let path = dir.join(format!("{name}.pw"));
            std::fs::write(&path, format!("{contents}\n")).unwrap();
            text.push_str(&format!("password_file = \"{}\"\n", path.display()));
        }
    }
    text
}

/// The one node of cluster `name` in a `/status` document.
fn node_of<'a>(doc: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    let clusters = doc["clusters"].as_array().expect("clusters");
    &clusters.iter().find(|c| c["name"] == name).unwrap_or_else(|| panic!("no cluster {name}"))["nodes"][0]
}

fn assert_no_password(what: &str, text: &str) {
    for secret in [RIGHT, WRONG_DSN, WRONG_FILE, WRONG_ENV] {
        assert!(!text.contains(secret), "{what} shows a password: {text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dsn_password_comes_first_then_password_file_then_pgpassword() {
    let cluster = start_cluster(0).await;
    let node = cluster.primary();
    tokio::task::block_in_place(|| node.require_password("lagdns", RIGHT)).unwrap();
    let dir = cluster.dir().join("password-test");
    std::fs::create_dir_all(&dir).unwrap();
    let ports = (free_port(), free_port());
    let text = config(node, &dir, ports);

    let mut serve = ServeProcess::spawn_with_env(&dir, &text, ports, &[("PGPASSWORD", WRONG_ENV)]);
    serve.wait_listening(Duration::from_secs(20)).await;
    let want: Vec<(&str, &str)> = CASES.iter().map(|(name, .., up)| (*name, if *up { "up" } else { "down" })).collect();
    let doc = eventually(Duration::from_secs(30), &format!("states {want:?}"), || async {
        let (code, body) = http_get(serve.http, "/status").await;
        let doc: serde_json::Value = serde_json::from_str(&body).map_err(|e| format!("{code} {e}: {body}"))?;
        let states: Vec<(&str, String)> = CASES
            .iter()
            .map(|(name, ..)| (*name, node_of(&doc, name)["state"].as_str().unwrap().to_string()))
            .collect();
        if states.iter().zip(&want).all(|((_, got), (_, want))| got == want) {
            Ok(doc)
        } else {
            Err(format!("{states:?}"))
        }
    })
    .await;
    for (name, _, _, up) in CASES {
        let error = node_of(&doc, name)["last_error"].as_str();
        if *up {
            assert_eq!(error, None, "{name}");
        } else {
            let want = "connect: FATAL 28P01: password authentication failed for user \"lagdns\"";
            assert_eq!(error, Some(want), "{name}");
        }
    }

    let status = serde_json::to_string(&doc).unwrap();
    assert_no_password("/status", &status);
    let (_, metrics) = http_get(serve.http, "/metrics").await;
    assert!(metrics.contains("lagdns_"), "{metrics}");
    assert_no_password("/metrics", &metrics);
    for (name, ..) in CASES {
        let m = query(serve.dns, &format!("{name}-read.db.internal."), RecordType::TXT, Proto::Udp).await;
        let lines = txt(&m).join("\n");
        assert!(lines.contains("state="), "{name}: {lines}");
        assert_no_password("TXT", &lines);
    }
    assert_no_password("the log", &serve.log_text());
    let check = tokio::task::block_in_place(|| {
        std::process::Command::new(env!("CARGO_BIN_EXE_lagdns"))
            .args(["check", "--config"])
            .arg(&serve.config)
            .env("PGPASSWORD", WRONG_ENV)
            .output()
            .unwrap()
    });
    assert!(check.status.success(), "{}", String::from_utf8_lossy(&check.stderr));
    let printed = format!("{}{}", String::from_utf8_lossy(&check.stdout), String::from_utf8_lossy(&check.stderr));
    assert!(printed.contains("password=***"), "{printed}");
    assert_no_password("check", &printed);
    serve.signal(libc::SIGTERM);
    assert!(serve.wait_exit(Duration::from_secs(15)).await.success());
}
