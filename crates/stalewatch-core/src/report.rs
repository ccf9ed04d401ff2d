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
use std::sync::Arc;

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
    fn of(packages: usize, findings: &[Arc<Finding>], suppressed: usize, kev_loaded: bool) -> Summary {
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
    /// Shared (`Arc`): equal findings of several images are one allocation (see
    /// [`FindingInterner`]); changed through `Arc::make_mut`.
    pub findings: Vec<Arc<Finding>>,
    /// Informational advisories that apply (RustSec `unmaintained`, `unsound`): worth knowing,
    /// not vulnerabilities — not in `findings`, the summary, metrics or Events.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub informational: Vec<Arc<Finding>>,
    /// Findings a VEX statement says are `not_affected` or `fixed`: out of `findings`, the
    /// summary's counts, `--fail-on` and metrics, each with the `vex` statement that decided.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub suppressed: Vec<Arc<Finding>>,
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
        let (informational, findings): (Vec<Arc<Finding>>, Vec<Arc<Finding>>) = findings
            .into_iter()
            .map(Arc::new)
            .partition(|f| f.informational.is_some());
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
            triage.annotate_shared(f);
        }
        let to_suppress = self.findings.iter().filter(|f| suppresses(f)).count();
        let to_report = self.suppressed.iter().filter(|f| !suppresses(f)).count();
        if to_suppress + to_report > 0 {
            let all = std::mem::take(&mut self.findings)
                .into_iter()
                .chain(std::mem::take(&mut self.suppressed));
            let (suppressed, findings): (Vec<Arc<Finding>>, Vec<Arc<Finding>>) =
                all.partition(|f| suppresses(f));
            self.findings = findings;
            self.suppressed = suppressed;
        }
        self.findings.shrink_to_fit();
        self.suppressed.shrink_to_fit();
        for f in &mut self.informational {
            triage.annotate_shared(f);
        }
        self.summary = Summary::of(
            self.packages.len(),
            &self.findings,
            self.suppressed.len(),
            triage.kev.is_some(),
        );
        self.findings.sort_by(|a, b| crate::matcher::finding_order(a, b));
        self.suppressed
            .sort_by(|a, b| crate::matcher::finding_order(a, b));
    }

    /// The highest severity among findings, for `--fail-on`.
    pub fn max_severity(&self) -> Option<Severity> {
        self.findings.iter().map(|f| f.severity).max()
    }
}

/// Makes equal findings of several reports one allocation: a node's images mostly share a
/// base, and their findings are equal but for a few (issue 31: 22 MB of findings at 100
/// images against a 500,000-record index, one copy per image). Findings are equal by value
/// (`PartialEq`), looked up by (id, purl, path).
#[derive(Default)]
pub struct FindingInterner {
    by_key: std::collections::HashMap<FindingKey, Vec<Arc<Finding>>>,
}

/// A finding's (id, purl, path).
type FindingKey = (Arc<str>, Arc<str>, Arc<str>);

impl FindingInterner {
    /// Replaces each finding of `report` by an equal one already shared, or shares it.
    pub fn share(&mut self, report: &mut Report) {
        for list in [
            &mut report.findings,
            &mut report.suppressed,
            &mut report.informational,
        ] {
            for f in list.iter_mut() {
                let same = self
                    .by_key
                    .entry((f.id.clone(), f.purl.clone(), f.path.clone()))
                    .or_default();
                match same.iter().find(|s| Arc::ptr_eq(s, f) || ***s == **f) {
                    Some(s) => *f = s.clone(),
                    None => same.push(f.clone()),
                }
            }
        }
    }

    /// Forgets the findings no report holds any more.
    pub fn prune(&mut self) {
        self.by_key.retain(|_, same| {
            same.retain(|f| Arc::strong_count(f) > 1);
            !same.is_empty()
        });
    }

    /// Distinct findings held.
    pub fn len(&self) -> usize {
        self.by_key.values().map(Vec::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.by_key.is_empty()
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
    /// [`Triage::annotate`] on a shared finding: in place when this report alone holds it,
    /// else on a copy that replaces it only when the annotation changed something.
    pub fn annotate_shared(&self, f: &mut Arc<Finding>) {
        if let Some(own) = Arc::get_mut(f) {
            self.annotate(own);
            return;
        }
        let mut copy = (**f).clone();
        self.annotate(&mut copy);
        if copy != **f {
            *f = Arc::new(copy);
        }
    }

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

#[cfg(test)]
mod tests {
    use super::*;

    fn finding(id: &str, version: &str) -> Finding {
        Finding {
            id: id.into(),
            package: "openssl".into(),
            installed_version: version.into(),
            purl: format!("pkg:apk/alpine/openssl@{version}").into(),
            path: "lib/apk/db/installed".into(),
            ..Default::default()
        }
    }

    fn report(findings: Vec<Finding>) -> Report {
        Report::new("t", Inventory::default(), findings, vec![], 0)
    }

    /// Equal findings of two reports become one allocation; unequal ones stay apart; a
    /// change to one report's finding leaves the other's as it was; what no report holds is
    /// forgotten.
    #[test]
    fn equal_findings_of_reports_are_shared_and_pruned() {
        let mut interner = FindingInterner::default();
        let mut a = report(vec![finding("CVE-1", "3.3.1-r0"), finding("CVE-2", "3.3.1-r0")]);
        let mut b = report(vec![finding("CVE-1", "3.3.1-r0"), finding("CVE-2", "3.3.2-r0")]);
        let mut c = report(vec![finding("CVE-1", "3.3.1-r0")]);
        c.findings[0] = Arc::new(Finding {
            severity: Severity::High,
            ..(*c.findings[0]).clone()
        });
        interner.share(&mut a);
        interner.share(&mut b);
        interner.share(&mut c);
        assert!(Arc::ptr_eq(&a.findings[0], &b.findings[0]));
        assert!(!Arc::ptr_eq(&a.findings[1], &b.findings[1]), "another version");
        assert!(!Arc::ptr_eq(&a.findings[0], &c.findings[0]), "another severity");
        assert_eq!(interner.len(), 4);
        // Annotating one report's shared finding copies it for that report alone.
        let kev = Triage::default();
        a.apply_triage(&kev);
        Arc::make_mut(&mut a.findings[0]).in_base = Some(true);
        assert_eq!(b.findings[0].in_base, None);
        drop(c);
        interner.prune();
        assert_eq!(interner.len(), 3, "c's finding forgotten");
        drop((a, b));
        interner.prune();
        assert!(interner.is_empty());
    }
}
