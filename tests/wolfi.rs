//! Wolfi and Chainguard images: `ID=wolfi` / `ID=chainguard` are the release-less OSV
//! ecosystems `Wolfi` / `Chainguard`, their packages apk's. Matched against real Chainguard
//! advisories (tests/fixtures/osv/chainguard, each citing its source): exactly the records
//! whose fixed version is above the installed one, never a false-positive determination
//! (`introduced 0, fixed 0`), and `no_advisory_feed` — never a clean "nothing found" — when
//! the advisory source lacks the ecosystem.

mod common;

use common::*;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// The fixture records: (file name, bytes).
fn chainguard_records() -> Vec<(String, Vec<u8>)> {
    let dir = project().join("tests/fixtures/osv/chainguard");
    let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".json"))
        .map(|e| {
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect();
    out.sort();
    out
}

/// A root with the distribution's os-release (as Chainguard's scanner documentation shows it)
/// and apk's installed database holding `apko` at `version`: hand-written, no tool here builds
/// a Wolfi root.
fn root(dir: &Path, id: &str, name: &str, version: &str) -> PathBuf {
    let root = dir.join(format!("{id}-{version}"));
    std::fs::create_dir_all(root.join("etc")).unwrap();
    std::fs::create_dir_all(root.join("lib/apk/db")).unwrap();
    std::fs::write(
        root.join("etc/os-release"),
        format!("ID={id}\nNAME=\"{name}\"\nPRETTY_NAME=\"{name}\"\nVERSION_ID=\"20230201\"\nHOME_URL=\"https://wolfi.dev\"\n"),
    )
    .unwrap();
    std::fs::write(
        root.join("lib/apk/db/installed"),
        format!("P:apko\nV:{version}\nA:x86_64\no:apko\nL:Apache-2.0\n\nP:wolfi-baselayout\nV:20230201-r24\nA:x86_64\no:wolfi-baselayout\n\n"),
    )
    .unwrap();
    root
}

fn scan(root: &Path, db: &Path) -> serde_json::Value {
    report_of(&format!("rootfs:{}", root.display()), db, &[])
}

fn ids(report: &serde_json::Value) -> BTreeSet<String> {
    report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["id"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn wolfi_and_chainguard_match_their_own_feeds_and_never_a_false_positive_determination() {
    let tmp = tempfile::tempdir().unwrap();
    let records = chainguard_records();
    assert_eq!(records.len(), 20);
    let refs: Vec<(&str, &[u8])> = records.iter().map(|(n, b)| (n.as_str(), b.as_slice())).collect();
    let feed = tmp.path().join("feed");
    write_osv_zip(&feed, "Wolfi", &refs);
    write_osv_zip(&feed, "Chainguard", &refs);
    let db = tmp.path().join("db");
    db_from(&feed, &db, &["Wolfi", "Chainguard"]);

    // apko 0.14.0-r5, by the records' fixed versions (written here from the advisories, not
    // from our output):
    let expected_r5: BTreeSet<String> = [
        "CGA-2pv6-4gjh-fqfr", // fixed in 0.17.0-r1
        "CGA-3qp3-8vp4-hpm3", // fixed in 0.18.0-r0
        "CGA-5383-wjhq-x4r5", // fixed in 0.14.0-r6: one release above r5
        "CGA-572c-x435-hwv5", // fixed in 0.18.0-r0
        "CGA-6c34-8779-3pff", // fixed in 0.14.0-r7
        "CGA-fr9x-mfm9-9rpj", // fixed in 0.14.0-r6
    ]
    .into_iter()
    .map(String::from)
    .collect();
    // Not: CGA-jgxc-mgm2-cp8r (fixed in 0.14.0-r3, below r5) and the older fixes; never the
    // three false-positive determinations (CGA-3jvc-525f-3ggf, CGA-6q9p-7438-p25m,
    // CGA-jgq5-c6pr-47hp: `fixed 0`).
    let never = ["CGA-3jvc-525f-3ggf", "CGA-6q9p-7438-p25m", "CGA-jgq5-c6pr-47hp"];
    for (id, name) in [("wolfi", "Wolfi"), ("chainguard", "Chainguard")] {
        let r = scan(&root(tmp.path(), id, name, "0.14.0-r5"), &db);
        assert_eq!(r["os"]["id"], id, "{r:#}");
        assert_eq!(ids(&r), expected_r5, "{id}: {r:#}");
        let apko = r["packages"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == "apko")
            .unwrap();
        assert_eq!(apko["ecosystem"], name, "{apko:#}");
        assert!(
            apko["purl"]
                .as_str()
                .unwrap()
                .starts_with(&format!("pkg:apk/{id}/apko@0.14.0-r5")),
            "{apko:#}"
        );
        let cves: BTreeSet<&str> = r["findings"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|f| f["cves"].as_array().unwrap().iter().filter_map(|c| c.as_str()))
            .collect();
        assert!(
            cves.contains("CVE-2024-41110"),
            "upstream ids become CVEs: {cves:?}"
        );
        assert!(!r["unreadable"].to_string().contains("no_advisory_feed"), "{r:#}");
    }
    // At exactly a fixed version: that record no longer, the next one still.
    let r = scan(&root(tmp.path(), "wolfi", "Wolfi", "0.14.0-r6"), &db);
    let got = ids(&r);
    assert!(!got.contains("CGA-5383-wjhq-x4r5") && !got.contains("CGA-fr9x-mfm9-9rpj"));
    assert!(got.contains("CGA-6c34-8779-3pff"), "{got:?}");
    // The oldest apko there is: every real fix applies, still no false positive.
    let r = scan(&root(tmp.path(), "wolfi", "Wolfi", "0.1.0-r0"), &db);
    let got = ids(&r);
    assert_eq!(got.len(), 17, "{got:?}");
    for id in never {
        assert!(!got.contains(id), "{id} matched: {got:?}");
    }
}

#[test]
fn a_source_without_wolfi_says_no_advisory_feed() {
    let tmp = tempfile::tempdir().unwrap();
    let feed = tmp.path().join("feed");
    let record = shared_record("Alpine", "ALPINE-CVE-2022-37434.json");
    write_osv_zip(&feed, "Alpine", &[("ALPINE-CVE-2022-37434.json", &record)]);
    let db = tmp.path().join("db");
    // Asked for, and not on the source (as Chainguard's feed is not on a mirror that was
    // never told to sync it).
    db_from(&feed, &db, &["Alpine", "Wolfi"]);
    let r = scan(&root(tmp.path(), "wolfi", "Wolfi", "0.14.0-r5"), &db);
    assert!(ids(&r).is_empty());
    let notes = r["unreadable"].as_array().unwrap();
    assert!(
        notes
            .iter()
            .any(|n| n["reason"] == "no_advisory_feed" && n.to_string().contains("Wolfi")),
        "{notes:#?}"
    );
}
