//! The publishing owner: has the snapshot that `/metrics`, `/v1/findings` and Events read
//! built from what the other owners hold (`build`, pure: the time is an argument) — once per
//! state change, on the engine's thread — remembers when each fix was first seen, and swaps
//! the snapshot in whole, so readers never see half of an update and never wait for a build.

pub mod build;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use super::config::Config;
use super::inventory::running::RunningContainer;
use super::metrics::Metrics;
use super::runtime_checks::RuntimeChecks;
use super::snapshot::{self, Snapshot};
use super::store::FindingsStore;
pub use build::{Inputs, Known};

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
    stale_min: stalewatch_core::advisory::Severity,
    /// When this agent first saw each fix (`fixes-first-seen.json`): the fix age of a finding
    /// whose record has no `published` date.
    first_seen: BTreeMap<String, i64>,
    first_seen_file: super::state_file::StateFile<BTreeMap<String, i64>>,
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
            stale_min: cfg.stale_min_severity,
            first_seen,
            first_seen_file,
        }
    }

    /// Remembers the fixes of what runs seen for the first time at `now` (the fix age of a
    /// finding whose record has no `published` date).
    pub fn remember_fixes(
        &mut self,
        running: &[RunningContainer],
        store: &FindingsStore,
        checks: &RuntimeChecks,
        now: i64,
    ) {
        let mut seen = false;
        for rc in running {
            let Some(r) = build::report_of(store, checks, rc) else {
                continue;
            };
            for f in r.findings.iter().filter(|f| f.fixable) {
                if let std::collections::btree_map::Entry::Vacant(e) =
                    self.first_seen.entry(snapshot::fix_key(f))
                {
                    e.insert(now);
                    seen = true;
                }
            }
        }
        if seen {
            self.save_first_seen();
        }
    }

    /// What the snapshot takes from this owner.
    pub fn known(&self) -> Known<'_> {
        Known {
            node: &self.node_name,
            stale_after: self.stale_after,
            stale_min: self.stale_min,
            first_seen: &self.first_seen,
        }
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
