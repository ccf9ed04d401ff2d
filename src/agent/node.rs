//! The node owner (`--node-scan`): the host's own OS packages, read under `--host-root` (its
//! os-release and package databases, through the same walk the drift check uses on a
//! container's root — nothing else of the host is opened), read again only when a database's
//! identity changes; and the kernel the node runs (`/proc/sys/kernel/osrelease`) among the
//! kernel packages it has installed. The findings store matches the inventory like an image's.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use stalewatch_core::catalog::{self, Inventory};
use stalewatch_core::kernel::{self, RunningKernel};
use stalewatch_core::layer::diagnostics::Unreadable;
use stalewatch_core::layer::{Diagnostics, FileTree, Limits};

use super::metrics::Metrics;
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
    /// Why the last read failed.
    pub error: Option<String>,
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
            error: None,
        }
    }

    /// Whether a reboot is due: a newer kernel package than the running one is installed, or
    /// the OS said so.
    pub fn reboot_required(&self) -> bool {
        self.reboot_file || self.kernel.as_ref().is_some_and(|k| k.newer_installed.is_some())
    }

    /// Reads the host's databases when their identity changed (on the blocking pool).
    pub async fn check(&mut self, metrics: &Metrics) {
        let (host, proc_root) = (self.host_root.clone(), self.proc_root.clone());
        self.reboot_file = ["var/run/reboot-required", "run/reboot-required"]
            .iter()
            .any(|f| host.join(f).exists());
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
fn judged_by_the_os(inv: &mut Inventory) {
    let owners = inv.mapped_files.clone();
    inv.packages.retain(|p| {
        let binary = RUNTIME_BINARIES.contains(&p.path.as_str()) && !catalog::is_os_package(p);
        let owner = owners.get(catalog::mapped_key(&p.path));
        !binary || owner.is_none_or(|o| o.starts_with("moby-"))
    });
}

/// The host's OS databases and runtime binaries, cataloged (blocking).
fn read_host(host_root: &Path, proc_root: &Path) -> anyhow::Result<Host> {
    super::images::lower_priority();
    let mut tree = FileTree::new();
    let mut diag = Diagnostics::default();
    crate::source::rootfs::read_into(
        host_root,
        &mut tree,
        crate::source::rootfs::Scope::OsDatabases,
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
    judged_by_the_os(&mut inventory);
    let kernel = kernel::running(&inventory, &kernel_release(host_root, proc_root));
    kernel::only_the_running_kernel(&mut inventory, &kernel);
    Ok(Host {
        inventory,
        unreadable: diag.notes,
        kernel,
    })
}
