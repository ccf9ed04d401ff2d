//! Ubuntu as Canonical writes it, as a contract: roots of 18.04, 22.04 and 24.04 whose dpkg
//! databases hold real packages at real versions from Canonical's records
//! (tests/support/ubuntu_root.py; dpkg-query reads them back) scan to exactly what an oracle
//! says from the same records with `dpkg --compare-versions` (tests/support/ubuntu_oracle.py):
//! source packages through `Source:`, `versions` lists, unfixed records affected and not
//! fixable, Ubuntu Pro streams applied per package (`+esm` versions judged by the Pro stream;
//! others told what only Pro would fix: `fix_requires: "ubuntu-pro"`).

mod common;

use common::*;
use std::path::Path;
use std::process::Command;

type Row = (String, String, Option<String>, Option<String>);

fn osv_zip() -> std::path::PathBuf {
    shared_data().join("osv/Ubuntu/all.zip")
}

fn python(script: &str, args: &[&str]) -> Vec<u8> {
    let out = Command::new("python3")
        .arg(project().join("tests/support").join(script))
        .args(args)
        .arg(osv_zip())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{script}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn rows(report: &serde_json::Value) -> Vec<Row> {
    let s = |v: &serde_json::Value| v.as_str().map(str::to_string);
    let mut v: Vec<Row> = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                s(&f["id"]).unwrap(),
                s(&f["package"]).unwrap(),
                s(&f["fixed_version"]),
                s(&f["fix_requires"]),
            )
        })
        .collect();
    v.sort();
    v
}

/// A root of `release` and the oracle's findings on it.
fn root_and_oracle(dir: &Path, release: &str) -> (std::path::PathBuf, Vec<Row>) {
    let root = dir.join(format!("ubuntu-{release}"));
    python("ubuntu_root.py", &[root.to_str().unwrap(), release]);
    // dpkg itself reads the database back.
    let listed = Command::new("dpkg-query")
        .arg(format!("--admindir={}", root.join("var/lib/dpkg").display()))
        .arg("-W")
        .output()
        .unwrap();
    assert!(listed.status.success());
    assert!(String::from_utf8_lossy(&listed.stdout).lines().count() >= 20);
    let ecosystem = format!("Ubuntu:{release}:LTS");
    let mut oracle: Vec<Row> =
        serde_json::from_slice(&python("ubuntu_oracle.py", &[root.to_str().unwrap(), &ecosystem])).unwrap();
    oracle.sort();
    (root, oracle)
}

fn scan(root: &Path, db: &Path) -> serde_json::Value {
    let out = scan_json(&format!("rootfs:{}", root.display()), db);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn ubuntu_findings_equal_the_dpkg_oracle_over_canonicals_records() {
    if !require("dpkg-query", "Ubuntu contract") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("db");
    shared_db(&db, &["Ubuntu"]);
    for release in ["22.04", "24.04", "18.04"] {
        let (root, oracle) = root_and_oracle(tmp.path(), release);
        let report = scan(&root, &db);
        assert_eq!(report["os"]["ecosystem"], format!("Ubuntu:{release}:LTS"));
        assert!(oracle.len() >= 20, "{release}: {oracle:?}");
        assert_eq!(rows(&report), oracle, "{release}");
        // Unfixed records are findings that are not fixable.
        let unfixed = report["findings"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|f| f["fixable"] == false)
            .count();
        assert_eq!(
            unfixed,
            oracle.iter().filter(|r| r.2.is_none()).count(),
            "{release}"
        );
    }
    // 18.04: packages from Pro (`+esm`) are judged by the Pro stream; the others are told
    // which fixes only Pro has.
    let (root, oracle) = root_and_oracle(tmp.path(), "18.04");
    let report = scan(&root, &db);
    let findings = report["findings"].as_array().unwrap();
    assert!(findings
        .iter()
        .any(|f| f["installed_version"].as_str().unwrap().contains("+esm")
            && f["fixed_version"].as_str().is_some_and(|v| v.contains("+esm"))));
    let pro_only = findings
        .iter()
        .filter(|f| f["fix_requires"] == "ubuntu-pro")
        .count();
    assert!(pro_only >= 5, "{pro_only}");
    assert_eq!(pro_only, oracle.iter().filter(|r| r.3.is_some()).count());
    assert!(findings
        .iter()
        .filter(|f| f["fix_requires"] == "ubuntu-pro")
        .all(|f| !f["installed_version"].as_str().unwrap().contains("+esm")));
}
