//! The rebuild signal end to end on a private containerd: an app built with buildah `FROM
//! base:1` runs; a rebuilt `base:1` whose packages fix some of the app's findings is
//! imported; within 20 s the agent says so — a `base_updated` CloudEvent parsed by the
//! CloudEvents Python SDK, its envelope and data checked against their schemas, its HMAC
//! verified, its `fixed_by_rebuild` equal to what `scan --format json` of the app, the old
//! base and the new base says — the rebuild metric is set, and only the new base's own new
//! layer was read.

mod common;

use common::agent::{value, Agent};
use common::buildah::{layout_layers, rebuild_images, Buildah};
use common::cloudevents::Receiver;
use common::containerd::Lab;
use common::mirror::Mirror;
use common::*;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// `deploy/examples/cloudevents-consumer.py` with the secret, its hook writing the event to
/// `triggered.json`: (the process, its URL, its stdout file).
fn example_consumer(dir: &Path, secret: &Path) -> (ChildGuard, String, PathBuf) {
    let dir = dir.join("consumer");
    std::fs::create_dir_all(&dir).unwrap();
    let (portfile, out) = (dir.join("port"), dir.join("stdout.jsonl"));
    let child = std::process::Command::new("python3")
        .arg(project().join("deploy/examples/cloudevents-consumer.py"))
        .args(["--port", "0", "--port-file", portfile.to_str().unwrap()])
        .args(["--secret-file", secret.to_str().unwrap()])
        .args([
            "--on-base-updated",
            &format!("cat > {}", dir.join("triggered.json").display()),
        ])
        .stdout(std::fs::File::create(&out).unwrap())
        .spawn()
        .unwrap();
    let guard = ChildGuard(child);
    let port = common::cloudevents::bound_port(&portfile, "the consumer");
    (guard, format!("http://127.0.0.1:{}/", port), out)
}

/// Kills a child process on drop.
struct ChildGuard(std::process::Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// (id, package) of a report's findings.
fn keys(report: &serde_json::Value) -> BTreeSet<(String, String)> {
    string_pairs(&report["findings"], "id", "package")
        .into_iter()
        .collect()
}

fn scan_report(layout: &Path, db: &Path) -> serde_json::Value {
    report_of(&format!("oci:{}", layout.display()), db, &[])
}

#[test]
#[allow(clippy::too_many_lines)] // a scenario test that reads top to bottom
fn a_rebuilt_base_is_told_to_pipelines_with_what_a_rebuild_fixes() {
    let Some(lab) = Lab::start("rebuild signal") else {
        return;
    };
    let Some(b) = Buildah::new("rebuild signal") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let [(base_dir, base_tar), (app_dir, app_tar), (new_dir, new_tar)] = rebuild_images(&b, tmp.path());
    // The oracle: the app's findings that its base has too (its base-layer findings) and the
    // new base no longer has.
    let db = tmp.path().join("db");
    shared_db(&db, &["Alpine"]);
    let (app, old, new) = (
        scan_report(&app_dir, &db),
        scan_report(&base_dir, &db),
        scan_report(&new_dir, &db),
    );
    let expected: BTreeSet<(String, String)> = keys(&app)
        .intersection(&keys(&old))
        .filter(|k| !keys(&new).contains(k))
        .cloned()
        .collect();
    assert!(!expected.is_empty(), "the patched base fixes something");

    lab.import(&base_tar, "localhost/base");
    lab.import(&app_tar, "localhost/app");
    lab.run_container(
        "app",
        "localhost/app:1",
        &[
            ("io.kubernetes.pod.name", "app-0"),
            ("io.kubernetes.pod.namespace", "shop"),
            ("io.kubernetes.container.name", "app"),
        ],
    );
    let receiver = Receiver::start(&tmp.path().join("receiver"), "202", 0.0);
    let secret = tmp.path().join("secret");
    std::fs::write(&secret, "s3cret-token\n").unwrap();
    let (_consumer, consumer_url, consumer_out) = example_consumer(tmp.path(), &secret);
    let mirror = Mirror::start(shared_data().join("osv"));
    let flags = [
        "--notify-url",
        &receiver.url,
        "--notify-url",
        &consumer_url,
        "--notify-secret-file",
        secret.to_str().unwrap(),
        // Reconciles every second: the "told once" window below spans several.
        "--reconcile-interval",
        "1s",
    ];
    let state = tmp.path().join("state");
    let agent = Agent::start(&lab.sock, &state, &mirror.url(), &flags);
    let based = |a: &Agent| {
        value(
            &a.metrics(),
            "stalewatch_image_base_info",
            &[("base_name", "localhost/base:1"), ("detected_by", "label")],
        ) == Some(1.0)
    };
    agent.wait_for("the app's base known", Duration::from_secs(60), based);
    assert_eq!(
        value(
            &agent.metrics(),
            "stalewatch_image_rebuild_fixable_vulnerabilities",
            &[]
        ),
        None
    );
    let read_before = value(&agent.metrics(), "stalewatch_layers_read_total", &[]).unwrap();

    lab.import(&new_tar, "localhost/base");
    let started = std::time::Instant::now();
    let told = |a: &Agent| {
        let _ = a;
        receiver
            .events(Some(&secret))
            .iter()
            .any(|e| e["attributes"]["type"] == "io.stalewatch.image.base_updated")
    };
    agent.wait_for("a base_updated CloudEvent", Duration::from_secs(20), told);
    println!("base_updated received {:?} after the import", started.elapsed());
    let events = receiver.events(Some(&secret));
    let e = events
        .iter()
        .find(|e| e["attributes"]["type"] == "io.stalewatch.image.base_updated")
        .unwrap();
    println!("{}", serde_json::to_string_pretty(e).unwrap());
    let data = &e["data"];
    let fixed: BTreeSet<(String, String)> = string_pairs(&data["fixed"], "id", "package")
        .into_iter()
        .collect();
    assert_eq!(fixed, expected);
    assert_eq!(data["fixed_by_rebuild"].as_u64(), Some(expected.len() as u64));
    assert_eq!(
        data["remaining"].as_u64(),
        Some((keys(&app).len() - expected.len()) as u64)
    );
    assert_eq!(data["base"]["name"], "localhost/base:1");
    let new_manifest = layout_layers(&new_dir);
    assert_eq!(data["revision"], "0123abc");
    assert_eq!(data["pods"][0]["pod"], "app-0");
    assert_eq!(e["attributes"]["source"], "/stalewatch/test-node");
    assert_eq!(e["attributes"]["subject"], "localhost/app:1");

    // Metrics: the distinct vulnerabilities a rebuild fixes (Alpine's records alias one CVE
    // each, so one per id); only the new base's own new layer was read.
    let ids: BTreeSet<&String> = expected.iter().map(|(id, _)| id).collect();
    let fixable = |a: &Agent| {
        value(
            &a.metrics(),
            "stalewatch_image_rebuild_fixable_vulnerabilities",
            &[("image", "localhost/app:1"), ("base_name", "localhost/base:1")],
        ) == Some(ids.len() as f64)
    };
    agent.wait_for("the rebuild metric", Duration::from_secs(10), fixable);
    let known: BTreeSet<String> = layout_layers(&base_dir)
        .into_iter()
        .chain(layout_layers(&app_dir))
        .collect();
    let new_layers = new_manifest.iter().filter(|l| !known.contains(*l)).count();
    assert_eq!(new_layers, 1);
    let read_after = value(&agent.metrics(), "stalewatch_layers_read_total", &[]).unwrap();
    assert_eq!(read_after - read_before, new_layers as f64);
    // Told once: later reconciles (at least two in this window) send nothing more.
    let before = value(
        &agent.metrics(),
        "stalewatch_last_reconcile_timestamp_seconds",
        &[],
    )
    .unwrap();
    std::thread::sleep(Duration::from_secs(3));
    let after = value(
        &agent.metrics(),
        "stalewatch_last_reconcile_timestamp_seconds",
        &[],
    )
    .unwrap();
    assert!(
        after >= before + 2.0,
        "reconciles in the window: {before} → {after}"
    );
    let n = receiver
        .events(Some(&secret))
        .iter()
        .filter(|e| e["attributes"]["type"] == "io.stalewatch.image.base_updated")
        .count();
    assert_eq!(n, 1);
    // The example consumer (deploy/examples) took the same event and ran its hook.
    let id = e["attributes"]["id"].as_str().unwrap();
    let hook = consumer_out.with_file_name("triggered.json");
    let start = std::time::Instant::now();
    while !std::fs::read_to_string(&hook).is_ok_and(|t| t.contains(id)) {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "the example consumer's hook did not run"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let printed = std::fs::read_to_string(&consumer_out).unwrap();
    assert_eq!(printed.matches(id).count(), 1, "{printed}");
    let (_, findings) = agent.findings();
    let doc: serde_json::Value = serde_json::from_str(&findings).unwrap();
    let report = &container_of(&doc, "app-0")["report"];
    assert_eq!(
        report["rebuild"]["fixed_by_rebuild"].as_u64(),
        Some(expected.len() as u64)
    );
    let log = std::fs::read_to_string(&agent.log).unwrap();
    assert!(!log.contains("s3cret-token"), "the secret is never logged");

    // The told state lost (a corrupt told-v1.json): kept aside and counted; the restarted
    // agent tells what runs again, under the id it had, counted as told again — and the
    // example consumer, which de-duplicates on id, neither prints nor triggers it twice.
    let id = id.to_string();
    assert!(agent.stop().success());
    std::fs::write(state.join("told-v1.json"), b"{\"version\":1,\"data\":[").unwrap();
    let agent = Agent::start(&lab.sock, &state, &mirror.url(), &flags);
    let base_ids = || -> Vec<String> {
        receiver
            .events(Some(&secret))
            .iter()
            .filter(|e| e["attributes"]["type"] == "io.stalewatch.image.base_updated")
            .map(|e| e["attributes"]["id"].as_str().unwrap().to_string())
            .collect()
    };
    agent.wait_for("base_updated told again", Duration::from_secs(60), |_| {
        base_ids().len() == 2
    });
    assert_eq!(base_ids(), vec![id.clone(), id.clone()], "the same id");
    let m = agent.metrics();
    assert_eq!(
        value(
            &m,
            "stalewatch_state_load_errors_total",
            &[("file", "told"), ("reason", "corrupt")]
        ),
        Some(1.0)
    );
    let again = value(&m, "stalewatch_told_again_total", &[("notifier", "cloudevents")]).unwrap();
    assert!(again >= 1.0, "{again}");
    let aside = std::fs::read_dir(&state)
        .unwrap()
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("told-v1.json.corrupt-")
        })
        .count();
    assert_eq!(aside, 1, "kept aside, never deleted");
    // The consumer got it (the agent counted it delivered to both receivers) and printed
    // nothing new.
    agent.wait_for("delivered again", Duration::from_secs(20), |a| {
        value(
            &a.metrics(),
            "stalewatch_notifications_total",
            &[
                ("type", "io.stalewatch.image.base_updated"),
                ("result", "delivered"),
            ],
        ) == Some(2.0)
    });
    let printed = std::fs::read_to_string(&consumer_out).unwrap();
    assert_eq!(printed.matches(id.as_str()).count(), 1, "{printed}");
}

/// Bases built reproducibly (Bazel rules_oci, ko, apko, Google's distroless) carry one fixed
/// `created` across rebuilds — here the epoch, as `buildah commit --timestamp 0` writes it.
/// The same build re-tagged (and imported again) tells nothing; the rebuilt base arriving
/// under the base's name tells the rebuild, with the fixes `scan` computes.
#[test]
#[allow(clippy::too_many_lines)] // a scenario test that reads top to bottom
fn a_reproducibly_built_base_is_told_when_its_name_moves_and_not_when_it_is_retagged() {
    let test = "rebuild signal: reproducible bases";
    let Some(lab) = Lab::start(test) else {
        return;
    };
    let Some(b) = Buildah::new(test) else {
        return;
    };
    let b = b.reproducible(0);
    let tmp = tempfile::tempdir().unwrap();
    let [(base_dir, base_tar), (app_dir, app_tar), (new_dir, new_tar)] = rebuild_images(&b, tmp.path());
    let created = |d: &Path| common::buildah::layout_config(d)["created"].clone();
    assert_eq!(created(&base_dir), "1970-01-01T00:00:00Z");
    assert_eq!(created(&new_dir), created(&base_dir), "two builds, one time");
    assert_ne!(layout_layers(&new_dir), layout_layers(&base_dir));
    let db = tmp.path().join("db");
    shared_db(&db, &["Alpine"]);
    let (app, old, new) = (
        scan_report(&app_dir, &db),
        scan_report(&base_dir, &db),
        scan_report(&new_dir, &db),
    );
    let expected: BTreeSet<(String, String)> = keys(&app)
        .intersection(&keys(&old))
        .filter(|k| !keys(&new).contains(k))
        .cloned()
        .collect();
    assert!(!expected.is_empty());

    lab.import(&base_tar, "localhost/base");
    lab.import(&app_tar, "localhost/app");
    lab.run_container(
        "app",
        "localhost/app:1",
        &[
            ("io.kubernetes.pod.name", "app-0"),
            ("io.kubernetes.pod.namespace", "shop"),
            ("io.kubernetes.container.name", "app"),
        ],
    );
    let receiver = Receiver::start(&tmp.path().join("receiver"), "202", 0.0);
    let mirror = Mirror::start(shared_data().join("osv"));
    let agent = Agent::start(
        &lab.sock,
        &tmp.path().join("state"),
        &mirror.url(),
        &["--notify-url", &receiver.url, "--reconcile-interval", "1s"],
    );
    agent.wait_for("the app's base known", Duration::from_secs(60), |a| {
        value(
            &a.metrics(),
            "stalewatch_image_base_info",
            &[("base_name", "localhost/base:1"), ("detected_by", "label")],
        ) == Some(1.0)
    });
    let told = || {
        receiver
            .events(None)
            .into_iter()
            .filter(|e| e["attributes"]["type"] == "io.stalewatch.image.base_updated")
            .collect::<Vec<_>>()
    };
    // The same build under another tag, and imported again under its own: nothing to tell.
    lab.ctr(&["images", "tag", "localhost/base:1", "localhost/base:1-again"]);
    lab.import(&base_tar, "localhost/base");
    std::thread::sleep(Duration::from_secs(5));
    assert!(told().is_empty(), "{:#?}", told());
    assert_eq!(
        value(
            &agent.metrics(),
            "stalewatch_image_rebuild_fixable_vulnerabilities",
            &[]
        ),
        None
    );
    // The rebuilt base under the base's name: told, with the scans' fixes.
    lab.import(&new_tar, "localhost/base");
    agent.wait_for("a base_updated CloudEvent", Duration::from_secs(30), |_| {
        !told().is_empty()
    });
    let events = told();
    assert_eq!(events.len(), 1, "{events:#?}");
    let fixed: BTreeSet<(String, String)> = string_pairs(&events[0]["data"]["fixed"], "id", "package")
        .into_iter()
        .collect();
    assert_eq!(fixed, expected);
    assert_eq!(events[0]["attributes"]["subject"], "localhost/app:1");
}
