//! The DaemonSet's capabilities, proven: the agent runs under exactly the set the manifest
//! grants (uid 0, every capability dropped but those in `deploy/base/daemonset.yaml`, no new
//! privileges) and does all its work on a real containerd; with SYS_PTRACE taken away too,
//! reading a running container's root (`/proc/<pid>/root`) is refused and the agent degrades
//! cleanly: that image is `failed` with a counted reason, everything else keeps working.

mod common;

use common::agent::{value, Agent};
use common::containerd::Lab;
use common::mirror::Mirror;
use common::*;
use std::time::Duration;

const ALPINE_9143: &[u8] = include_bytes!("fixtures/osv/ALPINE-CVE-2024-9143.json");
const ALPINE_42366: &[u8] = include_bytes!("fixtures/osv/ALPINE-CVE-2023-42366.json");

/// The capabilities `deploy/base/daemonset.yaml` adds after dropping ALL, lower-case.
fn granted() -> Vec<String> {
    let ds = std::fs::read_to_string(project().join("deploy/base/daemonset.yaml")).unwrap();
    let line = ds
        .lines()
        .find(|l| l.trim_start().starts_with("add: ["))
        .expect("capabilities.add in the DaemonSet");
    assert!(ds.contains("drop: [\"ALL\"]"), "the DaemonSet drops ALL first");
    line.split('[')
        .nth(1)
        .unwrap()
        .trim_end_matches(']')
        .split(',')
        .map(|c| c.trim().trim_matches('"').to_lowercase())
        .collect()
}

/// `setpriv` arguments that keep only `caps` (as root, permitted = effective = the bounding set).
fn setpriv(caps: &[String]) -> Vec<String> {
    let set: String = std::iter::once("-all".to_string())
        .chain(caps.iter().map(|c| format!("+{c}")))
        .collect::<Vec<_>>()
        .join(",");
    vec![
        "setpriv".into(),
        format!("--bounding-set={set}"),
        "--inh-caps=-all".into(),
        "--no-new-privs".into(),
        "--".into(),
    ]
}

/// The effective capability mask of a process.
fn cap_eff(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let hex = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .unwrap()
        .trim();
    u64::from_str_radix(hex, 16).unwrap()
}

/// Bit numbers from linux/capability.h.
fn cap_bit(name: &str) -> u64 {
    match name {
        "dac_read_search" => 1 << 2,
        "sys_ptrace" => 1 << 19,
        other => panic!("unexpected capability {other}"),
    }
}

#[test]
#[allow(clippy::too_many_lines)] // a scenario test that reads top to bottom
fn the_agent_works_with_the_granted_capabilities_and_degrades_without_ptrace() {
    let Some(lab) = Lab::start("capabilities") else {
        return;
    };
    if !require("umoci", "capabilities") || !require("setpriv", "capabilities") {
        return;
    }
    let caps = granted();
    assert_eq!(caps, vec!["sys_ptrace", "dac_read_search"]);
    let tmp = tempfile::tempdir().unwrap();
    // Two images: one whose blobs stay (read from the content store), one whose layer blob is
    // removed (only the running container's root can tell what it holds).
    let root = unpack_alpine("3.20.3", tmp.path());
    let (_, kept) = umoci_archive(&root, tmp.path());
    lab.import(&kept, "example.org/kept");
    let old = unpack_alpine("3.16.9", tmp.path());
    let (layout, gone) = umoci_archive(&old, tmp.path());
    lab.import(&gone, "example.org/gone");
    lab.run_container(
        "kept",
        "example.org/kept:latest",
        &[("io.kubernetes.pod.name", "kept-0")],
    );
    lab.run_container(
        "gone",
        "example.org/gone:latest",
        &[("io.kubernetes.pod.name", "gone-0")],
    );
    // And a container of another user: without SYS_PTRACE the kernel refuses the agent its
    // maps and root by uid alone (ptrace access mode), not only by capability.
    lab.run_container_with(
        "other",
        "example.org/kept:latest",
        &[("io.kubernetes.pod.name", "other-0")],
        &["--user", "1000:1000"],
    );
    lab.ctr(&["content", "rm", &first_layer(&layout)]);

    let site = tmp.path().join("site");
    // A record for each image's release: a release the mirror has no record for is
    // `no_advisory_feed`, not `ok`.
    let records = [
        ("ALPINE-CVE-2024-9143.json", ALPINE_9143),
        ("ALPINE-CVE-2023-42366.json", ALPINE_42366),
    ];
    write_osv_zip(&site, "Alpine", &records);
    let mirror = Mirror::start(site);
    let ok = |a: &Agent, pod: &str| {
        value(
            &a.metrics(),
            "stalewatch_container_scan_status",
            &[("pod", pod), ("status", "ok")],
        ) == Some(1.0)
    };

    // Exactly the manifest's set: both images inventoried, the second from /proc/<pid>/root.
    let wrapper = setpriv(&caps);
    let w: Vec<&str> = wrapper.iter().map(String::as_str).collect();
    let args = [
        "--unpacked-fallback",
        "proc",
        "--drift-interval",
        "1s",
        "--reconcile-interval",
        "1s",
    ];
    let agent = Agent::start_under(&w, &lab.sock, &tmp.path().join("granted"), &mirror.url(), &args);
    let want: u64 = caps.iter().map(|c| cap_bit(c)).sum();
    assert_eq!(
        cap_eff(agent.pid()),
        want,
        "the agent runs with exactly the granted set"
    );
    agent.wait_for("both images inventoried", Duration::from_secs(30), |a| {
        ok(a, "kept-0") && ok(a, "gone-0")
    });
    // The runtime checks work with this set too: drift and packages in use.
    // (for the other user's container too: SYS_PTRACE is what lets the agent read it).
    agent.wait_for("drift and in-use known", Duration::from_secs(30), |a| {
        let m = a.metrics();
        ["kept-0", "other-0"].iter().all(|pod| {
            value(
                &m,
                "stalewatch_container_drift_packages",
                &[("pod", pod), ("change", "added")],
            ) == Some(0.0)
                && value(
                    &m,
                    "stalewatch_container_vulnerabilities_in_use",
                    &[("pod", pod), ("severity", "critical")],
                )
                .is_some()
        })
    });
    let doc: serde_json::Value = serde_json::from_str(&agent.findings().1).unwrap();
    let checked = serde_json::json!({"state": "ok"});
    assert_eq!(
        container_of(&doc, "other-0")["runtime_checks"],
        serde_json::json!({"in_use": checked, "drift": checked})
    );
    agent.stop();

    // Without SYS_PTRACE: the container's root is refused; that image fails with a reason,
    // the other is still scanned, metrics and readiness keep working.
    let fewer: Vec<String> = caps.iter().filter(|c| *c != "sys_ptrace").cloned().collect();
    let wrapper = setpriv(&fewer);
    let w: Vec<&str> = wrapper.iter().map(String::as_str).collect();
    let agent = Agent::start_under(&w, &lab.sock, &tmp.path().join("fewer"), &mirror.url(), &args);
    assert_eq!(cap_eff(agent.pid()), cap_bit("dac_read_search"));
    agent.wait_for("gone-0 failed, kept-0 ok", Duration::from_secs(30), |a| {
        ok(a, "kept-0")
            && value(
                &a.metrics(),
                "stalewatch_container_scan_status",
                &[("pod", "gone-0"), ("status", "failed")],
            ) == Some(1.0)
    });
    let m = agent.metrics();
    // The blobs are gone and the /proc fallback is refused: the layers are missing, not a
    // broken content store.
    let content = value(
        &m,
        "stalewatch_scan_errors_total",
        &[("reason", "layers_missing")],
    );
    assert!(content.is_some_and(|v| v >= 1.0), "the failure is counted:\n{m}");
    // No drift or in-use without it: counted as drift_read, never guessed.
    assert!(!m.contains("stalewatch_container_drift_packages{"), "{m}");
    assert!(!m.contains("stalewatch_container_vulnerabilities_in_use{"), "{m}");
    agent.wait_for("drift reads refused and counted", Duration::from_secs(30), |a| {
        value(
            &a.metrics(),
            "stalewatch_scan_errors_total",
            &[("reason", "drift_read")],
        )
        .is_some_and(|v| v >= 1.0)
    });
    // Counted as runtime-check errors too, with the kernel's verdict: `denied`.
    let m = agent.metrics();
    for check in ["in_use", "drift"] {
        let n = value(
            &m,
            "stalewatch_runtime_check_errors_total",
            &[("check", check), ("reason", "denied")],
        );
        assert!(n.is_some_and(|n| n >= 1.0), "{check}: {n:?}\n{m}");
    }
    assert_eq!(agent.get("/readyz").0, 200);
    let doc: serde_json::Value = serde_json::from_str(&agent.findings().1).unwrap();
    // Shown on the container whose image was scanned: its checks are unknown, and why.
    let kept = container_of(&doc, "kept-0");
    assert_eq!(kept["scan_status"], "ok", "{kept:#}");
    let denied = serde_json::json!({"state": "unknown", "reason": "denied"});
    assert_eq!(
        kept["runtime_checks"],
        serde_json::json!({"in_use": denied, "drift": denied}),
        "{kept:#}"
    );
    let other = container_of(&doc, "other-0");
    assert_eq!(other["scan_status"], "ok", "{other:#}");
    assert_eq!(
        other["runtime_checks"],
        serde_json::json!({"in_use": denied, "drift": denied}),
        "{other:#}"
    );
    let gone = container_of(&doc, "gone-0");
    assert_eq!(gone["scan_status"], "failed");
    let error = gone["error"].as_str().unwrap_or_default();
    assert!(error.contains("not found in the content store"), "{gone:#}");
    agent.stop();
}
