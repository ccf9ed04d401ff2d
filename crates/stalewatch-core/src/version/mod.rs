//! Version ordering, one module per scheme. Every comparator is total: it accepts any string
//! (package databases and advisory feeds are untrusted) and never panics.

pub mod apk;
pub mod dpkg;
pub mod maven;
pub mod nuget;
pub mod packagist;
pub mod pep440;
pub mod rpm;
pub mod rubygems;
pub mod semver;

use std::cmp::Ordering;

/// The ordering rules an ecosystem's versions follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Scheme {
    Dpkg,
    Apk,
    Rpm,
    Semver,
    // Added after the first index format: new variants go last (the index stores them).
    Pep440,
    Maven,
    RubyGems,
    NuGet,
    Packagist,
}

impl Scheme {
    /// Every scheme (what property tests and the fuzz target iterate).
    pub const ALL: [Scheme; 9] = [
        Scheme::Dpkg,
        Scheme::Apk,
        Scheme::Rpm,
        Scheme::Semver,
        Scheme::Pep440,
        Scheme::Maven,
        Scheme::RubyGems,
        Scheme::NuGet,
        Scheme::Packagist,
    ];

    /// The scheme of an OSV ecosystem name, with or without its `:release` suffix.
    /// `None` for ecosystems whose ordering is not implemented yet: their records can only
    /// match through explicit `versions` lists.
    pub fn for_ecosystem(ecosystem: &str) -> Option<Scheme> {
        let base = crate::ecosystem::base(ecosystem);
        match base {
            "Debian" | "Ubuntu" => Some(Scheme::Dpkg),
            "Alpine" | "Wolfi" | "Chainguard" => Some(Scheme::Apk),
            "AlmaLinux" | "Rocky Linux" | "Red Hat" | "Azure Linux" | "openSUSE" | "SUSE" | "Mageia" => {
                Some(Scheme::Rpm)
            }
            "crates.io" | "npm" | "Go" | "Hex" | "Pub" => Some(Scheme::Semver),
            "PyPI" => Some(Scheme::Pep440),
            "Maven" => Some(Scheme::Maven),
            "RubyGems" => Some(Scheme::RubyGems),
            "NuGet" => Some(Scheme::NuGet),
            "Packagist" => Some(Scheme::Packagist),
            _ => None,
        }
    }

    /// Whether a range event's version can be one of this scheme's versions at all: the
    /// distributions' (dpkg, apk, rpm) have no spaces nor commas — a list of versions in one
    /// field (real feed dirt: an Azure Linux record's `1.17.13-2,1.18.8-2,1.21.6-1.azl3`)
    /// would otherwise be compared piece by piece as if it were one version.
    pub fn accepts(self, v: &str) -> bool {
        match self {
            Scheme::Dpkg | Scheme::Apk | Scheme::Rpm => {
                !v.is_empty() && !v.contains(|c: char| c == ',' || c.is_whitespace())
            }
            _ => true,
        }
    }

    /// Compares two versions under this scheme.
    pub fn compare(self, a: &str, b: &str) -> Ordering {
        match self {
            Scheme::Dpkg => dpkg::compare(a, b),
            Scheme::Apk => apk::compare(a, b),
            Scheme::Rpm => rpm::compare(a, b),
            Scheme::Semver => semver::compare(a, b),
            Scheme::Pep440 => pep440::compare(a, b),
            Scheme::Maven => maven::compare(a, b),
            Scheme::RubyGems => rubygems::compare(a, b),
            Scheme::NuGet => nuget::compare(a, b),
            Scheme::Packagist => packagist::compare(a, b),
        }
    }
}

#[cfg(test)]
pub(crate) mod vectors {
    //! Reads osv-scalibr's version vector files (`A op B` per line).
    use std::cmp::Ordering;

    pub fn parse(text: &str) -> Vec<(String, Ordering, String)> {
        let mut out = Vec::new();
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with("# ") || line.starts_with("// ") || line == "#" {
                continue;
            }
            let parts: Vec<&str> = line.split(' ').collect();
            if parts.len() != 3 {
                continue;
            }
            let op = match parts[1] {
                "<" => Ordering::Less,
                "=" => Ordering::Equal,
                ">" => Ordering::Greater,
                _ => continue,
            };
            out.push((parts[0].to_string(), op, parts[2].to_string()));
        }
        out
    }

    /// Returns the vectors that fail in either direction.
    pub fn failures(text: &str, cmp: fn(&str, &str) -> Ordering) -> (usize, Vec<(String, Ordering, String)>) {
        let all = parse(text);
        let total = all.len();
        let bad = all
            .into_iter()
            .filter(|(a, op, b)| cmp(a, b) != *op || cmp(b, a) != op.reverse())
            .collect();
        (total, bad)
    }

    /// Asserts that every vector of the shared file `name` holds (there are more than `min`).
    pub fn assert_all_hold(name: &str, min: usize, cmp: fn(&str, &str) -> Ordering) {
        assert_all_hold_but(name, min, cmp, &[]);
    }

    /// [`assert_all_hold`], but for vectors shown wrong against the ecosystem's own tool
    /// (each `(a, b)` exactly as the file has it): those must fail, or the exception is stale.
    pub fn assert_all_hold_but(
        name: &str,
        min: usize,
        cmp: fn(&str, &str) -> Ordering,
        wrong: &[(&str, &str)],
    ) {
        let (total, mut bad) = failures(&shared(name), cmp);
        for (a, b) in wrong {
            let before = bad.len();
            bad.retain(|(x, _, y)| !(x == a && y == b));
            assert_eq!(
                before,
                bad.len() + 1,
                "{name}: the vector {a} ? {b} is no longer wrong here"
            );
        }
        assert!(total > min, "{name}: only {total} vectors");
        assert!(
            bad.is_empty(),
            "{name}: {} of {total} fail: {:?}",
            bad.len(),
            &bad[..bad.len().min(10)]
        );
    }

    /// A shared vector file's text. Every vector the file's manifest counts must parse: an
    /// empty, moved or misparsed file fails here instead of passing with nothing checked.
    pub fn shared(name: &str) -> String {
        let dir = format!(
            "{}/../../../shared/data/version-vectors",
            env!("CARGO_MANIFEST_DIR")
        );
        let path = format!("{dir}/{name}");
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {path}: {e}"));
        let manifest: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(format!("{dir}/manifest.json")).expect("version-vectors/manifest.json"),
        )
        .expect("manifest.json is JSON");
        let expected = manifest["files"][name]["vectors"]
            .as_u64()
            .unwrap_or_else(|| panic!("manifest.json counts no vectors for {name}"));
        let ran = parse(&text).len() as u64;
        assert_eq!(
            ran, expected,
            "{name}: {ran} vectors parsed, the manifest counts {expected}"
        );
        assert!(ran > 0, "{name}: no vectors");
        text
    }
}
