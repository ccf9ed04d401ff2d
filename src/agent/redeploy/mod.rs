//! The opt-in validated redeploy (`--redeploy dry-run|on`): a container runs an older build
//! of its tag while the node holds the newer one (a stale digest); once the newer build is
//! inventoried and matched, the gate (`stalewatch_core::gate`) decides whether it may replace
//! what runs. The engine side (here) turns snapshots into candidates, each offered once; the
//! Kubernetes side (`kube`) finds the workload through the pod's owners, keeps to the ones
//! labelled `stalewatch.io/redeploy=stale-digest`, patches them with a JSON-patch `test`
//! precondition and says what it did with Events. It never blocks the engine.

pub mod kube;

use std::collections::BTreeSet;
use std::sync::Arc;
use tokio::sync::mpsc;

use stalewatch_core::advisory::Severity;
use stalewatch_core::gate;
use stalewatch_core::report::Report;

pub use super::config::{Mode, RedeployConfig};
use super::snapshot::Snapshot;

/// The label a workload opts in with, and its value.
pub const LABEL: &str = "stalewatch.io/redeploy";
pub const LABEL_VALUE: &str = "stale-digest";

/// A container that runs an older build than the node holds, and the gate's verdict.
#[derive(Debug, Clone)]
pub struct Candidate {
    pub namespace: String,
    pub pod: String,
    pub container: String,
    /// The image reference the container was started from (`name:tag`).
    pub image: String,
    pub running_digest: String,
    pub newer_digest: String,
    pub verdict: Result<(), gate::Blocked>,
}

/// Results counted in `stalewatch_redeploys_total{result}`.
pub const RESULTS: [&str; 8] = [
    "redeployed",
    "dry_run",
    "blocked",
    "not_opted_in",
    "too_soon",
    "precondition_failed",
    "forbidden",
    "failed",
];

pub struct Redeployer {
    tx: mpsc::Sender<Candidate>,
    max_severity: Severity,
    /// (namespace, pod, container, newer digest) already offered.
    offered: BTreeSet<(String, String, String, String)>,
}

impl Redeployer {
    /// Starts the Kubernetes side on the current runtime.
    pub fn start(cfg: RedeployConfig, outcomes: prometheus::IntCounterVec) -> Redeployer {
        for r in RESULTS {
            outcomes.with_label_values(&[r]);
        }
        let (tx, rx) = mpsc::channel(256);
        let max_severity = cfg.max_severity;
        tracing::info!(mode = ?cfg.mode, "redeploying workloads labelled {LABEL}={LABEL_VALUE} onto validated newer builds");
        tokio::spawn(kube::run(cfg, rx, outcomes));
        Redeployer {
            tx,
            max_severity,
            offered: BTreeSet::new(),
        }
    }

    /// Offers each stale container whose newer build has a report, once.
    pub fn observe(&mut self, snap: &Snapshot, report_of: &dyn Fn(&str) -> Option<Arc<Report>>) {
        let mut now = BTreeSet::new();
        for c in &snap.containers {
            let (Some(stale), Some(running)) = (&c.stale_digest, &c.report) else {
                continue;
            };
            let Some(newer) = report_of(&stale.current_digest) else {
                continue; // not inventoried and matched yet: the gate cannot decide
            };
            let key = (
                c.namespace.clone(),
                c.pod.clone(),
                c.container.clone(),
                stale.current_digest.clone(),
            );
            now.insert(key.clone());
            if self.offered.contains(&key) {
                continue;
            }
            let candidate = Candidate {
                namespace: c.namespace.clone(),
                pod: c.pod.clone(),
                container: c.container.clone(),
                image: c.image.clone(),
                running_digest: stale.running_digest.clone(),
                newer_digest: stale.current_digest.clone(),
                verdict: gate::validate(&running.report, &newer, self.max_severity),
            };
            // A full queue offers it again on the next snapshot.
            if self.tx.try_send(candidate).is_ok() {
                self.offered.insert(key);
            }
        }
        self.offered.retain(|k| now.contains(k));
    }
}
