//! The Kubernetes side of the agent: a client (in-cluster, or a kubeconfig), the pods of this
//! node (always listed with a `spec.nodeName` field selector: RBAC cannot restrict pod reads to
//! one node, the agent must), and the Event publisher — a bounded queue drained at a rate
//! limit, so a slow or unreachable API server never blocks scanning or metrics.

use anyhow::Context;
use k8s_openapi::api::core::v1::{ObjectReference, Pod};
use k8s_openapi::api::events::v1::{Event, EventSeries};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use prometheus::IntCounterVec;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

use super::announced::Notice;
use crate::agent::config::{EventsConfig, KubeAccess};

/// The reporting controller of every Event.
pub const REPORTING_CONTROLLER: &str = "stalewatch";
/// The Event's `action`.
const ACTION: &str = "Scan";
/// API calls give up after this: an API server that hangs must not hold the queue forever.
const API_TIMEOUT: Duration = Duration::from_secs(10);

pub async fn client(access: &KubeAccess) -> anyhow::Result<Client> {
    let mut config = match access {
        KubeAccess::InCluster => kube::Config::incluster().context("in-cluster Kubernetes configuration")?,
        KubeAccess::Kubeconfig(path) => {
            let kc = kube::config::Kubeconfig::read_from(path)
                .with_context(|| format!("read kubeconfig {}", path.display()))?;
            kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
                .await
                .with_context(|| format!("use kubeconfig {}", path.display()))?
        }
    };
    config.connect_timeout = Some(API_TIMEOUT);
    config.read_timeout = Some(API_TIMEOUT);
    config.write_timeout = Some(API_TIMEOUT);
    Client::try_from(config).context("build the Kubernetes client")
}

/// A pod of this node, as Events need it.
#[derive(Debug, Clone)]
pub struct NodePod {
    pub uid: String,
    /// `Kind/name` of the controller that owns the pod, e.g. `ReplicaSet/checkout-7d9f`.
    pub owner: Option<String>,
}

/// The pods bound to `node`, by (namespace, name): a list with a `spec.nodeName` field
/// selector, never a cluster-wide read.
pub async fn node_pods(client: &Client, node: &str) -> anyhow::Result<BTreeMap<(String, String), NodePod>> {
    let pods: Api<Pod> = Api::all(client.clone());
    let list = pods
        .list(&ListParams::default().fields(&format!("spec.nodeName={node}")))
        .await
        .context("list this node's pods")?;
    let mut out = BTreeMap::new();
    for p in list.items {
        let m = p.metadata;
        let (Some(ns), Some(name), Some(uid)) = (m.namespace, m.name, m.uid) else {
            continue;
        };
        let owner = m
            .owner_references
            .unwrap_or_default()
            .into_iter()
            .find(|o| o.controller == Some(true))
            .map(|o| format!("{}/{}", o.kind, o.name));
        out.insert((ns, name), NodePod { uid, owner });
    }
    Ok(out)
}

/// A token bucket: `burst` tokens, refilled at `per_minute`.
pub struct TokenBucket {
    tokens: f64,
    burst: f64,
    per_sec: f64,
    last: Instant,
}

impl TokenBucket {
    pub fn new(per_minute: u32, now: Instant) -> Self {
        let burst = f64::from(per_minute.max(1));
        TokenBucket {
            tokens: burst,
            burst,
            per_sec: burst / 60.0,
            last: now,
        }
    }

    /// Takes a token, or says how long until one is there.
    pub fn take(&mut self, now: Instant) -> Result<(), Duration> {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.per_sec).min(self.burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - self.tokens) / self.per_sec))
        }
    }
}

/// The sending side of the Event queue; never blocks.
#[derive(Clone)]
pub struct EventQueue {
    tx: mpsc::Sender<Notice>,
    /// `stalewatch_kube_events_total{reason, result}`.
    outcomes: IntCounterVec,
}

impl EventQueue {
    /// Queues a notice; a full queue drops it (counted as `dropped`).
    pub fn offer(&self, n: Notice) {
        let reason = n.reason.as_str();
        if self.tx.try_send(n).is_err() {
            self.outcomes.with_label_values(&[reason, "dropped"]).inc();
        }
    }
}

/// Creates every (reason, result) series of `stalewatch_kube_events_total` at zero, so
/// `increase()` sees the first failure.
pub fn init_outcomes(outcomes: &IntCounterVec) {
    for reason in super::announced::Reason::ALL {
        for result in RESULTS {
            outcomes.with_label_values(&[reason.as_str(), result]);
        }
    }
}

/// Starts the publisher task; returns the queue to offer notices to.
pub fn start_publisher(cfg: EventsConfig, outcomes: IntCounterVec) -> EventQueue {
    let (tx, rx) = mpsc::channel(cfg.queue.max(1));
    tokio::spawn(publisher(cfg, rx, outcomes.clone()));
    EventQueue { tx, outcomes }
}

/// How one publication ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// A new Event.
    Published,
    /// The same Event existed: its series was extended.
    Series,
    /// RBAC refused.
    Forbidden,
    Failed,
}

/// Every `result` label value of `stalewatch_kube_events_total`.
pub const RESULTS: [&str; 6] = [
    "published",
    "series",
    "suppressed",
    "dropped",
    "forbidden",
    "failed",
];

impl Outcome {
    fn as_str(self) -> &'static str {
        match self {
            Outcome::Published => "published",
            Outcome::Series => "series",
            Outcome::Forbidden => "forbidden",
            Outcome::Failed => "failed",
        }
    }
}

async fn publisher(cfg: EventsConfig, mut rx: mpsc::Receiver<Notice>, outcomes: IntCounterVec) {
    let mut bucket = TokenBucket::new(cfg.per_minute, Instant::now());
    let mut client: Option<Client> = None;
    let mut pods: (Option<Instant>, BTreeMap<(String, String), NodePod>) = (None, BTreeMap::new());
    let mut last_outcome: Option<Outcome> = None;
    while let Some(notice) = rx.recv().await {
        while let Err(wait) = bucket.take(Instant::now()) {
            tokio::time::sleep(wait).await;
        }
        if client.is_none() {
            match self::client(&cfg.access).await {
                Ok(c) => client = Some(c),
                Err(e) => {
                    tracing::warn!("Kubernetes client: {e:#}");
                    outcomes
                        .with_label_values(&[notice.reason.as_str(), Outcome::Failed.as_str()])
                        .inc();
                    continue;
                }
            }
        }
        let Some(c) = client.clone() else { continue };
        // The pod list answers for pods without a UID label and names the owner; it is
        // refreshed at most once a minute (Events are rare, lists are not cheap).
        // A node's Event needs no pod: its owner and UID are not looked up.
        let stale = !notice.node
            && (pods.0.is_none_or(|t| t.elapsed() > Duration::from_secs(60))
                || !pods
                    .1
                    .contains_key(&(notice.namespace.clone(), notice.pod.clone())));
        if stale && pods.0.is_none_or(|t| t.elapsed() > Duration::from_secs(5)) {
            match node_pods(&c, &cfg.node_name).await {
                Ok(p) => pods = (Some(Instant::now()), p),
                Err(e) => {
                    pods.0 = Some(Instant::now());
                    tracing::debug!("{e:#}");
                }
            }
        }
        let pod = pods
            .1
            .get(&(notice.namespace.clone(), notice.pod.clone()))
            .filter(|_| !notice.node);
        let outcome = publish(&c, &cfg.node_name, &notice, pod).await;
        outcomes
            .with_label_values(&[notice.reason.as_str(), outcome.as_str()])
            .inc();
        if last_outcome != Some(outcome) {
            match outcome {
                Outcome::Published | Outcome::Series => tracing::info!(
                    pod = %format!("{}/{}", notice.namespace, notice.pod),
                    reason = notice.reason.as_str(),
                    "Event {}",
                    outcome.as_str()
                ),
                _ => {}
            }
        }
        last_outcome = Some(outcome);
    }
}

/// The Event's name: stable for one (pod, reason, state), so a recurring state extends the
/// series of one Event instead of making another.
fn event_name(n: &Notice) -> String {
    let pod: String = n.pod.chars().take(200).collect();
    format!("{pod}.stalewatch.{}", n.fingerprint)
}

fn event(node: &str, n: &Notice, pod: Option<&NodePod>, now: MicroTime) -> Event {
    let note = match pod.and_then(|p| p.owner.as_deref()) {
        Some(owner) => {
            let with = format!("{} Owner: {owner}.", n.note);
            if with.len() <= super::announced::NOTE_LIMIT {
                with
            } else {
                n.note.clone()
            }
        }
        None => n.note.clone(),
    };
    let regarding = ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("Pod".into()),
        namespace: Some(n.namespace.clone()),
        name: Some(n.pod.clone()),
        uid: n.pod_uid.clone().or_else(|| pod.map(|p| p.uid.clone())),
        field_path: (!n.container.is_empty()).then(|| format!("spec.containers{{{}}}", n.container)),
        ..Default::default()
    };
    let what = About {
        namespace: n.namespace.clone(),
        name: event_name(n),
        type_: "Warning",
        reason: n.reason.as_str(),
        action: ACTION,
        note,
        regarding,
    };
    event_object(node, what, now)
}

/// What an Event says, and about which object (the Event lives in `namespace`).
pub struct About {
    pub namespace: String,
    pub name: String,
    pub type_: &'static str,
    pub reason: &'static str,
    pub action: &'static str,
    pub note: String,
    pub regarding: ObjectReference,
}

/// An `events.k8s.io/v1` Event from this node's agent, in the namespace of what it regards.
pub fn event_object(node: &str, what: About, now: MicroTime) -> Event {
    Event {
        metadata: ObjectMeta {
            name: Some(what.name),
            namespace: Some(what.namespace),
            ..Default::default()
        },
        event_time: Some(now),
        type_: Some(what.type_.into()),
        reason: Some(what.reason.into()),
        action: Some(what.action.into()),
        note: Some(what.note),
        reporting_controller: Some(REPORTING_CONTROLLER.into()),
        reporting_instance: Some(node.to_string()),
        regarding: Some(what.regarding),
        ..Default::default()
    }
}

fn classify(e: &kube::Error) -> Outcome {
    match e {
        kube::Error::Api(s) if s.is_forbidden() => Outcome::Forbidden,
        _ => Outcome::Failed,
    }
}

/// The same state again: the existing Event's count or series extended.
async fn extend_series<K>(api: &Api<K>, name: &str, patch: &serde_json::Value) -> Outcome
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    match api
        .patch(name, &PatchParams::default(), &Patch::Merge(patch))
        .await
    {
        Ok(_) => Outcome::Series,
        Err(e) => {
            tracing::warn!("extending the series of Event {name}: {e}");
            classify(&e)
        }
    }
}

/// A Node's Event, as the kubelet writes its own: the core/v1 API (events.k8s.io/v1 wants the
/// regarded object's namespace to be the Event's, which a cluster-scoped Node has none of), in
/// namespace `default`, the Node's name as its UID; a recurrence counts in `count`.
async fn publish_on_node(client: &Client, node: &str, n: &Notice) -> Outcome {
    use k8s_openapi::api::core::v1::{Event as CoreEvent, EventSource};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    let api: Api<CoreEvent> = Api::namespaced(client.clone(), "default");
    let now = Time(k8s_openapi::jiff::Timestamp::now());
    let name = event_name(n);
    let event = CoreEvent {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            namespace: Some("default".into()),
            ..Default::default()
        },
        involved_object: ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Node".into()),
            name: Some(n.pod.clone()),
            uid: Some(n.pod.clone()),
            ..Default::default()
        },
        type_: Some("Warning".into()),
        reason: Some(n.reason.as_str().into()),
        message: Some(n.note.clone()),
        action: Some(ACTION.into()),
        source: Some(EventSource {
            component: Some(REPORTING_CONTROLLER.into()),
            host: Some(node.to_string()),
        }),
        reporting_component: Some(REPORTING_CONTROLLER.into()),
        reporting_instance: Some(node.to_string()),
        first_timestamp: Some(now.clone()),
        last_timestamp: Some(now.clone()),
        count: Some(1),
        ..Default::default()
    };
    match api.create(&PostParams::default(), &event).await {
        Ok(_) => return Outcome::Published,
        Err(kube::Error::Api(s)) if s.is_already_exists() => {}
        Err(e) => {
            tracing::warn!(node = %n.pod, "publishing an Event: {e}");
            return classify(&e);
        }
    }
    let count = match api.get(&name).await {
        Ok(ev) => ev.count.unwrap_or(1) + 1,
        Err(e) => {
            tracing::warn!("reading Event {name}: {e}");
            return classify(&e);
        }
    };
    let patch = serde_json::json!({ "count": count, "lastTimestamp": now });
    extend_series(&api, &name, &patch).await
}

async fn publish(client: &Client, node: &str, n: &Notice, pod: Option<&NodePod>) -> Outcome {
    if n.node {
        return publish_on_node(client, node, n).await;
    }
    let api: Api<Event> = Api::namespaced(client.clone(), &n.namespace);
    let now = MicroTime(k8s_openapi::jiff::Timestamp::now());
    match api
        .create(&PostParams::default(), &event(node, n, pod, now.clone()))
        .await
    {
        Ok(_) => return Outcome::Published,
        Err(kube::Error::Api(s)) if s.is_already_exists() => {}
        Err(e) => {
            let outcome = classify(&e);
            tracing::warn!(pod = %format!("{}/{}", n.namespace, n.pod), "publishing an Event: {e}");
            return outcome;
        }
    }
    // The same state again: one Event, its series counting the recurrences.
    let name = event_name(n);
    let count = match api.get(&name).await {
        Ok(ev) => ev.series.map(|s| s.count).unwrap_or(1) + 1,
        Err(e) => {
            tracing::warn!("reading Event {name}: {e}");
            return classify(&e);
        }
    };
    let patch = serde_json::json!({
        "series": EventSeries { count, last_observed_time: now },
    });
    extend_series(&api, &name, &patch).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bucket_allows_a_burst_then_the_rate() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(6, t0);
        for _ in 0..6 {
            assert!(b.take(t0).is_ok());
        }
        let wait = b.take(t0).unwrap_err();
        assert!(
            wait > Duration::from_secs(9) && wait <= Duration::from_secs(10),
            "{wait:?}"
        );
        assert!(b.take(t0 + Duration::from_secs(10)).is_ok());
        assert!(b.take(t0 + Duration::from_secs(10)).is_err());
    }

    #[test]
    fn event_names_are_valid_and_stable() {
        let n = Notice {
            namespace: "shop".into(),
            pod: "p".repeat(300),
            pod_uid: None,
            container: "app".into(),
            reason: super::super::announced::Reason::StaleRuntime,
            note: "x".into(),
            fingerprint: "0123456789abcdef".into(),
            node: false,
        };
        let name = event_name(&n);
        assert!(name.len() <= 253);
        assert_eq!(name, event_name(&n.clone()));
        assert!(name.ends_with(".stalewatch.0123456789abcdef"));
    }

    /// The API down or slow: notices wait in a bounded queue, the rest are dropped and
    /// counted, and offering never blocks (scanning goes on).
    #[test]
    fn a_full_queue_drops_and_counts_without_blocking() {
        let opts = prometheus::Opts::new("events", "test");
        let outcomes = IntCounterVec::new(opts, &["reason", "result"]).unwrap();
        let (tx, _rx) = mpsc::channel(2);
        let queue = EventQueue {
            tx,
            outcomes: outcomes.clone(),
        };
        let notice = |pod: &str| Notice {
            namespace: "shop".into(),
            pod: pod.into(),
            pod_uid: None,
            container: "app".into(),
            reason: super::super::announced::Reason::StaleRuntime,
            note: "x".into(),
            fingerprint: "0123456789abcdef".into(),
            node: false,
        };
        for i in 0..5 {
            queue.offer(notice(&format!("p{i}")));
        }
        let dropped = outcomes.with_label_values(&["StaleRuntime", "dropped"]).get();
        assert_eq!(dropped, 3, "two queued, three dropped");
    }
}
