//! Packages in use on a real containerd: the Alpine minirootfs's `sleep` is busybox, linked
//! against musl; nothing maps ssl_client. Findings on busybox are `in_use: true`, on
//! ssl_client `false`, counted apart in `stalewatch_container_vulnerabilities_in_use`; a mapped
//! file removed on disk still counts and is reported.

mod common;

use common::agent::{value, Agent};
use common::containerd::Lab;
use common::mirror::Mirror;
use common::*;
use std::time::Duration;

const ALPINE_42366: &[u8] = include_bytes!("fixtures/osv/ALPINE-CVE-2023-42366.json");

#[test]
fn mapped_packages_are_in_use_and_the_others_are_not() {
    let Some(lab) = Lab::start("in use") else {
        return;
    };
    if !require("umoci", "in use") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let root = unpack_alpine("3.16.9", tmp.path());
    let (_, archive) = umoci_archive(&root, tmp.path());
    lab.import(&archive, "example.org/alpine");
    lab.run_container(
        "app",
        "example.org/alpine:latest",
        &[("io.kubernetes.pod.name", "app-0")],
    );
    let site = tmp.path().join("site");
    write_osv_zip(&site, "Alpine", &[("ALPINE-CVE-2023-42366.json", ALPINE_42366)]);
    let mirror = Mirror::start(site);
    let args = ["--drift-interval", "1s", "--reconcile-interval", "1s"];
    let agent = Agent::start(&lab.sock, &tmp.path().join("state"), &mirror.url(), &args);
    let in_use = |a: &Agent| {
        value(
            &a.metrics(),
            "stalewatch_container_vulnerabilities_in_use",
            &[("pod", "app-0"), ("severity", "unknown")],
        )
    };
    agent.wait_for("in-use counted", Duration::from_secs(30), |a| {
        in_use(a) == Some(1.0)
    });
    let doc: serde_json::Value = serde_json::from_str(&agent.findings().1).unwrap();
    let findings = doc["containers"][0]["report"]["findings"]
        .as_array()
        .unwrap()
        .clone();
    let mark = |pkg: &str| {
        findings
            .iter()
            .find(|f| f["package"] == pkg)
            .unwrap_or_else(|| panic!("no {pkg} finding in {findings:#?}"))["in_use"]
            .clone()
    };
    assert_eq!(mark("busybox"), true, "sleep is busybox");
    assert_eq!(mark("ssl_client"), false, "nothing maps /usr/bin/ssl_client");
    // The main metric is unchanged by it: one vulnerability (two findings, one record).
    assert_eq!(
        value(
            &agent.metrics(),
            "stalewatch_container_vulnerabilities",
            &[("pod", "app-0"), ("severity", "unknown"), ("fixable", "true")]
        ),
        Some(1.0)
    );

    // busybox removed on disk while sleep still maps it: still in use, and reported.
    let pid = lab.task_pid("app");
    std::fs::remove_file(format!("/proc/{pid}/root/bin/busybox")).unwrap();
    agent.wait_for("the deleted file reported", Duration::from_secs(30), |a| {
        let doc: serde_json::Value = serde_json::from_str(&a.findings().1).unwrap();
        doc["containers"][0]["deleted_files_in_use"]
            .as_array()
            .is_some_and(|d| d.iter().any(|f| f == "bin/busybox"))
    });
    assert_eq!(in_use(&agent), Some(1.0));
}
