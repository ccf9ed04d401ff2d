//! Advisories: OSV records as read from a feed, their severity, range evaluation, and the
//! compact per-ecosystem index the matcher queries.

pub mod index;
pub mod osv;
pub mod range;
pub mod severity;

pub use index::{Advisory, AffectedEntry, EcosystemIndex, IndexSet};
pub use severity::Severity;
