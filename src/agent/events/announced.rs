//! Which Kubernetes Events a snapshot calls for. Plain data in, notices out: what each pod
//! runs that an operator must hear about, compared with what was already announced, so an
//! unchanged state is never announced twice and each change gives at most one Event per pod.

use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

use stalewatch_core::advisory::Severity;

use crate::agent::snapshot::{MinSeverity, Snapshot};

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
}

impl Reason {
    pub const ALL: [Reason; 3] = [
        Reason::VulnerableImage,
        Reason::StaleRuntime,
        Reason::EndOfLifeBase,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Reason::VulnerableImage => "VulnerableImage",
            Reason::StaleImage => "StaleImage",
            Reason::StaleRuntime => "StaleRuntime",
            Reason::EndOfLifeBase => "EndOfLifeBase",
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
    fn is_empty(&self) -> bool {
        self.stale.is_empty() && self.severe.is_empty() && self.eol.is_empty() && self.stale_image.is_empty()
    }

    /// The reason to announce `self` after `before`, if it holds anything new.
    fn news_since(&self, before: &PodState) -> Option<Reason> {
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

/// One Event to publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    pub namespace: String,
    pub pod: String,
    pub pod_uid: Option<String>,
    /// The first container the news is about (the Event's field path).
    pub container: String,
    pub reason: Reason,
    /// At most [`NOTE_LIMIT`] bytes.
    pub note: String,
    /// Stable over identical states: the Event's name derives from it, so a state that
    /// recurs becomes a series of one Event.
    pub fingerprint: String,
}

/// Kubernetes caps an Event's note at 1 KiB.
pub const NOTE_LIMIT: usize = 1024;

/// Most severe ids named in a note.
const NOTE_IDS: usize = 5;

#[derive(Default)]
struct PodFacts {
    state: PodState,
    uid: Option<String>,
    containers: BTreeSet<String>,
    images: BTreeSet<String>,
    severe: Vec<(Severity, String)>,
    eol_dates: BTreeSet<String>,
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

/// Truncates at a character boundary to at most `limit` bytes.
fn truncate(mut s: String, limit: usize) -> String {
    if s.len() > limit {
        let mut end = limit.saturating_sub(1);
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
        s.push('…');
        while s.len() > limit {
            s.pop();
        }
    }
    s
}

/// "3 fixable critical/high vulnerabilities (1 critical, 2 high)": each severity
/// `--kube-events-min-severity` admits, most severe first (with `kev`, those present).
fn severe_phrase(severe: &[(Severity, String)], min: MinSeverity) -> String {
    let admitted: Vec<Severity> = match min {
        MinSeverity::Severity(m) => [
            Severity::Critical,
            Severity::High,
            Severity::Medium,
            Severity::Low,
        ]
        .into_iter()
        .filter(|s| *s >= m)
        .collect(),
        MinSeverity::Kev => {
            let present: BTreeSet<std::cmp::Reverse<Severity>> =
                severe.iter().map(|(s, _)| std::cmp::Reverse(*s)).collect();
            present.into_iter().map(|s| s.0).collect()
        }
    };
    let kind = match min {
        MinSeverity::Kev => "known-exploited".to_string(),
        MinSeverity::Severity(_) => admitted.iter().map(|s| s.as_str()).collect::<Vec<_>>().join("/"),
    };
    let counts: Vec<String> = admitted
        .iter()
        .map(|s| format!("{} {}", severe.iter().filter(|(x, _)| x == s).count(), s.as_str()))
        .collect();
    format!(
        "{} fixable {kind} vulnerabilities ({})",
        severe.len(),
        counts.join(", ")
    )
}

fn note(f: &PodFacts, min: MinSeverity, stale_after_days: i64) -> String {
    let mut severe = f.severe.clone();
    severe.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
    let mut parts = Vec::new();
    if !severe.is_empty() {
        parts.push(severe_phrase(&severe, min));
    }
    if !f.state.stale.is_empty() {
        parts.push(format!(
            "{} with a fix available for more than {stale_after_days}d",
            f.state.stale.len()
        ));
    }
    if !f.state.eol.is_empty() {
        let bases: Vec<&str> = f.state.eol.iter().map(String::as_str).collect();
        let dates: Vec<&str> = f.eol_dates.iter().map(String::as_str).collect();
        parts.push(format!(
            "end-of-life base {} (since {})",
            bases.join(", "),
            dates.join(", ")
        ));
    }
    let mut ids: Vec<&str> = severe.iter().map(|(_, id)| id.as_str()).collect();
    ids.extend(
        f.state
            .stale
            .iter()
            .map(String::as_str)
            .filter(|i| !f.state.severe.contains(*i)),
    );
    ids.truncate(NOTE_IDS);
    if !f.state.stale_image.is_empty() {
        let containers: Vec<&str> = f
            .state
            .stale_image
            .iter()
            .filter_map(|e| e.split_once(' ').map(|(c, _)| c))
            .collect();
        parts.insert(
            0,
            format!(
                "container {} runs an older build than its image name resolves to on this node",
                containers.join(", ")
            ),
        );
    }
    let mut text = parts.join("; ");
    if !ids.is_empty() {
        text.push_str(&format!(". Most severe: {}", ids.join(", ")));
    }
    let containers: Vec<&str> = f.containers.iter().map(String::as_str).collect();
    let images: Vec<&str> = f.images.iter().map(String::as_str).collect();
    text.push_str(&format!(
        ". Containers: {} (image {}).",
        containers.join(", "),
        images.join(", ")
    ));
    truncate(text, NOTE_LIMIT)
}

fn fingerprint(reason: Reason, state: &PodState) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(reason.as_str());
    for set in [&state.severe, &state.stale, &state.eol, &state.stale_image] {
        h.update([0u8]);
        for id in set {
            h.update(id.as_bytes());
            h.update([1u8]);
        }
    }
    hex::encode(&h.finalize()[..8])
}

/// What has been announced, per pod, and the comparison that yields new notices.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Announced {
    pub pods: BTreeMap<String, PodState>,
}

fn key_string(k: &PodKey) -> String {
    format!("{}/{}", k.0, k.1)
}

/// The outcome of comparing a snapshot with what was announced.
#[derive(Debug, Default)]
pub struct Observation {
    pub notices: Vec<Notice>,
    /// Pods whose state had been announced by an earlier run of the agent (not re-announced).
    pub suppressed: Vec<Reason>,
    /// Whether `Announced` changed (and should be saved).
    pub changed: bool,
}

impl Announced {
    /// Compares the snapshot with what was announced, records the new states, and returns
    /// at most one notice per pod whose state holds something new. `restored` names the pods
    /// loaded from an earlier run that this run has not looked at yet.
    pub fn observe(
        &mut self,
        snap: &Snapshot,
        min: MinSeverity,
        stale_after_days: i64,
        restored: &mut BTreeSet<String>,
    ) -> Observation {
        let mut obs = Observation::default();
        let facts = pod_facts(snap, min);
        // Pods still running, scanned or not: a pod whose new container is still pending
        // keeps what was announced about it.
        let present: BTreeSet<String> = snap
            .containers
            .iter()
            .filter(|c| !c.namespace.is_empty())
            .map(|c| format!("{}/{}", c.namespace, c.pod))
            .collect();
        for (key, f) in &facts {
            let k = key_string(key);
            let before = self.pods.get(&k).cloned().unwrap_or_default();
            if restored.remove(&k) && f.state.news_since(&before).is_none() {
                // Announced by an earlier run: counted under its main reason, not re-sent.
                obs.suppressed.extend(f.state.news_since(&PodState::default()));
            }
            if let Some(reason) = f.state.news_since(&before) {
                tracing::debug!(pod = %k, ?before, now = ?f.state, "news");
                obs.notices.push(Notice {
                    namespace: key.0.clone(),
                    pod: key.1.clone(),
                    pod_uid: f.uid.clone(),
                    container: f.containers.iter().next().cloned().unwrap_or_default(),
                    reason,
                    note: note(f, min, stale_after_days),
                    fingerprint: fingerprint(reason, &f.state),
                });
            }
            if before != f.state {
                // Nothing left to say (fixes deployed): forgotten, so a relapse is news.
                if f.state.is_empty() {
                    self.pods.remove(&k);
                } else {
                    self.pods.insert(k, f.state.clone());
                }
                obs.changed = true;
            }
        }
        // Pods that are gone are forgotten: one that comes back vulnerable is news again.
        let before = self.pods.len();
        self.pods.retain(|k, _| present.contains(k));
        obs.changed |= self.pods.len() != before;
        obs
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::snapshot::ScanStatus;

    const HIGH: MinSeverity = MinSeverity::Severity(Severity::High);

    fn state(stale: &[&str], severe: &[&str], eol: &[&str]) -> PodState {
        let set = |v: &[&str]| v.iter().map(|s| s.to_string()).collect();
        PodState {
            stale: set(stale),
            severe: set(severe),
            eol: set(eol),
            stale_image: BTreeSet::new(),
        }
    }

    #[test]
    fn the_events_minimum_decides_what_is_a_vulnerable_image() {
        let snap = snapshot(&[(
            "a",
            &[],
            &[("CVE-M", Severity::Medium), ("CVE-L", Severity::Low)],
            None,
        )]);
        // The default (high): a medium and a low are no news.
        let obs = Announced::default().observe(&snap, HIGH, 7, &mut BTreeSet::new());
        assert!(obs.notices.is_empty(), "{obs:?}");
        // `medium`: the medium one only, and the note counts it by its severity.
        let medium = MinSeverity::Severity(Severity::Medium);
        let obs = Announced::default().observe(&snap, medium, 7, &mut BTreeSet::new());
        assert_eq!(obs.notices.len(), 1);
        assert_eq!(obs.notices[0].reason, Reason::VulnerableImage);
        assert!(
            obs.notices[0]
                .note
                .starts_with("1 fixable critical/high/medium vulnerabilities (0 critical, 0 high, 1 medium)"),
            "{}",
            obs.notices[0].note
        );
        assert!(!obs.notices[0].note.contains("CVE-L"), "{}", obs.notices[0].note);
        // `kev`: neither is known exploited.
        let obs = Announced::default().observe(&snap, MinSeverity::Kev, 7, &mut BTreeSet::new());
        assert!(obs.notices.is_empty());
    }

    #[test]
    fn only_growth_is_news_and_severe_news_wins() {
        let none = PodState::default();
        let a = state(&["CVE-1"], &[], &[]);
        assert_eq!(a.news_since(&none), Some(Reason::StaleRuntime));
        assert_eq!(a.news_since(&a), None);
        // A fix deployed (the set shrinks): nothing to announce.
        assert_eq!(none.news_since(&a), None);
        let b = state(&["CVE-1", "CVE-2"], &["CVE-2"], &["alpine 3.16.9"]);
        assert_eq!(b.news_since(&a), Some(Reason::VulnerableImage));
        let c = state(&["CVE-1"], &[], &["alpine 3.16.9"]);
        assert_eq!(c.news_since(&a), Some(Reason::EndOfLifeBase));
    }

    #[test]
    fn fingerprints_are_stable_and_distinct() {
        let a = state(&["CVE-1"], &[], &[]);
        assert_eq!(
            fingerprint(Reason::StaleRuntime, &a),
            fingerprint(Reason::StaleRuntime, &a.clone())
        );
        assert_ne!(
            fingerprint(Reason::StaleRuntime, &a),
            fingerprint(Reason::VulnerableImage, &a)
        );
        assert_ne!(
            fingerprint(Reason::StaleRuntime, &a),
            fingerprint(Reason::StaleRuntime, &state(&["CVE-1", "CVE-2"], &[], &[]))
        );
    }

    /// One scanned container: (pod, stale ids, severe ids, end-of-life Alpine version).
    type PodSpec<'a> = (&'a str, &'a [&'a str], &'a [(&'a str, Severity)], Option<&'a str>);

    fn snapshot(pods: &[PodSpec]) -> Snapshot {
        use crate::agent::snapshot::{ContainerView, Notable};
        use stalewatch_core::catalog::Inventory;
        use stalewatch_core::os::OsInfo;
        use stalewatch_core::report::Report;
        let containers = pods
            .iter()
            .map(|(pod, stale, severe, eol)| {
                let mut v = ContainerView {
                    id: format!("{pod}-app"),
                    namespace: "shop".into(),
                    pod: pod.to_string(),
                    container: "app".into(),
                    image: "example.org/app:1".into(),
                    image_digest: Some("sha256:1".into()),
                    scan_status: ScanStatus::Ok,
                    ..Default::default()
                };
                // Alpine 3.16's end of life (2024-05-23) is past at this clock; 3.22's is not.
                let version = eol.unwrap_or("3.22.0");
                let inv = Inventory {
                    os: Some(OsInfo {
                        id: "alpine".into(),
                        version_id: version.into(),
                        pretty_name: String::new(),
                        ecosystem: Some("Alpine:v3.16".into()),
                    }),
                    packages: vec![],
                    databases: vec!["lib/apk/db/installed".into()],
                    ..Default::default()
                };
                v.report = Some(crate::agent::snapshot::ContainerReport::new(std::sync::Arc::new(
                    Report::new("t", inv, vec![], vec![], 1_795_910_400),
                )));
                v.notable = Notable {
                    stale: stale.iter().map(|s| s.to_string()).collect(),
                    fixable: severe.iter().map(|(i, s)| (i.to_string(), *s, false)).collect(),
                };
                v
            })
            .collect();
        Snapshot {
            containers,
            ..Default::default()
        }
    }

    #[test]
    fn a_refresh_that_adds_a_critical_vulnerability_is_one_vulnerable_image_event() {
        let mut announced = Announced::default();
        let mut restored = BTreeSet::new();
        let before = snapshot(&[("a", &["CVE-1"], &[], None), ("b", &[], &[], None)]);
        let obs = announced.observe(&before, HIGH, 7, &mut restored);
        assert_eq!(obs.notices.len(), 1);
        let n = &obs.notices[0];
        // The involved object: the pod, in its namespace, at the container the news is about.
        assert_eq!(
            (
                n.namespace.as_str(),
                n.pod.as_str(),
                n.container.as_str(),
                n.reason
            ),
            ("shop", "a", "app", Reason::StaleRuntime)
        );
        assert!(n.note.contains("CVE-1"), "{}", n.note);
        // The same snapshot again: nothing.
        assert!(announced
            .observe(&before, HIGH, 7, &mut restored)
            .notices
            .is_empty());
        // An advisory refresh: a new critical on both pods, and pod b's base is now end of life.
        let after = snapshot(&[
            ("a", &["CVE-1"], &[("CVE-2", Severity::Critical)], None),
            ("b", &[], &[("CVE-2", Severity::Critical)], Some("3.16.9")),
        ]);
        let obs = announced.observe(&after, HIGH, 7, &mut restored);
        let got: Vec<(&str, Reason)> = obs.notices.iter().map(|n| (n.pod.as_str(), n.reason)).collect();
        assert_eq!(
            got,
            vec![("a", Reason::VulnerableImage), ("b", Reason::VulnerableImage)]
        );
        assert!(
            obs.notices[1].note.contains("end-of-life base alpine 3.16.9"),
            "{}",
            obs.notices[1].note
        );
        assert!(
            obs.notices[1].note.contains("Most severe: CVE-2"),
            "{}",
            obs.notices[1].note
        );
        // Pod a goes away: forgotten; it comes back with the same state: news again.
        let obs = announced.observe(
            &snapshot(&[("b", &[], &[("CVE-2", Severity::Critical)], Some("3.16.9"))]),
            HIGH,
            7,
            &mut restored,
        );
        assert!(obs.notices.is_empty() && obs.changed);
        let obs = announced.observe(&after, HIGH, 7, &mut restored);
        assert_eq!(obs.notices.len(), 1);
        assert_eq!(obs.notices[0].pod, "a");
    }

    #[test]
    fn pending_containers_keep_what_was_announced_and_restored_pods_are_suppressed() {
        let mut announced = Announced::default();
        let snap = snapshot(&[("a", &["CVE-1"], &[], None)]);
        announced.observe(&snap, HIGH, 7, &mut BTreeSet::new());
        // A restart: the pod's container is pending first (not scanned yet), then ok.
        let mut restored: BTreeSet<String> = announced.pods.keys().cloned().collect();
        let mut pending = snap.clone();
        pending.containers[0].scan_status = ScanStatus::Pending;
        let obs = announced.observe(&pending, HIGH, 7, &mut restored);
        assert!(obs.notices.is_empty() && !obs.changed);
        let obs = announced.observe(&snap, HIGH, 7, &mut restored);
        assert!(obs.notices.is_empty());
        assert_eq!(obs.suppressed, vec![Reason::StaleRuntime]);
        assert!(restored.is_empty());
    }

    #[test]
    fn notes_fit_in_a_kibibyte_and_name_the_most_severe_first() {
        let mut f = PodFacts::default();
        for i in 0..400 {
            let id = format!("CVE-2024-{i:05}-ÄÖÜ");
            f.state.stale.insert(id.clone());
            f.state.severe.insert(id.clone());
            f.severe.push((
                if i == 399 {
                    Severity::Critical
                } else {
                    Severity::High
                },
                id,
            ));
        }
        f.containers.insert("app".into());
        f.images.insert("x".repeat(3000));
        let n = note(&f, HIGH, 7);
        assert!(n.len() <= NOTE_LIMIT, "{} bytes", n.len());
        assert!(
            n.starts_with("400 fixable critical/high vulnerabilities (1 critical, 399 high)"),
            "{n}"
        );
        assert!(
            n.contains("Most severe: CVE-2024-00399-ÄÖÜ, CVE-2024-00000-ÄÖÜ"),
            "{n}"
        );
    }
}
