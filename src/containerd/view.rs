//! Read-only snapshot views: an image's unpacked layers mounted nowhere, only described, so
//! an image that no container runs can be read when its layer blobs are gone. The one write
//! the agent makes to containerd: a lease that expires, and a view snapshot under it, both
//! removed after the read (the lease's expiry collects them if the agent dies first).

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use containerd_client::services::v1::leases_client::LeasesClient;
use containerd_client::services::v1::snapshots::snapshots_client::SnapshotsClient;
use containerd_client::services::v1::snapshots::{RemoveSnapshotRequest, ViewSnapshotRequest};
use containerd_client::services::v1::{CreateRequest, DeleteRequest};
use containerd_client::types::Mount;

use super::Containerd;

/// containerd's default snapshotter on Linux: views are made with it when nothing names another.
pub const DEFAULT_SNAPSHOTTER: &str = "overlayfs";
/// How long a view may outlive the agent before containerd's garbage collector removes it.
pub const VIEW_LEASE_TTL: Duration = Duration::from_secs(600);
/// Labels on the lease, so an operator can tell what made it.
const LEASE_LABEL_EXPIRE: &str = "containerd.io/gc.expire";
const LEASE_LABEL_OWNER: &str = "stalewatch.io/purpose";
const LEASE_HEADER: &str = "containerd-lease";

/// A view made for one read: its mounts, and what to remove after the read.
pub struct SnapshotView {
    client: Containerd,
    snapshotter: String,
    key: String,
    lease: String,
    pub mounts: Vec<Mount>,
}

impl Containerd {
    /// Views the snapshot `parent` (an image's chain ID) read-only under a new lease that
    /// expires after [`VIEW_LEASE_TTL`].
    pub async fn view_snapshot(&self, snapshotter: &str, parent: &str) -> anyhow::Result<SnapshotView> {
        let now = SystemTime::now();
        let nanos = now
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        let short = parent.trim_start_matches("sha256:").get(..12).unwrap_or(parent);
        let id = format!("stalewatch-view-{short}-{nanos}");
        let expire = humantime::format_rfc3339_seconds(now + VIEW_LEASE_TTL).to_string();
        let labels = HashMap::from([
            (LEASE_LABEL_EXPIRE.to_string(), expire),
            (LEASE_LABEL_OWNER.to_string(), "image-read".to_string()),
        ]);
        let mut leases = LeasesClient::new(self.channel.clone());
        let req = self.request(CreateRequest {
            id: id.clone(),
            labels,
        });
        self.within(|| format!("create lease {id}"), leases.create(req))
            .await?;
        let mut req = self.request(ViewSnapshotRequest {
            snapshotter: snapshotter.to_string(),
            key: id.clone(),
            parent: parent.to_string(),
            labels: HashMap::new(),
        });
        if let Ok(v) = id.parse() {
            req.metadata_mut().insert(LEASE_HEADER, v);
        }
        let view = SnapshotView {
            client: self.clone(),
            snapshotter: snapshotter.to_string(),
            key: id.clone(),
            lease: id.clone(),
            mounts: Vec::new(),
        };
        let mut snapshots = SnapshotsClient::new(self.channel.clone());
        let viewing = self.within(
            || format!("view snapshot {parent} ({snapshotter})"),
            snapshots.view(req),
        );
        match viewing.await {
            Ok(resp) => Ok(SnapshotView {
                mounts: resp.into_inner().mounts,
                ..view
            }),
            Err(e) => {
                // No snapshot was made (or, past the deadline, the lease's expiry collects
                // it): the lease goes now.
                let _ = view.delete_lease().await;
                Err(e.into())
            }
        }
    }
}

impl SnapshotView {
    /// Removes the view and its lease. Either failing leaves the lease's expiry to collect it.
    pub async fn remove(self) -> anyhow::Result<()> {
        let mut snapshots = SnapshotsClient::new(self.client.channel.clone());
        let req = self.client.request(RemoveSnapshotRequest {
            snapshotter: self.snapshotter.clone(),
            key: self.key.clone(),
        });
        let removed = self
            .client
            .within(|| format!("remove view {}", self.key), snapshots.remove(req))
            .await;
        let deleted = self.delete_lease().await;
        removed?;
        deleted
    }

    async fn delete_lease(&self) -> anyhow::Result<()> {
        let mut leases = LeasesClient::new(self.client.channel.clone());
        let req = self.client.request(DeleteRequest {
            id: self.lease.clone(),
            sync: false,
        });
        self.client
            .within(|| format!("delete lease {}", self.lease), leases.delete(req))
            .await?;
        Ok(())
    }
}
