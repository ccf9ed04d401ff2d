//! Command line: parsed and validated as a whole before anything touches the disk or network.

use anyhow::{bail, Context};
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;
use std::process::ExitCode;

use stalewatch_core::advisory::Severity;

use crate::{clock, db, output, scan};

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
    #[command(flatten)]
    pub db: DbDirArg,
    /// Ecosystems to update (repeatable) [default: all supported].
    #[arg(long = "ecosystem", value_name = "NAME")]
    pub ecosystems: Vec<String>,
}

#[derive(Args, Debug)]
pub struct StatusArgs {
    #[command(flatten)]
    pub db: DbDirArg,
    #[arg(long, value_enum, default_value_t = StatusFormat::Table)]
    pub format: StatusFormat,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Table,
    Json,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum StatusFormat {
    Table,
    Json,
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
            let target = scan::Target::parse(&a.target)
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
            let ctrd = scan::ContainerdOptions {
                address: a.containerd_address.clone(),
                namespace: a.containerd_namespace.clone(),
            };
            let report = scan::run(&target, &a.target, &ctrd, &db_dir, now)?;
            output::print_report(&report, a.format)?;
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
            let ok = db::update::run(&source, &dir, &ecosystems)?;
            Ok(if ok { ExitCode::SUCCESS } else { ExitCode::from(1) })
        }
        Command::Db(DbCommand::Status(a)) => {
            let dir = a.db.resolve()?;
            output::print_status(&db::Store::new(&dir).state()?, &dir, a.format)?;
            Ok(ExitCode::SUCCESS)
        }
    }
}
