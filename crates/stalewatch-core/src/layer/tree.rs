//! The merged view of an image's layers, holding only wanted files and every symlink.
//! Whiteouts and opaque directories apply to lower layers only, as the OCI spec says.
//! Paths resolve through symlinks inside the tree; `..` and absolute targets never leave it.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

use super::diagnostics::Diagnostics;
use super::entry::{Entry, EntryKind, EntrySource, LayerError};
use super::filter::read_kept_lines;
pub use super::filter::{filter_lines, LineFilter};
use super::history::{History, Version};
pub use super::limits::{Keep, Limits};
use super::path::{self, components};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Node {
    File(Vec<u8>),
    Symlink(String),
    /// A wanted file that was not kept, with the reason (so it is never mistaken for absent).
    Skipped(String),
}

/// A symlink chain longer than this is a loop (Linux's own limit is 40).
const MAX_LINK_HOPS: usize = 40;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ResolveError {
    #[error("too many levels of symbolic links")]
    Loop,
    #[error("file was not read: {0}")]
    Skipped(String),
}

#[derive(Debug, Default, Clone)]
pub struct FileTree {
    nodes: BTreeMap<String, Node>,
    /// The layer (its digest) each kept file came from, where layers are digests.
    origins: BTreeMap<String, std::sync::Arc<str>>,
    kept_bytes: u64,
    symlinks: usize,
    /// Earlier versions of the tracked files (`Limits::history`), image layers only.
    history: History,
    track: Option<fn(&str) -> bool>,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerStats {
    pub entries: u64,
    pub kept_files: u64,
}

/// What one layer contributes, independent of the layers below it: its kept files and
/// symlinks, its hardlinks to kept files, and what it hides of lower layers. Read once per
/// layer digest, it can be cached and applied again without the blob.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerDelta {
    pub nodes: BTreeMap<String, Node>,
    /// (path, target) of hardlinks to wanted files.
    pub hardlinks: Vec<(String, String)>,
    /// Lower subtrees hidden: whiteouts, opaque directories, non-directories over directories.
    pub hide_subtrees: Vec<String>,
    /// Lower nodes hidden: whiteout targets, directories or unwanted files over kept paths.
    pub hide_nodes: Vec<String>,
    pub stats: LayerStats,
}

/// Given a file's path and size, reads as much of its content from the source as it cares to
/// (`read_data`, `skip_data` of the current entry) and returns what to keep of it, if
/// anything: a small summary that a cataloger reads later (a Go binary's build information, a
/// Java archive's coordinates), never the file itself.
pub type Summarizer = dyn Fn(&str, u64, &mut dyn EntrySource) -> Result<Option<Vec<u8>>, LayerError>;

/// Which unwanted files are worth a look for a summary: `worth` decides from (path, size,
/// mode) alone — a file it turns down is never opened — then `summarize` reads it.
pub struct BinaryProbe<'a> {
    pub worth: fn(&str, u64, u32) -> bool,
    pub summarize: &'a Summarizer,
}

impl LayerDelta {
    /// Reads a layer stream. `wants` picks the files to keep; `relevant` the paths whose
    /// shadowing of lower layers matters (a cache keeps it small: ancestors of wanted paths;
    /// a direct application says every path). Bad entries are counted in `diag`.
    pub fn read(
        src: &mut dyn EntrySource,
        wants: &dyn Fn(&str) -> bool,
        relevant: &dyn Fn(&str) -> bool,
        limits: &Limits,
        layer: &str,
        diag: &mut Diagnostics,
    ) -> Result<LayerDelta, LayerError> {
        Self::read_with(src, wants, None, relevant, limits, layer, diag)
    }

    /// [`LayerDelta::read`], also keeping the summaries `binaries` makes of other files.
    pub fn read_with(
        src: &mut dyn EntrySource,
        wants: &dyn Fn(&str) -> bool,
        binaries: Option<&BinaryProbe>,
        relevant: &dyn Fn(&str) -> bool,
        limits: &Limits,
        layer: &str,
        diag: &mut Diagnostics,
    ) -> Result<LayerDelta, LayerError> {
        let mut r = DeltaReader {
            d: LayerDelta::default(),
            kept_bytes: 0,
            other_dirs: Vec::new(),
            wants,
            binaries,
            relevant,
            limits,
            layer,
        };
        while let Some(entry) = src.next_entry()? {
            r.d.stats.entries += 1;
            let p = match path::normalize(&entry.path) {
                Ok(p) => p,
                Err(path::PathRefusal::Empty) => continue, // the layer's root directory
                Err(refusal) => {
                    diag.skip(
                        refusal.reason(),
                        format!("{layer}:{}", entry.path),
                        "path escapes the image root",
                    );
                    continue;
                }
            };
            if !r.whiteout(&p) {
                r.entry(p, entry, src, diag)?;
            }
        }
        Ok(r.finish())
    }
}

/// One layer's delta as its entries stream by.
struct DeltaReader<'a> {
    d: LayerDelta,
    kept_bytes: u64,
    /// Directories not `relevant` by path: those that hold a kept file of this layer still
    /// hide a lower file or symlink of their name (language manifests live anywhere).
    other_dirs: Vec<String>,
    wants: &'a dyn Fn(&str) -> bool,
    binaries: Option<&'a BinaryProbe<'a>>,
    relevant: &'a dyn Fn(&str) -> bool,
    limits: &'a Limits,
    layer: &'a str,
}

impl DeltaReader<'_> {
    /// Records a whiteout (`.wh.<name>`, `.wh..wh..opq`); false when `p` is none.
    fn whiteout(&mut self, p: &str) -> bool {
        let name = p.rsplit('/').next().unwrap_or(p);
        let Some(hidden) = name.strip_prefix(".wh.") else {
            return false;
        };
        let dir = path::parent(p).to_string();
        if hidden == ".wh..opq" {
            self.d.hide_subtrees.push(dir);
        } else if !hidden.is_empty() {
            let target = path::join(&dir, hidden);
            self.d.hide_nodes.push(target.clone());
            self.d.hide_subtrees.push(target);
        }
        true
    }

    fn entry(
        &mut self,
        p: String,
        entry: Entry,
        src: &mut dyn EntrySource,
        diag: &mut Diagnostics,
    ) -> Result<(), LayerError> {
        let probe = self.binaries.filter(|b| (b.worth)(&p, entry.size, entry.mode));
        match entry.kind {
            EntryKind::Dir => {
                // A directory hides a lower file or symlink of the same name.
                if (self.relevant)(&p) {
                    self.d.hide_nodes.push(p);
                } else {
                    self.other_dirs.push(p);
                }
            }
            EntryKind::Symlink => self.symlink(p, entry.link, diag),
            EntryKind::File if (self.wants)(&p) => self.keep_file(p, entry.size, src, diag)?,
            EntryKind::Hardlink if (self.wants)(&p) => match path::normalize(&entry.link) {
                Ok(t) => {
                    self.d.hide_subtrees.push(p.clone());
                    self.d.hardlinks.push((p, t));
                }
                Err(_) => diag.skip(
                    "hardlink_unresolved",
                    format!("{}:{p}", self.layer),
                    format!("target {:?} not kept", entry.link),
                ),
            },
            EntryKind::File if probe.is_some() => {
                let summary = probe
                    .map(|b| (b.summarize)(&p, entry.size, &mut *src))
                    .transpose()?
                    .flatten();
                match summary.filter(|s| self.kept_bytes + s.len() as u64 <= self.limits.max_kept_bytes) {
                    Some(summary) => {
                        self.kept_bytes += summary.len() as u64;
                        self.d.stats.kept_files += 1;
                        self.d.hide_subtrees.push(p.clone());
                        self.d.nodes.insert(p, Node::File(summary));
                    }
                    None => self.hide(p),
                }
            }
            // An unwanted file, device or fifo hides what lay below at its path.
            _ => self.hide(p),
        }
        Ok(())
    }

    /// What lay below at `p` is hidden, where that can matter.
    fn hide(&mut self, p: String) {
        if (self.relevant)(&p) {
            self.d.hide_nodes.push(p.clone());
            self.d.hide_subtrees.push(p);
        }
    }

    /// Symlinks are always kept (path resolution needs them) and hide lower trees.
    fn symlink(&mut self, p: String, link: String, diag: &mut Diagnostics) {
        self.d.hide_subtrees.push(p.clone());
        if self.d.nodes.len() >= self.limits.max_symlinks {
            diag.skip(
                "symlink_cap",
                format!("{}:{p}", self.layer),
                "too many symlinks in image",
            );
            return;
        }
        self.d.nodes.insert(p, Node::Symlink(link));
    }

    /// A wanted file: kept whole or filtered, or a counted skip (before reading) when it
    /// passes a cap.
    fn keep_file(
        &mut self,
        p: String,
        size: u64,
        src: &mut dyn EntrySource,
        diag: &mut Diagnostics,
    ) -> Result<(), LayerError> {
        self.d.hide_subtrees.push(p.clone());
        let (limits, at) = (self.limits, format!("{}:{p}", self.layer));
        let keep = (limits.keep)(&p);
        let (cap, reason) = match keep {
            Keep::UpTo(cap, reason) if cap < limits.max_file_bytes => (cap, reason),
            _ => (limits.max_file_bytes, "file_too_large"),
        };
        let filtered = matches!(keep, Keep::Lines(_));
        let node = if size > cap {
            diag.skip(reason, at, format!("{size} bytes exceeds the {cap} byte cap"));
            Node::Skipped(reason.into())
        } else if !filtered && self.kept_bytes + size > limits.max_kept_bytes {
            diag.skip("kept_bytes_cap", at, "image keeps too many bytes");
            Node::Skipped("kept_bytes_cap".into())
        } else {
            let data = match keep {
                Keep::Lines(filter) => read_kept_lines(src, size, &mut *filter(), diag, &at)?,
                Keep::Whole | Keep::UpTo(..) => src.read_data(size)?,
            };
            if self.kept_bytes + data.len() as u64 > limits.max_kept_bytes {
                diag.skip("kept_bytes_cap", at, "image keeps too many bytes");
                Node::Skipped("kept_bytes_cap".into())
            } else {
                self.kept_bytes += data.len() as u64;
                self.d.stats.kept_files += 1;
                Node::File(data)
            }
        };
        self.d.nodes.insert(p, node);
        Ok(())
    }

    /// Directories that hold a kept file hide a lower file or symlink of their name.
    fn finish(mut self) -> LayerDelta {
        if !self.other_dirs.is_empty() {
            let mut ancestors = std::collections::BTreeSet::new();
            for p in self.d.nodes.keys().chain(self.d.hardlinks.iter().map(|(p, _)| p)) {
                let mut dir = path::parent(p);
                while !dir.is_empty() && ancestors.insert(dir.to_string()) {
                    dir = path::parent(dir);
                }
            }
            let dirs = std::mem::take(&mut self.other_dirs);
            self.d
                .hide_nodes
                .extend(dirs.into_iter().filter(|p| ancestors.contains(p)));
        }
        self.d
    }
}

impl FileTree {
    pub fn new() -> Self {
        Self::default()
    }

    /// Inserts a file directly (tests, and sources that are not layers).
    pub fn insert_file(&mut self, path: &str, bytes: Vec<u8>) {
        if let Ok(p) = path::normalize(path) {
            self.kept_bytes += bytes.len() as u64;
            self.nodes.insert(p, Node::File(bytes));
        }
    }

    fn has_descendants(&self, p: &str) -> bool {
        let prefix = format!("{p}/");
        self.nodes
            .range(prefix.clone()..)
            .next()
            .is_some_and(|(k, _)| k.starts_with(&prefix))
    }

    /// Removes what is under `p`; `hidden_by` is the layer that hides it, for the history.
    fn remove_descendants(&mut self, p: &str, hidden_by: Option<&std::sync::Arc<str>>) {
        let prefix = if p.is_empty() {
            String::new()
        } else {
            format!("{p}/")
        };
        let doomed: Vec<String> = self
            .nodes
            .range(prefix.clone()..)
            .take_while(|(k, _)| k.starts_with(&prefix))
            .map(|(k, _)| k.clone())
            .collect();
        for k in doomed {
            if self.remove(&k) {
                if let Some(l) = hidden_by {
                    self.history.hidden(&k, l.clone());
                }
            }
        }
    }

    /// Removes a node; true when it was a tracked file, whose version the history keeps.
    fn remove(&mut self, p: &str) -> bool {
        match self.nodes.remove(p) {
            Some(Node::File(b)) => {
                self.kept_bytes -= b.len() as u64;
                match (self.track, self.origins.get(p)) {
                    (Some(tracked), Some(origin)) if tracked(p) => {
                        self.history.retire(p, origin.clone(), b);
                        true
                    }
                    _ => false,
                }
            }
            Some(Node::Symlink(_)) => {
                self.symlinks -= 1;
                false
            }
            _ => false,
        }
    }

    /// Applies one layer on top of the tree. `wants` says which paths catalogers read.
    /// Bad entries are skipped and counted in `diag`; a broken stream is an error.
    pub fn apply_layer(
        &mut self,
        src: &mut dyn EntrySource,
        wants: &dyn Fn(&str) -> bool,
        limits: &Limits,
        layer: &str,
        diag: &mut Diagnostics,
    ) -> Result<LayerStats, LayerError> {
        self.apply_layer_with(src, wants, None, limits, layer, diag)
    }

    /// [`FileTree::apply_layer`], also keeping the summaries `binaries` makes of other files.
    pub fn apply_layer_with(
        &mut self,
        src: &mut dyn EntrySource,
        wants: &dyn Fn(&str) -> bool,
        binaries: Option<&BinaryProbe>,
        limits: &Limits,
        layer: &str,
        diag: &mut Diagnostics,
    ) -> Result<LayerStats, LayerError> {
        // Applied directly, only paths where a lower layer has something can be shadowed.
        let lower = &*self;
        let shadows = |p: &str| lower.nodes.contains_key(p) || lower.has_descendants(p);
        let delta = LayerDelta::read_with(src, wants, binaries, &shadows, limits, layer, diag)?;
        self.apply(&delta, limits, layer, diag);
        Ok(delta.stats)
    }

    /// Applies a layer's delta (read now or from a cache) on top of the tree.
    pub fn apply(&mut self, delta: &LayerDelta, limits: &Limits, layer: &str, diag: &mut Diagnostics) {
        let image_layer = layer.starts_with("sha256:");
        self.track = image_layer.then_some(limits.history);
        let label: std::sync::Arc<str> = std::sync::Arc::from(layer);
        // What this layer hides of the lower ones, before its own nodes land.
        for p in &delta.hide_subtrees {
            self.remove_descendants(p, Some(&label));
        }
        for p in &delta.hide_nodes {
            if self.remove(p) {
                self.history.hidden(p, label.clone());
            }
        }
        for (p, target) in &delta.hardlinks {
            // A hardlink's target is in this layer or below.
            let node = delta.nodes.get(target).or_else(|| self.nodes.get(target));
            match node {
                Some(Node::File(b)) => {
                    let b = b.clone();
                    self.insert(p, Node::File(b), limits, layer, diag);
                }
                _ => diag.skip(
                    "hardlink_unresolved",
                    format!("{layer}:{p}"),
                    format!("target {target:?} not kept"),
                ),
            }
        }
        for (p, node) in &delta.nodes {
            self.insert(p, node.clone(), limits, layer, diag);
        }
        // Where each file of this layer came from (image layers are named by digest).
        if image_layer {
            for (p, node) in &delta.nodes {
                if matches!(node, Node::File(_)) {
                    self.origins.insert(p.clone(), label.clone());
                }
            }
        }
    }

    /// The versions a tracked file had before its current one, oldest first (empty when
    /// none; `None` when they were too large to keep).
    pub fn history(&self, p: &str) -> Option<&[Version]> {
        self.history.of(p)
    }

    /// The layer digest the file at `p` came from, if it came from an image layer.
    pub fn origin(&self, p: &str) -> Option<&str> {
        self.origins.get(p).map(|l| &**l)
    }

    fn insert(&mut self, p: &str, node: Node, limits: &Limits, layer: &str, diag: &mut Diagnostics) {
        self.remove(p);
        let node = match node {
            Node::File(b) if self.kept_bytes + b.len() as u64 > limits.max_kept_bytes => {
                diag.skip(
                    "kept_bytes_cap",
                    format!("{layer}:{p}"),
                    "image keeps too many bytes",
                );
                Node::Skipped("kept_bytes_cap".into())
            }
            Node::Symlink(_) if self.symlinks >= limits.max_symlinks => {
                diag.skip(
                    "symlink_cap",
                    format!("{layer}:{p}"),
                    "too many symlinks in image",
                );
                return;
            }
            other => other,
        };
        match &node {
            Node::File(b) => self.kept_bytes += b.len() as u64,
            Node::Symlink(_) => self.symlinks += 1,
            Node::Skipped(_) => {}
        }
        self.nodes.insert(p.to_string(), node);
    }

    /// Resolves a path to its final, symlink-free form inside the tree.
    pub fn resolve_path(&self, p: &str) -> Result<String, ResolveError> {
        let mut pending: Vec<String> = components(p).rev().map(str::to_string).collect();
        let mut resolved: Vec<String> = Vec::new();
        let mut hops = 0;
        while let Some(c) = pending.pop() {
            match c.as_str() {
                "." => continue,
                ".." => {
                    resolved.pop(); // `..` at the root stays at the root
                    continue;
                }
                _ => {}
            }
            resolved.push(c);
            let candidate = resolved.join("/");
            if let Some(Node::Symlink(target)) = self.nodes.get(&candidate) {
                hops += 1;
                if hops > MAX_LINK_HOPS {
                    return Err(ResolveError::Loop);
                }
                resolved.pop();
                if target.starts_with('/') {
                    resolved.clear();
                }
                pending.extend(components(target).rev().map(str::to_string));
            }
        }
        Ok(resolved.join("/"))
    }

    /// The content of a file, following symlinks inside the tree. `Ok(None)` if absent.
    pub fn read(&self, p: &str) -> Result<Option<&[u8]>, ResolveError> {
        let real = self.resolve_path(p)?;
        match self.nodes.get(&real) {
            Some(Node::File(b)) => Ok(Some(b)),
            Some(Node::Skipped(r)) => Err(ResolveError::Skipped(r.clone())),
            _ => Ok(None),
        }
    }

    /// Every kept entry under a directory (resolved), in name order: (path below it, node).
    fn under(&self, dir: &str) -> Result<impl Iterator<Item = (&str, &Node)>, ResolveError> {
        let real = self.resolve_path(dir)?;
        let prefix = if real.is_empty() {
            String::new()
        } else {
            format!("{real}/")
        };
        let start = prefix.len();
        Ok(self
            .nodes
            .range(prefix.clone()..)
            .take_while(move |(k, _)| k.starts_with(&prefix))
            .map(move |(k, n)| (&k[start..], n)))
    }

    /// Regular files directly inside a directory (resolved), sorted by name.
    pub fn list_files(&self, dir: &str) -> Result<Vec<(String, &[u8])>, ResolveError> {
        let real = self.resolve_path(dir)?;
        let mut out = Vec::new();
        for (name, node) in self.under(dir)?.filter(|(name, _)| !name.contains('/')) {
            match node {
                Node::File(b) => out.push((name.to_string(), b.as_slice())),
                Node::Symlink(_) => {
                    if let Ok(Some(b)) = self.read(&path::join(&real, name)) {
                        out.push((name.to_string(), b));
                    }
                }
                Node::Skipped(_) => {}
            }
        }
        Ok(out)
    }

    /// The names of the directories directly inside a directory (resolved) that hold a kept
    /// entry, sorted.
    pub fn subdirectories(&self, dir: &str) -> Vec<String> {
        let subs = self.under(dir).into_iter().flatten();
        let mut out: Vec<String> = subs
            .filter_map(|(n, _)| Some(n.split_once('/')?.0.to_string()))
            .collect();
        out.dedup();
        out
    }

    /// Whether the path itself, or one of its parents, is a symlink in the tree.
    pub fn is_symlink_chain(&self, p: &str) -> bool {
        let mut at = String::new();
        for c in components(p) {
            at = path::join(&at, c);
            if matches!(self.nodes.get(&at), Some(Node::Symlink(_))) {
                return true;
            }
        }
        false
    }

    /// Every kept file, by path (sorted).
    pub fn files(&self) -> impl Iterator<Item = (&str, &[u8])> {
        self.nodes.iter().filter_map(|(p, n)| match n {
            Node::File(b) => Some((p.as_str(), b.as_slice())),
            _ => None,
        })
    }

    /// Whether the tree holds anything below `dir`.
    pub fn has_entries_under(&self, dir: &str) -> bool {
        let prefix = format!("{dir}/");
        self.nodes
            .range(prefix.clone()..)
            .next()
            .is_some_and(|(p, _)| p.starts_with(&prefix))
    }

    pub fn kept_bytes(&self) -> u64 {
        self.kept_bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layer::Entry;

    /// An in-memory entry source for table tests.
    struct Entries(std::vec::IntoIter<(Entry, Vec<u8>)>, Vec<u8>);
    impl EntrySource for Entries {
        fn next_entry(&mut self) -> Result<Option<Entry>, LayerError> {
            Ok(self.0.next().map(|(e, d)| {
                self.1 = d;
                e
            }))
        }
        fn read_data(&mut self, max: u64) -> Result<Vec<u8>, LayerError> {
            Ok(self.1.iter().take(max as usize).copied().collect())
        }
    }

    fn file(p: &str, data: &str) -> (Entry, Vec<u8>) {
        (
            Entry {
                path: p.into(),
                kind: EntryKind::File,
                size: data.len() as u64,
                mode: 0o644,
                link: String::new(),
            },
            data.as_bytes().to_vec(),
        )
    }
    fn link(p: &str, target: &str) -> (Entry, Vec<u8>) {
        (
            Entry {
                path: p.into(),
                kind: EntryKind::Symlink,
                size: 0,
                mode: 0o644,
                link: target.into(),
            },
            vec![],
        )
    }
    fn dir(p: &str) -> (Entry, Vec<u8>) {
        (
            Entry {
                path: p.into(),
                kind: EntryKind::Dir,
                size: 0,
                mode: 0o644,
                link: String::new(),
            },
            vec![],
        )
    }

    fn apply(tree: &mut FileTree, entries: Vec<(Entry, Vec<u8>)>, diag: &mut Diagnostics) {
        let mut src = Entries(entries.into_iter(), vec![]);
        tree.apply_layer(&mut src, &|_| true, &Limits::default(), "layer", diag)
            .unwrap();
    }

    #[test]
    fn whiteouts_and_opaque_dirs() {
        let mut t = FileTree::new();
        let mut d = Diagnostics::default();
        apply(
            &mut t,
            vec![
                file("etc/a", "1"),
                file("etc/b", "2"),
                file("var/x/y", "3"),
                file("var/x/z", "4"),
            ],
            &mut d,
        );
        apply(
            &mut t,
            vec![
                file(".wh.nothing", ""),
                file("etc/.wh.a", ""),
                file("var/x/.wh..wh..opq", ""),
                file("var/x/new", "5"),
            ],
            &mut d,
        );
        assert_eq!(t.read("etc/a").unwrap(), None);
        assert_eq!(t.read("etc/b").unwrap(), Some(&b"2"[..]));
        assert_eq!(t.read("var/x/y").unwrap(), None);
        assert_eq!(
            t.read("var/x/new").unwrap(),
            Some(&b"5"[..]),
            "opaque applies to lower layers only"
        );
        // A whiteout of a directory removes its subtree.
        apply(&mut t, vec![file("var/.wh.x", "")], &mut d);
        assert_eq!(t.read("var/x/new").unwrap(), None);
    }

    #[test]
    fn a_cached_layer_dir_holding_a_kept_file_hides_a_lower_symlink() {
        // Lower layer: `app` is a link; upper layer: `app` is a real directory holding a
        // manifest. A cached delta records only relevant paths, and that directory is one.
        let mut t = FileTree::new();
        let mut d = Diagnostics::default();
        apply(
            &mut t,
            vec![
                link("app", "elsewhere"),
                file("elsewhere/node_modules/x/package.json", "old"),
            ],
            &mut d,
        );
        let upper = vec![
            dir("app"),
            dir("app/node_modules"),
            dir("app/node_modules/x"),
            dir("unrelated"),
            file("app/node_modules/x/package.json", "new"),
        ];
        let mut src = Entries(upper.into_iter(), vec![]);
        let delta = LayerDelta::read(
            &mut src,
            &|_| true,
            &|_| false,
            &Limits::default(),
            "upper",
            &mut d,
        )
        .unwrap();
        assert!(
            delta.hide_nodes.contains(&"app".to_string()),
            "{:?}",
            delta.hide_nodes
        );
        assert!(!delta.hide_nodes.contains(&"unrelated".to_string()));
        t.apply(&delta, &Limits::default(), "upper", &mut d);
        assert_eq!(
            t.resolve_path("app/node_modules/x/package.json").unwrap(),
            "app/node_modules/x/package.json"
        );
        assert_eq!(
            t.read("app/node_modules/x/package.json").unwrap(),
            Some(&b"new"[..])
        );
        assert_eq!(
            t.read("elsewhere/node_modules/x/package.json").unwrap(),
            Some(&b"old"[..])
        );
    }

    #[test]
    fn replacing_a_dir_with_a_file_and_back() {
        let mut t = FileTree::new();
        let mut d = Diagnostics::default();
        apply(&mut t, vec![file("lib/apk/db/installed", "old")], &mut d);
        apply(
            &mut t,
            vec![link("lib", "usr/lib"), file("usr/lib/apk/db/installed", "new")],
            &mut d,
        );
        assert_eq!(t.read("lib/apk/db/installed").unwrap(), Some(&b"new"[..]));
        apply(&mut t, vec![dir("lib"), file("lib/x", "x")], &mut d);
        assert_eq!(t.read("lib/apk/db/installed").unwrap(), None);
    }

    #[test]
    fn symlinks_stay_inside_the_root() {
        let mut t = FileTree::new();
        let mut d = Diagnostics::default();
        apply(
            &mut t,
            vec![
                file("usr/lib/os-release", "ID=debian"),
                link("etc/os-release", "../usr/lib/os-release"),
                link("etc/escape", "../../../../usr/lib/os-release"),
                link("etc/abs", "/usr/lib/os-release"),
                link("loop1", "loop2"),
                link("loop2", "loop1"),
            ],
            &mut d,
        );
        for p in ["etc/os-release", "etc/escape", "etc/abs"] {
            assert_eq!(t.read(p).unwrap(), Some(&b"ID=debian"[..]), "{p}");
        }
        assert_eq!(t.read("loop1"), Err(ResolveError::Loop));
    }

    #[test]
    fn hostile_paths_and_sizes_are_counted() {
        let mut t = FileTree::new();
        let mut d = Diagnostics::default();
        let limits = Limits {
            max_file_bytes: 4,
            ..Limits::default()
        };
        let entries = vec![
            file("../../etc/passwd", "x"),
            file("/etc/shadow", "x"),
            file("big", "12345"),
        ];
        let mut src = Entries(entries.into_iter(), vec![]);
        t.apply_layer(&mut src, &|_| true, &limits, "l", &mut d).unwrap();
        assert_eq!(d.count("parent_path_component"), 1);
        assert_eq!(d.count("absolute_path"), 1);
        assert_eq!(d.count("file_too_large"), 1);
        assert_eq!(t.read("big"), Err(ResolveError::Skipped("file_too_large".into())));
        assert_eq!(t.read("etc/passwd").unwrap(), None);
    }
}
