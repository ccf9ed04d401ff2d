//! The matching owner: the advisory database in use, each image's report against it, and the
//! re-match of cached inventories when the data (or the date, which moves end of life)
//! changes. No layer is read here: a refresh re-enters at the matcher.

pub mod refresh;
pub mod vex_dir;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use stalewatch_core::advisory::IndexSet;
use stalewatch_core::matcher::Matcher;
use stalewatch_core::report::Report;
use stalewatch_core::report::Triage;
use stalewatch_core::triage::vex::rfc3339_seconds;
use stalewatch_core::triage::{EpssScores, ImageIdentity, KevCatalog, VexSet};

use super::config::Config;
use super::images::cache::{ImageCache, ImageRecord};
use super::metrics::Metrics;
use super::runtime_checks::RuntimeChecks;
use super::snapshot::{DbView, TriageView};
use crate::clock;
use crate::db::update::{Change, EcosystemResult};
use crate::db::{State, Store};

pub struct Matching {
    db_dir: PathBuf,
    ecosystems: Vec<String>,
    db: Option<Arc<IndexSet>>,
    /// The report of each image against the current index (shared by its containers).
    reports: BTreeMap<String, Arc<Report>>,
    /// The day (since the epoch) the reports were built: end of life moves with the date.
    report_day: i64,
    /// KEV, EPSS (stored beside the indexes) and the `--vex-dir` set in force.
    kev: Option<Arc<KevCatalog>>,
    /// The EPSS scores' date when the stored file is good: the scores themselves (3.4 MiB for
    /// a full file) are read from disk only for a pass that makes reports, then dropped.
    epss_date: Option<Arc<str>>,
    vex: Option<Arc<VexSet>>,
}

impl Matching {
    pub fn new(cfg: &Config) -> Matching {
        let mut m = Matching {
            db_dir: cfg.db_dir.clone(),
            ecosystems: cfg.ecosystems.clone(),
            db: None,
            reports: BTreeMap::new(),
            report_day: 0,
            kev: None,
            epss_date: None,
            vex: None,
        };
        m.load_db();
        m
    }

    pub fn has_db(&self) -> bool {
        self.db.is_some()
    }

    pub fn report(&self, digest: &str) -> Option<&Arc<Report>> {
        self.reports.get(digest)
    }

    /// Replaces an image's report with one amended by another owner (its lineage); the next
    /// re-match makes it afresh, and the owner amends it again.
    pub fn replace(&mut self, digest: &str, report: Arc<Report>) {
        if let Some(r) = self.reports.get_mut(digest) {
            *r = report;
        }
    }

    /// Loads every configured index present; a broken one keeps the previous set in force.
    /// True when a new set was loaded (every report must then be made again).
    fn load_db(&mut self) -> bool {
        let store = Store::new(&self.db_dir);
        let present: Vec<String> = self
            .ecosystems
            .iter()
            .filter(|e| store.has_index(e))
            .cloned()
            .collect();
        self.load_feeds(&store);
        if present.is_empty() {
            return false;
        }
        match store.load(&present) {
            Ok(set) => {
                self.db = Some(Arc::new(set));
                self.reports.clear();
                true
            }
            Err(e) => {
                tracing::error!("advisory index unusable, keeping the previous one: {e:#}");
                false
            }
        }
    }

    /// Loads the stored KEV catalog and EPSS scores; a corrupt one keeps the previous in force.
    fn load_feeds(&mut self, store: &Store) {
        match store.kev() {
            Ok(Some(k)) => self.kev = Some(Arc::new(k)),
            Ok(None) => {}
            Err(e) => tracing::error!("KEV catalog unusable, keeping the previous one: {e:#}"),
        }
        match store.epss() {
            Ok(Some(e)) => self.epss_date = Some(e.score_date.clone()),
            Ok(None) => {}
            Err(e) => tracing::error!("EPSS scores unusable, keeping the previous ones: {e:#}"),
        }
    }

    /// The EPSS scores for one pass that makes reports, read from the stored file (a file
    /// that went bad since it was loaded is skipped: the reports lack EPSS until it is good).
    fn pass_epss(&self) -> Option<EpssScores> {
        self.epss_date.as_ref()?;
        match Store::new(&self.db_dir).epss() {
            Ok(e) => e,
            Err(e) => {
                tracing::error!("EPSS scores unreadable for this pass: {e:#}");
                None
            }
        }
    }

    /// A new `--vex-dir` set (every report is triaged again: no layer is read), or a refused
    /// one (counted; the set in force stays). True when reports must be made again.
    pub fn apply_vex(&mut self, set: Result<VexSet, String>, metrics: &Metrics) -> bool {
        match set {
            Ok(set) => {
                metrics.vex_statements.set(set.statements() as f64);
                self.vex = Some(Arc::new(set));
                self.reports.clear();
                true
            }
            Err(_) => {
                metrics.vex_errors.inc();
                false
            }
        }
    }

    /// What the snapshot says of the triage data in force.
    pub fn triage_view(&self) -> TriageView {
        TriageView {
            kev_released: self.kev.as_ref().and_then(|k| rfc3339_seconds(&k.date_released)),
            kev_loaded: self.kev.is_some(),
            epss_date: self.epss_date.as_deref().and_then(rfc3339_seconds),
            epss_loaded: self.epss_date.is_some(),
            vex_loaded: self.vex.is_some(),
        }
    }

    /// Applies a refresh's results: counts failures, reloads the indexes when one changed.
    /// True when the reports must be made again.
    pub fn apply_refresh(&mut self, results: Vec<EcosystemResult>, metrics: &Metrics) -> bool {
        let mut changed = self.db.is_none();
        for r in results {
            match r.result {
                Ok(Change::Updated(what)) => {
                    tracing::info!(ecosystem = %r.ecosystem, "advisories updated: {what}");
                    changed = true;
                }
                Ok(_) => {}
                Err(e) => metrics
                    .advisory_update_errors
                    .with_label_values(&[e.reason])
                    .inc(),
            }
        }
        changed && self.load_db()
    }

    /// Forgets the reports of images that left the node.
    pub fn forget(&mut self, digests: &[String]) {
        for d in digests {
            self.reports.remove(d);
        }
    }

    /// Drops an image's report (its inventory was read again).
    pub fn invalidate(&mut self, digest: &str) {
        self.reports.remove(digest);
    }

    /// Matches every cached image, and every drifted container's live inventory, that has
    /// no report for the current index (and day) yet.
    pub fn rematch(&mut self, images: &ImageCache, live: &mut RuntimeChecks, metrics: &Metrics) {
        let Some(db) = self.db.clone() else { return };
        let now = clock::now();
        if now.div_euclid(86400) != self.report_day {
            self.report_day = now.div_euclid(86400);
            self.reports.clear();
            live.forget_reports();
        }
        if images.images.keys().all(|d| self.reports.contains_key(d)) && !live.has_unmatched() {
            return;
        }
        let started = Instant::now();
        // One matcher for the pass: images sharing a base judge each package once.
        let mut matcher = Matcher::new(&db);
        let epss = self.pass_epss();
        let base = Triage {
            kev: self.kev.as_deref(),
            epss: epss.as_ref(),
            vex: self.vex.as_deref(),
            image: None,
        };
        let mut n = 0;
        for (digest, rec) in &images.images {
            if self.reports.contains_key(digest) {
                continue;
            }
            let matched = matcher
                .match_inventory(&rec.inventory)
                .and_then(|f| Ok((f, matcher.unresolved_binaries(&rec.inventory)?)));
            match matched {
                Ok((f, unresolved)) => {
                    let inv = rec.inventory.without_file_owners();
                    let target = format!("containerd:{digest}");
                    let mut notes = rec.unreadable.clone();
                    notes.extend(
                        unresolved
                            .iter()
                            .map(|b| stalewatch_core::catalog::chisel::unresolved_note(b)),
                    );
                    let mut report = Report::new(&target, inv, f, notes, now);
                    // `pkg:oci/…` VEX products name the image by its digest.
                    let image = ImageIdentity {
                        digest: Some(digest.clone()),
                        name: None,
                    };
                    report.apply_triage(&Triage {
                        image: Some(&image),
                        ..base
                    });
                    self.reports.insert(digest.clone(), Arc::new(report));
                    n += 1;
                }
                Err(e) => tracing::error!("matching {digest}: {e}"),
            }
        }
        // Containers whose live packages differ from their image: matched on what runs.
        n += live.match_unmatched(&mut matcher, &base, now);
        if n > 0 {
            metrics.rematch_duration.observe(started.elapsed().as_secs_f64());
        }
    }

    /// The advisory state file, read once per snapshot.
    pub fn db_state(&self) -> State {
        Store::new(&self.db_dir).state().unwrap_or_default()
    }

    /// The ecosystems whose index is coming: configured, and not missing from the source.
    pub fn awaited_ecosystems(&self, state: &State) -> BTreeSet<String> {
        self.ecosystems
            .iter()
            .filter(|e| !state.ecosystems.get(*e).is_some_and(|s| s.missing))
            .cloned()
            .collect()
    }

    /// The image's packages the advisory data cannot match (their ecosystem or release is
    /// not on the source, or not fetched).
    pub fn gaps(
        rec: &ImageRecord,
        state: &State,
        fetched: &BTreeSet<String>,
    ) -> Vec<crate::db::coverage::Gap> {
        crate::db::coverage::gaps(&rec.inventory, state, Some(fetched))
    }

    /// The ecosystems the agent fetches (`--ecosystem`), as a set.
    pub fn fetched_ecosystems(&self) -> BTreeSet<String> {
        self.ecosystems.iter().cloned().collect()
    }

    /// Whether a package of the image needs an awaited ecosystem whose index is not loaded
    /// (yet). Ecosystems not configured, or missing from the advisory source, have no
    /// advisories to wait for.
    pub fn index_missing(&self, rec: &ImageRecord, awaited: &BTreeSet<String>) -> bool {
        rec.inventory
            .packages
            .iter()
            .map(|p| p.ecosystem.split(':').next().unwrap_or_default())
            .filter(|e| awaited.contains(*e))
            .any(|e| self.db.as_deref().is_none_or(|db| db.get(e).is_none()))
    }
}

/// What `/v1/findings` says of the advisory data.
pub fn db_view(state: &State) -> DbView {
    let last = state
        .ecosystems
        .values()
        .filter_map(|e| e.last_success.clone())
        .max();
    let updated_unix = last
        .as_deref()
        .and_then(|t| humantime::parse_rfc3339_weak(t.trim_end_matches('Z')).ok())
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_secs() as i64);
    DbView {
        updated_at: last,
        records: state
            .ecosystems
            .iter()
            .filter(|(_, e)| !e.missing)
            .map(|(k, e)| (k.clone(), e.records))
            .collect(),
        updated_unix,
    }
}
