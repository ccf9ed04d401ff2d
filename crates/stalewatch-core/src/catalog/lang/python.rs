//! Installed Python distributions: the core metadata (`Name:`, `Version:`) of
//! `*.dist-info/METADATA`, `*.egg-info/PKG-INFO` and single-file `*.egg-info`.

use super::{utf8, LangPackage};

/// PEP 503: lowercase, and every run of `-`, `_`, `.` is one `-`.
pub fn normalize(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut sep = false;
    for c in name.trim().chars() {
        if matches!(c, '-' | '_' | '.') {
            sep = true;
            continue;
        }
        if sep && !out.is_empty() {
            out.push('-');
        }
        sep = false;
        out.extend(c.to_lowercase());
    }
    out
}

pub fn parse_metadata(bytes: &[u8]) -> Result<LangPackage, String> {
    let text = utf8(bytes)?;
    let (mut name, mut version) = (None, None);
    // Headers end at the first empty line; the description follows.
    for line in text.lines() {
        if line.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            match k.trim() {
                "Name" if name.is_none() => name = Some(v.trim()),
                "Version" if version.is_none() => version = Some(v.trim()),
                _ => {}
            }
        }
    }
    match (name, version) {
        (Some(n), Some(v)) if !n.is_empty() && !v.is_empty() => Ok(LangPackage {
            name: n.to_string(),
            version: v.to_string(),
        }),
        _ => Err("no Name and Version headers".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pep503_names() {
        assert_eq!(normalize("Django_REST.framework"), "django-rest-framework");
        assert_eq!(normalize("zope.interface"), "zope-interface");
        assert_eq!(normalize("A--B__c"), "a-b-c");
    }

    #[test]
    fn metadata_headers_only() {
        let m = b"Metadata-Version: 2.1\nName: requests\nVersion: 2.31.0\nSummary: x\n\nName: not-this\n";
        assert_eq!(
            parse_metadata(m).unwrap(),
            LangPackage {
                name: "requests".into(),
                version: "2.31.0".into()
            }
        );
        assert!(parse_metadata(b"Metadata-Version: 2.1\n").is_err());
    }
}
