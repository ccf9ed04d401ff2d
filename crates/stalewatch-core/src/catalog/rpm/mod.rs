//! The rpm database in its three on-disk forms (sqlite, Berkeley DB hash, ndb), each reduced
//! to a list of header blobs, parsed by one header reader.

pub mod bdb;
pub mod header;
pub mod sqlite;

use super::{ParseOutcome, RawPackage};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{0}")]
pub struct DbError(pub String);

/// Turns header blobs into packages; a bad header is counted, not fatal.
pub fn packages_from_headers(blobs: Vec<Vec<u8>>) -> ParseOutcome {
    let mut out = ParseOutcome::default();
    for blob in blobs {
        match header::Header::parse(&blob) {
            Ok(h) => match h.package() {
                Some(p) => out.packages.push(p),
                // gpg-pubkey pseudo-packages and the like.
                None => out.not_installed += 1,
            },
            Err(_) => out.malformed += 1,
        }
    }
    out
}

/// Reads whichever format `bytes` is in, judged by content: SQLite or Berkeley DB hash.
/// (SUSE's ndb `Packages.db` is not read yet: reported as unreadable, never as clean.)
pub fn parse_any(bytes: &[u8]) -> Result<ParseOutcome, DbError> {
    let blobs = if bytes.starts_with(b"SQLite format 3\0") {
        sqlite::package_blobs(bytes)?
    } else {
        bdb::package_blobs(bytes)?
    };
    Ok(packages_from_headers(blobs))
}

impl RawPackage {
    pub(crate) fn from_rpm(
        name: &str,
        epoch: Option<u32>,
        version: &str,
        release: &str,
        arch: &str,
        sourcerpm: Option<&str>,
    ) -> RawPackage {
        let evr = match epoch {
            Some(e) if e > 0 => format!("{e}:{version}-{release}"),
            _ => format!("{version}-{release}"),
        };
        // SOURCERPM is `name-version-release.src.rpm`; the epoch is the binary's.
        let (source_name, source_version) = sourcerpm
            .and_then(|s| {
                s.strip_suffix(".src.rpm")
                    .or_else(|| s.strip_suffix(".nosrc.rpm"))
            })
            .and_then(|s| {
                let (rest, rel) = s.rsplit_once('-')?;
                let (n, v) = rest.rsplit_once('-')?;
                let ver = match epoch {
                    Some(e) if e > 0 => format!("{e}:{v}-{rel}"),
                    _ => format!("{v}-{rel}"),
                };
                Some((n.to_string(), ver))
            })
            .unwrap_or_else(|| (name.to_string(), evr.clone()));
        RawPackage {
            name: name.to_string(),
            version: evr,
            source_name,
            source_version,
            arch: arch.to_string(),
            files: None,
        }
    }
}
