//! Package catalogers over the merged file tree: which files they want, and the inventory
//! they produce — the OS packages of the distribution's database, and language packages
//! (`lang`). Each format has its own parser module (bytes in, packages out).

pub mod apk;
pub mod chisel;
pub mod dpkg;
pub mod introduced;
pub mod lang;
pub mod rpm;

use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use crate::layer::tree::ResolveError;
use crate::layer::{Diagnostics, FileTree, Keep, Limits};
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
    /// An rpm's modularity label (`nodejs:18:9020020230531:rhel9`), where it was built in a
    /// module: it becomes the purl's `rpmmod` qualifier, which modular advisories judge by.
    pub module: Option<String>,
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
/// Azure Linux distroless: the packages as a text manifest, no rpm database.
const RPM_MANIFEST: &str = rpm::manifest::PATH;

/// Every fixed path the catalogers read (the `status.d` directory's files come on top).
pub fn wanted_paths() -> impl Iterator<Item = &'static str> {
    os::FILES
        .iter()
        .chain(std::iter::once(&DPKG_STATUS))
        .chain(APK_INSTALLED.iter())
        .chain(RPM_DBS.iter())
        .chain(RPM_NDB.iter())
        .chain(std::iter::once(&RPM_MANIFEST))
        .chain(std::iter::once(&chisel::PATH))
        .copied()
}

/// Directories whose contents catalogers read directly.
pub const WANTED_DIRS: [&str; 2] = [DPKG_STATUS_D, DPKG_INFO];

/// Whether a directory can hold a wanted OS file (package database, os-release): a live
/// container root is walked only through these for drift, and they are the directories whose
/// shadowing of lower layers a layer cache records.
pub fn wants_os_dir(dir: &str) -> bool {
    let under = |w: &str| w.len() > dir.len() && w.starts_with(dir) && w.as_bytes()[dir.len()] == b'/';
    // A directory per package under status.d is read only to be named as unread.
    let package_dir = dir
        .strip_prefix(DPKG_STATUS_D)
        .and_then(|rest| rest.strip_prefix('/'))
        .is_some_and(|name| !name.is_empty() && !name.contains('/'));
    dir.is_empty()
        || WANTED_DIRS.contains(&dir)
        || package_dir
        || wanted_paths().chain(WANTED_DIRS).any(under)
}

/// Whether a directory can hold a wanted file, OS or language: any but the kernel's
/// pseudo-filesystems and the documentation and data directories (`lang::DATA_DIRS`);
/// language manifests live anywhere else.
pub fn wants_dir(dir: &str) -> bool {
    let top = dir.split('/').next().unwrap_or(dir);
    !matches!(top, "proc" | "sys" | "dev") && !lang::in_data_dir(dir)
}

/// How the layer readers keep each wanted file: dpkg's status and apk's installed database
/// filtered to the lines their parsers read as they stream by (a hostile 190 MiB database is
/// never in memory whole), language manifests skipped unread over their cap.
pub fn keep(path: &str) -> Keep {
    if path == DPKG_STATUS {
        Keep::Lines(dpkg::status_filter)
    } else if APK_INSTALLED.contains(&path) {
        Keep::Lines(apk::installed_filter)
    } else if lang::wants(path) {
        Keep::UpTo(lang::MAX_MANIFEST_BYTES as u64, "manifest_too_large")
    } else {
        Keep::Whole
    }
}

/// The image limits with the catalogers' [`keep`].
pub fn limits() -> Limits {
    Limits {
        keep,
        history: introduced::tracked,
        ..Limits::default()
    }
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
        // status.d/<name> and <name>.md5sums; status.d/<name>/<file> too, only to say that
        // layout (a directory per package) is not read.
        || path
            .strip_prefix(DPKG_STATUS_D)
            .and_then(|rest| rest.strip_prefix('/'))
            .is_some_and(|rest| !rest.is_empty() && rest.split('/').count() <= 2)
        || is_dpkg_file_list(path)
        || APK_INSTALLED.contains(&path)
        || RPM_DBS.contains(&path)
        || RPM_NDB.contains(&path)
        || path == RPM_MANIFEST
        || path == chisel::PATH
}

/// [`wants_os`] without dpkg's file lists (`info/*.list`, ~8 MB on an 800-package host): the
/// packages and their versions, not which package owns which file.
pub fn wants_os_without_file_lists(path: &str) -> bool {
    wants_os(path) && !is_dpkg_file_list(path)
}

/// The packages of one image or filesystem, with its OS.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Inventory {
    pub os: Option<OsInfo>,
    /// Shared (`Arc`): an image's report holds the same list as its cached inventory — one
    /// copy per image, not two (issue 31). Changed through `Arc::make_mut`.
    pub packages: Arc<Vec<Package>>,
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
    /// The package list to change: this inventory's own (copied first when a report shares it).
    pub fn packages_mut(&mut self) -> &mut Vec<Package> {
        Arc::make_mut(&mut self.packages)
    }

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
    if let Some(m) = &p.module {
        qualifiers.push(format!("rpmmod={}", purl_encode(m)));
    }
    // apk's namespace is the distribution's where it is one of apk's own (Wolfi's and
    // Chainguard's purls say `wolfi`/`chainguard`), else Alpine's.
    let ns = match (kind, distro_ns) {
        ("apk", "wolfi" | "chainguard") => distro_ns,
        ("apk", _) => "alpine",
        _ => distro_ns,
    };
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
    // Kept per package, hundreds of thousands in a large database: no growth slack.
    s.shrink_to_fit();
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
        file_lists_left_out: 0,
        max_packages: MAX_OS_PACKAGES,
        packages_left_out: 0,
    };
    c.dpkg(diag);
    c.apk_and_rpm(diag);
    c.note_caps(diag);
    let (lang_packages, manifests) = lang::catalog(tree, diag);
    let mut inv = c.inv;
    let packages = Arc::make_mut(&mut inv.packages);
    // Moved, not copied, when there are no OS packages: a copy doubles a large lockfile's cost.
    if packages.is_empty() {
        *packages = lang_packages;
    } else {
        packages.reserve_exact(lang_packages.len());
        packages.extend(lang_packages);
    }
    inv.databases.extend(manifests);
    let packages = Arc::make_mut(&mut inv.packages);
    introduced::attribute(tree, packages);
    // In place: equal packages are identical, and a stable sort's buffer is half the list.
    packages.sort_unstable();
    packages.dedup();
    packages.shrink_to_fit();
    inv
}

/// The OS package databases of one tree, gathered into an inventory.
struct Cataloger<'a> {
    tree: &'a FileTree,
    ecosystem: String,
    inv: Inventory,
    /// Packages whose file lists did not fit under `MAX_MAPPED_FILES`.
    file_lists_left_out: u64,
    /// OS packages kept at most (`MAX_OS_PACKAGES`), and those left out beyond.
    max_packages: usize,
    packages_left_out: u64,
}

/// OS packages kept per image, at most: the largest real distributions install tens of
/// thousands; a database of millions of tiny hostile records must not cost gigabytes.
const MAX_OS_PACKAGES: usize = 1_000_000;

/// Owners of mappable files (shared objects, executables) remembered per inventory, at most:
/// a real image has a few thousand; a hostile database must not cost memory per file.
const MAX_MAPPED_FILES: usize = 100_000;

impl Cataloger<'_> {
    /// Adds one database's packages (and their mappable files' owners).
    fn add(&mut self, kind: &str, path: &str, out: ParseOutcome, diag: &mut Diagnostics) {
        let room = self.max_packages.saturating_sub(self.inv.packages.len());
        Arc::make_mut(&mut self.inv.packages).reserve_exact(out.packages.len().min(room));
        for p in out.packages {
            self.add_package(kind, path, p);
        }
        self.finish_database(path, out.malformed, diag);
    }

    /// Room for as many packages as lines of `db` start with `field`: a list grown by doubling
    /// would hold up to twice its size while it moves.
    fn reserve_for(&mut self, db: &[u8], field: &[u8]) {
        let mut line_start = vec![b'\n'];
        line_start.extend_from_slice(field);
        let n = memchr::memmem::find_iter(db, &line_start).count() + usize::from(db.starts_with(field));
        // Lines of the field need not be packages: never more than the cap allows.
        let room = self.max_packages.saturating_sub(self.inv.packages.len());
        Arc::make_mut(&mut self.inv.packages).reserve_exact(n.min(room));
    }

    /// Counts what the caps left out.
    fn note_caps(&self, diag: &mut Diagnostics) {
        if self.file_lists_left_out > 0 {
            let why = format!(
                "{} packages' file lists left out: over {MAX_MAPPED_FILES} mappable files (their use in processes is unknown)",
                self.file_lists_left_out
            );
            diag.skip("mapped_files_cap", "package file lists", why);
        }
        if self.packages_left_out > 0 {
            let why = format!(
                "{} packages left out: over {} OS packages",
                self.packages_left_out, self.max_packages
            );
            diag.skip("package_count_cap", "package databases", why);
        }
    }

    /// Notes a database read (its malformed entries counted).
    fn finish_database(&mut self, path: &str, malformed: u64, diag: &mut Diagnostics) {
        if malformed > 0 {
            diag.skip(
                "malformed_package_entry",
                path,
                format!("{malformed} entries could not be parsed"),
            );
        }
        self.inv.databases.push(path.to_string());
    }

    /// Adds one package, and the owner of each of its mappable files while there is room.
    fn add_package(&mut self, kind: &str, path: &str, p: RawPackage) {
        if self.inv.packages.len() >= self.max_packages {
            self.packages_left_out += 1;
            return;
        }
        if let Some(files) = &p.files {
            self.own_files(&p.name, files);
        }
        let inv = &mut self.inv;
        Arc::make_mut(&mut inv.packages).push(Package {
            ecosystem: self.ecosystem.as_str().into(),
            purl: purl(inv.os.as_ref(), kind, &p).into(),
            name: p.name.into(),
            version: p.version.into(),
            source_name: p.source_name.into(),
            source_version: p.source_version.into(),
            path: path.into(),
            arch: p.arch.into(),
            layer: self.tree.origin(path).map(Arc::from),
            introduced_layer: None,
        });
    }

    /// Records `name` as the owner of its mappable files. Past `MAX_MAPPED_FILES` a package's
    /// list is left out whole (its files' use is then unknown, never wrongly "not loaded").
    fn own_files(&mut self, name: &str, files: &[String]) {
        let inv = &mut self.inv;
        let mappable: Vec<&String> = files.iter().filter(|f| mappable(f)).collect();
        if inv.mapped_files.len() + mappable.len() > MAX_MAPPED_FILES {
            self.file_lists_left_out += 1;
            return;
        }
        inv.with_file_lists.insert(name.to_string());
        let owners = Arc::make_mut(&mut inv.mapped_files);
        for f in mappable {
            owners.insert(mapped_key(f).to_string(), name.to_string());
        }
    }

    /// dpkg's status file (with its `info/*.list` file lists) and distroless `status.d`;
    /// without either, a chiseled image's manifest.
    fn dpkg(&mut self, diag: &mut Diagnostics) {
        let tree = self.tree;
        let before = self.inv.databases.len();
        self.dpkg_databases(diag);
        if self.inv.databases.len() == before {
            if let Some(b) = read_or_note(tree, chisel::PATH, diag) {
                match chisel::parse_manifest(b) {
                    Ok(out) => self.add("deb", chisel::PATH, out, diag),
                    Err(e) => diag.skip("corrupt_package_db", chisel::PATH, e.0),
                }
            }
        }
    }

    fn dpkg_databases(&mut self, diag: &mut Diagnostics) {
        let tree = self.tree;
        if let Some(b) = read_or_note(tree, DPKG_STATUS, diag) {
            self.reserve_for(b, b"Package:");
            // File lists from info/<name>[:<arch>].list, where the image kept them.
            let out = dpkg::each_status(b, true, &mut |mut p| {
                let with_arch = format!("{DPKG_INFO}/{}:{}.list", p.name, p.arch);
                let plain = format!("{DPKG_INFO}/{}.list", p.name);
                let list = [with_arch, plain]
                    .into_iter()
                    .find_map(|f| tree.read(&f).ok().flatten());
                p.files = list.map(dpkg::parse_list);
                self.add_package("deb", DPKG_STATUS, p);
            });
            self.finish_database(DPKG_STATUS, out.malformed, diag);
        }
        if let Ok(files) = tree.list_files(DPKG_STATUS_D) {
            for (name, b) in &files {
                if name.ends_with(".md5sums") {
                    continue;
                }
                let path = format!("{DPKG_STATUS_D}/{name}");
                let mut out = dpkg::parse_status(b, false);
                // distroless keeps each package's md5sums beside its stanza: its file list.
                let sums = format!("{name}.md5sums");
                if let Some((_, sums)) = files.iter().find(|(n, _)| *n == sums) {
                    for p in &mut out.packages {
                        p.files = Some(dpkg::parse_md5sums(sums));
                    }
                }
                self.add("deb", &path, out, diag);
            }
        }
        // One build-rule version of 2024 wrote a directory per package
        // (`status.d/<name>/control`): no scanner reads it, and an image of it must not look
        // like one without packages.
        let nested = tree.subdirectories(DPKG_STATUS_D);
        if !nested.is_empty() {
            diag.skip(
                "unsupported_package_db",
                DPKG_STATUS_D,
                format!(
                    "{} packages as directories (status.d/<name>/, e.g. {}/): this layout is not read",
                    nested.len(),
                    nested[0]
                ),
            );
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
                self.reserve_for(b, b"P:");
                let malformed = apk::each_installed(b, &mut |p| self.add_package("apk", path, p));
                self.finish_database(path, malformed, diag);
            }
        }
        let mut rpm_db_read = false;
        for path in RPM_DBS {
            if !first_time(path) {
                continue;
            }
            if let Some(b) = read_or_note(tree, path, diag) {
                match rpm::parse_any(b) {
                    Ok(out) => {
                        rpm_db_read = true;
                        self.add("rpm", path, out, diag);
                    }
                    Err(e) => diag.skip("corrupt_package_db", path, e.0),
                }
            }
        }
        // The distroless manifest lists what an rpm database would: read only without one.
        if !rpm_db_read && first_time(RPM_MANIFEST) {
            if let Some(b) = read_or_note(tree, RPM_MANIFEST, diag) {
                self.add("rpm", RPM_MANIFEST, rpm::manifest::parse_manifest(b), diag);
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

    /// A report made from a cached inventory holds the same package list, not a copy: an
    /// agent keeps one list per image (issue 31); changing one copy-on-writes the other.
    #[test]
    fn a_report_shares_its_inventorys_packages() {
        let mut tree = crate::layer::tree::FileTree::new();
        tree.insert_file(
            "var/lib/dpkg/status",
            b"Package: bash\nStatus: install ok installed\nVersion: 5.2.15-2+b7\nArchitecture: amd64\n\n"
                .to_vec(),
        );
        let inv = catalog(&tree, &mut Diagnostics::default());
        assert_eq!(inv.packages.len(), 1, "{inv:?}");
        let report = crate::report::Report::new("t", inv.without_file_owners(), vec![], vec![], 0);
        assert!(Arc::ptr_eq(&report.packages, &inv.packages));
        let mut changed = inv.clone();
        Arc::make_mut(&mut changed.packages).clear();
        assert_eq!(report.packages.len(), 1);
    }

    #[test]
    fn wanted_paths() {
        assert!(wants("var/lib/dpkg/status"));
        assert!(wants("var/lib/dpkg/status.d/base-files"));
        assert!(
            wants("var/lib/dpkg/status.d/a/control"),
            "kept to be named unread"
        );
        assert!(!wants("var/lib/dpkg/status.d/a/b/c"));
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
        assert!(wants_os_dir("var/lib/dpkg/status.d/x") && !wants_os_dir("var/lib/dpkg/status.d/x/y"));
        assert!(!wants_os_dir("usr/bin") && !wants_os_dir("et"));
        assert!(wants("app/node_modules/ms/package.json") && !wants_os("app/node_modules/ms/package.json"));
        assert!(wants_dir("app/node_modules") && !wants_dir("proc/1"));
    }

    /// Past the package cap, packages are counted, not kept; a reservation never passes it.
    #[test]
    fn the_os_package_cap_counts_what_it_leaves_out() {
        let mut t = FileTree::new();
        t.insert_file("etc/os-release", b"ID=alpine\nVERSION_ID=3.20.3\n".to_vec());
        let db: String = (0..10).map(|i| format!("P:p{i}\nV:1.0-r0\n\n")).collect();
        t.insert_file("lib/apk/db/installed", db.into_bytes());
        let mut c = Cataloger {
            tree: &t,
            ecosystem: "Alpine:v3.20".into(),
            inv: Inventory::default(),
            file_lists_left_out: 0,
            max_packages: 4,
            packages_left_out: 0,
        };
        let mut diag = Diagnostics::default();
        c.apk_and_rpm(&mut diag);
        c.note_caps(&mut diag);
        assert_eq!(c.inv.packages.len(), 4);
        assert!(c.inv.packages.capacity() <= 4);
        assert_eq!(c.packages_left_out, 6);
        let notes = format!("{:?}", diag.notes);
        assert!(
            notes.contains("package_count_cap") && notes.contains("6 packages left out"),
            "{notes}"
        );
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

    /// Distroless's layout: a stanza per file with no `Status:` line, its md5sums beside it
    /// (the package's file list); a directory per package is named unread, never empty.
    #[test]
    fn distroless_status_d_with_md5sums_and_the_unread_directory_layout() {
        let mut t = FileTree::new();
        t.insert_file("etc/os-release", b"ID=debian\nVERSION_ID=\"12\"\n".to_vec());
        t.insert_file(
            "var/lib/dpkg/status.d/libssl3",
            b"Package: libssl3\nVersion: 3.0.15-1~deb12u1\nArchitecture: amd64\nSource: openssl\n".to_vec(),
        );
        t.insert_file(
            "var/lib/dpkg/status.d/libssl3.md5sums",
            b"0123456789abcdef0123456789abcdef  usr/lib/x86_64-linux-gnu/libssl.so.3\n".to_vec(),
        );
        let mut d = Diagnostics::default();
        let inv = catalog(&t, &mut d);
        assert_eq!(inv.packages.len(), 1, "{:?}", inv.packages);
        assert_eq!(&*inv.packages[0].source_name, "openssl");
        assert!(inv.with_file_lists.contains("libssl3"));
        assert_eq!(
            inv.mapped_files
                .get(mapped_key("/usr/lib/x86_64-linux-gnu/libssl.so.3"))
                .map(String::as_str),
            Some("libssl3")
        );
        assert!(d.notes.is_empty(), "{:?}", d.notes);

        let mut t = FileTree::new();
        t.insert_file("etc/os-release", b"ID=debian\nVERSION_ID=\"12\"\n".to_vec());
        for name in ["base-files", "libc6"] {
            t.insert_file(
                &format!("var/lib/dpkg/status.d/{name}/control"),
                format!("Package: {name}\nVersion: 1\nArchitecture: amd64\n").into_bytes(),
            );
        }
        let mut d = Diagnostics::default();
        let inv = catalog(&t, &mut d);
        assert!(inv.packages.is_empty());
        assert_eq!(d.count("unsupported_package_db"), 1, "{:?}", d.notes);
        let notes = format!("{:?}", d.notes);
        assert!(
            notes.contains("2 packages as directories") && notes.contains("base-files/"),
            "{notes}"
        );
    }
}
