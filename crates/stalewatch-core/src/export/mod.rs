//! Report exports for other tools: CycloneDX 1.5 (an SBOM with the vulnerabilities found) and
//! SARIF 2.1.0 (for code-scanning dashboards). Pure: a report and a clock in, JSON out; every
//! list sorted, identifiers derived from the content, so equal inputs give equal bytes.

pub mod cyclonedx;
pub mod openvex;
pub mod sarif;

/// The tool's name and version, as exports name it.
pub const TOOL: &str = "stalewatch";
pub const TOOL_VERSION: &str = env!("CARGO_PKG_VERSION");
