//! The change list: what is worth telling, computed once per snapshot as the difference
//! between what was told (`Told`, one state for every notifier, kept in `told-v1.json`) and
//! the facts of the next snapshot. Kubernetes Events (per pod), CloudEvents (per image and per
//! transition) and the validated redeploy (per container) each read their part of it, each
//! with its own threshold (`Thresholds`); a notifier that is off leaves its part of the told
//! state alone, so turning it on later tells what runs. Pure: the snapshot and the told state
//! in, the list out, the told state brought up to date.

use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use stalewatch_core::advisory::Severity;
use stalewatch_core::report::Report;

use super::snapshot::{MinSeverity, Snapshot};

/// Transitions remembered as told, at most (the oldest forgotten first).
pub const MAX_TRANSITIONS: usize = 10_000;

/// Each notifier's threshold; `None` (or `false`): the notifier is off.
#[derive(Debug, Clone, Copy, Default)]
pub struct Thresholds {
    /// `--kube-events-min-severity`: what makes a pod's `VulnerableImage`.
    pub kube_events: Option<MinSeverity>,
    /// `--notify-min-severity`: what makes an image's `vulnerable` CloudEvent.
    pub notify: Option<MinSeverity>,
    /// Whether redeploy candidates are wanted (`--redeploy`; its gate has its own maximum).
    pub redeploy: bool,
    /// Whether containerd has listed what runs: before that an empty snapshot means
    /// "unknown", and what was told of pods and images stands (the node's part needs none).
    pub containers_listed: bool,
}

/// What was told, by every notifier.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Told {
    /// Per pod (`namespace/pod`): the facts its Events told.
    #[serde(default)]
    pub pods: BTreeMap<String, PodState>,
    /// Per running image digest: the findings its `vulnerable` CloudEvents told.
    #[serde(default)]
    pub images: BTreeMap<String, BTreeSet<String>>,
    /// Transitions told as CloudEvents (`base_updated DIGEST NEW_BASE`, `stale_digest RUNNING
    /// NEWER`), with when (seconds since the epoch).
    #[serde(default)]
    pub transitions: BTreeMap<String, i64>,
    /// The node's findings told in `io.stalewatch.node.vulnerable` (`--node-scan`).
    #[serde(default)]
    pub node: BTreeSet<String>,
    /// What the node's Events told (`--node-scan`).
    #[serde(default)]
    pub node_events: NodeTold,
    /// Redeploy candidates offered (namespace, pod, container, newer digest): kept in memory
    /// only, so a restarted agent offers again and the Kubernetes side's checks decide.
    #[serde(skip)]
    pub offered: BTreeSet<(String, String, String, String)>,
}

/// What the node's Events told: its admitted fixable findings, and whether a reboot was due.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeTold {
    pub severe: BTreeSet<String>,
    pub reboot: bool,
}

/// The node's facts grew: one Event on the Node, under the most important reason.
#[derive(Debug, Clone)]
pub struct NodeNews {
    pub reason: Reason,
    /// (severity, id) of each admitted fixable finding, most severe first.
    pub severe: Vec<(Severity, String)>,
    pub reboot: bool,
    /// The running kernel's release, and the newer installed version, when a reboot is due.
    pub kernel: Option<(String, Option<String>)>,
}

/// A pod whose facts grew: one Event, under the most important reason.
#[derive(Debug, Clone)]
pub struct PodNews {
    pub namespace: String,
    pub pod: String,
    pub reason: Reason,
    pub facts: PodFacts,
}

/// A container that runs an older build of its tag than the node holds, whose newer build is
/// matched: what the redeploy gate judges.
#[derive(Debug, Clone)]
pub struct Offer {
    pub namespace: String,
    pub pod: String,
    pub container: String,
    pub image: String,
    pub running_digest: String,
    pub newer_digest: String,
    pub running: Arc<Report>,
    pub newer: Arc<Report>,
}

/// What is worth telling now, each notifier's part.
#[derive(Debug, Default)]
pub struct ChangeList {
    /// Pods whose facts grew (Events).
    pub pods: Vec<PodNews>,
    /// The node's facts grew (an Event on the Node).
    pub node_news: Option<NodeNews>,
    /// Pods an earlier run told, looked at for the first time and unchanged: nothing is told,
    /// each counted under the reason it would have had.
    pub recalled: Vec<Reason>,
    /// Running images that gained findings at or above `--notify-min-severity`: digest and
    /// the new ids (CloudEvents `vulnerable`).
    pub vulnerable: Vec<(String, BTreeSet<String>)>,
    /// Running images whose base has a newer build on the node, not told before
    /// (`base_updated`).
    pub base_updated: Vec<String>,
    /// (running digest, newer digest) of containers whose tag moved on, not told before
    /// (`stale_digest`).
    pub stale_digest: Vec<(String, String)>,
    /// Redeploy candidates not offered before.
    pub redeploy: Vec<Offer>,
    /// The node's findings at or above `--notify-min-severity` not told before
    /// (`io.stalewatch.node.vulnerable`).
    pub node_vulnerable: BTreeSet<String>,
    /// Whether the persisted part of the told state changed (and should be saved).
    pub told_changed: bool,
}

/// Event reasons, most important first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Reason {
    /// New fixable critical or high vulnerabilities.
    VulnerableImage,
    /// The container's image name now resolves to a newer image than the one it runs.
    StaleImage,
    /// A fix older than `--stale-after` is not deployed.
    StaleRuntime,
    /// The base OS is past its end of life.
    EndOfLifeBase,
    /// New fixable vulnerabilities in the node's own packages (`--node-scan`), on the Node.
    VulnerableNode,
    /// A newer kernel is installed than the node runs, or the OS asked for a reboot.
    RebootRequired,
}

impl Reason {
    pub const ALL: [Reason; 6] = [
        Reason::VulnerableImage,
        Reason::StaleImage,
        Reason::StaleRuntime,
        Reason::EndOfLifeBase,
        Reason::VulnerableNode,
        Reason::RebootRequired,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Reason::VulnerableImage => "VulnerableImage",
            Reason::StaleImage => "StaleImage",
            Reason::StaleRuntime => "StaleRuntime",
            Reason::EndOfLifeBase => "EndOfLifeBase",
            Reason::VulnerableNode => "VulnerableNode",
            Reason::RebootRequired => "RebootRequired",
        }
    }
}

/// What one pod runs that is worth an Event (over all its scanned containers).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodState {
    /// First ids of fixable vulnerabilities whose fix is older than `--stale-after`.
    pub stale: BTreeSet<String>,
    /// First ids of fixable critical or high vulnerabilities.
    pub severe: BTreeSet<String>,
    /// `os_id os_version` of an end-of-life base, one per distinct base.
    pub eol: BTreeSet<String>,
    /// `container current-digest` of containers running an older build than their image
    /// name now resolves to.
    #[serde(default)]
    pub stale_image: BTreeSet<String>,
}

impl PodState {
    pub fn is_empty(&self) -> bool {
        self.stale.is_empty() && self.severe.is_empty() && self.eol.is_empty() && self.stale_image.is_empty()
    }

    /// The reason to announce `self` after `before`, if it holds anything new.
    pub fn news_since(&self, before: &PodState) -> Option<Reason> {
        let grew = |now: &BTreeSet<String>, then: &BTreeSet<String>| now.difference(then).next().is_some();
        if grew(&self.severe, &before.severe) {
            Some(Reason::VulnerableImage)
        } else if grew(&self.stale_image, &before.stale_image) {
            Some(Reason::StaleImage)
        } else if grew(&self.stale, &before.stale) {
            Some(Reason::StaleRuntime)
        } else if grew(&self.eol, &before.eol) {
            Some(Reason::EndOfLifeBase)
        } else {
            None
        }
    }
}

/// (namespace, pod).
pub type PodKey = (String, String);

/// What one pod runs that is worth an Event, with what its note names.
#[derive(Debug, Clone, Default)]
pub struct PodFacts {
    pub state: PodState,
    pub uid: Option<String>,
    /// Containers and images the facts come from.
    pub containers: BTreeSet<String>,
    pub images: BTreeSet<String>,
    /// (severity, first id) of each admitted fixable vulnerability.
    pub severe: Vec<(Severity, String)>,
    pub eol_dates: BTreeSet<String>,
}

/// The states of every pod with a scanned container, from a snapshot.
fn pod_facts(snap: &Snapshot, min: MinSeverity) -> BTreeMap<PodKey, PodFacts> {
    let mut out: BTreeMap<PodKey, PodFacts> = BTreeMap::new();
    for c in &snap.containers {
        // Only Kubernetes pods (CRI labels) get Events; only scanned containers have facts.
        if c.namespace.is_empty() || !c.scan_status.has_report() {
            continue;
        }
        let Some(report) = &c.report else { continue };
        let key = (c.namespace.clone(), c.pod.clone());
        let facts = out.entry(key).or_default();
        if facts.uid.is_none() {
            facts.uid = c.pod_uid.clone();
        }
        let before = facts.state.clone();
        facts.state.stale.extend(c.notable.stale.iter().cloned());
        let admitted = c
            .notable
            .fixable
            .iter()
            .filter(|(_, sev, kev)| min.admits(*sev, *kev));
        for (id, sev, _) in admitted {
            if facts.state.severe.insert(id.clone()) {
                facts.severe.push((*sev, id.clone()));
            }
        }
        if let Some(st) = &c.stale_digest {
            facts
                .state
                .stale_image
                .insert(format!("{} {}", c.container, st.current_digest));
        }
        if let Some(os) = report.os.as_ref().filter(|o| o.eol) {
            facts.state.eol.insert(format!("{} {}", os.id, os.version_id));
            if let Some(d) = &os.eol_date {
                facts.eol_dates.insert(d.clone());
            }
        }
        if facts.state != before {
            facts.containers.insert(c.container.clone());
            facts.images.insert(c.image.clone());
        }
    }
    out
}

impl ChangeList {
    /// The difference between what was told and `snap`, the told state brought up to date.
    /// `restored` names the pods an earlier run told that this run has not looked at yet.
    pub fn between(
        told: &mut Told,
        restored: &mut BTreeSet<String>,
        snap: &Snapshot,
        th: &Thresholds,
        now: i64,
    ) -> ChangeList {
        let mut out = ChangeList::default();
        let listed = th.containers_listed;
        if let Some(min) = th.kube_events {
            if listed {
                out.pods(told, restored, snap, min);
            }
            out.node_events(told, snap, min);
        }
        if let Some(min) = th.notify {
            if listed {
                out.images(told, snap, min, now);
                out.transitions(told, snap, now);
            }
            out.node(told, snap, min, now);
        }
        if th.redeploy && listed {
            out.offers(told, snap);
        }
        out
    }

    /// Pods: each pod's facts against what it was told.
    fn pods(&mut self, told: &mut Told, restored: &mut BTreeSet<String>, snap: &Snapshot, min: MinSeverity) {
        let facts = pod_facts(snap, min);
        // Pods still running, scanned or not: a pod whose new container is still pending
        // keeps what was told about it.
        let present: BTreeSet<String> = snap
            .containers
            .iter()
            .filter(|c| !c.namespace.is_empty())
            .map(|c| format!("{}/{}", c.namespace, c.pod))
            .collect();
        for (key, f) in facts {
            let k = format!("{}/{}", key.0, key.1);
            let before = told.pods.get(&k).cloned().unwrap_or_default();
            if restored.remove(&k) && f.state.news_since(&before).is_none() {
                // Told by an earlier run: counted under its main reason, not told again.
                self.recalled.extend(f.state.news_since(&PodState::default()));
            }
            if before != f.state {
                // Nothing left to say (fixes deployed): forgotten, so a relapse is news.
                if f.state.is_empty() {
                    told.pods.remove(&k);
                } else {
                    told.pods.insert(k.clone(), f.state.clone());
                }
                self.told_changed = true;
            }
            if let Some(reason) = f.state.news_since(&before) {
                tracing::debug!(pod = %k, ?before, now = ?f.state, "news");
                self.pods.push(PodNews {
                    namespace: key.0,
                    pod: key.1,
                    reason,
                    facts: f,
                });
            }
        }
        // Pods that are gone are forgotten: one that comes back vulnerable is news again.
        let before = told.pods.len();
        told.pods.retain(|k, _| present.contains(k));
        self.told_changed |= told.pods.len() != before;
    }

    /// The node's Event: new admitted fixable findings (VulnerableNode), else a reboot that
    /// became due (RebootRequired); what was told follows the node (a shrink is forgotten).
    fn node_events(&mut self, told: &mut Told, snap: &Snapshot, min: MinSeverity) {
        let Some(n) = snap.node_scan.as_ref() else { return };
        let Some(report) = n.report.as_ref() else {
            return; // not matched yet: what was told stands
        };
        let mut severe: Vec<(Severity, String)> = report
            .findings
            .iter()
            .filter(|f| f.fixable && min.admits(f.severity, f.known_exploited == Some(true)))
            .map(|f| (f.severity, f.id.to_string()))
            .collect();
        severe.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
        severe.dedup_by(|a, b| a.1 == b.1);
        let now = NodeTold {
            severe: severe.iter().map(|(_, id)| id.clone()).collect(),
            reboot: n.reboot_required,
        };
        let before = std::mem::replace(&mut told.node_events, now.clone());
        self.told_changed |= before != now;
        let reason = if now.severe.difference(&before.severe).next().is_some() {
            Reason::VulnerableNode
        } else if now.reboot && !before.reboot {
            Reason::RebootRequired
        } else {
            return;
        };
        let kernel = n
            .kernel
            .as_ref()
            .map(|k| (k.release.clone(), k.newer_installed.as_ref().map(|p| p.1.clone())));
        self.node_news = Some(NodeNews {
            reason,
            severe,
            reboot: now.reboot,
            kernel,
        });
    }

    /// Images: the findings at or above the minimum not told for the image yet; the same new
    /// set told before (the image left and came back) is one transition, told once.
    fn images(&mut self, told: &mut Told, snap: &Snapshot, min: MinSeverity, now: i64) {
        let admitted = admitted_ids(snap, min);
        for (digest, ids) in &admitted {
            let told_ids = told.images.entry(digest.clone()).or_default();
            let new: BTreeSet<String> = ids.difference(told_ids).cloned().collect();
            if !new.is_empty() {
                told_ids.extend(new.iter().cloned());
                self.told_changed = true;
                let key = format!(
                    "vulnerable {digest} {}",
                    new.iter().cloned().collect::<Vec<_>>().join(" ")
                );
                if told.transitions.insert(key, now).is_none() {
                    self.vulnerable.push((digest.clone(), new));
                }
            }
        }
        // Images no longer running are forgotten: running again, they are told again.
        let before = told.images.len();
        told.images.retain(|d, _| admitted.contains_key(d));
        self.told_changed |= told.images.len() != before;
    }

    /// The node: its findings at or above the minimum not told yet (once matched); the same
    /// new set told before is one transition, told once.
    fn node(&mut self, told: &mut Told, snap: &Snapshot, min: MinSeverity, now: i64) {
        let Some(report) = snap.node_scan.as_ref().and_then(|n| n.report.as_ref()) else {
            return; // off, or not matched yet: what was told stands
        };
        let admitted: BTreeSet<String> = report
            .findings
            .iter()
            .filter(|f| min.admits(f.severity, f.known_exploited == Some(true)))
            .map(|f| f.id.to_string())
            .collect();
        let new: BTreeSet<String> = admitted.difference(&told.node).cloned().collect();
        // Fixed ones are forgotten: a relapse is news.
        let before = told.node.len();
        told.node.retain(|id| admitted.contains(id));
        self.told_changed |= told.node.len() != before;
        if new.is_empty() {
            return;
        }
        told.node.extend(new.iter().cloned());
        self.told_changed = true;
        let key = format!(
            "node_vulnerable {}",
            new.iter().cloned().collect::<Vec<_>>().join(" ")
        );
        if told.transitions.insert(key, now).is_none() {
            self.node_vulnerable = new;
        }
    }

    /// Transitions: a newer base of a running image, a tag that moved on; each told once.
    fn transitions(&mut self, told: &mut Told, snap: &Snapshot, now: i64) {
        let mut base = BTreeSet::new();
        let mut pairs = BTreeSet::new();
        for c in &snap.containers {
            let Some(d) = &c.image_digest else { continue };
            if let Some(r) = snap.image_reports.get(d).and_then(|r| r.rebuild.as_ref()) {
                base.insert((d.clone(), r.new_base_digest.clone()));
            }
            if let Some(s) = &c.stale_digest {
                pairs.insert((s.running_digest.clone(), s.current_digest.clone()));
            }
        }
        for (digest, new_base) in base {
            if told
                .transitions
                .insert(format!("base_updated {digest} {new_base}"), now)
                .is_none()
            {
                self.base_updated.push(digest);
                self.told_changed = true;
            }
        }
        for (running, newer) in pairs {
            if told
                .transitions
                .insert(format!("stale_digest {running} {newer}"), now)
                .is_none()
            {
                self.stale_digest.push((running, newer));
                self.told_changed = true;
            }
        }
        while told.transitions.len() > MAX_TRANSITIONS {
            let oldest = told
                .transitions
                .iter()
                .min_by_key(|(k, t)| (**t, (*k).clone()))
                .map(|(k, _)| k.clone());
            match oldest {
                Some(k) => told.transitions.remove(&k),
                None => break,
            };
        }
    }

    /// Redeploy candidates: a stale container whose newer build is matched, offered once
    /// while it stays a candidate.
    fn offers(&mut self, told: &mut Told, snap: &Snapshot) {
        let mut current = BTreeSet::new();
        for c in &snap.containers {
            let (Some(stale), Some(running)) = (&c.stale_digest, &c.report) else {
                continue;
            };
            let Some(newer) = snap.newer_reports.get(&stale.current_digest) else {
                continue; // not inventoried and matched yet: the gate cannot decide
            };
            let key = (
                c.namespace.clone(),
                c.pod.clone(),
                c.container.clone(),
                stale.current_digest.clone(),
            );
            current.insert(key.clone());
            if told.offered.insert(key) {
                self.redeploy.push(Offer {
                    namespace: c.namespace.clone(),
                    pod: c.pod.clone(),
                    container: c.container.clone(),
                    image: c.image.clone(),
                    running_digest: stale.running_digest.clone(),
                    newer_digest: stale.current_digest.clone(),
                    running: running.report.clone(),
                    newer: newer.clone(),
                });
            }
        }
        told.offered.retain(|k| current.contains(k));
    }
}

/// The ids of each running image's findings that meet the minimum (its containers' reports).
pub fn admitted_ids(snap: &Snapshot, min: MinSeverity) -> BTreeMap<String, BTreeSet<String>> {
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for c in &snap.containers {
        let (Some(d), Some(r)) = (&c.image_digest, &c.report) else {
            continue;
        };
        let ids = out.entry(d.clone()).or_default();
        for f in r.report.findings.iter() {
            if min.admits(f.severity, f.known_exploited == Some(true)) {
                ids.insert(f.id.to_string());
            }
        }
    }
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::agent::snapshot::{ContainerReport, ContainerView, ScanStatus, StaleDigest};
    use stalewatch_core::catalog::Inventory;
    use stalewatch_core::matcher::Finding;

    /// Every notifier on, at `high`.
    pub(crate) const ALL: Thresholds = Thresholds {
        kube_events: Some(MinSeverity::Severity(Severity::High)),
        notify: Some(MinSeverity::Severity(Severity::High)),
        redeploy: true,
        containers_listed: true,
    };

    fn report(ids: &[&str]) -> Arc<Report> {
        let findings = ids
            .iter()
            .map(|id| Finding {
                id: (*id).into(),
                package: "openssl".into(),
                fixed_version: Some("3.0.9-r0".into()),
                fixable: true,
                severity: Severity::High,
                ..Default::default()
            })
            .collect();
        Arc::new(Report::new("t", Inventory::default(), findings, vec![], 0))
    }

    /// A running container of pod `pod`, image `digest`, with findings `ids`.
    fn container(pod: &str, digest: &str, ids: &[&str]) -> (ContainerView, Arc<Report>) {
        let r = report(ids);
        let view = ContainerView {
            id: format!("{pod}-{digest}"),
            namespace: "shop".into(),
            pod: pod.into(),
            container: "app".into(),
            image: "registry.test/app:1".into(),
            image_digest: Some(digest.into()),
            scan_status: ScanStatus::Ok,
            report: Some(ContainerReport::new(r.clone())),
            notable: crate::agent::snapshot::notable(
                &r.findings,
                &BTreeMap::new(),
                0,
                7 * 86_400,
                Severity::Unknown,
            ),
            ..Default::default()
        };
        (view, r)
    }

    /// Pod `a` runs `sha256:app` with one fixable high vulnerability (`CVE-1`).
    pub(crate) fn one_vulnerable_pod() -> Snapshot {
        snapshot(vec![container("a", "sha256:app", &["CVE-1"])])
    }

    fn snapshot(containers: Vec<(ContainerView, Arc<Report>)>) -> Snapshot {
        let mut snap = Snapshot::default();
        for (c, r) in containers {
            snap.image_reports.insert(c.image_digest.clone().unwrap(), r);
            snap.containers.push(c);
        }
        snap
    }

    /// What a change list says, in words, for the table.
    fn said(l: &ChangeList) -> Vec<String> {
        let mut out: Vec<String> = l
            .pods
            .iter()
            .map(|p| format!("event {} {}", p.pod, p.reason.as_str()))
            .collect();
        out.extend(l.vulnerable.iter().map(|(d, ids)| {
            format!(
                "vulnerable {d} {}",
                ids.iter().cloned().collect::<Vec<_>>().join(",")
            )
        }));
        out.extend(l.base_updated.iter().map(|d| format!("base_updated {d}")));
        out.extend(
            l.stale_digest
                .iter()
                .map(|(r, n)| format!("stale_digest {r} {n}")),
        );
        out.extend(
            l.redeploy
                .iter()
                .map(|o| format!("redeploy {} {}", o.pod, o.newer_digest)),
        );
        out
    }

    /// Snapshots in order, and what each one's change list must say (the spec: what is new
    /// since it was told; a shrink is told nothing and forgotten for Events, so a relapse is
    /// news; a pod that is gone is forgotten; a transition is told once).
    #[test]
    #[allow(clippy::too_many_lines)] // one table, read top to bottom
    fn the_change_list_is_what_is_new_since_it_was_told() {
        let with_base = || {
            let (c, r) = container("a", "sha256:app", &["CVE-1"]);
            let mut r = (*r).clone();
            r.rebuild = Some(stalewatch_core::lineage::Rebuild {
                base_name: "alpine:3.20".into(),
                base_digest: Some("sha256:old".into()),
                new_base_digest: "sha256:new".into(),
                fixed_by_rebuild: 1,
                fixed: vec![],
                remaining: 0,
            });
            snapshot(vec![(c, Arc::new(r))])
        };
        let stale = || {
            let mut snap = snapshot(vec![container("b", "sha256:v1", &[])]);
            snap.containers[0].stale_digest = Some(StaleDigest {
                running_digest: "sha256:v1".into(),
                running_image_gone: false,
                current_digest: "sha256:v2".into(),
            });
            snap.newer_reports.insert("sha256:v2".into(), report(&[]));
            snap
        };
        let rows: Vec<(&str, Snapshot, Vec<&str>, bool)> = vec![
            (
                "new",
                snapshot(vec![container("a", "sha256:app", &["CVE-1"])]),
                vec!["event a VulnerableImage", "vulnerable sha256:app CVE-1"],
                true,
            ),
            (
                "unchanged",
                snapshot(vec![container("a", "sha256:app", &["CVE-1"])]),
                vec![],
                false,
            ),
            // Fixed by new data: nothing to tell; the pod's Events state is emptied.
            (
                "shrunk",
                snapshot(vec![container("a", "sha256:app", &[])]),
                vec![],
                true,
            ),
            // Back: news for the pod again; the image's CloudEvent told CVE-1 while it ran.
            (
                "recurred",
                snapshot(vec![container("a", "sha256:app", &["CVE-1"])]),
                vec!["event a VulnerableImage"],
                true,
            ),
            (
                "grew",
                snapshot(vec![container("a", "sha256:app", &["CVE-1", "CVE-2"])]),
                vec!["event a VulnerableImage", "vulnerable sha256:app CVE-2"],
                true,
            ),
            ("pod gone", snapshot(vec![]), vec![], true),
            // Running again: the pod is news, and so is the image (its two findings at once: a
            // transition not told before).
            (
                "pod back",
                snapshot(vec![container("a", "sha256:app", &["CVE-1", "CVE-2"])]),
                vec!["event a VulnerableImage", "vulnerable sha256:app CVE-1,CVE-2"],
                true,
            ),
            ("pod gone again", snapshot(vec![]), vec![], true),
            // The same transition again: told once (its CloudEvent would have the same id).
            (
                "pod back again",
                snapshot(vec![container("a", "sha256:app", &["CVE-1", "CVE-2"])]),
                vec!["event a VulnerableImage"],
                true,
            ),
            ("base updated", with_base(), vec!["base_updated sha256:app"], true),
            ("base told", with_base(), vec![], false),
            (
                "stale digest",
                stale(),
                vec![
                    "event b StaleImage",
                    "stale_digest sha256:v1 sha256:v2",
                    "redeploy b sha256:v2",
                ],
                true,
            ),
            ("stale told", stale(), vec![], false),
        ];
        let mut told = Told::default();
        for (name, snap, want, changed) in rows {
            let l = ChangeList::between(&mut told, &mut BTreeSet::new(), &snap, &ALL, 100);
            assert_eq!(said(&l), want, "{name}");
            assert_eq!(l.told_changed, changed, "{name}: told changed");
        }
        assert!(told
            .transitions
            .contains_key("base_updated sha256:app sha256:new"));
    }

    #[test]
    fn the_node_is_told_each_new_set_of_findings_once() {
        let node = |ids: &[&str]| {
            let mut snap = snapshot(vec![]);
            snap.node_scan = Some(crate::agent::snapshot::NodeView {
                report: Some(report(ids)),
                ..Default::default()
            });
            snap
        };
        let mut told = Told::default();
        let mut tell = |snap: &Snapshot| {
            let l = ChangeList::between(&mut told, &mut BTreeSet::new(), snap, &ALL, 0);
            l.node_vulnerable.into_iter().collect::<Vec<_>>()
        };
        assert_eq!(tell(&node(&["CVE-1"])), ["CVE-1"]);
        assert!(tell(&node(&["CVE-1"])).is_empty(), "unchanged");
        assert_eq!(tell(&node(&["CVE-1", "CVE-2"])), ["CVE-2"], "grew");
        assert!(tell(&node(&["CVE-1"])).is_empty(), "shrunk");
        // Not matched yet (a new index): what was told stands.
        assert!(tell(&snapshot(vec![])).is_empty());
        // Back after a fix: the same transition as before, whose id a receiver has seen.
        assert!(tell(&node(&["CVE-1", "CVE-2"])).is_empty(), "recurred");
        // A new finding beside it is a new transition.
        assert_eq!(tell(&node(&["CVE-1", "CVE-2", "CVE-3"])), ["CVE-3"]);
    }

    #[test]
    fn the_node_s_event_is_new_vulnerabilities_else_a_reboot_that_became_due() {
        let node = |ids: &[&str], reboot: bool| {
            let mut snap = snapshot(vec![]);
            snap.node_scan = Some(crate::agent::snapshot::NodeView {
                report: Some(report(ids)),
                reboot_required: reboot,
                ..Default::default()
            });
            snap
        };
        let events_only = Thresholds {
            notify: None,
            redeploy: false,
            ..ALL
        };
        let mut told = Told::default();
        let mut news = |snap: &Snapshot| {
            let l = ChangeList::between(&mut told, &mut BTreeSet::new(), snap, &events_only, 0);
            l.node_news.map(|n| n.reason.as_str())
        };
        assert_eq!(news(&node(&["CVE-1"], false)), Some("VulnerableNode"));
        assert_eq!(news(&node(&["CVE-1"], false)), None, "unchanged");
        assert_eq!(news(&node(&["CVE-1"], true)), Some("RebootRequired"));
        assert_eq!(
            news(&node(&["CVE-1", "CVE-2"], true)),
            Some("VulnerableNode"),
            "new findings first"
        );
        assert_eq!(news(&node(&[], false)), None, "fixed and rebooted");
        assert_eq!(
            news(&node(&["CVE-1"], false)),
            Some("VulnerableNode"),
            "a relapse is news"
        );
    }

    #[test]
    fn a_notifier_that_is_off_leaves_its_part_of_the_told_state_alone() {
        let snap = snapshot(vec![container("a", "sha256:app", &["CVE-1"])]);
        let mut told = Told::default();
        let events_only = Thresholds {
            notify: None,
            redeploy: false,
            ..ALL
        };
        let l = ChangeList::between(&mut told, &mut BTreeSet::new(), &snap, &events_only, 0);
        assert_eq!(said(&l), vec!["event a VulnerableImage"]);
        assert!(told.images.is_empty() && told.transitions.is_empty());
        // Turned on later: what runs is told.
        let l = ChangeList::between(&mut told, &mut BTreeSet::new(), &snap, &ALL, 0);
        assert_eq!(said(&l), vec!["vulnerable sha256:app CVE-1"]);
    }

    #[test]
    fn each_notifier_admits_its_own_minimum() {
        let (mut c, r) = container("a", "sha256:app", &["CVE-1"]);
        let mut medium = (*r).clone();
        medium.findings[0] = Arc::new(stalewatch_core::matcher::Finding {
            severity: Severity::Medium,
            ..(*medium.findings[0]).clone()
        });
        let medium = Arc::new(medium);
        c.report = Some(ContainerReport::new(medium.clone()));
        c.notable = crate::agent::snapshot::notable(
            &medium.findings,
            &BTreeMap::new(),
            0,
            7 * 86_400,
            Severity::Unknown,
        );
        let snap = snapshot(vec![(c, medium)]);
        let th = Thresholds {
            kube_events: Some(MinSeverity::Severity(Severity::Medium)),
            notify: Some(MinSeverity::Severity(Severity::High)),
            ..ALL
        };
        let l = ChangeList::between(&mut Told::default(), &mut BTreeSet::new(), &snap, &th, 0);
        assert_eq!(said(&l), vec!["event a VulnerableImage"]);
        let th = Thresholds {
            kube_events: Some(MinSeverity::Kev),
            notify: Some(MinSeverity::Severity(Severity::Medium)),
            ..ALL
        };
        let l = ChangeList::between(&mut Told::default(), &mut BTreeSet::new(), &snap, &th, 0);
        assert_eq!(said(&l), vec!["vulnerable sha256:app CVE-1"]);
    }
}
