//! HTTP: `/healthz`, `/readyz`, `/status` (JSON) and `/metrics` (Prometheus text).
//!
//! Handlers only load the current snapshot and render it; they never wait on probes.
//! `edge` bounds who may connect, how many at once, and for how long.

pub mod edge;
pub mod status;

#[cfg(test)]
pub(crate) mod fixture;

use std::sync::Arc;

use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use tokio_util::sync::CancellationToken;

use crate::dns::query::QueryStats;
use crate::metrics::{self, Reloads};
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
