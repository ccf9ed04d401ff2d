//! What of an inventory the advisory data cannot match, said per ecosystem: the one rule
//! `scan` and the agent both apply, so neither reports a silent "nothing found" for packages
//! it never matched.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use stalewatch_core::catalog::Inventory;

use super::State;

/// Why packages of one ecosystem were not matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum GapReason {
    /// The advisory source has no such ecosystem (the last update found it absent).
    NotOnSource,
    /// The agent was told not to fetch it (`--ecosystem`).
    NotConfigured,
    /// The ecosystem is on the source, but not one record is for this release.
    NoRecordsForRelease,
}

/// Packages of one ecosystem (release included) that were listed, not matched.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Gap {
    pub ecosystem: String,
    pub packages: usize,
    pub reason: GapReason,
}

impl Gap {
    /// The sentence a report's `no_advisory_feed` note carries.
    pub fn detail(&self) -> String {
        let why = match self.reason {
            GapReason::NotOnSource => "is not on the advisory source",
            GapReason::NotConfigured => "is not among the ecosystems fetched (--ecosystem)",
            GapReason::NoRecordsForRelease => "has no records for this release on the advisory source",
        };
        format!(
            "{} {why}: its {} packages are listed, not matched",
            self.ecosystem, self.packages
        )
    }
}

/// Whether a release's records are on the source: the per-release entries the last update
/// counted (an ecosystem prefix such as `Red Hat:enterprise_linux:9::` covers its streams).
fn release_covered(entries: &BTreeMap<String, u64>, release: &str) -> bool {
    entries
        .iter()
        .any(|(k, n)| *n > 0 && (k == release || (release.ends_with("::") && k.starts_with(release))))
}

/// The gaps of an inventory, sorted. `fetched`: the ecosystems the caller fetches (`None`:
/// all). An ecosystem not updated yet is no gap: its index is still to come.
pub fn gaps(inv: &Inventory, state: &State, fetched: Option<&BTreeSet<String>>) -> Vec<Gap> {
    let mut by_release: BTreeMap<&str, usize> = BTreeMap::new();
    for p in inv.packages.iter().filter(|p| !p.ecosystem.is_empty()) {
        *by_release.entry(p.ecosystem.as_str()).or_default() += 1;
    }
    let mut out = Vec::new();
    for (release, packages) in by_release {
        let top = stalewatch_core::ecosystem::base(release);
        let reason = if fetched.is_some_and(|f| !f.contains(top)) {
            GapReason::NotConfigured
        } else {
            match state.ecosystems.get(top) {
                Some(s) if s.missing => GapReason::NotOnSource,
                // Releases are the OS feeds' (`Alpine:v3.20`); language ecosystems have none.
                Some(s)
                    if release.contains(':')
                        && !s.entries.is_empty()
                        && !release_covered(&s.entries, release) =>
                {
                    GapReason::NoRecordsForRelease
                }
                _ => continue,
            }
        };
        out.push(Gap {
            ecosystem: release.to_string(),
            packages,
            reason,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::EcosystemState;
    use stalewatch_core::package::Package;

    fn pkg(ecosystem: &str) -> Package {
        Package {
            ecosystem: ecosystem.into(),
            name: "p".into(),
            version: "1".into(),
            source_name: "p".into(),
            source_version: "1".into(),
            purl: String::new().into(),
            path: String::new().into(),
            arch: String::new().into(),
            layer: None,
            introduced_layer: None,
        }
    }

    #[test]
    fn each_reason_and_what_is_no_gap() {
        let inv = Inventory {
            packages: [
                "Azure Linux:2",
                "Azure Linux:2",
                "Azure Linux:3",
                "SUSE:15",
                "npm",
                "PyPI",
                "Alpine:v3.20",
                "",
            ]
            .map(pkg)
            .to_vec()
            .into(),
            ..Default::default()
        };
        let mut state = State::default();
        let azl = EcosystemState {
            entries: BTreeMap::from([("Azure Linux:3".to_string(), 1200)]),
            ..Default::default()
        };
        state.ecosystems.insert("Azure Linux".into(), azl);
        state.ecosystems.insert(
            "SUSE".into(),
            EcosystemState {
                missing: true,
                ..Default::default()
            },
        );
        state.ecosystems.insert("npm".into(), EcosystemState::default());
        let got = gaps(&inv, &state, None);
        let want = vec![
            Gap {
                ecosystem: "Azure Linux:2".into(),
                packages: 2,
                reason: GapReason::NoRecordsForRelease,
            },
            Gap {
                ecosystem: "SUSE:15".into(),
                packages: 1,
                reason: GapReason::NotOnSource,
            },
        ];
        assert_eq!(got, want, "Alpine and PyPI are not updated yet: no gap");
        let fetched = BTreeSet::from(["Azure Linux".to_string(), "SUSE".to_string(), "npm".to_string()]);
        let got = gaps(&inv, &state, Some(&fetched));
        assert!(got.contains(&Gap {
            ecosystem: "PyPI".into(),
            packages: 1,
            reason: GapReason::NotConfigured
        }));
        let azl2 = got.iter().find(|g| g.ecosystem == "Azure Linux:2").unwrap();
        assert_eq!(
            azl2.detail(),
            "Azure Linux:2 has no records for this release on the advisory source: its 2 packages are listed, not matched"
        );
    }

    #[test]
    fn red_hat_streams_cover_their_major_release() {
        let entries = BTreeMap::from([("Red Hat:enterprise_linux:9::baseos".to_string(), 3)]);
        assert!(release_covered(&entries, "Red Hat:enterprise_linux:9::"));
        assert!(!release_covered(&entries, "Red Hat:enterprise_linux:8::"));
    }
}
