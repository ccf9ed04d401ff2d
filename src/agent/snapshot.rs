//! The agent's published state: plain data, built from runtime inventory, image inventories
//! and the current advisory index, swapped whole so readers never see half of an update.

use serde::Serialize;
use std::collections::BTreeMap;

use stalewatch_core::advisory::Severity;
use stalewatch_core::matcher::Finding;
use stalewatch_core::report::Report;
use stalewatch_core::vulnerability;

use super::runtime::RunningContainer;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ScanStatus {
    Ok,
    Pending,
    Failed,
    UnsupportedOs,
    NoPackageDb,
}

impl ScanStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ScanStatus::Ok => "ok",
            ScanStatus::Pending => "pending",
            ScanStatus::Failed => "failed",
            ScanStatus::UnsupportedOs => "unsupported_os",
            ScanStatus::NoPackageDb => "no_package_db",
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct ContainerView {
    pub id: String,
    pub namespace: String,
    pub pod: String,
    pub container: String,
    pub image: String,
    pub image_digest: Option<String>,
    pub manifest_digest: Option<String>,
    pub config_digest: Option<String>,
    pub started_at: Option<String>,
    pub scan_status: ScanStatus,
    /// Why the scan failed, when it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub stale_digest: Option<super::runtime::StaleDigest>,
    pub report: Option<std::sync::Arc<Report>>,
    pub drift: Option<super::drift::Drift>,
    #[serde(skip)]
    pub started_unix: Option<i64>,
    /// (severity, fixable) → distinct vulnerabilities.
    #[serde(skip)]
    pub vulnerabilities: BTreeMap<(Severity, bool), u64>,
    #[serde(skip)]
    pub oldest_fix_age: i64,
    #[serde(skip)]
    pub pod_uid: Option<String>,
    #[serde(skip)]
    pub notable: Notable,
    /// Distinct vulnerabilities by severity whose package a process of the container maps
    /// (`None`: unknown — no map read).
    #[serde(skip)]
    pub vulnerabilities_in_use: Option<BTreeMap<Severity, u64>>,
    /// Files its processes map that were replaced or removed on disk: old copies still run.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub deleted_files_in_use: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ImageView {
    pub image: String,
    pub image_digest: String,
    pub os_id: String,
    pub os_version: String,
    pub os_eol: bool,
    pub created: Option<i64>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct DbView {
    pub updated_at: Option<String>,
    pub records: BTreeMap<String, u64>,
    #[serde(skip)]
    pub updated_unix: Option<i64>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Snapshot {
    pub schema: &'static str,
    pub node: String,
    pub generated_at: String,
    pub advisory_db: DbView,
    pub containers: Vec<ContainerView>,
    #[serde(skip)]
    pub images: Vec<ImageView>,
}

/// Counts distinct vulnerabilities by (severity, fixable).
pub fn count_vulnerabilities(findings: &[Finding]) -> BTreeMap<(Severity, bool), u64> {
    let mut out = BTreeMap::new();
    for v in vulnerability::group(findings) {
        *out.entry((v.severity, v.fixable)).or_default() += 1;
    }
    out
}

/// When a finding's fix became known: its record's `published`, else when this agent first
/// saw that fixed version; `None` for a finding without a fix.
fn fix_known_at(f: &Finding, first_seen: &BTreeMap<String, i64>) -> Option<i64> {
    if !f.fixable {
        return None;
    }
    let published = f
        .published
        .as_deref()
        .and_then(|p| humantime::parse_rfc3339_weak(p.trim_end_matches('Z').split('.').next()?).ok())
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_secs() as i64);
    published.or_else(|| first_seen.get(&fix_key(f)).copied())
}

/// Fix age of the oldest fix not deployed: `now` minus when the fix became known (the
/// finding's `published`, else when this agent first saw that fixed version).
pub fn oldest_fix_age(findings: &[Finding], first_seen: &BTreeMap<String, i64>, now: i64) -> i64 {
    findings
        .iter()
        .filter_map(|f| fix_known_at(f, first_seen))
        .min()
        .map(|known| (now - known).max(0))
        .unwrap_or(0)
}

/// The vulnerabilities an operator must hear about, each named by its first id: `stale`
/// (a fix known for longer than `stale_after` seconds, any severity) and `severe` (fixable,
/// critical or high).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Notable {
    pub stale: Vec<String>,
    pub severe: Vec<(String, Severity)>,
}

pub fn notable(
    findings: &[Finding],
    first_seen: &BTreeMap<String, i64>,
    now: i64,
    stale_after: i64,
) -> Notable {
    let mut out = Notable::default();
    for v in vulnerability::group(findings) {
        let Some(id) = v.ids.first() else { continue };
        if !v.fixable {
            continue;
        }
        let oldest = v
            .findings
            .iter()
            .filter_map(|&i| fix_known_at(&findings[i], first_seen))
            .min();
        if oldest.is_some_and(|known| now - known > stale_after) {
            out.stale.push(id.clone());
        }
        if v.severity >= Severity::High {
            out.severe.push((id.clone(), v.severity));
        }
    }
    out
}

/// The key under which the first sighting of a fix is remembered.
pub fn fix_key(f: &Finding) -> String {
    format!(
        "{} {} {}",
        f.id,
        f.package,
        f.fixed_version.as_deref().unwrap_or("")
    )
}

/// A copy of `report` whose findings say whether their package is in use (`in_use`: true or
/// false where the package's database lists its files, absent otherwise), and the distinct
/// vulnerabilities in use by severity.
pub fn mark_in_use(
    report: &Report,
    inv: &stalewatch_core::catalog::Inventory,
    mapped: &super::in_use::Mapped,
) -> (Report, BTreeMap<Severity, u64>) {
    let used: std::collections::BTreeSet<&str> = mapped
        .files
        .iter()
        .filter_map(|f| inv.mapped_files.get(f).map(String::as_str))
        .collect();
    let mut marked = report.clone();
    for f in &mut marked.findings {
        f.in_use = inv
            .with_file_lists
            .contains(&*f.package)
            .then(|| used.contains(&*f.package));
    }
    let mut counts = BTreeMap::new();
    for v in vulnerability::group(&marked.findings) {
        if v.findings
            .iter()
            .any(|&i| marked.findings[i].in_use == Some(true))
        {
            *counts.entry(v.severity).or_default() += 1;
        }
    }
    (marked, counts)
}

/// Builds the view of one running container.
pub fn container_view(rc: &RunningContainer) -> ContainerView {
    ContainerView {
        id: rc.id.clone(),
        namespace: rc.namespace.clone(),
        pod: rc.pod.clone(),
        container: rc.container.clone(),
        image: rc.image.clone(),
        image_digest: rc.image_digest.clone(),
        manifest_digest: None,
        config_digest: None,
        started_at: rc.started_at.map(crate::clock::rfc3339),
        scan_status: ScanStatus::Pending,
        error: None,
        stale_digest: rc.stale.clone(),
        report: None,
        drift: None,
        started_unix: rc.started_at,
        vulnerabilities: BTreeMap::new(),
        oldest_fix_age: 0,
        pod_uid: rc.pod_uid.clone(),
        notable: Notable::default(),
        vulnerabilities_in_use: None,
        deleted_files_in_use: Vec::new(),
    }
}
