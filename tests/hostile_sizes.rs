//! Hostile sizes through the real CLI (issue 15 §5): a 190 MiB apk database of ~200k
//! real-shaped packages and a 30 MiB Cargo.lock of 260k packages yield their full package
//! lists (checked against Python parsing the same files), a 200 MB Cargo.lock and a 1 GiB dpkg
//! status file are counted skips, unread. Peak RSS of each is in bench/hostile-sizes.py
//! (docs/benchmarks.md), not asserted here.

mod common;

use common::*;
use std::io::Write;
use std::path::Path;

/// One apk record shaped like Alpine's (every field apk writes; a shared object, a binary
/// and documentation files with their checksums), about 950 bytes.
fn apk_record(i: usize, out: &mut impl Write) {
    let sum = format!("{:027x}", i * 7919);
    write!(
        out,
        "C:Q1{sum}=\nP:pkg-{i}\nV:1.{}.{}-r{}\nA:x86_64\nS:{}\nI:{}\n\
         T:Package number {i}, shaped like a record of Alpine's installed database\n\
         U:https://pkg-{i}.example.org/\nL:MIT AND BSD-2-Clause\no:origin-{}\n\
         m:Maintainer Name <maintainer@example.org>\nt:1700000000\nc:{sum}0123456789abc\n\
         D:so:libc.musl-x86_64.so.1 so:libz.so.1\np:so:libpkg{i}.so.1=1.0.0 cmd:pkg-{i}=1.{}\n\
         r:pkg-{i}-legacy\nF:usr/bin\nR:pkg-{i}\na:0:0:755\nZ:Q1{sum}b=\n\
         F:usr/lib\nR:libpkg{i}.so.1\na:0:0:755\nZ:Q1{sum}c=\nR:libpkg{i}.so.1.0.0\nZ:Q1{sum}d=\n\
         F:usr/share/doc/pkg-{i}\nR:README.md\nZ:Q1{sum}e=\nR:CHANGELOG.md\nZ:Q1{sum}f=\n\
         R:COPYING\nZ:Q1{sum}0=\nR:NEWS\nZ:Q1{sum}1=\nR:AUTHORS\nZ:Q1{sum}2=\n\
         F:usr/share/man/man1\nR:pkg-{i}.1.gz\nZ:Q1{sum}3=\n\n",
        i % 97,
        i % 13,
        i % 5,
        100_000 + i,
        300_000 + i,
        i / 3,
        i % 7,
    )
    .unwrap();
}

fn alpine_root(dir: &Path) -> std::path::PathBuf {
    let root = dir.join("root");
    std::fs::create_dir_all(root.join("etc")).unwrap();
    std::fs::create_dir_all(root.join("lib/apk/db")).unwrap();
    std::fs::write(root.join("etc/os-release"), "ID=alpine\nVERSION_ID=3.20.3\n").unwrap();
    root
}

fn scan(root: &Path, dir: &Path) -> serde_json::Value {
    let db = dir.join("db");
    empty_db(&db, &["Alpine", "Debian", "crates.io"]);
    let out = scan_json(&format!("rootfs:{}", root.display()), &db);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Sorted `name version` lines of the report's packages of one ecosystem.
fn listed(report: &serde_json::Value, ecosystem: &str) -> Vec<String> {
    let mut v: Vec<String> = report["packages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["ecosystem"].as_str().is_some_and(|e| e.starts_with(ecosystem)))
        .map(|p| {
            format!(
                "{} {}",
                p["name"].as_str().unwrap(),
                p["version"].as_str().unwrap()
            )
        })
        .collect();
    v.sort();
    v
}

/// Sorted lines a Python program prints for `file`.
fn oracle(program: &str, file: &Path) -> Vec<String> {
    let out = std::process::Command::new("python3")
        .args(["-c", program])
        .arg(file)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let mut v: Vec<String> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    v.sort();
    v
}

/// apk's format: records separated by a blank line, `P:` and `V:` name the package.
const APK_ORACLE: &str = r#"
import sys
for rec in open(sys.argv[1], encoding="utf-8").read().split("\n\n"):
    f = dict(l.split(":", 1) for l in rec.splitlines() if ":" in l)
    if f.get("P") and f.get("V"):
        print(f["P"], f["V"])
"#;

/// TOML as Python's standard library reads it; crates.io packages only (what is matched).
const CARGO_ORACLE: &str = r#"
import sys, tomllib
for p in tomllib.load(open(sys.argv[1], "rb")).get("package", []):
    if p.get("source", "").startswith("registry+https://github.com/rust-lang/crates.io-index"):
        print(p["name"], p["version"])
"#;

#[test]
fn a_190_mib_apk_database_yields_every_package() {
    let dir = tempfile::tempdir().unwrap();
    let root = alpine_root(dir.path());
    let db = root.join("lib/apk/db/installed");
    let mut w = std::io::BufWriter::new(std::fs::File::create(&db).unwrap());
    let mut i = 0;
    while w.get_ref().metadata().unwrap().len() < 190 << 20 {
        apk_record(i, &mut w);
        i += 1;
        if i % 4096 == 0 {
            w.flush().unwrap();
        }
    }
    w.flush().unwrap();
    drop(w);
    assert!(i > 190_000, "{i} records");
    let expected = oracle(APK_ORACLE, &db);
    assert_eq!(expected.len(), i);
    let report = scan(&root, dir.path());
    let got = listed(&report, "Alpine");
    assert_eq!(got.len(), expected.len());
    assert!(got == expected, "package lists differ");
}

#[test]
fn a_30_mib_cargo_lock_of_260k_packages_yields_every_package() {
    let dir = tempfile::tempdir().unwrap();
    let root = alpine_root(dir.path());
    std::fs::create_dir_all(root.join("app")).unwrap();
    let lock = root.join("app/Cargo.lock");
    let mut w = std::io::BufWriter::new(std::fs::File::create(&lock).unwrap());
    writeln!(
        w,
        "# This file is automatically @generated by Cargo.\nversion = 4\n"
    )
    .unwrap();
    for i in 0..260_000 {
        let source = match i % 10 {
            0 => String::new(), // a workspace member: no source, not matched
            1 => "source = \"git+https://example.org/r?rev=1#0123\"\n".into(),
            _ => "source = \"registry+https://github.com/rust-lang/crates.io-index\"\n".into(),
        };
        writeln!(
            w,
            "[[package]]\nname = \"c{i}\"\nversion = \"0.{}.{}\"\n{source}",
            i % 89,
            i % 7
        )
        .unwrap();
    }
    w.flush().unwrap();
    drop(w);
    let size = std::fs::metadata(&lock).unwrap().len();
    assert!(
        size > 20 << 20 && size < 32 << 20,
        "{size} bytes: under the 32 MiB cap"
    );
    let expected = oracle(CARGO_ORACLE, &lock);
    assert_eq!(expected.len(), 208_000);
    let report = scan(&root, dir.path());
    let got = listed(&report, "crates.io");
    assert_eq!(got.len(), expected.len());
    assert!(got == expected, "package lists differ");
}

#[test]
fn a_200_mb_cargo_lock_and_a_1_gib_dpkg_status_are_skipped_unread() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    std::fs::create_dir_all(root.join("etc")).unwrap();
    std::fs::create_dir_all(root.join("var/lib/dpkg")).unwrap();
    std::fs::create_dir_all(root.join("app")).unwrap();
    std::fs::write(root.join("etc/os-release"), "ID=debian\nVERSION_ID=\"12\"\n").unwrap();
    // Sparse: their sizes are real to stat, and reading them would cost the full size.
    let f = std::fs::File::create(root.join("var/lib/dpkg/status")).unwrap();
    f.set_len(1 << 30).unwrap();
    let f = std::fs::File::create(root.join("app/Cargo.lock")).unwrap();
    f.set_len(200_000_000).unwrap();
    let report = scan(&root, dir.path());
    let skips = unreadable(&report);
    let expected = [
        ("file_too_large", "var/lib/dpkg/status"),
        ("manifest_too_large", "app/Cargo.lock"),
    ];
    for (reason, path) in expected {
        assert!(
            skips.iter().any(|(r, w)| r == reason && w.ends_with(path)),
            "{path} not a counted skip: {skips:?}"
        );
    }
    assert_eq!(report["packages"].as_array().unwrap().len(), 0);
}
