//! The mirror's HTTP side: the data directory's files (GET and HEAD, with `ETag` and
//! `Last-Modified`, and 304 for a conditional request whose copy is current — what agents send
//! on every refresh), `/metrics`, `/healthz`, and `/readyz` (after the first sync pass).
//! Paths are untrusted: only plain names below the data directory, never a dot file (the
//! sync's part files and validators), `..` or a directory.

use axum::body::Body;
use axum::extract::{Path as UrlPath, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::UNIX_EPOCH;

use super::metrics::MirrorMetrics;

#[derive(Clone)]
struct Served {
    data: Arc<PathBuf>,
    metrics: MirrorMetrics,
    synced_once: Arc<AtomicBool>,
}

pub fn router(data: PathBuf, metrics: MirrorMetrics, synced_once: Arc<AtomicBool>) -> Router {
    let state = Served {
        data: Arc::new(data),
        metrics,
        synced_once,
    };
    Router::new()
        .route("/metrics", get(metrics_text))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready))
        .route("/{*path}", get(file).head(file))
        .with_state(state)
}

async fn metrics_text(State(s): State<Served>) -> Response {
    let mut text = String::new();
    match prometheus::TextEncoder::new().encode_utf8(&s.metrics.registry.gather(), &mut text) {
        Ok(()) => ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

async fn ready(State(s): State<Served>) -> Response {
    if s.synced_once.load(Ordering::Relaxed) {
        "ready\n".into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "the first sync has not finished\n",
        )
            .into_response()
    }
}

/// The file's relative path, when every segment is a plain name.
fn plain(path: &str) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for seg in path.split('/') {
        if seg.is_empty() || seg.starts_with('.') || seg.contains('\0') || seg.contains('\\') {
            return None;
        }
        out.push(seg);
    }
    Some(out)
}

fn content_type(path: &std::path::Path) -> &'static str {
    match path.extension().and_then(|e| e.to_str()) {
        Some("zip") => "application/zip",
        Some("json") => "application/json",
        Some("gz") => "application/gzip",
        Some("csv" | "txt") => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

async fn file(
    State(s): State<Served>,
    method: Method,
    UrlPath(path): UrlPath<String>,
    headers: HeaderMap,
) -> Response {
    let not_found = || (StatusCode::NOT_FOUND, "not found\n").into_response();
    let Some(rel) = plain(&path) else {
        return not_found();
    };
    let full = s.data.join(&rel);
    let Ok(f) = tokio::fs::File::open(&full).await else {
        return not_found();
    };
    let Ok(meta) = f.metadata().await else {
        return not_found();
    };
    if !meta.is_file() {
        return not_found();
    }
    let modified = meta.modified().unwrap_or(UNIX_EPOCH);
    let secs = modified
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let etag = format!("\"{secs:x}-{:x}\"", meta.len());
    let last_modified = httpdate::fmt_http_date(UNIX_EPOCH + std::time::Duration::from_secs(secs));
    // If-None-Match wins over If-Modified-Since (RFC 9110 13.2.2).
    let fresh = match headers.get(header::IF_NONE_MATCH).and_then(|v| v.to_str().ok()) {
        Some(tags) => tags.split(',').any(|t| t.trim() == etag || t.trim() == "*"),
        None => headers
            .get(header::IF_MODIFIED_SINCE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| httpdate::parse_http_date(v).ok())
            .and_then(|since| since.duration_since(UNIX_EPOCH).ok())
            .is_some_and(|since| since.as_secs() >= secs),
    };
    let builder = Response::builder()
        .header(header::ETAG, &etag)
        .header(header::LAST_MODIFIED, &last_modified);
    if fresh {
        return builder
            .status(StatusCode::NOT_MODIFIED)
            .body(Body::empty())
            .unwrap_or_else(|_| not_found());
    }
    let builder = builder
        .header(header::CONTENT_TYPE, content_type(&rel))
        .header(header::CONTENT_LENGTH, meta.len());
    let body = if method == Method::HEAD {
        Body::empty()
    } else {
        Body::from_stream(chunks(f))
    };
    builder.body(body).unwrap_or_else(|_| not_found())
}

/// The file as a stream of 64 KiB chunks (a zip of hundreds of MiB is never held whole).
fn chunks(f: tokio::fs::File) -> impl futures_util::Stream<Item = std::io::Result<bytes::Bytes>> {
    futures_util::stream::try_unfold(f, |mut f| async move {
        use tokio::io::AsyncReadExt;
        let mut buf = vec![0u8; 64 * 1024];
        let n = f.read(&mut buf).await?;
        if n == 0 {
            return Ok(None);
        }
        buf.truncate(n);
        Ok(Some((bytes::Bytes::from(buf), f)))
    })
}

#[cfg(test)]
mod tests {
    use super::plain;

    #[test]
    fn only_plain_names_below_the_data_directory() {
        assert_eq!(
            plain("Alpine/all.zip").unwrap(),
            std::path::Path::new("Alpine/all.zip")
        );
        assert_eq!(
            plain("Azure Linux/all.zip").unwrap(),
            std::path::Path::new("Azure Linux/all.zip")
        );
        for bad in [
            "../etc/passwd",
            "Alpine/../../x",
            ".stalewatch-mirror.json",
            "Alpine/all.zip.part/.x",
            "",
            "a//b",
            "/abs",
            "a\\b",
        ] {
            assert!(plain(bad).is_none(), "{bad}");
        }
    }
}
