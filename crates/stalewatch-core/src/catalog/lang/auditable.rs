//! Rust executables built with cargo-auditable: the `.dep-v0` ELF section holds the
//! dependency tree as zlib-compressed JSON (`{"packages":[{"name","version","source",…}]}`).
//! Non-allocated sections and the section headers sit at the end of the file, so the scan
//! reads the file's tail only (seeked to in a directory, streamed to in a layer); the
//! compressed section, a few KiB, is the summary the tree keeps behind [`MARKER`].

use std::io::Read;

use serde::Deserialize;

use super::LangPackage;

pub const MARKER: &[u8] = b"\0stalewatch:cargo-auditable\n";
/// How much of a file's end is read for its section headers and `.dep-v0`.
pub const TAIL: u64 = 8 << 20;
/// The decompressed JSON is small (a large tree is ~100 KiB); more is a bomb.
const MAX_JSON: u64 = 16 << 20;

/// The `.dep-v0` section's bytes, from the ELF header (`head`, 64 bytes) and the file's
/// last bytes (`tail`, starting at file offset `tail_start`), if the section headers and the
/// section both lie in the tail.
pub fn dep_section(head: &[u8], tail: &[u8], tail_start: u64) -> Option<Vec<u8>> {
    let wide = match head.get(4)? {
        1 => false,
        2 => true,
        _ => return None,
    };
    let big = *head.get(5)? == 2;
    let num = |b: &[u8], at: usize, len: usize| -> Option<u64> {
        let s = b.get(at..at + len)?;
        let mut v = 0u64;
        for i in 0..len {
            let byte = if big { s[i] } else { s[len - 1 - i] };
            v = (v << 8) | u64::from(byte);
        }
        Some(v)
    };
    let (shoff, shentsize, shnum, shstrndx) = if wide {
        (
            num(head, 0x28, 8)?,
            num(head, 0x3a, 2)?,
            num(head, 0x3c, 2)?,
            num(head, 0x3e, 2)?,
        )
    } else {
        (
            num(head, 0x20, 4)?,
            num(head, 0x2e, 2)?,
            num(head, 0x30, 2)?,
            num(head, 0x32, 2)?,
        )
    };
    if shentsize < if wide { 64 } else { 40 } || shnum == 0 || shstrndx >= shnum {
        return None;
    }
    let in_tail = |offset: u64, size: u64| -> Option<&[u8]> {
        let start = usize::try_from(offset.checked_sub(tail_start)?).ok()?;
        let end = start.checked_add(usize::try_from(size).ok()?)?;
        tail.get(start..end)
    };
    let table = in_tail(shoff, shentsize.checked_mul(shnum)?)?;
    let section = |i: u64| -> Option<(u64, u64, u64)> {
        let h = table.get((i * shentsize) as usize..((i + 1) * shentsize) as usize)?;
        if wide {
            Some((num(h, 0, 4)?, num(h, 0x18, 8)?, num(h, 0x20, 8)?))
        } else {
            Some((num(h, 0, 4)?, num(h, 0x10, 4)?, num(h, 0x14, 4)?))
        }
    };
    let (_, stroff, strsize) = section(shstrndx)?;
    let names = in_tail(stroff, strsize)?;
    for i in 0..shnum {
        let (name, offset, size) = section(i)?;
        let name = names.get(name as usize..)?;
        let end = name.iter().position(|&b| b == 0)?;
        if &name[..end] == b".dep-v0" {
            return in_tail(offset, size).map(<[u8]>::to_vec);
        }
    }
    None
}

/// The summary of a section's bytes.
pub fn summary(section: &[u8]) -> Vec<u8> {
    let mut out = MARKER.to_vec();
    out.extend_from_slice(section);
    out
}

#[derive(Deserialize)]
struct Deps {
    packages: Vec<Dep>,
}

#[derive(Deserialize)]
struct Dep {
    name: String,
    version: String,
    #[serde(default)]
    source: String,
}

/// The crates.io packages of a summary (the binary's own crate and path or git
/// dependencies are not in the advisory feed, as for Cargo.lock).
pub fn parse_summary(bytes: &[u8]) -> Result<Vec<LangPackage>, String> {
    let compressed = bytes
        .strip_prefix(MARKER)
        .ok_or("not a cargo-auditable summary")?;
    let mut json = Vec::new();
    flate2::read::ZlibDecoder::new(compressed)
        .take(MAX_JSON + 1)
        .read_to_end(&mut json)
        .map_err(|e| format!(".dep-v0 is not zlib data: {e}"))?;
    if json.len() as u64 > MAX_JSON {
        return Err(format!(".dep-v0 inflates past {MAX_JSON} bytes"));
    }
    let deps: Deps =
        serde_json::from_slice(&json).map_err(|e| format!(".dep-v0 is not the expected JSON: {e}"))?;
    Ok(super::sorted(
        deps.packages
            .into_iter()
            .filter(|d| d.source == "crates.io")
            .map(|d| LangPackage {
                name: d.name,
                version: d.version,
            })
            .collect(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn zlib(s: &str) -> Vec<u8> {
        let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(s.as_bytes()).unwrap();
        e.finish().unwrap()
    }

    /// A little-endian ELF64 file with sections `.dep-v0` (`dep`) and `.shstrtab`, section
    /// headers last, after `pad` bytes of code.
    fn elf(pad: usize, dep: &[u8]) -> Vec<u8> {
        let mut f = vec![0u8; 64];
        f[..4].copy_from_slice(b"\x7fELF");
        f[4] = 2;
        f[5] = 1;
        f.resize(64 + pad, 0x90);
        let dep_at = f.len() as u64;
        f.extend_from_slice(dep);
        let names = b"\0.dep-v0\0.shstrtab\0";
        let str_at = f.len() as u64;
        f.extend_from_slice(names);
        let shoff = f.len() as u64;
        for (name, offset, size) in [
            (0u32, 0u64, 0u64),
            (1, dep_at, dep.len() as u64),
            (9, str_at, names.len() as u64),
        ] {
            let mut h = vec![0u8; 64];
            h[..4].copy_from_slice(&name.to_le_bytes());
            h[0x18..0x20].copy_from_slice(&offset.to_le_bytes());
            h[0x20..0x28].copy_from_slice(&size.to_le_bytes());
            f.extend(h);
        }
        f[0x28..0x30].copy_from_slice(&shoff.to_le_bytes());
        f[0x3a..0x3c].copy_from_slice(&64u16.to_le_bytes());
        f[0x3c..0x3e].copy_from_slice(&3u16.to_le_bytes());
        f[0x3e..0x40].copy_from_slice(&2u16.to_le_bytes());
        f
    }

    #[test]
    fn section_from_the_tail_and_crates_io_packages() {
        let json = r#"{"packages":[{"name":"tool","version":"0.1.0","source":"local","kind":"runtime","root":true},{"name":"smallvec","version":"1.6.0","source":"crates.io","kind":"runtime"},{"name":"forked","version":"0.2.0","source":"git"}]}"#;
        let file = elf(100_000, &zlib(json));
        let tail_start = 50_000u64;
        let dep = dep_section(&file[..64], &file[tail_start as usize..], tail_start).expect("section found");
        let got = parse_summary(&summary(&dep)).unwrap();
        assert_eq!(
            got,
            vec![LangPackage {
                name: "smallvec".into(),
                version: "1.6.0".into()
            }]
        );
        // The section lies before the tail read: not found, no panic.
        assert_eq!(dep_section(&file[..64], &file[100_100..], 100_100), None);
    }

    #[test]
    fn bad_sections_are_clear_errors() {
        assert!(parse_summary(&summary(b"not zlib")).unwrap_err().contains("zlib"));
        assert!(parse_summary(&summary(&zlib("[1,2]")))
            .unwrap_err()
            .contains("JSON"));
        // A bomb: 17 MiB of zeros compress to a few KiB.
        let bomb = zlib(&"0".repeat(17 << 20));
        assert!(parse_summary(&summary(&bomb)).unwrap_err().contains("inflates"));
        // Headers pointing anywhere: none.
        let mut file = elf(10, b"x");
        file[0x3c] = 0xff;
        assert_eq!(dep_section(&file[..64], &file, 0), None);
    }
}
