//! The rpm header blob as stored in rpmdb: `il` index entries and `dl` data bytes, big-endian.
//! Every offset is bounds-checked; the blob is untrusted.

use super::DbError;
use crate::catalog::RawPackage;

pub(crate) const TAG_NAME: u32 = 1000;
const TAG_VERSION: u32 = 1001;
const TAG_RELEASE: u32 = 1002;
const TAG_EPOCH: u32 = 1003;
const TAG_ARCH: u32 = 1022;
const TAG_SOURCERPM: u32 = 1044;
const TAG_DIRINDEXES: u32 = 1116;
const TAG_BASENAMES: u32 = 1117;
const TAG_DIRNAMES: u32 = 1118;
const TAG_MODULARITYLABEL: u32 = 5096;

const TYPE_INT32: u32 = 4;
const TYPE_STRING: u32 = 6;
const TYPE_STRING_ARRAY: u32 = 8;
const TYPE_I18NSTRING: u32 = 9;

/// rpm's own limits on header size (lib/header.c: 0xffff entries, 256 MiB data).
const MAX_ENTRIES: usize = 0xffff;
const MAX_DATA: usize = 256 << 20;

pub struct Header<'a> {
    entries: Vec<(u32, u32, usize, u32)>,
    data: &'a [u8],
}

fn be32(b: &[u8], at: usize) -> Option<u32> {
    b.get(at..at + 4)
        .map(|s| u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
}

impl<'a> Header<'a> {
    pub fn parse(blob: &'a [u8]) -> Result<Header<'a>, DbError> {
        let err = |m: &str| DbError(format!("rpm header: {m}"));
        let il = be32(blob, 0).ok_or_else(|| err("too short"))? as usize;
        let dl = be32(blob, 4).ok_or_else(|| err("too short"))? as usize;
        if il > MAX_ENTRIES || dl > MAX_DATA {
            return Err(err("size fields out of range"));
        }
        let data_start = 8 + il * 16;
        let data = blob
            .get(data_start..data_start + dl)
            .ok_or_else(|| err("truncated"))?;
        let mut entries = Vec::with_capacity(il);
        for i in 0..il {
            let at = 8 + i * 16;
            let (Some(tag), Some(ty), Some(off), Some(count)) = (
                be32(blob, at),
                be32(blob, at + 4),
                be32(blob, at + 8),
                be32(blob, at + 12),
            ) else {
                return Err(err("truncated index"));
            };
            entries.push((tag, ty, off as usize, count));
        }
        Ok(Header { entries, data })
    }

    fn entry(&self, tag: u32) -> Option<(u32, usize, u32)> {
        self.entries.iter().find(|e| e.0 == tag).map(|e| (e.1, e.2, e.3))
    }

    pub fn string(&self, tag: u32) -> Option<&'a str> {
        let (ty, off, _) = self.entry(tag)?;
        if !matches!(ty, TYPE_STRING | TYPE_STRING_ARRAY | TYPE_I18NSTRING) {
            return None;
        }
        let rest = self.data.get(off..)?;
        let end = rest.iter().position(|b| *b == 0)?;
        std::str::from_utf8(&rest[..end]).ok()
    }

    /// A string array; `None` when absent, of another type, or running past the data.
    pub fn strings(&self, tag: u32) -> Option<Vec<&'a str>> {
        let (ty, off, count) = self.entry(tag)?;
        if ty != TYPE_STRING_ARRAY || count as usize > self.data.len() {
            return None;
        }
        let mut rest = self.data.get(off..)?;
        let mut out = Vec::with_capacity(count as usize);
        for _ in 0..count {
            let end = rest.iter().position(|b| *b == 0)?;
            out.push(std::str::from_utf8(&rest[..end]).ok()?);
            rest = &rest[end + 1..];
        }
        Some(out)
    }

    /// An int32 array; `None` when absent, of another type, or running past the data.
    pub fn int32s(&self, tag: u32) -> Option<Vec<u32>> {
        let (ty, off, count) = self.entry(tag)?;
        if ty != TYPE_INT32 || (count as usize).checked_mul(4)? > self.data.len() {
            return None;
        }
        (0..count as usize)
            .map(|i| be32(self.data, off + 4 * i))
            .collect()
    }

    /// The package's files (`DIRNAMES[DIRINDEXES[i]] + BASENAMES[i]`, root-relative): empty
    /// for a package without files (rpm omits the tags), `None` when the tags disagree.
    pub fn files(&self) -> Option<Vec<String>> {
        let Some(base) = self.strings(TAG_BASENAMES) else {
            return self.entry(TAG_BASENAMES).is_none().then(Vec::new);
        };
        let dirs = self.strings(TAG_DIRNAMES)?;
        let idx = self.int32s(TAG_DIRINDEXES)?;
        if idx.len() != base.len() {
            return None;
        }
        base.iter()
            .zip(idx)
            .map(|(b, i)| {
                Some(
                    format!("{}{b}", dirs.get(i as usize)?)
                        .trim_start_matches('/')
                        .to_string(),
                )
            })
            .collect()
    }

    pub fn int32(&self, tag: u32) -> Option<u32> {
        let (ty, off, count) = self.entry(tag)?;
        if ty != TYPE_INT32 || count == 0 {
            return None;
        }
        be32(self.data, off)
    }

    /// The package this header describes; `None` without name/version/release or for
    /// `gpg-pubkey` entries, which are keys, not software.
    pub fn package(&self) -> Option<RawPackage> {
        let name = self.string(TAG_NAME)?;
        let version = self.string(TAG_VERSION)?;
        let release = self.string(TAG_RELEASE)?;
        if name == "gpg-pubkey" || name.is_empty() || version.is_empty() {
            return None;
        }
        let mut p = RawPackage::from_rpm(
            name,
            self.int32(TAG_EPOCH),
            version,
            release,
            self.string(TAG_ARCH).unwrap_or(""),
            self.string(TAG_SOURCERPM),
        );
        p.files = self.files();
        p.module = self
            .string(TAG_MODULARITYLABEL)
            .filter(|m| !m.is_empty())
            .map(str::to_string);
        Some(p)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Builds a header blob the way rpm lays it out (used by the database tests too).
    pub fn blob(fields: &[(u32, u32, &[u8])]) -> Vec<u8> {
        let mut index = Vec::new();
        let mut data = Vec::new();
        for (tag, ty, value) in fields {
            if *ty == TYPE_INT32 {
                while data.len() % 4 != 0 {
                    data.push(0);
                }
            }
            index.extend_from_slice(&tag.to_be_bytes());
            index.extend_from_slice(&ty.to_be_bytes());
            index.extend_from_slice(&(data.len() as u32).to_be_bytes());
            index.extend_from_slice(&1u32.to_be_bytes());
            data.extend_from_slice(value);
        }
        let mut out = (fields.len() as u32).to_be_bytes().to_vec();
        out.extend_from_slice(&(data.len() as u32).to_be_bytes());
        out.extend(index);
        out.extend(data);
        out
    }

    pub fn package_blob(name: &str, epoch: Option<u32>, v: &str, r: &str, src: &str) -> Vec<u8> {
        let s = |x: &str| format!("{x}\0").into_bytes();
        let mut f: Vec<(u32, u32, Vec<u8>)> = vec![
            (TAG_NAME, TYPE_STRING, s(name)),
            (TAG_VERSION, TYPE_STRING, s(v)),
            (TAG_RELEASE, TYPE_STRING, s(r)),
            (TAG_ARCH, TYPE_STRING, s("x86_64")),
            (TAG_SOURCERPM, TYPE_STRING, s(src)),
        ];
        if let Some(e) = epoch {
            f.push((TAG_EPOCH, TYPE_INT32, e.to_be_bytes().to_vec()));
        }
        let refs: Vec<(u32, u32, &[u8])> = f.iter().map(|(a, b, c)| (*a, *b, c.as_slice())).collect();
        blob(&refs)
    }

    #[test]
    fn parses_and_bounds_checks() {
        let b = package_blob(
            "openssl-libs",
            Some(1),
            "3.0.7",
            "27.el9",
            "openssl-3.0.7-27.el9.src.rpm",
        );
        let p = Header::parse(&b).unwrap().package().unwrap();
        assert_eq!(p.version, "1:3.0.7-27.el9");
        assert_eq!(p.source_name, "openssl");
        assert_eq!(p.source_version, "1:3.0.7-27.el9");
        for cut in [0, 4, 9, b.len() - 1] {
            assert!(
                Header::parse(&b[..cut]).is_err() || Header::parse(&b[..cut]).unwrap().package().is_none()
            );
        }
        let mut bad = b.clone();
        bad[0..4].copy_from_slice(&0xffff_ffffu32.to_be_bytes());
        assert!(Header::parse(&bad).is_err());
    }
}
