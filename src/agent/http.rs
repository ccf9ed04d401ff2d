//! The agent's HTTP endpoints: `/metrics`, `/healthz`, `/readyz`, `/v1/findings`.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::Shared;

pub fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/v1/findings", get(findings))
        .with_state(shared)
}

async fn metrics(State(s): State<Arc<Shared>>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        s.metrics.encode(),
    )
}

async fn readyz(State(s): State<Arc<Shared>>) -> impl IntoResponse {
    if s.ready.load(Ordering::SeqCst) {
        (StatusCode::OK, "ready\n")
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: no advisory index loaded or first inventory not finished\n",
        )
    }
}

async fn findings(State(s): State<Arc<Shared>>) -> impl IntoResponse {
    let snap = s.snapshot();
    let body = serde_json::to_vec_pretty(&*snap).unwrap_or_default();
    ([(header::CONTENT_TYPE, "application/json")], body)
}
