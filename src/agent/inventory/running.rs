//! What runs on the node: containerd's containers with a running task, their pods (CRI
//! labels) and the digest their image name resolves to.

use std::collections::BTreeMap;
use std::path::Path;

use crate::agent::config::SandboxedRuntimes;
use crate::agent::snapshot::StaleDigest;
use crate::containerd::{task_is_running, Containerd, ContainerdError};

const LABEL_KIND: &str = "io.cri-containerd.kind";
const LABEL_NAMESPACE: &str = "io.kubernetes.pod.namespace";
const LABEL_POD: &str = "io.kubernetes.pod.name";
const LABEL_CONTAINER: &str = "io.kubernetes.container.name";
const LABEL_POD_UID: &str = "io.kubernetes.pod.uid";

#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct RunningContainer {
    pub id: String,
    pub namespace: String,
    pub pod: String,
    pub container: String,
    /// The pod's UID (CRI label), for Events about it.
    #[serde(skip)]
    pub pod_uid: Option<String>,
    /// The image name the container was created from.
    pub image: String,
    /// What that name resolves to in containerd now (index or manifest digest).
    pub image_digest: Option<String>,
    pub pid: u32,
    /// The runtime containerd runs it with (`io.containerd.runc.v2`, `io.containerd.kata.v2`).
    #[serde(skip)]
    pub runtime: String,
    /// Whether that runtime is sandboxed (`--sandboxed-runtimes`): `pid` is then a VM's or a
    /// sandbox's, and nothing of the container is read through `/proc`.
    #[serde(skip)]
    pub sandboxed: bool,
    /// Task start (seconds since the epoch), from procfs; for a sandboxed container, the
    /// creation of its containerd record (procfs would give the VM's).
    pub started_at: Option<i64>,
    /// containerd's creation time of the container record, to pick the newest of duplicates.
    #[serde(skip)]
    pub created_at: i64,
    /// The container's snapshot (snapshotter, key), for the unpacked-layers fallback.
    #[serde(skip)]
    pub snapshot: Option<(String, String)>,
    /// The parent of the container's snapshot: the chain ID of the image it was created from.
    #[serde(skip)]
    pub snapshot_parent: Option<String>,
    /// Set when the image name now resolves to another image than the one this runs.
    #[serde(skip)]
    pub stale: Option<StaleDigest>,
}

/// Which image each container really runs: a container whose snapshot's parent is not the
/// chain of the image its name resolves to now runs an older build. `chain_of` gives the
/// chain ID of an image digest the node knows; `known` lists those digests. Such a container's
/// `image_digest` becomes the image it runs (or, when the node no longer holds it, its chain
/// ID, which the scan then reads from the unpacked snapshot).
pub fn resolve_running(
    running: &mut [RunningContainer],
    known: &[String],
    chain_of: &dyn Fn(&str) -> Option<String>,
) {
    for rc in running {
        let (Some(parent), Some(current)) = (rc.snapshot_parent.clone(), rc.image_digest.clone()) else {
            continue;
        };
        match chain_of(&current) {
            Some(c) if c != parent => {}
            _ => continue,
        }
        let found = known
            .iter()
            .find(|d| chain_of(d).as_deref() == Some(parent.as_str()));
        rc.stale = Some(StaleDigest {
            running_digest: found.cloned().unwrap_or_else(|| parent.clone()),
            running_image_gone: found.is_none(),
            current_digest: current,
        });
        rc.image_digest = Some(found.cloned().unwrap_or(parent));
    }
}

/// The chain of a remapped snapshot keyed `<chain>-<uid>-<gid>` (containerd's client before
/// 2.0), if `key` is one.
pub fn legacy_remapped_chain(key: &str) -> Option<&str> {
    let (chain, ids) = key.split_at_checked("sha256:".len() + 64)?;
    let hex = chain.strip_prefix("sha256:")?;
    let (uid, gid) = ids.strip_prefix('-')?.split_once('-')?;
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    (hex.bytes().all(|b| b.is_ascii_hexdigit()) && digits(uid) && digits(gid)).then_some(chain)
}

/// Seconds since the epoch at which a process started, from `<proc_root>/<pid>/stat` and
/// `<proc_root>/stat` (boot time), so a host `/proc` mounted elsewhere works.
pub fn process_start(proc_root: &Path, pid: u32) -> Option<i64> {
    let stat = procfs::process::Process::new_with_root(proc_root.join(pid.to_string()))
        .ok()?
        .stat()
        .ok()?;
    let kstat = std::fs::read_to_string(proc_root.join("stat")).ok()?;
    let btime: i64 = kstat
        .lines()
        .find_map(|l| l.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()?;
    let ticks = procfs::ticks_per_second() as i64;
    Some(btime + stat.starttime as i64 / ticks.max(1))
}

/// The init PID of each running task, by container ID.
fn running_pids(tasks: &[containerd_client::types::v1::Process]) -> BTreeMap<String, u32> {
    // containerd 1.6 fills `id` (the container's) and leaves `container_id` empty here.
    tasks
        .iter()
        .filter(|t| task_is_running(t))
        .map(|t| {
            let id = match t.container_id.is_empty() {
                true => t.id.clone(),
                false => t.container_id.clone(),
            };
            (id, t.pid)
        })
        .collect()
}

/// A listing of what runs that failed: which list (`containers`, `tasks`), and why.
#[derive(Debug, thiserror::Error)]
#[error("listing {list}: {error}")]
pub struct ListFailed {
    pub list: &'static str,
    #[source]
    pub error: ContainerdError,
}

/// Lists running containers (sandboxes skipped, CRI names where labelled, the newest of
/// several with the same pod/container name).
pub async fn list_running(
    client: &Containerd,
    proc_root: &Path,
    sandboxed: &SandboxedRuntimes,
) -> Result<Vec<RunningContainer>, ListFailed> {
    let failed = |list| move |error| ListFailed { list, error };
    let tasks = client.list_tasks().await.map_err(failed("tasks"))?;
    let running = running_pids(&tasks);
    let mut image_digests: BTreeMap<String, Option<String>> = BTreeMap::new();
    let mut by_name: BTreeMap<(String, String, String), RunningContainer> = BTreeMap::new();
    let containers = client.list_containers().await.map_err(failed("containers"))?;
    for c in containers {
        let Some(&pid) = running.get(&c.id) else { continue };
        if c.labels.get(LABEL_KIND).map(String::as_str) == Some("sandbox") {
            continue;
        }
        if !image_digests.contains_key(&c.image) {
            let d = match client.image(&c.image).await {
                Ok(img) => img.target.map(|t| t.digest),
                Err(e) => {
                    tracing::debug!("image {} of container {}: {e:#}", c.image, c.id);
                    None
                }
            };
            image_digests.insert(c.image.clone(), d);
        }
        let label = |k: &str| c.labels.get(k).cloned().filter(|v| !v.is_empty());
        let runtime = c.runtime.as_ref().map(|r| r.name.clone()).unwrap_or_default();
        let is_sandboxed = sandboxed.contains(&runtime);
        let created_at = c.created_at.as_ref().map(|t| t.seconds).unwrap_or(0);
        let rc = RunningContainer {
            namespace: label(LABEL_NAMESPACE).unwrap_or_default(),
            pod: label(LABEL_POD).unwrap_or_else(|| c.id.clone()),
            container: label(LABEL_CONTAINER).unwrap_or_else(|| c.id.clone()),
            pod_uid: label(LABEL_POD_UID),
            image: c.image.clone(),
            image_digest: image_digests.get(&c.image).cloned().flatten(),
            pid,
            started_at: match is_sandboxed {
                true => (created_at > 0).then_some(created_at),
                false => process_start(proc_root, pid),
            },
            runtime,
            sandboxed: is_sandboxed,
            created_at,
            snapshot_parent: match c.snapshot_key.as_str() {
                "" => None,
                key => client
                    .snapshot_parent(&c.snapshotter, key)
                    .await
                    .unwrap_or_else(|e| {
                        tracing::debug!("{e:#}");
                        None
                    }),
            },
            snapshot: (!c.snapshot_key.is_empty()).then(|| (c.snapshotter.clone(), c.snapshot_key.clone())),
            stale: None,
            id: c.id,
        };
        let key = (rc.namespace.clone(), rc.pod.clone(), rc.container.clone());
        match by_name.get(&key) {
            Some(old) if (old.created_at, &old.id) >= (rc.created_at, &rc.id) => {}
            _ => {
                by_name.insert(key, rc);
            }
        }
    }
    Ok(by_name.into_values().collect())
}

#[cfg(test)]
mod tests {
    #[test]
    fn legacy_remapped_keys_name_their_chain() {
        let chain = format!("sha256:{}", "ab".repeat(32));
        assert_eq!(
            super::legacy_remapped_chain(&format!("{chain}-100000-100000")),
            Some(chain.as_str())
        );
        for not in [
            chain.clone(),
            format!("{chain}-100000"),
            format!("{chain}-x-1"),
            format!("{chain}-1-"),
            format!("sha256:{}-1-1", "zz".repeat(32)),
            "sha256:short-1-1".to_string(),
            format!("sha512:{}-1-1", "ab".repeat(32)),
        ] {
            assert_eq!(super::legacy_remapped_chain(&not), None, "{not}");
        }
    }
}
