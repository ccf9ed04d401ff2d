//! One sync pass: each ecosystem's `all.zip`, then the KEV and EPSS files, fetched with the
//! validators upstream gave last time (`If-None-Match`, `If-Modified-Since`: an unchanged file
//! is not downloaded), checked, and moved over the served copy only when whole. When every
//! ecosystem was refreshed (updated or unchanged) the time goes in `stalewatch-sync.json`,
//! which agents export as the data's own age; a failure keeps the previous time.

use anyhow::Context;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use tokio::io::AsyncWriteExt;

use super::config::Config;
use crate::db::freshness::{parse_sync_file, SYNC_FILE};
use crate::db::write_atomic;
use stalewatch_core::time::format_rfc3339;

/// Upstream's validators of each file, by URL (hidden from the server: a dot file).
const VALIDATORS: &str = ".stalewatch-mirror.json";
/// A file larger than this is refused (the largest OSV export is about 1 GiB).
const MAX_FILE: u64 = 8 << 30;

/// What one pass did.
#[derive(Debug, Default)]
pub struct SyncReport {
    /// The files that failed (an ecosystem's name, `kev`, `epss`).
    pub failed: Vec<String>,
    /// The time written to `stalewatch-sync.json` when every ecosystem was refreshed.
    pub synced_at: Option<i64>,
}

impl SyncReport {
    pub fn ok(&self) -> bool {
        self.failed.is_empty()
    }
}

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
struct Validators {
    etag: Option<String>,
    last_modified: Option<String>,
}

enum Fetched {
    Updated,
    Unchanged,
}

/// How a downloaded file is checked before it is served.
#[derive(Clone, Copy)]
enum Check {
    /// A zip ends with its end-of-central-directory record: a truncated download has none.
    Zip,
    /// CISA's KEV catalog: JSON with its `catalogVersion` and `vulnerabilities`.
    Kev,
    /// FIRST's EPSS scores: gzip.
    Gzip,
}

/// The time `stalewatch-sync.json` in `data` holds, if any.
pub fn recorded_sync_time(data: &Path) -> Option<i64> {
    parse_sync_file(&std::fs::read(data.join(SYNC_FILE)).ok()?)
}

/// Runs one pass; prints a line per file (`Alpine: updated`) as it goes.
pub async fn sync_once(cfg: &Config, client: &reqwest::Client) -> SyncReport {
    let mut validators: BTreeMap<String, Validators> = std::fs::read(cfg.data.join(VALIDATORS))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    let mut report = SyncReport::default();
    let base = cfg.upstream.trim_end_matches('/');
    let mut jobs: Vec<(String, String, PathBuf, Check)> = cfg
        .ecosystems
        .iter()
        .map(|e| {
            let url = format!("{base}/{}/all.zip", e.replace(' ', "%20"));
            (e.clone(), url, cfg.data.join(e).join("all.zip"), Check::Zip)
        })
        .collect();
    let osv_files = jobs.len();
    if let Some(u) = &cfg.kev_upstream {
        let dest = cfg.data.join("kev/known_exploited_vulnerabilities.json");
        jobs.push(("kev".into(), u.clone(), dest, Check::Kev));
    }
    if let Some(u) = &cfg.epss_upstream {
        let dest = cfg.data.join("epss/epss_scores-current.csv.gz");
        jobs.push(("epss".into(), u.clone(), dest, Check::Gzip));
    }
    for (i, (name, url, dest, check)) in jobs.into_iter().enumerate() {
        let prev = validators.get(&url).cloned().unwrap_or_default();
        match fetch(client, &url, &dest, check, &prev).await {
            Ok((Fetched::Updated, v)) => {
                println!("{name}: updated");
                validators.insert(url, v);
            }
            Ok((Fetched::Unchanged, _)) => println!("{name}: unchanged"),
            // A failure is logged once (the log is the report for failures; stdout lists
            // what was fetched).
            Err(e) => {
                tracing::warn!(file = name, "mirror sync: {name}: {e:#}");
                report.failed.push(name);
            }
        }
        if i + 1 == osv_files && report.failed.is_empty() {
            let now = crate::clock::now();
            let text = format!("{{\"synced_at\": \"{}\"}}\n", format_rfc3339(now));
            match write_atomic(&cfg.data.join(SYNC_FILE), text.as_bytes()) {
                Ok(()) => report.synced_at = Some(now),
                Err(e) => {
                    tracing::warn!(file = SYNC_FILE, "mirror sync: {SYNC_FILE}: not written: {e:#}");
                    report.failed.push(SYNC_FILE.into());
                }
            }
        }
    }
    if let Ok(b) = serde_json::to_vec(&validators) {
        if let Err(e) = write_atomic(&cfg.data.join(VALIDATORS), &b) {
            tracing::warn!("mirror sync: {VALIDATORS} not written: {e:#}");
        }
    }
    report
}

/// Fetches `url` into `dest` unless upstream says it is unchanged.
async fn fetch(
    client: &reqwest::Client,
    url: &str,
    dest: &Path,
    check: Check,
    prev: &Validators,
) -> anyhow::Result<(Fetched, Validators)> {
    let mut req = client.get(url);
    if dest.is_file() {
        if let Some(e) = &prev.etag {
            req = req.header(reqwest::header::IF_NONE_MATCH, e);
        }
        if let Some(m) = &prev.last_modified {
            req = req.header(reqwest::header::IF_MODIFIED_SINCE, m);
        }
    }
    let resp = req.send().await.context("download failed")?;
    if resp.status() == reqwest::StatusCode::NOT_MODIFIED && dest.is_file() {
        return Ok((Fetched::Unchanged, prev.clone()));
    }
    if !resp.status().is_success() {
        anyhow::bail!("download failed: HTTP {}", resp.status().as_u16());
    }
    let header = |h| {
        resp.headers()
            .get(h)
            .and_then(|v: &reqwest::header::HeaderValue| v.to_str().ok())
            .map(str::to_string)
    };
    let got = Validators {
        etag: header(reqwest::header::ETAG),
        last_modified: header(reqwest::header::LAST_MODIFIED),
    };
    let dir = dest.parent().context("no parent directory")?;
    tokio::fs::create_dir_all(dir)
        .await
        .with_context(|| format!("create {}", dir.display()))?;
    // A dot file: never served while it is written.
    let name = dest.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let part = dir.join(format!(".{name}.part"));
    let mut out = tokio::fs::File::create(&part)
        .await
        .with_context(|| format!("create {}", part.display()))?;
    let mut body = resp.bytes_stream();
    let mut size = 0u64;
    let written: anyhow::Result<()> = async {
        while let Some(chunk) = body.next().await {
            let chunk = chunk.context("download failed")?;
            size += chunk.len() as u64;
            if size > MAX_FILE {
                anyhow::bail!("refused: larger than {MAX_FILE} bytes");
            }
            out.write_all(&chunk).await?;
        }
        out.sync_all().await?;
        Ok(())
    }
    .await;
    drop(out);
    let checked = written.and_then(|()| {
        if well_formed(&part, check)? {
            Ok(())
        } else {
            anyhow::bail!("malformed, keeping the previous one")
        }
    });
    if let Err(e) = checked {
        let _ = std::fs::remove_file(&part);
        return Err(e);
    }
    if let Some(t) = got
        .last_modified
        .as_deref()
        .and_then(|m| httpdate::parse_http_date(m).ok())
    {
        // The served copy carries upstream's time, as `curl -R` would.
        if let Ok(f) = std::fs::File::options().write(true).open(&part) {
            let _ = f.set_modified(t);
        }
    }
    std::fs::rename(&part, dest).with_context(|| format!("rename into {}", dest.display()))?;
    Ok((Fetched::Updated, got))
}

fn well_formed(path: &Path, check: Check) -> anyhow::Result<bool> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = std::fs::File::open(path)?;
    let len = f.metadata()?.len();
    Ok(match check {
        Check::Zip => {
            // The record is 22 bytes plus a comment of at most 65,535.
            let tail = len.min(22 + 65535);
            f.seek(SeekFrom::Start(len - tail))?;
            let mut buf = Vec::with_capacity(tail as usize);
            f.take(tail).read_to_end(&mut buf)?;
            len >= 22 && memchr::memmem::rfind(&buf, b"PK\x05\x06").is_some_and(|at| buf.len() - at >= 22)
        }
        Check::Kev => {
            #[derive(Deserialize)]
            #[serde(rename_all = "camelCase")]
            #[allow(dead_code)] // read only to be checked
            struct Kev {
                catalog_version: String,
                vulnerabilities: Vec<serde::de::IgnoredAny>,
            }
            serde_json::from_reader::<_, Kev>(std::io::BufReader::new(f)).is_ok()
        }
        Check::Gzip => {
            let mut magic = [0u8; 2];
            f.read_exact(&mut magic).is_ok() && magic == [0x1f, 0x8b]
        }
    })
}
