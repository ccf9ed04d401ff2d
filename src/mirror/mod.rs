//! `stalewatch mirror`: a cluster's OSV mirror in one process of the stalewatch image — it
//! serves `<data>/<Ecosystem>/all.zip` (the public bucket's layout) with the KEV and EPSS files
//! beside them, and syncs them from upstream every `--interval`. One pod, one volume: no second
//! image, no job that waits for a disk another node holds (docs/install.md#mirror).
//!
//! Config (the flags) → [`run`]: the sync loop ([`sync`]) and the file server ([`serve`]) share
//! the data directory and the metrics ([`MirrorMetrics`]).

mod config;
mod metrics;
mod serve;
mod sync;

use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

pub use config::Config;
use metrics::MirrorMetrics;
use sync::sync_once;

/// Runs the mirror: with `once`, one sync (exit 1 when it failed); else the server and a sync
/// every interval until SIGTERM.
pub fn run(cfg: Config) -> anyhow::Result<ExitCode> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let client = crate::db::update::http_client(cfg.ca_file.as_deref())?;
    let metrics = MirrorMetrics::new()?;
    // Every file's failure count exists from the start (0), so increase() sees the first.
    let feeds = [("kev", &cfg.kev_upstream), ("epss", &cfg.epss_upstream)];
    let files = cfg
        .ecosystems
        .iter()
        .map(String::as_str)
        .chain(feeds.iter().filter(|(_, u)| u.is_some()).map(|(n, _)| *n));
    for f in files {
        metrics.file_failures.with_label_values(&[f]);
    }
    if cfg.once {
        let report = rt.block_on(sync_once(&cfg, &client));
        metrics.record(&report);
        return Ok(if report.ok() {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(1)
        });
    }
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(cfg.listen)
            .await
            .map_err(|e| anyhow::anyhow!("listen on {}: {e}", cfg.listen))?;
        tracing::info!(
            "serving {} and /metrics on {}",
            cfg.data.display(),
            listener.local_addr()?
        );
        let synced_once = Arc::new(AtomicBool::new(false));
        if let Some(at) = sync::recorded_sync_time(&cfg.data) {
            metrics.synced.set(at);
        }
        let loop_cfg = cfg.clone();
        let loop_metrics = metrics.clone();
        let loop_flag = synced_once.clone();
        tokio::spawn(async move {
            loop {
                let report = sync_once(&loop_cfg, &client).await;
                loop_metrics.record(&report);
                loop_flag.store(true, Ordering::Relaxed);
                tokio::time::sleep(loop_cfg.interval).await;
            }
        });
        let router = serve::router(cfg.data.clone(), metrics, synced_once);
        crate::agent::serve_router(listener, router).await?;
        anyhow::Ok(ExitCode::SUCCESS)
    })
}
