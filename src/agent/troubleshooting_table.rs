//! docs/troubleshooting.md held against the code: each section lists exactly the reasons its
//! signal can carry — the code's closed sets (exhaustive matches below break the build when a
//! variant is added), the advisory updates' `fail("…")` reasons read from their source.

use std::collections::{BTreeMap, BTreeSet};

use stalewatch_core::layer::LayerError;

use super::images::failure::FailureKind;
use super::metrics::{STATE_LOAD_REASONS, TASKS, VIEW_RESULTS};
use super::snapshot::{ScanStatus, Unchecked};
use crate::containerd::ContainerdError;
use crate::source::overlay::SnapshotError;

/// Per section (the metric its heading names first), the first column's values.
fn table() -> BTreeMap<String, BTreeSet<String>> {
    let doc =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/troubleshooting.md")).unwrap();
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut section = None;
    for line in doc.lines() {
        if let Some(h) = line.strip_prefix("## ") {
            section = h
                .split('`')
                .nth(1)
                .map(|m| m.split('{').next().unwrap_or(m).to_string());
            continue;
        }
        if let (Some(s), Some(row)) = (&section, line.strip_prefix("| `")) {
            let value = row.split('`').next().unwrap_or_default();
            out.entry(s.clone()).or_default().insert(value.to_string());
        }
    }
    out
}

fn set(values: impl IntoIterator<Item = &'static str>) -> BTreeSet<String> {
    values.into_iter().map(str::to_string).collect()
}

fn scan_statuses() -> BTreeSet<String> {
    use ScanStatus::*;
    let all = [Ok, Pending, Failed, UnsupportedOs, NoPackageDb, NoAdvisoryFeed];
    for s in all {
        match s {
            Ok | Pending | Failed | UnsupportedOs | NoPackageDb | NoAdvisoryFeed => {}
        }
    }
    // `ok` is no failure.
    set(all.into_iter().filter(|s| *s != Ok).map(ScanStatus::as_str))
}

fn scan_errors() -> BTreeSet<String> {
    let layer = [
        LayerError::Truncated,
        LayerError::CorruptHeader {
            offset: 0,
            reason: String::new(),
        },
        LayerError::DecompressedTooLarge { cap: 0 },
        LayerError::Io(std::io::Error::other("x")),
    ];
    for l in &layer {
        match l {
            LayerError::Truncated
            | LayerError::CorruptHeader { .. }
            | LayerError::DecompressedTooLarge { .. }
            | LayerError::Io(_) => {}
        }
    }
    let snapshot = [
        SnapshotError::UnsupportedMount(String::new()),
        SnapshotError::Empty,
    ];
    for s in &snapshot {
        match s {
            SnapshotError::UnsupportedMount(_) | SnapshotError::Empty => {}
        }
    }
    let kinds = [
        FailureKind::BlobMissing,
        FailureKind::ContentRead,
        FailureKind::DigestMismatch,
        FailureKind::NoPlatform,
        FailureKind::Timeout,
        FailureKind::Other,
    ];
    for k in kinds {
        match k {
            FailureKind::BlobMissing
            | FailureKind::ContentRead
            | FailureKind::DigestMismatch
            | FailureKind::NoPlatform
            | FailureKind::Layer(_)
            | FailureKind::Snapshot(_)
            | FailureKind::Timeout
            | FailureKind::Other => {}
        }
    }
    let mut out = set(kinds.into_iter().map(FailureKind::reason));
    out.extend(layer.iter().map(|l| l.reason().to_string()));
    out.extend(snapshot.iter().map(|s| s.reason().to_string()));
    // The runtime checks' drift read, counted here too (runtime_checks/mod.rs).
    let checks = include_str!("runtime_checks/mod.rs");
    assert!(checks.contains(r#"reason: "drift_read""#));
    out.insert("drift_read".into());
    // The node scan's read of the host (node.rs), counted here too.
    assert!(include_str!("node.rs").contains(r#"reason: "node_read""#));
    out.insert("node_read".into());
    out
}

fn runtime_checks() -> BTreeSet<String> {
    use Unchecked::*;
    let all = [Sandboxed, Denied, ReadFailed];
    for u in all {
        match u {
            Sandboxed | Denied | ReadFailed => {}
        }
    }
    set(all.into_iter().map(Unchecked::reason))
}

fn containerd() -> BTreeSet<String> {
    let call = |code| ContainerdError::Call {
        what: String::new(),
        code,
        message: String::new(),
    };
    let mut errors = vec![
        ContainerdError::Deadline {
            what: String::new(),
            after: std::time::Duration::ZERO,
        },
        ContainerdError::Connect {
            address: Default::default(),
            detail: String::new(),
        },
        ContainerdError::BlobMissing {
            digest: String::new(),
            message: String::new(),
        },
    ];
    errors.extend((0..=16).map(|c| call(tonic::Code::from(c))));
    set(errors.iter().map(ContainerdError::reason))
}

/// The reasons `fail("…", …)` gives in the advisory update code.
fn advisory_updates() -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for code in [include_str!("../db/update.rs"), include_str!("../db/feeds.rs")] {
        for (i, _) in code.match_indices("fail(") {
            let rest = code[i + 5..].trim_start();
            if let Some(r) = rest.strip_prefix('"') {
                out.insert(r.split('"').next().unwrap_or_default().to_string());
            }
        }
    }
    out
}

#[test]
fn the_troubleshooting_table_lists_exactly_the_reasons_the_code_reports() {
    let table = table();
    let code: BTreeMap<String, BTreeSet<String>> = [
        ("stalewatch_container_scan_status", scan_statuses()),
        ("stalewatch_scan_errors_total", scan_errors()),
        ("stalewatch_runtime_check_errors_total", runtime_checks()),
        ("stalewatch_containerd_list_failures_total", containerd()),
        ("stalewatch_advisory_update_errors_total", advisory_updates()),
        (
            "stalewatch_snapshot_views_total",
            set(VIEW_RESULTS.into_iter().filter(|r| *r != "removed")),
        ),
        ("stalewatch_state_load_errors_total", set(STATE_LOAD_REASONS)),
        ("stalewatch_task_failures_total", set(TASKS)),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    assert!(code.values().all(|v| v.len() >= 2), "{code:?}");
    assert_eq!(
        table, code,
        "docs/troubleshooting.md and the code's reasons differ"
    );
}
