//! Prometheus metrics (DESIGN.md's names), registered once from one table (`metric_table!`:
//! each family's definition, field, registration and whether each snapshot rewrites it, in one
//! row) that `docs/metrics.md` is checked against, so the two cannot drift. Per-container series are
//! rewritten from a whole snapshot under the same lock an encoding takes, so no scrape ever
//! sees half of an update. A scrape is served an encoded body at most `EXPOSITION_MAX_AGE` old
//! and never waits behind a publish: a burst of scrapes encodes once.

mod table;

use bytes::Bytes;
use prometheus::{Encoder, Gauge, GaugeVec, IntCounterVec, Registry, TextEncoder};
use std::sync::{Mutex, TryLockError};
use std::time::{Duration, Instant};

use stalewatch_core::advisory::Severity;

use super::signals::{LogLimiter, Signal};
use super::snapshot::{ContainerView, NodeView, Snapshot, TriageView};
use table::{defs, Families, Registrar};
#[cfg(test)]
pub use table::{DEFS, READ_SOURCES, STATE_LOAD_REASONS, TASKS, VIEW_RESULTS};

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
        let doc = include_str!("../../../docs/metrics.md");
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
        let doc = include_str!("../../../docs/metrics.md");
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
