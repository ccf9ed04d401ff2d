//! An installed package as catalogers report it.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Package {
    /// OSV ecosystem with release, e.g. `Alpine:v3.20`; empty when the OS is unknown.
    pub ecosystem: String,
    pub name: String,
    pub version: String,
    pub source_name: String,
    pub source_version: String,
    pub purl: String,
    /// The database file the package was found in.
    pub path: String,
    #[serde(skip)]
    pub arch: String,
    /// The image layer (its digest) that last wrote the file the package was found in: for a
    /// language package, the layer that brought it; for an OS package, the last layer that
    /// changed its database. Absent outside images.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layer: Option<String>,
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
