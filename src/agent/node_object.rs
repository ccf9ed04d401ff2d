//! The agent's own Node object (`--node-scan` with the Kubernetes API): the AKS node image it
//! was built from (`kubernetes.azure.com/node-image-version`, `kubernetes.azure.com/os-sku`)
//! and what the kubelet reports (`status.nodeInfo`: `osImage`, `kernelVersion`,
//! `containerRuntimeVersion`). Read by a task of its own at start and every ten minutes — an
//! API server that hangs never holds a scan — and kept: a failed read keeps the last good one.
//! RBAC: `get` on nodes, cluster-wide (a DaemonSet cannot name its node in `resourceNames`).

use std::time::Duration;

use k8s_openapi::api::core::v1::Node;
use kube::Api;
use tokio::sync::watch;

use super::config::KubeAccess;
use super::events::kube::client;

/// How often the Node object is read again (a node image changes only when the node is
/// replaced, its labels rarely).
const EVERY: Duration = Duration::from_secs(600);
/// After a failed read.
const RETRY: Duration = Duration::from_secs(60);

/// What the Node object says of the node (each `None` where it says nothing).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeObject {
    pub node_image: Option<String>,
    pub os_sku: Option<String>,
    pub os_image: Option<String>,
    pub kernel_version: Option<String>,
    pub container_runtime: Option<String>,
}

/// The last read, and why the last attempt failed (cleared by a good read).
#[derive(Debug, Clone, Default)]
pub struct NodeObjectState {
    pub object: Option<NodeObject>,
    pub error: Option<String>,
}

/// Starts the reader of `node`'s object; its state is read at each publish.
pub fn start(access: KubeAccess, node: String) -> watch::Receiver<NodeObjectState> {
    let (tx, rx) = watch::channel(NodeObjectState::default());
    tokio::spawn(async move {
        let mut api: Option<Api<Node>> = None;
        loop {
            let read = async {
                if api.is_none() {
                    api = Some(Api::all(client(&access).await?));
                }
                let node = api.as_ref().expect("set above").get(&node).await?;
                anyhow::Ok(from_node(&node))
            };
            let wait = match read.await {
                Ok(object) => {
                    tx.send_modify(|s| {
                        s.object = Some(object);
                        s.error = None;
                    });
                    EVERY
                }
                Err(e) => {
                    let error = format!("read the Node object {node}: {e:#}");
                    tracing::warn!(%error, "node object");
                    tx.send_modify(|s| s.error = Some(error));
                    RETRY
                }
            };
            if tx.is_closed() {
                return;
            }
            tokio::time::sleep(wait).await;
        }
    });
    rx
}

fn from_node(node: &Node) -> NodeObject {
    let label = |k: &str| node.metadata.labels.as_ref().and_then(|l| l.get(k)).cloned();
    let info = node.status.as_ref().and_then(|s| s.node_info.as_ref());
    let nonempty = |s: &str| (!s.is_empty()).then(|| s.to_string());
    NodeObject {
        node_image: label("kubernetes.azure.com/node-image-version"),
        os_sku: label("kubernetes.azure.com/os-sku"),
        os_image: info.and_then(|i| nonempty(&i.os_image)),
        kernel_version: info.and_then(|i| nonempty(&i.kernel_version)),
        container_runtime: info.and_then(|i| nonempty(&i.container_runtime_version)),
    }
}
