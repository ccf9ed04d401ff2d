//! The engine: the one place that holds the owners and runs a reconcile. It runs on a
//! dedicated thread of its own — matching, snapshot building, cache serialisation and fsyncs
//! happen here, never on the tokio workers that answer HTTP — and reads one bounded queue of
//! messages (`messages::Msg`). Async calls (containerd, reads on the blocking pool) are
//! driven from this thread with the runtime's handle.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

use super::events::Announcer;
use super::images::{Holder, ImageStore};
use super::inventory::ContainerInventory;
use super::lineage::Lineage;
use super::matching::Matching;
use super::messages::Msg;
use super::metrics::Metrics;
use super::node::NodeScan;
use super::notify::Notifier;
use super::publishing::{Inputs, Publisher};
use super::redeploy::Redeployer;
use super::runtime_checks::RuntimeChecks;
use super::signals::Signal;
use super::snapshot::Snapshot;
use super::store::{FindingsStore, NodeInventory, Stale};
use super::telling::Telling;
use crate::containerd::Containerd;

pub struct Engine {
    pub inventory: ContainerInventory,
    pub images: ImageStore,
    pub matching: Matching,
    /// Every report, and when each is stale.
    pub store: FindingsStore,
    pub lineage: Lineage,
    pub checks: RuntimeChecks,
    pub publisher: Publisher,
    pub announcer: Option<Announcer>,
    pub notifier: Option<Notifier>,
    pub redeployer: Option<Redeployer>,
    /// What every notifier told (one state), and the change list of each snapshot.
    pub telling: Telling,
    /// The node's own packages (`--node-scan`).
    pub node: Option<NodeScan>,
    pub metrics: Arc<Metrics>,
    client: Option<Containerd>,
    /// Whether one reconcile finished (readiness needs it).
    inventoried_once: bool,
}

impl Engine {
    pub fn new(
        inventory: ContainerInventory,
        images: ImageStore,
        matching: Matching,
        lineage: Lineage,
        checks: RuntimeChecks,
        publisher: Publisher,
        telling: Telling,
    ) -> Engine {
        let metrics = publisher.shared.metrics.clone();
        Engine {
            inventory,
            images,
            matching,
            store: FindingsStore::new(),
            lineage,
            checks,
            publisher,
            announcer: None,
            notifier: None,
            redeployer: None,
            telling,
            node: None,
            metrics,
            client: None,
            inventoried_once: false,
        }
    }

    /// Runs until `Stop` (or until every sender is gone), then saves the cache.
    pub fn run(mut self, mut rx: mpsc::Receiver<Msg>, rt: tokio::runtime::Handle) {
        while let Some(first) = rx.blocking_recv() {
            self.publisher.shared.heartbeat.beat();
            wedge_for_tests();
            let mut look = false;
            let mut refreshed = false;
            let mut stop = false;
            // Messages come in bursts (create, start, …): settle briefly, then act once.
            let mut pending = vec![first];
            std::thread::sleep(Duration::from_millis(100));
            while let Ok(m) = rx.try_recv() {
                pending.push(m);
            }
            for m in pending {
                match m {
                    Msg::Client(c) => {
                        self.client = c;
                        look = true;
                    }
                    Msg::Changed | Msg::Tick => look = true,
                    Msg::Refreshed(results) => {
                        if self.matching.apply_refresh(results, &self.metrics) {
                            self.store.invalidate(Stale::NewIndex);
                        }
                        refreshed = true;
                    }
                    Msg::Vex(set) => {
                        if self.matching.apply_vex(set, &self.metrics) {
                            self.store.invalidate(Stale::NewVex);
                        }
                        refreshed = true;
                    }
                    Msg::Stop => stop = true,
                }
            }
            if stop {
                break;
            }
            if look {
                rt.block_on(self.reconcile());
            } else if refreshed {
                self.publish();
            }
        }
        tracing::info!("shutting down");
        let running = self.inventory.wanted_images();
        self.images.save(&running, &self.metrics);
    }

    /// Re-matches what needs it, builds the snapshot once, announces it and swaps it in.
    fn publish(&mut self) {
        let now = crate::clock::now();
        let drifted = self.checks.drifted();
        let node_name = self.publisher.known().node.to_string();
        let node = self.node.as_ref().and_then(|n| {
            Some(NodeInventory {
                name: &node_name,
                inventory: n.inventory.as_ref()?,
                unreadable: &n.unreadable,
            })
        });
        self.store.refresh(
            &self.matching,
            &self.images.cache.images,
            &drifted,
            node,
            now,
            &self.metrics,
        );
        let running = self.inventory.wanted_images();
        for (digest, update) in self.lineage.decide(&running, &self.images, &self.store) {
            let layers = self
                .images
                .record(&digest)
                .map(|r| r.layers.as_slice())
                .unwrap_or_default();
            self.store.apply_lineage(&digest, update, layers);
        }
        self.checks
            .mark_in_use(&self.inventory.running, &self.store, &self.images.cache.images);
        self.publisher
            .remember_fixes(&self.inventory.running, &self.store, &self.checks, now);
        let db_state = self.matching.db_state();
        let awaited = self.matching.awaited_ecosystems(&db_state);
        let node_object = self
            .node
            .as_ref()
            .and_then(|n| Some(n.object.as_ref()?.borrow().clone()));
        let inputs = Inputs {
            known: self.publisher.known(),
            running: &self.inventory.running,
            records: &self.images.cache.images,
            failures: self.images.failures(),
            store: &self.store,
            checks: &self.checks,
            db_state: &db_state,
            loaded: &self.matching.loaded(&awaited),
            awaited: &awaited,
            fetched: &self.matching.fetched_ecosystems(),
            advisory_db: super::matching::db_view(&db_state),
            triage: self.matching.triage_view(),
            declared_bases: self.lineage.declared_present(),
            node: self.node.as_ref().map(|n| n.facts(node_object.as_ref())),
        };
        let snap = Snapshot::build(&inputs, now);
        {
            // One change list, computed once, read by every notifier; what concerns pods and
            // images waits for containerd's first list, the node's does not.
            let (listed, settled) = (self.inventory.listed_once, self.inventoried_once);
            let has_db = self.matching.has_db();
            let list = self
                .telling
                .changes(&snap, has_db, listed, settled, now, &self.metrics);
            if let Some(a) = &mut self.announcer {
                a.announce(&list, &self.metrics);
            }
            if let Some(n) = &mut self.notifier {
                n.observe(&snap, &list, now);
            }
            if let Some(r) = &mut self.redeployer {
                r.observe(&list);
            }
        }
        let ready = self.matching.has_db() && self.inventoried_once;
        self.publisher.publish(Arc::new(snap), ready);
    }

    /// Lists what runs, inventories new images, runs the runtime checks due, publishes.
    async fn reconcile(&mut self) {
        // The node's own packages need no containerd: checked first, whatever it answers.
        if let Some(n) = &mut self.node {
            n.check(&self.metrics).await;
        }
        let Some(client) = self.client.clone() else {
            // containerd is down: keep serving the last known state.
            self.inventoried_once = true;
            self.publish();
            return;
        };
        if let Err(e) = self.inventory.list(&client).await {
            self.metrics.emit(Signal::ContainerdList {
                list: e.list,
                reason: e.error.reason(),
                error: &e,
            });
            self.inventoried_once = true;
            self.publish();
            return;
        }
        let listed = client.list_images().await;
        if let Err(e) = &listed {
            self.metrics.emit(Signal::ContainerdList {
                list: "images",
                reason: e.reason(),
                error: e,
            });
        }
        if let Ok(listed) = &listed {
            let cached: Vec<String> = self.images.cache.images.keys().cloned().collect();
            let images = &self.images;
            let cached_chain = |d: &str| images.record(d).and_then(|r| r.chain_id.clone());
            self.inventory
                .resolve(&client, listed, &cached, &cached_chain)
                .await;
        }
        let on_node = listed.map(|l| l.into_iter().map(|(_, d)| d).collect::<Vec<_>>());
        self.lineage.set_node(self.inventory.node_images());
        // Running images, the newer builds of their bases (what a rebuild would fix) and of
        // their tags (what a redeploy would run).
        let mut wanted = self.inventory.wanted_images();
        wanted.extend(self.lineage.newer_bases(&wanted));
        let newer = self.inventory.running.iter().filter_map(|r| r.stale.as_ref());
        wanted.extend(newer.map(|s| s.current_digest.clone()));
        // Forget images no longer on the node (running ones are on it by definition).
        if let Ok(on_node) = on_node {
            let on_node: BTreeSet<String> = on_node.into_iter().chain(wanted.iter().cloned()).collect();
            let gone = self.images.forget_absent(&on_node, &wanted, &self.metrics);
            self.store.invalidate(Stale::ImagesGone(&gone));
        }
        self.images.save_if_unsaved(&wanted, &self.metrics);
        let todo = self.images.due_for_reading(&wanted, &self.metrics);
        if !todo.is_empty() {
            // Publish `pending` first: new containers appear at once, findings follow.
            self.publish();
            let shared = self.publisher.shared.clone();
            let beat = move || shared.heartbeat.beat();
            let read = self
                .images
                .read_images(&client, todo, &self.holders(), &self.metrics, &beat)
                .await;
            for d in &read {
                self.store.invalidate(Stale::ImageRead(d));
            }
            // Findings first: the runtime checks of new containers come after.
            self.publish();
        }
        let metrics = self.metrics.clone();
        self.checks
            .check(&self.inventory.running, &self.images.cache, &metrics)
            .await;
        self.inventoried_once = true;
        // The wall clock, never STALEWATCH_NOW: alerts compare it with Prometheus' time().
        let wall = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        self.metrics.last_reconcile.set(wall);
        self.publish();
    }

    /// A running container of each wanted image, for the unpacked fallbacks.
    fn holders(&self) -> BTreeMap<String, Holder> {
        let mut out = BTreeMap::new();
        for r in &self.inventory.running {
            if let Some(d) = &r.image_digest {
                let holder = Holder {
                    pid: (!r.sandboxed).then_some(r.pid),
                    snapshot: r.snapshot.clone(),
                };
                // A container whose /proc root can be read is the better holder.
                match out.get(d) {
                    Some(Holder { pid: Some(_), .. }) => {}
                    _ => {
                        out.insert(d.clone(), holder);
                    }
                }
            }
        }
        out
    }
}

/// A fault hook for the liveness tests, in debug builds only (never in the release image):
/// while the file `STALEWATCH_TEST_WEDGE_FILE` names exists, the engine stops as a wedged one
/// would — no beat, no reconcile.
fn wedge_for_tests() {
    #[cfg(debug_assertions)]
    if let Some(f) = std::env::var_os("STALEWATCH_TEST_WEDGE_FILE") {
        while std::path::Path::new(&f).exists() {
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}
