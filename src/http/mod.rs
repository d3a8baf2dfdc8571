//! HTTP: `/healthz`, `/status` (JSON) and `/metrics` (Prometheus text).
//!
//! Handlers only load the current snapshot and render it; they never wait on probes.

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

use crate::metrics::{self, QueryStats};
use crate::publisher::Published;
use status::StatusDoc;

#[derive(Clone)]
struct AppState {
    published: Arc<Published>,
    stats: Arc<QueryStats>,
}

/// The routes, for [`serve`] or an in-process test.
pub fn router(published: Arc<Published>, stats: Arc<QueryStats>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/status", get(status))
        .route("/metrics", get(metrics_text))
        .with_state(AppState { published, stats })
}

/// Serves HTTP on `listener` until `cancel` fires, then finishes in-flight requests.
pub async fn serve(
    listener: tokio::net::TcpListener,
    published: Arc<Published>,
    stats: Arc<QueryStats>,
    cancel: CancellationToken,
) -> std::io::Result<()> {
    axum::serve(listener, router(published, stats)).with_graceful_shutdown(cancel.cancelled_owned()).await
}

async fn healthz() -> &'static str {
    "ok"
}

async fn status(State(app): State<AppState>) -> Json<StatusDoc> {
    Json(StatusDoc::from_snapshot(&app.published.load()))
}

async fn metrics_text(State(app): State<AppState>) -> impl IntoResponse {
    let body = metrics::render(&app.published.load(), &app.stats);
    ([(CONTENT_TYPE, metrics::CONTENT_TYPE)], body)
}
