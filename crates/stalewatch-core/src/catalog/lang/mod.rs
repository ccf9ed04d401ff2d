//! Language package catalogers: packages that applications bring in, found by file name
//! anywhere in the tree (unlike OS databases, which live at fixed paths). Each parser is pure
//! (bytes in, packages out), bounded by the tree's file-size cap, and records the file it read
//! the package from, so a user can find it.

pub mod auditable;
pub mod cargo;
pub mod composer;
pub mod dotnet;
pub mod elf;
pub mod gem;
pub mod golang;
pub mod java;
pub mod npm;
pub mod python;

use crate::layer::{Diagnostics, FileTree};
use crate::package::{purl_encode, Package};

/// A package as a language manifest lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LangPackage {
    pub name: String,
    pub version: String,
}

/// The manifests a language cataloger reads, by the shape of their path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Manifest {
    CargoLock,
    PythonMetadata,
    NpmPackageJson,
    NpmLock,
    ComposerInstalled,
    Gemspec,
    DotnetDeps,
    /// A Go executable's build information (a summary node, see `golang`).
    GoBinary,
    /// A Rust executable's cargo-auditable dependencies (a summary node, see `auditable`).
    RustBinary,
    /// A Java archive's packages (a summary node, see `java`).
    JavaArchive,
}

impl Manifest {
    /// The OSV ecosystem of what this manifest lists.
    pub fn ecosystem(self) -> &'static str {
        match self {
            Manifest::CargoLock => "crates.io",
            Manifest::PythonMetadata => "PyPI",
            Manifest::NpmPackageJson | Manifest::NpmLock => "npm",
            Manifest::ComposerInstalled => "Packagist",
            Manifest::Gemspec => "RubyGems",
            Manifest::DotnetDeps => "NuGet",
            Manifest::GoBinary => "Go",
            Manifest::RustBinary => "crates.io",
            Manifest::JavaArchive => "Maven",
        }
    }

    /// The purl type of this manifest's packages.
    fn purl_type(self) -> &'static str {
        match self {
            Manifest::CargoLock => "cargo",
            Manifest::PythonMetadata => "pypi",
            Manifest::NpmPackageJson | Manifest::NpmLock => "npm",
            Manifest::ComposerInstalled => "composer",
            Manifest::Gemspec => "gem",
            Manifest::DotnetDeps => "nuget",
            Manifest::GoBinary => "golang",
            Manifest::RustBinary => "cargo",
            Manifest::JavaArchive => "maven",
        }
    }
}

/// Which language manifest a (normalised) path is, if any.
pub fn manifest(path: &str) -> Option<Manifest> {
    if in_data_dir(path) {
        return None;
    }
    let (dir, name) = path.rsplit_once('/').unwrap_or(("", path));
    let parent = dir.rsplit('/').next().unwrap_or(dir);
    match name {
        "Cargo.lock" => return Some(Manifest::CargoLock),
        "METADATA" if parent.ends_with(".dist-info") => return Some(Manifest::PythonMetadata),
        "PKG-INFO" if parent.ends_with(".egg-info") => return Some(Manifest::PythonMetadata),
        "package.json" if npm::is_installed_package_dir(dir) => return Some(Manifest::NpmPackageJson),
        "package-lock.json" => return Some(Manifest::NpmLock),
        "installed.json" if dir.ends_with("vendor/composer") => return Some(Manifest::ComposerInstalled),
        _ => {}
    }
    if name.ends_with(".egg-info") && !name.starts_with('.') {
        // A single-file egg-info: PKG-INFO content under the directory's name.
        return Some(Manifest::PythonMetadata);
    }
    if name.ends_with(".gemspec") && parent == "specifications" {
        return Some(Manifest::Gemspec);
    }
    if name.ends_with(".deps.json") {
        return Some(Manifest::DotnetDeps);
    }
    None
}

/// What the layer readers run on files no cataloger wants by path: Java archives (by name)
/// and Go and cargo-auditable executables' build information are kept as small summaries.
pub const BINARIES: crate::layer::tree::BinaryProbe<'static> = crate::layer::tree::BinaryProbe {
    worth: worth_a_look,
    summarize: &summarize_file,
};

/// Whether a file may hold a summary, from its path, size and mode alone: a Java archive by
/// name, else an executable (any execute bit, as trivy's Go binary analyzer requires; mode 0
/// is unknown and looked at) of a size a Go or Rust executable has. Everything else — shared
/// libraries, data, scripts under 64 KiB — is never opened.
pub fn worth_a_look(path: &str, size: u64, mode: u32) -> bool {
    if in_data_dir(path) {
        return false;
    }
    if java::is_archive(path) {
        return true;
    }
    let executable = mode == 0 || mode & 0o111 != 0;
    executable && (elf::MIN_BINARY_BYTES..=elf::MAX_BINARY_BYTES).contains(&size)
}

/// Java archives by name, then Go executables by content (size first: most files cost nothing).
fn summarize_file(
    path: &str,
    size: u64,
    src: &mut dyn crate::layer::EntrySource,
) -> Result<Option<Vec<u8>>, crate::layer::LayerError> {
    if java::is_archive(path) {
        // Over the cap it stops reading and says so in the summary.
        return java::summarize(path, &mut |max| src.read_data(max));
    }
    elf::summarize(size, src)
}

/// Directories of documentation and data that distributions never install software into:
/// a manifest there is an example or a copy (a `package.json` in `usr/share/doc/*/examples`),
/// not an installed package. Unpacked roots are not walked into them and layers' files there
/// are not cataloged, so an image and its unpacked root give the same packages.
pub const DATA_DIRS: &[&str] = &[
    "usr/share/doc",
    "usr/share/man",
    "usr/share/info",
    "usr/share/locale",
    "usr/share/i18n",
    "usr/share/zoneinfo",
    "usr/share/common-licenses",
    "usr/share/terminfo",
    "usr/lib/terminfo",
    "var/cache/apt",
    "var/cache/debconf",
    // Perl's module trees: no cataloger reads Perl modules (OSV has no CPAN ecosystem).
    "usr/share/perl",
    "usr/share/perl5",
    "usr/lib/*/perl",
    "usr/lib/*/perl5",
    "usr/lib/*/perl-base",
];

/// Whether a path is one of `DATA_DIRS` or below one (`*` stands for one path segment: the
/// multiarch triplet).
pub fn in_data_dir(path: &str) -> bool {
    DATA_DIRS.iter().any(|d| {
        let mut segs = path.split('/');
        d.split('/')
            .all(|want| segs.next().is_some_and(|got| want == "*" || want == got))
    })
}

/// Whether a path is a language manifest the catalogers read.
pub fn wants(path: &str) -> bool {
    manifest(path).is_some()
}

/// Parses one manifest. `Err` is a clear reason for a counted skip.
pub fn parse(kind: Manifest, bytes: &[u8]) -> Result<Vec<LangPackage>, String> {
    match kind {
        Manifest::CargoLock => cargo::parse_lock(bytes),
        Manifest::PythonMetadata => python::parse_metadata(bytes).map(|p| vec![p]),
        Manifest::NpmPackageJson => npm::parse_package_json(bytes).map(|p| p.into_iter().collect()),
        Manifest::NpmLock => npm::parse_lock(bytes),
        Manifest::ComposerInstalled => composer::parse_installed(bytes),
        Manifest::Gemspec => gem::parse_gemspec(bytes),
        Manifest::DotnetDeps => dotnet::parse_deps(bytes),
        Manifest::GoBinary => golang::parse_summary(bytes),
        Manifest::RustBinary => auditable::parse_summary(bytes),
        Manifest::JavaArchive => match java::parse_summary(bytes) {
            (_, Some(e)) => Err(e),
            (found, None) => Ok(found.into_iter().map(|(p, _)| p).collect()),
        },
    }
}

/// A package's name as its ecosystem compares names: PyPI per PEP 503 (case and runs of
/// `-`, `_`, `.` do not count); every other ecosystem as written.
pub fn normalize_name(ecosystem: &str, name: &str) -> String {
    if ecosystem == "PyPI" {
        python::normalize(name)
    } else {
        name.to_string()
    }
}

/// The purl of a language package (purl spec: npm scopes and Composer vendors are namespaces;
/// Maven groups too).
pub fn purl(kind: Manifest, p: &LangPackage) -> String {
    let ty = kind.purl_type();
    let (ns, name) = match kind {
        Manifest::NpmPackageJson | Manifest::NpmLock => match p.name.split_once('/') {
            Some((scope, n)) if scope.starts_with('@') => (Some(scope), n),
            _ => (None, p.name.as_str()),
        },
        Manifest::ComposerInstalled => match p.name.split_once('/') {
            Some((vendor, n)) => (Some(vendor), n),
            None => (None, p.name.as_str()),
        },
        // Maven: `group:artifact`.
        Manifest::JavaArchive => match p.name.split_once(':') {
            Some((g, a)) => (Some(g), a),
            None => (None, p.name.as_str()),
        },
        // A module path: its last element is the name, the rest the namespace.
        Manifest::GoBinary => match p.name.rsplit_once('/') {
            Some((ns, n)) => (Some(ns), n),
            None => (None, p.name.as_str()),
        },
        _ => (None, p.name.as_str()),
    };
    let name = if kind == Manifest::PythonMetadata {
        python::normalize(name)
    } else {
        name.to_string()
    };
    // Namespace segments are encoded one by one: their `/` stay.
    let ns = ns.map(|ns| ns.split('/').map(purl_encode).collect::<Vec<_>>().join("/"));
    match ns {
        Some(ns) => format!("pkg:{ty}/{ns}/{}@{}", purl_encode(&name), purl_encode(&p.version)),
        None => format!("pkg:{ty}/{}@{}", purl_encode(&name), purl_encode(&p.version)),
    }
}

/// The largest manifest parsed: real ones are far smaller (a big monorepo's lockfile is a few
/// MiB); a larger one is skipped, counted, so a hostile file costs no parse time.
pub const MAX_MANIFEST_BYTES: usize = 32 << 20;

/// Catalogs every language manifest in the tree. Lockfiles next to an installed
/// `node_modules` are left out: the installed packages say what is there.
pub fn catalog(tree: &FileTree, diag: &mut Diagnostics) -> (Vec<Package>, Vec<String>) {
    let mut packages = Vec::new();
    let mut manifests = Vec::new();
    for (path, bytes) in tree.files() {
        let kind = match manifest(path) {
            Some(k) => k,
            None if bytes.starts_with(golang::MARKER) => Manifest::GoBinary,
            None if bytes.starts_with(java::MARKER) => Manifest::JavaArchive,
            None if bytes.starts_with(auditable::MARKER) => Manifest::RustBinary,
            None => continue,
        };
        if kind == Manifest::NpmLock {
            let dir = path.rsplit_once('/').map_or("", |(d, _)| d);
            let modules = if dir.is_empty() {
                "node_modules".to_string()
            } else {
                format!("{dir}/node_modules")
            };
            if tree.has_entries_under(&modules) {
                continue;
            }
        }
        if bytes.len() > MAX_MANIFEST_BYTES {
            diag.skip(
                "manifest_too_large",
                path,
                format!(
                    "{} bytes exceeds the {MAX_MANIFEST_BYTES} byte manifest cap",
                    bytes.len()
                ),
            );
            continue;
        }
        // (package, the archive inside this file it came from: Java's nested jars).
        // The packages, and for Java the archive inside this file each came from (nested
        // jars); other manifests have no inner paths (no per-package copy of them is made).
        let (found, inners): (Vec<LangPackage>, Vec<String>) = if kind == Manifest::JavaArchive {
            let (found, error) = java::parse_summary(bytes);
            if let Some(e) = error {
                diag.skip("malformed_manifest", path, e);
            }
            found.into_iter().unzip()
        } else {
            match parse(kind, bytes) {
                Ok(found) => (found, Vec::new()),
                Err(reason) => {
                    diag.skip("malformed_manifest", path, reason);
                    continue;
                }
            }
        };
        if found.is_empty() {
            continue;
        }
        manifests.push(path.to_string());
        packages.reserve_exact(found.len());
        let located = found
            .into_iter()
            .zip(inners.into_iter().chain(std::iter::repeat(String::new())));
        for (p, inner) in located {
            packages.push(Package {
                ecosystem: kind.ecosystem().into(),
                purl: purl(kind, &p).into(),
                source_name: normalize_name(kind.ecosystem(), &p.name).into(),
                source_version: p.version.as_str().into(),
                name: p.name.into(),
                version: p.version.into(),
                path: if inner.is_empty() {
                    path.into()
                } else {
                    format!("{path}!/{inner}").into()
                },
                arch: Default::default(),
                layer: tree.origin(path).map(std::sync::Arc::from),
                introduced_layer: None,
            });
        }
    }
    (packages, manifests)
}

/// Sorted by (name, version), without repeats: what every parser returns.
fn sorted(mut v: Vec<LangPackage>) -> Vec<LangPackage> {
    v.sort_unstable_by(|a, b| (&a.name, &a.version).cmp(&(&b.name, &b.version)));
    v.dedup();
    v
}

/// The text of a manifest, or a clear reason: manifests are UTF-8.
fn utf8(bytes: &[u8]) -> Result<&str, String> {
    std::str::from_utf8(bytes).map_err(|e| format!("not UTF-8: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifests_by_path() {
        use Manifest::*;
        for (p, want) in [
            ("app/Cargo.lock", Some(CargoLock)),
            (
                "usr/lib/python3/dist-packages/requests-2.31.0.dist-info/METADATA",
                Some(PythonMetadata),
            ),
            (
                "usr/lib/python3/dist-packages/six-1.16.0.egg-info",
                Some(PythonMetadata),
            ),
            (
                "usr/lib/python3/dist-packages/x.egg-info/PKG-INFO",
                Some(PythonMetadata),
            ),
            ("app/node_modules/lodash/package.json", Some(NpmPackageJson)),
            ("app/node_modules/@babel/core/package.json", Some(NpmPackageJson)),
            (
                "app/node_modules/a/node_modules/b/package.json",
                Some(NpmPackageJson),
            ),
            ("app/node_modules/lodash/fp/package.json", None),
            ("app/node_modules/@babel/package.json", None),
            ("app/package.json", None),
            ("app/package-lock.json", Some(NpmLock)),
            ("var/www/vendor/composer/installed.json", Some(ComposerInstalled)),
            (
                "usr/lib/ruby/gems/3.1.0/specifications/rake-13.0.6.gemspec",
                Some(Gemspec),
            ),
            ("app/App.deps.json", Some(DotnetDeps)),
            ("usr/bin/python3", None),
        ] {
            assert_eq!(manifest(p), want, "{p}");
        }
    }

    #[test]
    fn manifests_nested_100k_deep_are_errors_not_stack_overflows() {
        const DEPTH: usize = 100_000;
        let nested = |open: &str, close: &str, inner: &str| {
            [open.repeat(DEPTH), inner.into(), close.repeat(DEPTH)]
                .concat()
                .into_bytes()
        };
        let cases = [
            (Manifest::DotnetDeps, nested("{\"targets\":", "}", "{}")),
            (Manifest::DotnetDeps, nested("[", "]", "")),
            (Manifest::NpmLock, nested("{\"packages\":", "}", "{}")),
            (Manifest::NpmPackageJson, nested("{\"a\":", "}", "1")),
            (Manifest::ComposerInstalled, nested("[", "]", "")),
            (
                Manifest::CargoLock,
                nested("[[package]]\nname = \"a\"\nversion = ", "]", "1"),
            ),
            (
                Manifest::CargoLock,
                [b"x = ".as_slice(), &nested("[", "]", "")].concat(),
            ),
            (
                Manifest::CargoLock,
                [b"x = ".as_slice(), &nested("{a=", "}", "1")].concat(),
            ),
        ];
        for (kind, bytes) in cases {
            // Run on a small stack: a recursive descent without a depth limit overflows it.
            let outcome = std::thread::Builder::new()
                .stack_size(256 << 10)
                .spawn(move || parse(kind, &bytes).map(|p| p.len()))
                .unwrap()
                .join()
                .expect("the parser returned");
            assert!(outcome.is_err() || outcome == Ok(0), "{kind:?}: {outcome:?}");
        }
    }

    #[test]
    fn purls_follow_the_spec() {
        let p = |n: &str, v: &str| LangPackage {
            name: n.into(),
            version: v.into(),
        };
        assert_eq!(
            purl(Manifest::NpmPackageJson, &p("@babel/core", "7.24.0")),
            "pkg:npm/%40babel/core@7.24.0"
        );
        assert_eq!(
            purl(Manifest::PythonMetadata, &p("Django_REST.framework", "3.15.1")),
            "pkg:pypi/django-rest-framework@3.15.1"
        );
        assert_eq!(
            purl(Manifest::ComposerInstalled, &p("symfony/http-kernel", "v6.4.1")),
            "pkg:composer/symfony/http-kernel@v6.4.1"
        );
        assert_eq!(
            purl(Manifest::CargoLock, &p("serde", "1.0.200")),
            "pkg:cargo/serde@1.0.200"
        );
        assert_eq!(
            purl(Manifest::GoBinary, &p("golang.org/x/text", "v0.3.2")),
            "pkg:golang/golang.org/x/text@v0.3.2"
        );
        assert_eq!(
            purl(Manifest::GoBinary, &p("stdlib", "1.19.8")),
            "pkg:golang/stdlib@1.19.8"
        );
    }

    #[test]
    fn a_tree_with_an_installed_node_modules_ignores_its_lockfile() {
        let mut t = FileTree::new();
        t.insert_file(
            "app/package-lock.json",
            br#"{"lockfileVersion":3,"packages":{"":{"name":"app"},"node_modules/ms":{"version":"2.1.3"}}}"#
                .to_vec(),
        );
        t.insert_file(
            "app/node_modules/ms/package.json",
            br#"{"name":"ms","version":"2.1.3"}"#.to_vec(),
        );
        t.insert_file(
            "srv/package-lock.json",
            br#"{"lockfileVersion":3,"packages":{"node_modules/debug":{"version":"4.3.4"}}}"#.to_vec(),
        );
        t.insert_file("x/Cargo.lock", b"not toml [[[".to_vec());
        let mut d = Diagnostics::default();
        let (pkgs, manifests) = catalog(&t, &mut d);
        let got: Vec<_> = pkgs.iter().map(|p| (p.path.as_str(), p.name.as_str())).collect();
        assert_eq!(
            got,
            vec![
                ("app/node_modules/ms/package.json", "ms"),
                ("srv/package-lock.json", "debug")
            ]
        );
        assert_eq!(manifests.len(), 2);
        assert_eq!(d.count("malformed_manifest"), 1);
    }
}
