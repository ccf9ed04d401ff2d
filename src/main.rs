//! stalewatch: flags running containers that are exposed to known, fixable vulnerabilities.
//! This binary is the I/O shell around `stalewatch-core`.
#![forbid(unsafe_code)]

mod agent;
mod check;
mod cli;
mod clock;
mod containerd;
mod db;
mod fail_on;
mod mirror;
mod output;
mod scan;
mod source;
mod triage;

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    // The agent logs at info by default (text or JSON); the CLI stays quiet unless asked.
    let (filter, json) = match &args.command {
        cli::Command::Agent(a) => (a.log_level.clone(), a.log_format == cli::LogFormat::Json),
        cli::Command::Mirror(_) => ("info".into(), false),
        _ => (
            std::env::var("STALEWATCH_LOG").unwrap_or_else(|_| "warn".into()),
            false,
        ),
    };
    let filter = tracing_subscriber::EnvFilter::try_new(&filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // A log that cannot be written (a full disk behind stderr) is dropped: tracing's report of
    // it would go to stderr too, and `eprintln!` panics there — it killed the engine's thread.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colours only for a person at a terminal: a pod's log keeps no escape codes.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .log_internal_errors(false);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
    match cli::run(args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("stalewatch: {e:#}");
            ExitCode::from(2)
        }
    }
}
