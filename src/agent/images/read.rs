//! Reading an image into a record: from containerd's content store (layers already cached
//! are not read again), or from unpacked files when the node dropped the blobs. Blocking:
//! callers run these on blocking threads.

use anyhow::Context;
use serde::Deserialize;
use std::path::PathBuf;

use stalewatch_core::catalog;
use stalewatch_core::image::Descriptor;
use stalewatch_core::layer::diagnostics::Unreadable;
use stalewatch_core::layer::{Diagnostics, FileTree, Limits};
use stalewatch_core::lineage::ImageFacts;

use super::cache::{ImageRecord, LayerCache, ReadCost, ReadFrom};
use crate::containerd::Containerd;
use crate::source::containerd::ContentStore;
use crate::source::image::{read_blob, read_layer_delta, resolve_manifest, BlobStore};

fn parse_created(config: &[u8]) -> Option<i64> {
    #[derive(Deserialize)]
    struct Config {
        created: Option<String>,
    }
    let c: Config = serde_json::from_slice(config).ok()?;
    // The core's parser, as lineage reads the same field: any offset is the same instant.
    stalewatch_core::time::rfc3339_seconds(&c.created?)
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

/// Where the layers' files come from: the content store's blobs, or unpacked layer
/// directories (bottom first, one per manifest layer) when the blobs are gone.
pub enum Layers<'a> {
    Blobs,
    Unpacked(&'a [PathBuf], ReadFrom),
}

/// Reads and catalogs one image from containerd (blocking; run it on a blocking thread).
/// Layers already in `layers` are not read again. The manifest and config always come from
/// the content store (nodes that discard layer blobs keep them), so an image read from its
/// unpacked layers names each layer by the manifest's digest, as a read of the blobs does.
pub fn scan(
    client: &Containerd,
    runtime: tokio::runtime::Handle,
    image_digest: &str,
    limits: &Limits,
    layers: &LayerCache,
    from: Layers,
) -> anyhow::Result<(ImageRecord, ReadCost)> {
    let (store, manifest_digest, manifest) = open_image(client, runtime, image_digest)?;
    let (dirs, read_from) = match from {
        Layers::Blobs => (None, ReadFrom::Content),
        Layers::Unpacked(dirs, how) => {
            anyhow::ensure!(
                dirs.len() == manifest.layers.len(),
                "the snapshot has {} layer directories, the manifest {} layers",
                dirs.len(),
                manifest.layers.len()
            );
            (Some(dirs), how)
        }
    };
    let mut tree = FileTree::new();
    let mut diag = Diagnostics::default();
    let mut cost = ReadCost::default();
    // Entries read from unpacked directories: none at all is a snapshot not there to read.
    let mut unpacked_entries = 0;
    for (i, layer) in manifest.layers.iter().enumerate() {
        let delta = match layers.get(&layer.digest) {
            Some(d) => {
                cost.layer_cache_hits += 1;
                d
            }
            None => {
                let d = match dirs {
                    None => {
                        let (d, bytes) = read_layer_delta(&store, layer, limits, &mut diag)?;
                        cost.bytes_decompressed += bytes;
                        d
                    }
                    Some(dirs) => {
                        let d = crate::source::overlay::read_layer_delta(
                            &dirs[i],
                            &layer.digest,
                            limits,
                            &mut diag,
                        )
                        .with_context(|| format!("layer {} at {}", layer.digest, dirs[i].display()))?;
                        unpacked_entries += d.stats.entries;
                        d
                    }
                };
                cost.layers_read += 1;
                if let Err(e) = layers.put(&layer.digest, &d) {
                    cost.layer_cache_write_errors += 1;
                    tracing::warn!("caching layer {}: {e:#}", layer.digest);
                }
                d
            }
        };
        tree.apply(&delta, limits, &layer.digest, &mut diag);
    }
    if dirs.is_some() && cost.layer_cache_hits == 0 && unpacked_entries == 0 {
        return Err(crate::source::overlay::SnapshotError::Empty.into());
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
        read_from,
    };
    Ok((record, cost))
}

/// What the image a descriptor digest points at (host platform) is — chain, OCI labels and
/// annotations, created — from its manifest and config: two small reads (blocking).
pub fn facts_of(
    client: &Containerd,
    runtime: tokio::runtime::Handle,
    image_digest: &str,
) -> anyhow::Result<ImageFacts> {
    let (store, manifest_digest, manifest) = open_image(client, runtime, image_digest)?;
    let facts = crate::source::image::facts_of(&store, image_digest, &manifest_digest, &manifest);
    anyhow::ensure!(!facts.diff_ids.is_empty(), "image config has no layers");
    Ok(facts)
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
            crate::source::overlay::read_layers(dirs, &mut tree, limits, &mut diag)?,
            "inventoried from the container snapshot's unpacked layers",
        ),
        Unpacked::LiveRoot(root) => {
            crate::source::rootfs::read_into(
                root,
                &mut tree,
                crate::source::rootfs::Scope::Everything,
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
        read_from: match from {
            Unpacked::Layers(_) => ReadFrom::Snapshot,
            Unpacked::LiveRoot(_) => ReadFrom::Proc,
        },
    };
    Ok((
        record,
        ReadCost {
            layers_read,
            ..Default::default()
        },
    ))
}

#[cfg(test)]
mod tests {
    #[test]
    fn created_with_an_offset_is_kept() {
        // buildah writes UTC; other builders keep the builder's zone (`+02:00`).
        let utc = super::parse_created(br#"{"created":"2024-05-01T10:00:00.123456789Z"}"#);
        let offset = super::parse_created(br#"{"created":"2024-05-01T12:00:00+02:00"}"#);
        assert_eq!(utc, Some(1_714_557_600));
        assert_eq!(offset, utc);
    }

    #[test]
    fn every_read_source_is_a_metric_label() {
        let sources: Vec<&str> = super::ReadFrom::ALL.iter().map(|r| r.as_str()).collect();
        assert_eq!(sources, crate::agent::metrics::READ_SOURCES);
        for r in super::ReadFrom::ALL {
            assert_eq!(serde_json::to_value(r).unwrap(), r.as_str());
        }
    }

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
