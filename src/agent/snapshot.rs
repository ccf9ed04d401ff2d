//! The agent's published state: plain data, built from runtime inventory, image inventories
//! and the current advisory index, swapped whole so readers never see half of an update.
//! The facts the owners find (a stale digest, drift) are defined here, at the bottom, so
//! every owner and exporter can name them without importing another owner.

use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::Arc;

use stalewatch_core::advisory::Severity;
use stalewatch_core::matcher::Finding;
use stalewatch_core::report::Report;
use stalewatch_core::vulnerability;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ScanStatus {
    Ok,
    #[default]
    Pending,
    Failed,
    UnsupportedOs,
    NoPackageDb,
    /// Matched, but some of its packages could not be: their ecosystem or release has no
    /// advisory data on the source (`coverage_gaps` says which).
    NoAdvisoryFeed,
}

impl ScanStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ScanStatus::Ok => "ok",
            ScanStatus::Pending => "pending",
            ScanStatus::Failed => "failed",
            ScanStatus::UnsupportedOs => "unsupported_os",
            ScanStatus::NoPackageDb => "no_package_db",
            ScanStatus::NoAdvisoryFeed => "no_advisory_feed",
        }
    }

    /// Whether the container has a report of findings (all of its packages matched, or all
    /// but those its `coverage_gaps` name).
    pub fn has_report(self) -> bool {
        matches!(self, ScanStatus::Ok | ScanStatus::NoAdvisoryFeed)
    }
}

/// A running container as the snapshot holds it: what `/v1/findings` shows
/// (`findings_v1.rs`, the wire type) and the counts the metrics and the change list read.
#[derive(Debug, Clone, Default)]
pub struct ContainerView {
    pub id: String,
    pub namespace: String,
    pub pod: String,
    pub container: String,
    pub image: String,
    pub image_digest: Option<String>,
    pub manifest_digest: Option<String>,
    pub config_digest: Option<String>,
    /// Where the image's layers were read from: `content`, `snapshot`, `view` or `proc`
    /// (absent until the image is inventoried).
    pub read_from: Option<&'static str>,
    pub started_at: Option<String>,
    pub scan_status: ScanStatus,
    /// Why the scan failed, when it did.
    pub error: Option<String>,
    pub stale_digest: Option<StaleDigest>,
    /// Packages listed but not matched, per ecosystem release, and why (`no_advisory_feed`).
    pub coverage_gaps: Vec<crate::db::coverage::Gap>,
    pub report: Option<ContainerReport>,
    pub drift: Option<Drift>,
    /// Whether the runtime checks were made, and why not.
    pub runtime_checks: RuntimeCheckStates,
    pub started_unix: Option<i64>,
    /// (severity, fixable) → distinct vulnerabilities.
    pub vulnerabilities: BTreeMap<(Severity, bool), u64>,
    pub triage: TriageCounts,
    pub oldest_fix_age: i64,
    pub pod_uid: Option<String>,
    pub notable: Notable,
    /// Distinct vulnerabilities by severity whose package a process of the container maps
    /// (`None`: unknown — no map read).
    pub vulnerabilities_in_use: Option<BTreeMap<Severity, u64>>,
    /// Files its processes map that were replaced or removed on disk: old copies still run.
    pub deleted_files_in_use: Vec<String>,
}

/// A container whose image name moved on: what it runs, and what the name resolves to now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StaleDigest {
    /// The image (record target digest) the container was created from; when the node no
    /// longer holds that image, the chain ID of its layers.
    pub running_digest: String,
    /// Whether `running_digest` is a chain ID (the image itself is gone from the node).
    pub running_image_gone: bool,
    pub current_digest: String,
}

/// Why a runtime check of a container was not made: a runtime-check reason, never a scan
/// status (the image is still scanned). `stalewatch_runtime_check_errors_total{reason}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Unchecked {
    /// A VM or sandbox runtime (`--sandboxed-runtimes`): its task PID is not the container's,
    /// so nothing is read through `/proc`.
    Sandboxed,
    /// The kernel refused the read (no `SYS_PTRACE`, or a process the agent may not trace).
    Denied,
    /// Any other read failure.
    ReadFailed,
}

impl Unchecked {
    pub fn reason(self) -> &'static str {
        match self {
            Unchecked::Sandboxed => "sandboxed",
            Unchecked::Denied => "denied",
            Unchecked::ReadFailed => "read_failed",
        }
    }

    /// The reason an I/O error gives.
    pub fn of_io(e: &std::io::Error) -> Unchecked {
        match e.kind() {
            std::io::ErrorKind::PermissionDenied => Unchecked::Denied,
            _ => Unchecked::ReadFailed,
        }
    }
}

/// One runtime check of a container as `/v1/findings` shows it: `ok`, `unknown` (with its
/// reason), `pending` (not made yet) or `off` (`--drift-interval off`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct CheckState {
    pub state: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<Unchecked>,
}

impl Default for CheckState {
    fn default() -> CheckState {
        CheckState::PENDING
    }
}

impl CheckState {
    pub const OK: CheckState = CheckState {
        state: "ok",
        reason: None,
    };
    pub const PENDING: CheckState = CheckState {
        state: "pending",
        reason: None,
    };
    pub const OFF: CheckState = CheckState {
        state: "off",
        reason: None,
    };

    pub fn unknown(reason: Unchecked) -> CheckState {
        CheckState {
            state: "unknown",
            reason: Some(reason),
        }
    }
}

/// A container's runtime checks: packages in use (its processes' maps) and drift (its live
/// package databases).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct RuntimeCheckStates {
    pub in_use: CheckState,
    pub drift: CheckState,
}

/// A package as drift reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DriftPackage {
    pub name: String,
    pub version: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChangedPackage {
    pub name: String,
    pub image_version: String,
    pub live_version: String,
}

/// Packages added, removed or changed at run time, each sorted by name.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Drift {
    pub added: Vec<DriftPackage>,
    pub removed: Vec<DriftPackage>,
    pub changed: Vec<ChangedPackage>,
}

impl Drift {
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty() && self.changed.is_empty()
    }

    /// How a package of the live inventory drifted (`added`, `changed`), if it did.
    pub fn kind_of(&self, name: &str) -> Option<&'static str> {
        if self.added.iter().any(|p| p.name == name) {
            Some("added")
        } else if self.changed.iter().any(|p| p.name == name) {
            Some("changed")
        } else {
            None
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct ImageView {
    pub image: String,
    pub image_digest: String,
    /// (id, version, end of life) when the OS is known.
    pub os: Option<(String, String, bool)>,
    pub created: Option<i64>,
    pub base: Option<stalewatch_core::lineage::Base>,
    /// (base name, distinct vulnerabilities a rebuild fixes) when the node holds a newer base.
    pub rebuild_fixable: Option<(String, u64)>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct DbView {
    pub updated_at: Option<String>,
    /// When the source last synced its data upstream (its `stalewatch-sync.json`, or the
    /// OSV bucket's newest record), where it says so.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_synced_at: Option<String>,
    pub records: BTreeMap<String, u64>,
    #[serde(skip)]
    pub updated_unix: Option<i64>,
    #[serde(skip)]
    pub synced_unix: Option<i64>,
}

/// The node's own packages (`--node-scan`): its report, status and kernel.
#[derive(Debug, Clone, Default)]
pub struct NodeView {
    pub status: ScanStatus,
    /// Why the scan failed, when it did.
    pub error: Option<String>,
    pub report: Option<Arc<Report>>,
    pub kernel: Option<stalewatch_core::kernel::RunningKernel>,
    pub reboot_required: bool,
    /// Since when a reboot is due (Unix seconds), while one is.
    pub reboot_since: Option<i64>,
    pub info: NodeInfo,
    /// (severity, fixable) → distinct vulnerabilities.
    pub vulnerabilities: BTreeMap<(Severity, bool), u64>,
    pub triage: TriageCounts,
    pub oldest_fix_age: i64,
}

/// What the node is: its OS, kernel, node image and container runtime (each empty where
/// unknown).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeInfo {
    pub os_id: String,
    pub os_version: String,
    pub kernel: String,
    /// The AKS node image (`kubernetes.azure.com/node-image-version`).
    pub node_image: String,
    /// `kubernetes.azure.com/os-sku`.
    pub os_sku: String,
    /// `status.nodeInfo.containerRuntimeVersion` (`containerd://1.7.27`).
    pub container_runtime: String,
    /// Seconds since the node image was built, where its version encodes the date.
    pub image_age: Option<i64>,
    /// Whether the Node object was read.
    pub object_read: bool,
    /// Why its last read failed.
    pub object_error: Option<String>,
}

#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub schema: &'static str,
    pub node: String,
    pub generated_at: String,
    pub advisory_db: DbView,
    pub containers: Vec<ContainerView>,
    pub images: Vec<ImageView>,
    /// Each `--base-image` and whether the node holds it.
    pub declared_bases: Vec<(String, bool)>,
    pub triage: TriageView,
    /// The report of each image that runs, by its manifest digest and by its image (target)
    /// digest: what `/v1/sbom/<digest>` serves.
    pub image_reports: BTreeMap<String, Arc<Report>>,
    /// The report of each newer build the node holds of a running container's tag (its stale
    /// digest's current one), by image digest: what a redeploy would run.
    pub newer_reports: BTreeMap<String, Arc<Report>>,
    /// The node's own packages, when the node scan is on.
    pub node_scan: Option<NodeView>,
}

/// Which triage data was in force when the snapshot was built (metrics are absent, not 0,
/// for data that is not loaded).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct TriageView {
    pub kev_loaded: bool,
    /// KEV `dateReleased`, seconds since the epoch.
    pub kev_released: Option<i64>,
    pub epss_loaded: bool,
    /// EPSS `score_date`, seconds since the epoch.
    pub epss_date: Option<i64>,
    pub vex_loaded: bool,
}

/// A container's triage counts: distinct vulnerabilities known exploited, the highest EPSS
/// score, distinct vulnerabilities VEX suppressed.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct TriageCounts {
    pub known_exploited: u64,
    pub max_epss: f32,
    pub suppressed: u64,
}

pub fn triage_counts(report: &Report) -> TriageCounts {
    TriageCounts {
        known_exploited: vulnerability::group(&report.findings)
            .iter()
            .filter(|v| {
                v.findings
                    .iter()
                    .any(|&i| report.findings[i].known_exploited == Some(true))
            })
            .count() as u64,
        max_epss: report
            .findings
            .iter()
            .filter_map(|f| f.epss.as_ref().map(|e| e.score))
            .fold(0.0, f32::max),
        suppressed: vulnerability::group(&report.suppressed).len() as u64,
    }
}

/// Counts distinct vulnerabilities by (severity, fixable).
pub fn count_vulnerabilities<F: std::borrow::Borrow<Finding>>(
    findings: &[F],
) -> BTreeMap<(Severity, bool), u64> {
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
        .and_then(stalewatch_core::time::rfc3339_seconds);
    published.or_else(|| first_seen.get(&fix_key(f)).copied())
}

/// Fix age of the oldest fix not deployed: `now` minus when the fix became known (the
/// finding's `published`, else when this agent first saw that fixed version).
pub fn oldest_fix_age<F: std::borrow::Borrow<Finding>>(
    findings: &[F],
    first_seen: &BTreeMap<String, i64>,
    now: i64,
    min: Severity,
) -> i64 {
    findings
        .iter()
        .map(F::borrow)
        .filter(|f| f.severity >= min)
        .filter_map(|f| fix_known_at(f, first_seen))
        .min()
        .map(|known| (now - known).max(0))
        .unwrap_or(0)
}

/// What a notifier is told about: findings at or above a severity, or known-exploited ones
/// only (`--kube-events-min-severity`, `--notify-min-severity`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MinSeverity {
    Severity(Severity),
    Kev,
}

impl MinSeverity {
    /// Whether a finding of `severity` (known exploited or not) meets the minimum; a finding
    /// of unknown severity meets only `kev`, when it is known exploited.
    pub fn admits(self, severity: Severity, known_exploited: bool) -> bool {
        match self {
            MinSeverity::Severity(s) => severity >= s && severity != Severity::Unknown,
            MinSeverity::Kev => known_exploited,
        }
    }
}

/// The vulnerabilities an operator may hear about, each named by its first id: `stale` (a
/// fix known for longer than `stale_after` seconds, any severity) and `fixable` (each
/// fixable one, its severity and whether it is known exploited: each notifier keeps those
/// its own minimum admits).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Notable {
    pub stale: Vec<String>,
    pub fixable: Vec<(String, Severity, bool)>,
}

pub fn notable<F: std::borrow::Borrow<Finding>>(
    findings: &[F],
    first_seen: &BTreeMap<String, i64>,
    now: i64,
    stale_after: i64,
    stale_min: Severity,
) -> Notable {
    let findings: Vec<&Finding> = findings.iter().map(F::borrow).collect();
    let findings = findings.as_slice();
    let mut out = Notable::default();
    for v in vulnerability::group(findings) {
        let Some(id) = v.ids.first() else { continue };
        if !v.fixable {
            continue;
        }
        let oldest = v
            .findings
            .iter()
            .filter_map(|&i| fix_known_at(findings[i], first_seen))
            .min();
        if v.severity >= stale_min && oldest.is_some_and(|at| now - at > stale_after) {
            out.stale.push(id.clone());
        }
        let kev = v
            .findings
            .iter()
            .any(|&i| findings[i].known_exploited == Some(true));
        out.fixable.push((id.clone(), v.severity, kev));
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

/// A container's report: the shared report of its image (or of its live inventory), and the
/// agent's annotations of its findings — whether each finding's package is in use (where its
/// processes' maps were read) and whether it drifted at run time. The annotations live beside
/// the shared report, not in a copy of it: a node's worth of containers costs a few bytes
/// each. Readers see the report; its JSON carries the annotations in each finding.
#[derive(Debug, Clone)]
pub struct ContainerReport {
    pub report: Arc<Report>,
    /// Per finding of `report`, in order (`None` inside: unknown for that package).
    pub in_use: Option<Arc<[Option<bool>]>>,
    /// Per finding of `report`, in order: `added` or `changed` at run time.
    pub drift: Option<Arc<[Option<&'static str>]>>,
}

impl ContainerReport {
    pub fn new(report: Arc<Report>) -> ContainerReport {
        ContainerReport {
            report,
            in_use: None,
            drift: None,
        }
    }
}

impl std::ops::Deref for ContainerReport {
    type Target = Report;
    fn deref(&self) -> &Report {
        &self.report
    }
}

/// A finding as `/v1/findings` shows it: the core's finding and the agent's annotations.
#[derive(Serialize)]
struct AnnotatedFinding<'a> {
    #[serde(flatten)]
    finding: &'a Finding,
    /// `added` or `changed` when the package differs at run time from the image.
    #[serde(skip_serializing_if = "Option::is_none")]
    drift: Option<&'static str>,
    /// Whether a process of the container maps a file of the package (absent where that is
    /// unknown: no file list, or no process map read).
    #[serde(skip_serializing_if = "Option::is_none")]
    in_use: Option<bool>,
}

impl Serialize for ContainerReport {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        // Report's fields, in its order, with the annotations set in each finding (checked
        // against Report's own serialization by a test).
        #[derive(Serialize)]
        struct View<'a> {
            schema: &'a str,
            target: &'a str,
            os: &'a Option<stalewatch_core::report::ReportOs>,
            packages: &'a [stalewatch_core::package::Package],
            findings: Annotated<'a>,
            #[serde(skip_serializing_if = "<[Arc<Finding>]>::is_empty")]
            informational: &'a [Arc<Finding>],
            #[serde(skip_serializing_if = "<[Arc<Finding>]>::is_empty")]
            suppressed: &'a [Arc<Finding>],
            summary: &'a stalewatch_core::report::Summary,
            unreadable: &'a [stalewatch_core::layer::diagnostics::Unreadable],
            base: &'a Option<stalewatch_core::lineage::Base>,
            source: &'a Option<String>,
            revision: &'a Option<String>,
            #[serde(skip_serializing_if = "Option::is_none")]
            rebuild: &'a Option<stalewatch_core::lineage::Rebuild>,
        }
        struct Annotated<'a>(&'a ContainerReport);
        impl Serialize for Annotated<'_> {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                use serde::ser::SerializeSeq;
                let c = self.0;
                let mut seq = s.serialize_seq(Some(c.report.findings.len()))?;
                for (i, f) in c.report.findings.iter().enumerate() {
                    seq.serialize_element(&AnnotatedFinding {
                        finding: f,
                        drift: c.drift.as_ref().and_then(|d| d.get(i).copied().flatten()),
                        in_use: c.in_use.as_ref().and_then(|m| m.get(i).copied().flatten()),
                    })?;
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
            findings: Annotated(self),
            informational: &r.informational,
            suppressed: &r.suppressed,
            summary: &r.summary,
            unreadable: &r.unreadable,
            base: &r.base,
            source: &r.source,
            revision: &r.revision,
            rebuild: &r.rebuild,
        }
        .serialize(s)
    }
}

/// Distinct vulnerabilities (alias groups) among the findings a rebuild fixes.
pub fn rebuild_fixable(report: &Report) -> Option<(String, u64)> {
    let r = report.rebuild.as_ref()?;
    let fixed: std::collections::BTreeSet<(&str, &str)> = r
        .fixed
        .iter()
        .map(|f| (f.id.as_str(), f.package.as_str()))
        .collect();
    let findings: Vec<&stalewatch_core::matcher::Finding> = report
        .findings
        .iter()
        .filter(|f| fixed.contains(&(&*f.id, &*f.package)))
        .map(|f| &**f)
        .collect();
    Some((r.base_name.clone(), vulnerability::group(&findings).len() as u64))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use stalewatch_core::catalog::Inventory;
    use stalewatch_core::package::Package;

    fn package(name: &str) -> Package {
        package_of("Alpine:v3.20", name, "1.0-r0")
    }

    /// An apk package as the cataloger lists it (the snapshot's tests and the builder's).
    pub(crate) fn package_of(eco: &str, name: &str, version: &str) -> Package {
        Package {
            ecosystem: eco.into(),
            name: name.into(),
            version: version.into(),
            source_name: name.into(),
            source_version: version.into(),
            purl: format!("pkg:apk/alpine/{name}@{version}").into(),
            path: "lib/apk/db/installed".into(),
            arch: "x86_64".into(),
            layer: None,
            introduced_layer: None,
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
            purl: format!("pkg:apk/alpine/{package}@1.0-r0").into(),
            informational: None,
            ..Default::default()
        }
    }

    /// `--stale-min-severity`: a fix counts toward a stale runtime (its age, the StaleRuntime
    /// Event) only for a finding at or above the floor; `unknown` admits every finding, those
    /// of feeds without severities too.
    #[test]
    fn a_stale_runtime_counts_fixes_at_or_above_the_severity_floor() {
        const DAY: i64 = 86_400;
        let now = 100 * DAY;
        let dated = |id: &str, sev: Severity, days_ago: i64| Finding {
            severity: sev,
            published: Some(stalewatch_core::time::format_rfc3339(now - days_ago * DAY).into()),
            ..finding(id, id)
        };
        let findings = vec![
            dated("CVE-OLD-UNKNOWN", Severity::Unknown, 40),
            dated("CVE-OLD-LOW", Severity::Low, 30),
            dated("CVE-MEDIUM", Severity::Medium, 20),
            dated("CVE-YOUNG-HIGH", Severity::High, 2),
        ];
        let none = BTreeMap::new();
        let age = |min| oldest_fix_age(&findings, &none, now, min);
        assert_eq!(age(Severity::Unknown), 40 * DAY);
        assert_eq!(age(Severity::Low), 30 * DAY);
        assert_eq!(age(Severity::Medium), 20 * DAY);
        assert_eq!(age(Severity::High), 2 * DAY);
        assert_eq!(age(Severity::Critical), 0);
        let stale = |min| notable(&findings, &none, now, 7 * DAY, min).stale;
        assert_eq!(stale(Severity::Medium), ["CVE-MEDIUM"]);
        assert_eq!(
            stale(Severity::Unknown),
            ["CVE-MEDIUM", "CVE-OLD-LOW", "CVE-OLD-UNKNOWN"]
        );
    }

    /// musl's and openssl's file lists, as apk's database gives them (musl's loader, libcrypto).
    pub(crate) fn with_musl_and_openssl_files(inv: &mut Inventory) {
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
    }

    /// musl (listed, mapped), openssl (listed, not mapped), tzdata (no file list).
    fn fixture() -> (Report, Inventory, crate::agent::runtime_checks::in_use::Mapped) {
        let mut inv = Inventory {
            packages: vec![package("musl"), package("openssl"), package("tzdata")].into(),
            databases: vec!["lib/apk/db/installed".into()],
            ..Default::default()
        };
        with_musl_and_openssl_files(&mut inv);
        let findings = vec![
            finding("CVE-2025-1", "musl"),
            finding("CVE-2025-2", "openssl"),
            finding("CVE-2025-3", "tzdata"),
        ];
        let report = Report::new("t", inv.without_file_owners(), findings, vec![], 0);
        let mapped = crate::agent::runtime_checks::in_use::Mapped {
            files: ["lib/ld-musl-x86_64.so.1".to_string()].into(),
            deleted: Default::default(),
        };
        (report, inv, mapped)
    }

    #[test]
    fn unmarked_container_report_serializes_as_the_report() {
        let (mut report, _, _) = fixture();
        // With a finding suppressed by VEX: `suppressed` is part of what is served.
        let doc = br#"{"@context":"https://openvex.dev/ns/v0.2.0","statements":[{"vulnerability":{"name":"CVE-2025-3"},"products":[{"@id":"pkg:apk/alpine/tzdata"}],"status":"fixed"}]}"#;
        let vex = stalewatch_core::triage::VexSet::new(vec![stalewatch_core::triage::vex::parse_document(
            doc, "t.json", 0,
        )
        .unwrap()]);
        report.apply_triage(&stalewatch_core::report::Triage {
            vex: Some(&vex),
            ..Default::default()
        });
        assert_eq!(report.suppressed.len(), 1);
        let plain = serde_json::to_value(&report).unwrap();
        let wrapped = serde_json::to_value(ContainerReport::new(Arc::new(report))).unwrap();
        assert_eq!(plain, wrapped);
    }

    #[test]
    fn marks_say_true_false_or_nothing_per_finding_and_drift_is_beside_them() {
        let (report, inv, mapped) = fixture();
        let (marks, counts) = crate::agent::runtime_checks::in_use::marks(&report, &inv, &mapped);
        assert_eq!(&*marks, &[Some(true), Some(false), None]);
        assert_eq!(counts, BTreeMap::from([(Severity::High, 1)]));
        let plain = serde_json::to_value(&report).unwrap();
        let marked = ContainerReport {
            report: Arc::new(report),
            in_use: Some(marks),
            drift: Some(Arc::from(vec![None, Some("changed"), Some("added")])),
        };
        let json = serde_json::to_value(&marked).unwrap();
        let field = |name: &str| -> Vec<_> {
            json["findings"]
                .as_array()
                .unwrap()
                .iter()
                .map(|f| f.get(name).cloned())
                .collect()
        };
        assert_eq!(
            field("in_use"),
            vec![Some(true.into()), Some(false.into()), None],
            "{json}"
        );
        assert_eq!(
            field("drift"),
            vec![None, Some("changed".into()), Some("added".into())]
        );
        // Apart from the annotations, each finding is the core's finding as it serializes.
        for (i, f) in json["findings"].as_array().unwrap().iter().enumerate() {
            let mut f = f.clone();
            f.as_object_mut().unwrap().remove("in_use");
            f.as_object_mut().unwrap().remove("drift");
            assert_eq!(f, plain["findings"][i]);
        }
    }
}
