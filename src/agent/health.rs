//! Liveness: the engine's heartbeat and the supervision of the agent's tasks. The engine beats
//! at every loop iteration and after every image read; `/healthz` fails once no beat came for
//! the bound (`--stuck-after`), so the kubelet restarts a wedged agent — while a containerd
//! that does not answer is an outage the engine keeps beating through (every call has a
//! deadline), never a wedge. A task that ends or panics is counted and started again.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use prometheus::IntCounterVec;

/// The engine's last sign of life, and how long a silence means it is stuck.
pub struct Heartbeat {
    started: Instant,
    /// Milliseconds after `started` of the last beat.
    last: AtomicU64,
    pub bound: Duration,
}

impl Heartbeat {
    pub fn new(bound: Duration) -> Heartbeat {
        Heartbeat {
            started: Instant::now(),
            last: AtomicU64::new(0),
            bound,
        }
    }

    pub fn beat(&self) {
        let now = self.started.elapsed().as_millis() as u64;
        self.last.fetch_max(now, Ordering::Relaxed);
    }

    /// How long since the last beat.
    pub fn silence(&self) -> Duration {
        let last = Duration::from_millis(self.last.load(Ordering::Relaxed));
        self.started.elapsed().saturating_sub(last)
    }

    /// The silence, when it is longer than the bound.
    pub fn stuck(&self) -> Option<Duration> {
        let s = self.silence();
        (s > self.bound).then_some(s)
    }
}

/// Runs the task `make` builds, again whenever it ends or panics (after a pause that grows
/// to 30 s), counting each end in `failures{task}`. Returns when the runtime shuts down, or
/// when the task ended because the agent is stopping (`stopping()`): no failure then.
pub async fn supervise<F, Fut>(
    task: &'static str,
    failures: IntCounterVec,
    stopping: impl Fn() -> bool,
    make: F,
) where
    F: Fn() -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let mut pause = Duration::from_millis(500);
    loop {
        let started = Instant::now();
        let ended = tokio::spawn(make()).await;
        if stopping() {
            return;
        }
        match ended {
            Ok(()) => tracing::error!(task, "task ended; starting it again"),
            Err(e) if e.is_cancelled() => return,
            Err(e) => tracing::error!(task, "task panicked: {e}; starting it again"),
        }
        failures.with_label_values(&[task]).inc();
        if started.elapsed() > Duration::from_secs(60) {
            pause = Duration::from_millis(500);
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_secs(30));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_silence_past_the_bound_is_stuck() {
        let h = Heartbeat::new(Duration::from_millis(50));
        h.beat();
        assert_eq!(h.stuck(), None);
        std::thread::sleep(Duration::from_millis(120));
        assert!(h.stuck().is_some_and(|s| s >= Duration::from_millis(100)));
        h.beat();
        assert_eq!(h.stuck(), None);
    }

    #[tokio::test]
    async fn a_task_that_panics_or_ends_is_counted_and_started_again() {
        let failures = IntCounterVec::new(prometheus::Opts::new("f", "f"), &["task"]).unwrap();
        let runs = std::sync::Arc::new(AtomicU64::new(0));
        let r = runs.clone();
        let sup = tokio::spawn(supervise(
            "t",
            failures.clone(),
            || false,
            move || {
                let r = r.clone();
                async move {
                    if r.fetch_add(1, Ordering::SeqCst) == 0 {
                        panic!("first run fails");
                    }
                    std::future::pending::<()>().await;
                }
            },
        ));
        for _ in 0..50 {
            if runs.load(Ordering::SeqCst) >= 2 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(runs.load(Ordering::SeqCst), 2);
        assert_eq!(failures.with_label_values(&["t"]).get(), 1);
        sup.abort();
    }

    #[tokio::test]
    async fn a_task_that_ends_because_the_agent_stops_is_no_failure() {
        let failures = IntCounterVec::new(prometheus::Opts::new("f", "f"), &["task"]).unwrap();
        supervise("t", failures.clone(), || true, || async {}).await;
        assert_eq!(failures.with_label_values(&["t"]).get(), 0);
    }
}
