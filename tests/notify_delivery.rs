//! CloudEvents delivery against receivers that misbehave, on a private containerd: a tag
//! moves to a new build while a container runs the old one (a `stale_digest` event) and four
//! receivers answer it differently — 500 then 202 (retried, delivered once, the same id),
//! 400 (refused, counted, never sent again), a receiver that hangs (the scrape never waits
//! for it), and one that is down until the agent has been restarted (delivered afterwards
//! from the durable outbox, with the same id).

mod common;

use common::agent::{get, value, Agent};
use common::buildah::Buildah;
use common::cloudevents::Receiver;
use common::containerd::Lab;
use common::mirror::Mirror;
use common::*;
use std::time::{Duration, Instant};

const STALE: &str = "io.stalewatch.container.stale_digest";

fn count(a: &Agent, result: &str) -> f64 {
    value(
        &a.metrics(),
        "stalewatch_notifications_total",
        &[("type", STALE), ("result", result)],
    )
    .unwrap_or(-1.0)
}

/// The ids of the events waiting in the outbox of each receiver (file `<seq>-<type>-<id>.json`).
fn waiting(state: &std::path::Path) -> Vec<String> {
    let mut ids = Vec::new();
    for dir in std::fs::read_dir(state.join("outbox")).unwrap().flatten() {
        for f in std::fs::read_dir(dir.path()).unwrap().flatten() {
            let name = f.file_name().into_string().unwrap();
            if let Some(stem) = name.strip_suffix(".json") {
                ids.push(stem.rsplit('-').next().unwrap().to_string());
            }
        }
    }
    ids
}

#[test]
#[allow(clippy::too_many_lines)] // a scenario test that reads top to bottom
fn events_survive_down_failing_refusing_and_hung_receivers() {
    let Some(lab) = Lab::start("notification delivery") else {
        return;
    };
    let Some(b) = Buildah::new("notification delivery") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    b.alpine("3.16.9", "localhost/shop:1");
    let v1 = b.oci_archive("localhost/shop:1", &tmp.path().join("v1.tar"));
    b.alpine("3.20.3", "localhost/shop:1");
    let v2 = b.oci_archive("localhost/shop:1", &tmp.path().join("v2.tar"));
    lab.import(&v1, "localhost/shop");
    lab.run_container("c1", "localhost/shop:1", &[("io.kubernetes.pod.name", "shop-0")]);

    let flaky = Receiver::start(&tmp.path().join("flaky"), "500,202", 0.0);
    let refusing = Receiver::start(&tmp.path().join("refusing"), "400", 0.0);
    let hung = Receiver::start(&tmp.path().join("hung"), "202", 120.0);
    let down_port = common::agent::free_port();
    let down_url = format!("http://127.0.0.1:{down_port}/hook");
    let state = tmp.path().join("state");
    let mirror = Mirror::start(shared_data().join("osv"));
    let flags = [
        "--notify-url",
        &flaky.url,
        "--notify-url",
        &refusing.url,
        "--notify-url",
        &hung.url,
        "--notify-url",
        &down_url,
        "--notify-timeout",
        "2s",
    ];
    let agent = Agent::start(&lab.sock, &state, &mirror.url(), &flags);
    let scanned = |a: &Agent| {
        value(
            &a.metrics(),
            "stalewatch_container_scan_status",
            &[("pod", "shop-0"), ("status", "ok")],
        ) == Some(1.0)
    };
    agent.wait_for("the container scanned", Duration::from_secs(60), scanned);
    lab.import(&v2, "localhost/shop");

    agent.wait_for("retried, then delivered", Duration::from_secs(30), |a| {
        count(a, "delivered") >= 1.0
    });
    let flaky_events = flaky.events(None);
    assert_eq!(flaky_events.len(), 2, "500 then 202");
    assert_eq!(flaky_events[0]["status"], 500);
    assert_eq!(
        flaky_events[0]["attributes"]["id"],
        flaky_events[1]["attributes"]["id"]
    );
    assert_eq!(flaky_events[0]["attributes"]["type"], STALE);
    let id = flaky_events[0]["attributes"]["id"].as_str().unwrap().to_string();
    assert!(count(&agent, "retried") >= 1.0);
    agent.wait_for("refused and counted", Duration::from_secs(10), |a| {
        count(a, "refused") == 1.0
    });
    assert_eq!(refusing.requests(), 1);

    // The hung receiver is tried again and again (2 s deadline, backoff): scrapes never wait.
    let deadline = Instant::now() + Duration::from_secs(6);
    while Instant::now() < deadline {
        let t = Instant::now();
        assert_eq!(get(agent.port, "/metrics").0, 200);
        // Generous for a 2-core CI: a scrape waiting on the hung receiver would take 2 s+.
        assert!(
            t.elapsed() < Duration::from_millis(1800),
            "a scrape took {:?}",
            t.elapsed()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(hung.requests() >= 2, "the hung receiver was tried again");
    let outbox = value(&agent.metrics(), "stalewatch_notification_outbox_events", &[]).unwrap();
    assert_eq!(outbox, 2.0, "the hung and the down receivers' events wait");
    assert!(waiting(&state).iter().all(|w| *w == id), "{:?}", waiting(&state));

    // Restarted while the last receiver is down; then it comes up: the same event arrives.
    assert!(agent.stop().success());
    let down = Receiver::start_on(&tmp.path().join("down"), down_port, "202", 0.0);
    let agent = Agent::start(&lab.sock, &state, &mirror.url(), &flags);
    let start = Instant::now();
    while down.events(None).is_empty() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "not delivered after the restart"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let got = down.events(None);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0]["attributes"]["id"], id.as_str());
    assert_eq!(got[0]["data"]["pods"][0]["pod"], "shop-0");
    // Nothing is told twice: the restart re-sent to no one that had it.
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(flaky.requests(), 2);
    assert_eq!(refusing.requests(), 1);
    drop(agent);
}
