//! Command line: parsed and validated as a whole before anything touches the disk or network.

use anyhow::{bail, Context};
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;
use std::process::ExitCode;

use stalewatch_core::advisory::Severity;

use crate::output::{Format, StatusFormat};
use crate::{clock, db, output, scan, source};

/// Default public OSV bulk bucket.
pub const DEFAULT_ADVISORY_SOURCE: &str = "https://osv-vulnerabilities.storage.googleapis.com";

#[derive(Parser, Debug)]
#[command(
    name = "stalewatch",
    version,
    about = "Flags running containers exposed to known, fixable vulnerabilities"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Scan an image or filesystem and report its packages and vulnerabilities.
    Scan(ScanArgs),
    /// Manage the local advisory database.
    #[command(subcommand)]
    Db(DbCommand),
    /// Run the node agent: inventory running containers, match, export metrics.
    Agent(Box<AgentArgs>),
}

#[derive(Args, Debug)]
pub struct AgentArgs {
    /// containerd socket.
    #[arg(
        long,
        env = "STALEWATCH_CONTAINERD_ADDRESS",
        default_value = "/run/containerd/containerd.sock"
    )]
    pub containerd_address: PathBuf,
    /// containerd namespace.
    #[arg(long, env = "STALEWATCH_CONTAINERD_NAMESPACE", default_value = "k8s.io")]
    pub containerd_namespace: String,
    /// Advisory database directory.
    #[arg(long, env = "STALEWATCH_DB_DIR", default_value = "/var/lib/stalewatch/db")]
    pub db_dir: PathBuf,
    /// State directory (image inventory cache, first-seen fix times).
    #[arg(long, env = "STALEWATCH_STATE_DIR", default_value = "/var/lib/stalewatch")]
    pub state_dir: PathBuf,
    /// OSV bulk mirror base (https://, http://, file:/// or a directory).
    #[arg(long, env = "STALEWATCH_ADVISORY_SOURCE", default_value = DEFAULT_ADVISORY_SOURCE)]
    pub advisory_source: String,
    /// Extra CA certificates (PEM) to trust for an https mirror.
    #[arg(long, env = "STALEWATCH_ADVISORY_CA_FILE")]
    pub advisory_ca_file: Option<PathBuf>,
    /// Publish one `stalewatch_container_vulnerability_info` series per finding (opt-in: advisory ids as labels).
    #[arg(long, env = "STALEWATCH_VULNERABILITY_INFO_METRIC")]
    pub vulnerability_info_metric: bool,
    /// At most this many `stalewatch_container_vulnerability_info` series (most severe first).
    #[arg(long, env = "STALEWATCH_VULNERABILITY_INFO_LIMIT", default_value_t = 1000)]
    pub vulnerability_info_limit: usize,
    /// When an image's blobs are gone, read its unpacked files from: `snapshot` (overlay lower
    /// dirs), `proc` (a running container's root), in the order given; `none` to never.
    #[arg(
        long,
        env = "STALEWATCH_UNPACKED_FALLBACK",
        default_value = "snapshot,proc",
        value_delimiter = ','
    )]
    pub unpacked_fallback: Vec<String>,
    /// Bound on the image cache in the state directory (bytes); beyond it, images no container runs are dropped first.
    #[arg(long, env = "STALEWATCH_STATE_MAX_BYTES", default_value_t = 256 << 20)]
    pub state_max_bytes: u64,
    /// How often advisories are refreshed (humantime: 90s, 5m, 1h), with ±10 % jitter.
    #[arg(long, env = "STALEWATCH_ADVISORY_REFRESH", default_value = "1h")]
    pub advisory_refresh: String,
    /// Ecosystems to keep (repeatable) [default: all supported].
    #[arg(long = "ecosystem", value_name = "NAME")]
    pub ecosystems: Vec<String>,
    /// Address for /metrics, /healthz, /readyz.
    #[arg(long, env = "STALEWATCH_LISTEN", default_value = "0.0.0.0:9477")]
    pub listen: String,
    /// Address for /v1/findings (what is exploitable on the node: keep it on loopback), or
    /// `off`; the same address as --listen serves it there.
    #[arg(long, env = "STALEWATCH_FINDINGS_LISTEN", default_value = "127.0.0.1:9478")]
    pub findings_listen: String,
    /// How often the runtime checks run on each container — packages in use (process maps)
    /// and drift (live package databases vs the image) — or `off` where `SYS_PTRACE` is
    /// refused. A steady check costs about 0.14 ms per container (docs/benchmarks.md).
    #[arg(long, env = "STALEWATCH_DRIFT_INTERVAL", default_value = "5m")]
    pub drift_interval: String,
    /// A fixable vulnerability whose fix is older than this makes the container a stale runtime.
    #[arg(long, env = "STALEWATCH_STALE_AFTER", default_value = "7d")]
    pub stale_after: String,
    /// Kubernetes Events on pods: `auto` (on in a cluster or with --kubeconfig), `on`, `off`.
    #[arg(long, env = "STALEWATCH_KUBE_EVENTS", default_value = "auto")]
    pub kube_events: String,
    /// kubeconfig for the Kubernetes API [default: the pod's service account].
    #[arg(long, env = "STALEWATCH_KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,
    /// At most this many Events per minute from this node (burst of the same size).
    #[arg(long, env = "STALEWATCH_KUBE_EVENTS_PER_MINUTE", default_value_t = 30)]
    pub kube_events_per_minute: u32,
    /// Events waiting to be published beyond this are dropped and counted.
    #[arg(long, env = "STALEWATCH_KUBE_EVENTS_QUEUE", default_value_t = 256)]
    pub kube_events_queue: usize,
    /// This node's name (the DaemonSet fills it from the downward API) [default: hostname].
    #[arg(long, env = "STALEWATCH_NODE_NAME")]
    pub node_name: Option<String>,
    /// Where the host's /proc is mounted.
    #[arg(long, env = "STALEWATCH_PROC_ROOT", default_value = "/proc")]
    pub proc_root: PathBuf,
    /// Images inventoried at once.
    #[arg(long, env = "STALEWATCH_SCAN_CONCURRENCY", default_value_t = 1)]
    pub scan_concurrency: usize,
    /// Longest time one image's inventory may take.
    #[arg(long, env = "STALEWATCH_SCAN_TIMEOUT", default_value = "10m")]
    pub scan_timeout: String,
    /// Full reconcile with containerd at least this often (events trigger one at once).
    #[arg(long, env = "STALEWATCH_RECONCILE_INTERVAL", default_value = "60s")]
    pub reconcile_interval: String,
    /// Log level (error, warn, info, debug, trace) or a tracing filter.
    #[arg(long, env = "STALEWATCH_LOG_LEVEL", default_value = "info")]
    pub log_level: String,
    /// Log format.
    #[arg(long, env = "STALEWATCH_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

fn duration(flag: &str, v: &str, errors: &mut Vec<String>) -> std::time::Duration {
    match humantime::parse_duration(v) {
        Ok(d) if !d.is_zero() => d,
        Ok(_) => {
            errors.push(format!("{flag}: must be more than zero"));
            std::time::Duration::from_secs(1)
        }
        Err(e) => {
            errors.push(format!("{flag} {v:?}: {e}"));
            std::time::Duration::from_secs(1)
        }
    }
}

impl AgentArgs {
    /// Validates the whole configuration, reporting every error at once.
    pub fn config(&self) -> anyhow::Result<crate::agent::Config> {
        let mut errors = Vec::new();
        let source = db::update::Source::parse(&self.advisory_source)
            .map_err(|e| errors.push(format!("{e}")))
            .ok();
        let advisory_refresh = duration("--advisory-refresh", &self.advisory_refresh, &mut errors);
        let scan_timeout = duration("--scan-timeout", &self.scan_timeout, &mut errors);
        let reconcile_interval = duration("--reconcile-interval", &self.reconcile_interval, &mut errors);
        let listen = self
            .listen
            .parse()
            .map_err(|e| errors.push(format!("--listen {:?}: {e}", self.listen)))
            .ok();
        let findings_listen = match self.findings_listen.trim() {
            "off" | "" => None,
            a => a
                .parse()
                .map_err(|e| errors.push(format!("--findings-listen {a:?}: {e}")))
                .ok(),
        };
        let drift_interval = match self.drift_interval.trim() {
            "off" => None,
            v => Some(duration("--drift-interval", v, &mut errors)),
        };
        let stale_after = match humantime::parse_duration(&self.stale_after) {
            Ok(d) => d,
            Err(e) => {
                errors.push(format!("--stale-after {:?}: {e}", self.stale_after));
                std::time::Duration::ZERO
            }
        };
        if self.kube_events_per_minute == 0 {
            errors.push("--kube-events-per-minute: must be at least 1".into());
        }
        if let Some(k) = &self.kubeconfig {
            if !k.is_file() {
                errors.push(format!("--kubeconfig {}: not a readable file", k.display()));
            }
        }
        let in_cluster = std::env::var_os("KUBERNETES_SERVICE_HOST").is_some();
        let events_on = match self.kube_events.as_str() {
            "on" | "true" => true,
            "off" | "false" => false,
            "auto" => self.kubeconfig.is_some() || in_cluster,
            other => {
                errors.push(format!("--kube-events {other:?}: expected auto, on or off"));
                false
            }
        };
        if self.scan_concurrency == 0 {
            errors.push("--scan-concurrency: must be at least 1".into());
        }
        let ecosystems: Vec<String> = if self.ecosystems.is_empty() {
            db::SUPPORTED_ECOSYSTEMS.iter().map(|s| s.to_string()).collect()
        } else {
            self.ecosystems.clone()
        };
        for e in ecosystems.iter().filter(|e| !db::valid_ecosystem_name(e)) {
            errors.push(format!("--ecosystem {e:?}: not an OSV ecosystem name"));
        }
        if self.containerd_namespace.is_empty() {
            errors.push("--containerd-namespace: empty".into());
        }
        let node_name = self
            .node_name
            .clone()
            .filter(|n| !n.is_empty())
            .or_else(|| {
                std::fs::read_to_string("/proc/sys/kernel/hostname")
                    .ok()
                    .map(|h| h.trim().to_string())
            })
            .unwrap_or_default();
        let mut unpacked_fallback = Vec::new();
        for f in &self.unpacked_fallback {
            match f.trim() {
                "snapshot" => unpacked_fallback.push(crate::agent::Fallback::Snapshot),
                "proc" => unpacked_fallback.push(crate::agent::Fallback::Proc),
                "none" | "" => {}
                other => errors.push(format!(
                    "--unpacked-fallback {other:?}: expected snapshot, proc or none"
                )),
            }
        }
        if let Some(p) = &self.advisory_ca_file {
            if !p.is_file() {
                errors.push(format!("--advisory-ca-file {}: not a readable file", p.display()));
            }
        }
        if events_on && node_name.is_empty() {
            errors.push("--kube-events: needs --node-name (STALEWATCH_NODE_NAME)".into());
        }
        if !errors.is_empty() {
            bail!("invalid configuration: {}", errors.join("; "));
        }
        let (Some(advisory_source), Some(listen)) = (source, listen) else {
            unreachable!()
        };
        let events = events_on.then(|| crate::agent::EventsConfig {
            access: match &self.kubeconfig {
                Some(k) => crate::agent::KubeAccess::Kubeconfig(k.clone()),
                None => crate::agent::KubeAccess::InCluster,
            },
            node_name: node_name.clone(),
            per_minute: self.kube_events_per_minute,
            queue: self.kube_events_queue,
        });
        Ok(crate::agent::Config {
            containerd_address: self.containerd_address.clone(),
            containerd_namespace: self.containerd_namespace.clone(),
            db_dir: self.db_dir.clone(),
            state_dir: self.state_dir.clone(),
            advisory_source,
            advisory_refresh,
            ecosystems,
            listen,
            findings_listen,
            stale_after,
            events,
            node_name,
            proc_root: self.proc_root.clone(),
            scan_concurrency: self.scan_concurrency,
            scan_timeout,
            reconcile_interval,
            advisory_ca_file: self.advisory_ca_file.clone(),
            vulnerability_info: self
                .vulnerability_info_metric
                .then_some(self.vulnerability_info_limit),
            state_max_bytes: self.state_max_bytes,
            unpacked_fallback,
            drift_interval,
        })
    }
}

#[derive(Subcommand, Debug)]
pub enum DbCommand {
    /// Download changed OSV ecosystems from the mirror and rebuild their indexes.
    Update(UpdateArgs),
    /// Show what the database holds, per ecosystem.
    Status(StatusArgs),
}

#[derive(Args, Debug)]
pub struct DbDirArg {
    /// Advisory database directory [default: $XDG_CACHE_HOME/stalewatch/db or ~/.cache/stalewatch/db]
    #[arg(long, env = "STALEWATCH_DB_DIR")]
    pub db_dir: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct ScanArgs {
    /// rootfs:DIR, oci:DIR, oci-archive:FILE or docker-archive:FILE
    pub target: String,
    #[command(flatten)]
    pub db: DbDirArg,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table, env = "STALEWATCH_FORMAT")]
    pub format: Format,
    /// Exit with status 1 when a finding has at least this severity (critical, high, medium, low, unknown).
    #[arg(long, env = "STALEWATCH_FAIL_ON")]
    pub fail_on: Option<String>,
    /// containerd socket, for `containerd:REF` targets.
    #[arg(
        long,
        env = "STALEWATCH_CONTAINERD_ADDRESS",
        default_value = "/run/containerd/containerd.sock"
    )]
    pub containerd_address: PathBuf,
    /// containerd namespace, for `containerd:REF` targets.
    #[arg(long, env = "STALEWATCH_CONTAINERD_NAMESPACE", default_value = "k8s.io")]
    pub containerd_namespace: String,
}

#[derive(Args, Debug)]
pub struct UpdateArgs {
    /// OSV bulk mirror base (`<base>/<Ecosystem>/all.zip`): https://, http://, file:/// or a directory.
    #[arg(long, env = "STALEWATCH_ADVISORY_SOURCE", default_value = DEFAULT_ADVISORY_SOURCE)]
    pub advisory_source: String,
    /// Extra CA certificates (PEM) to trust for an https mirror.
    #[arg(long, env = "STALEWATCH_ADVISORY_CA_FILE")]
    pub advisory_ca_file: Option<PathBuf>,
    #[command(flatten)]
    pub db: DbDirArg,
    /// Ecosystems to update (repeatable) [default: all supported].
    #[arg(long = "ecosystem", value_name = "NAME")]
    pub ecosystems: Vec<String>,
    /// Report format: text on stderr, or one JSON object per ecosystem on stdout.
    #[arg(long, value_enum, default_value_t = StatusFormat::Table)]
    pub format: StatusFormat,
}

#[derive(Args, Debug)]
pub struct StatusArgs {
    #[command(flatten)]
    pub db: DbDirArg,
    #[arg(long, value_enum, default_value_t = StatusFormat::Table)]
    pub format: StatusFormat,
}

fn default_db_dir() -> anyhow::Result<PathBuf> {
    if let Some(x) = std::env::var_os("XDG_CACHE_HOME").filter(|v| !v.is_empty()) {
        return Ok(PathBuf::from(x).join("stalewatch/db"));
    }
    let home = std::env::var_os("HOME").context("neither --db-dir, XDG_CACHE_HOME nor HOME is set")?;
    Ok(PathBuf::from(home).join(".cache/stalewatch/db"))
}

impl DbDirArg {
    fn resolve(&self) -> anyhow::Result<PathBuf> {
        match &self.db_dir {
            Some(d) => Ok(d.clone()),
            None => default_db_dir(),
        }
    }
}

pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Scan(a) => {
            // Validate everything before reading anything.
            let mut errors = Vec::new();
            let target = source::Target::parse(&a.target)
                .map_err(|e| errors.push(e.to_string()))
                .ok();
            let fail_on = match a.fail_on.as_deref().map(str::parse::<Severity>) {
                Some(Err(e)) => {
                    errors.push(format!("--fail-on: {e}"));
                    None
                }
                Some(Ok(s)) => Some(s),
                None => None,
            };
            let now = clock::now_unix().map_err(|e| errors.push(e.to_string())).ok();
            let db_dir = a.db.resolve().map_err(|e| errors.push(e.to_string())).ok();
            if !errors.is_empty() {
                bail!("{}", errors.join("; "));
            }
            let (Some(target), Some(now), Some(db_dir)) = (target, now, db_dir) else {
                unreachable!()
            };
            let ctrd = source::ContainerdOptions {
                address: a.containerd_address.clone(),
                namespace: a.containerd_namespace.clone(),
            };
            let report = scan::run(&target, &a.target, &ctrd, &db_dir, now)?;
            output::print_report(&report, a.format, now)?;
            let failed = match (fail_on, report.max_severity()) {
                (Some(threshold), Some(max)) => max >= threshold,
                _ => false,
            };
            Ok(if failed {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            })
        }
        Command::Db(DbCommand::Update(a)) => {
            let source = db::update::Source::parse(&a.advisory_source)?;
            let ecosystems = if a.ecosystems.is_empty() {
                db::SUPPORTED_ECOSYSTEMS.iter().map(|s| s.to_string()).collect()
            } else {
                a.ecosystems.clone()
            };
            let bad: Vec<&String> = ecosystems
                .iter()
                .filter(|e| !db::valid_ecosystem_name(e))
                .collect();
            if !bad.is_empty() {
                bail!("--ecosystem: invalid name(s) {bad:?} (OSV ecosystem names such as Alpine, Debian, \"Rocky Linux\")");
            }
            let dir = a.db.resolve()?;
            let json = a.format == StatusFormat::Json;
            let ok = db::update::run(&source, &dir, &ecosystems, a.advisory_ca_file.as_deref(), json)?;
            Ok(if ok { ExitCode::SUCCESS } else { ExitCode::from(1) })
        }
        Command::Agent(a) => {
            let cfg = a.config()?;
            crate::agent::run(cfg)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Db(DbCommand::Status(a)) => {
            let dir = a.db.resolve()?;
            output::print_status(&db::Store::new(&dir).state()?, &dir, a.format)?;
            Ok(ExitCode::SUCCESS)
        }
    }
}
