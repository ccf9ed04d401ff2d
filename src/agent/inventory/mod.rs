//! The inventory owner: what runs on the node. It lists containerd's running containers
//! (with their CRI metadata), learns the chain ID of every image on the node, and says which
//! image each container really runs (a stale digest when its name moved on). The connection
//! to containerd, with its event stream, is `connection`.

pub mod connection;
pub mod running;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use crate::containerd::Containerd;
use running::RunningContainer;

#[derive(Default)]
pub struct ContainerInventory {
    proc_root: PathBuf,
    pub running: Vec<RunningContainer>,
    /// Whether containerd has listed what runs at least once (before that, an empty list
    /// means "unknown", not "nothing runs").
    pub listed_once: bool,
    /// Chain IDs of the image digests on the node (`None`: not computable).
    chains: BTreeMap<String, Option<String>>,
}

impl ContainerInventory {
    pub fn new(proc_root: PathBuf) -> ContainerInventory {
        ContainerInventory {
            proc_root,
            ..Default::default()
        }
    }

    /// Lists what runs now; on failure the last list stands.
    pub async fn list(&mut self, client: &Containerd) -> anyhow::Result<()> {
        self.running = running::list_running(client, &self.proc_root).await?;
        self.listed_once = true;
        tracing::debug!("{} running containers", self.running.len());
        Ok(())
    }

    /// The image digests running containers need.
    pub fn wanted_images(&self) -> BTreeSet<String> {
        self.running
            .iter()
            .filter_map(|r| r.image_digest.clone())
            .collect()
    }

    /// Learns the chain ID of every image on the node (once per digest: two small reads,
    /// unless `cached_chain` knows it), then which image each running container really runs.
    /// `cached` lists image digests whose inventories the agent keeps beyond `targets`.
    pub async fn resolve(
        &mut self,
        client: &Containerd,
        targets: &[String],
        cached: &[String],
        cached_chain: &dyn Fn(&str) -> Option<String>,
    ) {
        let on_node: BTreeSet<&String> = targets.iter().collect();
        self.chains.retain(|d, _| on_node.contains(d));
        for d in targets {
            if self.chains.contains_key(d) {
                continue;
            }
            let chain = match cached_chain(d) {
                Some(c) => Some(c),
                None => chain_from_store(client, d).await,
            };
            self.chains.insert(d.clone(), chain);
        }
        // Images the node still lists first, then inventories this agent kept.
        let mut known: Vec<String> = targets.to_vec();
        known.sort();
        known.dedup();
        known.extend(cached.iter().filter(|d| !on_node.contains(d)).cloned());
        let chains = &self.chains;
        let chain_of =
            |d: &str| -> Option<String> { chains.get(d).cloned().flatten().or_else(|| cached_chain(d)) };
        running::resolve_running(&mut self.running, &known, &chain_of);
    }
}

/// An image's chain ID read from the content store (blocking reads, off the workers).
async fn chain_from_store(client: &Containerd, digest: &str) -> Option<String> {
    let (c, h, d) = (
        client.clone(),
        tokio::runtime::Handle::current(),
        digest.to_string(),
    );
    match tokio::task::spawn_blocking(move || super::images::read::chain_of(&c, h, &d)).await {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => {
            tracing::debug!(image = %digest, "chain ID: {e:#}");
            None
        }
        Err(_) => None,
    }
}
