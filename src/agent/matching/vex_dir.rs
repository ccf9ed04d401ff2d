//! `--vex-dir`: the OpenVEX documents a directory holds (a ConfigMap volume, whose files swap
//! behind a `..data` symlink), read again when any file's name, size or modification time
//! changes. A set with a bad document is refused whole: logged, counted, and the last good set
//! stays in force.

use std::path::{Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};
use tokio::sync::mpsc;

use crate::agent::messages::Msg;
use crate::triage;

/// How often the directory is looked at (a stat per file).
const POLL: Duration = Duration::from_secs(5);

/// Names, sizes and modification times of the documents (through symlinks).
fn fingerprint(dir: &Path) -> Option<Vec<(PathBuf, u64, u128)>> {
    let files = triage::vex_files(dir).ok()?;
    Some(
        files
            .into_iter()
            .filter_map(|p| {
                let m = std::fs::metadata(&p).ok()?;
                let t = m.modified().ok()?.duration_since(UNIX_EPOCH).ok()?.as_nanos();
                Some((p, m.len(), t))
            })
            .collect(),
    )
}

/// Reads the whole set; an error names the bad document.
fn load(dir: &Path) -> anyhow::Result<stalewatch_core::triage::VexSet> {
    let files: Vec<String> = triage::vex_files(dir)?
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    triage::load_vex(&files)
}

/// Watches `dir` and sends every new good set (the first one at once).
pub async fn run(dir: PathBuf, tx: mpsc::Sender<Msg>) {
    let mut seen = None;
    loop {
        let now = {
            let dir = dir.clone();
            tokio::task::spawn_blocking(move || fingerprint(&dir))
                .await
                .ok()
                .flatten()
        };
        if now.is_some() && now != seen {
            seen = now;
            let d = dir.clone();
            let loaded = tokio::task::spawn_blocking(move || load(&d)).await;
            let msg = match loaded {
                Ok(Ok(set)) => {
                    tracing::info!(
                        documents = set.documents,
                        statements = set.statements(),
                        "VEX documents loaded from {}",
                        dir.display()
                    );
                    Msg::Vex(Ok(set))
                }
                Ok(Err(e)) => {
                    tracing::error!(
                        "VEX documents in {} refused, the previous set stays: {e:#}",
                        dir.display()
                    );
                    Msg::Vex(Err(format!("{e:#}")))
                }
                Err(e) => Msg::Vex(Err(e.to_string())),
            };
            if tx.send(msg).await.is_err() {
                return;
            }
        }
        tokio::time::sleep(POLL).await;
    }
}
