//! OS package catalogers on databases written by the real tools (dpkg, rpm, db5.3_load), and
//! the same databases read back by those tools as the reference.

mod common;

use common::*;
use std::path::Path;
use std::process::Command;

fn packages(root: &Path) -> (serde_json::Value, Vec<(String, String, String, String)>) {
    let db = root.with_extension("db");
    empty_db(&db, &["Debian", "AlmaLinux"]);
    let out = scan_json(&format!("rootfs:{}", root.display()), &db);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut v: Vec<_> = r["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let s = |k: &str| p[k].as_str().unwrap().to_string();
            (s("name"), s("version"), s("source_name"), s("source_version"))
        })
        .collect();
    v.sort();
    (r, v)
}

fn lines(cmd: &mut Command) -> Vec<String> {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut v: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    v.sort();
    v
}

#[test]
fn dpkg_status_written_by_dpkg() {
    if !require("dpkg-deb", "dpkg cataloger") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    run_script("make-dpkg-root.sh", &[root.to_str().unwrap()]);
    let (report, pkgs) = packages(&root);
    assert_eq!(report["os"]["ecosystem"], "Debian:12");
    // dpkg-query is the reference for what is installed (the removed package left only
    // its conffiles: "deinstall ok config-files", which is not installed software).
    let reference = lines(
        Command::new("dpkg-query")
            .arg(format!("--admindir={}/var/lib/dpkg", root.display()))
            .args(["-W", "-f", "${db:Status-Status} ${Package} ${Version}\n"]),
    );
    let installed: Vec<String> = reference
        .iter()
        .filter_map(|l| l.strip_prefix("installed "))
        .map(str::to_string)
        .collect();
    let ours: Vec<String> = pkgs.iter().map(|p| format!("{} {}", p.0, p.1)).collect();
    assert_eq!(ours, installed);
    assert!(
        reference.iter().any(|l| l.starts_with("config-files oldconf")),
        "{reference:?}"
    );
    // Source names and the binNMU's source version.
    let zlib = pkgs.iter().find(|p| p.0 == "zlib1g").unwrap();
    assert_eq!((zlib.2.as_str(), zlib.3.as_str()), ("zlib", "1:1.2.13.dfsg-1"));
    let ssl = pkgs.iter().find(|p| p.0 == "libssl3").unwrap();
    assert_eq!((ssl.2.as_str(), ssl.3.as_str()), ("openssl", "3.0.11-1~deb12u2"));
}

fn rpm_reference(root: &Path) -> Vec<String> {
    // rpm reads the same database (sqlite backend) as the reference.
    lines(
        Command::new("rpm")
            .arg("--dbpath")
            .arg(root.join("var/lib/rpm"))
            .args([
                "-qa",
                "--qf",
                "%{NAME} %|EPOCH?{%{EPOCH}:}:{}|%{VERSION}-%{RELEASE} %{SOURCERPM}\n",
            ]),
    )
}

#[test]
fn rpm_sqlite_and_berkeley_db_written_by_rpm() {
    if !require("rpmbuild", "rpm cataloger") || !require("db5.3_load", "rpm BDB cataloger") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let sqlite_root = tmp.path().join("sqlite");
    run_script("make-rpm-root.sh", &[sqlite_root.to_str().unwrap(), "sqlite"]);
    let reference = rpm_reference(&sqlite_root);
    assert_eq!(reference.len(), 2, "{reference:?}");
    let (report, pkgs) = packages(&sqlite_root);
    assert_eq!(report["os"]["ecosystem"], "AlmaLinux:9");
    let ours: Vec<String> = pkgs
        .iter()
        .map(|p| {
            format!(
                "{} {} {}-{}.src.rpm",
                p.0,
                p.1,
                p.2,
                p.3.split_once(':').map_or(p.3.as_str(), |x| x.1)
            )
        })
        .collect();
    assert_eq!(ours, reference);
    let purl = report["packages"][1]["purl"].as_str().unwrap();
    assert_eq!(
        purl,
        "pkg:rpm/almalinux/openssl-libs@3.0.7-27.el9?arch=x86_64&epoch=1&distro=almalinux-9.4"
    );

    // File lists (packages in use) as rpm itself lists them.
    let raw = stalewatch_core::catalog::rpm::parse_any(
        &std::fs::read(sqlite_root.join("var/lib/rpm/rpmdb.sqlite")).unwrap(),
    )
    .unwrap();
    for p in &raw.packages {
        let reference = lines(
            Command::new("rpm")
                .arg("--dbpath")
                .arg(sqlite_root.join("var/lib/rpm"))
                .args(["-ql", &p.name]),
        );
        let reference: Vec<String> = reference
            .iter()
            .map(|l| l.trim_start_matches('/').to_string())
            .collect();
        assert_eq!(p.files.as_deref(), Some(reference.as_slice()), "{}", p.name);
        assert_eq!(reference.len(), 1, "{reference:?}");
    }

    let bdb_root = tmp.path().join("bdb");
    run_script("make-rpm-root.sh", &[bdb_root.to_str().unwrap(), "bdb"]);
    let (_, bdb_pkgs) = packages(&bdb_root);
    assert_eq!(bdb_pkgs, pkgs, "Berkeley DB and sqlite hold the same headers");
}

#[test]
fn corrupt_package_databases_are_reported_not_clean() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    std::fs::create_dir_all(root.join("var/lib/rpm")).unwrap();
    std::fs::create_dir_all(root.join("etc")).unwrap();
    std::fs::write(root.join("etc/os-release"), "ID=almalinux\nVERSION_ID=9.4\n").unwrap();
    let mut fake = b"SQLite format 3\0".to_vec();
    fake.extend(std::iter::repeat_n(0xAB, 8192));
    std::fs::write(root.join("var/lib/rpm/rpmdb.sqlite"), &fake).unwrap();
    let (report, pkgs) = packages(&root);
    assert!(pkgs.is_empty());
    let reasons: Vec<&str> = report["unreadable"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["reason"].as_str().unwrap())
        .collect();
    assert!(reasons.contains(&"corrupt_package_db"), "{reasons:?}");
}

#[test]
fn rootfs_symlinked_directories_are_followed_inside_the_root() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    let mk = |p: &str, body: &str| {
        let f = root.join(p);
        std::fs::create_dir_all(f.parent().unwrap()).unwrap();
        std::fs::write(f, body).unwrap();
    };
    mk("opt/release/os-release", "ID=debian\nVERSION_ID=12\n");
    mk(
        "srv/dpkg/status",
        "Package: base-files\nStatus: install ok installed\nVersion: 12.4+deb12u5\n\n",
    );
    mk(
        "data/distroless/tzdata",
        "Package: tzdata\nVersion: 2024a-0+deb12u1\n\n",
    );
    let link = |target: &str, at: &str| {
        std::fs::create_dir_all(root.join(at).parent().unwrap()).unwrap();
        std::os::unix::fs::symlink(target, root.join(at)).unwrap();
    };
    // A chain: etc/os-release → ../opt/release/os-release; var/lib → ../srv (a directory
    // link above the package database); status.d → an absolute in-root path.
    link("../opt/release/os-release", "etc/os-release");
    std::fs::create_dir_all(root.join("var")).unwrap();
    link("../srv", "var/lib/dpkg-real");
    std::fs::create_dir_all(root.join("var/lib")).unwrap();
    std::fs::remove_file(root.join("var/lib/dpkg-real")).unwrap();
    std::fs::remove_dir(root.join("var/lib")).unwrap();
    link("../srv", "var/lib");
    std::fs::create_dir_all(root.join("srv/dpkg")).unwrap();
    link("/data/distroless", "srv/dpkg/status.d");
    let (report, pkgs) = packages(&root);
    assert_eq!(report["os"]["ecosystem"], "Debian:12");
    let names: Vec<&str> = pkgs.iter().map(|p| p.0.as_str()).collect();
    assert_eq!(names, ["base-files", "tzdata"], "{}", report["unreadable"]);
}

/// The inventory of a tar stream of `files` under `root`, each wanted file kept whole or as
/// the catalogers' `keep` says (dpkg and apk databases filtered as they stream by).
fn inventory_of(root: &Path, files: &[&str], filtered: bool) -> stalewatch_core::catalog::Inventory {
    use stalewatch_core::catalog;
    use stalewatch_core::layer::{tar::TarReader, Diagnostics, FileTree, Limits};
    let out = Command::new("tar")
        .arg("-C")
        .arg(root)
        .arg("-cf")
        .arg("-")
        .args(files)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let limits = if filtered {
        catalog::limits()
    } else {
        Limits::default()
    };
    let (mut tree, mut diag) = (FileTree::new(), Diagnostics::default());
    let mut tar = TarReader::new(&out.stdout[..]);
    tree.apply_layer(&mut tar, &catalog::wants, &limits, "layer", &mut diag)
        .unwrap();
    catalog::catalog(&tree, &mut diag)
}

/// Filtering the big databases as they stream by changes nothing the inventory holds: this
/// machine's own dpkg database (with its `info/*.list` file lists) and Alpine's, whole and
/// filtered, give the same packages, file owners and file-list set.
#[test]
fn filtered_databases_catalog_exactly_as_whole_ones() {
    let tmp = tempfile::tempdir().unwrap();
    let alpine = unpack_alpine("3.20.3", tmp.path());
    let roots: [(&Path, &[&str]); 2] = [
        (
            Path::new("/"),
            &["etc/os-release", "var/lib/dpkg/status", "var/lib/dpkg/info"],
        ),
        (&alpine, &["etc/os-release", "lib/apk/db/installed"]),
    ];
    for (root, files) in roots {
        let whole = inventory_of(root, files, false);
        let filtered = inventory_of(root, files, true);
        assert!(
            whole.packages.len() > 10,
            "{root:?}: {} packages",
            whole.packages.len()
        );
        assert!(!whole.mapped_files.is_empty(), "{root:?}: no file lists");
        assert_eq!(filtered.packages, whole.packages, "{root:?}");
        assert_eq!(filtered.mapped_files, whole.mapped_files, "{root:?}");
        assert_eq!(filtered.with_file_lists, whole.with_file_lists, "{root:?}");
    }
}

/// An rpm built in a module (nodejs from the nodejs:18 stream, written by the real rpmbuild
/// and rpm) against AlmaLinux 9's real records: findings are exactly the records of its stream
/// whose fix rpm's own `rpm.vercmp` orders above the installed version — never nodejs:20's or
/// :22's (higher versions, another stream), never the non-modular nodejs 16's.
#[test]
fn a_modular_rpm_is_judged_by_its_streams_records_only() {
    let test = "rpm module streams";
    if !require("rpmbuild", test) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("modular");
    run_script("make-rpm-root.sh", &[root.to_str().unwrap(), "modular"]);
    let db = tmp.path().join("db");
    shared_db(&db, &["AlmaLinux"]);
    let report = report_of(&format!("rootfs:{}", root.display()), &db, &[]);
    let nodejs = report["packages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "nodejs")
        .unwrap();
    assert!(
        nodejs["purl"]
            .as_str()
            .unwrap()
            .contains("rpmmod=nodejs%3A18%3A9020020230531123456%3Arhel9"),
        "{nodejs:#}"
    );
    let ours: std::collections::BTreeSet<String> = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["id"].as_str().unwrap().to_string())
        .collect();
    // The oracle: the records' summaries name the stream; rpm compares the versions.
    let script = r#"
import json, subprocess, sys, zipfile
installed = "1:18.14.2-2.module_el9.2.0+29+de583a0b"
z = zipfile.ZipFile(sys.argv[1])
candidates = []
for name in z.namelist():
    r = json.loads(z.read(name))
    if "nodejs:18 " not in r.get("summary", "") + " ":
        continue
    for a in r.get("affected", []):
        p = a.get("package", {})
        if p.get("ecosystem") == "AlmaLinux:9" and p.get("name") == "nodejs":
            candidates += [(r["id"], e["fixed"]) for rg in a.get("ranges", []) for e in rg.get("events", []) if e.get("fixed")]
# rpm's own comparison (rpm.vercmp, through rpm --eval and its Lua), one process for all.
lua = "".join(f'print(rpm.vercmp("{installed}", "{f}"), " ")' for _, f in candidates)
verdicts = subprocess.run(["rpm", "--eval", "%{lua:" + lua + "}"], capture_output=True, text=True, check=True).stdout.split()
print("\n".join(sorted({i for (i, _), v in zip(candidates, verdicts) if int(v) < 0})))
"#;
    let oracle = Command::new("python3")
        .args(["-c", script])
        .arg(shared_data().join("osv/AlmaLinux/all.zip"))
        .output()
        .unwrap();
    assert!(
        oracle.status.success(),
        "{}",
        String::from_utf8_lossy(&oracle.stderr)
    );
    let expected: std::collections::BTreeSet<String> = String::from_utf8_lossy(&oracle.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    assert!(expected.contains("ALSA-2023:3577"), "{expected:?}");
    assert_eq!(ours, expected);
}
