//! The on-disk advisory database: one index file per ecosystem plus `state.json`, written
//! atomically under a lock so readers (CLI or agent) never see a half-written index.

pub mod coverage;
pub mod feeds;
pub mod freshness;
pub mod outcome;
pub mod update;

use anyhow::Context;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use stalewatch_core::advisory::{ByteSource, IndexReader, IndexSet};

/// Ecosystems `db update` fetches by default (top-level OSV names).
pub const SUPPORTED_ECOSYSTEMS: [&str; 17] = [
    "AlmaLinux",
    "Alpine",
    "Azure Linux",
    "Chainguard",
    "Debian",
    "Go",
    "Maven",
    "NuGet",
    "Packagist",
    "PyPI",
    "Red Hat",
    "Rocky Linux",
    "RubyGems",
    "Ubuntu",
    "Wolfi",
    "crates.io",
    "npm",
];

/// OSV top-level ecosystem names are letters, digits, spaces, dots and dashes; anything else
/// (a `/`, `..`) would leave the mirror's layout or the database directory.
pub fn valid_ecosystem_name(e: &str) -> bool {
    !e.is_empty()
        && !e.contains("..")
        && e.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, ' ' | '.' | '-' | '_'))
}

/// What the database knows of one ecosystem.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct EcosystemState {
    pub source: String,
    pub records: u64,
    pub withdrawn: u64,
    pub skipped: u64,
    /// Newest `modified` among the records.
    pub source_modified: Option<String>,
    pub etag: Option<String>,
    pub last_modified: Option<String>,
    /// Last refresh that succeeded (an unchanged answer counts).
    pub last_success: Option<String>,
    pub last_attempt: Option<String>,
    /// Reason of the last failed refresh, cleared by a success.
    pub last_error: Option<String>,
    /// sha256 of the archive the current index was built from.
    #[serde(default)]
    pub archive_sha256: Option<String>,
    /// Affected-package entries per ecosystem release (`Alpine:v3.20` → n).
    #[serde(default)]
    pub entries: BTreeMap<String, u64>,
    /// The mirror does not have this ecosystem.
    #[serde(default)]
    pub missing: bool,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct State {
    pub ecosystems: BTreeMap<String, EcosystemState>,
    /// The triage feeds (`kev`, `epss`), when configured.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub feeds: BTreeMap<String, feeds::FeedState>,
    /// When the source last synced its data upstream (`freshness.rs`), where it says so.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_synced: Option<freshness::SourceSynced>,
}

pub struct Store {
    dir: PathBuf,
}

/// Removes the temp files [`write_atomic`] left in `dir` when its process was killed mid-write
/// (`.tmp*`), those older than `min_age` (a live writer's are younger); returns how many.
pub fn remove_stale_temp_files(dir: &Path, min_age: std::time::Duration) -> usize {
    let Ok(entries) = fs::read_dir(dir) else {
        return 0;
    };
    let stale = |e: &fs::DirEntry| {
        e.file_name().to_string_lossy().starts_with(".tmp")
            && e.metadata().is_ok_and(|m| {
                m.is_file()
                    && m.modified()
                        .is_ok_and(|t| t.elapsed().unwrap_or_default() >= min_age)
            })
    };
    entries
        .flatten()
        .filter(stale)
        .filter(|e| fs::remove_file(e.path()).is_ok())
        .count()
}

/// Writes `bytes` to `path` atomically: temp file in the same directory, fsync, rename. The
/// directory is made again if it was deleted under a running agent.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    write_atomic_with(path, |w| Ok(w.write_all(bytes)?))
}

/// The length of `value`'s JSON, counted as it is encoded (no buffer).
pub fn json_len<T: Serialize + ?Sized>(value: &T) -> serde_json::Result<u64> {
    struct Count(u64);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len() as u64;
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut n = Count(0);
    serde_json::to_writer(&mut n, value)?;
    Ok(n.0)
}

/// Writes `value` as JSON to `path` atomically (streamed, never whole in memory) when it
/// takes at most `max_bytes`: the bytes written, or `None` when it would take more — then
/// nothing is written, and the caller makes it smaller. One serialisation either way.
pub fn write_json_within<T: Serialize + ?Sized>(
    path: &Path,
    value: &T,
    max_bytes: u64,
) -> anyhow::Result<Option<u64>> {
    struct Within<'a> {
        out: &'a mut dyn std::io::Write,
        written: u64,
        max: u64,
        over: bool,
    }
    impl std::io::Write for Within<'_> {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            if self.written.saturating_add(buf.len() as u64) > self.max {
                self.over = true;
                return Err(std::io::Error::other("over the size bound"));
            }
            let n = self.out.write(buf)?;
            self.written += n as u64;
            Ok(n)
        }
        fn flush(&mut self) -> std::io::Result<()> {
            self.out.flush()
        }
    }
    let (mut written, mut over) = (0, false);
    let result = write_atomic_with(path, |out| {
        let mut w = Within {
            out,
            written: 0,
            max: max_bytes,
            over: false,
        };
        let r = serde_json::to_writer(&mut w, value);
        (written, over) = (w.written, w.over);
        Ok(r?)
    });
    match result {
        Err(_) if over => Ok(None),
        Err(e) => Err(e),
        Ok(()) => Ok(Some(written)),
    }
}

/// [`write_atomic`] for content written as a stream (`write` gets a buffered writer): a large
/// state file is never held whole in memory.
pub fn write_atomic_with(
    path: &Path,
    write: impl FnOnce(&mut dyn std::io::Write) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let dir = path.parent().context("path has no parent")?;
    fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir)
        .with_context(|| format!("create temp file in {}", dir.display()))?;
    {
        use std::os::unix::fs::PermissionsExt;
        // Readable by every reader of a shared database (tempfile creates 0600).
        tmp.as_file().set_permissions(fs::Permissions::from_mode(0o644))?;
    }
    {
        let mut out = std::io::BufWriter::with_capacity(64 * 1024, tmp.as_file_mut());
        write(&mut out)?;
        out.flush()?;
    }
    tmp.as_file().sync_all()?;
    tmp.persist(path)
        .with_context(|| format!("rename into {}", path.display()))?;
    Ok(())
}

impl Store {
    pub fn new(dir: &Path) -> Self {
        Store {
            dir: dir.to_path_buf(),
        }
    }

    pub fn index_path(&self, ecosystem: &str) -> PathBuf {
        self.dir
            .join(format!("{}.idx", ecosystem.replace([' ', '/'], "_")))
    }

    pub fn state(&self) -> anyhow::Result<State> {
        let p = self.dir.join("state.json");
        match fs::read(&p) {
            Ok(b) => serde_json::from_slice(&b).with_context(|| format!("{} is corrupt", p.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(State::default()),
            Err(e) => Err(e).with_context(|| format!("read {}", p.display())),
        }
    }

    pub fn save_state(&self, state: &State) -> anyhow::Result<()> {
        write_atomic(&self.dir.join("state.json"), &serde_json::to_vec_pretty(state)?)
    }

    /// Takes the writers' lock (released when the file is dropped).
    pub fn lock(&self) -> anyhow::Result<fs::File> {
        fs::create_dir_all(&self.dir).with_context(|| format!("create {}", self.dir.display()))?;
        let f = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(self.dir.join(".lock"))?;
        f.lock().context("lock the advisory database")?;
        Ok(f)
    }

    pub fn has_index(&self, ecosystem: &str) -> bool {
        self.index_path(ecosystem).is_file()
    }

    /// Opens one index (header and meta only; the rest is read on demand).
    pub fn open(&self, ecosystem: &str) -> anyhow::Result<IndexReader> {
        let p = self.index_path(ecosystem);
        let f = fs::File::open(&p).with_context(|| format!("open {}", p.display()))?;
        let size = f.metadata()?.len();
        IndexReader::open(Box::new(FileSource { file: f, size }))
            .with_context(|| format!("load {} (run `stalewatch db update` to rebuild it)", p.display()))
    }

    /// Opens the indexes a scan needs, and every other index present (other ecosystems'
    /// records lend their severity to aliases). A broken index of an ecosystem the scan does
    /// not need is skipped with a warning.
    pub fn load(&self, needed: &[String]) -> anyhow::Result<IndexSet> {
        let mut readers = Vec::new();
        for e in needed {
            readers.push(self.open(e)?);
        }
        for e in SUPPORTED_ECOSYSTEMS {
            if needed.iter().any(|n| n == e) || !self.has_index(e) {
                continue;
            }
            match self.open(e) {
                Ok(r) => readers.push(r),
                Err(err) => tracing::warn!("skipping advisory index {e}: {err:#}"),
            }
        }
        Ok(IndexSet::new(readers))
    }
}

/// An index file read with positioned reads (no mmap: the crate forbids unsafe code).
struct FileSource {
    file: fs::File,
    size: u64,
}

impl ByteSource for FileSource {
    fn size(&self) -> u64 {
        self.size
    }
    fn read_at(&self, offset: u64, len: usize) -> std::io::Result<Vec<u8>> {
        use std::os::unix::fs::FileExt;
        let mut buf = vec![0u8; len];
        self.file.read_exact_at(&mut buf, offset)?;
        Ok(buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Within the bound the file is written as `serde_json` writes it; over it, the previous
    /// file stays as it was and no temporary file is left behind.
    #[test]
    fn json_is_written_only_within_its_bound() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        let value: BTreeMap<String, Vec<u32>> = [("a".to_string(), vec![1, 2, 3])].into();
        let expected = serde_json::to_string(&value).unwrap();
        let len = expected.len() as u64;
        assert_eq!(write_json_within(&path, &value, len).unwrap(), Some(len));
        assert_eq!(fs::read_to_string(&path).unwrap(), expected);
        let bigger: BTreeMap<String, Vec<u32>> = [("a".to_string(), (0..1000).collect())].into();
        assert_eq!(write_json_within(&path, &bigger, len).unwrap(), None);
        assert_eq!(fs::read_to_string(&path).unwrap(), expected);
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["state.json"]);
    }
}
