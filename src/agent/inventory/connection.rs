//! The connection to containerd: connect (with backoff), check its version, follow its event
//! stream, and tell the engine when the client changes or something happened. Owns the
//! reconnect state and `stalewatch_containerd_up`; nothing else dials containerd. A containerd
//! that keeps the connection but stops answering (frozen, overloaded) is found by a probe:
//! a version call within the deadline every half deadline; one that misses it is down.

use std::time::Duration;
use tokio::sync::mpsc;
use tokio_stream::StreamExt;

use crate::agent::config::Config;
use crate::agent::messages::Msg;
use crate::agent::metrics::Metrics;
use crate::containerd::Containerd;

/// Keeps a connection to containerd, forwarding its events as wake-ups.
pub async fn run(cfg: Config, metrics: std::sync::Arc<Metrics>, tx: mpsc::Sender<Msg>) {
    let mut backoff = Duration::from_millis(250);
    let mut was_up: Option<bool> = None;
    let mut connected_before = false;
    loop {
        let attempt = async {
            let c = Containerd::connect_within(
                &cfg.containerd_address,
                &cfg.containerd_namespace,
                cfg.containerd_timeout,
            )
            .await?;
            let version = c.version().await?;
            Ok::<_, anyhow::Error>((c, version))
        };
        match attempt.await {
            Ok((client, version)) => {
                if connected_before {
                    metrics.containerd_reconnects.inc();
                }
                connected_before = true;
                if was_up != Some(true) {
                    tracing::info!(
                        "connected to containerd {version} at {}",
                        cfg.containerd_address.display()
                    );
                }
                was_up = Some(true);
                backoff = Duration::from_millis(250);
                metrics.containerd_up.set(1.0);
                if tx.send(Msg::Client(Some(client.clone()))).await.is_err() {
                    return;
                }
                // containerd sends the stream's headers with its first event: subscribing only
                // after publishing the client keeps a quiet node from looking disconnected.
                tokio::select! {
                    () = follow_events(&client, &tx) => {}
                    e = probe(&client) => {
                        tracing::warn!("containerd stopped answering, treated as down: {e:#}");
                        was_up = Some(false);
                    }
                }
                metrics.containerd_up.set(0.0);
                if tx.send(Msg::Client(None)).await.is_err() {
                    return;
                }
                tokio::time::sleep(backoff).await;
            }
            Err(e) => {
                metrics.containerd_up.set(0.0);
                if was_up != Some(false) {
                    tracing::warn!("containerd unavailable, retrying with backoff: {e:#}");
                }
                was_up = Some(false);
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(30));
            }
        }
    }
}

/// Asks containerd its version every half deadline until a call fails or misses the
/// deadline; returns that error.
async fn probe(client: &Containerd) -> anyhow::Error {
    let every = (client.deadline() / 2).clamp(Duration::from_millis(500), Duration::from_secs(15));
    loop {
        tokio::time::sleep(every).await;
        if let Err(e) = client.version().await {
            return e;
        }
    }
}

/// Forwards the event stream as wake-ups until it breaks. A full queue already holds a
/// wake-up, so one more is dropped rather than waited for.
async fn follow_events(client: &Containerd, tx: &mpsc::Sender<Msg>) {
    let mut stream = match client.subscribe().await {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!("{e:#}");
            return;
        }
    };
    while let Some(ev) = stream.next().await {
        match ev {
            Ok(env) => {
                tracing::debug!(topic = %env.topic, "containerd event");
                let _ = tx.try_send(Msg::Changed);
            }
            Err(e) => {
                tracing::warn!("containerd event stream broke: {}", e.message());
                return;
            }
        }
    }
}
