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
use std::future::Future;
use std::path::Path;
use std::time::Duration;
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
    /// containerd accepted the call and did not answer in time (frozen, overloaded).
    #[error("{what}: containerd did not answer within {}", humantime::format_duration(*after))]
    Deadline { what: String, after: Duration },
}

/// How long one containerd call may take by default (`--containerd-timeout`).
pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(30);

/// The largest reply accepted from containerd: its own default send limit. Container records
/// carry whole OCI specs (seccomp profiles, service-link variables): far beyond tonic's 4 MiB.
const MAX_REPLY: usize = 16 << 20;

impl ContainerdError {
    fn call(what: impl Into<String>, s: tonic::Status) -> ContainerdError {
        ContainerdError::Call {
            what: what.into(),
            code: s.code(),
            message: s.message().to_string(),
        }
    }

    /// A short, stable name of the failure for a metric label: `deadline`, `too_large`,
    /// `unavailable` or `error`.
    pub fn reason(&self) -> &'static str {
        match self {
            ContainerdError::Deadline { .. } => "deadline",
            ContainerdError::Connect { .. } => "unavailable",
            ContainerdError::Call { code, .. } => match code {
                tonic::Code::DeadlineExceeded => "deadline",
                // tonic refuses a reply over the decoding limit with OutOfRange; containerd a
                // request or reply over its own with ResourceExhausted.
                tonic::Code::OutOfRange | tonic::Code::ResourceExhausted => "too_large",
                tonic::Code::Unavailable | tonic::Code::Cancelled => "unavailable",
                _ => "error",
            },
            ContainerdError::BlobMissing { .. } | ContainerdError::BlobRead { .. } => "error",
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
    /// How long one call may take: a containerd that accepts connections and never answers
    /// is an outage, never a wedged caller.
    deadline: Duration,
}

impl Containerd {
    /// Connects with the default per-call deadline.
    pub async fn connect(address: &Path, namespace: &str) -> anyhow::Result<Self> {
        Containerd::connect_within(address, namespace, DEFAULT_DEADLINE).await
    }

    /// Connects; every call then fails with [`ContainerdError::Deadline`] past `deadline`.
    pub async fn connect_within(address: &Path, namespace: &str, deadline: Duration) -> anyhow::Result<Self> {
        let connecting = containerd_client::connect(address);
        let channel = match tokio::time::timeout(deadline, connecting).await {
            Ok(c) => c.map_err(|e| ContainerdError::Connect {
                address: address.to_path_buf(),
                detail: source_chain(&e),
            })?,
            Err(_) => {
                return Err(ContainerdError::Deadline {
                    what: format!("connect to {}", address.display()),
                    after: deadline,
                }
                .into())
            }
        };
        Ok(Containerd {
            channel,
            namespace: namespace.to_string(),
            deadline,
        })
    }

    /// The per-call deadline.
    pub fn deadline(&self) -> Duration {
        self.deadline
    }

    /// Awaits one call within the deadline; its status or the deadline as a typed error.
    pub async fn within<T>(
        &self,
        what: impl FnOnce() -> String,
        call: impl Future<Output = Result<T, tonic::Status>>,
    ) -> Result<T, ContainerdError> {
        match tokio::time::timeout(self.deadline, call).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(s)) => Err(ContainerdError::call(what(), s)),
            Err(_) => Err(ContainerdError::Deadline {
                what: what(),
                after: self.deadline,
            }),
        }
    }

    pub fn request<T>(&self, msg: T) -> tonic::Request<T> {
        let mut req = tonic::Request::new(msg);
        if let Ok(v) = self.namespace.parse() {
            req.metadata_mut().insert("containerd-namespace", v);
        }
        req
    }

    pub fn images(&self) -> ImagesClient<Channel> {
        ImagesClient::new(self.channel.clone()).max_decoding_message_size(MAX_REPLY)
    }

    pub fn content(&self) -> ContentClient<Channel> {
        ContentClient::new(self.channel.clone()).max_decoding_message_size(MAX_REPLY)
    }

    pub fn containers(&self) -> ContainersClient<Channel> {
        ContainersClient::new(self.channel.clone()).max_decoding_message_size(MAX_REPLY)
    }

    pub fn tasks(&self) -> TasksClient<Channel> {
        TasksClient::new(self.channel.clone()).max_decoding_message_size(MAX_REPLY)
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
        let mut client = containerd_client::services::v1::snapshots::snapshots_client::SnapshotsClient::new(
            self.channel.clone(),
        );
        let resp = self
            .within(
                || format!("snapshot {key} mounts"),
                client.mounts(self.request(req)),
            )
            .await?;
        Ok(resp.into_inner().mounts)
    }

    /// The parent of a snapshot: for a container's snapshot, the chain ID of the image's top
    /// layer it was created from.
    pub async fn snapshot_parent(&self, snapshotter: &str, key: &str) -> anyhow::Result<Option<String>> {
        let req = containerd_client::services::v1::snapshots::StatSnapshotRequest {
            snapshotter: snapshotter.to_string(),
            key: key.to_string(),
        };
        let mut client = containerd_client::services::v1::snapshots::snapshots_client::SnapshotsClient::new(
            self.channel.clone(),
        );
        let resp = self
            .within(|| format!("snapshot {key}"), client.stat(self.request(req)))
            .await?;
        Ok(resp.into_inner().info.map(|i| i.parent).filter(|p| !p.is_empty()))
    }

    /// containerd's version (also a cheap liveness check).
    pub async fn version(&self) -> anyhow::Result<String> {
        let mut client =
            containerd_client::services::v1::version_client::VersionClient::new(self.channel.clone());
        let resp = self
            .within(|| "containerd version".to_string(), client.version(()))
            .await?;
        Ok(resp.into_inner().version)
    }

    /// Every image of the namespace: (name, target digest).
    pub async fn list_images(&self) -> Result<Vec<(String, String)>, ContainerdError> {
        let mut client = self.images();
        let req = self.request(containerd_client::services::v1::ListImagesRequest { filters: vec![] });
        let resp = self
            .within(|| "list images".to_string(), client.list(req))
            .await?;
        Ok(resp
            .into_inner()
            .images
            .into_iter()
            .filter_map(|i| Some((i.name, i.target?.digest)))
            .collect())
    }

    /// Every container record of the namespace, streamed one record per message
    /// (`Containers.ListStream`): one `List` reply holds every spec at once and outgrows any
    /// message limit on a busy node. The whole listing shares one deadline. A containerd
    /// without the stream (none since 1.3) is asked with `List`.
    pub async fn list_containers(&self) -> Result<Vec<Container>, ContainerdError> {
        let what = || "list containers".to_string();
        let listing = async {
            let mut client = self.containers();
            let req = self.request(ListContainersRequest { filters: vec![] });
            let mut stream = match client.list_stream(req).await {
                Ok(r) => r.into_inner(),
                Err(s) if s.code() == tonic::Code::Unimplemented => {
                    let req = self.request(ListContainersRequest { filters: vec![] });
                    return client.list(req).await.map(|r| r.into_inner().containers);
                }
                Err(s) => return Err(s),
            };
            let mut out = Vec::new();
            while let Some(msg) = stream.message().await? {
                out.extend(msg.container);
            }
            Ok(out)
        };
        self.within(what, listing).await
    }

    /// Every task of the namespace.
    pub async fn list_tasks(&self) -> Result<Vec<Process>, ContainerdError> {
        let mut client = self.tasks();
        let req = self.request(ListTasksRequest {
            filter: String::new(),
        });
        let resp = self.within(|| "list tasks".to_string(), client.list(req)).await?;
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
        let mut client = self.images();
        let req = self.request(GetImageRequest {
            name: name.to_string(),
        });
        let resp = self
            .within(
                || format!("image {name:?} in namespace {}", self.namespace),
                client.get(req),
            )
            .await?;
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
