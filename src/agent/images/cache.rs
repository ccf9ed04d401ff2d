//! The inventories the agent keeps: one record per image digest (`images-v1.json`) and one
//! delta per layer digest (`layers/`), versioned and written atomically, so a restart reads
//! no layer again and a shared layer is read once.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use stalewatch_core::catalog::Inventory;
use stalewatch_core::layer::cache_entry;
use stalewatch_core::layer::diagnostics::Unreadable;
use stalewatch_core::layer::tree::LayerDelta;

use crate::db::{json_len, write_atomic, write_json_within};

const CACHE_FILE: &str = "images-v1.json";
/// 2: inventories carry the owners of mappable files (packages in use); 5: packages carry
/// the layer that introduced them (records of older agents are made again from the layer
/// cache, no layer read); 6: packages keep their architecture (without it, every package of
/// a restarted agent's images differed from the live ones: all drift); 7: an rpm built in a
/// module carries its stream (`rpmmod` in its purl), which modular advisories judge by.
const CACHE_VERSION: u32 = 7;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ImageRecord {
    pub image_digest: String,
    pub manifest_digest: String,
    pub config_digest: String,
    /// The image config's `created`, seconds since the epoch.
    pub created: Option<i64>,
    pub layers: Vec<String>,
    /// The chain ID of the image's layers (the parent of its containers' snapshots); absent
    /// in records of older agents and for images read from unpacked files.
    #[serde(default)]
    pub chain_id: Option<String>,
    pub inventory: Inventory,
    pub unreadable: Vec<Unreadable>,
    /// Where the layers were read from (records of older agents: the content store).
    #[serde(default)]
    pub read_from: ReadFrom,
}

#[derive(Debug, Default, Deserialize)]
struct CacheFile {
    version: u32,
    images: BTreeMap<String, ImageRecord>,
}

/// The cache file as written: borrowed, so saving never copies the inventories.
#[derive(Serialize)]
struct CacheFileRef<'a> {
    version: u32,
    images: &'a BTreeMap<String, ImageRecord>,
}

fn cache_file(images: &BTreeMap<String, ImageRecord>) -> CacheFileRef<'_> {
    CacheFileRef {
        version: CACHE_VERSION,
        images,
    }
}

/// Where an image's layers are read from, as `stalewatch_image_reads_total{source}` and
/// `read_from` in `/v1/findings` say.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReadFrom {
    /// The layer blobs in containerd's content store.
    #[default]
    Content,
    /// A running container's snapshot: its unpacked layers, named by the manifest's digests.
    Snapshot,
    /// A read-only view of the image's unpacked layers made for this read (no container).
    View,
    /// A running container's root filesystem (`/proc/<pid>/root`): no layers.
    Proc,
}

impl ReadFrom {
    #[cfg(test)]
    pub const ALL: [ReadFrom; 4] = [
        ReadFrom::Content,
        ReadFrom::Snapshot,
        ReadFrom::View,
        ReadFrom::Proc,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ReadFrom::Content => "content",
            ReadFrom::Snapshot => "snapshot",
            ReadFrom::View => "view",
            ReadFrom::Proc => "proc",
        }
    }
}

/// What reading an image cost.
#[derive(Debug, Default, Clone, Copy)]
pub struct ReadCost {
    pub layers_read: u64,
    pub bytes_decompressed: u64,
    pub layer_cache_hits: u64,
    /// Layer deltas read but not stored (the state directory full, read-only or gone).
    pub layer_cache_write_errors: u64,
}

pub struct ImageCache {
    path: PathBuf,
    pub images: BTreeMap<String, ImageRecord>,
}

impl ImageCache {
    /// Loads the cache; a corrupt or old-version file is discarded (and rebuilt), not fatal.
    pub fn load(state_dir: &Path) -> ImageCache {
        let path = state_dir.join(CACHE_FILE);
        let images = match std::fs::read(&path) {
            Ok(b) => match serde_json::from_slice::<CacheFile>(&b) {
                Ok(f) if f.version == CACHE_VERSION => f.images,
                Ok(f) => {
                    tracing::warn!(
                        "image cache {} has version {}, rebuilding",
                        path.display(),
                        f.version
                    );
                    BTreeMap::new()
                }
                Err(e) => {
                    tracing::warn!("image cache {} is corrupt ({e}), rebuilding", path.display());
                    BTreeMap::new()
                }
            },
            Err(_) => BTreeMap::new(),
        };
        let mut cache = ImageCache { path, images };
        cache.share_file_owners();
        cache
    }

    /// Adds an image, its table of mapped-file owners shared with an equal one already held
    /// (images of one base): a node's images never hold a copy each, not even for a moment.
    pub fn insert(&mut self, digest: String, mut rec: ImageRecord) {
        let t = &rec.inventory.mapped_files;
        if !t.is_empty() {
            if let Some(same) = self
                .images
                .values()
                .map(|r| &r.inventory.mapped_files)
                .find(|o| std::sync::Arc::ptr_eq(o, t) || o.as_ref() == t.as_ref())
            {
                rec.inventory.mapped_files = same.clone();
            }
        }
        self.images.insert(digest, rec);
    }

    /// Makes images whose tables of mapped-file owners are equal (images of one base) share
    /// one copy.
    pub fn share_file_owners(&mut self) {
        type Owners = std::sync::Arc<BTreeMap<String, String>>;
        let mut distinct: Vec<Owners> = Vec::new();
        for rec in self.images.values_mut() {
            let t = &mut rec.inventory.mapped_files;
            if t.is_empty() {
                continue;
            }
            match distinct
                .iter()
                .find(|d| std::sync::Arc::ptr_eq(d, t) || **d == *t)
            {
                Some(d) => *t = d.clone(),
                None => distinct.push(t.clone()),
            }
        }
    }

    /// Writes the cache, keeping it under `max_bytes` by dropping images no running container
    /// uses (largest first). Inventories of running images are never dropped to fit.
    // Sized by counting, written as a stream: the cache is never held whole as JSON (it was
    // the agent's peak heap, issue 31).
    pub fn save(
        &mut self,
        max_bytes: u64,
        running: &std::collections::BTreeSet<String>,
    ) -> anyhow::Result<()> {
        // Written as a stream, never held whole as JSON (it was the agent's peak heap, issue
        // 31); serialised once when it fits, again only after dropping images to make it fit.
        if write_json_within(&self.path, &cache_file(&self.images), max_bytes)?.is_some() {
            return Ok(());
        }
        let mut size = json_len(&cache_file(&self.images))?;
        let mut idle: Vec<(u64, String)> = self
            .images
            .iter()
            .filter(|(d, _)| !running.contains(*d))
            .map(|(d, r)| (json_len(r).unwrap_or(0), d.clone()))
            .collect();
        idle.sort();
        while size > max_bytes {
            let Some((n, d)) = idle.pop() else { break };
            self.images.remove(&d);
            size = size.saturating_sub(n);
        }
        let written = write_json_within(&self.path, &cache_file(&self.images), u64::MAX)?.unwrap_or(0);
        if written > max_bytes {
            tracing::warn!(
                "image cache is {written} bytes with running images only, above the {max_bytes} byte bound"
            );
        }
        Ok(())
    }

    /// Drops images no longer present on the node.
    pub fn retain(&mut self, present: &dyn Fn(&str) -> bool) -> usize {
        let before = self.images.len();
        self.images.retain(|k, _| present(k));
        before - self.images.len()
    }
}

/// Layer deltas by layer digest, one versioned postcard file each under `<state>/layers/`.
/// Layers are immutable: a delta read once is good forever. A corrupt or old-version file
/// is ignored (and rewritten when the layer is read again).
#[derive(Clone)]
pub struct LayerCache {
    dir: PathBuf,
}

impl LayerCache {
    pub fn new(state_dir: &Path) -> LayerCache {
        LayerCache {
            dir: state_dir.join("layers"),
        }
    }

    fn path(&self, digest: &str) -> Option<PathBuf> {
        let d = stalewatch_core::image::Digest::parse(digest).ok()?;
        Some(self.dir.join(format!("{}-{}", d.algorithm, d.hex)))
    }

    pub fn get(&self, digest: &str) -> Option<LayerDelta> {
        let path = self.path(digest)?;
        let delta = cache_entry::decode(&std::fs::read(&path).ok()?);
        if delta.is_none() {
            tracing::warn!(
                "layer cache entry {} is corrupt or of an old version, reading the layer again",
                path.display()
            );
        }
        delta
    }

    pub fn put(&self, digest: &str, delta: &LayerDelta) -> anyhow::Result<()> {
        let Some(path) = self.path(digest) else {
            return Ok(());
        };
        std::fs::create_dir_all(&self.dir)?;
        write_atomic(&path, &cache_entry::encode(delta)?)
    }

    /// Removes deltas of layers no cached image uses.
    pub fn retain(&self, used: &std::collections::BTreeSet<String>) {
        let keep: std::collections::BTreeSet<PathBuf> = used.iter().filter_map(|d| self.path(d)).collect();
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return;
        };
        for e in entries.flatten() {
            if !keep.contains(&e.path()) {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(digest: &str, owners: &[(&str, &str)]) -> ImageRecord {
        let inventory = Inventory {
            mapped_files: std::sync::Arc::new(
                owners
                    .iter()
                    .map(|(f, p)| (f.to_string(), p.to_string()))
                    .collect(),
            ),
            ..Default::default()
        };
        ImageRecord {
            image_digest: digest.into(),
            manifest_digest: format!("{digest}-manifest"),
            config_digest: String::new(),
            created: None,
            layers: vec!["sha256:aa".into()],
            chain_id: None,
            inventory,
            unreadable: Vec::new(),
            read_from: Default::default(),
        }
    }

    #[test]
    fn a_saved_cache_loads_back_and_a_corrupt_or_old_one_is_discarded() {
        let dir = tempfile::tempdir().unwrap();
        let mut cache = ImageCache::load(dir.path());
        assert!(cache.images.is_empty());
        cache.insert(
            "sha256:01".into(),
            record("sha256:01", &[("lib/libc.so", "libc6")]),
        );
        cache.insert(
            "sha256:02".into(),
            record("sha256:02", &[("lib/libc.so", "libc6")]),
        );
        cache.save(u64::MAX, &Default::default()).unwrap();
        let loaded = ImageCache::load(dir.path());
        assert_eq!(
            loaded.images.keys().collect::<Vec<_>>(),
            ["sha256:01", "sha256:02"]
        );
        assert_eq!(loaded.images["sha256:02"].manifest_digest, "sha256:02-manifest");
        // Equal owner tables are one shared copy after loading.
        let (a, b) = (&loaded.images["sha256:01"], &loaded.images["sha256:02"]);
        assert!(std::sync::Arc::ptr_eq(
            &a.inventory.mapped_files,
            &b.inventory.mapped_files
        ));
        let path = dir.path().join(CACHE_FILE);
        std::fs::write(&path, b"{\"version\":1,\"images\":{}}").unwrap();
        assert!(ImageCache::load(dir.path()).images.is_empty());
        std::fs::write(&path, b"\x00garbage").unwrap();
        assert!(ImageCache::load(dir.path()).images.is_empty());
    }

    #[test]
    fn a_reloaded_record_keeps_what_drift_compares_and_where_it_was_read_from() {
        let dir = tempfile::tempdir().unwrap();
        let mut cache = ImageCache::load(dir.path());
        let mut rec = record("sha256:01", &[]);
        rec.read_from = ReadFrom::Snapshot;
        rec.inventory
            .packages_mut()
            .push(stalewatch_core::package::Package {
                ecosystem: "Debian:12".into(),
                name: "libc6".into(),
                version: "2.36-9".into(),
                source_name: "glibc".into(),
                source_version: "2.36-9".into(),
                purl: String::new().into(),
                path: "var/lib/dpkg/status".into(),
                arch: "amd64".into(),
                layer: None,
                introduced_layer: None,
            });
        cache.insert("sha256:01".into(), rec.clone());
        cache.save(u64::MAX, &Default::default()).unwrap();
        let loaded = &ImageCache::load(dir.path()).images["sha256:01"];
        assert_eq!(loaded.inventory.packages, rec.inventory.packages);
        assert_eq!(loaded.read_from, rec.read_from);
    }

    #[test]
    fn saving_over_the_bound_drops_idle_images_never_running_ones() {
        let dir = tempfile::tempdir().unwrap();
        let mut cache = ImageCache::load(dir.path());
        for d in ["sha256:01", "sha256:02", "sha256:03"] {
            cache.insert(d.into(), record(d, &[]));
        }
        let running: std::collections::BTreeSet<String> = ["sha256:02".to_string()].into();
        // A bound the whole cache fits in exactly keeps every image.
        let whole = json_len(&cache_file(&cache.images)).unwrap();
        cache.save(whole, &running).unwrap();
        assert_eq!(ImageCache::load(dir.path()).images.len(), 3);
        cache.save(1, &running).unwrap();
        assert_eq!(cache.images.keys().collect::<Vec<_>>(), ["sha256:02"]);
        assert_eq!(ImageCache::load(dir.path()).images.len(), 1);
    }
}
