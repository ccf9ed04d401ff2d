//! The inventory owner: what runs on the node. It lists containerd's running containers
//! (with their CRI metadata), learns the chain ID of every image on the node, and says which
//! image each container really runs (a stale digest when its name moved on). The connection
//! to containerd, with its event stream, is `connection`.

pub mod connection;
pub mod running;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use stalewatch_core::lineage::ImageFacts;

use crate::agent::config::SandboxedRuntimes;
use crate::containerd::Containerd;
use running::RunningContainer;

#[derive(Default)]
pub struct ContainerInventory {
    proc_root: PathBuf,
    sandboxed: SandboxedRuntimes,
    pub running: Vec<RunningContainer>,
    /// Whether containerd has listed what runs at least once (before that, an empty list
    /// means "unknown", not "nothing runs").
    pub listed_once: bool,
    /// What the node's images are (chain, labels, created) by digest (`None`: unreadable),
    /// read once per digest; names as containerd lists them now.
    facts: BTreeMap<String, Option<ImageFacts>>,
    names: BTreeMap<String, Vec<String>>,
}

impl ContainerInventory {
    pub fn new(proc_root: PathBuf, sandboxed: SandboxedRuntimes) -> ContainerInventory {
        ContainerInventory {
            proc_root,
            sandboxed,
            ..Default::default()
        }
    }

    /// Lists what runs now; on failure the last list stands.
    pub async fn list(&mut self, client: &Containerd) -> Result<(), running::ListFailed> {
        self.running = running::list_running(client, &self.proc_root, &self.sandboxed).await?;
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

    /// Learns what every image on the node is (once per digest: two small reads, the manifest
    /// and the config), then which image each running container really runs. `images` are
    /// (name, digest) as containerd lists them; `cached` lists image digests whose
    /// inventories the agent keeps beyond them, `cached_chain` their chain IDs.
    pub async fn resolve(
        &mut self,
        client: &Containerd,
        images: &[(String, String)],
        cached: &[String],
        cached_chain: &dyn Fn(&str) -> Option<String>,
    ) {
        let on_node: BTreeSet<&String> = images.iter().map(|(_, d)| d).collect();
        self.facts.retain(|d, _| on_node.contains(d));
        self.names.clear();
        for (name, d) in images {
            self.names.entry(d.clone()).or_default().push(name.clone());
            if !self.facts.contains_key(d) {
                let facts = facts_from_store(client, d).await;
                self.facts.insert(d.clone(), facts);
            }
        }
        // Images the node still lists first, then inventories this agent kept.
        let mut known: Vec<String> = on_node.iter().map(|d| d.to_string()).collect();
        known.extend(cached.iter().filter(|d| !on_node.contains(d)).cloned());
        let facts = &self.facts;
        let chain_of = |d: &str| -> Option<String> {
            let read = facts.get(d).cloned().flatten();
            read.and_then(|f| stalewatch_core::image::chain_id(&f.diff_ids))
                .or_else(|| cached_chain(d))
        };
        let chains: BTreeSet<String> = known.iter().filter_map(|d| chain_of(d)).collect();
        for rc in &mut self.running {
            rc.snapshot_parent = unmapped_parent(client, rc, &chains).await;
        }
        running::resolve_running(&mut self.running, &known, &chain_of);
    }

    /// The node's images as the lineage owner compares them: facts with their names now.
    pub fn node_images(&self) -> Vec<ImageFacts> {
        let mut out: Vec<ImageFacts> = self
            .facts
            .iter()
            .filter_map(|(d, f)| {
                let mut f = f.clone()?;
                f.names = self.names.get(d).cloned().unwrap_or_default();
                f.names.sort();
                Some(f)
            })
            .collect();
        out.sort_by(|a, b| a.digests.cmp(&b.digests));
        out
    }
}

/// An image's facts read from the content store (blocking reads, off the workers).
async fn facts_from_store(client: &Containerd, digest: &str) -> Option<ImageFacts> {
    let (c, h, d) = (
        client.clone(),
        tokio::runtime::Handle::current(),
        digest.to_string(),
    );
    match tokio::task::spawn_blocking(move || super::images::read::facts_of(&c, h, &d)).await {
        Ok(Ok(f)) => Some(f),
        Ok(Err(e)) => {
            tracing::debug!(image = %digest, "image facts: {e:#}");
            None
        }
        Err(_) => None,
    }
}

/// The chain a container's snapshot really stands on. A pod with `hostUsers: false` on a
/// snapshotter without idmapped mounts runs on a remapped copy of its image's layers: a
/// committed snapshot whose own parent is the image's chain, keyed `<chain>-<uid>-<gid>`
/// (containerd before 2.0) or by a digest of the chain and the ID maps (2.x,
/// `client/snapshotter_opts_unix.go`). Taken at its word, that key would be a stale digest.
async fn unmapped_parent(
    client: &Containerd,
    rc: &RunningContainer,
    chains: &BTreeSet<String>,
) -> Option<String> {
    let parent = rc.snapshot_parent.clone()?;
    if chains.contains(&parent) {
        return Some(parent);
    }
    if let Some(chain) = running::legacy_remapped_chain(&parent) {
        return Some(chain.to_string());
    }
    let (snapshotter, _) = rc.snapshot.as_ref()?;
    match client.snapshot_parent(snapshotter, &parent).await {
        Ok(Some(grand)) if chains.contains(&grand) => Some(grand),
        _ => Some(parent),
    }
}
