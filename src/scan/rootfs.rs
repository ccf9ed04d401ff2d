//! An unpacked filesystem as an entry source: a depth-first walk that never follows symlinks
//! (they become symlink entries, resolved later inside the tree) and never leaves the root.

use anyhow::Context;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use stalewatch_core::layer::{Entry, EntryKind, EntrySource, LayerError};

pub struct Walker {
    root: PathBuf,
    /// Directories still to list, relative to the root.
    stack: Vec<(String, fs::ReadDir)>,
    current: Option<PathBuf>,
    root_dev: u64,
}

impl Walker {
    pub fn new(root: &Path) -> anyhow::Result<Self> {
        use std::os::unix::fs::MetadataExt;
        let meta = fs::metadata(root).with_context(|| format!("rootfs {}", root.display()))?;
        if !meta.is_dir() {
            anyhow::bail!("rootfs {} is not a directory", root.display());
        }
        let rd = fs::read_dir(root).with_context(|| format!("list {}", root.display()))?;
        Ok(Walker {
            root: root.to_path_buf(),
            stack: vec![(String::new(), rd)],
            current: None,
            root_dev: meta.dev(),
        })
    }
}

impl EntrySource for Walker {
    fn next_entry(&mut self) -> Result<Option<Entry>, LayerError> {
        use std::os::unix::fs::MetadataExt;
        self.current = None;
        loop {
            let Some((rel_dir, rd)) = self.stack.last_mut() else {
                return Ok(None);
            };
            let Some(item) = rd.next() else {
                self.stack.pop();
                continue;
            };
            let rel_dir = rel_dir.clone();
            let Ok(item) = item else { continue };
            let name = item.file_name().to_string_lossy().into_owned();
            let rel = if rel_dir.is_empty() {
                name
            } else {
                format!("{rel_dir}/{name}")
            };
            let full = item.path();
            let Ok(meta) = fs::symlink_metadata(&full) else {
                continue;
            };
            let ft = meta.file_type();
            if ft.is_dir() {
                // Stay on the root's filesystem (do not wander into /proc of a live root).
                if meta.dev() == self.root_dev {
                    if let Ok(sub) = fs::read_dir(&full) {
                        self.stack.push((rel.clone(), sub));
                    }
                }
                return Ok(Some(Entry {
                    path: rel,
                    kind: EntryKind::Dir,
                    size: 0,
                    link: String::new(),
                }));
            }
            if ft.is_symlink() {
                let target = fs::read_link(&full)
                    .map(|t| t.to_string_lossy().into_owned())
                    .unwrap_or_default();
                return Ok(Some(Entry {
                    path: rel,
                    kind: EntryKind::Symlink,
                    size: 0,
                    link: target,
                }));
            }
            if ft.is_file() {
                self.current = Some(full);
                return Ok(Some(Entry {
                    path: rel,
                    kind: EntryKind::File,
                    size: meta.len(),
                    link: String::new(),
                }));
            }
            return Ok(Some(Entry {
                path: rel,
                kind: EntryKind::Other,
                size: 0,
                link: String::new(),
            }));
        }
    }

    fn read_data(&mut self, max: u64) -> Result<Vec<u8>, LayerError> {
        let Some(p) = &self.current else {
            return Ok(Vec::new());
        };
        let f = fs::File::open(p).map_err(|e| LayerError::Io(format!("{}: {e}", p.display())))?;
        let mut buf = Vec::new();
        f.take(max)
            .read_to_end(&mut buf)
            .map_err(|e| LayerError::Io(format!("{}: {e}", p.display())))?;
        Ok(buf)
    }
}

impl std::fmt::Debug for Walker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Walker({})", self.root.display())
    }
}
