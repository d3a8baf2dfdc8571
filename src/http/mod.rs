//! HTTP: `/healthz`, `/status` (JSON) and `/metrics` (Prometheus text).
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
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use tokio_util::sync::CancellationToken;

use crate::dns::query::QueryStats;
use crate::metrics;
use crate::store::Snapshots;
use status::StatusDoc;

#[derive(Clone)]
struct AppState {
    snapshots: Arc<dyn Snapshots>,
    stats: Arc<QueryStats>,
}

/// The routes, for [`serve`] or an in-process test.
pub fn router(snapshots: Arc<dyn Snapshots>, stats: Arc<QueryStats>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/status", get(status))
        .route("/metrics", get(metrics_text))
        .with_state(AppState { snapshots, stats })
}

/// Serves HTTP on `listener` until `cancel` fires, then finishes in-flight requests.
pub async fn serve(
    listener: tokio::net::TcpListener,
    snapshots: Arc<dyn Snapshots>,
    stats: Arc<QueryStats>,
    cancel: CancellationToken,
) -> std::io::Result<()> {
    let guarded = edge::Guarded::new(listener, snapshots.clone(), stats.clone());
    axum::serve(guarded, router(snapshots, stats)).with_graceful_shutdown(cancel.cancelled_owned()).await
}

async fn healthz() -> &'static str {
    "ok"
}

async fn status(State(app): State<AppState>) -> Json<StatusDoc> {
    Json(StatusDoc::from_snapshot(&app.snapshots.snapshot()))
}

async fn metrics_text(State(app): State<AppState>) -> impl IntoResponse {
    let body = metrics::render(&app.snapshots.snapshot(), &app.stats);
    ([(CONTENT_TYPE, metrics::CONTENT_TYPE)], body)
}
