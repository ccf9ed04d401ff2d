//! The CloudEvents a snapshot calls for, in CloudEvents 1.0 structured JSON mode: what each
//! type says, and ids derived from the transition (type, image digest, the newer digest or
//! the new findings), so a retry, a restart or another node's agent sends the same id for
//! the same transition and a consumer deduplicates. Encoded here (a JSON object is all the
//! structured mode is); `tests/notify.rs` parses it with the CloudEvents Python SDK.

use serde::Serialize;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};

use stalewatch_core::report::Report;

use crate::agent::snapshot::{ContainerView, Snapshot};

pub const BASE_UPDATED: &str = "io.stalewatch.image.base_updated";
pub const STALE_DIGEST: &str = "io.stalewatch.container.stale_digest";
pub const VULNERABLE: &str = "io.stalewatch.container.vulnerable";
pub const NODE_VULNERABLE: &str = "io.stalewatch.node.vulnerable";
pub const TYPES: [&str; 4] = [BASE_UPDATED, STALE_DIGEST, VULNERABLE, NODE_VULNERABLE];

/// The schema version of each type's `data` (`docs/schemas/events/<type>.v1.json`).
pub fn dataschema(kind: &str) -> String {
    format!("urn:stalewatch:schema:{kind}:v1")
}

/// The id of a transition: the type and what identifies the transition, hashed.
pub fn event_id(kind: &str, parts: &[&str]) -> String {
    let mut h = Sha256::new();
    h.update(kind.as_bytes());
    for p in parts {
        h.update(b"\n");
        h.update(p.as_bytes());
    }
    hex::encode(&h.finalize()[..16])
}

/// One event, ready to be written to the outbox.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub id: String,
    pub kind: &'static str,
    /// The structured-mode body: exactly the bytes sent (and signed).
    pub body: Vec<u8>,
}

#[derive(Serialize)]
struct Envelope<'a> {
    specversion: &'static str,
    id: &'a str,
    source: String,
    #[serde(rename = "type")]
    kind: &'a str,
    subject: &'a str,
    time: String,
    datacontenttype: &'static str,
    dataschema: String,
    data: Value,
}

fn event(kind: &'static str, id: String, node: &str, subject: &str, now: i64, data: Value) -> Event {
    let envelope = Envelope {
        specversion: "1.0",
        id: &id,
        source: format!("/stalewatch/{node}"),
        kind,
        subject,
        time: crate::clock::rfc3339(now),
        datacontenttype: "application/json",
        dataschema: dataschema(kind),
        data,
    };
    let body = serde_json::to_vec(&envelope).unwrap_or_default();
    Event { id, kind, body }
}

/// `{namespace, pod, container}` of each container running `digest`.
fn pods(snap: &Snapshot, digest: &str) -> Vec<Value> {
    snap.containers
        .iter()
        .filter(|c| c.image_digest.as_deref() == Some(digest))
        .map(|c| json!({"namespace": c.namespace, "pod": c.pod, "container": c.container}))
        .collect()
}

/// The image name its containers were started from (the first, sorted).
fn image_name(snap: &Snapshot, digest: &str) -> String {
    snap.containers
        .iter()
        .filter(|c| c.image_digest.as_deref() == Some(digest))
        .map(|c| c.image.clone())
        .min()
        .unwrap_or_else(|| digest.to_string())
}

/// `base_updated`: each running image (of `digests`) whose base has a newer build on the node.
pub fn base_updated(snap: &Snapshot, digests: &[String], now: i64) -> Vec<Event> {
    let mut out = Vec::new();
    for digest in digests {
        let Some(report) = snap.image_reports.get(digest) else {
            continue;
        };
        let Some(r) = &report.rebuild else { continue };
        let image = image_name(snap, digest);
        let data = json!({
            "fixed_by_rebuild": r.fixed_by_rebuild,
            "fixed": r.fixed,
            "remaining": r.remaining,
            "image": image,
            "image_digest": digest,
            "base": {"name": r.base_name, "old_digest": r.base_digest, "new_digest": r.new_base_digest},
            "source": report.source,
            "revision": report.revision,
            "pods": pods(snap, digest),
            "node": snap.node,
        });
        let id = event_id(BASE_UPDATED, &[digest, &r.new_base_digest]);
        out.push(event(BASE_UPDATED, id, &snap.node, &image, now, data));
    }
    out
}

/// Finding counts of a report, as its summary has them.
fn counts(report: Option<&Report>) -> Value {
    match report {
        Some(r) => {
            json!({"total": r.summary.findings, "fixable": r.summary.fixable, "by_severity": r.summary.by_severity})
        }
        None => Value::Null,
    }
}

/// `stale_digest`: each (running digest, newer digest) of `pairs`, with the containers whose
/// tag moved on.
pub fn stale_digest(snap: &Snapshot, pairs: &[(String, String)], now: i64) -> Vec<Event> {
    let mut by_pair: BTreeMap<(String, String), Vec<&ContainerView>> = BTreeMap::new();
    for c in &snap.containers {
        let pair = c
            .stale_digest
            .as_ref()
            .map(|s| (s.running_digest.clone(), s.current_digest.clone()));
        if let Some(s) = pair
            .as_ref()
            .filter(|p| pairs.contains(p))
            .and(c.stale_digest.as_ref())
        {
            by_pair
                .entry((s.running_digest.clone(), s.current_digest.clone()))
                .or_default()
                .push(c);
        }
    }
    let mut out = Vec::new();
    for ((running, newer), containers) in by_pair {
        let image = containers
            .iter()
            .map(|c| c.image.clone())
            .min()
            .unwrap_or_default();
        let pods: Vec<Value> = containers
            .iter()
            .map(|c| json!({"namespace": c.namespace, "pod": c.pod, "container": c.container}))
            .collect();
        let running_report = containers
            .iter()
            .find_map(|c| c.report.as_ref())
            .map(|r| r.report.clone());
        let data = json!({
            "image": image,
            "running_digest": running,
            "newer_digest": newer,
            "pods": pods,
            "running_findings": counts(running_report.as_deref()),
            "newer_findings": counts(snap.newer_reports.get(&newer).map(|r| &**r)),
            "node": snap.node,
        });
        let id = event_id(STALE_DIGEST, &[&running, &newer]);
        out.push(event(STALE_DIGEST, id, &snap.node, &image, now, data));
    }
    out
}

/// `vulnerable`: an image whose running containers gained findings at or above the minimum
/// (`new`: the ids not told before).
pub fn vulnerable(snap: &Snapshot, digest: &str, new: &BTreeSet<String>, now: i64) -> Event {
    let image = image_name(snap, digest);
    let ids: Vec<&str> = new.iter().map(String::as_str).collect();
    let data = json!({
        "image": image,
        "image_digest": digest,
        "new_ids": ids,
        "pods": pods(snap, digest),
        "node": snap.node,
    });
    let mut parts = vec![digest];
    parts.extend(ids.iter().copied());
    let id = event_id(VULNERABLE, &parts);
    event(VULNERABLE, id, &snap.node, &image, now, data)
}

/// `node.vulnerable`: the node's own packages gained findings at or above the minimum (`new`:
/// the ids not told before), with its running kernel and whether a reboot is due.
pub fn node_vulnerable(snap: &Snapshot, new: &BTreeSet<String>, now: i64) -> Event {
    let ids: Vec<&str> = new.iter().map(String::as_str).collect();
    let n = snap.node_scan.as_ref();
    let kernel = n.and_then(|n| n.kernel.as_ref());
    let data = json!({
        "node": snap.node,
        "new_ids": ids,
        "os": n.and_then(|n| n.report.as_ref()).and_then(|r| r.os.as_ref()).map(|o| format!("{} {}", o.id, o.version_id)),
        "kernel": kernel.map(|k| json!({
            "release": k.release,
            "package": k.package.as_ref().map(|p| &p.0),
            "version": k.package.as_ref().map(|p| &p.1),
        })),
        "reboot_required": n.is_some_and(|n| n.reboot_required),
    });
    let mut parts = vec![snap.node.as_str()];
    parts.extend(ids.iter().copied());
    let id = event_id(NODE_VULNERABLE, &parts);
    event(
        NODE_VULNERABLE,
        id,
        &snap.node,
        &format!("node/{}", snap.node),
        now,
        data,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_depend_on_the_transition_only() {
        let a = event_id(BASE_UPDATED, &["sha256:app", "sha256:new"]);
        assert_eq!(a, event_id(BASE_UPDATED, &["sha256:app", "sha256:new"]));
        assert_ne!(a, event_id(BASE_UPDATED, &["sha256:app", "sha256:newer"]));
        assert_ne!(a, event_id(STALE_DIGEST, &["sha256:app", "sha256:new"]));
        // Parts are separated: ("ab", "c") is not ("a", "bc").
        assert_ne!(
            event_id(VULNERABLE, &["ab", "c"]),
            event_id(VULNERABLE, &["a", "bc"])
        );
        assert_eq!(a.len(), 32);
    }
}
