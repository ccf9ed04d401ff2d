//! Building a snapshot: plain values in (what the owners hold, read-only), the snapshot out,
//! at a time given as an argument (one clock read per reconcile, in the engine). The agent's
//! annotations are applied here, beside the shared reports and never in a copy of them:
//! drift (a drifted container's findings are those of what runs, each marked `added` or
//! `changed`), packages in use, the scan status and coverage gaps, fix ages, the facts the
//! change list is made of (`Notable`), the image's lineage as its report carries it. No clock,
//! file, network or async runtime here (`tests/architecture.rs`).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use stalewatch_core::report::Report;

use crate::agent::images::cache::ImageRecord;
use crate::agent::images::failure::ScanFailure;
use crate::agent::inventory::running::RunningContainer;
use crate::agent::node_object::NodeObject;
use crate::agent::runtime_checks::RuntimeChecks;
use crate::agent::snapshot::{
    self, ContainerReport, ContainerView, DbView, ImageView, NodeInfo, NodeView, Notable, ScanStatus,
    Snapshot, TriageView,
};
use crate::agent::store::FindingsStore;
use crate::db::coverage::{self, Gap};
use crate::db::State;
use stalewatch_core::catalog::Inventory;
use stalewatch_core::layer::diagnostics::Unreadable;
use stalewatch_core::node_image;

/// What the publishing owner keeps: the node's name, `--stale-after`, when each fix was first
/// seen.
#[derive(Clone, Copy)]
pub struct Known<'a> {
    pub node: &'a str,
    /// Seconds.
    pub stale_after: i64,
    /// `--stale-min-severity`.
    pub stale_min: stalewatch_core::advisory::Severity,
    pub first_seen: &'a BTreeMap<String, i64>,
}

/// Everything a snapshot is made of.
pub struct Inputs<'a> {
    pub known: Known<'a>,
    /// What runs (the inventory owner).
    pub running: &'a [RunningContainer],
    /// Inventoried images, and why the others failed (the images owner).
    pub records: &'a BTreeMap<String, ImageRecord>,
    pub failures: &'a BTreeMap<String, ScanFailure>,
    /// Every report (the findings store) and the runtime checks' results.
    pub store: &'a FindingsStore,
    pub checks: &'a RuntimeChecks,
    /// The advisory data: its last update's state, the ecosystems still awaited, those whose
    /// index is loaded, those fetched (`--ecosystem`), and what `/v1/findings` says of it.
    pub db_state: &'a State,
    pub awaited: &'a BTreeSet<String>,
    pub loaded: &'a BTreeSet<String>,
    pub fetched: &'a BTreeSet<String>,
    pub advisory_db: DbView,
    pub triage: TriageView,
    /// Each `--base-image` and whether the node holds it (the lineage owner).
    pub declared_bases: Vec<(String, bool)>,
    /// What the node scan found, when it is on.
    pub node: Option<NodeFacts<'a>>,
}

/// The node scan's findings (`agent/node.rs`): its inventory, what it could not read, its
/// kernel, whether a reboot is due, why it failed.
#[derive(Clone, Copy)]
pub struct NodeFacts<'a> {
    pub inventory: Option<&'a Inventory>,
    pub unreadable: &'a [Unreadable],
    pub kernel: Option<&'a stalewatch_core::kernel::RunningKernel>,
    pub reboot_required: bool,
    /// Since when a reboot is due (Unix seconds).
    pub reboot_since: Option<i64>,
    pub error: Option<&'a str>,
    /// The agent's Node object (`None`: not read, or no Kubernetes API), and why its last read
    /// failed.
    pub object: Option<&'a NodeObject>,
    pub object_error: Option<&'a str>,
}

/// What one running container adds to a snapshot.
struct ContainerPart {
    view: ContainerView,
    image: Option<ImageView>,
    /// (image digest, manifest digest, the image's report) for `/v1/sbom/<digest>`.
    sbom: Option<(String, String, Arc<Report>)>,
}

impl Snapshot {
    /// The snapshot of `inputs` at `now` (seconds since the epoch).
    pub fn build(inputs: &Inputs, now: i64) -> Snapshot {
        let mut containers = Vec::new();
        let mut image_views = BTreeMap::new();
        let mut image_reports = BTreeMap::new();
        for rc in inputs.running {
            let part = container(inputs, rc, now);
            if let Some(iv) = part.image {
                image_views.insert((iv.image.clone(), iv.image_digest.clone()), iv);
            }
            if let Some((digest, manifest, report)) = part.sbom {
                image_reports.insert(digest, report.clone());
                image_reports.insert(manifest, report);
            }
            containers.push(part.view);
        }
        let newer_reports = inputs
            .running
            .iter()
            .filter_map(|rc| rc.stale.as_ref())
            .filter_map(|s| {
                Some((
                    s.current_digest.clone(),
                    inputs.store.image(&s.current_digest)?.clone(),
                ))
            })
            .collect();
        containers.sort_by(|a, b| {
            (&a.namespace, &a.pod, &a.container, &a.id).cmp(&(&b.namespace, &b.pod, &b.container, &b.id))
        });
        Snapshot {
            schema: "stalewatch/findings/v1",
            node: inputs.known.node.to_string(),
            generated_at: stalewatch_core::time::format_rfc3339(now.max(0)),
            advisory_db: inputs.advisory_db.clone(),
            containers,
            images: image_views.into_values().collect(),
            declared_bases: inputs.declared_bases.clone(),
            triage: inputs.triage,
            image_reports,
            newer_reports,
            node_scan: inputs.node.as_ref().map(|n| node_view(inputs, n, now)),
        }
    }
}

/// A container's report: its live one where it drifted (marked per finding), its image's
/// otherwise; `None` while it is not matched.
pub fn report_of(
    store: &FindingsStore,
    checks: &RuntimeChecks,
    rc: &RunningContainer,
) -> Option<ContainerReport> {
    let digest = rc.image_digest.as_ref()?;
    match checks.live.get(&rc.id).filter(|l| l.inventory.is_some()) {
        Some(_) => store.live(&rc.id).map(|r| {
            let mut c = ContainerReport::new(r.report.clone());
            c.drift = Some(r.drift.clone());
            c
        }),
        None => store.image(digest).cloned().map(ContainerReport::new),
    }
}

/// One running container's view: its scan status, report and counts.
fn container(inputs: &Inputs, rc: &RunningContainer, now: i64) -> ContainerPart {
    let mut part = ContainerPart {
        view: container_view(rc),
        image: None,
        sbom: None,
    };
    let view = &mut part.view;
    view.runtime_checks = inputs.checks.states(&rc.id);
    let Some(digest) = &rc.image_digest else {
        view.scan_status = ScanStatus::Failed;
        view.error = Some(format!("image {} is not in containerd's image store", rc.image));
        return part;
    };
    if let Some(f) = inputs.failures.get(digest) {
        view.scan_status = ScanStatus::Failed;
        view.error = Some(f.message.clone());
        return part;
    }
    let Some(rec) = inputs.records.get(digest) else {
        return part;
    };
    view.manifest_digest = Some(rec.manifest_digest.clone());
    view.config_digest = Some(rec.config_digest.clone());
    view.read_from = Some(rec.read_from.as_str());
    let live = inputs.checks.live.get(&rc.id);
    view.drift = live.map(|l| l.drift.clone());
    let mut report = report_of(inputs.store, inputs.checks, rc);
    view.coverage_gaps = gaps(rec, inputs);
    let pending = report.is_none() || index_missing(&rec.inventory, inputs);
    let gaps = !view.coverage_gaps.is_empty();
    let (status, error) = scan_status(&rec.inventory, &rec.unreadable, pending, gaps);
    view.scan_status = status;
    view.error = error;
    let Some(report) = report.as_mut() else {
        return part;
    };
    if let Some(l) = live {
        if let Some(m) = l.marks().filter(|m| Arc::ptr_eq(&m.report, &report.report)) {
            report.in_use = Some(m.marks.clone());
            view.vulnerabilities_in_use = Some(m.counts.clone());
        }
        view.deleted_files_in_use = l.mapped.iter().flat_map(|m| m.deleted.iter().cloned()).collect();
    }
    count(view, report, inputs.known, now);
    // The image's own report (not a drifted container's live one) carries its lineage.
    let own = inputs.store.image(digest);
    if let Some(r) = own {
        part.sbom = Some((digest.clone(), rec.manifest_digest.clone(), r.clone()));
    }
    part.image = Some(ImageView {
        image: rc.image.clone(),
        image_digest: digest.clone(),
        os: report
            .os
            .as_ref()
            .map(|os| (os.id.clone(), os.version_id.clone(), os.eol)),
        created: rec.created,
        base: own.and_then(|r| r.base.clone()),
        rebuild_fixable: own.and_then(|r| snapshot::rebuild_fixable(r)),
    });
    view.report = Some(report.clone());
    part
}

/// The counts a container's metrics and the change list come from.
fn count(view: &mut ContainerView, report: &ContainerReport, known: Known, now: i64) {
    view.vulnerabilities = snapshot::count_vulnerabilities(&report.findings);
    view.triage = snapshot::triage_counts(&report.report);
    view.oldest_fix_age = snapshot::oldest_fix_age(&report.findings, known.first_seen, now, known.stale_min);
    view.notable = snapshot::notable(
        &report.findings,
        known.first_seen,
        now,
        known.stale_after,
        known.stale_min,
    );
}

/// The image's packages the advisory data cannot match (their ecosystem or release is not on
/// the source, or not fetched).
fn gaps(rec: &ImageRecord, inputs: &Inputs) -> Vec<Gap> {
    coverage::gaps(&rec.inventory, inputs.db_state, Some(inputs.fetched))
}

/// Whether a package of the image needs an awaited ecosystem whose index is not loaded (yet).
/// Ecosystems not configured, or missing from the advisory source, have none to wait for.
fn index_missing(inv: &Inventory, inputs: &Inputs) -> bool {
    inv.packages
        .iter()
        .map(|p| stalewatch_core::ecosystem::base(&p.ecosystem))
        .filter(|e| inputs.awaited.contains(*e))
        .any(|e| !inputs.loaded.contains(e))
}

/// The node's view: its scan status (as an image's), report, kernel and counts.
fn node_view(inputs: &Inputs, node: &NodeFacts, now: i64) -> NodeView {
    let mut view = NodeView {
        kernel: node.kernel.cloned(),
        reboot_required: node.reboot_required,
        reboot_since: node.reboot_since.filter(|_| node.reboot_required),
        info: node_info(node, now),
        ..Default::default()
    };
    if let Some(e) = node.error {
        view.status = ScanStatus::Failed;
        view.error = Some(e.to_string());
        return view;
    }
    let Some(inv) = node.inventory else {
        return view; // pending: not read yet
    };
    let report = inputs.store.node();
    let gaps = !coverage::gaps(inv, inputs.db_state, Some(inputs.fetched)).is_empty();
    let pending = report.is_none() || index_missing(inv, inputs);
    (view.status, view.error) = scan_status(inv, node.unreadable, pending, gaps);
    if let Some(r) = report {
        view.vulnerabilities = snapshot::count_vulnerabilities(&r.findings);
        view.triage = snapshot::triage_counts(r);
        view.oldest_fix_age =
            snapshot::oldest_fix_age(&r.findings, inputs.known.first_seen, now, inputs.known.stale_min);
        view.report = Some(r.clone());
    }
    view
}

/// What the node is (`stalewatch_node_info`): its OS as its os-release says, the kernel it runs,
/// and from its Node object the node image (and that image's age, where its version is dated)
/// and the container runtime.
fn node_info(node: &NodeFacts, now: i64) -> NodeInfo {
    let os = node.inventory.and_then(|i| i.os.as_ref());
    let object = node.object.cloned().unwrap_or_default();
    let built = object.node_image.as_deref().and_then(node_image::build_date);
    NodeInfo {
        os_id: os.map(|o| o.id.clone()).unwrap_or_default(),
        os_version: os.map(|o| o.version_id.clone()).unwrap_or_default(),
        kernel: node.kernel.map(|k| k.release.clone()).unwrap_or_default(),
        image_age: built.map(|b| (now - b).max(0)),
        node_image: object.node_image.unwrap_or_default(),
        os_sku: object.os_sku.unwrap_or_default(),
        container_runtime: object.container_runtime.unwrap_or_default(),
        object_read: node.object.is_some(),
        object_error: node.object_error.map(str::to_string),
    }
}

/// An inventoried image's scan status (and the error of a failed one): `pending` while its
/// report or index is awaited, `no_advisory_feed` with coverage gaps.
pub fn scan_status(
    inv: &Inventory,
    unreadable: &[Unreadable],
    pending: bool,
    gaps: bool,
) -> (ScanStatus, Option<String>) {
    // A package database the agent found and cannot read (rpm's ndb, a directory per package
    // under status.d) is a failure to scan, never "nothing to scan".
    let unsupported = unreadable.iter().find(|u| u.reason == "unsupported_package_db");
    let status = if let (true, Some(u)) = (inv.databases.is_empty(), unsupported) {
        return (ScanStatus::Failed, Some(format!("{}: {}", u.what, u.detail)));
    } else if inv.databases.is_empty() {
        ScanStatus::NoPackageDb
    } else if inv
        .packages
        .iter()
        .any(|p| p.ecosystem.is_empty() && stalewatch_core::catalog::is_os_package(p))
    {
        // OS packages of a release stalewatch knows no advisory feed for: whatever else was
        // matched, these never were.
        ScanStatus::UnsupportedOs
    } else if pending {
        ScanStatus::Pending
    } else if gaps {
        ScanStatus::NoAdvisoryFeed
    } else {
        ScanStatus::Ok
    };
    (status, None)
}

/// The view of one running container before its image is looked at.
fn container_view(rc: &RunningContainer) -> ContainerView {
    ContainerView {
        id: rc.id.clone(),
        namespace: rc.namespace.clone(),
        pod: rc.pod.clone(),
        container: rc.container.clone(),
        image: rc.image.clone(),
        image_digest: rc.image_digest.clone(),
        manifest_digest: None,
        config_digest: None,
        read_from: None,
        coverage_gaps: Vec::new(),
        started_at: rc
            .started_at
            .map(|t| stalewatch_core::time::format_rfc3339(t.max(0))),
        scan_status: ScanStatus::Pending,
        error: None,
        stale_digest: rc.stale.clone(),
        report: None,
        drift: None,
        runtime_checks: Default::default(),
        started_unix: rc.started_at,
        vulnerabilities: BTreeMap::new(),
        triage: Default::default(),
        oldest_fix_age: 0,
        pod_uid: rc.pod_uid.clone(),
        notable: Notable::default(),
        vulnerabilities_in_use: None,
        deleted_files_in_use: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::runtime_checks::in_use::Mapped;
    use crate::agent::snapshot::StaleDigest;
    use crate::agent::store::{self, Drifted};
    use stalewatch_core::advisory::Severity;
    use stalewatch_core::catalog::Inventory;
    use stalewatch_core::lineage::{Base, DetectedBy};
    use stalewatch_core::matcher::Finding;

    const NOW: i64 = 1_767_225_600; // 2026-01-01T00:00:00Z
    const DAY: i64 = 86_400;

    use crate::agent::snapshot::tests::package_of as package;

    fn inventory(packages: &[(&str, &str)]) -> Inventory {
        Inventory {
            packages: packages
                .iter()
                .map(|(n, v)| package("Alpine:v3.20", n, v))
                .collect::<Vec<_>>()
                .into(),
            databases: vec!["lib/apk/db/installed".into()],
            ..Default::default()
        }
    }

    /// A fixable finding; `published` days before NOW (`None`: no date in the record).
    fn finding(id: &str, pkg: &str, severity: Severity, published_days_ago: Option<i64>) -> Finding {
        Finding {
            id: id.into(),
            ecosystem: "Alpine:v3.20".into(),
            package: pkg.into(),
            source_name: pkg.into(),
            installed_version: "1.0-r0".into(),
            fixed_version: Some("1.1-r0".into()),
            fixable: true,
            severity,
            published: published_days_ago
                .map(|d| stalewatch_core::time::format_rfc3339(NOW - d * DAY).into()),
            ..Default::default()
        }
    }

    fn record(digest: &str, inv: Inventory) -> ImageRecord {
        ImageRecord {
            image_digest: digest.into(),
            manifest_digest: format!("{digest}-m"),
            config_digest: format!("{digest}-c"),
            created: Some(NOW - 40 * DAY),
            layers: vec!["sha256:l1".into()],
            chain_id: None,
            inventory: inv,
            unreadable: Vec::new(),
            read_from: Default::default(),
        }
    }

    fn running(id: &str, digest: Option<&str>) -> RunningContainer {
        RunningContainer {
            id: id.into(),
            namespace: "shop".into(),
            pod: format!("pod-{id}"),
            container: "app".into(),
            image: format!("registry.test/{id}:1"),
            image_digest: digest.map(str::to_string),
            ..Default::default()
        }
    }

    /// One row per annotation: each container shows one thing the snapshot must say.
    #[test]
    #[allow(clippy::too_many_lines)] // one table and its expectations, read top to bottom
    fn each_annotation_of_a_container_from_a_table_of_inputs() {
        let image = inventory(&[("musl", "1.0-r0"), ("openssl", "1.0-r0")]);
        let mut with_files = image.clone();
        crate::agent::snapshot::tests::with_musl_and_openssl_files(&mut with_files);
        let findings = vec![
            finding("CVE-OLD", "musl", Severity::Medium, Some(30)),
            finding("CVE-HIGH", "openssl", Severity::High, Some(2)),
            finding("CVE-UNDATED", "openssl", Severity::Low, None),
        ];
        let mut based = Report::new(
            "containerd:sha256:ok",
            image.clone(),
            findings.clone(),
            vec![],
            NOW,
        );
        based.base = Some(Base {
            name: Some("alpine:3.20".into()),
            digest: None,
            detected_by: DetectedBy::Label,
            layers: Some(1),
        });
        let mut debian = image.clone();
        debian.packages_mut().push(package("Debian:12", "bash", "5.2"));
        let mut pypi = image.clone();
        pypi.packages_mut().push(package("PyPI", "requests", "2.0"));
        let mut records = BTreeMap::from([
            ("sha256:ok".to_string(), record("sha256:ok", with_files.clone())),
            (
                "sha256:nodb".to_string(),
                record("sha256:nodb", Inventory::default()),
            ),
            ("sha256:awaiting".to_string(), record("sha256:awaiting", debian)),
            ("sha256:gap".to_string(), record("sha256:gap", pypi)),
        ]);
        records.insert(
            "sha256:unmatched".into(),
            record("sha256:unmatched", image.clone()),
        );
        let failures = BTreeMap::from([(
            "sha256:broken".to_string(),
            ScanFailure {
                message: "layer sha256:l9: unexpected end of gzip stream".into(),
                attempts: 1,
                retry_at: std::time::Instant::now(),
            },
        )]);
        // The drifted container: openssl changed, curl added at run time.
        let live_inv = Arc::new(inventory(&[
            ("curl", "8.0-r0"),
            ("musl", "1.0-r0"),
            ("openssl", "0.9-r0"),
        ]));
        let mut checks = RuntimeChecks::new("/nonexistent".into(), Some(std::time::Duration::from_secs(60)));
        checks.checked_for_test("drifted", &image, Some((*live_inv).clone()), None);
        let mapped = Mapped {
            files: ["lib/ld-musl-x86_64.so.1".to_string()].into(),
            deleted: ["usr/lib/libz.so.1".to_string()].into(),
        };
        checks.checked_for_test("in-use", &with_files, None, Some(mapped));
        let drift = checks.live["drifted"].drift.clone();
        let checks_inv = checks.live["drifted"].inventory.clone().unwrap();
        let live_report = Report::new(
            "container:drifted",
            (*live_inv).clone(),
            vec![
                finding("CVE-CURL", "curl", Severity::Critical, Some(1)),
                finding("CVE-SSL", "openssl", Severity::High, Some(1)),
                finding("CVE-MUSL", "musl", Severity::Low, Some(1)),
            ],
            vec![],
            NOW,
        );
        let drifted = [Drifted {
            id: "drifted",
            inventory: &checks_inv,
            drift: &drift,
        }];
        let store = store::with_reports(
            vec![
                ("sha256:ok".into(), based),
                (
                    "sha256:awaiting".into(),
                    Report::new("a", image.clone(), vec![], vec![], NOW),
                ),
                (
                    "sha256:gap".into(),
                    Report::new("g", image.clone(), vec![], vec![], NOW),
                ),
            ],
            &drifted,
            vec![live_report],
        );
        let mut stale = running("stale", Some("sha256:ok"));
        stale.stale = Some(StaleDigest {
            running_digest: "sha256:ok".into(),
            running_image_gone: false,
            current_digest: "sha256:newer".into(),
        });
        let rows = vec![
            running("no-image", None),
            running("broken", Some("sha256:broken")),
            running("unread", Some("sha256:unread")),
            running("nodb", Some("sha256:nodb")),
            running("unmatched", Some("sha256:unmatched")),
            running("awaiting", Some("sha256:awaiting")),
            running("gap", Some("sha256:gap")),
            running("ok", Some("sha256:ok")),
            running("drifted", Some("sha256:ok")),
            running("in-use", Some("sha256:ok")),
            stale,
        ];
        checks.mark_in_use(&rows, &store, &records);
        // A fix first seen by this agent 10 days ago; the other undated one is new.
        let first_seen = BTreeMap::from([(snapshot::fix_key(&findings[2]), NOW - 10 * DAY)]);
        let state = State::default();
        let alpine: BTreeSet<String> = ["Alpine".to_string(), "Debian".to_string()].into();
        let inputs = Inputs {
            known: Known {
                node: "node-a",
                stale_after: 7 * DAY,
                // Every finding counts toward a stale runtime (snapshot.rs tests the floor).
                stale_min: stalewatch_core::advisory::Severity::Unknown,
                first_seen: &first_seen,
            },
            running: &rows,
            records: &records,
            failures: &failures,
            store: &store,
            checks: &checks,
            db_state: &state,
            awaited: &alpine,
            loaded: &["Alpine".to_string()].into(),
            fetched: &alpine,
            advisory_db: DbView::default(),
            triage: TriageView::default(),
            declared_bases: vec![("alpine:3.20".into(), true)],
            node: None,
        };
        let snap = Snapshot::build(&inputs, NOW);
        let by_id: BTreeMap<&str, &ContainerView> =
            snap.containers.iter().map(|c| (c.id.as_str(), c)).collect();
        let status = |id: &str| by_id[id].scan_status.as_str();

        assert_eq!(snap.generated_at, "2026-01-01T00:00:00Z");
        assert_eq!(snap.node, "node-a");
        assert_eq!(snap.declared_bases, vec![("alpine:3.20".to_string(), true)]);
        // Scan status: each reason a container is not `ok`.
        assert_eq!(status("no-image"), "failed");
        assert!(by_id["no-image"]
            .error
            .as_deref()
            .unwrap()
            .contains("not in containerd's image store"));
        assert_eq!(status("broken"), "failed");
        assert_eq!(
            by_id["broken"].error.as_deref(),
            Some("layer sha256:l9: unexpected end of gzip stream")
        );
        assert_eq!(status("unread"), "pending");
        assert_eq!(status("nodb"), "no_package_db");
        assert_eq!(status("unmatched"), "pending", "inventoried, no report yet");
        assert_eq!(status("awaiting"), "pending", "Debian is awaited and not loaded");
        assert_eq!(status("gap"), "no_advisory_feed");
        assert_eq!(by_id["gap"].coverage_gaps.len(), 1);
        assert_eq!(by_id["gap"].coverage_gaps[0].ecosystem, "PyPI");
        assert_eq!(status("ok"), "ok");
        assert!(by_id["ok"].report.is_some() && by_id["unmatched"].report.is_none());

        // Counts and fix ages: CVE-OLD's fix is 30 days old (published), CVE-UNDATED's 10
        // days (first seen); only those two are past --stale-after (7 days).
        let ok = by_id["ok"];
        assert_eq!(ok.oldest_fix_age, 30 * DAY);
        assert_eq!(
            ok.notable.stale,
            vec!["CVE-OLD".to_string(), "CVE-UNDATED".to_string()]
        );
        let fixable: Vec<&str> = ok.notable.fixable.iter().map(|(id, _, _)| id.as_str()).collect();
        assert_eq!(fixable, vec!["CVE-HIGH", "CVE-OLD", "CVE-UNDATED"]);
        assert_eq!(ok.vulnerabilities.values().sum::<u64>(), 3);
        assert_eq!(ok.vulnerabilities.get(&(Severity::High, true)), Some(&1));

        // Drift: the findings are those of what runs, each marked as its package drifted.
        let d = by_id["drifted"];
        let marks: BTreeMap<String, Option<String>> = serde_json::to_value(d.report.as_ref().unwrap())
            .unwrap()["findings"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| {
                (
                    f["id"].as_str().unwrap().to_string(),
                    f.get("drift").and_then(|v| v.as_str()).map(str::to_string),
                )
            })
            .collect();
        assert_eq!(
            marks,
            BTreeMap::from([
                ("CVE-CURL".to_string(), Some("added".to_string())),
                ("CVE-MUSL".to_string(), None),
                ("CVE-SSL".to_string(), Some("changed".to_string())),
            ])
        );
        assert_eq!(d.drift.as_ref().unwrap().added.len(), 1);
        let severities: BTreeSet<Severity> = d.notable.fixable.iter().map(|(_, s, _)| *s).collect();
        assert_eq!(
            severities,
            [Severity::Critical, Severity::High, Severity::Low].into(),
            "the live report's"
        );

        // In use: musl is mapped, openssl is not; a deleted mapped file is said.
        let u = by_id["in-use"];
        let in_use: Vec<(String, Option<bool>)> = serde_json::to_value(u.report.as_ref().unwrap()).unwrap()
            ["findings"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| {
                (
                    f["package"].as_str().unwrap().to_string(),
                    f.get("in_use").and_then(|v| v.as_bool()),
                )
            })
            .collect();
        assert!(in_use.contains(&("musl".to_string(), Some(true))), "{in_use:?}");
        assert!(
            in_use.contains(&("openssl".to_string(), Some(false))),
            "{in_use:?}"
        );
        assert_eq!(u.deleted_files_in_use, vec!["usr/lib/libz.so.1".to_string()]);
        assert_eq!(u.runtime_checks.in_use.state, "ok");
        assert_eq!(
            by_id["ok"].runtime_checks.in_use.state, "pending",
            "not checked yet"
        );
        assert!(ok.vulnerabilities_in_use.is_none(), "unknown without a map read");

        // Lineage: the image's own report carries its base; SBOMs are served by both digests.
        let iv = snap
            .images
            .iter()
            .find(|i| i.image_digest == "sha256:ok")
            .unwrap();
        assert_eq!(
            iv.base.as_ref().and_then(|b| b.name.as_deref()),
            Some("alpine:3.20")
        );
        assert!(
            snap.image_reports.contains_key("sha256:ok") && snap.image_reports.contains_key("sha256:ok-m")
        );
        // A stale digest is carried as the inventory found it.
        assert_eq!(
            by_id["stale"].stale_digest.as_ref().unwrap().current_digest,
            "sha256:newer"
        );
        // Sorted by (namespace, pod, container, id), whatever the input order.
        let pods: Vec<&str> = snap.containers.iter().map(|c| c.pod.as_str()).collect();
        let mut sorted = pods.clone();
        sorted.sort();
        assert_eq!(pods, sorted);
    }
}
