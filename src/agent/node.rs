//! The node owner (`--node-scan`): the host's own OS packages, read under `--host-root` (its
//! os-release and package databases, through the same walk the drift check uses on a
//! container's root — nothing else of the host is opened), read again only when a database's
//! identity changes; and the kernel the node runs (`/proc/sys/kernel/osrelease`) among the
//! kernel packages it has installed. The findings store matches the inventory like an image's.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use stalewatch_core::catalog::{self, Inventory};
use stalewatch_core::kernel::{self, RunningKernel};
use stalewatch_core::layer::diagnostics::Unreadable;
use stalewatch_core::layer::{Diagnostics, FileTree, Limits};

use super::metrics::Metrics;
use super::node_object::NodeObjectState;
use super::publishing::build::NodeFacts;
use super::runtime_checks::drift::{db_signature_in, DbSignature};
use super::signals::Signal;

/// What the node scan last found.
pub struct NodeScan {
    host_root: PathBuf,
    /// Where the running kernel's release is read: the host's `/proc` (`--proc-root`).
    proc_root: PathBuf,
    signature: Option<(DbSignature, BinariesSignature)>,
    /// The host's inventory (the running kernel's package only, where it is known).
    pub inventory: Option<Arc<Inventory>>,
    /// What could not be read of it.
    pub unreadable: Vec<Unreadable>,
    pub kernel: Option<RunningKernel>,
    /// The OS asked for a reboot (`/var/run/reboot-required`, as unattended-upgrades writes).
    pub reboot_file: bool,
    /// Since when a reboot is due (Unix seconds): the reboot file's time, else the time the
    /// newer kernel was installed (its dpkg file list's), else when the agent first saw it.
    pub reboot_since: Option<i64>,
    /// Why the last read failed.
    pub error: Option<String>,
    /// The agent's Node object, where the Kubernetes API is reachable.
    pub object: Option<tokio::sync::watch::Receiver<NodeObjectState>>,
}

impl NodeScan {
    pub fn new(host_root: PathBuf, proc_root: PathBuf) -> NodeScan {
        NodeScan {
            host_root,
            proc_root,
            signature: None,
            inventory: None,
            unreadable: Vec::new(),
            kernel: None,
            reboot_file: false,
            reboot_since: None,
            error: None,
            object: None,
        }
    }

    /// Whether a reboot is due: a newer kernel package than the running one is installed, or
    /// the OS said so.
    pub fn reboot_required(&self) -> bool {
        self.reboot_file || self.kernel.as_ref().is_some_and(|k| k.newer_installed.is_some())
    }

    /// What the snapshot needs of the scan, with the Node object's last state.
    pub fn facts<'a>(&'a self, object: Option<&'a NodeObjectState>) -> NodeFacts<'a> {
        NodeFacts {
            inventory: self.inventory.as_deref(),
            unreadable: &self.unreadable,
            kernel: self.kernel.as_ref(),
            reboot_required: self.reboot_required(),
            reboot_since: self.reboot_since,
            error: self.error.as_deref(),
            object: object.and_then(|o| o.object.as_ref()),
            object_error: object.and_then(|o| o.error.as_deref()),
        }
    }

    /// Reads the host's databases when their identity changed (on the blocking pool).
    pub async fn check(&mut self, metrics: &Metrics) {
        self.read(metrics).await;
        self.reboot_since = match self.reboot_required() {
            false => None,
            true => self.reboot_since.or_else(|| Some(self.reboot_due_since())),
        };
    }

    /// When the reboot that is due became due, as the host's files say.
    fn reboot_due_since(&self) -> i64 {
        let mtime = |p: &Path| {
            let m = std::fs::metadata(self.host_root.join(p)).ok()?.modified().ok()?;
            let secs = m.duration_since(std::time::UNIX_EPOCH).ok()?.as_secs();
            i64::try_from(secs).ok()
        };
        let newer_kernel = self.kernel.as_ref().and_then(|k| k.newer_installed.as_ref());
        REBOOT_FILES
            .iter()
            .find_map(|f| mtime(Path::new(f)))
            .or_else(|| mtime(&Path::new("var/lib/dpkg/info").join(format!("{}.list", newer_kernel?.0))))
            .unwrap_or_else(crate::clock::now)
    }

    async fn read(&mut self, metrics: &Metrics) {
        let (host, proc_root) = (self.host_root.clone(), self.proc_root.clone());
        self.reboot_file = REBOOT_FILES.iter().any(|f| host.join(f).exists());
        let signature = db_signature_in(&host).map(|db| (db, binaries_signature(&host)));
        if self.inventory.is_some() && signature.is_some() && signature == self.signature {
            return;
        }
        let read = tokio::task::spawn_blocking(move || read_host(&host, &proc_root)).await;
        match read {
            Ok(Ok(host)) => {
                tracing::info!(
                    packages = host.inventory.packages.len(),
                    kernel = %host.kernel.release,
                    kernel_package = host.kernel.package.as_ref().map_or("unknown", |p| p.1.as_str()),
                    "node scanned"
                );
                self.inventory = Some(Arc::new(host.inventory));
                self.unreadable = host.unreadable;
                self.kernel = Some(host.kernel);
                self.signature = signature;
                self.error = None;
            }
            Ok(Err(e)) => {
                let error = format!("{e:#}");
                metrics.emit(Signal::Scan {
                    reason: "node_read",
                    what: "node",
                    error: &error,
                });
                self.error = Some(error);
            }
            Err(_) => self.error = Some("the node read did not finish".into()),
        }
    }
}

/// Where Debian's and Ubuntu's update tools (and kured's watch) say a reboot is due.
const REBOOT_FILES: [&str; 2] = ["var/run/reboot-required", "run/reboot-required"];

struct Host {
    inventory: Inventory,
    unreadable: Vec<Unreadable>,
    kernel: RunningKernel,
}

/// The running kernel's release: `<host-root>/proc/sys/kernel/osrelease` where a host root
/// carries one (a test's), else the host's `/proc`.
fn kernel_release(host_root: &Path, proc_root: &Path) -> String {
    [
        host_root.join("proc/sys/kernel/osrelease"),
        proc_root.join("sys/kernel/osrelease"),
    ]
    .iter()
    .find_map(|p| std::fs::read_to_string(p).ok())
    .map(|r| r.trim().to_string())
    .unwrap_or_default()
}

/// The container runtime's and the kubelet's binaries, where distributions and AKS put them:
/// on AKS Ubuntu nodes `moby-containerd` and `moby-runc` come from Microsoft's repository,
/// which no Ubuntu record covers, so their Go modules are matched against the Go feed.
pub const RUNTIME_BINARIES: [&str; 10] = [
    "usr/bin/containerd",
    "usr/bin/containerd-shim-runc-v2",
    "usr/bin/runc",
    "usr/sbin/runc",
    "usr/bin/kubelet",
    "usr/local/bin/containerd",
    "usr/local/bin/containerd-shim-runc-v2",
    "usr/local/bin/runc",
    "usr/local/sbin/runc",
    "usr/local/bin/kubelet",
];

/// (inode, size, mtime) of each runtime binary, `None` where absent.
type BinariesSignature = Vec<Option<(u64, u64, i64)>>;

/// The runtime binaries' identity: one replaced outside the package manager is read again too.
fn binaries_signature(host_root: &Path) -> BinariesSignature {
    use std::os::unix::fs::MetadataExt;
    RUNTIME_BINARIES
        .iter()
        .map(|b| {
            let m = std::fs::symlink_metadata(host_root.join(b)).ok()?;
            Some((m.ino(), m.size(), m.mtime()))
        })
        .collect()
}

/// Leaves out the Go (or Rust) modules of a runtime binary an OS package installed: the
/// distribution's own advisories judge it (Debian's `containerd`, with its backported fixes).
/// Microsoft's `moby-*` packages, which no distribution record covers, keep theirs.
fn judged_by_the_os(inv: &mut Inventory, dpkg_owners: &BTreeMap<String, String>) {
    let owners = inv.mapped_files.clone();
    inv.packages_mut().retain(|p| {
        let binary = RUNTIME_BINARIES.contains(&p.path.as_str()) && !catalog::is_os_package(p);
        let key = catalog::mapped_key(&p.path);
        let owner = owners.get(key).or_else(|| dpkg_owners.get(key));
        !binary || owner.is_none_or(|o| o.starts_with("moby-"))
    });
}

/// The dpkg packages that own the runtime binaries, by [`catalog::mapped_key`]: dpkg's file
/// lists (`info/<package>[:<arch>].list`) streamed one line at a time — a host's run to
/// megabytes and none is kept. Only regular files directly in the directory are opened.
fn dpkg_owners(host_root: &Path) -> BTreeMap<String, String> {
    use std::io::BufRead;
    let wanted: BTreeSet<&str> = RUNTIME_BINARIES.iter().map(|b| catalog::mapped_key(b)).collect();
    let mut owners = BTreeMap::new();
    let Ok(dir) = std::fs::read_dir(host_root.join("var/lib/dpkg/info")) else {
        return owners;
    };
    for entry in dir.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(package) = name.strip_suffix(".list") else {
            continue;
        };
        if !entry.file_type().is_ok_and(|t| t.is_file()) {
            continue;
        }
        let Ok(file) = std::fs::File::open(entry.path()) else {
            continue;
        };
        let package = package.split_once(':').map_or(package, |(n, _)| n);
        // At most 16 MiB of one list (the largest on a real host is a few hundred KiB).
        let lines = std::io::BufReader::new(std::io::Read::take(file, 16 << 20))
            .split(b'\n')
            .map_while(Result::ok);
        for line in lines {
            let Ok(path) = std::str::from_utf8(&line) else {
                continue;
            };
            let key = catalog::mapped_key(path);
            if wanted.contains(key) {
                owners.insert(key.to_string(), package.to_string());
            }
        }
    }
    owners
}

/// The host's OS databases and runtime binaries, cataloged (blocking).
fn read_host(host_root: &Path, proc_root: &Path) -> anyhow::Result<Host> {
    super::images::lower_priority();
    let mut tree = FileTree::new();
    let mut diag = Diagnostics::default();
    crate::source::rootfs::read_into(
        host_root,
        &mut tree,
        crate::source::rootfs::Scope::OsDatabasesWithoutFileLists,
        &Limits::default(),
        &mut diag,
    )?;
    crate::source::rootfs::read_named_binaries(
        host_root,
        &RUNTIME_BINARIES,
        &mut tree,
        &Limits::default(),
        &mut diag,
    )?;
    let mut inventory = catalog::catalog(&tree, &mut diag);
    drop(tree);
    judged_by_the_os(&mut inventory, &dpkg_owners(host_root));
    // The file owners (rpm's, from its headers) served only the choice above: no
    // packages-in-use check runs on the host.
    inventory.mapped_files = Default::default();
    inventory.with_file_lists.clear();
    let kernel = kernel::running(&inventory, &kernel_release(host_root, proc_root));
    kernel::only_the_running_kernel(&mut inventory, &kernel);
    Ok(Host {
        inventory,
        unreadable: diag.notes,
        kernel,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use stalewatch_core::package::Package;

    fn go_module(binary: &str) -> Package {
        Package {
            ecosystem: "Go".into(),
            name: "golang.org/x/text".into(),
            version: "v0.3.2".into(),
            source_name: "golang.org/x/text".into(),
            source_version: "v0.3.2".into(),
            purl: String::new().into(),
            path: binary.into(),
            arch: String::new().into(),
            layer: None,
            introduced_layer: None,
        }
    }

    /// A runtime binary a distribution package installed is judged by that distribution's
    /// records, not by its Go modules; Microsoft's `moby-*` and an unpackaged one keep theirs.
    /// Owners come from dpkg's file lists (as `dpkg -S` reads them), streamed.
    #[test]
    fn runtime_binaries_owned_by_the_os_leave_their_go_modules_to_its_records() {
        let host = tempfile::tempdir().unwrap();
        let info = host.path().join("var/lib/dpkg/info");
        std::fs::create_dir_all(&info).unwrap();
        std::fs::write(
            info.join("containerd.list"),
            "/.\n/usr\n/usr/bin\n/usr/bin/containerd\n",
        )
        .unwrap();
        std::fs::write(info.join("moby-runc:amd64.list"), "/usr/bin/runc\n").unwrap();
        std::fs::write(info.join("bash.list"), "/bin/bash\n").unwrap();
        // A directory named like a list is not read.
        std::fs::create_dir_all(info.join("evil.list")).unwrap();
        let owners = dpkg_owners(host.path());
        assert_eq!(
            owners,
            BTreeMap::from([
                ("bin/containerd".to_string(), "containerd".to_string()),
                ("bin/runc".to_string(), "moby-runc".to_string()),
            ])
        );
        let mut inv = Inventory {
            packages: ["usr/bin/containerd", "usr/bin/runc", "usr/local/bin/kubelet"]
                .into_iter()
                .map(go_module)
                .collect::<Vec<_>>()
                .into(),
            ..Default::default()
        };
        judged_by_the_os(&mut inv, &owners);
        let kept: Vec<&str> = inv.packages.iter().map(|p| p.path.as_str()).collect();
        assert_eq!(kept, ["usr/bin/runc", "usr/local/bin/kubelet"]);
    }
}
