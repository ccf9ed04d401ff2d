//! Severity as DESIGN.md defines it: CVSS base score (v4 over v3.1 over v3.0), else the
//! distribution's own word, else unknown.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::str::FromStr;

use super::osv::SeverityEntry;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    #[default]
    Unknown,
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    pub const ALL: [Severity; 5] = [
        Severity::Critical,
        Severity::High,
        Severity::Medium,
        Severity::Low,
        Severity::Unknown,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Unknown => "unknown",
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }

    /// The CVSS qualitative rating of a base score.
    pub fn from_score(score: f64) -> Severity {
        if score >= 9.0 {
            Severity::Critical
        } else if score >= 7.0 {
            Severity::High
        } else if score >= 4.0 {
            Severity::Medium
        } else if score > 0.0 {
            Severity::Low
        } else {
            Severity::Unknown
        }
    }

    /// A distribution's word (Debian urgency, Ubuntu priority, Red Hat / Alma / Rocky impact).
    pub fn from_distro_word(word: &str) -> Option<Severity> {
        let w = word.trim().to_ascii_lowercase();
        let w = w.trim_end_matches('*').trim_end_matches("**");
        Some(match w {
            "critical" => Severity::Critical,
            "important" | "high" => Severity::High,
            "moderate" | "medium" => Severity::Medium,
            "low" | "negligible" | "unimportant" => Severity::Low,
            _ => return None,
        })
    }
}

impl FromStr for Severity {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "critical" => Ok(Severity::Critical),
            "high" => Ok(Severity::High),
            "medium" => Ok(Severity::Medium),
            "low" => Ok(Severity::Low),
            "unknown" => Ok(Severity::Unknown),
            other => Err(format!(
                "unknown severity {other:?} (expected critical, high, medium, low or unknown)"
            )),
        }
    }
}

/// Computes a CVSS v3.x / v4.0 base score from a vector; `None` if it does not parse.
pub fn cvss_base_score(vector: &str) -> Option<f64> {
    cvss::Cvss::from_str(vector.trim()).ok().map(|c| c.score())
}

/// Picks the preferred CVSS score among severity entries: v4 over v3.1 over v3.0.
pub fn best_cvss(entries: &[SeverityEntry]) -> Option<f64> {
    let rank = |e: &SeverityEntry| {
        let s = e.score.trim();
        if e.kind == "CVSS_V4" || s.starts_with("CVSS:4.0/") {
            3
        } else if s.starts_with("CVSS:3.1/") {
            2
        } else if s.starts_with("CVSS:3.0/") {
            1
        } else {
            0
        }
    };
    let mut scored: Vec<(u8, f64)> = entries
        .iter()
        .filter(|e| rank(e) > 0)
        .filter_map(|e| cvss_base_score(&e.score).map(|s| (rank(e), s)))
        .collect();
    scored.sort_by(|a, b| b.0.cmp(&a.0).then(b.1.total_cmp(&a.1)));
    scored.first().map(|(_, s)| *s)
}

/// The distribution's own word from `ecosystem_specific` / `database_specific` objects, or an
/// `Ubuntu`-typed severity entry.
pub fn distro_word(objects: &[Option<&Value>], entries: &[SeverityEntry]) -> Option<Severity> {
    for e in entries {
        if e.kind == "Ubuntu" {
            if let Some(s) = Severity::from_distro_word(&e.score) {
                return Some(s);
            }
        }
    }
    const KEYS: [&str; 5] = ["severity", "urgency", "priority", "ubuntu_priority", "impact"];
    for obj in objects.iter().flatten() {
        for key in KEYS {
            if let Some(Value::String(s)) = obj.get(key) {
                if let Some(sev) = Severity::from_distro_word(s) {
                    return Some(sev);
                }
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(kind: &str, score: &str) -> SeverityEntry {
        SeverityEntry {
            kind: kind.into(),
            score: score.into(),
        }
    }

    #[test]
    fn cvss_scores_from_vectors() {
        // CVE-2021-44228 (log4shell): 10.0.
        assert_eq!(
            cvss_base_score("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:C/C:H/I:H/A:H"),
            Some(10.0)
        );
        // CVE-2024-9143 as NVD scored it (v3.1 4.3).
        assert_eq!(
            cvss_base_score("CVSS:3.1/AV:N/AC:L/PR:N/UI:R/S:U/C:L/I:N/A:N"),
            Some(4.3)
        );
        assert_eq!(
            cvss_base_score("CVSS:3.0/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"),
            Some(9.8)
        );
        // A v4 vector with everything high: 10.0 in FIRST's calculator.
        assert_eq!(
            cvss_base_score("CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:H/SI:H/SA:H"),
            Some(10.0)
        );
        assert_eq!(cvss_base_score("CVSS:3.1/garbage"), None);
        assert_eq!(cvss_base_score(""), None);
    }

    #[test]
    fn v4_preferred_over_v3() {
        let entries = [
            entry("CVSS_V3", "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"),
            entry(
                "CVSS_V4",
                "CVSS:4.0/AV:L/AC:H/AT:P/PR:H/UI:A/VC:L/VI:N/VA:N/SC:N/SI:N/SA:N",
            ),
        ];
        let s = best_cvss(&entries).unwrap();
        assert!(s < 4.0, "v4 score {s} should win over the v3 9.8");
    }

    #[test]
    fn buckets_and_words() {
        assert_eq!(Severity::from_score(9.0), Severity::Critical);
        assert_eq!(Severity::from_score(8.9), Severity::High);
        assert_eq!(Severity::from_score(4.0), Severity::Medium);
        assert_eq!(Severity::from_score(0.1), Severity::Low);
        assert_eq!(Severity::from_score(0.0), Severity::Unknown);
        assert_eq!(Severity::from_distro_word("Important"), Some(Severity::High));
        assert_eq!(Severity::from_distro_word("Moderate"), Some(Severity::Medium));
        assert_eq!(Severity::from_distro_word("unimportant"), Some(Severity::Low));
        assert_eq!(Severity::from_distro_word("not yet assigned"), None);
        let v: Value = serde_json::json!({"urgency": "high"});
        assert_eq!(distro_word(&[Some(&v)], &[]), Some(Severity::High));
        assert_eq!(
            distro_word(&[None], &[entry("Ubuntu", "medium")]),
            Some(Severity::Medium)
        );
    }
}
