//! The containerd client: one accessor per gRPC service, the namespace sent as request
//! metadata, and the content store as a [`BlobStore`] for the (synchronous) image reader.

use anyhow::Context;
use containerd_client::services::v1::containers_client::ContainersClient;
use containerd_client::services::v1::content_client::ContentClient;
use containerd_client::services::v1::events_client::EventsClient;
use containerd_client::services::v1::images_client::ImagesClient;
use containerd_client::services::v1::tasks_client::TasksClient;
use containerd_client::services::v1::{
    Container, GetImageRequest, Image, ListContainersRequest, ListTasksRequest, SubscribeRequest,
};
use containerd_client::types::v1::{Process, Status};
use containerd_client::types::Envelope;
use std::path::Path;
use tonic::transport::Channel;

use stalewatch_core::image::Descriptor;

pub mod view;

/// What a containerd call can fail with: typed, so callers branch on the kind (a blob that
/// is not in the content store) instead of on message text.
#[derive(Debug, thiserror::Error)]
pub enum ContainerdError {
    #[error("cannot connect to containerd at {}: {detail}", address.display())]
    Connect {
        address: std::path::PathBuf,
        detail: String,
    },
    #[error("{what}: {message}")]
    Call {
        what: String,
        code: tonic::Code,
        message: String,
    },
    /// The content store has no such blob (`discard_unpacked_layers`, or removed by hand).
    #[error("read blob {digest}: not found in the content store ({message})")]
    BlobMissing { digest: String, message: String },
    #[error("read blob {digest}: {message}")]
    BlobRead { digest: String, message: String },
}

impl ContainerdError {
    fn call(what: impl Into<String>, s: tonic::Status) -> ContainerdError {
        ContainerdError::Call {
            what: what.into(),
            code: s.code(),
            message: s.message().to_string(),
        }
    }

    pub fn blob(digest: &str, s: &tonic::Status) -> ContainerdError {
        let (digest, message) = (digest.to_string(), s.message().to_string());
        match s.code() {
            tonic::Code::NotFound => ContainerdError::BlobMissing { digest, message },
            _ => ContainerdError::BlobRead { digest, message },
        }
    }
}

#[derive(Clone)]
pub struct Containerd {
    channel: Channel,
    namespace: String,
}

impl Containerd {
    pub async fn connect(address: &Path, namespace: &str) -> anyhow::Result<Self> {
        let channel = containerd_client::connect(address)
            .await
            .map_err(|e| ContainerdError::Connect {
                address: address.to_path_buf(),
                detail: source_chain(&e),
            })?;
        Ok(Containerd {
            channel,
            namespace: namespace.to_string(),
        })
    }

    pub fn request<T>(&self, msg: T) -> tonic::Request<T> {
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
        .map_err(|s| ContainerdError::call(format!("snapshot {key} mounts"), s))?;
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
        .map_err(|s| ContainerdError::call(format!("snapshot {key}"), s))?;
        Ok(resp.into_inner().info.map(|i| i.parent).filter(|p| !p.is_empty()))
    }

    /// containerd's version (also a cheap liveness check).
    pub async fn version(&self) -> anyhow::Result<String> {
        let resp = containerd_client::services::v1::version_client::VersionClient::new(self.channel.clone())
            .version(())
            .await
            .map_err(|s| ContainerdError::call("containerd version", s))?;
        Ok(resp.into_inner().version)
    }

    /// The digests every image record of the namespace points at.
    /// Every image of the namespace: (name, target digest).
    pub async fn list_images(&self) -> anyhow::Result<Vec<(String, String)>> {
        let resp = self
            .images()
            .list(self.request(containerd_client::services::v1::ListImagesRequest { filters: vec![] }))
            .await
            .map_err(|s| ContainerdError::call("list images", s))?;
        Ok(resp
            .into_inner()
            .images
            .into_iter()
            .filter_map(|i| Some((i.name, i.target?.digest)))
            .collect())
    }

    /// Every container record of the namespace.
    pub async fn list_containers(&self) -> anyhow::Result<Vec<Container>> {
        let resp = self
            .containers()
            .list(self.request(ListContainersRequest { filters: vec![] }))
            .await
            .map_err(|s| ContainerdError::call("list containers", s))?;
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
            .map_err(|s| ContainerdError::call("list tasks", s))?;
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
            .map_err(|s| ContainerdError::call("subscribe to events", s))?;
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
                ContainerdError::call(format!("image {name:?} in namespace {}", self.namespace), s)
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

/// Whether a task counts as running (DESIGN.md: RUNNING or PAUSED).
pub fn task_is_running(p: &Process) -> bool {
    matches!(
        Status::try_from(p.status),
        Ok(Status::Running | Status::Paused | Status::Pausing)
    )
}
