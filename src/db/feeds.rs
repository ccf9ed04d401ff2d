//! The triage feeds beside the advisory indexes: CISA's KEV catalog (`kev.json`, stored as
//! published) and FIRST's EPSS scores (`epss.bin`, stored compactly). Each is fetched from a
//! URL or a file with conditional requests, parsed in full before it replaces the stored copy
//! (a malformed download is a clear error and changes nothing), and recorded in `state.json`.

use anyhow::Context;
use serde::{Deserialize, Serialize};
use std::fs;
use std::path::{Path, PathBuf};

use stalewatch_core::triage::{EpssScores, KevCatalog};

use super::outcome::{fail, Change, UpdateError};
use super::{write_atomic, Store};
use crate::clock;

/// A downloaded feed larger than this is refused before it is parsed.
const MAX_FEED_BYTES: u64 = 128 << 20;

/// Where a feed comes from: an `http(s)://` URL, or a file (`file:///…` or a path).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FeedSource {
    Http(String),
    File(PathBuf),
}

impl FeedSource {
    pub fn parse(s: &str) -> Result<FeedSource, String> {
        let s = s.trim();
        if s.starts_with("http://") || s.starts_with("https://") {
            Ok(FeedSource::Http(s.to_string()))
        } else if let Some(p) = s.strip_prefix("file://") {
            if p.starts_with('/') {
                Ok(FeedSource::File(PathBuf::from(p)))
            } else {
                Err("file URLs must be absolute (file:///path)".into())
            }
        } else if s.contains("://") {
            Err("unsupported scheme (use https://, http://, file:/// or a path)".into())
        } else if s.is_empty() {
            Err("empty".into())
        } else {
            Ok(FeedSource::File(PathBuf::from(s)))
        }
    }

    pub fn to_arg(&self) -> String {
        match self {
            FeedSource::Http(u) => u.clone(),
            FeedSource::File(p) => p.display().to_string(),
        }
    }
}

/// The two feeds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Feed {
    Kev,
    Epss,
}

impl Feed {
    /// The name in `state.json`, `db status` and the refresh's result lines.
    pub fn name(self) -> &'static str {
        match self {
            Feed::Kev => "kev",
            Feed::Epss => "epss",
        }
    }
    fn file(self) -> &'static str {
        match self {
            Feed::Kev => "kev.json",
            Feed::Epss => "epss.bin",
        }
    }
}

/// What the database knows of one feed.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct FeedState {
    pub source: String,
    /// KEV `catalogVersion`, EPSS `model_version`.
    pub version: Option<String>,
    /// KEV `dateReleased`, EPSS `score_date`.
    pub date: Option<String>,
    /// CVEs in the catalog, or rows of scores.
    pub entries: u64,
    pub etag: Option<String>,
    pub last_modified: Option<String>,
    pub last_success: Option<String>,
    pub last_attempt: Option<String>,
    pub last_error: Option<String>,
}

/// A parsed feed, ready to store.
struct Parsed {
    bytes: Vec<u8>,
    version: String,
    date: String,
    entries: u64,
}

fn parse(feed: Feed, bytes: Vec<u8>) -> Result<Parsed, UpdateError> {
    match feed {
        Feed::Kev => {
            let k = KevCatalog::parse(&bytes).map_err(|e| fail("bad_archive", e.to_string()))?;
            Ok(Parsed {
                version: k.catalog_version.clone(),
                date: k.date_released.clone(),
                entries: k.len() as u64,
                bytes,
            })
        }
        Feed::Epss => {
            let e = EpssScores::parse(&bytes).map_err(|e| fail("bad_archive", e.to_string()))?;
            Ok(Parsed {
                version: e.model_version.clone(),
                date: e.score_date.to_string(),
                entries: e.len() as u64,
                bytes: postcard::to_stdvec(&e).map_err(|e| fail("build", e.to_string()))?,
            })
        }
    }
}

/// A fetch's outcome: new bytes (with validators), or unchanged.
enum Fetched {
    New {
        bytes: Vec<u8>,
        etag: Option<String>,
        last_modified: Option<String>,
    },
    Unchanged,
}

async fn fetch(
    client: &reqwest::Client,
    source: &FeedSource,
    prev: &FeedState,
    have: bool,
) -> Result<Fetched, UpdateError> {
    match source {
        FeedSource::File(p) => {
            let meta = fs::metadata(p).map_err(|e| fail("io", format!("{}: {e}", p.display())))?;
            let mtime = meta
                .modified()
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_nanos());
            let tag = format!("{}-{mtime}", meta.len());
            if have && prev.etag.as_deref() == Some(tag.as_str()) {
                return Ok(Fetched::Unchanged);
            }
            if meta.len() > MAX_FEED_BYTES {
                return Err(fail(
                    "too_large",
                    format!("{}: {} bytes", p.display(), meta.len()),
                ));
            }
            let bytes = fs::read(p).map_err(|e| fail("io", format!("{}: {e}", p.display())))?;
            Ok(Fetched::New {
                bytes,
                etag: Some(tag),
                last_modified: None,
            })
        }
        FeedSource::Http(url) => fetch_http(client, url, prev, have).await,
    }
}

async fn fetch_http(
    client: &reqwest::Client,
    url: &str,
    prev: &FeedState,
    have: bool,
) -> Result<Fetched, UpdateError> {
    let mut req = client.get(url);
    if have {
        if let Some(e) = &prev.etag {
            req = req.header(reqwest::header::IF_NONE_MATCH, e);
        }
        if let Some(m) = &prev.last_modified {
            req = req.header(reqwest::header::IF_MODIFIED_SINCE, m);
        }
    }
    let mut resp = req
        .send()
        .await
        .map_err(|e| fail("network", format!("{url}: {e}")))?;
    match resp.status().as_u16() {
        304 => return Ok(Fetched::Unchanged),
        200 => {}
        s => return Err(fail("http_status", format!("{url}: HTTP {s}"))),
    }
    if resp.content_length().is_some_and(|n| n > MAX_FEED_BYTES) {
        return Err(fail(
            "too_large",
            format!("{url}: more than {MAX_FEED_BYTES} bytes"),
        ));
    }
    let header = |h: reqwest::header::HeaderName, r: &reqwest::Response| {
        r.headers()
            .get(h)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let etag = header(reqwest::header::ETAG, &resp);
    let last_modified = header(reqwest::header::LAST_MODIFIED, &resp);
    let expected = resp.content_length();
    let mut bytes = Vec::new();
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| fail("network", format!("{url}: {e}")))?
    {
        bytes.extend_from_slice(&chunk);
        if bytes.len() as u64 > MAX_FEED_BYTES {
            return Err(fail(
                "too_large",
                format!("{url}: more than {MAX_FEED_BYTES} bytes"),
            ));
        }
    }
    if let Some(n) = expected.filter(|n| *n != bytes.len() as u64) {
        return Err(fail(
            "network",
            format!("{url}: body ended after {} of {n} bytes", bytes.len()),
        ));
    }
    Ok(Fetched::New {
        bytes,
        etag,
        last_modified,
    })
}

/// Refreshes one feed under the database lock the caller holds; records the outcome.
pub async fn refresh(
    store: &Store,
    state: &mut super::State,
    feed: Feed,
    source: &FeedSource,
    client: &reqwest::Client,
) -> Result<Change, UpdateError> {
    let now = clock::rfc3339(clock::now_unix().unwrap_or(0));
    let path = store.feed_path(feed);
    let prev = state.feeds.get(feed.name()).cloned().unwrap_or_default();
    let have = prev.source == source.to_arg() && path.is_file();
    let outcome = match fetch(client, source, &prev, have).await {
        Ok(Fetched::Unchanged) => Ok(None),
        Ok(Fetched::New {
            bytes,
            etag,
            last_modified,
        }) => tokio::task::spawn_blocking(move || parse(feed, bytes))
            .await
            .map_err(|e| fail("build", e.to_string()))
            .and_then(|p| p)
            .and_then(|p| {
                write_atomic(&path, &p.bytes).map_err(|e| fail("io", format!("{e:#}")))?;
                Ok(Some((p, etag, last_modified)))
            }),
        Err(e) => Err(e),
    };
    let entry = state.feeds.entry(feed.name().to_string()).or_default();
    entry.source = source.to_arg();
    entry.last_attempt = Some(now.clone());
    match outcome {
        Ok(None) => {
            entry.last_success = Some(now);
            entry.last_error = None;
            Ok(Change::Unchanged)
        }
        Ok(Some((p, etag, last_modified))) => {
            *entry = FeedState {
                source: entry.source.clone(),
                version: Some(p.version.clone()),
                date: Some(p.date.clone()),
                entries: p.entries,
                etag,
                last_modified,
                last_success: Some(now.clone()),
                last_attempt: Some(now),
                last_error: None,
            };
            Ok(Change::Updated(format!(
                "{} entries, version {}, dated {}",
                p.entries, p.version, p.date
            )))
        }
        Err(e) => {
            tracing::warn!(
                feed = feed.name(),
                reason = e.reason,
                "feed update failed: {}",
                e.detail
            );
            entry.last_error = Some(e.to_string());
            Err(e)
        }
    }
}

impl Store {
    pub fn feed_path(&self, feed: Feed) -> PathBuf {
        self.dir.join(feed.file())
    }

    /// The stored KEV catalog, if one is.
    pub fn kev(&self) -> anyhow::Result<Option<KevCatalog>> {
        let p = self.feed_path(Feed::Kev);
        match read_optional(&p)? {
            None => Ok(None),
            Some(b) => KevCatalog::parse(&b)
                .map(Some)
                .with_context(|| format!("load {} (run `stalewatch db update --kev-source …`)", p.display())),
        }
    }

    /// The stored EPSS scores, if any are.
    pub fn epss(&self) -> anyhow::Result<Option<EpssScores>> {
        let p = self.feed_path(Feed::Epss);
        match read_optional(&p)? {
            None => Ok(None),
            Some(b) => {
                let e: EpssScores = postcard::from_bytes(&b)
                    .ok()
                    .filter(EpssScores::is_consistent)
                    .with_context(|| {
                        format!(
                            "{} is corrupt (run `stalewatch db update --epss-source …`)",
                            p.display()
                        )
                    })?;
                Ok(Some(e))
            }
        }
    }
}

fn read_optional(p: &Path) -> anyhow::Result<Option<Vec<u8>>> {
    match fs::read(p) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("read {}", p.display())),
    }
}
