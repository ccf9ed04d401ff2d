//! The validated redeploy against a real kube-apiserver and a real containerd: Deployment,
//! ReplicaSet, StatefulSet and Pod objects as their controllers would make them (the lab's
//! control plane runs no workload controllers; `tests/cluster.rs` rolls one out on the lab
//! cluster), containers of those pods running `localhost/shop:1` on a private containerd.
//! Without the redeploy RBAC: one clear error, nothing changed. With it: dry-run changes
//! nothing and says what it would do; `on` pins the labelled workloads to the validated newer
//! digest with a `Redeployed` Event, leaves the unlabelled one, and loses cleanly to a human
//! edit made meanwhile; a newer build with a new critical finding is `RedeployBlocked`.

mod common;

use common::agent::{value, Agent};
use common::buildah::{alpine_installed_busybox_upgraded, Buildah};
use common::containerd::Lab;
use common::kube::KubeLab;
use common::mirror::Mirror;
use common::*;
use std::time::Duration;

const ALPINE_42366: &[u8] = include_bytes!("fixtures/osv/ALPINE-CVE-2023-42366.json");
const CRITICAL: &[u8] = include_bytes!("fixtures/osv/TEST-ALPINE-CRITICAL-0001.json");
const IMAGE: &str = "localhost/shop:1";

/// Pods as their controllers make them: owned (controller: true) by a ReplicaSet owned by a
/// Deployment, or by a StatefulSet. `{labels}` opts the workload in.
fn workload(kind: &str, name: &str, opted_in: bool) -> String {
    let labels = if opted_in {
        "{app: NAME, stalewatch.io/redeploy: stale-digest}"
    } else {
        "{app: NAME}"
    };
    let spec = format!(
        "  selector: {{matchLabels: {{app: NAME}}}}\n  template:\n    metadata: {{labels: {{app: NAME}}}}\n    spec:\n      containers: [{{name: app, image: \"{IMAGE}\"}}]\n"
    );
    let extra = if kind == "StatefulSet" {
        "  serviceName: NAME\n"
    } else {
        ""
    };
    format!("apiVersion: apps/v1\nkind: {kind}\nmetadata: {{name: NAME, namespace: shop, labels: {labels}}}\nspec:\n{extra}{spec}")
        .replace("NAME", name)
}

/// A child object owned (as its controller) by `owner`.
fn owned(kube: &KubeLab, kind: &str, owner: &str, body: &str) -> String {
    let uid = kube.kubectl(&["-n", "shop", "get", kind, owner, "-o", "jsonpath={.metadata.uid}"]);
    let api = if kind == "ReplicaSet" || kind == "Deployment" || kind == "StatefulSet" {
        "apps/v1"
    } else {
        "v1"
    };
    body.replace(
        "OWNER",
        &format!("[{{apiVersion: {api}, kind: {kind}, name: {owner}, uid: {uid}, controller: true}}]"),
    )
}

fn image_of(kube: &KubeLab, kind: &str, name: &str) -> String {
    kube.kubectl(&[
        "-n",
        "shop",
        "get",
        kind,
        name,
        "-o",
        "jsonpath={.spec.template.spec.containers[0].image}",
    ])
}

/// (reason, regarding kind/name, note) of stalewatch's Events in `shop`.
fn events(kube: &KubeLab) -> Vec<(String, String, String)> {
    let out = kube.kubectl(&["-n", "shop", "get", "events.events.k8s.io", "-o", "json"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    v["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["reportingController"] == "stalewatch")
        .map(|e| {
            (
                e["reason"].as_str().unwrap_or_default().to_string(),
                format!(
                    "{}/{}",
                    e["regarding"]["kind"].as_str().unwrap_or_default(),
                    e["regarding"]["name"].as_str().unwrap_or_default()
                ),
                e["note"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

fn redeploys(a: &Agent, result: &str) -> f64 {
    value(&a.metrics(), "stalewatch_redeploys_total", &[("result", result)]).unwrap_or(-1.0)
}

/// The manifest digest a one-image OCI archive's index names (what containerd's name resolves to).
fn archive_digest(b: &Buildah, name: &str, dir: &std::path::Path) -> (std::path::PathBuf, String) {
    std::fs::create_dir_all(dir).unwrap();
    let layout = b.oci_dir(name, &dir.join("layout"));
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    let archive = b.oci_archive(name, &dir.join("image.tar"));
    (
        archive,
        index["manifests"][0]["digest"].as_str().unwrap().to_string(),
    )
}

#[test]
#[allow(clippy::too_many_lines)] // a scenario test that reads top to bottom
fn labelled_workloads_are_pinned_to_validated_newer_builds_and_nothing_else_moves() {
    let test = "redeploy";
    let Some(kube) = KubeLab::start(test) else {
        return;
    };
    let Some(lab) = Lab::start(test) else {
        return;
    };
    let Some(b) = Buildah::new(test) else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    // v1 runs; v2 fixes busybox (fewer findings); v3 adds curl with a critical advisory.
    b.alpine("3.16.9", IMAGE);
    let (v1, _) = archive_digest(&b, IMAGE, &tmp.path().join("v1"));
    let patched = alpine_installed_busybox_upgraded();
    b.derive(
        IMAGE,
        &[("/lib/apk/db/installed", patched.as_bytes())],
        &[],
        IMAGE,
    );
    let (v2, v2_digest) = archive_digest(&b, IMAGE, &tmp.path().join("v2"));
    let with_curl = patched + "P:curl\nV:7.83.1-r0\nA:x86_64\no:curl\n\n";
    b.derive(
        IMAGE,
        &[("/lib/apk/db/installed", with_curl.as_bytes())],
        &[],
        IMAGE,
    );
    let (v3, v3_digest) = archive_digest(&b, IMAGE, &tmp.path().join("v3"));

    let sa = kube.agent_kubeconfig();
    kube.apply("apiVersion: v1\nkind: Node\nmetadata: {name: test-node}\n---\napiVersion: v1\nkind: Namespace\nmetadata: {name: shop}\n");
    for (kind, name, opted_in) in [
        ("Deployment", "web", true),
        ("Deployment", "plain", false),
        ("StatefulSet", "db", true),
    ] {
        kube.apply(&workload(kind, name, opted_in));
    }
    let rs = |name: &str| {
        format!("apiVersion: apps/v1\nkind: ReplicaSet\nmetadata: {{name: {name}-1, namespace: shop, ownerReferences: OWNER}}\nspec:\n  selector: {{matchLabels: {{app: {name}}}}}\n  template:\n    metadata: {{labels: {{app: {name}}}}}\n    spec:\n      containers: [{{name: app, image: \"{IMAGE}\"}}]\n")
    };
    let pod = |name: &str, app: &str| {
        format!("apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, namespace: shop, labels: {{app: {app}}}, ownerReferences: OWNER}}\nspec:\n  nodeName: test-node\n  automountServiceAccountToken: false\n  containers: [{{name: app, image: \"{IMAGE}\"}}]\n")
    };
    for name in ["web", "plain"] {
        kube.apply(&owned(&kube, "Deployment", name, &rs(name)));
        kube.apply(&owned(
            &kube,
            "ReplicaSet",
            &format!("{name}-1"),
            &pod(&format!("{name}-1-a"), name),
        ));
    }
    kube.apply(&owned(&kube, "StatefulSet", "db", &pod("db-0", "db")));

    lab.import(&v1, "localhost/shop");
    for p in ["web-1-a", "plain-1-a", "db-0"] {
        let labels = [
            ("io.kubernetes.pod.namespace", "shop"),
            ("io.kubernetes.pod.name", p),
            ("io.kubernetes.container.name", "app"),
        ];
        lab.run_container(p, IMAGE, &labels);
    }
    let site = tmp.path().join("site");
    write_osv_zip(
        &site,
        "Alpine",
        &[
            ("ALPINE-CVE-2023-42366.json", ALPINE_42366),
            ("TEST-ALPINE-CRITICAL-0001.json", CRITICAL),
        ],
    );
    let mirror = Mirror::start(site);
    let state = tmp.path().join("state");
    let start = |mode: &str| {
        let flags = [
            "--kube-events",
            "off",
            "--kubeconfig",
            sa.to_str().unwrap(),
            "--redeploy",
            mode,
            "--redeploy-interval",
            "1s",
        ];
        Agent::start(&lab.sock, &state, &mirror.url(), &flags)
    };

    // Without the redeploy RBAC: the owner walk is forbidden, said once, nothing changes.
    let agent = start("on");
    lab.import(&v2, "localhost/shop");
    agent.wait_for("forbidden counted", Duration::from_secs(60), |a| {
        redeploys(a, "forbidden") >= 3.0
    });
    let log = std::fs::read_to_string(&agent.log).unwrap();
    assert_eq!(
        log.matches("redeploy is forbidden").count(),
        1,
        "one clear RBAC error"
    );
    assert!(
        log.contains("deploy/components/redeploy"),
        "the error says the fix"
    );
    assert_eq!(
        value(
            &agent.metrics(),
            "stalewatch_container_scan_status",
            &[("pod", "web-1-a"), ("status", "ok")]
        ),
        Some(1.0)
    );
    agent.stop();
    kube.kubectl(&[
        "apply",
        "-f",
        &project()
            .join("deploy/components/redeploy/rbac.yaml")
            .display()
            .to_string(),
    ]);

    // dry-run: the patch is sent with dryRun=All; nothing changes; RedeployDryRun Events.
    let agent = start("dry-run");
    agent.wait_for("two dry runs", Duration::from_secs(60), |a| {
        redeploys(a, "dry_run") == 2.0
    });
    assert_eq!(redeploys(&agent, "not_opted_in"), 1.0, "plain is not labelled");
    for (kind, name) in [
        ("deployment", "web"),
        ("statefulset", "db"),
        ("deployment", "plain"),
    ] {
        assert_eq!(
            image_of(&kube, kind, name),
            IMAGE,
            "{kind}/{name} changed in a dry run"
        );
    }
    let ev = events(&kube);
    assert!(
        ev.iter()
            .any(|(r, o, _)| r == "RedeployDryRun" && o == "Deployment/web"),
        "{ev:?}"
    );
    assert!(
        ev.iter()
            .any(|(r, o, _)| r == "RedeployDryRun" && o == "StatefulSet/db"),
        "{ev:?}"
    );
    agent.stop();

    // on: a human edits db meanwhile (the precondition fails: left as the human set it); web
    // is pinned to the validated digest, with a Redeployed Event naming both digests.
    kube.kubectl(&[
        "-n",
        "shop",
        "set",
        "image",
        "statefulset/db",
        "app=localhost/shop:human",
    ]);
    let agent = start("on");
    agent.wait_for("web redeployed", Duration::from_secs(60), |a| {
        redeploys(a, "redeployed") == 1.0
    });
    agent.wait_for("db left to the human", Duration::from_secs(30), |a| {
        redeploys(a, "precondition_failed") == 1.0
    });
    let pinned = format!("{IMAGE}@{v2_digest}");
    assert_eq!(image_of(&kube, "deployment", "web"), pinned);
    assert_eq!(image_of(&kube, "statefulset", "db"), "localhost/shop:human");
    assert_eq!(image_of(&kube, "deployment", "plain"), IMAGE);
    let ev = events(&kube);
    let (_, _, note) = ev
        .iter()
        .find(|(r, o, _)| r == "Redeployed" && o == "Deployment/web")
        .expect("a Redeployed Event");
    assert!(note.contains(&v2_digest) && note.contains(&pinned), "{note}");

    // A newer build with a new critical finding: blocked, with the reason, on the pod.
    lab.import(&v3, "localhost/shop");
    agent.wait_for("blocked", Duration::from_secs(60), |a| {
        redeploys(a, "blocked") >= 2.0
    });
    assert_eq!(
        image_of(&kube, "deployment", "web"),
        pinned,
        "the spec is unchanged"
    );
    let ev = events(&kube);
    let (_, _, note) = ev
        .iter()
        .find(|(r, o, _)| r == "RedeployBlocked" && o == "Pod/web-1-a")
        .expect("a RedeployBlocked Event");
    assert!(
        note.contains("TEST-ALPINE-CRITICAL-0001 in curl") && note.contains(&v3_digest),
        "{note}"
    );
    assert!(
        !ev.iter()
            .any(|(_, o, _)| o.ends_with("/plain") || o == "Pod/plain-1-a"),
        "{ev:?}"
    );
}
