//! One OSV range evaluator for every ecosystem: `introduced` / `fixed` / `last_affected` /
//! `limit` events, sorted by the ecosystem's version ordering, as the OSV schema specifies.

use serde::{Deserialize, Serialize};
use std::cmp::Ordering;

use crate::version::Scheme;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RangeKind {
    Ecosystem,
    Semver,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum EventKind {
    Introduced,
    LastAffected,
    Fixed,
    Limit,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    pub kind: EventKind,
    pub version: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionRange {
    pub kind: RangeKind,
    pub events: Vec<Event>,
}

/// What a range says about one installed version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    NotAffected,
    /// Affected; `fixed` is the version that closes the interval holding it, if any.
    Affected {
        fixed: Option<String>,
    },
    /// The ecosystem's ordering is not implemented, so the range cannot be evaluated.
    Unknown,
}

/// `introduced: "0"` means "since the first version" whatever the ordering says.
fn is_zero(e: &Event) -> bool {
    e.kind == EventKind::Introduced && e.version == "0"
}

fn cmp_events(scheme: Scheme, a: &Event, b: &Event) -> Ordering {
    match (is_zero(a), is_zero(b)) {
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Less,
        (false, true) => Ordering::Greater,
        (false, false) => scheme.compare(&a.version, &b.version).then(a.kind.cmp(&b.kind)),
    }
}

impl VersionRange {
    /// The ordering this range's events follow for packages of `ecosystem`.
    pub fn scheme(&self, ecosystem: &str) -> Option<Scheme> {
        match self.kind {
            RangeKind::Semver => Some(Scheme::Semver),
            RangeKind::Ecosystem => Scheme::for_ecosystem(ecosystem),
        }
    }

    /// Evaluates the range for `version` of a package in `ecosystem`.
    pub fn evaluate(&self, ecosystem: &str, version: &str) -> Verdict {
        let Some(scheme) = self.scheme(ecosystem) else {
            return Verdict::Unknown;
        };
        let mut events: Vec<&Event> = self.events.iter().collect();
        events.sort_by(|a, b| cmp_events(scheme, a, b));
        let at_or_above = |e: &Event| is_zero(e) || scheme.compare(version, &e.version) != Ordering::Less;

        let limits: Vec<&&Event> = events
            .iter()
            .filter(|e| e.kind == EventKind::Limit && e.version != "*")
            .collect();
        if !limits.is_empty() && limits.iter().all(|e| at_or_above(e)) {
            return Verdict::NotAffected;
        }

        let mut affected = false;
        let mut position = 0;
        for (i, e) in events.iter().enumerate() {
            let applies = match e.kind {
                EventKind::Introduced | EventKind::Fixed => at_or_above(e),
                EventKind::LastAffected => scheme.compare(version, &e.version) == Ordering::Greater,
                EventKind::Limit => false,
            };
            if !applies {
                continue;
            }
            position = i + 1;
            match e.kind {
                EventKind::Introduced => affected = true,
                EventKind::Fixed | EventKind::LastAffected => affected = false,
                EventKind::Limit => {}
            }
        }
        if !affected {
            return Verdict::NotAffected;
        }
        let closing = events[position..]
            .iter()
            .find(|e| matches!(e.kind, EventKind::Fixed | EventKind::LastAffected));
        Verdict::Affected {
            fixed: closing
                .filter(|e| e.kind == EventKind::Fixed)
                .map(|e| e.version.clone()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(kind: RangeKind, events: &[(EventKind, &str)]) -> VersionRange {
        VersionRange {
            kind,
            events: events
                .iter()
                .map(|(k, v)| Event {
                    kind: *k,
                    version: v.to_string(),
                })
                .collect(),
        }
    }
    use EventKind::*;

    fn fixed(v: &str) -> Verdict {
        Verdict::Affected {
            fixed: Some(v.into()),
        }
    }

    #[test]
    fn introduced_fixed() {
        // ALPINE-CVE-2024-9143, openssl in Alpine:v3.20: fixed in 3.3.2-r1.
        let r = range(RangeKind::Ecosystem, &[(Introduced, "0"), (Fixed, "3.3.2-r1")]);
        assert_eq!(r.evaluate("Alpine:v3.20", "3.3.2-r0"), fixed("3.3.2-r1"));
        assert_eq!(r.evaluate("Alpine:v3.20", "3.3.2-r1"), Verdict::NotAffected);
        assert_eq!(r.evaluate("Alpine:v3.20", "3.3.3-r0"), Verdict::NotAffected);
    }

    #[test]
    fn several_intervals_any_order() {
        let r = range(
            RangeKind::Semver,
            &[
                (Introduced, "2.0.0"),
                (Fixed, "2.3.1"),
                (Introduced, "1.0.0"),
                (Fixed, "1.4.2"),
            ],
        );
        assert_eq!(r.evaluate("crates.io", "0.9.0"), Verdict::NotAffected);
        assert_eq!(r.evaluate("crates.io", "1.0.0"), fixed("1.4.2"));
        assert_eq!(r.evaluate("crates.io", "1.4.2"), Verdict::NotAffected);
        assert_eq!(r.evaluate("crates.io", "1.9.0"), Verdict::NotAffected);
        assert_eq!(r.evaluate("crates.io", "2.1.0"), fixed("2.3.1"));
        assert_eq!(r.evaluate("crates.io", "2.3.1"), Verdict::NotAffected);
    }

    #[test]
    fn last_affected_has_no_fix() {
        let r = range(RangeKind::Semver, &[(Introduced, "0"), (LastAffected, "1.2.0")]);
        assert_eq!(r.evaluate("npm", "1.2.0"), Verdict::Affected { fixed: None });
        assert_eq!(r.evaluate("npm", "1.2.1"), Verdict::NotAffected);
    }

    #[test]
    fn open_range_and_limit() {
        let open = range(RangeKind::Ecosystem, &[(Introduced, "0")]);
        assert_eq!(
            open.evaluate("Debian:12", "1.0-1"),
            Verdict::Affected { fixed: None }
        );
        let limited = range(RangeKind::Semver, &[(Introduced, "1.0.0"), (Limit, "2.0.0")]);
        assert_eq!(
            limited.evaluate("Go", "v1.5.0"),
            Verdict::Affected { fixed: None }
        );
        assert_eq!(limited.evaluate("Go", "v2.0.0"), Verdict::NotAffected);
        let star = range(RangeKind::Semver, &[(Introduced, "1.0.0"), (Limit, "*")]);
        assert_eq!(star.evaluate("Go", "v9.0.0"), Verdict::Affected { fixed: None });
    }

    #[test]
    fn introduced_equals_fixed_is_empty() {
        let r = range(RangeKind::Semver, &[(Introduced, "1.0.0"), (Fixed, "1.0.0")]);
        assert_eq!(r.evaluate("npm", "1.0.0"), Verdict::NotAffected);
    }

    #[test]
    fn dpkg_epochs_in_events() {
        // A Debian fix with an epoch: installed 1:2.0-1 is above a fix without epoch.
        let r = range(RangeKind::Ecosystem, &[(Introduced, "0"), (Fixed, "2.5-1")]);
        assert_eq!(r.evaluate("Debian:12", "1:2.0-1"), Verdict::NotAffected);
        assert_eq!(r.evaluate("Debian:12", "2.4-1"), fixed("2.5-1"));
    }

    #[test]
    fn unknown_ordering() {
        let r = range(RangeKind::Ecosystem, &[(Introduced, "0"), (Fixed, "1.0")]);
        assert_eq!(r.evaluate("Hackage", "0.5"), Verdict::Unknown);
    }
}
