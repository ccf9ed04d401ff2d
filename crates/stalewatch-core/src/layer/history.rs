//! Earlier versions of the files a tree tracks (`Limits::history`: the package databases):
//! when a layer replaces or hides one, the version it had is kept with the layer that wrote
//! it, so a cataloger can tell in which layer each package first appeared. Bounded: past
//! `MAX_HISTORY_BYTES` a file's history is marked lost rather than kept.

use std::collections::BTreeMap;
use std::sync::Arc;

/// Bytes of earlier versions kept per image, at most: real images rewrite their package
/// database a few times (a few MiB each); a hostile one rewriting 256 MiB per layer must not
/// cost memory per layer.
pub const MAX_HISTORY_BYTES: u64 = 256 << 20;

/// One earlier state of a file: its bytes from `layer` on, or `None` where `layer` hid it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Version {
    pub layer: Arc<str>,
    pub bytes: Option<Vec<u8>>,
}

#[derive(Debug, Default, Clone)]
pub struct History {
    versions: BTreeMap<String, Vec<Version>>,
    /// Files whose history went over the bound (their earlier versions are unknown).
    lost: std::collections::BTreeSet<String>,
    bytes: u64,
}

impl History {
    /// Keeps the version of `path` a layer just replaced or hid.
    pub fn retire(&mut self, path: &str, written_by: Arc<str>, bytes: Vec<u8>) {
        if self.lost.contains(path) {
            return;
        }
        if self.bytes + bytes.len() as u64 > MAX_HISTORY_BYTES {
            if let Some(v) = self.versions.remove(path) {
                self.bytes -= v
                    .iter()
                    .filter_map(|v| v.bytes.as_ref())
                    .map(|b| b.len() as u64)
                    .sum::<u64>();
            }
            self.lost.insert(path.to_string());
            return;
        }
        self.bytes += bytes.len() as u64;
        self.versions.entry(path.to_string()).or_default().push(Version {
            layer: written_by,
            bytes: Some(bytes),
        });
    }

    /// Records that `layer` hid `path` (a whiteout, an opaque directory).
    pub fn hidden(&mut self, path: &str, layer: Arc<str>) {
        if let Some(v) = self.versions.get_mut(path) {
            v.push(Version { layer, bytes: None });
        }
    }

    /// The earlier versions of `path`, oldest first; `None` when they went over the bound.
    pub fn of(&self, path: &str) -> Option<&[Version]> {
        if self.lost.contains(path) {
            return None;
        }
        Some(self.versions.get(path).map_or(&[], Vec::as_slice))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_versions_in_order_and_marks_a_file_lost_past_the_bound() {
        let mut h = History::default();
        h.retire("db", Arc::from("l1"), b"one".to_vec());
        h.hidden("db", Arc::from("l2"));
        h.hidden("other", Arc::from("l2"));
        let v = h.of("db").unwrap();
        assert_eq!(v.len(), 2);
        assert_eq!((&*v[0].layer, v[0].bytes.as_deref()), ("l1", Some(&b"one"[..])));
        assert_eq!((&*v[1].layer, v[1].bytes.as_deref()), ("l2", None));
        assert_eq!(h.of("other"), Some(&[][..]));
        h.retire("db", Arc::from("l3"), vec![0; MAX_HISTORY_BYTES as usize]);
        assert_eq!(h.of("db"), None);
        assert_eq!(h.bytes, 0);
    }
}
