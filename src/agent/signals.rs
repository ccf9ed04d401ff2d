//! Log and count in one call. Each failure the agent counts is a typed `Signal` whose labels
//! are bounded by their types (static strings from fixed lists, typed reasons); the metrics
//! owner's `emit` increments its counter and hands it here to be logged — at most once per
//! `LOG_EVERY` per (signal, reason, label), with how many were not logged since — so a log
//! line and a counter cannot drift apart, and a storm of one failure cannot flood the log.

use std::collections::HashMap;
use std::fmt::Display;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::snapshot::Unchecked;

/// How often one kind of signal is logged at most.
pub const LOG_EVERY: Duration = Duration::from_secs(60);

/// A counted failure, with what its log line says.
pub enum Signal<'a> {
    /// A listing of what runs failed: `stalewatch_containerd_list_failures_total{list,reason}`.
    ContainerdList {
        list: &'static str,
        reason: &'static str,
        error: &'a dyn Display,
    },
    /// A runtime check of a container not made: `stalewatch_runtime_check_errors_total`.
    RuntimeCheck {
        check: &'static str,
        reason: Unchecked,
        container: &'a str,
    },
    /// An image (or a container's live databases) could not be read:
    /// `stalewatch_scan_errors_total{reason}`.
    Scan {
        reason: &'static str,
        what: &'a str,
        error: &'a dyn Display,
    },
    /// An advisory refresh of one ecosystem failed: `stalewatch_advisory_update_errors_total`.
    AdvisoryUpdate {
        reason: &'static str,
        ecosystem: &'a str,
        error: &'a dyn Display,
    },
}

impl Signal<'_> {
    /// What rate-limits its log line: the signal and its bounded labels.
    fn key(&self) -> Kind {
        match self {
            Signal::ContainerdList { list, reason, .. } => ("containerd_list", list, reason),
            Signal::RuntimeCheck { check, reason, .. } => ("runtime_check", check, reason.reason()),
            Signal::Scan { reason, .. } => ("scan", reason, ""),
            Signal::AdvisoryUpdate { reason, .. } => ("advisory_update", reason, ""),
        }
    }

    fn log(&self, not_logged: u64) {
        match self {
            Signal::ContainerdList { list, reason, error } => {
                tracing::warn!(
                    list,
                    reason,
                    not_logged,
                    "{error:#}; the last list stays in force"
                );
            }
            Signal::RuntimeCheck {
                check,
                reason,
                container,
            } => {
                // Expected where the agent may not trace or the runtime is sandboxed: the
                // state is in /v1/findings and the counter, the line only for debugging.
                let reason = reason.reason();
                tracing::debug!(check, reason, container, not_logged, "runtime check not made");
            }
            Signal::Scan { reason, what, error } => {
                tracing::warn!(reason, what, not_logged, "read failed: {error:#}");
            }
            Signal::AdvisoryUpdate {
                reason,
                ecosystem,
                error,
            } => tracing::warn!(
                reason,
                ecosystem,
                not_logged,
                "advisory refresh failed: {error:#}"
            ),
        }
    }
}

/// A kind of signal: its name and bounded labels.
type Kind = (&'static str, &'static str, &'static str);

/// When each kind of signal was last logged, and how many were not logged since.
#[derive(Default)]
pub struct LogLimiter {
    last: Mutex<HashMap<Kind, (Option<Instant>, u64)>>,
}

impl LogLimiter {
    /// Logs `s` unless one of its kind was logged less than `LOG_EVERY` ago; true if logged.
    pub fn log(&self, s: &Signal) -> bool {
        let now = Instant::now();
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        let entry = last.entry(s.key()).or_insert((None, 0));
        if entry.0.is_some_and(|t| now.duration_since(t) < LOG_EVERY) {
            entry.1 += 1;
            return false;
        }
        s.log(entry.1);
        *entry = (Some(now), 0);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_storm_of_one_failure_is_logged_once_per_interval_and_each_kind_apart() {
        let limiter = LogLimiter::default();
        let scan = |reason| Signal::Scan {
            reason,
            what: "sha256:a",
            error: &"unexpected end of file",
        };
        assert!(limiter.log(&scan("timeout")));
        for _ in 0..1000 {
            assert!(!limiter.log(&scan("timeout")));
        }
        // Another reason is another kind.
        assert!(limiter.log(&scan("blob_missing")));
        let key = scan("timeout").key();
        assert_eq!(
            limiter.last.lock().unwrap()[&key].1,
            1000,
            "counted as not logged"
        );
    }
}
