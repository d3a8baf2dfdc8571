//! The probe task for one node: a persistent connection, one query per tick, an
//! [`Observation`] sent for every tick, reconnect with backoff.
//!
//! A connect runs as a task of its own, up to [`CONNECT_PATIENCE`]: a tick that times
//! out while it is under way reports the timeout and the next tick waits on the same
//! connect, rather than dropping it and dialling again. A server slow to take
//! connections (a thousand nodes starting at once on a few servers) then finishes the
//! ones it has, instead of receiving new ones faster than it authorizes them.
//!
//! Transport: plain TCP or TLS per the DSN's `sslmode` (see `tls`); the connector is
//! built once per task and serves both connects and cancel requests. Time is tokio's
//! (`tokio::time::Instant`), so tests can pause it; `Observation::at` gets the std
//! instant the decision code reads.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::{timeout, Instant, MissedTickBehavior};
use tokio_postgres::config::Host;
use tokio_postgres::{Client, Statement};
use tokio_postgres_rustls::MakeRustlsConnect;
use tokio_util::sync::CancellationToken;
use tokio_util::task::AbortOnDropHandle;
use tracing::{debug, info, warn, Instrument};

use super::secret::{password_for, PasswordFileError};
use super::sql::{sample_from_row, PROBE_SQL};
use super::tls::{self, HandshakeError, TlsError};
use super::{NodeId, Observation, ProbeFailure, Sample};
use crate::config::{NodeConfig, ProbeConfig, TlsOptions};

/// Longest wait between reconnect attempts after repeated connect failures.
const MAX_BACKOFF: Duration = Duration::from_secs(1);
/// How long a connect (TCP, TLS, authentication, preparing the statement) may take
/// across ticks before it counts as failed (the probe timeout when that is longer).
const CONNECT_PATIENCE: Duration = Duration::from_secs(10);
/// TCP keepalive and `TCP_USER_TIMEOUT`: turn a silent partition into a connection
/// error (a hung-but-reachable server is caught by the probe timeout instead).
const KEEPALIVE_IDLE: Duration = Duration::from_secs(5);
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(2);
const KEEPALIVE_RETRIES: u32 = 3;
const TCP_USER_TIMEOUT: Duration = Duration::from_secs(5);

/// Probes `node` every `probe.interval` until `cancel` fires (or the receiver is gone),
/// sending one [`Observation`] per attempt on `tx`.
pub async fn run(
    id: NodeId,
    node: NodeConfig,
    probe: ProbeConfig,
    phase: Duration,
    tx: mpsc::Sender<Observation>,
    cancel: CancellationToken,
) {
    let span = tracing::info_span!("probe", node = %id);
    let connector = tls::connector(node.dsn.tls()).map_err(Arc::new);
    let prober = Prober { id, connector, node, probe, phase, conn: None, connecting: None, connect_failures: 0 };
    prober.run(tx, cancel).instrument(span).await
}

struct Prober {
    id: NodeId,
    /// The TLS connector for the DSN's settings, or why it could not be built (then
    /// every attempt reports that as a connect failure).
    connector: Result<MakeRustlsConnect, Arc<TlsError>>,
    node: NodeConfig,
    probe: ProbeConfig,
    /// Offset of this node's ticks within the interval (see `run`).
    phase: Duration,
    conn: Option<Conn>,
    /// A connect under way (aborted when dropped).
    connecting: Option<AbortOnDropHandle<Result<Conn, ConnectError>>>,
    /// Consecutive failed connects (0 while connected).
    connect_failures: u32,
}

/// A live connection: the client, the prepared probe statement and the task driving
/// the socket. Dropping it closes the connection.
struct Conn {
    client: Client,
    statement: Statement,
    driver: Driver,
}

/// The spawned `Connection` future; aborted (socket closed) when dropped.
struct Driver(Option<JoinHandle<()>>);

impl Driver {
    /// Waits up to `limit` for the connection future to finish on its own.
    async fn finish(mut self, limit: Duration) {
        if let Some(handle) = self.0.as_mut() {
            let _ = timeout(limit, handle).await;
        }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        if let Some(handle) = self.0.take() {
            handle.abort();
        }
    }
}

/// A tokio-postgres error, shown by [`describe`] (never with a password).
#[derive(Debug, thiserror::Error)]
#[error("{}", describe(.0))]
struct PgError(tokio_postgres::Error);

/// Why a connect failed; `Display` is the text of [`ProbeFailure::Connect`].
#[derive(Debug, thiserror::Error)]
enum ConnectError {
    #[error(transparent)]
    Tls(Arc<TlsError>),
    #[error(transparent)]
    PasswordFile(#[from] PasswordFileError),
    #[error(transparent)]
    Handshake(#[from] HandshakeError),
    #[error(transparent)]
    Postgres(#[from] PgError),
    #[error("not connected after {0:?}")]
    Patience(Duration),
    #[error("connect task: {0}")]
    Task(String),
}

/// How an attempt went wrong, before it becomes a [`ProbeFailure`] (same `Display`).
#[derive(Debug, thiserror::Error)]
enum Failed {
    #[error("timeout after {0:?}")]
    Timeout(Duration),
    #[error("connect: {0}")]
    Connect(#[from] ConnectError),
    /// The connection broke under the query: reported as a connect failure.
    #[error("connect: {0}")]
    Lost(PgError),
    #[error("query: {0}")]
    Query(PgError),
}

impl From<Failed> for ProbeFailure {
    fn from(failed: Failed) -> ProbeFailure {
        match failed {
            Failed::Timeout(limit) => ProbeFailure::Timeout(limit),
            Failed::Connect(e) => ProbeFailure::Connect(e.to_string()),
            Failed::Lost(e) => ProbeFailure::Connect(e.to_string()),
            Failed::Query(e) => ProbeFailure::Query(e.to_string()),
        }
    }
}

impl Prober {
    async fn run(mut self, tx: mpsc::Sender<Observation>, cancel: CancellationToken) {
        let start = Instant::now() + self.phase;
        let mut ticker = tokio::time::interval_at(start, self.probe.interval);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut next_connect: Option<Instant> = None;
        loop {
            let tick = tokio::select! {
                biased;
                _ = cancel.cancelled() => break,
                tick = ticker.tick() => tick,
            };
            if self.conn.is_none() && next_connect.is_some_and(|at| tick < at) {
                continue; // backing off: no attempt, no observation
            }
            let observation = tokio::select! {
                biased;
                _ = cancel.cancelled() => break,
                o = self.attempt() => o,
            };
            if self.conn.is_none() && self.connect_failures > 0 {
                let at = tick + backoff(self.probe.interval, self.connect_failures);
                next_connect = Some(at);
                // sleep through the backoff instead of waking every interval to skip
                // (with a thousand nodes down, that was most of their timer work); the
                // backoff is whole intervals, so the ticks keep their phase
                if at > Instant::now() {
                    ticker.reset_at(at);
                }
            }
            let sent = tokio::select! {
                biased;
                _ = cancel.cancelled() => break,
                sent = tx.send(observation) => sent,
            };
            if sent.is_err() {
                debug!("observation receiver gone; stopping");
                break;
            }
        }
        self.close().await;
    }

    /// One probe: connect if needed, run the query; bounded by `probe.timeout` as a whole.
    async fn attempt(&mut self) -> Observation {
        let started = Instant::now();
        let limit = self.probe.timeout;
        let outcome = match timeout(limit, self.connect_and_query()).await {
            Ok(outcome) => outcome,
            Err(_) => {
                self.on_timeout();
                Err(Failed::Timeout(limit))
            }
        };
        let (result, at) = match outcome {
            Ok((sample, at)) => (Ok(sample), at),
            Err(failed) => (Err(ProbeFailure::from(failed)), Instant::now()),
        };
        let (now, wall_now) = (Instant::now(), SystemTime::now());
        Observation {
            node: self.id.clone(),
            at: at.into_std(),
            wall: wall_now - now.saturating_duration_since(at),
            duration: now - started,
            result,
        }
    }

    /// Returns the sample and the instant it was read (send time + RTT/2).
    async fn connect_and_query(&mut self) -> Result<(Sample, Instant), Failed> {
        if self.conn.as_ref().is_some_and(|c| c.client.is_closed()) {
            warn!("connection lost; reconnecting");
            self.conn = None;
        }
        if self.conn.is_none() {
            if self.connecting.is_none() {
                self.connecting = Some(self.start_connect());
            }
            let pending = self.connecting.as_mut().expect("started above");
            // a timeout of this attempt leaves the connect running for the next one
            let result = pending.await.unwrap_or_else(|e| Err(ConnectError::Task(e.to_string())));
            self.connecting = None;
            match result {
                Ok(conn) => {
                    info!(dsn = %self.node.dsn, after_failures = self.connect_failures, "connected");
                    self.conn = Some(conn);
                    self.connect_failures = 0;
                }
                Err(e) => {
                    self.note_connect_failure(&e);
                    return Err(Failed::Connect(e));
                }
            }
        }
        let conn = self.conn.as_ref().expect("connected above");
        let sent = Instant::now();
        let result = conn.client.query_one(&conn.statement, &[]).await;
        let received = Instant::now();
        let failed = match result {
            Ok(row) => match sample_from_row(&row) {
                Ok(sample) => return Ok((sample, sent + (received - sent) / 2)),
                Err(e) => Failed::Query(PgError(e)),
            },
            Err(e) if e.is_closed() => Failed::Lost(PgError(e)),
            Err(e) => Failed::Query(PgError(e)),
        };
        // Any error: drop the connection and start afresh on the next tick.
        self.conn = None;
        match &failed {
            Failed::Lost(e) => warn!(error = %e, "connection lost"),
            Failed::Query(e) => warn!(error = %e, "probe query failed; dropping connection"),
            Failed::Timeout(_) | Failed::Connect(_) => {} // not built above
        }
        Err(failed)
    }

    /// Starts a connect, as a task bounded by [`CONNECT_PATIENCE`].
    fn start_connect(&self) -> AbortOnDropHandle<Result<Conn, ConnectError>> {
        let (connector, config, tls) = (self.connector.clone(), self.pg_config(), self.node.dsn.tls().clone());
        let patience = CONNECT_PATIENCE.max(self.probe.timeout);
        let connect = async move {
            match timeout(patience, connect(connector, config?, tls)).await {
                Ok(result) => result,
                Err(_) => Err(ConnectError::Patience(patience)),
            }
        };
        AbortOnDropHandle::new(tokio::spawn(connect.in_current_span()))
    }

    /// The DSN's connection settings, with the password (the DSN's own, else
    /// `password_file`, else `PGPASSWORD`) and the probe's own settings applied.
    fn pg_config(&self) -> Result<tokio_postgres::Config, PasswordFileError> {
        let mut config = self.node.dsn.connection().clone();
        if let Some(secret) = password_for(&self.node)? {
            config.password(secret.expose());
        }
        if config.get_application_name().is_none() {
            config.application_name("lagdns");
        }
        // The server stops a query lagdns already gave up on.
        let statement_timeout = format!("-c statement_timeout={}", self.probe.timeout.as_millis().max(1));
        let options = match config.get_options() {
            Some(existing) if !existing.trim().is_empty() => {
                format!("{existing} {statement_timeout}")
            }
            _ => statement_timeout,
        };
        config.options(options);
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(self.probe.timeout);
        }
        config
            .keepalives(true)
            .keepalives_idle(KEEPALIVE_IDLE)
            .keepalives_interval(KEEPALIVE_INTERVAL)
            .keepalives_retries(KEEPALIVE_RETRIES);
        if config.get_tcp_user_timeout().is_none() {
            config.tcp_user_timeout(TCP_USER_TIMEOUT);
        }
        Ok(config)
    }

    /// The attempt hit `probe.timeout`: if a query was in flight, ask the server to cancel
    /// it (detached, bounded) and drop the connection; otherwise the connect hung.
    fn on_timeout(&mut self) {
        match self.conn.take() {
            Some(conn) => {
                warn!(timeout = ?self.probe.timeout, "probe timed out; dropping connection");
                let token = conn.client.cancel_token();
                let limit = self.probe.timeout;
                let connector = self.connector.as_ref().ok().cloned();
                drop(conn);
                tokio::spawn(
                    async move {
                        // A connection exists, so the connector does too.
                        let Some(connector) = connector else { return };
                        match timeout(limit, token.cancel_query(connector)).await {
                            Ok(Ok(())) => debug!("cancel request sent"),
                            Ok(Err(e)) => debug!(error = %describe(&e), "cancel request failed"),
                            Err(_) => debug!("cancel request timed out"),
                        }
                    }
                    .in_current_span(),
                );
            }
            // the connect goes on (see `CONNECT_PATIENCE`)
            None => debug!(timeout = ?self.probe.timeout, "probe timed out while connecting"),
        }
    }

    fn note_connect_failure(&mut self, error: &dyn fmt::Display) {
        self.connect_failures += 1;
        if self.connect_failures == 1 {
            warn!(error = %error, "connect failed");
        } else {
            debug!(error = %error, failures = self.connect_failures, "connect failed again");
        }
    }

    /// Closes the connection politely (Terminate), waiting only briefly for it.
    async fn close(&mut self) {
        if let Some(Conn { client, statement, driver }) = self.conn.take() {
            drop(statement);
            drop(client); // the driver sends Terminate and finishes
            driver.finish(Duration::from_millis(200)).await;
            info!("stopped; connection closed");
        } else {
            info!("stopped");
        }
    }
}

/// Opens a connection and prepares the probe statement.
async fn connect(
    connector: Result<MakeRustlsConnect, Arc<TlsError>>,
    config: tokio_postgres::Config,
    tls: TlsOptions,
) -> Result<Conn, ConnectError> {
    let connector = connector.map_err(ConnectError::Tls)?;
    let (client, connection) =
        config.connect(connector).await.map_err(|e| match tls::explain(&e, &tls, &first_host(&config)) {
            Some(handshake) => ConnectError::Handshake(handshake),
            None => ConnectError::Postgres(PgError(e)),
        })?;
    // From here on, an error or a timeout drops `driver`, which closes the socket.
    let driver = Driver(Some(tokio::spawn(
        async move {
            if let Err(e) = connection.await {
                debug!(error = %describe(&e), "connection ended");
            }
        }
        .in_current_span(),
    )));
    let statement = client.prepare(PROBE_SQL).await.map_err(PgError)?;
    Ok(Conn { client, statement, driver })
}

/// Wait before the next connect after `failures` consecutive failures:
/// `interval × 2^(failures-1)`, at most [`MAX_BACKOFF`] (never less than one interval).
fn backoff(interval: Duration, failures: u32) -> Duration {
    let factor = 1u32 << failures.saturating_sub(1).min(16);
    interval.saturating_mul(factor).min(MAX_BACKOFF.max(interval))
}

/// The first host of `config`, as the TLS layer checks it against the certificate.
fn first_host(config: &tokio_postgres::Config) -> String {
    match config.get_hosts().first() {
        Some(Host::Tcp(name)) => name.clone(),
        Some(Host::Unix(path)) => path.display().to_string(),
        None => "localhost".to_string(),
    }
}

/// Error text that is useful and never contains a password: the server's severity,
/// SQLSTATE and message for database errors, the cause chain otherwise.
fn describe(e: &tokio_postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        return format!("{} {}: {}", db.severity(), db.code().code(), db.message());
    }
    crate::telemetry::error_chain(e)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_one_interval_and_caps_at_a_second() {
        let ms = Duration::from_millis;
        let cases = [
            (ms(250), 1, ms(250)),
            (ms(250), 2, ms(500)),
            (ms(250), 3, ms(1000)),
            (ms(250), 4, ms(1000)),
            (ms(100), 4, ms(800)),
            (ms(100), 40, ms(1000)),
            (ms(2000), 3, ms(2000)),
        ];
        for (interval, failures, want) in cases {
            assert_eq!(backoff(interval, failures), want, "{interval:?} × {failures}");
        }
    }

    /// The real task in paused (virtual) time against a loopback port nothing listens on:
    /// each connect is refused at once (no virtual time passes), so over 10 s the
    /// observations are exactly the attempts the backoff schedule allows, and none
    /// comes while backing off.
    #[tokio::test(start_paused = true)]
    async fn refused_connects_back_off_on_schedule_in_virtual_time() {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let interval = Duration::from_millis(250);
        let probe = ProbeConfig { interval, timeout: Duration::from_secs(1), fall: 2, rise: 2 };
        let dsn = format!("host=127.0.0.1 port={port} user=lagdns dbname=postgres sslmode=disable");
        let node = NodeConfig {
            name: "pg1".into(),
            addresses: vec!["127.0.0.1".parse().unwrap()],
            host: None,
            port: 5432,
            dsn: dsn.parse().unwrap(),
            weight: 1,
            password_file: None,
            location: None,
        };
        let (tx, mut rx) = mpsc::channel(64);
        let cancel = CancellationToken::new();
        let start = Instant::now();
        let task = tokio::spawn(run(NodeId::new("c", "pg1"), node, probe, Duration::ZERO, tx, cancel.clone()));
        tokio::time::sleep(Duration::from_secs(10)).await;
        cancel.cancel();
        task.await.unwrap();

        let mut seen = Vec::new();
        while let Ok(o) = rx.try_recv() {
            assert!(matches!(&o.result, Err(ProbeFailure::Connect(_))), "refused, not timed out: {:?}", o.result);
            assert_eq!(o.duration, Duration::ZERO, "a refused connect takes no virtual time");
            seen.push(o.at - start.into_std());
        }
        // Attempt n fails and waits backoff(n) (250 ms, 500 ms, then 1 s: whole ticks).
        let (mut want, mut t, mut failures) = (Vec::new(), Duration::ZERO, 0);
        while t < Duration::from_secs(10) {
            want.push(t);
            failures += 1;
            t += backoff(interval, failures);
        }
        assert_eq!(seen, want);
        let ms: Vec<u64> = seen.iter().map(|d| d.as_millis() as u64).collect();
        assert_eq!(ms, [0, 250, 750, 1750, 2750, 3750, 4750, 5750, 6750, 7750, 8750, 9750]);
    }
}
