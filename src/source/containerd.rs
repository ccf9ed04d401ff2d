//! containerd's content store as an image source: blobs read through `Content.Read` streams,
//! bridged to the synchronous image reader through a bounded channel, and `scan
//! containerd:NAME`'s reader. No registry is contacted; only what the node holds is read.

use anyhow::{bail, Context};
use containerd_client::services::v1::ReadContentRequest;
use sha2::{Digest, Sha256};
use std::io::{self, Read};
use std::path::Path;
use std::sync::{Arc, OnceLock};
use tokio_stream::StreamExt;

use crate::containerd::{Containerd, ContainerdError};
use crate::source::image::{BlobStore, HashedBlob};

/// Chunks of a blob in flight between the gRPC stream and the reader (containerd sends
/// 1 MiB messages): bounds memory per blob read to a few MiB whatever the blob's size.
const CHUNKS_IN_FLIGHT: usize = 4;

/// containerd's content store, read blob by blob through `Content.Read` streams.
pub struct ContentStore {
    pub client: Containerd,
    pub runtime: tokio::runtime::Handle,
}

impl BlobStore for ContentStore {
    fn open_blob(&self, digest: &str) -> anyhow::Result<Box<dyn Read + Send>> {
        self.stream(digest, None)
    }

    /// The gRPC task hashes each chunk as it arrives: on another core than the reader's,
    /// whose inflate is a layer read's longest step (issue 31).
    fn open_hashed_blob(&self, digest: &str) -> anyhow::Result<HashedBlob> {
        let sha256 = Arc::new(OnceLock::new());
        Ok(HashedBlob {
            reader: self.stream(digest, Some(sha256.clone()))?,
            sha256,
        })
    }
}

impl ContentStore {
    /// A blob's `Content.Read` stream, hashed into `sha256` by the task when asked (set once
    /// the whole blob has been sent, before the reader sees its end).
    fn stream(
        &self,
        digest: &str,
        sha256: Option<Arc<OnceLock<[u8; 32]>>>,
    ) -> anyhow::Result<Box<dyn Read + Send>> {
        stalewatch_core::image::Digest::parse(digest)?;
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, ContainerdError>>(CHUNKS_IN_FLIGHT);
        let client = self.client.clone();
        let digest = digest.to_string();
        self.runtime.spawn(async move {
            let req = client.request(ReadContentRequest {
                digest: digest.clone(),
                offset: 0,
                size: 0,
            });
            // Each step (the call, then every chunk) within the client's deadline: a frozen
            // containerd fails the read instead of holding a scan slot.
            let stalled = || ContainerdError::Deadline {
                what: format!("read blob {digest}"),
                after: client.deadline(),
            };
            let mut content = client.content();
            let mut stream = match tokio::time::timeout(client.deadline(), content.read(req)).await {
                Ok(Ok(r)) => r.into_inner(),
                Ok(Err(s)) => {
                    let _ = tx.send(Err(ContainerdError::blob(&digest, &s))).await;
                    return;
                }
                Err(_) => {
                    let _ = tx.send(Err(stalled())).await;
                    return;
                }
            };
            let mut hasher = sha256.as_ref().map(|_| Sha256::new());
            loop {
                let item = match tokio::time::timeout(client.deadline(), stream.next()).await {
                    Ok(Some(item)) => item,
                    Ok(None) => {
                        if let (Some(h), Some(out)) = (hasher, &sha256) {
                            let _ = out.set(h.finalize().into());
                        }
                        return;
                    }
                    Err(_) => {
                        let _ = tx.send(Err(stalled())).await;
                        return;
                    }
                };
                let msg = item
                    .map(|r| r.data)
                    .map_err(|s| ContainerdError::blob(&digest, &s));
                if let (Some(h), Ok(chunk)) = (hasher.as_mut(), &msg) {
                    h.update(chunk);
                }
                let failed = msg.is_err();
                // A closed channel means the reader stopped early: stop streaming.
                if tx.send(msg).await.is_err() || failed {
                    return;
                }
            }
        });
        Ok(Box::new(ChannelReader {
            rx,
            buf: Vec::new(),
            pos: 0,
        }))
    }
}

/// The synchronous end of a blob stream (used from a non-async thread).
struct ChannelReader {
    rx: tokio::sync::mpsc::Receiver<Result<Vec<u8>, ContainerdError>>,
    buf: Vec<u8>,
    pos: usize,
}

impl Read for ChannelReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.buf.len() {
            match self.rx.blocking_recv() {
                None => return Ok(0),
                Some(Ok(chunk)) => {
                    self.buf = chunk;
                    self.pos = 0;
                }
                Some(Err(e)) => return Err(io::Error::other(e)),
            }
        }
        let n = out.len().min(self.buf.len() - self.pos);
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// Resolves `name` in containerd and reads the image into a tree (blocking; runs the gRPC
/// streams on `runtime`). When the node discarded the layer blobs after unpacking them, the
/// layers are read from a read-only view of the image's snapshot, named by the manifest's
/// digests as the blobs would be.
pub fn read_image(
    address: &Path,
    namespace: &str,
    name: &str,
    limits: &stalewatch_core::layer::Limits,
    tree: &mut stalewatch_core::layer::FileTree,
    diag: &mut stalewatch_core::layer::Diagnostics,
) -> anyhow::Result<super::image::ImageMeta> {
    let (rt, store, target) = open_image(address, namespace, name)?;
    // A fresh tree each way: a read that stops at a missing blob leaves nothing half-applied.
    let (mut from_blobs, mut blob_diag) = (stalewatch_core::layer::FileTree::new(), Default::default());
    let mut meta = match super::image::read_image(&store, &target, limits, &mut from_blobs, &mut blob_diag) {
        Ok(meta) => {
            (*tree, *diag) = (from_blobs, blob_diag);
            meta
        }
        Err(e) if blob_missing(&e) => {
            let meta = super::image::read_meta(&store, &target)?;
            read_from_view(&rt, &store.client, &meta, limits, tree, diag).with_context(|| {
                format!("the layer blobs of {name} are gone ({e:#}); reading its snapshot")
            })?;
            meta
        }
        Err(e) => return Err(e),
    };
    meta.facts.names = vec![name.to_string()];
    drop(store);
    drop(rt);
    Ok(meta)
}

/// Whether an error says a blob is not in the content store.
fn blob_missing(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        let typed = c
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            .and_then(|i| i.downcast_ref::<ContainerdError>());
        matches!(
            c.downcast_ref::<ContainerdError>().or(typed),
            Some(ContainerdError::BlobMissing { .. })
        )
    })
}

/// Reads an image's layers from a read-only view of its snapshot (made, read, removed).
fn read_from_view(
    rt: &tokio::runtime::Runtime,
    client: &Containerd,
    meta: &super::image::ImageMeta,
    limits: &stalewatch_core::layer::Limits,
    tree: &mut stalewatch_core::layer::FileTree,
    diag: &mut stalewatch_core::layer::Diagnostics,
) -> anyhow::Result<()> {
    let chain =
        stalewatch_core::image::chain_id(&meta.facts.diff_ids).context("the image config names no layers")?;
    let view = rt.block_on(client.view_snapshot(crate::containerd::view::DEFAULT_SNAPSHOTTER, &chain))?;
    let dirs = super::overlay::lower_dirs_of(&view.mounts);
    let read = (|| {
        let dirs = dirs?;
        anyhow::ensure!(
            dirs.len() == meta.layers.len(),
            "the snapshot has {} layer directories, the manifest {} layers",
            dirs.len(),
            meta.layers.len()
        );
        super::overlay::read_layers_as(&dirs, &meta.layers, tree, limits, diag)?;
        Ok(())
    })();
    if let Err(e) = rt.block_on(view.remove()) {
        eprintln!("stalewatch: removing the snapshot view: {e:#} (its lease expires)");
    }
    read
}

/// An image's metadata (manifest, config) without its layers.
pub fn read_meta(address: &Path, namespace: &str, name: &str) -> anyhow::Result<super::image::ImageMeta> {
    let (_rt, store, target) = open_image(address, namespace, name)?;
    let mut meta = super::image::read_meta(&store, &target)?;
    meta.facts.names = vec![name.to_string()];
    Ok(meta)
}

/// A runtime for the synchronous reader, the content store, and the image's target.
fn open_image(
    address: &Path,
    namespace: &str,
    name: &str,
) -> anyhow::Result<(
    tokio::runtime::Runtime,
    ContentStore,
    stalewatch_core::image::Descriptor,
)> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let (client, target) = rt.block_on(async {
        let client = Containerd::connect(address, namespace).await?;
        let image = client.image(name).await?;
        let target = Containerd::target(&image)?;
        Ok::<_, anyhow::Error>((client, target))
    })?;
    if target.digest.is_empty() {
        bail!("image {name} has an empty target");
    }
    let store = ContentStore {
        client,
        runtime: rt.handle().clone(),
    };
    Ok((rt, store, target))
}
