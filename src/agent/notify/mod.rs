//! The owner of CloudEvents to build pipelines (`--notify-url`): which transitions a snapshot
//! shows that were not told before (`notified-v1.json` remembers them, so a restart does not
//! repeat itself), written to each receiver's durable outbox, delivered by a task per
//! receiver (`delivery`). The engine only writes files and wakes tasks: it never waits for a
//! receiver.

pub mod delivery;
pub mod events;
pub mod outbox;

use crate::agent::state_file::StateFile;
use prometheus::{Gauge, IntCounterVec};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

use stalewatch_core::report::Report;

pub use super::snapshot::MinSeverity;
use super::snapshot::Snapshot;
use outbox::Outbox;

const TOLD_FILE: &str = "notified-v1.json";
/// Event ids remembered as sent, at most (the oldest forgotten first).
const MAX_TOLD: usize = 10_000;

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

/// What was told: event ids sent (with when), and each image's findings told `vulnerable`.
#[derive(Default, Serialize, Deserialize)]
struct Told {
    sent: BTreeMap<String, i64>,
    vulnerable: BTreeMap<String, BTreeSet<String>>,
}

pub struct Notifier {
    receivers: Vec<(Arc<Outbox>, Arc<Notify>)>,
    file: StateFile<Told>,
    told: Told,
    min: MinSeverity,
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
        state: crate::agent::state_file::StateCounters,
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
        // A lost "told" state tells again what runs (each event keeps its id: a receiver that
        // de-duplicates by id sees nothing new), within the outboxes' bounds.
        let file = StateFile::new(state_dir, TOLD_FILE, "notified", 1, state);
        let (told, _) = file.load();
        tracing::info!(receivers = receivers.len(), "sending CloudEvents");
        Ok(Notifier {
            receivers: receivers.into_iter().map(|(o, w, _)| (o, w)).collect(),
            file,
            told,
            min: cfg.min_severity,
            metrics,
            sequence: 0,
        })
    }

    /// Writes the events this snapshot calls for (and were not sent before) to every outbox.
    /// `reports`: the running images' own reports (their lineage); `report_of`: any image's.
    pub fn observe(
        &mut self,
        snap: &Snapshot,
        reports: &BTreeMap<String, Arc<Report>>,
        report_of: &dyn Fn(&str) -> Option<Arc<Report>>,
    ) {
        let now = crate::clock::now();
        let mut out = events::base_updated(snap, reports, now);
        out.extend(events::stale_digest(snap, report_of, now));
        let notable = events::notable_ids(snap, self.min);
        for (digest, ids) in &notable {
            let told = self.told.vulnerable.entry(digest.clone()).or_default();
            let new: BTreeSet<String> = ids.difference(told).cloned().collect();
            if !new.is_empty() {
                out.push(events::vulnerable(snap, digest, &new, now));
                told.extend(new);
            }
        }
        // Images no longer running are forgotten: running again, they are told again.
        self.told.vulnerable.retain(|d, _| notable.contains_key(d));
        let fresh: Vec<events::Event> = out
            .into_iter()
            .filter(|e| !self.told.sent.contains_key(&e.id))
            .collect();
        for e in &fresh {
            self.enqueue(e);
            self.told.sent.insert(e.id.clone(), now);
        }
        if !fresh.is_empty() {
            self.forget_oldest();
            self.save();
            self.metrics.outbox_changed();
        }
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

    fn forget_oldest(&mut self) {
        while self.told.sent.len() > MAX_TOLD {
            let oldest = self
                .told
                .sent
                .iter()
                .min_by_key(|(id, t)| (**t, (*id).clone()))
                .map(|(id, _)| id.clone());
            match oldest {
                Some(id) => self.told.sent.remove(&id),
                None => break,
            };
        }
    }

    fn save(&self) {
        self.file.save(&self.told);
    }
}
