//! How one refresh of one ecosystem or feed ended: shared by the OSV index refresh and the
//! triage feeds' (so neither imports the other for it).

/// Failure with a bounded reason (for `stalewatch_advisory_update_errors_total{reason}`).
#[derive(Debug, thiserror::Error)]
#[error("{reason}: {detail}")]
pub struct UpdateError {
    pub reason: &'static str,
    pub detail: String,
}

pub fn fail(reason: &'static str, detail: impl Into<String>) -> UpdateError {
    UpdateError {
        reason,
        detail: detail.into(),
    }
}

/// What one refresh did to one ecosystem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// A new index is in place; the text says what it holds.
    Updated(String),
    Unchanged,
    Missing,
}
