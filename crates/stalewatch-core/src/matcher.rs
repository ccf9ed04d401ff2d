//! The matcher: (inventory, advisory index) → findings. Pure and deterministic.

use serde::Serialize;
use std::borrow::Cow;
use std::cmp::Ordering;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use crate::advisory::range::Verdict;
use crate::advisory::{Advisory, IndexError, IndexSet, Severity};
use crate::catalog::Inventory;
use crate::package::Package;
use crate::triage::{EpssFacts, KevFacts, VexVerdict};
use crate::version::Scheme;

/// `Default` is for tests and builders: a real finding always has an id and a package.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Finding {
    pub id: Arc<str>,
    pub aliases: Arc<[String]>,
    pub ecosystem: Arc<str>,
    pub package: Arc<str>,
    pub source_name: Arc<str>,
    pub installed_version: Arc<str>,
    pub fixed_version: Option<Arc<str>>,
    pub fixable: bool,
    pub severity: Severity,
    pub cvss_score: Option<f32>,
    pub published: Option<Arc<str>>,
    pub summary: Arc<str>,
    /// Where the package was found (its database path).
    pub path: Arc<str>,
    /// The package's purl (what VEX statements name products by).
    pub purl: Arc<str>,
    /// The record's CVE ids: its id, aliases, upstream and related ids (KEV, EPSS and VEX
    /// are matched through these).
    pub cves: Arc<[String]>,
    /// Whether a CVE id is in CISA's KEV catalog; absent when no catalog is loaded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub known_exploited: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kev: Option<Arc<KevFacts>>,
    /// The highest EPSS score among the CVE ids; absent without scores (or without a score).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub epss: Option<EpssFacts>,
    /// The VEX statement that applies, if one does.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vex: Option<Arc<VexVerdict>>,
    /// The layer whose package database first records the installed version (the package's
    /// `introduced_layer`); null outside images.
    pub introduced_layer: Option<Arc<str>>,
    /// Whether that layer is one of the image's base layers; null when the base's layers are
    /// unknown (or there is no base).
    pub in_base: Option<bool>,
    /// The kind of an informational advisory (RustSec `unmaintained`, `unsound`, `notice`):
    /// not a vulnerability. Reports keep these apart (`Report::informational`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub informational: Option<Arc<str>>,
    /// What installing the fix takes beyond the release's own archive: `ubuntu-pro` when the
    /// only fix is in an Ubuntu Pro (ESM) stream of the package's release.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix_requires: Option<Arc<str>>,
}

/// Distribution feeds name source packages for dpkg and apk, binary packages for rpm — but
/// Azure Linux's, whose records name the source rpm: there the source rpm's name and
/// version-release are queried. Its fixed versions carry no epoch (the OVAL conversion drops
/// them), so an installed epoch is left out of the comparison rather than making every fix
/// look older.
fn query_key(p: &Package) -> (Cow<'_, str>, &str) {
    match Scheme::for_ecosystem(&p.ecosystem) {
        Some(Scheme::Rpm) if p.ecosystem.starts_with("Azure Linux:") => {
            let v = p.source_version.as_str();
            let without_epoch = v.split_once(':').map_or(v, |(_, vr)| vr);
            (Cow::Borrowed(&p.source_name), without_epoch)
        }
        Some(Scheme::Rpm) => (Cow::Borrowed(&p.name), &p.version),
        _ if p.source_name.starts_with("linux-signed") => signed_kernel_source(p),
        _ => (Cow::Borrowed(&p.source_name), &p.source_version),
    }
}

/// A signed kernel image is built from a `linux-signed-*` source that only wraps the kernel's
/// own, and the distributions' records name the kernel's source: Canonical's UBUNTU-CVE records
/// list `linux-azure-6.8`'s binaries without `linux-image-<release>` (its source is
/// `linux-signed-azure-6.8`), Debian's name `linux` (its images come from
/// `linux-signed-amd64`). So the kernel's source is queried, at the image's own version — the
/// kernel's (Debian's signed source carries another, `6.1.119+1` for `6.1.119-1`).
fn signed_kernel_source(p: &Package) -> (Cow<'_, str>, &str) {
    let kernel = match (
        p.ecosystem.starts_with("Debian"),
        p.source_name.strip_prefix("linux-signed-"),
    ) {
        (false, Some(flavour)) => Cow::Owned(format!("linux-{flavour}")),
        _ => Cow::Borrowed("linux"),
    };
    (kernel, &p.version)
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
/// A hit once judged: the record, its severity, CVSS score and the lowest fix above the
/// installed version.
type Judged = (Arc<Advisory>, Severity, Option<f32>, Option<String>);

/// One advisory's verdict on one (ecosystem, queried name, queried version): what a finding
/// needs beyond the installed package itself.
#[derive(Debug, Clone)]
struct Verdicts {
    id: Arc<str>,
    advisory: Arc<Advisory>,
    severity: Severity,
    cvss_score: Option<f32>,
    fixed: Option<Arc<str>>,
    published: Option<Arc<str>>,
    informational: Option<Arc<str>>,
    fix_requires: Option<Arc<str>>,
}

/// How many unaffected packages a matcher remembers. Affected ones are always remembered
/// (their findings are kept anyway); unaffected ones only up to this many, so an inventory of
/// hundreds of thousands of packages costs a bounded memo, while a node's images — a few
/// thousand distinct packages — judge each once per index.
const UNAFFECTED_MEMO_MAX: usize = 16_384;

/// What a package is judged by — (ecosystem, name, version, module stream) — as one key:
/// each field length-prefixed, so no two tuples share a key whatever bytes they hold. Built
/// in a reused buffer: a lookup that hits allocates nothing.
fn write_judged_key(out: &mut Vec<u8>, ecosystem: &str, name: &str, version: &str, module: Option<&str>) {
    out.clear();
    for field in [Some(ecosystem), Some(name), Some(version), module] {
        match field {
            Some(f) => {
                out.push(1);
                out.extend_from_slice(&(f.len() as u64).to_le_bytes());
                out.extend_from_slice(f.as_bytes());
            }
            None => out.push(0),
        }
    }
}

/// A matcher over one index that remembers each (ecosystem, name, version) it has judged:
/// binary packages of one source, and the images of a node that share a base, are judged
/// once per index. Findings it makes share their strings (a node's reports repeat the same
/// packages and ids many times). Create one per index (a new index needs a new matcher).
pub struct Matcher<'a> {
    db: &'a IndexSet,
    /// Verdicts by judged key; an unaffected package's are empty.
    memo: HashMap<Box<[u8]>, Arc<[Verdicts]>>,
    unaffected_remembered: usize,
    key: Vec<u8>,
    strings: HashSet<Arc<str>>,
}

impl<'a> Matcher<'a> {
    pub fn new(db: &'a IndexSet) -> Self {
        Matcher {
            db,
            memo: HashMap::new(),
            unaffected_remembered: 0,
            key: Vec::new(),
            strings: HashSet::new(),
        }
    }

    fn intern(&mut self, s: &str) -> Arc<str> {
        if let Some(a) = self.strings.get(s) {
            return a.clone();
        }
        let a: Arc<str> = Arc::from(s);
        self.strings.insert(a.clone());
        a
    }

    /// Matches every package against the index. One finding per (advisory id, package).
    /// Fails only when an index file is unreadable.
    pub fn match_inventory(&mut self, inv: &Inventory) -> Result<Vec<Finding>, IndexError> {
        let mut findings = Vec::new();
        for p in inv.packages.iter() {
            if p.ecosystem.is_empty() {
                continue;
            }
            let (name, version) = query_key(p);
            // A binary known without its source (a chiseled image): the records' binary lists
            // name its source, else it is taken as a source of its own name.
            let name = match source_unknown(p) {
                true => Cow::Owned(self.source_of(p)?.unwrap_or_else(|| p.name.to_string())),
                false => name,
            };
            let module = package_module(p);
            write_judged_key(&mut self.key, &p.ecosystem, &name, version, module.as_deref());
            let verdicts = match self.memo.get(self.key.as_slice()) {
                Some(v) => v.clone(),
                None => {
                    let judged = judge_streams(self.db, &p.ecosystem, &name, version, module.as_deref())?;
                    let v: Arc<[Verdicts]> = judged
                        .into_iter()
                        .map(|((advisory, severity, cvss_score, fixed), needs)| Verdicts {
                            fix_requires: needs.map(|n| self.intern(n)),
                            id: self.intern(&advisory.id),
                            fixed: fixed.map(|f| self.intern(&f)),
                            published: advisory.published.as_deref().map(|p| self.intern(p)),
                            informational: advisory.informational.as_deref().map(|k| self.intern(k)),
                            advisory,
                            severity,
                            cvss_score,
                        })
                        .collect();
                    // Unaffected packages are remembered up to a bound: the memo grows with
                    // the affected packages, not with a hostile inventory.
                    let remember = !v.is_empty() || self.unaffected_remembered < UNAFFECTED_MEMO_MAX;
                    if remember {
                        self.unaffected_remembered += usize::from(v.is_empty());
                        self.memo.insert(self.key.as_slice().into(), v.clone());
                    }
                    v
                }
            };
            if verdicts.is_empty() {
                continue;
            }
            let (ecosystem, package, source_name, installed_version, path, purl) = (
                self.intern(&p.ecosystem),
                self.intern(&p.name),
                self.intern(&p.source_name),
                self.intern(&p.version),
                self.intern(&p.path),
                self.intern(&p.purl),
            );
            let introduced_layer = p.introduced_layer.clone();
            for v in verdicts.iter() {
                findings.push(Finding {
                    id: v.id.clone(),
                    aliases: v.advisory.aliases.clone(),
                    ecosystem: ecosystem.clone(),
                    package: package.clone(),
                    source_name: source_name.clone(),
                    installed_version: installed_version.clone(),
                    fixable: v.fixed.is_some(),
                    fixed_version: v.fixed.clone(),
                    severity: v.severity,
                    cvss_score: v.cvss_score,
                    published: v.published.clone(),
                    summary: v.advisory.summary.clone(),
                    path: path.clone(),
                    purl: purl.clone(),
                    cves: v.advisory.cves.clone(),
                    known_exploited: None,
                    kev: None,
                    epss: None,
                    vex: None,
                    informational: v.informational.clone(),
                    introduced_layer: introduced_layer.clone(),
                    in_base: None,
                    fix_requires: v.fix_requires.clone(),
                });
            }
        }
        sort_findings(&mut findings);
        Ok(findings)
    }
}

impl Matcher<'_> {
    /// The binaries of `inv` known without their source (a chiseled image's) that no record
    /// names — neither in its binary lists nor as a source: matched as sources of their own
    /// name, which misses any advisory that names their real source only.
    pub fn unresolved_binaries(&self, inv: &Inventory) -> Result<Vec<String>, IndexError> {
        let mut out = Vec::new();
        for p in inv.packages.iter().filter(|p| source_unknown(p)) {
            if self.source_of(p)?.is_some() {
                continue;
            }
            let (streams, pro) = ubuntu_streams(&p.ecosystem, &p.version, self.db);
            let mut named = false;
            for s in streams.iter().chain(&pro) {
                named |= self.db.lookup(s, &p.name)?.is_some();
            }
            if !named {
                out.push(p.name.to_string());
            }
        }
        out.sort();
        out.dedup();
        Ok(out)
    }

    /// The source package the records name a binary under, in its release's streams (the
    /// first in name order where they disagree).
    fn source_of(&self, p: &Package) -> Result<Option<String>, IndexError> {
        let (streams, pro) = ubuntu_streams(&p.ecosystem, &p.version, self.db);
        let mut sources = Vec::new();
        for s in streams.iter().chain(&pro) {
            sources.extend(self.db.sources_of_binary(s, &p.name)?);
        }
        sources.sort();
        Ok(sources.into_iter().next())
    }
}

/// A dpkg package whose database did not say its source (Chisel's manifest).
fn source_unknown(p: &Package) -> bool {
    p.source_name.is_empty() && Scheme::for_ecosystem(&p.ecosystem) == Some(Scheme::Dpkg)
}

/// Matches one inventory against the index (a fresh [`Matcher`]).
pub fn match_inventory(inv: &Inventory, db: &IndexSet) -> Result<Vec<Finding>, IndexError> {
    Matcher::new(db).match_inventory(inv)
}

/// Ubuntu's streams for one installed version: Canonical publishes an LTS release's fixes
/// after its standard support in Ubuntu Pro streams (`Ubuntu:Pro:18.04:LTS`, and the FIPS
/// ones). A package installed from one (a `+esm` version; a `fips` one) is judged by those
/// streams; any other package by its release's own stream, and — for what that stream has
/// no record of — by the release's Pro stream, whose fixes it can only get with Pro.
/// Returns (streams that apply, Pro streams that only tell what Pro would fix).
fn ubuntu_streams<'a>(ecosystem: &'a str, version: &str, db: &'a IndexSet) -> (Vec<String>, Vec<String>) {
    let own = || (vec![ecosystem.to_string()], Vec::new());
    let Some(release) = ecosystem.strip_prefix("Ubuntu:") else {
        return own();
    };
    if release.starts_with("Pro:") || !release.ends_with(":LTS") {
        return own();
    }
    let pro = format!("Ubuntu:Pro:{release}");
    if version.contains("+esm") {
        return (vec![pro], Vec::new());
    }
    if version.to_ascii_lowercase().contains("fips") {
        let suffix = format!(":{release}");
        let mut fips: Vec<String> = db
            .full_ecosystems()
            .filter(|e| e.starts_with("Ubuntu:Pro:FIPS") && e.ends_with(&suffix))
            .map(str::to_string)
            .collect();
        fips.sort();
        fips.dedup();
        return (fips, Vec::new());
    }
    (vec![ecosystem.to_string()], vec![pro])
}

/// Every advisory affecting `name` at `version` in `ecosystem`'s streams, sorted by id, each
/// with what its fix requires (`ubuntu-pro` for fixes only a Pro stream has).
fn judge_streams(
    db: &IndexSet,
    ecosystem: &str,
    name: &str,
    version: &str,
    module: Option<&str>,
) -> Result<Vec<(Judged, Option<&'static str>)>, IndexError> {
    let (streams, pro_only) = ubuntu_streams(ecosystem, version, db);
    let mut out: Vec<(Judged, Option<&'static str>)> = Vec::new();
    for s in &streams {
        out.extend(
            judge(db, s, name, version, module)?
                .into_iter()
                .map(|j| (j, None)),
        );
    }
    for s in &pro_only {
        for j in judge(db, s, name, version, module)? {
            if !out.iter().any(|(o, _)| o.0.id == j.0.id) {
                let needs = j.3.is_some().then_some("ubuntu-pro");
                out.push((j, needs));
            }
        }
    }
    out.sort_by(|a, b| a.0 .0.id.cmp(&b.0 .0.id));
    out.dedup_by(|a, b| a.0 .0.id == b.0 .0.id);
    Ok(out)
}

/// The RPM module stream a package was built in (`nodejs:18`), from its purl's `rpmmod`;
/// none outside rpm (no other scheme's records have module streams).
fn package_module(p: &Package) -> Option<String> {
    match Scheme::for_ecosystem(&p.ecosystem) {
        Some(Scheme::Rpm) => crate::package::rpm_module(&p.purl),
        _ => None,
    }
}

/// Whether an affected entry judges a package, by RPM module stream: a modular entry judges
/// only packages of its stream (any modular package where its record names no stream); in the
/// RHEL family a non-modular entry does not judge a modular build (its fixes are another
/// stream's: nodejs 16's fix says nothing of nodejs:20's builds).
fn module_applies(entry: Option<&str>, package: Option<&str>, ecosystem: &str) -> bool {
    match (entry, package) {
        (Some(""), Some(_)) => true,
        (Some(e), Some(p)) => e == p,
        (Some(_), None) => false,
        (None, Some(_)) => !matches!(
            crate::ecosystem::base(ecosystem),
            "Red Hat" | "AlmaLinux" | "Rocky Linux"
        ),
        (None, None) => true,
    }
}

/// Every advisory affecting `name` at `version` (of module stream `module`) in `ecosystem`,
/// sorted by id.
fn judge(
    db: &IndexSet,
    ecosystem: &str,
    name: &str,
    version: &str,
    module: Option<&str>,
) -> Result<Vec<Judged>, IndexError> {
    let scheme = Scheme::for_ecosystem(ecosystem);
    let name = &crate::catalog::lang::normalize_name(crate::ecosystem::base(ecosystem), name);
    let mut hits: BTreeMap<String, Hit> = BTreeMap::new();
    for eco in ecosystems_for(ecosystem, db) {
        let Some((reader, entries)) = db.lookup(eco, name)? else {
            continue;
        };
        for entry in entries.iter() {
            if !module_applies(entry.module.as_deref(), module, eco) {
                continue;
            }
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
    let mut out = Vec::with_capacity(hits.len());
    for (_, (adv, mut severity, cvss_score, mut fixes)) in hits {
        if severity == Severity::Unknown {
            severity = db.severity_by_alias(std::iter::once(&adv.id).chain(adv.aliases.iter()))?;
        }
        // Several affecting ranges (module streams): the lowest fix above the installed one.
        fixes.sort_by(|a, b| scheme.map_or(a.cmp(b), |s| s.compare(a, b)));
        let fixed = fixes
            .into_iter()
            .find(|f| scheme.is_none_or(|s| s.compare(f, version) == Ordering::Greater));
        out.push((adv, severity, cvss_score, fixed));
    }
    Ok(out)
}

/// The order findings are reported in: by id, package, version, place.
pub fn finding_order(a: &Finding, b: &Finding) -> Ordering {
    (&a.id, &a.package, &a.installed_version, &a.path).cmp(&(
        &b.id,
        &b.package,
        &b.installed_version,
        &b.path,
    ))
}

fn sort_findings(findings: &mut [Finding]) {
    findings.sort_by(finding_order);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::advisory::EcosystemIndex;

    fn debian(name: &str, version: &str) -> Package {
        Package {
            ecosystem: "Debian:12".into(),
            name: name.into(),
            version: version.into(),
            source_name: name.into(),
            source_version: version.into(),
            path: "var/lib/dpkg/status".into(),
            purl: Default::default(),
            arch: Default::default(),
            layer: None,
            introduced_layer: None,
        }
    }

    /// However many unaffected packages an inventory holds, the memo keeps at most
    /// `UNAFFECTED_MEMO_MAX` of them (and every affected one); past the bound, packages are
    /// judged afresh and the findings stay the same.
    #[test]
    fn the_memo_of_unaffected_packages_is_bounded() {
        let mut idx = EcosystemIndex::new("Debian");
        idx.add_record_json(br#"{"id":"DEBIAN-CVE-2023-0464","upstream":["CVE-2023-0464"],"affected":[{"package":{"ecosystem":"Debian:12","name":"openssl"},"ranges":[{"type":"ECOSYSTEM","events":[{"introduced":"0"},{"fixed":"3.0.8-1"}]}]}]}"#);
        let db = IndexSet::from_indexes(vec![idx]).unwrap();
        let mut packages: Vec<Package> = (0..UNAFFECTED_MEMO_MAX + 100)
            .map(|i| debian(&format!("unaffected-{i}"), "1.0-1"))
            .collect();
        packages.push(debian("openssl", "3.0.7-1"));
        let inv = Inventory {
            packages: packages.into(),
            ..Default::default()
        };
        let mut m = Matcher::new(&db);
        for _ in 0..2 {
            let findings = m.match_inventory(&inv).unwrap();
            assert_eq!(findings.len(), 1);
            assert_eq!(&*findings[0].id, "DEBIAN-CVE-2023-0464");
            assert_eq!(m.memo.len(), UNAFFECTED_MEMO_MAX + 1);
            assert_eq!(m.unaffected_remembered, UNAFFECTED_MEMO_MAX);
        }
    }
}
