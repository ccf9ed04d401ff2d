//! The on-disk index format: a header, postcard blobs, and a meta blob that maps
//! each release ecosystem to a sorted name table. A reader fetches only the header, the meta,
//! the name table of the releases it is asked about and the entries of the packages it looks
//! up — so a scan of one Alpine image reads a few KiB of an index of megabytes.
//!
//! ```text
//! [0..6)  "SWIDX\0"   [6..8) format version (u16 LE)   [8..16) meta offset   [16..24) meta length
//! blobs:  per package  postcard(Vec<AffectedEntry>)
//!         per release  postcard(Vec<(name, BlobRef)>), sorted by name
//!         per advisory postcard(Advisory); the advisory table: 12 bytes each (u64 offset, u32 len, LE)
//!         aliases      postcard(Vec<(id, Severity)>), sorted: best severity known per id/alias
//! meta:   postcard(IndexMeta)
//! ```

use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, OnceLock};

use super::error::IndexError;
use super::index::{Advisory, AffectedEntry, BuildStats, EcosystemIndex};
use super::severity::Severity;

const MAGIC: &[u8; 6] = b"SWIDX\0";
/// Bumped whenever the layout changes; an older file is rebuilt, never misread.
// 3: PyPI package names are stored PEP 503-normalised.
// 4: advisories carry their CVE ids (id, aliases, upstream and related).
// 5: the binary packages records list, by source (`binary:BINARY:SOURCE`, no entries).
// 6: affected entries carry their RPM module stream.
pub const FORMAT_VERSION: u16 = 6;
const HEADER_LEN: u64 = 24;
const ADVISORY_SLOT: u64 = 12;
/// No single blob of a sane index is this large; a bigger length means corruption.
const MAX_BLOB: u64 = 256 << 20;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlobRef {
    pub offset: u64,
    pub len: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct IndexMeta {
    pub ecosystem: String,
    pub stats: BuildStats,
    /// Release ecosystem (`Alpine:v3.20`) → its name table, plus its entry count.
    pub releases: BTreeMap<String, (BlobRef, u64)>,
    pub advisory_table: BlobRef,
    pub advisory_count: u32,
    pub alias_severity: BlobRef,
}

/// Random access to an index's bytes (a file in the shell, memory in tests).
pub trait ByteSource: Send + Sync {
    fn size(&self) -> u64;
    fn read_at(&self, offset: u64, len: usize) -> std::io::Result<Vec<u8>>;
}

impl ByteSource for Vec<u8> {
    fn size(&self) -> u64 {
        self.len() as u64
    }
    fn read_at(&self, offset: u64, len: usize) -> std::io::Result<Vec<u8>> {
        let start = usize::try_from(offset).map_err(std::io::Error::other)?;
        self.get(start..start.saturating_add(len))
            .map(<[u8]>::to_vec)
            .ok_or_else(|| std::io::Error::from(std::io::ErrorKind::UnexpectedEof))
    }
}

fn put<T: Serialize>(out: &mut Vec<u8>, value: &T) -> BlobRef {
    let offset = out.len() as u64;
    // postcard cannot fail on these plain types.
    out.extend(postcard::to_stdvec(value).unwrap_or_default());
    BlobRef {
        offset,
        len: out.len() as u64 - offset,
    }
}

/// Serialises an index into the file format.
pub fn write(index: &EcosystemIndex) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 << 20);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    out.extend_from_slice(&[0u8; 16]);

    let mut releases = BTreeMap::new();
    for (eco, names) in &index.packages {
        let mut table: Vec<(&str, BlobRef)> = Vec::with_capacity(names.len());
        let mut count = 0;
        for (name, entries) in names {
            table.push((name, put(&mut out, entries)));
            count += entries.len() as u64;
        }
        releases.insert(eco.clone(), (put(&mut out, &table), count));
    }
    let slots: Vec<BlobRef> = index.advisories.iter().map(|a| put(&mut out, a)).collect();
    let table_offset = out.len() as u64;
    for s in &slots {
        out.extend_from_slice(&s.offset.to_le_bytes());
        out.extend_from_slice(&(s.len as u32).to_le_bytes());
    }
    let advisory_table = BlobRef {
        offset: table_offset,
        len: out.len() as u64 - table_offset,
    };

    let mut best: BTreeMap<&str, Severity> = BTreeMap::new();
    for entries in index.packages.values().flat_map(|m| m.values()) {
        for e in entries.iter().filter(|e| e.severity != Severity::Unknown) {
            let adv = &index.advisories[e.advisory as usize];
            for key in std::iter::once(&adv.id).chain(adv.aliases.iter()) {
                let slot = best.entry(key).or_default();
                *slot = (*slot).max(e.severity);
            }
        }
    }
    let aliases: Vec<(&str, Severity)> = best.into_iter().collect();
    let alias_severity = put(&mut out, &aliases);

    let meta = IndexMeta {
        ecosystem: index.ecosystem.clone(),
        stats: index.stats.clone(),
        releases,
        advisory_table,
        advisory_count: slots.len() as u32,
        alias_severity,
    };
    let meta_ref = put(&mut out, &meta);
    out[8..16].copy_from_slice(&meta_ref.offset.to_le_bytes());
    out[16..24].copy_from_slice(&meta_ref.len.to_le_bytes());
    out
}

type NameTable = Arc<Vec<(String, BlobRef)>>;
/// One package's decoded entries, shared by every lookup that asks for them.
pub type PackageEntries = Arc<Vec<AffectedEntry>>;

/// Lazy reader of one index file.
pub struct IndexReader {
    source: Box<dyn ByteSource>,
    meta: IndexMeta,
    tables: Mutex<HashMap<String, NameTable>>,
    aliases: OnceLock<Result<Vec<(String, Severity)>, String>>,
    /// Advisories already decoded, shared by every finding that names them.
    advisories: Mutex<HashMap<u32, Arc<Advisory>>>,
    /// Entries already decoded, by (release ecosystem, package): a node's images share most
    /// of their packages, so a re-match decodes each once.
    entries: Mutex<HashMap<(String, String), PackageEntries>>,
}

impl std::fmt::Debug for IndexReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "IndexReader({})", self.meta.ecosystem)
    }
}

fn corrupt(m: impl std::fmt::Display) -> IndexError {
    IndexError::Corrupt(m.to_string())
}

impl IndexReader {
    pub fn open(source: Box<dyn ByteSource>) -> Result<Self, IndexError> {
        let head = source
            .read_at(0, HEADER_LEN as usize)
            .map_err(|_| IndexError::BadMagic)?;
        if &head[..6] != MAGIC {
            return Err(IndexError::BadMagic);
        }
        let found = u16::from_le_bytes([head[6], head[7]]);
        if found != FORMAT_VERSION {
            return Err(IndexError::Version {
                found,
                expected: FORMAT_VERSION,
            });
        }
        let word = |at: usize| u64::from_le_bytes(head[at..at + 8].try_into().unwrap_or([0; 8]));
        let meta_ref = BlobRef {
            offset: word(8),
            len: word(16),
        };
        let mut reader = IndexReader {
            source,
            meta: IndexMeta::default(),
            tables: Mutex::new(HashMap::new()),
            aliases: OnceLock::new(),
            advisories: Mutex::new(HashMap::new()),
            entries: Mutex::new(HashMap::new()),
        };
        reader.meta = reader.decode(meta_ref, "meta")?;
        let t = reader.meta.advisory_table;
        if t.len != reader.meta.advisory_count as u64 * ADVISORY_SLOT {
            return Err(corrupt("advisory table size"));
        }
        reader.check(t)?;
        Ok(reader)
    }

    fn check(&self, b: BlobRef) -> Result<(), IndexError> {
        let end = b
            .offset
            .checked_add(b.len)
            .ok_or_else(|| corrupt("blob offset overflow"))?;
        if b.offset < HEADER_LEN || end > self.source.size() || b.len > MAX_BLOB {
            return Err(corrupt(format!("blob {}+{} outside the file", b.offset, b.len)));
        }
        Ok(())
    }

    fn bytes(&self, b: BlobRef) -> Result<Vec<u8>, IndexError> {
        self.check(b)?;
        self.source
            .read_at(b.offset, b.len as usize)
            .map_err(|e| corrupt(format!("read: {e}")))
    }

    fn decode<T: for<'de> Deserialize<'de>>(&self, b: BlobRef, what: &str) -> Result<T, IndexError> {
        postcard::from_bytes(&self.bytes(b)?).map_err(|e| corrupt(format!("{what}: {e}")))
    }

    pub fn meta(&self) -> &IndexMeta {
        &self.meta
    }

    fn table(&self, ecosystem: &str) -> Result<Option<NameTable>, IndexError> {
        let Some((b, _)) = self.meta.releases.get(ecosystem) else {
            return Ok(None);
        };
        if let Some(t) = self
            .tables
            .lock()
            .map_err(|_| corrupt("poisoned"))?
            .get(ecosystem)
        {
            return Ok(Some(t.clone()));
        }
        let t: NameTable = Arc::new(self.decode(*b, "name table")?);
        self.tables
            .lock()
            .map_err(|_| corrupt("poisoned"))?
            .insert(ecosystem.to_string(), t.clone());
        Ok(Some(t))
    }

    /// The source packages the records of one release name a binary package under (their
    /// `binaries` lists), sorted.
    pub fn sources_of_binary(&self, ecosystem: &str, binary: &str) -> Result<Vec<String>, IndexError> {
        let Some(table) = self.table(ecosystem)? else {
            return Ok(Vec::new());
        };
        let prefix = format!("{}{binary}:", super::index::BINARY_KEY);
        let start = table.partition_point(|(n, _)| n.as_str() < prefix.as_str());
        Ok(table[start..]
            .iter()
            .map_while(|(n, _)| n.strip_prefix(prefix.as_str()))
            .map(str::to_string)
            .collect())
    }

    /// The affected entries of one package of one release ecosystem.
    pub fn entries(&self, ecosystem: &str, name: &str) -> Result<PackageEntries, IndexError> {
        let key = (ecosystem.to_string(), name.to_string());
        if let Some(e) = self.entries.lock().map_err(|_| corrupt("poisoned"))?.get(&key) {
            return Ok(e.clone());
        }
        let entries: Vec<AffectedEntry> = match self.table(ecosystem)? {
            Some(table) => match table.binary_search_by(|(n, _)| n.as_str().cmp(name)) {
                Ok(i) => self.decode(table[i].1, "entries")?,
                Err(_) => Vec::new(),
            },
            None => Vec::new(),
        };
        if entries.iter().any(|e| e.advisory >= self.meta.advisory_count) {
            return Err(corrupt("entry points past the advisory table"));
        }
        let entries = Arc::new(entries);
        // Only hits are kept: a miss costs one binary search again, and an inventory of
        // hundreds of thousands of unaffected packages must not grow this map.
        if !entries.is_empty() {
            self.entries
                .lock()
                .map_err(|_| corrupt("poisoned"))?
                .insert(key, entries.clone());
        }
        Ok(entries)
    }

    pub fn advisory(&self, idx: u32) -> Result<Arc<Advisory>, IndexError> {
        if idx >= self.meta.advisory_count {
            return Err(corrupt("advisory index out of range"));
        }
        if let Some(a) = self.advisories.lock().map_err(|_| corrupt("poisoned"))?.get(&idx) {
            return Ok(a.clone());
        }
        let slot = self.bytes(BlobRef {
            offset: self.meta.advisory_table.offset + idx as u64 * ADVISORY_SLOT,
            len: ADVISORY_SLOT,
        })?;
        let offset = u64::from_le_bytes(slot[0..8].try_into().unwrap_or([0; 8]));
        let len = u32::from_le_bytes(slot[8..12].try_into().unwrap_or([0; 4])) as u64;
        let adv: Arc<Advisory> = Arc::new(self.decode(BlobRef { offset, len }, "advisory")?);
        self.advisories
            .lock()
            .map_err(|_| corrupt("poisoned"))?
            .insert(idx, adv.clone());
        Ok(adv)
    }

    /// The best severity this index gives an advisory id or alias.
    pub fn alias_severity(&self, id: &str) -> Result<Option<Severity>, IndexError> {
        let table = self.aliases.get_or_init(|| {
            self.decode(self.meta.alias_severity, "alias table")
                .map_err(|e| e.to_string())
        });
        let table = table.as_ref().map_err(corrupt)?;
        Ok(table
            .binary_search_by(|(a, _)| a.as_str().cmp(id))
            .ok()
            .map(|i| table[i].1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn corrupt_lengths_are_refused() {
        let mut idx = EcosystemIndex::new("Alpine");
        idx.add_record_json(br#"{"id":"ALPINE-CVE-2024-9143","upstream":["CVE-2024-9143"],"affected":[{"package":{"ecosystem":"Alpine:v3.20","name":"openssl"},"ranges":[{"type":"ECOSYSTEM","events":[{"introduced":"0"},{"fixed":"3.3.2-r1"}]}]}]}"#);
        let good = write(&idx);
        assert!(IndexReader::open(Box::new(good.clone())).is_ok());
        let mut bad = good.clone();
        bad[16..24].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(IndexReader::open(Box::new(bad)).is_err());
        let mut bad = good.clone();
        let n = bad.len();
        bad[8..16].copy_from_slice(&(n as u64 - 3).to_le_bytes());
        assert!(IndexReader::open(Box::new(bad)).is_err());
        // Flipping bytes anywhere never panics.
        for i in (0..good.len()).step_by(7) {
            let mut b = good.clone();
            b[i] ^= 0xff;
            if let Ok(r) = IndexReader::open(Box::new(b)) {
                let _ = r.entries("Alpine:v3.20", "openssl");
                let _ = r.advisory(0);
                let _ = r.alias_severity("CVE-2024-9143");
            }
        }
    }
}
