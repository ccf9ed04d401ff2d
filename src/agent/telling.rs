//! The one "told" state of every notifier (`told-v1.json`): what each pod's Events, each
//! image's CloudEvents and each transition told. Loaded at start — a corrupt or other-version
//! file kept aside and counted (`StateFile`) — brought up to date by each change list, saved
//! when it changed. After a lost state, what runs is told again: each transition keeps its
//! id (receivers de-duplicate), Events keep their names and rate limit, and what the first
//! change list tells again is counted (`stalewatch_told_again_total{notifier}`).

use std::collections::BTreeSet;

use super::changes::{ChangeList, Thresholds, Told};
use super::metrics::Metrics;
use super::snapshot::Snapshot;
use super::state_file::{Loaded, StateFile};

const TOLD_FILE: &str = "told-v1.json";

pub struct Telling {
    file: StateFile<Told>,
    told: Told,
    /// Pods told by an earlier run that this run has not looked at yet.
    restored: BTreeSet<String>,
    thresholds: Thresholds,
    /// The state was lost at start (corrupt, another version) and the first full reconcile
    /// has not been told yet: what the change lists tell meanwhile is told again.
    lost: bool,
}

impl Telling {
    pub fn new(state_dir: &std::path::Path, thresholds: Thresholds, metrics: &Metrics) -> Telling {
        let file: StateFile<Told> = StateFile::new(state_dir, TOLD_FILE, "told", 1, metrics.state_counters());
        let (told, loaded) = file.load();
        let restored: BTreeSet<String> = told.pods.keys().cloned().collect();
        tracing::info!(
            pods = restored.len(),
            images = told.images.len(),
            transitions = told.transitions.len(),
            "restored what was told"
        );
        Telling {
            file,
            told,
            restored,
            thresholds,
            lost: !matches!(loaded, Loaded::Present | Loaded::Missing),
        }
    }

    /// The change list of `snap`; the CloudEvents and redeploy parts only with advisory data
    /// (without it no report exists, and every image would look fixed). `settled`: the snapshot
    /// follows a full reconcile (what runs is all read).
    /// `listed`: containerd has listed what runs (before, pods and images are unknown).
    pub fn changes(
        &mut self,
        snap: &Snapshot,
        with_data: bool,
        listed: bool,
        settled: bool,
        now: i64,
        metrics: &Metrics,
    ) -> ChangeList {
        let th = Thresholds {
            notify: self.thresholds.notify.filter(|_| with_data),
            redeploy: self.thresholds.redeploy && with_data,
            containers_listed: listed,
            ..self.thresholds
        };
        let list = ChangeList::between(&mut self.told, &mut self.restored, snap, &th, now);
        if self.lost {
            let events = list.pods.len();
            let node = usize::from(!list.node_vulnerable.is_empty());
            let cloud = list.vulnerable.len() + list.base_updated.len() + list.stale_digest.len() + node;
            metrics
                .told_again
                .with_label_values(&["kube_events"])
                .inc_by(events as u64);
            metrics
                .told_again
                .with_label_values(&["cloudevents"])
                .inc_by(cloud as u64);
            if events + cloud > 0 {
                tracing::warn!(events, cloudevents = cloud, "the told state was lost: told again");
            }
            self.lost = !(settled && with_data);
        }
        if list.told_changed {
            self.file.save(&self.told);
        }
        list
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::changes::tests::{one_vulnerable_pod, ALL};
    use crate::agent::notify::events;

    fn ids(snap: &Snapshot, list: &ChangeList) -> Vec<String> {
        list.vulnerable
            .iter()
            .map(|(d, new)| events::vulnerable(snap, d, new, 0).id)
            .collect()
    }

    #[test]
    fn a_lost_told_state_is_kept_aside_counted_and_told_again_under_the_same_ids() {
        let dir = tempfile::tempdir().unwrap();
        let metrics = Metrics::register(Some(10)).unwrap();
        let snap = one_vulnerable_pod();
        let mut t = Telling::new(dir.path(), ALL, &metrics);
        let first = t.changes(&snap, true, true, true, 0, &metrics);
        let before = ids(&snap, &first);
        assert_eq!(before.len(), 1);
        assert!(t
            .changes(&snap, true, true, true, 0, &metrics)
            .vulnerable
            .is_empty());
        // A restart with the state intact: nothing is told again.
        let mut t = Telling::new(dir.path(), ALL, &metrics);
        assert!(t.changes(&snap, true, true, true, 0, &metrics).pods.is_empty());
        assert_eq!(metrics.told_again.with_label_values(&["cloudevents"]).get(), 0);
        // A corrupt state: kept aside (never deleted), counted, and what runs is told again
        // under the ids it had, counted as told again.
        std::fs::write(dir.path().join(TOLD_FILE), b"{\"version\":1,\"data\":{\"pods\":7").unwrap();
        let mut t = Telling::new(dir.path(), ALL, &metrics);
        let aside: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("told-v1.json.corrupt-"))
            .collect();
        assert_eq!(aside.len(), 1, "{aside:?}");
        let counted = metrics
            .state_load_errors
            .with_label_values(&["told", "corrupt"])
            .get();
        assert_eq!(counted, 1);
        let again = t.changes(&snap, true, true, true, 0, &metrics);
        assert_eq!(ids(&snap, &again), before);
        assert_eq!(again.pods.len(), 1);
        assert_eq!(metrics.told_again.with_label_values(&["cloudevents"]).get(), 1);
        assert_eq!(metrics.told_again.with_label_values(&["kube_events"]).get(), 1);
        // After the first full reconcile, new news is news, not told again.
        let _ = t.changes(&snap, true, true, true, 0, &metrics);
        assert_eq!(metrics.told_again.with_label_values(&["cloudevents"]).get(), 1);
    }
}
