//! A streaming tar reader with hard bounds: ustar, GNU long names and PAX path/size records,
//! header checksums verified, long-name and PAX data capped, nothing buffered but kept files.

use std::io::{self, Read};

use super::entry::{Entry, EntryKind, EntrySource, LayerError};

const BLOCK: u64 = 512;
/// GNU long names and PAX headers larger than this are refused (real ones are < 4 KiB).
const MAX_META_BYTES: u64 = 1 << 20;

pub struct TarReader<R> {
    inner: R,
    offset: u64,
    /// Data bytes of the current entry not yet consumed, and its padding.
    remaining: u64,
    padding: u64,
    done: bool,
}

fn octal(field: &[u8]) -> Option<u64> {
    // GNU base-256 for large values: high bit set on the first byte.
    if let Some(&first) = field.first() {
        if first & 0x80 != 0 {
            let mut v: u64 = (first & 0x7f) as u64;
            for &b in &field[1..] {
                v = v.checked_mul(256)?.checked_add(b as u64)?;
            }
            return Some(v);
        }
    }
    let s: Vec<u8> = field
        .iter()
        .copied()
        .skip_while(|b| *b == b' ')
        .take_while(|b| *b != 0 && *b != b' ')
        .collect();
    if s.is_empty() {
        return Some(0);
    }
    let mut v: u64 = 0;
    for b in s {
        if !(b'0'..=b'7').contains(&b) {
            return None;
        }
        v = v.checked_mul(8)?.checked_add((b - b'0') as u64)?;
    }
    Some(v)
}

fn cstr(field: &[u8]) -> String {
    let end = field.iter().position(|b| *b == 0).unwrap_or(field.len());
    String::from_utf8_lossy(&field[..end]).into_owned()
}

/// Parses PAX extended header records (`<len> <key>=<value>\n`).
fn pax_records(data: &[u8]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = data;
    while !rest.is_empty() {
        let Some(sp) = rest.iter().position(|b| *b == b' ') else {
            break;
        };
        let Some(len) = std::str::from_utf8(&rest[..sp])
            .ok()
            .and_then(|s| s.parse::<usize>().ok())
        else {
            break;
        };
        if len <= sp || len > rest.len() {
            break;
        }
        let record = &rest[sp + 1..len];
        let record = record.strip_suffix(b"\n").unwrap_or(record);
        if let Some(eq) = record.iter().position(|b| *b == b'=') {
            out.push((
                String::from_utf8_lossy(&record[..eq]).into_owned(),
                String::from_utf8_lossy(&record[eq + 1..]).into_owned(),
            ));
        }
        rest = &rest[len..];
    }
    out
}

impl<R: Read> TarReader<R> {
    pub fn new(inner: R) -> Self {
        TarReader {
            inner,
            offset: 0,
            remaining: 0,
            padding: 0,
            done: false,
        }
    }

    /// The underlying reader.
    pub fn into_inner(self) -> R {
        self.inner
    }

    /// Byte offset of the current entry's data (valid right after `next_entry`).
    pub fn data_offset(&self) -> u64 {
        self.offset
    }

    fn skip(&mut self, n: u64) -> Result<(), LayerError> {
        let copied =
            io::copy(&mut (&mut self.inner).take(n), &mut io::sink()).map_err(LayerError::from_io)?;
        self.offset += copied;
        if copied < n {
            return Err(LayerError::Truncated);
        }
        Ok(())
    }

    fn finish_entry(&mut self) -> Result<(), LayerError> {
        let (data, padding) = (self.remaining, self.padding);
        self.remaining = 0;
        self.padding = 0;
        self.skip(data)?;
        // Some writers (umoci 0.4) end the stream right after the last entry's data, with
        // neither padding nor end blocks: a clean end there, as Go's archive/tar reads it.
        if let Err(LayerError::Truncated) = self.skip(padding) {
            self.done = true;
        }
        Ok(())
    }

    /// Reads one 512-byte block; `None` at a clean end of stream.
    fn read_block(&mut self) -> Result<Option<[u8; 512]>, LayerError> {
        let mut block = [0u8; 512];
        let mut filled = 0;
        while filled < 512 {
            match self.inner.read(&mut block[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(LayerError::from_io(e)),
            }
        }
        self.offset += filled as u64;
        match filled {
            0 => Ok(None),
            512 => Ok(Some(block)),
            _ => Err(LayerError::Truncated),
        }
    }

    fn read_meta(&mut self, size: u64) -> Result<Vec<u8>, LayerError> {
        if size > MAX_META_BYTES {
            return Err(LayerError::CorruptHeader {
                offset: self.offset,
                reason: format!("extended header of {size} bytes exceeds {MAX_META_BYTES}"),
            });
        }
        self.remaining = size;
        self.padding = (BLOCK - size % BLOCK) % BLOCK;
        let data = self.read_data(size)?;
        self.finish_entry()?;
        Ok(data)
    }
}

impl<R: Read> EntrySource for TarReader<R> {
    #[allow(clippy::too_many_lines)] // a tar header state machine (ustar, GNU long names, PAX), read top to bottom
    fn next_entry(&mut self) -> Result<Option<Entry>, LayerError> {
        if self.done {
            return Ok(None);
        }
        self.finish_entry()?;
        if self.done {
            return Ok(None);
        }
        let mut long_name: Option<String> = None;
        let mut long_link: Option<String> = None;
        let mut pax_path: Option<String> = None;
        let mut pax_link: Option<String> = None;
        let mut pax_size: Option<u64> = None;
        loop {
            let header_offset = self.offset;
            let Some(h) = self.read_block()? else {
                // No end-of-archive blocks: tolerated, as GNU tar does.
                self.done = true;
                return Ok(None);
            };
            if h.iter().all(|b| *b == 0) {
                self.done = true;
                return Ok(None);
            }
            let corrupt = |reason: &str| LayerError::CorruptHeader {
                offset: header_offset,
                reason: reason.to_string(),
            };
            let stored = octal(&h[148..156]).ok_or_else(|| corrupt("bad checksum field"))?;
            let computed: u64 = h
                .iter()
                .enumerate()
                .map(|(i, b)| {
                    if (148..156).contains(&i) {
                        b' ' as u64
                    } else {
                        *b as u64
                    }
                })
                .sum();
            if stored != computed {
                return Err(corrupt("checksum mismatch"));
            }
            let header_size = octal(&h[124..136]).ok_or_else(|| corrupt("bad size field"))?;
            let typeflag = h[156];
            match typeflag {
                b'L' => {
                    let d = self.read_meta(header_size)?;
                    long_name = Some(cstr(&d));
                    continue;
                }
                b'K' => {
                    let d = self.read_meta(header_size)?;
                    long_link = Some(cstr(&d));
                    continue;
                }
                b'x' => {
                    let d = self.read_meta(header_size)?;
                    for (k, v) in pax_records(&d) {
                        match k.as_str() {
                            "path" => pax_path = Some(v),
                            "linkpath" => pax_link = Some(v),
                            "size" => pax_size = v.parse().ok(),
                            _ => {}
                        }
                    }
                    continue;
                }
                b'g' => {
                    self.read_meta(header_size)?;
                    continue;
                }
                _ => {}
            }
            let mut name = cstr(&h[0..100]);
            if &h[257..262] == b"ustar" {
                let prefix = cstr(&h[345..500]);
                if !prefix.is_empty() {
                    name = format!("{prefix}/{name}");
                }
            }
            let path = pax_path.or(long_name).unwrap_or(name);
            let link = pax_link.or(long_link).unwrap_or_else(|| cstr(&h[157..257]));
            let size = pax_size.unwrap_or(header_size);
            let kind = match typeflag {
                b'0' | 0 | b'7' => EntryKind::File,
                b'1' => EntryKind::Hardlink,
                b'2' => EntryKind::Symlink,
                b'5' => EntryKind::Dir,
                _ => EntryKind::Other,
            };
            // Only regular files carry data; others may still claim a size (skipped as data).
            self.remaining = size;
            self.padding = (BLOCK - size % BLOCK) % BLOCK;
            return Ok(Some(Entry {
                path,
                kind,
                size: if kind == EntryKind::File { size } else { 0 },
                mode: octal(&h[100..108]).unwrap_or(0) as u32 & 0o7777,
                link,
            }));
        }
    }

    fn read_data(&mut self, max: u64) -> Result<Vec<u8>, LayerError> {
        let n = self.remaining.min(max);
        let mut buf = Vec::with_capacity(n.min(16 << 20) as usize);
        let got = (&mut self.inner)
            .take(n)
            .read_to_end(&mut buf)
            .map_err(LayerError::from_io)? as u64;
        self.offset += got;
        self.remaining -= got;
        if got < n {
            return Err(LayerError::Truncated);
        }
        Ok(buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(name: &str, typeflag: u8, size: u64, link: &str) -> [u8; 512] {
        let mut h = [0u8; 512];
        h[..name.len()].copy_from_slice(name.as_bytes());
        h[100..107].copy_from_slice(b"0000644");
        h[124..135].copy_from_slice(format!("{size:011o}").as_bytes());
        h[156] = typeflag;
        h[157..157 + link.len()].copy_from_slice(link.as_bytes());
        h[257..263].copy_from_slice(b"ustar\0");
        h[263..265].copy_from_slice(b"00");
        h[148..156].copy_from_slice(b"        ");
        let sum: u64 = h.iter().map(|b| *b as u64).sum();
        h[148..155].copy_from_slice(format!("{sum:06o}\0").as_bytes());
        h
    }

    fn archive(entries: &[(&str, u8, &[u8], &str)]) -> Vec<u8> {
        let mut out = Vec::new();
        for (name, t, data, link) in entries {
            out.extend_from_slice(&header(name, *t, data.len() as u64, link));
            out.extend_from_slice(data);
            out.resize(out.len().div_ceil(512) * 512, 0);
        }
        out.extend_from_slice(&[0u8; 1024]);
        out
    }

    #[test]
    fn reads_entries_and_data() {
        let bytes = archive(&[
            ("etc/", b'5', b"", ""),
            ("etc/os-release", b'0', b"ID=alpine\n", ""),
            ("etc/link", b'2', b"", "os-release"),
        ]);
        let mut r = TarReader::new(&bytes[..]);
        let e = r.next_entry().unwrap().unwrap();
        assert_eq!((e.path.as_str(), e.kind), ("etc/", EntryKind::Dir));
        let e = r.next_entry().unwrap().unwrap();
        assert_eq!(e.size, 10);
        assert_eq!(r.read_data(100).unwrap(), b"ID=alpine\n");
        let e = r.next_entry().unwrap().unwrap();
        assert_eq!((e.kind, e.link.as_str()), (EntryKind::Symlink, "os-release"));
        assert!(r.next_entry().unwrap().is_none());
    }

    #[test]
    fn gnu_long_name_and_pax() {
        let long = "a/".repeat(80) + "file";
        let pax = "17 path=pax/name\n".to_string();
        let bytes = archive(&[
            ("././@LongLink", b'L', long.as_bytes(), ""),
            ("short", b'0', b"x", ""),
            ("PaxHeader", b'x', pax.as_bytes(), ""),
            ("ignored", b'0', b"y", ""),
        ]);
        let mut r = TarReader::new(&bytes[..]);
        assert_eq!(r.next_entry().unwrap().unwrap().path, long);
        assert_eq!(r.next_entry().unwrap().unwrap().path, "pax/name");
    }

    #[test]
    fn corrupt_and_truncated() {
        let mut bytes = archive(&[("f", b'0', b"hello", "")]);
        bytes[0] = b'g'; // checksum no longer matches
        assert!(matches!(
            TarReader::new(&bytes[..]).next_entry(),
            Err(LayerError::CorruptHeader { .. })
        ));
        let bytes = archive(&[("f", b'0', &[7u8; 2000], "")]);
        let mut r = TarReader::new(&bytes[..700]);
        r.next_entry().unwrap();
        assert!(matches!(r.read_data(5000), Err(LayerError::Truncated)));
        assert!(matches!(
            TarReader::new(&bytes[..300]).next_entry(),
            Err(LayerError::Truncated)
        ));
    }

    #[test]
    fn stream_ending_without_padding_or_end_blocks() {
        let bytes = archive(&[("a", b'0', b"12345", "")]);
        let cut = &bytes[..512 + 5];
        let mut r = TarReader::new(cut);
        r.next_entry().unwrap().unwrap();
        assert!(r.next_entry().unwrap().is_none());
        // Missing data (not just padding) is still truncation.
        let mut r = TarReader::new(&bytes[..512 + 3]);
        r.next_entry().unwrap().unwrap();
        assert!(matches!(r.next_entry(), Err(LayerError::Truncated)));
    }

    #[test]
    fn huge_long_name_is_refused() {
        let mut h = header("././@LongLink", b'L', 0, "");
        h[124..135].copy_from_slice(format!("{:011o}", 1u64 << 32).as_bytes());
        h[148..156].copy_from_slice(b"        ");
        let sum: u64 = h.iter().map(|b| *b as u64).sum();
        h[148..155].copy_from_slice(format!("{sum:06o}\0").as_bytes());
        let mut r = TarReader::new(&h[..]);
        assert!(matches!(r.next_entry(), Err(LayerError::CorruptHeader { .. })));
    }
}
