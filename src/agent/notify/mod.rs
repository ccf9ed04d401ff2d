//! The owner of CloudEvents to build pipelines (`--notify-url`): the change list's transitions
//! (what was told is the one told state, `agent/telling.rs`, so a restart does not repeat
//! itself) written as events to each receiver's durable outbox, delivered by a task per
//! receiver (`delivery`). The engine only writes files and wakes tasks: it never waits for a
//! receiver.

pub mod delivery;
pub mod events;
pub mod outbox;

use prometheus::{Gauge, IntCounterVec};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

use super::changes::ChangeList;
pub use super::snapshot::MinSeverity;
use super::snapshot::Snapshot;
use outbox::Outbox;

/// `--notify-*` settings.
#[derive(Debug, Clone)]
pub struct NotifyConfig {
    pub urls: Vec<String>,
    /// The HMAC key (`--notify-secret-file`), never logged.
    pub secret: Option<Arc<[u8]>>,
    pub min_severity: MinSeverity,
    pub timeout: Duration,
    pub outbox_max: usize,
}

/// The notification series, shared with the delivery tasks.
pub struct NotifyMetrics {
    total: IntCounterVec,
    outbox_events: Gauge,
    outboxes: Vec<Arc<Outbox>>,
}

impl NotifyMetrics {
    pub fn count(&self, kind: &str, result: &str) {
        self.total.with_label_values(&[kind, result]).inc();
    }

    /// Sets the outbox gauge from what the outboxes hold.
    pub fn outbox_changed(&self) {
        let n: usize = self.outboxes.iter().map(|o| o.pending().len()).sum();
        self.outbox_events.set(n as f64);
    }
}

pub struct Notifier {
    receivers: Vec<(Arc<Outbox>, Arc<Notify>)>,
    metrics: Arc<NotifyMetrics>,
    sequence: u128,
}

/// Results counted per type, created at start so rates exist before the first event.
pub const RESULTS: [&str; 5] = ["delivered", "retried", "refused", "dropped", "failed"];

impl Notifier {
    /// Restores what was told and starts a delivery task per receiver (on the current runtime).
    pub fn start(
        cfg: NotifyConfig,
        state_dir: &std::path::Path,
        total: IntCounterVec,
        gauge: Gauge,
    ) -> anyhow::Result<Notifier> {
        let client = reqwest::Client::builder()
            .timeout(cfg.timeout)
            .connect_timeout(cfg.timeout.min(Duration::from_secs(5)))
            .build()?;
        let mut receivers = Vec::new();
        for url in &cfg.urls {
            let key = events::event_id("receiver", &[url]);
            let outbox = Arc::new(Outbox::new(state_dir.join("outbox").join(key), cfg.outbox_max));
            receivers.push((outbox, Arc::new(Notify::new()), url.clone()));
        }
        let metrics = Arc::new(NotifyMetrics {
            total,
            outbox_events: gauge,
            outboxes: receivers.iter().map(|(o, _, _)| o.clone()).collect(),
        });
        for kind in events::TYPES {
            for result in RESULTS {
                metrics.total.with_label_values(&[kind, result]);
            }
        }
        metrics.outbox_changed();
        for (outbox, wake, url) in &receivers {
            let r = delivery::Receiver {
                url: url.clone(),
                outbox: outbox.clone(),
                wake: wake.clone(),
            };
            tokio::spawn(delivery::run(
                r,
                client.clone(),
                cfg.secret.clone(),
                metrics.clone(),
            ));
        }
        tracing::info!(receivers = receivers.len(), "sending CloudEvents");
        Ok(Notifier {
            receivers: receivers.into_iter().map(|(o, w, _)| (o, w)).collect(),
            metrics,
            sequence: 0,
        })
    }

    /// Writes the events the change list calls for to every outbox (each transition's id is
    /// stable: a receiver that de-duplicates by id sees a transition once, however often it
    /// is told). Returns how many were written.
    pub fn observe(&mut self, snap: &Snapshot, list: &ChangeList, now: i64) -> usize {
        let mut out = events::base_updated(snap, &list.base_updated, now);
        out.extend(events::stale_digest(snap, &list.stale_digest, now));
        for (digest, new) in &list.vulnerable {
            out.push(events::vulnerable(snap, digest, new, now));
        }
        if !list.node_vulnerable.is_empty() {
            out.push(events::node_vulnerable(snap, &list.node_vulnerable, now));
        }
        for e in &out {
            self.enqueue(e);
        }
        if !out.is_empty() {
            self.metrics.outbox_changed();
        }
        out.len()
    }

    fn enqueue(&mut self, e: &events::Event) {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        self.sequence = nanos.max(self.sequence + 1);
        for (outbox, wake) in &self.receivers {
            match outbox.put(e, self.sequence) {
                Ok(dropped) => {
                    for kind in dropped {
                        self.metrics.count(&kind, "dropped");
                    }
                    wake.notify_one();
                }
                Err(err) => {
                    tracing::warn!(event = %e.id, "writing the notification outbox: {err:#}");
                    self.metrics.count(e.kind, "failed");
                }
            }
        }
    }
}
