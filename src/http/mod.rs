//! HTTP: `/healthz`, `/readyz`, `/status` (JSON), `/metrics` (Prometheus text) and the
//! load-balancer checks `/check/<cluster>/<name>/<node>` (SPEC §10).
//!
//! Handlers only load the current snapshot and render it; they never wait on probes.
//! `edge` bounds who may connect, how many at once, and for how long; `agent` serves
//! HAProxy agent checks on a listener of their own.

pub mod agent;
pub mod edge;
pub mod status;

#[cfg(test)]
pub(crate) mod fixture;

use std::sync::Arc;

use axum::extract::{Path, RawQuery, State};
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use tokio_util::sync::CancellationToken;

use crate::check::{self, Subject, Verdict};
use crate::dns::query::QueryStats;
use crate::dns::txt;
use crate::metrics::{self, Reloads};
use crate::snapshot::Snapshot;
use crate::store::Snapshots;
use status::StatusDoc;

/// What HTTP renders: the snapshots, the DNS counters and the last config reload.
#[derive(Clone)]
pub struct Sources {
    pub snapshots: Arc<dyn Snapshots>,
    pub stats: Arc<QueryStats>,
    pub reloads: Arc<Reloads>,
}

/// The routes, for [`serve`] or an in-process test.
pub fn router(sources: Sources) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/status", get(status))
        .route("/metrics", get(metrics_text))
        .route("/check/{cluster}/{name}/{node}", get(check))
        .with_state(sources)
}

/// Serves HTTP on `listener` until `cancel` fires, then finishes in-flight requests.
pub async fn serve(
    listener: tokio::net::TcpListener,
    sources: Sources,
    cancel: CancellationToken,
) -> std::io::Result<()> {
    let guarded = edge::Guarded::new(listener, sources.snapshots.clone(), sources.stats.clone());
    axum::serve(guarded, router(sources)).with_graceful_shutdown(cancel.cancelled_owned()).await
}

async fn healthz() -> &'static str {
    "ok"
}

/// 200 once the first probe round has finished, 503 before (SPEC §13).
async fn readyz(State(app): State<Sources>) -> impl IntoResponse {
    match app.snapshots.snapshot().ready {
        true => (StatusCode::OK, "ready\n"),
        false => (StatusCode::SERVICE_UNAVAILABLE, "not ready: the first probe round has not finished\n"),
    }
}

async fn status(State(app): State<Sources>) -> Json<StatusDoc> {
    Json(StatusDoc::from_snapshot(&app.snapshots.snapshot()))
}

async fn metrics_text(State(app): State<Sources>) -> impl IntoResponse {
    let body = metrics::render(&app.snapshots.snapshot(), &app.stats, &app.reloads);
    ([(CONTENT_TYPE, metrics::CONTENT_TYPE)], body)
}

/// `GET`/`HEAD /check/<cluster>/<name>/<node>[?max_lag=<duration>]` (SPEC §10).
async fn check(
    State(app): State<Sources>,
    Path((cluster, name, node)): Path<(String, String, String)>,
    RawQuery(query): RawQuery,
) -> impl IntoResponse {
    let (code, body) = check_response(&app.snapshots.snapshot(), [&cluster, &name, &node], query.as_deref());
    (code, [(CONTENT_TYPE, "text/plain; charset=utf-8"), (CACHE_CONTROL, "no-store")], body)
}

/// 200 when the node is answered for the name right now, else 503, with the node's TXT
/// line (under the check's own `max_lag`, if any) as the body; 404 for a name the config
/// does not have, 400 for a bad query, 503 before the first probe round has finished.
fn check_response(snap: &Snapshot, [cluster, name, node]: [&str; 3], query: Option<&str>) -> (StatusCode, String) {
    let subject = match Subject::find(&snap.config, cluster, name, node) {
        Ok(s) => s,
        Err(e) => return (StatusCode::NOT_FOUND, format!("{e}\n")),
    };
    let max_lag = match check::parse_query(query, subject.name) {
        Ok(m) => m,
        Err(e) => return (StatusCode::BAD_REQUEST, format!("{e}\n")),
    };
    let Some(verdict) = check::judge(snap, subject, max_lag) else {
        return (StatusCode::SERVICE_UNAVAILABLE, "not ready: the first probe round has not finished\n".into());
    };
    let view = &snap.clusters[subject.cluster];
    let locations = &snap.config.locations;
    let line = match verdict {
        Verdict::Write { .. } => txt::write_line(view, subject.node, snap.built, locations),
        Verdict::Read(eligibility) => txt::read_line(view, subject.node, eligibility, locations),
    };
    let code = if verdict.answered() { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (code, line + "\n")
}
