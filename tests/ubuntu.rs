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
    report_of(&format!("rootfs:{}", root.display()), db, &[])
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

/// A chiseled root (Chisel's manifest, no dpkg database) of the same packages as a dpkg root,
/// written in the jsonwall format Chisel documents (sorted lines after the header) and
/// compressed by the real zstd; plus one binary no record names.
fn chiseled_like(dpkg_root: &Path, out: &Path, extra: (&str, &str)) {
    let listed = Command::new("dpkg-query")
        .arg(format!("--admindir={}", dpkg_root.join("var/lib/dpkg").display()))
        .args(["-W", "-f", "${Package}\t${Version}\t${Architecture}\n"])
        .output()
        .unwrap();
    assert!(listed.status.success());
    let mut lines: Vec<String> = String::from_utf8(listed.stdout)
        .unwrap()
        .lines()
        .map(|l| l.split('\t').collect::<Vec<_>>())
        .chain(std::iter::once(vec![extra.0, extra.1, "amd64"]))
        .flat_map(|f| {
            let pkg = serde_json::json!({"kind": "package", "name": f[0], "version": f[1], "sha256": "0".repeat(64), "arch": f[2]});
            let slice = serde_json::json!({"kind": "slice", "name": format!("{}_libs", f[0])});
            [pkg.to_string(), slice.to_string()]
        })
        .collect();
    lines.sort();
    let header = serde_json::json!({"jsonwall": "1.0", "schema": "1.0", "count": lines.len()});
    let wall = format!("{header}\n{}\n", lines.join("\n"));
    std::fs::create_dir_all(out.join("var/lib/chisel")).unwrap();
    std::fs::create_dir_all(out.join("etc")).unwrap();
    std::fs::copy(dpkg_root.join("etc/os-release"), out.join("etc/os-release")).unwrap();
    let plain = out.join("var/lib/chisel/manifest");
    std::fs::write(&plain, wall).unwrap();
    let z = Command::new("zstd")
        .args(["-q", "--rm", "-o"])
        .arg(out.join("var/lib/chisel/manifest.wall"))
        .arg(&plain)
        .status()
        .unwrap();
    assert!(z.success());
}

#[test]
fn a_chiseled_root_has_the_findings_of_the_same_packages_in_dpkg() {
    if !require("dpkg-query", "chiseled Ubuntu") || !require("zstd", "chiseled Ubuntu") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("db");
    shared_db(&db, &["Ubuntu"]);
    for release in ["24.04", "18.04"] {
        let (root, oracle) = root_and_oracle(tmp.path(), release);
        let chiseled = tmp.path().join(format!("chiseled-{release}"));
        // base-files: in every chiseled image, in no advisory record.
        chiseled_like(&root, &chiseled, ("base-files", "13ubuntu10.1"));
        let report = scan(&chiseled, &db);
        assert_eq!(report["os"]["ecosystem"], format!("Ubuntu:{release}:LTS"));
        assert_eq!(rows(&report), oracle, "{release}");
        let dpkg_packages = scan(&root, &db)["packages"].as_array().unwrap().len();
        assert_eq!(report["packages"].as_array().unwrap().len(), dpkg_packages + 1);
        let notes: Vec<&serde_json::Value> = report["unreadable"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|u| u["reason"] == "unresolved_binary")
            .collect();
        assert_eq!(notes.len(), 1, "{notes:?}");
        assert_eq!(notes[0]["what"], "var/lib/chisel/manifest.wall:base-files");
    }
}
