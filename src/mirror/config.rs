//! The mirror's settings, from the `mirror` subcommand's flags.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// What the mirror serves and syncs (the `mirror` subcommand's flags).
#[derive(Debug, Clone)]
pub struct Config {
    /// The served directory, written by the sync.
    pub data: PathBuf,
    /// The OSV bucket (or another mirror): `<upstream>/<Ecosystem>/all.zip`.
    pub upstream: String,
    /// OSV ecosystem names, as the bucket spells them.
    pub ecosystems: Vec<String>,
    /// CISA's KEV catalog (`None`: not carried), served as `kev/known_exploited_vulnerabilities.json`.
    pub kev_upstream: Option<String>,
    /// FIRST's EPSS scores (`None`: not carried), served as `epss/epss_scores-current.csv.gz`.
    pub epss_upstream: Option<String>,
    pub ca_file: Option<PathBuf>,
    pub interval: Duration,
    /// Where the files, `/metrics`, `/healthz` and `/readyz` are served.
    pub listen: SocketAddr,
    /// Sync once and exit (1 when anything failed); no server.
    pub once: bool,
}
