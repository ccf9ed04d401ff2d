//! Drift of a running container from its image: the package databases (and only those) of its
//! live root, `<proc-root>/<pid>/root`, compared with the image's inventory. Paths inside that
//! root are resolved without ever following a link out of it (the rootfs walker), files are
//! size-capped, and a container that exits mid-read is a normal outcome.

use std::collections::BTreeMap;
use std::path::Path;

use stalewatch_core::catalog::{self, Inventory};
use stalewatch_core::layer::{Diagnostics, FileTree, Limits};
use stalewatch_core::package::Package;

pub use crate::agent::snapshot::{ChangedPackage, Drift, DriftPackage};

fn key(p: &Package) -> (&str, &str, &str) {
    (&p.path, &p.name, &p.arch)
}

/// Compares the image's inventory with the live one (pure).
pub fn compare<'a>(image: &'a Inventory, live: &'a Inventory) -> Drift {
    // Only OS packages are read live: language packages stay the image's.
    let os = |i: &'a Inventory| i.packages.iter().filter(|p| catalog::is_os_package(p));
    let before: BTreeMap<_, &Package> = os(image).map(|p| (key(p), p)).collect();
    let after: BTreeMap<_, &Package> = os(live).map(|p| (key(p), p)).collect();
    let mut d = Drift::default();
    for (k, p) in &after {
        match before.get(k) {
            None => d.added.push(DriftPackage {
                name: p.name.to_string(),
                version: p.version.to_string(),
            }),
            Some(old) if old.version != p.version => d.changed.push(ChangedPackage {
                name: p.name.to_string(),
                image_version: old.version.to_string(),
                live_version: p.version.to_string(),
            }),
            Some(_) => {}
        }
    }
    for (k, p) in &before {
        if !after.contains_key(k) {
            d.removed.push(DriftPackage {
                name: p.name.to_string(),
                version: p.version.to_string(),
            });
        }
    }
    d.added
        .sort_by(|a, b| (&a.name, &a.version).cmp(&(&b.name, &b.version)));
    d.removed
        .sort_by(|a, b| (&a.name, &a.version).cmp(&(&b.name, &b.version)));
    d.changed.sort_by(|a, b| a.name.cmp(&b.name));
    d
}

/// The live inventory a drifted container's findings are matched on: its live OS packages,
/// and the image's language packages (not read live).
pub fn with_image_language_packages(mut live: Inventory, image: &Inventory) -> Inventory {
    let packages = live.packages_mut();
    packages.extend(
        image
            .packages
            .iter()
            .filter(|p| !catalog::is_os_package(p))
            .cloned(),
    );
    packages.sort();
    packages.dedup();
    live
}

/// Where package databases live (and dpkg's file lists): what a change of them looks like.
const DB_PATHS: [&str; 8] = [
    "var/lib/dpkg/status",
    "var/lib/dpkg/status.d",
    "var/lib/dpkg/info",
    "lib/apk/db/installed",
    "usr/lib/apk/db/installed",
    "var/lib/rpm/rpmdb.sqlite",
    "var/lib/rpm/Packages",
    "usr/lib/sysimage/rpm/rpmdb.sqlite",
];

/// (inode, size, mtime s, mtime ns) of each database path; `None` where it is absent.
pub type DbSignature = Vec<Option<(u64, u64, i64, i64)>>;

/// The identity of each package database of a running container, resolved
/// inside its root (`openat2` with `RESOLVE_IN_ROOT`: no link leads out of it). Equal
/// signatures mean unchanged databases: no need to read them again. `None` when the root
/// cannot be opened.
pub fn db_signature(proc_root: &Path, pid: u32) -> Option<DbSignature> {
    db_signature_in(&proc_root.join(pid.to_string()).join("root"))
}

/// [`db_signature`] of the databases under any root (the node scan's host root).
pub fn db_signature_in(root: &Path) -> Option<DbSignature> {
    use rustix::fs::{openat2, Mode, OFlags, ResolveFlags, CWD};
    let root = openat2(
        CWD,
        root,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
        ResolveFlags::empty(),
    )
    .ok()?;
    Some(
        DB_PATHS
            .iter()
            .map(|p| {
                let fd = openat2(
                    &root,
                    *p,
                    OFlags::PATH | OFlags::CLOEXEC,
                    Mode::empty(),
                    ResolveFlags::IN_ROOT,
                )
                .ok()?;
                let st = rustix::fs::fstat(&fd).ok()?;
                Some((st.st_ino, st.st_size as u64, st.st_mtime, st.st_mtime_nsec as i64))
            })
            .collect(),
    )
}

/// Catalogs the package databases of a running container's root (blocking). `Ok(None)` when
/// the container is gone (its `/proc` entry vanished): a normal case, not an error.
pub fn read_live(proc_root: &Path, pid: u32, limits: &Limits) -> anyhow::Result<Option<Inventory>> {
    let root = proc_root.join(pid.to_string()).join("root");
    let mut tree = FileTree::new();
    let mut diag = Diagnostics::default();
    match crate::source::rootfs::read_into(
        &root,
        &mut tree,
        crate::source::rootfs::Scope::OsDatabases,
        limits,
        &mut diag,
    ) {
        Ok(()) => {}
        Err(_) if !proc_root.join(pid.to_string()).exists() => return Ok(None),
        Err(e) => return Err(e),
    }
    let inv = catalog::catalog(&tree, &mut diag);
    // A root read while the process exited may come back empty: not drift.
    if !proc_root.join(pid.to_string()).exists() {
        return Ok(None);
    }
    Ok(Some(inv))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pkg(name: &str, version: &str) -> Package {
        Package {
            ecosystem: "Alpine:v3.20".into(),
            name: name.into(),
            version: version.into(),
            source_name: name.into(),
            source_version: version.into(),
            purl: Default::default(),
            path: "lib/apk/db/installed".into(),
            arch: "x86_64".into(),
            layer: None,
            introduced_layer: None,
        }
    }

    fn inv(p: Vec<Package>) -> Inventory {
        Inventory {
            os: None,
            packages: p.into(),
            databases: vec!["lib/apk/db/installed".into()],
            ..Default::default()
        }
    }

    #[test]
    fn added_removed_and_changed_packages() {
        let image = inv(vec![
            pkg("musl", "1.2.5-r0"),
            pkg("zlib", "1.3.1-r1"),
            pkg("curl", "8.9.0-r0"),
        ]);
        let live = inv(vec![
            pkg("musl", "1.2.5-r0"),
            pkg("zlib", "1.2.12-r0"),
            pkg("nmap", "7.95-r0"),
        ]);
        let d = compare(&image, &live);
        assert_eq!(
            d.added,
            vec![DriftPackage {
                name: "nmap".into(),
                version: "7.95-r0".into()
            }]
        );
        assert_eq!(
            d.removed,
            vec![DriftPackage {
                name: "curl".into(),
                version: "8.9.0-r0".into()
            }]
        );
        assert_eq!(
            d.changed,
            vec![ChangedPackage {
                name: "zlib".into(),
                image_version: "1.3.1-r1".into(),
                live_version: "1.2.12-r0".into()
            }]
        );
        assert_eq!(d.kind_of("nmap"), Some("added"));
        assert_eq!(d.kind_of("zlib"), Some("changed"));
        assert_eq!(d.kind_of("musl"), None);
        assert!(compare(&image, &image).is_empty());
    }

    #[test]
    fn language_packages_are_not_drift_and_stay_in_the_live_inventory() {
        let mut image = inv(vec![pkg("musl", "1.2.5-r0")]);
        image.packages_mut().push(Package {
            ecosystem: "npm".into(),
            name: "lodash".into(),
            version: "4.17.15".into(),
            source_name: "lodash".into(),
            source_version: "4.17.15".into(),
            purl: "pkg:npm/lodash@4.17.15".into(),
            path: "app/node_modules/lodash/package.json".into(),
            arch: Default::default(),
            layer: None,
            introduced_layer: None,
        });
        // A Go binary's module: a language package too, though its path is no manifest.
        image.packages_mut().push(Package {
            ecosystem: "Go".into(),
            name: "golang.org/x/text".into(),
            version: "v0.3.2".into(),
            source_name: "golang.org/x/text".into(),
            source_version: "v0.3.2".into(),
            purl: "pkg:golang/golang.org/x/text@v0.3.2".into(),
            path: "usr/local/bin/svc".into(),
            arch: Default::default(),
            layer: None,
            introduced_layer: None,
        });
        // The live read sees OS databases only.
        let live = inv(vec![pkg("musl", "1.2.5-r0"), pkg("curl", "8.9.0-r0")]);
        let d = compare(&image, &live);
        assert!(d.removed.is_empty(), "{d:?}");
        assert_eq!(d.added.len(), 1);
        let merged = with_image_language_packages(live, &image);
        assert!(merged.packages.iter().any(|p| p.name == "lodash"));
        assert!(merged.packages.iter().any(|p| p.name == "golang.org/x/text"));
        assert_eq!(merged.packages.len(), 4);
    }

    #[test]
    fn signatures_change_with_the_database() {
        // This process's own root stands in for a container's.
        let me = std::process::id();
        let a = db_signature(Path::new("/proc"), me).expect("own root");
        assert_eq!(a.len(), DB_PATHS.len());
        assert_eq!(db_signature(Path::new("/proc"), me), Some(a));
        assert_eq!(db_signature(Path::new("/nonexistent"), me), None);
    }

    #[test]
    fn a_vanished_process_is_not_an_error() {
        let dir = tempfile::tempdir().unwrap();
        assert!(read_live(dir.path(), 4_000_000, &Limits::default())
            .unwrap()
            .is_none());
    }
}
