//! Berkeley DB hash files as rpm (RHEL/UBI 8, CentOS 7) keeps `var/lib/rpm/Packages`: walk
//! every hash page, follow each off-page data item's overflow chain, return the header blobs.
//! Both byte orders; every page number and length bounds-checked.

use super::DbError;

const HASH_MAGIC: u32 = 0x0006_1561;
const P_HASH_UNSORTED: u8 = 2;
const P_OVERFLOW: u8 = 7;
const P_HASH: u8 = 13;
const H_OFFPAGE: u8 = 3;
const PAGE_HEADER: usize = 26;

fn err(m: impl Into<String>) -> DbError {
    DbError(format!("rpm Packages (Berkeley DB): {}", m.into()))
}

struct Db<'a> {
    bytes: &'a [u8],
    page_size: usize,
    big_endian: bool,
}

impl<'a> Db<'a> {
    fn u32(&self, b: &[u8], at: usize) -> Option<u32> {
        let s: [u8; 4] = b.get(at..at + 4)?.try_into().ok()?;
        Some(if self.big_endian {
            u32::from_be_bytes(s)
        } else {
            u32::from_le_bytes(s)
        })
    }
    fn u16(&self, b: &[u8], at: usize) -> Option<usize> {
        let s: [u8; 2] = b.get(at..at + 2)?.try_into().ok()?;
        Some(if self.big_endian {
            u16::from_be_bytes(s)
        } else {
            u16::from_le_bytes(s)
        } as usize)
    }
    fn page(&self, n: usize) -> Option<&'a [u8]> {
        self.bytes
            .get(n.checked_mul(self.page_size)?..(n + 1).checked_mul(self.page_size)?)
    }

    fn overflow(&self, mut pgno: usize, total: usize) -> Result<Vec<u8>, DbError> {
        if total > self.bytes.len() {
            return Err(err("item longer than the file"));
        }
        let mut out = Vec::with_capacity(total);
        let mut hops = 0;
        while out.len() < total {
            hops += 1;
            let page = self
                .page(pgno)
                .ok_or_else(|| err(format!("overflow page {pgno} out of range")))?;
            if page[25] != P_OVERFLOW || hops > self.bytes.len() / self.page_size {
                return Err(err("broken overflow chain"));
            }
            let len = self.u16(page, 22).ok_or_else(|| err("short page"))?;
            let chunk = page
                .get(PAGE_HEADER..PAGE_HEADER + len)
                .ok_or_else(|| err("overflow length out of page"))?;
            out.extend_from_slice(chunk);
            pgno = self.u32(page, 16).ok_or_else(|| err("short page"))? as usize;
            if pgno == 0 && out.len() < total {
                return Err(err("overflow chain ends early"));
            }
        }
        out.truncate(total);
        Ok(out)
    }
}

/// The byte order of a Berkeley DB hash file (`Some(true)`: big-endian), `None` for other bytes.
pub fn hash_file_order(bytes: &[u8]) -> Option<bool> {
    let magic: [u8; 4] = bytes.get(12..16)?.try_into().ok()?;
    match (u32::from_le_bytes(magic), u32::from_be_bytes(magic)) {
        (HASH_MAGIC, _) => Some(false),
        (_, HASH_MAGIC) => Some(true),
        _ => None,
    }
}

pub fn package_blobs(bytes: &[u8]) -> Result<Vec<Vec<u8>>, DbError> {
    let big_endian = hash_file_order(bytes).ok_or_else(|| err("not a Berkeley DB hash file"))?;
    let mut db = Db {
        bytes,
        page_size: 0,
        big_endian,
    };
    let page_size = db.u32(bytes, 20).unwrap_or(0) as usize;
    if !(512..=65536).contains(&page_size) || !page_size.is_power_of_two() {
        return Err(err(format!("bad page size {page_size}")));
    }
    db.page_size = page_size;
    let last = db.u32(bytes, 32).unwrap_or(0) as usize;
    let pages = (bytes.len() / page_size).min(last + 1);
    let mut blobs = Vec::new();
    for n in 1..pages {
        let Some(page) = db.page(n) else { break };
        if page[25] != P_HASH && page[25] != P_HASH_UNSORTED {
            continue;
        }
        let entries = db.u16(page, 20).unwrap_or(0);
        // Items alternate key, data; data items of rpm headers live off-page.
        for i in (1..entries).step_by(2) {
            let Some(off) = db.u16(page, PAGE_HEADER + 2 * i) else {
                break;
            };
            if page.get(off) != Some(&H_OFFPAGE) {
                continue;
            }
            let (Some(pgno), Some(len)) = (db.u32(page, off + 4), db.u32(page, off + 8)) else {
                return Err(err("truncated off-page item"));
            };
            blobs.push(db.overflow(pgno as usize, len as usize)?);
        }
    }
    Ok(blobs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_garbage() {
        assert!(package_blobs(b"").is_err());
        assert!(package_blobs(&[0u8; 4096]).is_err());
        let mut meta = vec![0u8; 8192];
        meta[12..16].copy_from_slice(&HASH_MAGIC.to_le_bytes());
        meta[20..24].copy_from_slice(&100u32.to_le_bytes());
        assert!(package_blobs(&meta).is_err(), "bad page size");
    }
}
