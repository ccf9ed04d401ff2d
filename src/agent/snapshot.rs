//! The agent's published state: plain data, built from runtime inventory, image inventories
//! and the current advisory index, swapped whole so readers never see half of an update.

use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::Arc;

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
    pub report: Option<ContainerReport>,
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
    /// The report of each image that runs, by its manifest digest and by its image (target)
    /// digest: what `/v1/sbom/<digest>` serves.
    #[serde(skip)]
    pub image_reports: BTreeMap<String, Arc<Report>>,
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

/// A container's report: the shared report of its image (or of its live inventory), and,
/// where its processes' maps were read, whether each finding's package is in use. The marks
/// live beside the shared report, not in a copy of it: a node's worth of containers costs a
/// few bytes each. Readers see the report; its JSON carries the marks in each finding.
#[derive(Debug, Clone)]
pub struct ContainerReport {
    pub report: Arc<Report>,
    /// Per finding of `report`, in order (`None` inside: unknown for that package).
    pub in_use: Option<Arc<[Option<bool>]>>,
}

impl ContainerReport {
    pub fn new(report: Arc<Report>) -> ContainerReport {
        ContainerReport { report, in_use: None }
    }
}

impl std::ops::Deref for ContainerReport {
    type Target = Report;
    fn deref(&self) -> &Report {
        &self.report
    }
}

impl Serialize for ContainerReport {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        // Report's fields, in its order, with the marks set in each finding (checked against
        // Report's own serialization by a test).
        #[derive(Serialize)]
        struct View<'a> {
            schema: &'a str,
            target: &'a str,
            os: &'a Option<stalewatch_core::report::ReportOs>,
            packages: &'a [stalewatch_core::package::Package],
            findings: Marked<'a>,
            #[serde(skip_serializing_if = "<[Finding]>::is_empty")]
            informational: &'a [Finding],
            summary: &'a stalewatch_core::report::Summary,
            unreadable: &'a [stalewatch_core::layer::diagnostics::Unreadable],
        }
        struct Marked<'a>(&'a [Finding], Option<&'a [Option<bool>]>);
        impl Serialize for Marked<'_> {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                use serde::ser::SerializeSeq;
                let mut seq = s.serialize_seq(Some(self.0.len()))?;
                for (i, f) in self.0.iter().enumerate() {
                    match self.1.and_then(|m| m.get(i)) {
                        Some(&mark) => seq.serialize_element(&Finding {
                            in_use: mark,
                            ..f.clone()
                        })?,
                        None => seq.serialize_element(f)?,
                    }
                }
                seq.end()
            }
        }
        let r = &*self.report;
        View {
            schema: r.schema,
            target: &r.target,
            os: &r.os,
            packages: &r.packages,
            findings: Marked(&r.findings, self.in_use.as_deref()),
            informational: &r.informational,
            summary: &r.summary,
            unreadable: &r.unreadable,
        }
        .serialize(s)
    }
}

/// Whether each finding of `report` is in use (true or false where the package's database
/// lists its files, unknown otherwise), and the distinct vulnerabilities in use by severity.
pub fn in_use_marks(
    report: &Report,
    inv: &stalewatch_core::catalog::Inventory,
    mapped: &super::in_use::Mapped,
) -> (Arc<[Option<bool>]>, BTreeMap<Severity, u64>) {
    let used: std::collections::BTreeSet<&str> = mapped
        .files
        .iter()
        .filter_map(|f| inv.mapped_files.get(f).map(String::as_str))
        .collect();
    let marks: Arc<[Option<bool>]> = report
        .findings
        .iter()
        .map(|f| {
            inv.with_file_lists
                .contains(&*f.package)
                .then(|| used.contains(&*f.package))
        })
        .collect();
    let mut counts = BTreeMap::new();
    for v in vulnerability::group(&report.findings) {
        if v.findings.iter().any(|&i| marks[i] == Some(true)) {
            *counts.entry(v.severity).or_default() += 1;
        }
    }
    (marks, counts)
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

#[cfg(test)]
mod tests {
    use super::*;
    use stalewatch_core::catalog::Inventory;
    use stalewatch_core::package::Package;

    fn package(name: &str) -> Package {
        Package {
            ecosystem: "Alpine:v3.20".into(),
            name: name.into(),
            version: "1.0-r0".into(),
            source_name: name.into(),
            source_version: "1.0-r0".into(),
            purl: format!("pkg:apk/alpine/{name}@1.0-r0"),
            path: "lib/apk/db/installed".into(),
            arch: "x86_64".into(),
            layer: None,
        }
    }

    fn finding(id: &str, package: &str) -> Finding {
        Finding {
            id: id.into(),
            aliases: Arc::from(Vec::<String>::new()),
            ecosystem: "Alpine:v3.20".into(),
            package: package.into(),
            source_name: package.into(),
            installed_version: "1.0-r0".into(),
            fixed_version: Some("1.1-r0".into()),
            fixable: true,
            severity: Severity::High,
            cvss_score: None,
            published: None,
            summary: "".into(),
            path: "lib/apk/db/installed".into(),
            drift: None,
            in_use: None,
            informational: None,
        }
    }

    /// musl (listed, mapped), openssl (listed, not mapped), tzdata (no file list).
    fn fixture() -> (Report, Inventory, super::super::in_use::Mapped) {
        let mut inv = Inventory {
            packages: vec![package("musl"), package("openssl"), package("tzdata")],
            databases: vec!["lib/apk/db/installed".into()],
            ..Default::default()
        };
        inv.with_file_lists = ["musl", "openssl"].iter().map(|s| s.to_string()).collect();
        inv.mapped_files = Arc::new(
            [
                ("lib/ld-musl-x86_64.so.1", "musl"),
                ("usr/lib/libcrypto.so.3", "openssl"),
            ]
            .iter()
            .map(|(f, p)| (f.to_string(), p.to_string()))
            .collect(),
        );
        let findings = vec![
            finding("CVE-2025-1", "musl"),
            finding("CVE-2025-2", "openssl"),
            finding("CVE-2025-3", "tzdata"),
        ];
        let report = Report::new("t", inv.without_file_owners(), findings, vec![], 0);
        let mapped = super::super::in_use::Mapped {
            files: ["lib/ld-musl-x86_64.so.1".to_string()].into(),
            deleted: Default::default(),
        };
        (report, inv, mapped)
    }

    #[test]
    fn unmarked_container_report_serializes_as_the_report() {
        let (report, _, _) = fixture();
        let plain = serde_json::to_value(&report).unwrap();
        let wrapped = serde_json::to_value(ContainerReport::new(Arc::new(report))).unwrap();
        assert_eq!(plain, wrapped);
    }

    #[test]
    fn marks_say_true_false_or_nothing_per_finding() {
        let (report, inv, mapped) = fixture();
        let (marks, counts) = in_use_marks(&report, &inv, &mapped);
        assert_eq!(&*marks, &[Some(true), Some(false), None]);
        assert_eq!(counts, BTreeMap::from([(Severity::High, 1)]));
        let marked = ContainerReport {
            report: Arc::new(report),
            in_use: Some(marks),
        };
        let json = serde_json::to_value(&marked).unwrap();
        let in_use: Vec<_> = json["findings"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f.get("in_use").cloned())
            .collect();
        assert_eq!(
            in_use,
            vec![Some(true.into()), Some(false.into()), None],
            "{json}"
        );
        // The shared report itself is not touched.
        assert!(marked.report.findings.iter().all(|f| f.in_use.is_none()));
    }
}
