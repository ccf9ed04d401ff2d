//! Image layouts on disk: an OCI layout directory or archive, and `docker save` archives.
//! Blobs are streamed, digests verified, and only wanted files are kept.

use anyhow::{bail, Context};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::fs::File;
use std::io::{self, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use stalewatch_core::catalog;
use stalewatch_core::image::{self as meta, Descriptor};
use stalewatch_core::layer::tar::TarReader;
use stalewatch_core::layer::tree::LayerDelta;
use stalewatch_core::layer::{decompress, Diagnostics, EntryKind, EntrySource, FileTree, Limits};
use stalewatch_core::lineage::ImageFacts;

/// Manifests, indexes and configs larger than this are refused (real ones are a few KiB).
const MAX_METADATA_BYTES: u64 = 4 << 20;

/// Where blobs come from: a directory, or members of an uncompressed tar archive.
pub enum Blobs {
    Dir(PathBuf),
    Archive {
        path: PathBuf,
        members: HashMap<String, (u64, u64)>,
    },
}

impl Blobs {
    fn archive(path: &Path) -> anyhow::Result<Blobs> {
        let f = File::open(path).with_context(|| format!("open {}", path.display()))?;
        let mut head = [0u8; 4];
        let n = (&f).read(&mut head)?;
        if decompress::detect(&head[..n]) != decompress::Compression::None {
            bail!(
                "{}: compressed archives are not supported; decompress it first",
                path.display()
            );
        }
        let mut reader = TarReader::new(BufReader::new(File::open(path)?));
        let mut members = HashMap::new();
        while let Some(e) = reader
            .next_entry()
            .with_context(|| format!("read archive {}", path.display()))?
        {
            if e.kind == EntryKind::File {
                if let Ok(name) = stalewatch_core::layer::path::normalize(&e.path) {
                    members.insert(name, (reader.data_offset(), e.size));
                }
            }
        }
        Ok(Blobs::Archive {
            path: path.to_path_buf(),
            members,
        })
    }

    /// Opens a file of the layout by its relative path.
    /// The path is checked on both sides (no `..`, not absolute): today every caller passes
    /// `index.json` or a path built from a validated digest, and it stays so.
    fn open(&self, rel: &str) -> anyhow::Result<Box<dyn Read + Send>> {
        let key = stalewatch_core::layer::path::normalize(rel)
            .map_err(|_| anyhow::anyhow!("bad member name {rel:?}"))?;
        match self {
            Blobs::Dir(d) => {
                let p = d.join(&key);
                Ok(Box::new(
                    File::open(&p).with_context(|| format!("open {}", p.display()))?,
                ))
            }
            Blobs::Archive { path, members } => {
                let (offset, size) = *members
                    .get(&key)
                    .with_context(|| format!("{} has no member {rel}", path.display()))?;
                let mut f = File::open(path)?;
                f.seek(SeekFrom::Start(offset))?;
                Ok(Box::new(f.take(size)))
            }
        }
    }

    fn read_small(&self, rel: &str) -> anyhow::Result<Vec<u8>> {
        let mut buf = Vec::new();
        self.open(rel)?
            .take(MAX_METADATA_BYTES + 1)
            .read_to_end(&mut buf)?;
        if buf.len() as u64 > MAX_METADATA_BYTES {
            bail!("{rel} is larger than {MAX_METADATA_BYTES} bytes");
        }
        Ok(buf)
    }
}

/// Where an image's blobs come from, by digest: an OCI layout, or containerd's content store.
pub trait BlobStore {
    /// Streams a blob (callers verify the digest as they read).
    fn open_blob(&self, digest: &str) -> anyhow::Result<Box<dyn Read + Send>>;

    /// Streams a blob and hashes it as it passes: its SHA-256 is known once the reader has
    /// ended. A store that streams from another thread may hash there, off the reader's.
    fn open_hashed_blob(&self, digest: &str) -> anyhow::Result<HashedBlob> {
        Ok(HashedBlob::hashed_by_reader(self.open_blob(digest)?))
    }
}

/// A blob being streamed, and its SHA-256 once the stream has ended (unset while it has not,
/// or when it failed).
pub struct HashedBlob {
    pub reader: Box<dyn Read + Send>,
    pub sha256: Arc<OnceLock<[u8; 32]>>,
}

impl HashedBlob {
    /// Hashes on the reader's own thread, as the bytes pass.
    pub fn hashed_by_reader(inner: Box<dyn Read + Send>) -> HashedBlob {
        let sha256 = Arc::new(OnceLock::new());
        HashedBlob {
            reader: Box::new(Hashing {
                inner,
                hasher: Some(Sha256::new()),
                done: sha256.clone(),
            }),
            sha256,
        }
    }
}

/// Reads a small blob (index, manifest, config) and checks its digest.
pub fn read_blob(store: &dyn BlobStore, d: &Descriptor) -> anyhow::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    store
        .open_blob(&d.digest)?
        .take(MAX_METADATA_BYTES + 1)
        .read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_METADATA_BYTES {
        bail!("blob {} is larger than {MAX_METADATA_BYTES} bytes", d.digest);
    }
    verify(&d.digest, &Sha256::digest(&bytes))?;
    Ok(bytes)
}

pub struct OciLayout {
    blobs: Blobs,
}

impl OciLayout {
    pub fn dir(p: &Path) -> anyhow::Result<Self> {
        if !p.join("index.json").is_file() {
            bail!("{} is not an OCI layout (no index.json)", p.display());
        }
        Ok(OciLayout {
            blobs: Blobs::Dir(p.to_path_buf()),
        })
    }

    pub fn archive(p: &Path) -> anyhow::Result<Self> {
        Ok(OciLayout {
            blobs: Blobs::archive(p)?,
        })
    }

    fn blob_path(digest: &str) -> anyhow::Result<String> {
        let d = meta::Digest::parse(digest)?;
        Ok(format!("blobs/{}/{}", d.algorithm, d.hex))
    }
}

impl BlobStore for OciLayout {
    fn open_blob(&self, digest: &str) -> anyhow::Result<Box<dyn Read + Send>> {
        self.blobs.open(&Self::blob_path(digest)?)
    }
}

/// A blob whose bytes hash to something other than its name: corrupt or tampered content.
#[derive(Debug, thiserror::Error)]
#[error("blob {digest} does not match its digest (sha256:{actual})")]
pub struct DigestMismatch {
    pub digest: String,
    pub actual: String,
}

fn verify(digest: &str, got: &[u8]) -> anyhow::Result<()> {
    if meta::Digest::parse(digest)?.matches_sha256(got) == Some(false) {
        return Err(DigestMismatch {
            digest: digest.to_string(),
            actual: hex::encode(got),
        }
        .into());
    }
    Ok(())
}

/// Hashes what passes through, so a layer's digest is checked without a second read; the
/// hash is published at the end of the stream.
struct Hashing<R> {
    inner: R,
    hasher: Option<Sha256>,
    done: Arc<OnceLock<[u8; 32]>>,
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        match (n, self.hasher.take()) {
            (0, Some(h)) if !buf.is_empty() => {
                let _ = self.done.set(h.finalize().into());
            }
            (_, Some(mut h)) => {
                h.update(&buf[..n]);
                self.hasher = Some(h);
            }
            (_, None) => {}
        }
        Ok(n)
    }
}

/// Streams one layer blob through `read` (decompressed, as tar entries), then to its end, so
/// that `digest` (checked when given) covers the whole blob. Returns what `read` made and the
/// bytes decompressed.
fn stream_layer<T>(
    blob: HashedBlob,
    digest: Option<&str>,
    label: &str,
    limits: &Limits,
    read: impl FnOnce(&mut dyn EntrySource) -> Result<T, stalewatch_core::layer::LayerError>,
) -> anyhow::Result<(T, u64)> {
    let HashedBlob {
        reader: mut raw,
        sha256,
    } = blob;
    let (made, decompressed_bytes) = {
        let decompressed =
            decompress::open(&mut raw, limits.max_layer_bytes).with_context(|| format!("layer {label}"))?;
        let mut tar = TarReader::new(decompressed);
        let made = read(&mut tar).with_context(|| format!("layer {label}"))?;
        // Finish the stream so the digest covers the whole blob.
        while tar
            .next_entry()
            .with_context(|| format!("layer {label}"))?
            .is_some()
        {}
        (made, tar.into_inner().read)
    };
    io::copy(&mut raw, &mut io::sink()).with_context(|| format!("layer {label}"))?;
    if let Some(d) = digest {
        let Some(got) = sha256.get() else {
            bail!("layer {label}: the blob's stream ended without its digest")
        };
        verify(d, got)?;
    }
    Ok((made, decompressed_bytes))
}

/// Applies one layer blob to the tree. `digest` is checked when given.
fn apply_layer(
    raw: HashedBlob,
    digest: Option<&str>,
    label: &str,
    limits: &Limits,
    tree: &mut FileTree,
    diag: &mut Diagnostics,
) -> anyhow::Result<u64> {
    let wants = |p: &str| catalog::wants(p);
    let read = |src: &mut dyn EntrySource| {
        tree.apply_layer_with(src, &wants, Some(&catalog::lang::BINARIES), limits, label, diag)
    };
    Ok(stream_layer(raw, digest, label, limits, read)?.1)
}

/// What reading an image learned besides its files: its layers (as the tree labels them,
/// bottom first) and its facts (chain, OCI labels, created).
#[derive(Debug, Clone, Default)]
pub struct ImageMeta {
    pub layers: Vec<String>,
    pub facts: ImageFacts,
}

/// An image's facts from its manifest and config; a config that is not one leaves only the
/// digests (a base is then not found, never an error).
pub fn facts_of(
    store: &dyn BlobStore,
    root: &str,
    manifest_digest: &str,
    manifest: &meta::Manifest,
) -> ImageFacts {
    let config = read_blob(store, &manifest.config);
    let mut facts = config
        .ok()
        .and_then(|c| ImageFacts::from_config(&c, &manifest.string_annotations()))
        .unwrap_or_default();
    facts.digests = vec![root.to_string()];
    if manifest_digest != root {
        facts.digests.push(manifest_digest.to_string());
    }
    facts
}

/// Reads the image an OCI layout's index names (the host platform's manifest).
pub fn read(
    layout: &OciLayout,
    limits: &Limits,
    tree: &mut FileTree,
    diag: &mut Diagnostics,
) -> anyhow::Result<ImageMeta> {
    read_image(layout, &layout_root(layout)?, limits, tree, diag)
}

/// Follows a descriptor (index or manifest) through nested indexes to the host platform's
/// manifest. Returns (manifest digest, manifest).
pub fn resolve_manifest(
    store: &dyn BlobStore,
    root: &Descriptor,
) -> anyhow::Result<(String, meta::Manifest)> {
    let arch = meta::host_architecture();
    let mut desc = root.clone();
    for _ in 0..5 {
        match meta::parse_document(&read_blob(store, &desc)?)? {
            meta::Document::Manifest(m) => return Ok((desc.digest, m)),
            meta::Document::Index(i) => desc = meta::select_platform(&i.manifests, arch)?.clone(),
        }
    }
    bail!("image indexes nested more than 4 deep")
}

/// Reads the image a descriptor (index or manifest) points at into `tree`: through nested
/// indexes to the host platform's manifest, then every layer in order.
pub fn read_image(
    store: &dyn BlobStore,
    root: &Descriptor,
    limits: &Limits,
    tree: &mut FileTree,
    diag: &mut Diagnostics,
) -> anyhow::Result<ImageMeta> {
    let (manifest_digest, manifest) = resolve_manifest(store, root)?;
    for layer in &manifest.layers {
        let raw = store.open_hashed_blob(&layer.digest)?;
        apply_layer(raw, Some(&layer.digest), &layer.digest, limits, tree, diag)?;
    }
    Ok(ImageMeta {
        layers: manifest.layers.iter().map(|l| l.digest.clone()).collect(),
        facts: facts_of(store, &root.digest, &manifest_digest, &manifest),
    })
}

/// An image's metadata without its layers: the manifest and config only (a declared base).
pub fn read_meta(store: &dyn BlobStore, root: &Descriptor) -> anyhow::Result<ImageMeta> {
    let (manifest_digest, manifest) = resolve_manifest(store, root)?;
    Ok(ImageMeta {
        layers: manifest.layers.iter().map(|l| l.digest.clone()).collect(),
        facts: facts_of(store, &root.digest, &manifest_digest, &manifest),
    })
}

/// The descriptor an OCI layout's index names for the host platform.
pub fn layout_root(layout: &OciLayout) -> anyhow::Result<Descriptor> {
    let index = meta::parse_index(&layout.blobs.read_small("index.json")?)?;
    Ok(meta::select_platform(&index.manifests, meta::host_architecture())?.clone())
}

/// Reads one layer blob into a delta that can be cached: only wanted files, and shadowing
/// recorded for paths that can lead to one. Returns the delta and the bytes decompressed.
pub fn read_layer_delta(
    store: &dyn BlobStore,
    layer: &Descriptor,
    limits: &Limits,
    diag: &mut Diagnostics,
) -> anyhow::Result<(LayerDelta, u64)> {
    let label = layer.digest.as_str();
    let read = |src: &mut dyn EntrySource| cacheable_delta(src, label, limits, diag);
    stream_layer(
        store.open_hashed_blob(&layer.digest)?,
        Some(label),
        label,
        limits,
        read,
    )
}

/// One layer's entries into a delta that can be cached under the layer's digest, whatever
/// they are read from (a blob's tar stream, an unpacked snapshot directory): only wanted
/// files, and shadowing recorded for paths that can lead to one.
pub fn cacheable_delta(
    src: &mut dyn EntrySource,
    label: &str,
    limits: &Limits,
    diag: &mut Diagnostics,
) -> Result<LayerDelta, stalewatch_core::layer::LayerError> {
    let wants = |p: &str| catalog::wants(p);
    let relevant = |p: &str| catalog::wants(p) || catalog::wants_os_dir(p);
    LayerDelta::read_with(
        src,
        &wants,
        Some(&catalog::lang::BINARIES),
        &relevant,
        limits,
        label,
        diag,
    )
}

pub fn read_docker_archive(
    path: &Path,
    limits: &Limits,
    tree: &mut FileTree,
    diag: &mut Diagnostics,
) -> anyhow::Result<ImageMeta> {
    let (blobs, entry, meta) = docker_archive(path)?;
    for (layer, label) in entry.layers.iter().zip(&meta.layers) {
        // Newer docker writes layers as `blobs/sha256/<hex>`: the name is the digest.
        let digest = layer.strip_prefix("blobs/sha256/").map(|h| format!("sha256:{h}"));
        let blob = HashedBlob::hashed_by_reader(blobs.open(layer)?);
        apply_layer(blob, digest.as_deref(), label, limits, tree, diag)?;
    }
    Ok(meta)
}

/// A docker archive's first image and its metadata. Its layers are plain tars, each labelled
/// by its digest (a `blobs/sha256/` name, else the config's diff_id); the image is known by
/// its config's digest (docker's image ID).
pub fn docker_archive(path: &Path) -> anyhow::Result<(Blobs, meta::DockerArchiveEntry, ImageMeta)> {
    let blobs = Blobs::archive(path)?;
    let entries = meta::parse_docker_manifest(&blobs.read_small("manifest.json")?)?;
    let Some(entry) = entries.into_iter().next() else {
        bail!("{}: manifest.json lists no image", path.display())
    };
    let config = blobs.read_small(&entry.config).ok();
    let mut facts = config
        .as_deref()
        .and_then(|c| ImageFacts::from_config(c, &Default::default()))
        .unwrap_or_default();
    let layers = entry
        .layers
        .iter()
        .enumerate()
        .map(|(i, layer)| match layer.strip_prefix("blobs/sha256/") {
            Some(h) => format!("sha256:{h}"),
            None => facts.diff_ids.get(i).cloned().unwrap_or_else(|| layer.clone()),
        })
        .collect();
    if let Some(c) = &config {
        facts.digests = vec![format!("sha256:{}", hex::encode(Sha256::digest(c)))];
    }
    Ok((blobs, entry, ImageMeta { layers, facts }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_paths_never_leave_the_layout() {
        let tmp = tempfile::tempdir().unwrap();
        let layout = tmp.path().join("layout");
        std::fs::create_dir(&layout).unwrap();
        std::fs::write(tmp.path().join("secret"), b"not the layout's").unwrap();
        std::fs::write(layout.join("index.json"), b"{}").unwrap();
        let dir = Blobs::Dir(layout);
        assert_eq!(dir.read_small("index.json").unwrap(), b"{}");
        for escape in ["../secret", "/etc/hostname", "blobs/../../secret"] {
            let err = dir
                .open(escape)
                .err()
                .unwrap_or_else(|| panic!("{escape} was opened"));
            assert!(err.to_string().contains("bad member name"), "{escape}: {err}");
        }
    }
}
