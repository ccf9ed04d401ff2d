//! The rpm database in its three on-disk forms (sqlite, Berkeley DB hash, ndb), each reduced
//! to a list of header blobs, parsed by one header reader.

pub mod bdb;
pub mod header;
pub mod manifest;
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
                // The public keys rpm imports are kept as pseudo-packages: not installed software.
                None if h.string(header::TAG_NAME) == Some("gpg-pubkey") => out.not_installed += 1,
                // No name, version or release: a header that names no package is broken.
                None => out.malformed += 1,
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
    } else if bdb::hash_file_order(bytes).is_some() {
        bdb::package_blobs(bytes)?
    } else {
        let head = &bytes[..bytes.len().min(16)];
        return Err(DbError(format!(
            "neither an SQLite database nor a Berkeley DB hash file (rpm's two formats): {} bytes, \
             starting {head:02x?}",
            bytes.len()
        )));
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
            module: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::header::tests::{blob, package_blob};
    use super::*;

    #[test]
    fn keys_are_not_installed_and_nameless_headers_are_malformed() {
        let out = packages_from_headers(vec![
            package_blob("bash", None, "4.4.20", "4.el8", "bash-4.4.20-4.el8.src.rpm"),
            package_blob("gpg-pubkey", None, "c21ad6ea", "5c0a7b8f", ""),
            // Only a version and a release (tags 1001, 1002, strings): no package named.
            blob(&[(1001, 6, b"1.0\0"), (1002, 6, b"1\0")]),
            package_blob("", None, "1.0", "1", ""),
            b"not a header".to_vec(),
        ]);
        assert_eq!(out.packages.len(), 1);
        assert_eq!(out.packages[0].name, "bash");
        assert_eq!(out.not_installed, 1, "gpg-pubkey only");
        assert_eq!(
            out.malformed, 3,
            "no name, an empty name, bytes that are no header"
        );
    }

    #[test]
    fn a_database_of_neither_format_says_so() {
        let err = parse_any(b"random bytes where rpmdb.sqlite should be").unwrap_err();
        assert!(
            err.0.contains("neither an SQLite database nor a Berkeley DB"),
            "{err}"
        );
        assert!(err.0.contains("41 bytes"), "{err}");
        // A real format's own errors stay its own.
        let err = parse_any(b"SQLite format 3\0 and then nothing").unwrap_err();
        assert!(!err.0.contains("neither"), "{err}");
    }
}
