//! Packages in use: the executables and shared libraries the processes of a container map,
//! from `<proc-root>/<pid>/maps` of every process in the container's PID namespace. The
//! parsing is pure; the shell part lists PID namespaces once per refresh for all containers.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use std::sync::Arc;

use stalewatch_core::advisory::Severity;
use stalewatch_core::catalog::mapped_key;
use stalewatch_core::report::Report;
use stalewatch_core::vulnerability;

use crate::agent::snapshot::Unchecked;

/// What a container's processes map.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Mapped {
    /// Mapped files, by `catalog::mapped_key`.
    pub files: BTreeSet<String>,
    /// Mapped files that were replaced or removed on disk (`(deleted)`): an old copy still
    /// runs, whatever the package database says now.
    pub deleted: BTreeSet<String>,
}

/// The file-backed mappings of one `maps` text: (path, deleted).
pub fn parse_maps(text: &str) -> Vec<(String, bool)> {
    let mut out = Vec::new();
    for line in text.lines() {
        // address perms offset dev inode pathname — the path may hold spaces.
        let mut rest = line;
        for _ in 0..5 {
            rest = match rest.trim_start().split_once(char::is_whitespace) {
                Some((_, r)) => r,
                None => "",
            };
        }
        let path = rest.trim();
        if !path.starts_with('/') {
            continue; // [heap], [stack], anonymous
        }
        match path.strip_suffix(" (deleted)") {
            Some(p) => out.push((p.to_string(), true)),
            None => out.push((path.to_string(), false)),
        }
    }
    out
}

/// Every process under `proc_root`, grouped by the PID namespace it runs in.
pub fn pid_namespaces(proc_root: &Path) -> BTreeMap<String, Vec<u32>> {
    let mut out: BTreeMap<String, Vec<u32>> = BTreeMap::new();
    let Ok(entries) = std::fs::read_dir(proc_root) else {
        return out;
    };
    for e in entries.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        if let Ok(ns) = std::fs::read_link(e.path().join("ns/pid")) {
            out.entry(ns.to_string_lossy().into_owned())
                .or_default()
                .push(pid);
        }
    }
    out
}

/// What the processes sharing `init`'s PID namespace map. `Ok(None)` when the container is
/// gone; `Err` when nothing could be read and why (the kernel refused: no `SYS_PTRACE`, or a
/// process the agent may not trace — never silently "nothing in use").
pub fn container_maps(
    proc_root: &Path,
    init: u32,
    namespaces: &BTreeMap<String, Vec<u32>>,
) -> Result<Option<Mapped>, Unchecked> {
    let ns = match std::fs::read_link(proc_root.join(init.to_string()).join("ns/pid")) {
        Ok(ns) => ns,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Unchecked::of_io(&e)),
    };
    let Some(pids) = namespaces.get(ns.to_string_lossy().as_ref()) else {
        return Ok(None);
    };
    let mut m = Mapped::default();
    let mut read_any = false;
    let mut refused = None;
    for pid in pids {
        // Bounded: a maps file is a few KiB; a pathological one is cut at 4 MiB.
        let f = match std::fs::File::open(proc_root.join(pid.to_string()).join("maps")) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => {
                refused = Some(Unchecked::of_io(&e));
                continue;
            }
        };
        let mut text = String::new();
        use std::io::Read;
        if let Err(e) = f.take(4 << 20).read_to_string(&mut text) {
            refused = Some(Unchecked::of_io(&e));
            continue;
        }
        read_any = true;
        for (path, deleted) in parse_maps(&text) {
            let key = mapped_key(&path).to_string();
            if deleted {
                m.deleted.insert(key.clone());
            }
            m.files.insert(key);
        }
    }
    match (read_any, refused) {
        (true, _) => Ok(Some(m)),
        (false, Some(r)) => Err(r),
        (false, None) => Ok(None),
    }
}

/// Whether each finding of `report` is in use (true or false where the package's database
/// lists its files, unknown otherwise), and the distinct vulnerabilities in use by severity.
pub fn marks(
    report: &Report,
    inv: &stalewatch_core::catalog::Inventory,
    mapped: &Mapped,
) -> (Arc<[Option<bool>]>, BTreeMap<Severity, u64>) {
    let used: std::collections::BTreeSet<&str> = mapped
        .files
        .iter()
        .filter_map(|f| inv.mapped_files.get(f).map(String::as_str))
        .collect();
    let marks: Arc<[Option<bool>]> = report
        .findings
        .iter()
        .map(|f| {
            inv.with_file_lists
                .contains(&*f.package)
                .then(|| used.contains(&*f.package))
        })
        .collect();
    let mut counts = BTreeMap::new();
    for v in vulnerability::group(&report.findings) {
        if v.findings.iter().any(|&i| marks[i] == Some(true)) {
            *counts.entry(v.severity).or_default() += 1;
        }
    }
    (marks, counts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_backed_mappings_with_deleted_and_spaces() {
        let maps = "\
55d0c0a00000-55d0c0a0e000 r--p 00000000 00:2f 1048602                    /bin/busybox
7f1c2e400000-7f1c2e414000 r--p 00000000 00:2f 1048590                    /lib/ld-musl-x86_64.so.1
7f1c2e500000-7f1c2e514000 r-xp 00000000 00:2f 1048591                    /usr/lib/libssl.so.3 (deleted)
7f1c2e600000-7f1c2e614000 r--p 00000000 00:2f 1048592                    /opt/my app/lib x.so
7ffd1a3c0000-7ffd1a3e1000 rw-p 00000000 00:00 0                          [stack]
7ffd1a3e1000-7ffd1a3e5000 rw-p 00000000 00:00 0
";
        assert_eq!(
            parse_maps(maps),
            vec![
                ("/bin/busybox".to_string(), false),
                ("/lib/ld-musl-x86_64.so.1".to_string(), false),
                ("/usr/lib/libssl.so.3".to_string(), true),
                ("/opt/my app/lib x.so".to_string(), false),
            ]
        );
    }

    #[test]
    fn this_process_maps_itself() {
        let me = std::process::id();
        let ns = pid_namespaces(Path::new("/proc"));
        let m = container_maps(Path::new("/proc"), me, &ns)
            .unwrap()
            .expect("own maps");
        let exe = std::fs::read_link("/proc/self/exe").unwrap();
        assert!(
            m.files.contains(mapped_key(exe.to_str().unwrap())),
            "{:?}",
            m.files.iter().take(5).collect::<Vec<_>>()
        );
    }
}
