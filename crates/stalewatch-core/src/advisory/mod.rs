//! Advisories: OSV records as read from a feed, their severity, range evaluation, the compact
//! per-ecosystem index, its file format, and the set of indexes the matcher queries.

pub mod error;
pub mod file;
pub mod index;
pub mod osv;
pub mod range;
pub mod set;
pub mod severity;

pub use error::IndexError;
pub use file::{ByteSource, IndexReader};
pub use index::{Advisory, AffectedEntry, EcosystemIndex};
pub use set::IndexSet;
pub use severity::Severity;
