//! Image inventories, read once per image from containerd's content store and kept in the
//! state directory (versioned, written atomically) so a restart reads no layer again.

use anyhow::Context;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use stalewatch_core::catalog::{self, Inventory};
use stalewatch_core::image::Descriptor;
use stalewatch_core::layer::diagnostics::Unreadable;
use stalewatch_core::layer::tree::LayerDelta;
use stalewatch_core::layer::{Diagnostics, FileTree, Limits};

use crate::containerd::{Containerd, ContentStore};
use crate::db::write_atomic;
use crate::scan::image::{read_blob, read_layer_delta, resolve_manifest, BlobStore};

const CACHE_FILE: &str = "images-v1.json";
/// 2: inventories carry the owners of mappable files (packages in use).
const CACHE_VERSION: u32 = 4;

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
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct CacheFile {
    version: u32,
    images: BTreeMap<String, ImageRecord>,
}

/// What reading an image cost.
#[derive(Debug, Default, Clone, Copy)]
pub struct ReadCost {
    pub layers_read: u64,
    pub bytes_decompressed: u64,
    pub layer_cache_hits: u64,
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
    pub fn save(
        &mut self,
        max_bytes: u64,
        running: &std::collections::BTreeSet<String>,
    ) -> anyhow::Result<()> {
        let encode = |images: &BTreeMap<String, ImageRecord>| {
            serde_json::to_vec(&CacheFile {
                version: CACHE_VERSION,
                images: images.clone(),
            })
        };
        let mut bytes = encode(&self.images)?;
        if bytes.len() as u64 > max_bytes {
            let mut idle: Vec<(usize, String)> = self
                .images
                .iter()
                .filter(|(d, _)| !running.contains(*d))
                .map(|(d, r)| (serde_json::to_vec(r).map(|v| v.len()).unwrap_or(0), d.clone()))
                .collect();
            idle.sort();
            let mut size = bytes.len() as u64;
            while size > max_bytes {
                let Some((n, d)) = idle.pop() else { break };
                self.images.remove(&d);
                size = size.saturating_sub(n as u64);
            }
            bytes = encode(&self.images)?;
            if bytes.len() as u64 > max_bytes {
                tracing::warn!(
                    "image cache is {} bytes with running images only, above the {max_bytes} byte bound",
                    bytes.len()
                );
            }
        }
        write_atomic(&self.path, &bytes)
    }

    /// Drops images no longer present on the node.
    pub fn retain(&mut self, present: &dyn Fn(&str) -> bool) -> usize {
        let before = self.images.len();
        self.images.retain(|k, _| present(k));
        before - self.images.len()
    }
}

fn parse_created(config: &[u8]) -> Option<i64> {
    #[derive(Deserialize)]
    struct Config {
        created: Option<String>,
    }
    let c: Config = serde_json::from_slice(config).ok()?;
    let t = humantime::parse_rfc3339_weak(c.created?.trim_end_matches('Z').split('.').next()?).ok()?;
    Some(t.duration_since(std::time::UNIX_EPOCH).ok()?.as_secs() as i64)
}

/// Layer deltas by layer digest, one versioned postcard file each under `<state>/layers/`.
/// Layers are immutable: a delta read once is good forever. A corrupt or old-version file
/// is ignored (and rewritten when the layer is read again).
pub struct LayerCache {
    dir: PathBuf,
}

const LAYER_MAGIC: &[u8; 6] = b"SWLD\0\0";
/// 2: deltas keep dpkg's `info/*.list` (packages in use).
const LAYER_VERSION: u16 = 4;

impl LayerCache {
    pub fn new(state_dir: &Path) -> LayerCache {
        LayerCache {
            dir: state_dir.join("layers"),
        }
    }

    fn path(&self, digest: &str) -> Option<PathBuf> {
        let (alg, hex) = stalewatch_core::image::split_digest(digest).ok()?;
        Some(self.dir.join(format!("{alg}-{hex}")))
    }

    pub fn get(&self, digest: &str) -> Option<LayerDelta> {
        let bytes = std::fs::read(self.path(digest)?).ok()?;
        let body = bytes.strip_prefix(LAYER_MAGIC.as_slice())?;
        let (version, body) = body.split_at_checked(2)?;
        if u16::from_le_bytes([version[0], version[1]]) != LAYER_VERSION {
            return None;
        }
        postcard::from_bytes(body).ok()
    }

    pub fn put(&self, digest: &str, delta: &LayerDelta) -> anyhow::Result<()> {
        let Some(path) = self.path(digest) else {
            return Ok(());
        };
        std::fs::create_dir_all(&self.dir)?;
        let mut bytes = LAYER_MAGIC.to_vec();
        bytes.extend_from_slice(&LAYER_VERSION.to_le_bytes());
        bytes.extend(postcard::to_stdvec(delta)?);
        write_atomic(&path, &bytes)
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

/// The content store of `client` and the host platform's manifest of an image digest.
fn open_image(
    client: &Containerd,
    runtime: tokio::runtime::Handle,
    image_digest: &str,
) -> anyhow::Result<(ContentStore, String, stalewatch_core::image::Manifest)> {
    let store = ContentStore {
        client: client.clone(),
        runtime,
    };
    let root = Descriptor {
        media_type: String::new(),
        digest: image_digest.to_string(),
        size: 0,
        platform: None,
    };
    let (manifest_digest, manifest) = resolve_manifest(&store, &root)?;
    Ok((store, manifest_digest, manifest))
}

/// The layer chain ID an image config describes (`rootfs.diff_ids`).
fn config_chain_id(config: &[u8]) -> Option<String> {
    stalewatch_core::image::config_diff_ids(config).and_then(|d| stalewatch_core::image::chain_id(&d))
}

/// Reads and catalogs one image from containerd (blocking; run it on a blocking thread).
/// Layers already in `layers` are not read again.
pub fn scan(
    client: &Containerd,
    runtime: tokio::runtime::Handle,
    image_digest: &str,
    limits: &Limits,
    layers: &LayerCache,
) -> anyhow::Result<(ImageRecord, ReadCost)> {
    let (store, manifest_digest, manifest) = open_image(client, runtime, image_digest)?;
    let mut tree = FileTree::new();
    let mut diag = Diagnostics::default();
    let mut cost = ReadCost::default();
    for layer in &manifest.layers {
        let delta = match layers.get(&layer.digest) {
            Some(d) => {
                cost.layer_cache_hits += 1;
                d
            }
            None => {
                let (d, bytes) = read_layer_delta(&store, layer, limits, &mut diag)?;
                cost.layers_read += 1;
                cost.bytes_decompressed += bytes;
                if let Err(e) = layers.put(&layer.digest, &d) {
                    tracing::warn!("caching layer {}: {e:#}", layer.digest);
                }
                d
            }
        };
        tree.apply(&delta, limits, &layer.digest, &mut diag);
    }
    let config = &manifest.config;
    let config_bytes = read_blob(&store as &dyn BlobStore, config).ok();
    let created = config_bytes.as_deref().and_then(parse_created);
    let chain_id = config_bytes.as_deref().and_then(config_chain_id);
    let inventory = catalog::catalog(&tree, &mut diag);
    let record = ImageRecord {
        image_digest: image_digest.to_string(),
        manifest_digest,
        config_digest: config.digest.clone(),
        created,
        layers: manifest.layers.iter().map(|l| l.digest.clone()).collect(),
        chain_id,
        inventory,
        unreadable: diag.notes,
    };
    Ok((record, cost))
}

/// The chain ID of the image a descriptor digest points at (host platform), from its
/// manifest and config: two small reads (blocking).
pub fn chain_of(
    client: &Containerd,
    runtime: tokio::runtime::Handle,
    image_digest: &str,
) -> anyhow::Result<Option<String>> {
    let (store, _, manifest) = open_image(client, runtime, image_digest)?;
    let config = read_blob(&store as &dyn BlobStore, &manifest.config)?;
    Ok(config_chain_id(&config))
}

/// Where an image's unpacked files are read from when its blobs are gone.
#[derive(Debug, Clone)]
pub enum Unpacked {
    /// The snapshot's overlay lower directories, bottom first: the image as shipped.
    Layers(Vec<PathBuf>),
    /// A running container's root (`<proc-root>/<pid>/root`): what runs, drift included.
    LiveRoot(PathBuf),
}

/// Catalogs an image from its unpacked files: the fallback when the node has dropped the
/// image's blobs after unpacking them (containerd's `discard_unpacked_layers`).
pub fn scan_unpacked(
    from: &Unpacked,
    image_digest: &str,
    limits: &Limits,
) -> anyhow::Result<(ImageRecord, ReadCost)> {
    let mut tree = FileTree::new();
    let mut diag = Diagnostics::default();
    let (layers_read, how) = match from {
        Unpacked::Layers(dirs) => (
            crate::scan::overlay::read_layers(dirs, &mut tree, limits, &mut diag)?,
            "inventoried from the container snapshot's unpacked layers",
        ),
        Unpacked::LiveRoot(root) => {
            crate::scan::rootfs::read_into(
                root,
                &mut tree,
                crate::scan::rootfs::Scope::Everything,
                limits,
                &mut diag,
            )
            .with_context(|| format!("read {}", root.display()))?;
            (
                1,
                "inventoried from a running container's filesystem (runtime changes included)",
            )
        }
    };
    let inventory = catalog::catalog(&tree, &mut diag);
    let mut unreadable = diag.notes;
    unreadable.push(Unreadable {
        what: "image".into(),
        reason: "blobs_missing".into(),
        detail: format!("layer blobs are not in the content store; {how}"),
    });
    let record = ImageRecord {
        image_digest: image_digest.to_string(),
        manifest_digest: String::new(),
        config_digest: String::new(),
        created: None,
        layers: Vec::new(),
        chain_id: None,
        inventory,
        unreadable,
    };
    Ok((
        record,
        ReadCost {
            layers_read,
            ..Default::default()
        },
    ))
}

/// Ensures the state directory exists and is writable before the agent starts.
pub fn prepare_state_dir(dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("create state directory {}", dir.display()))
}

#[cfg(test)]
mod tests {
    #[test]
    fn created_times() {
        assert_eq!(
            super::parse_created(br#"{"created":"1970-01-02T00:00:00Z"}"#),
            Some(86400)
        );
        assert_eq!(
            super::parse_created(br#"{"created":"1970-01-02T00:00:00.123456789Z"}"#),
            Some(86400)
        );
        assert_eq!(super::parse_created(br#"{}"#), None);
        assert_eq!(super::parse_created(b"garbage"), None);
    }
}
