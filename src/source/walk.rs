//! The one directory walker under both unpacked-tree sources (`rootfs`, `overlay`): depth
//! first, symlinks never followed, never off the root's filesystem, into a directory only
//! when the caller says it can hold something. File types come from the directory entries
//! themselves (`d_type`): a directory is stat'ed only to be descended into, and nothing else
//! is stat'ed here — a source stats the files it reports.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use stalewatch_core::layer::{path, Entry, EntryKind};

use super::current_file::CurrentFile;

/// One directory entry met by the walk.
pub struct Found {
    /// The entry's path relative to the root.
    pub rel: String,
    /// Its directory's path relative to the root.
    pub dir: String,
    pub name: String,
    pub full: PathBuf,
    pub file_type: fs::FileType,
    pub item: fs::DirEntry,
}

impl Found {
    /// The entry as a layer reader sees it: a directory, a symlink (its target read, never
    /// followed), a regular file (size and mode from one fstatat, no open; `current` positioned
    /// on it), or anything else. `None`: a file that vanished under the walk.
    pub fn into_entry(self, current: &mut CurrentFile) -> Option<Entry> {
        let entry = |kind, size, mode, link| Entry {
            path: self.rel.clone(),
            kind,
            size,
            mode,
            link,
        };
        let ft = self.file_type;
        Some(if ft.is_dir() {
            entry(EntryKind::Dir, 0, 0, String::new())
        } else if ft.is_symlink() {
            let target = fs::read_link(&self.full)
                .map(|t| t.to_string_lossy().into_owned())
                .unwrap_or_default();
            entry(EntryKind::Symlink, 0, 0, target)
        } else if ft.is_file() {
            let meta = self.item.metadata().ok()?;
            current.set(Some(self.full.clone()), meta.len());
            entry(EntryKind::File, meta.len(), meta.mode() & 0o7777, String::new())
        } else {
            entry(EntryKind::Other, 0, 0, String::new())
        })
    }
}

pub struct DirWalk<'a> {
    /// Directories being listed, relative to the root.
    stack: Vec<(String, fs::ReadDir)>,
    /// The root's filesystem, which the walk does not leave (`None`: across mounts).
    root_dev: Option<u64>,
    descend: &'a dyn Fn(&str) -> bool,
}

impl<'a> DirWalk<'a> {
    /// Walks `root/start` (`start` relative, already checked to be a real directory).
    pub fn new(root: &Path, start: &str, descend: &'a dyn Fn(&str) -> bool) -> std::io::Result<DirWalk<'a>> {
        let root_dev = fs::metadata(root)?.dev();
        let rd = fs::read_dir(root.join(start))?;
        Ok(DirWalk {
            stack: vec![(start.to_string(), rd)],
            root_dev: Some(root_dev),
            descend,
        })
    }

    /// Enters wanted directories on other filesystems too: a host root made of the narrow
    /// mounts the node scan asks for (`/host/var/lib/dpkg` bind-mounted from the host), where
    /// `descend` alone bounds the walk.
    pub fn across_mounts(mut self) -> Self {
        self.root_dev = None;
        self
    }

    /// The next entry; a directory is entered (after it is returned) when `descend` says so
    /// and it is on the root's filesystem (never a live root's /proc).
    pub fn next_found(&mut self) -> Option<Found> {
        loop {
            let (dir, rd) = self.stack.last_mut()?;
            let Some(item) = rd.next() else {
                self.stack.pop();
                continue;
            };
            let Ok(item) = item else { continue };
            let Ok(file_type) = item.file_type() else { continue };
            let dir = dir.clone();
            let name = item.file_name().to_string_lossy().into_owned();
            let rel = path::join(&dir, &name);
            let full = item.path();
            if file_type.is_dir() && (self.descend)(&rel) {
                // fstatat relative to the open directory: no full path walk.
                let same_fs = self
                    .root_dev
                    .is_none_or(|dev| item.metadata().is_ok_and(|m| m.dev() == dev));
                if let Some(sub) = same_fs.then(|| fs::read_dir(&full).ok()).flatten() {
                    self.stack.push((rel.clone(), sub));
                }
            }
            return Some(Found {
                rel,
                dir,
                name,
                full,
                file_type,
                item,
            });
        }
    }
}
