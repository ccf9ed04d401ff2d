//! Delivery to one receiver: its outbox in order, one POST at a time with a deadline; 2xx is
//! delivered, 408, 429, 5xx and connection errors are retried with exponential backoff and
//! jitter, any other status is refused (dropped and logged). Each receiver has a task of its
//! own, so a slow one never delays another, the scans or `/metrics`.

use hmac::{Hmac, Mac};
use rand::Rng;
use sha2::Sha256;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

use super::outbox::{Outbox, Pending};
use super::NotifyMetrics;

/// Backoff after the first failed attempt, doubled each time up to `MAX_BACKOFF`.
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(300);

pub struct Receiver {
    pub url: String,
    pub outbox: Arc<Outbox>,
    pub wake: Arc<Notify>,
}

/// What one attempt came to.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    Delivered,
    Retry(String),
    Refused(String),
}

/// `sha256=<hex>` of the body under the secret: Flux's `generic-hmac` Receiver form.
pub fn signature(secret: &[u8], body: &[u8]) -> String {
    // HMAC takes a key of any length: `new_from_slice` cannot fail for it.
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).unwrap_or_else(|_| unreachable!());
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

async fn attempt(client: &reqwest::Client, url: &str, secret: Option<&[u8]>, body: Vec<u8>) -> Outcome {
    let mut req = client
        .post(url)
        .header("content-type", "application/cloudevents+json");
    if let Some(s) = secret {
        req = req.header("x-signature", signature(s, &body));
    }
    match req.body(body).send().await {
        Ok(resp) => {
            let status = resp.status();
            if status.is_success() {
                Outcome::Delivered
            } else if status.as_u16() == 408 || status.as_u16() == 429 || status.is_server_error() {
                Outcome::Retry(format!("HTTP {status}"))
            } else {
                Outcome::Refused(format!("HTTP {status}"))
            }
        }
        Err(e) => Outcome::Retry(format!("{e}")),
    }
}

/// Delivers the receiver's outbox for as long as the agent runs.
pub async fn run(
    r: Receiver,
    client: reqwest::Client,
    secret: Option<Arc<[u8]>>,
    metrics: Arc<NotifyMetrics>,
) {
    let mut failures = 0u32;
    loop {
        let Some(next) = r.outbox.pending().into_iter().next() else {
            failures = 0;
            // A new event wakes the task; the timeout picks up what a restart left.
            let _ = tokio::time::timeout(Duration::from_secs(30), r.wake.notified()).await;
            continue;
        };
        let body = match std::fs::read(&next.path) {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!("reading {}: {e}", next.path.display());
                tokio::time::sleep(FIRST_BACKOFF).await;
                continue;
            }
        };
        match attempt(&client, &r.url, secret.as_deref(), body).await {
            Outcome::Delivered => {
                finish(&r, &next, "delivered", &metrics);
                failures = 0;
            }
            Outcome::Refused(why) => {
                tracing::warn!(event = %next.id, kind = %next.kind, "notification refused ({why}): dropped");
                finish(&r, &next, "refused", &metrics);
            }
            Outcome::Retry(why) => {
                metrics.count(&next.kind, "retried");
                let wait = backoff(failures);
                failures = failures.saturating_add(1);
                tracing::info!(event = %next.id, "notification not delivered ({why}); retrying in {wait:?}");
                tokio::time::sleep(wait).await;
            }
        }
    }
}

fn finish(r: &Receiver, p: &Pending, result: &str, metrics: &NotifyMetrics) {
    r.outbox.remove(p);
    metrics.count(&p.kind, result);
    metrics.outbox_changed();
}

/// The wait after `failures` failed attempts: doubling, capped, with ±25 % jitter so agents
/// of many nodes do not retry in step.
fn backoff(failures: u32) -> Duration {
    let base = FIRST_BACKOFF
        .saturating_mul(1 << failures.min(16))
        .min(MAX_BACKOFF);
    base.mul_f64(rand::rng().random_range(0.75..1.25))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 4231 test case 2: key "Jefe", data "what do ya want for nothing?".
    #[test]
    fn signs_as_hmac_sha256() {
        assert_eq!(
            signature(b"Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn backoff_doubles_to_a_cap_with_jitter() {
        let b0 = backoff(0).as_secs_f64();
        assert!((0.75..1.25).contains(&b0), "{b0}");
        let b3 = backoff(3).as_secs_f64();
        assert!((6.0..10.0).contains(&b3), "{b3}");
        assert!(backoff(40).as_secs_f64() <= MAX_BACKOFF.as_secs_f64() * 1.25);
    }
}
