//! The agent on a real Debian image: a root made by `debootstrap --variant=minbase bookworm`
//! (cached under target/ once made), packed by umoci, imported into a real containerd and run;
//! its findings from the agent equal `stalewatch scan rootfs:` of the same root against the
//! same Debian advisories (the real OSV data in ../shared/data), and every installed dpkg
//! package is in the inventory.

mod common;

use common::agent::{value, Agent};
use common::containerd::Lab;
use common::mirror::Mirror;
use common::*;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

/// A debootstrapped Debian 12 root, made once into target/ and reused.
fn debian_root() -> Option<PathBuf> {
    let root = project().join("target/test-roots/debian-12-minbase");
    if root.join("var/lib/dpkg/status").is_file() && root.join("bin/sleep").exists() {
        return Some(root);
    }
    if !require("debootstrap", "Debian image") {
        return None;
    }
    let part = root.with_extension("part");
    let _ = std::fs::remove_dir_all(&part);
    std::fs::create_dir_all(part.parent().unwrap()).unwrap();
    let out = Command::new("debootstrap")
        .args(["--variant=minbase", "bookworm"])
        .arg(&part)
        .arg("http://deb.debian.org/debian")
        .output()
        .expect("run debootstrap");
    assert!(
        out.status.success(),
        "debootstrap: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::rename(&part, &root).unwrap();
    Some(root)
}

/// Installed packages according to dpkg itself.
fn dpkg_installed(root: &std::path::Path) -> usize {
    let out = Command::new("dpkg-query")
        .arg(format!("--admindir={}", root.join("var/lib/dpkg").display()))
        .args(["-W", "-f", "${db:Status-Status}\n"])
        .output()
        .unwrap();
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| *l == "installed")
        .count()
}

#[test]
#[allow(clippy::too_many_lines)] // a scenario test that reads top to bottom
fn a_debootstrapped_debian_runs_and_is_matched_like_its_root() {
    let Some(lab) = Lab::start("Debian image") else {
        return;
    };
    if !require("umoci", "Debian image") || !require("dpkg-query", "Debian image") {
        return;
    }
    let Some(root) = debian_root() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let (_, archive) = umoci_archive(&root, tmp.path());
    lab.import(&archive, "example.org/debian");
    lab.run_container(
        "deb",
        "example.org/debian:latest",
        &[
            ("io.kubernetes.pod.namespace", "ops"),
            ("io.kubernetes.pod.name", "toolbox-0"),
            ("io.kubernetes.container.name", "shell"),
        ],
    );
    // The real Debian advisories, served as a mirror.
    let site = tmp.path().join("site");
    std::fs::create_dir_all(site.join("Debian")).unwrap();
    std::os::unix::fs::symlink(
        shared_data().join("osv/Debian/all.zip"),
        site.join("Debian/all.zip"),
    )
    .unwrap();
    let mirror = Mirror::start(site);
    let agent = Agent::start(
        &lab.sock,
        &tmp.path().join("state"),
        &mirror.url(),
        &[
            "--ecosystem",
            "Debian",
            "--drift-interval",
            "1s",
            "--reconcile-interval",
            "1s",
        ],
    );
    agent.wait_for("the Debian container scanned", Duration::from_secs(60), |a| {
        value(
            &a.metrics(),
            "stalewatch_container_scan_status",
            &[("pod", "toolbox-0"), ("status", "ok")],
        ) == Some(1.0)
    });
    // The processes' maps read (packages in use): sleep is coreutils, linked against libc6.
    agent.wait_for("packages in use known", Duration::from_secs(30), |a| {
        a.metrics()
            .contains("stalewatch_container_vulnerabilities_in_use{")
    });
    let doc: serde_json::Value = serde_json::from_str(&agent.findings().1).unwrap();
    let report = doc["containers"][0]["report"].clone();
    let in_use = |pkg: &str| -> Vec<serde_json::Value> {
        report["findings"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|f| f["package"] == pkg)
            .map(|f| f["in_use"].clone())
            .collect()
    };
    for (pkg, used) in [
        ("libc6", true),
        ("coreutils", true),
        ("tar", false),
        ("login", false),
    ] {
        let marks = in_use(pkg);
        assert!(
            !marks.is_empty(),
            "bookworm's {pkg} has findings in the real data"
        );
        assert!(marks.iter().all(|m| *m == used), "{pkg}: {marks:?}");
    }
    assert_eq!(report["os"]["ecosystem"], "Debian:12");
    let packages = report["packages"].as_array().unwrap().len();
    assert_eq!(
        packages,
        dpkg_installed(&root),
        "every installed dpkg package, no other"
    );
    assert!(packages >= 80, "{packages}");

    // The same root scanned unpacked, against the index the agent built.
    let scanned = ok_json(&[
        "scan",
        &format!("rootfs:{}", root.display()),
        "--db-dir",
        tmp.path().join("state/db").to_str().unwrap(),
        "--format",
        "json",
    ]);
    assert_eq!(
        doc["containers"][0]["drift"],
        serde_json::json!({"added": [], "removed": [], "changed": []}),
        "the live root is the image"
    );
    // dpkg lists every package's files: no finding is left unknown.
    assert!(report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .all(|f| f["in_use"].is_boolean()));
    let from_agent = finding_keys(&report);
    assert!(
        !from_agent.is_empty(),
        "bookworm's minbase has advisories in the real data"
    );
    assert_eq!(from_agent, finding_keys(&scanned));
    // The metric counts what the report holds (grouped by aliases: at most the findings).
    let m = agent.metrics();
    let total: f64 = m
        .lines()
        .filter(|l| l.starts_with("stalewatch_container_vulnerabilities{") && l.contains("pod=\"toolbox-0\""))
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum();
    assert!(
        total >= 1.0 && total <= from_agent.len() as f64,
        "{total} vs {}",
        from_agent.len()
    );
}
