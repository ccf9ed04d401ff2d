//! apk's installed database (`lib/apk/db/installed`): blank-line separated records of
//! one-letter fields. Alpine advisories name the origin (source) package (`o:`).

use super::{ParseOutcome, RawPackage};
use crate::layer::LineFilter;

/// The lines [`parse_installed`] reads, kept as a database streams by: record separators,
/// `P:` `V:` `o:` `A:` `F:`, and the `R:` files a process can map (the only file list
/// entries the inventory keeps); checksums, descriptions and the other files are dropped.
pub fn installed_filter() -> Box<dyn LineFilter> {
    Box::new(InstalledFilter { dir: Vec::new() })
}

struct InstalledFilter {
    /// The directory of the last `F:` line of the record.
    dir: Vec<u8>,
}

impl LineFilter for InstalledFilter {
    fn keep(&mut self, line: &[u8]) -> bool {
        match line {
            [] => {
                self.dir.clear();
                true
            }
            [b'P' | b'V' | b'o' | b'A', b':', ..] => true,
            [b'F', b':', v @ ..] => {
                self.dir = v.to_vec();
                true
            }
            [b'R', b':', v @ ..] => {
                let dir = String::from_utf8_lossy(&self.dir);
                super::mappable(&file_path(dir_of(&dir), &String::from_utf8_lossy(v)))
            }
            _ => false,
        }
    }
}

/// The directory an `F:` value names, relative to the root.
fn dir_of(value: &str) -> &str {
    value.trim().trim_matches('/')
}

/// The path of an `R:` file under the record's last `F:` directory (the parser and the
/// streaming filter must agree on it).
fn file_path(dir: &str, name: &str) -> String {
    if dir.is_empty() {
        name.trim().to_string()
    } else {
        format!("{dir}/{}", name.trim())
    }
}

pub fn parse_installed(text: &[u8]) -> ParseOutcome {
    let mut out = ParseOutcome::default();
    let mut packages = Vec::new();
    out.malformed = each_installed(text, &mut |p| packages.push(p));
    out.packages = packages;
    out
}

/// [`parse_installed`] handing each package to `each` as it is read (no list of them all);
/// returns how many records were malformed.
pub fn each_installed(text: &[u8], each: &mut dyn FnMut(RawPackage)) -> u64 {
    let text = String::from_utf8_lossy(text);
    let mut malformed = 0;
    for record in text.split("\n\n") {
        if record.trim().is_empty() {
            continue;
        }
        let (mut name, mut version, mut origin, mut arch) = (None, None, None, None);
        // `F:` names a directory, the `R:` lines after it its files.
        let (mut dir, mut files) = ("", Vec::new());
        for line in record.lines() {
            let Some((k, v)) = line.split_once(':') else {
                continue;
            };
            match k {
                "P" => name = Some(v.trim()),
                "V" => version = Some(v.trim()),
                "o" => origin = Some(v.trim()),
                "A" => arch = Some(v.trim()),
                "F" => dir = dir_of(v),
                "R" if !v.trim().is_empty() => files.push(file_path(dir, v)),
                _ => {}
            }
        }
        match (name, version) {
            (Some(n), Some(v)) if !n.is_empty() && !v.is_empty() => each(RawPackage {
                name: n.to_string(),
                version: v.to_string(),
                source_name: origin.filter(|o| !o.is_empty()).unwrap_or(n).to_string(),
                source_version: v.to_string(),
                arch: arch.unwrap_or("").to_string(),
                files: Some(files),
                module: None,
            }),
            _ => malformed += 1,
        }
    }
    malformed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_records() {
        let db = "C:Q1abc=\nP:libcrypto3\nV:3.3.2-r0\nA:x86_64\nS:1\no:openssl\nm:Natanael\n\nP:musl\nV:1.2.5-r0\nA:x86_64\n\nP:noversion\n";
        let out = parse_installed(db.as_bytes());
        assert_eq!(out.packages.len(), 2);
        assert_eq!(out.packages[0].source_name, "openssl");
        assert_eq!(out.packages[1].source_name, "musl");
        assert_eq!(out.malformed, 1);
    }

    #[test]
    fn file_lists_come_from_f_and_r_lines() {
        let db = "P:libcrypto3\nV:3.3.2-r0\nF:usr/lib\nR:libcrypto.so.3\nZ:Q1x=\nF:etc/ssl\nR:openssl.cnf\nR:ct_log_list.cnf\n\nP:musl\nV:1.2.5-r0\nF:lib\nR:ld-musl-x86_64.so.1\n";
        let out = parse_installed(db.as_bytes());
        assert_eq!(
            out.packages[0].files.as_deref().unwrap(),
            [
                "usr/lib/libcrypto.so.3",
                "etc/ssl/openssl.cnf",
                "etc/ssl/ct_log_list.cnf"
            ]
        );
        assert_eq!(
            out.packages[1].files.as_deref().unwrap(),
            ["lib/ld-musl-x86_64.so.1"]
        );
    }
}
