//! Matching parity with cargo-audit: the same Cargo.lock files (locks made by `cargo
//! generate-lockfile` with known-vulnerable versions pinned, and this project's own lock)
//! through `cargo-audit --no-fetch --db <shared RustSec db>` and through stalewatch against the
//! shared OSV crates.io export. Vulnerabilities must be equal, and cargo-audit's
//! unmaintained/unsound warnings must be stalewatch's informational advisories.

mod common;

use common::*;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

type Set = BTreeSet<(String, String, String)>;

/// (vulnerabilities, informational) as (id, crate, version or kind).
fn cargo_audit(lock: &Path) -> (Set, Set) {
    audit_json(&["--file".as_ref(), lock.as_os_str()])
}

/// `cargo-audit audit … <what>` (a `--file <lock>`, or `bin <binary>`) as (vulnerabilities,
/// informational).
fn audit_json(what: &[&std::ffi::OsStr]) -> (Set, Set) {
    let out = Command::new("cargo-audit")
        .args(["audit", "--no-fetch", "--no-yanked", "--json", "--db"])
        .arg(shared_data().join("rustsec-advisory-db"))
        .args(what)
        .output()
        .expect("run cargo-audit");
    // Exit 1 means "vulnerabilities found"; the JSON is on stdout either way.
    let r: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("cargo-audit JSON ({e}): {}", String::from_utf8_lossy(&out.stderr)));
    let s = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_string();
    let vulns = r["vulnerabilities"]["list"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            (
                s(&v["advisory"]["id"]),
                s(&v["package"]["name"]),
                s(&v["package"]["version"]),
            )
        })
        .collect();
    let mut info = BTreeSet::new();
    for kind in ["unmaintained", "unsound", "notice"] {
        for w in r["warnings"][kind].as_array().into_iter().flatten() {
            info.insert((
                s(&w["advisory"]["id"]),
                s(&w["package"]["name"]),
                kind.to_string(),
            ));
        }
    }
    (vulns, info)
}

fn stalewatch_findings(root: &Path, db: &Path) -> (Set, Set) {
    let out = scan_json(&format!("rootfs:{}", root.display()), db);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let s = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_string();
    let vulns = r["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| (s(&f["id"]), s(&f["package"]), s(&f["installed_version"])))
        .collect();
    let info = r["informational"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|f| (s(&f["id"]), s(&f["package"]), s(&f["informational"])))
        .collect();
    (vulns, info)
}

fn generated_lock(dir: &Path, deps: &str) -> PathBuf {
    std::fs::create_dir_all(dir.join("src")).unwrap();
    std::fs::write(
        dir.join("Cargo.toml"),
        format!(
            "[package]\nname = \"parity\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n[dependencies]\n{deps}"
        ),
    )
    .unwrap();
    std::fs::write(dir.join("src/main.rs"), "fn main() {}\n").unwrap();
    let out = Command::new("cargo")
        .arg("generate-lockfile")
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    dir.join("Cargo.lock")
}

#[test]
fn findings_equal_cargo_audit_on_real_lockfiles() {
    if !require("cargo-audit", "cargo-audit parity") || !require("cargo", "cargo-audit parity") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("db");
    shared_db(&db, &["crates.io"]);

    let locks = [
        generated_lock(
            &tmp.path().join("pinned"),
            "smallvec = \"=1.6.0\"\ntime = \"=0.1.43\"\nchrono = \"=0.4.19\"\nhyper = { version = \"=0.14.10\", features = [\"server\", \"http1\"] }\nyaml-rust = \"=0.4.5\"\natty = \"=0.2.14\"\n",
        ),
        generated_lock(&tmp.path().join("tokio"), "tokio = { version = \"=1.18.0\", features = [\"full\"] }\nregex = \"=1.5.4\"\n"),
        project().join("Cargo.lock"),
    ];
    let (mut vulnerable, mut informational) = (0, 0);
    for lock in &locks {
        let root = tmp.path().join(format!(
            "root-{}",
            lock.parent().unwrap().file_name().unwrap().to_string_lossy()
        ));
        std::fs::create_dir_all(root.join("app")).unwrap();
        std::fs::copy(lock, root.join("app/Cargo.lock")).unwrap();
        let (audit_vulns, audit_info) = cargo_audit(lock);
        let (ours, our_info) = stalewatch_findings(&root, &db);
        assert_eq!(ours, audit_vulns, "vulnerabilities of {}", lock.display());
        assert_eq!(
            our_info,
            audit_info,
            "informational advisories of {}",
            lock.display()
        );
        vulnerable += ours.len();
        informational += our_info.len();
    }
    // The pinned locks are vulnerable: the comparison is not between two empty sets.
    assert!(
        vulnerable >= 4,
        "only {vulnerable} vulnerabilities across the locks"
    );
    assert!(
        informational >= 3,
        "only {informational} informational advisories across the locks"
    );
}

#[test]
fn binaries_built_with_cargo_auditable_equal_cargo_audit_bin() {
    for tool in ["cargo-audit", "cargo-auditable", "strip"] {
        if !require(tool, "cargo-auditable parity") {
            return;
        }
    }
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    let bin = root.join("usr/local/bin/svc");
    common::lang::auditable_binary(
        tmp.path(),
        &bin,
        "smallvec = \"=1.6.0\"\nyaml-rust = \"=0.4.5\"\n",
    );
    let db = tmp.path().join("db");
    shared_db(&db, &["crates.io"]);
    let (_, packages) = common::lang::scan_packages(&root, &db);
    for path in ["usr/local/bin/svc", "usr/local/bin/svc-stripped"] {
        assert!(
            packages.contains(&("crates.io".into(), "smallvec".into(), "1.6.0".into(), path.into())),
            "smallvec not found in {path}: {packages:?}"
        );
    }
    for path in [bin.clone(), root.join("usr/local/bin/svc-stripped")] {
        let (audit_vulns, audit_info) = audit_json(&["bin".as_ref(), path.as_os_str()]);
        let single = tmp.path().join("single");
        let _ = std::fs::remove_dir_all(&single);
        std::fs::create_dir_all(single.join("bin")).unwrap();
        std::fs::copy(&path, single.join("bin/svc")).unwrap();
        let (ours, our_info) = stalewatch_findings(&single, &db);
        assert!(
            !audit_vulns.is_empty(),
            "cargo-audit found nothing in {}",
            path.display()
        );
        assert_eq!(ours, audit_vulns, "vulnerabilities of {}", path.display());
        assert_eq!(
            our_info,
            audit_info,
            "informational advisories of {}",
            path.display()
        );
    }
}
