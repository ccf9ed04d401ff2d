//! What `deploy/` ships, checked by real tools: the rules with promtool (`check rules`, and
//! `test rules` firing and not firing for every alert), the PrometheusRule equal to the plain
//! rules file, the PodMonitor and PrometheusRule against the Prometheus Operator's published
//! models, the dashboard built only from documented metrics, a runbook for every alert; the
//! Helm chart linted, rendering exactly what Kustomize renders, refusing bad values, and every
//! object it renders valid for the newest Kubernetes kubernetes-validate knows.

mod common;

use common::*;
use std::collections::{BTreeMap, BTreeSet};
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

/// The chart's rules rendered with `helm template` and these `--set`s: the rule groups (the
/// PrometheusRule's spec) as YAML text, or `None` without Helm (a failure unless skips are
/// allowed).
fn rendered_rules(test: &str, sets: &[&str]) -> Option<String> {
    let mut args = vec![
        "--set",
        "prometheusRule.enabled=true",
        "--show-only",
        "templates/prometheusrule.yaml",
    ];
    for s in sets {
        args.extend(["--set", s]);
    }
    let text = helm_template(&args, test)?;
    let spec = text.split("\nspec:\n").nth(1).expect("a PrometheusRule spec");
    Some(
        spec.lines()
            .map(|l| l.strip_prefix("  ").unwrap_or(l))
            .collect::<Vec<_>>()
            .join("\n")
            + "\n",
    )
}

/// The alerting rules of a rendering, by name.
fn rules_by_name(groups_yaml: &str) -> BTreeMap<String, serde_json::Value> {
    let doc = &yaml_docs(groups_yaml)[0];
    doc["groups"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
        .filter_map(|r| Some((r["alert"].as_str()?.to_string(), r)))
        .collect()
}

#[test]
fn the_rules_file_is_the_charts_rendering_with_its_defaults() {
    let Some(rendered) = rendered_rules("rules from the chart", &[]) else {
        return;
    };
    let plain = read("deploy/prometheus/stalewatch-rules.yaml");
    assert_eq!(
        yaml_docs(&rendered),
        yaml_docs(&plain),
        "deploy/prometheus/stalewatch-rules.yaml is stale: run deploy/prometheus/render-rules.sh"
    );
}

/// Every rule's `for`, severity and threshold come from the values, extra labels reach every
/// alert, a rule can be turned off, runbooks link under the configured base, and the job the
/// agent rules watch follows nameOverride (a renamed release still alerts on a down agent).
#[test]
#[allow(clippy::too_many_lines)] // one rendering, checked rule by rule
fn every_threshold_for_and_severity_is_a_value() {
    let test = "rules from values";
    let defaults: serde_json::Value = yaml_docs(&read("deploy/helm/stalewatch/values.yaml"))[0].clone();
    let names: Vec<String> = defaults["alerts"]["rules"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    let mut sets = vec![
        "alerts.runbookBaseUrl=https://runbooks.example.org/stalewatch".to_string(),
        "alerts.additionalLabels.team=platform".to_string(),
        "alerts.additionalLabels.cluster=aks-west-1".to_string(),
        "alerts.rules.StalewatchContainerDrift.enabled=false".to_string(),
        "alerts.rules.StalewatchAdvisoryDataStale.maxAge=36h".to_string(),
        "alerts.rules.StalewatchTriageDataStale.kevMaxAge=14d".to_string(),
        "alerts.rules.StalewatchTriageDataStale.epssMaxAge=2d".to_string(),
        "alerts.rules.StalewatchScanErrors.perHour=7".to_string(),
        "alerts.rules.StalewatchAdvisoryUpdateErrors.per3h=8".to_string(),
        "alerts.rules.StalewatchKubeEventsFailing.perHour=9".to_string(),
        "alerts.rules.StalewatchNotificationsFailing.perHour=4".to_string(),
        "agent.staleAfter=30d".to_string(),
        "nameOverride=sw".to_string(),
    ];
    for (i, n) in names.iter().enumerate() {
        sets.push(format!("alerts.rules.{n}.for={}m", 11 + i));
        sets.push(format!("alerts.rules.{n}.severity=sev{i}"));
    }
    let refs: Vec<&str> = sets.iter().map(String::as_str).collect();
    let Some(rendered) = rendered_rules(test, &refs) else {
        return;
    };
    let rules = rules_by_name(&rendered);
    for (i, n) in names.iter().enumerate() {
        if n == "StalewatchContainerDrift" {
            assert!(!rules.contains_key(n), "a disabled rule is rendered");
            continue;
        }
        let r = rules.get(n).unwrap_or_else(|| panic!("{n} not rendered"));
        assert_eq!(r["for"], format!("{}m", 11 + i), "{n}");
        assert_eq!(r["labels"]["severity"], format!("sev{i}"), "{n}");
        assert_eq!(r["labels"]["team"], "platform", "{n}");
        assert_eq!(r["labels"]["cluster"], "aks-west-1", "{n}");
        assert_eq!(
            r["annotations"]["runbook_url"],
            format!("https://runbooks.example.org/stalewatch#{}", n.to_lowercase()),
            "{n}"
        );
    }
    let expr = |n: &str| rules[n]["expr"].as_str().unwrap().to_string();
    // 30 days, 36 hours, 14 and 2 days, in seconds.
    assert!(
        expr("StalewatchStaleRuntime").contains("> 2592000"),
        "{}",
        expr("StalewatchStaleRuntime")
    );
    assert!(expr("StalewatchAdvisoryDataStale").contains("> 129600"));
    assert!(expr("StalewatchTriageDataStale").contains("> 1209600"));
    assert!(expr("StalewatchTriageDataStale").contains("> 172800"));
    assert!(expr("StalewatchScanErrors").contains("> 7)"));
    assert!(expr("StalewatchAdvisoryUpdateErrors").contains("> 8)"));
    assert!(expr("StalewatchKubeEventsFailing").contains("> 9)"));
    assert!(expr("StalewatchNotificationsFailing").contains("> 4)"));
    assert!(expr("StalewatchAgentDown").contains(r#"up{job="sw"}"#));
    assert!(expr("StalewatchAgentAbsent").contains(r#"up{job="sw"}"#));
    // The renamed release's rules, evaluated: an agent of job "sw" down pages; none of
    // job "stalewatch" is absent-alerted.
    let down = names.iter().position(|n| n == "StalewatchAgentDown").unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("rules.yaml"), &rendered).unwrap();
    std::fs::write(
        dir.path().join("test.yaml"),
        r#"rule_files: [rules.yaml]
evaluation_interval: 1m
tests:
  - interval: 1m
    input_series:
      - series: 'up{job="sw",instance="198.18.0.10:9477",node="node-a"}'
        values: '0x70'
    alert_rule_test:
      - eval_time: 5m
        alertname: StalewatchAgentDown
        exp_alerts: []
      - eval_time: 60m
        alertname: StalewatchAgentDown
        exp_alerts:
          - exp_labels: {severity: sevDOWN, team: platform, cluster: aks-west-1}
            exp_annotations:
              summary: "1 stalewatch agents are not scraped"
              description: "Prometheus cannot scrape 1 stalewatch agents: the containers of those nodes are not watched. up == 0 lists them."
              runbook_url: "https://runbooks.example.org/stalewatch#stalewatchagentdown"
      - eval_time: 60m
        alertname: StalewatchAgentAbsent
        exp_alerts: []
"#
        .replace("sevDOWN", &format!("sev{down}")),
    )
    .unwrap();
    if !require("promtool", test) {
        return;
    }
    let out = Command::new("promtool")
        .args(["test", "rules", "test.yaml"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The fleet scenario of issue 29 (deploy/prometheus/scenario-test.py): its committed
/// expansion is the script's output, names every alert, and passes promtool — one alert per
/// problem.
#[test]
fn the_fleet_scenario_gives_one_alert_per_problem() {
    let out = Command::new("python3")
        .arg(project().join("deploy/prometheus/scenario-test.py"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let file = "deploy/prometheus/stalewatch-rules.scenario.test.yaml";
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        read(file),
        "{file} is stale: run deploy/prometheus/scenario-test.py > {file}"
    );
    let scenario = read(file);
    for a in alerts() {
        assert!(
            scenario.contains(&format!("alertname: {a}\n")),
            "the scenario says nothing of {a}"
        );
    }
    if !require("promtool", "fleet scenario") {
        return;
    }
    let text = promtool(&["test", "rules", file]);
    assert!(text.contains("SUCCESS"), "{text}");
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
        assert!(n >= 8, "{dir}: only {n} objects compared: {report}");
    }
    // The chart's own priority class is deploy/components/priority.
    let helmed = helm_template(&["--set", "priorityClass.create=true"], test).unwrap();
    let (same, report) = compare_manifests(&kustomize_with_component("priority"), &helmed);
    assert!(
        same,
        "components/priority and priorityClass.create differ:\n{report}"
    );
    assert!(
        helmed.contains("kind: PriorityClass") && helmed.contains("priorityClassName: stalewatch-node-agent")
    );
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
    let (copy, shipped) = (
        "deploy/helm/stalewatch/files/stalewatch-dashboard.json",
        "deploy/grafana/stalewatch-dashboard.json",
    );
    assert_eq!(
        read(copy),
        read(shipped),
        "{copy} is stale: copy {shipped} over it"
    );
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

/// The cluster mirror's sync (`stalewatch mirror --once`, what its pod runs every interval)
/// against a loopback upstream (Python's http.server): it fetches the OSV zip, CISA's KEV
/// catalog and an EPSS file beside it, asks again with If-Modified-Since (nothing downloaded
/// twice), fails visibly on a dead upstream, and refuses a malformed catalog, keeping the good
/// one it serves.
#[test]
#[allow(clippy::too_many_lines)] // a scenario test that reads top to bottom
fn the_mirror_carries_osv_kev_and_epss_and_keeps_good_copies() {
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
    let sync_time = || -> Option<String> {
        let text = std::fs::read_to_string(data.join("stalewatch-sync.json")).ok()?;
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        Some(v["synced_at"].as_str()?.to_string())
    };
    let try_sync = |upstream: &str| {
        let out = Command::new(common::bin())
            .args(["mirror", "--once", "--data"])
            .arg(&data)
            .args(["--upstream", upstream, "--ecosystem", "Alpine"])
            .arg(format!("--kev-upstream={upstream}/kev.json"))
            .arg(format!("--epss-upstream={upstream}/epss.csv.gz"))
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), text)
    };
    let sync = || {
        let (ok, text) = try_sync(&upstream);
        assert!(ok, "{text}");
        text
    };
    assert_eq!(sync_time(), None);
    let first = sync();
    // Every ecosystem refreshed: the sync's time is written (RFC 3339, UTC, now).
    let synced = sync_time().expect("stalewatch-sync.json after a good sync");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let date = Command::new("date")
        .args(["-u", "-d", &synced, "+%s"])
        .output()
        .unwrap();
    let at: i64 = String::from_utf8(date.stdout).unwrap().trim().parse().unwrap();
    assert!((now - at).abs() < 60, "{synced}");
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
        again.contains("Alpine: unchanged")
            && again.contains("kev: unchanged")
            && again.contains("epss: unchanged"),
        "{again}"
    );
    // Nothing half-written is left beside the served files (the sync's part files are hidden).
    let mut names: Vec<String> = walk_names(&data);
    names.sort();
    assert_eq!(
        names,
        [
            ".stalewatch-mirror.json",
            "Alpine/all.zip",
            "epss/epss_scores-current.csv.gz",
            "kev/known_exploited_vulnerabilities.json",
            "stalewatch-sync.json"
        ]
    );
    // An upstream that fails: the sync fails visibly (exit 1), its time stays the last good one.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let before = sync_time();
    let (ok, text) = try_sync("http://127.0.0.1:9");
    assert!(!ok && text.contains("Alpine: download failed"), "{text}");
    assert_eq!(sync_time(), before);
    // A newer but malformed catalog upstream: refused (the sync fails), the good one stays served.
    std::fs::write(up.join("kev.json"), b"<html>maintenance</html>").unwrap();
    let (ok, bad) = try_sync(&upstream);
    assert!(!ok && bad.contains("kev: malformed"), "{bad}");
    assert_eq!(
        std::fs::read(data.join("kev/known_exploited_vulnerabilities.json")).unwrap(),
        kev
    );
    agents_read_the_mirror(&data, tmp.path(), &sync_time().unwrap());
    let _ = server.kill();
    let _ = server.wait();
}

/// Every file below `dir`, as paths relative to it.
fn walk_names(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let name = e.file_name().to_string_lossy().into_owned();
        if e.file_type().unwrap().is_dir() {
            out.extend(walk_names(&e.path()).into_iter().map(|n| format!("{name}/{n}")));
        } else {
            out.push(name);
        }
    }
    out
}

/// `stalewatch mirror` serving `data` on a loopback port (no sync: its upstream refuses every
/// connection); killed when dropped.
struct ServedMirror(std::process::Child, String);

impl ServedMirror {
    fn start(data: &std::path::Path) -> ServedMirror {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(common::bin())
            .args(["mirror", "--upstream", "http://127.0.0.1:9", "--kev-upstream=off"])
            .args(["--epss-upstream=off", "--ecosystem", "Alpine", "--data"])
            .arg(data)
            .arg(format!("--listen=127.0.0.1:{port}"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let base = format!("http://127.0.0.1:{port}");
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        ServedMirror(child, base)
    }
}

impl Drop for ServedMirror {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// One GET with curl: (status, headers, body).
fn curl(url: &str, headers: &[String]) -> (u16, String, Vec<u8>) {
    let tmp = tempfile::NamedTempFile::new().unwrap();
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "-D", "-", "-o"]).arg(tmp.path());
    for h in headers {
        cmd.args(["-H", h]);
    }
    let out = cmd.arg(url).output().unwrap();
    let head = String::from_utf8_lossy(&out.stdout).into_owned();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, head, std::fs::read(tmp.path()).unwrap())
}

/// What the mirror serves is what the agents read: `db update` takes OSV, KEV and EPSS from
/// `stalewatch mirror`'s server and asks again with the validators it gave (304, as curl
/// checks too); nothing outside the data nor hidden is served.
fn agents_read_the_mirror(data: &std::path::Path, tmp: &std::path::Path, synced: &str) {
    let db = tmp.join("db");
    let served = ServedMirror::start(data);
    let base = served.1.clone();
    let (code, head, body) = curl(&format!("{base}/Alpine/all.zip"), &[]);
    assert_eq!(code, 200, "{head}");
    assert_eq!(body, std::fs::read(data.join("Alpine/all.zip")).unwrap());
    let header = |name: &str| {
        head.lines()
            .find_map(|l| l.split_once(':').filter(|(k, _)| k.eq_ignore_ascii_case(name)))
            .map(|(_, v)| v.trim().to_string())
            .unwrap_or_else(|| panic!("no {name} in {head}"))
    };
    let (etag, modified) = (header("etag"), header("last-modified"));
    let url = format!("{base}/Alpine/all.zip");
    assert_eq!(curl(&url, &[format!("If-None-Match: {etag}")]).0, 304);
    assert_eq!(curl(&url, &[format!("If-Modified-Since: {modified}")]).0, 304);
    assert_eq!(curl(&url, &["If-None-Match: \"other\"".to_string()]).0, 200);
    for hidden in [
        ".stalewatch-mirror.json",
        "Alpine",
        "%2e%2e/%2e%2e/etc/passwd",
        "Alpine/%2e%2e/%2e%2e/x",
    ] {
        assert_eq!(curl(&format!("{base}/{hidden}"), &[]).0, 404, "{hidden}");
    }
    // `db update` of Alpine through the mirror, with more flags.
    let update =
        |extra: &[&str]| common::db_update(&base, &db, &[&["--ecosystem", "Alpine"], extra].concat());
    let out = update(&[
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
    // The data's own age: the mirror's sync time, as its file says.
    assert_eq!(status["source_synced"]["at"], synced);
    assert_eq!(status["source_synced"]["from"], "stalewatch-sync.json");
    // Asked again: the mirror answers 304, nothing is downloaded nor rebuilt.
    let again = update(&["--format", "json"]);
    let text = String::from_utf8_lossy(&again.stdout);
    assert!(again.status.success() && text.contains("unchanged"), "{text}");
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
    // The lab (kubectl 1.20's kustomize has no components) carries the same mounts as a patch.
    let lab = agent_mounts(&yaml_docs(&kustomize("deploy/lab")));
    assert_eq!(
        lab, with,
        "deploy/lab/node-scan.yaml vs deploy/components/node-scan"
    );
    let volumes = |objects: &[serde_json::Value]| -> Vec<serde_json::Value> {
        let ds = objects.iter().find(|o| o["kind"] == "DaemonSet").unwrap();
        let mut v = ds["spec"]["template"]["spec"]["volumes"]
            .as_array()
            .unwrap()
            .clone();
        v.sort_by_key(|x| x["name"].as_str().unwrap_or_default().to_string());
        v
    };
    assert_eq!(volumes(&yaml_docs(&kustomize("deploy/lab"))), volumes(&objects));
}

/// The chart's CI values (`deploy/helm/stalewatch/ci/*-values.yaml`: defaults, no Prometheus
/// Operator, kube-prometheus-stack selectors, air-gapped registry, private CA, ServiceMonitor)
/// lint strictly and render objects Kubernetes 1.30 and 1.33 accept; what each is for shows in
/// its rendering.
#[test]
#[allow(clippy::too_many_lines)] // one check per values file, read top to bottom
fn every_ci_values_file_lints_and_renders_valid_kubernetes() {
    let test = "chart ci values";
    if !require("kubernetes-validate", test) {
        return;
    }
    let dir = project().join("deploy/helm/stalewatch/ci");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.to_string_lossy().ends_with("-values.yaml"))
        .collect();
    files.sort();
    assert!(files.len() >= 6, "{files:?}");
    for f in &files {
        let name = f.file_name().unwrap().to_string_lossy().to_string();
        let path = f.to_str().unwrap();
        let Some(lint) = helm(&["lint", "--strict", "deploy/helm/stalewatch", "-f", path], test) else {
            return;
        };
        let text = String::from_utf8_lossy(&lint.stdout);
        assert!(
            lint.status.success() && text.contains("0 chart(s) failed"),
            "{name}: {text}"
        );
        let rendered = helm_template(&["-f", path], test).unwrap();
        // The operator's kinds have no schemas in kubernetes-validate (their own models check
        // them in podmonitor_and_prometheusrule_match_the_operator_models).
        let builtin: String = yaml_docs(&rendered)
            .into_iter()
            .filter(|d| {
                !d["apiVersion"]
                    .as_str()
                    .unwrap_or("")
                    .starts_with("monitoring.coreos.com/")
            })
            .map(|d| serde_json::to_string(&d).unwrap() + "\n---\n")
            .collect();
        for version in ["1.30.0", "1.33.0"] {
            let file = tempfile::NamedTempFile::new().unwrap();
            std::fs::write(file.path(), &builtin).unwrap();
            let out = Command::new("kubernetes-validate")
                .args(["--strict", "-k", version])
                .arg(file.path())
                .output()
                .unwrap();
            let says = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            assert!(
                out.status.success() && !says.contains("ERROR"),
                "{name} on {version}:\n{says}"
            );
        }
        let kinds: BTreeSet<String> = yaml_docs(&rendered)
            .iter()
            .filter_map(|d| d["kind"].as_str().map(str::to_string))
            .collect();
        match name.as_str() {
            "no-prometheus-operator-values.yaml" => {
                assert!(
                    !kinds.contains("PodMonitor") && !kinds.contains("PrometheusRule"),
                    "{kinds:?}"
                );
            }
            "service-monitor-values.yaml" => {
                assert!(
                    kinds.contains("ServiceMonitor") && !kinds.contains("PodMonitor"),
                    "{kinds:?}"
                );
            }
            "kube-prometheus-stack-values.yaml" => {
                assert_eq!(
                    rendered.matches("release: kube-prometheus-stack").count(),
                    2,
                    "{name}"
                );
                assert!(rendered.contains("https://wiki.example.org/runbooks/stalewatch#stalewatchagentdown"));
                // The dashboard for Grafana's sidecar, valid JSON inside its ConfigMap.
                let cm = yaml_docs(&rendered)
                    .into_iter()
                    .find(|d| d["kind"] == "ConfigMap" && d["metadata"]["labels"]["grafana_dashboard"] == "1")
                    .expect("the dashboard ConfigMap");
                let inside: serde_json::Value =
                    serde_json::from_str(cm["data"]["stalewatch-dashboard.json"].as_str().unwrap()).unwrap();
                let shipped: serde_json::Value =
                    serde_json::from_str(&read("deploy/grafana/stalewatch-dashboard.json")).unwrap();
                assert_eq!(inside, shipped);
                assert!(kinds.contains("NetworkPolicy"), "{kinds:?}");
            }
            "air-gapped-values.yaml" => {
                // Every image of the release moved to the internal registry.
                let images: Vec<&str> = rendered
                    .lines()
                    .filter_map(|l| l.trim().strip_prefix("image: "))
                    .collect();
                assert!(images.len() >= 3, "{images:?}");
                assert!(
                    images
                        .iter()
                        .all(|i| i.starts_with("registry.internal.example:5000/")),
                    "{images:?}"
                );
                // The agent's, the mirror's (server and sync in one pod), `helm test`'s pod.
                assert_eq!(
                    rendered.matches("- name: internal-registry").count(),
                    3,
                    "every pod's pull secret"
                );
                // One pod serves and syncs the mirror, on one volume: no CronJob to land on
                // another node than a ReadWriteOnce disk.
                assert!(!kinds.contains("CronJob"), "{kinds:?}");
                let docs = yaml_docs(&rendered);
                let mirror = docs
                    .iter()
                    .find(|d| d["kind"] == "Deployment" && d["metadata"]["name"] == "osv-mirror")
                    .unwrap();
                let containers: Vec<&str> = mirror["spec"]["template"]["spec"]["containers"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|c| c["name"].as_str().unwrap())
                    .collect();
                assert_eq!(containers, ["mirror"]);
                assert_eq!(mirror["spec"]["strategy"]["type"], "Recreate");
                // No volume provisioner: an emptyDir, no claim; the interval in seconds.
                assert!(!kinds.contains("PersistentVolumeClaim"), "{kinds:?}");
                assert!(rendered.contains("{name: STALEWATCH_MIRROR_INTERVAL, value: \"30m\"}"));
                assert!(
                    rendered.contains("{name: HTTPS_PROXY, value: \"http://proxy.internal.example:3128\"}")
                );
            }
            "private-ca-values.yaml" => {
                assert!(
                    rendered.contains("mountPath: /etc/stalewatch/ca")
                        && rendered.contains("name: internal-ca")
                );
            }
            _ => {}
        }
    }
}

/// The chart as a dependency: a parent chart's `global` values are allowed (helm/helm#10392)
/// and read — `global.imageRegistry` moves the agent's image — and a priority class is named
/// only when one exists.
#[test]
fn the_chart_renders_as_a_dependency_with_global_values() {
    let test = "umbrella chart";
    let tmp = tempfile::tempdir().unwrap();
    let parent = tmp.path().join("platform");
    std::fs::create_dir_all(parent.join("charts")).unwrap();
    std::fs::write(
        parent.join("Chart.yaml"),
        "apiVersion: v2\nname: platform\nversion: 1.0.0\ndependencies:\n  - name: stalewatch\n    version: \">=0.0.0\"\n",
    )
    .unwrap();
    std::fs::write(
        parent.join("values.yaml"),
        "global:\n  imageRegistry: registry.corp.example\n  imagePullSecrets: [corp-pull]\n  storageClass: premium\nstalewatch:\n  priorityClass:\n    create: false\n",
    )
    .unwrap();
    let copy = Command::new("cp")
        .arg("-r")
        .arg(project().join("deploy/helm/stalewatch"))
        .arg(parent.join("charts/stalewatch"))
        .status()
        .unwrap();
    assert!(copy.success());
    let Some(out) = helm(
        &[
            "template",
            "platform",
            parent.to_str().unwrap(),
            "--namespace",
            "platform",
        ],
        test,
    ) else {
        return;
    };
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        text.contains("image: registry.corp.example/stalewatch/stalewatch:"),
        "{text}"
    );
    assert!(text.contains("- name: corp-pull"), "{text}");
    // priorityClass.create=false and no name: no reference to a class that does not exist.
    assert!(!text.contains("priorityClassName"), "{text}");
    assert!(!text.contains("kind: PriorityClass"));
}

/// The chart's `helm test` pod is no agent: no label selector of the release's DaemonSet or
/// Services matches it (the DaemonSet's controller would adopt it and delete it — seen on the
/// lab cluster — and the headless Service would send scrapes to it).
#[test]
fn the_test_pod_matches_no_selector_of_the_release() {
    let Some(rendered) = helm_template(&["--set", "mirror.enabled=true"], "helm test pod") else {
        return;
    };
    let docs = yaml_docs(&rendered);
    let pod = docs
        .iter()
        .find(|d| d["kind"] == "Pod" && d["metadata"]["annotations"]["helm.sh/hook"] == "test")
        .expect("the test pod");
    let labels = &pod["metadata"]["labels"];
    let mut selectors = 0;
    for d in &docs {
        let selector = match d["kind"].as_str() {
            Some("DaemonSet" | "Deployment") => &d["spec"]["selector"]["matchLabels"],
            Some("Service") => &d["spec"]["selector"],
            _ => continue,
        };
        selectors += 1;
        let matches = selector.as_object().unwrap().iter().all(|(k, v)| &labels[k] == v);
        assert!(
            !matches,
            "{} {} selects the test pod",
            d["kind"], d["metadata"]["name"]
        );
    }
    assert!(selectors >= 4, "{selectors}");
}

/// `helm test`'s probe (`stalewatch check`, the chart's test pod, templates/tests): 200 with the
/// expected text passes; a missing text, a 404 and a closed port fail, each said.
#[test]
fn the_charts_test_probe_passes_only_on_a_ready_agent() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(
        tmp.path().join("metrics"),
        "stalewatch_build_info{version=\"0.1.0\"} 1\n",
    )
    .unwrap();
    std::fs::write(tmp.path().join("readyz"), "ready\n").unwrap();
    let (mut server, base) = http_server(tmp.path());
    let check = |args: &[&str]| {
        let mut all = vec!["check", "--timeout", "5s"];
        all.extend(args);
        let out = stalewatch(&all);
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let (metrics, readyz) = (format!("{base}/metrics"), format!("{base}/readyz"));
    let (ok, text) = check(&["--expect", "stalewatch_build_info", &metrics]);
    assert!(ok, "{text}");
    let (ok, text) = check(&["--expect", "stalewatch_container_vulnerabilities", &metrics]);
    assert!(
        !ok && text.contains("FAILED") && text.contains("without"),
        "{text}"
    );
    let (ok, text) = check(&[&readyz, &format!("{base}/healthz")]);
    assert!(!ok && text.contains("ok ") && text.contains("HTTP 404"), "{text}");
    let (ok, text) = check(&["http://127.0.0.1:9/readyz"]);
    assert!(!ok && text.contains("FAILED"), "{text}");
    // One expected text per URL, in order; a count that fits neither way is a usage error.
    let (ok, text) = check(&[
        "--expect",
        "stalewatch_build_info",
        "--expect",
        "ready",
        &metrics,
        &readyz,
    ]);
    assert!(ok, "{text}");
    let (ok, text) = check(&[
        "--expect",
        "ready",
        "--expect",
        "stalewatch_build_info",
        &metrics,
        &readyz,
    ]);
    assert!(!ok && text.matches("FAILED").count() == 2, "{text}");
    let (ok, _) = check(&["--expect", "a", "--expect", "b", &metrics]);
    assert!(!ok);
    // The chart's test pod's own arguments, its agent's address replaced by this server's:
    // they pass against a ready agent's answers, and fail without its readiness.
    if let Some(rendered) = helm_template(&[], "helm test pod") {
        let docs = yaml_docs(&rendered);
        let pod = docs
            .iter()
            .find(|d| d["kind"] == "Pod" && d["metadata"]["annotations"]["helm.sh/hook"] == "test")
            .expect("the test pod");
        let containers = pod["spec"]["containers"].as_array().unwrap();
        assert_eq!(containers.len(), 1, "one container: `helm test --logs` shows it");
        let args: Vec<String> = containers[0]["args"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| {
                let a = a.as_str().unwrap();
                match a.strip_prefix("http://").and_then(|r| r.split_once('/')) {
                    Some((_, path)) => format!("{base}/{path}"),
                    None => a.to_string(),
                }
            })
            .collect();
        let args: Vec<&str> = args.iter().map(String::as_str).skip(1).collect();
        let (ok, text) = check(&args);
        assert!(ok, "{args:?}: {text}");
        std::fs::remove_file(tmp.path().join("readyz")).unwrap();
        let (ok, text) = check(&args);
        assert!(!ok && text.contains("readyz"), "{args:?}: {text}");
    }
    let _ = server.kill();
    let _ = server.wait();
}

/// The host's /proc and containerd's root are mounted only for what uses them: /proc for the
/// runtime checks (`agent.driftInterval`) and the `proc` fallback, the root for the `snapshot`
/// fallback; with both off, neither.
#[test]
fn host_mounts_follow_the_settings() {
    let test = "chart host mounts";
    let mounts = |sets: &[&str]| -> Option<BTreeSet<String>> {
        let mut args = vec![];
        for s in sets {
            args.extend(["--set", s]);
        }
        let rendered = helm_template(&args, test)?;
        let docs = yaml_docs(&rendered);
        let ds = docs.iter().find(|d| d["kind"] == "DaemonSet").unwrap();
        Some(
            ds["spec"]["template"]["spec"]["volumes"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|v| !v["hostPath"].is_null())
                .map(|v| v["name"].as_str().unwrap().to_string())
                .filter(|n| n == "host-proc" || n == "containerd-root")
                .collect(),
        )
    };
    let set = |names: &[&str]| names.iter().map(|n| n.to_string()).collect::<BTreeSet<_>>();
    let Some(defaults) = mounts(&[]) else {
        return;
    };
    assert_eq!(defaults, set(&["containerd-root", "host-proc"]));
    let off = ["agent.driftInterval=off", "agent.unpackedFallback=none"];
    assert_eq!(mounts(&off).unwrap(), set(&[]));
    assert_eq!(
        mounts(&["agent.driftInterval=off", "agent.unpackedFallback=proc"]).unwrap(),
        set(&["host-proc"])
    );
    assert_eq!(
        mounts(&["agent.driftInterval=off", "agent.unpackedFallback=snapshot"]).unwrap(),
        set(&["containerd-root"])
    );
    assert_eq!(
        mounts(&["agent.driftInterval=5m", "agent.unpackedFallback=none"]).unwrap(),
        set(&["host-proc"])
    );
}

/// On a cluster without the Prometheus Operator's API the chart installs: its defaults make no
/// PodMonitor nor PrometheusRule there (whose missing CRDs would fail `helm install`), and make
/// both where the API is.
#[test]
fn the_operators_objects_are_made_only_where_its_api_is() {
    let test = "chart without the operator";
    let kinds = |rendered: &str| -> BTreeSet<String> {
        yaml_docs(rendered)
            .iter()
            .filter_map(|d| d["kind"].as_str().map(str::to_string))
            .collect()
    };
    let Some(without) = helm_template_without_operator(&[], test) else {
        return;
    };
    let without = kinds(&without);
    assert!(without.contains("DaemonSet"), "{without:?}");
    assert!(
        !without.contains("PodMonitor") && !without.contains("PrometheusRule"),
        "{without:?}"
    );
    let with = kinds(&helm_template(&[], test).unwrap());
    assert!(
        with.contains("PodMonitor") && with.contains("PrometheusRule"),
        "{with:?}"
    );
}
