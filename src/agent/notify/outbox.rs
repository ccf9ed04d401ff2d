//! The durable outbox of one receiver: a directory in the state directory, one file per event
//! (`<sequence>-<type>-<id>.json`, the exact body), written atomically before the first
//! attempt and removed once delivered or refused. It survives restarts and kill -9; past
//! `max` events the oldest are dropped (and counted).

use std::path::{Path, PathBuf};

use super::events::Event;
use crate::db::write_atomic;

pub struct Outbox {
    dir: PathBuf,
    max: usize,
}

/// One waiting event.
#[derive(Debug, Clone)]
pub struct Pending {
    pub path: PathBuf,
    pub kind: String,
    pub id: String,
}

impl Outbox {
    pub fn new(dir: PathBuf, max: usize) -> Outbox {
        Outbox { dir, max }
    }

    /// The waiting events, oldest first (temp files of an interrupted write are not events).
    pub fn pending(&self) -> Vec<Pending> {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        let mut out: Vec<Pending> = entries.flatten().filter_map(|e| parse_name(&e.path())).collect();
        out.sort_by(|a, b| a.path.cmp(&b.path));
        out
    }

    /// Writes an event; returns the types of the events dropped to stay within the bound.
    pub fn put(&self, e: &Event, sequence: u128) -> anyhow::Result<Vec<String>> {
        let name = format!("{sequence:039}-{}-{}.json", e.kind, e.id);
        write_atomic(&self.dir.join(name), &e.body)?;
        let pending = self.pending();
        let excess = pending.len().saturating_sub(self.max);
        let mut dropped = Vec::new();
        for p in pending.into_iter().take(excess) {
            if std::fs::remove_file(&p.path).is_ok() {
                tracing::warn!(event = %p.id, kind = %p.kind, "notification outbox full: oldest event dropped");
                dropped.push(p.kind);
            }
        }
        Ok(dropped)
    }

    pub fn remove(&self, p: &Pending) {
        if let Err(e) = std::fs::remove_file(&p.path) {
            tracing::warn!("removing {}: {e}", p.path.display());
        }
    }
}

/// `<sequence>-<type>-<id>.json` → the event it holds.
fn parse_name(path: &Path) -> Option<Pending> {
    let name = path.file_name()?.to_str()?.strip_suffix(".json")?;
    let (sequence, rest) = name.split_once('-')?;
    let (kind, id) = rest.rsplit_once('-')?;
    if sequence.is_empty() || !sequence.bytes().all(|b| b.is_ascii_digit()) || id.is_empty() {
        return None;
    }
    Some(Pending {
        path: path.to_path_buf(),
        kind: kind.to_string(),
        id: id.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(id: &str) -> Event {
        Event {
            id: id.into(),
            kind: super::super::events::VULNERABLE,
            body: id.as_bytes().to_vec(),
        }
    }

    #[test]
    fn keeps_order_and_drops_the_oldest_past_the_bound() {
        let tmp = tempfile::tempdir().unwrap();
        let o = Outbox::new(tmp.path().join("r"), 2);
        assert!(o.put(&ev("a"), 1).unwrap().is_empty());
        assert!(o.put(&ev("b"), 2).unwrap().is_empty());
        assert_eq!(
            o.put(&ev("c"), 3).unwrap(),
            ["io.stalewatch.container.vulnerable"]
        );
        std::fs::write(tmp.path().join("r/.tmp-x"), b"half").unwrap();
        let ids: Vec<String> = o.pending().into_iter().map(|p| p.id).collect();
        assert_eq!(ids, ["b", "c"]);
        assert_eq!(std::fs::read(&o.pending()[0].path).unwrap(), b"b");
    }
}
