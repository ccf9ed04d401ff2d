//! stalewatch as deployed, end to end on the lab cluster (`scripts/lab-cluster.sh`): the image
//! built from the Dockerfile, the DaemonSet scheduled by a real kubelet, its pod discovered and
//! scraped by Prometheus as the PodMonitor says, alerts through Alertmanager to a receiver, an
//! Event on the vulnerable pod, a restart that reads no layer again, a kubelet pull that
//! discards its layer blobs (EKS's and GKE's setting) told like one that keeps them, a deleted
//! workload's series gone, an uninstall that leaves only the documented state. The cluster is
//! always torn down, also when an assertion fails.

mod common;

use common::agent::{get, get_at};
use common::*;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const NS: &str = "shop";
/// The namespace of the workload that opts in to the validated redeploy.
const FRESH_NS: &str = "fresh";
const IMAGE: &str = "localhost/legacy-alpine:3.16.9";
/// The namespace of the workload the kubelet pulls from the loopback registry.
const PULLED_NS: &str = "pulled";

struct Cluster {
    env: BTreeMap<String, String>,
    kubectl: PathBuf,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let out = Command::new(project().join("scripts/lab-cluster.sh"))
            .arg("down")
            .output();
        if let Ok(o) = out {
            let err = String::from_utf8_lossy(&o.stderr);
            eprintln!("lab down: {}", err.lines().last().unwrap_or_default());
            if !o.status.success() && !std::thread::panicking() {
                panic!("lab-cluster.sh down left something behind:\n{err}");
            }
        }
    }
}

impl Cluster {
    /// `scripts/lab-cluster.sh up`, the lab's mirror serving `osv` (the bucket's layout).
    fn up(test: &str, osv: &std::path::Path) -> Option<Cluster> {
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        let root = status
            .lines()
            .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"));
        if !root {
            not_run(test, "the lab cluster needs root");
            return None;
        }
        let started = Instant::now();
        let out = Command::new(project().join("scripts/lab-cluster.sh"))
            .arg("up")
            .env("STALEWATCH_LAB_OSV", osv)
            // Runtime checks every 10 s instead of 5 min: the drift the test makes shows in seconds.
            .env("STALEWATCH_LAB_DRIFT_INTERVAL", "10s")
            .output()
            .expect("run scripts/lab-cluster.sh");
        let cluster = Cluster {
            env: String::from_utf8_lossy(&out.stdout)
                .lines()
                .filter_map(|l| l.split_once('='))
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            kubectl: PathBuf::from(
                std::env::var("STALEWATCH_KUBE_LAB").unwrap_or("/var/cache/kube-lab".into()),
            )
            .join("bin/kubectl"),
        };
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success(),
            "lab-cluster.sh up failed:\n{}",
            tail(&err, 40)
        );
        eprintln!("lab up in {:?}", started.elapsed());
        for key in [
            "KUBECONFIG",
            "CONTAINERD_ADDRESS",
            "PROMETHEUS_URL",
            "ALERTMANAGER_URL",
        ] {
            assert!(
                cluster.env.contains_key(key),
                "up printed no {key}: {:?}",
                cluster.env
            );
        }
        Some(cluster)
    }

    fn kubectl(&self, args: &[&str]) -> String {
        let out = Command::new(&self.kubectl)
            .arg(format!("--kubeconfig={}", self.env["KUBECONFIG"]))
            .args(args)
            .output()
            .expect("run kubectl");
        assert!(
            out.status.success(),
            "kubectl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    fn json(&self, args: &[&str]) -> serde_json::Value {
        let mut a = args.to_vec();
        a.extend(["-o", "json"]);
        serde_json::from_str(&self.kubectl(&a)).unwrap()
    }

    /// A PromQL instant query's result vector.
    fn query(&self, promql: &str) -> Vec<serde_json::Value> {
        let (code, body) = get(19090, &format!("/api/v1/query?query={}", percent(promql)));
        assert_eq!(code, 200, "{promql}: {body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        v["data"]["result"].as_array().cloned().unwrap_or_default()
    }

    /// Imports a docker archive into the node's containerd and names each image by digest too
    /// (`name@sha256:…`), as a registry pull through CRI records it: the CRI plugin resolves a
    /// digest reference only from an image of that exact name (`--digests` names it
    /// `import-<date>@…`), and a redeploy pins workloads by digest.
    fn import(&self, tar: &std::path::Path) {
        let ctr = |args: &[&str]| {
            Command::new("ctr")
                .args(["--address", &self.env["CONTAINERD_ADDRESS"], "-n", "k8s.io"])
                .args(args)
                .output()
                .unwrap()
        };
        let out = ctr(&["images", "import", "--digests", tar.to_str().unwrap()]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let listed = ctr(&["images", "ls"]);
        for line in String::from_utf8_lossy(&listed.stdout).lines().skip(1) {
            let mut fields = line.split_whitespace();
            let (Some(name), Some(_), Some(digest)) = (fields.next(), fields.next(), fields.next()) else {
                continue;
            };
            let Some((repo, _tag)) = name
                .rsplit_once(':')
                .filter(|(r, _)| !r.contains('@') && !name.starts_with("sha256:"))
            else {
                continue;
            };
            if repo.starts_with("import-") || repo.contains('@') {
                continue;
            }
            // Already named so: `tag` fails harmlessly.
            let _ = ctr(&["images", "tag", name, &format!("{repo}@{digest}")]);
        }
    }

    /// `ctr` on the node's containerd, namespace k8s.io: its stdout.
    fn ctr(&self, args: &[&str]) -> String {
        let out = Command::new("ctr")
            .args(["--address", &self.env["CONTAINERD_ADDRESS"], "-n", "k8s.io"])
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "ctr {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Lets the node's containerd pull from `host` over plain HTTP: a hosts.toml under the
    /// lab's certs.d, which containerd reads at every pull.
    fn allow_registry(&self, host: &str) {
        let dir = PathBuf::from(&self.env["REGISTRY_HOSTS_DIR"]).join(host);
        std::fs::create_dir_all(&dir).unwrap();
        let hosts = format!(
            "server = \"http://{host}\"\n[host.\"http://{host}\"]\n  capabilities = [\"pull\", \"resolve\"]\n"
        );
        std::fs::write(dir.join("hosts.toml"), hosts).unwrap();
    }

    /// The kubelet pulls `image` for a pod, then the pod is deleted: the image stays on the
    /// node and no container runs it. With `run`, its container runs `true` and exits (a job);
    /// without, its command does not exist, so the pull is all that happens (no task ever
    /// runs: nothing of it can be read but its image).
    fn pull_only(&self, name: &str, image: &str, dir: &Path, run: bool) {
        let command = if run { "true" } else { "/stalewatch-lab-never-runs" };
        let manifest = dir.join(format!("{name}.yaml"));
        std::fs::write(
            &manifest,
            format!(
                "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, namespace: {PULLED_NS}}}\nspec:\n  restartPolicy: Never\n  terminationGracePeriodSeconds: 1\n  containers:\n    - name: pull\n      image: {image}\n      imagePullPolicy: Always\n      command: [\"{command}\"]\n"
            ),
        )
        .unwrap();
        self.kubectl(&["apply", "-f", manifest.to_str().unwrap()]);
        wait_until(
            &format!("{image} pulled by the kubelet"),
            Duration::from_secs(120),
            || {
                let pod = self.json(&["-n", PULLED_NS, "get", "pod", name]);
                let status = &pod["status"]["containerStatuses"][0];
                let waiting = status["state"]["waiting"]["reason"].as_str().unwrap_or("");
                let past_pull = status["state"]["terminated"].is_object()
                    || !["", "ContainerCreating", "ErrImagePull", "ImagePullBackOff"].contains(&waiting);
                if run {
                    assert_ne!(pod["status"]["phase"], "Failed", "{:#}", pod["status"]);
                    pod["status"]["phase"] == "Succeeded"
                } else {
                    past_pull
                }
            },
        );
        self.kubectl(&["-n", PULLED_NS, "delete", "pod", name, "--wait=true"]);
    }

    /// Whether none of the layouts' layer blobs is in the node's content store.
    fn blobs_discarded(&self, layouts: &[&Path]) -> bool {
        let held = self.ctr(&["content", "ls", "-q"]);
        layouts
            .iter()
            .flat_map(|l| common::buildah::layout_layers(l))
            .all(|l| !held.contains(&l))
    }

    /// `/v1/findings` of the agent pod `pod`: on its loopback only, reached as a user would,
    /// through `kubectl port-forward`.
    fn findings(&self, pod: &str) -> serde_json::Value {
        let port = common::agent::free_port();
        let mut forward = Command::new(&self.kubectl)
            .arg(format!("--kubeconfig={}", self.env["KUBECONFIG"]))
            .args(["-n", "stalewatch", "port-forward", &format!("pod/{pod}")])
            .arg(format!("{port}:9478"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("run kubectl port-forward");
        let started = Instant::now();
        let body = loop {
            let (code, body) = get(port, "/v1/findings");
            if code == 200 {
                break body;
            }
            if started.elapsed() > Duration::from_secs(30) {
                let _ = forward.kill();
                panic!("/v1/findings through port-forward: {code} {body}");
            }
            std::thread::sleep(Duration::from_millis(300));
        };
        let _ = forward.kill();
        let _ = forward.wait();
        serde_json::from_str(&body).unwrap()
    }

    fn agent_pod(&self) -> serde_json::Value {
        let pods = self.json(&[
            "-n",
            "stalewatch",
            "get",
            "pods",
            "-l",
            "app.kubernetes.io/name=stalewatch",
        ]);
        pods["items"]
            .as_array()
            .and_then(|p| p.first().cloned())
            .unwrap_or_default()
    }
}

/// The value of the first sample of `text` whose series starts with `series`.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(series) && !l.starts_with('#'))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// The Helm release's mirror pod: synced from the lab's upstream, the agent refreshing from it
/// (through the cluster's DNS name: the lab's DNS), `helm test` passing; then an upstream that
/// refuses connections fails the sync visibly (its metrics and log).
#[allow(clippy::too_many_lines)] // a scenario that reads top to bottom
fn helm_mirror_and_test(lab: &Cluster) {
    let helm = |args: &[&str]| {
        let out = Command::new(project().join("scripts/lab/helm.sh"))
            .args(args)
            .args([
                "--namespace",
                "stalewatch",
                "--kubeconfig",
                &lab.env["KUBECONFIG"],
            ])
            .output()
            .unwrap();
        (
            out.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    };
    let kinds = lab.kubectl(&["-n", "stalewatch", "get", "all,configmap", "-o", "name"]);
    assert!(!kinds.contains("podmonitor"), "{kinds}");
    let mirror_pod = || {
        let pods = lab.json(&[
            "-n",
            "stalewatch",
            "get",
            "pods",
            "-l",
            "app.kubernetes.io/name=osv-mirror",
        ]);
        pods["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["metadata"]["deletionTimestamp"].is_null())
            .cloned()
    };
    let mirror_metrics = || -> String {
        mirror_pod()
            .filter(ready)
            .and_then(|p| p["status"]["podIP"].as_str().map(str::to_string))
            .map(|ip| get_at(&ip, 8080, "/metrics").1)
            .unwrap_or_default()
    };
    wait_until("the mirror pod synced", Duration::from_secs(180), || {
        sample(&mirror_metrics(), "stalewatch_mirror_syncs_total{outcome=\"ok\"}").unwrap_or(0.0) >= 1.0
    });
    let synced = sample(&mirror_metrics(), "stalewatch_mirror_synced_timestamp_seconds").unwrap();
    assert!(synced > 0.0);
    // The agent refreshed from it: the data's age is the mirror's sync, from its file.
    let agent_ip = lab.agent_pod()["status"]["podIP"].as_str().unwrap().to_string();
    wait_until(
        "the agent refreshed from the chart's mirror",
        Duration::from_secs(120),
        || {
            let m = get_at(&agent_ip, 9477, "/metrics").1;
            sample(&m, "stalewatch_advisory_source_synced_timestamp_seconds") == Some(synced)
        },
    );
    let cm = lab.json(&["-n", "stalewatch", "get", "configmap", "stalewatch-config"]);
    assert_eq!(
        cm["data"]["STALEWATCH_ADVISORY_SOURCE"], "http://osv-mirror.stalewatch.svc",
        "{cm:#}"
    );
    // `helm test`: the stalewatch image asks the agent through the headless Service's name.
    let (ok, text) = helm(&["test", "stalewatch", "--logs", "--timeout", "3m"]);
    assert!(ok && text.contains("Phase:          Succeeded"), "{text}");
    assert!(
        text.contains("ok http://stalewatch.stalewatch.svc:9477/readyz"),
        "{text}"
    );
    // A failing upstream: the pass fails, counted per file, and logged.
    let (ok, text) = helm(&[
        "upgrade",
        "stalewatch",
        &project().join("deploy/helm/stalewatch").to_string_lossy(),
        "--reuse-values",
        "--set",
        "mirror.upstream=http://127.0.0.1:9",
        "--wait",
        "--timeout",
        "3m",
    ]);
    assert!(ok, "{text}");
    wait_until(
        "the mirror's failed sync counted",
        Duration::from_secs(120),
        || {
            let m = mirror_metrics();
            sample(&m, "stalewatch_mirror_syncs_total{outcome=\"failed\"}").unwrap_or(0.0) >= 1.0
                && sample(&m, "stalewatch_mirror_sync_failures_total{file=\"Alpine\"}").unwrap_or(0.0) >= 1.0
        },
    );
    let name = mirror_pod().unwrap()["metadata"]["name"]
        .as_str()
        .unwrap()
        .to_string();
    let log = lab.kubectl(&["-n", "stalewatch", "logs", &name]);
    assert!(log.contains("Alpine: download failed"), "{log}");
}

fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

fn percent(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn wait_until(what: &str, deadline: Duration, mut cond: impl FnMut() -> bool) {
    let started = Instant::now();
    while started.elapsed() < deadline {
        if cond() {
            eprintln!("cluster: {what} after {:?}", started.elapsed());
            return;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    panic!("cluster: {what} not reached within {deadline:?}");
}

fn ready(pod: &serde_json::Value) -> bool {
    pod["status"]["conditions"]
        .as_array()
        .is_some_and(|c| c.iter().any(|c| c["type"] == "Ready" && c["status"] == "True"))
}

/// buildah on the image builder's storage (`scripts/build-image.sh`'s); its stdout, trimmed.
fn buildah(args: &[&str]) -> String {
    common::buildah::run_at(Path::new("/var/cache/stalewatch-image"), args)
}

/// Commits the working container `c` as `IMAGE` and saves it as the docker archive `tar`.
fn commit_and_save(c: &str, tar: PathBuf) -> PathBuf {
    buildah(&["commit", "-q", "--rm", c, IMAGE]);
    buildah(&[
        "push",
        "-q",
        IMAGE,
        &format!("docker-archive:{}:{IMAGE}", tar.display()),
    ]);
    tar
}

/// The Alpine 3.16.9 minirootfs (end of life, with known vulnerabilities) as a one-layer image,
/// saved as a docker archive: what the workload runs and what the oracle scans.
fn workload_image(dir: &std::path::Path) -> PathBuf {
    let tgz = shared_data().join("rootfs/alpine/alpine-minirootfs-3.16.9-x86_64.tar.gz");
    let c = buildah(&["from", "scratch"]);
    buildah(&["add", &c, tgz.to_str().unwrap(), "/"]);
    buildah(&["config", "--cmd", "[\"/bin/sh\"]", &c]);
    commit_and_save(&c, dir.join("legacy.tar"))
}

/// A newer build under the same name: the same rootfs and one more layer.
fn workload_image_rebuilt(dir: &std::path::Path) -> PathBuf {
    let note = dir.join("BUILD");
    std::fs::write(&note, "rebuilt\n").unwrap();
    let c = buildah(&["from", "--pull=never", IMAGE]);
    buildah(&["copy", &c, note.to_str().unwrap(), "/etc/BUILD"]);
    commit_and_save(&c, dir.join("legacy-rebuilt.tar"))
}

/// The shared OSV export as the lab's mirror, its Alpine records given a `published` date: the
/// Alpine export carries none, so a fix's age would start when the agent first sees it and a
/// stale runtime (a fix older than 7 days) could not show within a test. Each record is dated
/// by its own `modified` (the latest the fix can have been published); nothing else changes.
fn dated_feed(dir: &std::path::Path) -> PathBuf {
    use std::io::Read;
    let osv = dir.join("osv");
    std::fs::create_dir_all(&osv).unwrap();
    for entry in std::fs::read_dir(shared_data().join("osv")).unwrap().flatten() {
        if entry.file_name() != "Alpine" {
            std::os::unix::fs::symlink(entry.path(), osv.join(entry.file_name())).unwrap();
        }
    }
    let mut zip =
        zip::ZipArchive::new(std::fs::File::open(shared_data().join("osv/Alpine/all.zip")).unwrap()).unwrap();
    let mut records = Vec::new();
    for i in 0..zip.len() {
        let mut f = zip.by_index(i).unwrap();
        let mut body = String::new();
        f.read_to_string(&mut body).unwrap();
        let mut v: serde_json::Value = serde_json::from_str(&body).unwrap();
        if v.get("published").is_none() {
            v["published"] = v["modified"].clone();
        }
        records.push((f.name().to_string(), serde_json::to_vec(&v).unwrap()));
    }
    let refs: Vec<(&str, &[u8])> = records.iter().map(|(n, b)| (n.as_str(), b.as_slice())).collect();
    write_osv_zip(&osv, "Alpine", &refs);
    osv
}

/// Distinct vulnerabilities of a report v1 (findings linked by id or alias are one, DESIGN.md).
fn distinct_vulnerabilities(report: &serde_json::Value) -> usize {
    let findings = report["findings"].as_array().unwrap();
    let ids = |f: &serde_json::Value| -> Vec<String> {
        let mut v = vec![f["id"].as_str().unwrap().to_string()];
        v.extend(
            f["aliases"]
                .as_array()
                .unwrap()
                .iter()
                .map(|a| a.as_str().unwrap().to_string()),
        );
        v
    };
    let mut groups: Vec<BTreeSet<String>> = Vec::new();
    for f in findings {
        let mine: BTreeSet<String> = ids(f).into_iter().collect();
        let (mut joined, rest): (Vec<_>, Vec<_>) = groups.into_iter().partition(|g| !g.is_disjoint(&mine));
        let mut merged = mine;
        for g in joined.drain(..) {
            merged.extend(g);
        }
        groups = rest;
        groups.push(merged);
    }
    groups.len()
}

/// The lab node's scan: its findings equal the oracle's over this host's dpkg database
/// (tests/support/debian_oracle.py, dpkg's own comparison), Prometheus counts them as the
/// report's distinct vulnerabilities, and `stalewatch_node_info` carries the OS, the (unknown)
/// kernel and the AKS node image the lab labelled the Node with, whose age is the days since
/// the date its version encodes (by `date`).
fn the_node_as_prometheus_sees_it(lab: &Cluster, pod: &str) {
    let node_image = "AKSUbuntu-2204gen2containerd-202511.12.0";
    let mut doc = serde_json::Value::Null;
    let deadline = Instant::now() + Duration::from_secs(180);
    while !(doc["node_scan"]["status"] == "ok" && doc["node_scan"]["node"]["node_object"] == "read") {
        assert!(
            Instant::now() < deadline,
            "the node not matched in 180 s: node_scan {:#}\nagent log:\n{}",
            doc["node_scan"],
            tail(&lab.kubectl(&["-n", "stalewatch", "logs", pod]), 40)
        );
        std::thread::sleep(Duration::from_secs(2));
        doc = lab.findings(pod);
    }
    let report = &doc["node_report"];
    assert_eq!(report["os"]["ecosystem"], "Debian:12");
    let got: BTreeSet<(String, String)> = string_pairs(&report["findings"], "id", "package")
        .into_iter()
        .collect();
    let want = debian_oracle("/");
    assert_eq!(got, want, "the lab node's findings vs the oracle");
    assert_eq!(doc["node_scan"]["node"]["node_image"], node_image);
    let node = lab.env["NODE"].as_str();
    let distinct = distinct_vulnerabilities(report);
    wait_until("the node's series scraped", Duration::from_secs(120), || {
        let sum = lab.query(&format!(
            "sum(stalewatch_node_vulnerabilities{{node=\"{node}\"}})"
        ));
        sum.first()
            .is_some_and(|s| s["value"][1].as_str() == Some(distinct.to_string().as_str()))
    });
    let info = lab.query("stalewatch_node_info");
    assert_eq!(info.len(), 1, "{info:#?}");
    let m = &info[0]["metric"];
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
    assert_eq!(
        (
            m["os_id"].as_str(),
            m["os_version"].as_str(),
            m["kernel"].as_str(),
            m["node_image"].as_str()
        ),
        (Some("debian"), Some("12"), Some(release.trim()), Some(node_image)),
        "{m:#}"
    );
    assert!(
        m["container_runtime"]
            .as_str()
            .is_some_and(|r| r.starts_with("containerd://")),
        "{m:#}"
    );
    let kernel = lab.query("stalewatch_node_kernel_info");
    assert_eq!(kernel[0]["metric"]["state"], "unknown", "{kernel:#?}");
    let epoch = |when: &str| -> f64 {
        let out = Command::new("date")
            .args(["-u", "-d", when, "+%s"])
            .output()
            .unwrap();
        String::from_utf8(out.stdout).unwrap().trim().parse().unwrap()
    };
    let age: f64 = lab.query("stalewatch_node_image_age_seconds")[0]["value"][1]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let expected = epoch("now") - epoch("2025-11-12");
    // Scraped within the last minutes: the age moved on since.
    assert!((expected - age).abs() < 600.0, "age {age}, expected {expected}");
}

#[test]
#[allow(clippy::too_many_lines)] // a scenario test that reads top to bottom
fn stalewatch_as_deployed_on_a_real_cluster() {
    let feed = tempfile::tempdir().unwrap();
    let Some(lab) = Cluster::up("lab cluster", &dated_feed(feed.path())) else {
        return;
    };
    // 1. The DaemonSet is Ready on the node; its pod passed its readiness probe; clean logs.
    let ds = lab.json(&["-n", "stalewatch", "get", "daemonset", "stalewatch"]);
    assert_eq!(ds["status"]["numberReady"], 1, "{:#}", ds["status"]);
    let agent = lab.agent_pod();
    assert!(ready(&agent), "{:#}", agent["status"]);
    assert_eq!(
        agent["spec"]["containers"][0]["image"],
        "localhost/stalewatch:lab"
    );
    let logs = lab.kubectl(&["-n", "stalewatch", "logs", "daemonset/stalewatch"]);
    let errors: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains("\"level\":\"ERROR\""))
        .collect();
    assert!(
        errors.is_empty(),
        "the agent logged errors:\n{}",
        errors.join("\n")
    );

    // 1b. The node itself (deploy/lab's node-scan mounts: this Debian 12 host's os-release and
    // dpkg database; its Node labelled with a real AKS node image by the lab script).
    the_node_as_prometheus_sees_it(&lab, agent["metadata"]["name"].as_str().unwrap());

    // 2. A vulnerable workload: Prometheus shows its series, labelled as the PodMonitor
    // relabels them, counting what `stalewatch scan` counts in the same image.
    let tmp = tempfile::tempdir().unwrap();
    let tar = workload_image(tmp.path());
    lab.import(&tar);
    let db = tmp.path().join("db");
    db_from(&shared_data().join("osv"), &db, &["Alpine"]);
    let scanned = scan_json(&format!("docker-archive:{}", tar.display()), &db);
    assert!(
        scanned.status.success(),
        "{}",
        String::from_utf8_lossy(&scanned.stderr)
    );
    let oracle = distinct_vulnerabilities(&serde_json::from_slice(&scanned.stdout).unwrap());
    assert!(oracle > 0, "Alpine 3.16.9 has known vulnerabilities");
    lab.kubectl(&["create", "namespace", NS]);
    let manifest = tmp.path().join("legacy.yaml");
    std::fs::write(
        &manifest,
        format!(
            "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: legacy, namespace: {NS}}}\nspec:\n  replicas: 1\n  selector: {{matchLabels: {{app: legacy}}}}\n  template:\n    metadata: {{labels: {{app: legacy}}}}\n    spec:\n      terminationGracePeriodSeconds: 1\n      containers:\n        - name: app\n          image: {IMAGE}\n          imagePullPolicy: Never\n          command: [sleep, \"86400\"]\n"
        ),
    )
    .unwrap();
    lab.kubectl(&["apply", "-f", manifest.to_str().unwrap()]);
    // The same image in a workload that opts in to redeploys (its own namespace, so the
    // counts above stay the legacy pod's); step 4 turns the redeploy on.
    lab.kubectl(&["create", "namespace", FRESH_NS]);
    let fresh = tmp.path().join("fresh.yaml");
    std::fs::write(
        &fresh,
        std::fs::read_to_string(&manifest).unwrap().replace(
            &format!("namespace: {NS}}}"),
            &format!("namespace: {FRESH_NS}, labels: {{stalewatch.io/redeploy: stale-digest}}}}"),
        ),
    )
    .unwrap();
    lab.kubectl(&["apply", "-f", fresh.to_str().unwrap()]);
    // 2b. EKS's and GKE's nodes: the kubelet pulls from a registry (Debian's docker-registry on
    // loopback) and containerd discards each layer blob once unpacked. An app built FROM
    // base:1 runs; base:1 itself ran once (a job) and left. The oracle of step 4c: `scan` of
    // the three OCI layouts, which reads their blobs.
    let Some(builder) = common::buildah::Buildah::new("lab cluster: discarding pulls") else {
        return;
    };
    let Some(registry) = common::Registry::start("lab cluster: discarding pulls") else {
        return;
    };
    let repo = registry.host.clone();
    let rebuild_dir = tmp.path().join("rebuild");
    std::fs::create_dir_all(&rebuild_dir).unwrap();
    let [(base_dir, _), (app_dir, _), (new_dir, _)] =
        common::buildah::rebuild_images_in(&builder, &rebuild_dir, &repo);
    let (app_ref, base_ref) = (format!("{repo}/app:1"), format!("{repo}/base:1"));
    let scan_layout = |dir: &Path| report_of(&format!("oci:{}", dir.display()), &db, &[]);
    let (app_scan, old_scan, new_scan) = (
        scan_layout(&app_dir),
        scan_layout(&base_dir),
        scan_layout(&new_dir),
    );
    let keys = |r: &serde_json::Value| -> BTreeSet<(String, String)> {
        string_pairs(&r["findings"], "id", "package")
            .into_iter()
            .collect()
    };
    let fixed_by_rebuild: BTreeSet<(String, String)> = keys(&app_scan)
        .intersection(&keys(&old_scan))
        .filter(|k| !keys(&new_scan).contains(k))
        .cloned()
        .collect();
    assert!(!fixed_by_rebuild.is_empty(), "the patched base fixes something");
    registry.push(&base_dir, "base:1");
    registry.push(&app_dir, "app:1");
    lab.allow_registry(&repo);
    lab.kubectl(&["create", "namespace", PULLED_NS]);
    lab.pull_only("base-job", &base_ref, tmp.path(), true);
    let pulled = tmp.path().join("pulled.yaml");
    std::fs::write(
        &pulled,
        format!(
            "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: app, namespace: {PULLED_NS}}}\nspec:\n  replicas: 1\n  selector: {{matchLabels: {{app: app}}}}\n  template:\n    metadata: {{labels: {{app: app}}}}\n    spec:\n      terminationGracePeriodSeconds: 1\n      containers:\n        - name: app\n          image: {app_ref}\n          imagePullPolicy: Always\n          command: [sleep, \"86400\"]\n"
        ),
    )
    .unwrap();
    lab.kubectl(&["apply", "-f", pulled.to_str().unwrap()]);
    lab.kubectl(&[
        "-n",
        PULLED_NS,
        "rollout",
        "status",
        "deployment/app",
        "--timeout=120s",
    ]);
    assert!(
        lab.blobs_discarded(&[&base_dir, &app_dir]),
        "the kubelet's pulls left layer blobs: {}",
        lab.ctr(&["content", "ls", "-q"])
    );
    wait_until(
        "the pulled app read from its snapshot, its base known",
        Duration::from_secs(120),
        || {
            !lab.query(&format!(
                "stalewatch_container_scan_status{{namespace=\"{PULLED_NS}\",status=\"ok\"}} == 1"
            ))
            .is_empty()
                && !lab
                    .query("stalewatch_image_reads_total{source=\"snapshot\"} >= 1")
                    .is_empty()
                && !lab
                    .query(&format!(
                        "stalewatch_image_base_info{{base_name=\"{base_ref}\",detected_by=\"label\"}} == 1"
                    ))
                    .is_empty()
        },
    );
    let series = format!("stalewatch_container_vulnerabilities{{namespace=\"{NS}\",container=\"app\"}}");
    wait_until(
        "the workload's series in Prometheus",
        Duration::from_secs(180),
        || {
            lab.query(&format!("count({series})"))
                .first()
                .is_some_and(|r| r["value"][1] == "10")
                && lab
                    .query(&format!(
                        "stalewatch_container_scan_status{{namespace=\"{NS}\",status=\"ok\"}}"
                    ))
                    .len()
                    == 1
        },
    );
    let pods = lab.json(&["-n", NS, "get", "pods", "-l", "app=legacy"]);
    let pod = pods["items"][0]["metadata"]["name"].as_str().unwrap().to_string();
    let result = lab.query(&series);
    for r in &result {
        let m = &r["metric"];
        assert_eq!(
            (m["pod"].as_str(), m["job"].as_str()),
            (Some(pod.as_str()), Some("stalewatch")),
            "{m}"
        );
        assert_eq!(m["node"], lab.env["NODE"].as_str(), "{m}");
        assert_eq!(m["image"], IMAGE, "{m}");
    }
    let sum = lab.query(&format!("sum({series})"));
    assert_eq!(
        sum[0]["value"][1],
        oracle.to_string(),
        "distinct vulnerabilities: the scan counts {oracle}"
    );

    // 3. An Event on the pod, and the end-of-life and stale-runtime alerts through Alertmanager
    // with the labels docs/alerts.md promises.
    wait_until("a stalewatch Event on the pod", Duration::from_secs(60), || {
        let evs = lab.json(&["-n", NS, "get", "events.events.k8s.io"]);
        evs["items"].as_array().is_some_and(|e| {
            e.iter().any(|e| {
                e["reportingController"] == "stalewatch"
                    && e["regarding"]["name"] == pod.as_str()
                    && ["EndOfLifeBase", "StaleRuntime", "VulnerableImage"]
                        .contains(&e["reason"].as_str().unwrap_or(""))
            })
        })
    });
    let webhook = PathBuf::from(&lab.env["ALERT_WEBHOOK_LOG"]);
    let arrived = |name: &str| -> Option<serde_json::Value> {
        let text = std::fs::read_to_string(&webhook).unwrap_or_default();
        text.lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .flat_map(|n| n["alerts"].as_array().cloned().unwrap_or_default())
            // The legacy workload's (the redeploy's workload, in its own namespace, fires too).
            .find(|a| {
                a["labels"]["alertname"] == name
                    && a["status"] == "firing"
                    && a["labels"]["namespace"].as_str().is_none_or(|n| n == NS)
            })
    };
    for alert in ["StalewatchEndOfLifeBase", "StalewatchStaleRuntime"] {
        wait_until(
            &format!("{alert} at the webhook"),
            Duration::from_secs(120),
            || arrived(alert).is_some(),
        );
        // One alert per image (issue 29): its namespace, image and digest, not a pod's.
        let a = arrived(alert).unwrap();
        let l = &a["labels"];
        assert_eq!(l["namespace"].as_str(), Some(NS), "{a:#}");
        assert!(l["pod"].is_null() && l["container"].is_null(), "{a:#}");
        assert!(
            l["image_digest"]
                .as_str()
                .is_some_and(|d| d.starts_with("sha256:")),
            "{a:#}"
        );
        assert!(
            a["annotations"]["description"]
                .as_str()
                .is_some_and(|d| d.contains("running as 1 pods on 1 nodes")),
            "{a:#}"
        );
        assert_eq!(
            (l["severity"].as_str(), l["image"].as_str()),
            (Some("warning"), Some(IMAGE)),
            "{a:#}"
        );
        assert!(
            a["annotations"]["runbook_url"]
                .as_str()
                .is_some_and(|u| u.contains("docs/alerts.md#")),
            "{a:#}"
        );
    }

    // The states the dashboard shows: drift (a package added inside the running container with
    // kubectl exec; it has no advisories, so the findings stay the scan's) and a stale digest
    // (a newer build imported under the running tag).
    lab.kubectl(&["-n", NS, "exec", &pod, "--", "sh", "-c", "printf 'P:stalewatch-lab-drift\\nV:1.0-r0\\nA:x86_64\\no:stalewatch-lab-drift\\n\\n' >> /lib/apk/db/installed"]);
    let rebuilt = workload_image_rebuilt(tmp.path());
    lab.import(&rebuilt);
    wait_until(
        "drift and the stale digest in Prometheus",
        Duration::from_secs(90),
        || {
            let drift = lab.query(&format!(
                "stalewatch_container_drift_packages{{namespace=\"{NS}\",change=\"added\"}} == 1"
            ));
            let stale = lab.query(&format!(
                "stalewatch_container_stale_digest{{namespace=\"{NS}\",pod=\"{pod}\"}} == 1"
            ));
            !drift.is_empty() && !stale.is_empty()
        },
    );
    wait_until(
        "StalewatchStaleImage at the webhook",
        Duration::from_secs(90),
        || arrived("StalewatchStaleImage").is_some(),
    );
    // The Grafana dashboard's queries, run against this Prometheus: each returns data but those
    // whose state this test does not create, each with its reason.
    let not_created = BTreeMap::from([
        ("Scan and update errors", "no scan or advisory update failed"),
        (
            "Containers with known-exploited vulnerabilities",
            "Alpine 3.16.9's CVEs are not in the KEV catalog (the catalog is loaded: the known-exploited count is 0)",
        ),
        ("Highest EPSS score", "no EPSS file is public data here: the lab runs with EPSS off"),
        ("Containers by highest EPSS score", "no EPSS file is public data here: the lab runs with EPSS off"),
        ("Suppressed by VEX", "no stalewatch-vex ConfigMap yet (step 4c makes one)"),
        (
            "Images a rebuild on the newer base would fix",
            "the pulled app's newer base arrives in step 4b",
        ),
        (
            "CloudEvents to pipelines",
            "the agent gets its --notify-url in step 4",
        ),
        // This host's kernel is not packaged: no package, no newer one (tests/kube.rs makes
        // a node that waits for a reboot).
        ("Nodes waiting for a reboot", "the lab host's kernel is not a package: no reboot is due"),
        (
            "Coverage: nothing to scan or no feed",
            "every lab image has a package database and a feed",
        ),
        ("Redeploys", "the validated redeploy is turned on in step 4"),
        (
            "Vulnerabilities in use",
            "the runtime checks (every 5 minutes) may not have run yet",
        ),
    ]);
    let dashboard: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(project().join("deploy/grafana/stalewatch-dashboard.json")).unwrap(),
    )
    .unwrap();
    let mut empty = BTreeSet::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        let title = panel["title"].as_str().unwrap_or_default();
        for t in panel["targets"].as_array().into_iter().flatten() {
            let expr = t["expr"]
                .as_str()
                .unwrap()
                .replace("$namespace", ".*")
                .replace("$image", ".*")
                .replace("$cluster", ".*")
                .replace("$node", ".*");
            if lab.query(&expr).is_empty() {
                empty.insert(title);
            }
        }
    }
    for title in &empty {
        eprintln!(
            "dashboard panel without data: {title}: {}",
            not_created.get(title).unwrap_or(&"?")
        );
    }
    let unexplained: Vec<&&str> = empty.iter().filter(|t| !not_created.contains_key(**t)).collect();
    assert!(
        unexplained.is_empty(),
        "dashboard panels without data: {unexplained:?}"
    );

    // 4. A restarted agent finds its inventories in the hostPath state: no layer read again.
    // It restarts because the validated redeploy is turned on (its RBAC, then the setting).
    let before = lab.agent_pod()["metadata"]["name"].as_str().unwrap().to_string();
    // And a CloudEvents receiver on the host's address (what pods reach).
    let receiver = common::cloudevents::Receiver::start_at(
        &tmp.path().join("receiver"),
        &lab.env["HOST_IP"],
        0,
        "202",
        0.0,
    );
    let rbac = project().join("deploy/components/redeploy/rbac.yaml");
    lab.kubectl(&["apply", "-f", rbac.to_str().unwrap()]);
    lab.kubectl(&[
        "-n",
        "stalewatch",
        "set",
        "env",
        "daemonset/stalewatch",
        "STALEWATCH_REDEPLOY=on",
        &format!("STALEWATCH_NOTIFY_URLS={}", receiver.url),
    ]);
    lab.kubectl(&[
        "-n",
        "stalewatch",
        "rollout",
        "status",
        "daemonset/stalewatch",
        "--timeout=120s",
    ]);
    let agent = lab.agent_pod();
    let (name, ip) = (
        agent["metadata"]["name"].as_str().unwrap(),
        agent["status"]["podIP"].as_str().unwrap(),
    );
    assert_ne!(name, before);
    let metrics = || get_at(ip, 9477, "/metrics").1;
    wait_until(
        "the new agent scanned the workload",
        Duration::from_secs(60),
        || {
            metrics().contains(&format!("stalewatch_container_scan_status{{container=\"app\",image=\"{IMAGE}\",namespace=\"{NS}\",pod=\"{pod}\",status=\"ok\"}} 1"))
        },
    );
    let m = metrics();
    assert!(
        m.lines().any(|l| l == "stalewatch_layers_read_total 0"),
        "layers read again:\n{m}"
    );
    let exported: f64 = m
        .lines()
        .filter(|l| {
            l.starts_with("stalewatch_container_vulnerabilities{") && l.contains(&format!("pod=\"{pod}\""))
        })
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum();
    assert_eq!(exported as usize, oracle);
    // The KEV catalog came from the lab's mirror: the count is known, and 0 here.
    assert!(
        m.lines().any(
            |l| l.starts_with("stalewatch_container_known_exploited_vulnerabilities{")
                && l.contains(&format!("pod=\"{pod}\""))
                && l.ends_with(" 0")
        ),
        "no known-exploited series:\n{m}"
    );

    // 4a. The labelled workload was pinned to the newer build (the gate passed: the rebuild
    // only adds a file), its rollout completed on the kubelet, a Redeployed Event says so; the
    // unlabelled legacy workload still runs its tag.
    let image_of = |ns: &str| {
        lab.kubectl(&[
            "-n",
            ns,
            "get",
            "deployment",
            "legacy",
            "-o",
            "jsonpath={.spec.template.spec.containers[0].image}",
        ])
    };
    wait_until("the labelled workload pinned", Duration::from_secs(90), || {
        image_of(FRESH_NS).contains("@sha256:")
    });
    let pinned = image_of(FRESH_NS);
    assert!(pinned.starts_with(&format!("{IMAGE}@sha256:")), "{pinned}");
    lab.kubectl(&[
        "-n",
        FRESH_NS,
        "rollout",
        "status",
        "deployment/legacy",
        "--timeout=120s",
    ]);
    let fresh_pods = lab.json(&["-n", FRESH_NS, "get", "pods"]);
    let running: Vec<&serde_json::Value> = fresh_pods["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
        .collect();
    assert_eq!(running.len(), 1);
    assert_eq!(running[0]["spec"]["containers"][0]["image"], pinned.as_str());
    assert!(ready(running[0]), "{:#}", running[0]["status"]);
    let evs = lab.json(&["-n", FRESH_NS, "get", "events.events.k8s.io"]);
    let redeployed = evs["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["reason"] == "Redeployed")
        .cloned();
    let redeployed = redeployed.expect("a Redeployed Event");
    assert_eq!(redeployed["regarding"]["kind"], "Deployment");
    assert!(
        redeployed["note"].as_str().unwrap().contains(&pinned),
        "{redeployed:#}"
    );
    assert_eq!(image_of(NS), IMAGE, "the unlabelled workload is untouched");

    // 4b. The newer build of the pulled app's base reaches the registry; the kubelet pulls it
    // for a pod that never starts, then the pod goes: it runs nowhere, its blobs are
    // discarded too. The agent reads it through a snapshot view under a lease, removes both,
    // and tells the rebuild as with blobs: a base_updated CloudEvent whose fixes are the scans', the rebuild metric, each
    // finding's layer and in_base as `scan` of the app's layout says.
    registry.push(&new_dir, "base:1");
    lab.pull_only("new-base-pull", &base_ref, tmp.path(), false);
    assert!(lab.blobs_discarded(&[&new_dir]));
    let base_updated = || {
        receiver.events(None).into_iter().find(|e| {
            e["attributes"]["type"] == "io.stalewatch.image.base_updated"
                && e["attributes"]["subject"] == app_ref.as_str()
        })
    };
    wait_until("a base_updated CloudEvent", Duration::from_secs(120), || {
        base_updated().is_some()
    });
    let data = base_updated().unwrap()["data"].clone();
    let told: BTreeSet<(String, String)> = string_pairs(&data["fixed"], "id", "package")
        .into_iter()
        .collect();
    let findings = lab.findings(name);
    let app = findings["containers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["namespace"] == PULLED_NS)
        .cloned()
        .unwrap_or_else(|| panic!("no {PULLED_NS} container in {findings:#}"));
    let lineage_of = |c: &serde_json::Value| {
        let marks: Vec<String> = c["report"]["findings"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|f| {
                format!(
                    "{} {} {} in_base={}",
                    f["id"], f["package"], f["introduced_layer"], f["in_base"]
                )
            })
            .collect();
        format!(
            "base {:#}\nrebuild {:#}\n{}",
            c["report"]["base"],
            c["report"]["rebuild"],
            marks.join("\n")
        )
    };
    assert_eq!(
        told,
        fixed_by_rebuild,
        "{data:#}\n{}\nimages: {:#}",
        lineage_of(&app),
        findings["images"]
    );
    assert_eq!(data["base"]["name"], base_ref.as_str(), "{data:#}");
    let ids: BTreeSet<&String> = fixed_by_rebuild.iter().map(|(id, _)| id).collect();
    wait_until("the rebuild metric", Duration::from_secs(60), || {
        common::agent::value(
            &metrics(),
            "stalewatch_image_rebuild_fixable_vulnerabilities",
            &[("image", app_ref.as_str()), ("base_name", base_ref.as_str())],
        ) == Some(ids.len() as f64)
    });
    let m = metrics();
    let counter = |name: &str, label: (&str, &str)| common::agent::value(&m, name, &[label]).unwrap_or(0.0);
    // The new base runs nowhere: read from its blobs when the agent saw it before the CRI
    // plugin discarded them (the pull and the agent race), else through a view
    // (tests/discarded_layers.rs makes the view path certain); a view is removed after.
    let (content, view) = (
        counter("stalewatch_image_reads_total", ("source", "content")),
        counter("stalewatch_image_reads_total", ("source", "view")),
    );
    assert!(content + view >= 1.0, "{m}");
    assert_eq!(
        counter("stalewatch_snapshot_views_total", ("result", "removed")),
        view,
        "{m}"
    );
    eprintln!(
        "cluster: the new base read from {}",
        if view >= 1.0 { "a view" } else { "its blobs" }
    );
    let views = format!("{}{}", lab.ctr(&["snapshots", "ls"]), lab.ctr(&["leases", "ls"]));
    assert!(
        !views.contains("stalewatch-view"),
        "views or leases left:\n{views}"
    );
    // As with blobs: the restarted agent says how it read the app, and each finding's layer
    // and in_base are what `scan` of the app's layout (which reads the blobs) says.
    assert_eq!(app["read_from"], "snapshot", "{app:#}");
    let layered = |r: &serde_json::Value| -> BTreeSet<(String, String, String)> {
        r["findings"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|f| {
                let s = |k: &str| f[k].as_str().unwrap_or("null").to_string();
                (s("id"), s("package"), s("introduced_layer"))
            })
            .collect()
    };
    assert_eq!(
        layered(&app["report"]),
        layered(&app_scan),
        "{}",
        lineage_of(&app)
    );
    for f in app["report"]["findings"].as_array().unwrap() {
        let key = (
            f["id"].as_str().unwrap().to_string(),
            f["package"].as_str().unwrap().to_string(),
        );
        assert_eq!(
            f["in_base"].as_bool(),
            Some(keys(&old_scan).contains(&key)),
            "{f:#}"
        );
    }
    drop(registry);

    // 4c. OpenVEX from a ConfigMap: created after the agent started (the volume is optional),
    // its statement suppresses the workload's first CVE; a bad document in an update leaves
    // the statement in force. No layer is read for it.
    let read_before = common::agent::value(&metrics(), "stalewatch_layers_read_total", &[]);
    let report: serde_json::Value = serde_json::from_slice(&scanned.stdout).unwrap();
    let findings = report["findings"].as_array().unwrap();
    let cve = findings
        .iter()
        .find_map(|f| f["cves"][0].as_str())
        .unwrap()
        .to_string();
    let mut purls: Vec<String> = findings
        .iter()
        .filter(|f| f["cves"].as_array().unwrap().iter().any(|c| c == &cve[..]))
        .map(|f| format!("pkg:apk/alpine/{}", f["package"].as_str().unwrap()))
        .collect();
    purls.dedup();
    let mut rest = report.clone();
    rest["findings"] = serde_json::Value::Array(
        findings
            .iter()
            .filter(|f| !f["cves"].as_array().unwrap().iter().any(|c| c == &cve[..]))
            .cloned()
            .collect(),
    );
    let expected = distinct_vulnerabilities(&rest);
    let products: Vec<serde_json::Value> = purls.iter().map(|p| serde_json::json!({"@id": p})).collect();
    let doc = serde_json::json!({"@context": "https://openvex.dev/ns/v0.2.0", "@id": "https://example.com/vex/legacy",
        "author": "lab", "timestamp": "2025-01-01T00:00:00Z", "version": 1,
        "statements": [{"vulnerability": {"name": cve}, "products": products, "status": "not_affected",
            "justification": "vulnerable_code_not_in_execute_path"}]});
    let vex_file = tmp.path().join("legacy.json");
    std::fs::write(&vex_file, doc.to_string()).unwrap();
    let from_file = format!("--from-file=legacy.json={}", vex_file.display());
    lab.kubectl(&[
        "-n",
        "stalewatch",
        "create",
        "configmap",
        "stalewatch-vex",
        &from_file,
    ]);
    let suppressed = |m: &str| {
        m.lines()
            .find(|l| {
                l.starts_with("stalewatch_container_suppressed_vulnerabilities{")
                    && l.contains(&format!("pod=\"{pod}\""))
            })
            .and_then(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
    };
    wait_until(
        "the ConfigMap's statement in force",
        Duration::from_secs(180),
        || suppressed(&metrics()) == Some(1.0),
    );
    let m = metrics();
    let exported: f64 = m
        .lines()
        .filter(|l| {
            l.starts_with("stalewatch_container_vulnerabilities{") && l.contains(&format!("pod=\"{pod}\""))
        })
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum();
    assert_eq!(exported as usize, expected);
    assert_eq!(
        common::agent::value(&m, "stalewatch_layers_read_total", &[]),
        read_before,
        "layers read for VEX:\n{m}"
    );
    let bad = tmp.path().join("bad.json");
    std::fs::write(&bad, "{\"@context\": \"https://example.com/not-vex\"}").unwrap();
    let updated = lab.kubectl(&[
        "-n",
        "stalewatch",
        "create",
        "configmap",
        "stalewatch-vex",
        &from_file,
        &format!("--from-file=bad.json={}", bad.display()),
        "--dry-run=client",
        "-o",
        "yaml",
    ]);
    let updated_file = tmp.path().join("vex-cm.yaml");
    std::fs::write(&updated_file, updated).unwrap();
    lab.kubectl(&["replace", "-f", updated_file.to_str().unwrap()]);
    wait_until("the bad document refused", Duration::from_secs(180), || {
        metrics()
            .lines()
            .any(|l| l == "stalewatch_vex_reload_errors_total 1")
    });
    assert_eq!(
        suppressed(&metrics()),
        Some(1.0),
        "the last good set stays in force"
    );

    // 5. The workload deleted: its series leave Prometheus (a reconcile, then a scrape).
    lab.kubectl(&["-n", NS, "delete", "deployment", "legacy", "--wait=true"]);
    wait_until("the workload's series gone", Duration::from_secs(90), || {
        lab.query(&series).is_empty()
    });

    // Uninstalled: nothing of stalewatch is left in the cluster; the node keeps its state.
    let deploy_dir = PathBuf::from(&lab.env["KUBECONFIG"])
        .parent()
        .unwrap()
        .join("deploy");
    lab.kubectl(&["delete", "-k", deploy_dir.to_str().unwrap(), "--wait=true"]);
    // And the redeploy component's RBAC, applied in step 4 as a user would.
    lab.kubectl(&["delete", "-f", rbac.to_str().unwrap(), "--wait=true"]);
    for kind in ["clusterrole", "clusterrolebinding", "priorityclass"] {
        let left = lab.kubectl(&["get", kind, "-o", "name"]);
        assert!(!left.contains("stalewatch"), "{kind} left: {left}");
    }
    wait_until("the stalewatch namespace gone", Duration::from_secs(60), || {
        !lab.kubectl(&["get", "namespaces", "-o", "name"])
            .contains("namespace/stalewatch")
    });
    assert!(
        PathBuf::from("/var/lib/stalewatch/images-v1.json").is_file(),
        "the node's state, as documented"
    );

    // 6. The same agent from the Helm chart, on a cluster without the Prometheus Operator's
    // CRDs (the chart's monitors and rules are made only where their API is), with the chart's
    // own mirror (`stalewatch mirror`, one pod, an emptyDir: the lab has no volume provisioner)
    // syncing from the lab's upstream: installed, Ready from the state the node kept (no layer
    // read), refreshing from the mirror, `helm test` passing; then a failing upstream; and
    // uninstalled without a trace but that state.
    lab.kubectl(&[
        "delete",
        "crd",
        "podmonitors.monitoring.coreos.com",
        "prometheusrules.monitoring.coreos.com",
        "servicemonitors.monitoring.coreos.com",
        "--ignore-not-found",
        "--wait=true",
    ]);
    let out = Command::new(project().join("scripts/lab-cluster.sh"))
        .args(["deploy", "--helm"])
        .env("STALEWATCH_LAB_DRIFT_INTERVAL", "10s")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "deploy --helm: {}",
        tail(&String::from_utf8_lossy(&out.stderr), 30)
    );
    let ds = lab.json(&["-n", "stalewatch", "get", "daemonset", "stalewatch"]);
    assert_eq!(ds["status"]["numberReady"], 1, "{:#}", ds["status"]);
    assert_eq!(ds["metadata"]["labels"]["app.kubernetes.io/managed-by"], "Helm");
    let agent = lab.agent_pod();
    assert!(ready(&agent), "{:#}", agent["status"]);
    let ip = agent["status"]["podIP"].as_str().unwrap().to_string();
    let m = get_at(&ip, 9477, "/metrics").1;
    assert!(m.lines().any(|l| l == "stalewatch_layers_read_total 0"), "{m}");
    helm_mirror_and_test(&lab);
    let uninstall = Command::new(project().join("scripts/lab/helm.sh"))
        .args([
            "uninstall",
            "stalewatch",
            "--namespace",
            "stalewatch",
            "--wait",
            "--kubeconfig",
            &lab.env["KUBECONFIG"],
        ])
        .output()
        .unwrap();
    assert!(
        uninstall.status.success(),
        "{}",
        String::from_utf8_lossy(&uninstall.stderr)
    );
    // The DaemonSet's pods go with it (the garbage collector, after the uninstall returns).
    let only_defaults = || {
        let left = lab.kubectl(&[
            "get",
            // The operator's CRDs were deleted before the chart went in: no monitors to list.
            "all,configmap,serviceaccount",
            "-n",
            "stalewatch",
            "-o",
            "name",
        ]);
        left.lines()
            .all(|l| l.ends_with("/kube-root-ca.crt") || l.ends_with("/default"))
    };
    wait_until(
        "nothing but the namespace's defaults left by helm uninstall",
        Duration::from_secs(90),
        only_defaults,
    );
    for kind in ["clusterrole", "clusterrolebinding", "priorityclass"] {
        let left = lab.kubectl(&["get", kind, "-o", "name"]);
        assert!(!left.contains("stalewatch"), "{kind} left: {left}");
    }
}
