//! `stalewatch agent`: the node agent. One loop owns the state; tasks around it keep the
//! containerd connection (with its event stream) and refresh advisories, and tell the loop
//! what changed. Data flows one way: runtime inventory → image inventory (cached) → matcher
//! (current index) → snapshot → exporters.

pub mod drift;
pub mod events;
pub mod http;
pub mod images;
pub mod in_use;
pub mod metrics;
pub mod runtime;
pub mod snapshot;

use anyhow::Context;
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch, Notify};
use tokio_stream::StreamExt;

use stalewatch_core::advisory::{IndexSet, Severity};
use stalewatch_core::layer::Limits;
use stalewatch_core::matcher;
use stalewatch_core::report::Report;

use crate::clock;
use crate::containerd::Containerd;
use crate::db::update::{self, Change, EcosystemResult, Source};
use crate::db::{write_atomic, Store};
use images::{ImageCache, ImageRecord};
use metrics::Metrics;
use runtime::RunningContainer;
use snapshot::{ImageView, ScanStatus, Snapshot};

/// Validated agent configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub containerd_address: PathBuf,
    pub containerd_namespace: String,
    pub db_dir: PathBuf,
    pub state_dir: PathBuf,
    pub advisory_source: Source,
    pub advisory_refresh: Duration,
    pub ecosystems: Vec<String>,
    pub listen: SocketAddr,
    /// Where `/v1/findings` is served (`None`: nowhere).
    pub findings_listen: Option<SocketAddr>,
    /// Fix age beyond which a container is a stale runtime.
    pub stale_after: Duration,
    /// Kubernetes Events (`None`: off).
    pub events: Option<crate::kube::EventsConfig>,
    pub node_name: String,
    pub proc_root: PathBuf,
    pub scan_concurrency: usize,
    pub scan_timeout: Duration,
    pub reconcile_interval: Duration,
    pub advisory_ca_file: Option<PathBuf>,
    /// `Some(limit)` when the per-finding info metric is on.
    pub vulnerability_info: Option<usize>,
    pub state_max_bytes: u64,
    /// Where to read images whose blobs are gone, in order.
    pub unpacked_fallback: Vec<Fallback>,
    /// How often each running container's live package databases are compared with its
    /// image (`None`: drift is off).
    pub drift_interval: Option<Duration>,
}

/// Sources of unpacked image files when blobs are missing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fallback {
    /// The container snapshot's overlay lower directories (needs the host's containerd root).
    Snapshot,
    /// `<proc-root>/<pid>/root` of a running container.
    Proc,
}

/// What the HTTP side reads.
pub struct Shared {
    pub metrics: Metrics,
    snapshot: RwLock<Arc<Snapshot>>,
    pub ready: AtomicBool,
}

impl Shared {
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn set_snapshot(&self, snap: Snapshot) {
        self.metrics.publish(&snap);
        *self.snapshot.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(snap);
    }
}

/// The loop's state.
struct Engine {
    cfg: Config,
    shared: Arc<Shared>,
    cache: ImageCache,
    /// Images whose inventory came from the persisted cache and were counted as hits.
    counted_hits: BTreeSet<String>,
    db: Option<Arc<IndexSet>>,
    /// The report of each image against the current index (shared by its containers).
    findings: BTreeMap<String, Arc<Report>>,
    /// The day (since the epoch) the reports were built: end of life moves with the date.
    report_day: i64,
    /// Per running container id: its last drift check.
    live: BTreeMap<String, LiveState>,
    /// Chain IDs of the image digests on the node (`None`: not computable).
    chains: BTreeMap<String, Option<String>>,
    /// Images whose scan failed: why, and when to try again.
    failures: BTreeMap<String, ScanFailure>,
    running: Vec<RunningContainer>,
    first_seen: BTreeMap<String, i64>,
    inventoried_once: bool,
    /// Whether containerd has listed what runs at least once (before that, an empty list
    /// means "unknown", not "nothing runs").
    listed_once: bool,
    /// Kubernetes Events: the queue, what was announced, and the announced pods restored from
    /// an earlier run that this run has not seen yet.
    events: Option<(crate::kube::EventQueue, events::Announced, BTreeSet<String>)>,
}

const FIRST_SEEN_FILE: &str = "fixes-first-seen.json";
const ANNOUNCED_FILE: &str = "events-announced.json";

impl Engine {
    fn load_db(&mut self) {
        let store = Store::new(&self.cfg.db_dir);
        let present: Vec<String> = self
            .cfg
            .ecosystems
            .iter()
            .filter(|e| store.has_index(e))
            .cloned()
            .collect();
        if present.is_empty() {
            return;
        }
        match store.load(&present) {
            Ok(set) => {
                self.db = Some(Arc::new(set));
                self.findings.clear();
                self.live.values_mut().for_each(|l| l.report = None);
            }
            Err(e) => tracing::error!("advisory index unusable, keeping the previous one: {e:#}"),
        }
    }

    /// The ecosystems whose index is coming: configured, and not missing from the source.
    fn awaited_ecosystems(&self, state: &crate::db::State) -> BTreeSet<String> {
        self.cfg
            .ecosystems
            .iter()
            .filter(|e| !state.ecosystems.get(*e).is_some_and(|s| s.missing))
            .cloned()
            .collect()
    }

    fn db_view(state: &crate::db::State) -> snapshot::DbView {
        let last = state
            .ecosystems
            .values()
            .filter_map(|e| e.last_success.clone())
            .max();
        let updated_unix = last
            .as_deref()
            .and_then(|t| humantime::parse_rfc3339_weak(t.trim_end_matches('Z')).ok())
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map(|d| d.as_secs() as i64);
        snapshot::DbView {
            updated_at: last,
            records: state
                .ecosystems
                .iter()
                .filter(|(_, e)| !e.missing)
                .map(|(k, e)| (k.clone(), e.records))
                .collect(),
            updated_unix,
        }
    }

    /// Matches every cached image that has no report for the current index (and day) yet.
    fn rematch(&mut self) {
        let Some(db) = self.db.clone() else { return };
        let now = clock::now_unix().unwrap_or(0);
        if now.div_euclid(86400) != self.report_day {
            self.report_day = now.div_euclid(86400);
            self.findings.clear();
            self.live.values_mut().for_each(|l| l.report = None);
        }
        let started = Instant::now();
        let mut n = 0;
        // One matcher for the pass: images sharing a base judge each package once.
        let mut matcher = matcher::Matcher::new(&db);
        for (digest, rec) in &self.cache.images {
            if self.findings.contains_key(digest) {
                continue;
            }
            match matcher.match_inventory(&rec.inventory) {
                Ok(f) => {
                    let target = format!("containerd:{digest}");
                    let report = Report::new(
                        &target,
                        rec.inventory.without_file_owners(),
                        f,
                        rec.unreadable.clone(),
                        now,
                    );
                    self.findings.insert(digest.clone(), Arc::new(report));
                    n += 1;
                }
                Err(e) => tracing::error!("matching {digest}: {e}"),
            }
        }
        // Containers whose live packages differ from their image: matched on what runs.
        for (id, l) in self.live.iter_mut().filter(|(_, l)| l.report.is_none()) {
            let Some(inv) = &l.inventory else { continue };
            match matcher.match_inventory(inv) {
                Ok(mut f) => {
                    for x in &mut f {
                        x.drift = l.drift.kind_of(&x.package);
                    }
                    let target = format!("container:{id}");
                    l.report = Some(Arc::new(Report::new(
                        &target,
                        inv.without_file_owners(),
                        f,
                        Vec::new(),
                        now,
                    )));
                    n += 1;
                }
                Err(e) => tracing::error!("matching container {id}: {e}"),
            }
        }
        if n > 0 {
            self.shared
                .metrics
                .rematch_duration
                .observe(started.elapsed().as_secs_f64());
        }
    }

    /// Offers the Events this snapshot calls for; never waits for the API server.
    fn announce(&mut self, snap: &Snapshot) {
        if !self.listed_once {
            return;
        }
        let Some((queue, announced, restored)) = &mut self.events else {
            return;
        };
        let days = (self.cfg.stale_after.as_secs() / 86400) as i64;
        let obs = announced.observe(snap, days, restored);
        for r in obs.suppressed {
            self.shared
                .metrics
                .kube_events
                .with_label_values(&[r.as_str(), "suppressed"])
                .inc();
        }
        for n in obs.notices {
            queue.offer(n);
        }
        if obs.changed {
            let path = self.cfg.state_dir.join(ANNOUNCED_FILE);
            if let Err(e) = serde_json::to_vec(&*announced)
                .map_err(anyhow::Error::from)
                .and_then(|b| write_atomic(&path, &b))
            {
                tracing::warn!("saving {}: {e:#}", path.display());
            }
        }
    }

    fn build_snapshot(&mut self) -> Snapshot {
        let now = clock::now_unix().unwrap_or(0);
        // The advisory state file, read once per snapshot.
        let db_state = Store::new(&self.cfg.db_dir).state().unwrap_or_default();
        let awaited = self.awaited_ecosystems(&db_state);
        let mut first_seen_changed = false;
        let mut containers = Vec::new();
        let mut images: BTreeMap<(String, String), ImageView> = BTreeMap::new();
        let mut image_reports = BTreeMap::new();
        for rc in &self.running {
            let mut view = snapshot::container_view(rc);
            let Some(digest) = &rc.image_digest else {
                view.scan_status = ScanStatus::Failed;
                view.error = Some(format!("image {} is not in containerd's image store", rc.image));
                containers.push(view);
                continue;
            };
            if let Some(f) = self.failures.get(digest) {
                view.scan_status = ScanStatus::Failed;
                view.error = Some(f.message.clone());
                containers.push(view);
                continue;
            }
            let Some(rec) = self.cache.images.get(digest) else {
                containers.push(view);
                continue;
            };
            view.manifest_digest = Some(rec.manifest_digest.clone());
            view.config_digest = Some(rec.config_digest.clone());
            let inv = &rec.inventory;
            let index_missing = needed_index_missing(self.db.as_deref(), rec, &awaited);
            let live = self.live.get_mut(&rc.id);
            view.drift = live.as_ref().map(|l| l.drift.clone());
            // Where the live packages differ from the image, the findings are those of what runs.
            let report = match live.as_ref().filter(|l| l.inventory.is_some()) {
                Some(l) => l.report.clone(),
                None => self.findings.get(digest).cloned(),
            };
            view.scan_status = if inv.databases.is_empty() {
                ScanStatus::NoPackageDb
            } else if inv.os.as_ref().and_then(|o| o.ecosystem.as_ref()).is_none()
                && inv.packages.iter().all(|p| p.ecosystem.is_empty())
            {
                // Neither OS packages with an advisory feed nor language packages.
                ScanStatus::UnsupportedOs
            } else if report.is_none() || index_missing {
                ScanStatus::Pending
            } else {
                ScanStatus::Ok
            };
            let Some(report) = report else {
                containers.push(view);
                continue;
            };
            let mut report = snapshot::ContainerReport::new(report);
            if let Some(l) = live.filter(|l| l.mapped.is_some()) {
                // Marked once per (report, maps): publishing again costs nothing.
                if l.marks
                    .as_ref()
                    .is_none_or(|m| !Arc::ptr_eq(&m.0, &report.report))
                {
                    let inv = l.inventory.as_ref().unwrap_or(inv);
                    let mapped = l.mapped.as_ref().expect("filtered");
                    let (marks, counts) = snapshot::in_use_marks(&report, inv, mapped);
                    l.marks = Some((report.report.clone(), marks, counts));
                }
                let (_, marks, counts) = l.marks.as_ref().expect("set above");
                report.in_use = Some(marks.clone());
                view.vulnerabilities_in_use = Some(counts.clone());
                view.deleted_files_in_use = l.mapped.iter().flat_map(|m| m.deleted.iter().cloned()).collect();
            }
            for f in report.findings.iter().filter(|f| f.fixable) {
                let key = snapshot::fix_key(f);
                if let std::collections::btree_map::Entry::Vacant(e) = self.first_seen.entry(key) {
                    e.insert(now);
                    first_seen_changed = true;
                }
            }
            view.vulnerabilities = snapshot::count_vulnerabilities(&report.findings);
            view.oldest_fix_age = snapshot::oldest_fix_age(&report.findings, &self.first_seen, now);
            view.notable = snapshot::notable(
                &report.findings,
                &self.first_seen,
                now,
                self.cfg.stale_after.as_secs() as i64,
            );
            if let Some(r) = self.findings.get(digest) {
                image_reports.insert(digest.clone(), r.clone());
                image_reports.insert(rec.manifest_digest.clone(), r.clone());
            }
            if let Some(os) = &report.os {
                images.insert(
                    (rc.image.clone(), digest.clone()),
                    ImageView {
                        image: rc.image.clone(),
                        image_digest: digest.clone(),
                        os_id: os.id.clone(),
                        os_version: os.version_id.clone(),
                        os_eol: os.eol,
                        created: rec.created,
                    },
                );
            }
            view.report = Some(report);
            containers.push(view);
        }
        if first_seen_changed {
            let path = self.cfg.state_dir.join(FIRST_SEEN_FILE);
            if let Err(e) = serde_json::to_vec(&self.first_seen)
                .map_err(anyhow::Error::from)
                .and_then(|b| write_atomic(&path, &b))
            {
                tracing::warn!("saving {}: {e:#}", path.display());
            }
        }
        containers.sort_by(|a, b| {
            (&a.namespace, &a.pod, &a.container, &a.id).cmp(&(&b.namespace, &b.pod, &b.container, &b.id))
        });
        Snapshot {
            schema: "stalewatch/findings/v1",
            node: self.cfg.node_name.clone(),
            generated_at: clock::rfc3339(now),
            advisory_db: Self::db_view(&db_state),
            containers,
            images: images.into_values().collect(),
            image_reports,
        }
    }

    fn publish(&mut self) {
        self.rematch();
        let snap = self.build_snapshot();
        self.announce(&snap);
        self.shared.set_snapshot(snap);
        if self.db.is_some() && self.inventoried_once {
            self.shared.ready.store(true, Ordering::SeqCst);
        }
    }

    /// Lists what runs, inventories new images (bounded concurrency, per-image timeout).
    async fn reconcile(&mut self, client: Option<Containerd>) {
        let Some(client) = client else {
            // containerd is down: keep serving the last known state.
            self.inventoried_once = true;
            self.publish();
            return;
        };
        match runtime::list_running(&client, &self.cfg.proc_root).await {
            Ok(running) => {
                self.running = running;
                self.listed_once = true;
            }
            Err(e) => {
                tracing::warn!("listing containers: {e:#}");
                self.inventoried_once = true;
                self.publish();
                return;
            }
        }
        tracing::debug!("{} running containers", self.running.len());
        let on_node = client.list_image_targets().await;
        if let Ok(targets) = &on_node {
            self.resolve_running(&client, targets).await;
        }
        let wanted: BTreeSet<String> = self
            .running
            .iter()
            .filter_map(|r| r.image_digest.clone())
            .collect();
        // Forget images no longer on the node (running ones are on it by definition).
        if let Ok(on_node) = on_node {
            let on_node: BTreeSet<String> = on_node.into_iter().chain(wanted.iter().cloned()).collect();
            let evicted = self.cache.retain(&|d| on_node.contains(d));
            if evicted > 0 {
                self.findings.retain(|d, _| on_node.contains(d));
                let used: BTreeSet<String> = self
                    .cache
                    .images
                    .values()
                    .flat_map(|r| r.layers.iter().cloned())
                    .collect();
                images::LayerCache::new(&self.cfg.state_dir).retain(&used);
                if let Err(e) = self.save_cache() {
                    tracing::warn!("saving the image cache: {e:#}");
                }
            }
        }
        for d in &wanted {
            if self.cache.images.contains_key(d) && self.counted_hits.insert(d.clone()) {
                let layers = self.cache.images[d].layers.len() as u64;
                self.shared.metrics.layer_cache_hits.inc_by(layers);
            }
        }
        // Failures of images nothing runs any more are forgotten.
        self.failures.retain(|d, _| wanted.contains(d));
        let todo: Vec<String> = wanted
            .iter()
            .filter(|d| {
                !self.cache.images.contains_key(*d)
                    && self.failures.get(*d).is_none_or(|f| f.retry_at <= Instant::now())
            })
            .cloned()
            .collect();
        if !todo.is_empty() {
            // Publish `pending` first: new containers appear at once, findings follow.
            self.publish();
            self.scan_images(&client, todo).await;
            // Findings first: the runtime checks of new containers come after.
            self.publish();
        }
        self.check_runtime().await;
        self.inventoried_once = true;
        self.publish();
    }

    /// The runtime checks of every container due for them: what its processes map (packages
    /// in use) and its live package databases against its image's inventory (drift). Bounded:
    /// one container at a time, at low priority, each at most once per `--drift-interval`;
    /// databases whose identity did not change are not read again.
    async fn check_runtime(&mut self) {
        let ids: BTreeSet<&String> = self.running.iter().map(|r| &r.id).collect();
        self.live.retain(|id, _| ids.contains(id));
        let Some(interval) = self.cfg.drift_interval else {
            return;
        };
        let due: Vec<(String, u32, String)> = self
            .running
            .iter()
            .filter(|r| {
                self.live
                    .get(&r.id)
                    .is_none_or(|l| l.read_at.elapsed() >= interval)
            })
            .filter_map(|r| {
                let d = r.image_digest.as_ref()?;
                self.cache
                    .images
                    .contains_key(d)
                    .then(|| (r.id.clone(), r.pid, d.clone()))
            })
            .collect();
        if due.is_empty() {
            return;
        }
        let pass = Instant::now();
        let proc_root = self.cfg.proc_root.clone();
        let namespaces = Arc::new(
            tokio::task::spawn_blocking(move || in_use::pid_namespaces(&proc_root))
                .await
                .unwrap_or_default(),
        );
        for (id, pid, digest) in due {
            let (proc_root, ns) = (self.cfg.proc_root.clone(), namespaces.clone());
            let known = self.live.get(&id).and_then(|l| l.signature.clone());
            let joined = tokio::task::spawn_blocking(move || {
                lower_priority();
                let started = Instant::now();
                let mapped = in_use::container_maps(&proc_root, pid, &ns);
                let signature = drift::db_signature(&proc_root, pid);
                // Unchanged databases are not read again: only the maps are.
                let unchanged = signature.is_some() && signature == known;
                let live = if unchanged {
                    Ok(None)
                } else {
                    drift::read_live(&proc_root, pid, &Limits::default())
                };
                (unchanged, live, mapped, signature, started.elapsed())
            })
            .await;
            let Ok((unchanged, live, mapped, signature, took)) = joined else {
                continue;
            };
            self.shared
                .metrics
                .runtime_check_duration
                .observe(took.as_secs_f64());
            if unchanged {
                if let Some(l) = self.live.get_mut(&id) {
                    l.read_at = Instant::now();
                    l.set_mapped(mapped);
                }
                continue;
            }
            let live = match live {
                Ok(Some(inv)) => inv,
                Ok(None) => continue,
                Err(e) => {
                    tracing::debug!(container = %id, "drift: {e:#}");
                    self.shared
                        .metrics
                        .scan_errors
                        .with_label_values(&["drift_read"])
                        .inc();
                    // Retried at the next interval; the image's findings stand meanwhile.
                    self.live.remove(&id);
                    continue;
                }
            };
            let Some(rec) = self.cache.images.get(&digest) else {
                continue;
            };
            let d = drift::compare(&rec.inventory, &live);
            // The same differences against the same image inventory: the same findings.
            let unchanged = self.live.get(&id).is_some_and(|l| l.drift == d);
            if unchanged {
                if let Some(l) = self.live.get_mut(&id) {
                    l.read_at = Instant::now();
                    l.set_mapped(mapped);
                    l.signature = signature;
                }
                continue;
            }
            if !d.is_empty() {
                tracing::info!(container = %id, added = d.added.len(), removed = d.removed.len(), changed = d.changed.len(), "packages drifted from the image");
            }
            self.live.insert(
                id,
                LiveState {
                    read_at: Instant::now(),
                    inventory: (!d.is_empty())
                        .then(|| drift::with_image_language_packages(live, &rec.inventory)),
                    drift: d,
                    report: None,
                    mapped,
                    signature,
                    marks: None,
                },
            );
        }
        self.shared
            .metrics
            .runtime_refresh_duration
            .observe(pass.elapsed().as_secs_f64());
    }

    /// Learns the chain ID of every image on the node (once per digest: two small reads),
    /// then which image each running container really runs (`runtime::resolve_running`).
    async fn resolve_running(&mut self, client: &Containerd, targets: &[String]) {
        let on_node: BTreeSet<&String> = targets.iter().collect();
        self.chains.retain(|d, _| on_node.contains(d));
        for d in targets {
            if self.chains.contains_key(d) {
                continue;
            }
            let chain = match self.cache.images.get(d).and_then(|r| r.chain_id.clone()) {
                Some(c) => Some(c),
                None => {
                    let (c, h, d2) = (client.clone(), tokio::runtime::Handle::current(), d.clone());
                    match tokio::task::spawn_blocking(move || images::chain_of(&c, h, &d2)).await {
                        Ok(Ok(c)) => c,
                        Ok(Err(e)) => {
                            tracing::debug!(image = %d, "chain ID: {e:#}");
                            None
                        }
                        Err(_) => None,
                    }
                }
            };
            self.chains.insert(d.clone(), chain);
        }
        // Images the node still lists first, then inventories this agent kept.
        let mut known: Vec<String> = targets.to_vec();
        known.sort();
        known.dedup();
        known.extend(self.cache.images.keys().filter(|d| !on_node.contains(d)).cloned());
        let (chains, cache) = (&self.chains, &self.cache);
        let chain_of = |d: &str| -> Option<String> {
            chains
                .get(d)
                .cloned()
                .flatten()
                .or_else(|| cache.images.get(d).and_then(|r| r.chain_id.clone()))
        };
        runtime::resolve_running(&mut self.running, &known, &chain_of);
    }

    async fn scan_images(&mut self, client: &Containerd, todo: Vec<String>) {
        let sem = Arc::new(tokio::sync::Semaphore::new(self.cfg.scan_concurrency.max(1)));
        let mut set = tokio::task::JoinSet::new();
        for digest in todo {
            let (client, sem, timeout) = (client.clone(), sem.clone(), self.cfg.scan_timeout);
            let layers = images::LayerCache::new(&self.cfg.state_dir);
            // A running container of this image, for the unpacked fallbacks.
            let holder = self
                .running
                .iter()
                .find(|r| r.image_digest.as_deref() == Some(digest.as_str()))
                .cloned();
            let proc_root = self.cfg.proc_root.clone();
            let fallbacks = self.cfg.unpacked_fallback.clone();
            set.spawn(async move {
                let _permit = sem.acquire_owned().await;
                let started = Instant::now();
                let d = digest.clone();
                let c = client.clone();
                let handle = tokio::runtime::Handle::current();
                let job = async move {
                    let d2 = d.clone();
                    let read = tokio::task::spawn_blocking(move || {
                        lower_priority();
                        images::scan(&c, handle, &d2, &Limits::default(), &layers)
                    })
                    .await
                    .map_err(|e| anyhow::anyhow!("scan task: {e}"))?;
                    let err = match read {
                        Ok(r) => return Ok(r),
                        Err(e) if blob_missing(&e) => e,
                        Err(e) => return Err(e),
                    };
                    let Some(holder) = holder else { return Err(err) };
                    for fb in fallbacks {
                        let from = match fb {
                            Fallback::Snapshot => {
                                let Some((snapshotter, key)) = &holder.snapshot else {
                                    continue;
                                };
                                match client.snapshot_mounts(snapshotter, key).await {
                                    Ok(m) => {
                                        let dirs: Vec<_> = m
                                            .iter()
                                            .flat_map(|m| crate::scan::overlay::lower_dirs(&m.options))
                                            .collect();
                                        if dirs.is_empty() {
                                            continue;
                                        }
                                        images::Unpacked::Layers(dirs)
                                    }
                                    Err(e) => {
                                        tracing::debug!("snapshot fallback for {d}: {e:#}");
                                        continue;
                                    }
                                }
                            }
                            Fallback::Proc => images::Unpacked::LiveRoot(
                                proc_root.join(holder.pid.to_string()).join("root"),
                            ),
                        };
                        tracing::info!(image = %d, "blobs missing from the content store, reading {from:?}");
                        let d3 = d.clone();
                        let read = tokio::task::spawn_blocking(move || {
                            lower_priority();
                            images::scan_unpacked(&from, &d3, &Limits::default())
                        })
                        .await
                        .map_err(|e| anyhow::anyhow!("scan task: {e}"))?;
                        match read {
                            Ok(r) => return Ok(r),
                            Err(e) => tracing::warn!(image = %d, "unpacked fallback failed: {e:#}"),
                        }
                    }
                    Err(err)
                };
                let result = match tokio::time::timeout(timeout, job).await {
                    Ok(r) => r.map_err(|e| (reason_of(&e), format!("{e:#}"))),
                    Err(_) => Err(("timeout", format!("scan took longer than {timeout:?}"))),
                };
                (digest, result, started.elapsed())
            });
        }
        let mut changed = false;
        while let Some(joined) = set.join_next().await {
            let Ok((digest, result, took)) = joined else {
                continue;
            };
            match result {
                Ok((record, cost)) => {
                    let m = &self.shared.metrics;
                    m.scan_duration.observe(took.as_secs_f64());
                    m.layers_read.inc_by(cost.layers_read);
                    m.layer_bytes_decompressed.inc_by(cost.bytes_decompressed);
                    m.layer_cache_hits.inc_by(cost.layer_cache_hits);
                    tracing::info!(image = %digest, packages = record.inventory.packages.len(), "image inventoried in {took:?}");
                    self.counted_hits.insert(digest.clone());
                    self.findings.remove(&digest);
                    self.failures.remove(&digest);
                    let mut record = record;
                    if self.cfg.drift_interval.is_none() {
                        // No runtime checks: the owners of mapped files are never needed.
                        record.inventory.mapped_files = Arc::default();
                        record.inventory.with_file_lists.clear();
                    }
                    self.cache.insert(digest, record);
                    changed = true;
                }
                Err((reason, msg)) => {
                    tracing::warn!(image = %digest, reason, "image scan failed: {msg}");
                    self.shared.metrics.scan_errors.with_label_values(&[reason]).inc();
                    let attempts = self.failures.get(&digest).map_or(1, |f| f.attempts + 1);
                    self.failures.insert(
                        digest,
                        ScanFailure {
                            message: msg,
                            attempts,
                            retry_at: Instant::now() + retry_delay(attempts),
                        },
                    );
                }
            }
        }
        if changed {
            if let Err(e) = self.save_cache() {
                tracing::warn!("saving the image cache: {e:#}");
            }
        }
    }

    fn save_cache(&mut self) -> anyhow::Result<()> {
        let running: BTreeSet<String> = self
            .running
            .iter()
            .filter_map(|r| r.image_digest.clone())
            .collect();
        self.cache.save(self.cfg.state_max_bytes, &running)
    }

    fn apply_refresh(&mut self, results: Vec<EcosystemResult>) {
        let mut changed = self.db.is_none();
        for r in results {
            match r.result {
                Ok(Change::Updated(what)) => {
                    tracing::info!(ecosystem = %r.ecosystem, "advisories updated: {what}");
                    changed = true;
                }
                Ok(_) => {}
                Err(e) => self
                    .shared
                    .metrics
                    .advisory_update_errors
                    .with_label_values(&[e.reason])
                    .inc(),
            }
        }
        if changed {
            self.load_db();
        }
        self.publish();
    }
}

/// Whether a package of the image needs an awaited ecosystem whose index is not loaded (yet).
/// Ecosystems not configured, or missing from the advisory source, have no advisories to wait
/// for.
fn needed_index_missing(db: Option<&IndexSet>, rec: &ImageRecord, awaited: &BTreeSet<String>) -> bool {
    rec.inventory
        .packages
        .iter()
        .map(|p| p.ecosystem.split(':').next().unwrap_or_default())
        .filter(|e| awaited.contains(*e))
        .any(|e| db.is_none_or(|db| db.get(e).is_none()))
}

/// A container's last drift check.
struct LiveState {
    read_at: Instant,
    drift: drift::Drift,
    /// The live inventory, kept only while it differs from the image's.
    inventory: Option<stalewatch_core::catalog::Inventory>,
    /// Its report against the current index (`None`: to be matched).
    report: Option<Arc<Report>>,
    /// What its processes map (`None`: unknown).
    mapped: Option<in_use::Mapped>,
    /// Its package databases as last read (`drift::db_signature`).
    signature: Option<drift::DbSignature>,
    /// The in-use marks of `report`'s findings for `mapped`, and the in-use counts: kept
    /// until either changes.
    marks: Option<InUseMarks>,
}

/// (the report marked, a mark per finding, distinct vulnerabilities in use by severity).
type InUseMarks = (Arc<Report>, Arc<[Option<bool>]>, BTreeMap<Severity, u64>);

impl LiveState {
    fn set_mapped(&mut self, mapped: Option<in_use::Mapped>) {
        if self.mapped != mapped {
            self.mapped = mapped;
            self.marks = None;
        }
    }
}

/// A failed image scan, kept (and shown as `failed`) until a retry succeeds.
#[derive(Debug, Clone)]
struct ScanFailure {
    message: String,
    attempts: u32,
    retry_at: Instant,
}

/// Retries of a failed scan back off: 1, 2, 4 … minutes, at most an hour.
fn retry_delay(attempts: u32) -> Duration {
    (Duration::from_secs(60) * 2u32.saturating_pow(attempts.saturating_sub(1).min(6)))
        .min(Duration::from_secs(3600))
}

/// Scans yield to the node's workloads: this (blocking-pool) thread runs at nice 10.
/// Linux applies `setpriority` with a thread id to that thread only.
fn lower_priority() {
    let tid = rustix::thread::gettid();
    if let Err(e) = rustix::process::setpriority_process(Some(tid), 10) {
        tracing::debug!("cannot lower scan priority: {e}");
    }
}

/// Whether a scan failed because a blob is not in the content store (containerd's
/// `discard_unpacked_layers`, or a blob removed by hand).
fn blob_missing(e: &anyhow::Error) -> bool {
    let text = format!("{e:#}");
    text.contains("read blob") && text.contains("not found")
}

/// A bounded reason for `stalewatch_scan_errors_total`.
fn reason_of(e: &anyhow::Error) -> &'static str {
    for cause in e.chain() {
        if let Some(l) = cause.downcast_ref::<stalewatch_core::layer::LayerError>() {
            return l.reason();
        }
    }
    let text = format!("{e:#}");
    if text.contains("does not match its digest") {
        "digest_mismatch"
    } else if text.contains("read blob") {
        "content_read"
    } else if text.contains("no manifest for platform") {
        "no_platform"
    } else {
        "other"
    }
}

/// Keeps a connection to containerd, forwarding its events as wake-ups.
async fn connection_task(
    cfg: Config,
    shared: Arc<Shared>,
    client_tx: watch::Sender<Option<Containerd>>,
    wake: Arc<Notify>,
) {
    let mut backoff = Duration::from_millis(250);
    let mut was_up: Option<bool> = None;
    let mut connected_before = false;
    loop {
        let attempt = async {
            let c = Containerd::connect(&cfg.containerd_address, &cfg.containerd_namespace).await?;
            let version = c.version().await?;
            Ok::<_, anyhow::Error>((c, version))
        };
        match attempt.await {
            Ok((client, version)) => {
                if connected_before {
                    shared.metrics.containerd_reconnects.inc();
                }
                connected_before = true;
                if was_up != Some(true) {
                    tracing::info!(
                        "connected to containerd {version} at {}",
                        cfg.containerd_address.display()
                    );
                }
                was_up = Some(true);
                backoff = Duration::from_millis(250);
                shared.metrics.containerd_up.set(1.0);
                let _ = client_tx.send(Some(client.clone()));
                wake.notify_one();
                // containerd sends the stream's headers with its first event: subscribing only
                // after publishing the client keeps a quiet node from looking disconnected.
                match client.subscribe().await {
                    Ok(mut stream) => {
                        while let Some(ev) = stream.next().await {
                            match ev {
                                Ok(env) => {
                                    tracing::debug!(topic = %env.topic, "containerd event");
                                    wake.notify_one();
                                }
                                Err(e) => {
                                    tracing::warn!("containerd event stream broke: {}", e.message());
                                    break;
                                }
                            }
                        }
                    }
                    Err(e) => tracing::warn!("{e:#}"),
                }
                shared.metrics.containerd_up.set(0.0);
                let _ = client_tx.send(None);
                wake.notify_one();
                tokio::time::sleep(backoff).await;
            }
            Err(e) => {
                shared.metrics.containerd_up.set(0.0);
                if was_up != Some(false) {
                    tracing::warn!("containerd unavailable, retrying with backoff: {e:#}");
                }
                was_up = Some(false);
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(30));
            }
        }
    }
}

/// Runs one refresh in a child process (`stalewatch db update --format json`): building an
/// index from a large feed takes memory the agent should not keep, and a hostile feed that
/// broke the builder would take down only the child.
async fn refresh_once(cfg: &Config) -> anyhow::Result<Vec<EcosystemResult>> {
    let exe = std::env::current_exe().context("locate the stalewatch binary")?;
    let mut cmd = tokio::process::Command::new(exe);
    cmd.args([
        "db",
        "update",
        "--format",
        "json",
        "--advisory-source",
        &cfg.advisory_source.to_arg(),
    ])
    .arg("--db-dir")
    .arg(&cfg.db_dir)
    .stdin(std::process::Stdio::null())
    .kill_on_drop(true);
    for e in &cfg.ecosystems {
        cmd.args(["--ecosystem", e]);
    }
    if let Some(ca) = &cfg.advisory_ca_file {
        cmd.arg("--advisory-ca-file").arg(ca);
    }
    let out = cmd.output().await.context("run the refresh")?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let results: Vec<EcosystemResult> = stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<update::ResultLine>(l).ok())
        .map(update::ResultLine::into_result)
        .collect();
    if results.is_empty() {
        anyhow::bail!(
            "refresh produced no result ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(results)
}

/// Refreshes advisories now, then every interval with ±10 % jitter; backs off on failure.
async fn refresh_task(cfg: Config, tx: mpsc::Sender<Vec<EcosystemResult>>) {
    let mut failures = 0u32;
    loop {
        let results = match refresh_once(&cfg).await {
            Ok(r) => r,
            Err(e) => {
                tracing::error!("advisory refresh: {e:#}");
                vec![EcosystemResult {
                    ecosystem: String::new(),
                    result: Err(update::UpdateError {
                        reason: "build",
                        detail: format!("{e:#}"),
                    }),
                }]
            }
        };
        let failed = results.iter().any(|r| r.result.is_err());
        if tx.send(results).await.is_err() {
            return;
        }
        failures = if failed { failures + 1 } else { 0 };
        let base = if failed {
            // Retry sooner after a failure, backing off up to the normal interval.
            (Duration::from_secs(30) * 2u32.saturating_pow(failures.min(10))).min(cfg.advisory_refresh)
        } else {
            cfg.advisory_refresh
        };
        let jitter = rand::random_range(0.9..1.1);
        tokio::time::sleep(base.mul_f64(jitter)).await;
    }
}

async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {},
        _ = term => {},
    }
}

pub fn run(cfg: Config) -> anyhow::Result<()> {
    images::prepare_state_dir(&cfg.state_dir)?;
    std::fs::create_dir_all(&cfg.db_dir).with_context(|| format!("create {}", cfg.db_dir.display()))?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(run_async(cfg))
}

async fn run_async(cfg: Config) -> anyhow::Result<()> {
    let shared = Arc::new(Shared {
        metrics: Metrics::register(cfg.vulnerability_info).context("register metrics")?,
        snapshot: RwLock::new(Arc::new(Snapshot::default())),
        ready: AtomicBool::new(false),
    });
    let listener = tokio::net::TcpListener::bind(cfg.listen)
        .await
        .with_context(|| format!("listen on {}", cfg.listen))?;
    tracing::info!(
        "serving /metrics, /healthz, /readyz, /v1/findings on {}",
        listener.local_addr()?
    );
    let findings_on_main = cfg.findings_listen == Some(cfg.listen);
    let server = axum::serve(listener, http::router(shared.clone(), findings_on_main))
        .with_graceful_shutdown(shutdown_signal());
    let server = tokio::spawn(async move { server.await });
    if let Some(addr) = cfg.findings_listen.filter(|_| !findings_on_main) {
        let l = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("listen on {addr} (--findings-listen)"))?;
        tracing::info!("serving /v1/findings on {}", l.local_addr()?);
        let s =
            axum::serve(l, http::findings_router(shared.clone())).with_graceful_shutdown(shutdown_signal());
        tokio::spawn(async move { s.await });
    }
    let events = cfg.events.clone().map(|ec| {
        let announced: events::Announced = std::fs::read(cfg.state_dir.join(ANNOUNCED_FILE))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        let restored: BTreeSet<String> = announced.pods.keys().cloned().collect();
        tracing::info!(
            node = %ec.node_name,
            announced_pods = restored.len(),
            "publishing Kubernetes Events on this node's pods"
        );
        (
            crate::kube::start_publisher(ec, shared.metrics.kube_events.clone()),
            announced,
            restored,
        )
    });

    let first_seen = std::fs::read(cfg.state_dir.join(FIRST_SEEN_FILE))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    let mut engine = Engine {
        cache: ImageCache::load(&cfg.state_dir),
        cfg: cfg.clone(),
        shared: shared.clone(),
        counted_hits: BTreeSet::new(),
        db: None,
        findings: BTreeMap::new(),
        report_day: 0,
        failures: BTreeMap::new(),
        chains: BTreeMap::new(),
        live: BTreeMap::new(),
        running: Vec::new(),
        first_seen,
        inventoried_once: false,
        listed_once: false,
        events,
    };
    engine.load_db();

    let (client_tx, mut client_rx) = watch::channel(None);
    let wake = Arc::new(Notify::new());
    let (refresh_tx, mut refresh_rx) = mpsc::channel(4);
    tokio::spawn(connection_task(
        cfg.clone(),
        shared.clone(),
        client_tx,
        wake.clone(),
    ));
    tokio::spawn(refresh_task(cfg.clone(), refresh_tx));

    let mut tick = tokio::time::interval(cfg.reconcile_interval);
    let stop = shutdown_signal();
    tokio::pin!(stop);
    loop {
        tokio::select! {
            _ = &mut stop => break,
            _ = wake.notified() => {
                // Events come in bursts (create, start, …): settle briefly, then look once.
                tokio::time::sleep(Duration::from_millis(100)).await;
                let client = client_rx.borrow_and_update().clone();
                engine.reconcile(client).await;
            }
            _ = tick.tick() => {
                let client = client_rx.borrow_and_update().clone();
                engine.reconcile(client).await;
            }
            Some(results) = refresh_rx.recv() => engine.apply_refresh(results),
        }
    }
    tracing::info!("shutting down");
    if let Err(e) = engine.save_cache() {
        tracing::warn!("saving the image cache: {e:#}");
    }
    let _ = server.await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_scans_are_retried_with_backoff_up_to_an_hour() {
        let minutes: Vec<u64> = (1..=9).map(|a| retry_delay(a).as_secs() / 60).collect();
        assert_eq!(minutes, vec![1, 2, 4, 8, 16, 32, 60, 60, 60]);
    }
}
