//! Unpacked image layers as overlayfs keeps them (containerd's overlayfs snapshotter): each
//! lower directory is one layer, whiteouts are 0/0 character devices and opaque directories
//! carry the `trusted.overlay.opaque` xattr. They are turned back into OCI whiteout entries
//! so the same tree logic applies.

use anyhow::Context;
use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use super::walk::DirWalk;
use stalewatch_core::layer::{
    path, Diagnostics, Entry, EntryKind, EntrySource, FileTree, LayerError, Limits,
};

/// One unpacked layer directory as an entry source (the shared walk: symlinks never
/// followed, never off the layer's filesystem).
pub struct LayerDir {
    walk: DirWalk<'static>,
    pending: Vec<Entry>,
    current: super::current_file::CurrentFile,
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
            walk: DirWalk::new(dir, "", &|_| true)?,
            pending: Vec::new(),
            current: Default::default(),
        })
    }
}

impl EntrySource for LayerDir {
    fn next_entry(&mut self) -> Result<Option<Entry>, LayerError> {
        self.current.set(None, 0);
        if let Some(e) = self.pending.pop() {
            return Ok(Some(e));
        }
        while let Some(f) = self.walk.next_found() {
            let marker = |path: String| Entry {
                path,
                kind: EntryKind::File,
                size: 0,
                mode: 0,
                link: String::new(),
            };
            if f.file_type.is_dir() && is_opaque(&f.full) {
                self.pending.push(marker(path::join(&f.rel, ".wh..wh..opq")));
            }
            // overlayfs whiteout (a 0/0 device): the OCI form is a `.wh.` entry beside it.
            if f.file_type.is_char_device() && f.item.metadata().is_ok_and(|m| m.rdev() == 0) {
                return Ok(Some(marker(path::join(&f.dir, &format!(".wh.{}", f.name)))));
            }
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

/// Why a snapshot could not be read as layers: each its own `stalewatch_scan_errors_total`
/// reason, never a clean empty image.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// A mount the agent does not read: templated options (containerd 2.2's mount manager),
    /// EROFS or block devices, or no layer directory at all.
    #[error("the snapshot's mounts cannot be read as layer directories: {0}")]
    UnsupportedMount(String),
    /// Layer directories with no file in them: a lazily pulled layer not fetched yet, or a
    /// FUSE mount the agent's mount namespace does not see.
    #[error("the snapshot's layer directories hold no file (a lazy pull not materialised, or a mount not visible to the agent)")]
    Empty,
}

impl SnapshotError {
    pub fn reason(&self) -> &'static str {
        match self {
            SnapshotError::UnsupportedMount(_) => "unsupported_mount",
            SnapshotError::Empty => "snapshot_empty",
        }
    }
}

/// The layer directories of a snapshot's mounts, bottom first: an overlay's lower
/// directories, or the one directory a read-only bind mount shows (containerd's overlayfs
/// snapshotter views a single-layer chain that way). Anything else is refused by name.
pub fn lower_dirs_of(mounts: &[containerd_client::types::Mount]) -> Result<Vec<PathBuf>, SnapshotError> {
    let mut dirs = Vec::new();
    for m in mounts {
        if m.options.iter().any(|o| o.contains("{{")) || m.source.contains("{{") {
            return Err(SnapshotError::UnsupportedMount(format!(
                "templated {} mount (resolved by containerd's mount manager, not a path)",
                m.r#type
            )));
        }
        // containerd 2.2's transformers (`mkdir/`, `format/`) prefix the type; with no
        // template left, what they wrap is an ordinary mount.
        let kind = m.r#type.rsplit('/').next().unwrap_or_default();
        match kind {
            "bind" | "rbind" if !m.source.is_empty() => dirs.push(PathBuf::from(&m.source)),
            "overlay" => dirs.extend(lower_dirs(&m.options)),
            other => {
                return Err(SnapshotError::UnsupportedMount(format!(
                    "a {other:?} mount of {:?}",
                    m.source
                )))
            }
        }
    }
    if dirs.is_empty() {
        return Err(SnapshotError::UnsupportedMount("no layer directory".into()));
    }
    Ok(dirs)
}

/// One unpacked layer directory into a delta that is cached under the layer's digest, as
/// one read from the layer's blob would be.
pub fn read_layer_delta(
    dir: &Path,
    label: &str,
    limits: &Limits,
    diag: &mut Diagnostics,
) -> anyhow::Result<stalewatch_core::layer::tree::LayerDelta> {
    let mut src = LayerDir::new(dir)?;
    Ok(super::image::cacheable_delta(&mut src, label, limits, diag)?)
}

/// Reads unpacked layers (bottom first) into a tree, each labelled by its path. Returns how
/// many layer trees were read.
pub fn read_layers(
    dirs: &[PathBuf],
    tree: &mut FileTree,
    limits: &Limits,
    diag: &mut Diagnostics,
) -> anyhow::Result<u64> {
    let labels: Vec<String> = dirs.iter().map(|d| d.display().to_string()).collect();
    read_layers_as(dirs, &labels, tree, limits, diag)?;
    Ok(dirs.len() as u64)
}

/// Reads unpacked layers (bottom first) into a tree, each under its label (a layer digest,
/// where the manifest names them). No file in any of them is a snapshot not there to read.
pub fn read_layers_as(
    dirs: &[PathBuf],
    labels: &[String],
    tree: &mut FileTree,
    limits: &Limits,
    diag: &mut Diagnostics,
) -> anyhow::Result<()> {
    let mut entries = 0;
    for (d, label) in dirs.iter().zip(labels) {
        let mut src = LayerDir::new(d)?;
        entries += tree
            .apply_layer_with(
                &mut src,
                &|p| stalewatch_core::catalog::wants(p),
                Some(&stalewatch_core::catalog::lang::BINARIES),
                limits,
                label,
                diag,
            )
            .with_context(|| format!("layer {label} at {}", d.display()))?
            .entries;
    }
    if entries == 0 {
        return Err(SnapshotError::Empty.into());
    }
    Ok(())
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

    #[test]
    fn a_read_only_bind_mount_is_one_layer_and_other_mounts_none() {
        let mount = |t: &str, source: &str, options: &[&str]| containerd_client::types::Mount {
            r#type: t.into(),
            source: source.into(),
            options: options.iter().map(|o| o.to_string()).collect(),
            ..Default::default()
        };
        let bind = [mount("bind", "/snap/1/fs", &["ro", "rbind"])];
        assert_eq!(
            super::lower_dirs_of(&bind).unwrap(),
            [std::path::PathBuf::from("/snap/1/fs")]
        );
        let overlay = [mount("overlay", "overlay", &["lowerdir=/b:/a"])];
        assert_eq!(
            super::lower_dirs_of(&overlay).unwrap(),
            ["/a", "/b"].map(std::path::PathBuf::from)
        );
        let reason = |m: &[containerd_client::types::Mount]| super::lower_dirs_of(m).unwrap_err().reason();
        assert_eq!(reason(&[mount("tmpfs", "", &[])]), "unsupported_mount");
        assert_eq!(reason(&[]), "unsupported_mount");
        // containerd 2.2's mount manager (docs/mounts.md of its tree): a directory made
        // before an overlay over a literal lower directory is read; an EROFS layer, a loop
        // device, or an overlay whose lower directories are templates over the mounts before
        // it (`{{ mount 0 }}`, `{{ overlay 0 2 }}`) are not.
        let mkdir = [mount(
            "mkdir/overlay",
            "overlay",
            &[
                "X-containerd.mkdir.path=/w/upper:0755",
                "lowerdir=/snapshots/base",
                "upperdir=/w/upper",
                "workdir=/w/work",
            ],
        )];
        assert_eq!(
            super::lower_dirs_of(&mkdir).unwrap(),
            [std::path::PathBuf::from("/snapshots/base")]
        );
        let bound = [
            mount("bind", "/var/lib/containerd/snapshots/1", &["ro"]),
            mount(
                "format/overlay",
                "overlay",
                &["lowerdir={{ mount 0 }}", "upperdir=/upper", "workdir=/work"],
            ),
        ];
        assert_eq!(reason(&bound), "unsupported_mount");
        assert_eq!(
            reason(&[mount(
                "mkfs/loop",
                "/data/fs.img",
                &["X-containerd.mkfs.size=500MiB"]
            )]),
            "unsupported_mount"
        );
        let managed = [
            mount(
                "erofs",
                "/var/lib/containerd/io.containerd.snapshotter.v1.erofs/snapshots/4/layer.erofs",
                &["ro"],
            ),
            mount(
                "format/mkdir/overlay",
                "overlay",
                &["lowerdir={{ overlay 0 4 }}", "upperdir=/u", "workdir=/w"],
            ),
        ];
        assert_eq!(reason(&managed), "unsupported_mount");
        assert_eq!(
            reason(&[mount("overlay", "overlay", &["lowerdir={{ overlay 0 1 }}"])]),
            "unsupported_mount"
        );
    }
}
