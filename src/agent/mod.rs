//! `stalewatch agent`: the node agent, as wiring only. Config → build → run: the owners are
//! built from the validated config, the tasks around the engine (containerd connection,
//! advisory refresh, reconcile ticker, shutdown) feed its one bounded queue, the engine runs
//! on a thread of its own, and the HTTP listeners read what it publishes. Data flows one
//! way: inventory → images → the findings store (reports made by matching, lineage's
//! decisions applied) → runtime checks → publishing (a pure build) → metrics, findings,
//! Events, CloudEvents, redeploys. `docs/ARCHITECTURE.md` draws it.

mod changes;
pub mod config;
mod engine;
pub mod events;
mod findings_v1;
mod health;
mod http;
mod images;
mod inventory;
mod lineage;
mod listener;
mod matching;
mod messages;
mod metrics;
mod node;
mod node_object;
pub mod notify;
mod publishing;
pub mod redeploy;
mod runtime_checks;
mod signals;
mod snapshot;
mod state_file;
mod store;
mod telling;
#[cfg(test)]
mod troubleshooting_table;

use anyhow::Context;
use std::sync::Arc;
use tokio::sync::mpsc;

pub use config::{Config, EventsConfig, Fallback, KubeAccess, SandboxedRuntimes};
pub use listener::Limits as HttpLimits;
use messages::Msg;

pub fn run(cfg: Config) -> anyhow::Result<()> {
    std::fs::create_dir_all(&cfg.state_dir)
        .with_context(|| format!("create state directory {}", cfg.state_dir.display()))?;
    std::fs::create_dir_all(&cfg.db_dir).with_context(|| format!("create {}", cfg.db_dir.display()))?;
    // What a kill -9 left mid-write: the agent owns its state directory; the database
    // directory may be shared with a `db update` that is writing now.
    let minute = std::time::Duration::from_secs(60);
    let removed = crate::db::remove_stale_temp_files(&cfg.state_dir, Default::default())
        + crate::db::remove_stale_temp_files(&cfg.state_dir.join("layers"), Default::default())
        + crate::db::remove_stale_temp_files(&cfg.db_dir, minute)
        + outboxes(&cfg.state_dir)
            .iter()
            .map(|d| crate::db::remove_stale_temp_files(d, Default::default()))
            .sum::<usize>();
    if removed > 0 {
        tracing::info!("removed {removed} temp files an interrupted write left");
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(run_async(cfg))
}

/// Serves `router` under the agent's listener limits (its flags' defaults) until SIGTERM: for
/// the other long-running subcommand, `stalewatch mirror`.
pub async fn serve_router(listener: tokio::net::TcpListener, router: axum::Router) -> std::io::Result<()> {
    let limits = HttpLimits {
        header_timeout: std::time::Duration::from_secs(5),
        max_connections: 1024,
        max_header_bytes: 16384,
    };
    listener::serve(listener, router, limits, http::shutdown_signal()).await
}

/// Each notifier's threshold, from its flag; `None` for a notifier that is off.
fn thresholds(cfg: &Config) -> changes::Thresholds {
    changes::Thresholds {
        kube_events: cfg.events.as_ref().map(|e| e.min_severity),
        notify: cfg.notify.as_ref().map(|n| n.min_severity),
        redeploy: cfg.redeploy.is_some(),
        containers_listed: false,
    }
}

async fn run_async(cfg: Config) -> anyhow::Result<()> {
    let metrics = Arc::new(metrics::Metrics::register(cfg.vulnerability_info).context("register metrics")?);
    events::kube::init_outcomes(&metrics.kube_events);
    let shared = Arc::new(publishing::Shared::new(
        metrics.clone(),
        cfg.vex_in_use_not_affected,
        cfg.vex_author.clone(),
        cfg.stuck_after,
    ));
    let server = http::serve(&cfg, shared.clone()).await?;
    let mut engine = engine::Engine::new(
        inventory::ContainerInventory::new(cfg.proc_root.clone(), cfg.sandboxed_runtimes.clone()),
        images::ImageStore::new(&cfg),
        matching::Matching::new(&cfg),
        lineage::Lineage::new(&cfg.state_dir, cfg.base_images.clone(), metrics.state_counters()),
        runtime_checks::RuntimeChecks::new(cfg.proc_root.clone(), cfg.drift_interval),
        publishing::Publisher::new(&cfg, shared),
        telling::Telling::new(&cfg.state_dir, thresholds(&cfg), &metrics),
    );
    if let Some(root) = cfg.host_root.clone() {
        tracing::info!(host_root = %root.display(), "scanning the node's own packages");
        let mut scan = node::NodeScan::new(root, cfg.proc_root.clone());
        if let Some(access) = cfg.node_object.clone() {
            scan.object = Some(node_object::start(access, cfg.node_name.clone()));
        }
        engine.node = Some(scan);
    }
    if let Some(ec) = cfg.events.clone() {
        let days = (cfg.stale_after.as_secs() / 86400) as i64;
        engine.announcer = Some(events::Announcer::start(ec, days, &metrics));
    }
    if let Some(nc) = cfg.notify.clone() {
        let (total, gauge) = metrics.notification_series();
        engine.notifier = Some(notify::Notifier::start(nc, &cfg.state_dir, total, gauge)?);
    }
    if let Some(rc) = cfg.redeploy.clone() {
        engine.redeployer = Some(redeploy::Redeployer::start(rc, metrics.redeploy_series()));
    }
    let (tx, rx) = mpsc::channel(messages::QUEUE);
    spawn_tasks(&cfg, &metrics, &tx);
    let rt = tokio::runtime::Handle::current();
    let engine = std::thread::Builder::new()
        .name("stalewatch-engine".into())
        .spawn(move || engine.run(rx, rt))
        .context("start the engine thread")?;
    // The engine is critical: if its thread ends before it is told to stop, the process
    // exits so the kubelet restarts the pod (a frozen snapshot is never served on).
    let mut engine_done = tokio::task::spawn_blocking(move || engine.join());
    tokio::select! {
        () = http::shutdown_signal() => {}
        joined = &mut engine_done => {
            let how = match joined {
                Ok(Ok(())) => "ended".to_string(),
                _ => "panicked".to_string(),
            };
            tracing::error!("the engine {how}: exiting so the pod is restarted");
            std::process::exit(70);
        }
    }
    // The engine saves its cache and ends; its thread is joined off the workers.
    let _ = tx.send(Msg::Stop).await;
    let _ = engine_done.await;
    let _ = server.await;
    Ok(())
}

/// Every task supervised: one that ends or panics is counted and started again.
fn spawn_tasks(cfg: &Config, metrics: &Arc<metrics::Metrics>, tx: &mpsc::Sender<Msg>) {
    let failures = metrics.task_failures.clone();
    let (c, m, t) = (cfg.clone(), metrics.clone(), tx.clone());
    tokio::spawn(health::supervise(
        "containerd_connection",
        failures.clone(),
        stopping(tx),
        move || inventory::connection::run(c.clone(), m.clone(), t.clone()),
    ));
    let (c, t) = (cfg.clone(), tx.clone());
    tokio::spawn(health::supervise(
        "advisory_refresh",
        failures.clone(),
        stopping(tx),
        move || matching::refresh::run(c.clone(), t.clone()),
    ));
    let (interval, t) = (cfg.reconcile_interval, tx.clone());
    tokio::spawn(health::supervise(
        "reconcile_ticker",
        failures.clone(),
        stopping(tx),
        move || tick(interval, t.clone()),
    ));
    if let Some(dir) = cfg.vex_dir.clone() {
        let t = tx.clone();
        tokio::spawn(health::supervise(
            "vex_reload",
            failures,
            stopping(tx),
            move || matching::vex_dir::run(dir.clone(), t.clone()),
        ));
    }
}

/// Whether the agent is stopping: the engine, the receiver of every task's messages, is gone.
fn stopping(tx: &mpsc::Sender<Msg>) -> impl Fn() -> bool + Send + 'static {
    let tx = tx.clone();
    move || tx.is_closed()
}

/// The notification outboxes' directories (one per receiver ever configured).
fn outboxes(state_dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    std::fs::read_dir(state_dir.join("outbox"))
        .map(|r| r.flatten().map(|e| e.path()).filter(|p| p.is_dir()).collect())
        .unwrap_or_default()
}

/// A full reconcile at least every `interval` (events trigger one at once).
async fn tick(interval: std::time::Duration, tx: mpsc::Sender<Msg>) {
    let mut t = tokio::time::interval(interval);
    loop {
        t.tick().await;
        // A full queue already holds work that leads to a reconcile.
        if tx.try_send(Msg::Tick).is_err() && tx.is_closed() {
            return;
        }
    }
}
