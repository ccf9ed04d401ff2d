//! An OSV ecosystem name as packages and records carry it: a base (`Alpine`, `PyPI`) and,
//! for the OS feeds, a release after the first colon (`Alpine:v3.20`, `Debian:12`,
//! `Ubuntu:Pro:22.04:LTS`). One parser, so no caller splits the name by hand.

/// A parsed ecosystem name (borrowed from the string it was read from).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Ecosystem<'a> {
    /// The feed: `Alpine`, `Debian`, `PyPI`; the whole name when it has no release.
    pub base: &'a str,
    /// The release within the feed, when the name has one.
    pub release: Option<&'a str>,
}

impl<'a> Ecosystem<'a> {
    pub fn parse(name: &'a str) -> Ecosystem<'a> {
        match name.split_once(':') {
            Some((base, release)) => Ecosystem {
                base,
                release: Some(release),
            },
            None => Ecosystem {
                base: name,
                release: None,
            },
        }
    }
}

/// The feed of an ecosystem name (`Alpine:v3.20` → `Alpine`).
pub fn base(name: &str) -> &str {
    Ecosystem::parse(name).base
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_and_release_split_at_the_first_colon_only() {
        // Names as OSV's ecosystems list writes them (ossf/osv-schema, ecosystems.txt).
        for (name, base, release) in [
            ("PyPI", "PyPI", None),
            ("Alpine:v3.20", "Alpine", Some("v3.20")),
            ("Ubuntu:Pro:22.04:LTS", "Ubuntu", Some("Pro:22.04:LTS")),
            ("Debian:12", "Debian", Some("12")),
            ("", "", None),
        ] {
            assert_eq!(Ecosystem::parse(name), Ecosystem { base, release }, "{name}");
            assert_eq!(super::base(name), base);
        }
    }
}
