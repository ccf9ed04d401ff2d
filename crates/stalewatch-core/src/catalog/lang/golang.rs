//! Go binaries: the build information the Go toolchain (1.18 and later) embeds in every
//! executable — the toolchain version (as package `stdlib`), the main module and each
//! dependency with its version and replacement. It sits behind the `\xff Go buildinf:` magic,
//! which survives stripping, so it is found by scanning the file as the layer streams, never
//! by loading the binary: [`summarize`] keeps a few KiB (a summary node in the tree, behind
//! [`MARKER`]) and [`parse_summary`] reads packages from it.

use super::LangPackage;
use crate::layer::LayerError;

/// What a summary node of the tree starts with (no manifest starts with a NUL byte).
pub const MARKER: &[u8] = b"\0stalewatch:go-buildinfo\n";
const MAGIC: &[u8] = b"\xff Go buildinf:";
/// The build info read after the magic: the header (32 bytes) and two strings.
const CAPTURE: usize = 1 << 20;
/// Files smaller than this are not Go executables (the smallest is over 1 MiB).
pub const MIN_BINARY_BYTES: u64 = 512 << 10;
/// Larger files are not scanned.
pub const MAX_BINARY_BYTES: u64 = 1 << 30;
const CHUNK: u64 = 1 << 20;

/// Reads an ELF file's content through `read` (each call returns the next chunk of at most
/// the given size; an empty chunk is the end) and returns its Go build-info summary, if it
/// has one. Non-ELF files cost one 4-byte read.
pub fn summarize(
    size: u64,
    read: &mut dyn FnMut(u64) -> Result<Vec<u8>, LayerError>,
) -> Result<Option<Vec<u8>>, LayerError> {
    if !(MIN_BINARY_BYTES..=MAX_BINARY_BYTES).contains(&size) {
        return Ok(None);
    }
    let head = read(4)?;
    if head != b"\x7fELF" {
        return Ok(None);
    }
    // `window` holds the tail of the previous chunk (a magic may straddle two chunks).
    let mut window: Vec<u8> = Vec::new();
    loop {
        let chunk = read(CHUNK)?;
        if chunk.is_empty() {
            return Ok(None);
        }
        window.extend_from_slice(&chunk);
        if let Some(at) = find(&window, MAGIC) {
            let mut info = window.split_off(at);
            while info.len() < CAPTURE {
                let more = read((CAPTURE - info.len()) as u64)?;
                if more.is_empty() {
                    break;
                }
                info.extend_from_slice(&more);
            }
            info.truncate(CAPTURE);
            let Some(len) = info_len(&info) else {
                return Ok(None);
            };
            info.truncate(len);
            let mut out = MARKER.to_vec();
            out.extend_from_slice(&info);
            return Ok(Some(out));
        }
        let keep = window.len().saturating_sub(MAGIC.len() - 1);
        window.drain(..keep);
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn uvarint(b: &[u8]) -> Option<(u64, usize)> {
    let mut x = 0u64;
    for (i, &byte) in b.iter().enumerate().take(10) {
        x |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Some((x, i + 1));
        }
    }
    None
}

/// The two inline strings after the 32-byte header (Go 1.18+: flag bit 2).
fn strings(info: &[u8]) -> Option<(&[u8], &[u8], usize)> {
    if info.len() < 32 || info[15] & 2 == 0 {
        return None;
    }
    let mut at = 32;
    let mut two = [&info[..0], &info[..0]];
    for s in &mut two {
        let (n, used) = uvarint(info.get(at..)?)?;
        at += used;
        let end = at.checked_add(usize::try_from(n).ok()?)?;
        *s = info.get(at..end)?;
        at = end;
    }
    Some((two[0], two[1], at))
}

/// How much of the captured bytes the build info takes.
fn info_len(info: &[u8]) -> Option<usize> {
    strings(info).map(|(_, _, end)| end)
}

/// Packages from a summary (what [`summarize`] kept): `stdlib` at the toolchain's version,
/// and every module with a version.
pub fn parse_summary(bytes: &[u8]) -> Result<Vec<LangPackage>, String> {
    let info = bytes.strip_prefix(MARKER).ok_or("not a Go build-info summary")?;
    let (version, modinfo, _) =
        strings(info).ok_or("Go build info older than Go 1.18 (pointer format) or truncated")?;
    let version = std::str::from_utf8(version).map_err(|_| "toolchain version is not UTF-8")?;
    // The module info is framed by 16-byte binary sentinels.
    let modinfo = if modinfo.len() >= 33 && modinfo[modinfo.len() - 17] == b'\n' {
        &modinfo[16..modinfo.len() - 16]
    } else {
        modinfo
    };
    let modinfo = std::str::from_utf8(modinfo).map_err(|_| "module info is not UTF-8")?;
    let mut out = Vec::new();
    if let Some(v) = version.strip_prefix("go") {
        // `go1.21.0 X:boringcrypto` and the like: the version is the first word.
        let v = v.split_whitespace().next().unwrap_or(v);
        if !v.is_empty() {
            out.push(LangPackage {
                name: "stdlib".into(),
                version: v.to_string(),
            });
        }
    }
    let mut last_dep: Option<usize> = None;
    for line in modinfo.lines() {
        let f: Vec<&str> = line.split('\t').collect();
        match f.as_slice() {
            ["mod", path, version, ..] | ["dep", path, version, ..] => {
                last_dep = None;
                if version.is_empty() || *version == "(devel)" {
                    continue;
                }
                out.push(LangPackage {
                    name: path.to_string(),
                    version: version.to_string(),
                });
                if f[0] == "dep" {
                    last_dep = Some(out.len() - 1);
                }
            }
            // A replacement of the dependency above: what is really built in.
            ["=>", path, version, ..] => {
                if let Some(i) = last_dep.take() {
                    if version.is_empty() {
                        // A local directory: no registry version to match.
                        out.remove(i);
                    } else {
                        out[i] = LangPackage {
                            name: path.to_string(),
                            version: version.to_string(),
                        };
                    }
                }
            }
            _ => {}
        }
    }
    Ok(super::sorted(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A build-info blob as Go 1.18+ lays it out: header, then two varint-prefixed strings.
    fn blob(version: &str, modinfo: &[u8]) -> Vec<u8> {
        let mut b = MAGIC.to_vec();
        b.extend_from_slice(&[8, 2]);
        b.resize(32, 0);
        for s in [version.as_bytes(), modinfo] {
            let mut n = s.len() as u64;
            loop {
                let byte = (n & 0x7f) as u8;
                n >>= 7;
                if n == 0 {
                    b.push(byte);
                    break;
                }
                b.push(byte | 0x80);
            }
            b.extend_from_slice(s);
        }
        b
    }

    /// Module info framed as Go frames it: 16 binary (non-UTF-8) bytes on each side.
    fn framed(s: &str) -> Vec<u8> {
        let sentinel = b"0w\xaf\x0c\x92t\x08\x02A\xe1\xc1\x07\xe6\xd6\x18\xe6";
        let mut out = sentinel.to_vec();
        out.extend_from_slice(s.as_bytes());
        out.push(b'\n');
        out.extend_from_slice(sentinel);
        out
    }

    fn chunks(data: Vec<u8>, size: usize) -> impl FnMut(u64) -> Result<Vec<u8>, LayerError> {
        let mut at = 0;
        move |max| {
            let n = (max as usize).min(size).min(data.len() - at);
            let c = data[at..at + n].to_vec();
            at += n;
            Ok(c)
        }
    }

    #[test]
    fn summary_across_chunk_boundaries_and_replacements() {
        let modinfo = framed(
            "path\texample.com/app\nmod\texample.com/app\t(devel)\t\ndep\tgolang.org/x/text\tv0.3.2\th1:x\ndep\tgithub.com/a/b\tv1.0.0\th1:y\n=>\tgithub.com/fork/b\tv1.0.1\th1:z\ndep\texample.com/local\tv0.0.0\t\n=>\t../local\t\t\nbuild\t-compiler=gc",
        );
        let mut file = b"\x7fELF".to_vec();
        file.resize(3_000_005, 7);
        file.extend(blob("go1.19.8", &modinfo));
        file.extend(vec![0u8; 1000]);
        // Chunks of 1 MiB - 3 bytes: the magic straddles a boundary somewhere.
        let mut read = chunks(file, (1 << 20) - 3);
        let summary = summarize(MIN_BINARY_BYTES, &mut read)
            .unwrap()
            .expect("build info found");
        assert!(summary.len() < 4096);
        let got: Vec<String> = parse_summary(&summary)
            .unwrap()
            .into_iter()
            .map(|p| format!("{}@{}", p.name, p.version))
            .collect();
        assert_eq!(
            got,
            vec![
                "github.com/fork/b@v1.0.1",
                "golang.org/x/text@v0.3.2",
                "stdlib@1.19.8"
            ]
        );
    }

    #[test]
    fn non_elf_and_elf_without_build_info() {
        let mut read = chunks(b"#!/bin/sh\necho hi\n".to_vec(), 1 << 20);
        assert_eq!(summarize(MIN_BINARY_BYTES, &mut read).unwrap(), None);
        let mut elf = b"\x7fELF".to_vec();
        elf.resize(2 << 20, 1);
        let mut read = chunks(elf, 1 << 20);
        assert_eq!(summarize(MIN_BINARY_BYTES, &mut read).unwrap(), None);
        // A magic without valid strings after it (looks like Go, is not): no summary.
        let mut fake = b"\x7fELF".to_vec();
        fake.extend_from_slice(MAGIC);
        fake.extend_from_slice(&[8, 2, 0xff, 0xff]);
        let mut read = chunks(fake, 1 << 20);
        assert_eq!(summarize(MIN_BINARY_BYTES, &mut read).unwrap(), None);
        assert!(parse_summary(b"garbage").is_err());
    }
}
