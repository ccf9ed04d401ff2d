//! Unpacked image layers as overlayfs keeps them (containerd's overlayfs snapshotter): each
//! lower directory is one layer, whiteouts are 0/0 character devices and opaque directories
//! carry the `trusted.overlay.opaque` xattr. They are turned back into OCI whiteout entries
//! so the same tree logic applies.

use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use stalewatch_core::layer::{
    path, Diagnostics, Entry, EntryKind, EntrySource, FileTree, LayerError, Limits,
};

/// A depth-first walk of one unpacked layer directory (symlinks never followed).
pub struct LayerDir {
    stack: Vec<(String, fs::ReadDir)>,
    pending: Vec<Entry>,
    current: super::current_file::CurrentFile,
    dev: u64,
}

fn is_opaque(dir: &Path) -> bool {
    let mut buf = [0u8; 4];
    matches!(rustix::fs::lgetxattr(dir, "trusted.overlay.opaque", &mut buf), Ok(n) if buf[..n] == *b"y")
}

impl LayerDir {
    pub fn new(dir: &Path) -> anyhow::Result<LayerDir> {
        let meta = fs::symlink_metadata(dir)?;
        anyhow::ensure!(meta.is_dir(), "{} is not a directory", dir.display());
        Ok(LayerDir {
            stack: vec![(String::new(), fs::read_dir(dir)?)],
            pending: Vec::new(),
            current: Default::default(),
            dev: meta.dev(),
        })
    }
}

impl EntrySource for LayerDir {
    fn next_entry(&mut self) -> Result<Option<Entry>, LayerError> {
        self.current.set(None);
        if let Some(e) = self.pending.pop() {
            return Ok(Some(e));
        }
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
            let rel = path::join(&rel_dir, &name);
            let full = item.path();
            let Ok(meta) = fs::symlink_metadata(&full) else {
                continue;
            };
            let ft = meta.file_type();
            let entry = |kind, size, link| Entry {
                path: rel.clone(),
                kind,
                size,
                link,
            };
            if ft.is_dir() {
                if meta.dev() == self.dev {
                    if let Ok(sub) = fs::read_dir(&full) {
                        self.stack.push((rel.clone(), sub));
                    }
                }
                if is_opaque(&full) {
                    let marker = path::join(&rel, ".wh..wh..opq");
                    self.pending.push(Entry {
                        path: marker,
                        kind: EntryKind::File,
                        size: 0,
                        link: String::new(),
                    });
                }
                return Ok(Some(entry(EntryKind::Dir, 0, String::new())));
            }
            if ft.is_char_device() && meta.rdev() == 0 {
                // overlayfs whiteout: the OCI form is a `.wh.` entry beside it.
                return Ok(Some(Entry {
                    path: path::join(&rel_dir, &format!(".wh.{name}")),
                    kind: EntryKind::File,
                    size: 0,
                    link: String::new(),
                }));
            }
            if ft.is_symlink() {
                let target = fs::read_link(&full)
                    .map(|t| t.to_string_lossy().into_owned())
                    .unwrap_or_default();
                return Ok(Some(entry(EntryKind::Symlink, 0, target)));
            }
            if ft.is_file() {
                self.current.set(Some(full));
                return Ok(Some(entry(EntryKind::File, meta.len(), String::new())));
            }
            return Ok(Some(entry(EntryKind::Other, 0, String::new())));
        }
    }

    fn read_data(&mut self, max: u64) -> Result<Vec<u8>, LayerError> {
        self.current.read(max)
    }

    fn skip_data(&mut self, n: u64) -> Result<u64, LayerError> {
        self.current.skip(n)
    }
}

/// The lower directories of an overlay mount's options, bottom layer first.
pub fn lower_dirs(options: &[String]) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = options
        .iter()
        .filter_map(|o| o.strip_prefix("lowerdir="))
        .flat_map(|l| l.split(':'))
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .collect();
    // overlayfs lists the top-most lower layer first.
    dirs.reverse();
    dirs
}

/// Reads unpacked layers (bottom first) into a tree. Returns how many layer trees were read.
pub fn read_layers(
    dirs: &[PathBuf],
    tree: &mut FileTree,
    limits: &Limits,
    diag: &mut Diagnostics,
) -> anyhow::Result<u64> {
    for d in dirs {
        let mut src = LayerDir::new(d)?;
        tree.apply_layer_with(
            &mut src,
            &|p| stalewatch_core::catalog::wants(p),
            Some(&stalewatch_core::catalog::lang::BINARIES),
            limits,
            &d.display().to_string(),
            diag,
        )?;
    }
    Ok(dirs.len() as u64)
}

#[cfg(test)]
mod tests {
    #[test]
    fn lower_dirs_bottom_first() {
        let opts = vec![
            "index=off".to_string(),
            "workdir=/w".into(),
            "upperdir=/u".into(),
            "lowerdir=/l3:/l2:/l1".into(),
        ];
        let dirs = super::lower_dirs(&opts);
        assert_eq!(dirs, ["/l1", "/l2", "/l3"].map(std::path::PathBuf::from));
    }
}
