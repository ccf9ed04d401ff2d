//! The triage data a scan or the agent applies to reports: the KEV catalog and EPSS scores
//! stored beside the advisory indexes, and OpenVEX documents from files, URLs or a directory.
//! All or nothing per document set: one bad document fails a scan, and leaves the agent's
//! previous good set in force.

use anyhow::{bail, Context};
use std::path::{Path, PathBuf};

use stalewatch_core::triage::vex::{parse_document, VexDocument, MAX_DOCUMENT_BYTES};
use stalewatch_core::triage::{EpssScores, KevCatalog, VexSet};

use crate::db::Store;

/// What a report is triaged with.
#[derive(Default)]
pub struct TriageData {
    pub kev: Option<KevCatalog>,
    pub epss: Option<EpssScores>,
    pub vex: Option<VexSet>,
}

impl TriageData {
    pub fn triage(&self) -> stalewatch_core::report::Triage<'_> {
        stalewatch_core::report::Triage {
            kev: self.kev.as_ref(),
            epss: self.epss.as_ref(),
            vex: self.vex.as_ref(),
            image: None,
        }
    }
}

/// The stored KEV catalog and EPSS scores (each absent when never fetched).
pub fn load_feeds(store: &Store) -> anyhow::Result<(Option<KevCatalog>, Option<EpssScores>)> {
    Ok((store.kev()?, store.epss()?))
}

/// Reads one VEX document from a path or an `http(s)://` URL.
fn read_vex(location: &str) -> anyhow::Result<Vec<u8>> {
    if location.starts_with("http://") || location.starts_with("https://") {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        return rt.block_on(async {
            let client = crate::db::update::http_client(None)?;
            let mut resp = client
                .get(location)
                .send()
                .await
                .with_context(|| format!("fetch VEX document {location}"))?;
            if !resp.status().is_success() {
                bail!("fetch VEX document {location}: HTTP {}", resp.status());
            }
            let mut body = Vec::new();
            while let Some(chunk) = resp.chunk().await? {
                body.extend_from_slice(&chunk);
                if body.len() > MAX_DOCUMENT_BYTES {
                    bail!("VEX document {location}: more than {MAX_DOCUMENT_BYTES} bytes");
                }
            }
            Ok(body)
        });
    }
    let path = Path::new(location.strip_prefix("file://").unwrap_or(location));
    let len = std::fs::metadata(path)
        .with_context(|| format!("read VEX document {}", path.display()))?
        .len();
    if len > MAX_DOCUMENT_BYTES as u64 {
        bail!(
            "VEX document {}: {len} bytes, more than the {MAX_DOCUMENT_BYTES} allowed",
            path.display()
        );
    }
    std::fs::read(path).with_context(|| format!("read VEX document {}", path.display()))
}

/// Every document of `locations`, parsed; the first bad one is the error.
pub fn load_vex(locations: &[String]) -> anyhow::Result<VexSet> {
    let mut docs: Vec<VexDocument> = Vec::new();
    let mut order = 0;
    for l in locations {
        let bytes = read_vex(l)?;
        let d = parse_document(&bytes, l, order)?;
        order += d.statements();
        docs.push(d);
    }
    Ok(VexSet::new(docs))
}

/// The `*.json` files of a directory, sorted by name (Kubernetes ConfigMap volumes keep their
/// files behind `..data` symlinks: the names resolve through them).
pub fn vex_files(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("read --vex-dir {}", dir.display()))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.extension().is_some_and(|e| e == "json")
                && !p
                    .file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with('.'))
                && p.is_file()
        })
        .collect();
    files.sort();
    Ok(files)
}
