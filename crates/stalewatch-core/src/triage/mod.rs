//! Triage: what makes a finding matter more or less than its severity says — CISA's
//! known-exploited catalog (KEV), FIRST's exploit prediction scores (EPSS) and the operator's
//! OpenVEX statements — looked up through the finding's CVE ids.

pub mod epss;
pub mod kev;
pub mod purl;
pub mod vex;

pub use epss::{EpssFacts, EpssScores};
pub use kev::{KevCatalog, KevFacts};
pub use vex::{ImageIdentity, VexSet, VexStatus, VexVerdict};
