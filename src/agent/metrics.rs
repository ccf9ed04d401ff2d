//! Prometheus metrics (DESIGN.md's names), registered once from one table (`metric_table!`:
//! each family's definition, field, registration and whether each snapshot rewrites it, in one
//! row) that `docs/metrics.md` is checked against, so the two cannot drift. Per-container series are
//! rewritten from a whole snapshot under the same lock an encoding takes, so no scrape ever
//! sees half of an update. A scrape is served an encoded body at most `EXPOSITION_MAX_AGE` old
//! and never waits behind a publish: a burst of scrapes encodes once.

use bytes::Bytes;
use prometheus::core::Collector;
use prometheus::{
    Encoder, Gauge, GaugeVec, Histogram, HistogramOpts, IntCounter, IntCounterVec, Opts, Registry,
    TextEncoder,
};
use std::sync::{Mutex, TryLockError};
use std::time::{Duration, Instant};

use stalewatch_core::advisory::Severity;

use super::signals::{LogLimiter, Signal};
use super::snapshot::{ContainerView, NodeView, Snapshot, TriageView};

/// What kind of family a metric is.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Kind {
    Gauge,
    Counter,
    Histogram(&'static [f64]),
}

impl Kind {
    /// As `docs/metrics.md` names it.
    #[cfg(test)]
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Gauge => "gauge",
            Kind::Counter => "counter",
            Kind::Histogram(_) => "histogram",
        }
    }
}

/// One row of the metric table.
#[derive(Debug, Clone, Copy)]
pub struct Def {
    pub name: &'static str,
    pub kind: Kind,
    pub help: &'static str,
    pub labels: &'static [&'static str],
}

const fn def(name: &'static str, kind: Kind, help: &'static str, labels: &'static [&'static str]) -> Def {
    Def {
        name,
        kind,
        help,
        labels,
    }
}

const C: &[&str] = &["namespace", "pod", "container", "image"];
/// Where an image can be read from (`stalewatch_image_reads_total{source}`).
pub const READ_SOURCES: [&str; 4] = ["content", "snapshot", "view", "proc"];
/// The small state files (`state_file::StateFile`), by their `file` label.
pub const STATE_FILES: [&str; 3] = ["told", "fixes_first_seen", "bases"];
/// Why a state file could not be used (`state_file::StateFile::load`).
pub const STATE_LOAD_REASONS: [&str; 3] = ["corrupt", "wrong_version", "unreadable"];
/// The supervised tasks (`stalewatch_task_failures_total{task}`).
pub const TASKS: [&str; 4] = [
    "containerd_connection",
    "advisory_refresh",
    "reconcile_ticker",
    "vex_reload",
];
/// The results of `stalewatch_snapshot_views_total`.
pub const VIEW_RESULTS: [&str; 3] = ["removed", "create_failed", "remove_failed"];
const SECONDS: &[f64] = &[0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0];
const PASS: &[f64] = &[0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0];
const CHECK: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5,
];

/// The metric table: one row per family — the field that holds it, whether its series are
/// rewritten from each snapshot (`snapshot`: reset before every publish, so the series of a
/// gone container or image go with it) or live on (`kept`), its definition (name, kind, help,
/// labels: what docs/metrics.md is checked against) and how it is registered (every value of
/// a bounded label created at 0). The `defs` constants, `DEFS`, the `Families` struct, its
/// registration and its reset are generated from it, so a family is added in one place.
macro_rules! metric_table {
    (
        $r:ident;
        $( $(#[$attr:meta])* family $vis:vis $field:ident : $ty:ty, $series:ident, $def:ident ( $($arg:tt)* ) => $init:expr; )*
        unstored: $( $udef:ident ( $($uarg:tt)* ); )*
    ) => {
        /// Every metric the agent can export.
        pub mod defs {
            use super::{def, Def, Kind::*, C, CHECK, PASS, SECONDS};
            $( pub const $def: Def = def($($arg)*); )*
            $( pub const $udef: Def = def($($uarg)*); )*
        }

        /// The table, in `docs/metrics.md`'s order (what the docs are checked against).
        #[cfg(test)]
        pub const DEFS: &[Def] = &[$(defs::$def,)* $(defs::$udef,)*];

        /// The families, one field each.
        pub struct Families {
            $( $(#[$attr])* $vis $field: $ty, )*
        }

        impl Families {
            /// Registers every family of the table.
            fn register($r: &Registrar) -> prometheus::Result<Families> {
                use defs::*;
                Ok(Families { $( $field: $init, )* })
            }

            /// Drops the series of every family rewritten from the snapshot.
            fn reset_snapshot_series(&self) {
                $( metric_table!(@reset $series self.$field); )*
            }

            /// The names of the families rewritten from the snapshot.
            #[cfg(test)]
            fn snapshot_series() -> Vec<&'static str> {
                let mut out = Vec::new();
                $( if metric_table!(@is_snapshot $series) { out.push(defs::$def.name); } )*
                out
            }
        }
    };
    (@reset snapshot $e:expr) => { $e.reset() };
    (@reset kept $e:expr) => { () };
    (@is_snapshot snapshot) => { true };
    (@is_snapshot kept) => { false };
}

metric_table! {
    r;
    family container_vulnerabilities: GaugeVec, snapshot, CONTAINER_VULNERABILITIES(
        "stalewatch_container_vulnerabilities",
        Gauge,
        "Distinct vulnerabilities (records linked by aliases count once) affecting what the container runs.",
        &["namespace", "pod", "container", "image", "severity", "fixable"],
    ) => r.gauge_vec(CONTAINER_VULNERABILITIES)?;
    family container_scan_status: GaugeVec, snapshot, CONTAINER_SCAN_STATUS(
        "stalewatch_container_scan_status",
        Gauge,
        "One series per running container: its scan status (ok, pending, failed, unsupported_os, no_package_db, no_advisory_feed).",
        &["namespace", "pod", "container", "image", "status"],
    ) => r.gauge_vec(CONTAINER_SCAN_STATUS)?;
    family container_oldest_fix_age: GaugeVec, snapshot, CONTAINER_OLDEST_FIX_AGE(
        "stalewatch_container_oldest_fix_age_seconds",
        Gauge,
        "Age of the container's oldest fix that is not deployed (0 when none), of findings at or above --stale-min-severity; an estimate.",
        C,
    ) => r.gauge_vec(CONTAINER_OLDEST_FIX_AGE)?;
    family container_started: GaugeVec, snapshot, CONTAINER_STARTED(
        "stalewatch_container_started_timestamp_seconds",
        Gauge,
        "When the container's task started.",
        C,
    ) => r.gauge_vec(CONTAINER_STARTED)?;
    family container_stale_digest: GaugeVec, snapshot, CONTAINER_STALE_DIGEST(
        "stalewatch_container_stale_digest",
        Gauge,
        "Present (1) while the container's image name resolves to another image than the one it runs.",
        &["namespace", "pod", "container", "image", "running_digest", "current_digest"],
    ) => r.gauge_vec(CONTAINER_STALE_DIGEST)?;
    family container_drift: GaugeVec, snapshot, CONTAINER_DRIFT(
        "stalewatch_container_drift_packages",
        Gauge,
        "Packages added, removed or changed in the container's live root filesystem relative to its image.",
        &["namespace", "pod", "container", "image", "change"],
    ) => r.gauge_vec(CONTAINER_DRIFT)?;
    family container_in_use: GaugeVec, snapshot, CONTAINER_IN_USE(
        "stalewatch_container_vulnerabilities_in_use",
        Gauge,
        "Distinct vulnerabilities whose package has a file mapped by a process of the container.",
        &["namespace", "pod", "container", "image", "severity"],
    ) => r.gauge_vec(CONTAINER_IN_USE)?;
    family container_known_exploited: GaugeVec, snapshot, CONTAINER_KNOWN_EXPLOITED(
        "stalewatch_container_known_exploited_vulnerabilities",
        Gauge,
        "Distinct vulnerabilities of the container with a CVE in CISA's KEV catalog (absent without a catalog).",
        C,
    ) => r.gauge_vec(CONTAINER_KNOWN_EXPLOITED)?;
    family container_max_epss: GaugeVec, snapshot, CONTAINER_MAX_EPSS(
        "stalewatch_container_max_epss",
        Gauge,
        "Highest EPSS score among the container's findings (absent without EPSS scores).",
        C,
    ) => r.gauge_vec(CONTAINER_MAX_EPSS)?;
    family container_suppressed: GaugeVec, snapshot, CONTAINER_SUPPRESSED(
        "stalewatch_container_suppressed_vulnerabilities",
        Gauge,
        "Distinct vulnerabilities an OpenVEX statement marks not_affected or fixed (absent without --vex-dir).",
        C,
    ) => r.gauge_vec(CONTAINER_SUPPRESSED)?;
    family kev_timestamp: Gauge, kept, KEV_TIMESTAMP(
        "stalewatch_kev_catalog_timestamp_seconds",
        Gauge,
        "The dateReleased of the KEV catalog in force.",
        &[],
    ) => r.gauge(KEV_TIMESTAMP)?;
    family epss_timestamp: Gauge, kept, EPSS_TIMESTAMP(
        "stalewatch_epss_scores_timestamp_seconds",
        Gauge,
        "The score_date of the EPSS scores in force.",
        &[],
    ) => r.gauge(EPSS_TIMESTAMP)?;
    family pub vex_statements: Gauge, kept, VEX_STATEMENTS(
        "stalewatch_vex_statements",
        Gauge,
        "OpenVEX statements in force from --vex-dir.",
        &[],
    ) => r.gauge(VEX_STATEMENTS)?;
    family pub vex_errors: IntCounter, kept, VEX_ERRORS(
        "stalewatch_vex_reload_errors_total",
        Counter,
        "Sets of --vex-dir documents refused (a bad document; the previous set stays in force).",
        &[],
    ) => r.counter(VEX_ERRORS)?;
    family image_info: GaugeVec, snapshot, IMAGE_INFO(
        "stalewatch_image_info",
        Gauge,
        "One series per running image.",
        &["image", "image_digest", "os_id", "os_version", "os_eol"],
    ) => r.gauge_vec(IMAGE_INFO)?;
    family image_created: GaugeVec, snapshot, IMAGE_CREATED(
        "stalewatch_image_created_timestamp_seconds",
        Gauge,
        "The image config's created time.",
        &["image", "image_digest"],
    ) => r.gauge_vec(IMAGE_CREATED)?;
    family image_base_info: GaugeVec, snapshot, IMAGE_BASE_INFO(
        "stalewatch_image_base_info",
        Gauge,
        "One series per running image with a known base: the base and how it was found (label, config, layers).",
        &["image", "image_digest", "base_name", "base_digest", "detected_by"],
    ) => r.gauge_vec(IMAGE_BASE_INFO)?;
    family image_rebuild_fixable: GaugeVec, snapshot, IMAGE_REBUILD_FIXABLE(
        "stalewatch_image_rebuild_fixable_vulnerabilities",
        Gauge,
        "Distinct vulnerabilities of the image's base layers that a rebuild on the newer build of its base (held by the node) would fix.",
        &["image", "image_digest", "base_name"],
    ) => r.gauge_vec(IMAGE_REBUILD_FIXABLE)?;
    family base_image_present: GaugeVec, snapshot, BASE_IMAGE_PRESENT(
        "stalewatch_base_image_present",
        Gauge,
        "For each --base-image: 1 while the node holds an image of that name, else 0 (no rebuild signal without it).",
        &["base_name"],
    ) => r.gauge_vec(BASE_IMAGE_PRESENT)?;
    family node_scan_status: GaugeVec, snapshot, NODE_SCAN_STATUS(
        "stalewatch_node_scan_status",
        Gauge,
        "With --node-scan: the scan status of the node's own packages (ok, pending, failed, unsupported_os, no_package_db, no_advisory_feed).",
        &["status"],
    ) => r.gauge_vec(NODE_SCAN_STATUS)?;
    family node_vulnerabilities: GaugeVec, snapshot, NODE_VULNERABILITIES(
        "stalewatch_node_vulnerabilities",
        Gauge,
        "With --node-scan: distinct vulnerabilities affecting the node's own packages (its running kernel's only), counted as a container's are.",
        &["severity", "fixable"],
    ) => r.gauge_vec(NODE_VULNERABILITIES)?;
    family node_known_exploited: GaugeVec, snapshot, NODE_KNOWN_EXPLOITED(
        "stalewatch_node_known_exploited_vulnerabilities",
        Gauge,
        "With --node-scan and a KEV catalog: the node's distinct vulnerabilities in CISA's KEV catalog.",
        &[],
    ) => r.gauge_vec(NODE_KNOWN_EXPLOITED)?;
    family node_oldest_fix_age: GaugeVec, snapshot, NODE_OLDEST_FIX_AGE(
        "stalewatch_node_oldest_fix_age_seconds",
        Gauge,
        "With --node-scan: age of the node's oldest fix that is not installed (0 when none); an estimate.",
        &[],
    ) => r.gauge_vec(NODE_OLDEST_FIX_AGE)?;
    family node_kernel: GaugeVec, snapshot, NODE_KERNEL(
        "stalewatch_node_kernel_info",
        Gauge,
        "With --node-scan: the running kernel (its release) and the installed package it is (state packaged), or none (state unknown).",
        &["release", "package", "version", "state"],
    ) => r.gauge_vec(NODE_KERNEL)?;
    family node_reboot_required: GaugeVec, snapshot, NODE_REBOOT_REQUIRED(
        "stalewatch_node_reboot_required",
        Gauge,
        "With --node-scan: 1 when a newer kernel package than the running one is installed, or the OS wrote /var/run/reboot-required; else 0.",
        &[],
    ) => r.gauge_vec(NODE_REBOOT_REQUIRED)?;
    family node_reboot_since: GaugeVec, snapshot, NODE_REBOOT_SINCE(
        "stalewatch_node_reboot_required_since_timestamp_seconds",
        Gauge,
        "With --node-scan, while a reboot is due: since when (the reboot file's time, else the newer kernel's installation, else when the agent first saw it).",
        &[],
    ) => r.gauge_vec(NODE_REBOOT_SINCE)?;
    family node_info: GaugeVec, snapshot, NODE_INFO(
        "stalewatch_node_info",
        Gauge,
        "With --node-scan: 1, labelled with the node's OS (os-release), running kernel, AKS node image and container runtime (its Node object; empty where unknown).",
        &["os_id", "os_version", "kernel", "node_image", "container_runtime"],
    ) => r.gauge_vec(NODE_INFO)?;
    family node_image_age: GaugeVec, snapshot, NODE_IMAGE_AGE(
        "stalewatch_node_image_age_seconds",
        Gauge,
        "With --node-scan and a Node object whose node image version encodes its build date (AKS): seconds since that date.",
        &[],
    ) => r.gauge_vec(NODE_IMAGE_AGE)?;
    family notifications: IntCounterVec, kept, NOTIFICATIONS(
        "stalewatch_notifications_total",
        Counter,
        "CloudEvents by type and result (delivered, retried, refused, dropped, failed).",
        &["type", "result"],
    ) => r.counter_vec(NOTIFICATIONS)?;
    family notification_outbox: Gauge, kept, NOTIFICATION_OUTBOX(
        "stalewatch_notification_outbox_events",
        Gauge,
        "CloudEvents waiting in the outboxes (one per receiver) to be delivered.",
        &[],
    ) => r.gauge(NOTIFICATION_OUTBOX)?;
    family redeploys: IntCounterVec, kept, REDEPLOYS(
        "stalewatch_redeploys_total",
        Counter,
        "Validated redeploys by result (redeployed, dry_run, blocked, not_opted_in, too_soon, precondition_failed, forbidden, failed).",
        &["result"],
    ) => r.counter_vec(REDEPLOYS)?;
    family advisory_updated: Gauge, kept, ADVISORY_UPDATED(
        "stalewatch_advisory_db_updated_timestamp_seconds",
        Gauge,
        "Last successful advisory refresh.",
        &[],
    ) => r.gauge(ADVISORY_UPDATED)?;
    family advisory_synced: Gauge, kept, ADVISORY_SYNCED(
        "stalewatch_advisory_source_synced_timestamp_seconds",
        Gauge,
        "When the advisory source last synced its data upstream: its stalewatch-sync.json, else the newest time of its modified_id.csv (the OSV bucket's).",
        &[],
    ) => r.gauge(ADVISORY_SYNCED)?;
    family advisory_records: GaugeVec, snapshot, ADVISORY_RECORDS(
        "stalewatch_advisory_records",
        Gauge,
        "Advisory records loaded.",
        &["ecosystem"],
    ) => r.gauge_vec(ADVISORY_RECORDS)?;
    family pub advisory_update_errors: IntCounterVec, kept, ADVISORY_UPDATE_ERRORS(
        "stalewatch_advisory_update_errors_total",
        Counter,
        "Failed advisory refreshes.",
        &["reason"],
    ) => r.counter_vec(ADVISORY_UPDATE_ERRORS)?;
    family pub containerd_up: Gauge, kept, CONTAINERD_UP(
        "stalewatch_containerd_up",
        Gauge,
        "1 while the agent is connected to containerd.",
        &[],
    ) => r.gauge(CONTAINERD_UP)?;
    family pub containerd_reconnects: IntCounter, kept, CONTAINERD_RECONNECTS(
        "stalewatch_containerd_reconnects_total",
        Counter,
        "Connections to containerd re-established.",
        &[],
    ) => r.counter(CONTAINERD_RECONNECTS)?;
    family pub last_reconcile: Gauge, kept, LAST_RECONCILE(
        "stalewatch_last_reconcile_timestamp_seconds",
        Gauge,
        "When the engine last finished a reconcile.",
        &[],
    ) => r.gauge(LAST_RECONCILE)?;
    /// By task (`TASKS`, all exported from the start).
    family pub task_failures: IntCounterVec, kept, TASK_FAILURES(
        "stalewatch_task_failures_total",
        Counter,
        "Agent tasks that ended or panicked and were started again, by task.",
        &["task"],
    ) => r.counter_vec_with(TASK_FAILURES, &TASKS)?;
    /// By (list, reason).
    family pub containerd_list_failures: IntCounterVec, kept, CONTAINERD_LIST_FAILURES(
        "stalewatch_containerd_list_failures_total",
        Counter,
        "Failed listings of what the node runs, by list (containers, tasks, images) and reason (deadline, too_large, unavailable, error).",
        &["list", "reason"],
    ) => r.counter_vec_grid(
        CONTAINERD_LIST_FAILURES,
        &["containers", "tasks", "images"],
        &["deadline", "too_large", "unavailable", "error"],
    )?;
    /// By (check, reason).
    family pub runtime_check_errors: IntCounterVec, kept, RUNTIME_CHECK_ERRORS(
        "stalewatch_runtime_check_errors_total",
        Counter,
        "Runtime checks of a container not made, by check (in_use, drift) and reason (sandboxed, denied, read_failed).",
        &["check", "reason"],
    ) => r.counter_vec_grid(
        RUNTIME_CHECK_ERRORS,
        &["in_use", "drift"],
        &["sandboxed", "denied", "read_failed"],
    )?;
    family pub scan_duration: Histogram, kept, SCAN_DURATION(
        "stalewatch_scan_duration_seconds",
        Histogram(SECONDS),
        "Time to inventory one image.",
        &[],
    ) => r.histogram(SCAN_DURATION)?;
    family pub rematch_duration: Histogram, kept, REMATCH_DURATION(
        "stalewatch_rematch_duration_seconds",
        Histogram(PASS),
        "Time to re-match all cached inventories.",
        &[],
    ) => r.histogram(REMATCH_DURATION)?;
    family pub runtime_check_duration: Histogram, kept, RUNTIME_CHECK_DURATION(
        "stalewatch_runtime_check_duration_seconds",
        Histogram(CHECK),
        "Time of one container's runtime check (its processes' maps and its live package databases).",
        &[],
    ) => r.histogram(RUNTIME_CHECK_DURATION)?;
    family pub runtime_refresh_duration: Histogram, kept, RUNTIME_REFRESH_DURATION(
        "stalewatch_runtime_refresh_duration_seconds",
        Histogram(PASS),
        "Time of one pass of runtime checks over every container due (the host's PID namespaces listed once).",
        &[],
    ) => r.histogram(RUNTIME_REFRESH_DURATION)?;
    family pub scan_errors: IntCounterVec, kept, SCAN_ERRORS(
        "stalewatch_scan_errors_total",
        Counter,
        "Failed image scans.",
        &["reason"],
    ) => r.counter_vec(SCAN_ERRORS)?;
    family pub layers_read: IntCounter, kept, LAYERS_READ(
        "stalewatch_layers_read_total",
        Counter,
        "Layer blobs read.",
        &[],
    ) => r.counter(LAYERS_READ)?;
    /// By source: `content`, `snapshot`, `view`, `proc` (all exported from the start).
    family pub image_reads: IntCounterVec, kept, IMAGE_READS(
        "stalewatch_image_reads_total",
        Counter,
        "Images inventoried, by where their layers were read from.",
        &["source"],
    ) => r.counter_vec_with(IMAGE_READS, &READ_SOURCES)?;
    /// By result: `removed`, `create_failed`, `remove_failed` (all exported from the start).
    family pub snapshot_views: IntCounterVec, kept, SNAPSHOT_VIEWS(
        "stalewatch_snapshot_views_total",
        Counter,
        "Read-only snapshot views the agent made to read an image that no container runs.",
        &["result"],
    ) => r.counter_vec_with(SNAPSHOT_VIEWS, &VIEW_RESULTS)?;
    family pub layer_bytes_decompressed: IntCounter, kept, LAYER_BYTES(
        "stalewatch_layer_bytes_decompressed_total",
        Counter,
        "Bytes of layers decompressed.",
        &[],
    ) => r.counter(LAYER_BYTES)?;
    family pub layer_cache_hits: IntCounter, kept, LAYER_CACHE_HITS(
        "stalewatch_layer_cache_hits_total",
        Counter,
        "Layers whose inventory came from the cache instead of a read.",
        &[],
    ) => r.counter(LAYER_CACHE_HITS)?;
    /// By file and reason (`STATE_FILES` × corrupt, wrong_version, unreadable).
    family pub state_load_errors: IntCounterVec, kept, STATE_LOAD_ERRORS(
        "stalewatch_state_load_errors_total",
        Counter,
        "State files that could not be used at start (kept aside, started afresh), by file and reason (corrupt, wrong_version, unreadable).",
        &["file", "reason"],
    ) => r.counter_vec_grid(STATE_LOAD_ERRORS, &STATE_FILES, &STATE_LOAD_REASONS)?;
    /// By file: `image_cache` (images-v1.json), `layer_cache` (a layer delta), `STATE_FILES`.
    family pub state_write_errors: IntCounterVec, kept, STATE_WRITE_ERRORS(
        "stalewatch_state_write_errors_total",
        Counter,
        "State files that could not be written (the state directory full, read-only or gone).",
        &["file"],
    ) => {
        let c = r.counter_vec(STATE_WRITE_ERRORS)?;
        for file in ["image_cache", "layer_cache"].iter().chain(STATE_FILES.iter()) {
            c.with_label_values(&[file]);
        }
        c
    };
    /// By notifier: `kube_events`, `cloudevents` (both exported from the start).
    family pub told_again: IntCounterVec, kept, TOLD_AGAIN(
        "stalewatch_told_again_total",
        Counter,
        "Events and CloudEvents told again after the told state was lost, by notifier (kube_events, cloudevents).",
        &["notifier"],
    ) => r.counter_vec_with(TOLD_AGAIN, &["kube_events", "cloudevents"])?;
    /// Every (reason, result) pair is created by the Events owner, which knows them.
    family pub kube_events: IntCounterVec, kept, KUBE_EVENTS(
        "stalewatch_kube_events_total",
        Counter,
        "Kubernetes Events by reason and result (published, series, suppressed, dropped, forbidden, failed).",
        &["reason", "result"],
    ) => r.counter_vec(KUBE_EVENTS)?;
    /// `stalewatch_build_info{version}`: set once at registration, never read again.
    #[allow(dead_code)]
    family build_info: GaugeVec, kept, BUILD_INFO(
        "stalewatch_build_info",
        Gauge,
        "Build information.",
        &["version"],
    ) => {
        let g = r.gauge_vec(BUILD_INFO)?;
        g.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1.0);
        g
    };
    unstored:
    VULNERABILITY_INFO(
        "stalewatch_container_vulnerability_info",
        Gauge,
        "One series per finding (opt-in, capped): the advisory and package affecting a container.",
        &["namespace", "pod", "container", "image", "id", "package", "installed_version", "fixed_version", "severity"],
    );
    VULNERABILITY_INFO_DROPPED(
        "stalewatch_container_vulnerability_info_dropped",
        Gauge,
        "Findings not exported as stalewatch_container_vulnerability_info because of the cap.",
        &[],
    );
}

/// Registers families from their table rows; a row used with the wrong kind or label count
/// is a registration error, never a panic.
struct Registrar<'a>(&'a Registry);

impl Registrar<'_> {
    fn add<T: Collector + Clone + 'static>(&self, c: T) -> prometheus::Result<T> {
        self.0.register(Box::new(c.clone()))?;
        Ok(c)
    }

    fn opts(d: &Def) -> Opts {
        Opts::new(d.name, d.help)
    }

    fn gauge_vec(&self, d: Def) -> prometheus::Result<GaugeVec> {
        self.add(GaugeVec::new(Self::opts(&d), d.labels)?)
    }

    fn gauge(&self, d: Def) -> prometheus::Result<Gauge> {
        self.add(Gauge::with_opts(Self::opts(&d))?)
    }

    fn counter_vec(&self, d: Def) -> prometheus::Result<IntCounterVec> {
        self.add(IntCounterVec::new(Self::opts(&d), d.labels)?)
    }

    /// A two-label counter vector with every pair of `a` × `b` exported from the start (at 0).
    fn counter_vec_grid(&self, d: Def, a: &[&str], b: &[&str]) -> prometheus::Result<IntCounterVec> {
        let c = self.counter_vec(d)?;
        for x in a {
            for y in b {
                c.with_label_values(&[x, y]);
            }
        }
        Ok(c)
    }

    /// A one-label counter vector with each of `values` exported from the start (at 0).
    fn counter_vec_with(&self, d: Def, values: &[&str]) -> prometheus::Result<IntCounterVec> {
        let c = self.counter_vec(d)?;
        for v in values {
            c.with_label_values(&[v]);
        }
        Ok(c)
    }

    fn counter(&self, d: Def) -> prometheus::Result<IntCounter> {
        self.add(IntCounter::with_opts(Self::opts(&d))?)
    }

    fn histogram(&self, d: Def) -> prometheus::Result<Histogram> {
        let Kind::Histogram(buckets) = d.kind else {
            return Err(prometheus::Error::Msg(format!("{} is not a histogram", d.name)));
        };
        self.add(Histogram::with_opts(
            HistogramOpts::new(d.name, d.help).buckets(buckets.to_vec()),
        )?)
    }
}

/// How old an encoded body may be when it is served again. Prometheus scrapes every 15–30 s,
/// so this costs no freshness; a publish makes the next scrape encode anew.
const EXPOSITION_MAX_AGE: Duration = Duration::from_millis(500);

/// The last encoded body; `encoded` is `None` once a publish made it stale.
struct Exposition {
    body: Bytes,
    encoded: Option<Instant>,
    /// The gzip of a body (the plain body it was made from, to know it still matches).
    gzip: Option<(Bytes, Bytes)>,
}

pub struct Metrics {
    registry: Registry,
    /// Rate-limits the log lines of counted signals (`emit`).
    log_limiter: LogLimiter,
    /// Held while series are rewritten and while they are encoded.
    publish: Mutex<()>,
    exposition: Mutex<Exposition>,
    /// The opt-in per-finding series, its dropped count and its cap.
    vulnerability_info: Option<(GaugeVec, Gauge, usize)>,
    /// The table's families (`metric_table!`), reached through `Deref`.
    families: Families,
}

impl std::ops::Deref for Metrics {
    type Target = Families;
    fn deref(&self) -> &Families {
        &self.families
    }
}

impl Metrics {
    /// The redeploy counter, for the redeployer (which creates every result).
    pub fn redeploy_series(&self) -> IntCounterVec {
        self.redeploys.clone()
    }

    /// The counters every state file reports to.
    pub fn state_counters(&self) -> super::state_file::StateCounters {
        super::state_file::StateCounters {
            load_errors: self.state_load_errors.clone(),
            write_errors: self.state_write_errors.clone(),
        }
    }

    /// The CloudEvents series, for the notifier (which creates every type and result).
    pub fn notification_series(&self) -> (IntCounterVec, Gauge) {
        (self.notifications.clone(), self.notification_outbox.clone())
    }

    /// Registers every metric; `vulnerability_info` is the cap of the opt-in per-finding
    /// series (`None`: not exported).
    pub fn register(vulnerability_info: Option<usize>) -> prometheus::Result<Metrics> {
        use defs::*;
        let registry = Registry::new();
        let r = Registrar(&registry);
        let vulnerability_info = match vulnerability_info {
            Some(limit) => Some((
                r.gauge_vec(VULNERABILITY_INFO)?,
                r.gauge(VULNERABILITY_INFO_DROPPED)?,
                limit,
            )),
            None => None,
        };
        Ok(Metrics {
            families: Families::register(&r)?,
            log_limiter: LogLimiter::default(),
            vulnerability_info,
            publish: Mutex::new(()),
            exposition: Mutex::new(Exposition {
                body: Bytes::new(),
                encoded: None,
                gzip: None,
            }),
            registry,
        })
    }

    /// Counts a failure and logs it (at most once per `signals::LOG_EVERY` per kind): the one
    /// way a failure is counted, so its log line and its counter cannot drift apart.
    pub fn emit(&self, s: Signal) {
        match &s {
            Signal::ContainerdList { list, reason, .. } => {
                self.containerd_list_failures
                    .with_label_values(&[list, reason])
                    .inc();
            }
            Signal::RuntimeCheck { check, reason, .. } => {
                self.runtime_check_errors
                    .with_label_values(&[check, reason.reason()])
                    .inc();
            }
            Signal::Scan { reason, .. } => self.scan_errors.with_label_values(&[reason]).inc(),
            Signal::AdvisoryUpdate { reason, .. } => {
                self.advisory_update_errors.with_label_values(&[reason]).inc();
            }
        }
        self.log_limiter.log(&s);
    }

    /// Rewrites every snapshot-derived series at once.
    pub fn publish(&self, snap: &Snapshot) {
        let _guard = self.publish.lock().unwrap_or_else(|e| e.into_inner());
        self.families.reset_snapshot_series();
        for (name, present) in &snap.declared_bases {
            self.base_image_present
                .with_label_values(&[name])
                .set(if *present { 1.0 } else { 0.0 });
        }
        for c in &snap.containers {
            self.publish_container(c);
            self.publish_triage(c, &snap.triage);
        }
        if let Some(t) = snap.triage.kev_released {
            self.kev_timestamp.set(t as f64);
        }
        if let Some(t) = snap.triage.epss_date {
            self.epss_timestamp.set(t as f64);
        }
        for i in &snap.images {
            if let Some((id, version, eol)) = &i.os {
                let eol = if *eol { "true" } else { "false" };
                self.image_info
                    .with_label_values(&[&i.image, &i.image_digest, id, version, eol])
                    .set(1.0);
            }
            if let Some(b) = &i.base {
                let (name, digest) = (b.name.as_deref().unwrap_or(""), b.digest.as_deref().unwrap_or(""));
                self.image_base_info
                    .with_label_values(&[&i.image, &i.image_digest, name, digest, b.detected_by.as_str()])
                    .set(1.0);
            }
            if let Some((base, n)) = &i.rebuild_fixable {
                self.image_rebuild_fixable
                    .with_label_values(&[&i.image, &i.image_digest, base])
                    .set(*n as f64);
            }
            if let Some(t) = i.created {
                self.image_created
                    .with_label_values(&[&i.image, &i.image_digest])
                    .set(t as f64);
            }
        }
        self.publish_vulnerability_info(snap);
        if let Some(n) = &snap.node_scan {
            self.publish_node(n);
        }
        if let Some(t) = snap.advisory_db.updated_unix {
            self.advisory_updated.set(t as f64);
        }
        if let Some(t) = snap.advisory_db.synced_unix {
            self.advisory_synced.set(t as f64);
        }
        for (eco, n) in &snap.advisory_db.records {
            self.advisory_records.with_label_values(&[eco]).set(*n as f64);
        }
        self.invalidate();
    }

    /// The series of one running container.
    /// A container's triage series, for the data that is loaded, once it has a report.
    fn publish_triage(&self, c: &ContainerView, t: &TriageView) {
        if c.report.is_none() {
            return;
        }
        let labels = [
            c.namespace.as_str(),
            c.pod.as_str(),
            c.container.as_str(),
            c.image.as_str(),
        ];
        for (on, gauge, value) in [
            (
                t.kev_loaded,
                &self.container_known_exploited,
                c.triage.known_exploited as f64,
            ),
            (
                t.epss_loaded,
                &self.container_max_epss,
                // Through its shortest decimal: FIRST publishes 5 decimals; f32 → f64 would add noise.
                c.triage.max_epss.to_string().parse().unwrap_or(0.0),
            ),
            (
                t.vex_loaded,
                &self.container_suppressed,
                c.triage.suppressed as f64,
            ),
        ] {
            if on {
                gauge.with_label_values(&labels).set(value);
            }
        }
    }

    fn publish_container(&self, c: &ContainerView) {
        let base = [
            c.namespace.as_str(),
            c.pod.as_str(),
            c.container.as_str(),
            c.image.as_str(),
        ];
        let with = |extra: &[&'static str]| -> Vec<&str> {
            base.iter().copied().chain(extra.iter().copied()).collect()
        };
        for sev in Severity::ALL {
            for (fixable, fx) in [(true, "true"), (false, "false")] {
                let n = c.vulnerabilities.get(&(sev, fixable)).copied().unwrap_or(0);
                self.container_vulnerabilities
                    .with_label_values(&with(&[sev.as_str(), fx]))
                    .set(n as f64);
            }
        }
        self.container_scan_status
            .with_label_values(&with(&[c.scan_status.as_str()]))
            .set(1.0);
        self.container_oldest_fix_age
            .with_label_values(&base)
            .set(c.oldest_fix_age as f64);
        if let Some(t) = c.started_unix {
            self.container_started.with_label_values(&base).set(t as f64);
        }
        if let Some(u) = &c.vulnerabilities_in_use {
            for sev in Severity::ALL {
                let n = u.get(&sev).copied().unwrap_or(0);
                self.container_in_use
                    .with_label_values(&with(&[sev.as_str()]))
                    .set(n as f64);
            }
        }
        if let Some(d) = &c.drift {
            for (change, n) in [
                ("added", d.added.len()),
                ("removed", d.removed.len()),
                ("changed", d.changed.len()),
            ] {
                self.container_drift
                    .with_label_values(&with(&[change]))
                    .set(n as f64);
            }
        }
        if let Some(st) = &c.stale_digest {
            let mut labels = base.to_vec();
            labels.extend([st.running_digest.as_str(), st.current_digest.as_str()]);
            self.container_stale_digest.with_label_values(&labels).set(1.0);
        }
    }

    /// The opt-in per-finding series: most severe first, at most the cap.
    /// The node's series (`--node-scan`).
    fn publish_node(&self, n: &NodeView) {
        self.node_scan_status
            .with_label_values(&[n.status.as_str()])
            .set(1.0);
        if let Some(k) = &n.kernel {
            let (package, version) = k.package.clone().unwrap_or_default();
            let state = if k.package.is_some() {
                "packaged"
            } else {
                "unknown"
            };
            self.node_kernel
                .with_label_values(&[&k.release, &package, &version, state])
                .set(1.0);
        }
        self.node_reboot_required
            .with_label_values(&[] as &[&str])
            .set(if n.reboot_required { 1.0 } else { 0.0 });
        if let Some(since) = n.reboot_since {
            self.node_reboot_since
                .with_label_values(&[] as &[&str])
                .set(since as f64);
        }
        let i = &n.info;
        self.node_info
            .with_label_values(&[
                i.os_id.as_str(),
                &i.os_version,
                &i.kernel,
                &i.node_image,
                &i.container_runtime,
            ])
            .set(1.0);
        if let Some(age) = i.image_age {
            self.node_image_age
                .with_label_values(&[] as &[&str])
                .set(age as f64);
        }
        if n.report.is_none() {
            return;
        }
        for sev in Severity::ALL {
            for fixable in [true, false] {
                let v = n.vulnerabilities.get(&(sev, fixable)).copied().unwrap_or(0);
                self.node_vulnerabilities
                    .with_label_values(&[sev.as_str(), if fixable { "true" } else { "false" }])
                    .set(v as f64);
            }
        }
        self.node_oldest_fix_age
            .with_label_values(&[] as &[&str])
            .set(n.oldest_fix_age as f64);
        self.node_known_exploited
            .with_label_values(&[] as &[&str])
            .set(n.triage.known_exploited as f64);
    }

    fn publish_vulnerability_info(&self, snap: &Snapshot) {
        let Some((info, dropped, limit)) = &self.vulnerability_info else {
            return;
        };
        info.reset();
        let mut rows: Vec<(Severity, [&str; 8])> = Vec::new();
        for c in &snap.containers {
            for f in c.report.iter().flat_map(|r| &r.findings) {
                let fixed = f.fixed_version.as_deref().unwrap_or("");
                let labels = [
                    &*c.namespace,
                    &c.pod,
                    &c.container,
                    &c.image,
                    &f.id,
                    &f.package,
                    &f.installed_version,
                    fixed,
                ];
                rows.push((f.severity, labels));
            }
        }
        // Most severe first; ties in a stable order.
        rows.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        dropped.set(rows.len().saturating_sub(*limit) as f64);
        for (sev, l) in rows.into_iter().take(*limit) {
            let labels: Vec<&str> = l.iter().copied().chain([sev.as_str()]).collect();
            info.with_label_values(&labels).set(1.0);
        }
    }

    /// The text exposition: the last body while it is fresh, or while a publish holds the
    /// series (a scrape never waits behind one once a body exists), else encoded now.
    pub fn encode(&self) -> Bytes {
        if let Some(body) = self.cached(false) {
            return body;
        }
        let _guard = match self.publish.try_lock() {
            Ok(g) => g,
            Err(TryLockError::Poisoned(e)) => e.into_inner(),
            Err(TryLockError::WouldBlock) => match self.cached(true) {
                Some(body) => return body,
                None => self.publish.lock().unwrap_or_else(|e| e.into_inner()),
            },
        };
        // Another scrape may have encoded while this one waited.
        if let Some(body) = self.cached(false) {
            return body;
        }
        let mut out = Vec::new();
        // Encoding plain metric families into a Vec cannot fail.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        let body = Bytes::from(out);
        *self.exposition.lock().unwrap_or_else(|e| e.into_inner()) = Exposition {
            body: body.clone(),
            encoded: Some(Instant::now()),
            gzip: None,
        };
        body
    }

    /// The exposition gzipped (what Prometheus asks for), compressed once per encoded body.
    pub fn encode_gzip(&self) -> Bytes {
        use std::io::Write;
        let body = self.encode();
        if let Some((plain, gz)) = &self.exposition.lock().unwrap_or_else(|e| e.into_inner()).gzip {
            if plain.as_ptr() == body.as_ptr() && plain.len() == body.len() {
                return gz.clone();
            }
        }
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        // Writing into a Vec cannot fail.
        let _ = enc.write_all(&body);
        let gz = Bytes::from(enc.finish().unwrap_or_default());
        let mut e = self.exposition.lock().unwrap_or_else(|e| e.into_inner());
        if e.body.as_ptr() == body.as_ptr() {
            e.gzip = Some((body, gz.clone()));
        }
        gz
    }

    /// The last body if it is fresh (or, with `stale_ok`, if there is one at all).
    fn cached(&self, stale_ok: bool) -> Option<Bytes> {
        let e = self.exposition.lock().unwrap_or_else(|e| e.into_inner());
        let fresh = e.encoded.is_some_and(|t| t.elapsed() < EXPOSITION_MAX_AGE);
        (fresh || (stale_ok && !e.body.is_empty())).then(|| e.body.clone())
    }

    /// After a publish the next scrape must see it.
    fn invalidate(&self) {
        self.exposition.lock().unwrap_or_else(|e| e.into_inner()).encoded = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_family_of_containers_or_images_is_rewritten_from_each_snapshot() {
        // A family with a container's or an image's labels that a publish does not reset
        // keeps the series of a container that is gone. The per-finding family is reset by
        // its own publish (it is capped, and optional).
        let per_object: Vec<&str> = DEFS
            .iter()
            .filter(|d| {
                d.labels
                    .iter()
                    .any(|l| *l == "pod" || *l == "image_digest" || *l == "image")
            })
            .map(|d| d.name)
            .filter(|n| *n != defs::VULNERABILITY_INFO.name)
            .collect();
        assert!(per_object.len() >= 12, "{per_object:?}");
        let reset = Families::snapshot_series();
        let missing: Vec<&&str> = per_object.iter().filter(|n| !reset.contains(n)).collect();
        assert!(missing.is_empty(), "not reset from the snapshot: {missing:?}");
        // And a publish does drop a gone container's series.
        let m = Metrics::register(None).unwrap();
        let mut snap = Snapshot::default();
        snap.containers.push(ContainerView {
            namespace: "shop".into(),
            pod: "gone-0".into(),
            container: "app".into(),
            image: "x:1".into(),
            ..Default::default()
        });
        m.publish(&snap);
        let series = |m: &Metrics| String::from_utf8(m.encode().to_vec()).unwrap();
        assert!(series(&m).contains("gone-0"));
        m.publish(&Snapshot::default());
        assert!(!series(&m).contains("gone-0"), "{}", series(&m));
    }

    /// `docs/metrics.md`'s table: (name, type, labels) per row.
    fn documented() -> Vec<(String, String, Vec<String>)> {
        let doc = include_str!("../../docs/metrics.md");
        doc.lines()
            .filter(|l| l.starts_with("| `stalewatch_"))
            .map(|l| {
                let cells: Vec<&str> = l.split('|').map(str::trim).collect();
                let name = cells[1].trim_matches('`').to_string();
                let kind = cells[2].split_whitespace().next().unwrap_or_default().to_string();
                let labels = cells[3]
                    .split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(String::from)
                    .collect();
                (name, kind, labels)
            })
            .collect()
    }

    #[test]
    fn the_documented_table_is_the_code_table() {
        let code: Vec<(String, String, Vec<String>)> = DEFS
            .iter()
            .map(|d| {
                (
                    d.name.to_string(),
                    d.kind.as_str().to_string(),
                    d.labels.iter().map(|s| s.to_string()).collect(),
                )
            })
            .collect();
        assert_eq!(documented(), code, "docs/metrics.md and metrics::DEFS differ");
    }

    /// Every label value the agent exports from the start is named in its metric's row.
    #[test]
    fn the_documented_rows_name_every_exported_label_value() {
        let doc = include_str!("../../docs/metrics.md");
        let m = Metrics::register(Some(10)).unwrap();
        let mut checked = 0;
        for family in m.registry.gather() {
            let row = doc
                .lines()
                .find(|l| l.starts_with(&format!("| `{}` |", family.name())))
                .unwrap_or_else(|| panic!("{} has no row", family.name()));
            for metric in family.get_metric() {
                for pair in metric.get_label() {
                    if pair.name() == "version" {
                        continue; // the build's own version
                    }
                    assert!(
                        row.contains(&format!("`{}`", pair.value())),
                        "{}: the value {}={:?} is exported but not documented",
                        family.name(),
                        pair.name(),
                        pair.value()
                    );
                    checked += 1;
                }
            }
        }
        assert!(checked > 30, "label values checked: {checked}");
    }

    #[test]
    fn every_row_is_registered_and_nothing_else() {
        let m = Metrics::register(Some(10)).unwrap();
        m.kube_events.with_label_values(&["StaleRuntime", "published"]);
        m.scan_errors.with_label_values(&["other"]);
        m.advisory_update_errors.with_label_values(&["network"]);
        m.scan_duration.observe(0.1);
        let names: std::collections::BTreeSet<String> =
            m.registry.gather().iter().map(|f| f.name().to_string()).collect();
        let defs: std::collections::BTreeSet<String> = DEFS.iter().map(|d| d.name.to_string()).collect();
        // Vectors without series are not gathered: the snapshot-derived ones appear on publish.
        let unpublished: Vec<&String> = defs.difference(&names).collect();
        assert!(
            names.is_subset(&defs),
            "registered but not in the table: {:?}",
            names.difference(&defs).collect::<Vec<_>>()
        );
        m.publish(&Snapshot::default());
        for d in &unpublished {
            assert!(
                d.starts_with("stalewatch_container_")
                    || d.starts_with("stalewatch_image_")
                    || d.starts_with("stalewatch_node_")
                    || *d == "stalewatch_base_image_present"
                    || *d == "stalewatch_notifications_total"
                    || *d == "stalewatch_redeploys_total"
                    || *d == "stalewatch_advisory_records",
                "{d} is never registered"
            );
        }
    }

    #[test]
    fn scrapes_share_one_encoding_see_every_publish_and_never_wait_behind_one() {
        let m = Metrics::register(None).unwrap();
        let first = m.encode();
        // Within the window a scrape is served the same body, not a new encoding.
        assert_eq!(m.encode().as_ptr(), first.as_ptr());
        let mut snap = Snapshot::default();
        snap.advisory_db.records.insert("Alpine".into(), 7);
        m.publish(&snap);
        let text = String::from_utf8(m.encode().to_vec()).unwrap();
        assert!(
            text.contains("stalewatch_advisory_records{ecosystem=\"Alpine\"} 7"),
            "a publish is seen by the next scrape:\n{text}"
        );
        // While a publish holds the series, the last body is served instead of waiting.
        m.invalidate();
        let held = m.publish.lock().unwrap();
        assert!(String::from_utf8(m.encode().to_vec()).unwrap().contains("} 7"));
        drop(held);
        // Counters moved elsewhere show once the body is older than the window.
        m.layers_read.inc();
        std::thread::sleep(EXPOSITION_MAX_AGE);
        assert!(String::from_utf8(m.encode().to_vec())
            .unwrap()
            .contains("stalewatch_layers_read_total 1"));
    }
}
