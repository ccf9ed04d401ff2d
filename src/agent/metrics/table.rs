//! The metric table: every family the agent exports (DESIGN.md's names), one row each
//! (`metric_table!`: its definition, field, registration and whether each snapshot rewrites
//! it), and the registrar that turns rows into registered families. `docs/metrics.md` is
//! checked against it.

use prometheus::core::Collector;
use prometheus::{Gauge, GaugeVec, Histogram, HistogramOpts, IntCounter, IntCounterVec, Opts, Registry};

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
            // This table module, named from the crate root (`super` would read as the file's parent).
            use crate::agent::metrics::table::{def, Def, Kind::*, C, CHECK, PASS, SECONDS};
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
            pub(super) fn register($r: &Registrar) -> prometheus::Result<Families> {
                use defs::*;
                Ok(Families { $( $field: $init, )* })
            }

            /// Drops the series of every family rewritten from the snapshot.
            pub(super) fn reset_snapshot_series(&self) {
                $( metric_table!(@reset $series self.$field); )*
            }

            /// The names of the families rewritten from the snapshot.
            #[cfg(test)]
            pub(super) fn snapshot_series() -> Vec<&'static str> {
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
    family pub(super) container_vulnerabilities: GaugeVec, snapshot, CONTAINER_VULNERABILITIES(
        "stalewatch_container_vulnerabilities",
        Gauge,
        "Distinct vulnerabilities (records linked by aliases count once) affecting what the container runs.",
        &["namespace", "pod", "container", "image", "severity", "fixable"],
    ) => r.gauge_vec(CONTAINER_VULNERABILITIES)?;
    family pub(super) container_scan_status: GaugeVec, snapshot, CONTAINER_SCAN_STATUS(
        "stalewatch_container_scan_status",
        Gauge,
        "One series per running container: its scan status (ok, pending, failed, unsupported_os, no_package_db, no_advisory_feed).",
        &["namespace", "pod", "container", "image", "status"],
    ) => r.gauge_vec(CONTAINER_SCAN_STATUS)?;
    family pub(super) container_oldest_fix_age: GaugeVec, snapshot, CONTAINER_OLDEST_FIX_AGE(
        "stalewatch_container_oldest_fix_age_seconds",
        Gauge,
        "Age of the container's oldest fix that is not deployed (0 when none), of findings at or above --stale-min-severity; an estimate.",
        C,
    ) => r.gauge_vec(CONTAINER_OLDEST_FIX_AGE)?;
    family pub(super) container_started: GaugeVec, snapshot, CONTAINER_STARTED(
        "stalewatch_container_started_timestamp_seconds",
        Gauge,
        "When the container's task started.",
        C,
    ) => r.gauge_vec(CONTAINER_STARTED)?;
    family pub(super) container_stale_digest: GaugeVec, snapshot, CONTAINER_STALE_DIGEST(
        "stalewatch_container_stale_digest",
        Gauge,
        "Present (1) while the container's image name resolves to another image than the one it runs.",
        &["namespace", "pod", "container", "image", "running_digest", "current_digest"],
    ) => r.gauge_vec(CONTAINER_STALE_DIGEST)?;
    family pub(super) container_drift: GaugeVec, snapshot, CONTAINER_DRIFT(
        "stalewatch_container_drift_packages",
        Gauge,
        "Packages added, removed or changed in the container's live root filesystem relative to its image.",
        &["namespace", "pod", "container", "image", "change"],
    ) => r.gauge_vec(CONTAINER_DRIFT)?;
    family pub(super) container_in_use: GaugeVec, snapshot, CONTAINER_IN_USE(
        "stalewatch_container_vulnerabilities_in_use",
        Gauge,
        "Distinct vulnerabilities whose package has a file mapped by a process of the container.",
        &["namespace", "pod", "container", "image", "severity"],
    ) => r.gauge_vec(CONTAINER_IN_USE)?;
    family pub(super) container_known_exploited: GaugeVec, snapshot, CONTAINER_KNOWN_EXPLOITED(
        "stalewatch_container_known_exploited_vulnerabilities",
        Gauge,
        "Distinct vulnerabilities of the container with a CVE in CISA's KEV catalog (absent without a catalog).",
        C,
    ) => r.gauge_vec(CONTAINER_KNOWN_EXPLOITED)?;
    family pub(super) container_max_epss: GaugeVec, snapshot, CONTAINER_MAX_EPSS(
        "stalewatch_container_max_epss",
        Gauge,
        "Highest EPSS score among the container's findings (absent without EPSS scores).",
        C,
    ) => r.gauge_vec(CONTAINER_MAX_EPSS)?;
    family pub(super) container_suppressed: GaugeVec, snapshot, CONTAINER_SUPPRESSED(
        "stalewatch_container_suppressed_vulnerabilities",
        Gauge,
        "Distinct vulnerabilities an OpenVEX statement marks not_affected or fixed (absent without --vex-dir).",
        C,
    ) => r.gauge_vec(CONTAINER_SUPPRESSED)?;
    family pub(super) kev_timestamp: Gauge, kept, KEV_TIMESTAMP(
        "stalewatch_kev_catalog_timestamp_seconds",
        Gauge,
        "The dateReleased of the KEV catalog in force.",
        &[],
    ) => r.gauge(KEV_TIMESTAMP)?;
    family pub(super) epss_timestamp: Gauge, kept, EPSS_TIMESTAMP(
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
    family pub(super) image_info: GaugeVec, snapshot, IMAGE_INFO(
        "stalewatch_image_info",
        Gauge,
        "One series per running image.",
        &["image", "image_digest", "os_id", "os_version", "os_eol"],
    ) => r.gauge_vec(IMAGE_INFO)?;
    family pub(super) image_created: GaugeVec, snapshot, IMAGE_CREATED(
        "stalewatch_image_created_timestamp_seconds",
        Gauge,
        "The image config's created time.",
        &["image", "image_digest"],
    ) => r.gauge_vec(IMAGE_CREATED)?;
    family pub(super) image_base_info: GaugeVec, snapshot, IMAGE_BASE_INFO(
        "stalewatch_image_base_info",
        Gauge,
        "One series per running image with a known base: the base and how it was found (label, config, layers).",
        &["image", "image_digest", "base_name", "base_digest", "detected_by"],
    ) => r.gauge_vec(IMAGE_BASE_INFO)?;
    family pub(super) image_rebuild_fixable: GaugeVec, snapshot, IMAGE_REBUILD_FIXABLE(
        "stalewatch_image_rebuild_fixable_vulnerabilities",
        Gauge,
        "Distinct vulnerabilities of the image's base layers that a rebuild on the newer build of its base (held by the node) would fix.",
        &["image", "image_digest", "base_name"],
    ) => r.gauge_vec(IMAGE_REBUILD_FIXABLE)?;
    family pub(super) base_image_present: GaugeVec, snapshot, BASE_IMAGE_PRESENT(
        "stalewatch_base_image_present",
        Gauge,
        "For each --base-image: 1 while the node holds an image of that name, else 0 (no rebuild signal without it).",
        &["base_name"],
    ) => r.gauge_vec(BASE_IMAGE_PRESENT)?;
    family pub(super) node_scan_status: GaugeVec, snapshot, NODE_SCAN_STATUS(
        "stalewatch_node_scan_status",
        Gauge,
        "With --node-scan: the scan status of the node's own packages (ok, pending, failed, unsupported_os, no_package_db, no_advisory_feed).",
        &["status"],
    ) => r.gauge_vec(NODE_SCAN_STATUS)?;
    family pub(super) node_vulnerabilities: GaugeVec, snapshot, NODE_VULNERABILITIES(
        "stalewatch_node_vulnerabilities",
        Gauge,
        "With --node-scan: distinct vulnerabilities affecting the node's own packages (its running kernel's only), counted as a container's are.",
        &["severity", "fixable"],
    ) => r.gauge_vec(NODE_VULNERABILITIES)?;
    family pub(super) node_known_exploited: GaugeVec, snapshot, NODE_KNOWN_EXPLOITED(
        "stalewatch_node_known_exploited_vulnerabilities",
        Gauge,
        "With --node-scan and a KEV catalog: the node's distinct vulnerabilities in CISA's KEV catalog.",
        &[],
    ) => r.gauge_vec(NODE_KNOWN_EXPLOITED)?;
    family pub(super) node_oldest_fix_age: GaugeVec, snapshot, NODE_OLDEST_FIX_AGE(
        "stalewatch_node_oldest_fix_age_seconds",
        Gauge,
        "With --node-scan: age of the node's oldest fix that is not installed (0 when none); an estimate.",
        &[],
    ) => r.gauge_vec(NODE_OLDEST_FIX_AGE)?;
    family pub(super) node_kernel: GaugeVec, snapshot, NODE_KERNEL(
        "stalewatch_node_kernel_info",
        Gauge,
        "With --node-scan: the running kernel (its release) and the installed package it is (state packaged), or none (state unknown).",
        &["release", "package", "version", "state"],
    ) => r.gauge_vec(NODE_KERNEL)?;
    family pub(super) node_reboot_required: GaugeVec, snapshot, NODE_REBOOT_REQUIRED(
        "stalewatch_node_reboot_required",
        Gauge,
        "With --node-scan: 1 when a newer kernel package than the running one is installed, or the OS wrote /var/run/reboot-required; else 0.",
        &[],
    ) => r.gauge_vec(NODE_REBOOT_REQUIRED)?;
    family pub(super) node_reboot_since: GaugeVec, snapshot, NODE_REBOOT_SINCE(
        "stalewatch_node_reboot_required_since_timestamp_seconds",
        Gauge,
        "With --node-scan, while a reboot is due: since when (the reboot file's time, else the newer kernel's installation, else when the agent first saw it).",
        &[],
    ) => r.gauge_vec(NODE_REBOOT_SINCE)?;
    family pub(super) node_info: GaugeVec, snapshot, NODE_INFO(
        "stalewatch_node_info",
        Gauge,
        "With --node-scan: 1, labelled with the node's OS (os-release), running kernel, AKS node image and container runtime (its Node object; empty where unknown).",
        &["os_id", "os_version", "kernel", "node_image", "container_runtime"],
    ) => r.gauge_vec(NODE_INFO)?;
    family pub(super) node_image_age: GaugeVec, snapshot, NODE_IMAGE_AGE(
        "stalewatch_node_image_age_seconds",
        Gauge,
        "With --node-scan and a Node object whose node image version encodes its build date (AKS): seconds since that date.",
        &[],
    ) => r.gauge_vec(NODE_IMAGE_AGE)?;
    family pub(super) notifications: IntCounterVec, kept, NOTIFICATIONS(
        "stalewatch_notifications_total",
        Counter,
        "CloudEvents by type and result (delivered, retried, refused, dropped, failed).",
        &["type", "result"],
    ) => r.counter_vec(NOTIFICATIONS)?;
    family pub(super) notification_outbox: Gauge, kept, NOTIFICATION_OUTBOX(
        "stalewatch_notification_outbox_events",
        Gauge,
        "CloudEvents waiting in the outboxes (one per receiver) to be delivered.",
        &[],
    ) => r.gauge(NOTIFICATION_OUTBOX)?;
    family pub(super) redeploys: IntCounterVec, kept, REDEPLOYS(
        "stalewatch_redeploys_total",
        Counter,
        "Validated redeploys by result (redeployed, dry_run, blocked, not_opted_in, too_soon, precondition_failed, forbidden, failed).",
        &["result"],
    ) => r.counter_vec(REDEPLOYS)?;
    family pub(super) advisory_updated: Gauge, kept, ADVISORY_UPDATED(
        "stalewatch_advisory_db_updated_timestamp_seconds",
        Gauge,
        "Last successful advisory refresh.",
        &[],
    ) => r.gauge(ADVISORY_UPDATED)?;
    family pub(super) advisory_synced: Gauge, kept, ADVISORY_SYNCED(
        "stalewatch_advisory_source_synced_timestamp_seconds",
        Gauge,
        "When the advisory source last synced its data upstream: its stalewatch-sync.json, else the newest time of its modified_id.csv (the OSV bucket's).",
        &[],
    ) => r.gauge(ADVISORY_SYNCED)?;
    family pub(super) advisory_records: GaugeVec, snapshot, ADVISORY_RECORDS(
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
    family pub(super) build_info: GaugeVec, kept, BUILD_INFO(
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
pub(super) struct Registrar<'a>(pub(super) &'a Registry);

impl Registrar<'_> {
    pub(super) fn add<T: Collector + Clone + 'static>(&self, c: T) -> prometheus::Result<T> {
        self.0.register(Box::new(c.clone()))?;
        Ok(c)
    }

    pub(super) fn opts(d: &Def) -> Opts {
        Opts::new(d.name, d.help)
    }

    pub(super) fn gauge_vec(&self, d: Def) -> prometheus::Result<GaugeVec> {
        self.add(GaugeVec::new(Self::opts(&d), d.labels)?)
    }

    pub(super) fn gauge(&self, d: Def) -> prometheus::Result<Gauge> {
        self.add(Gauge::with_opts(Self::opts(&d))?)
    }

    pub(super) fn counter_vec(&self, d: Def) -> prometheus::Result<IntCounterVec> {
        self.add(IntCounterVec::new(Self::opts(&d), d.labels)?)
    }

    /// A two-label counter vector with every pair of `a` × `b` exported from the start (at 0).
    pub(super) fn counter_vec_grid(
        &self,
        d: Def,
        a: &[&str],
        b: &[&str],
    ) -> prometheus::Result<IntCounterVec> {
        let c = self.counter_vec(d)?;
        for x in a {
            for y in b {
                c.with_label_values(&[x, y]);
            }
        }
        Ok(c)
    }

    /// A one-label counter vector with each of `values` exported from the start (at 0).
    pub(super) fn counter_vec_with(&self, d: Def, values: &[&str]) -> prometheus::Result<IntCounterVec> {
        let c = self.counter_vec(d)?;
        for v in values {
            c.with_label_values(&[v]);
        }
        Ok(c)
    }

    pub(super) fn counter(&self, d: Def) -> prometheus::Result<IntCounter> {
        self.add(IntCounter::with_opts(Self::opts(&d))?)
    }

    pub(super) fn histogram(&self, d: Def) -> prometheus::Result<Histogram> {
        let Kind::Histogram(buckets) = d.kind else {
            return Err(prometheus::Error::Msg(format!("{} is not a histogram", d.name)));
        };
        self.add(Histogram::with_opts(
            HistogramOpts::new(d.name, d.help).buckets(buckets.to_vec()),
        )?)
    }
}
