//! Package-list parity with syft on one root holding pip, npm and cargo installs, a
//! stripped Go binary, Debian's jars and a fat jar nesting some: the same packages and versions (PyPI names compared per PEP 503, the
//! Go toolchain's version as OSV writes it). syft also lists the application's own project
//! (the root entry of a package-lock.json, a Cargo workspace member, a Go binary's main
//! module at `(devel)`, a fat jar with no metadata of its own): those are the scanned code itself, in no advisory feed, and
//! stalewatch leaves them out by design (docs/parity.md). The test names them exactly, so
//! any other difference fails.

mod common;

use common::lang::*;
use common::*;
use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

type Set = BTreeSet<(String, String, String)>;

/// A package's identity: PyPI names compare per PEP 503 (`Jinja2` is `jinja2`); the Go
/// toolchain's version as OSV writes it (`1.19.8`, syft says `go1.19.8`); others as written.
fn id(eco: &str, name: &str, version: &str) -> (String, String, String) {
    let normalized = stalewatch_core::catalog::lang::normalize_name(eco, name);
    let version = match (eco, name) {
        ("Go", "stdlib") => version.trim_start_matches("go"),
        _ => version,
    };
    (eco.to_string(), normalized, version.to_string())
}

fn syft_packages(root: &Path) -> Set {
    let out = Command::new("syft")
        .arg(format!("dir:{}", root.display()))
        .args(["-o", "json", "-q"])
        .env("SYFT_CHECK_FOR_APP_UPDATE", "false")
        .output()
        .expect("run syft");
    assert!(
        out.status.success(),
        "syft: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    doc["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            if a["type"] == "java-archive" {
                // Maven names are group:artifact: syft's purl carries both.
                let purl = a["purl"].as_str().unwrap();
                let coords = purl.trim_start_matches("pkg:maven/").split('@').next().unwrap();
                let (g, art) = coords.split_once('/').unwrap();
                return id("Maven", &format!("{g}:{art}"), a["version"].as_str().unwrap());
            }
            let eco = match a["type"].as_str().unwrap() {
                "npm" => "npm",
                "python" => "PyPI",
                "rust-crate" => "crates.io",
                "go-module" => "Go",
                other => panic!("unexpected syft type {other}"),
            };
            id(eco, a["name"].as_str().unwrap(), a["version"].as_str().unwrap())
        })
        .collect()
}

#[test]
fn package_lists_equal_syft_on_a_mixed_root() {
    for tool in ["syft", "pip", "npm", "cargo", "go"] {
        if !require(tool, "syft parity") {
            return;
        }
    }
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    pip_install(
        &root,
        &[
            "urllib3==1.26.4",
            "requests==2.31.0",
            "six==1.16.0",
            "Jinja2==3.1.2",
        ],
    );
    npm_install(&root, "srv/web", &["express@4.17.1", "@types/ms@0.7.34"]);
    cargo_lock(&root, "smallvec = \"=1.6.0\"\nchrono = \"=0.4.19\"\n");
    go_binary(tmp.path(), &root.join("usr/local/bin/svc"), true);
    // Debian's jars, and a fat jar nesting two of them.
    debian_jars(&root);
    fat_jar(&root);

    let db = tmp.path().join("db");
    empty_db(&db, &["npm", "PyPI", "crates.io", "Go", "Maven"]);
    let out = scan_json(&format!("rootfs:{}", root.display()), &db);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let ours: Set = r["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let s = |k: &str| p[k].as_str().unwrap();
            id(s("ecosystem"), s("name"), s("version"))
        })
        .collect();
    let theirs = syft_packages(&root);
    let projects: Set = [
        ("npm", "web", "1.0.0"),
        ("crates.io", "tool", "0.1.0"),
        ("Go", "example.com/svc", "(devel)"),
        // The fat jar itself: no Maven metadata, no version (syft makes a group of its
        // Main-Class).
        (
            "Maven",
            "org.springframework.boot.loader.JarLauncher:app",
            "UNKNOWN",
        ),
    ]
    .iter()
    .map(|(e, n, v)| (e.to_string(), n.to_string(), v.to_string()))
    .collect();
    let only_syft: Set = theirs.difference(&ours).cloned().collect();
    let only_ours: Set = ours.difference(&theirs).cloned().collect();
    assert_eq!(only_syft, projects, "syft lists packages stalewatch misses");
    assert!(
        only_ours.is_empty(),
        "stalewatch lists packages syft does not: {only_ours:?}"
    );
    assert!(ours.len() > 60, "{} packages only", ours.len());
}
