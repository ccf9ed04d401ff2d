//! The compact advisory index: one per top-level OSV ecosystem, keyed by
//! (full ecosystem with release, package name), serialised with postcard so loading it never
//! parses JSON again.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::{Read, Seek};
use std::sync::Arc;

pub use super::error::IndexError;
use super::osv::{self, Record};
use super::range::{Event, EventKind, RangeKind, VersionRange};
use super::severity::{self, Severity};

/// One OSV record larger than this is skipped (real records are a few KiB; the largest a few
/// hundred KiB).
pub const MAX_RECORD_BYTES: u64 = 16 << 20;
/// A summary longer than this is cut (the full text stays at the advisory's source).
const MAX_SUMMARY_CHARS: usize = 240;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Advisory {
    pub id: String,
    /// `aliases` and `upstream` ids, sorted, deduplicated. Shared (`Arc`) so the findings of
    /// many images that point at one advisory hold one copy.
    pub aliases: Arc<[String]>,
    /// The CVE ids among the record's id, aliases, upstream and related ids, sorted: what
    /// KEV, EPSS and VEX statements are looked up by.
    pub cves: Arc<[String]>,
    pub summary: Arc<str>,
    pub published: Option<String>,
    pub modified: Option<String>,
    /// RustSec-style informational kind (`unmaintained`, `unsound`, …), if any.
    pub informational: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AffectedEntry {
    /// Index into [`EcosystemIndex::advisories`].
    pub advisory: u32,
    pub ranges: Vec<VersionRange>,
    pub versions: Vec<String>,
    /// Severity from this entry's or its record's CVSS vectors or distribution word.
    pub severity: Severity,
    pub cvss_score: Option<f32>,
    /// The RPM module stream (`nodejs:18`) the entry's builds belong to: from Red Hat's purl
    /// (`rpmmod=nodejs:18:…`), or from a modular fixed version (`.module+el…`, `.module_el…`)
    /// and the stream its record's summary names (AlmaLinux, Rocky Linux). `Some("")`: a
    /// modular entry whose stream is not named. Modular entries judge only packages of their
    /// stream; see `matcher`.
    pub module: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BuildStats {
    pub records: u64,
    pub withdrawn: u64,
    /// Skipped records by reason (`malformed_json`, `too_large`, `no_id`, …).
    pub skipped: BTreeMap<String, u64>,
    /// Records whose affected entries all belong to other ecosystems.
    pub foreign: u64,
    /// Newest `modified` among the records (the source's data time).
    pub newest_modified: Option<String>,
}

impl BuildStats {
    pub fn skipped_total(&self) -> u64 {
        self.skipped.values().sum()
    }
    fn skip(&mut self, reason: &str) {
        *self.skipped.entry(reason.to_string()).or_default() += 1;
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EcosystemIndex {
    /// Top-level OSV ecosystem, e.g. `Alpine`.
    pub ecosystem: String,
    pub advisories: Vec<Advisory>,
    /// full ecosystem (`Alpine:v3.20`) → package name → entries.
    pub packages: BTreeMap<String, BTreeMap<String, Vec<AffectedEntry>>>,
    pub stats: BuildStats,
}

/// `CVE-YYYY-NNNN…`: the form KEV and EPSS key their data by.
pub fn is_cve_id(id: &str) -> bool {
    let Some(rest) = id.strip_prefix("CVE-") else {
        return false;
    };
    let Some((year, number)) = rest.split_once('-') else {
        return false;
    };
    year.len() == 4
        && number.len() >= 4
        && year.bytes().all(|b| b.is_ascii_digit())
        && number.bytes().all(|b| b.is_ascii_digit())
}

/// A record's aliases (its `aliases` and `upstream` ids, without its own) and its CVE ids
/// (among its id, aliases, upstream and related ids), each sorted and deduplicated.
fn ids_of(r: &Record) -> (Vec<String>, Vec<String>) {
    let mut aliases: Vec<String> = r.aliases.iter().chain(&r.upstream).cloned().collect();
    aliases.retain(|a| a != &r.id);
    aliases.sort();
    aliases.dedup();
    let mut cves: Vec<String> = std::iter::once(&r.id)
        .chain(&aliases)
        .chain(&r.related)
        .filter(|id| is_cve_id(id))
        .cloned()
        .collect();
    cves.sort();
    cves.dedup();
    (aliases, cves)
}

/// The module stream of an affected entry (see [`AffectedEntry::module`]).
fn module_of(purl: Option<&str>, ranges: &[VersionRange], summary: Option<&str>) -> Option<String> {
    if let Some(stream) = purl.and_then(crate::package::rpm_module) {
        return Some(stream);
    }
    let modular = ranges.iter().flat_map(|r| r.events.iter()).any(|e| {
        let v = &e.version;
        v.contains(".module+el") || v.contains(".module_el")
    });
    if !modular {
        return None;
    }
    // `Moderate: nodejs:18 security, bug fix, and enhancement update`: the stream is the first
    // word after the rating that names one.
    let named = summary
        .map(|s| s.split_once(": ").map_or(s, |(_, rest)| rest))
        .and_then(|s| s.split_whitespace().next())
        .filter(|w| w.contains(':'))
        .map(|w| crate::package::module_stream(w.trim_end_matches(',')));
    Some(named.unwrap_or_default())
}

fn summary_of(r: &Record) -> String {
    let text = r
        .summary
        .as_deref()
        .filter(|s| !s.trim().is_empty())
        .or(r.details.as_deref())
        .unwrap_or("");
    let line = text.trim().lines().next().unwrap_or("").trim();
    if line.chars().count() > MAX_SUMMARY_CHARS {
        let cut: String = line.chars().take(MAX_SUMMARY_CHARS - 1).collect();
        format!("{cut}…")
    } else {
        line.to_string()
    }
}

/// The key prefix of the binary → source records (`binary:libssl3:openssl`): no Debian or
/// Ubuntu package name contains a `:`.
pub const BINARY_KEY: &str = "binary:";

/// The binary package names of an affected entry's `ecosystem_specific.binaries`: a list of
/// `{binary_name, binary_version}` objects, or of name → version maps (both are Canonical's).
fn binary_names(specific: Option<&serde_json::Value>) -> Vec<String> {
    let Some(list) = specific
        .and_then(|s| s.get("binaries"))
        .and_then(|b| b.as_array())
    else {
        return Vec::new();
    };
    let mut out: Vec<String> = Vec::new();
    for item in list.iter().filter_map(|i| i.as_object()) {
        match item.get("binary_name").and_then(|n| n.as_str()) {
            Some(n) => out.push(n.to_string()),
            None => out.extend(item.keys().cloned()),
        }
    }
    out.retain(|n| !n.is_empty() && !n.contains(':') && n.len() <= 256);
    out.sort();
    out.dedup();
    out
}

/// Whether every ECOSYSTEM event of the ranges can be a version of the ecosystem's scheme.
fn events_are_versions(ecosystem: &str, ranges: &[VersionRange]) -> bool {
    let Some(scheme) = crate::version::Scheme::for_ecosystem(ecosystem) else {
        return true;
    };
    ranges
        .iter()
        .filter(|r| r.kind == RangeKind::Ecosystem)
        .flat_map(|r| &r.events)
        .all(|e| scheme.accepts(&e.version))
}

fn convert_range(r: &osv::Range) -> Option<VersionRange> {
    let kind = match r.kind.as_str() {
        "ECOSYSTEM" => RangeKind::Ecosystem,
        "SEMVER" => RangeKind::Semver,
        _ => return None, // GIT ranges name commits, not installed versions.
    };
    let mut events = Vec::new();
    for e in &r.events {
        let pairs = [
            (EventKind::Introduced, &e.introduced),
            (EventKind::Fixed, &e.fixed),
            (EventKind::LastAffected, &e.last_affected),
            (EventKind::Limit, &e.limit),
        ];
        for (kind, v) in pairs {
            if let Some(v) = v {
                events.push(Event {
                    kind,
                    version: v.clone(),
                });
            }
        }
    }
    Some(VersionRange { kind, events })
}

impl EcosystemIndex {
    pub fn new(ecosystem: &str) -> Self {
        EcosystemIndex {
            ecosystem: ecosystem.to_string(),
            ..Default::default()
        }
    }

    /// Adds one OSV record's JSON. Malformed or withdrawn records are counted, never fatal.
    pub fn add_record_json(&mut self, bytes: &[u8]) {
        match osv::parse(bytes) {
            Ok(r) => self.add_record(&r),
            Err(_) => self.stats.skip("malformed_json"),
        }
    }

    pub fn add_record(&mut self, r: &Record) {
        if r.id.trim().is_empty() {
            self.stats.skip("no_id");
            return;
        }
        self.stats.records += 1;
        if let Some(m) = &r.modified {
            if self
                .stats
                .newest_modified
                .as_deref()
                .is_none_or(|n| m.as_str() > n)
            {
                self.stats.newest_modified = Some(m.clone());
            }
        }
        if r.withdrawn.is_some() {
            self.stats.withdrawn += 1;
            return;
        }
        let record_cvss = severity::best_cvss(&r.severity);
        let record_word = severity::distro_word(&[r.database_specific.as_ref()], &r.severity)
            .or_else(|| self.summary_word(r));
        let informational = r
            .affected
            .iter()
            .filter_map(|a| a.database_specific.as_ref()?.get("informational")?.as_str())
            .next()
            .map(str::to_string);

        let advisory_idx = self.advisories.len() as u32;
        let mut used = false;
        for a in &r.affected {
            let Some(pkg) = &a.package else { continue };
            if crate::ecosystem::base(&pkg.ecosystem) != self.ecosystem || pkg.name.is_empty() {
                continue;
            }
            let Some(ranges) = self.usable_ranges(a, &pkg.ecosystem) else {
                continue;
            };
            let cvss = severity::best_cvss(&a.severity).or(record_cvss);
            let sev = match cvss {
                Some(s) => Severity::from_score(s),
                None => severity::distro_word(
                    &[a.ecosystem_specific.as_ref(), a.database_specific.as_ref()],
                    &a.severity,
                )
                .or(record_word)
                .unwrap_or_default(),
            };
            let module = module_of(pkg.purl.as_deref(), &ranges, r.summary.as_deref());
            let entry = AffectedEntry {
                advisory: advisory_idx,
                ranges,
                versions: a.versions.clone(),
                severity: sev,
                cvss_score: cvss.map(|s| s as f32),
                module,
            };
            self.insert_entry(&pkg.ecosystem, &pkg.name, a.ecosystem_specific.as_ref(), entry);
            used = true;
        }
        if !used {
            self.stats.foreign += 1;
            return;
        }
        let (aliases, cves) = ids_of(r);
        self.advisories.push(Advisory {
            id: r.id.clone(),
            aliases: aliases.into(),
            cves: cves.into(),
            summary: summary_of(r).into(),
            published: r.published.clone(),
            modified: r.modified.clone(),
            informational,
        });
    }

    /// Files an entry under its package, and records which source each binary package its
    /// record lists (Canonical's `binaries`) comes from — an empty entry list under
    /// `binary:<binary>:<source>` — so packages known only by their binary name (a chiseled
    /// image) are matched as their source.
    fn insert_entry(
        &mut self,
        ecosystem: &str,
        name: &str,
        specific: Option<&serde_json::Value>,
        entry: AffectedEntry,
    ) {
        let release = self.packages.entry(ecosystem.to_string()).or_default();
        for b in binary_names(specific) {
            release.entry(format!("{BINARY_KEY}{b}:{name}")).or_default();
        }
        release
            .entry(crate::catalog::lang::normalize_name(&self.ecosystem, name))
            .or_default()
            .push(entry);
    }

    /// An affected entry's ranges, when it can be judged: `None` when it has neither ranges
    /// nor versions, or when an event is no version of the ecosystem's scheme (dropped and
    /// counted as `invalid_version`: never matched as something it is not).
    fn usable_ranges(&mut self, a: &osv::Affected, ecosystem: &str) -> Option<Vec<VersionRange>> {
        let ranges: Vec<VersionRange> = a.ranges.iter().filter_map(convert_range).collect();
        if ranges.is_empty() && a.versions.is_empty() {
            return None;
        }
        if !events_are_versions(ecosystem, &ranges) {
            self.stats.skip("invalid_version");
            return None;
        }
        Some(ranges)
    }

    /// Red Hat and its rebuilds put their impact rating in the summary
    /// (`Important: openssl security update`) and nowhere else.
    fn summary_word(&self, r: &Record) -> Option<Severity> {
        if !matches!(self.ecosystem.as_str(), "AlmaLinux" | "Rocky Linux" | "Red Hat") {
            return None;
        }
        let (word, _) = r.summary.as_deref()?.split_once(':')?;
        Severity::from_distro_word(word)
    }

    /// Builds the index of `ecosystem` from an OSV bulk zip (`<Ecosystem>/all.zip`).
    /// A zip that cannot be read fails the build; a bad entry is counted and skipped.
    pub fn from_osv_zip<R: Read + Seek>(ecosystem: &str, reader: R) -> Result<Self, IndexError> {
        let mut zip = zip::ZipArchive::new(reader).map_err(|e| IndexError::Zip(e.to_string()))?;
        let mut index = EcosystemIndex::new(ecosystem);
        let mut buf = Vec::new();
        for i in 0..zip.len() {
            let mut entry = zip
                .by_index(i)
                .map_err(|e| IndexError::Zip(format!("entry {i}: {e}")))?;
            if entry.is_dir() || !entry.name().ends_with(".json") {
                continue;
            }
            if entry.size() > MAX_RECORD_BYTES {
                index.stats.skip("too_large");
                continue;
            }
            buf.clear();
            // The declared size may lie: never read more than the cap.
            match (&mut entry).take(MAX_RECORD_BYTES + 1).read_to_end(&mut buf) {
                Ok(n) if n as u64 > MAX_RECORD_BYTES => index.stats.skip("too_large"),
                Ok(_) => index.add_record_json(&buf),
                Err(e) => {
                    return Err(IndexError::Zip(format!("entry {}: {e}", entry.name())));
                }
            }
        }
        index.sort();
        Ok(index)
    }

    /// Sorts entries so output and the serialised file are deterministic.
    fn sort(&mut self) {
        for names in self.packages.values_mut() {
            for entries in names.values_mut() {
                entries.sort_by(|a, b| {
                    let (x, y) = (
                        &self.advisories[a.advisory as usize],
                        &self.advisories[b.advisory as usize],
                    );
                    x.id.cmp(&y.id)
                });
            }
        }
    }

    pub fn affected_entries(&self) -> usize {
        self.packages
            .values()
            .flat_map(|m| m.values())
            .map(Vec::len)
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::advisory::IndexSet;

    const ALPINE_9143: &str = r#"{"schema_version":"1.7.0","id":"ALPINE-CVE-2024-9143","modified":"2024-12-31T08:23:08Z","upstream":["CVE-2024-9143"],"affected":[{"package":{"ecosystem":"Alpine:v3.20","name":"openssl"},"ranges":[{"type":"ECOSYSTEM","events":[{"introduced":"0"},{"fixed":"3.3.2-r1"}]}]},{"package":{"ecosystem":"Debian:12","name":"openssl"},"ranges":[{"type":"ECOSYSTEM","events":[{"introduced":"0"}]}]}]}"#;

    #[test]
    fn builds_and_round_trips() {
        let mut idx = EcosystemIndex::new("Alpine");
        idx.add_record_json(ALPINE_9143.as_bytes());
        idx.add_record_json(b"{not json");
        idx.add_record_json(br#"{"id":"X-1","withdrawn":"2024-01-01T00:00:00Z","affected":[]}"#);
        assert_eq!(idx.stats.records, 2);
        assert_eq!(idx.stats.withdrawn, 1);
        assert_eq!(idx.stats.skipped.get("malformed_json"), Some(&1));
        assert_eq!(
            idx.affected_entries(),
            1,
            "the Debian entry belongs to another index"
        );
        assert_eq!(*idx.advisories[0].aliases, ["CVE-2024-9143".to_string()]);
        let set = IndexSet::from_indexes(vec![idx.clone()]).unwrap();
        let (reader, entries) = set.lookup("Alpine:v3.20", "openssl").unwrap().unwrap();
        assert_eq!(*entries, idx.packages["Alpine:v3.20"]["openssl"]);
        assert_eq!(*reader.advisory(0).unwrap(), idx.advisories[0]);
        assert_eq!(reader.meta().stats, idx.stats);
        assert!(set.lookup("Alpine:v3.19", "openssl").unwrap().is_none());
        assert!(set.lookup("Alpine:v3.20", "zlib").unwrap().is_none());
    }

    #[test]
    fn a_fixed_version_that_is_a_list_is_a_counted_skip() {
        // Shaped as the Azure Linux mirror's AZL-34750 (golang), whose OVAL test lists three
        // EVRs in one field; a well-formed entry of the same record is kept.
        let rec = |fixed: &str| {
            format!(
                r#"{{"id":"AZL-34750","modified":"2024-06-01T00:00:00Z","affected":[
                {{"package":{{"ecosystem":"Azure Linux:3","name":"golang"}},
                  "ranges":[{{"type":"ECOSYSTEM","events":[{{"introduced":"0"}},{{"fixed":"{fixed}"}}]}}]}},
                {{"package":{{"ecosystem":"Azure Linux:3","name":"msft-golang"}},
                  "ranges":[{{"type":"ECOSYSTEM","events":[{{"introduced":"0"}},{{"fixed":"1.21.6-1.azl3"}}]}}]}}]}}"#
            )
        };
        let mut idx = EcosystemIndex::new("Azure Linux");
        idx.add_record_json(rec("1.17.13-2,1.18.8-2,1.21.6-1.azl3").as_bytes());
        assert_eq!(idx.stats.skipped.get("invalid_version"), Some(&1));
        assert_eq!(idx.affected_entries(), 1, "msft-golang stays");
        let mut idx = EcosystemIndex::new("Azure Linux");
        idx.add_record_json(rec("1.21.6-1.azl3").as_bytes());
        assert_eq!(idx.stats.skipped_total(), 0);
        assert_eq!(idx.affected_entries(), 2);
    }

    #[test]
    fn red_hat_impact_from_summary() {
        // ALSA-2024:6783 as AlmaLinux publishes it: the rating lives in the summary.
        let rec = br#"{"id":"ALSA-2024:6783","summary":"Moderate: openssl security update","affected":[{"package":{"ecosystem":"AlmaLinux:9","name":"openssl"},"ranges":[{"type":"ECOSYSTEM","events":[{"introduced":"0"},{"fixed":"1:3.0.7-28.el9_4"}]}]}]}"#;
        let mut alma = EcosystemIndex::new("AlmaLinux");
        alma.add_record_json(rec);
        assert_eq!(
            alma.packages["AlmaLinux:9"]["openssl"][0].severity,
            Severity::Medium
        );
        // The same words mean nothing special in other ecosystems' summaries.
        let mut other = EcosystemIndex::new("PyPI");
        other.add_record_json(br#"{"id":"PYSEC-X","summary":"Important: x","affected":[{"package":{"ecosystem":"PyPI","name":"x"},"versions":["1.0"]}]}"#);
        assert_eq!(other.packages["PyPI"]["x"][0].severity, Severity::Unknown);
    }

    #[test]
    fn rejects_corrupt_files() {
        use crate::advisory::file::IndexReader;
        let idx = EcosystemIndex::new("Alpine");
        let mut bytes = crate::advisory::file::write(&idx);
        assert!(matches!(
            IndexReader::open(Box::new(b"garbage".to_vec())),
            Err(IndexError::BadMagic)
        ));
        bytes[6] = 99;
        assert!(matches!(
            IndexReader::open(Box::new(bytes)),
            Err(IndexError::Version { found: 99, .. })
        ));
        let mut idx = EcosystemIndex::new("Alpine");
        idx.add_record_json(ALPINE_9143.as_bytes());
        let bytes = crate::advisory::file::write(&idx);
        assert!(IndexReader::open(Box::new(bytes[..bytes.len() - 5].to_vec())).is_err());
    }

    #[test]
    fn oversized_records_in_a_zip_are_skipped() {
        use std::io::Write;
        let mut buf = std::io::Cursor::new(Vec::new());
        {
            let mut z = zip::ZipWriter::new(&mut buf);
            let opts = zip::write::SimpleFileOptions::default();
            z.start_file("ALPINE-CVE-2024-9143.json", opts).unwrap();
            z.write_all(ALPINE_9143.as_bytes()).unwrap();
            // A 17 MiB "record" of spaces deflates to a few KiB: a bomb, skipped unread.
            z.start_file("BOMB.json", opts).unwrap();
            z.write_all(&vec![b' '; (MAX_RECORD_BYTES + (1 << 20)) as usize])
                .unwrap();
            z.start_file("README.txt", opts).unwrap();
            z.write_all(b"not a record").unwrap();
            z.finish().unwrap();
        }
        assert!(buf.get_ref().len() < 1 << 20);
        buf.set_position(0);
        let idx = EcosystemIndex::from_osv_zip("Alpine", buf).unwrap();
        assert_eq!(idx.stats.records, 1);
        assert_eq!(idx.stats.skipped.get("too_large"), Some(&1));
    }

    #[test]
    fn truncated_zip_is_an_error() {
        let data = std::io::Cursor::new(b"PK\x03\x04 truncated".to_vec());
        assert!(matches!(
            EcosystemIndex::from_osv_zip("Alpine", data),
            Err(IndexError::Zip(_))
        ));
    }
}
