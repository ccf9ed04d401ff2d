//! An installed package as catalogers report it.

use serde::{Deserialize, Serialize};

/// A package's short strings: stored inline up to 24 bytes (names, versions, architectures,
/// ecosystems, database paths), so a database of hundreds of thousands of packages costs no
/// allocation per field.
pub type Text = compact_str::CompactString;

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Package {
    /// OSV ecosystem with release, e.g. `Alpine:v3.20`; empty when the OS is unknown.
    pub ecosystem: Text,
    pub name: Text,
    pub version: Text,
    pub source_name: Text,
    pub source_version: Text,
    pub purl: Text,
    /// The database file the package was found in.
    pub path: Text,
    /// The architecture the database records (empty where it records none). Kept in the
    /// agent's cache: drift compares packages by (path, name, arch).
    #[serde(default, skip_serializing_if = "Text::is_empty")]
    pub arch: Text,
    /// The image layer (its digest) that last wrote the file the package was found in: for a
    /// language package, the layer that brought it; for an OS package, the last layer that
    /// changed its database. Absent outside images.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layer: Option<std::sync::Arc<str>>,
    /// The image layer whose package database first records this name and version (for a
    /// language package, its `layer`): a package an app layer did not touch keeps its base
    /// layer here. Absent outside images, and where the database's history was too large.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub introduced_layer: Option<std::sync::Arc<str>>,
}

/// Percent-encodes a purl component (the purl spec's reserved characters).
pub fn purl_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '~') {
            out.push(c);
        } else {
            let mut buf = [0u8; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                out.push_str(&format!("%{b:02X}"));
            }
        }
    }
    out
}

/// The RPM module stream (`nodejs:18`) a purl's `rpmmod` qualifier names, if it names one
/// (`pkg:rpm/redhat/nodejs?arch=x86_64&rpmmod=nodejs:18:9020020230531:rhel9`). Purls without
/// the qualifier are not parsed: the matcher asks this of every package.
pub fn rpm_module(purl: &str) -> Option<String> {
    if !purl.contains("rpmmod=") {
        return None;
    }
    let parsed = crate::triage::purl::Purl::parse(purl)?;
    let label = parsed.qualifiers.get("rpmmod").filter(|l| !l.is_empty())?;
    Some(module_stream(label))
}

/// The stream of an RPM modularity label (`name:stream:version:context[:arch]`):
/// `name:stream`. Module names and streams hold no colon.
pub fn module_stream(label: &str) -> String {
    label.split(':').take(2).collect::<Vec<_>>().join(":")
}

#[cfg(test)]
mod module_tests {
    use super::*;

    #[test]
    fn rpm_module_streams_from_purls() {
        let p = "pkg:rpm/redhat/perl-libs@5.32.1-473.module%2Bel8.10.0?arch=x86_64&epoch=4&rpmmod=perl:5.32:8100020240314121426:9fe1d287";
        assert_eq!(rpm_module(p).as_deref(), Some("perl:5.32"));
        assert_eq!(
            rpm_module("pkg:rpm/x/y?rpmmod=nodejs%3A18%3A1%3Aabc").as_deref(),
            Some("nodejs:18")
        );
        assert_eq!(rpm_module("pkg:rpm/x/y?arch=x86_64"), None);
        assert_eq!(rpm_module("pkg:rpm/x/y"), None);
        assert_eq!(rpm_module("pkg:rpm/x/y?xrpmmod=a"), None);
        assert_eq!(rpm_module("pkg:rpm/x/y?rpmmod="), None);
        assert_eq!(module_stream("nodejs:20"), "nodejs:20");
    }
}
