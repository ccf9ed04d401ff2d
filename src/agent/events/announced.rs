//! What a Kubernetes Event says: the change list's pods whose facts grew become notices (at
//! most one per pod per change, under its most important reason), each with a note that fits
//! Kubernetes' 1 KiB and a fingerprint stable over identical states (the Event's name).

use std::collections::BTreeSet;

use stalewatch_core::advisory::Severity;

pub use crate::agent::changes::Reason;
use crate::agent::changes::{ChangeList, NodeNews, PodFacts, PodState};
use crate::agent::snapshot::MinSeverity;

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
    /// The Event regards the Node (`pod` is then the node's name, `namespace` `default`,
    /// where the kubelet puts a node's Events), not a pod.
    pub node: bool,
}

/// Kubernetes caps an Event's note at 1 KiB.
pub const NOTE_LIMIT: usize = 1024;

/// Most severe ids named in a note.
const NOTE_IDS: usize = 5;

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
/// The Events a change list calls for: one per pod whose facts grew.
pub fn notices(list: &ChangeList, node: &str, min: MinSeverity, stale_after_days: i64) -> Vec<Notice> {
    list.pods
        .iter()
        .map(|n| Notice {
            namespace: n.namespace.clone(),
            pod: n.pod.clone(),
            pod_uid: n.facts.uid.clone(),
            container: n.facts.containers.iter().next().cloned().unwrap_or_default(),
            reason: n.reason,
            note: note(&n.facts, min, stale_after_days),
            fingerprint: fingerprint(n.reason, &n.facts.state),
            node: false,
        })
        .chain(list.node_news.as_ref().map(|n| node_notice(n, node, min)))
        .collect()
}

/// The Event on the Node: its new vulnerabilities (most severe named) and a reboot due.
fn node_notice(n: &NodeNews, node: &str, min: MinSeverity) -> Notice {
    let mut parts = Vec::new();
    if !n.severe.is_empty() {
        let ids: Vec<&str> = n
            .severe
            .iter()
            .take(NOTE_IDS)
            .map(|(_, id)| id.as_str())
            .collect();
        parts.push(format!(
            "{} in the node's own packages. Most severe: {}",
            severe_phrase(&n.severe, min),
            ids.join(", ")
        ));
    }
    if n.reboot {
        parts.push(match &n.kernel {
            Some((release, Some(newer))) => {
                format!("kernel {newer} is installed but {release} runs: reboot the node to run it")
            }
            _ => "the OS asked for a reboot (/var/run/reboot-required)".to_string(),
        });
    }
    let state = PodState {
        severe: n.severe.iter().map(|(_, id)| id.clone()).collect(),
        stale: n.reboot.then(|| "reboot".to_string()).into_iter().collect(),
        ..Default::default()
    };
    Notice {
        namespace: "default".into(),
        pod: node.to_string(),
        pod_uid: None,
        container: String::new(),
        reason: n.reason,
        note: truncate(format!("{}.", parts.join("; ")), NOTE_LIMIT),
        fingerprint: fingerprint(n.reason, &state),
        node: true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::changes::{Thresholds, Told};
    use crate::agent::snapshot::{ScanStatus, Snapshot};

    /// What Events a snapshot calls for after what was told (the change list's pod part).
    #[derive(Debug)]
    struct Observation {
        notices: Vec<Notice>,
        suppressed: Vec<Reason>,
        changed: bool,
    }

    fn observe(
        told: &mut Told,
        snap: &Snapshot,
        min: MinSeverity,
        days: i64,
        restored: &mut BTreeSet<String>,
    ) -> Observation {
        let th = Thresholds {
            kube_events: Some(min),
            containers_listed: true,
            ..Default::default()
        };
        let list = ChangeList::between(told, restored, snap, &th, 0);
        Observation {
            notices: notices(&list, "node-a", min, days),
            suppressed: list.recalled,
            changed: list.told_changed,
        }
    }

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
        let obs = observe(&mut Told::default(), &snap, HIGH, 7, &mut BTreeSet::new());
        assert!(obs.notices.is_empty(), "{obs:?}");
        // `medium`: the medium one only, and the note counts it by its severity.
        let medium = MinSeverity::Severity(Severity::Medium);
        let obs = observe(&mut Told::default(), &snap, medium, 7, &mut BTreeSet::new());
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
        let obs = observe(
            &mut Told::default(),
            &snap,
            MinSeverity::Kev,
            7,
            &mut BTreeSet::new(),
        );
        assert!(obs.notices.is_empty());
    }

    #[test]
    fn the_node_s_event_regards_the_node_and_names_the_kernel_to_reboot_into() {
        let news = NodeNews {
            reason: Reason::RebootRequired,
            severe: vec![
                (Severity::Critical, "CVE-9".into()),
                (Severity::High, "CVE-8".into()),
            ],
            reboot: true,
            kernel: Some(("6.8.0-1020-azure".into(), Some("6.8.0-1021.25~22.04.1".into()))),
        };
        let n = node_notice(&news, "aks-nodepool1-0", HIGH);
        assert!(n.node);
        assert_eq!(
            (n.namespace.as_str(), n.pod.as_str()),
            ("default", "aks-nodepool1-0")
        );
        assert_eq!(
            n.note,
            "2 fixable critical/high vulnerabilities (1 critical, 1 high) in the node's own packages. \
             Most severe: CVE-9, CVE-8; kernel 6.8.0-1021.25~22.04.1 is installed but 6.8.0-1020-azure \
             runs: reboot the node to run it."
        );
        // The same state names the same Event; a reboot done is another state.
        let again = node_notice(&news, "aks-nodepool1-0", HIGH);
        assert_eq!(n.fingerprint, again.fingerprint);
        let rebooted = NodeNews {
            reboot: false,
            ..news
        };
        assert_ne!(
            node_notice(&rebooted, "aks-nodepool1-0", HIGH).fingerprint,
            n.fingerprint
        );
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
                    packages: Default::default(),
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
        let mut announced = Told::default();
        let mut restored = BTreeSet::new();
        let before = snapshot(&[("a", &["CVE-1"], &[], None), ("b", &[], &[], None)]);
        let obs = observe(&mut announced, &before, HIGH, 7, &mut restored);
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
        assert!(observe(&mut announced, &before, HIGH, 7, &mut restored)
            .notices
            .is_empty());
        // An advisory refresh: a new critical on both pods, and pod b's base is now end of life.
        let after = snapshot(&[
            ("a", &["CVE-1"], &[("CVE-2", Severity::Critical)], None),
            ("b", &[], &[("CVE-2", Severity::Critical)], Some("3.16.9")),
        ]);
        let obs = observe(&mut announced, &after, HIGH, 7, &mut restored);
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
        let obs = observe(
            &mut announced,
            &snapshot(&[("b", &[], &[("CVE-2", Severity::Critical)], Some("3.16.9"))]),
            HIGH,
            7,
            &mut restored,
        );
        assert!(obs.notices.is_empty() && obs.changed);
        let obs = observe(&mut announced, &after, HIGH, 7, &mut restored);
        assert_eq!(obs.notices.len(), 1);
        assert_eq!(obs.notices[0].pod, "a");
    }

    #[test]
    fn pending_containers_keep_what_was_announced_and_restored_pods_are_suppressed() {
        let mut announced = Told::default();
        let snap = snapshot(&[("a", &["CVE-1"], &[], None)]);
        observe(&mut announced, &snap, HIGH, 7, &mut BTreeSet::new());
        // A restart: the pod's container is pending first (not scanned yet), then ok.
        let mut restored: BTreeSet<String> = announced.pods.keys().cloned().collect();
        let mut pending = snap.clone();
        pending.containers[0].scan_status = ScanStatus::Pending;
        let obs = observe(&mut announced, &pending, HIGH, 7, &mut restored);
        assert!(obs.notices.is_empty() && !obs.changed);
        let obs = observe(&mut announced, &snap, HIGH, 7, &mut restored);
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
