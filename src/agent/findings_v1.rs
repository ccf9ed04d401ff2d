//! `/v1/findings` on the wire (`stalewatch/findings/v1`): a view borrowed from the snapshot,
//! separate from the internal `ContainerView` (whose counts feed the metrics and the change
//! list), so a field added for one never leaks into, or drops out of, the other. The fields
//! and their order are docs/cli.md's table ("/v1/findings"); a test holds them to it.

use serde::Serialize;

use super::snapshot::{
    CheckState, ContainerReport, ContainerView, DbView, Drift, NodeInfo, NodeView, RuntimeCheckStates,
    ScanStatus, Snapshot, StaleDigest,
};
use crate::db::coverage::Gap;
use stalewatch_core::report::Report;

#[derive(Serialize)]
pub struct Findings<'a> {
    schema: &'a str,
    node: &'a str,
    generated_at: &'a str,
    advisory_db: &'a DbView,
    containers: Vec<Container<'a>>,
    /// With `--node-scan`: the node's own packages (status, kernel) and their report.
    #[serde(skip_serializing_if = "Option::is_none")]
    node_scan: Option<NodeScan<'a>>,
    /// With `--node-scan`: the report v1 of the node's packages (null until matched).
    #[serde(skip_serializing_if = "Option::is_none")]
    node_report: Option<Option<&'a Report>>,
}

#[derive(Serialize)]
struct NodeScan<'a> {
    status: ScanStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a str>,
    kernel: Option<Kernel<'a>>,
    reboot_required: bool,
    /// RFC 3339, while a reboot is due.
    #[serde(skip_serializing_if = "Option::is_none")]
    reboot_required_since: Option<String>,
    node: Node<'a>,
}

/// What the node is: its OS, and from its Node object the node image and container runtime.
#[derive(Serialize)]
struct Node<'a> {
    os_id: &'a str,
    os_version: &'a str,
    node_image: Option<&'a str>,
    node_image_age_seconds: Option<i64>,
    os_sku: Option<&'a str>,
    container_runtime: Option<&'a str>,
    /// `read`, `unread` (no Kubernetes API), or `failed` (`node_object_error` says why).
    node_object: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    node_object_error: Option<&'a str>,
}

/// The running kernel: its release, and the installed package that is it (`state`
/// `packaged`), or none (`unknown`); a newer installed one when a reboot would run it.
#[derive(Serialize)]
struct Kernel<'a> {
    release: &'a str,
    state: &'static str,
    package: Option<&'a str>,
    version: Option<&'a str>,
    newer_installed: Option<&'a str>,
}

/// One running container.
#[derive(Serialize)]
struct Container<'a> {
    id: &'a str,
    namespace: &'a str,
    pod: &'a str,
    container: &'a str,
    image: &'a str,
    image_digest: Option<&'a str>,
    manifest_digest: Option<&'a str>,
    config_digest: Option<&'a str>,
    /// Where the image's layers were read from: `content`, `snapshot`, `view` or `proc`
    /// (absent until the image is inventoried).
    #[serde(skip_serializing_if = "Option::is_none")]
    read_from: Option<&'a str>,
    started_at: Option<&'a str>,
    scan_status: ScanStatus,
    /// Why the scan failed, when it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a str>,
    stale_digest: Option<&'a StaleDigest>,
    /// Packages listed but not matched, per ecosystem release, and why.
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    coverage_gaps: &'a [Gap],
    report: Option<&'a ContainerReport>,
    drift: Option<&'a Drift>,
    runtime_checks: Checks,
    /// Files its processes map that were replaced or removed on disk.
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    deleted_files_in_use: &'a [String],
}

#[derive(Serialize)]
struct Checks {
    in_use: CheckState,
    drift: CheckState,
}

impl<'a> Findings<'a> {
    pub fn of(snap: &'a Snapshot) -> Findings<'a> {
        Findings {
            schema: snap.schema,
            node: &snap.node,
            generated_at: &snap.generated_at,
            advisory_db: &snap.advisory_db,
            containers: snap.containers.iter().map(container).collect(),
            node_scan: snap.node_scan.as_ref().map(node_scan),
            node_report: snap.node_scan.as_ref().map(|n| n.report.as_deref()),
        }
    }
}

fn node_scan(n: &NodeView) -> NodeScan<'_> {
    NodeScan {
        status: n.status,
        error: n.error.as_deref(),
        kernel: n.kernel.as_ref().map(|k| Kernel {
            release: &k.release,
            state: if k.package.is_some() {
                "packaged"
            } else {
                "unknown"
            },
            package: k.package.as_ref().map(|p| p.0.as_str()),
            version: k.package.as_ref().map(|p| p.1.as_str()),
            newer_installed: k.newer_installed.as_ref().map(|p| p.1.as_str()),
        }),
        reboot_required: n.reboot_required,
        reboot_required_since: n.reboot_since.map(stalewatch_core::time::format_rfc3339),
        node: node_info(&n.info),
    }
}

fn node_info(i: &NodeInfo) -> Node<'_> {
    fn some(s: &str) -> Option<&str> {
        (!s.is_empty()).then_some(s)
    }
    Node {
        os_id: &i.os_id,
        os_version: &i.os_version,
        node_image: some(&i.node_image),
        node_image_age_seconds: i.image_age,
        os_sku: some(&i.os_sku),
        container_runtime: some(&i.container_runtime),
        node_object: match (i.object_read, &i.object_error) {
            (_, Some(_)) => "failed",
            (true, None) => "read",
            (false, None) => "unread",
        },
        node_object_error: i.object_error.as_deref(),
    }
}

fn container(c: &ContainerView) -> Container<'_> {
    let RuntimeCheckStates { in_use, drift } = c.runtime_checks;
    Container {
        id: &c.id,
        namespace: &c.namespace,
        pod: &c.pod,
        container: &c.container,
        image: &c.image,
        image_digest: c.image_digest.as_deref(),
        manifest_digest: c.manifest_digest.as_deref(),
        config_digest: c.config_digest.as_deref(),
        read_from: c.read_from,
        started_at: c.started_at.as_deref(),
        scan_status: c.scan_status,
        error: c.error.as_deref(),
        stale_digest: c.stale_digest.as_ref(),
        coverage_gaps: &c.coverage_gaps,
        report: c.report.as_ref(),
        drift: c.drift.as_ref(),
        runtime_checks: Checks { in_use, drift },
        deleted_files_in_use: &c.deleted_files_in_use,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The container fields docs/cli.md documents for `/v1/findings`, in its order.
    fn documented() -> Vec<String> {
        let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/cli.md")).unwrap();
        let table = doc
            .split("<!-- findings-v1 container fields -->")
            .nth(1)
            .expect("docs/cli.md: the /v1/findings field table");
        table
            .lines()
            .skip_while(|l| !l.starts_with("| `"))
            .take_while(|l| l.starts_with('|'))
            .filter_map(|l| l.split('`').nth(1).map(str::to_string))
            .collect()
    }

    #[test]
    fn each_container_carries_the_documented_fields_in_order() {
        let mut c = ContainerView {
            id: "c1".into(),
            read_from: Some("content"),
            error: Some("x".into()),
            coverage_gaps: vec![Gap {
                ecosystem: "PyPI".into(),
                packages: 1,
                reason: crate::db::coverage::GapReason::NotConfigured,
            }],
            deleted_files_in_use: vec!["usr/lib/libz.so.1".into()],
            ..Default::default()
        };
        // Internal fields never go out.
        c.oldest_fix_age = 42;
        c.pod_uid = Some("uid".into());
        let snap = Snapshot {
            schema: "stalewatch/findings/v1",
            containers: vec![c],
            ..Default::default()
        };
        let text = serde_json::to_string(&Findings::of(&snap)).unwrap();
        let json: serde_json::Value = serde_json::from_str(&text).unwrap();
        let mut keys: Vec<String> = json["containers"][0]
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect();
        let mut want = documented();
        assert!(want.len() > 10, "{want:?}");
        // In the documented order on the wire (one container: each key appears once)…
        let at = |k: &str| {
            text.find(&format!("\"{k}\":"))
                .unwrap_or_else(|| panic!("{k} missing"))
        };
        assert!(want.windows(2).all(|w| at(&w[0]) < at(&w[1])), "{text}");
        // …and nothing else.
        keys.sort();
        want.sort();
        assert_eq!(keys, want);
        let top = [
            "\"schema\"",
            "\"node\"",
            "\"generated_at\"",
            "\"advisory_db\"",
            "\"containers\"",
        ];
        assert!(
            top.windows(2).all(|w| text.find(w[0]) < text.find(w[1])),
            "{text}"
        );
        assert_eq!(
            json["containers"][0]["runtime_checks"]["in_use"]["state"],
            "pending"
        );
        // Optional fields are left out, not null, when empty.
        let bare = Snapshot {
            containers: vec![ContainerView::default()],
            ..Default::default()
        };
        let json = serde_json::to_value(Findings::of(&bare)).unwrap();
        for absent in ["read_from", "error", "coverage_gaps", "deleted_files_in_use"] {
            assert!(json["containers"][0].get(absent).is_none(), "{absent}");
        }
    }
}
