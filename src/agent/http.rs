//! The agent's HTTP endpoints: `/metrics`, `/healthz`, `/readyz` on the open port, and
//! `/v1/findings` (a map of what is exploitable on the node) and `/v1/sbom/<digest>` (an
//! image's CycloneDX SBOM) on their own, loopback listener.

use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::Shared;

/// `/metrics`, `/healthz`, `/readyz`, and `/v1/findings` too when `with_findings`.
pub fn router(shared: Arc<Shared>, with_findings: bool) -> Router {
    let r = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz));
    let r = if with_findings {
        r.route("/v1/findings", get(findings))
            .route("/v1/sbom/{digest}", get(sbom))
    } else {
        r
    };
    r.with_state(shared)
}

/// `/v1/findings` alone.
pub fn findings_router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/v1/findings", get(findings))
        .route("/v1/sbom/{digest}", get(sbom))
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

/// The CycloneDX 1.5 SBOM of an image that runs on the node, by manifest or image digest.
async fn sbom(State(s): State<Arc<Shared>>, Path(digest): Path<String>) -> impl IntoResponse {
    let snap = s.snapshot();
    match snap.image_reports.get(&digest) {
        Some(r) => {
            let now = crate::clock::now_unix().unwrap_or(0);
            let bom = stalewatch_core::export::cyclonedx::bom(r, &crate::clock::rfc3339(now));
            (
                StatusCode::OK,
                [(
                    header::CONTENT_TYPE,
                    "application/vnd.cyclonedx+json; version=1.5",
                )],
                serde_json::to_vec_pretty(&bom).unwrap_or_default(),
            )
        }
        None => (
            StatusCode::NOT_FOUND,
            [(header::CONTENT_TYPE, "application/json")],
            serde_json::to_vec(&serde_json::json!({
                "error": format!("no running image with manifest or image digest {digest}")
            }))
            .unwrap_or_default(),
        ),
    }
}
