//! Java archives (JAR, WAR, EAR): the Maven coordinates in `META-INF/maven/<group>/<artifact>/
//! pom.properties`, the manifest's `Implementation-*` / `Bundle-*` headers or the file name
//! where there are none, and the archives nested inside (Spring Boot's `BOOT-INF/lib`, a WAR's
//! `WEB-INF/lib`). Read while the layer streams; only a short summary — one line per package,
//! behind [`MARKER`] — stays in the tree. Bounded: archive size, nesting depth, bytes
//! decompressed in all, entries, and the size of every text read.

use std::io::{Cursor, Read};

use super::LangPackage;
use crate::layer::LayerError;

pub const MARKER: &[u8] = b"\0stalewatch:java-archive\n";
/// The largest archive read (a fat Spring Boot jar is well under this).
pub const MAX_ARCHIVE_BYTES: u64 = 256 << 20;
/// How deep archives inside archives are followed.
const MAX_DEPTH: usize = 3;
/// Bytes decompressed from one outer archive, nested archives included (zip bombs).
const MAX_INFLATED: u64 = 512 << 20;
const MAX_ENTRIES: usize = 200_000;
/// pom.properties and MANIFEST.MF are small; more is not read.
const MAX_TEXT: u64 = 64 << 10;

pub fn is_archive(path: &str) -> bool {
    let lower = path.rsplit('/').next().unwrap_or(path).to_ascii_lowercase();
    [".jar", ".war", ".ear"].iter().any(|e| lower.ends_with(e))
}

/// Reads a Java archive through `read` (chunks until empty) and returns its summary.
pub fn summarize(
    path: &str,
    read: &mut dyn FnMut(u64) -> Result<Vec<u8>, LayerError>,
) -> Result<Option<Vec<u8>>, LayerError> {
    let mut bytes = Vec::new();
    loop {
        let chunk = read(1 << 20)?;
        if chunk.is_empty() {
            break;
        }
        bytes.extend_from_slice(&chunk);
        if bytes.len() as u64 > MAX_ARCHIVE_BYTES {
            return Ok(Some(summary(&[], Some("archive larger than the cap"))));
        }
    }
    let mut found = Vec::new();
    let mut budget = MAX_INFLATED;
    let err = scan(&bytes, path, "", 0, &mut budget, &mut found).err();
    Ok(Some(summary(&found, err.as_deref())))
}

/// One package found: (name `group:artifact`, version, archive inside the outer one or "").
type Found = (String, String, String);

fn summary(found: &[Found], error: Option<&str>) -> Vec<u8> {
    let mut out = MARKER.to_vec();
    if let Some(e) = error {
        out.extend_from_slice(format!("!\t{e}\n").as_bytes());
    }
    for (n, v, inner) in found {
        out.extend_from_slice(format!("{n}\t{v}\t{inner}\n").as_bytes());
    }
    out
}

fn read_text(r: impl Read) -> String {
    let mut buf = Vec::new();
    let _ = r.take(MAX_TEXT).read_to_end(&mut buf);
    String::from_utf8_lossy(&buf).into_owned()
}

fn properties(text: &str) -> impl Iterator<Item = (&str, &str)> {
    text.lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|l| l.split_once(['=', ':']))
        .map(|(k, v)| (k.trim(), v.trim()))
}

/// `name-1.2.3.jar` → (`name`, `1.2.3`).
fn from_file_name(path: &str) -> Option<(String, String)> {
    let file = path.rsplit('/').next().unwrap_or(path);
    let stem = file.rsplit_once('.').map_or(file, |(s, _)| s);
    let at = stem
        .char_indices()
        .filter(|(i, c)| *c == '-' && stem[i + 1..].starts_with(|d: char| d.is_ascii_digit()))
        .map(|(i, _)| i)
        .next()?;
    Some((stem[..at].to_string(), stem[at + 1..].to_string()))
}

/// `outer` is the outer archive's path (its file name is the last fallback); `inner` the
/// archive being read inside it ("" for the outer one).
fn scan(
    bytes: &[u8],
    outer: &str,
    inner: &str,
    depth: usize,
    budget: &mut u64,
    found: &mut Vec<Found>,
) -> Result<(), String> {
    let mut zip = zip::ZipArchive::new(Cursor::new(bytes))
        .map_err(|e| format!("{}: not a zip archive: {e}", label(inner)))?;
    if zip.len() > MAX_ENTRIES {
        return Err(format!("{}: {} entries exceed the cap", label(inner), zip.len()));
    }
    let mut poms = Vec::new();
    let mut manifest = None;
    let mut nested = Vec::new();
    for i in 0..zip.len() {
        let Ok(entry) = zip.by_index(i) else { continue };
        let name = entry.name().to_string();
        let parts: Vec<&str> = name.split('/').collect();
        if parts.len() == 5 && parts[0] == "META-INF" && parts[1] == "maven" && parts[4] == "pom.properties" {
            poms.push(read_text(entry));
        } else if name == "META-INF/MANIFEST.MF" {
            manifest = Some(read_text(entry));
        } else if is_archive(&name) && depth < MAX_DEPTH && !entry.is_dir() {
            nested.push(i);
        }
    }
    let before = found.len();
    for pom in &poms {
        let (mut g, mut a, mut v) = (None, None, None);
        for (k, val) in properties(pom) {
            match k {
                "groupId" => g = Some(val),
                "artifactId" => a = Some(val),
                "version" => v = Some(val),
                _ => {}
            }
        }
        if let (Some(g), Some(a), Some(v)) = (g, a, v) {
            if !g.is_empty() && !a.is_empty() && !v.is_empty() {
                found.push((format!("{g}:{a}"), v.to_string(), inner.to_string()));
            }
        }
    }
    if found.len() == before {
        // No Maven metadata: the manifest's headers, then the file name.
        let headers: Vec<(String, String)> = manifest
            .as_deref()
            .map(|m| {
                properties(m)
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect()
            })
            .unwrap_or_default();
        let get = |k: &str| headers.iter().find(|(h, _)| h == k).map(|(_, v)| v.clone());
        let by_manifest = match (get("Implementation-Title"), get("Implementation-Version")) {
            (Some(t), Some(v)) => Some((t, v)),
            _ => match (get("Bundle-SymbolicName"), get("Bundle-Version")) {
                (Some(s), Some(v)) => Some((s.split(';').next().unwrap_or(&s).trim().to_string(), v)),
                _ => None,
            },
        };
        if let Some((n, v)) =
            by_manifest.or_else(|| from_file_name(if inner.is_empty() { outer } else { inner }))
        {
            found.push((n, v, inner.to_string()));
        }
    }
    for i in nested {
        let Ok(entry) = zip.by_index(i) else { continue };
        let name = entry.name().to_string();
        let path = if inner.is_empty() {
            name.clone()
        } else {
            format!("{inner}!/{name}")
        };
        if entry.size() > MAX_ARCHIVE_BYTES || entry.size() > *budget {
            return Err(format!("{path}: nested archive over the decompression budget"));
        }
        let mut buf = Vec::new();
        entry
            .take(*budget)
            .read_to_end(&mut buf)
            .map_err(|e| format!("{path}: {e}"))?;
        *budget = budget.saturating_sub(buf.len() as u64);
        scan(&buf, outer, &path, depth + 1, budget, found)?;
    }
    Ok(())
}

fn label(inner: &str) -> &str {
    if inner.is_empty() {
        "archive"
    } else {
        inner
    }
}

/// Packages of a summary, each with the archive inside the outer one it came from ("" for
/// the outer archive itself). An error the summary records comes back as `Err`, after the
/// packages read before it.
pub fn parse_summary(bytes: &[u8]) -> (Vec<(LangPackage, String)>, Option<String>) {
    let Some(text) = bytes.strip_prefix(MARKER) else {
        return (Vec::new(), Some("not a Java archive summary".into()));
    };
    let text = String::from_utf8_lossy(text);
    let mut out = Vec::new();
    let mut error = None;
    for line in text.lines() {
        let f: Vec<&str> = line.split('\t').collect();
        match f.as_slice() {
            ["!", e] => error = Some(e.to_string()),
            [n, v, inner] => out.push((
                LangPackage {
                    name: n.to_string(),
                    version: v.to_string(),
                },
                inner.to_string(),
            )),
            _ => {}
        }
    }
    out.sort_by(|a, b| (&a.1, &a.0.name, &a.0.version).cmp(&(&b.1, &b.0.name, &b.0.version)));
    out.dedup();
    (out, error)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn jar(entries: &[(&str, &[u8])]) -> Vec<u8> {
        let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
        for (name, body) in entries {
            w.start_file(*name, zip::write::SimpleFileOptions::default())
                .unwrap();
            w.write_all(body).unwrap();
        }
        w.finish().unwrap().into_inner()
    }

    fn run(bytes: Vec<u8>) -> (Vec<(LangPackage, String)>, Option<String>) {
        let mut at = 0;
        let mut read = |max: u64| {
            let n = (max as usize).min(bytes.len() - at);
            let c = bytes[at..at + n].to_vec();
            at += n;
            Ok(c)
        };
        parse_summary(&summarize("srv/app.jar", &mut read).unwrap().unwrap())
    }

    #[test]
    fn nested_jars_and_fallbacks() {
        let inner = jar(&[(
            "META-INF/maven/org.yaml/snakeyaml/pom.properties",
            b"#Generated\ngroupId=org.yaml\nartifactId=snakeyaml\nversion=1.33\n",
        )]);
        let bare = jar(&[("META-INF/MANIFEST.MF", b"Manifest-Version: 1.0\nBundle-SymbolicName: com.acme.util;singleton:=true\nBundle-Version: 2.0.1\n")]);
        let nameless = jar(&[("x.class", b"\xca\xfe")]);
        let outer = jar(&[
            ("META-INF/MANIFEST.MF", b"Main-Class: x\n"),
            ("BOOT-INF/lib/snakeyaml-1.33.jar", &inner),
            ("BOOT-INF/lib/acme-util.jar", &bare),
            ("BOOT-INF/lib/guava-31.1-jre.jar", &nameless),
        ]);
        let (found, err) = run(outer);
        assert_eq!(err, None);
        let got: Vec<String> = found
            .iter()
            .map(|(p, i)| format!("{} {} {i}", p.name, p.version))
            .collect();
        assert_eq!(
            got,
            vec![
                "com.acme.util 2.0.1 BOOT-INF/lib/acme-util.jar",
                "guava 31.1-jre BOOT-INF/lib/guava-31.1-jre.jar",
                "org.yaml:snakeyaml 1.33 BOOT-INF/lib/snakeyaml-1.33.jar",
            ]
        );
    }

    #[test]
    fn corrupt_and_deeply_nested_archives_are_bounded() {
        let (found, err) = run(b"PK\x03\x04 not really".to_vec());
        assert!(found.is_empty() && err.unwrap().contains("not a zip"));
        // Nesting beyond the depth cap is not followed (and costs nothing).
        let mut j = jar(&[(
            "META-INF/maven/g/a/pom.properties",
            b"groupId=g\nartifactId=a\nversion=1\n",
        )]);
        for _ in 0..6 {
            j = jar(&[("lib/x.jar", &j)]);
        }
        let (found, err) = run(j);
        assert_eq!(err, None);
        assert!(found.is_empty(), "{found:?}");
        assert!(is_archive("a/b/App.WAR") && !is_archive("a/jar"));
    }
}
