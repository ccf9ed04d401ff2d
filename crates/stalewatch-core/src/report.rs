//! The report (`stalewatch/report/v1`): what a scan found, as DESIGN.md's contract says.

use serde::Serialize;

use crate::advisory::Severity;
use crate::catalog::Inventory;
use crate::eol;
use crate::layer::diagnostics::Unreadable;
use crate::lineage::{self, Base, ImageFacts, Rebuild};
use crate::matcher::Finding;
use crate::package::Package;
use crate::triage::{EpssScores, ImageIdentity, KevCatalog, VexSet};

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
    /// Findings whose CVE is in CISA's KEV catalog; absent when no catalog was loaded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub known_exploited: Option<u64>,
    /// Findings a VEX statement took out (`suppressed`); absent when none did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub suppressed: Option<u64>,
}

impl Summary {
    fn of(packages: usize, findings: &[Finding], suppressed: usize, kev_loaded: bool) -> Summary {
        let mut s = Summary {
            packages: packages as u64,
            findings: findings.len() as u64,
            fixable: findings.iter().filter(|f| f.fixable).count() as u64,
            known_exploited: kev_loaded.then(|| {
                findings
                    .iter()
                    .filter(|f| f.known_exploited == Some(true))
                    .count() as u64
            }),
            suppressed: (suppressed > 0).then_some(suppressed as u64),
            ..Default::default()
        };
        for f in findings {
            s.by_severity.add(f.severity);
        }
        s
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub schema: &'static str,
    pub target: String,
    pub os: Option<ReportOs>,
    /// The inventory's own list, shared with it.
    pub packages: std::sync::Arc<Vec<Package>>,
    pub findings: Vec<Finding>,
    /// Informational advisories that apply (RustSec `unmaintained`, `unsound`): worth knowing,
    /// not vulnerabilities — not in `findings`, the summary, metrics or Events.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub informational: Vec<Finding>,
    /// Findings a VEX statement says are `not_affected` or `fixed`: out of `findings`, the
    /// summary's counts, `--fail-on` and metrics, each with the `vex` statement that decided.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub suppressed: Vec<Finding>,
    pub summary: Summary,
    /// What could not be read, and why: an unreadable part never looks clean.
    pub unreadable: Vec<Unreadable>,
    /// The image's base; null when none is known (a normal state, not an error).
    pub base: Option<Base>,
    /// The image's `org.opencontainers.image.source` and `.revision`.
    pub source: Option<String>,
    pub revision: Option<String>,
    /// What a rebuild on the newer build of the base (held by the node) would fix.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rebuild: Option<Rebuild>,
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
        let summary = Summary::of(inv.packages.len(), &findings, 0, false);
        unreadable.sort();
        Report {
            schema: SCHEMA,
            target: target.to_string(),
            os,
            packages: inv.packages,
            findings,
            informational,
            suppressed: Vec::new(),
            summary,
            unreadable,
            base: None,
            source: None,
            revision: None,
            rebuild: None,
        }
    }

    /// Sets the image's base, source and revision, and whether each finding came with the
    /// base (`image_layers`: the image's layer digests, bottom first).
    pub fn set_lineage(&mut self, facts: Option<&ImageFacts>, base: Option<Base>, image_layers: &[String]) {
        let base_layers = base.as_ref().and_then(|b| b.layers);
        for list in [&mut self.findings, &mut self.suppressed, &mut self.informational] {
            lineage::mark_in_base(list, image_layers, base_layers);
        }
        self.source = facts.and_then(|f| f.label(lineage::SOURCE)).map(str::to_string);
        self.revision = facts.and_then(|f| f.label(lineage::REVISION)).map(str::to_string);
        self.base = base;
    }

    /// Annotates every finding with the triage data at hand (KEV, EPSS, VEX), moves the
    /// ones a VEX statement rules out into `suppressed`, and counts again.
    pub fn apply_triage(&mut self, triage: &Triage) {
        // Annotated in place; only findings whose VEX status changes side move, so a report
        // kept for the agent's life is not regrown on every pass (issue 31).
        let suppresses = |f: &Finding| f.vex.as_ref().is_some_and(|v| v.status.suppresses());
        for f in self.findings.iter_mut().chain(self.suppressed.iter_mut()) {
            triage.annotate(f);
        }
        let to_suppress = self.findings.iter().filter(|f| suppresses(f)).count();
        let to_report = self.suppressed.iter().filter(|f| !suppresses(f)).count();
        if to_suppress + to_report > 0 {
            let all = std::mem::take(&mut self.findings)
                .into_iter()
                .chain(std::mem::take(&mut self.suppressed));
            let (suppressed, findings): (Vec<Finding>, Vec<Finding>) = all.partition(suppresses);
            self.findings = findings;
            self.suppressed = suppressed;
        }
        self.findings.shrink_to_fit();
        self.suppressed.shrink_to_fit();
        for f in &mut self.informational {
            triage.annotate(f);
        }
        self.summary = Summary::of(
            self.packages.len(),
            &self.findings,
            self.suppressed.len(),
            triage.kev.is_some(),
        );
        self.findings.sort_by(crate::matcher::finding_order);
        self.suppressed.sort_by(crate::matcher::finding_order);
    }

    /// The highest severity among findings, for `--fail-on`.
    pub fn max_severity(&self) -> Option<Severity> {
        self.findings.iter().map(|f| f.severity).max()
    }
}

/// The triage data at hand for one report; every part optional.
#[derive(Default, Clone, Copy)]
pub struct Triage<'a> {
    pub kev: Option<&'a KevCatalog>,
    pub epss: Option<&'a EpssScores>,
    pub vex: Option<&'a VexSet>,
    pub image: Option<&'a ImageIdentity>,
}

impl Triage<'_> {
    /// Sets a finding's `known_exploited`, `kev`, `epss` and `vex` from the data at hand
    /// (fields whose data is absent stay absent: unknown, not "no").
    pub fn annotate(&self, f: &mut Finding) {
        if let Some(k) = self.kev {
            f.kev = k.lookup(f.cves.iter());
            f.known_exploited = Some(f.kev.is_some());
        }
        if let Some(e) = self.epss {
            f.epss = e.highest(f.cves.iter());
        }
        if let Some(v) = self.vex.filter(|v| !v.is_empty()) {
            let none = ImageIdentity::default();
            let ids = std::iter::once(&*f.id)
                .chain(f.aliases.iter().map(String::as_str))
                .chain(f.cves.iter().map(String::as_str));
            f.vex = v.verdict(ids, &f.purl, self.image.unwrap_or(&none));
        }
    }
}
