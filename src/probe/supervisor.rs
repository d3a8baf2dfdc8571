//! The probe supervisor: one probe task per configured node, started and stopped as
//! reloaded configs arrive. A node keeps its task (and its connection) across a reload
//! unless what the task depends on changed: its DSN, its `password_file` or `[probe]`.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::{task, NodeId, Observation};
use crate::config::{Config, Dsn, NodeConfig, ProbeConfig};

/// What a probe task depends on: a change restarts the task.
#[derive(PartialEq)]
struct ProbeKey {
    dsn: Dsn,
    password_file: Option<PathBuf>,
    probe: ProbeConfig,
}

struct ProbeTask {
    key: ProbeKey,
    cancel: CancellationToken,
    handle: JoinHandle<()>,
}

/// Runs one probe task per node of `config`, then of each config from `reloads`, until
/// `cancel` fires or `reloads` closes; then stops every task and waits for them all.
pub async fn run(
    config: Arc<Config>,
    mut reloads: mpsc::Receiver<Arc<Config>>,
    tx: mpsc::Sender<Observation>,
    cancel: CancellationToken,
) {
    let tracker = TaskTracker::new();
    let mut running: HashMap<NodeId, ProbeTask> = HashMap::new();
    apply(&mut running, &tracker, &config, &tx, &cancel).await;
    loop {
        tokio::select! {
            _ = cancel.cancelled() => break,
            Some(config) = reloads.recv() => apply(&mut running, &tracker, &config, &tx, &cancel).await,
            else => break,
        }
    }
    for task in running.into_values() {
        task.cancel.cancel();
    }
    tracker.close();
    tracker.wait().await;
}

/// Stops the tasks `config` no longer wants as they are (and waits until their
/// connections are closed), then starts the missing ones.
async fn apply(
    running: &mut HashMap<NodeId, ProbeTask>,
    tracker: &TaskTracker,
    config: &Config,
    tx: &mpsc::Sender<Observation>,
    cancel: &CancellationToken,
) {
    let mut wanted: HashMap<NodeId, (&NodeConfig, Duration)> = HashMap::new();
    for c in &config.clusters {
        for (k, n) in c.nodes.iter().enumerate() {
            wanted.insert(NodeId::new(&c.name, &n.name), (n, phase(config.probe.interval, k, c.nodes.len())));
        }
    }
    let stale: Vec<NodeId> = running
        .iter()
        .filter(|(id, task)| wanted.get(*id).is_none_or(|(n, _)| task.key != key(n, &config.probe)))
        .map(|(id, _)| id.clone())
        .collect();
    let mut stopping = Vec::new();
    for id in stale {
        if let Some(task) = running.remove(&id) {
            tracing::info!(node = %id, "stopping probe");
            task.cancel.cancel();
            stopping.push(task.handle);
        }
    }
    for handle in stopping {
        let _ = handle.await;
    }
    for (id, (node, phase)) in wanted {
        if running.contains_key(&id) {
            continue;
        }
        let token = cancel.child_token();
        let handle =
            tracker.spawn(task::run(id.clone(), node.clone(), config.probe.clone(), phase, tx.clone(), token.clone()));
        running.insert(id, ProbeTask { key: key(node, &config.probe), cancel: token, handle });
    }
}

/// Spreads a cluster's probes over the interval (node `k` of `n` starts `k/n` of an
/// interval late): every node is still probed once per interval, but evidence of the
/// primary's WAL position (its own probe, and the replicas' receive positions) arrives
/// `n` times per interval, which shortens how long a lagging replica goes unnoticed.
fn phase(interval: Duration, k: usize, n: usize) -> Duration {
    interval.mul_f64(k as f64 / n.max(1) as f64)
}

fn key(node: &NodeConfig, probe: &ProbeConfig) -> ProbeKey {
    ProbeKey { dsn: node.dsn.clone(), password_file: node.password_file.clone(), probe: probe.clone() }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A config of cluster `c` whose nodes (name, DSN suffix) all point at `port`.
    fn config(port: u16, nodes: &[(&str, &str)]) -> Arc<Config> {
        let mut text = String::from("[probe]\ninterval = \"250ms\"\n[[cluster]]\nname = \"c\"\n");
        for (i, (name, extra)) in nodes.iter().enumerate() {
            text.push_str(&format!(
                "[[cluster.node]]\nname = \"{name}\"\naddress = \"127.0.0.{}\"\n\
                 dsn = \"host=127.0.0.1 port={port} sslmode=disable {extra}\"\n",
                i + 11
            ));
        }
        Arc::new(Config::parse(&text, "t.toml").unwrap())
    }

    /// In paused time, nodes whose connects are refused at once (see the task's test): a
    /// node in backoff probes every second, a (re)started one at once. A reload at 5 s
    /// keeps `a` (unchanged: still in backoff), restarts `b` (new DSN), starts `c` and
    /// stops `d`.
    #[tokio::test(start_paused = true)]
    async fn reload_restarts_only_the_nodes_whose_probe_changed() {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let before = config(port, &[("a", ""), ("b", ""), ("d", "")]);
        let after = config(port, &[("a", ""), ("b", "application_name=b2"), ("c", "")]);
        let (tx, mut rx) = mpsc::channel(256);
        let (reload_tx, reloads) = mpsc::channel(1);
        let cancel = CancellationToken::new();
        let start = tokio::time::Instant::now();
        let supervisor = tokio::spawn(run(before, reloads, tx, cancel.clone()));
        tokio::time::sleep(Duration::from_secs(5)).await;
        reload_tx.send(after).await.unwrap();
        tokio::time::sleep(Duration::from_secs(5)).await;
        cancel.cancel();
        supervisor.await.unwrap();

        let mut seen: Vec<(String, Duration)> = Vec::new();
        while let Ok(o) = rx.try_recv() {
            seen.push((o.node.node.to_string(), o.at - start.into_std()));
        }
        let count = |node: &str, from: u64, to: u64| {
            let (from, to) = (Duration::from_millis(from), Duration::from_millis(to));
            seen.iter().filter(|(n, at)| n == node && *at >= from && *at < to).count()
        };
        assert_eq!(count("a", 0, 5000), 7, "a: 0, 250, 750, 1750 ... 4750 ms");
        assert_eq!(count("a", 5000, 5500), 0, "a kept its task, still backing off");
        assert!(count("a", 5500, 10_000) > 0, "a keeps probing");
        assert!(count("b", 5000, 5500) > 0, "b restarted with its new DSN");
        assert_eq!((count("c", 0, 5000), count("c", 5000, 5500) > 0), (0, true), "c started on reload");
        assert_eq!((count("d", 0, 5000) > 0, count("d", 5000, 10_000)), (true, 0), "d stopped on reload");
    }

    #[test]
    fn phases_spread_a_cluster_over_one_interval() {
        let ms = Duration::from_millis;
        let cases = [
            (ms(250), 0, 1, ms(0)),
            (ms(250), 0, 2, ms(0)),
            (ms(250), 1, 2, ms(125)),
            (ms(1000), 1, 4, ms(250)),
            (ms(1000), 3, 4, ms(750)),
            (ms(200), 1, 2, ms(100)),
            (ms(250), 0, 0, ms(0)),
        ];
        for (interval, k, n, want) in cases {
            assert_eq!(phase(interval, k, n), want, "{interval:?}, node {k} of {n}");
        }
        for n in [3, 5, 7] {
            let phases: Vec<Duration> = (0..n).map(|k| phase(ms(250), k, n)).collect();
            assert!(phases.windows(2).all(|w| w[0] < w[1]) && phases[n - 1] < ms(250), "{phases:?}");
        }
    }
}
