//! Nodes that discard layer blobs after unpacking them (EKS, GKE: containerd's
//! `discard_unpacked_layers`): the content store keeps index, manifest and config, the layers
//! exist only as snapshots. On the containerd series `STALEWATCH_CONTAINERD` names, the same
//! images are read twice — from a lab that keeps the blobs, and from one where every layer
//! blob was removed after unpack (the same end state) — and the agent must say the same:
//! findings with their `introduced_layer` and `in_base`, the base, the rebuild a newer base
//! (imported, not running: read through a snapshot view) would bring. `scan containerd:REF`
//! too. The oracle is the read with blobs, itself checked against scans of the OCI layouts
//! (tests/lineage.rs, tests/rebuild_signal.rs).

mod common;

use common::agent::{value, Agent};
use common::buildah::{layout_layers, rebuild_images, Buildah};
use common::containerd::Lab;
use common::mirror::Mirror;
use common::*;
use std::path::{Path, PathBuf};
use std::time::Duration;

const POD: &str = "app-0";

/// What must not change with the blobs gone: per finding (id, package, version, fixed,
/// introduced_layer, in_base), and the report's base and rebuild.
fn essentials(report: &serde_json::Value) -> serde_json::Value {
    let mut findings: Vec<serde_json::Value> = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            serde_json::json!([
                f["id"],
                f["package"],
                f["version"],
                f["fixed_version"],
                f["introduced_layer"],
                f["in_base"]
            ])
        })
        .collect();
    findings.sort_by_key(|v| v.to_string());
    let mut packages: Vec<serde_json::Value> = report["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| serde_json::json!([p["name"], p["version"], p["layer"], p["introduced_layer"]]))
        .collect();
    packages.sort_by_key(|v| v.to_string());
    serde_json::json!({
        "findings": findings,
        "packages": packages,
        "base": report["base"],
        "rebuild": report["rebuild"],
    })
}

/// Removes the layer blobs of OCI layouts from the content store, as a node that discards
/// unpacked layers holds them.
fn discard(lab: &Lab, layouts: &[&Path]) {
    let mut layers: Vec<String> = layouts.iter().flat_map(|dir| layout_layers(dir)).collect();
    layers.sort();
    layers.dedup();
    for l in &layers {
        lab.ctr(&["content", "rm", l]);
    }
    let left = String::from_utf8_lossy(&lab.ctr(&["content", "ls", "-q"]).stdout).into_owned();
    assert!(layers.iter().all(|l| !left.contains(l.as_str())), "{left}");
}

/// The node and its agent (restarted on its state) through the rebuild: base:1 and app:1
/// imported, the app run, the agent learns the app's base; then the rebuilt base:1 arrives
/// (not run) and the agent comes back. With `discarding`, every layer blob is removed right
/// after its import. Returns (the app's /v1/findings container, the first agent's metrics,
/// the second agent's metrics).
fn through_the_rebuild(
    lab: &Lab,
    images: &[(PathBuf, PathBuf); 3],
    discarding: bool,
    state: &Path,
    mirror: &Mirror,
) -> (serde_json::Value, String, String) {
    let [(base_dir, base_tar), (app_dir, app_tar), (new_dir, new_tar)] = images;
    lab.import(base_tar, "localhost/base");
    lab.import(app_tar, "localhost/app");
    if discarding {
        discard(lab, &[base_dir, app_dir]);
    }
    lab.run_container(
        "app",
        "localhost/app:1",
        &[
            ("io.kubernetes.pod.name", POD),
            ("io.kubernetes.pod.namespace", "shop"),
            ("io.kubernetes.container.name", "app"),
        ],
    );
    let agent = Agent::start(&lab.sock, state, &mirror.url(), &[]);
    agent.wait_for("the app's base known", Duration::from_secs(60), |a| {
        value(
            &a.metrics(),
            "stalewatch_image_base_info",
            &[("base_name", "localhost/base:1"), ("detected_by", "label")],
        ) == Some(1.0)
    });
    let first = agent.metrics();
    agent.stop();
    lab.import(new_tar, "localhost/base");
    if discarding {
        discard(lab, &[new_dir]);
    }
    let agent = Agent::start(&lab.sock, state, &mirror.url(), &[]);
    let rebuilt = |a: &Agent| {
        value(
            &a.metrics(),
            "stalewatch_image_rebuild_fixable_vulnerabilities",
            &[("image", "localhost/app:1"), ("base_name", "localhost/base:1")],
        )
        .is_some_and(|v| v > 0.0)
    };
    agent.wait_for(
        "the rebuild a newer base brings",
        Duration::from_secs(60),
        rebuilt,
    );
    let doc: serde_json::Value = serde_json::from_str(&agent.findings().1).unwrap();
    let second = agent.metrics();
    agent.stop();
    (container_of(&doc, POD), first, second)
}

fn scan_containerd(lab: &Lab, db: &Path) -> serde_json::Value {
    let out = scan_json_with(
        "containerd:localhost/app:1",
        db,
        &["--containerd-address", lab.sock.to_str().unwrap()],
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Snapshots and leases the agent or a scan left behind (their names say stalewatch).
fn views_left(lab: &Lab) -> String {
    let snaps = String::from_utf8_lossy(&lab.ctr(&["snapshots", "ls"]).stdout).into_owned();
    let leases = String::from_utf8_lossy(&lab.ctr(&["leases", "ls"]).stdout).into_owned();
    format!("{snaps}{leases}")
        .lines()
        .filter(|l| l.contains("stalewatch-view"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
#[allow(clippy::too_many_lines)] // a scenario test that reads top to bottom
fn images_whose_layer_blobs_are_gone_read_whole_from_their_snapshots() {
    let test = "discarded layers";
    let Some(b) = Buildah::new(test) else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let images = rebuild_images(&b, tmp.path());
    let db = tmp.path().join("db");
    shared_db(&db, &["Alpine"]);
    let mirror = Mirror::start(shared_data().join("osv"));

    // The oracle: the same node with its blobs.
    let Some(with_blobs) = Lab::start(test) else {
        return;
    };
    let state = tmp.path().join("state-blobs");
    let (expected, first, second) = through_the_rebuild(&with_blobs, &images, false, &state, &mirror);
    assert_eq!(expected["read_from"], "content");
    // Nothing changed inside the container, before or after the agent's restart.
    let no_drift = serde_json::json!({"added": [], "changed": [], "removed": []});
    assert_eq!(expected["drift"], no_drift);
    let reads = |m: &str, source: &str| value(m, "stalewatch_image_reads_total", &[("source", source)]);
    assert_eq!(reads(&first, "content"), Some(1.0), "the app: {first}");
    assert_eq!(reads(&second, "content"), Some(1.0), "the newer base: {second}");
    let report = &expected["report"];
    assert!(
        report["findings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["in_base"] == true),
        "{report:#}"
    );
    assert!(report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .all(|f| f["introduced_layer"].is_string()));
    let scan_expected = scan_containerd(&with_blobs, &db);
    drop(with_blobs);

    // The node that discards its layer blobs.
    let discarded = Lab::start(test).unwrap();
    let state = tmp.path().join("state-discarded");
    let (got, first, second) = through_the_rebuild(&discarded, &images, true, &state, &mirror);
    assert_eq!(essentials(&got["report"]), essentials(report), "{got:#}");
    assert_eq!(got["scan_status"], "ok");
    assert_eq!(got["drift"], no_drift);
    assert_eq!(
        got["read_from"], "snapshot",
        "the running app is read from its snapshot"
    );
    for (m, source, n) in [
        (&first, "snapshot", 1.0),
        (&first, "content", 0.0),
        (&second, "view", 1.0),
        (&second, "snapshot", 0.0),
        (&second, "content", 0.0),
        (&second, "proc", 0.0),
    ] {
        assert_eq!(reads(m, source), Some(n), "{source}: {m}");
    }
    assert_eq!(
        value(
            &second,
            "stalewatch_snapshot_views_total",
            &[("result", "removed")]
        ),
        Some(1.0),
        "{second}"
    );
    assert!(
        !got["report"]["unreadable"]
            .as_array()
            .unwrap()
            .iter()
            .any(|u| u["reason"] == "blobs_missing"),
        "read whole, nothing is missing: {got:#}"
    );
    assert_eq!(views_left(&discarded), "", "the view and its lease are removed");

    // `scan containerd:REF` reads the same through a view of its own.
    let scanned = scan_containerd(&discarded, &db);
    assert_eq!(essentials(&scanned), essentials(&scan_expected));
    assert_eq!(views_left(&discarded), "");
    // The layers were really gone: a blob read of one fails.
    let first = layout_layers(&images[1].0).remove(0);
    let out = std::process::Command::new(discarded.ctr_binary())
        .args([
            "-a",
            discarded.sock.to_str().unwrap(),
            "-n",
            "k8s.io",
            "content",
            "get",
            &first,
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
}

#[test]
fn an_image_with_no_blob_and_no_snapshot_is_layers_missing() {
    let test = "layers missing";
    let Some(lab) = Lab::start(test) else {
        return;
    };
    if !require("umoci", test) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let root = unpack_alpine("3.20.3", tmp.path());
    let (layout, archive) = umoci_archive(&root, tmp.path());
    lab.import(&archive, "example.org/gone");
    lab.run_container(
        "gone",
        "example.org/gone:latest",
        &[
            ("io.kubernetes.pod.name", "gone-0"),
            ("io.kubernetes.pod.namespace", "shop"),
            ("io.kubernetes.container.name", "app"),
        ],
    );
    lab.ctr(&["content", "rm", &first_layer(&layout)]);
    let mirror = Mirror::start(shared_data().join("osv"));
    let agent = Agent::start(
        &lab.sock,
        &tmp.path().join("state"),
        &mirror.url(),
        &["--unpacked-fallback", "none"],
    );
    agent.wait_for("the scan failed", Duration::from_secs(60), |a| {
        value(
            &a.metrics(),
            "stalewatch_scan_errors_total",
            &[("reason", "layers_missing")],
        ) == Some(1.0)
    });
    let m = agent.metrics();
    assert_eq!(
        value(&m, "stalewatch_scan_errors_total", &[("reason", "content_read")]),
        None,
        "a missing blob is not a broken containerd: {m}"
    );
    let doc: serde_json::Value = serde_json::from_str(&agent.findings().1).unwrap();
    let c = container_of(&doc, "gone-0");
    assert_eq!(c["scan_status"], "failed");
    assert!(c.get("read_from").is_none(), "{c:#}");
}
