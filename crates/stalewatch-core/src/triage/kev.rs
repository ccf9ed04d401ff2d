//! CISA's Known Exploited Vulnerabilities catalog, in its published JSON format
//! (`catalogVersion`, `dateReleased`, `vulnerabilities[]` with `cveID`, `dateAdded`, `dueDate`,
//! `knownRansomwareCampaignUse`). Strict: a catalog with one bad entry is refused whole, so a
//! broken download never replaces a good catalog with half of one.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;

use crate::advisory::index::is_cve_id;

/// The real catalog is about 1.5 MB; anything this large is not the catalog.
pub const MAX_CATALOG_BYTES: usize = 64 << 20;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum KevError {
    #[error("KEV catalog is {0} bytes, more than the {MAX_CATALOG_BYTES} allowed")]
    TooLarge(usize),
    #[error("KEV catalog is not JSON: {0}")]
    Json(String),
    #[error("KEV catalog lacks {0}")]
    Missing(&'static str),
    #[error("KEV catalog entry {index}: {why}")]
    Entry { index: usize, why: String },
}

/// What the catalog says of one CVE, as a finding carries it (`kev` in report v1).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KevFacts {
    pub date_added: String,
    pub due_date: String,
    /// `knownRansomwareCampaignUse` is `Known`.
    pub known_ransomware_use: bool,
    pub catalog_version: Arc<str>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct KevCatalog {
    pub catalog_version: String,
    /// `dateReleased` as published (RFC 3339).
    pub date_released: String,
    entries: BTreeMap<String, Arc<KevFacts>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawCatalog {
    catalog_version: Option<String>,
    date_released: Option<String>,
    vulnerabilities: Option<Vec<serde_json::Value>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawEntry {
    #[serde(rename = "cveID")]
    cve_id: String,
    date_added: String,
    due_date: String,
    #[serde(default)]
    known_ransomware_campaign_use: Option<String>,
}

fn is_date(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 10
        && b[4] == b'-'
        && b[7] == b'-'
        && b.iter()
            .enumerate()
            .all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit())
}

impl KevCatalog {
    /// Parses the catalog's JSON.
    pub fn parse(bytes: &[u8]) -> Result<KevCatalog, KevError> {
        if bytes.len() > MAX_CATALOG_BYTES {
            return Err(KevError::TooLarge(bytes.len()));
        }
        let raw: RawCatalog = serde_json::from_slice(bytes).map_err(|e| KevError::Json(e.to_string()))?;
        let catalog_version = raw
            .catalog_version
            .filter(|v| !v.trim().is_empty())
            .ok_or(KevError::Missing("catalogVersion"))?;
        let date_released = raw
            .date_released
            .filter(|v| !v.trim().is_empty())
            .ok_or(KevError::Missing("dateReleased"))?;
        let list = raw.vulnerabilities.ok_or(KevError::Missing("vulnerabilities"))?;
        let version: Arc<str> = Arc::from(catalog_version.as_str());
        let mut entries = BTreeMap::new();
        for (index, v) in list.into_iter().enumerate() {
            let bad = |why: String| KevError::Entry { index, why };
            let e: RawEntry = serde_json::from_value(v).map_err(|e| bad(e.to_string()))?;
            if !is_cve_id(&e.cve_id) {
                return Err(bad(format!("cveID {:?} is not a CVE id", e.cve_id)));
            }
            for (field, d) in [("dateAdded", &e.date_added), ("dueDate", &e.due_date)] {
                if !is_date(d) {
                    return Err(bad(format!("{field} {d:?} is not a YYYY-MM-DD date")));
                }
            }
            let facts = KevFacts {
                date_added: e.date_added,
                due_date: e.due_date,
                known_ransomware_use: e
                    .known_ransomware_campaign_use
                    .is_some_and(|k| k.eq_ignore_ascii_case("known")),
                catalog_version: version.clone(),
            };
            entries.insert(e.cve_id, Arc::new(facts));
        }
        Ok(KevCatalog {
            catalog_version,
            date_released,
            entries,
        })
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn get(&self, cve: &str) -> Option<&Arc<KevFacts>> {
        self.entries.get(cve)
    }

    /// The catalog's facts for the first of `cves` it lists (the earliest-added wins when
    /// several are: the finding has been known-exploited since then).
    pub fn lookup<'a>(&self, cves: impl IntoIterator<Item = &'a String>) -> Option<Arc<KevFacts>> {
        cves.into_iter()
            .filter_map(|c| self.entries.get(c.as_str()))
            .min_by(|a, b| a.date_added.cmp(&b.date_added))
            .cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Two entries as CISA publishes them (trimmed to the fields stalewatch reads and a few it
    // ignores).
    const CATALOG: &str = r#"{"title":"CISA Catalog of Known Exploited Vulnerabilities","catalogVersion":"2025.08.25","dateReleased":"2025-08-25T17:04:19.9796Z","count":2,"vulnerabilities":[
      {"cveID":"CVE-2014-6271","vendorProject":"GNU","product":"GNU Bash","dateAdded":"2022-01-28","dueDate":"2022-07-28","knownRansomwareCampaignUse":"Known","notes":""},
      {"cveID":"CVE-2021-44228","vendorProject":"Apache","product":"Log4j2","dateAdded":"2021-12-10","dueDate":"2021-12-24","knownRansomwareCampaignUse":"Unknown"}]}"#;

    #[test]
    fn parses_the_published_format() {
        let k = KevCatalog::parse(CATALOG.as_bytes()).unwrap();
        assert_eq!(k.catalog_version, "2025.08.25");
        assert_eq!(k.len(), 2);
        let bash = k.get("CVE-2014-6271").unwrap();
        assert_eq!(bash.date_added, "2022-01-28");
        assert!(bash.known_ransomware_use);
        assert!(!k.get("CVE-2021-44228").unwrap().known_ransomware_use);
        let ids = [
            "CVE-2000-0001".to_string(),
            "CVE-2021-44228".to_string(),
            "CVE-2014-6271".to_string(),
        ];
        assert_eq!(k.lookup(&ids).unwrap().date_added, "2021-12-10");
        assert!(k.lookup(&["CVE-2000-0001".to_string()]).is_none());
    }

    #[test]
    fn refuses_malformed_catalogs_whole() {
        assert!(matches!(
            KevCatalog::parse(b"{\"catalogVersion\":"),
            Err(KevError::Json(_))
        ));
        assert_eq!(
            KevCatalog::parse(br#"{"dateReleased":"x","vulnerabilities":[]}"#),
            Err(KevError::Missing("catalogVersion"))
        );
        assert_eq!(
            KevCatalog::parse(br#"{"catalogVersion":"1","dateReleased":"x"}"#),
            Err(KevError::Missing("vulnerabilities"))
        );
        let bad_id = CATALOG.replace("CVE-2021-44228", "GHSA-jfh8-c2jp-5v3q");
        assert!(matches!(
            KevCatalog::parse(bad_id.as_bytes()),
            Err(KevError::Entry { index: 1, .. })
        ));
        let bad_date = CATALOG.replace("2022-07-28", "soon");
        assert!(matches!(
            KevCatalog::parse(bad_date.as_bytes()),
            Err(KevError::Entry { index: 0, .. })
        ));
        let no_due = CATALOG.replace(r#""dueDate":"2021-12-24","#, "");
        assert!(matches!(
            KevCatalog::parse(no_due.as_bytes()),
            Err(KevError::Entry { index: 1, .. })
        ));
        let huge = vec![b' '; MAX_CATALOG_BYTES + 1];
        assert_eq!(
            KevCatalog::parse(&huge),
            Err(KevError::TooLarge(MAX_CATALOG_BYTES + 1))
        );
    }
}
