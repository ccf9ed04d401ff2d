//! Azure Linux 3 as Microsoft ships it: a root with a real rpm database (rpmbuild, `rpm
//! --justdb`) and the distroless form of the same packages (no database: the manifest
//! `var/lib/rpmmanifest/container-manifest-2`, written by `rpm -qa --qf` in its documented
//! format) scan to the same findings, equal to an oracle that applies the feed's own rule
//! with rpm's comparison (tests/support/azl_oracle.py: source rpm name, source
//! version-release lower than the fixed one) over the mirror's Azure Linux records; the
//! manifest's package list equals syft's.

mod common;

use common::*;
use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

const ECOSYSTEM: &str = "Azure Linux:3";

fn scan(root: &Path, db: &Path) -> serde_json::Value {
    report_of(&format!("rootfs:{}", root.display()), db, &[])
}

/// (id, binary package, severity) of a report's findings.
fn findings(report: &serde_json::Value) -> Vec<Vec<String>> {
    string_rows(&report["findings"], &["id", "package", "severity"])
}

fn packages(report: &serde_json::Value) -> BTreeSet<Vec<String>> {
    string_rows(&report["packages"], &["name", "version"])
        .into_iter()
        .collect()
}

fn oracle(root: &Path) -> Vec<Vec<String>> {
    let out = Command::new("python3")
        .arg(project().join("tests/support/azl_oracle.py"))
        .arg(root)
        .arg(ECOSYSTEM)
        .arg(shared_data().join("osv/Azure Linux/all.zip"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn azure_linux_rpmdb_and_distroless_manifest_match_the_feed_by_source_rpm() {
    let test = "Azure Linux";
    if !require("rpmbuild", test) || !require("syft", test) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let fixture = tmp.path().join("azl");
    run_script("make-rpm-root.sh", &[fixture.to_str().unwrap(), "azurelinux"]);
    let db = tmp.path().join("db");
    shared_db(&db, &["Azure Linux"]);

    let with_db = scan(&fixture.join("rpmdb"), &db);
    assert_eq!(with_db["os"]["ecosystem"], ECOSYSTEM);
    let expected = oracle(&fixture.join("rpmdb"));
    assert!(expected.len() >= 10, "{expected:?}");
    // Binary packages named apart from their source rpm are matched through it.
    for binary in ["openssl-libs", "libcurl", "krb5-libs"] {
        assert!(expected.iter().any(|r| r[1] == binary), "{binary}");
    }
    assert_eq!(findings(&with_db), expected);
    assert!(expected.iter().any(|r| r[2] == "critical"), "real severities");

    // The distroless manifest of the same packages: the same packages, the same findings.
    let distroless = scan(&fixture.join("distroless"), &db);
    assert_eq!(distroless["os"]["ecosystem"], ECOSYSTEM);
    assert_eq!(packages(&distroless), packages(&with_db));
    assert_eq!(findings(&distroless), expected);
    let paths: BTreeSet<&str> = distroless["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["path"].as_str().unwrap())
        .collect();
    assert_eq!(
        paths,
        BTreeSet::from(["var/lib/rpmmanifest/container-manifest-2"])
    );

    // syft's package list of the manifest.
    let out = Command::new("syft")
        .arg(format!("dir:{}", fixture.join("distroless").display()))
        .args(["-o", "json", "-q"])
        .env("SYFT_CHECK_FOR_APP_UPDATE", "false")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let syft: BTreeSet<Vec<String>> = string_rows(&doc["artifacts"], &["name", "version"])
        .into_iter()
        .collect();
    assert_eq!(packages(&distroless), syft);
}

#[test]
fn mariner_2_is_azure_linux_2_and_without_its_feed_says_so() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    std::fs::create_dir_all(root.join("etc")).unwrap();
    std::fs::create_dir_all(root.join("var/lib/rpmmanifest")).unwrap();
    std::fs::write(
        root.join("etc/os-release"),
        "NAME=\"Common Base Linux Mariner\"\nVERSION=\"2.0.20240609\"\nID=mariner\nVERSION_ID=\"2.0\"\n",
    )
    .unwrap();
    std::fs::write(
        root.join("var/lib/rpmmanifest/container-manifest-2"),
        "openssl\t1.1.1k-31.cm2\t1717000000\t1716000000\tMicrosoft Corporation\t(none)\t1\tx86_64\t0\topenssl-1.1.1k-31.cm2.src.rpm\n",
    )
    .unwrap();
    // The shared mirror has no Mariner 2.0 data: the scan must say it matched nothing.
    let db = tmp.path().join("db");
    shared_db(&db, &["Azure Linux"]);
    let r = scan(&root, &db);
    assert_eq!(r["os"]["ecosystem"], "Azure Linux:2");
    assert_eq!(r["packages"].as_array().unwrap().len(), 1);
    assert!(r["findings"].as_array().unwrap().is_empty());
    let notes = r["unreadable"].to_string() + &r["notes"].to_string();
    assert!(notes.contains("Azure Linux:2"), "{r:#}");

    // With records for Azure Linux:2 (fixtures in the feed's shape: no 2.0 data is obtainable
    // here), the source rpm is matched, and an installed epoch does not hide a fix the feed
    // writes without one (shadow-utils, epoch 2).
    std::fs::write(
        root.join("var/lib/rpmmanifest/container-manifest-2"),
        "openssl\t1.1.1k-31.cm2\t1717000000\t1716000000\tMicrosoft Corporation\t(none)\t1\tx86_64\t0\topenssl-1.1.1k-31.cm2.src.rpm\n\
         shadow-utils\t4.14.3-2.cm2\t1717000000\t1716000000\tMicrosoft Corporation\t2\t1\tx86_64\t2\tshadow-utils-4.14.3-2.cm2.src.rpm\n",
    )
    .unwrap();
    let record = |id: &str, name: &str, fixed: &str| {
        format!(
            r#"{{"id":"{id}","modified":"2025-01-01T00:00:00Z","summary":"fixture in the Azure Linux feed's shape",
            "affected":[{{"package":{{"ecosystem":"Azure Linux:2","name":"{name}"}},
            "ranges":[{{"type":"ECOSYSTEM","events":[{{"introduced":"0"}},{{"fixed":"{fixed}"}}]}}],
            "database_specific":{{"severity":"HIGH"}}}}]}}"#
        )
    };
    let (a, b) = (
        record("AZL-FIXTURE-1", "openssl", "1.1.1k-32.cm2"),
        record("AZL-FIXTURE-2", "shadow-utils", "4.14.3-3.cm2"),
    );
    let feed = tmp.path().join("feed");
    write_osv_zip(
        &feed,
        "Azure Linux",
        &[
            ("AZL-FIXTURE-1.json", a.as_bytes()),
            ("AZL-FIXTURE-2.json", b.as_bytes()),
        ],
    );
    let db2 = tmp.path().join("db2");
    db_from(&feed, &db2, &["Azure Linux"]);
    let r = scan(&root, &db2);
    assert_eq!(
        findings(&r),
        [
            vec!["AZL-FIXTURE-1".to_string(), "openssl".into(), "high".into()],
            vec!["AZL-FIXTURE-2".to_string(), "shadow-utils".into(), "high".into()],
        ]
    );
    assert!(!r["unreadable"].to_string().contains("no_advisory_feed"), "{r:#}");
}

/// The agent is never quieter than `scan`: an Azure Linux image on a mirror that lacks Azure
/// Linux is `no_advisory_feed` (not `ok` with 0 findings) in `/v1/findings` and the metric,
/// its OS named; with Azure Linux on the mirror it is `ok` with the oracle's findings.
#[test]
fn the_agent_says_no_advisory_feed_when_the_mirror_lacks_the_os() {
    let test = "Azure Linux agent coverage";
    use common::agent::{value, Agent};
    use common::containerd::Lab;
    use common::mirror::Mirror;
    if !require("rpmbuild", test) || !require("umoci", test) || !require("busybox", test) {
        return;
    }
    let Some(lab) = Lab::start(test) else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let fixture = tmp.path().join("azl");
    run_script("make-rpm-root.sh", &[fixture.to_str().unwrap(), "azurelinux"]);
    // The distroless root, with a static busybox so that its container really runs.
    let root = fixture.join("distroless");
    std::fs::create_dir_all(root.join("bin")).unwrap();
    let busybox = String::from_utf8(
        Command::new("sh")
            .args(["-c", "command -v busybox"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    std::fs::copy(busybox.trim(), root.join("bin/busybox")).unwrap();
    std::os::unix::fs::symlink("busybox", root.join("bin/sleep")).unwrap();
    let (_, archive) = umoci_archive(&root, tmp.path());
    lab.import(&archive, "mcr.example/azurelinux/distroless");
    let labels = [
        ("io.kubernetes.pod.name", "azl-0"),
        ("io.kubernetes.pod.namespace", "shop"),
        ("io.kubernetes.container.name", "app"),
    ];
    lab.run_container("azl", "mcr.example/azurelinux/distroless:latest", &labels);

    let status = |a: &Agent, s: &str| {
        value(
            &a.metrics(),
            "stalewatch_container_scan_status",
            &[("pod", "azl-0"), ("status", s)],
        ) == Some(1.0)
    };
    // A mirror of Alpine only.
    let alpine_only = tmp.path().join("mirror");
    std::fs::create_dir_all(&alpine_only).unwrap();
    std::os::unix::fs::symlink(shared_data().join("osv/Alpine"), alpine_only.join("Alpine")).unwrap();
    let mirror = Mirror::start(alpine_only);
    let azl = ["--ecosystem", "Azure Linux"];
    let agent = Agent::start(&lab.sock, &tmp.path().join("state-1"), &mirror.url(), &azl);
    agent.wait_for("no_advisory_feed", std::time::Duration::from_secs(60), |a| {
        status(a, "no_advisory_feed")
    });
    let m = agent.metrics();
    assert!(!status(&agent, "ok"), "{m}");
    let info = value(
        &m,
        "stalewatch_image_info",
        &[("os_id", "azurelinux"), ("os_version", "3.0")],
    );
    assert_eq!(info, Some(1.0), "{m}");
    let doc: serde_json::Value = serde_json::from_str(&agent.findings().1).unwrap();
    let c = container_of(&doc, "azl-0");
    assert_eq!(c["scan_status"], "no_advisory_feed");
    assert_eq!(c["report"]["os"]["ecosystem"], ECOSYSTEM);
    assert_eq!(
        c["coverage_gaps"],
        serde_json::json!([{"ecosystem": ECOSYSTEM, "packages": 7, "reason": "not_on_source"}])
    );
    agent.stop();

    // The full mirror: ok, and the oracle's findings.
    let mirror = Mirror::start(shared_data().join("osv"));
    let agent = Agent::start(&lab.sock, &tmp.path().join("state-2"), &mirror.url(), &azl);
    agent.wait_for("ok", std::time::Duration::from_secs(60), |a| status(a, "ok"));
    let doc: serde_json::Value = serde_json::from_str(&agent.findings().1).unwrap();
    let c = container_of(&doc, "azl-0");
    assert_eq!(findings(&c["report"]), oracle(&fixture.join("rpmdb")));
    assert!(c.get("coverage_gaps").is_none(), "{c:#}");
    agent.stop();
}
