//! The runtime-checks owner: for each running container, what its processes map (packages in
//! use) and its live package databases against its image (drift). Bounded: one container at
//! a time, at low priority, each at most once per `--drift-interval`; databases whose
//! identity did not change are not read again. Stale digests are the inventory's (they come
//! from containerd's records, not from the container's files).

pub mod drift;
pub mod in_use;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use stalewatch_core::advisory::Severity;
use stalewatch_core::catalog::Inventory;
use stalewatch_core::layer::Limits;
use stalewatch_core::report::Report;

use super::images::cache::{ImageCache, ImageRecord};
use super::images::lower_priority;
use super::inventory::running::RunningContainer;
use super::metrics::Metrics;
use super::signals::Signal;
use super::snapshot::{CheckState, RuntimeCheckStates, Unchecked};
use super::store::{Drifted, FindingsStore};

/// A container's last runtime check.
pub struct LiveState {
    read_at: Instant,
    pub drift: drift::Drift,
    /// The live inventory, kept only while it differs from the image's (the findings store
    /// matches it).
    pub inventory: Option<Arc<Inventory>>,
    /// What its processes map (`None`: unknown).
    pub mapped: Option<in_use::Mapped>,
    /// Its package databases as last read (`drift::db_signature`).
    signature: Option<drift::DbSignature>,
    /// The in-use marks of a report's findings for `mapped`: kept until either changes.
    marks: Option<InUseMarks>,
}

/// The in-use marks of one report.
#[derive(Clone)]
pub struct InUseMarks {
    /// The report marked.
    pub report: Arc<Report>,
    /// A mark per finding (`None`: unknown for that package).
    pub marks: Arc<[Option<bool>]>,
    /// Distinct vulnerabilities in use, by severity.
    pub counts: BTreeMap<Severity, u64>,
}

impl LiveState {
    fn set_mapped(&mut self, mapped: Option<in_use::Mapped>) {
        if self.mapped != mapped {
            self.mapped = mapped;
            self.marks = None;
        }
    }

    /// The in-use marks of `report` (whose packages `image` describes unless the container
    /// drifted), computed once per (report, maps).
    fn mark(&mut self, report: &Arc<Report>, image: &Inventory) {
        let Some(mapped) = self.mapped.as_ref() else {
            self.marks = None;
            return;
        };
        if self
            .marks
            .as_ref()
            .is_none_or(|m| !Arc::ptr_eq(&m.report, report))
        {
            let inv = self.inventory.as_deref().unwrap_or(image);
            let (marks, counts) = in_use::marks(report, inv, mapped);
            self.marks = Some(InUseMarks {
                report: report.clone(),
                marks,
                counts,
            });
        }
    }

    /// The in-use marks of the container's report, where its maps were read.
    pub fn marks(&self) -> Option<&InUseMarks> {
        self.marks.as_ref().filter(|_| self.mapped.is_some())
    }
}

/// What one container's check found (read on a blocking thread).
struct Checked {
    /// The databases' identity did not change: only the maps were read.
    unchanged: bool,
    live: anyhow::Result<Option<Inventory>>,
    mapped: Result<Option<in_use::Mapped>, Unchecked>,
    signature: Option<drift::DbSignature>,
    took: Duration,
}

/// A container's last check attempt: when, and what could not be checked.
struct Attempt {
    at: Instant,
    in_use: Option<Unchecked>,
    drift: Option<Unchecked>,
}

pub struct RuntimeChecks {
    proc_root: PathBuf,
    /// `None`: the checks are off.
    interval: Option<Duration>,
    pub live: BTreeMap<String, LiveState>,
    /// Per container: its last attempt (what decides when the next is due).
    attempts: BTreeMap<String, Attempt>,
}

impl RuntimeChecks {
    pub fn new(proc_root: PathBuf, interval: Option<Duration>) -> RuntimeChecks {
        RuntimeChecks {
            proc_root,
            interval,
            live: BTreeMap::new(),
            attempts: BTreeMap::new(),
        }
    }

    /// Whether a container's checks were made, and why not.
    pub fn states(&self, id: &str) -> RuntimeCheckStates {
        if self.interval.is_none() {
            return RuntimeCheckStates {
                in_use: CheckState::OFF,
                drift: CheckState::OFF,
            };
        }
        let Some(a) = self.attempts.get(id) else {
            return RuntimeCheckStates::default();
        };
        let state = |u: Option<Unchecked>, known: bool| match (u, known) {
            (Some(u), _) => CheckState::unknown(u),
            (None, true) => CheckState::OK,
            // Read, but nothing came of it (the container was exiting): the next pass says.
            (None, false) => CheckState::PENDING,
        };
        let live = self.live.get(id);
        RuntimeCheckStates {
            in_use: state(a.in_use, live.is_some_and(|l| l.mapped.is_some())),
            drift: state(a.drift, live.is_some()),
        }
    }

    /// The containers whose packages differ from their image's, for the findings store.
    pub fn drifted(&self) -> Vec<Drifted<'_>> {
        self.live
            .iter()
            .filter_map(|(id, l)| {
                Some(Drifted {
                    id,
                    inventory: l.inventory.as_ref()?,
                    drift: &l.drift,
                })
            })
            .collect()
    }

    /// Marks the findings of each checked container's report (its live one where it
    /// drifted, its image's otherwise) with whether a process maps its package.
    pub fn mark_in_use(
        &mut self,
        running: &[RunningContainer],
        store: &FindingsStore,
        images: &BTreeMap<String, ImageRecord>,
    ) {
        for r in running {
            let Some(l) = self.live.get_mut(&r.id) else {
                continue;
            };
            let Some((digest, rec)) = r.image_digest.as_ref().and_then(|d| Some((d, images.get(d)?))) else {
                continue;
            };
            let report = match &l.inventory {
                Some(_) => store.live(&r.id).map(|lr| &lr.report),
                None => store.image(digest),
            };
            match report {
                Some(report) => l.mark(&report.clone(), &rec.inventory),
                None => l.marks = None,
            }
        }
    }

    /// Checks every running container due for it (the engine publishes after the pass).
    pub async fn check(&mut self, running: &[RunningContainer], images: &ImageCache, metrics: &Metrics) {
        let ids: BTreeSet<&String> = running.iter().map(|r| &r.id).collect();
        self.live.retain(|id, _| ids.contains(id));
        self.attempts.retain(|id, _| ids.contains(id));
        let Some(interval) = self.interval else {
            return;
        };
        let due: Vec<&RunningContainer> = running
            .iter()
            .filter(|r| {
                self.attempts
                    .get(&r.id)
                    .is_none_or(|a| a.at.elapsed() >= interval)
            })
            .filter(|r| {
                r.image_digest
                    .as_ref()
                    .is_some_and(|d| images.images.contains_key(d))
            })
            .collect();
        if due.is_empty() {
            return;
        }
        let pass = Instant::now();
        let proc_root = self.proc_root.clone();
        let namespaces = Arc::new(
            tokio::task::spawn_blocking(move || in_use::pid_namespaces(&proc_root))
                .await
                .unwrap_or_default(),
        );
        for r in due {
            // A sandboxed container's PID is its VM's or sandbox's: /proc/<pid> is not the
            // container, so nothing is read and both checks say why.
            if r.sandboxed {
                self.live.remove(&r.id);
                self.record(
                    &r.id,
                    Some(Unchecked::Sandboxed),
                    Some(Unchecked::Sandboxed),
                    metrics,
                );
                continue;
            }
            let (proc_root, ns, pid) = (self.proc_root.clone(), namespaces.clone(), r.pid);
            let known = self.live.get(&r.id).and_then(|l| l.signature.clone());
            let Ok(checked) =
                tokio::task::spawn_blocking(move || check_one(&proc_root, pid, &ns, known)).await
            else {
                continue;
            };
            metrics.runtime_check_duration.observe(checked.took.as_secs_f64());
            let Some(image) = r
                .image_digest
                .as_ref()
                .and_then(|d| images.images.get(d))
                .map(|rec| &rec.inventory)
            else {
                continue;
            };
            self.apply(&r.id, checked, image, metrics);
        }
        metrics
            .runtime_refresh_duration
            .observe(pass.elapsed().as_secs_f64());
    }

    /// Records an attempt, counting each check not made.
    fn record(&mut self, id: &str, in_use: Option<Unchecked>, drift: Option<Unchecked>, metrics: &Metrics) {
        for (check, u) in [("in_use", in_use), ("drift", drift)] {
            if let Some(reason) = u {
                metrics.emit(Signal::RuntimeCheck {
                    check,
                    reason,
                    container: id,
                });
            }
        }
        self.attempts.insert(
            id.to_string(),
            Attempt {
                at: Instant::now(),
                in_use,
                drift,
            },
        );
    }

    /// Records one container's check.
    fn apply(&mut self, id: &str, c: Checked, image: &Inventory, metrics: &Metrics) {
        let (mapped, maps_failed) = match c.mapped {
            Ok(m) => (m, None),
            Err(u) => {
                tracing::debug!(container = %id, reason = u.reason(), "in use: maps not read");
                (None, Some(u))
            }
        };
        if c.unchanged {
            self.record(id, maps_failed, None, metrics);
            if let Some(l) = self.live.get_mut(id) {
                l.read_at = Instant::now();
                l.set_mapped(mapped);
            }
            return;
        }
        let live = match c.live {
            Ok(Some(inv)) => inv,
            Ok(None) => {
                self.record(id, maps_failed, None, metrics);
                return;
            }
            Err(e) => {
                let u = io_reason(&e);
                let error = format!("{e:#}");
                metrics.emit(Signal::Scan {
                    reason: "drift_read",
                    what: id,
                    error: &error,
                });
                self.record(id, maps_failed, Some(u), metrics);
                // Retried at the next interval; the image's findings stand meanwhile.
                self.live.remove(id);
                return;
            }
        };
        self.record(id, maps_failed, None, metrics);
        let d = drift::compare(image, &live);
        // The same differences against the same image inventory: the same findings.
        if let Some(l) = self.live.get_mut(id).filter(|l| l.drift == d) {
            l.read_at = Instant::now();
            l.set_mapped(mapped);
            l.signature = c.signature;
            return;
        }
        if !d.is_empty() {
            tracing::info!(container = %id, added = d.added.len(), removed = d.removed.len(), changed = d.changed.len(), "packages drifted from the image");
        }
        let inventory = (!d.is_empty()).then(|| Arc::new(drift::with_image_language_packages(live, image)));
        self.live.insert(
            id.to_string(),
            LiveState {
                read_at: Instant::now(),
                inventory,
                drift: d,
                mapped,
                signature: c.signature,
                marks: None,
            },
        );
    }
}

#[cfg(test)]
impl RuntimeChecks {
    /// A container checked as the snapshot's table tests need: its live inventory (`None`:
    /// the same as its image's) and what its processes map.
    pub fn checked_for_test(
        &mut self,
        id: &str,
        image: &Inventory,
        live: Option<Inventory>,
        mapped: Option<in_use::Mapped>,
    ) {
        let d = live
            .as_ref()
            .map(|l| drift::compare(image, l))
            .unwrap_or_default();
        let inventory = live.filter(|_| !d.is_empty()).map(Arc::new);
        self.attempts.insert(
            id.to_string(),
            Attempt {
                at: Instant::now(),
                in_use: None,
                drift: None,
            },
        );
        self.live.insert(
            id.to_string(),
            LiveState {
                read_at: Instant::now(),
                drift: d,
                inventory,
                mapped,
                signature: None,
                marks: None,
            },
        );
    }
}

/// The reason a failed read gives: the first I/O error in its chain.
fn io_reason(e: &anyhow::Error) -> Unchecked {
    e.chain()
        .find_map(|c| c.downcast_ref::<std::io::Error>())
        .map_or(Unchecked::ReadFailed, Unchecked::of_io)
}

/// One container's check: its maps always, its package databases only when their identity
/// changed since `known`.
fn check_one(
    proc_root: &std::path::Path,
    pid: u32,
    namespaces: &BTreeMap<String, Vec<u32>>,
    known: Option<drift::DbSignature>,
) -> Checked {
    lower_priority();
    let started = Instant::now();
    let mapped = in_use::container_maps(proc_root, pid, namespaces);
    let signature = drift::db_signature(proc_root, pid);
    let unchanged = signature.is_some() && signature == known;
    let live = if unchanged {
        Ok(None)
    } else {
        drift::read_live(proc_root, pid, &Limits::default())
    };
    Checked {
        unchanged,
        live,
        mapped,
        signature,
        took: started.elapsed(),
    }
}
