//! Go binaries: the build information the Go toolchain (1.18 and later) embeds in every
//! executable — the toolchain version (as package `stdlib`), the main module and each
//! dependency with its version and replacement. It sits behind the `\xff Go buildinf:` magic,
//! which survives stripping, at the start of the writable data segment: the ELF program
//! headers say where (`elf`), and only that window is read, never the whole binary.
//! [`build_info`] keeps a few KiB (a summary node in the tree, behind [`MARKER`]) and
//! [`parse_summary`] reads packages from it.

use super::LangPackage;
use crate::layer::{EntrySource, LayerError};

/// What a summary node of the tree starts with (no manifest starts with a NUL byte).
pub const MARKER: &[u8] = b"\0stalewatch:go-buildinfo\n";
const MAGIC: &[u8] = b"\xff Go buildinf:";
/// At most this much is read after the magic: the header (32 bytes) and two strings.
const CAPTURE: usize = 1 << 20;
/// Where the build info can be: the first 64 KiB of the first writable loadable segment
/// (the Go linker puts `.go.buildinfo` at its start; `go version` looks there too).
const SEGMENT_WINDOW: u64 = 64 << 10;

/// The Go build-info summary, read from the window at the start of the writable segment;
/// `pos` follows what was consumed.
pub(super) fn build_info(
    writable: Option<(u64, u64)>,
    src: &mut dyn EntrySource,
    pos: &mut u64,
) -> Result<Option<Vec<u8>>, LayerError> {
    let Some(segment) = writable else {
        return Ok(None);
    };
    if segment.0 < *pos {
        return Ok(None);
    }
    let skipped = src.skip_data(segment.0 - *pos)?;
    *pos += skipped;
    if *pos < segment.0 {
        return Ok(None); // the segment lies past the end of the file
    }
    let window = src.read_data(segment.1.min(SEGMENT_WINDOW))?;
    *pos += window.len() as u64;
    let Some(at) = memchr::memmem::find(&window, MAGIC) else {
        return Ok(None);
    };
    let mut info = window[at..].to_vec();
    while info_len(&info).is_none() && info.len() < CAPTURE {
        let more = src.read_data((CAPTURE - info.len()) as u64)?;
        if more.is_empty() {
            break;
        }
        *pos += more.len() as u64;
        info.extend_from_slice(&more);
    }
    let Some(len) = info_len(&info) else {
        return Ok(None);
    };
    info.truncate(len);
    let mut out = MARKER.to_vec();
    out.extend_from_slice(&info);
    Ok(Some(out))
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

/// How much of the captured bytes the build info takes (it always names a toolchain).
fn info_len(info: &[u8]) -> Option<usize> {
    strings(info)
        .filter(|(version, _, _)| version.starts_with(b"go"))
        .map(|(_, _, end)| end)
}

/// Packages from a summary (what [`build_info`] kept): `stdlib` at the toolchain's version,
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
    use crate::catalog::lang::elf::{summarize, MIN_BINARY_BYTES};
    use crate::layer::Entry;

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

    /// A little-endian ELF64 file: a text segment, then a writable one at `data_at` holding
    /// `data` (`writable: false` makes both read-only).
    fn elf(data_at: usize, data: &[u8], writable: bool) -> Vec<u8> {
        let mut f = vec![0u8; 64];
        f[..4].copy_from_slice(b"\x7fELF");
        f[4] = 2;
        f[5] = 1;
        f[0x20..0x28].copy_from_slice(&64u64.to_le_bytes());
        f[0x36..0x38].copy_from_slice(&56u16.to_le_bytes());
        f[0x38..0x3a].copy_from_slice(&2u16.to_le_bytes());
        for (flags, offset, size) in [
            (5u32, 0u64, data_at as u64),
            (if writable { 6 } else { 4 }, data_at as u64, data.len() as u64),
        ] {
            let mut ph = vec![0u8; 56];
            ph[..4].copy_from_slice(&1u32.to_le_bytes());
            ph[4..8].copy_from_slice(&flags.to_le_bytes());
            ph[8..16].copy_from_slice(&offset.to_le_bytes());
            ph[32..40].copy_from_slice(&size.to_le_bytes());
            f.extend(ph);
        }
        f.resize(data_at, 0x90);
        f.extend_from_slice(data);
        f.resize(f.len().max(MIN_BINARY_BYTES as usize), 0);
        f
    }

    /// One file as an entry source; counts what was read (skips are not reads).
    struct Mem {
        data: Vec<u8>,
        at: usize,
        read: usize,
    }

    impl EntrySource for Mem {
        fn next_entry(&mut self) -> Result<Option<Entry>, LayerError> {
            Ok(None)
        }
        fn read_data(&mut self, max: u64) -> Result<Vec<u8>, LayerError> {
            let n = (max as usize).min(self.data.len() - self.at);
            let c = self.data[self.at..self.at + n].to_vec();
            self.at += n;
            self.read += n;
            Ok(c)
        }
        fn skip_data(&mut self, n: u64) -> Result<u64, LayerError> {
            let n = (n as usize).min(self.data.len() - self.at);
            self.at += n;
            Ok(n as u64)
        }
    }

    fn summary_of(file: Vec<u8>) -> (Option<Vec<u8>>, usize) {
        let size = file.len() as u64;
        let mut src = Mem {
            data: file,
            at: 0,
            read: 0,
        };
        let s = summarize(size, &mut src).unwrap();
        (s, src.read)
    }

    #[test]
    fn build_info_at_the_data_segment_with_replacements() {
        let modinfo = framed(
            "path\texample.com/app\nmod\texample.com/app\t(devel)\t\ndep\tgolang.org/x/text\tv0.3.2\th1:x\ndep\tgithub.com/a/b\tv1.0.0\th1:y\n=>\tgithub.com/fork/b\tv1.0.1\th1:z\ndep\texample.com/local\tv0.0.0\t\n=>\t../local\t\t\nbuild\t-compiler=gc",
        );
        let mut data = blob("go1.19.8", &modinfo);
        data.extend(vec![0u8; 100_000]);
        // A text segment of 3 MB before it: skipped, not read.
        let (summary, read) = summary_of(elf(3_000_000, &data, true));
        let summary = summary.expect("build info found");
        assert!(read < 200_000, "read {read} bytes");
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
        let mut script = b"#!/bin/sh\necho hi\n".to_vec();
        script.resize(MIN_BINARY_BYTES as usize, b' ');
        assert_eq!(summary_of(script).0, None);
        // Writable segment without the magic; no writable segment at all.
        assert_eq!(summary_of(elf(4096, &[1u8; 70_000], true)).0, None);
        let modinfo = framed("mod\tx\tv1.0.0\t");
        assert_eq!(summary_of(elf(4096, &blob("go1.22.0", &modinfo), false)).0, None);
        // A magic without valid strings after it (looks like Go, is not): no summary.
        let mut fake = MAGIC.to_vec();
        fake.extend_from_slice(&[8, 2, 0xff, 0xff]);
        assert_eq!(summary_of(elf(4096, &fake, true)).0, None);
        // Headers that point nowhere sensible: no panic, no summary.
        let mut broken = elf(4096, &[0u8; 10], true);
        broken[0x38] = 0xff;
        broken[0x36] = 1;
        assert_eq!(summary_of(broken).0, None);
        assert!(parse_summary(b"garbage").is_err());
    }
}
