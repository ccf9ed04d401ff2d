//! Package catalogers over the merged file tree: which files they want, and the inventory
//! they produce — the OS packages of the distribution's database, and language packages
//! (`lang`). Each format has its own parser module (bytes in, packages out).

pub mod apk;
pub mod dpkg;
pub mod lang;
pub mod rpm;

use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use crate::layer::tree::ResolveError;
use crate::layer::{Diagnostics, FileTree};
use crate::os::{self, OsInfo};
use crate::package::{purl_encode, Package};

/// A package as a database lists it, before the OS gives it an ecosystem and purl.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawPackage {
    pub name: String,
    pub version: String,
    pub source_name: String,
    pub source_version: String,
    pub arch: String,
    /// Files the package installed (relative to the root), where its database lists them.
    pub files: Option<Vec<String>>,
}

/// What one database parse yields.
#[derive(Debug, Default)]
pub struct ParseOutcome {
    pub packages: Vec<RawPackage>,
    /// Entries that were not installed packages (dpkg `deinstall`, rpm `gpg-pubkey`).
    pub not_installed: u64,
    /// Entries too broken to use.
    pub malformed: u64,
}

const DPKG_STATUS: &str = "var/lib/dpkg/status";
const DPKG_STATUS_D: &str = "var/lib/dpkg/status.d";
/// `<package>.list` / `<package>:<arch>.list`: the files dpkg installed for each package.
const DPKG_INFO: &str = "var/lib/dpkg/info";
const APK_INSTALLED: [&str; 2] = ["lib/apk/db/installed", "usr/lib/apk/db/installed"];
const RPM_DBS: [&str; 4] = [
    "var/lib/rpm/rpmdb.sqlite",
    "usr/lib/sysimage/rpm/rpmdb.sqlite",
    "var/lib/rpm/Packages",
    "usr/lib/sysimage/rpm/Packages",
];
const RPM_NDB: [&str; 2] = ["var/lib/rpm/Packages.db", "usr/lib/sysimage/rpm/Packages.db"];

/// Every fixed path the catalogers read (the `status.d` directory's files come on top).
pub fn wanted_paths() -> impl Iterator<Item = &'static str> {
    os::FILES
        .iter()
        .chain(std::iter::once(&DPKG_STATUS))
        .chain(APK_INSTALLED.iter())
        .chain(RPM_DBS.iter())
        .chain(RPM_NDB.iter())
        .copied()
}

/// Directories whose contents catalogers read directly.
pub const WANTED_DIRS: [&str; 2] = [DPKG_STATUS_D, DPKG_INFO];

/// Whether a directory can hold a wanted OS file (package database, os-release): a live
/// container root is walked only through these for drift, and they are the directories whose
/// shadowing of lower layers a layer cache records.
pub fn wants_os_dir(dir: &str) -> bool {
    let under = |w: &str| w.len() > dir.len() && w.starts_with(dir) && w.as_bytes()[dir.len()] == b'/';
    dir.is_empty() || WANTED_DIRS.contains(&dir) || wanted_paths().chain(WANTED_DIRS).any(under)
}

/// Whether a directory can hold a wanted file, OS or language: any but the kernel's
/// pseudo-filesystems and the documentation and data directories (`lang::DATA_DIRS`);
/// language manifests live anywhere else.
pub fn wants_dir(dir: &str) -> bool {
    let top = dir.split('/').next().unwrap_or(dir);
    !matches!(top, "proc" | "sys" | "dev") && !lang::in_data_dir(dir)
}

/// Whether a (normalised) path is one the catalogers read; everything else in a layer is
/// streamed past without being kept.
pub fn wants(path: &str) -> bool {
    wants_os(path) || lang::wants(path)
}

/// [`wants`] without the package databases' file lists (`var/lib/dpkg/info/*.list`): what a
/// package listing needs; the lists only tell which package owns a mapped file (the agent's
/// packages in use).
pub fn wants_packages(path: &str) -> bool {
    wants(path) && !is_dpkg_file_list(path)
}

fn is_dpkg_file_list(path: &str) -> bool {
    path.strip_prefix(DPKG_INFO)
        .and_then(|rest| rest.strip_prefix('/'))
        .is_some_and(|name| !name.contains('/') && name.ends_with(".list"))
}

/// Whether a path is an OS file the catalogers read (os-release, package databases).
pub fn wants_os(path: &str) -> bool {
    os::FILES.contains(&path)
        || path == DPKG_STATUS
        || path
            .strip_prefix(DPKG_STATUS_D)
            .is_some_and(|rest| rest.starts_with('/') && !rest[1..].contains('/'))
        || is_dpkg_file_list(path)
        || APK_INSTALLED.contains(&path)
        || RPM_DBS.contains(&path)
        || RPM_NDB.contains(&path)
}

/// The packages of one image or filesystem, with its OS.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Inventory {
    pub os: Option<OsInfo>,
    pub packages: Vec<Package>,
    /// Package databases found (paths), so "no package database" is distinguishable from
    /// "empty database".
    pub databases: Vec<String>,
    /// Files a process can map (executables and shared libraries), by [`mapped_key`], to the
    /// package that owns them; only from databases that list files (apk today).
    /// Shared (`Arc`): images of one base hold the same table, and the agent keeps one copy.
    #[serde(default, skip_serializing_if = "is_empty_map")]
    pub mapped_files: Arc<BTreeMap<String, String>>,
    /// Packages whose database lists their files: for the others, "in use" is unknown.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub with_file_lists: BTreeSet<String>,
}

fn is_empty_map(m: &Arc<BTreeMap<String, String>>) -> bool {
    m.is_empty()
}

impl Inventory {
    /// A copy without the owners of mapped files (what a report needs).
    pub fn without_file_owners(&self) -> Inventory {
        Inventory {
            os: self.os.clone(),
            packages: self.packages.clone(),
            databases: self.databases.clone(),
            mapped_files: Arc::default(),
            with_file_lists: BTreeSet::new(),
        }
    }
}

/// Whether a path is one a process maps: a shared library or an executable.
pub fn mappable(path: &str) -> bool {
    let name = path.rsplit('/').next().unwrap_or(path);
    name.contains(".so") || path.split('/').any(|c| matches!(c, "bin" | "sbin" | "libexec"))
}

/// The key under which a file is looked up when a process maps it: no leading `/`, and no
/// leading `usr/`, so a merged-/usr root's `/usr/lib/x.so` and a database's `lib/x.so` meet.
pub fn mapped_key(path: &str) -> &str {
    let p = path.trim_start_matches('/');
    p.strip_prefix("usr/").unwrap_or(p)
}

fn read_or_note<'t>(tree: &'t FileTree, path: &str, diag: &mut Diagnostics) -> Option<&'t [u8]> {
    match tree.read(path) {
        Ok(None) => {
            // A link to a path no cataloger asked for: its target was streamed past unread.
            if let Ok(real) = tree.resolve_path(path) {
                if real != path && tree.is_symlink_chain(path) {
                    diag.skip(
                        "link_target_not_read",
                        path,
                        format!("links to {real}, which was not kept"),
                    );
                }
            }
            None
        }
        Ok(b) => b,
        Err(ResolveError::Loop) => {
            diag.skip("symlink_loop", path, "too many levels of symbolic links");
            None
        }
        // Already noted when the layer was read.
        Err(ResolveError::Skipped(_)) => None,
    }
}

fn purl(os: Option<&OsInfo>, kind: &str, p: &RawPackage) -> String {
    let (distro_ns, distro) = match os {
        Some(o) => (o.id.as_str(), format!("{}-{}", o.id, o.version_id)),
        None => ("unknown", String::new()),
    };
    let mut qualifiers = Vec::new();
    if !p.arch.is_empty() {
        qualifiers.push(format!("arch={}", purl_encode(&p.arch)));
    }
    let mut version = p.version.clone();
    if kind == "rpm" {
        if let Some((epoch, rest)) = p.version.split_once(':') {
            qualifiers.push(format!("epoch={epoch}"));
            version = rest.to_string();
        }
    }
    if !distro.is_empty() {
        qualifiers.push(format!("distro={}", purl_encode(&distro)));
    }
    let ns = if kind == "apk" { "alpine" } else { distro_ns };
    let mut s = format!(
        "pkg:{kind}/{}/{}@{}",
        purl_encode(ns),
        purl_encode(&p.name),
        purl_encode(&version)
    );
    if !qualifiers.is_empty() {
        s.push('?');
        s.push_str(&qualifiers.join("&"));
    }
    s
}

/// Catalogs the OS and its packages from a merged tree.
pub fn catalog(tree: &FileTree, diag: &mut Diagnostics) -> Inventory {
    let os = os::detect(&|p| tree.read(p).ok().flatten().map(<[u8]>::to_vec));
    let mut c = Cataloger {
        tree,
        ecosystem: os.as_ref().and_then(|o| o.ecosystem.clone()).unwrap_or_default(),
        inv: Inventory {
            os,
            ..Default::default()
        },
    };
    c.dpkg(diag);
    c.apk_and_rpm(diag);
    let (lang_packages, manifests) = lang::catalog(tree, diag);
    let mut inv = c.inv;
    inv.packages.extend(lang_packages);
    inv.databases.extend(manifests);
    inv.packages.sort();
    inv.packages.dedup();
    inv
}

/// The OS package databases of one tree, gathered into an inventory.
struct Cataloger<'a> {
    tree: &'a FileTree,
    ecosystem: String,
    inv: Inventory,
}

impl Cataloger<'_> {
    /// Adds one database's packages (and their mappable files' owners).
    fn add(&mut self, kind: &str, path: &str, out: ParseOutcome, diag: &mut Diagnostics) {
        if out.malformed > 0 {
            diag.skip(
                "malformed_package_entry",
                path,
                format!("{} entries could not be parsed", out.malformed),
            );
        }
        let inv = &mut self.inv;
        inv.databases.push(path.to_string());
        for p in out.packages {
            if let Some(files) = &p.files {
                inv.with_file_lists.insert(p.name.clone());
                let owners = Arc::make_mut(&mut inv.mapped_files);
                for f in files.iter().filter(|f| mappable(f)) {
                    owners.insert(mapped_key(f).to_string(), p.name.clone());
                }
            }
            inv.packages.push(Package {
                ecosystem: self.ecosystem.clone(),
                purl: purl(inv.os.as_ref(), kind, &p),
                name: p.name,
                version: p.version,
                source_name: p.source_name,
                source_version: p.source_version,
                path: path.to_string(),
                arch: p.arch,
                layer: self.tree.origin(path).map(str::to_string),
            });
        }
    }

    /// dpkg's status file (with its `info/*.list` file lists) and distroless `status.d`.
    fn dpkg(&mut self, diag: &mut Diagnostics) {
        let tree = self.tree;
        if let Some(b) = read_or_note(tree, DPKG_STATUS, diag) {
            let mut out = dpkg::parse_status(b, true);
            // File lists from info/<name>[:<arch>].list, where the image kept them.
            for p in &mut out.packages {
                let with_arch = format!("{DPKG_INFO}/{}:{}.list", p.name, p.arch);
                let plain = format!("{DPKG_INFO}/{}.list", p.name);
                let list = [with_arch, plain]
                    .iter()
                    .find_map(|f| tree.read(f).ok().flatten().map(<[u8]>::to_vec));
                p.files = list.map(|b| dpkg::parse_list(&b));
            }
            self.add("deb", DPKG_STATUS, out, diag);
        }
        if let Ok(files) = tree.list_files(DPKG_STATUS_D) {
            for (name, b) in files {
                if name.ends_with(".md5sums") {
                    continue;
                }
                let path = format!("{DPKG_STATUS_D}/{name}");
                self.add("deb", &path, dpkg::parse_status(b, false), diag);
            }
        }
    }

    /// apk's installed database and rpm's databases, each real file once whatever links
    /// lead to it; rpm's ndb is named as unsupported.
    fn apk_and_rpm(&mut self, diag: &mut Diagnostics) {
        let tree = self.tree;
        let mut seen = std::collections::BTreeSet::new();
        let mut first_time = |path: &str| tree.resolve_path(path).is_ok_and(|real| seen.insert(real));
        for path in APK_INSTALLED {
            if !first_time(path) {
                continue;
            }
            if let Some(b) = read_or_note(tree, path, diag) {
                self.add("apk", path, apk::parse_installed(b), diag);
            }
        }
        for path in RPM_DBS {
            if !first_time(path) {
                continue;
            }
            if let Some(b) = read_or_note(tree, path, diag) {
                match rpm::parse_any(b) {
                    Ok(out) => self.add("rpm", path, out, diag),
                    Err(e) => diag.skip("corrupt_package_db", path, e.0),
                }
            }
        }
        for path in RPM_NDB {
            if let Some(b) = read_or_note(tree, path, diag) {
                if !b.is_empty() {
                    diag.skip("unsupported_package_db", path, "rpm ndb format is not supported");
                }
            }
        }
    }
}

/// Whether a package came from the OS's database (not from a language manifest or binary).
pub fn is_os_package(p: &Package) -> bool {
    wants_os(&p.path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wanted_paths() {
        assert!(wants("var/lib/dpkg/status"));
        assert!(wants("var/lib/dpkg/status.d/base-files"));
        assert!(!wants("var/lib/dpkg/status.d/a/b"));
        assert!(!wants("var/lib/dpkg/status-old"));
        assert!(wants("lib/apk/db/installed"));
        assert!(wants("var/lib/rpm/rpmdb.sqlite"));
        assert!(!wants("usr/bin/busybox"));
        assert!(
            wants_os_dir("")
                && wants_os_dir("var")
                && wants_os_dir("var/lib/dpkg/status.d")
                && wants_os_dir("usr/lib")
        );
        assert!(!wants_os_dir("usr/bin") && !wants_os_dir("var/lib/dpkg/status.d/x") && !wants_os_dir("et"));
        assert!(wants("app/node_modules/ms/package.json") && !wants_os("app/node_modules/ms/package.json"));
        assert!(wants_dir("app/node_modules") && !wants_dir("proc/1"));
    }

    #[test]
    fn catalogs_an_alpine_tree() {
        let mut t = FileTree::new();
        t.insert_file("etc/os-release", b"ID=alpine\nVERSION_ID=3.20.3\n".to_vec());
        t.insert_file(
            "lib/apk/db/installed",
            b"P:libcrypto3\nV:3.3.2-r0\nA:x86_64\no:openssl\n\nP:bad\n".to_vec(),
        );
        let mut d = Diagnostics::default();
        let inv = catalog(&t, &mut d);
        assert_eq!(inv.packages.len(), 1);
        let p = &inv.packages[0];
        assert_eq!(p.ecosystem, "Alpine:v3.20");
        assert_eq!(
            p.purl,
            "pkg:apk/alpine/libcrypto3@3.3.2-r0?arch=x86_64&distro=alpine-3.20.3"
        );
        assert_eq!(d.count("malformed_package_entry"), 1);
    }
}
