//! The indexes a scan consults: readers of several ecosystems, queried by the matcher.

use std::collections::BTreeMap;

use super::error::IndexError;
use super::file::{ByteSource, IndexReader, PackageEntries};
use super::index::EcosystemIndex;
use super::severity::Severity;

#[derive(Debug, Default)]
pub struct IndexSet {
    readers: BTreeMap<String, IndexReader>,
}

impl IndexSet {
    pub fn new(readers: impl IntoIterator<Item = IndexReader>) -> Self {
        IndexSet {
            readers: readers
                .into_iter()
                .map(|r| (r.meta().ecosystem.clone(), r))
                .collect(),
        }
    }

    /// Serialises in-memory indexes and opens them (tests, and small built-in data).
    pub fn from_indexes(indexes: Vec<EcosystemIndex>) -> Result<Self, IndexError> {
        let readers = indexes
            .iter()
            .map(|i| IndexReader::open(Box::new(super::file::write(i)) as Box<dyn ByteSource>))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self::new(readers))
    }

    pub fn readers(&self) -> impl Iterator<Item = &IndexReader> {
        self.readers.values()
    }

    pub fn get(&self, top_ecosystem: &str) -> Option<&IndexReader> {
        self.readers.get(top_ecosystem)
    }

    /// Release ecosystems present, e.g. every `Red Hat:…` product stream.
    pub fn full_ecosystems(&self) -> impl Iterator<Item = &str> {
        self.readers
            .values()
            .flat_map(|r| r.meta().releases.keys().map(String::as_str))
    }

    /// The entries for a package, with the reader that owns them; `None` when none.
    pub fn lookup(
        &self,
        ecosystem: &str,
        name: &str,
    ) -> Result<Option<(&IndexReader, PackageEntries)>, IndexError> {
        let Some(reader) = self.readers.get(crate::ecosystem::base(ecosystem)) else {
            return Ok(None);
        };
        let entries = reader.entries(ecosystem, name)?;
        Ok((!entries.is_empty()).then_some((reader, entries)))
    }

    /// The source packages a release's records name a binary under (see
    /// [`IndexReader::sources_of_binary`]).
    pub fn sources_of_binary(&self, ecosystem: &str, binary: &str) -> Result<Vec<String>, IndexError> {
        match self.readers.get(crate::ecosystem::base(ecosystem)) {
            Some(r) => r.sources_of_binary(ecosystem, binary),
            None => Ok(Vec::new()),
        }
    }

    /// The highest severity any loaded index gives one of these ids.
    pub fn severity_by_alias<'a>(
        &self,
        ids: impl IntoIterator<Item = &'a String> + Clone,
    ) -> Result<Severity, IndexError> {
        let mut best = Severity::Unknown;
        for r in self.readers.values() {
            for id in ids.clone() {
                if let Some(s) = r.alias_severity(id)? {
                    best = best.max(s);
                }
            }
        }
        Ok(best)
    }
}
