//! One way to keep a small JSON state file (what was told, announced, first seen, found):
//! versioned (`{"version": N, "data": …}`; a file from before versions is read as it is),
//! loaded as present / missing / corrupt / of another version, where a file that cannot be used
//! is kept aside (renamed, never deleted), logged and counted
//! (`stalewatch_state_load_errors_total{file,reason}`) before the agent starts afresh; saved
//! atomically, a failure counted (`stalewatch_state_write_errors_total{file}`), a value that
//! does not serialise never written.

use std::marker::PhantomData;
use std::path::{Path, PathBuf};

use prometheus::IntCounterVec;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::db::write_atomic_with;

/// The counters every state file reports to.
#[derive(Clone)]
pub struct StateCounters {
    pub load_errors: IntCounterVec,
    pub write_errors: IntCounterVec,
}

/// What loading found.
#[derive(Debug, PartialEq, Eq)]
pub enum Loaded {
    Present,
    Missing,
    /// Kept aside under this name.
    Corrupt(PathBuf),
    WrongVersion(PathBuf),
}

pub struct StateFile<T> {
    path: PathBuf,
    /// The `file` label (the file's name).
    label: &'static str,
    version: u32,
    counters: StateCounters,
    _of: PhantomData<fn() -> T>,
}

#[derive(Serialize)]
struct Out<'a, T> {
    version: u32,
    data: &'a T,
}

#[derive(Deserialize)]
struct In<T> {
    version: u32,
    data: T,
}

impl<T: Serialize + DeserializeOwned + Default> StateFile<T> {
    /// `dir/name`, counted under `label` (one of `metrics::STATE_FILES`).
    pub fn new(
        dir: &Path,
        name: &str,
        label: &'static str,
        version: u32,
        counters: StateCounters,
    ) -> StateFile<T> {
        StateFile {
            path: dir.join(name),
            label,
            version,
            counters,
            _of: PhantomData,
        }
    }

    /// The state, or the default one when the file is missing or unusable (then kept aside).
    pub fn load(&self) -> (T, Loaded) {
        let bytes = match std::fs::read(&self.path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return (T::default(), Loaded::Missing),
            Err(e) => {
                tracing::warn!(
                    file = self.label,
                    "reading {}: {e}; starting afresh",
                    self.path.display()
                );
                self.counters
                    .load_errors
                    .with_label_values(&[self.label, "unreadable"])
                    .inc();
                return (T::default(), Loaded::Missing);
            }
        };
        match serde_json::from_slice::<In<T>>(&bytes) {
            Ok(v) if v.version == self.version => return (v.data, Loaded::Present),
            Ok(v) => {
                let aside = self.set_aside(
                    "wrong_version",
                    &format!("version {} (this agent writes {})", v.version, self.version),
                );
                return (T::default(), Loaded::WrongVersion(aside));
            }
            Err(_) => {}
        }
        // Written before state files had versions: the bare value.
        if let Ok(v) = serde_json::from_slice::<T>(&bytes) {
            return (v, Loaded::Present);
        }
        let aside = self.set_aside("corrupt", "not JSON of this state");
        (T::default(), Loaded::Corrupt(aside))
    }

    fn set_aside(&self, reason: &str, why: &str) -> PathBuf {
        let secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let name = self
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let aside = self.path.with_file_name(format!("{name}.{reason}-{secs}"));
        let kept = std::fs::rename(&self.path, &aside).is_ok();
        tracing::warn!(
            file = self.label,
            reason,
            "{} is unusable ({why}): {}; starting afresh",
            self.path.display(),
            if kept {
                format!("kept as {}", aside.display())
            } else {
                "could not be moved aside".into()
            }
        );
        self.counters
            .load_errors
            .with_label_values(&[self.label, reason])
            .inc();
        aside
    }

    /// Saves the state; `false` (counted) when it could not be written.
    pub fn save(&self, value: &T) -> bool {
        let out = Out {
            version: self.version,
            data: value,
        };
        // Written as a stream: never the whole file in memory.
        match write_atomic_with(&self.path, |w| Ok(serde_json::to_writer(w, &out)?)) {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(file = self.label, "saving {}: {e:#}", self.path.display());
                self.counters.write_errors.with_label_values(&[self.label]).inc();
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn counters() -> StateCounters {
        StateCounters {
            load_errors: IntCounterVec::new(prometheus::Opts::new("l", "l"), &["file", "reason"]).unwrap(),
            write_errors: IntCounterVec::new(prometheus::Opts::new("w", "w"), &["file"]).unwrap(),
        }
    }

    #[test]
    fn present_missing_corrupt_wrong_version_and_legacy() {
        let dir = tempfile::tempdir().unwrap();
        let c = counters();
        let f: StateFile<BTreeMap<String, i64>> = StateFile::new(dir.path(), "s.json", "s", 2, c.clone());
        assert_eq!(f.load(), (BTreeMap::new(), Loaded::Missing));
        let v = BTreeMap::from([("a".to_string(), 1)]);
        assert!(f.save(&v));
        assert_eq!(f.load(), (v.clone(), Loaded::Present));
        // A file from before versions: read as it is.
        std::fs::write(dir.path().join("s.json"), br#"{"b":2}"#).unwrap();
        assert_eq!(f.load().0, BTreeMap::from([("b".to_string(), 2)]));
        // Corrupt: kept aside with its bytes, counted, afresh.
        std::fs::write(dir.path().join("s.json"), b"{\"b\":").unwrap();
        let (got, how) = f.load();
        assert!(got.is_empty());
        let Loaded::Corrupt(aside) = how else {
            panic!("{how:?}")
        };
        assert_eq!(std::fs::read(&aside).unwrap(), b"{\"b\":");
        assert!(!dir.path().join("s.json").exists());
        assert_eq!(c.load_errors.with_label_values(&["s", "corrupt"]).get(), 1);
        // Another version: kept aside too.
        std::fs::write(dir.path().join("s.json"), br#"{"version":1,"data":{"c":3}}"#).unwrap();
        assert!(matches!(f.load(), (ref m, Loaded::WrongVersion(_)) if m.is_empty()));
        assert_eq!(c.load_errors.with_label_values(&["s", "wrong_version"]).get(), 1);
    }

    #[test]
    fn an_unwritable_file_or_an_unserialisable_value_is_counted_and_never_written() {
        let dir = tempfile::tempdir().unwrap();
        let c = counters();
        // The state directory is a file: nothing can be written under it.
        let blocked = dir.path().join("blocked");
        std::fs::write(&blocked, b"").unwrap();
        let f: StateFile<BTreeMap<String, i64>> = StateFile::new(&blocked, "s.json", "s", 1, c.clone());
        assert!(!f.save(&BTreeMap::new()));
        assert_eq!(c.write_errors.with_label_values(&["s"]).get(), 1);
        // JSON maps need string keys: this value does not serialise, the good file stays.
        let g: StateFile<BTreeMap<(u8, u8), i64>> = StateFile::new(dir.path(), "t.json", "t", 1, c.clone());
        std::fs::write(dir.path().join("t.json"), b"{\"version\":1,\"data\":{}}").unwrap();
        assert!(!g.save(&BTreeMap::from([((1, 2), 3)])));
        assert_eq!(
            std::fs::read(dir.path().join("t.json")).unwrap(),
            b"{\"version\":1,\"data\":{}}"
        );
        assert_eq!(c.write_errors.with_label_values(&["t"]).get(), 1);
    }
}
