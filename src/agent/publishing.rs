//! The publishing owner: builds the snapshot that `/metrics`, `/v1/findings` and Events read
//! from what the other owners hold — once per state change, on the engine's thread — and
//! swaps it in whole, so readers never see half of an update and never wait for a build.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use stalewatch_core::report::Report;

use super::config::Config;
use super::images::cache::ImageRecord;
use super::images::ImageStore;
use super::inventory::running::RunningContainer;
use super::inventory::ContainerInventory;
use super::lineage::Lineage;
use super::matching::{self, Matching};
use super::metrics::Metrics;
use super::runtime_checks::RuntimeChecks;
use super::snapshot::{self, ContainerReport, ContainerView, ImageView, Notable, ScanStatus, Snapshot};
use crate::clock;

const FIRST_SEEN_FILE: &str = "fixes-first-seen.json";

/// What the HTTP side reads: the metrics, the current snapshot, readiness.
pub struct Shared {
    pub metrics: Arc<Metrics>,
    /// `--vex-in-use-not-affected`: how `/v1/vex` treats packages no process loads.
    pub vex_in_use_not_affected: bool,
    /// `--vex-author`.
    pub vex_author: String,
    snapshot: RwLock<Arc<Snapshot>>,
    pub ready: AtomicBool,
    /// The engine's heartbeat (`/healthz`).
    pub heartbeat: super::health::Heartbeat,
}

impl Shared {
    pub fn new(
        metrics: Arc<Metrics>,
        vex_in_use_not_affected: bool,
        vex_author: String,
        stuck_after: std::time::Duration,
    ) -> Shared {
        let heartbeat = super::health::Heartbeat::new(stuck_after);
        heartbeat.beat();
        Shared {
            metrics,
            vex_in_use_not_affected,
            vex_author,
            snapshot: RwLock::new(Arc::new(Snapshot::default())),
            ready: AtomicBool::new(false),
            heartbeat,
        }
    }

    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot.read().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

pub struct Publisher {
    pub shared: Arc<Shared>,
    node_name: String,
    stale_after: i64,
    /// When this agent first saw each fix (`fixes-first-seen.json`): the fix age of a finding
    /// whose record has no `published` date.
    first_seen: BTreeMap<String, i64>,
    first_seen_file: super::state_file::StateFile<BTreeMap<String, i64>>,
}

/// What one running container adds to a snapshot.
struct ContainerPart {
    view: ContainerView,
    image: Option<ImageView>,
    /// (image digest, manifest digest, the image's report) for `/v1/sbom/<digest>`.
    sbom: Option<(String, String, Arc<Report>)>,
}

impl Publisher {
    pub fn new(cfg: &Config, shared: Arc<Shared>) -> Publisher {
        // Lost, fix ages start again from now: kept aside and counted, never silently.
        let first_seen_file = super::state_file::StateFile::new(
            &cfg.state_dir,
            FIRST_SEEN_FILE,
            "fixes_first_seen",
            1,
            shared.metrics.state_counters(),
        );
        let (first_seen, _) = first_seen_file.load();
        Publisher {
            shared,
            node_name: cfg.node_name.clone(),
            stale_after: cfg.stale_after.as_secs() as i64,
            first_seen,
            first_seen_file,
        }
    }

    /// Builds the snapshot of the current state (and remembers fixes seen for the first time).
    pub fn build(
        &mut self,
        inventory: &ContainerInventory,
        images: &ImageStore,
        matching: &Matching,
        lineage: &Lineage,
        checks: &mut RuntimeChecks,
    ) -> Snapshot {
        let now = clock::now();
        let db_state = matching.db_state();
        let awaited = matching.awaited_ecosystems(&db_state);
        let fetched = matching.fetched_ecosystems();
        let coverage = Coverage {
            awaited: &awaited,
            state: &db_state,
            fetched: &fetched,
        };
        let seen_before = self.first_seen.len();
        let mut containers = Vec::new();
        let mut image_views = BTreeMap::new();
        let mut image_reports = BTreeMap::new();
        for rc in &inventory.running {
            let part = self.container(rc, images, matching, checks, &coverage, now);
            if let Some(iv) = part.image {
                image_views.insert((iv.image.clone(), iv.image_digest.clone()), iv);
            }
            if let Some((digest, manifest, report)) = part.sbom {
                image_reports.insert(digest, report.clone());
                image_reports.insert(manifest, report);
            }
            containers.push(part.view);
        }
        if self.first_seen.len() != seen_before {
            self.save_first_seen();
        }
        containers.sort_by(|a, b| {
            (&a.namespace, &a.pod, &a.container, &a.id).cmp(&(&b.namespace, &b.pod, &b.container, &b.id))
        });
        Snapshot {
            schema: "stalewatch/findings/v1",
            node: self.node_name.clone(),
            generated_at: clock::rfc3339(now),
            advisory_db: matching::db_view(&db_state),
            containers,
            images: image_views.into_values().collect(),
            declared_bases: lineage.declared_present(),
            triage: matching.triage_view(),
            image_reports,
        }
    }

    /// One running container's view: its scan status, report and counts.
    fn container(
        &mut self,
        rc: &RunningContainer,
        images: &ImageStore,
        matching: &Matching,
        checks: &mut RuntimeChecks,
        coverage: &Coverage,
        now: i64,
    ) -> ContainerPart {
        let mut part = ContainerPart {
            view: container_view(rc),
            image: None,
            sbom: None,
        };
        let view = &mut part.view;
        view.runtime_checks = checks.states(&rc.id);
        let Some(digest) = &rc.image_digest else {
            view.scan_status = ScanStatus::Failed;
            view.error = Some(format!("image {} is not in containerd's image store", rc.image));
            return part;
        };
        if let Some(f) = images.failure(digest) {
            view.scan_status = ScanStatus::Failed;
            view.error = Some(f.message.clone());
            return part;
        }
        let Some(rec) = images.record(digest) else {
            return part;
        };
        view.manifest_digest = Some(rec.manifest_digest.clone());
        view.config_digest = Some(rec.config_digest.clone());
        view.read_from = Some(rec.read_from.as_str());
        let inv = &rec.inventory;
        let live = checks.live.get_mut(&rc.id);
        view.drift = live.as_ref().map(|l| l.drift.clone());
        // Where the live packages differ from the image, the findings are those of what runs.
        let mut report = match live.as_ref().filter(|l| l.inventory.is_some()) {
            Some(l) => l.report.as_ref().map(|r| {
                let mut c = ContainerReport::new(r.report.clone());
                c.drift = Some(r.drift.clone());
                c
            }),
            None => matching.report(digest).cloned().map(ContainerReport::new),
        };
        view.coverage_gaps = Matching::gaps(rec, coverage.state, coverage.fetched);
        let pending = report.is_none() || matching.index_missing(rec, coverage.awaited);
        let (status, error) = scan_status(rec, pending, !view.coverage_gaps.is_empty());
        view.scan_status = status;
        view.error = error;
        let Some(report) = report.as_mut() else {
            return part;
        };
        if let Some(l) = live {
            if let Some(m) = l.in_use(&report.report, inv) {
                report.in_use = Some(m.marks.clone());
                view.vulnerabilities_in_use = Some(m.counts.clone());
            }
            view.deleted_files_in_use = l.mapped.iter().flat_map(|m| m.deleted.iter().cloned()).collect();
        }
        self.count(view, report, now);
        if let Some(r) = matching.report(digest) {
            part.sbom = Some((digest.clone(), rec.manifest_digest.clone(), r.clone()));
        }
        // The image's own report (not a drifted container's live one) carries its lineage.
        let own = matching.report(digest);
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

    /// The counts a container's metrics and Events come from.
    fn count(&mut self, view: &mut ContainerView, report: &ContainerReport, now: i64) {
        for f in report.findings.iter().filter(|f| f.fixable) {
            self.first_seen.entry(snapshot::fix_key(f)).or_insert(now);
        }
        view.vulnerabilities = snapshot::count_vulnerabilities(&report.findings);
        view.triage = snapshot::triage_counts(&report.report);
        view.oldest_fix_age = snapshot::oldest_fix_age(&report.findings, &self.first_seen, now);
        view.notable = snapshot::notable(&report.findings, &self.first_seen, now, self.stale_after);
    }

    fn save_first_seen(&self) {
        self.first_seen_file.save(&self.first_seen);
    }

    /// Rewrites the metric series from the snapshot and swaps it in for the HTTP side.
    pub fn publish(&self, snap: Arc<Snapshot>, ready: bool) {
        self.shared.metrics.publish(&snap);
        *self.shared.snapshot.write().unwrap_or_else(|e| e.into_inner()) = snap;
        if ready {
            self.shared.ready.store(true, Ordering::SeqCst);
        }
    }
}

/// An inventoried image's scan status (and the error of a failed one): `pending` while its
/// report or index is awaited, `no_advisory_feed` with coverage gaps.
fn scan_status(rec: &ImageRecord, pending: bool, gaps: bool) -> (ScanStatus, Option<String>) {
    let inv = &rec.inventory;
    // A package database the agent found and cannot read (rpm's ndb, a directory per package
    // under status.d) is a failure to scan, never "nothing to scan".
    let unsupported = rec
        .unreadable
        .iter()
        .find(|u| u.reason == "unsupported_package_db");
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
/// What the advisory data covers, read once per snapshot: the ecosystems still to come, and
/// the last update's state (missing ecosystems, records per release).
struct Coverage<'a> {
    awaited: &'a BTreeSet<String>,
    state: &'a crate::db::State,
    fetched: &'a BTreeSet<String>,
}

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
        started_at: rc.started_at.map(clock::rfc3339),
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
