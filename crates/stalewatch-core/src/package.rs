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
