//! Chiseled Ubuntu images (.NET's recommended base, Canonical's "rocks") have no dpkg
//! database: Chisel writes `var/lib/chisel/manifest.wall`, a zstd-compressed "jsonwall" — a
//! header line `{"jsonwall":"1.0","schema":"1.0","count":N}`, then one sorted JSON object per
//! line, of kinds `package` (name, version, sha256, arch), `slice`, `path` and `content`.
//! It names binary packages without their source: each package is returned with an empty
//! `source_name`, which the matcher resolves through the advisory records' binary lists.

use std::io::Read;

use super::{ParseOutcome, RawPackage};

/// Where Chisel's `base-files_chisel` slice writes the manifest.
pub const PATH: &str = "var/lib/chisel/manifest.wall";
/// A real manifest is a few hundred KiB decompressed; a bomb stops here.
const MAX_DECOMPRESSED: u64 = 64 << 20;

/// The report's note for a binary no advisory record names (see
/// `Matcher::unresolved_binaries`): listed, matched under its own name, and what that misses.
pub fn unresolved_note(binary: &str) -> crate::layer::diagnostics::Unreadable {
    crate::layer::diagnostics::Unreadable {
        what: format!("{PATH}:{binary}"),
        reason: "unresolved_binary".into(),
        detail: "the Chisel manifest names this binary package without its source, and no advisory record lists it: \
                 matched as a source package of its own name, so advisories that name only its source are missed"
            .into(),
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{0}")]
pub struct ChiselError(pub String);

/// Decompresses and parses a manifest. A bad line is counted as malformed; a file that is
/// not a zstd-compressed jsonwall is an error.
pub fn parse_manifest(bytes: &[u8]) -> Result<ParseOutcome, ChiselError> {
    let mut text = Vec::new();
    zstd::stream::read::Decoder::new(bytes)
        .map_err(|e| ChiselError(format!("not zstd: {e}")))?
        .take(MAX_DECOMPRESSED + 1)
        .read_to_end(&mut text)
        .map_err(|e| ChiselError(format!("not zstd: {e}")))?;
    if text.len() as u64 > MAX_DECOMPRESSED {
        return Err(ChiselError(format!(
            "decompresses to more than {MAX_DECOMPRESSED} bytes"
        )));
    }
    parse_jsonwall(&text)
}

/// Parses the decompressed jsonwall.
pub fn parse_jsonwall(text: &[u8]) -> Result<ParseOutcome, ChiselError> {
    let mut lines = text.split(|&b| b == b'\n');
    let header: serde_json::Value = lines
        .next()
        .and_then(|h| serde_json::from_slice(h).ok())
        .ok_or_else(|| ChiselError("no jsonwall header line".into()))?;
    if header.get("jsonwall").and_then(|v| v.as_str()).is_none() {
        return Err(ChiselError("the first line is not a jsonwall header".into()));
    }
    let mut out = ParseOutcome::default();
    for line in lines.filter(|l| !l.iter().all(u8::is_ascii_whitespace)) {
        let Ok(v) = serde_json::from_slice::<serde_json::Value>(line) else {
            out.malformed += 1;
            continue;
        };
        if v.get("kind").and_then(|k| k.as_str()) != Some("package") {
            continue;
        }
        let field = |k: &str| {
            v.get(k)
                .and_then(|x| x.as_str())
                .map(str::trim)
                .unwrap_or_default()
        };
        let (name, version) = (field("name"), field("version"));
        if name.is_empty() || version.is_empty() {
            out.malformed += 1;
            continue;
        }
        out.packages.push(RawPackage {
            name: name.to_string(),
            version: version.to_string(),
            source_name: String::new(),
            source_version: version.to_string(),
            arch: field("arch").to_string(),
            files: None,
            module: None,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const WALL: &str = r#"{"jsonwall":"1.0","schema":"1.0","count":5}
{"kind":"content","slice":"libc6_libs","path":"/usr/lib/x86_64-linux-gnu/libc.so.6"}
{"kind":"package","name":"base-files","version":"13ubuntu10.1","sha256":"aa","arch":"amd64"}
{"kind":"package","name":"libc6","version":"2.39-0ubuntu8.3","sha256":"bb","arch":"amd64"}
{"kind":"path","path":"/usr/lib/x86_64-linux-gnu/libc.so.6","mode":"0755","slices":["libc6_libs"]}
{"kind":"slice","name":"libc6_libs"}
"#;

    #[test]
    fn packages_of_a_compressed_manifest() {
        let z = zstd::encode_all(WALL.as_bytes(), 3).unwrap();
        let out = parse_manifest(&z).unwrap();
        assert_eq!(out.malformed, 0);
        let names: Vec<(&str, &str, &str)> = out
            .packages
            .iter()
            .map(|p| (p.name.as_str(), p.version.as_str(), p.arch.as_str()))
            .collect();
        assert_eq!(
            names,
            [
                ("base-files", "13ubuntu10.1", "amd64"),
                ("libc6", "2.39-0ubuntu8.3", "amd64")
            ]
        );
        assert!(out.packages.iter().all(|p| p.source_name.is_empty()));
    }

    #[test]
    fn broken_manifests_are_errors_or_counted_lines() {
        assert!(parse_manifest(WALL.as_bytes())
            .unwrap_err()
            .0
            .contains("not zstd"));
        let no_header = zstd::encode_all(&b"{\"kind\":\"package\"}\n"[..], 3).unwrap();
        assert!(parse_manifest(&no_header).is_err());
        let text = "{\"jsonwall\":\"1.0\"}\n{not json\n{\"kind\":\"package\",\"name\":\"x\"}\n";
        assert_eq!(parse_jsonwall(text.as_bytes()).unwrap().malformed, 2);
        // A bomb: 65 MiB of newlines compress to almost nothing.
        let bomb = zstd::encode_all(std::io::repeat(b'\n').take(65 << 20), 19).unwrap();
        assert!(parse_manifest(&bomb).unwrap_err().0.contains("more than"));
    }
}
