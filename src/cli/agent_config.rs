//! `stalewatch agent`'s flags validated as a whole into the agent's `Config`: values that
//! depend on each other, files that must exist, every error reported at once, before any
//! socket is touched.

use anyhow::bail;

use super::{ecosystems_or_all, AgentArgs, FallbackArg, RedeployArg, Switch};
use crate::agent::{EventsConfig, Fallback, KubeAccess};

impl AgentArgs {
    /// Validates what single flags cannot (values that depend on each other, files that
    /// must exist), reporting every error at once.
    pub fn config(&self) -> anyhow::Result<crate::agent::Config> {
        let mut errors = Vec::new();
        self.check_values(&mut errors);
        let node_name = self
            .node_name
            .clone()
            .filter(|n| !n.is_empty())
            .or_else(hostname)
            .unwrap_or_default();
        let events = self.events_config(&node_name, &mut errors);
        let notify = self.notify_config(&mut errors);
        let redeploy = self.redeploy_config(&node_name, &mut errors);
        let host_root = self.node_scan_root(&mut errors);
        let node_object = host_root.as_ref().and_then(|_| self.kube_access(&node_name));
        if !errors.is_empty() {
            bail!("invalid configuration: {}", errors.join("; "));
        }
        let vex_author = self
            .vex_author
            .clone()
            .filter(|a| !a.trim().is_empty())
            .unwrap_or_else(|| format!("stalewatch/{node_name}"));
        let mut base_images = self.base_images.clone();
        base_images.retain(|b| !b.trim().is_empty());
        Ok(crate::agent::Config {
            vex_author,
            base_images,
            notify,
            redeploy,
            containerd_address: self.containerd_address.clone(),
            containerd_namespace: self.containerd_namespace.clone(),
            db_dir: self.db_dir.clone(),
            state_dir: self.state_dir.clone(),
            advisory_source: self.advisory_source.clone(),
            advisory_refresh: self.advisory_refresh,
            ecosystems: ecosystems_or_all(&self.ecosystems),
            listen: self.listen,
            findings_listen: self.findings_listen.0,
            http_limits: crate::agent::HttpLimits {
                header_timeout: self.http_header_timeout,
                max_connections: self.http_max_connections as usize,
                max_header_bytes: self.http_max_header_bytes as usize,
            },
            stale_after: self.stale_after,
            stale_min_severity: self.stale_min_severity,
            events,
            node_name,
            proc_root: self.proc_root.clone(),
            host_root,
            node_object,
            containerd_timeout: self.containerd_timeout,
            stuck_after: self.stuck_after(),
            sandboxed_runtimes: crate::agent::SandboxedRuntimes::new(&self.sandboxed_runtimes),
            scan_concurrency: self.scan_concurrency,
            scan_timeout: self.scan_timeout,
            reconcile_interval: self.reconcile_interval,
            advisory_ca_file: self.advisory_ca_file.clone(),
            vulnerability_info: self
                .vulnerability_info_metric
                .then_some(self.vulnerability_info_limit),
            state_max_bytes: self.state_max_bytes,
            unpacked_fallback: self
                .unpacked_fallback
                .iter()
                .filter_map(|f| match f {
                    FallbackArg::Snapshot => Some(Fallback::Snapshot),
                    FallbackArg::Proc => Some(Fallback::Proc),
                    FallbackArg::None => None,
                })
                .collect(),
            drift_interval: self.drift_interval.0,
            feeds: self.feeds.sources(),
            vex_dir: self.vex_dir.clone(),
            vex_in_use_not_affected: self.vex_in_use_not_affected,
        })
    }

    /// `--notify-*`: the receivers' URLs checked, the secret read now (a missing or empty
    /// file is a startup error, and its content never appears in one).
    fn notify_config(&self, errors: &mut Vec<String>) -> Option<crate::agent::notify::NotifyConfig> {
        let mut urls = self.notify_urls.clone();
        urls.retain(|u| !u.trim().is_empty());
        for u in &urls {
            match reqwest::Url::parse(u) {
                Ok(p) if matches!(p.scheme(), "http" | "https") => {}
                _ => errors.push(format!("--notify-url {u:?}: not an http(s) URL")),
            }
        }
        let secret = self
            .notify_secret_file
            .as_ref()
            .and_then(|f| match std::fs::read(f) {
                Ok(b) if !b.trim_ascii().is_empty() => Some(std::sync::Arc::from(b.trim_ascii())),
                Ok(_) => {
                    errors.push(format!("--notify-secret-file {}: empty", f.display()));
                    None
                }
                Err(e) => {
                    errors.push(format!("--notify-secret-file {}: {e}", f.display()));
                    None
                }
            });
        if urls.is_empty() {
            if self.notify_secret_file.is_some() {
                errors.push("--notify-secret-file: no --notify-url to sign for".into());
            }
            return None;
        }
        Some(crate::agent::notify::NotifyConfig {
            urls,
            secret,
            min_severity: self.notify_min_severity,
            timeout: self.notify_timeout,
            outbox_max: self.notify_outbox_max as usize,
        })
    }

    /// Values single flags cannot refuse by themselves.
    /// `--stuck-after`, by default the longest quiet a live engine has (an image read, or the
    /// wait for the next reconcile) and 10 minutes more.
    fn stuck_after(&self) -> std::time::Duration {
        self.stuck_after
            .unwrap_or(self.scan_timeout.max(self.reconcile_interval) + std::time::Duration::from_secs(600))
    }

    fn check_values(&self, errors: &mut Vec<String>) {
        // The agent's one clock: a bad STALEWATCH_NOW is a configuration error, never epoch 0.
        if let Err(e) = crate::clock::now_unix() {
            errors.push(e.to_string());
        }
        if self.stuck_after() <= self.reconcile_interval {
            errors.push(
                "--stuck-after: must be longer than --reconcile-interval (an idle engine beats once per reconcile)".into(),
            );
        }
        if self.kube_events_per_minute == 0 {
            errors.push("--kube-events-per-minute: must be at least 1".into());
        }
        if self.scan_concurrency == 0 {
            errors.push("--scan-concurrency: must be at least 1".into());
        }
        if self.containerd_namespace.is_empty() {
            errors.push("--containerd-namespace: empty".into());
        }
        for (flag, file) in [
            ("--kubeconfig", &self.kubeconfig),
            ("--advisory-ca-file", &self.advisory_ca_file),
        ] {
            if let Some(f) = file.as_ref().filter(|f| !f.is_file()) {
                errors.push(format!("{flag} {}: not a readable file", f.display()));
            }
        }
    }

    /// `--redeploy dry-run|on`: the Kubernetes access it needs (in a cluster, or --kubeconfig).
    fn redeploy_config(
        &self,
        node_name: &str,
        errors: &mut Vec<String>,
    ) -> Option<crate::agent::redeploy::RedeployConfig> {
        use crate::agent::redeploy::{Mode, RedeployConfig};
        let mode = match self.redeploy {
            RedeployArg::Off => return None,
            RedeployArg::DryRun => Mode::DryRun,
            RedeployArg::On => Mode::On,
        };
        let in_cluster = std::env::var_os("KUBERNETES_SERVICE_HOST").is_some();
        if self.kubeconfig.is_none() && !in_cluster {
            errors
                .push("--redeploy: needs the Kubernetes API (run in a cluster, or give --kubeconfig)".into());
        }
        Some(RedeployConfig {
            mode,
            max_severity: self.redeploy_max_severity,
            interval: self.redeploy_interval,
            access: match &self.kubeconfig {
                Some(k) => KubeAccess::Kubeconfig(k.clone()),
                None => KubeAccess::InCluster,
            },
            node_name: node_name.to_string(),
        })
    }

    /// The host root the node scan reads (`None`: off; `auto`: on where the host's os-release
    /// is mounted under it — a host root holding only `/proc` is no host to scan).
    fn node_scan_root(&self, errors: &mut Vec<String>) -> Option<std::path::PathBuf> {
        let is_dir = self.host_root.is_dir();
        let os_release = ["etc/os-release", "usr/lib/os-release"]
            .iter()
            .any(|f| self.host_root.join(f).is_file());
        match self.node_scan {
            Switch::Off => None,
            Switch::Auto => os_release.then(|| self.host_root.clone()),
            Switch::On if !is_dir => {
                errors.push(format!(
                    "--node-scan on: --host-root {} is not a directory",
                    self.host_root.display()
                ));
                None
            }
            Switch::On => Some(self.host_root.clone()),
        }
    }

    /// The Kubernetes API where there is one (in a cluster, or a kubeconfig) and the node has
    /// a name to look up.
    fn kube_access(&self, node_name: &str) -> Option<KubeAccess> {
        let in_cluster = std::env::var_os("KUBERNETES_SERVICE_HOST").is_some();
        match &self.kubeconfig {
            _ if node_name.is_empty() => None,
            Some(k) => Some(KubeAccess::Kubeconfig(k.clone())),
            None => in_cluster.then_some(KubeAccess::InCluster),
        }
    }

    /// Events on or off (`auto`: in a cluster, or with a kubeconfig), and their settings.
    fn events_config(&self, node_name: &str, errors: &mut Vec<String>) -> Option<EventsConfig> {
        let in_cluster = std::env::var_os("KUBERNETES_SERVICE_HOST").is_some();
        let on = match self.kube_events {
            Switch::On => true,
            Switch::Off => false,
            Switch::Auto => self.kubeconfig.is_some() || in_cluster,
        };
        if on && node_name.is_empty() {
            errors.push("--kube-events: needs --node-name (STALEWATCH_NODE_NAME)".into());
        }
        on.then(|| EventsConfig {
            access: match &self.kubeconfig {
                Some(k) => KubeAccess::Kubeconfig(k.clone()),
                None => KubeAccess::InCluster,
            },
            node_name: node_name.to_string(),
            per_minute: self.kube_events_per_minute,
            queue: self.kube_events_queue,
            min_severity: self.kube_events_min_severity,
        })
    }
}

fn hostname() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
}
