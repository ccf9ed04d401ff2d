//! The agent's triage on a real containerd: a KEV catalog (CISA's format, naming a CVE of the
//! running Alpine 3.16.9's findings) and EPSS scores refreshed with the advisories become
//! per-container series; an OpenVEX document in `--vex-dir` laid out as a Kubernetes
//! ConfigMap volume (`..data` symlink swapped) suppresses a finding without a layer read; a
//! bad document leaves the last good set in force; `/v1/vex/<digest>` is valid OpenVEX.

mod common;

use common::agent::{value, Agent};
use common::containerd::Lab;
use common::mirror::Mirror;
use common::*;
use std::path::Path;
use std::time::Duration;

/// Writes a ConfigMap volume's layout: `..<gen>/<files>`, `..data` → `..<gen>`, and each
/// file a symlink through `..data`; a new generation swaps `..data` atomically.
fn configmap(dir: &Path, generation: &str, files: &[(&str, &str)]) {
    let gen = dir.join(format!("..{generation}"));
    std::fs::create_dir_all(&gen).unwrap();
    for (name, body) in files {
        std::fs::write(gen.join(name), body).unwrap();
        let link = dir.join(name);
        if link.symlink_metadata().is_err() {
            std::os::unix::fs::symlink(format!("..data/{name}"), &link).unwrap();
        }
    }
    let tmp = dir.join("..data_tmp");
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(format!("..{generation}"), &tmp).unwrap();
    std::fs::rename(&tmp, dir.join("..data")).unwrap();
}

#[test]
#[allow(clippy::too_many_lines)] // a scenario test that reads top to bottom
fn kev_epss_and_vex_reach_the_metrics_without_a_layer_read() {
    let Some(lab) = Lab::start("agent-triage") else {
        return;
    };
    if !require("umoci", "agent triage") {
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
    // What the same image holds, scanned by the CLI: the CVE ids the test data names.
    let db = tmp.path().join("db");
    shared_db(&db, &["Alpine"]);
    let scan: serde_json::Value =
        serde_json::from_slice(&scan_json(&format!("rootfs:{}", root.display()), &db).stdout).unwrap();
    let findings = scan["findings"].as_array().unwrap();
    let with_cve: Vec<&serde_json::Value> = findings
        .iter()
        .filter(|f| !f["cves"].as_array().unwrap().is_empty())
        .collect();
    let exploited = with_cve[0]["cves"][0].as_str().unwrap().to_string();
    // Every package the CVE is found in (busybox and ssl_client on 3.16.9), for the VEX
    // statement that rules it out.
    let mut packages: Vec<String> = findings
        .iter()
        .filter(|f| f["cves"].as_array().unwrap().iter().any(|c| c == &exploited[..]))
        .map(|f| format!("pkg:apk/alpine/{}", f["package"].as_str().unwrap()))
        .collect();
    packages.dedup();
    let kev = tmp.path().join("kev.json");
    std::fs::write(
        &kev,
        serde_json::to_vec(&serde_json::json!({
            "title": "CISA Catalog of Known Exploited Vulnerabilities", "catalogVersion": "2025.08.25",
            "dateReleased": "2025-08-25T17:04:19.9796Z", "count": 1,
            "vulnerabilities": [{"cveID": exploited, "vendorProject": "x", "product": "x", "dateAdded": "2024-01-02",
                "dueDate": "2024-01-23", "knownRansomwareCampaignUse": "Unknown"}]})).unwrap(),
    )
    .unwrap();
    let epss = tmp.path().join("epss.csv");
    std::fs::write(&epss, format!("#model_version:v2025.03.14,score_date:2025-08-24T00:00:00+0000\ncve,epss,percentile\n{exploited},0.42000,0.97000\n")).unwrap();
    // The real Alpine advisories from a loopback mirror.
    let site = tmp.path().join("site");
    std::fs::create_dir_all(site.join("Alpine")).unwrap();
    std::os::unix::fs::symlink(
        shared_data().join("osv/Alpine/all.zip"),
        site.join("Alpine/all.zip"),
    )
    .unwrap();
    let mirror = Mirror::start(site);
    let vex_dir = tmp.path().join("vex");
    std::fs::create_dir_all(&vex_dir).unwrap();
    configmap(&vex_dir, "gen1", &[("README.md", "not a document")]);
    let args = [
        "--reconcile-interval",
        "1s",
        "--drift-interval",
        "1s",
        "--ecosystem",
        "Alpine",
        "--kev-source",
        kev.to_str().unwrap(),
        "--epss-source",
        epss.to_str().unwrap(),
        "--vex-dir",
        vex_dir.to_str().unwrap(),
    ];
    let agent = Agent::start(&lab.sock, &tmp.path().join("state"), &mirror.url(), &args);
    let pod = [("pod", "app-0")];
    let m = |a: &Agent, name: &str| value(&a.metrics(), name, &pod);
    agent.wait_for("known-exploited series", Duration::from_secs(60), |a| {
        m(a, "stalewatch_container_known_exploited_vulnerabilities").is_some()
    });
    let metrics = agent.metrics();
    assert_eq!(
        value(
            &metrics,
            "stalewatch_container_known_exploited_vulnerabilities",
            &pod
        ),
        Some(1.0)
    );
    assert_eq!(value(&metrics, "stalewatch_container_max_epss", &pod), Some(0.42));
    assert_eq!(
        value(&metrics, "stalewatch_kev_catalog_timestamp_seconds", &[]),
        Some(1756141459.0)
    );
    assert_eq!(
        value(&metrics, "stalewatch_epss_scores_timestamp_seconds", &[]),
        Some(1755993600.0)
    );
    assert_eq!(
        value(&metrics, "stalewatch_container_suppressed_vulnerabilities", &pod),
        Some(0.0)
    );
    let total = |a: &Agent| -> f64 {
        a.metrics()
            .lines()
            .filter(|l| l.starts_with("stalewatch_container_vulnerabilities{") && l.contains("pod=\"app-0\""))
            .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
            .sum()
    };
    let before = total(&agent);

    // Runtime evidence in /v1/vex, a note only: busybox (the running sleep) is mapped,
    // ssl_client is not; both stay `affected` without --vex-in-use-not-affected.
    agent.wait_for("the maps read", Duration::from_secs(30), |a| {
        value(&a.metrics(), "stalewatch_container_vulnerabilities_in_use", &pod).is_some()
    });
    let doc: serde_json::Value = serde_json::from_str(&agent.findings().1).unwrap();
    let digest = doc["containers"][0]["image_digest"].as_str().unwrap().to_string();
    let (status, body) = common::agent::get(agent.findings_port, &format!("/v1/vex/{digest}"));
    assert_eq!(status, 200, "{body}");
    let vex: serde_json::Value = serde_json::from_str(&body).unwrap();
    let note = |pkg: &str| -> (String, String) {
        let s = vex["statements"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| {
                s["products"][0]["subcomponents"][0]["@id"]
                    .as_str()
                    .unwrap()
                    .contains(&format!("/{pkg}@"))
            })
            .unwrap_or_else(|| panic!("no {pkg} statement: {vex:#}"));
        (
            s["status"].as_str().unwrap().into(),
            s["status_notes"].as_str().unwrap_or("").into(),
        )
    };
    let (busybox, ssl) = (note("busybox"), note("ssl_client"));
    assert_eq!(busybox.0, "affected");
    assert!(busybox.1.contains("maps a file"), "{busybox:?}");
    assert_eq!(ssl.0, "affected");
    assert!(ssl.1.contains("no process"), "{ssl:?}");
    let layers = value(&metrics, "stalewatch_layers_read_total", &[]);

    // A statement in a new ConfigMap generation: the finding leaves the counts, no layer read.
    let doc = serde_json::json!({
        "@context": "https://openvex.dev/ns/v0.2.0", "@id": "https://example.com/vex/app",
        "author": "ops", "timestamp": "2025-01-01T00:00:00Z", "version": 1,
        "statements": [{"vulnerability": {"name": exploited}, "products": packages.iter().map(|p| serde_json::json!({"@id": p})).collect::<Vec<_>>(),
            "status": "not_affected", "justification": "vulnerable_code_not_in_execute_path"}]});
    configmap(&vex_dir, "gen2", &[("app.json", &doc.to_string())]);
    agent.wait_for("a suppressed vulnerability", Duration::from_secs(30), |a| {
        m(a, "stalewatch_container_suppressed_vulnerabilities") == Some(1.0)
    });
    assert_eq!(total(&agent), before - 1.0);
    assert_eq!(
        m(&agent, "stalewatch_container_known_exploited_vulnerabilities"),
        Some(0.0),
        "a suppressed finding leaves every count"
    );
    assert_eq!(
        value(&agent.metrics(), "stalewatch_layers_read_total", &[]),
        layers
    );
    assert_eq!(
        value(&agent.metrics(), "stalewatch_vex_statements", &[]),
        Some(1.0)
    );

    // A bad document in the next generation: refused, counted, the set in force stays.
    configmap(
        &vex_dir,
        "gen3",
        &[("app.json", &doc.to_string()), ("bad.json", "{\"@context\": 1")],
    );
    agent.wait_for("the bad document refused", Duration::from_secs(30), |a| {
        value(&a.metrics(), "stalewatch_vex_reload_errors_total", &[]) == Some(1.0)
    });
    assert_eq!(
        m(&agent, "stalewatch_container_suppressed_vulnerabilities"),
        Some(1.0)
    );

    // /v1/vex/<digest>: valid OpenVEX with the suppression carried through.
    let (status, body) = common::agent::get(agent.findings_port, &format!("/v1/vex/{digest}"));
    assert_eq!(status, 200, "{body}");
    let schema = shared_data().join("schemas/openvex/openvex_json_schema.json");
    if let Err(e) = schema_errors(&schema, &body) {
        panic!("/v1/vex is not valid OpenVEX:\n{e}");
    }
    let vex: serde_json::Value = serde_json::from_str(&body).unwrap();
    let statements = vex["statements"].as_array().unwrap();
    assert!(statements.iter().any(|s| s["status"] == "not_affected"
        && s["vulnerability"]["aliases"]
            .as_array()
            .is_some_and(|a| a.iter().any(|x| x == &exploited[..]))));
    assert!(statements
        .iter()
        .all(|s| s["products"][0]["@id"].as_str().unwrap().starts_with("pkg:oci/")));
    let (missing, _) = common::agent::get(agent.findings_port, "/v1/vex/sha256:0000");
    assert_eq!(missing, 404);
}
