//! The node agent against a real private containerd: containers appear in the metrics within
//! seconds and disappear when stopped; fresh advisories re-match cached inventories without
//! reading a layer; a restarted agent reads no layer; a containerd crash is recovered from.

mod common;

use common::agent::{count, get, value, vulns, Agent};
use common::containerd::Lab;
use common::mirror::Mirror;
use common::*;
use std::io::Write;
use std::path::Path;
use std::time::Duration;

const ALPINE_9143: &[u8] = include_bytes!("fixtures/osv/ALPINE-CVE-2024-9143.json");
const ALPINE_42366: &[u8] = include_bytes!("fixtures/osv/ALPINE-CVE-2023-42366.json");

fn write_mirror(dir: &Path, records: &[(&str, &[u8])]) {
    write_osv_zip(dir, "Alpine", records);
}

/// A generous deadline for what normally takes well under a second (timings: `bench/`).
const DEADLINE: Duration = Duration::from_secs(30);

#[test]
#[allow(clippy::too_many_lines)] // a scenario test that reads top to bottom
fn agent_follows_containers_advisories_restarts_and_containerd_crashes() {
    let Some(mut lab) = Lab::start("agent") else {
        return;
    };
    if !require("umoci", "agent") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    for (version, name) in [
        ("3.20.3", "example.org/alpine-320"),
        ("3.16.9", "example.org/alpine-316"),
    ] {
        let root = unpack_alpine(version, tmp.path());
        let (_, archive) = umoci_archive(&root, tmp.path());
        lab.import(&archive, name);
    }
    // The mirror starts with the 3.16 busybox advisory only.
    let site = tmp.path().join("site");
    write_mirror(&site, &[("ALPINE-CVE-2023-42366.json", ALPINE_42366)]);
    let mirror = Mirror::start(site.clone());
    let state = tmp.path().join("state");
    let refresh = ["--advisory-refresh", "1s", "--reconcile-interval", "30s"];
    let agent = Agent::start(&lab.sock, &state, &mirror.url(), &refresh);

    // Containers appear within 5 s, with CRI names; a sandbox never does.
    let cri = |ns: &'static str, pod: &'static str, c: &'static str| {
        [
            ("io.kubernetes.pod.namespace", ns),
            ("io.kubernetes.pod.name", pod),
            ("io.kubernetes.container.name", c),
        ]
    };
    lab.run_container(
        "web",
        "example.org/alpine-320:latest",
        &cri("shop", "web-1", "app"),
    );
    lab.run_container("db", "example.org/alpine-316:latest", &cri("shop", "db-0", "db"));
    lab.run_container(
        "sandbox",
        "example.org/alpine-320:latest",
        &[
            ("io.cri-containerd.kind", "sandbox"),
            ("io.kubernetes.pod.name", "web-1"),
        ],
    );
    lab.run_container("plain", "example.org/alpine-316:latest", &[]);
    agent.wait_for("both pods scanned", DEADLINE, |a| {
        let m = a.metrics();
        value(
            &m,
            "stalewatch_container_scan_status",
            &[("pod", "web-1"), ("container", "app"), ("status", "ok")],
        ) == Some(1.0)
            && value(
                &m,
                "stalewatch_container_scan_status",
                &[("pod", "db-0"), ("status", "ok")],
            ) == Some(1.0)
    });
    let m = agent.metrics();
    assert_eq!(
        vulns(&m, "db-0"),
        1.0,
        "ALPINE-CVE-2023-42366 on busybox/ssl_client is one vulnerability"
    );
    assert_eq!(vulns(&m, "web-1"), 0.0);
    // Every severity × fixable pair is exported, zeros included.
    assert_eq!(
        count(&m, "stalewatch_container_vulnerabilities", &[("pod", "web-1")]),
        10
    );
    // The unlabelled container was started last: it may take one more reconcile.
    agent.wait_for("web, db and the unlabelled container", DEADLINE, |a| {
        count(&a.metrics(), "stalewatch_container_scan_status", &[]) == 3
    });
    let m = agent.metrics();
    assert_eq!(
        count(&m, "stalewatch_container_scan_status", &[("pod", "web-1")]),
        1,
        "no sandbox:\n{m}"
    );
    assert_eq!(
        value(
            &m,
            "stalewatch_container_scan_status",
            &[("pod", "plain"), ("container", "plain")]
        ),
        Some(1.0)
    );
    assert_eq!(
        value(
            &m,
            "stalewatch_image_info",
            &[
                ("image", "example.org/alpine-316:latest"),
                ("os_version", "3.16.9"),
                ("os_eol", "true")
            ]
        ),
        Some(1.0)
    );
    let layers = value(&m, "stalewatch_layers_read_total", &[]).unwrap();
    assert_eq!(
        layers, 2.0,
        "two distinct images of one layer each (the sandbox shares web's image)"
    );

    // /v1/findings carries the report of what each container runs, on its own loopback
    // listener only: the open metrics port does not serve it.
    assert_eq!(agent.get("/v1/findings").0, 404);
    let (code, body) = agent.findings();
    assert_eq!(code, 200);
    let doc: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(doc["schema"], "stalewatch/findings/v1");
    assert_eq!(doc["node"], "test-node");
    let db = doc["containers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["pod"] == "db-0")
        .unwrap();
    assert_eq!(db["report"]["findings"][0]["id"], "ALPINE-CVE-2023-42366");
    assert!(db["manifest_digest"].as_str().unwrap().starts_with("sha256:"));
    // Each container's report is a report v1 as the scanner prints it.
    for c in doc["containers"].as_array().unwrap() {
        check_report(&c["report"].to_string());
    }

    // The image's SBOM, CycloneDX 1.5, by manifest digest: valid against the schema, the
    // finding affecting a component of the BOM.
    let manifest = db["manifest_digest"].as_str().unwrap();
    let (code, body) = get(agent.findings_port, &format!("/v1/sbom/{manifest}"));
    assert_eq!(code, 200, "{body}");
    if let Some(valid) = cyclonedx_schema_errors(&body, "agent SBOM") {
        valid.unwrap_or_else(|e| panic!("the SBOM is not valid CycloneDX 1.5: {e}"));
    }
    let bom: serde_json::Value = serde_json::from_str(&body).unwrap();
    let refs: Vec<&str> = bom["components"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["bom-ref"].as_str().unwrap())
        .collect();
    let vuln = bom["vulnerabilities"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["id"] == "ALPINE-CVE-2023-42366")
        .expect("the finding in the SBOM");
    assert!(
        refs.contains(&vuln["affects"][0]["ref"].as_str().unwrap()),
        "{vuln}"
    );
    assert!(bom["components"]
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c["type"] == "operating-system" && c["name"] == "alpine"));
    assert_eq!(get(agent.findings_port, "/v1/sbom/sha256:0000").0, 404);
    assert_eq!(
        agent.get(&format!("/v1/sbom/{manifest}")).0,
        404,
        "not on the open port"
    );

    // The exposition is valid for Prometheus' own checker.
    if require("promtool", "agent metrics exposition") {
        let mut p = std::process::Command::new("promtool")
            .args(["check", "metrics"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        p.stdin.take().unwrap().write_all(m.as_bytes()).unwrap();
        let out = p.wait_with_output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "promtool: {text}");
    }

    // A real Prometheus scraping the agent sees the series, with the scanned pod's own labels
    // (honor_labels) and the node from the target.
    if require("prometheus", "real Prometheus scrape") {
        let prom = common::prometheus::Prometheus::start(&format!("127.0.0.1:{}", agent.port));
        let series = prom.wait_series(
            r#"stalewatch_container_vulnerabilities{pod="db-0",severity="unknown",fixable="true"}"#,
            Duration::from_secs(30),
        );
        assert_eq!(series[0]["value"][1], "1");
        assert_eq!(series[0]["metric"]["node"], "test-node");
        assert_eq!(series[0]["metric"]["namespace"], "shop");
    }

    // A new advisory for the 3.20 openssl: re-matched after the next refresh, no layer read.
    write_mirror(
        &site,
        &[
            ("ALPINE-CVE-2023-42366.json", ALPINE_42366),
            ("ALPINE-CVE-2024-9143.json", ALPINE_9143),
        ],
    );
    agent.wait_for("new advisory flagged on web-1", Duration::from_secs(30), |a| {
        vulns(&a.metrics(), "web-1") == 1.0
    });
    assert_eq!(
        value(&agent.metrics(), "stalewatch_layers_read_total", &[]),
        Some(layers)
    );

    // A stopped container disappears.
    lab.stop_container("db");
    agent.wait_for("db-0 gone", DEADLINE, |a| {
        count(
            &a.metrics(),
            "stalewatch_container_scan_status",
            &[("pod", "db-0")],
        ) == 0
    });

    // A restarted agent serves the same metrics without reading a layer.
    assert!(agent.stop().success(), "graceful shutdown");
    let agent = Agent::start(&lab.sock, &state, &mirror.url(), &refresh);
    agent.wait_for("web-1 back from the cache", DEADLINE, |a| {
        vulns(&a.metrics(), "web-1") == 1.0
    });
    let m = agent.metrics();
    assert_eq!(value(&m, "stalewatch_layers_read_total", &[]), Some(0.0), "{m}");
    assert!(value(&m, "stalewatch_layer_cache_hits_total", &[]).unwrap() >= 1.0);

    // containerd crashes: the last known state stays served, the outage shows in metrics,
    // and the agent reconnects by itself.
    lab.kill();
    agent.wait_for("containerd down", DEADLINE, |a| {
        value(&a.metrics(), "stalewatch_containerd_up", &[]) == Some(0.0)
    });
    assert_eq!(vulns(&agent.metrics(), "web-1"), 1.0, "last known state kept");
    assert_eq!(agent.get("/readyz").0, 200, "outages do not flip readiness");
    lab.start_again();
    agent.wait_for("reconnected", Duration::from_secs(40), |a| {
        let m = a.metrics();
        value(&m, "stalewatch_containerd_up", &[]) == Some(1.0)
            && value(&m, "stalewatch_containerd_reconnects_total", &[]) >= Some(1.0)
    });
    lab.run_container("db2", "example.org/alpine-316:latest", &cri("shop", "db-1", "db"));
    agent.wait_for("new container after the crash", DEADLINE, |a| {
        vulns(&a.metrics(), "db-1") == 1.0
    });
    let m = agent.metrics();
    assert_eq!(
        value(&m, "stalewatch_layers_read_total", &[]),
        Some(0.0),
        "the 3.16 inventory comes from the cache:\n{m}"
    );
}

#[test]
#[allow(clippy::too_many_lines)] // a scenario test that reads top to bottom
fn missing_blobs_fall_back_to_the_running_filesystem() {
    let Some(lab) = Lab::start("agent blob fallback") else {
        return;
    };
    if !require("umoci", "agent blob fallback") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let root = unpack_alpine("3.20.3", tmp.path());
    let (layout, archive) = umoci_archive(&root, tmp.path());
    lab.import(&archive, "example.org/alpine-320");
    lab.run_container(
        "web",
        "example.org/alpine-320:latest",
        &[("io.kubernetes.pod.name", "web-1")],
    );
    // As with containerd's discard_unpacked_layers: the layer blob is gone, the snapshot stays.
    lab.ctr(&["content", "rm", &first_layer(&layout)]);

    let site = tmp.path().join("site");
    write_mirror(&site, &[("ALPINE-CVE-2024-9143.json", ALPINE_9143)]);
    let mirror = Mirror::start(site);
    // Both fallbacks, each from a fresh state: the snapshot's overlay layers (the default,
    // first: the image whole, its layers named by the manifest, nothing missing), and a
    // running container's /proc/<pid>/root (no layers: said so).
    for (mode, read_from, how) in [
        ("snapshot,proc", "snapshot", None),
        ("proc", "proc", Some("running container's filesystem")),
    ] {
        let args = [
            "--vulnerability-info-metric",
            "--vulnerability-info-limit",
            "1",
            "--unpacked-fallback",
            mode,
        ];
        let agent = Agent::start(
            &lab.sock,
            &tmp.path().join(format!("state-{mode}")),
            &mirror.url(),
            &args,
        );
        agent.wait_for("web-1 inventoried from its unpacked files", DEADLINE, |a| {
            vulns(&a.metrics(), "web-1") == 1.0
        });
        let m = agent.metrics();
        assert_eq!(
            value(
                &m,
                "stalewatch_container_scan_status",
                &[("pod", "web-1"), ("status", "ok")]
            ),
            Some(1.0)
        );
        // The opt-in per-finding series, capped at one: libcrypto3 and libssl3 both have the finding.
        assert_eq!(
            count(
                &m,
                "stalewatch_container_vulnerability_info",
                &[("id", "ALPINE-CVE-2024-9143")]
            ),
            1,
            "{m}"
        );
        assert_eq!(
            value(&m, "stalewatch_container_vulnerability_info_dropped", &[]),
            Some(1.0)
        );
        let doc: serde_json::Value = serde_json::from_str(&agent.findings().1).unwrap();
        let report = &doc["containers"][0]["report"];
        assert_eq!(doc["containers"][0]["read_from"], read_from);
        assert_eq!(report["packages"].as_array().unwrap().len(), 14, "{mode}");
        let note = report["unreadable"]
            .as_array()
            .unwrap()
            .iter()
            .find(|u| u["reason"] == "blobs_missing")
            .cloned();
        match how {
            Some(how) => assert!(
                note.as_ref()
                    .is_some_and(|n| n["detail"].as_str().unwrap().contains(how)),
                "{mode}: {note:?}"
            ),
            None => assert_eq!(note, None, "{mode}"),
        }
        let reads = value(&m, "stalewatch_image_reads_total", &[("source", read_from)]);
        assert_eq!(reads, Some(1.0), "{mode}: {m}");
        agent.stop();
    }
}

#[test]
#[allow(clippy::too_many_lines)] // a scenario test that reads top to bottom
fn a_layer_shared_by_two_images_is_read_once() {
    let Some(lab) = Lab::start("agent layer cache") else {
        return;
    };
    if !require("umoci", "agent layer cache") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let old = unpack_alpine("3.16.9", tmp.path());
    let new = unpack_alpine("3.20.3", tmp.path());
    // Image "base": Alpine 3.16. Image "upgraded": the same layer, then 3.20's apk database
    // (opaque directory) and os-release.
    let layout = tmp.path().join("layout");
    let umoci = |args: &[&str]| {
        let out = std::process::Command::new("umoci").args(args).output().unwrap();
        assert!(
            out.status.success(),
            "umoci {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let l = layout.to_str().unwrap();
    umoci(&["init", "--layout", l]);
    umoci(&["new", "--image", &format!("{l}:base")]);
    umoci(&[
        "insert",
        "--image",
        &format!("{l}:base"),
        old.to_str().unwrap(),
        "/",
    ]);
    umoci(&["tag", "--image", &format!("{l}:base"), "upgraded"]);
    let db = tmp.path().join("apkdb");
    std::fs::create_dir_all(&db).unwrap();
    std::fs::copy(new.join("lib/apk/db/installed"), db.join("installed")).unwrap();
    umoci(&[
        "insert",
        "--image",
        &format!("{l}:upgraded"),
        "--opaque",
        db.to_str().unwrap(),
        "/lib/apk/db",
    ]);
    umoci(&[
        "insert",
        "--image",
        &format!("{l}:upgraded"),
        new.join("etc/os-release").to_str().unwrap(),
        "/etc/os-release",
    ]);
    let archive = tmp.path().join("images.tar");
    assert!(std::process::Command::new("tar")
        .arg("-C")
        .arg(&layout)
        .arg("-cf")
        .arg(&archive)
        .arg(".")
        .status()
        .unwrap()
        .success());
    lab.import(&archive, "example.org/alpine");

    let site = tmp.path().join("site");
    write_mirror(
        &site,
        &[
            ("ALPINE-CVE-2023-42366.json", ALPINE_42366),
            ("ALPINE-CVE-2024-9143.json", ALPINE_9143),
        ],
    );
    let mirror = Mirror::start(site);
    let agent = Agent::start(&lab.sock, &tmp.path().join("state"), &mirror.url(), &[]);
    lab.run_container(
        "old",
        "example.org/alpine:base",
        &[("io.kubernetes.pod.name", "old")],
    );
    agent.wait_for("old scanned", DEADLINE, |a| vulns(&a.metrics(), "old") == 1.0);
    assert_eq!(
        value(&agent.metrics(), "stalewatch_layers_read_total", &[]),
        Some(1.0)
    );

    lab.run_container(
        "new",
        "example.org/alpine:upgraded",
        &[("io.kubernetes.pod.name", "new")],
    );
    agent.wait_for("new scanned", DEADLINE, |a| vulns(&a.metrics(), "new") == 1.0);
    let m = agent.metrics();
    assert_eq!(
        value(&m, "stalewatch_layers_read_total", &[]),
        Some(3.0),
        "the shared base layer is not read again:\n{m}"
    );
    assert_eq!(value(&m, "stalewatch_layer_cache_hits_total", &[]), Some(1.0));
    // The upgraded image's inventory is 3.20's: its findings are 3.20's, not the base's.
    let doc: serde_json::Value = serde_json::from_str(&agent.findings().1).unwrap();
    let new_c = doc["containers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["pod"] == "new")
        .unwrap();
    assert_eq!(new_c["report"]["os"]["version_id"], "3.20.3");
    assert_eq!(new_c["report"]["findings"][0]["id"], "ALPINE-CVE-2024-9143");
    assert_eq!(new_c["report"]["packages"].as_array().unwrap().len(), 14);
}

/// Removes a CRI pod even when the test fails half-way.
struct PodGuard<'a>(&'a common::cri::Cri, String, String);
impl Drop for PodGuard<'_> {
    fn drop(&mut self) {
        self.0.remove_pod(&self.1, &self.2);
    }
}

#[test]
fn cri_pods_carry_kubelet_names_and_their_sandboxes_never_appear() {
    let Some(lab) = Lab::start("agent CRI pods") else {
        return;
    };
    if !require("umoci", "agent CRI pods") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let pause_tar = pause_archive(tmp.path());
    lab.import(&pause_tar, "example.org/pause");
    let app_root = unpack_alpine("3.16.9", tmp.path());
    let (_, app) = umoci_archive(&app_root, tmp.path());
    lab.import(&app, "example.org/app");

    let site = tmp.path().join("site");
    write_mirror(&site, &[("ALPINE-CVE-2023-42366.json", ALPINE_42366)]);
    let mirror = Mirror::start(site);
    let agent = Agent::start(&lab.sock, &tmp.path().join("state"), &mirror.url(), &[]);

    let cri = common::cri::Cri::connect(&lab.sock);
    let (sandbox, container) = cri.run_pod("shop", "api-7f9c", "api", "example.org/app:latest");
    let guard = PodGuard(&cri, sandbox, container);
    agent.wait_for("the CRI container under its kubelet names", DEADLINE, |a| {
        value(
            &a.metrics(),
            "stalewatch_container_scan_status",
            &[
                ("namespace", "shop"),
                ("pod", "api-7f9c"),
                ("container", "api"),
                ("status", "ok"),
            ],
        ) == Some(1.0)
    });
    let m = agent.metrics();
    assert_eq!(
        count(&m, "stalewatch_container_scan_status", &[]),
        1,
        "the sandbox (pause) container is not exported:\n{m}"
    );
    assert_eq!(vulns(&m, "api-7f9c"), 1.0);
    drop(guard);
    agent.wait_for("the pod gone", DEADLINE, |a| {
        count(&a.metrics(), "stalewatch_container_scan_status", &[]) == 0
    });
}

/// Fills the file system under `dir` with one file until a write fails for want of space.
fn fill(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("filler");
    let mut f = std::fs::File::create(&path).unwrap();
    let chunk = vec![0u8; 4096];
    loop {
        if let Err(e) = f.write_all(&chunk).and_then(|()| f.sync_all()) {
            assert_eq!(e.raw_os_error(), Some(28), "filling {}: {e}", dir.display());
            return path;
        }
    }
}

#[test]
fn a_full_state_directory_is_counted_and_survived() {
    let Some(lab) = Lab::start("agent with a full state directory") else {
        return;
    };
    if !require("umoci", "agent with a full state directory") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let root = unpack_alpine("3.20.3", tmp.path());
    let (_, archive) = umoci_archive(&root, tmp.path());
    lab.import(&archive, "example.org/alpine-320");
    let site = tmp.path().join("site");
    write_mirror(&site, &[("ALPINE-CVE-2024-9143.json", ALPINE_9143)]);
    let mirror = Mirror::start(site);
    // The state directory on a small tmpfs of its own, filled once the agent is up.
    let state = tmp.path().join("state");
    std::fs::create_dir_all(&state).unwrap();
    let mounted = std::process::Command::new("mount")
        .args([
            "-t",
            "tmpfs",
            "-o",
            "size=4m",
            "stalewatch-test",
            state.to_str().unwrap(),
        ])
        .status()
        .unwrap();
    assert!(mounted.success(), "mount a tmpfs (needs root)");
    let _tmpfs = Unmount(state.clone());
    let refresh = ["--reconcile-interval", "1s"];
    let agent = Agent::start(&lab.sock, &state, &mirror.url(), &refresh);
    let filler = fill(&state);

    lab.run_container(
        "web",
        "example.org/alpine-320:latest",
        &[("io.kubernetes.pod.name", "web-1")],
    );
    let errors = |m: &str, file: &str| {
        value(m, "stalewatch_state_write_errors_total", &[("file", file)]).unwrap_or(-1.0)
    };
    // Read, matched and served from memory though nothing could be stored; both failures counted.
    agent.wait_for("web scanned, its writes failed", DEADLINE, |a| {
        let m = a.metrics();
        vulns(&m, "web-1") == 1.0 && errors(&m, "layer_cache") >= 1.0 && errors(&m, "image_cache") >= 1.0
    });
    assert_eq!(get(agent.port, "/healthz").0, 200);
    assert!(!state.join("images-v1.json").exists());

    // Space again: the next reconcile writes the cache, and a restart reads no layer.
    std::fs::remove_file(filler).unwrap();
    let cache = state.join("images-v1.json");
    agent.wait_for("the image cache written", DEADLINE, |_| {
        std::fs::read_to_string(&cache).is_ok_and(|c| c.contains("\"image_digest\""))
    });
    drop(agent);
    let agent = Agent::start(&lab.sock, &state, &mirror.url(), &refresh);
    agent.wait_for("web exported again", DEADLINE, |a| {
        vulns(&a.metrics(), "web-1") == 1.0
    });
    assert_eq!(
        value(&agent.metrics(), "stalewatch_layers_read_total", &[]),
        Some(0.0)
    );
}
