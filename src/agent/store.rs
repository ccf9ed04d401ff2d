//! The findings store: the one owner of every report — each image's, by its digest, and each
//! drifted container's, by its id, made from the packages that run — and the one place that
//! decides when a report is stale (`Stale`, and a new day in `refresh`). Other owners read
//! reports through it; none holds one it edits: matching makes a report from an inventory
//! and hands it over, lineage says what a report should say of its base and the store sets
//! it.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use stalewatch_core::catalog::Inventory;
use stalewatch_core::lineage::{Base, ImageFacts, Rebuild};
use stalewatch_core::report::{FindingInterner, Report};

use super::images::cache::ImageRecord;
use super::matching::Matching;
use super::metrics::Metrics;
use super::snapshot::Drift;

/// Why reports are no longer true (each made again at the next `refresh`).
#[derive(Debug, Clone, Copy)]
pub enum Stale<'a> {
    /// A new advisory index, KEV catalog or EPSS file: every report.
    NewIndex,
    /// A new `--vex-dir` set: every report.
    NewVex,
    /// The image's inventory was read again.
    ImageRead(&'a str),
    /// The images left the node.
    ImagesGone(&'a [String]),
}

/// The report of a drifted container's live inventory, and per finding whether its package
/// was `added` or `changed` at run time (the agent's annotation, not the core's).
#[derive(Clone)]
pub struct LiveReport {
    pub report: Arc<Report>,
    pub drift: Arc<[Option<&'static str>]>,
}

/// A drifted container as the runtime checks found it: what runs differs from its image.
pub struct Drifted<'a> {
    pub id: &'a str,
    pub inventory: &'a Arc<Inventory>,
    pub drift: &'a Drift,
}

/// What an image's report should say of its lineage (lineage's decision, set by the store).
#[derive(Debug, Clone, PartialEq)]
pub struct LineageUpdate {
    pub facts: Option<ImageFacts>,
    pub base: Option<Base>,
    /// Per finding, in order: whether its package came with the base.
    pub in_base: Vec<Option<bool>>,
    pub rebuild: Option<Rebuild>,
}

struct LiveEntry {
    /// The live inventory the report was made from: another one (the drift changed) makes
    /// the report stale.
    inventory: Arc<Inventory>,
    report: LiveReport,
}

impl LiveEntry {
    fn new(d: &Drifted, report: Report) -> LiveEntry {
        // Per finding of the report as triaged (VEX may have taken some out).
        let drift = report
            .findings
            .iter()
            .map(|f| d.drift.kind_of(&f.package))
            .collect();
        LiveEntry {
            inventory: d.inventory.clone(),
            report: LiveReport {
                report: Arc::new(report),
                drift,
            },
        }
    }
}

/// The node's own packages, as the node scan found them (`agent/node.rs`).
pub struct NodeInventory<'a> {
    pub name: &'a str,
    pub inventory: &'a Arc<Inventory>,
    pub unreadable: &'a [stalewatch_core::layer::diagnostics::Unreadable],
}

#[derive(Default)]
pub struct FindingsStore {
    images: BTreeMap<String, Arc<Report>>,
    live: BTreeMap<String, LiveEntry>,
    /// The node's report, with the inventory it was made from.
    node: Option<(Arc<Inventory>, Arc<Report>)>,
    /// The day (since the epoch) the reports were made: end of life moves with the date.
    day: i64,
    /// Equal findings of the reports, one allocation each (images of one base share most).
    interner: FindingInterner,
}

impl FindingsStore {
    pub fn new() -> FindingsStore {
        FindingsStore::default()
    }

    /// An image's report.
    pub fn image(&self, digest: &str) -> Option<&Arc<Report>> {
        self.images.get(digest)
    }

    /// The node's report (`--node-scan`).
    pub fn node(&self) -> Option<&Arc<Report>> {
        self.node.as_ref().map(|(_, r)| r)
    }

    /// A drifted container's report of what runs.
    pub fn live(&self, id: &str) -> Option<&LiveReport> {
        self.live.get(id).map(|e| &e.report)
    }

    /// Reports no longer true are dropped (made again by the next `refresh`).
    pub fn invalidate(&mut self, why: Stale) {
        match why {
            Stale::NewIndex | Stale::NewVex => {
                self.images.clear();
                self.live.clear();
                self.node = None;
            }
            Stale::ImageRead(d) => {
                self.images.remove(d);
            }
            Stale::ImagesGone(gone) => {
                for d in gone {
                    self.images.remove(d);
                }
            }
        }
    }

    /// Makes every missing report: each cached image without one, each drifted container
    /// whose live inventory has none (or changed); on a new day, all of them. Containers no
    /// longer drifted lose theirs.
    pub fn refresh(
        &mut self,
        matching: &Matching,
        images: &BTreeMap<String, ImageRecord>,
        drifted: &[Drifted],
        node: Option<NodeInventory>,
        now: i64,
        metrics: &Metrics,
    ) {
        // The node's report is stale when the node scan read another inventory (or none).
        if self
            .node
            .as_ref()
            .is_some_and(|(inv, _)| node.as_ref().is_none_or(|n| !Arc::ptr_eq(inv, n.inventory)))
        {
            self.node = None;
        }
        let current: BTreeMap<&str, &Arc<Inventory>> = drifted.iter().map(|d| (d.id, d.inventory)).collect();
        self.live.retain(|id, e| {
            current
                .get(id.as_str())
                .is_some_and(|i| Arc::ptr_eq(i, &e.inventory))
        });
        if now.div_euclid(86400) != self.day {
            self.day = now.div_euclid(86400);
            self.images.clear();
            self.live.clear();
            self.node = None;
        }
        let node_due = node.is_some() && self.node.is_none();
        let images_due = images.keys().any(|d| !self.images.contains_key(d));
        let live_due = drifted.iter().any(|d| !self.live.contains_key(d.id));
        if !images_due && !live_due && !node_due {
            return;
        }
        let Some(mut pass) = matching.pass() else {
            return;
        };
        let started = Instant::now();
        let mut n = 0;
        for (digest, rec) in images {
            if self.images.contains_key(digest) {
                continue;
            }
            match pass.image_report(digest, rec, now) {
                Ok(mut r) => {
                    self.interner.share(&mut r);
                    self.images.insert(digest.clone(), Arc::new(r));
                    n += 1;
                }
                Err(e) => tracing::error!("matching {digest}: {e}"),
            }
        }
        for d in drifted {
            if self.live.contains_key(d.id) {
                continue;
            }
            match pass.live_report(d.id, d.inventory, now) {
                Ok(mut report) => {
                    self.interner.share(&mut report);
                    self.live.insert(d.id.to_string(), LiveEntry::new(d, report));
                    n += 1;
                }
                Err(e) => tracing::error!("matching container {}: {e}", d.id),
            }
        }
        if let Some(nd) = node.filter(|_| node_due) {
            match pass.node_report(nd.name, nd.inventory, nd.unreadable.to_vec(), now) {
                Ok(mut r) => {
                    self.interner.share(&mut r);
                    self.node = Some((nd.inventory.clone(), Arc::new(r)));
                    n += 1;
                }
                Err(e) => tracing::error!("matching the node: {e}"),
            }
        }
        if n > 0 {
            self.interner.prune();
            metrics.rematch_duration.observe(started.elapsed().as_secs_f64());
        }
    }

    /// Sets an image's lineage where lineage decided it changed (most publishes change none).
    pub fn apply_lineage(&mut self, digest: &str, update: LineageUpdate, layers: &[String]) {
        let Some(current) = self.images.get_mut(digest) else {
            return;
        };
        if lineage_unchanged(current, &update) {
            return;
        }
        // A copy only when a published snapshot still holds the report.
        let next = Arc::make_mut(current);
        next.set_lineage(update.facts.as_ref(), update.base, layers);
        next.rebuild = update.rebuild;
        self.interner.share(next);
    }
}

/// Whether a report already says what the update would.
pub fn lineage_unchanged(current: &Report, d: &LineageUpdate) -> bool {
    let label = |key: &str| d.facts.as_ref().and_then(|f| f.label(key)).map(str::to_string);
    current.base == d.base
        && current.rebuild == d.rebuild
        && current.source == label(stalewatch_core::lineage::SOURCE)
        && current.revision == label(stalewatch_core::lineage::REVISION)
        && current
            .findings
            .iter()
            .map(|f| f.in_base)
            .eq(d.in_base.iter().copied())
}

/// A store holding the given reports of images and of drifted containers, as a matching pass
/// would have made them (the snapshot's table tests).
#[cfg(test)]
pub fn with_reports(images: Vec<(String, Report)>, drifted: &[Drifted], live: Vec<Report>) -> FindingsStore {
    let mut store = FindingsStore {
        images: images.into_iter().map(|(d, r)| (d, Arc::new(r))).collect(),
        live: BTreeMap::new(),
        node: None,
        day: 0,
        interner: FindingInterner::default(),
    };
    for (d, report) in drifted.iter().zip(live) {
        store.live.insert(d.id.to_string(), LiveEntry::new(d, report));
    }
    store
}
