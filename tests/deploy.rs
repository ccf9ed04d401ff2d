//! What `deploy/` ships, checked by real tools: the rules with promtool (`check rules`, and
//! `test rules` firing and not firing for every alert), the PrometheusRule equal to the plain
//! rules file, the PodMonitor and PrometheusRule against the Prometheus Operator's published
//! models, the dashboard built only from documented metrics, a runbook for every alert; the
//! Helm chart linted, rendering exactly what Kustomize renders, refusing bad values, and every
//! object it renders valid for the newest Kubernetes kubernetes-validate knows.

mod common;

use common::*;
use std::collections::BTreeSet;
use std::process::Command;

fn read(path: &str) -> String {
    std::fs::read_to_string(project().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn promtool(args: &[&str]) -> String {
    let out = Command::new("promtool")
        .args(args)
        .current_dir(project())
        .output()
        .expect("run promtool");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "promtool {args:?}:\n{text}");
    text
}

/// The alert names of the rules file, parsed as YAML (a grep would find none in a
/// reformatted file, and "every alert has a runbook" would pass on nothing).
fn alerts() -> Vec<String> {
    let docs = yaml_docs(&read("deploy/prometheus/stalewatch-rules.yaml"));
    let names: Vec<String> = docs[0]["groups"]
        .as_array()
        .expect("rule groups")
        .iter()
        .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
        .filter_map(|r| r["alert"].as_str().map(str::to_string))
        .collect();
    assert!(names.len() >= 5, "alerts in the rules file: {names:?}");
    names
}

/// `stalewatch_*` metric names documented in docs/metrics.md (its table's first column).
fn documented_metrics() -> BTreeSet<String> {
    read("docs/metrics.md")
        .lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|l| l.split('`').next())
        .map(str::to_string)
        .collect()
}

/// Metric names in a PromQL text: `stalewatch_…` and recorded `…:…:…` series.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let bytes: Vec<char> = expr.chars().collect();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        if c.is_ascii_alphabetic() || c == '_' || c == ':' {
            let start = i;
            while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == '_' || bytes[i] == ':')
            {
                i += 1;
            }
            let word: String = bytes[start..i].iter().collect();
            if word.starts_with("stalewatch_") || word.matches(':').count() == 2 {
                out.insert(word);
            }
        } else if c == '"' {
            // Skip label values.
            i += 1;
            while i < bytes.len() && bytes[i] != '"' {
                i += 1;
            }
            i += 1;
        } else {
            i += 1;
        }
    }
    out
}

/// The base name of a histogram's or counter's series.
fn base_metric(name: &str) -> &str {
    for suffix in ["_bucket", "_sum", "_count"] {
        if let Some(b) = name.strip_suffix(suffix) {
            return b;
        }
    }
    name
}

#[test]
fn rules_pass_promtool_check_and_unit_tests() {
    if !require("promtool", "alerting rules") {
        return;
    }
    let out = promtool(&["check", "rules", "deploy/prometheus/stalewatch-rules.yaml"]);
    assert!(out.contains("SUCCESS"), "{out}");
    let out = promtool(&["test", "rules", "deploy/prometheus/stalewatch-rules.test.yaml"]);
    assert!(out.contains("SUCCESS"), "{out}");
    // Every alert is exercised by the unit tests, and each must be able to fail: a test file
    // naming no alert would pass vacuously.
    let tests = read("deploy/prometheus/stalewatch-rules.test.yaml");
    let names = alerts();
    assert!(names.len() >= 12, "{names:?}");
    for a in &names {
        let evals = tests.matches(&format!("alertname: {a}\n")).count();
        assert!(
            evals >= 2,
            "{a}: needs a firing and a not-firing evaluation ({evals} found)"
        );
    }
}

#[test]
fn the_prometheusrule_is_the_rules_file() {
    let tmp = tempfile::NamedTempFile::new().unwrap();
    let st = Command::new(project().join("deploy/prometheus/sync-prometheusrule.sh"))
        .arg(tmp.path())
        .status()
        .unwrap();
    assert!(st.success());
    assert_eq!(
        std::fs::read_to_string(tmp.path()).unwrap(),
        read("deploy/base/prometheusrule.yaml"),
        "deploy/base/prometheusrule.yaml is stale: run deploy/prometheus/sync-prometheusrule.sh"
    );
}

#[test]
fn podmonitor_and_prometheusrule_match_the_operator_models() {
    if !require("npm", "operator models") || !require("node", "operator models") {
        return;
    }
    // The models are installed once into target/ (npm registry), from the pinned lock file.
    let dir = project().join("target/operator-models");
    std::fs::create_dir_all(&dir).unwrap();
    for f in ["package.json", "package-lock.json", "validate-operator-kinds.mjs"] {
        std::fs::copy(project().join("tests/support").join(f), dir.join(f)).unwrap();
    }
    if !dir
        .join("node_modules/@kubernetes-models/prometheus-operator")
        .is_dir()
    {
        let out = Command::new("npm")
            .args(["ci", "--silent", "--no-audit", "--no-fund"])
            .current_dir(&dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "npm ci: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let run = |files: &[std::path::PathBuf]| {
        Command::new("node")
            .arg("validate-operator-kinds.mjs")
            .args(files)
            .current_dir(&dir)
            .output()
            .unwrap()
    };
    let ours = [
        project().join("deploy/base/podmonitor.yaml"),
        project().join("deploy/base/prometheusrule.yaml"),
    ];
    let out = run(&ours);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("PodMonitor stalewatch valid") && text.contains("PrometheusRule stalewatch valid"),
        "{text}"
    );
    // The validator can fail: a PodMonitor whose honorLabels is not a boolean.
    let bad = dir.join("bad-podmonitor.yaml");
    std::fs::write(
        &bad,
        read("deploy/base/podmonitor.yaml").replace("honorLabels: true", "honorLabels: \"yes\""),
    )
    .unwrap();
    assert!(!run(&[bad]).status.success());
}

#[test]
fn the_dashboard_uses_only_documented_metrics() {
    let doc: serde_json::Value =
        serde_json::from_str(&read("deploy/grafana/stalewatch-dashboard.json")).unwrap();
    let documented = documented_metrics();
    assert!(
        documented.contains("stalewatch_container_vulnerabilities"),
        "{documented:?}"
    );
    let rules = read("deploy/prometheus/stalewatch-rules.yaml");
    let recorded: BTreeSet<String> = rules
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- record: "))
        .map(|s| s.trim().to_string())
        .collect();
    let panels = doc["panels"].as_array().unwrap();
    let mut exprs = 0;
    let mut titles = BTreeSet::new();
    for p in panels {
        titles.insert(p["title"].as_str().unwrap_or_default().to_string());
        for t in p["targets"].as_array().into_iter().flatten() {
            let expr = t["expr"].as_str().unwrap();
            exprs += 1;
            for m in metric_names(expr) {
                assert!(
                    documented.contains(base_metric(&m)) || recorded.contains(&m),
                    "panel {:?}: {m} is neither a documented metric nor a shipped recording rule",
                    p["title"]
                );
            }
        }
    }
    assert!(exprs >= 20, "{exprs} queries");
    for row in [
        "Fleet overview",
        "Per namespace",
        "Per image",
        "Stale runtimes",
        "Agent health",
    ] {
        assert!(titles.contains(row), "{row} missing: {titles:?}");
    }
    // The rules themselves use only documented metrics too.
    for m in metric_names(&rules) {
        assert!(
            documented.contains(base_metric(&m)) || recorded.contains(&m),
            "rules: {m} is not documented"
        );
    }
}

#[test]
fn every_alert_has_a_runbook() {
    let runbooks = read("docs/alerts.md");
    for a in alerts() {
        assert!(
            runbooks.contains(&format!("\n## {a}\n")),
            "docs/alerts.md has no section for {a}"
        );
        let anchor = a.to_lowercase();
        assert!(
            read("deploy/prometheus/stalewatch-rules.yaml").contains(&format!("docs/alerts.md#{anchor}")),
            "{a}: runbook_url does not point at its section"
        );
    }
}

#[test]
fn metric_names_are_found_in_promql() {
    let names = metric_names(
        r#"sum by (le) (rate(stalewatch_scan_duration_seconds_bucket{reason="x_y"}[5m])) / image:stalewatch_containers:count"#,
    );
    assert_eq!(
        names.into_iter().collect::<Vec<_>>(),
        vec![
            "image:stalewatch_containers:count",
            "stalewatch_scan_duration_seconds_bucket"
        ]
    );
}

/// `kubectl kustomize DIR` (the kubectl on PATH; tests/kube.rs also dry-runs on a real 1.20).
/// `tests/support/compare_manifests.py`: (passed, what it printed).
fn compare_manifests(kustomized: &str, helmed: &str) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let (k, h) = (dir.path().join("kustomize.yaml"), dir.path().join("helm.yaml"));
    std::fs::write(&k, kustomized).unwrap();
    std::fs::write(&h, helmed).unwrap();
    let out = Command::new("python3")
        .arg(project().join("tests/support/compare_manifests.py"))
        .args([&k, &h])
        .output()
        .expect("run python3");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn the_chart_lints_clean_and_renders_what_kustomize_renders() {
    let test = "helm chart";
    if !require("kubectl", test) || !require("python3", test) {
        return;
    }
    let Some(lint) = helm(&["lint", "--strict", "deploy/helm/stalewatch"], test) else {
        return;
    };
    let text = String::from_utf8_lossy(&lint.stdout);
    assert!(
        lint.status.success() && text.contains("0 chart(s) failed"),
        "{text}"
    );
    for (dir, values) in [
        ("deploy/base", vec![]),
        ("deploy/with-mirror", vec!["--set", "mirror.enabled=true"]),
    ] {
        let helmed = helm_template(&values, test).unwrap();
        let (same, report) = compare_manifests(&kustomize(dir), &helmed);
        assert!(same, "{dir} and the chart ({values:?}) differ:\n{report}");
        let n: usize = report.split_whitespace().next().unwrap().parse().unwrap();
        assert!(n >= 9, "{dir}: only {n} objects compared: {report}");
    }
    // The comparison can fail: one setting changed is one difference, named.
    let changed = helm_template(&["--set", "agent.logLevel=debug"], test).unwrap();
    let (same, report) = compare_manifests(&kustomize("deploy/base"), &changed);
    assert!(!same && report.contains("STALEWATCH_LOG_LEVEL"), "{report}");
    // A pinned digest wins over the tag; node paths are values (k3s keeps containerd elsewhere).
    let k3s = helm_template(
        &[
            "--set",
            "image.digest=sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
            "--set",
            "containerd.socket=/run/k3s/containerd/containerd.sock",
            "--set",
            "containerd.root=/var/lib/rancher/k3s/agent/containerd",
        ],
        test,
    )
    .unwrap();
    assert!(
        k3s.contains("image: ghcr.io/stalewatch/stalewatch@sha256:0123456789abcdef"),
        "{k3s}"
    );
    assert!(k3s.contains("path: /run/k3s/containerd/containerd.sock"), "{k3s}");
    assert!(
        k3s.contains("mountPath: /var/lib/rancher/k3s/agent/containerd"),
        "{k3s}"
    );
}

#[test]
fn the_chart_refuses_bad_values_with_a_clear_message() {
    let test = "helm values schema";
    for (set, says) in [
        ("agent.driftInterval=soon", "/agent/driftInterval"),
        ("agent.kubeEvents=maybe", "/agent/kubeEvents"),
        ("agent.scanConcurrency=0", "/agent/scanConcurrency"),
        ("containerd.socket=run/containerd.sock", "/containerd/socket"),
        ("image.digest=latest", "/image/digest"),
        ("image.pullPolicy=Sometimes", "/image/pullPolicy"),
        ("podMonitor.enabled=maybe", "/podMonitor/enabled"),
        ("redeploy.mode=yes", "/redeploy/mode"),
        ("notify.urls={ftp://x}", "/notify/urls"),
        ("unknownValue=1", "unknownValue"),
    ] {
        let Some(out) = helm(&["template", "x", "deploy/helm/stalewatch", "--set", set], test) else {
            return;
        };
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{set} was accepted");
        assert!(err.contains(says), "{set}: expected {says:?} in: {err}");
    }
}

#[test]
fn every_object_the_chart_and_kustomize_render_is_valid_kubernetes() {
    let test = "kubernetes-validate";
    if !require("kubernetes-validate", test) || !require("kubectl", test) {
        return;
    }
    let Some(chart) = helm_template(&["--set", "mirror.enabled=true"], test) else {
        return;
    };
    for (name, doc) in [("chart", chart), ("kustomize", kustomize("deploy/with-mirror"))] {
        // The newest version kubernetes-validate knows (it has no 1.20 schemas; tests/kube.rs
        // dry-runs on a real 1.20 API server). The operator's kinds are checked by their models.
        let text = kubernetes_validate(name, &doc);
        for kind in [
            "daemonset/stalewatch",
            "clusterrole/stalewatch",
            "cronjob/osv-mirror-sync",
            "deployment/osv-mirror",
        ] {
            assert!(
                text.contains(&format!("passed for resource {kind}")),
                "{name}: {kind} not validated:\n{text}"
            );
        }
    }
}

#[test]
fn the_charts_copies_are_the_shipped_files() {
    for (copy, shipped) in [
        (
            "deploy/helm/stalewatch/files/stalewatch-rules.yaml",
            "deploy/prometheus/stalewatch-rules.yaml",
        ),
        (
            "deploy/helm/stalewatch/files/mirror-sync.sh",
            "deploy/mirror/sync.sh",
        ),
    ] {
        assert_eq!(
            read(copy),
            read(shipped),
            "{copy} is stale: copy {shipped} over it"
        );
    }
}

/// Python's http.server on a loopback port of its choosing: Last-Modified and
/// If-Modified-Since, as CISA's and the OSV bucket's servers answer curl -z.
fn http_server(dir: &std::path::Path) -> (std::process::Child, String) {
    let mut server = Command::new("python3")
        .args([
            "-u",
            "-m",
            "http.server",
            "0",
            "--bind",
            "127.0.0.1",
            "--directory",
        ])
        .arg(dir)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(server.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    let port = line
        .split(" port ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .unwrap()
        .to_string();
    (server, format!("http://127.0.0.1:{port}"))
}

/// The cluster mirror's sync job (deploy/mirror/sync.sh, run by its CronJob with curl) against
/// a loopback upstream: it fetches the OSV zip, CISA's KEV catalog and an EPSS file beside it,
/// asks again with If-Modified-Since (nothing downloaded twice), and refuses a malformed
/// catalog, keeping the good one it serves.
#[test]
fn the_mirror_carries_osv_kev_and_epss_and_keeps_good_copies() {
    if !require("curl", "mirror sync") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let up = tmp.path().join("upstream");
    std::fs::create_dir_all(up.join("Alpine")).unwrap();
    std::os::unix::fs::symlink(
        shared_data().join("osv/Alpine/all.zip"),
        up.join("Alpine/all.zip"),
    )
    .unwrap();
    let kev = std::fs::read(shared_data().join("kev/known_exploited_vulnerabilities.json")).unwrap();
    std::fs::write(up.join("kev.json"), &kev).unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut gz, b"#model_version:v2025.03.14,score_date:2025-08-24T00:00:00+0000\ncve,epss,percentile\nCVE-2014-6271,0.97000,0.99999\n").unwrap();
    let epss = gz.finish().unwrap();
    std::fs::write(up.join("epss.csv.gz"), &epss).unwrap();
    let (mut server, upstream) = http_server(&up);
    let data = tmp.path().join("data");
    let sync = || {
        let out = Command::new("sh")
            .arg(project().join("deploy/mirror/sync.sh"))
            .env("DATA", &data)
            .env("UPSTREAM", &upstream)
            .env("ECOSYSTEMS", "Alpine")
            .env("KEV_UPSTREAM", format!("{upstream}/kev.json"))
            .env("EPSS_UPSTREAM", format!("{upstream}/epss.csv.gz"))
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    };
    let first = sync();
    assert!(
        first.contains("Alpine: updated")
            && first.contains("kev: updated")
            && first.contains("epss: updated"),
        "{first}"
    );
    assert_eq!(
        std::fs::read(data.join("kev/known_exploited_vulnerabilities.json")).unwrap(),
        kev
    );
    assert_eq!(
        std::fs::read(data.join("epss/epss_scores-current.csv.gz")).unwrap(),
        epss
    );
    let again = sync();
    assert!(
        again.contains("kev: unchanged") && again.contains("epss: unchanged"),
        "{again}"
    );
    // A newer but malformed catalog upstream: refused, the good one stays served.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    std::fs::write(up.join("kev.json"), b"<html>maintenance</html>").unwrap();
    let bad = sync();
    assert!(bad.contains("kev: malformed"), "{bad}");
    assert_eq!(
        std::fs::read(data.join("kev/known_exploited_vulnerabilities.json")).unwrap(),
        kev
    );
    agents_read_the_mirror(&data, tmp.path());
    let _ = server.kill();
    let _ = server.wait();
}

/// What the mirror serves is what the agents read: `db update` takes KEV and EPSS from it.
fn agents_read_the_mirror(data: &std::path::Path, tmp: &std::path::Path) {
    let db = tmp.join("db");
    let served = common::mirror::Mirror::start(data.to_path_buf());
    let base = served.url().trim_end_matches('/').to_string();
    let out = stalewatch(&[
        "db",
        "update",
        "--advisory-source",
        &base,
        "--db-dir",
        db.to_str().unwrap(),
        "--ecosystem",
        "Alpine",
        "--kev-source",
        &format!("{base}/kev/known_exploited_vulnerabilities.json"),
        "--epss-source",
        &format!("{base}/epss/epss_scores-current.csv.gz"),
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let status = ok_json(&[
        "db",
        "status",
        "--db-dir",
        db.to_str().unwrap(),
        "--format",
        "json",
    ]);
    assert_eq!(status["feeds"]["kev"]["version"], "2025.08.25");
    assert_eq!(status["feeds"]["epss"]["entries"], 1);
}

/// Every manifest under `deploy/examples/` parsed as YAML (PyYAML); the Kubernetes kinds
/// validated by kubernetes-validate; Flux's Receiver (its CRDs are not here) checked for the
/// fields Flux's documentation names, with its secret in the same file.
#[test]
fn the_examples_are_valid_kubernetes_and_the_flux_receiver_is_well_formed() {
    let test = "examples";
    if !require("kubernetes-validate", test) {
        return;
    }
    let docs = |file: &str| -> Vec<serde_json::Value> {
        let script = "import json, sys, yaml; print(json.dumps([d for d in yaml.safe_load_all(open(sys.argv[1])) if d]))";
        let out = Command::new("python3")
            .args(["-c", script, file])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{file}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    };
    for file in [
        "deploy/examples/networkpolicy.yaml",
        "deploy/examples/base-prepull.yaml",
    ] {
        let out = Command::new("kubernetes-validate")
            .arg("--strict")
            .arg(project().join(file))
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success() && !text.contains("ERROR"), "{file}:\n{text}");
        assert_eq!(
            text.matches("passed for resource").count(),
            docs(&project().join(file).to_string_lossy()).len(),
            "{text}"
        );
    }
    let flux = docs(
        &project()
            .join("deploy/examples/flux-receiver.yaml")
            .to_string_lossy(),
    );
    let receiver = flux.iter().find(|d| d["kind"] == "Receiver").unwrap();
    let secret = flux.iter().find(|d| d["kind"] == "Secret").unwrap();
    assert_eq!(receiver["apiVersion"], "notification.toolkit.fluxcd.io/v1");
    assert_eq!(receiver["spec"]["type"], "generic-hmac");
    assert_eq!(receiver["spec"]["secretRef"]["name"], secret["metadata"]["name"]);
    assert_eq!(receiver["metadata"]["namespace"], secret["metadata"]["namespace"]);
    assert!(
        secret["stringData"]["token"].is_string(),
        "Flux reads the `token` key"
    );
    assert!(!receiver["spec"]["resources"].as_array().unwrap().is_empty());
}

/// The redeploy's RBAC and settings come only with the Kustomize component or Helm's
/// `redeploy.enabled`, and both say the same: the base and the default chart grant nothing on
/// workloads.
#[test]
fn the_redeploy_component_and_the_charts_redeploy_value_grant_the_same() {
    let test = "redeploy rbac";
    if !require("kubectl", test) {
        return;
    }
    let docs = yaml_docs;
    let rules = |objects: &[serde_json::Value]| -> Vec<serde_json::Value> {
        objects
            .iter()
            .filter(|o| {
                o["kind"] == "ClusterRole" && o["metadata"]["name"].as_str().unwrap().ends_with("-redeploy")
            })
            .flat_map(|o| o["rules"].as_array().unwrap().clone())
            .collect()
    };
    let config = |objects: &[serde_json::Value]| -> serde_json::Value {
        objects
            .iter()
            .find(|o| o["kind"] == "ConfigMap" && o["data"]["STALEWATCH_LOG_LEVEL"].is_string())
            .unwrap()["data"]["STALEWATCH_REDEPLOY"]
            .clone()
    };
    let with = docs(&kustomize_with_component("redeploy"));
    let base = docs(&kustomize("deploy/base"));
    assert!(rules(&base).is_empty() && config(&base).is_null());
    let expected = serde_json::json!([
        {"apiGroups": ["apps"], "resources": ["replicasets"], "verbs": ["get"]},
        {"apiGroups": ["apps"], "resources": ["deployments", "statefulsets", "daemonsets"], "verbs": ["get", "patch"]},
    ]);
    assert_eq!(serde_json::Value::Array(rules(&with)), expected);
    assert_eq!(config(&with), "dry-run");
    let Some(chart) = helm_template(&["--set", "redeploy.enabled=true"], test) else {
        return;
    };
    let chart = docs(&chart);
    assert_eq!(serde_json::Value::Array(rules(&chart)), expected);
    assert_eq!(config(&chart), "dry-run");
    let plain = docs(&helm_template(&[], test).unwrap());
    assert!(rules(&plain).is_empty() && config(&plain).is_null());
}

/// The chart's CloudEvents and base-image values become the agent's settings, and the
/// Secret's token a read-only file the agent is pointed at; the rendering is valid Kubernetes.
#[test]
fn the_charts_notify_and_base_image_values_reach_the_agent() {
    let test = "chart notify values";
    let set = [
        "--set",
        "notify.urls={https://flux.example/hook/abc,http://consumer.example:8080/}",
        "--set",
        "notify.secretName=stalewatch-notify",
        "--set",
        "agent.baseImages={docker.io/library/alpine:3.20}",
    ];
    let Some(rendered) = helm_template(&set, test) else {
        return;
    };
    let config = rendered
        .split("\n---")
        .find(|d| d.contains("kind: ConfigMap") && d.contains("STALEWATCH_LOG_LEVEL"))
        .unwrap();
    for line in [
        "STALEWATCH_NOTIFY_URLS: \"https://flux.example/hook/abc,http://consumer.example:8080/\"",
        "STALEWATCH_NOTIFY_SECRET_FILE: \"/etc/stalewatch/notify/token\"",
        "STALEWATCH_NOTIFY_MIN_SEVERITY: \"high\"",
        "STALEWATCH_BASE_IMAGES: \"docker.io/library/alpine:3.20\"",
    ] {
        assert!(config.contains(line), "{line} not in:\n{config}");
    }
    let ds = rendered
        .split("\n---")
        .find(|d| d.contains("kind: DaemonSet") && d.contains("name: stalewatch\n"))
        .unwrap();
    assert!(
        ds.contains("mountPath: /etc/stalewatch/notify") && ds.contains("secretName: stalewatch-notify"),
        "{ds}"
    );
    if !require("kubernetes-validate", test) {
        return;
    }
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), &rendered).unwrap();
    let out = Command::new("kubernetes-validate")
        .arg("--strict")
        .arg(file.path())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && !text.contains("ERROR"), "{text}");
    // The default chart sets none of it.
    let plain = helm_template(&[], test).unwrap();
    assert!(!plain.contains("STALEWATCH_NOTIFY") && !plain.contains("STALEWATCH_BASE_IMAGES"));
}

/// The agent's host mounts as (mount path, read-only, propagation) of a rendering's DaemonSet.
fn agent_mounts(objects: &[serde_json::Value]) -> BTreeSet<(String, bool, String)> {
    let ds = objects
        .iter()
        .find(|o| o["kind"] == "DaemonSet" && o["metadata"]["name"] == "stalewatch")
        .unwrap();
    ds["spec"]["template"]["spec"]["containers"][0]["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["mountPath"].as_str().unwrap().to_string(),
                m["readOnly"].as_bool().unwrap_or(false),
                m["mountPropagation"].as_str().unwrap_or("None").to_string(),
            )
        })
        .collect()
}

/// Snapshots of lazily pulled images appear on the host after the agent starts, under the
/// containerd root or a proxy snapshotter's: both renderings mount them read-only with
/// host-to-container propagation, the Kustomize component and the chart's value alike.
#[test]
fn snapshotter_roots_are_mounted_read_only_with_host_propagation() {
    let test = "snapshotter roots";
    if !require("kubectl", test) {
        return;
    }
    let roots = [
        "/var/lib/soci-snapshotter-grpc",
        "/var/lib/containerd-stargz-grpc",
    ];
    let wanted = |mounts: BTreeSet<(String, bool, String)>| -> BTreeSet<(String, bool, String)> {
        mounts
            .into_iter()
            .filter(|m| m.0 == "/var/lib/containerd" || roots.contains(&m.0.as_str()))
            .collect()
    };
    let expected: BTreeSet<(String, bool, String)> = std::iter::once("/var/lib/containerd")
        .chain(roots)
        .map(|p| (p.to_string(), true, "HostToContainer".to_string()))
        .collect();
    let base = wanted(agent_mounts(&yaml_docs(&kustomize("deploy/base"))));
    assert_eq!(base, expected.iter().take(1).cloned().collect());
    let with = wanted(agent_mounts(&yaml_docs(&kustomize_with_component(
        "snapshotter-roots",
    ))));
    assert_eq!(with, expected);
    let set = format!("containerd.snapshotterRoots={{{}}}", roots.join(","));
    let Some(chart) = helm_template(&["--set", &set], test) else {
        return;
    };
    assert_eq!(wanted(agent_mounts(&yaml_docs(&chart))), expected);
}

/// The node scan's component mounts the host's os-release and dpkg databases read-only under
/// /host — where `--node-scan auto` looks — and nothing else of the host: never its `/`, its
/// `/etc` or `/var/lib` whole (the kubelet's keys live there).
#[test]
fn the_node_scan_component_mounts_only_os_release_and_the_package_databases() {
    let test = "node scan component";
    if !require("kubectl", test) {
        return;
    }
    let base = agent_mounts(&yaml_docs(&kustomize("deploy/base")));
    let rendered = kustomize_with_component("node-scan");
    kubernetes_validate(test, &rendered);
    let with = agent_mounts(&yaml_docs(&rendered));
    let added: BTreeSet<_> = with.difference(&base).cloned().collect();
    let none = "None".to_string();
    assert_eq!(
        added,
        BTreeSet::from([
            ("/host/etc/os-release".to_string(), true, none.clone()),
            ("/host/var/lib/dpkg".to_string(), true, none),
        ])
    );
    let objects = yaml_docs(&rendered);
    let ds = objects.iter().find(|o| o["kind"] == "DaemonSet").unwrap();
    let host_paths: BTreeSet<&str> = ds["spec"]["template"]["spec"]["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v["hostPath"]["path"].as_str())
        .collect();
    for broad in ["/", "/etc", "/var", "/var/lib", "/run", "/var/run"] {
        assert!(!host_paths.contains(broad), "{broad} mounted: {host_paths:?}");
    }
    assert!(host_paths.contains("/etc/os-release") && host_paths.contains("/var/lib/dpkg"));
}
