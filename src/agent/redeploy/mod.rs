//! The opt-in validated redeploy (`--redeploy dry-run|on`): a container runs an older build
//! of its tag while the node holds the newer one (a stale digest); once the newer build is
//! inventoried and matched, the gate (`stalewatch_core::gate`) decides whether it may replace
//! what runs. The engine side (here) judges the change list's candidates (each offered once
//! while it stays one) with `--redeploy-max-severity`; the
//! Kubernetes side (`kube`) finds the workload through the pod's owners, keeps to the ones
//! labelled `stalewatch.io/redeploy=stale-digest`, patches them with a JSON-patch `test`
//! precondition and says what it did with Events. It never blocks the engine.

pub mod kube;

use tokio::sync::mpsc;

use stalewatch_core::advisory::Severity;
use stalewatch_core::gate;

use super::changes::{ChangeList, Offer};
pub use super::config::{Mode, RedeployConfig};

/// The label a workload opts in with, and its value.
pub const LABEL: &str = "stalewatch.io/redeploy";
pub const LABEL_VALUE: &str = "stale-digest";

/// A container that runs an older build than the node holds (the change list's offer), and
/// the gate's verdict.
#[derive(Debug, Clone)]
pub struct Candidate {
    pub offer: Offer,
    pub verdict: Result<(), gate::Blocked>,
}

impl std::ops::Deref for Candidate {
    type Target = Offer;
    fn deref(&self) -> &Offer {
        &self.offer
    }
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
    /// Candidates the queue had no room for: sent first next time.
    unsent: Vec<Candidate>,
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
            unsent: Vec::new(),
        }
    }

    /// Judges each candidate of the change list (offered once while it stays one) and hands
    /// it to the Kubernetes side.
    pub fn observe(&mut self, list: &ChangeList) {
        let judged = list.redeploy.iter().map(|o| Candidate {
            offer: o.clone(),
            verdict: gate::validate(&o.running, &o.newer, self.max_severity),
        });
        let todo: Vec<Candidate> = std::mem::take(&mut self.unsent)
            .into_iter()
            .chain(judged)
            .collect();
        for c in todo {
            // A full queue: kept, and sent first with the next change list.
            if let Err(mpsc::error::TrySendError::Full(c)) = self.tx.try_send(c) {
                self.unsent.push(c);
            }
        }
    }
}
