//! Every parser of untrusted input has a fuzz target. A core module parses untrusted bytes
//! when it exports a reader by one of the names below (or is one of the stream readers
//! listed); a target says what it covers in its first doc lines (`//! covers: a::b, c`), and
//! every such module must be named there. The version target must hold every scheme.
//! fuzz/Cargo.toml declares exactly the files in fuzz/fuzz_targets.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
/// Function names that read untrusted bytes or text.
const READERS: [&str; 8] = [
    "pub fn parse",
    "pub fn decode(",
    "pub fn summarize(",
    "pub fn package_blobs(",
    "pub fn from_osv_zip(",
    "pub fn add_record_json(",
    "pub fn open(",
    "pub fn dep_section(",
];
/// Stream readers entered through a type rather than a function named as above.
const STREAM_READERS: [&str; 3] = ["layer::tar", "layer::tree", "layer::path"];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// `catalog/lang/npm.rs` is `catalog::lang::npm`; `catalog/rpm/mod.rs` is `catalog::rpm`.
fn module_path(src: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(src).unwrap().with_extension("");
    let mut parts: Vec<String> = rel.iter().map(|c| c.to_string_lossy().into_owned()).collect();
    if parts.last().is_some_and(|l| l == "mod") {
        parts.pop();
    }
    parts.join("::")
}

/// The code before the file's tests: a reader used only by tests does not count.
fn non_test_code(text: &str) -> &str {
    text.split("#[cfg(test)]").next().unwrap_or(text)
}

fn parser_modules() -> BTreeSet<String> {
    let src = Path::new(ROOT).join("crates/stalewatch-core/src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut out: BTreeSet<String> = STREAM_READERS.iter().map(|s| s.to_string()).collect();
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        if READERS.iter().any(|r| non_test_code(&text).contains(r)) {
            out.insert(module_path(&src, &f));
        }
    }
    out
}

/// Target name → the module paths its `covers:` doc lines name.
fn targets() -> Vec<(String, BTreeSet<String>)> {
    let dir = Path::new(ROOT).join("fuzz/fuzz_targets");
    let mut files = Vec::new();
    rust_files(&dir, &mut files);
    files.sort();
    files
        .iter()
        .map(|f| {
            let text = std::fs::read_to_string(f).unwrap();
            let doc: String = text
                .lines()
                .take_while(|l| l.starts_with("//!"))
                .map(|l| l.trim_start_matches("//!"))
                .collect::<Vec<_>>()
                .join(" ");
            let covers = doc
                .split_once("covers:")
                .unwrap_or_else(|| panic!("{} has no `//! covers:` line", f.display()))
                .1;
            // Module paths are the words made of identifiers and `::`, up to the first `(`.
            let names = covers
                .split(['(', ')'])
                .step_by(2)
                .flat_map(|s| s.split([',', ' ']))
                .map(str::trim)
                .filter(|w| {
                    !w.is_empty()
                        && w.chars()
                            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
                })
                .map(str::to_string)
                .collect();
            (f.file_stem().unwrap().to_string_lossy().into_owned(), names)
        })
        .collect()
}

#[test]
fn every_parser_module_has_a_fuzz_target() {
    let covered: BTreeSet<String> = targets().into_iter().flat_map(|(_, c)| c).collect();
    let parsers = parser_modules();
    // The detection itself must see the parsers we know of, or it proves nothing.
    for known in [
        "catalog::dpkg",
        "catalog::rpm::bdb",
        "advisory::file",
        "triage::vex",
        "layer::cache_entry",
    ] {
        assert!(parsers.contains(known), "the reader detection misses {known}");
    }
    // The version target compares with every scheme (checked below), so it covers version::*.
    let covers = |m: &str| covered.contains(m) || (m.starts_with("version") && covered.contains("version"));
    let missing: Vec<&String> = parsers.iter().filter(|m| !covers(m)).collect();
    assert!(
        missing.is_empty(),
        "parser modules without a fuzz target (fuzz/fuzz_targets, `//! covers:`): {missing:?}"
    );
}

#[test]
fn the_version_target_holds_every_scheme() {
    let version = Path::new(ROOT).join("crates/stalewatch-core/src/version");
    let target = std::fs::read_to_string(Path::new(ROOT).join("fuzz/fuzz_targets/version_order.rs")).unwrap();
    assert!(
        target.contains("for s in Scheme::ALL"),
        "the version_order target must iterate Scheme::ALL"
    );
    // Scheme::ALL as declared, against the scheme modules (one file per scheme).
    let module = std::fs::read_to_string(version.join("mod.rs")).unwrap();
    let all = module
        .split_once("pub const ALL")
        .and_then(|(_, rest)| rest.split_once("];"))
        .expect("Scheme::ALL in version/mod.rs")
        .0;
    let named: BTreeSet<String> = all
        .split("Scheme::")
        .skip(1)
        .map(|s| {
            s.chars()
                .take_while(char::is_ascii_alphanumeric)
                .collect::<String>()
                .to_lowercase()
        })
        .collect();
    let mut files = Vec::new();
    rust_files(&version, &mut files);
    let schemes: BTreeSet<String> = files
        .iter()
        .map(|f| f.file_stem().unwrap().to_string_lossy().into_owned())
        .filter(|s| s != "mod")
        .collect();
    assert!(schemes.len() >= 9, "version schemes: {schemes:?}");
    assert_eq!(named, schemes, "Scheme::ALL vs the scheme modules of version/");
}

#[test]
fn the_fuzz_manifest_declares_every_target_file() {
    let manifest = std::fs::read_to_string(Path::new(ROOT).join("fuzz/Cargo.toml")).unwrap();
    let declared: BTreeSet<String> = manifest
        .lines()
        .filter_map(|l| l.strip_prefix("path = \"fuzz_targets/"))
        .map(|l| l.trim_end_matches(".rs\"").to_string())
        .collect();
    let files: BTreeSet<String> = targets().into_iter().map(|(t, _)| t).collect();
    assert_eq!(
        declared, files,
        "fuzz/Cargo.toml [[bin]] entries vs fuzz/fuzz_targets/*.rs"
    );
    assert!(files.len() >= 14, "only {} fuzz targets", files.len());
}
