//! The owner of Events to Kubernetes: what each pod was told (`announced`, persisted in the
//! state directory so a restart does not repeat itself) and the publisher that turns notices
//! into Events (`kube`: bounded queue, rate limit). Never waits for the API server.

pub mod announced;
pub mod kube;

use std::collections::BTreeSet;
use std::path::PathBuf;

use super::config::EventsConfig;
use super::metrics::Metrics;
use super::snapshot::Snapshot;
use crate::db::write_atomic;
use announced::Announced;

const ANNOUNCED_FILE: &str = "events-announced.json";

pub struct Announcer {
    queue: kube::EventQueue,
    announced: Announced,
    /// Pods announced by an earlier run that this run has not seen yet.
    restored: BTreeSet<String>,
    path: PathBuf,
    stale_after_days: i64,
}

impl Announcer {
    /// Restores what was announced and starts the publisher (on the current runtime).
    pub fn start(
        cfg: EventsConfig,
        state_dir: &std::path::Path,
        stale_after_days: i64,
        metrics: &Metrics,
    ) -> Announcer {
        let path = state_dir.join(ANNOUNCED_FILE);
        let announced: Announced = std::fs::read(&path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        let restored: BTreeSet<String> = announced.pods.keys().cloned().collect();
        tracing::info!(
            node = %cfg.node_name,
            announced_pods = restored.len(),
            "publishing Kubernetes Events on this node's pods"
        );
        Announcer {
            queue: kube::start_publisher(cfg, metrics.kube_events.clone()),
            announced,
            restored,
            path,
            stale_after_days,
        }
    }

    /// Offers the Events this snapshot calls for.
    pub fn announce(&mut self, snap: &Snapshot, metrics: &Metrics) {
        let obs = self
            .announced
            .observe(snap, self.stale_after_days, &mut self.restored);
        for r in obs.suppressed {
            metrics
                .kube_events
                .with_label_values(&[r.as_str(), "suppressed"])
                .inc();
        }
        for n in obs.notices {
            self.queue.offer(n);
        }
        if obs.changed {
            if let Err(e) = serde_json::to_vec(&self.announced)
                .map_err(anyhow::Error::from)
                .and_then(|b| write_atomic(&self.path, &b))
            {
                tracing::warn!("saving {}: {e:#}", self.path.display());
            }
        }
    }
}
