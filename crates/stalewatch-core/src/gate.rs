//! The validation gate of a redeploy: a newer build may replace what runs only if it brings
//! no finding at or above a severity that the running build lacks, and no more findings in
//! all. Two reports in, a verdict out.

use std::collections::BTreeSet;

use crate::advisory::Severity;
use crate::report::Report;

/// Why a newer build may not replace the running one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blocked {
    /// `(id, package)` of the newer build's findings at or above the severity that the
    /// running build does not have.
    pub new_severe: Vec<(String, String)>,
    pub running_findings: u64,
    pub newer_findings: u64,
}

impl std::fmt::Display for Blocked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if !self.new_severe.is_empty() {
            let ids: Vec<String> = self
                .new_severe
                .iter()
                .map(|(id, p)| format!("{id} in {p}"))
                .collect();
            write!(
                f,
                "the newer build adds {} severe finding(s): {}",
                ids.len(),
                ids.join(", ")
            )?;
            if self.newer_findings > self.running_findings {
                write!(f, "; ")?;
            }
        }
        if self.newer_findings > self.running_findings {
            write!(
                f,
                "the newer build has more findings ({} > {})",
                self.newer_findings, self.running_findings
            )?;
        }
        Ok(())
    }
}

/// Whether `newer` may replace `running`: `Err` says why not. Findings of unknown severity
/// count toward the totals only.
pub fn validate(running: &Report, newer: &Report, max: Severity) -> Result<(), Blocked> {
    let key = |f: &std::sync::Arc<crate::matcher::Finding>| (f.id.to_string(), f.package.to_string());
    let had: BTreeSet<(String, String)> = running.findings.iter().map(key).collect();
    let new_severe: BTreeSet<(String, String)> = newer
        .findings
        .iter()
        .filter(|f| f.severity != Severity::Unknown && f.severity >= max)
        .map(key)
        .filter(|k| !had.contains(k))
        .collect();
    let blocked = Blocked {
        new_severe: new_severe.into_iter().collect(),
        running_findings: running.findings.len() as u64,
        newer_findings: newer.findings.len() as u64,
    };
    if blocked.new_severe.is_empty() && blocked.newer_findings <= blocked.running_findings {
        Ok(())
    } else {
        Err(blocked)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::Inventory;
    use crate::matcher::Finding;

    fn report(findings: &[(&str, &str, Severity)]) -> Report {
        let f = findings
            .iter()
            .map(|(id, p, s)| Finding {
                id: (*id).into(),
                package: (*p).into(),
                severity: *s,
                ..Default::default()
            })
            .collect();
        Report::new("t", Inventory::default(), f, vec![], 0)
    }

    #[test]
    fn a_newer_build_passes_only_without_new_severe_findings_and_without_more_findings() {
        use Severity::*;
        let running = report(&[("A", "musl", High), ("B", "zlib", Low)]);
        assert_eq!(validate(&running, &report(&[("B", "zlib", Low)]), High), Ok(()));
        assert_eq!(
            validate(
                &running,
                &report(&[("A", "musl", High), ("C", "x", Medium)]),
                High
            ),
            Ok(())
        );
        let e = validate(&running, &report(&[("D", "openssl", Critical)]), High).unwrap_err();
        assert_eq!(e.new_severe, [("D".to_string(), "openssl".to_string())]);
        assert!(e.to_string().contains("D in openssl"), "{e}");
        let e = validate(
            &running,
            &report(&[("A", "musl", High), ("B", "zlib", Low), ("C", "x", Low)]),
            High,
        )
        .unwrap_err();
        assert!(
            e.new_severe.is_empty() && e.to_string().contains("more findings (3 > 2)"),
            "{e}"
        );
        // Unknown severity never meets a threshold.
        assert_eq!(validate(&running, &report(&[("E", "y", Unknown)]), Low), Ok(()));
    }
}
