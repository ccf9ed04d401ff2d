//! The agent's validated configuration: everything `stalewatch agent` was told, checked once
//! by `cli` before any socket is touched, then handed to the owners that need each part.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use stalewatch_core::advisory::Severity;

use crate::db::update::{FeedSources, Source};

/// Validated agent configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub containerd_address: PathBuf,
    pub containerd_namespace: String,
    pub db_dir: PathBuf,
    pub state_dir: PathBuf,
    pub advisory_source: Source,
    pub advisory_refresh: Duration,
    pub ecosystems: Vec<String>,
    pub listen: SocketAddr,
    /// Where `/v1/findings` is served (`None`: nowhere).
    pub findings_listen: Option<SocketAddr>,
    /// Header deadline, connection cap and header size of both listeners.
    pub http_limits: super::listener::Limits,
    /// Fix age beyond which a container is a stale runtime.
    pub stale_after: Duration,
    /// `--stale-min-severity`: the least severity whose fix makes a stale runtime.
    pub stale_min_severity: stalewatch_core::advisory::Severity,
    /// Kubernetes Events (`None`: off).
    pub events: Option<EventsConfig>,
    pub node_name: String,
    pub proc_root: PathBuf,
    /// `--host-root` when the node scan is on (`--node-scan`).
    pub host_root: Option<PathBuf>,
    /// With the node scan and the Kubernetes API: how to read the agent's own Node object.
    pub node_object: Option<KubeAccess>,
    /// The engine's silence that fails `/healthz` (`--stuck-after`).
    pub stuck_after: Duration,
    /// Deadline of one containerd call (`--containerd-timeout`).
    pub containerd_timeout: Duration,
    /// Runtimes whose containers get no `/proc` read (`--sandboxed-runtimes`).
    pub sandboxed_runtimes: SandboxedRuntimes,
    pub scan_concurrency: usize,
    pub scan_timeout: Duration,
    pub reconcile_interval: Duration,
    pub advisory_ca_file: Option<PathBuf>,
    /// `Some(limit)` when the per-finding info metric is on.
    pub vulnerability_info: Option<usize>,
    pub state_max_bytes: u64,
    /// Where to read images whose blobs are gone, in order.
    pub unpacked_fallback: Vec<Fallback>,
    /// How often each running container's live package databases are compared with its
    /// image (`None`: runtime checks are off).
    pub drift_interval: Option<Duration>,
    /// The triage feeds refreshed with the advisories.
    pub feeds: FeedSources,
    /// OpenVEX documents to apply, read again when they change.
    pub vex_dir: Option<PathBuf>,
    /// `/v1/vex` states `not_affected` for packages no running process loads.
    pub vex_in_use_not_affected: bool,
    /// Who `/v1/vex` documents name as their author.
    pub vex_author: String,
    /// Declared bases (`--base-image`): containerd image references.
    pub base_images: Vec<String>,
    /// CloudEvents to pipelines (`None`: no `--notify-url`).
    pub notify: Option<super::notify::NotifyConfig>,
    /// The validated redeploy (`None`: `--redeploy off`).
    pub redeploy: Option<RedeployConfig>,
}

/// Sources of unpacked image files when blobs are missing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Fallback {
    /// The container snapshot's overlay lower directories (needs the host's containerd root).
    Snapshot,
    /// `<proc-root>/<pid>/root` of a running container.
    Proc,
}

/// Where the Kubernetes client's configuration comes from.
#[derive(Debug, Clone)]
pub enum KubeAccess {
    /// The pod's service account (in-cluster environment and files).
    InCluster,
    /// A kubeconfig file (tests, agents run outside a pod).
    Kubeconfig(PathBuf),
}

/// Event publishing settings.
#[derive(Debug, Clone)]
pub struct EventsConfig {
    pub access: KubeAccess,
    pub node_name: String,
    /// Events per minute at most (a token bucket with this burst).
    pub per_minute: u32,
    /// Notices waiting beyond this are dropped (and counted).
    pub queue: usize,
    /// `--kube-events-min-severity`: what a `VulnerableImage` Event is published for.
    pub min_severity: super::snapshot::MinSeverity,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// The patch sent with `dryRun=All`: RBAC and admission exercised, nothing changed.
    DryRun,
    On,
}

/// `--redeploy*` settings (present only for `dry-run` and `on`).
#[derive(Debug, Clone)]
pub struct RedeployConfig {
    pub mode: Mode,
    pub max_severity: Severity,
    pub interval: Duration,
    pub access: KubeAccess,
    pub node_name: String,
}

/// Runtime names whose task PID is not the container's: a Kata VM's, a gVisor sandbox's.
/// `/proc/<pid>/root` of such a task is the host's (or the VM's) root, never the container's.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SandboxedRuntimes(Vec<String>);

impl SandboxedRuntimes {
    /// Entries as given (`io.containerd.kata.v2`, or `io.containerd.kata*` for a prefix);
    /// blank ones dropped.
    pub fn new(entries: &[String]) -> SandboxedRuntimes {
        SandboxedRuntimes(
            entries
                .iter()
                .map(|e| e.trim().to_string())
                .filter(|e| !e.is_empty())
                .collect(),
        )
    }

    /// Whether a container of this runtime runs sandboxed.
    pub fn contains(&self, runtime: &str) -> bool {
        self.0.iter().any(|e| match e.strip_suffix('*') {
            Some(prefix) => runtime.starts_with(prefix),
            None => runtime == e,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::SandboxedRuntimes;

    #[test]
    fn sandboxed_runtimes_match_names_and_prefixes() {
        let s = SandboxedRuntimes::new(&[
            "io.containerd.kata*".into(),
            " io.containerd.runsc.v1 ".into(),
            "".into(),
        ]);
        for yes in [
            "io.containerd.kata.v2",
            "io.containerd.kata-qemu.v2",
            "io.containerd.kata-clh.v2",
            "io.containerd.runsc.v1",
        ] {
            assert!(s.contains(yes), "{yes}");
        }
        for no in ["io.containerd.runc.v2", "io.containerd.runsc.v2", "", "kata"] {
            assert!(!s.contains(no), "{no}");
        }
        assert!(!SandboxedRuntimes::new(&[]).contains("io.containerd.kata.v2"));
    }
}
