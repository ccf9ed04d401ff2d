//! Why an image scan failed, as a closed set: the typed errors of the content store
//! (`ContainerdError`), of the blob reader (`DigestMismatch`), of the core's layer and image
//! parsers, and the agent's own timeout, each mapped to the bounded `reason` label of
//! `stalewatch_scan_errors_total` and to the `failed` status users see.

use std::time::{Duration, Instant};

use stalewatch_core::image::ImageError;
use stalewatch_core::layer::LayerError;

use crate::containerd::ContainerdError;
use crate::source::image::DigestMismatch;

/// What the agent does with a failed scan: its bounded reason, and whether the unpacked
/// fallbacks may help.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// A blob is not in the content store: the unpacked fallbacks may still read the image.
    BlobMissing,
    ContentRead,
    DigestMismatch,
    NoPlatform,
    Layer(&'static str),
    /// A snapshot the unpacked fallback could not read (`snapshot_empty`, `unsupported_mount`).
    Snapshot(&'static str),
    Timeout,
    Other,
}

impl FailureKind {
    /// Classifies an error by the typed causes in its chain (never by its text).
    pub fn of(e: &anyhow::Error) -> FailureKind {
        for cause in e.chain() {
            if let Some(kind) = Self::of_cause(cause) {
                return kind;
            }
        }
        FailureKind::Other
    }

    fn of_cause(cause: &(dyn std::error::Error + 'static)) -> Option<FailureKind> {
        if let Some(c) = cause.downcast_ref::<ContainerdError>() {
            return Some(match c {
                ContainerdError::BlobMissing { .. } => FailureKind::BlobMissing,
                _ => FailureKind::ContentRead,
            });
        }
        if let Some(s) = cause.downcast_ref::<crate::source::overlay::SnapshotError>() {
            return Some(FailureKind::Snapshot(s.reason()));
        }
        if cause.downcast_ref::<DigestMismatch>().is_some() {
            return Some(FailureKind::DigestMismatch);
        }
        if let Some(ImageError::NoPlatform(_)) = cause.downcast_ref::<ImageError>() {
            return Some(FailureKind::NoPlatform);
        }
        // Stream errors reach the layer reader as `io::Error`s carrying the typed cause.
        let io = match cause.downcast_ref::<LayerError>() {
            Some(LayerError::Io(io)) => Some(io),
            Some(l) => return Some(FailureKind::Layer(l.reason())),
            None => cause.downcast_ref::<std::io::Error>(),
        };
        let inner = io.and_then(|io| io.get_ref())?;
        match Self::of_cause(inner) {
            Some(k) => Some(k),
            None => cause
                .downcast_ref::<LayerError>()
                .map(|l| FailureKind::Layer(l.reason())),
        }
    }

    pub fn is_snapshot(self) -> bool {
        matches!(self, FailureKind::Snapshot(_))
    }

    /// The `reason` label of `stalewatch_scan_errors_total`.
    pub fn reason(self) -> &'static str {
        match self {
            // Only after every unpacked fallback failed too: no layer is readable on the node.
            FailureKind::BlobMissing => "layers_missing",
            FailureKind::ContentRead => "content_read",
            FailureKind::DigestMismatch => "digest_mismatch",
            FailureKind::NoPlatform => "no_platform",
            FailureKind::Layer(r) | FailureKind::Snapshot(r) => r,
            FailureKind::Timeout => "timeout",
            FailureKind::Other => "other",
        }
    }
}

/// A failed image scan, kept (and shown as `failed`) until a retry succeeds.
#[derive(Debug, Clone)]
pub struct ScanFailure {
    pub message: String,
    pub attempts: u32,
    pub retry_at: Instant,
}

/// Retries of a failed scan back off: 1, 2, 4 … minutes, at most an hour.
pub fn retry_delay(attempts: u32) -> Duration {
    (Duration::from_secs(60) * 2u32.saturating_pow(attempts.saturating_sub(1).min(6)))
        .min(Duration::from_secs(3600))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_scans_are_retried_with_backoff_up_to_an_hour() {
        let minutes: Vec<u64> = (1..=9).map(|a| retry_delay(a).as_secs() / 60).collect();
        assert_eq!(minutes, vec![1, 2, 4, 8, 16, 32, 60, 60, 60]);
    }

    #[test]
    fn causes_are_classified_by_type_through_io_and_layer_wrappers() {
        let missing = || ContainerdError::BlobMissing {
            digest: "sha256:ab".into(),
            message: "content digest sha256:ab: not found".into(),
        };
        let direct = anyhow::Error::new(missing()).context("layer sha256:ab");
        assert_eq!(FailureKind::of(&direct), FailureKind::BlobMissing);
        let through_io = anyhow::Error::new(LayerError::Io(std::io::Error::other(missing())));
        assert_eq!(FailureKind::of(&through_io), FailureKind::BlobMissing);
        let read = ContainerdError::BlobRead {
            digest: "sha256:ab".into(),
            message: "unavailable".into(),
        };
        let through_io = anyhow::Error::new(std::io::Error::other(read));
        assert_eq!(FailureKind::of(&through_io).reason(), "content_read");
        // A missing blob and a broken containerd are told apart.
        assert_eq!(FailureKind::of(&direct).reason(), "layers_missing");
        let mismatch = anyhow::Error::new(DigestMismatch {
            digest: "sha256:ab".into(),
            actual: "cd".into(),
        });
        assert_eq!(FailureKind::of(&mismatch).reason(), "digest_mismatch");
        let platform = anyhow::Error::new(ImageError::NoPlatform("linux/amd64".into()));
        assert_eq!(FailureKind::of(&platform).reason(), "no_platform");
        assert_eq!(
            FailureKind::of(&anyhow::Error::new(LayerError::Truncated)).reason(),
            "truncated_layer"
        );
        let plain_io = anyhow::Error::new(LayerError::Io(std::io::Error::other("disk")));
        assert_eq!(FailureKind::of(&plain_io).reason(), "layer_read_error");
        // Text that merely looks like a missing blob is not one.
        let text = anyhow::anyhow!("read blob sha256:ab: not found");
        assert_eq!(FailureKind::of(&text), FailureKind::Other);
    }
}
