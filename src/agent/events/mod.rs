//! The owner of Events to Kubernetes: the change list's pods whose facts grew become notices
//! (`announced`), published by a task with a bounded queue and a rate limit (`kube`). What
//! each pod was told is the one told state (`agent/telling.rs`), so a restart does not repeat
//! itself. Never waits for the API server.

pub mod announced;
pub mod kube;

use super::changes::ChangeList;
use super::config::EventsConfig;
use super::metrics::Metrics;
use super::snapshot::MinSeverity;

pub struct Announcer {
    queue: kube::EventQueue,
    stale_after_days: i64,
    /// `--kube-events-min-severity`.
    min: MinSeverity,
    /// This node's name (its Events regard the Node of that name).
    node: String,
}

impl Announcer {
    /// Starts the publisher (on the current runtime).
    pub fn start(cfg: EventsConfig, stale_after_days: i64, metrics: &Metrics) -> Announcer {
        tracing::info!(node = %cfg.node_name, "publishing Kubernetes Events on this node's pods");
        let min = cfg.min_severity;
        let node = cfg.node_name.clone();
        Announcer {
            node,
            queue: kube::start_publisher(cfg, metrics.kube_events.clone()),
            stale_after_days,
            min,
        }
    }

    /// Offers the Events the change list calls for.
    pub fn announce(&mut self, list: &ChangeList, metrics: &Metrics) {
        for r in &list.recalled {
            metrics
                .kube_events
                .with_label_values(&[r.as_str(), "suppressed"])
                .inc();
        }
        for n in announced::notices(list, &self.node, self.min, self.stale_after_days) {
            self.queue.offer(n);
        }
    }
}
