//! apk's installed database (`lib/apk/db/installed`): blank-line separated records of
//! one-letter fields. Alpine advisories name the origin (source) package (`o:`).

use super::{ParseOutcome, RawPackage};

pub fn parse_installed(text: &[u8]) -> ParseOutcome {
    let text = String::from_utf8_lossy(text);
    let mut out = ParseOutcome::default();
    for record in text.split("\n\n") {
        if record.trim().is_empty() {
            continue;
        }
        let (mut name, mut version, mut origin, mut arch) = (None, None, None, None);
        for line in record.lines() {
            let Some((k, v)) = line.split_once(':') else {
                continue;
            };
            match k {
                "P" => name = Some(v.trim()),
                "V" => version = Some(v.trim()),
                "o" => origin = Some(v.trim()),
                "A" => arch = Some(v.trim()),
                _ => {}
            }
        }
        match (name, version) {
            (Some(n), Some(v)) if !n.is_empty() && !v.is_empty() => out.packages.push(RawPackage {
                name: n.to_string(),
                version: v.to_string(),
                source_name: origin.filter(|o| !o.is_empty()).unwrap_or(n).to_string(),
                source_version: v.to_string(),
                arch: arch.unwrap_or("").to_string(),
            }),
            _ => out.malformed += 1,
        }
    }
    out
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
}
