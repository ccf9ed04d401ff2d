//! What the tasks around the engine tell it: the small typed messages of one bounded queue.

use crate::containerd::Containerd;
use crate::db::update::EcosystemResult;

/// Room for bursts; a wake-up that finds the queue full is dropped (one is already queued).
pub const QUEUE: usize = 64;

pub enum Msg {
    /// containerd connected (`Some`) or was lost (`None`).
    Client(Option<Containerd>),
    /// Something happened in the containerd namespace: look again.
    Changed,
    /// The full reconcile interval passed.
    Tick,
    /// An advisory refresh finished.
    Refreshed(Vec<EcosystemResult>),
    /// The `--vex-dir` documents changed: the new set, or why it was refused.
    Vex(Result<stalewatch_core::triage::VexSet, String>),
    /// SIGTERM or Ctrl-C: save and stop.
    Stop,
}
