//! Prometheus metrics (DESIGN.md's names), registered once. Per-container series are
//! rewritten from a whole snapshot under the same lock a scrape takes, so no scrape ever
//! sees half of an update.

use prometheus::{
    Encoder, Gauge, GaugeVec, Histogram, HistogramOpts, IntCounter, IntCounterVec, Opts, Registry,
    TextEncoder,
};
use std::sync::Mutex;

use stalewatch_core::advisory::Severity;

use super::snapshot::Snapshot;

pub struct Metrics {
    registry: Registry,
    /// Held while series are rewritten and while a scrape encodes them.
    publish: Mutex<()>,
    container_vulnerabilities: GaugeVec,
    container_scan_status: GaugeVec,
    container_oldest_fix_age: GaugeVec,
    container_started: GaugeVec,
    container_stale_digest: GaugeVec,
    container_drift: GaugeVec,
    container_in_use: GaugeVec,
    image_info: GaugeVec,
    image_created: GaugeVec,
    advisory_updated: Gauge,
    advisory_records: GaugeVec,
    pub advisory_update_errors: IntCounterVec,
    pub containerd_up: Gauge,
    pub containerd_reconnects: IntCounter,
    pub scan_duration: Histogram,
    pub rematch_duration: Histogram,
    pub runtime_check_duration: Histogram,
    pub runtime_refresh_duration: Histogram,
    pub scan_errors: IntCounterVec,
    pub layers_read: IntCounter,
    pub layer_bytes_decompressed: IntCounter,
    pub layer_cache_hits: IntCounter,
    pub kube_events: IntCounterVec,
    /// The opt-in per-finding series and its cap.
    vulnerability_info: Option<(GaugeVec, Gauge, usize)>,
}

const CONTAINER: [&str; 4] = ["namespace", "pod", "container", "image"];

fn gauge_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> prometheus::Result<GaugeVec> {
    let g = GaugeVec::new(Opts::new(name, help), labels)?;
    r.register(Box::new(g.clone()))?;
    Ok(g)
}

impl Metrics {
    /// Registers every metric; `vulnerability_info` is the cap of the opt-in per-finding
    /// series (`None`: not exported).
    pub fn register(vulnerability_info: Option<usize>) -> prometheus::Result<Metrics> {
        let r = Registry::new();
        let with = |extra: &[&'static str]| -> Vec<&'static str> {
            CONTAINER.iter().chain(extra).copied().collect()
        };
        let m = Metrics {
            container_vulnerabilities: gauge_vec(
                &r,
                "stalewatch_container_vulnerabilities",
                "Distinct vulnerabilities (records linked by aliases count once) affecting what the container runs.",
                &with(&["severity", "fixable"]),
            )?,
            container_scan_status: gauge_vec(
                &r,
                "stalewatch_container_scan_status",
                "One series per running container: its scan status (ok, pending, failed, unsupported_os, no_package_db).",
                &with(&["status"]),
            )?,
            container_oldest_fix_age: gauge_vec(
                &r,
                "stalewatch_container_oldest_fix_age_seconds",
                "Age of the container's oldest fix that is not deployed (0 when none); an estimate.",
                &CONTAINER,
            )?,
            container_started: gauge_vec(
                &r,
                "stalewatch_container_started_timestamp_seconds",
                "When the container's task started.",
                &CONTAINER,
            )?,
            container_stale_digest: gauge_vec(
                &r,
                "stalewatch_container_stale_digest",
                "Present (1) while the container's image name resolves to another image than the one it runs.",
                &with(&["running_digest", "current_digest"]),
            )?,
            container_drift: gauge_vec(
                &r,
                "stalewatch_container_drift_packages",
                "Packages added, removed or changed in the container's live root filesystem relative to its image.",
                &with(&["change"]),
            )?,
            container_in_use: gauge_vec(
                &r,
                "stalewatch_container_vulnerabilities_in_use",
                "Distinct vulnerabilities whose package has a file mapped by a process of the container.",
                &with(&["severity"]),
            )?,
            image_info: gauge_vec(
                &r,
                "stalewatch_image_info",
                "One series per running image.",
                &["image", "image_digest", "os_id", "os_version", "os_eol"],
            )?,
            image_created: gauge_vec(
                &r,
                "stalewatch_image_created_timestamp_seconds",
                "The image config's created time.",
                &["image", "image_digest"],
            )?,
            advisory_updated: {
                let g = Gauge::new("stalewatch_advisory_db_updated_timestamp_seconds", "Last successful advisory refresh.")?;
                r.register(Box::new(g.clone()))?;
                g
            },
            advisory_records: gauge_vec(&r, "stalewatch_advisory_records", "Advisory records loaded.", &["ecosystem"])?,
            advisory_update_errors: {
                let c = IntCounterVec::new(
                    Opts::new("stalewatch_advisory_update_errors_total", "Failed advisory refreshes."),
                    &["reason"],
                )?;
                r.register(Box::new(c.clone()))?;
                c
            },
            containerd_up: {
                let g = Gauge::new("stalewatch_containerd_up", "1 while the agent is connected to containerd.")?;
                r.register(Box::new(g.clone()))?;
                g
            },
            containerd_reconnects: {
                let c = IntCounter::new("stalewatch_containerd_reconnects_total", "Connections to containerd re-established.")?;
                r.register(Box::new(c.clone()))?;
                c
            },
            scan_duration: {
                let h = Histogram::with_opts(
                    HistogramOpts::new("stalewatch_scan_duration_seconds", "Time to inventory one image.")
                        .buckets(vec![0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0]),
                )?;
                r.register(Box::new(h.clone()))?;
                h
            },
            rematch_duration: {
                let h = Histogram::with_opts(
                    HistogramOpts::new("stalewatch_rematch_duration_seconds", "Time to re-match all cached inventories.")
                        .buckets(vec![0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0]),
                )?;
                r.register(Box::new(h.clone()))?;
                h
            },
            runtime_check_duration: {
                let h = Histogram::with_opts(
                    HistogramOpts::new(
                        "stalewatch_runtime_check_duration_seconds",
                        "Time of one container's runtime check (its processes' maps and its live package databases).",
                    )
                    .buckets(vec![0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5]),
                )?;
                r.register(Box::new(h.clone()))?;
                h
            },
            runtime_refresh_duration: {
                let h = Histogram::with_opts(
                    HistogramOpts::new(
                        "stalewatch_runtime_refresh_duration_seconds",
                        "Time of one pass of runtime checks over every container due (the host's PID namespaces listed once).",
                    )
                    .buckets(vec![0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0]),
                )?;
                r.register(Box::new(h.clone()))?;
                h
            },
            scan_errors: {
                let c = IntCounterVec::new(Opts::new("stalewatch_scan_errors_total", "Failed image scans."), &["reason"])?;
                r.register(Box::new(c.clone()))?;
                c
            },
            layers_read: {
                let c = IntCounter::new("stalewatch_layers_read_total", "Layer blobs read.")?;
                r.register(Box::new(c.clone()))?;
                c
            },
            layer_bytes_decompressed: {
                let c = IntCounter::new("stalewatch_layer_bytes_decompressed_total", "Bytes of layers decompressed.")?;
                r.register(Box::new(c.clone()))?;
                c
            },
            layer_cache_hits: {
                let c = IntCounter::new(
                    "stalewatch_layer_cache_hits_total",
                    "Layers whose inventory came from the cache instead of a read.",
                )?;
                r.register(Box::new(c.clone()))?;
                c
            },
            kube_events: {
                let c = IntCounterVec::new(
                    Opts::new(
                        "stalewatch_kube_events_total",
                        "Kubernetes Events by reason and result (published, series, suppressed, dropped, forbidden, failed).",
                    ),
                    &["reason", "result"],
                )?;
                r.register(Box::new(c.clone()))?;
                // Every pair from the start, so increase() sees the first failure.
                for reason in super::events::Reason::ALL {
                    for result in crate::kube::RESULTS {
                        c.with_label_values(&[reason.as_str(), result]);
                    }
                }
                c
            },
            vulnerability_info: match vulnerability_info {
                Some(limit) => Some((
                    gauge_vec(
                        &r,
                        "stalewatch_container_vulnerability_info",
                        "One series per finding (opt-in, capped): the advisory and package affecting a container.",
                        &with(&["id", "package", "installed_version", "fixed_version", "severity"]),
                    )?,
                    {
                        let g = Gauge::new(
                            "stalewatch_container_vulnerability_info_dropped",
                            "Findings not exported as stalewatch_container_vulnerability_info because of the cap.",
                        )?;
                        r.register(Box::new(g.clone()))?;
                        g
                    },
                    limit,
                )),
                None => None,
            },
            registry: r,
            publish: Mutex::new(()),
        };
        let build = gauge_vec(
            &m.registry,
            "stalewatch_build_info",
            "Build information.",
            &["version"],
        )?;
        build.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1.0);
        Ok(m)
    }

    /// Rewrites every snapshot-derived series at once.
    pub fn publish(&self, snap: &Snapshot) {
        let _guard = self.publish.lock().unwrap_or_else(|e| e.into_inner());
        for v in [
            &self.container_vulnerabilities,
            &self.container_scan_status,
            &self.container_oldest_fix_age,
            &self.container_started,
            &self.container_stale_digest,
            &self.container_drift,
            &self.container_in_use,
            &self.image_info,
            &self.image_created,
            &self.advisory_records,
        ] {
            v.reset();
        }
        for c in &snap.containers {
            let base = [
                c.namespace.as_str(),
                c.pod.as_str(),
                c.container.as_str(),
                c.image.as_str(),
            ];
            for sev in Severity::ALL {
                for fixable in [true, false] {
                    let n = c.vulnerabilities.get(&(sev, fixable)).copied().unwrap_or(0);
                    let fx = if fixable { "true" } else { "false" };
                    let labels: Vec<&str> = base.iter().copied().chain([sev.as_str(), fx]).collect();
                    self.container_vulnerabilities
                        .with_label_values(&labels)
                        .set(n as f64);
                }
            }
            let status: Vec<&str> = base.iter().copied().chain([c.scan_status.as_str()]).collect();
            self.container_scan_status.with_label_values(&status).set(1.0);
            self.container_oldest_fix_age
                .with_label_values(&base)
                .set(c.oldest_fix_age as f64);
            if let Some(t) = c.started_unix {
                self.container_started.with_label_values(&base).set(t as f64);
            }
            if let Some(u) = &c.vulnerabilities_in_use {
                for sev in Severity::ALL {
                    let labels: Vec<&str> = base.iter().copied().chain([sev.as_str()]).collect();
                    let n = u.get(&sev).copied().unwrap_or(0);
                    self.container_in_use.with_label_values(&labels).set(n as f64);
                }
            }
            if let Some(d) = &c.drift {
                for (change, n) in [
                    ("added", d.added.len()),
                    ("removed", d.removed.len()),
                    ("changed", d.changed.len()),
                ] {
                    let labels: Vec<&str> = base.iter().copied().chain([change]).collect();
                    self.container_drift.with_label_values(&labels).set(n as f64);
                }
            }
            if let Some(st) = &c.stale_digest {
                let labels: Vec<&str> = base
                    .iter()
                    .copied()
                    .chain([st.running_digest.as_str(), st.current_digest.as_str()])
                    .collect();
                self.container_stale_digest.with_label_values(&labels).set(1.0);
            }
        }
        for i in &snap.images {
            let eol = if i.os_eol { "true" } else { "false" };
            self.image_info
                .with_label_values(&[&i.image, &i.image_digest, &i.os_id, &i.os_version, eol])
                .set(1.0);
            if let Some(t) = i.created {
                self.image_created
                    .with_label_values(&[&i.image, &i.image_digest])
                    .set(t as f64);
            }
        }
        if let Some((info, dropped, limit)) = &self.vulnerability_info {
            info.reset();
            let mut rows: Vec<(Severity, [&str; 8])> = Vec::new();
            for c in &snap.containers {
                for f in c.report.iter().flat_map(|r| &r.findings) {
                    let fixed = f.fixed_version.as_deref().unwrap_or("");
                    rows.push((
                        f.severity,
                        [
                            &c.namespace,
                            &c.pod,
                            &c.container,
                            &c.image,
                            &f.id,
                            &f.package,
                            &f.installed_version,
                            fixed,
                        ],
                    ));
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
        if let Some(t) = snap.advisory_db.updated_unix {
            self.advisory_updated.set(t as f64);
        }
        for (eco, n) in &snap.advisory_db.records {
            self.advisory_records.with_label_values(&[eco]).set(*n as f64);
        }
    }

    /// The text exposition.
    pub fn encode(&self) -> Vec<u8> {
        let _guard = self.publish.lock().unwrap_or_else(|e| e.into_inner());
        let mut out = Vec::new();
        // Encoding plain metric families into a Vec cannot fail.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        out
    }
}
