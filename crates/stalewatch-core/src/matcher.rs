//! The matcher: (inventory, advisory index) → findings. Pure and deterministic.

use serde::Serialize;
use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::sync::Arc;

use crate::advisory::range::Verdict;
use crate::advisory::{Advisory, IndexError, IndexSet, Severity};
use crate::catalog::Inventory;
use crate::package::Package;
use crate::version::Scheme;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Finding {
    pub id: String,
    pub aliases: Arc<[String]>,
    pub ecosystem: String,
    pub package: String,
    pub source_name: String,
    pub installed_version: String,
    pub fixed_version: Option<String>,
    pub fixable: bool,
    pub severity: Severity,
    pub cvss_score: Option<f32>,
    pub published: Option<String>,
    pub summary: Arc<str>,
    /// Where the package was found (its database path).
    pub path: String,
}

/// Distribution feeds name source packages for dpkg and apk, binary packages for rpm.
fn query_key(p: &Package) -> (&str, &str) {
    match Scheme::for_ecosystem(&p.ecosystem) {
        Some(Scheme::Rpm) => (&p.name, &p.version),
        _ => (&p.source_name, &p.source_version),
    }
}

/// The advisory ecosystems a package's ecosystem covers: itself, or every product stream
/// under a `Red Hat:enterprise_linux:N::` prefix.
fn ecosystems_for<'a>(eco: &'a str, db: &'a IndexSet) -> Vec<&'a str> {
    if eco.ends_with("::") {
        let mut v: Vec<&str> = db.full_ecosystems().filter(|e| e.starts_with(eco)).collect();
        v.sort();
        v.dedup();
        v
    } else {
        vec![eco]
    }
}

/// What one advisory says about one package: the record, its best severity, the fixes seen.
type Hit = (Arc<Advisory>, Severity, Option<f32>, Vec<String>);

/// Matches every package against the index. One finding per (advisory id, package).
/// Fails only when an index file is unreadable.
pub fn match_inventory(inv: &Inventory, db: &IndexSet) -> Result<Vec<Finding>, IndexError> {
    let mut findings = Vec::new();
    for p in &inv.packages {
        if p.ecosystem.is_empty() {
            continue;
        }
        let (name, version) = query_key(p);
        let scheme = Scheme::for_ecosystem(&p.ecosystem);
        let mut hits: BTreeMap<String, Hit> = BTreeMap::new();
        for eco in ecosystems_for(&p.ecosystem, db) {
            let Some((reader, entries)) = db.lookup(eco, name)? else {
                continue;
            };
            for entry in entries.iter() {
                let mut affected = entry.versions.iter().any(|v| v == version);
                let mut fixes = Vec::new();
                for r in &entry.ranges {
                    if let Verdict::Affected { fixed } = r.evaluate(eco, version) {
                        affected = true;
                        fixes.extend(fixed);
                    }
                }
                if !affected {
                    continue;
                }
                let adv = reader.advisory(entry.advisory)?;
                let slot = hits
                    .entry(adv.id.clone())
                    .or_insert_with(|| (adv, entry.severity, entry.cvss_score, Vec::new()));
                if entry.severity > slot.1 {
                    slot.1 = entry.severity;
                    slot.2 = entry.cvss_score;
                }
                slot.3.extend(fixes);
            }
        }
        for (id, (adv, mut severity, cvss, mut fixes)) in hits {
            if severity == Severity::Unknown {
                severity = db.severity_by_alias(std::iter::once(&adv.id).chain(adv.aliases.iter()))?;
            }
            // Several affecting ranges (module streams): the lowest fix above the installed one.
            fixes.sort_by(|a, b| scheme.map_or(a.cmp(b), |s| s.compare(a, b)));
            let fixed = fixes
                .into_iter()
                .find(|f| scheme.is_none_or(|s| s.compare(f, version) == Ordering::Greater));
            findings.push(Finding {
                id,
                aliases: adv.aliases.clone(),
                ecosystem: p.ecosystem.clone(),
                package: p.name.clone(),
                source_name: p.source_name.clone(),
                installed_version: p.version.clone(),
                fixable: fixed.is_some(),
                fixed_version: fixed,
                severity,
                cvss_score: cvss,
                published: adv.published.clone(),
                summary: adv.summary.clone(),
                path: p.path.clone(),
            });
        }
    }
    findings.sort_by(|a, b| {
        (&a.id, &a.package, &a.installed_version, &a.path).cmp(&(
            &b.id,
            &b.package,
            &b.installed_version,
            &b.path,
        ))
    });
    Ok(findings)
}
