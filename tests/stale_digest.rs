//! Stale digests on a real containerd: containers started from `name:tag` (with `ctr run` and
//! through CRI) keep running v1 when v2 is imported under the same name; within seconds they
//! are exported as stale (running v1, the name now v2), their findings stay those of what they
//! run, and a container started from v2 is not stale.

mod common;

use common::agent::{count, value, Agent};
use common::containerd::{Lab, SANDBOX_IMAGE};
use common::mirror::Mirror;
use common::*;
use std::path::Path;
use std::time::Duration;

const ALPINE_9143: &[u8] = include_bytes!("fixtures/osv/ALPINE-CVE-2024-9143.json");
const ALPINE_42366: &[u8] = include_bytes!("fixtures/osv/ALPINE-CVE-2023-42366.json");

/// The manifest digest a one-image OCI layout's index names (what its import points the
/// image record at).
fn manifest_digest(layout: &Path) -> String {
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    index["manifests"][0]["digest"].as_str().unwrap().to_string()
}

fn ids(agent: &Agent, pod: &str) -> Vec<String> {
    let doc: serde_json::Value = serde_json::from_str(&agent.findings().1).unwrap();
    let c = container_of(&doc, pod);
    let mut v: Vec<String> = c["report"]["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["id"].as_str().unwrap().to_string())
        .collect();
    v.sort();
    v.dedup();
    v
}

#[test]
#[allow(clippy::too_many_lines)] // a scenario test that reads top to bottom
fn a_tag_moved_to_a_new_build_flags_the_containers_still_running_the_old_one() {
    let Some(lab) = Lab::start("stale digest") else {
        return;
    };
    if !require("umoci", "stale digest") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let pause = pause_archive(tmp.path());
    lab.import(&pause, SANDBOX_IMAGE.split(':').next().unwrap());
    // v1: Alpine 3.16.9 (the busybox advisory applies); v2: Alpine 3.20.3 (the openssl one).
    let v1_dir = tmp.path().join("v1");
    let v2_dir = tmp.path().join("v2");
    std::fs::create_dir_all(&v1_dir).unwrap();
    std::fs::create_dir_all(&v2_dir).unwrap();
    let (v1_layout, v1) = umoci_archive(&unpack_alpine("3.16.9", &v1_dir), &v1_dir);
    let (v2_layout, v2) = umoci_archive(&unpack_alpine("3.20.3", &v2_dir), &v2_dir);
    let (v1_digest, v2_digest) = (manifest_digest(&v1_layout), manifest_digest(&v2_layout));
    lab.import(&v1, "example.org/app");

    let site = tmp.path().join("site");
    write_osv_zip(
        &site,
        "Alpine",
        &[
            ("ALPINE-CVE-2023-42366.json", ALPINE_42366),
            ("ALPINE-CVE-2024-9143.json", ALPINE_9143),
        ],
    );
    let mirror = Mirror::start(site);

    lab.run_container(
        "old",
        "example.org/app:latest",
        &[("io.kubernetes.pod.name", "old-0")],
    );
    let cri = common::cri::Cri::connect(&lab.sock);
    let (sandbox, api) = cri.run_pod("shop", "api-0", "api", "example.org/app:latest");
    let agent = Agent::start(&lab.sock, &tmp.path().join("state"), &mirror.url(), &[]);
    let ok = |a: &Agent, pod: &str| {
        value(
            &a.metrics(),
            "stalewatch_container_scan_status",
            &[("pod", pod), ("status", "ok")],
        ) == Some(1.0)
    };
    agent.wait_for("both v1 containers scanned", Duration::from_secs(30), |a| {
        ok(a, "old-0") && ok(a, "api-0")
    });
    assert_eq!(
        count(&agent.metrics(), "stalewatch_container_stale_digest", &[]),
        0
    );
    assert_eq!(ids(&agent, "old-0"), vec!["ALPINE-CVE-2023-42366"]);

    // v2 under the same name: both running containers are stale within 5 s.
    lab.import(&v2, "example.org/app");
    let stale = |a: &Agent, pod: &str| {
        value(
            &a.metrics(),
            "stalewatch_container_stale_digest",
            &[
                ("pod", pod),
                ("running_digest", v1_digest.as_str()),
                ("current_digest", v2_digest.as_str()),
            ],
        ) == Some(1.0)
    };
    agent.wait_for("the v1 containers flagged stale", Duration::from_secs(30), |a| {
        stale(a, "old-0") && stale(a, "api-0")
    });
    // What they run is still v1: its findings, not v2's.
    assert_eq!(ids(&agent, "old-0"), vec!["ALPINE-CVE-2023-42366"]);
    assert_eq!(ids(&agent, "api-0"), vec!["ALPINE-CVE-2023-42366"]);
    let doc: serde_json::Value = serde_json::from_str(&agent.findings().1).unwrap();
    let old = container_of(&doc, "old-0");
    assert_eq!(old["stale_digest"]["current_digest"], v2_digest.as_str());
    assert_eq!(old["stale_digest"]["running_digest"], v1_digest.as_str());
    assert_eq!(old["image_digest"], v1_digest.as_str());

    // The node forgets v1 (its remaining image record removed, its blobs collected): an agent
    // that never saw v1 still flags the container, names what it runs by its layers' chain
    // ID, and inventories it from its unpacked snapshot.
    let listing = String::from_utf8_lossy(&lab.ctr(&["images", "ls", "-q"]).stdout).into_owned();
    for name in listing.lines().filter(|n| n.starts_with("sha256:")) {
        let info = String::from_utf8_lossy(&lab.ctr(&["images", "ls", &format!("name=={name}")]).stdout)
            .into_owned();
        if info.contains(&v1_digest) {
            lab.ctr(&["images", "rm", "--sync", name]);
        }
    }
    let fresh = Agent::start(&lab.sock, &tmp.path().join("fresh"), &mirror.url(), &[]);
    fresh.wait_for(
        "old-0 inventoried from its snapshot",
        Duration::from_secs(10),
        |a| ok(a, "old-0"),
    );
    let doc: serde_json::Value = serde_json::from_str(&fresh.findings().1).unwrap();
    let old = container_of(&doc, "old-0");
    assert_eq!(
        old["stale_digest"]["current_digest"],
        v2_digest.as_str(),
        "{old:#}"
    );
    assert_eq!(old["stale_digest"]["running_image_gone"], true, "{old:#}");
    assert!(old["stale_digest"]["running_digest"]
        .as_str()
        .unwrap()
        .starts_with("sha256:"));
    assert_ne!(old["stale_digest"]["running_digest"], v1_digest.as_str());
    assert_eq!(ids(&fresh, "old-0"), vec!["ALPINE-CVE-2023-42366"]);
    fresh.stop();

    // A container started from v2 is not stale, and has v2's findings.
    lab.run_container(
        "new",
        "example.org/app:latest",
        &[("io.kubernetes.pod.name", "new-0")],
    );
    agent.wait_for("the v2 container scanned", Duration::from_secs(30), |a| {
        ok(a, "new-0")
    });
    let m = agent.metrics();
    assert_eq!(
        count(&m, "stalewatch_container_stale_digest", &[("pod", "new-0")]),
        0,
        "{m}"
    );
    assert_eq!(count(&m, "stalewatch_container_stale_digest", &[]), 2, "{m}");
    assert_eq!(ids(&agent, "new-0"), vec!["ALPINE-CVE-2024-9143"]);

    // Replaced: the stale container goes, and with it its series.
    lab.stop_container("old");
    cri.remove_pod(&sandbox, &api);
    agent.wait_for(
        "stale series gone with their containers",
        Duration::from_secs(30),
        |a| count(&a.metrics(), "stalewatch_container_stale_digest", &[]) == 0,
    );
}

/// A pod without host users (`hostUsers: false`) on a snapshotter without idmapped mounts runs
/// on a remapped copy of its image's layers: a committed snapshot between the image's chain
/// and the container's (`ctr run --uidmap`, the same client code the CRI plugin uses). Its
/// key is not the image's chain, yet the container runs the image its name resolves to: no
/// stale digest, and its findings are the image's.
#[test]
fn a_remapped_snapshot_is_not_a_stale_digest() {
    let test = "remapped snapshot";
    let Some(lab) = Lab::start(test) else {
        return;
    };
    if !require("umoci", test) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    lab.import_alpine(tmp.path(), "3.20.3", "example.org/userns");
    let labels = [
        ("io.kubernetes.pod.name", "userns-0"),
        ("io.kubernetes.pod.namespace", "shop"),
        ("io.kubernetes.container.name", "app"),
    ];
    let maps = ["--uidmap", "0:100000:65536", "--gidmap", "0:100000:65536"];
    lab.run_container_with("userns", "example.org/userns:latest", &labels, &maps);
    // The container's snapshot does not stand on the image's chain directly.
    let snaps = String::from_utf8_lossy(&lab.ctr(&["snapshots", "ls"]).stdout).into_owned();
    let parent = snaps
        .lines()
        .find_map(|l| {
            l.strip_prefix("userns")
                .map(|rest| rest.split_whitespace().next().unwrap_or("").to_string())
        })
        .unwrap();
    let committed: Vec<&str> = snaps.lines().filter(|l| l.contains("Committed")).collect();
    assert_eq!(
        committed.len(),
        2,
        "the image's layer and its remapped copy:\n{snaps}"
    );

    let site = tmp.path().join("site");
    write_osv_zip(&site, "Alpine", &[("ALPINE-CVE-2024-9143.json", ALPINE_9143)]);
    let mirror = Mirror::start(site);
    let agent = Agent::start(&lab.sock, &tmp.path().join("state"), &mirror.url(), &[]);
    agent.wait_for("ok", Duration::from_secs(60), |a| {
        value(
            &a.metrics(),
            "stalewatch_container_scan_status",
            &[("pod", "userns-0"), ("status", "ok")],
        ) == Some(1.0)
    });
    let m = agent.metrics();
    assert_eq!(
        count(&m, "stalewatch_container_stale_digest", &[("pod", "userns-0")]),
        0,
        "{parent}: {m}"
    );
    let doc: serde_json::Value = serde_json::from_str(&agent.findings().1).unwrap();
    let c = container_of(&doc, "userns-0");
    assert!(c["stale_digest"].is_null(), "{c:#}");
    assert_eq!(ids(&agent, "userns-0"), ["ALPINE-CVE-2024-9143"]);
    agent.stop();
}
