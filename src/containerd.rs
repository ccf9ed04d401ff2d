//! The containerd client: one accessor per gRPC service, the namespace sent as request
//! metadata, and the content store as a [`BlobStore`] for the (synchronous) image reader.

use anyhow::{bail, Context};
use containerd_client::services::v1::containers_client::ContainersClient;
use containerd_client::services::v1::content_client::ContentClient;
use containerd_client::services::v1::events_client::EventsClient;
use containerd_client::services::v1::images_client::ImagesClient;
use containerd_client::services::v1::tasks_client::TasksClient;
use containerd_client::services::v1::{
    Container, GetImageRequest, Image, ListContainersRequest, ListTasksRequest, ReadContentRequest,
    SubscribeRequest,
};
use containerd_client::types::v1::{Process, Status};
use containerd_client::types::Envelope;
use std::io::{self, Read};
use std::path::Path;
use tokio_stream::StreamExt;
use tonic::transport::Channel;

use stalewatch_core::image::Descriptor;

use crate::scan::image::BlobStore;

/// Chunks of a blob in flight between the gRPC stream and the reader (containerd sends
/// 1 MiB messages): bounds memory per blob read to a few MiB whatever the blob's size.
const CHUNKS_IN_FLIGHT: usize = 4;

#[derive(Clone)]
pub struct Containerd {
    channel: Channel,
    namespace: String,
}

impl Containerd {
    pub async fn connect(address: &Path, namespace: &str) -> anyhow::Result<Self> {
        let channel = containerd_client::connect(address).await.map_err(|e| {
            anyhow::anyhow!(
                "cannot connect to containerd at {}: {}",
                address.display(),
                source_chain(&e)
            )
        })?;
        Ok(Containerd {
            channel,
            namespace: namespace.to_string(),
        })
    }

    fn request<T>(&self, msg: T) -> tonic::Request<T> {
        let mut req = tonic::Request::new(msg);
        if let Ok(v) = self.namespace.parse() {
            req.metadata_mut().insert("containerd-namespace", v);
        }
        req
    }

    pub fn images(&self) -> ImagesClient<Channel> {
        ImagesClient::new(self.channel.clone())
    }

    pub fn content(&self) -> ContentClient<Channel> {
        ContentClient::new(self.channel.clone()).max_decoding_message_size(16 << 20)
    }

    pub fn containers(&self) -> ContainersClient<Channel> {
        ContainersClient::new(self.channel.clone())
    }

    pub fn tasks(&self) -> TasksClient<Channel> {
        TasksClient::new(self.channel.clone())
    }

    pub fn events(&self) -> EventsClient<Channel> {
        EventsClient::new(self.channel.clone())
    }

    /// The mounts of a snapshot (what containerd would mount as the container's root).
    pub async fn snapshot_mounts(
        &self,
        snapshotter: &str,
        key: &str,
    ) -> anyhow::Result<Vec<containerd_client::types::Mount>> {
        let req = containerd_client::services::v1::snapshots::MountsRequest {
            snapshotter: snapshotter.to_string(),
            key: key.to_string(),
        };
        let resp = containerd_client::services::v1::snapshots::snapshots_client::SnapshotsClient::new(
            self.channel.clone(),
        )
        .mounts(self.request(req))
        .await
        .map_err(|s| anyhow::anyhow!("snapshot {key} mounts: {}", s.message()))?;
        Ok(resp.into_inner().mounts)
    }

    /// The parent of a snapshot: for a container's snapshot, the chain ID of the image's top
    /// layer it was created from.
    pub async fn snapshot_parent(&self, snapshotter: &str, key: &str) -> anyhow::Result<Option<String>> {
        let req = containerd_client::services::v1::snapshots::StatSnapshotRequest {
            snapshotter: snapshotter.to_string(),
            key: key.to_string(),
        };
        let resp = containerd_client::services::v1::snapshots::snapshots_client::SnapshotsClient::new(
            self.channel.clone(),
        )
        .stat(self.request(req))
        .await
        .map_err(|s| anyhow::anyhow!("snapshot {key}: {}", s.message()))?;
        Ok(resp.into_inner().info.map(|i| i.parent).filter(|p| !p.is_empty()))
    }

    /// containerd's version (also a cheap liveness check).
    pub async fn version(&self) -> anyhow::Result<String> {
        let resp = containerd_client::services::v1::version_client::VersionClient::new(self.channel.clone())
            .version(())
            .await
            .map_err(|s| anyhow::anyhow!("containerd version: {}", s.message()))?;
        Ok(resp.into_inner().version)
    }

    /// The digests every image record of the namespace points at.
    pub async fn list_image_targets(&self) -> anyhow::Result<Vec<String>> {
        let resp = self
            .images()
            .list(self.request(containerd_client::services::v1::ListImagesRequest { filters: vec![] }))
            .await
            .map_err(|s| anyhow::anyhow!("list images: {}", s.message()))?;
        Ok(resp
            .into_inner()
            .images
            .into_iter()
            .filter_map(|i| i.target.map(|t| t.digest))
            .collect())
    }

    /// Every container record of the namespace.
    pub async fn list_containers(&self) -> anyhow::Result<Vec<Container>> {
        let resp = self
            .containers()
            .list(self.request(ListContainersRequest { filters: vec![] }))
            .await
            .map_err(|s| anyhow::anyhow!("list containers: {}", s.message()))?;
        Ok(resp.into_inner().containers)
    }

    /// Every task of the namespace.
    pub async fn list_tasks(&self) -> anyhow::Result<Vec<Process>> {
        let resp = self
            .tasks()
            .list(self.request(ListTasksRequest {
                filter: String::new(),
            }))
            .await
            .map_err(|s| anyhow::anyhow!("list tasks: {}", s.message()))?;
        Ok(resp.into_inner().tasks)
    }

    /// The event stream of this namespace.
    pub async fn subscribe(&self) -> anyhow::Result<tonic::Streaming<Envelope>> {
        let filter = format!("namespace=={}", self.namespace);
        let resp = self
            .events()
            .subscribe(SubscribeRequest {
                filters: vec![filter],
            })
            .await
            .map_err(|s| anyhow::anyhow!("subscribe to events: {}", s.message()))?;
        Ok(resp.into_inner())
    }

    /// The image record a name resolves to.
    pub async fn image(&self, name: &str) -> anyhow::Result<Image> {
        let resp = self
            .images()
            .get(self.request(GetImageRequest {
                name: name.to_string(),
            }))
            .await
            .map_err(|s| {
                anyhow::anyhow!("image {name:?} in namespace {}: {}", self.namespace, s.message())
            })?;
        resp.into_inner().image.context("containerd returned no image")
    }

    /// The descriptor an image record points at (index or manifest).
    pub fn target(image: &Image) -> anyhow::Result<Descriptor> {
        let t = image
            .target
            .as_ref()
            .with_context(|| format!("image {} has no target", image.name))?;
        Ok(Descriptor {
            media_type: t.media_type.clone(),
            digest: t.digest.clone(),
            size: t.size.max(0) as u64,
            platform: None,
        })
    }
}

fn source_chain(e: &dyn std::error::Error) -> String {
    let mut msg = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        let part = s.to_string();
        // tonic repeats the io error in its own message: say each cause once.
        if !msg.contains(&part) {
            msg.push_str(": ");
            msg.push_str(&part);
        }
        cur = s.source();
    }
    msg
}

/// containerd's content store, read blob by blob through `Content.Read` streams.
pub struct ContentStore {
    pub client: Containerd,
    pub runtime: tokio::runtime::Handle,
}

impl BlobStore for ContentStore {
    fn open_blob(&self, digest: &str) -> anyhow::Result<Box<dyn Read + Send>> {
        stalewatch_core::image::split_digest(digest)?;
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, String>>(CHUNKS_IN_FLIGHT);
        let client = self.client.clone();
        let digest = digest.to_string();
        self.runtime.spawn(async move {
            let req = client.request(ReadContentRequest {
                digest: digest.clone(),
                offset: 0,
                size: 0,
            });
            let mut stream = match client.content().read(req).await {
                Ok(r) => r.into_inner(),
                Err(s) => {
                    let _ = tx.send(Err(format!("read blob {digest}: {}", s.message()))).await;
                    return;
                }
            };
            while let Some(item) = stream.next().await {
                let msg = item
                    .map(|r| r.data)
                    .map_err(|s| format!("read blob {digest}: {}", s.message()));
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
    rx: tokio::sync::mpsc::Receiver<Result<Vec<u8>, String>>,
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
/// streams on `runtime`).
pub fn read_image(
    address: &Path,
    namespace: &str,
    name: &str,
    limits: &stalewatch_core::layer::Limits,
    tree: &mut stalewatch_core::layer::FileTree,
    diag: &mut stalewatch_core::layer::Diagnostics,
) -> anyhow::Result<()> {
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
    crate::scan::image::read_image(&store, &target, limits, tree, diag)?;
    Ok(())
}

/// Whether a task counts as running (DESIGN.md: RUNNING or PAUSED).
pub fn task_is_running(p: &Process) -> bool {
    matches!(
        Status::try_from(p.status),
        Ok(Status::Running | Status::Paused | Status::Pausing)
    )
}
