//! The agent against a real kube-apiserver (and a real containerd): the ServiceAccount and RBAC
//! of `deploy/` applied as they are, the agent authenticated with the token the controller-
//! manager issued to that ServiceAccount; Events on the pods of its node, no repeat for an
//! unchanged state, a series for a recurring one, Forbidden counted without the binding, and
//! an API server that is down does not stop the metrics. Also: every manifest of `deploy/`
//! renders and passes a server-side dry run.

mod common;

use common::agent::{count, value, Agent};
use common::containerd::Lab;
use common::kube::KubeLab;
use common::mirror::Mirror;
use common::*;
use std::path::Path;
use std::time::Duration;

const ALPINE_42366: &[u8] = include_bytes!("fixtures/osv/ALPINE-CVE-2023-42366.json");
/// `STALEWATCH_NOW` of the agent harness, 2026-11-29T00:00:00Z.
const NOW: i64 = 1_795_910_400;

fn write_mirror(dir: &Path) {
    write_osv_zip(dir, "Alpine", &[("ALPINE-CVE-2023-42366.json", ALPINE_42366)]);
}

/// A state directory whose agent first saw the busybox fix 30 days ago (the Alpine record has
/// no `published`): the fix age passes `--stale-after 7d`.
fn seeded_state(dir: &Path) -> std::path::PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let seen = NOW - 30 * 86400;
    std::fs::write(
        dir.join("fixes-first-seen.json"),
        format!(
            r#"{{"ALPINE-CVE-2023-42366 busybox 1.35.0-r18":{seen},"ALPINE-CVE-2023-42366 ssl_client 1.35.0-r18":{seen}}}"#
        ),
    )
    .unwrap();
    dir.to_path_buf()
}

fn events(kube: &KubeLab, namespace: &str) -> Vec<serde_json::Value> {
    let out = kube.kubectl(&["-n", namespace, "get", "events.v1.events.k8s.io", "-o", "json"]);
    let doc: serde_json::Value = serde_json::from_str(&out).unwrap();
    doc["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["reportingController"] == "stalewatch")
        .cloned()
        .collect()
}

fn kube_events(m: &str, reason: &str, result: &str) -> f64 {
    value(
        m,
        "stalewatch_kube_events_total",
        &[("reason", reason), ("result", result)],
    )
    .unwrap_or(-1.0)
}

/// `stalewatch_kube_events_total` of one result, over every reason.
fn kube_events_any(m: &str, result: &str) -> f64 {
    m.lines()
        .filter(|l| {
            l.starts_with("stalewatch_kube_events_total{") && l.contains(&format!("result=\"{result}\""))
        })
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum()
}

const PODS: &str = r#"
apiVersion: v1
kind: Node
metadata: {name: test-node}
---
apiVersion: v1
kind: Namespace
metadata: {name: shop}
---
apiVersion: v1
kind: Pod
metadata: {name: legacy-0, namespace: shop, labels: {app: legacy}}
spec:
  nodeName: test-node
  automountServiceAccountToken: false
  containers: [{name: api, image: example.org/legacy:latest}]
---
apiVersion: v1
kind: Pod
metadata: {name: legacy-1, namespace: shop, labels: {app: legacy}}
spec:
  nodeName: test-node
  automountServiceAccountToken: false
  containers: [{name: api, image: example.org/legacy:latest}]
---
apiVersion: v1
kind: Pod
metadata: {name: legacy-2, namespace: shop, labels: {app: legacy}}
spec:
  nodeName: test-node
  automountServiceAccountToken: false
  containers: [{name: api, image: example.org/legacy:latest}]
"#;

#[test]
#[allow(clippy::too_many_lines)] // a scenario test that reads top to bottom
fn events_on_this_nodes_pods_with_the_shipped_rbac() {
    let Some(mut kube) = KubeLab::start("kube events") else {
        return;
    };
    let Some(lab) = Lab::start("kube events") else {
        return;
    };
    if !require("umoci", "kube events") {
        return;
    }
    let sa = kube.agent_kubeconfig();
    kube.apply(PODS);
    let uid = kube.kubectl(&[
        "-n",
        "shop",
        "get",
        "pod",
        "legacy-0",
        "-o",
        "jsonpath={.metadata.uid}",
    ]);

    let tmp = tempfile::tempdir().unwrap();
    let root = unpack_alpine("3.16.9", tmp.path());
    let (_, archive) = umoci_archive(&root, tmp.path());
    lab.import(&archive, "example.org/legacy");
    let site = tmp.path().join("site");
    write_mirror(&site);
    let mirror = Mirror::start(site);
    let labels = |pod: &'static str, uid: Option<&'static str>| {
        let mut l = vec![
            ("io.kubernetes.pod.namespace", "shop"),
            ("io.kubernetes.pod.name", pod),
            ("io.kubernetes.container.name", "api"),
        ];
        if let Some(u) = uid {
            l.push(("io.kubernetes.pod.uid", u));
        }
        l
    };
    let uid: &'static str = Box::leak(uid.into_boxed_str());
    lab.run_container(
        "legacy-0-api",
        "example.org/legacy:latest",
        &labels("legacy-0", Some(uid)),
    );

    let args = [
        "--kube-events",
        "on",
        "--kubeconfig",
        sa.to_str().unwrap(),
        "--stale-after",
        "7d",
        // The Alpine record carries no severity: only `unknown` lets its fix count.
        "--stale-min-severity",
        "unknown",
    ];
    let state = seeded_state(&tmp.path().join("state"));
    let agent = Agent::start(&lab.sock, &state, &mirror.url(), &args);
    agent.wait_for("a StaleRuntime Event published", Duration::from_secs(30), |a| {
        kube_events(&a.metrics(), "StaleRuntime", "published") == 1.0
    });
    let evs = events(&kube, "shop");
    assert_eq!(evs.len(), 1, "{evs:#?}");
    let e = &evs[0];
    assert_eq!(e["type"], "Warning");
    assert_eq!(e["reason"], "StaleRuntime");
    assert_eq!(e["reportingInstance"], "test-node");
    assert_eq!(e["regarding"]["kind"], "Pod");
    assert_eq!(e["regarding"]["name"], "legacy-0");
    assert_eq!(e["regarding"]["uid"], uid);
    assert_eq!(e["regarding"]["fieldPath"], "spec.containers{api}");
    let note = e["note"].as_str().unwrap();
    assert!(note.len() <= 1024);
    assert!(
        note.contains("1 with a fix available for more than 7d")
            && note.contains("end-of-life base alpine 3.16.9")
            && note.contains("ALPINE-CVE-2023-42366"),
        "{note}"
    );
    assert!(e["series"].is_null(), "a first Event has no series: {e:#}");
    let first_name = e["metadata"]["name"].as_str().unwrap().to_string();
    agent.stop();

    // Restarted on its state: the announced state is not repeated (counted as suppressed).
    let agent = Agent::start(&lab.sock, &state, &mirror.url(), &args);
    agent.wait_for("the repeat suppressed", Duration::from_secs(30), |a| {
        kube_events(&a.metrics(), "StaleRuntime", "suppressed") == 1.0
    });
    let m = agent.metrics();
    assert_eq!(kube_events(&m, "StaleRuntime", "published"), 0.0);
    agent.stop();
    let evs = events(&kube, "shop");
    assert_eq!(evs.len(), 1);
    assert!(evs[0]["series"].is_null());

    // An agent that lost its state sees the same state again: one Event with a series.
    let state2 = seeded_state(&tmp.path().join("state2"));
    let agent = Agent::start(&lab.sock, &state2, &mirror.url(), &args);
    agent.wait_for("the same state as a series", Duration::from_secs(30), |a| {
        kube_events(&a.metrics(), "StaleRuntime", "series") == 1.0
    });
    let evs = events(&kube, "shop");
    assert_eq!(evs.len(), 1, "one Event, not two: {evs:#?}");
    assert_eq!(evs[0]["metadata"]["name"], first_name.as_str());
    assert_eq!(evs[0]["series"]["count"], 2);

    // Without the binding the API answers Forbidden: counted, metrics unaffected. The pod's
    // UID comes from the node's pod list here (no UID label), which is forbidden too.
    kube.kubectl(&["delete", "clusterrolebinding", "stalewatch"]);
    lab.run_container(
        "legacy-1-api",
        "example.org/legacy:latest",
        &labels("legacy-1", None),
    );
    agent.wait_for("Forbidden counted", Duration::from_secs(30), |a| {
        kube_events(&a.metrics(), "StaleRuntime", "forbidden") >= 1.0
    });
    assert_eq!(events(&kube, "shop").len(), 1);
    assert!(agent.get("/metrics").0 == 200);

    // The API server down: a new container is still exported within seconds, and the Event
    // that cannot be sent is counted as failed.
    kube.stop_apiserver();
    lab.run_container(
        "web-0-app",
        "example.org/legacy:latest",
        &[
            ("io.kubernetes.pod.namespace", "web"),
            ("io.kubernetes.pod.name", "web-0"),
            ("io.kubernetes.container.name", "app"),
        ],
    );
    agent.wait_for(
        "web-0 in the metrics with the API down",
        Duration::from_secs(30),
        |a| {
            value(
                &a.metrics(),
                "stalewatch_container_scan_status",
                &[("pod", "web-0"), ("status", "ok")],
            ) == Some(1.0)
        },
    );
    agent.wait_for("the Event counted as failed", Duration::from_secs(60), |a| {
        kube_events_any(&a.metrics(), "failed") >= 1.0
    });
    assert_eq!(
        count(&agent.metrics(), "stalewatch_container_scan_status", &[]),
        3
    );
}

/// Splits a multi-document YAML stream, keeping the documents whose kind the lab's API
/// server has (it has no Prometheus Operator CRDs: those two are checked by content).
fn without_operator_kinds(rendered: &str) -> (String, Vec<String>) {
    let mut kept = Vec::new();
    let mut left = Vec::new();
    for doc in rendered.split("\n---\n") {
        let kind = doc
            .lines()
            .find_map(|l| l.strip_prefix("kind: "))
            .unwrap_or_default()
            .trim()
            .to_string();
        if kind == "PodMonitor" || kind == "PrometheusRule" {
            left.push(kind);
        } else {
            kept.push(doc.to_string());
        }
    }
    (kept.join("\n---\n"), left)
}

#[test]
fn every_deploy_manifest_renders_and_passes_a_server_side_dry_run() {
    let Some(kube) = KubeLab::start("deploy dry run") else {
        return;
    };
    kube.kubectl(&[
        "apply",
        "-f",
        &project().join("deploy/base/namespace.yaml").display().to_string(),
    ]);
    let charts = [
        ("helm chart", helm_template(&[], "deploy dry run")),
        (
            "helm chart with the mirror",
            helm_template(&["--set", "mirror.enabled=true"], "deploy dry run"),
        ),
    ];
    let kustomized = ["deploy/base", "deploy/with-mirror"].map(|dir| {
        (
            dir,
            Some(kube.kubectl(&["kustomize", &project().join(dir).display().to_string()])),
        )
    });
    for (dir, rendered) in kustomized.into_iter().chain(charts) {
        let Some(rendered) = rendered else { return };
        let (manifest, left) = without_operator_kinds(&rendered);
        // The lab's API server is v1.20, which serves CronJob as batch/v1beta1 only (the same
        // schema); current clusters serve batch/v1, which the manifest uses.
        let manifest = manifest.replace(
            "apiVersion: batch/v1\nkind: CronJob",
            "apiVersion: batch/v1beta1\nkind: CronJob",
        );
        assert_eq!(left, vec!["PodMonitor", "PrometheusRule"], "{dir}");
        let path = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(path.path(), &manifest).unwrap();
        let out = kube.kubectl(&["apply", "--dry-run=server", "-f", path.path().to_str().unwrap()]);
        for kind in [
            "daemonset.apps/stalewatch",
            "clusterrole.rbac.authorization.k8s.io/stalewatch",
            "service/stalewatch",
        ] {
            assert!(
                out.contains(kind),
                "{dir}: {kind} missing from the dry run:\n{out}"
            );
        }
        assert!(!out.contains("error"), "{out}");
    }
    let example = project().join("deploy/examples/networkpolicy.yaml");
    let out = kube.kubectl(&["apply", "--dry-run=server", "-f", example.to_str().unwrap()]);
    assert!(
        out.contains("networkpolicy.networking.k8s.io/stalewatch-metrics"),
        "{out}"
    );
}

/// The node scan's Event regards the Node, in namespace `default` as the kubelet's do: a node
/// that installed a newer kernel than it runs gets `RebootRequired` from the agent's
/// ServiceAccount with the shipped RBAC, once; and its Node object (an AKS node image label,
/// the kubelet's nodeInfo) is read with that RBAC into `stalewatch_node_info` and the image's age.
#[test]
#[allow(clippy::too_many_lines)] // a scenario test that reads top to bottom
fn a_node_waiting_for_a_reboot_gets_an_event_on_the_node() {
    let Some(kube) = KubeLab::start("node events") else {
        return;
    };
    // A real containerd: reconciles complete (and are counted) as on a node.
    let Some(lab) = Lab::start("node events") else {
        return;
    };
    let sa = kube.agent_kubeconfig();
    let tmp = tempfile::tempdir().unwrap();
    let host = ubuntu_node_waiting_for_a_reboot(tmp.path());
    let site = tmp.path().join("site");
    write_mirror(&site);
    let mirror = Mirror::start(site);
    let args = node_event_args(&sa, &host, &[]);
    // The node's Node object, labelled as AKS labels a node of a real node image, with the
    // nodeInfo a kubelet reports.
    let node_image = "AKSUbuntu-2204gen2containerd-202511.12.0";
    kube.apply("apiVersion: v1\nkind: Node\nmetadata:\n  name: test-node\n");
    let status = serde_json::json!({
        "apiVersion": "v1", "kind": "Node", "metadata": {"name": "test-node"},
        "status": {"nodeInfo": {
            "machineID": "", "systemUUID": "", "bootID": "", "kubeProxyVersion": "", "kubeletVersion": "v1.33.5",
            "operatingSystem": "linux", "architecture": "amd64",
            "osImage": "Ubuntu 22.04.5 LTS", "kernelVersion": "6.8.0-1020-azure",
            "containerRuntimeVersion": "containerd://1.7.27-1"}}
    });
    let status_file = tmp.path().join("node-status.json");
    std::fs::write(&status_file, status.to_string()).unwrap();
    kube.kubectl(&[
        "replace",
        "--raw",
        "/api/v1/nodes/test-node/status",
        "-f",
        status_file.to_str().unwrap(),
    ]);
    // Labelled after: a status update may rewrite the metadata it carries.
    kube.kubectl(&[
        "label",
        "node",
        "test-node",
        &format!("kubernetes.azure.com/node-image-version={node_image}"),
        "kubernetes.azure.com/os-sku=Ubuntu",
    ]);
    let agent = Agent::start(
        &lab.sock,
        &tmp.path().join("state"),
        &mirror.url(),
        &as_strs(&args),
    );
    agent.wait_for("a RebootRequired Event published", Duration::from_secs(60), |a| {
        kube_events(&a.metrics(), "RebootRequired", "published") == 1.0
    });
    let evs = events(&kube, "default");
    assert_eq!(evs.len(), 1, "{evs:#?}");
    let e = &evs[0];
    assert_eq!(e["reason"], "RebootRequired");
    assert_eq!(e["type"], "Warning");
    assert_eq!(e["regarding"]["kind"], "Node");
    assert_eq!(e["regarding"]["name"], "test-node");
    assert!(
        e["note"]
            .as_str()
            .unwrap()
            .contains("kernel 6.8.0-1030.35~22.04.1 is installed but 6.8.0-1020-azure runs"),
        "{e:#}"
    );
    // Later reconciles tell nothing more.
    wait_out_two_reconciles(&agent);
    assert_eq!(kube_events(&agent.metrics(), "RebootRequired", "published"), 1.0);
    assert_eq!(events(&kube, "default").len(), 1);
    // What the Node object says, read with the shipped RBAC (get on nodes).
    agent.wait_for("the Node object read", Duration::from_secs(30), |a| {
        let doc: serde_json::Value = serde_json::from_str(&a.findings().1).unwrap();
        doc["node_scan"]["node"]["node_object"] == "read"
    });
    let doc: serde_json::Value = serde_json::from_str(&agent.findings().1).unwrap();
    let node = &doc["node_scan"]["node"];
    assert_eq!(node["node_image"], node_image);
    assert_eq!(node["os_sku"], "Ubuntu");
    assert_eq!(node["container_runtime"], "containerd://1.7.27-1");
    let metrics = agent.metrics();
    assert_eq!(
        value(
            &metrics,
            "stalewatch_node_info",
            &[
                ("os_id", "ubuntu"),
                ("os_version", "22.04"),
                ("kernel", "6.8.0-1020-azure"),
                ("node_image", node_image),
                ("container_runtime", "containerd://1.7.27-1"),
            ]
        ),
        Some(1.0),
        "{metrics}"
    );
    // The image's age from the date its version encodes, to the agent's clock (the test
    // agent's STALEWATCH_NOW), both by `date`.
    let epoch = |day: &str| -> f64 {
        let out = std::process::Command::new("date")
            .args(["-u", "-d", day, "+%s"])
            .output()
            .unwrap();
        String::from_utf8(out.stdout).unwrap().trim().parse().unwrap()
    };
    let now = epoch(common::agent::AGENT_NOW);
    assert_eq!(
        value(&metrics, "stalewatch_node_image_age_seconds", &[]),
        Some(now - epoch("2025-11-12"))
    );
    // A reboot is due since the fixed kernel's installation or the agent's first sight of it.
    assert!(
        value(
            &metrics,
            "stalewatch_node_reboot_required_since_timestamp_seconds",
            &[]
        )
        .unwrap()
            <= now
    );
}

/// New fixable findings at or above `--kube-events-min-severity` (default `high`) in the node's
/// own packages: `VulnerableNode` on the Node, naming them — regreSSHion (UBUNTU-CVE-2024-6387,
/// Ubuntu priority high, the shared mirror's record) in the fixture node's openssh; not the
/// kernel's medium UBUNTU-CVE-2025-21675 — and the reboot that is due besides.
#[test]
fn a_node_with_new_severe_fixable_findings_gets_vulnerable_node() {
    let Some(kube) = KubeLab::start("node events") else {
        return;
    };
    let Some(lab) = Lab::start("node events") else {
        return;
    };
    let sa = kube.agent_kubeconfig();
    let tmp = tempfile::tempdir().unwrap();
    let host = ubuntu_node_waiting_for_a_reboot(tmp.path());
    let site = tmp.path().join("site");
    write_mirror(&site);
    let regresshion = read_zip_entry(
        &shared_data().join("osv/Ubuntu/all.zip"),
        "UBUNTU-CVE-2024-6387.json",
    );
    let kernel =
        std::fs::read(project().join("tests/fixtures/osv/ubuntu-kernel/UBUNTU-CVE-2025-21675.json")).unwrap();
    write_osv_zip(
        &site,
        "Ubuntu",
        &[
            ("UBUNTU-CVE-2024-6387.json", &regresshion),
            ("UBUNTU-CVE-2025-21675.json", &kernel),
        ],
    );
    let mirror = Mirror::start(site);
    let args = node_event_args(&sa, &host, &["--ecosystem", "Ubuntu"]);
    let agent = Agent::start(
        &lab.sock,
        &tmp.path().join("state"),
        &mirror.url(),
        &as_strs(&args),
    );
    agent.wait_for("a VulnerableNode Event published", Duration::from_secs(60), |a| {
        kube_events(&a.metrics(), "VulnerableNode", "published") == 1.0
    });
    let evs = events(&kube, "default");
    assert_eq!(evs.len(), 1, "{evs:#?}");
    let e = &evs[0];
    assert_eq!(e["reason"], "VulnerableNode");
    assert_eq!(e["regarding"]["kind"], "Node");
    let note = e["note"].as_str().unwrap();
    assert!(
        note.starts_with("1 fixable critical/high vulnerabilities (0 critical, 1 high) in the node's own packages. Most severe: UBUNTU-CVE-2024-6387;"),
        "{note}"
    );
    assert!(!note.contains("UBUNTU-CVE-2025-21675"), "{note}");
    assert!(
        note.contains("kernel 6.8.0-1030.35~22.04.1 is installed but 6.8.0-1020-azure runs"),
        "{note}"
    );
    // Told once: later reconciles publish nothing more, and no RebootRequired besides.
    wait_out_two_reconciles(&agent);
    assert_eq!(events(&kube, "default").len(), 1);
    assert_eq!(kube_events(&agent.metrics(), "RebootRequired", "published"), 0.0);
}

/// The node-event tests' agent flags: Events on through the shipped RBAC's kubeconfig `sa`,
/// the node scan of `host`, a reconcile every second (so a "told once" window spans several),
/// then `extra`.
fn node_event_args(sa: &Path, host: &Path, extra: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = [
        "--kube-events",
        "on",
        "--kubeconfig",
        sa.to_str().unwrap(),
        "--node-scan",
        "on",
        "--host-root",
        host.to_str().unwrap(),
        "--reconcile-interval",
        "1s",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

fn as_strs(args: &[String]) -> Vec<&str> {
    args.iter().map(String::as_str).collect()
}

/// Sleeps through at least two of the agent's reconciles (asserted), the window in which a
/// told fact must not be told again.
fn wait_out_two_reconciles(agent: &Agent) {
    let reconciled =
        |a: &Agent| value(&a.metrics(), "stalewatch_last_reconcile_timestamp_seconds", &[]).unwrap();
    let before = reconciled(agent);
    std::thread::sleep(Duration::from_secs(3));
    assert!(reconciled(agent) >= before + 2.0, "reconciles in the window");
}

/// One entry of a zip archive.
fn read_zip_entry(zip: &Path, name: &str) -> Vec<u8> {
    use std::io::Read;
    let mut z = zip::ZipArchive::new(std::fs::File::open(zip).unwrap()).unwrap();
    let mut body = Vec::new();
    z.by_name(name).unwrap().read_to_end(&mut body).unwrap();
    body
}
