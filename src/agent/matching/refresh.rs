//! Advisory refreshes: every `--advisory-refresh` (±10 % jitter, sooner after a failure), one
//! `stalewatch db update` in a child process, its per-ecosystem results sent to the engine.

use anyhow::Context;
use std::time::Duration;
use tokio::sync::mpsc;

use crate::agent::config::Config;
use crate::agent::messages::Msg;
use crate::db::update::{self, EcosystemResult};

/// Runs one refresh in a child process (`stalewatch db update --format json`): building an
/// index from a large feed takes memory the agent should not keep, and a hostile feed that
/// broke the builder would take down only the child.
async fn refresh_once(cfg: &Config) -> anyhow::Result<Vec<EcosystemResult>> {
    let exe = std::env::current_exe().context("locate the stalewatch binary")?;
    let mut cmd = tokio::process::Command::new(exe);
    cmd.args([
        "db",
        "update",
        "--format",
        "json",
        "--advisory-source",
        &cfg.advisory_source.to_arg(),
    ])
    .arg("--db-dir")
    .arg(&cfg.db_dir)
    .stdin(std::process::Stdio::null())
    .kill_on_drop(true);
    for e in &cfg.ecosystems {
        cmd.args(["--ecosystem", e]);
    }
    if let Some(ca) = &cfg.advisory_ca_file {
        cmd.arg("--advisory-ca-file").arg(ca);
    }
    if let Some(k) = &cfg.feeds.kev {
        cmd.args(["--kev-source", &k.to_arg()]);
    }
    if let Some(e) = &cfg.feeds.epss {
        cmd.args(["--epss-source", &e.to_arg()]);
    }
    let out = cmd.output().await.context("run the refresh")?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let results: Vec<EcosystemResult> = stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<update::ResultLine>(l).ok())
        .map(update::ResultLine::into_result)
        .collect();
    if results.is_empty() {
        anyhow::bail!(
            "refresh produced no result ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(results)
}

/// Refreshes advisories now, then every interval with ±10 % jitter; backs off on failure.
pub async fn run(cfg: Config, tx: mpsc::Sender<Msg>) {
    let mut failures = 0u32;
    loop {
        let results = match refresh_once(&cfg).await {
            Ok(r) => r,
            Err(e) => {
                tracing::error!("advisory refresh: {e:#}");
                vec![EcosystemResult {
                    ecosystem: String::new(),
                    result: Err(update::UpdateError {
                        reason: "build",
                        detail: format!("{e:#}"),
                    }),
                }]
            }
        };
        let failed = results.iter().any(|r| r.result.is_err());
        if tx.send(Msg::Refreshed(results)).await.is_err() {
            return;
        }
        failures = if failed { failures + 1 } else { 0 };
        tokio::time::sleep(next_delay(cfg.advisory_refresh, failures).mul_f64(rand::random_range(0.9..1.1)))
            .await;
    }
}

/// After `failures` failed refreshes in a row, retry sooner: 1, 2, 4 … minutes, backing off
/// up to the normal interval.
fn next_delay(interval: Duration, failures: u32) -> Duration {
    if failures == 0 {
        return interval;
    }
    (Duration::from_secs(30) * 2u32.saturating_pow(failures.min(10))).min(interval)
}

#[cfg(test)]
mod tests {
    #[test]
    fn failed_refreshes_retry_sooner_and_back_off_to_the_interval() {
        let hour = std::time::Duration::from_secs(3600);
        let secs: Vec<u64> = (0..=7).map(|f| super::next_delay(hour, f).as_secs()).collect();
        assert_eq!(secs, vec![3600, 60, 120, 240, 480, 960, 1920, 3600]);
    }
}
