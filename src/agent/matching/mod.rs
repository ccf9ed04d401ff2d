//! The matching owner: the advisory data in force (indexes, KEV, EPSS, `--vex-dir`), its
//! refresh, and the passes that make reports from inventories (the findings store keeps
//! them, and says when they are stale). No layer is read here: a refresh re-enters at the
//! matcher with the cached inventories.

pub mod refresh;
pub mod vex_dir;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;

use stalewatch_core::advisory::{IndexError, IndexSet};
use stalewatch_core::catalog::Inventory;
use stalewatch_core::matcher::Matcher;
use stalewatch_core::report::Report;
use stalewatch_core::report::Triage;
use stalewatch_core::time::rfc3339_seconds;
use stalewatch_core::triage::{EpssScores, ImageIdentity, KevCatalog, VexSet};

use super::config::Config;
use super::images::cache::ImageRecord;
use super::metrics::Metrics;
use super::signals::Signal;
use super::snapshot::{DbView, TriageView};
use crate::db::update::{Change, EcosystemResult};
use crate::db::{State, Store};

pub struct Matching {
    db_dir: PathBuf,
    ecosystems: Vec<String>,
    db: Option<Arc<IndexSet>>,
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
                Err(e) => metrics.emit(Signal::AdvisoryUpdate {
                    reason: e.reason,
                    ecosystem: &r.ecosystem,
                    error: &e,
                }),
            }
        }
        changed && self.load_db()
    }

    /// A matching pass over the index in force (`None` before one is loaded): one matcher,
    /// so images sharing a base judge each package once, and the triage data read once.
    pub fn pass(&self) -> Option<Pass<'_>> {
        let db = self.db.as_deref()?;
        Some(Pass {
            matcher: Matcher::new(db),
            kev: self.kev.as_deref(),
            epss: self.pass_epss(),
            vex: self.vex.as_deref(),
        })
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

    /// The ecosystems the agent fetches (`--ecosystem`), as a set.
    pub fn fetched_ecosystems(&self) -> BTreeSet<String> {
        self.ecosystems.iter().cloned().collect()
    }

    /// Of `awaited`, the ecosystems whose index is loaded.
    pub fn loaded(&self, awaited: &BTreeSet<String>) -> BTreeSet<String> {
        awaited
            .iter()
            .filter(|e| self.db.as_deref().is_some_and(|db| db.get(e).is_some()))
            .cloned()
            .collect()
    }
}

/// One pass that makes reports: inventories in, triaged reports out (the findings store keeps
/// them).
pub struct Pass<'a> {
    matcher: Matcher<'a>,
    kev: Option<&'a KevCatalog>,
    epss: Option<EpssScores>,
    vex: Option<&'a VexSet>,
}

impl Pass<'_> {
    fn triage<'t>(&'t self, image: Option<&'t ImageIdentity>) -> Triage<'t> {
        Triage {
            kev: self.kev,
            epss: self.epss.as_ref(),
            vex: self.vex,
            image,
        }
    }

    /// An image's report from its cached record.
    pub fn image_report(&mut self, digest: &str, rec: &ImageRecord, now: i64) -> Result<Report, IndexError> {
        let findings = self.matcher.match_inventory(&rec.inventory)?;
        let unresolved = self.matcher.unresolved_binaries(&rec.inventory)?;
        let mut notes = rec.unreadable.clone();
        notes.extend(
            unresolved
                .iter()
                .map(|b| stalewatch_core::catalog::chisel::unresolved_note(b)),
        );
        let target = format!("containerd:{digest}");
        let mut report = Report::new(&target, rec.inventory.without_file_owners(), findings, notes, now);
        // `pkg:oci/…` VEX products name the image by its digest.
        let image = ImageIdentity {
            digest: Some(digest.to_string()),
            name: None,
        };
        report.apply_triage(&self.triage(Some(&image)));
        Ok(report)
    }

    /// The node's report of its own packages (`node:NAME`).
    pub fn node_report(
        &mut self,
        node: &str,
        inv: &Inventory,
        notes: Vec<stalewatch_core::layer::diagnostics::Unreadable>,
        now: i64,
    ) -> Result<Report, IndexError> {
        let findings = self.matcher.match_inventory(inv)?;
        let target = format!("node:{node}");
        let mut report = Report::new(&target, inv.without_file_owners(), findings, notes, now);
        report.apply_triage(&self.triage(None));
        Ok(report)
    }

    /// A drifted container's report of the packages that run.
    pub fn live_report(&mut self, id: &str, inv: &Inventory, now: i64) -> Result<Report, IndexError> {
        let findings = self.matcher.match_inventory(inv)?;
        let target = format!("container:{id}");
        let mut report = Report::new(&target, inv.without_file_owners(), findings, Vec::new(), now);
        report.apply_triage(&self.triage(None));
        Ok(report)
    }
}

/// What `/v1/findings` says of the advisory data.
pub fn db_view(state: &State) -> DbView {
    let last = state
        .ecosystems
        .values()
        .filter_map(|e| e.last_success.clone())
        .max();
    let updated_unix = last.as_deref().and_then(rfc3339_seconds);
    let synced = state.source_synced.as_ref().map(|s| s.at.clone());
    DbView {
        synced_unix: synced.as_deref().and_then(rfc3339_seconds),
        source_synced_at: synced,
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
