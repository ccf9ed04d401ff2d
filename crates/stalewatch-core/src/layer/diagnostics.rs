//! What could not be read and why: exact counts per bounded reason, and the first notes in
//! full so a report can say which file, without unbounded growth on hostile input.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

const MAX_NOTES: usize = 200;

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Unreadable {
    /// The path, layer or database concerned.
    pub what: String,
    /// A bounded reason code, e.g. `file_too_large`.
    pub reason: String,
    pub detail: String,
}

#[derive(Debug, Clone, Default)]
pub struct Diagnostics {
    pub counts: BTreeMap<&'static str, u64>,
    pub notes: Vec<Unreadable>,
}

impl Diagnostics {
    /// Counts one skip; keeps the note while under the cap.
    pub fn skip(&mut self, reason: &'static str, what: impl Into<String>, detail: impl Into<String>) {
        *self.counts.entry(reason).or_default() += 1;
        if self.notes.len() < MAX_NOTES {
            self.notes.push(Unreadable {
                what: what.into(),
                reason: reason.to_string(),
                detail: detail.into(),
            });
        }
    }

    pub fn count(&self, reason: &str) -> u64 {
        self.counts.get(reason).copied().unwrap_or(0)
    }

    pub fn merge(&mut self, other: Diagnostics) {
        for (k, v) in other.counts {
            *self.counts.entry(k).or_default() += v;
        }
        for n in other.notes {
            if self.notes.len() < MAX_NOTES {
                self.notes.push(n);
            }
        }
    }
}
