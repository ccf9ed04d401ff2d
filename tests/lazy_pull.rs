//! A real lazy pull (EKS's SOCI; AKS Artifact Streaming and GKE image streaming work alike):
//! Debian 13's SOCI snapshotter as containerd's proxy snapshotter, running in the lab
//! containerd's mount namespace; the image and its SOCI index in a loopback registry; the
//! container started before its layer is local. The content store never holds the layer
//! blob, the layer directory is a FUSE mount under the snapshotter's own root, visible in
//! that mount namespace only. Oracle: `scan` of the image's OCI layout (an eager read).
//! - the agent inside that mount namespace reads the snapshot: `ok`, the same findings;
//! - the agent outside it sees an empty directory: `snapshot_empty`, then `/proc`: `ok`, the
//!   same findings — never `no_package_db`.

mod common;

use common::agent::{value, Agent};
use common::containerd::Lab;
use common::mirror::Mirror;
use common::*;
use std::process::Command;
use std::time::Duration;

const POD: &str = "lazy-0";

#[test]
#[allow(clippy::too_many_lines)] // a scenario test that reads top to bottom
fn a_lazily_pulled_image_reads_the_same_inside_the_mount_namespace_and_through_proc_outside() {
    let test = "SOCI lazy pull";
    let Some(lab) = Lab::start(test) else {
        return;
    };
    if !require("umoci", test) {
        return;
    }
    let Some(registry) = Registry::start(test) else {
        return;
    };
    let Some(soci) = lab.start_soci(test) else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let root = unpack_alpine("3.16.9", tmp.path());
    let (layout, _) = umoci_archive(&root, tmp.path());
    registry.push(&layout, "lazy:1");
    let image = format!("{}/lazy:1", registry.host);

    // Index the image (an eager pull in a namespace of its own), push the index, then pull
    // lazily into the kubelet's namespace.
    let ctr = |ns: &str, args: &[&str]| {
        let out = Command::new("nsenter")
            .args(["-t", &lab.pid().to_string(), "-m", "--"])
            .arg(lab.ctr_binary())
            .arg("-a")
            .arg(&lab.sock)
            .args(["-n", ns])
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "ctr {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    ctr("indexing", &["images", "pull", "--plain-http", &image]);
    lab.soci(
        &soci,
        &[
            "--namespace",
            "indexing",
            "create",
            "--min-layer-size",
            "0",
            &image,
        ],
    );
    let pushed = lab.soci(
        &soci,
        &["--namespace", "indexing", "push", "--plain-http", &image],
    );
    let index = pushed
        .split(|c: char| c.is_whitespace() || c == '"' || c == ',')
        .find(|w| w.starts_with("sha256:"))
        .unwrap_or_else(|| panic!("no index digest in {pushed:?}"))
        .to_string();
    lab.soci(
        &soci,
        &[
            "--namespace",
            common::containerd::NAMESPACE,
            "image",
            "rpull",
            "--plain-http",
            "--soci-index-digest",
            &index,
            &image,
        ],
    );
    let layer = first_layer(&layout);
    let held = ctr(common::containerd::NAMESPACE, &["content", "ls", "-q"]);
    assert!(
        !held.contains(&layer),
        "a lazy pull leaves the layer blob out: {held}"
    );
    let labels = [
        ("io.kubernetes.pod.name", POD),
        ("io.kubernetes.pod.namespace", "shop"),
        ("io.kubernetes.container.name", "app"),
    ];
    lab.run_container_with("lazy", &image, &labels, &["--snapshotter", "soci"]);

    let db = tmp.path().join("db");
    shared_db(&db, &["Alpine"]);
    let eager = scan_json(&format!("oci:{}", layout.display()), &db);
    assert!(
        eager.status.success(),
        "{}",
        String::from_utf8_lossy(&eager.stderr)
    );
    let eager: serde_json::Value = serde_json::from_slice(&eager.stdout).unwrap();
    let expected = string_rows(
        &eager["findings"],
        &["id", "package", "installed_version", "fixed_version"],
    );
    assert!(!expected.is_empty());

    let mirror = Mirror::start(shared_data().join("osv"));
    let ok = |a: &Agent| {
        value(
            &a.metrics(),
            "stalewatch_container_scan_status",
            &[("pod", POD), ("status", "ok")],
        ) == Some(1.0)
    };
    let findings = |a: &Agent| -> (serde_json::Value, String) {
        let doc: serde_json::Value = serde_json::from_str(&a.findings().1).unwrap();
        (container_of(&doc, POD), a.metrics())
    };
    let empty = |m: &str| value(m, "stalewatch_scan_errors_total", &[("reason", "snapshot_empty")]);

    // Inside the mount namespace: the FUSE layer directory is there to read.
    let pid = lab.pid().to_string();
    let inside = ["nsenter", "-t", pid.as_str(), "-m", "--"];
    let agent = Agent::start_under(
        &inside,
        &lab.sock,
        &tmp.path().join("state-in"),
        &mirror.url(),
        &[],
    );
    agent.wait_for("ok from the snapshot", Duration::from_secs(90), ok);
    let (c, m) = findings(&agent);
    assert_eq!(c["read_from"], "snapshot", "{c:#}");
    assert_eq!(
        string_rows(
            &c["report"]["findings"],
            &["id", "package", "installed_version", "fixed_version"]
        ),
        expected
    );
    assert_eq!(empty(&m), None, "{m}");
    agent.stop();

    // Outside it: an empty directory, then what runs.
    let agent = Agent::start(&lab.sock, &tmp.path().join("state-out"), &mirror.url(), &[]);
    agent.wait_for("ok through /proc", Duration::from_secs(90), ok);
    let (c, m) = findings(&agent);
    assert_eq!(c["read_from"], "proc", "{c:#}");
    assert_eq!(
        string_rows(
            &c["report"]["findings"],
            &["id", "package", "installed_version", "fixed_version"]
        ),
        expected
    );
    assert_eq!(empty(&m), Some(1.0), "{m}");
    agent.stop();
    lab.stop_container("lazy");
    drop(soci);
}
