//! Command line: parsed and validated as a whole before anything touches the disk or network.

use anyhow::{bail, Context};
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use crate::db::feeds::FeedSource;
use crate::db::update::{FeedSources, Source};
use crate::fail_on::FailOn;
use crate::output::{Format, StatusFormat};
use crate::{clock, db, output, scan, source, triage};

mod agent_config;
mod mirror_config;
mod parse;

pub use parse::Off;
use parse::{
    ecosystems_or_all, parse_age, parse_ecosystem, parse_fail_on, parse_feed, parse_interval,
    parse_min_severity, parse_optional_interval, parse_optional_listen, parse_severity,
    parse_severity_or_unknown, parse_source,
};

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
    /// GET each URL and fail unless it answers 200 (and holds `--expect`): `helm test`'s probe.
    Check(CheckArgs),
    /// Serve a cluster's OSV mirror and keep it synced from upstream (one pod: deploy/mirror).
    Mirror(MirrorArgs),
}

#[derive(Args, Debug)]
pub struct MirrorArgs {
    /// The directory served and synced (`<data>/<Ecosystem>/all.zip`, `kev/`, `epss/`).
    #[arg(long, env = "STALEWATCH_MIRROR_DATA", default_value = "/data")]
    pub data: PathBuf,
    /// Where to sync from: the OSV bucket or another mirror (`<upstream>/<Ecosystem>/all.zip`).
    #[arg(long, env = "STALEWATCH_MIRROR_UPSTREAM", default_value = DEFAULT_ADVISORY_SOURCE)]
    pub upstream: String,
    /// OSV ecosystems to carry (repeatable); default: every one stalewatch reads.
    #[arg(
        long = "ecosystem",
        env = "STALEWATCH_MIRROR_ECOSYSTEMS",
        value_delimiter = ','
    )]
    pub ecosystems: Vec<String>,
    /// CISA's KEV catalog, or `off`.
    #[arg(
        long,
        env = "STALEWATCH_MIRROR_KEV_UPSTREAM",
        default_value = "https://www.cisa.gov/sites/default/files/feeds/known_exploited_vulnerabilities.json"
    )]
    pub kev_upstream: String,
    /// FIRST's EPSS scores, or `off`.
    #[arg(
        long,
        env = "STALEWATCH_MIRROR_EPSS_UPSTREAM",
        default_value = "https://epss.cyentia.com/epss_scores-current.csv.gz"
    )]
    pub epss_upstream: String,
    /// Extra CA certificates (PEM) to trust for the upstream (a TLS-inspecting proxy's).
    #[arg(long, env = "STALEWATCH_MIRROR_CA_FILE")]
    pub ca_file: Option<PathBuf>,
    /// Time between sync passes.
    #[arg(long, env = "STALEWATCH_MIRROR_INTERVAL", default_value = "1h", value_parser = parse_interval)]
    pub interval: Duration,
    /// Where the files, /metrics, /healthz and /readyz are served.
    #[arg(long, env = "STALEWATCH_MIRROR_LISTEN", default_value = "0.0.0.0:8080")]
    pub listen: SocketAddr,
    /// Sync once and exit: 0 when every file was refreshed, 1 when any failed. No server.
    #[arg(long)]
    pub once: bool,
}

#[derive(Args, Debug)]
pub struct CheckArgs {
    /// URLs to GET (an agent's http://…:9477/readyz, /metrics).
    #[arg(required = true)]
    pub urls: Vec<String>,
    /// Text a body must hold (a metric name, say): given once, every body; given once per
    /// URL, each URL's body its own, in order.
    #[arg(long)]
    pub expect: Vec<String>,
    /// Deadline of each request.
    #[arg(long, default_value = "10s", value_parser = parse_interval)]
    pub timeout: Duration,
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
    #[arg(long, env = "STALEWATCH_ADVISORY_SOURCE", default_value = DEFAULT_ADVISORY_SOURCE, value_parser = parse_source)]
    pub advisory_source: Source,
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
        value_delimiter = ',',
        value_enum
    )]
    pub unpacked_fallback: Vec<FallbackArg>,
    /// Bound on the image cache in the state directory (bytes); beyond it, images no container runs are dropped first.
    #[arg(long, env = "STALEWATCH_STATE_MAX_BYTES", default_value_t = 256 << 20)]
    pub state_max_bytes: u64,
    /// How often advisories are refreshed (humantime: 90s, 5m, 1h), with ±10 % jitter.
    #[arg(long, env = "STALEWATCH_ADVISORY_REFRESH", default_value = "1h", value_parser = parse_interval)]
    pub advisory_refresh: Duration,
    /// Ecosystems to keep (repeatable) [default: all supported].
    #[arg(long = "ecosystem", value_name = "NAME", value_parser = parse_ecosystem)]
    pub ecosystems: Vec<String>,
    /// Address for /metrics, /healthz, /readyz.
    #[arg(long, env = "STALEWATCH_LISTEN", default_value = "0.0.0.0:9477")]
    pub listen: SocketAddr,
    /// Address for /v1/findings (what is exploitable on the node: keep it on loopback), or
    /// `off`; the same address as --listen serves it there.
    #[arg(long, env = "STALEWATCH_FINDINGS_LISTEN", default_value = "127.0.0.1:9478", value_parser = parse_optional_listen)]
    pub findings_listen: Off<SocketAddr>,
    /// A request's headers must arrive whole within this (a client trickling bytes is cut
    /// off, not kept alive by each byte).
    #[arg(long, env = "STALEWATCH_HTTP_HEADER_TIMEOUT", default_value = "5s", value_parser = parse_interval)]
    pub http_header_timeout: Duration,
    /// Open HTTP connections at most, per listener; at the cap the oldest connection still
    /// waiting for a request is closed to admit a new one.
    #[arg(long, env = "STALEWATCH_HTTP_MAX_CONNECTIONS", default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..))]
    pub http_max_connections: u32,
    /// Bytes of a request's head (request line and headers) at most; larger ones get 431.
    #[arg(long, env = "STALEWATCH_HTTP_MAX_HEADER_BYTES", default_value_t = 16384, value_parser = clap::value_parser!(u32).range(8192..))]
    pub http_max_header_bytes: u32,
    /// How often the runtime checks run on each container — packages in use (process maps)
    /// and drift (live package databases vs the image) — or `off` where `SYS_PTRACE` is
    /// refused. A steady check costs about 0.14 ms per container (docs/benchmarks.md).
    #[arg(long, env = "STALEWATCH_DRIFT_INTERVAL", default_value = "5m", value_parser = parse_optional_interval)]
    pub drift_interval: Off<Duration>,
    /// A fixable vulnerability whose fix is older than this makes the container a stale runtime.
    #[arg(long, env = "STALEWATCH_STALE_AFTER", default_value = "7d", value_parser = parse_age)]
    pub stale_after: Duration,
    /// What makes a stale runtime (`stalewatch_container_oldest_fix_age_seconds`, the
    /// `StaleRuntime` Event): fixes of vulnerabilities at or above this severity (critical,
    /// high, medium, low), or `unknown` for every one — distributions whose records carry no
    /// severity (Alpine, Debian) give only `unknown` findings.
    #[arg(long, env = "STALEWATCH_STALE_MIN_SEVERITY", default_value = "medium", value_parser = parse_severity_or_unknown)]
    pub stale_min_severity: stalewatch_core::advisory::Severity,
    /// Kubernetes Events on pods: `auto` (on in a cluster or with --kubeconfig), `on`, `off`.
    #[arg(long, env = "STALEWATCH_KUBE_EVENTS", value_enum, default_value_t = Switch::Auto)]
    pub kube_events: Switch,
    /// kubeconfig for the Kubernetes API [default: the pod's service account].
    #[arg(long, env = "STALEWATCH_KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,
    /// At most this many Events per minute from this node (burst of the same size).
    #[arg(long, env = "STALEWATCH_KUBE_EVENTS_PER_MINUTE", default_value_t = 30)]
    pub kube_events_per_minute: u32,
    /// `VulnerableImage` Events are published for new fixable vulnerabilities at or above
    /// this severity (critical, high, medium, low), or `kev` for known-exploited ones only.
    #[arg(long, env = "STALEWATCH_KUBE_EVENTS_MIN_SEVERITY", default_value = "high", value_parser = parse_min_severity)]
    pub kube_events_min_severity: crate::agent::notify::MinSeverity,
    /// Events waiting to be published beyond this are dropped and counted.
    #[arg(long, env = "STALEWATCH_KUBE_EVENTS_QUEUE", default_value_t = 256)]
    pub kube_events_queue: usize,
    /// This node's name (the DaemonSet fills it from the downward API) [default: hostname].
    #[arg(long, env = "STALEWATCH_NODE_NAME")]
    pub node_name: Option<String>,
    /// Where the host's /proc is mounted.
    #[arg(long, env = "STALEWATCH_PROC_ROOT", default_value = "/proc")]
    pub proc_root: PathBuf,
    /// The node's own packages: `auto` (on when the host's os-release is mounted under
    /// --host-root), `on`, `off`.
    #[arg(long, env = "STALEWATCH_NODE_SCAN", value_enum, default_value_t = Switch::Auto)]
    pub node_scan: Switch,
    /// Where the host's files are mounted read-only for the node scan: its os-release and
    /// package databases (and nothing else) are read under it.
    #[arg(long, env = "STALEWATCH_HOST_ROOT", default_value = "/host")]
    pub host_root: PathBuf,
    /// How long the engine may go without a heartbeat before `/healthz` fails (default:
    /// `--scan-timeout` plus 10 minutes: one image read may legitimately take that long).
    #[arg(long, env = "STALEWATCH_STUCK_AFTER", value_parser = parse_interval)]
    pub stuck_after: Option<Duration>,
    /// Deadline of one containerd call; a containerd that does not answer within it is down.
    #[arg(long, env = "STALEWATCH_CONTAINERD_TIMEOUT", default_value = "30s", value_parser = parse_interval)]
    pub containerd_timeout: Duration,
    /// Runtimes whose task PID is a VM's or a sandbox's, not the container's (a trailing `*`:
    /// a prefix): no `/proc` read is made for their containers.
    #[arg(
        long,
        env = "STALEWATCH_SANDBOXED_RUNTIMES",
        default_value = "io.containerd.kata*,io.containerd.runsc*",
        value_delimiter = ','
    )]
    pub sandboxed_runtimes: Vec<String>,
    /// Images inventoried at once.
    #[arg(long, env = "STALEWATCH_SCAN_CONCURRENCY", default_value_t = 1)]
    pub scan_concurrency: usize,
    /// Longest time one image's inventory may take.
    #[arg(long, env = "STALEWATCH_SCAN_TIMEOUT", default_value = "10m", value_parser = parse_interval)]
    pub scan_timeout: Duration,
    /// Full reconcile with containerd at least this often (events trigger one at once).
    #[arg(long, env = "STALEWATCH_RECONCILE_INTERVAL", default_value = "60s", value_parser = parse_interval)]
    pub reconcile_interval: Duration,
    #[command(flatten)]
    pub feeds: FeedArgs,
    /// A directory of OpenVEX documents (every `*.json`; a ConfigMap volume fits), read again
    /// when it changes; a bad document is logged and counted, and the last good set stays.
    #[arg(long, env = "STALEWATCH_VEX_DIR")]
    pub vex_dir: Option<PathBuf>,
    /// In `/v1/vex`, state `not_affected` (vulnerable_code_not_in_execute_path) for findings
    /// whose package no process of the image's running containers maps, instead of only
    /// noting it: a trade-off (a package loaded later, or used without being mapped — a script
    /// interpreter's modules — is missed), off by default. Needs the runtime checks.
    #[arg(long, env = "STALEWATCH_VEX_IN_USE_NOT_AFFECTED")]
    pub vex_in_use_not_affected: bool,
    /// The author `/v1/vex` documents name [default: stalewatch/<node name>].
    #[arg(long, env = "STALEWATCH_VEX_AUTHOR")]
    pub vex_author: Option<String>,
    /// A base image the node's images are built on (a containerd reference; repeatable,
    /// comma-separated in the environment): images whose layers start with its layers name
    /// it as their base when their labels name none.
    #[arg(
        long = "base-image",
        value_name = "REF",
        env = "STALEWATCH_BASE_IMAGES",
        value_delimiter = ','
    )]
    pub base_images: Vec<String>,
    /// POST CloudEvents (structured JSON: base_updated, stale_digest, vulnerable) to this
    /// receiver (repeatable; comma-separated in the environment). Kept in a durable outbox
    /// in the state directory until delivered.
    #[arg(
        long = "notify-url",
        value_name = "URL",
        env = "STALEWATCH_NOTIFY_URLS",
        value_delimiter = ','
    )]
    pub notify_urls: Vec<String>,
    /// Sign each CloudEvent's body with HMAC-SHA256 keyed by this file's content (surrounding
    /// whitespace trimmed), sent as `X-Signature: sha256=<hex>` (Flux's generic-hmac form).
    #[arg(long, env = "STALEWATCH_NOTIFY_SECRET_FILE")]
    pub notify_secret_file: Option<PathBuf>,
    /// `io.stalewatch.container.vulnerable` is sent for new findings at or above this
    /// severity (critical, high, medium, low), or `kev` for known-exploited ones only.
    #[arg(long, env = "STALEWATCH_NOTIFY_MIN_SEVERITY", default_value = "high", value_parser = parse_min_severity)]
    pub notify_min_severity: crate::agent::notify::MinSeverity,
    /// Deadline of one delivery attempt (connect, send, answer).
    #[arg(long, env = "STALEWATCH_NOTIFY_TIMEOUT", default_value = "10s", value_parser = parse_interval)]
    pub notify_timeout: Duration,
    /// CloudEvents kept per receiver while it is unreachable; beyond, the oldest are dropped.
    #[arg(long, env = "STALEWATCH_NOTIFY_OUTBOX_MAX", default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..))]
    pub notify_outbox_max: u32,
    /// Redeploy workloads labelled `stalewatch.io/redeploy=stale-digest` whose containers run
    /// an older build of their tag, onto the newer build the node holds once it passed the
    /// validation gate: `off`, `dry-run` (the patch sent with dryRun=All), `on`. Needs the
    /// RBAC of deploy/components/redeploy (Helm: redeploy.enabled).
    #[arg(long, env = "STALEWATCH_REDEPLOY", value_enum, default_value_t = RedeployArg::Off)]
    pub redeploy: RedeployArg,
    /// The gate: a newer build with a finding at or above this severity that the running one
    /// lacks is not deployed (nor one with more findings in all).
    #[arg(long, env = "STALEWATCH_REDEPLOY_MAX_SEVERITY", default_value = "high", value_parser = parse_severity)]
    pub redeploy_max_severity: stalewatch_core::advisory::Severity,
    /// At most one redeploy per workload within this.
    #[arg(long, env = "STALEWATCH_REDEPLOY_INTERVAL", default_value = "1h", value_parser = parse_interval)]
    pub redeploy_interval: Duration,
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

/// `--redeploy`.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum RedeployArg {
    Off,
    DryRun,
    On,
}

/// `auto`, `on` or `off`.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Switch {
    /// On where it applies (Events: in a cluster, or with --kubeconfig).
    Auto,
    #[value(alias = "true")]
    On,
    #[value(alias = "false")]
    Off,
}

/// A source of unpacked files for `--unpacked-fallback` (`none`: never).
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum FallbackArg {
    Snapshot,
    Proc,
    None,
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
    /// Exit with status 1 when any condition holds: a severity (that severity or above:
    /// critical, high, medium, low, unknown), `kev` (a known-exploited finding), `epss>=X`;
    /// comma-separated, e.g. `high,kev,epss>=0.5`.
    #[arg(long, env = "STALEWATCH_FAIL_ON", value_parser = parse_fail_on)]
    pub fail_on: Option<FailOn>,
    /// An OpenVEX document (path or http(s) URL; repeatable): `not_affected` and `fixed`
    /// statements take their findings out of the counts and into `suppressed`.
    #[arg(long, value_name = "PATH|URL")]
    pub vex: Vec<String>,
    /// List the findings VEX statements suppressed in the table too.
    #[arg(long)]
    pub show_suppressed: bool,
    /// The image's base, as a scan target (`oci-archive:FILE`, `containerd:REF`, …): used
    /// when the image's labels name none and its layers start with the base's.
    #[arg(long, value_name = "TARGET")]
    pub base_image: Option<String>,
    /// The author `--format openvex` names (who stands behind its statements).
    #[arg(long, env = "STALEWATCH_VEX_AUTHOR", default_value = "stalewatch")]
    pub vex_author: String,
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
    #[arg(long, env = "STALEWATCH_ADVISORY_SOURCE", default_value = DEFAULT_ADVISORY_SOURCE, value_parser = parse_source)]
    pub advisory_source: Source,
    /// Extra CA certificates (PEM) to trust for an https mirror.
    #[arg(long, env = "STALEWATCH_ADVISORY_CA_FILE")]
    pub advisory_ca_file: Option<PathBuf>,
    #[command(flatten)]
    pub db: DbDirArg,
    /// Ecosystems to update (repeatable) [default: all supported].
    #[arg(long = "ecosystem", value_name = "NAME", value_parser = parse_ecosystem)]
    pub ecosystems: Vec<String>,
    /// Report format: text on stderr, or one JSON object per ecosystem on stdout.
    #[arg(long, value_enum, default_value_t = StatusFormat::Table)]
    pub format: StatusFormat,
    #[command(flatten)]
    pub feeds: FeedArgs,
}

/// Where the triage feeds come from (none by default: each is opt-in).
#[derive(Args, Debug, Clone)]
pub struct FeedArgs {
    /// CISA's KEV catalog (its published JSON), a URL or a path, refreshed with the advisories:
    /// https://www.cisa.gov/sites/default/files/feeds/known_exploited_vulnerabilities.json or a mirror.
    #[arg(long, env = "STALEWATCH_KEV_SOURCE", value_name = "URL|PATH|off", value_parser = parse_feed)]
    pub kev_source: Option<Off<FeedSource>>,
    /// FIRST's EPSS scores (the daily CSV, plain or gzip), a URL or a path:
    /// https://epss.cyentia.com/epss_scores-current.csv.gz or a mirror.
    #[arg(long, env = "STALEWATCH_EPSS_SOURCE", value_name = "URL|PATH|off", value_parser = parse_feed)]
    pub epss_source: Option<Off<FeedSource>>,
}

impl FeedArgs {
    pub fn sources(&self) -> FeedSources {
        FeedSources {
            kev: self.kev_source.clone().and_then(|o| o.0),
            epss: self.epss_source.clone().and_then(|o| o.0),
        }
    }
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
        Command::Scan(a) => run_scan(&a),
        Command::Db(DbCommand::Update(a)) => {
            let ecosystems = ecosystems_or_all(&a.ecosystems);
            let dir = a.db.resolve()?;
            let json = a.format == StatusFormat::Json;
            let ok = db::update::run(
                &a.advisory_source,
                &dir,
                &ecosystems,
                &a.feeds.sources(),
                a.advisory_ca_file.as_deref(),
                json,
            )?;
            Ok(if ok { ExitCode::SUCCESS } else { ExitCode::from(1) })
        }
        Command::Agent(a) => {
            let cfg = a.config()?;
            crate::agent::run(cfg)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Check(a) => crate::check::run(&a.urls, &a.expect, a.timeout),
        Command::Mirror(a) => crate::mirror::run(a.config()?),
        Command::Db(DbCommand::Status(a)) => {
            let dir = a.db.resolve()?;
            output::print_status(&db::Store::new(&dir).state()?, &dir, a.format)?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// What names the advisory data a scan used: each ecosystem's archive hash, and the feeds'
/// versions (stable while the data is).
fn data_version(db_dir: &std::path::Path) -> String {
    let state = db::Store::new(db_dir).state().unwrap_or_default();
    let ecosystems = state
        .ecosystems
        .iter()
        .map(|(e, s)| format!("{e}={}", s.archive_sha256.as_deref().unwrap_or("-")));
    let feeds = state.feeds.iter().map(|(f, s)| {
        format!(
            "{f}={}@{}",
            s.version.as_deref().unwrap_or("-"),
            s.date.as_deref().unwrap_or("-")
        )
    });
    ecosystems.chain(feeds).collect::<Vec<_>>().join(",")
}

/// `scan`: everything validated (and the VEX documents read) before the target is read.
fn run_scan(a: &ScanArgs) -> anyhow::Result<ExitCode> {
    let mut errors = Vec::new();
    let target = source::Target::parse(&a.target)
        .map_err(|e| errors.push(e.to_string()))
        .ok();
    let base_image = a
        .base_image
        .as_deref()
        .map(|b| source::Target::parse(b).map_err(|e| errors.push(format!("--base-image: {e}"))))
        .transpose()
        .ok()
        .flatten();
    let now = clock::now_unix().map_err(|e| errors.push(e.to_string())).ok();
    let db_dir = a.db.resolve().map_err(|e| errors.push(e.to_string())).ok();
    if let (Some(f), Some(dir)) = (&a.fail_on, &db_dir) {
        let store = db::Store::new(dir);
        for (needed, feed, flag) in [
            (f.needs_kev(), db::feeds::Feed::Kev, "--kev-source"),
            (f.needs_epss(), db::feeds::Feed::Epss, "--epss-source"),
        ] {
            if needed && !store.feed_path(feed).is_file() {
                errors.push(format!(
                    "--fail-on {}: no {} data in {} (run `stalewatch db update {flag} …` first)",
                    feed.name(),
                    feed.name().to_uppercase(),
                    dir.display()
                ));
            }
        }
    }
    if !errors.is_empty() {
        bail!("{}", errors.join("; "));
    }
    let (Some(target), Some(now), Some(db_dir)) = (target, now, db_dir) else {
        unreachable!()
    };
    let vex = (!a.vex.is_empty())
        .then(|| triage::load_vex(&a.vex))
        .transpose()?;
    let ctrd = source::ContainerdOptions {
        address: a.containerd_address.clone(),
        namespace: a.containerd_namespace.clone(),
    };
    let base = base_image.as_ref().zip(a.base_image.as_deref());
    let mut report = scan::run(&target, &a.target, base, &ctrd, &db_dir, now)?;
    let (kev, epss) = triage::load_feeds(&db::Store::new(&db_dir))?;
    let data = triage::TriageData { kev, epss, vex };
    report.apply_triage(&data.triage());
    let options = output::PrintOptions {
        format: a.format,
        now_unix: now,
        show_suppressed: a.show_suppressed,
        data_version: data_version(&db_dir),
        vex_author: a.vex_author.clone(),
    };
    output::print_report(&report, &options)?;
    let met = a.fail_on.as_ref().map(|f| f.met(&report)).unwrap_or_default();
    if met.is_empty() {
        return Ok(ExitCode::SUCCESS);
    }
    eprintln!("stalewatch: --fail-on: {} met", met.join(", "));
    Ok(ExitCode::from(1))
}
