//! `stalewatch scan TARGET`: read a filesystem or image into the core's file tree, catalog,
//! match against the local advisory database, report.

mod current_file;
pub mod image;
pub mod overlay;
pub mod rootfs;

use anyhow::{bail, Context};
use std::path::{Path, PathBuf};

use stalewatch_core::catalog::{self, Inventory};
use stalewatch_core::layer::diagnostics::Unreadable;
use stalewatch_core::layer::{Diagnostics, FileTree, Limits};
use stalewatch_core::matcher;
use stalewatch_core::report::Report;

use crate::db::Store;

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

/// Reads a target into a merged file tree of the files catalogers want.
pub fn read_tree(
    target: &Target,
    ctrd: &ContainerdOptions,
    limits: &Limits,
    diag: &mut Diagnostics,
) -> anyhow::Result<FileTree> {
    let mut tree = FileTree::new();
    match target {
        Target::Rootfs(dir) => rootfs::read_into(dir, &mut tree, rootfs::Scope::Everything, limits, diag)
            .with_context(|| format!("read {}", dir.display()))?,
        Target::OciDir(p) => image::read(&image::OciLayout::dir(p)?, limits, &mut tree, diag)?,
        Target::OciArchive(p) => image::read(&image::OciLayout::archive(p)?, limits, &mut tree, diag)?,
        Target::DockerArchive(p) => image::read_docker_archive(p, limits, &mut tree, diag)?,
        Target::Containerd(name) => {
            crate::containerd::read_image(&ctrd.address, &ctrd.namespace, name, limits, &mut tree, diag)?
        }
    }
    Ok(tree)
}

/// Scans a target to an inventory plus what could not be read.
pub fn inventory(target: &Target, ctrd: &ContainerdOptions) -> anyhow::Result<(Inventory, Vec<Unreadable>)> {
    let limits = Limits::default();
    let mut diag = Diagnostics::default();
    let tree = read_tree(target, ctrd, &limits, &mut diag)?;
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
    Ok((inv, unreadable))
}

fn note(reason: &str, detail: &str) -> Unreadable {
    Unreadable {
        what: "image".into(),
        reason: reason.into(),
        detail: detail.into(),
    }
}

/// The top-level OSV ecosystems an inventory needs.
fn needed_ecosystems(inv: &Inventory) -> Vec<String> {
    let mut v: Vec<String> = inv
        .packages
        .iter()
        .filter(|p| !p.ecosystem.is_empty())
        .map(|p| p.ecosystem.split(':').next().unwrap_or_default().to_string())
        .collect();
    v.sort();
    v.dedup();
    v
}

pub fn run(
    target: &Target,
    target_text: &str,
    ctrd: &ContainerdOptions,
    db_dir: &Path,
    now: i64,
) -> anyhow::Result<Report> {
    let (inv, mut unreadable) = inventory(target, ctrd)?;
    let store = Store::new(db_dir);
    let mut needed = needed_ecosystems(&inv);
    // An ecosystem the last update found absent from the advisory source has nothing to
    // match against: its packages are listed, and the report says they were not matched.
    let state = store.state().unwrap_or_default();
    let absent_upstream =
        |e: &String| !store.has_index(e) && state.ecosystems.get(e).is_some_and(|s| s.missing);
    for e in needed.iter().filter(|e| absent_upstream(e)) {
        let n = inv
            .packages
            .iter()
            .filter(|p| p.ecosystem.split(':').next() == Some(e.as_str()))
            .count();
        unreadable.push(note(
            "no_advisory_feed",
            &format!("{e} is not on the advisory source: its {n} packages are listed, not matched"),
        ));
    }
    needed.retain(|e| !absent_upstream(e));
    let missing: Vec<&String> = needed.iter().filter(|e| !store.has_index(e)).collect();
    if !missing.is_empty() {
        bail!(
            "no advisory data for {} in {}: run `stalewatch db update` first",
            missing.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", "),
            db_dir.display()
        );
    }
    let db = store.load(&needed)?;
    let findings = matcher::match_inventory(&inv, &db)?;
    Ok(Report::new(target_text, inv, findings, unreadable, now))
}
