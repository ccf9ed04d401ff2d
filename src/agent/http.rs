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

use super::config::Config;
use super::listener;
use super::publishing::Shared;

/// Binds the listeners (every bind error reported before the agent starts work) and serves
/// them until SIGTERM; returns the main server's task.
pub async fn serve(
    cfg: &Config,
    shared: Arc<Shared>,
) -> anyhow::Result<tokio::task::JoinHandle<std::io::Result<()>>> {
    use anyhow::Context;
    listener::raise_open_file_limit();
    let listener = tokio::net::TcpListener::bind(cfg.listen)
        .await
        .with_context(|| format!("listen on {}", cfg.listen))?;
    // The same address serves both; port 0 is two ports, one each.
    let findings_on_main = cfg.findings_listen == Some(cfg.listen) && cfg.listen.port() != 0;
    let extra = if findings_on_main { ", /v1/findings" } else { "" };
    tracing::info!(
        "serving /metrics, /healthz, /readyz{extra} on {}",
        listener.local_addr()?
    );
    let limits = cfg.http_limits;
    let server = listener::serve(
        listener,
        router(shared.clone(), findings_on_main),
        limits,
        shutdown_signal(),
    );
    let server = tokio::spawn(server);
    if let Some(addr) = cfg.findings_listen.filter(|_| !findings_on_main) {
        let l = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("listen on {addr} (--findings-listen)"))?;
        tracing::info!("serving /v1/findings on {}", l.local_addr()?);
        tokio::spawn(listener::serve(
            l,
            findings_router(shared),
            limits,
            shutdown_signal(),
        ));
    }
    Ok(server)
}

/// SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {},
        _ = term => {},
    }
}

/// `/metrics`, `/healthz`, `/readyz`, and `/v1/findings` too when `with_findings`.
fn router(shared: Arc<Shared>, with_findings: bool) -> Router {
    let r = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz));
    let r = if with_findings {
        r.route("/v1/findings", get(findings))
            .route("/v1/sbom/{digest}", get(sbom))
            .route("/v1/vex/{digest}", get(vex))
    } else {
        r
    };
    r.with_state(shared)
}

/// `/v1/findings` alone.
fn findings_router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/v1/findings", get(findings))
        .route("/v1/sbom/{digest}", get(sbom))
        .route("/v1/vex/{digest}", get(vex))
        .with_state(shared)
}

/// The exposition, gzipped when the scraper accepts it (Prometheus does).
async fn metrics(State(s): State<Arc<Shared>>, headers: axum::http::HeaderMap) -> impl IntoResponse {
    let content_type = (header::CONTENT_TYPE, "text/plain; version=0.0.4");
    if accepts_gzip(&headers) {
        let gzip = (header::CONTENT_ENCODING, "gzip");
        ([content_type, gzip], s.metrics.encode_gzip()).into_response()
    } else {
        ([content_type], s.metrics.encode()).into_response()
    }
}

/// `Accept-Encoding` lists gzip (or `*`) with a non-zero weight.
fn accepts_gzip(headers: &axum::http::HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|coding| {
            let mut parts = coding.split(';').map(str::trim);
            let name = parts.next().unwrap_or("");
            let refused = parts.any(|p| {
                let q = p.strip_prefix("q=").or_else(|| p.strip_prefix("Q="));
                q.and_then(|q| q.trim().parse::<f32>().ok()) == Some(0.0)
            });
            (name.eq_ignore_ascii_case("gzip") || name == "*") && !refused
        })
}

/// 200 while the engine beats; 503 once it has been silent past `--stuck-after` (a containerd
/// outage is not a silence: the engine keeps beating through it).
async fn healthz(State(s): State<Arc<Shared>>) -> impl IntoResponse {
    match s.heartbeat.stuck() {
        None => (StatusCode::OK, "ok\n".to_string()),
        Some(silence) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "engine stuck: no heartbeat for {}s (bound {}s)\n",
                silence.as_secs(),
                s.heartbeat.bound.as_secs()
            ),
        ),
    }
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
    let body = serde_json::to_vec_pretty(&super::findings_v1::Findings::of(&snap)).unwrap_or_default();
    ([(header::CONTENT_TYPE, "application/json")], body)
}

/// The CycloneDX 1.5 SBOM of an image that runs on the node, by manifest or image digest.
async fn sbom(State(s): State<Arc<Shared>>, Path(digest): Path<String>) -> impl IntoResponse {
    let snap = s.snapshot();
    match snap.image_reports.get(&digest) {
        Some(r) => {
            let now = crate::clock::now();
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

/// The OpenVEX document of an image that runs on the node (by manifest or image digest):
/// `affected` per finding, VEX input carried through; 204 when it has no findings.
async fn vex(State(s): State<Arc<Shared>>, Path(digest): Path<String>) -> axum::response::Response {
    let snap = s.snapshot();
    let Some(r) = snap.image_reports.get(&digest) else {
        let body = serde_json::json!({ "error": format!("no running image with manifest or image digest {digest}") });
        return (StatusCode::NOT_FOUND, axum::Json(body)).into_response();
    };
    let now = crate::clock::rfc3339(crate::clock::now());
    let data_version = snap.advisory_db.updated_at.clone().unwrap_or_default();
    let ctx = stalewatch_core::export::openvex::VexContext {
        author: &s.vex_author,
        timestamp: &now,
        image_digest: Some(&digest),
        data_version: &data_version,
        not_loaded_is_not_affected: s.vex_in_use_not_affected,
    };
    let evidence = |i: usize| runtime_evidence(&snap, r, &digest, i);
    match stalewatch_core::export::openvex::document(r, &ctx, &evidence) {
        Some(doc) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            serde_json::to_vec_pretty(&doc).unwrap_or_default(),
        )
            .into_response(),
        None => StatusCode::NO_CONTENT.into_response(),
    }
}

/// What the runtime checks saw of finding `i` of an image's report, over the containers that
/// run it from that very report (a drifted container has a report of its own): loaded when
/// one maps a file of the package, not loaded when every one's maps were read and none does.
fn runtime_evidence(
    snap: &crate::agent::snapshot::Snapshot,
    report: &Arc<stalewatch_core::report::Report>,
    digest: &str,
    i: usize,
) -> Option<stalewatch_core::export::openvex::RuntimeEvidence> {
    let marks: Vec<Option<bool>> = snap
        .containers
        .iter()
        .filter(|c| c.image_digest.as_deref() == Some(digest) || c.manifest_digest.as_deref() == Some(digest))
        .filter_map(|c| c.report.as_ref())
        .filter(|c| Arc::ptr_eq(&c.report, report))
        .map(|c| c.in_use.as_ref().and_then(|m| m.get(i).copied().flatten()))
        .collect();
    if marks.is_empty() || marks.iter().any(Option::is_none) {
        return None;
    }
    let loaded = marks.contains(&Some(true));
    let note = if loaded {
        "runtime: a process of a running container maps a file of this package".to_string()
    } else {
        format!(
            "runtime: no process of the {} running container(s) maps a file of this package (/proc/<pid>/maps)",
            marks.len()
        )
    };
    Some(stalewatch_core::export::openvex::RuntimeEvidence { loaded, note })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accepts(v: &str) -> bool {
        let mut h = axum::http::HeaderMap::new();
        h.insert(header::ACCEPT_ENCODING, v.parse().unwrap());
        accepts_gzip(&h)
    }

    /// RFC 9110 §12.5.3: codings with weights; q=0 means "not acceptable".
    #[test]
    fn gzip_is_served_only_when_accepted() {
        assert!(accepts("gzip"));
        assert!(accepts("identity, GZIP;q=0.5"));
        assert!(accepts("*"));
        assert!(!accepts("identity"));
        assert!(!accepts("gzip;q=0"));
        assert!(!accepts("gzip; q=0.000"));
        assert!(!accepts(""));
    }
}
