//! An unpacked filesystem as an entry source. The walk never follows symlinks (they become
//! symlink entries, resolved later inside the tree), never leaves the root's filesystem, and
//! descends only into directories that can hold a wanted file; [`read_into`] then follows
//! symlinked directories (merged /usr, /var/lib/rpm → /usr/lib/sysimage/rpm) inside the root.

use anyhow::Context;
use std::collections::BTreeSet;
use std::fs;
use std::path::Path;

use super::walk::DirWalk;
use stalewatch_core::catalog;
use stalewatch_core::layer::{path, Diagnostics, Entry, EntrySource, FileTree, LayerError, Limits};

pub struct Walker<'a> {
    walk: DirWalk<'a>,
    current: super::current_file::CurrentFile,
}

impl<'a> Walker<'a> {
    /// Walks `root/start` (`start` relative, already checked to be a real directory), on the
    /// root's filesystem only unless `across_mounts`.
    fn new(
        root: &Path,
        start: &str,
        descend: &'a dyn Fn(&str) -> bool,
        across_mounts: bool,
    ) -> anyhow::Result<Self> {
        let meta = fs::metadata(root).with_context(|| format!("rootfs {}", root.display()))?;
        if !meta.is_dir() {
            anyhow::bail!("rootfs {} is not a directory", root.display());
        }
        let walk = DirWalk::new(root, start, descend)
            .with_context(|| format!("list {}", root.join(start).display()))?;
        let walk = if across_mounts { walk.across_mounts() } else { walk };
        Ok(Walker {
            walk,
            current: Default::default(),
        })
    }
}

impl EntrySource for Walker<'_> {
    fn next_entry(&mut self) -> Result<Option<Entry>, LayerError> {
        self.current.set(None, 0);
        while let Some(f) = self.walk.next_found() {
            if let Some(e) = f.into_entry(&mut self.current) {
                return Ok(Some(e));
            }
        }
        Ok(None)
    }

    fn read_data(&mut self, max: u64) -> Result<Vec<u8>, LayerError> {
        self.current.read(max)
    }

    fn skip_data(&mut self, n: u64) -> Result<u64, LayerError> {
        self.current.skip(n)
    }
}

/// The first component of `rel` (from the root) that is not a real directory on disk, as the
/// directory holding it; `None` when every component is a directory.
fn first_non_dir(root: &Path, rel: &str) -> Option<String> {
    let mut at = String::new();
    for c in path::components(rel) {
        let next = path::join(&at, c);
        match fs::symlink_metadata(root.join(&next)) {
            Ok(m) if m.file_type().is_dir() => at = next,
            _ => return Some(at),
        }
    }
    None
}

/// Which files of a root to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// OS and language packages, and the file lists that say which package owns a mapped
    /// file (the agent's packages in use): the whole root is walked.
    Everything,
    /// OS and language packages without the file lists (`stalewatch scan`).
    Packages,
    /// os-release and the OS package databases only (a live container's drift check: no
    /// other file of the container is read).
    OsDatabases,
    /// The same without dpkg's file lists (a host's run to megabytes), across mounts: the node
    /// scan's host root is made of narrow mounts (`/host/var/lib/dpkg` from the host).
    OsDatabasesWithoutFileLists,
}

type PathFilter = fn(&str) -> bool;

/// Reads the wanted files of an unpacked root into `tree`.
pub fn read_into(
    root: &Path,
    tree: &mut FileTree,
    scope: Scope,
    limits: &Limits,
    diag: &mut Diagnostics,
) -> anyhow::Result<()> {
    let (wants, wants_dir): (PathFilter, PathFilter) = match scope {
        Scope::Everything => (catalog::wants, catalog::wants_dir),
        Scope::Packages => (catalog::wants_packages, catalog::wants_dir),
        Scope::OsDatabases => (catalog::wants_os, catalog::wants_os_dir),
        Scope::OsDatabasesWithoutFileLists => (catalog::wants_os_without_file_lists, catalog::wants_os_dir),
    };
    let across_mounts = scope == Scope::OsDatabasesWithoutFileLists;
    let mut walker = Walker::new(root, "", &wants_dir, across_mounts)?;
    let os_only = matches!(scope, Scope::OsDatabases | Scope::OsDatabasesWithoutFileLists);
    let binaries = (!os_only).then_some(&catalog::lang::BINARIES);
    tree.apply_layer_with(&mut walker, &wants, binaries, limits, "rootfs", diag)?;
    // Wanted paths that resolve through symlinks into directories not walked yet: list those
    // directories too (one level), until nothing new appears. Each step only lists a real
    // directory reached from the root through real directories.
    let mut listed: BTreeSet<String> = BTreeSet::new();
    let no_descent = |_: &str| false;
    for _ in 0..8 {
        // Where the wanted files and directories really are, once symlinks are resolved.
        let files: BTreeSet<String> = catalog::wanted_paths()
            .filter_map(|p| tree.resolve_path(p).ok())
            .collect();
        let dirs: BTreeSet<String> = catalog::WANTED_DIRS
            .iter()
            .filter_map(|d| tree.resolve_path(d).ok())
            .collect();
        let mut todo = BTreeSet::new();
        for dir in files
            .iter()
            .map(|f| path::parent(f).to_string())
            .chain(dirs.iter().cloned())
        {
            // Directories the OS walk keeps files from; any other (walked or not, when
            // language manifests are wanted) is listed for the wanted files it really holds.
            if catalog::wants_os_dir(&dir) || listed.contains(&dir) {
                continue;
            }
            // A symlink on the way that the tree does not know yet: list where it lives first.
            todo.insert(first_non_dir(root, &dir).unwrap_or(dir));
        }
        todo.retain(|d| !listed.contains(d));
        if todo.is_empty() {
            break;
        }
        let keep = |p: &str| wants(p) || files.contains(p) || dirs.contains(path::parent(p));
        for dir in todo {
            listed.insert(dir.clone());
            if first_non_dir(root, &dir).is_some() {
                continue;
            }
            let mut w = Walker::new(root, &dir, &no_descent, across_mounts)?;
            tree.apply_layer(&mut w, &keep, limits, "rootfs", diag)?;
        }
    }
    Ok(())
}

/// Named files of a root, and nothing else: each regular file (never through a symlink) as an
/// entry, the others skipped. What the node scan reads of the host's runtime binaries.
struct NamedFiles<'a> {
    root: &'a Path,
    names: std::slice::Iter<'a, &'a str>,
    current: super::current_file::CurrentFile,
}

impl EntrySource for NamedFiles<'_> {
    fn next_entry(&mut self) -> Result<Option<Entry>, LayerError> {
        self.current.set(None, 0);
        for name in self.names.by_ref() {
            let full = self.root.join(name);
            let Ok(meta) = fs::symlink_metadata(&full) else {
                continue;
            };
            if !meta.is_file() {
                continue;
            }
            use std::os::unix::fs::MetadataExt;
            self.current.set(Some(full), meta.len());
            return Ok(Some(Entry {
                path: name.to_string(),
                kind: stalewatch_core::layer::EntryKind::File,
                size: meta.len(),
                mode: meta.mode() & 0o7777,
                link: String::new(),
            }));
        }
        Ok(None)
    }

    fn read_data(&mut self, max: u64) -> Result<Vec<u8>, LayerError> {
        self.current.read(max)
    }

    fn skip_data(&mut self, n: u64) -> Result<u64, LayerError> {
        self.current.skip(n)
    }
}

/// Reads the executables `names` (paths under `root`) into `tree` through the binary probe
/// (Go build info, cargo-auditable data): nothing else of the root is listed or opened.
pub fn read_named_binaries(
    root: &Path,
    names: &[&str],
    tree: &mut FileTree,
    limits: &Limits,
    diag: &mut Diagnostics,
) -> anyhow::Result<()> {
    let mut src = NamedFiles {
        root,
        names: names.iter(),
        current: Default::default(),
    };
    tree.apply_layer_with(
        &mut src,
        &|_| false,
        Some(&catalog::lang::BINARIES),
        limits,
        "host",
        diag,
    )?;
    Ok(())
}
