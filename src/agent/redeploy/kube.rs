//! The Kubernetes side of the redeploy: pod → (ReplicaSet →) Deployment, StatefulSet or
//! DaemonSet; the opt-in label; at most one redeploy per workload per `--redeploy-interval`; a
//! JSON patch whose `test` precondition is the image the workload has now (agents of other
//! nodes, or a human edit, win cleanly: a failed precondition is not an error); Events
//! `Redeployed`, `RedeployDryRun` (on the workload) and `RedeployBlocked` (on the pod).

use k8s_openapi::api::core::v1::{ObjectReference, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, OwnerReference};
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams};
use kube::Client;
use prometheus::IntCounterVec;
use std::collections::BTreeMap;
use std::time::Instant;
use tokio::sync::mpsc;

use super::{Candidate, Mode, RedeployConfig, LABEL, LABEL_VALUE};
use crate::agent::events::kube::{client, event_object, About};

const ACTION: &str = "Redeploy";

/// The workload that owns a pod, as the redeploy needs it.
struct Workload {
    kind: String,
    name: String,
    namespace: String,
    uid: Option<String>,
    opted_in: bool,
    /// (container name, image) of its pod template, in order.
    containers: Vec<(String, String)>,
    /// (container name, image) of the pod that runs the stale build: what the template had
    /// when the pod was made, so the patch's precondition.
    pod_images: Vec<(String, String)>,
}

fn resource(kind: &str) -> ApiResource {
    ApiResource::from_gvk(&GroupVersionKind::gvk("apps", "v1", kind))
}

fn controller(owners: Option<&Vec<OwnerReference>>) -> Option<&OwnerReference> {
    owners?.iter().find(|o| o.controller == Some(true))
}

async fn get(client: &Client, ns: &str, kind: &str, name: &str) -> Result<DynamicObject, kube::Error> {
    Api::<DynamicObject>::namespaced_with(client.clone(), ns, &resource(kind))
        .get(name)
        .await
}

/// The workload a pod belongs to: its controller, through a ReplicaSet to its Deployment.
/// `None` for a pod no Deployment, StatefulSet or DaemonSet owns.
async fn workload_of(client: &Client, ns: &str, pod: &str) -> Result<Option<Workload>, kube::Error> {
    let p = Api::<Pod>::namespaced(client.clone(), ns).get(pod).await?;
    let pod_images = p
        .spec
        .as_ref()
        .map(|s| {
            s.containers
                .iter()
                .map(|c| (c.name.clone(), c.image.clone().unwrap_or_default()))
                .collect()
        })
        .unwrap_or_default();
    let Some(owner) = controller(p.metadata.owner_references.as_ref()).cloned() else {
        return Ok(None);
    };
    let object = match owner.kind.as_str() {
        "ReplicaSet" => {
            let rs = get(client, ns, "ReplicaSet", &owner.name).await?;
            match controller(rs.metadata.owner_references.as_ref()) {
                Some(d) if d.kind == "Deployment" => get(client, ns, "Deployment", &d.name).await?,
                _ => return Ok(None),
            }
        }
        "StatefulSet" | "DaemonSet" => get(client, ns, &owner.kind, &owner.name).await?,
        _ => return Ok(None),
    };
    let kind = object.types.as_ref().map(|t| t.kind.clone()).unwrap_or_default();
    let opted_in = object
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(LABEL))
        .is_some_and(|v| v == LABEL_VALUE);
    let containers = object.data["spec"]["template"]["spec"]["containers"]
        .as_array()
        .map(|cs| {
            cs.iter()
                .map(|c| {
                    (
                        c["name"].as_str().unwrap_or_default().to_string(),
                        c["image"].as_str().unwrap_or_default().to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    Ok(Some(Workload {
        kind,
        name: object.metadata.name.clone().unwrap_or_default(),
        namespace: ns.to_string(),
        uid: object.metadata.uid.clone(),
        opted_in,
        containers,
        pod_images,
    }))
}

/// `name:tag@digest` of the newer build, from the reference the workload has now.
pub fn pinned(reference: &str, digest: &str) -> String {
    let name = reference.split_once('@').map_or(reference, |(n, _)| n);
    format!("{name}@{digest}")
}

/// Runs the redeploys offered, one at a time, for as long as the agent runs.
pub async fn run(cfg: RedeployConfig, mut rx: mpsc::Receiver<Candidate>, outcomes: IntCounterVec) {
    let mut kube: Option<Client> = None;
    let mut last: BTreeMap<String, Instant> = BTreeMap::new();
    let mut forbidden_told = false;
    while let Some(c) = rx.recv().await {
        if kube.is_none() {
            match client(&cfg.access).await {
                Ok(k) => kube = Some(k),
                Err(e) => {
                    tracing::warn!("redeploy: Kubernetes client: {e:#}");
                    outcomes.with_label_values(&["failed"]).inc();
                    continue;
                }
            }
        }
        let Some(k) = kube.clone() else { continue };
        let result = match redeploy(&cfg, &k, &c, &mut last).await {
            Ok(r) => r,
            Err(kube::Error::Api(s)) if s.is_forbidden() => {
                if !forbidden_told {
                    forbidden_told = true;
                    tracing::error!(
                        "redeploy is forbidden ({}): the agent's ServiceAccount needs get on replicasets, deployments, statefulsets and daemonsets and patch on the last three; apply deploy/components/redeploy (Kustomize) or set redeploy.enabled=true (Helm). Scanning goes on; this is logged once",
                        s.message
                    );
                }
                "forbidden"
            }
            Err(e) => {
                tracing::warn!(pod = %format!("{}/{}", c.namespace, c.pod), "redeploy: {e}");
                "failed"
            }
        };
        outcomes.with_label_values(&[result]).inc();
    }
}

async fn redeploy(
    cfg: &RedeployConfig,
    k: &Client,
    c: &Candidate,
    last: &mut BTreeMap<String, Instant>,
) -> Result<&'static str, kube::Error> {
    let Some(w) = workload_of(k, &c.namespace, &c.pod).await? else {
        return Ok("not_opted_in");
    };
    if !w.opted_in {
        tracing::debug!(workload = %format!("{}/{}", w.kind, w.name), "not opted in to redeploys");
        return Ok("not_opted_in");
    }
    if let Err(why) = &c.verdict {
        blocked_event(cfg, k, c, &why.to_string()).await?;
        tracing::info!(pod = %format!("{}/{}", c.namespace, c.pod), "redeploy blocked: {why}");
        return Ok("blocked");
    }
    let key = format!("{}/{}/{}", w.namespace, w.kind, w.name);
    if last.get(&key).is_some_and(|t| t.elapsed() < cfg.interval) {
        return Ok("too_soon");
    }
    let Some(index) = w.containers.iter().position(|(n, _)| *n == c.container) else {
        tracing::warn!(workload = %key, "redeploy: no container {} in the pod template", c.container);
        return Ok("failed");
    };
    // The precondition is the image the stale pod was made from: a template changed since
    // (another node's agent, a person) fails it and wins.
    let Some(current) = w
        .pod_images
        .iter()
        .find(|(n, _)| *n == c.container)
        .map(|(_, i)| i.clone())
    else {
        return Ok("failed");
    };
    let target = pinned(&current, &c.newer_digest);
    if w.containers[index].1 == target {
        return Ok("precondition_failed");
    }
    let path = format!("/spec/template/spec/containers/{index}/image");
    let ops = serde_json::json!([
        {"op": "test", "path": path, "value": current},
        {"op": "replace", "path": path, "value": target},
    ]);
    let patch: json_patch::Patch = serde_json::from_value(ops).map_err(kube::Error::SerdeError)?;
    let params = PatchParams {
        dry_run: cfg.mode == Mode::DryRun,
        field_manager: Some("stalewatch".into()),
        ..Default::default()
    };
    let api = Api::<DynamicObject>::namespaced_with(k.clone(), &w.namespace, &resource(&w.kind));
    match api.patch(&w.name, &params, &Patch::Json::<()>(patch)).await {
        Ok(_) => {}
        // The test op failed: someone (another node's agent, a person) changed the image.
        Err(kube::Error::Api(s)) if s.code == 422 || s.code == 409 => {
            tracing::info!(workload = %key, "redeploy: the image changed meanwhile ({}); left as it is", s.message);
            return Ok("precondition_failed");
        }
        Err(e) => return Err(e),
    }
    last.insert(key, Instant::now());
    done_event(cfg, k, c, &w, &current, &target).await
}

/// `Redeployed` or `RedeployDryRun` on the workload; the result to count.
async fn done_event(
    cfg: &RedeployConfig,
    k: &Client,
    c: &Candidate,
    w: &Workload,
    current: &str,
    target: &str,
) -> Result<&'static str, kube::Error> {
    let (reason, verb, result) = match cfg.mode {
        Mode::On => ("Redeployed", "Patched", "redeployed"),
        Mode::DryRun => (
            "RedeployDryRun",
            "Would patch (dry run, nothing changed)",
            "dry_run",
        ),
    };
    let note = format!(
        "{verb} container {} image {current} -> {target}: node {} runs {} in pod {} while its tag now resolves to {}, validated (no new finding at or above {}, no more findings).",
        c.container, cfg.node_name, c.running_digest, c.pod, c.newer_digest, cfg.max_severity.as_str()
    );
    tracing::info!(workload = %format!("{}/{}/{}", w.namespace, w.kind, w.name), "{note}");
    let regarding = ObjectReference {
        api_version: Some("apps/v1".into()),
        kind: Some(w.kind.clone()),
        namespace: Some(w.namespace.clone()),
        name: Some(w.name.clone()),
        uid: w.uid.clone(),
        ..Default::default()
    };
    let name = event_name(&w.name, reason, &c.newer_digest);
    let what = About {
        namespace: w.namespace.clone(),
        name,
        type_: "Normal",
        reason,
        action: ACTION,
        note,
        regarding,
    };
    post(cfg, k, what).await?;
    Ok(result)
}

async fn blocked_event(
    cfg: &RedeployConfig,
    k: &Client,
    c: &Candidate,
    why: &str,
) -> Result<(), kube::Error> {
    let regarding = ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("Pod".into()),
        namespace: Some(c.namespace.clone()),
        name: Some(c.pod.clone()),
        field_path: Some(format!("spec.containers{{{}}}", c.container)),
        ..Default::default()
    };
    let note = format!(
        "Not redeployed onto {} (the newer build of {}): {why}.",
        c.newer_digest, c.image
    );
    let note: String = note.chars().take(1000).collect();
    let name = event_name(&c.pod, "RedeployBlocked", &c.newer_digest);
    post(
        cfg,
        k,
        About {
            namespace: c.namespace.clone(),
            name,
            type_: "Warning",
            reason: "RedeployBlocked",
            action: ACTION,
            note,
            regarding,
        },
    )
    .await
}

/// One Event per (object, reason, newer digest): a repeat is not an error.
async fn post(cfg: &RedeployConfig, k: &Client, what: About) -> Result<(), kube::Error> {
    let ns = what.regarding.namespace.clone().unwrap_or_default();
    let api: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(k.clone(), &ns);
    let now = MicroTime(k8s_openapi::jiff::Timestamp::now());
    match api
        .create(&PostParams::default(), &event_object(&cfg.node_name, what, now))
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.is_already_exists() => Ok(()),
        Err(e) => Err(e),
    }
}

fn event_name(object: &str, reason: &str, digest: &str) -> String {
    let short = digest.rsplit(':').next().unwrap_or(digest);
    let object: String = object.chars().take(180).collect();
    format!(
        "{object}.stalewatch.{}.{}",
        reason.to_ascii_lowercase(),
        &short[..short.len().min(12)]
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_newer_build_is_pinned_by_digest_under_the_same_name() {
        assert_eq!(
            super::pinned("localhost/app:1", "sha256:ab"),
            "localhost/app:1@sha256:ab"
        );
        assert_eq!(
            super::pinned("localhost/app:1@sha256:old", "sha256:ab"),
            "localhost/app:1@sha256:ab"
        );
        assert_eq!(
            super::event_name("web", "Redeployed", "sha256:0123456789abcdef"),
            "web.stalewatch.redeployed.0123456789ab"
        );
    }
}
