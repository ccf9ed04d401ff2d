//! The owner of Events to Kubernetes: what each pod was told (`announced`, persisted in the
//! state directory so a restart does not repeat itself) and the publisher that turns notices
//! into Events (`kube`: bounded queue, rate limit). Never waits for the API server.

pub mod announced;
pub mod kube;

use std::collections::BTreeSet;

use super::config::EventsConfig;
use super::metrics::Metrics;
use super::snapshot::Snapshot;
use announced::Announced;

const ANNOUNCED_FILE: &str = "events-announced.json";

pub struct Announcer {
    queue: kube::EventQueue,
    announced: Announced,
    /// Pods announced by an earlier run that this run has not seen yet.
    restored: BTreeSet<String>,
    file: crate::agent::state_file::StateFile<Announced>,
    stale_after_days: i64,
    /// `--kube-events-min-severity`.
    min: crate::agent::snapshot::MinSeverity,
}

impl Announcer {
    /// Restores what was announced and starts the publisher (on the current runtime).
    pub fn start(
        cfg: EventsConfig,
        state_dir: &std::path::Path,
        stale_after_days: i64,
        metrics: &Metrics,
    ) -> Announcer {
        // Lost, what runs is announced again, within the per-minute limit.
        let file = crate::agent::state_file::StateFile::new(
            state_dir,
            ANNOUNCED_FILE,
            "events_announced",
            1,
            metrics.state_counters(),
        );
        let (announced, _): (Announced, _) = file.load();
        let restored: BTreeSet<String> = announced.pods.keys().cloned().collect();
        tracing::info!(
            node = %cfg.node_name,
            announced_pods = restored.len(),
            "publishing Kubernetes Events on this node's pods"
        );
        let min = cfg.min_severity;
        Announcer {
            queue: kube::start_publisher(cfg, metrics.kube_events.clone()),
            announced,
            restored,
            min,
            file,
            stale_after_days,
        }
    }

    /// Offers the Events this snapshot calls for.
    pub fn announce(&mut self, snap: &Snapshot, metrics: &Metrics) {
        let obs = self
            .announced
            .observe(snap, self.min, self.stale_after_days, &mut self.restored);
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
            self.file.save(&self.announced);
        }
    }
}
