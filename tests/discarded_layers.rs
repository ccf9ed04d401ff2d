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
use common::buildah::{layout_layers, rebuild_images, rebuild_images_in, Buildah};
use common::containerd::Lab;
use common::cri::Cri;
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

/// The agent's first run on a node where the app runs: until it knows the app's base
/// (`repo/base:1`, by its label). Returns its metrics.
fn agent_learns_the_base(lab: &Lab, repo: &str, state: &Path, mirror: &Mirror) -> String {
    let agent = Agent::start(&lab.sock, state, &mirror.url(), &[]);
    let base = format!("{repo}/base:1");
    agent.wait_for("the app's base known", Duration::from_secs(60), |a| {
        value(
            &a.metrics(),
            "stalewatch_image_base_info",
            &[("base_name", base.as_str()), ("detected_by", "label")],
        ) == Some(1.0)
    });
    let m = agent.metrics();
    agent.stop();
    m
}

/// The agent back on its state once the rebuilt base is on the node: until it tells the
/// rebuild. Returns (the app's /v1/findings container, its metrics).
fn agent_tells_the_rebuild(
    lab: &Lab,
    repo: &str,
    state: &Path,
    mirror: &Mirror,
) -> (serde_json::Value, String) {
    let agent = Agent::start(&lab.sock, state, &mirror.url(), &[]);
    let (app, base) = (format!("{repo}/app:1"), format!("{repo}/base:1"));
    let rebuilt = |a: &Agent| {
        value(
            &a.metrics(),
            "stalewatch_image_rebuild_fixable_vulnerabilities",
            &[("image", app.as_str()), ("base_name", base.as_str())],
        )
        .is_some_and(|v| v > 0.0)
    };
    agent.wait_for(
        "the rebuild a newer base brings",
        Duration::from_secs(60),
        rebuilt,
    );
    let doc: serde_json::Value = serde_json::from_str(&agent.findings().1).unwrap();
    let m = agent.metrics();
    agent.stop();
    (container_of(&doc, POD), m)
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
    let first = agent_learns_the_base(lab, "localhost", state, mirror);
    lab.import(new_tar, "localhost/base");
    if discarding {
        discard(lab, &[new_dir]);
    }
    let (app, second) = agent_tells_the_rebuild(lab, "localhost", state, mirror);
    (app, first, second)
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
    let layout = lab.import_alpine(tmp.path(), "3.20.3", "example.org/gone");
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

/// Whether a lab's content store holds any layer blob of these layouts.
fn holds_layers(lab: &Lab, layouts: &[&Path]) -> bool {
    let held = String::from_utf8_lossy(&lab.ctr(&["content", "ls", "-q"]).stdout).into_owned();
    layouts
        .iter()
        .flat_map(|l| layout_layers(l))
        .any(|l| held.contains(&l))
}

/// Waits until the garbage collector has removed the layer blobs a pull released (it runs
/// after the pull returns).
fn blobs_discarded(lab: &Lab, layouts: &[&Path]) -> bool {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while holds_layers(lab, layouts) {
        if std::time::Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    true
}

/// CRI pods a test started, removed on drop (their shims must not outlive the lab).
struct Pods<'a>(Vec<(Cri, String, String)>, std::marker::PhantomData<&'a ()>);

impl Drop for Pods<'_> {
    fn drop(&mut self) {
        for (cri, sandbox, container) in &self.0 {
            cri.remove_pod(sandbox, container);
        }
    }
}

/// The end state of EKS and GKE for real: containerd's CRI plugin with
/// `discard_unpacked_layers = true` pulls the images from a loopback registry (the PullImage
/// request the kubelet sends), unpacks them and drops their layer blobs; the app runs as a CRI
/// pod, the rebuilt base is pulled and does not run. The same pulls on a node that keeps its
/// blobs are the oracle.
#[test]
#[allow(clippy::too_many_lines)] // a scenario test that reads top to bottom
fn a_cri_pull_that_discards_layers_reads_as_one_that_keeps_them() {
    let test = "discarded layers: CRI pull";
    let Some(b) = Buildah::new(test) else {
        return;
    };
    let Some(registry) = common::Registry::start(test) else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let repo = registry.host.clone();
    let images = rebuild_images_in(&b, tmp.path(), &repo);
    let [(base_dir, _), (app_dir, _), (new_dir, _)] = &images;
    registry.push(base_dir, "base:1");
    registry.push(app_dir, "app:1");
    let mirror = Mirror::start(shared_data().join("osv"));
    let series = common::containerd::series();
    let Some(keeping) = Lab::start_with(test, &series, "") else {
        return;
    };
    let discarding = Lab::start_with(test, &series, "discard_unpacked_layers = true").unwrap();
    let pause = pause_archive(tmp.path());
    let mut pods = Pods(Vec::new(), std::marker::PhantomData);
    let labs = [
        (&keeping, tmp.path().join("state-keeping")),
        (&discarding, tmp.path().join("state-discarding")),
    ];
    for (lab, _) in &labs {
        lab.allow_registry(&repo);
        lab.import(&pause, "example.org/pause");
        let cri = Cri::connect(&lab.sock);
        cri.pull_image(&format!("{repo}/base:1"));
        cri.pull_image(&format!("{repo}/app:1"));
        let (sandbox, container) = cri.run_pod("shop", POD, "app", &format!("{repo}/app:1"));
        pods.0.push((cri, sandbox, container));
    }
    assert!(holds_layers(&keeping, &[app_dir]));
    assert!(
        blobs_discarded(&discarding, &[base_dir, app_dir]),
        "the CRI plugin discarded the blobs"
    );
    let firsts: Vec<String> = labs
        .iter()
        .map(|(lab, state)| agent_learns_the_base(lab, &repo, state, &mirror))
        .collect();
    // The rebuilt base reaches the registry and both nodes, and runs nowhere.
    registry.push(new_dir, "base:1");
    for (lab, _) in &labs {
        Cri::connect(&lab.sock).pull_image(&format!("{repo}/base:1"));
    }
    assert!(blobs_discarded(&discarding, &[new_dir]));
    let (expected, _) = agent_tells_the_rebuild(&keeping, &repo, &labs[0].1, &mirror);
    let (got, second) = agent_tells_the_rebuild(&discarding, &repo, &labs[1].1, &mirror);

    assert_eq!(expected["read_from"], "content");
    assert_eq!(got["read_from"], "snapshot");
    assert_eq!(
        essentials(&got["report"]),
        essentials(&expected["report"]),
        "{got:#}"
    );
    assert!(got["report"]["rebuild"]["fixed_by_rebuild"]
        .as_u64()
        .is_some_and(|n| n > 0));
    let reads = |m: &str, source: &str| value(m, "stalewatch_image_reads_total", &[("source", source)]);
    assert_eq!(reads(&firsts[1], "snapshot"), Some(1.0), "{}", firsts[1]);
    assert_eq!(reads(&second, "view"), Some(1.0), "{second}");
    assert_eq!(reads(&second, "content"), Some(0.0), "{second}");
    assert_eq!(
        value(
            &second,
            "stalewatch_snapshot_views_total",
            &[("result", "removed")]
        ),
        Some(1.0)
    );
    assert_eq!(views_left(&discarding), "", "the view and its lease are removed");
    drop(pods);
}

/// Unmounts what a test mounted over a path, on drop.
struct Unmount(Vec<PathBuf>);

impl Drop for Unmount {
    fn drop(&mut self) {
        for p in &self.0 {
            let _ = std::process::Command::new("umount").arg(p).status();
        }
    }
}

/// A snapshot the agent cannot see into — a lazily pulled layer not fetched yet, a FUSE mount
/// in another mount namespace — made here by mounting an empty tmpfs over the container
/// snapshot's lower directory in the agent's (the host's) mount namespace, while containerd's
/// private namespace and the container keep the real files: the snapshot read fails with
/// its own reason (`snapshot_empty`, never a clean `no_package_db`), the `proc` fallback then
/// reads what runs; without it the container is `failed`.
#[test]
fn an_empty_snapshot_is_a_failure_then_the_next_fallback() {
    let test = "empty snapshot";
    let Some(lab) = Lab::start(test) else {
        return;
    };
    if !require("umoci", test) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let layout = lab.import_alpine(tmp.path(), "3.20.3", "example.org/lazy");
    let labels = [
        ("io.kubernetes.pod.name", POD),
        ("io.kubernetes.pod.namespace", "shop"),
        ("io.kubernetes.container.name", "app"),
    ];
    lab.run_container("lazy", "example.org/lazy:latest", &labels);
    lab.ctr(&["content", "rm", &first_layer(&layout)]);
    let mounts =
        String::from_utf8_lossy(&lab.ctr(&["snapshots", "mounts", "/x", "lazy"]).stdout).into_owned();
    let lower: Vec<PathBuf> = mounts
        .split([',', ' '])
        .filter_map(|o| o.strip_prefix("lowerdir="))
        .flat_map(|l| l.split(':'))
        .map(PathBuf::from)
        .collect();
    assert!(!lower.is_empty(), "{mounts}");
    let mut guard = Unmount(Vec::new());
    for d in &lower {
        let st = std::process::Command::new("mount")
            .args(["-n", "-t", "tmpfs", "tmpfs"])
            .arg(d)
            .status()
            .unwrap();
        assert!(st.success());
        guard.0.push(d.clone());
    }
    let mirror = Mirror::start(shared_data().join("osv"));
    let status = |a: &Agent, s: &str| {
        value(
            &a.metrics(),
            "stalewatch_container_scan_status",
            &[("pod", POD), ("status", s)],
        ) == Some(1.0)
    };
    let empty = |m: &str| value(m, "stalewatch_scan_errors_total", &[("reason", "snapshot_empty")]);

    let agent = Agent::start(&lab.sock, &tmp.path().join("state-1"), &mirror.url(), &[]);
    agent.wait_for("ok through /proc", Duration::from_secs(60), |a| status(a, "ok"));
    let m = agent.metrics();
    assert_eq!(empty(&m), Some(1.0), "{m}");
    let doc: serde_json::Value = serde_json::from_str(&agent.findings().1).unwrap();
    let c = container_of(&doc, POD);
    assert_eq!(c["read_from"], "proc");
    assert_eq!(
        c["report"]["packages"].as_array().unwrap().len(),
        14,
        "alpine 3.20.3's packages"
    );
    agent.stop();

    let only = ["--unpacked-fallback", "snapshot"];
    let agent = Agent::start(&lab.sock, &tmp.path().join("state-2"), &mirror.url(), &only);
    agent.wait_for("failed", Duration::from_secs(60), |a| status(a, "failed"));
    let m = agent.metrics();
    assert!(!status(&agent, "no_package_db") && !status(&agent, "ok"), "{m}");
    assert_eq!(empty(&m), Some(1.0), "{m}");
    let doc: serde_json::Value = serde_json::from_str(&agent.findings().1).unwrap();
    let error = container_of(&doc, POD)["error"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(error.contains("hold no file"), "{error}");
    agent.stop();
    drop(guard);
}
