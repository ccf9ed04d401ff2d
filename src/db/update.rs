//! `db update`: fetch `<base>/<Ecosystem>/all.zip` with conditional requests, build the index,
//! swap it in. A failure leaves the previous index in place and is recorded with its reason.

use anyhow::{bail, Context};
use futures_util::StreamExt;
use std::fs;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use stalewatch_core::advisory::EcosystemIndex;

use super::feeds::{Feed, FeedSource};
pub use super::outcome::{fail, Change, UpdateError};
use super::{write_atomic, EcosystemState, Store};
use crate::clock;

#[derive(Debug, Clone)]
pub enum Source {
    Http(String),
    Dir(PathBuf),
}

impl Source {
    pub fn parse(s: &str) -> anyhow::Result<Source> {
        let s = s.trim();
        if s.starts_with("http://") || s.starts_with("https://") {
            Ok(Source::Http(s.trim_end_matches('/').to_string()))
        } else if let Some(p) = s.strip_prefix("file://") {
            if !p.starts_with('/') {
                bail!("--advisory-source {s:?}: file URLs must be absolute (file:///path)");
            }
            Ok(Source::Dir(PathBuf::from(p)))
        } else if s.contains("://") {
            bail!("--advisory-source {s:?}: unsupported scheme (use https://, http://, file:/// or a directory)");
        } else if s.is_empty() {
            bail!("--advisory-source is empty");
        } else {
            Ok(Source::Dir(PathBuf::from(s)))
        }
    }

    /// The source as a command-line argument again.
    pub fn to_arg(&self) -> String {
        self.describe()
    }

    fn describe(&self) -> String {
        match self {
            Source::Http(u) => u.clone(),
            Source::Dir(p) => p.display().to_string(),
        }
    }
}

/// How one ecosystem's refresh ended.
#[derive(Debug)]
enum Outcome {
    /// A new index, with the validators to send next time.
    Updated {
        index: Box<EcosystemIndex>,
        etag: Option<String>,
        last_modified: Option<String>,
        sha256: String,
    },
    Unchanged,
    Missing,
}

fn url_segment(e: &str) -> String {
    e.replace(' ', "%20")
}

struct Progress {
    label: String,
    total: Option<u64>,
    done: u64,
    shown: u64,
    tty: bool,
}

impl Progress {
    fn advance(&mut self, n: u64) {
        self.done += n;
        if self.tty && self.done - self.shown >= 1 << 20 {
            self.shown = self.done;
            let mib = |b: u64| b as f64 / (1 << 20) as f64;
            let total = self
                .total
                .map(|t| format!(" / {:.1}", mib(t)))
                .unwrap_or_default();
            eprint!("\r  {}: {:.1}{} MiB", self.label, mib(self.done), total);
            let _ = std::io::stderr().flush();
        }
    }
    fn finish(&self) {
        if self.tty && self.shown > 0 {
            eprintln!();
        }
    }
}

/// Streams a response body into a temporary file (bounded, hashed, checked against its
/// announced length).
async fn download(
    resp: reqwest::Response,
    url: &str,
    progress: &mut Progress,
    tmp_dir: &Path,
) -> Result<(std::fs::File, Sha256), UpdateError> {
    let mut tmp = tempfile::tempfile_in(tmp_dir).map_err(|e| fail("io", e.to_string()))?;
    let mut hasher = Sha256::new();
    let mut body = resp.bytes_stream();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| fail("network", format!("{url}: {e}")))?;
        tmp.write_all(&chunk).map_err(|e| fail("io", e.to_string()))?;
        hasher.update(&chunk);
        if progress.done + chunk.len() as u64 > MAX_ARCHIVE_BYTES {
            return Err(fail(
                "too_large",
                format!("{url}: more than {MAX_ARCHIVE_BYTES} bytes"),
            ));
        }
        progress.advance(chunk.len() as u64);
    }
    progress.finish();
    if let Some(total) = progress.total {
        if progress.done != total {
            return Err(fail(
                "network",
                format!("{url}: body ended after {} of {total} bytes", progress.done),
            ));
        }
    }
    Ok((tmp, hasher))
}

async fn fetch_http(
    client: &reqwest::Client,
    base: &str,
    eco: &str,
    prev: &EcosystemState,
    have_index: bool,
    tmp_dir: &Path,
) -> Result<Outcome, UpdateError> {
    let url = format!("{base}/{}/all.zip", url_segment(eco));
    let mut req = client.get(&url);
    if have_index {
        if let Some(e) = &prev.etag {
            req = req.header(reqwest::header::IF_NONE_MATCH, e);
        }
        if let Some(m) = &prev.last_modified {
            req = req.header(reqwest::header::IF_MODIFIED_SINCE, m);
        }
    }
    let resp = req
        .send()
        .await
        .map_err(|e| fail("network", format!("{url}: {e}")))?;
    match resp.status().as_u16() {
        304 => return Ok(Outcome::Unchanged),
        404 => return Ok(Outcome::Missing),
        200 => {}
        s => return Err(fail("http_status", format!("{url}: HTTP {s}"))),
    }
    let header = |h: reqwest::header::HeaderName| {
        resp.headers()
            .get(h)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let etag = header(reqwest::header::ETAG);
    let last_modified = header(reqwest::header::LAST_MODIFIED);
    let mut progress = Progress {
        label: eco.to_string(),
        total: resp.content_length(),
        done: 0,
        shown: 0,
        tty: std::io::stderr().is_terminal(),
    };
    if progress.total.is_some_and(|t| t > MAX_ARCHIVE_BYTES) {
        return Err(fail(
            "too_large",
            format!("{url}: {} bytes announced", progress.total.unwrap_or(0)),
        ));
    }
    let (mut tmp, hasher) = download(resp, &url, &mut progress, tmp_dir).await?;
    let eco = eco.to_string();
    let built = tokio::task::spawn_blocking(move || {
        use std::io::Seek;
        tmp.rewind()?;
        Ok::<_, anyhow::Error>(EcosystemIndex::from_osv_zip(&eco, std::io::BufReader::new(tmp))?)
    })
    .await
    .map_err(|e| fail("build", e.to_string()))?
    .map_err(|e| fail("bad_archive", e.to_string()))?;
    Ok(Outcome::Updated {
        index: Box::new(built),
        etag,
        last_modified,
        sha256: hex::encode(hasher.finalize()),
    })
}

fn fetch_dir(dir: &Path, eco: &str, prev: &EcosystemState, have_index: bool) -> Result<Outcome, UpdateError> {
    let path = dir.join(eco).join("all.zip");
    let meta = match fs::metadata(&path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Outcome::Missing),
        Err(e) => return Err(fail("io", format!("{}: {e}", path.display()))),
    };
    // A local file's size and mtime play the role of an ETag.
    let mtime = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let tag = format!("{}-{}", meta.len(), mtime);
    if have_index && prev.etag.as_deref() == Some(tag.as_str()) {
        return Ok(Outcome::Unchanged);
    }
    let bytes = fs::read(&path).map_err(|e| fail("io", format!("{}: {e}", path.display())))?;
    let sha256 = hex::encode(Sha256::digest(&bytes));
    let index = EcosystemIndex::from_osv_zip(eco, std::io::Cursor::new(bytes))
        .map_err(|e| fail("bad_archive", e.to_string()))?;
    Ok(Outcome::Updated {
        index: Box::new(index),
        etag: Some(tag),
        last_modified: None,
        sha256,
    })
}

#[derive(Debug)]
pub struct EcosystemResult {
    pub ecosystem: String,
    pub result: Result<Change, UpdateError>,
}

/// The HTTP client refreshes use (honours `HTTPS_PROXY` / `HTTP_PROXY` / `NO_PROXY`), trusting
/// the extra CA certificates of `ca_file` (PEM) besides the built-in roots, for private mirrors.
pub fn http_client(ca_file: Option<&Path>) -> anyhow::Result<reqwest::Client> {
    let mut b = reqwest::Client::builder()
        .user_agent(concat!("stalewatch/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(std::time::Duration::from_secs(20))
        .read_timeout(std::time::Duration::from_secs(60));
    if let Some(p) = ca_file {
        let pem = fs::read(p).with_context(|| format!("read CA bundle {}", p.display()))?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem)
            .with_context(|| format!("{} holds no PEM certificates", p.display()))?;
        if certs.is_empty() {
            bail!("{} holds no PEM certificates", p.display());
        }
        for c in certs {
            b = b.add_root_certificate(c);
        }
    }
    b.build().context("build HTTP client")
}

/// Records one ecosystem's outcome in its state entry; the result the caller reports.
fn record_outcome(
    entry: &mut EcosystemState,
    eco: &str,
    written: Result<Outcome, UpdateError>,
    now: String,
) -> Result<Change, UpdateError> {
    match written {
        Ok(Outcome::Updated {
            index,
            etag,
            last_modified,
            sha256,
        }) => {
            let s = &index.stats;
            entry.records = s.records;
            entry.withdrawn = s.withdrawn;
            entry.skipped = s.skipped_total();
            entry.source_modified = s.newest_modified.clone();
            entry.archive_sha256 = Some(sha256);
            entry.entries = index
                .packages
                .iter()
                .map(|(e, names)| (e.clone(), names.values().map(|v| v.len() as u64).sum()))
                .collect();
            entry.etag = etag;
            entry.last_modified = last_modified;
            entry.last_success = Some(now);
            entry.last_error = None;
            entry.missing = false;
            Ok(Change::Updated(format!(
                "{} records ({} withdrawn, {} skipped as malformed), {} package entries",
                s.records,
                s.withdrawn,
                s.skipped_total(),
                index.affected_entries()
            )))
        }
        Ok(Outcome::Unchanged) => {
            entry.last_success = Some(now);
            entry.last_error = None;
            Ok(Change::Unchanged)
        }
        Ok(Outcome::Missing) => {
            entry.missing = true;
            Ok(Change::Missing)
        }
        Err(e) => {
            tracing::warn!(ecosystem = %eco, reason = e.reason, "advisory update failed: {}", e.detail);
            entry.last_error = Some(e.to_string());
            Err(e)
        }
    }
}

/// An archive larger than this is refused (the largest public OSV zip is a few hundred MiB).
pub const MAX_ARCHIVE_BYTES: u64 = 4 << 30;

/// Refreshes the given ecosystems under the database lock. Each ecosystem succeeds or fails
/// on its own; a failed one keeps its previous index. Errors only when the database
/// directory itself is unusable.
pub async fn refresh(
    source: &Source,
    dir: &Path,
    ecosystems: &[String],
    feeds: &FeedSources,
    client: &reqwest::Client,
) -> anyhow::Result<Vec<EcosystemResult>> {
    let store = Store::new(dir);
    let lock_dir = dir.to_path_buf();
    let _lock = tokio::task::spawn_blocking(move || Store::new(&lock_dir).lock()).await??;
    // A corrupt state file (it records only what conditional requests and `db status` use)
    // must not stop every update from then on: it is started afresh, and rewritten below.
    let mut state = store.state().unwrap_or_else(|e| {
        tracing::warn!("{e:#}; starting from a fresh state (every source is fetched whole)");
        Default::default()
    });
    let mut results = Vec::new();
    for eco in ecosystems {
        let now = clock::rfc3339(clock::now_unix()?);
        let prev = state.ecosystems.get(eco).cloned().unwrap_or_default();
        let have_index = store.has_index(eco) && store.open(eco).is_ok();
        let fetched = match source {
            Source::Http(base) => fetch_http(client, base, eco, &prev, have_index, dir).await,
            Source::Dir(d) => {
                let (d, eco, prev) = (d.clone(), eco.clone(), prev.clone());
                tokio::task::spawn_blocking(move || fetch_dir(&d, &eco, &prev, have_index))
                    .await
                    .map_err(|e| fail("build", e.to_string()))
                    .and_then(|r| r)
            }
        };
        let entry = state.ecosystems.entry(eco.clone()).or_default();
        entry.source = source.describe();
        entry.last_attempt = Some(now.clone());
        let written = fetched.and_then(|o| {
            if let Outcome::Updated { index, .. } = &o {
                write_atomic(
                    &store.index_path(eco),
                    &stalewatch_core::advisory::file::write(index),
                )
                .map_err(|e| fail("io", format!("{e:#}")))?;
            }
            Ok(o)
        });
        let result = record_outcome(entry, eco, written, now);
        store.save_state(&state)?;
        results.push(EcosystemResult {
            ecosystem: eco.clone(),
            result,
        });
    }
    // The data's own age; a source that cannot be asked now keeps what it said last.
    let synced = match source {
        Source::Http(base) => super::freshness::http_synced(base, client).await,
        Source::Dir(d) => Ok(super::freshness::dir_synced(d)),
    };
    match synced {
        Ok(synced) => state.source_synced = synced,
        Err(e) => tracing::warn!("the advisory source's sync time: {e}"),
    }
    store.save_state(&state)?;
    for (feed, src) in [(Feed::Kev, &feeds.kev), (Feed::Epss, &feeds.epss)] {
        let Some(src) = src else { continue };
        let result = super::feeds::refresh(&store, &mut state, feed, src, client).await;
        store.save_state(&state)?;
        results.push(EcosystemResult {
            ecosystem: feed.name().to_string(),
            result,
        });
    }
    Ok(results)
}

/// The triage feeds to refresh with the advisories (`None`: not configured).
#[derive(Debug, Clone, Default)]
pub struct FeedSources {
    pub kev: Option<FeedSource>,
    pub epss: Option<FeedSource>,
}

/// `db update`: refreshes and says what happened per ecosystem. `Ok(false)` if any failed.
/// One ecosystem's outcome as `db update --format json` prints it (one JSON object a line);
/// the agent reads these from the refresh child process.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct ResultLine {
    pub ecosystem: String,
    /// `updated`, `unchanged`, `missing` or `failed`.
    pub result: String,
    #[serde(default)]
    pub reason: Option<String>,
    #[serde(default)]
    pub detail: String,
}

impl From<&EcosystemResult> for ResultLine {
    fn from(r: &EcosystemResult) -> Self {
        let (result, reason, detail) = match &r.result {
            Ok(Change::Updated(what)) => ("updated", None, what.clone()),
            Ok(Change::Unchanged) => ("unchanged", None, String::new()),
            Ok(Change::Missing) => ("missing", None, String::new()),
            Err(e) => ("failed", Some(e.reason.to_string()), e.detail.clone()),
        };
        ResultLine {
            ecosystem: r.ecosystem.clone(),
            result: result.into(),
            reason,
            detail,
        }
    }
}

impl ResultLine {
    /// Back to a result (reasons outside the known set become `other`).
    pub fn into_result(self) -> EcosystemResult {
        const REASONS: [&str; 6] = [
            "network",
            "http_status",
            "too_large",
            "bad_archive",
            "io",
            "build",
        ];
        let result = match self.result.as_str() {
            "updated" => Ok(Change::Updated(self.detail)),
            "unchanged" => Ok(Change::Unchanged),
            "missing" => Ok(Change::Missing),
            _ => {
                let reason = REASONS
                    .iter()
                    .find(|r| Some(**r) == self.reason.as_deref())
                    .copied()
                    .unwrap_or("other");
                Err(fail(reason, self.detail))
            }
        };
        EcosystemResult {
            ecosystem: self.ecosystem,
            result,
        }
    }
}

/// `db update`: refreshes and says what happened per ecosystem (text on stderr, or JSON
/// lines on stdout). `Ok(false)` if any failed.
pub fn run(
    source: &Source,
    dir: &Path,
    ecosystems: &[String],
    feeds: &FeedSources,
    ca_file: Option<&Path>,
    json: bool,
) -> anyhow::Result<bool> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let client = http_client(ca_file)?;
    let results = rt.block_on(refresh(source, dir, ecosystems, feeds, &client))?;
    let mut all_ok = true;
    for r in &results {
        all_ok &= r.result.is_ok();
        if json {
            println!("{}", serde_json::to_string(&ResultLine::from(r))?);
            continue;
        }
        let eco = &r.ecosystem;
        match &r.result {
            Ok(Change::Updated(what)) => eprintln!("{eco}: updated, {what}"),
            Ok(Change::Unchanged) => eprintln!("{eco}: unchanged"),
            Ok(Change::Missing) => eprintln!("{eco}: not on this mirror, skipped"),
            Err(e) => eprintln!("{eco}: update failed ({e}); the previous index stays in use"),
        }
    }
    Ok(all_ok)
}
