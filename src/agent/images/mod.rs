//! The images owner: which image digests have an inventory, reading the ones that do not
//! (bounded concurrency, a timeout each, at low priority, layers already cached not read
//! again, the unpacked fallbacks when blobs are gone), failures with their retry backoff,
//! and the cache's persistence.

pub mod cache;
pub mod failure;
pub mod read;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use stalewatch_core::catalog;

use super::config::{Config, Fallback};
use super::metrics::Metrics;
use super::signals::Signal;
use crate::containerd::Containerd;
use cache::{ImageCache, ImageRecord, LayerCache, ReadCost, ReadFrom};
use failure::{retry_delay, FailureKind, ScanFailure};
use read::{Layers, Unpacked};

pub struct ImageStore {
    state_dir: PathBuf,
    proc_root: PathBuf,
    concurrency: usize,
    timeout: Duration,
    fallbacks: Vec<Fallback>,
    state_max_bytes: u64,
    /// Runtime checks off: the owners of mapped files are never needed.
    keep_file_owners: bool,
    pub cache: ImageCache,
    /// Images whose inventory came from the persisted cache and were counted as hits.
    counted_hits: BTreeSet<String>,
    /// Images whose scan failed: why, and when to try again.
    failures: BTreeMap<String, ScanFailure>,
    /// The last save failed (the state directory full, read-only or gone): try again.
    unsaved: bool,
}

/// A running container of an image, for the unpacked fallbacks: its init process (`None`
/// for a sandboxed runtime, whose task PID is not the container's) and its snapshot
/// (snapshotter, key).
#[derive(Debug, Clone)]
pub struct Holder {
    pub pid: Option<u32>,
    pub snapshot: Option<(String, String)>,
}

/// One image read, or why it could not be.
type ScanOutcome = Result<(ImageRecord, ReadCost), (FailureKind, String)>;

impl ImageStore {
    pub fn new(cfg: &Config) -> ImageStore {
        ImageStore {
            state_dir: cfg.state_dir.clone(),
            proc_root: cfg.proc_root.clone(),
            concurrency: cfg.scan_concurrency.max(1),
            timeout: cfg.scan_timeout,
            fallbacks: cfg.unpacked_fallback.clone(),
            state_max_bytes: cfg.state_max_bytes,
            keep_file_owners: cfg.drift_interval.is_some(),
            cache: ImageCache::load(&cfg.state_dir),
            counted_hits: BTreeSet::new(),
            failures: BTreeMap::new(),
            unsaved: false,
        }
    }

    pub fn record(&self, digest: &str) -> Option<&ImageRecord> {
        self.cache.images.get(digest)
    }

    /// The images whose scan failed: why, and when to try again.
    pub fn failures(&self) -> &BTreeMap<String, ScanFailure> {
        &self.failures
    }

    /// Forgets images no longer on the node (and the layers only they used); returns the
    /// digests forgotten.
    pub fn forget_absent(
        &mut self,
        on_node: &BTreeSet<String>,
        running: &BTreeSet<String>,
        metrics: &Metrics,
    ) -> Vec<String> {
        let gone: Vec<String> = self
            .cache
            .images
            .keys()
            .filter(|d| !on_node.contains(*d))
            .cloned()
            .collect();
        if gone.is_empty() {
            return gone;
        }
        self.cache.retain(&|d| on_node.contains(d));
        let used: BTreeSet<String> = self
            .cache
            .images
            .values()
            .flat_map(|r| r.layers.iter().cloned())
            .collect();
        LayerCache::new(&self.state_dir).retain(&used);
        self.save(running, metrics);
        gone
    }

    /// Counts the layers of images served from the persisted cache, once per image, and
    /// returns the wanted images still to read (new, or failed and due for a retry).
    pub fn due_for_reading(&mut self, wanted: &BTreeSet<String>, metrics: &Metrics) -> Vec<String> {
        for d in wanted {
            if let Some(rec) = self.cache.images.get(d) {
                if self.counted_hits.insert(d.clone()) {
                    metrics.layer_cache_hits.inc_by(rec.layers.len() as u64);
                }
            }
        }
        // Failures of images nothing runs any more are forgotten.
        self.failures.retain(|d, _| wanted.contains(d));
        wanted
            .iter()
            .filter(|d| {
                !self.cache.images.contains_key(*d)
                    && self.failures.get(*d).is_none_or(|f| f.retry_at <= Instant::now())
            })
            .cloned()
            .collect()
    }

    /// Reads `todo` (bounded concurrency, a timeout each), records what was read and what
    /// failed, and saves the cache when it changed. Returns the digests inventoried.
    pub async fn read_images(
        &mut self,
        client: &Containerd,
        todo: Vec<String>,
        holders: &BTreeMap<String, Holder>,
        metrics: &Arc<Metrics>,
        beat: &dyn Fn(),
    ) -> Vec<String> {
        let sem = Arc::new(tokio::sync::Semaphore::new(self.concurrency));
        // Views are made with the snapshotter the node's containers use.
        let snapshotter = holders
            .values()
            .find_map(|h| h.snapshot.as_ref().map(|(s, _)| s.clone()))
            .unwrap_or_else(|| crate::containerd::view::DEFAULT_SNAPSHOTTER.to_string());
        let mut set = tokio::task::JoinSet::new();
        for digest in todo {
            let holder = holders.get(&digest).cloned();
            let job = ReadJob {
                client: client.clone(),
                layers: LayerCache::new(&self.state_dir),
                digest,
                holder,
                snapshotter: snapshotter.clone(),
                proc_root: self.proc_root.clone(),
                fallbacks: self.fallbacks.clone(),
                metrics: metrics.clone(),
            };
            let (sem, timeout) = (sem.clone(), self.timeout);
            set.spawn(async move {
                let _permit = sem.acquire_owned().await;
                let started = Instant::now();
                let digest = job.digest.clone();
                let result = match tokio::time::timeout(timeout, job.run()).await {
                    Ok(r) => r.map_err(|e| (FailureKind::of(&e), format!("{e:#}"))),
                    Err(_) => Err((FailureKind::Timeout, format!("scan took longer than {timeout:?}"))),
                };
                (digest, result, started.elapsed())
            });
        }
        let mut read = Vec::new();
        while let Some(joined) = set.join_next().await {
            // Each read is bounded by the scan timeout: a first inventory of a big node may
            // take minutes and is no wedge.
            beat();
            let Ok((digest, result, took)) = joined else {
                continue;
            };
            if self.record_outcome(&digest, result, took, metrics) {
                read.push(digest);
            }
        }
        if !read.is_empty() {
            let running: BTreeSet<String> = holders.keys().cloned().collect();
            self.save(&running, metrics);
        }
        read
    }

    /// Keeps a read image or its failure; true when the image was inventoried.
    fn record_outcome(
        &mut self,
        digest: &str,
        result: ScanOutcome,
        took: Duration,
        metrics: &Metrics,
    ) -> bool {
        match result {
            Ok((mut record, cost)) => {
                metrics.scan_duration.observe(took.as_secs_f64());
                metrics.layers_read.inc_by(cost.layers_read);
                metrics.layer_bytes_decompressed.inc_by(cost.bytes_decompressed);
                metrics.layer_cache_hits.inc_by(cost.layer_cache_hits);
                metrics
                    .state_write_errors
                    .with_label_values(&["layer_cache"])
                    .inc_by(cost.layer_cache_write_errors);
                tracing::info!(image = %digest, packages = record.inventory.packages.len(), "image inventoried in {took:?}");
                self.counted_hits.insert(digest.to_string());
                self.failures.remove(digest);
                if !self.keep_file_owners {
                    record.inventory.mapped_files = Arc::default();
                    record.inventory.with_file_lists.clear();
                }
                self.cache.insert(digest.to_string(), record);
                true
            }
            Err((kind, msg)) => {
                metrics.emit(Signal::Scan {
                    reason: kind.reason(),
                    what: digest,
                    error: &msg,
                });
                let attempts = self.failures.get(digest).map_or(1, |f| f.attempts + 1);
                self.failures.insert(
                    digest.to_string(),
                    ScanFailure {
                        message: msg,
                        attempts,
                        retry_at: Instant::now() + retry_delay(attempts),
                    },
                );
                false
            }
        }
    }

    /// Writes the cache (running images are never dropped to fit the bound). Called from the
    /// engine's own thread, never from the workers that answer HTTP.
    pub fn save(&mut self, running: &BTreeSet<String>, metrics: &Metrics) {
        self.unsaved = false;
        if let Err(e) = self.cache.save(self.state_max_bytes, running) {
            self.unsaved = true;
            metrics
                .state_write_errors
                .with_label_values(&["image_cache"])
                .inc();
            tracing::warn!("saving the image cache: {e:#}");
        }
    }

    /// Saves again after a failed save; nothing to do otherwise.
    pub fn save_if_unsaved(&mut self, running: &BTreeSet<String>, metrics: &Metrics) {
        if self.unsaved {
            self.save(running, metrics);
        }
    }
}

/// Everything one image read needs, moved into its task.
struct ReadJob {
    client: Containerd,
    layers: LayerCache,
    digest: String,
    holder: Option<Holder>,
    /// The snapshotter a view of an image no container runs is made with.
    snapshotter: String,
    proc_root: PathBuf,
    fallbacks: Vec<Fallback>,
    metrics: Arc<Metrics>,
}

impl ReadJob {
    /// Reads the image from the content store; when its layer blobs are gone, from its
    /// unpacked layers by each fallback in order. Every success is counted by its source.
    async fn run(self) -> anyhow::Result<(ImageRecord, ReadCost)> {
        let result = self.read().await;
        if let Ok((record, _)) = &result {
            self.metrics
                .image_reads
                .with_label_values(&[record.read_from.as_str()])
                .inc();
        }
        result
    }

    /// A snapshot that cannot be read is counted with its own reason before the next fallback
    /// is tried; the image's failure is the last snapshot's, else the blobs' absence.
    async fn read(&self) -> anyhow::Result<(ImageRecord, ReadCost)> {
        let mut err = match self.scan(None).await {
            Ok(r) => return Ok(r),
            Err(e) if FailureKind::of(&e) == FailureKind::BlobMissing => e,
            Err(e) => return Err(e),
        };
        let mut snapshot_failed = None;
        for fb in &self.fallbacks {
            let read = match (fb, &self.holder) {
                (Fallback::Snapshot, Some(holder)) => self.read_container_snapshot(holder).await,
                (Fallback::Snapshot, None) => self.read_view().await,
                // A sandboxed container's PID is its VM's or sandbox's: its /proc root is
                // not the container's, so no holder's pid is offered.
                (Fallback::Proc, Some(Holder { pid: Some(pid), .. })) => {
                    let root = self.proc_root.join(pid.to_string()).join("root");
                    Some(self.scan_unpacked(Unpacked::LiveRoot(root)).await)
                }
                (Fallback::Proc, _) => None,
            };
            match read {
                Some(Ok(r)) => {
                    if let Some(reason) = snapshot_failed {
                        self.metrics.emit(Signal::Scan {
                            reason,
                            what: &self.digest,
                            error: &"its snapshot could not be read; a later fallback read it",
                        });
                    }
                    return Ok(r);
                }
                Some(Err(e)) => {
                    let reason = FailureKind::of(&e).reason();
                    tracing::warn!(image = %self.digest, reason, "unpacked fallback {fb:?} failed: {e:#}");
                    // A snapshot's own reason becomes the image's (counted with it, when no
                    // later fallback succeeds); another failure leaves the blobs' absence.
                    if FailureKind::of(&e).is_snapshot() {
                        snapshot_failed = Some(reason);
                        err = e;
                    }
                }
                None => {}
            }
        }
        Err(err)
    }

    /// Reads the image through the content store's manifest and config, its layers from the
    /// blobs (`None`) or from unpacked directories, one per manifest layer.
    async fn scan(
        &self,
        unpacked: Option<(Vec<PathBuf>, ReadFrom)>,
    ) -> anyhow::Result<(ImageRecord, ReadCost)> {
        let (c, handle, d, layers) = (
            self.client.clone(),
            tokio::runtime::Handle::current(),
            self.digest.clone(),
            self.layers.clone(),
        );
        tokio::task::spawn_blocking(move || {
            lower_priority();
            let from = match &unpacked {
                None => Layers::Blobs,
                Some((dirs, how)) => Layers::Unpacked(dirs, *how),
            };
            read::scan(&c, handle, &d, &catalog::limits(), &layers, from)
        })
        .await
        .map_err(|e| anyhow::anyhow!("scan task: {e}"))?
    }

    /// Reads unpacked files without the manifest: the last resort, layers named by path.
    async fn scan_unpacked(&self, from: Unpacked) -> anyhow::Result<(ImageRecord, ReadCost)> {
        tracing::info!(image = %self.digest, "blobs missing from the content store, reading {from:?}");
        let d = self.digest.clone();
        tokio::task::spawn_blocking(move || {
            lower_priority();
            read::scan_unpacked(&from, &d, &catalog::limits())
        })
        .await
        .map_err(|e| anyhow::anyhow!("scan task: {e}"))?
    }

    /// A running container's snapshot: its layers named by the manifest when the manifest
    /// and the snapshot agree, else by path (`None`: the snapshot has no readable mounts).
    async fn read_container_snapshot(
        &self,
        holder: &Holder,
    ) -> Option<anyhow::Result<(ImageRecord, ReadCost)>> {
        let (snapshotter, key) = holder.snapshot.as_ref()?;
        let dirs = match self.client.snapshot_mounts(snapshotter, key).await {
            Ok(m) => crate::source::overlay::lower_dirs_of(&m),
            Err(e) => {
                tracing::debug!("snapshot fallback for {}: {e:#}", self.digest);
                return None;
            }
        };
        let dirs = match dirs {
            Ok(d) => d,
            Err(e) => return Some(Err(e.into())),
        };
        match self.scan(Some((dirs.clone(), ReadFrom::Snapshot))).await {
            Ok(r) => Some(Ok(r)),
            // Nothing to read by path either.
            Err(e) if FailureKind::of(&e).is_snapshot() => Some(Err(e)),
            Err(e) => {
                tracing::warn!(image = %self.digest, "reading the snapshot by the manifest's layers: {e:#}; reading it by path");
                Some(self.scan_unpacked(Unpacked::Layers(dirs)).await)
            }
        }
    }

    /// An image no container runs: a read-only view of its layer chain, made for this read
    /// and removed after it (`None`: its chain is unknown).
    async fn read_view(&self) -> Option<anyhow::Result<(ImageRecord, ReadCost)>> {
        let (c, handle, d) = (
            self.client.clone(),
            tokio::runtime::Handle::current(),
            self.digest.clone(),
        );
        let facts = tokio::task::spawn_blocking(move || read::facts_of(&c, handle, &d)).await;
        let chain = match facts {
            Ok(Ok(f)) => stalewatch_core::image::chain_id(&f.diff_ids)?,
            Ok(Err(e)) => return Some(Err(e)),
            Err(e) => return Some(Err(anyhow::anyhow!("scan task: {e}"))),
        };
        let view = match self.client.view_snapshot(&self.snapshotter, &chain).await {
            Ok(v) => v,
            Err(e) => {
                self.metrics
                    .snapshot_views
                    .with_label_values(&["create_failed"])
                    .inc();
                return Some(Err(e));
            }
        };
        tracing::info!(image = %self.digest, "blobs missing from the content store, reading a view of {chain}");
        let read = match crate::source::overlay::lower_dirs_of(&view.mounts) {
            Ok(dirs) => self.scan(Some((dirs, ReadFrom::View))).await,
            Err(e) => Err(e.into()),
        };
        let removed = match view.remove().await {
            Ok(()) => "removed",
            Err(e) => {
                tracing::warn!(image = %self.digest, "removing the snapshot view: {e:#} (its lease expires)");
                "remove_failed"
            }
        };
        self.metrics.snapshot_views.with_label_values(&[removed]).inc();
        Some(read)
    }
}

/// Reads yield to the node's workloads: this (blocking-pool) thread runs at nice 10.
/// Linux applies `setpriority` with a thread id to that thread only.
pub fn lower_priority() {
    let tid = rustix::thread::gettid();
    if let Err(e) = rustix::process::setpriority_process(Some(tid), 10) {
        tracing::debug!("cannot lower scan priority: {e}");
    }
}
