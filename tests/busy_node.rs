//! Real nodes, busy and sandboxed, on a real containerd:
//! - 150 running containers whose specs (large environments, as service-link variables make
//!   them) total more than 16 MiB — containerd's own default reply limit, so one `List` reply
//!   cannot carry them whatever the client accepts: every container is inventoried (the agent
//!   lists with `ListStream`, one record per message);
//! - a container whose runtime name is Kata's (the runc shim installed under Kata's name, so it
//!   really runs): no `/proc` read is made for it — a package added inside it is never seen as
//!   drift, while the same change in a runc container is — its checks say `sandboxed`, and its
//!   image is scanned as any other.

mod common;

use common::agent::{count, value, Agent};
use common::containerd::Lab;
use common::mirror::Mirror;
use common::*;
use std::path::Path;
use std::time::Duration;

const ALPINE_9143: &[u8] = include_bytes!("fixtures/osv/ALPINE-CVE-2024-9143.json");
const ALPINE_42366: &[u8] = include_bytes!("fixtures/osv/ALPINE-CVE-2023-42366.json");
const CONTAINERS: usize = 150;
/// Bytes of environment per container: 150 × 120 KiB ≈ 17.6 MiB of specs.
const ENV_BYTES: usize = 120 << 10;

/// Alpine 3.20.3 imported as `example.org/alpine:latest`, and a mirror with records for it.
fn lab_with_alpine(test: &str, tmp: &Path) -> Option<(Lab, Mirror)> {
    let lab = Lab::start(test)?;
    if !require("umoci", test) {
        return None;
    }
    lab.import_alpine(tmp, "3.20.3", "example.org/alpine");
    let site = tmp.join("site");
    write_osv_zip(
        &site,
        "Alpine",
        &[
            ("ALPINE-CVE-2024-9143.json", ALPINE_9143),
            ("ALPINE-CVE-2023-42366.json", ALPINE_42366),
        ],
    );
    Some((lab, Mirror::start(site)))
}

/// An environment file of about `bytes`: Kubernetes service-link variables for made-up
/// Services (`<NAME>_SERVICE_HOST`, `_PORT`, `_PORT_<N>_TCP…`), as a namespace with many
/// Services gives every container.
fn service_links(path: &Path, bytes: usize) {
    let mut text = String::new();
    let mut i = 0;
    while text.len() < bytes {
        let name = format!("BACKEND_SERVICE_NUMBER_{i:05}");
        let ip = format!("198.19.{}.{}", (i / 250) % 250, i % 250 + 1);
        text.push_str(&format!(
            "{name}_SERVICE_HOST={ip}\n{name}_SERVICE_PORT=8080\n{name}_PORT=tcp://{ip}:8080\n{name}_PORT_8080_TCP=tcp://{ip}:8080\n{name}_PORT_8080_TCP_PROTO=tcp\n{name}_PORT_8080_TCP_ADDR={ip}\n"
        ));
        i += 1;
    }
    std::fs::write(path, text).unwrap();
}

#[test]
fn every_container_of_a_busy_node_is_inventoried_whatever_its_specs_weigh() {
    let test = "busy node";
    let tmp = tempfile::tempdir().unwrap();
    let Some((lab, mirror)) = lab_with_alpine(test, tmp.path()) else {
        return;
    };
    let env = tmp.path().join("service-links.env");
    service_links(&env, ENV_BYTES);
    let env_arg = format!("--env-file={}", env.display());
    for i in 0..CONTAINERS {
        let pod = format!("busy-{i:03}");
        lab.run_container_with(
            &pod,
            "example.org/alpine:latest",
            &[
                ("io.kubernetes.pod.name", &pod),
                ("io.kubernetes.pod.namespace", "busy"),
                ("io.kubernetes.container.name", "app"),
            ],
            &[&env_arg],
        );
    }
    // The oracle of the weight: containerd's own records, one `ctr containers info` each.
    let mut spec_bytes = 0;
    for i in [0, CONTAINERS / 2, CONTAINERS - 1] {
        let info = lab.ctr(&["containers", "info", &format!("busy-{i:03}")]);
        spec_bytes += info.stdout.len();
    }
    let total = spec_bytes / 3 * CONTAINERS;
    assert!(
        total > 16 << 20,
        "the specs weigh {total} bytes: not more than containerd's 16 MiB reply limit"
    );
    let agent = Agent::start(
        &lab.sock,
        &tmp.path().join("state"),
        &mirror.url(),
        &["--reconcile-interval", "2s"],
    );
    let all_ok = |a: &Agent| {
        count(
            &a.metrics(),
            "stalewatch_container_scan_status",
            &[("namespace", "busy"), ("status", "ok")],
        ) == CONTAINERS
    };
    agent.wait_for(
        "every busy container inventoried",
        Duration::from_secs(120),
        all_ok,
    );
    let m = agent.metrics();
    let failed: usize = m
        .lines()
        .filter(|l| l.starts_with("stalewatch_containerd_list_failures_total{") && !l.ends_with(" 0"))
        .count();
    assert_eq!(failed, 0, "no list failed:\n{m}");
    assert_eq!(value(&m, "stalewatch_containerd_up", &[]), Some(1.0));
    // One image, read once, for all of them.
    assert_eq!(
        value(&m, "stalewatch_image_reads_total", &[("source", "content")]),
        Some(1.0)
    );
}

#[test]
#[allow(clippy::too_many_lines)] // a scenario test that reads top to bottom
fn a_sandboxed_runtime_gets_no_proc_reads_and_its_image_is_still_scanned() {
    let test = "sandboxed runtime";
    let tmp = tempfile::tempdir().unwrap();
    let Some((lab, mirror)) = lab_with_alpine(test, tmp.path()) else {
        return;
    };
    lab.shim_alias("kata");
    for (pod, runtime) in [
        ("kata-0", "io.containerd.kata.v2"),
        ("runc-0", "io.containerd.runc.v2"),
    ] {
        lab.run_container_with(
            pod,
            "example.org/alpine:latest",
            &[("io.kubernetes.pod.name", pod)],
            &["--runtime", runtime],
        );
    }
    let info = String::from_utf8_lossy(&lab.ctr(&["containers", "info", "kata-0"]).stdout).into_owned();
    let info: serde_json::Value = serde_json::from_str(&info).unwrap();
    assert_eq!(info["Runtime"]["Name"], "io.containerd.kata.v2", "{info:#}");
    // The same package added inside both: drift in the runc container only.
    for id in ["kata-0", "runc-0"] {
        lab.ctr(&[
            "tasks",
            "exec",
            "--exec-id",
            "drift",
            id,
            "sh",
            "-c",
            "printf 'P:sandboxed-drift\\nV:1.0-r0\\nA:x86_64\\no:sandboxed-drift\\n\\n' >> /lib/apk/db/installed",
        ]);
    }
    let agent = Agent::start(
        &lab.sock,
        &tmp.path().join("state"),
        &mirror.url(),
        &["--drift-interval", "1s", "--reconcile-interval", "1s"],
    );
    let added = |m: &str, pod: &str| {
        value(
            m,
            "stalewatch_container_drift_packages",
            &[("pod", pod), ("change", "added")],
        )
    };
    agent.wait_for("the runc container's drift", Duration::from_secs(60), |a| {
        added(&a.metrics(), "runc-0") == Some(1.0)
    });
    // Several passes later: still nothing read of the sandboxed one.
    std::thread::sleep(Duration::from_secs(3));
    let m = agent.metrics();
    assert_eq!(added(&m, "kata-0"), None, "no drift read for kata-0:\n{m}");
    assert!(
        !m.lines()
            .any(|l| l.starts_with("stalewatch_container_vulnerabilities_in_use{")
                && l.contains("pod=\"kata-0\"")),
        "no maps read for kata-0:\n{m}"
    );
    for check in ["in_use", "drift"] {
        let n = value(
            &m,
            "stalewatch_runtime_check_errors_total",
            &[("check", check), ("reason", "sandboxed")],
        );
        assert!(n.is_some_and(|n| n >= 2.0), "{check}: {n:?}\n{m}");
    }
    // The image's findings are intact: the same as the runc container's.
    for pod in ["kata-0", "runc-0"] {
        assert_eq!(
            value(
                &m,
                "stalewatch_container_scan_status",
                &[("pod", pod), ("status", "ok")]
            ),
            Some(1.0),
            "{pod}:\n{m}"
        );
    }
    let doc: serde_json::Value = serde_json::from_str(&agent.findings().1).unwrap();
    let (kata, runc) = (container_of(&doc, "kata-0"), container_of(&doc, "runc-0"));
    let found = |c: &serde_json::Value| string_pairs(&c["report"]["findings"], "id", "package");
    assert!(!found(&kata).is_empty(), "{kata:#}");
    assert_eq!(
        found(&kata),
        found(&runc),
        "the sandboxed container's findings are its image's"
    );
    let sandboxed = serde_json::json!({"state": "unknown", "reason": "sandboxed"});
    assert_eq!(
        kata["runtime_checks"],
        serde_json::json!({"in_use": sandboxed, "drift": sandboxed}),
        "{kata:#}"
    );
    assert_eq!(runc["runtime_checks"]["drift"]["state"], "ok", "{runc:#}");
    assert_eq!(runc["runtime_checks"]["in_use"]["state"], "ok", "{runc:#}");
    // Its start time comes from containerd's record, not from procfs (the VM's, on Kata).
    assert!(kata["started_at"].is_string(), "{kata:#}");
}
