//! Image sources: where a file tree comes from — an unpacked root (`rootfs`), an OCI layout
//! or archive or a docker archive (`image`), containerd's content store (`crate::containerd`
//! as a `BlobStore`), overlay lower directories (`overlay`) — all walked by `walk` and read
//! into the core's file tree, then cataloged.

pub mod containerd;
mod current_file;
pub mod image;
pub mod overlay;
pub mod rootfs;
mod walk;

use anyhow::{bail, Context};
use std::path::PathBuf;

use stalewatch_core::catalog::{self, Inventory};
use stalewatch_core::layer::diagnostics::Unreadable;
use stalewatch_core::layer::{Diagnostics, FileTree, Limits};

use image::ImageMeta;

#[derive(Debug, Clone)]
pub enum Target {
    Rootfs(PathBuf),
    OciDir(PathBuf),
    OciArchive(PathBuf),
    DockerArchive(PathBuf),
    /// An image in containerd's content store, by name.
    Containerd(String),
}

/// Where `containerd:` targets are read from.
#[derive(Debug, Clone)]
pub struct ContainerdOptions {
    pub address: PathBuf,
    pub namespace: String,
}

impl Target {
    pub fn parse(s: &str) -> anyhow::Result<Target> {
        let (kind, rest) = s.split_once(':').with_context(|| {
            format!("target {s:?} has no type (rootfs:DIR, oci:DIR, oci-archive:FILE, docker-archive:FILE)")
        })?;
        if rest.is_empty() {
            bail!("target {s:?} names no path");
        }
        let p = PathBuf::from(rest);
        Ok(match kind {
            "rootfs" => Target::Rootfs(p),
            "oci" => Target::OciDir(p),
            "oci-archive" => Target::OciArchive(p),
            "docker-archive" => Target::DockerArchive(p),
            "containerd" => Target::Containerd(rest.to_string()),
            other => {
                bail!("unknown target type {other:?} (rootfs, oci, oci-archive, docker-archive)")
            }
        })
    }
}

/// Reads a target into a merged file tree of the files catalogers want, with the image's
/// metadata (none for an unpacked root).
pub fn read_tree(
    target: &Target,
    ctrd: &ContainerdOptions,
    limits: &Limits,
    diag: &mut Diagnostics,
) -> anyhow::Result<(FileTree, Option<ImageMeta>)> {
    let mut tree = FileTree::new();
    let meta = match target {
        Target::Rootfs(dir) => {
            rootfs::read_into(dir, &mut tree, rootfs::Scope::Packages, limits, diag)
                .with_context(|| format!("read {}", dir.display()))?;
            None
        }
        Target::OciDir(p) => Some(image::read(&image::OciLayout::dir(p)?, limits, &mut tree, diag)?),
        Target::OciArchive(p) => Some(image::read(
            &image::OciLayout::archive(p)?,
            limits,
            &mut tree,
            diag,
        )?),
        Target::DockerArchive(p) => Some(image::read_docker_archive(p, limits, &mut tree, diag)?),
        Target::Containerd(name) => Some(containerd::read_image(
            &ctrd.address,
            &ctrd.namespace,
            name,
            limits,
            &mut tree,
            diag,
        )?),
    };
    Ok((tree, meta))
}

/// A target's image metadata without reading its layers (a declared base); an unpacked root
/// has none.
pub fn image_meta(target: &Target, ctrd: &ContainerdOptions) -> anyhow::Result<Option<ImageMeta>> {
    let layout_meta = |l: image::OciLayout| image::read_meta(&l, &image::layout_root(&l)?);
    Ok(match target {
        Target::Rootfs(_) => None,
        Target::OciDir(p) => Some(layout_meta(image::OciLayout::dir(p)?)?),
        Target::OciArchive(p) => Some(layout_meta(image::OciLayout::archive(p)?)?),
        Target::DockerArchive(p) => Some(image::docker_archive(p)?.2),
        Target::Containerd(name) => Some(containerd::read_meta(&ctrd.address, &ctrd.namespace, name)?),
    })
}

/// A target read: its inventory, what could not be read, and the image's metadata.
pub struct Scanned {
    pub inventory: Inventory,
    pub unreadable: Vec<Unreadable>,
    pub meta: Option<ImageMeta>,
}

/// Scans a target to an inventory plus what could not be read.
pub fn inventory(target: &Target, ctrd: &ContainerdOptions) -> anyhow::Result<Scanned> {
    let limits = catalog::limits();
    let mut diag = Diagnostics::default();
    let (tree, meta) = read_tree(target, ctrd, &limits, &mut diag)?;
    let inv = catalog::catalog(&tree, &mut diag);
    let mut unreadable = diag.notes;
    // OS packages need the OS's feed; language packages are matched whatever the OS.
    let os_packages = inv.packages.iter().any(catalog::is_os_package);
    match &inv.os {
        None if os_packages => unreadable.push(note("unsupported_os", "no os-release or release file")),
        Some(os) if os.ecosystem.is_none() && os_packages => unreadable.push(note(
            "unsupported_os",
            &format!(
                "{} {:?} has no advisory feed stalewatch knows",
                os.id, os.version_id
            ),
        )),
        _ => {}
    }
    if inv.databases.is_empty() {
        unreadable.push(note(
            "no_package_db",
            "no dpkg, apk or rpm database and no language manifest found",
        ));
    }
    Ok(Scanned {
        inventory: inv,
        unreadable,
        meta,
    })
}

pub fn note(reason: &str, detail: &str) -> Unreadable {
    Unreadable {
        what: "image".into(),
        reason: reason.into(),
        detail: detail.into(),
    }
}
