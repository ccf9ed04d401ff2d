//! Drift on a real containerd: packages changed inside a running container (its live apk
//! database, written through `/proc/<pid>/root`) are reported within one drift refresh, a
//! vulnerable version installed that way becomes a finding, and links in the container that
//! point out of its root never make the agent read a host file.

mod common;

use common::agent::{value, Agent};
use common::containerd::Lab;
use common::mirror::Mirror;
use common::*;
use std::time::Duration;

#[test]
#[allow(clippy::too_many_lines)] // a scenario test that reads top to bottom
fn live_package_changes_are_drift_and_their_findings_count() {
    let Some(lab) = Lab::start("drift") else {
        return;
    };
    if !require("umoci", "drift") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let root = unpack_alpine("3.20.3", tmp.path());
    let (_, archive) = umoci_archive(&root, tmp.path());
    lab.import(&archive, "example.org/alpine");
    lab.run_container(
        "app",
        "example.org/alpine:latest",
        &[("io.kubernetes.pod.name", "app-0")],
    );
    // The real Alpine advisories.
    let site = tmp.path().join("site");
    std::fs::create_dir_all(site.join("Alpine")).unwrap();
    std::os::unix::fs::symlink(
        shared_data().join("osv/Alpine/all.zip"),
        site.join("Alpine/all.zip"),
    )
    .unwrap();
    let mirror = Mirror::start(site);
    let args = ["--drift-interval", "1s", "--reconcile-interval", "1s"];
    let agent = Agent::start(&lab.sock, &tmp.path().join("state"), &mirror.url(), &args);
    let drift = |a: &Agent, change: &str| {
        value(
            &a.metrics(),
            "stalewatch_container_drift_packages",
            &[("pod", "app-0"), ("change", change)],
        )
    };
    agent.wait_for("a clean drift check", Duration::from_secs(30), |a| {
        drift(a, "added") == Some(0.0)
    });
    let findings = |a: &Agent| -> serde_json::Value {
        let doc: serde_json::Value = serde_json::from_str(&a.findings().1).unwrap();
        doc["containers"][0].clone()
    };
    let before = findings(&agent);
    assert!(
        !before["report"]["findings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["package"] == "busybox"),
        "3.20.3's busybox 1.36.1-r29 has its fixes"
    );

    // Inside the running container: busybox downgraded to 1.36.1-r27 (before the fixes of
    // CVE-2023-42364/42365 in 3.20), a package added, one removed; and links that point out of
    // the root, towards a sentinel file on the host.
    let pid = lab.task_pid("app");
    let live = std::path::PathBuf::from(format!("/proc/{pid}/root"));
    let db = live.join("lib/apk/db/installed");
    let text = std::fs::read_to_string(&db).unwrap();
    let mut stanzas: Vec<String> = text.split("\n\n").map(str::to_string).collect();
    let is = |s: &str, name: &str| s.lines().any(|l| l == format!("P:{name}"));
    stanzas.retain(|s| !is(s, "scanelf"));
    for s in stanzas.iter_mut().filter(|s| is(s, "busybox")) {
        *s = s.replace("V:1.36.1-r29", "V:1.36.1-r27");
    }
    stanzas.push("P:nmap\nV:7.95-r0\nA:x86_64\no:nmap\n".into());
    std::fs::write(&db, stanzas.join("\n\n")).unwrap();
    let sentinel = tmp.path().join("host-sentinel");
    std::fs::create_dir_all(&sentinel).unwrap();
    std::fs::write(sentinel.join("os-release"), "ID=sentinel\nVERSION_ID=6.6.6\n").unwrap();
    let etc = live.join("etc");
    std::fs::remove_file(etc.join("os-release")).unwrap();
    std::os::unix::fs::symlink(
        format!("/proc/1/root{}/os-release", sentinel.display()),
        etc.join("os-release"),
    )
    .unwrap();
    std::os::unix::fs::symlink(
        format!("../../../../../../../..{}", sentinel.display()),
        etc.join("escape"),
    )
    .unwrap();

    agent.wait_for("the drift reported", Duration::from_secs(30), |a| {
        drift(a, "added") == Some(1.0) && drift(a, "removed") == Some(1.0) && drift(a, "changed") == Some(1.0)
    });
    let c = findings(&agent);
    assert_eq!(c["drift"]["added"][0]["name"], "nmap", "{:#}", c["drift"]);
    assert_eq!(c["drift"]["removed"][0]["name"], "scanelf");
    assert_eq!(c["drift"]["changed"][0]["name"], "busybox");
    assert_eq!(c["drift"]["changed"][0]["image_version"], "1.36.1-r29");
    assert_eq!(c["drift"]["changed"][0]["live_version"], "1.36.1-r27");
    // The findings follow what runs: the downgraded busybox is vulnerable, and marked.
    let bb: Vec<&serde_json::Value> = c["report"]["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["package"] == "busybox")
        .collect();
    let ids: Vec<&str> = bb.iter().map(|f| f["id"].as_str().unwrap()).collect();
    assert!(
        ids.contains(&"ALPINE-CVE-2023-42364") && ids.contains(&"ALPINE-CVE-2023-42365"),
        "{ids:?}"
    );
    assert!(bb.iter().all(|f| f["drift"] == "changed"));
    // The whole finding set is what the scanner finds in the live root, with the agent's
    // own index: drift changes which packages are matched, never how.
    let keys = |r: &serde_json::Value| -> std::collections::BTreeSet<(String, String)> {
        let findings = r["findings"].as_array().unwrap().iter();
        findings
            .map(|f| {
                (
                    f["id"].as_str().unwrap().into(),
                    f["package"].as_str().unwrap().into(),
                )
            })
            .collect()
    };
    let state_db = tmp.path().join("state/db");
    let scanned = scan_json(&format!("rootfs:{}", live.display()), &state_db);
    assert!(
        scanned.status.success(),
        "{}",
        String::from_utf8_lossy(&scanned.stderr)
    );
    let scanned: serde_json::Value = serde_json::from_slice(&scanned.stdout).unwrap();
    assert_eq!(
        keys(&c["report"]),
        keys(&scanned),
        "the live report is the live root's scan"
    );
    // The links out of the root were not followed: the OS is still the container's.
    assert_eq!(c["report"]["os"]["id"], "alpine", "{:#}", c["report"]["os"]);
    let m = agent.metrics();
    assert!(!m.contains("sentinel"));
    assert_eq!(c["scan_status"], "ok");
}
