//! `lagdns status [--http ADDR] [--json]`: fetches `/status` from a running server and
//! prints every cluster's nodes as an aligned table, or the document itself. The exit
//! code says whether all is well (SPEC §13): 0 ready and every cluster has a primary
//! and no conflict, 1 the server cannot be reached, 2 not ready, or a cluster in
//! conflict or without a known primary.

use std::fmt::Write as _;
use std::time::Duration;

use anyhow::{bail, Context};

use crate::config::format_duration;
use crate::http::status::{ClusterDoc, NodeDoc, StatusDoc, WriteState};

/// Fetches `/status` from `http`, prints the table (or the JSON document) to stdout and
/// what is wrong to stderr; returns the exit code. An error means the server could not
/// be reached (exit 1).
pub fn run(http: &str, json: bool) -> anyhow::Result<u8> {
    let doc = fetch(http)?;
    match json {
        true => println!("{}", serde_json::to_string_pretty(&doc)?),
        false => print!("{}", render_table(&doc)),
    }
    let problems = problems(&doc);
    for p in &problems {
        eprintln!("lagdns status: {p}");
    }
    Ok(if problems.is_empty() { 0 } else { 2 })
}

/// What makes the exit code 2: not ready, a cluster in conflict or without a known
/// primary (a stale primary is known: `write` still answers it). Pure.
pub fn problems(doc: &StatusDoc) -> Vec<String> {
    let mut out = Vec::new();
    if !doc.ready {
        out.push("not ready: the first probe round has not finished".to_string());
    }
    for c in &doc.clusters {
        match c.write_state {
            WriteState::SplitBrain => out.push(format!("cluster {}: split brain, write answers SERVFAIL", c.name)),
            WriteState::Unknown => out.push(format!("cluster {}: no known primary, write answers SERVFAIL", c.name)),
            WriteState::Primary | WriteState::Stale => {}
        }
    }
    out
}

/// The `/status` URL for `host:port`, `http://host:port[/]` or a full `.../status` URL.
pub fn status_url(http: &str) -> anyhow::Result<String> {
    let http = http.trim();
    if http.is_empty() {
        bail!("--http is empty: expected host:port or http://host:port");
    }
    if http.starts_with("https://") {
        bail!("{http}: https is not supported, lagdns serves plain HTTP");
    }
    let base = if http.starts_with("http://") { http.to_string() } else { format!("http://{http}") };
    let base = base.trim_end_matches('/');
    Ok(if base.ends_with("/status") { base.to_string() } else { format!("{base}/status") })
}

/// GETs and parses the `/status` document.
pub fn fetch(http: &str) -> anyhow::Result<StatusDoc> {
    let url = status_url(http)?;
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_connect(Some(Duration::from_secs(2)))
        .timeout_global(Some(Duration::from_secs(5)))
        .build()
        .into();
    let mut response = match agent.get(&url).call() {
        Ok(r) => r,
        Err(ureq::Error::StatusCode(code)) => bail!("{url} answered HTTP {code}: is this a lagdns server?"),
        Err(e) => bail!("cannot reach lagdns at {url}: {e} (is `lagdns serve` running? see --http)"),
    };
    let body = response.body_mut().read_to_string().with_context(|| format!("reading the answer of {url}"))?;
    serde_json::from_str(&body).with_context(|| format!("{url} did not return a lagdns status document"))
}

/// The whole table: a header line, then per cluster its write and endpoint lines and
/// one row per node. Pure.
pub fn render_table(doc: &StatusDoc) -> String {
    let mut out = String::new();
    let ready = if doc.ready { "ready" } else { "NOT READY (first probe round unfinished: endpoints answer SERVFAIL)" };
    let _ = writeln!(out, "zone {}, serial {}, {ready}, snapshot {}", doc.zone, doc.serial, doc.built);
    for c in &doc.clusters {
        out.push('\n');
        render_cluster(&mut out, c, &doc.zone);
    }
    out
}

fn render_cluster(out: &mut String, c: &ClusterDoc, zone: &str) {
    let _ = writeln!(out, "{}", write_line(c, zone));
    for e in &c.endpoints {
        let answers = if e.eligible.is_empty() {
            format!("none eligible (fallback {})", e.fallback)
        } else {
            e.eligible.join(", ")
        };
        let _ = writeln!(out, "{}.{zone}: {answers}", e.label);
    }
    // LOCATION only when a node of the cluster has one (SPEC §8).
    let located = c.nodes.iter().any(|n| n.location.is_some());
    let mut header: Vec<String> = ["CLUSTER", "NODE", "ADDRESS"].map(String::from).to_vec();
    if located {
        header.push("LOCATION".into());
    }
    header.extend(["ROLE", "STATE", "LAG", "LAG_BYTES", "WEIGHT"].map(String::from));
    header.extend(c.endpoints.iter().map(|e| e.label.to_uppercase()));
    let mut rows = vec![header];
    rows.extend(c.nodes.iter().map(|n| node_row(&c.name, n, located)));
    out.push_str(&align(&rows));
    for n in &c.nodes {
        if let Some(err) = &n.last_error {
            let _ = writeln!(out, "  {}: last error: {err}", n.name);
        }
    }
    if let Some(d) = c.discovery.as_ref().filter(|d| d.failed_rounds > 0) {
        let err = d.last_error.as_deref().unwrap_or("?");
        let _ = writeln!(
            out,
            "  Patroni discovery: no member answered {} round(s) in a row (last list kept): {err}",
            d.failed_rounds
        );
    }
}

fn write_line(c: &ClusterDoc, zone: &str) -> String {
    let name = format!("{}.{zone}", c.write);
    let primary = c.primary.as_deref().unwrap_or("?");
    let events = match c.split_brain_events {
        0 => String::new(),
        n => format!(" [{n} split-brain event(s) since start]"),
    };
    let state = match c.write_state {
        WriteState::Primary if !c.rivals.is_empty() => format!(
            "{name}: {primary} (primary; SPLIT BRAIN settled by timeline: {} also out of recovery)",
            c.rivals.join(", ")
        ),
        WriteState::Primary => format!("{name}: {primary} (primary)"),
        WriteState::Stale => {
            let age = c.stale_for_ms.map(|ms| format_duration(Duration::from_millis(ms))).unwrap_or_else(|| "?".into());
            format!("{name}: {primary} (STALE: no primary reachable for {age})")
        }
        WriteState::Unknown => format!("{name}: SERVFAIL (no primary seen yet)"),
        WriteState::SplitBrain => match &c.conflict {
            Some(k) => format!("{name}: SERVFAIL, SPLIT BRAIN: {} claim primary ({})", k.nodes.join(", "), k.reason),
            None => format!("{name}: SERVFAIL, SPLIT BRAIN"),
        },
    };
    format!("cluster {}: {state}{events}", c.name)
}

fn node_row(cluster: &str, n: &NodeDoc, located: bool) -> Vec<String> {
    let lag = n.lag_ms.map(|ms| format_duration(Duration::from_millis(ms))).unwrap_or_else(|| "-".into());
    let bytes = n.lag_bytes.map(|b| b.to_string()).unwrap_or_else(|| "-".into());
    let mut row = vec![cluster.to_string(), n.name.clone(), n.address.clone()];
    if located {
        row.push(n.location.clone().unwrap_or_else(|| "-".into()));
    }
    row.extend([n.role.clone(), n.state.clone(), lag, bytes, n.weight.to_string()]);
    row.extend(n.endpoints.iter().map(|v| match (&v.reason, v.eligible) {
        (_, true) => "eligible".to_string(),
        (Some(r), false) => r.clone(),
        (None, false) => "ineligible".to_string(),
    }));
    row
}

/// Left-aligned columns separated by two spaces; no trailing blanks.
fn align(rows: &[Vec<String>]) -> String {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> =
        (0..cols).map(|i| rows.iter().filter_map(|r| r.get(i)).map(|s| s.chars().count()).max().unwrap_or(0)).collect();
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (cell, width) in row.iter().zip(&widths) {
            let _ = write!(line, "{cell:<width$}  ");
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::status::{AnswersDoc, ConflictDoc, EndpointDoc, VerdictDoc};

    fn node(name: &str, role: &str, state: &str, lag_ms: Option<u64>, verdicts: [Option<&str>; 2]) -> NodeDoc {
        let verdict = |endpoint: &str, v: Option<&str>| VerdictDoc {
            endpoint: endpoint.into(),
            eligible: v.is_none(),
            reason: v.map(String::from),
        };
        NodeDoc {
            name: name.into(),
            address: format!("10.0.0.1{}", &name[2..]),
            port: 5432,
            location: None,
            patroni: None,
            role: role.into(),
            state: state.into(),
            lag_ms,
            lag_bytes: lag_ms.map(|l| l * 10),
            replay_lsn: None,
            current_lsn: None,
            timeline: Some(1),
            weight: 100,
            replay_paused: false,
            eligible: verdicts[0].is_none(),
            reason: verdicts[0].map(String::from),
            last_probe: None,
            last_probe_ms: None,
            last_error: (state == "down").then(|| "connect: connection refused".into()),
            endpoints: vec![verdict("read", verdicts[0]), verdict("analytics", verdicts[1])],
        }
    }

    fn endpoint(label: &str, eligible: &[&str]) -> EndpointDoc {
        EndpointDoc {
            label: label.into(),
            max_lag_ms: 100,
            max_lag_bytes: None,
            answers: AnswersDoc::Count(1),
            fallback: "primary".into(),
            locality: "prefer".into(),
            eligible: eligible.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn doc() -> StatusDoc {
        StatusDoc {
            serial: 42,
            ready: true,
            built: "2024-05-01T12:00:00.000Z".into(),
            answer_changes: 2,
            zone: "db.internal".into(),
            locality: None,
            clusters: vec![ClusterDoc {
                name: "main".into(),
                write: "write".into(),
                primary: Some("pg1".into()),
                write_state: WriteState::Primary,
                stale_since: None,
                stale_for_ms: None,
                conflict: None,
                rivals: vec![],
                split_brain_events: 0,
                discovery: None,
                primary_lsn: Some("0/3000".into()),
                endpoints: vec![endpoint("read", &["pg2"]), endpoint("analytics", &[])],
                nodes: vec![
                    node("pg1", "primary", "up", None, [Some("primary"), Some("not in endpoint")]),
                    node("pg2", "replica", "up", Some(0), [None, Some("not in endpoint")]),
                    node("pg3", "replica", "up", Some(2500), [Some("lag 2500ms > max_lag 100ms"), Some("down")]),
                    node("pg4", "replica", "down", None, [Some("down"), Some("down")]),
                ],
            }],
        }
    }

    #[test]
    fn table_has_aligned_rows_verdicts_and_write_line() {
        let text = render_table(&doc());
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "zone db.internal, serial 42, ready, snapshot 2024-05-01T12:00:00.000Z");
        assert!(text.contains("cluster main: write.db.internal: pg1 (primary)\n"), "{text}");
        assert!(text.contains("read.db.internal: pg2\n"), "{text}");
        assert!(text.contains("analytics.db.internal: none eligible (fallback primary)\n"), "{text}");
        let header = lines.iter().position(|l| l.starts_with("CLUSTER")).expect("header");
        let table = &lines[header..header + 5];
        let read_col = table[0].find("READ").unwrap();
        let analytics_col = table[0].find("ANALYTICS").unwrap();
        for (row, (read, analytics)) in table[1..].iter().zip([
            ("primary", "not in endpoint"),
            ("eligible", "not in endpoint"),
            ("lag 2500ms > max_lag 100ms", "down"),
            ("down", "down"),
        ]) {
            assert!(row[read_col..].starts_with(read), "{row:?} READ should be {read:?}\n{text}");
            assert_eq!(&row[analytics_col..], analytics, "{row:?}");
        }
        let pg3: Vec<&str> = table[3].split_whitespace().collect();
        assert_eq!(&pg3[..8], ["main", "pg3", "10.0.0.13", "replica", "up", "2500ms", "25000", "100"]);
        assert!(text.contains("  pg4: last error: connect: connection refused\n"), "{text}");
        assert!(text.lines().all(|l| l == l.trim_end()), "no trailing blanks");
    }

    #[test]
    fn locations_get_a_column_when_a_node_has_one() {
        let mut d = doc();
        d.clusters[0].nodes[1].location = Some("eu-1a".into());
        let text = render_table(&d);
        let header = text.lines().find(|l| l.starts_with("CLUSTER")).unwrap();
        assert!(header.starts_with("CLUSTER  NODE  ADDRESS    LOCATION  ROLE "), "{text}");
        let rows: Vec<Vec<&str>> = text
            .lines()
            .skip_while(|l| !l.starts_with("CLUSTER"))
            .skip(1)
            .take(2)
            .map(|l| l.split_whitespace().collect())
            .collect();
        assert_eq!((rows[0][3], rows[1][3]), ("-", "eu-1a"), "{text}");
    }

    #[test]
    fn problems_decide_the_exit_code() {
        let with = |ready: bool, state: WriteState| {
            let mut d = doc();
            d.ready = ready;
            d.clusters[0].write_state = state;
            problems(&d)
        };
        assert!(with(true, WriteState::Primary).is_empty());
        assert!(with(true, WriteState::Stale).is_empty(), "a stale primary is still a known one");
        assert_eq!(with(false, WriteState::Primary), ["not ready: the first probe round has not finished"]);
        assert_eq!(with(true, WriteState::SplitBrain), ["cluster main: split brain, write answers SERVFAIL"]);
        assert_eq!(with(true, WriteState::Unknown), ["cluster main: no known primary, write answers SERVFAIL"]);
        assert_eq!(with(false, WriteState::Unknown).len(), 2);
    }

    #[test]
    fn write_line_shows_stale_split_brain_and_unknown() {
        let mut d = doc();
        let c = &mut d.clusters[0];
        c.write_state = WriteState::Stale;
        c.stale_for_ms = Some(3000);
        assert!(render_table(&d).contains("write.db.internal: pg1 (STALE: no primary reachable for 3s)"));
        let c = &mut d.clusters[0];
        c.write_state = WriteState::SplitBrain;
        c.primary = None;
        c.split_brain_events = 2;
        c.conflict = Some(ConflictDoc { nodes: vec!["pg1".into(), "pg3".into()], reason: "timeline unknown".into() });
        let text = render_table(&d);
        assert!(
            text.contains("SERVFAIL, SPLIT BRAIN: pg1, pg3 claim primary (timeline unknown) [2 split-brain"),
            "{text}"
        );
        d.clusters[0].write_state = WriteState::Unknown;
        d.ready = false;
        let text = render_table(&d);
        assert!(text.contains("write.db.internal: SERVFAIL (no primary seen yet)") && text.contains("NOT READY"));
    }

    #[test]
    fn http_argument_forms() {
        for (arg, url) in [
            ("127.0.0.1:8053", "http://127.0.0.1:8053/status"),
            ("http://127.0.0.1:8053", "http://127.0.0.1:8053/status"),
            ("http://127.0.0.1:8053/", "http://127.0.0.1:8053/status"),
            ("http://[::1]:9000/status", "http://[::1]:9000/status"),
            ("localhost:1", "http://localhost:1/status"),
        ] {
            assert_eq!(status_url(arg).unwrap(), url);
        }
        assert!(status_url("https://x:1").is_err());
        assert!(status_url(" ").is_err());
    }

    #[test]
    fn unreachable_server_is_a_clear_error() {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let err = fetch(&format!("127.0.0.1:{port}")).unwrap_err().to_string();
        assert!(err.contains("cannot reach lagdns at http://127.0.0.1:"), "{err}");
    }
}
