//! stalewatch: flags running containers that are exposed to known, fixable vulnerabilities.
//! This binary is the I/O shell around `stalewatch-core`.
#![forbid(unsafe_code)]

mod cli;
mod clock;
mod containerd;
mod db;
mod output;
mod scan;

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("STALEWATCH_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    match cli::run(args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("stalewatch: {e:#}");
            ExitCode::from(2)
        }
    }
}
