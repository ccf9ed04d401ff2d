//! The mirror's own series, served on its `/metrics` (docs/metrics.md#the-mirror).

use prometheus::{IntCounterVec, IntGauge, Opts, Registry};

use super::sync::SyncReport;

/// The mirror's own series (docs/metrics.md#mirror).
#[derive(Clone)]
pub struct MirrorMetrics {
    pub registry: Registry,
    pub syncs: IntCounterVec,
    pub file_failures: IntCounterVec,
    pub synced: IntGauge,
}

impl MirrorMetrics {
    pub fn new() -> anyhow::Result<MirrorMetrics> {
        let registry = Registry::new();
        let syncs = IntCounterVec::new(
            Opts::new(
                "stalewatch_mirror_syncs_total",
                "Sync passes of the mirror, by outcome (ok: every file refreshed; failed: any file not)",
            ),
            &["outcome"],
        )?;
        let file_failures = IntCounterVec::new(
            Opts::new("stalewatch_mirror_sync_failures_total", "Files the sync could not refresh (an ecosystem's all.zip, kev, epss): download failed or refused as malformed"),
            &["file"],
        )?;
        let synced = IntGauge::new(
            "stalewatch_mirror_synced_timestamp_seconds",
            "When every ecosystem was last refreshed from upstream (the time stalewatch-sync.json holds); 0 before the first good sync",
        )?;
        registry.register(Box::new(syncs.clone()))?;
        registry.register(Box::new(file_failures.clone()))?;
        registry.register(Box::new(synced.clone()))?;
        for outcome in ["ok", "failed"] {
            syncs.with_label_values(&[outcome]);
        }
        Ok(MirrorMetrics {
            registry,
            syncs,
            file_failures,
            synced,
        })
    }

    pub fn record(&self, report: &SyncReport) {
        let outcome = if report.ok() { "ok" } else { "failed" };
        self.syncs.with_label_values(&[outcome]).inc();
        for f in &report.failed {
            self.file_failures.with_label_values(&[f]).inc();
        }
        if let Some(at) = report.synced_at {
            self.synced.set(at);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::MirrorMetrics;

    /// docs/mirror.md's table is the registry: every family, its type and labels.
    #[test]
    fn the_documented_table_is_the_registry() {
        let doc = include_str!("../../docs/mirror.md");
        let documented: Vec<(String, String, String)> = doc
            .lines()
            .filter(|l| l.starts_with("| `stalewatch_mirror_"))
            .map(|l| {
                let c: Vec<&str> = l.split('|').map(str::trim).collect();
                (
                    c[1].trim_matches('`').to_string(),
                    c[2].to_string(),
                    c[3].to_string(),
                )
            })
            .collect();
        let m = MirrorMetrics::new().unwrap();
        m.file_failures.with_label_values(&["Alpine"]);
        let mut code: Vec<(String, String, String)> = m
            .registry
            .gather()
            .iter()
            .map(|f| {
                let labels = f.get_metric()[0]
                    .get_label()
                    .iter()
                    .map(|l| l.name().to_string())
                    .collect::<Vec<_>>()
                    .join(", ");
                let kind = format!("{:?}", f.get_field_type()).to_lowercase();
                (f.name().to_string(), kind, labels)
            })
            .collect();
        code.sort();
        let mut sorted = documented.clone();
        sorted.sort();
        assert_eq!(sorted, code);
    }
}
