//! The report (`stalewatch/report/v1`): what a scan found, as DESIGN.md's contract says.

use serde::Serialize;

use crate::advisory::Severity;
use crate::catalog::Inventory;
use crate::eol;
use crate::layer::diagnostics::Unreadable;
use crate::matcher::Finding;
use crate::package::Package;

pub const SCHEMA: &str = "stalewatch/report/v1";

#[derive(Debug, Clone, Serialize)]
pub struct ReportOs {
    pub id: String,
    pub version_id: String,
    pub ecosystem: Option<String>,
    pub eol_date: Option<String>,
    pub eol: bool,
    /// End of paid extended support (Ubuntu ESM), where one exists.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub extended_support_date: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct BySeverity {
    pub critical: u64,
    pub high: u64,
    pub medium: u64,
    pub low: u64,
    pub unknown: u64,
}

impl BySeverity {
    pub fn add(&mut self, s: Severity) {
        match s {
            Severity::Critical => self.critical += 1,
            Severity::High => self.high += 1,
            Severity::Medium => self.medium += 1,
            Severity::Low => self.low += 1,
            Severity::Unknown => self.unknown += 1,
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct Summary {
    pub packages: u64,
    pub findings: u64,
    pub fixable: u64,
    pub by_severity: BySeverity,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub schema: &'static str,
    pub target: String,
    pub os: Option<ReportOs>,
    pub packages: Vec<Package>,
    pub findings: Vec<Finding>,
    /// Informational advisories that apply (RustSec `unmaintained`, `unsound`): worth knowing,
    /// not vulnerabilities — not in `findings`, the summary, metrics or Events.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub informational: Vec<Finding>,
    pub summary: Summary,
    /// What could not be read, and why: an unreadable part never looks clean.
    pub unreadable: Vec<Unreadable>,
}

impl Report {
    /// Assembles a report; `now_unix` decides end of life (injectable clock).
    pub fn new(
        target: &str,
        inv: Inventory,
        findings: Vec<Finding>,
        mut unreadable: Vec<Unreadable>,
        now_unix: i64,
    ) -> Report {
        let (informational, findings): (Vec<Finding>, Vec<Finding>) =
            findings.into_iter().partition(|f| f.informational.is_some());
        let os = inv.os.as_ref().map(|o| {
            let date = eol::eol_date(&o.id, &o.version_id);
            ReportOs {
                id: o.id.clone(),
                version_id: o.version_id.clone(),
                ecosystem: o.ecosystem.clone(),
                eol_date: date.map(str::to_string),
                eol: date.is_some_and(|d| eol::is_past(d, now_unix)),
                extended_support_date: eol::extended_support_date(&o.id, &o.version_id).map(str::to_string),
            }
        });
        let mut summary = Summary {
            packages: inv.packages.len() as u64,
            findings: findings.len() as u64,
            fixable: findings.iter().filter(|f| f.fixable).count() as u64,
            ..Default::default()
        };
        for f in &findings {
            summary.by_severity.add(f.severity);
        }
        unreadable.sort();
        Report {
            schema: SCHEMA,
            target: target.to_string(),
            os,
            packages: inv.packages,
            findings,
            informational,
            summary,
            unreadable,
        }
    }

    /// The highest severity among findings, for `--fail-on`.
    pub fn max_severity(&self) -> Option<Severity> {
        self.findings.iter().map(|f| f.severity).max()
    }
}
