//! A read-only walker for the one table rpm keeps in `rpmdb.sqlite` (`Packages(hnum, blob)`),
//! over the database bytes in memory: no SQLite library, no side files, every page and
//! pointer bounds-checked, cycles refused. Reads the main file only (rpm checkpoints its WAL
//! when it closes the database).

use super::DbError;
use std::collections::HashSet;

struct Db<'a> {
    bytes: &'a [u8],
    page_size: usize,
    usable: usize,
    pages: usize,
}

const MAX_DEPTH: usize = 32;

fn err(m: impl Into<String>) -> DbError {
    DbError(format!("rpmdb.sqlite: {}", m.into()))
}

fn varint(b: &[u8], mut at: usize) -> Option<(u64, usize)> {
    let mut v: u64 = 0;
    for i in 0..9 {
        let byte = *b.get(at)?;
        at += 1;
        if i == 8 {
            return Some(((v << 8) | byte as u64, at));
        }
        v = (v << 7) | (byte & 0x7f) as u64;
        if byte & 0x80 == 0 {
            return Some((v, at));
        }
    }
    None
}

fn be16(b: &[u8], at: usize) -> Option<usize> {
    b.get(at..at + 2)
        .map(|s| u16::from_be_bytes([s[0], s[1]]) as usize)
}
fn be32(b: &[u8], at: usize) -> Option<usize> {
    b.get(at..at + 4)
        .map(|s| u32::from_be_bytes([s[0], s[1], s[2], s[3]]) as usize)
}

/// A column value we care about.
#[derive(Debug)]
enum Value<'a> {
    Int(i64),
    Text(&'a [u8]),
    Blob(&'a [u8]),
    Other,
}

fn record(payload: &[u8]) -> Option<Vec<Value<'_>>> {
    let (header_len, mut at) = varint(payload, 0)?;
    let header_len = header_len as usize;
    if header_len > payload.len() {
        return None;
    }
    let mut types = Vec::new();
    while at < header_len {
        let (t, next) = varint(payload, at)?;
        types.push(t);
        at = next;
    }
    let mut body = header_len;
    let mut out = Vec::new();
    for t in types {
        let (len, value) = match t {
            0 | 8 | 9 => (
                0,
                match t {
                    8 => Value::Int(0),
                    9 => Value::Int(1),
                    _ => Value::Other,
                },
            ),
            1..=6 => {
                let n = [0, 1, 2, 3, 4, 6, 8][t as usize];
                let bytes = payload.get(body..body + n)?;
                let mut v: i64 = if bytes[0] & 0x80 != 0 { -1 } else { 0 };
                for b in bytes {
                    v = (v << 8) | *b as i64;
                }
                (n, Value::Int(v))
            }
            7 => (8, Value::Other),
            t if t >= 12 && t % 2 == 0 => {
                let n = ((t - 12) / 2) as usize;
                (n, Value::Blob(payload.get(body..body.checked_add(n)?)?))
            }
            t if t >= 13 => {
                let n = ((t - 13) / 2) as usize;
                (n, Value::Text(payload.get(body..body.checked_add(n)?)?))
            }
            _ => (0, Value::Other),
        };
        body = body.checked_add(len)?;
        out.push(value);
    }
    Some(out)
}

impl<'a> Db<'a> {
    fn open(bytes: &'a [u8]) -> Result<Self, DbError> {
        if !bytes.starts_with(b"SQLite format 3\0") || bytes.len() < 100 {
            return Err(err("not an SQLite database"));
        }
        let raw = be16(bytes, 16).ok_or_else(|| err("short header"))?;
        let page_size = if raw == 1 { 65536 } else { raw };
        if !(512..=65536).contains(&page_size) || !page_size.is_power_of_two() {
            return Err(err(format!("bad page size {page_size}")));
        }
        let reserved = bytes[20] as usize;
        let usable = page_size
            .checked_sub(reserved)
            .filter(|u| *u >= 480)
            .ok_or_else(|| err("bad reserved size"))?;
        Ok(Db {
            bytes,
            page_size,
            usable,
            pages: bytes.len() / page_size,
        })
    }

    fn page(&self, n: usize) -> Result<&'a [u8], DbError> {
        if n == 0 || n > self.pages {
            return Err(err(format!("page {n} out of range")));
        }
        Ok(&self.bytes[(n - 1) * self.page_size..n * self.page_size])
    }

    /// Collects the full payload of every row of the table b-tree rooted at `root`.
    fn table_rows(&self, root: usize) -> Result<Vec<Vec<u8>>, DbError> {
        let mut rows = Vec::new();
        let mut visited = HashSet::new();
        self.walk(root, 0, &mut visited, &mut rows)?;
        Ok(rows)
    }

    fn walk(
        &self,
        n: usize,
        depth: usize,
        visited: &mut HashSet<usize>,
        rows: &mut Vec<Vec<u8>>,
    ) -> Result<(), DbError> {
        if depth > MAX_DEPTH || !visited.insert(n) {
            return Err(err("b-tree cycle or too deep"));
        }
        let page = self.page(n)?;
        let h = if n == 1 { 100 } else { 0 };
        let kind = *page.get(h).ok_or_else(|| err("short page"))?;
        let cells = be16(page, h + 3).ok_or_else(|| err("short page"))?;
        let header_len = match kind {
            0x05 => 12,
            0x0d => 8,
            k => return Err(err(format!("page {n}: not a table b-tree page (type {k:#x})"))),
        };
        for i in 0..cells {
            let ptr = be16(page, h + header_len + 2 * i).ok_or_else(|| err("bad cell pointer"))?;
            if ptr >= self.usable {
                return Err(err("cell pointer out of page"));
            }
            if kind == 0x05 {
                let child = be32(page, ptr).ok_or_else(|| err("bad child pointer"))?;
                self.walk(child, depth + 1, visited, rows)?;
            } else {
                rows.push(self.leaf_payload(page, ptr)?);
            }
        }
        if kind == 0x05 {
            let right = be32(page, h + 8).ok_or_else(|| err("bad right pointer"))?;
            self.walk(right, depth + 1, visited, rows)?;
        }
        Ok(())
    }

    fn leaf_payload(&self, page: &[u8], at: usize) -> Result<Vec<u8>, DbError> {
        let (p, at) = varint(page, at).ok_or_else(|| err("bad cell"))?;
        let (_rowid, at) = varint(page, at).ok_or_else(|| err("bad cell"))?;
        let p = p as usize;
        if p > self.bytes.len() {
            return Err(err("payload larger than the database"));
        }
        let u = self.usable;
        let x = u - 35;
        let local = if p <= x {
            p
        } else {
            let m = ((u - 12) * 32 / 255) - 23;
            let k = m + ((p - m) % (u - 4));
            if k <= x {
                k
            } else {
                m
            }
        };
        let mut out = page
            .get(at..at + local)
            .ok_or_else(|| err("cell overruns page"))?
            .to_vec();
        let mut next = if local < p {
            be32(page, at + local).ok_or_else(|| err("bad overflow pointer"))?
        } else {
            0
        };
        let mut hops = 0;
        while out.len() < p {
            hops += 1;
            if next == 0 || hops > self.pages {
                return Err(err("overflow chain broken"));
            }
            let ov = self.page(next)?;
            next = be32(ov, 0).ok_or_else(|| err("bad overflow page"))?;
            let take = (p - out.len()).min(u - 4);
            out.extend_from_slice(ov.get(4..4 + take).ok_or_else(|| err("bad overflow page"))?);
        }
        Ok(out)
    }
}

/// Header blobs of every row in the `Packages` table.
pub fn package_blobs(bytes: &[u8]) -> Result<Vec<Vec<u8>>, DbError> {
    let db = Db::open(bytes)?;
    let mut root = None;
    for row in db.table_rows(1)? {
        let Some(cols) = record(&row) else { continue };
        if let [Value::Text(b"table"), Value::Text(b"Packages"), _, Value::Int(r), ..] = cols.as_slice() {
            root = Some(*r as usize);
        }
    }
    let root = root.ok_or_else(|| err("no Packages table"))?;
    let mut blobs = Vec::new();
    for row in db.table_rows(root)? {
        let Some(cols) = record(&row) else { continue };
        if let Some(Value::Blob(b)) = cols.iter().find(|v| matches!(v, Value::Blob(_))) {
            blobs.push(b.to_vec());
        }
    }
    Ok(blobs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_garbage() {
        assert!(package_blobs(b"not sqlite").is_err());
        let mut fake = b"SQLite format 3\0".to_vec();
        fake.resize(100, 0);
        assert!(package_blobs(&fake).is_err());
    }

    #[test]
    fn varints() {
        assert_eq!(varint(&[0x05], 0), Some((5, 1)));
        assert_eq!(varint(&[0x81, 0x00], 0), Some((128, 2)));
        assert_eq!(varint(&[0xff; 9], 0).map(|v| v.1), Some(9));
        assert_eq!(varint(&[0x81], 0), None);
    }
}
