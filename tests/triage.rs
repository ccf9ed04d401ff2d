//! Triage on real data: CISA's KEV catalog (the shared copy) on a dpkg root written by the real
//! dpkg with old releases whose CVEs are in it, checked against an independent oracle
//! (tests/support/kev_oracle.py: dpkg-query, the OSV records' JSON, `dpkg --compare-versions`);
//! EPSS scores in FIRST's file format; OpenVEX in (suppression, precedence, bad documents) and
//! out (validated against the OpenVEX JSON Schema in place, and read back by our own reader).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{project, require, run_script, shared_data, stalewatch};

fn kev_json() -> PathBuf {
    shared_data().join("kev/known_exploited_vulnerabilities.json")
}

/// A dpkg root of old releases, and a database with Debian's advisories and the KEV catalog.
fn kev_setup(tmp: &Path) -> Option<(PathBuf, PathBuf)> {
    if !require("dpkg-deb", "triage: KEV fixture") {
        return None;
    }
    let root = tmp.join("root");
    run_script("make-dpkg-root.sh", &[root.to_str().unwrap(), "kev"]);
    let db = kev_db(tmp, "Debian");
    Some((root, db))
}

/// A database with `ecosystem`'s advisories from the shared OSV export and the KEV catalog.
fn kev_db(tmp: &Path, ecosystem: &str) -> PathBuf {
    let db = tmp.join("db");
    let out = stalewatch(&[
        "db",
        "update",
        "--advisory-source",
        shared_data().join("osv").to_str().unwrap(),
        "--db-dir",
        db.to_str().unwrap(),
        "--ecosystem",
        ecosystem,
        "--kev-source",
        kev_json().to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    db
}

fn scan(root: &Path, db: &Path, extra: &[&str]) -> std::process::Output {
    let target = format!("rootfs:{}", root.display());
    let mut args = vec!["scan", &target, "--db-dir", db.to_str().unwrap()];
    args.extend(extra);
    stalewatch(&args)
}

fn report(out: &std::process::Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)))
}

/// The known-exploited findings of a scan of `root` equal the oracle's, carry the catalog's
/// own facts, and lead the table; returns how many there are.
fn known_exploited_equal_the_oracle(root: &Path, db: &Path, ecosystem: &str, feed: &str) -> usize {
    let out = scan(root, db, &["--format", "json"]);
    assert!(out.status.success());
    let r = report(&out);
    let oracle = Command::new("python3")
        .arg(project().join("tests/support/kev_oracle.py"))
        .args([root.to_str().unwrap(), ecosystem])
        .arg(shared_data().join(format!("osv/{feed}/all.zip")))
        .arg(kev_json())
        .output()
        .unwrap();
    assert!(
        oracle.status.success(),
        "{}",
        String::from_utf8_lossy(&oracle.stderr)
    );
    let expected: Vec<(String, String, Vec<String>)> = serde_json::from_slice(&oracle.stdout).unwrap();
    let expected: BTreeSet<(String, String)> = expected.into_iter().map(|(i, p, _)| (i, p)).collect();
    let findings = r["findings"].as_array().unwrap();
    let ours: BTreeSet<(String, String)> = findings
        .iter()
        .filter(|f| f["known_exploited"] == true)
        .map(|f| {
            (
                f["id"].as_str().unwrap().into(),
                f["package"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(ours, expected);
    assert_eq!(r["summary"]["known_exploited"], ours.len());
    // The facts each carries are the catalog's own, for one of its CVE ids.
    let catalog: serde_json::Value = serde_json::from_slice(&std::fs::read(kev_json()).unwrap()).unwrap();
    let by_cve: BTreeMap<&str, &serde_json::Value> = catalog["vulnerabilities"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| (v["cveID"].as_str().unwrap(), v))
        .collect();
    for f in findings {
        let cves: Vec<&str> = f["cves"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_str().unwrap())
            .collect();
        let listed: Vec<&&serde_json::Value> = cves.iter().filter_map(|c| by_cve.get(c)).collect();
        assert_eq!(f["known_exploited"] == true, !listed.is_empty(), "{}", f["id"]);
        // The earliest-added entry: known exploited since then.
        if let Some(entry) = listed.iter().min_by_key(|e| e["dateAdded"].as_str().unwrap()) {
            assert_eq!(f["kev"]["date_added"], entry["dateAdded"]);
            assert_eq!(f["kev"]["due_date"], entry["dueDate"]);
            assert_eq!(f["kev"]["catalog_version"], catalog["catalogVersion"]);
        }
    }
    // The table puts them first.
    let table = String::from_utf8(scan(root, db, &[]).stdout).unwrap();
    let rows: Vec<&str> = table.lines().skip(1).take_while(|l| !l.is_empty()).collect();
    let marked = rows.iter().take_while(|l| l.starts_with("KEV ")).count();
    assert_eq!(marked, ours.len(), "{table}");
    assert!(rows[marked..].iter().all(|l| !l.starts_with("KEV ")));
    ours.len()
}

#[test]
fn known_exploited_findings_equal_the_oracle() {
    let tmp = tempfile::tempdir().unwrap();
    let Some((root, db)) = kev_setup(tmp.path()) else {
        return;
    };
    let n = known_exploited_equal_the_oracle(&root, &db, "Debian:12", "Debian");
    assert!(n >= 10, "only {n} known-exploited findings");
}

/// AlmaLinux's ALSA records name their CVEs only in `related`: an AlmaLinux 8 rpmdb (Berkeley
/// DB, written by the real rpm) of releases before the PwnKit, Looney Tunables and
/// CVE-2025-48384 fixes.
#[test]
fn almalinux_findings_are_known_exploited_through_related() {
    if !require("rpmbuild", "triage: AlmaLinux KEV fixture")
        || !require("db5.3_load", "triage: AlmaLinux KEV fixture")
    {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    run_script("make-rpm-root.sh", &[root.to_str().unwrap(), "kev"]);
    let db = kev_db(tmp.path(), "AlmaLinux");
    let n = known_exploited_equal_the_oracle(&root, &db, "AlmaLinux:8", "AlmaLinux");
    assert!(n >= 4, "only {n} known-exploited findings");
}

#[test]
fn fail_on_kev_fails_and_without_a_catalog_is_a_usage_error() {
    let tmp = tempfile::tempdir().unwrap();
    let Some((root, db)) = kev_setup(tmp.path()) else {
        return;
    };
    assert_eq!(scan(&root, &db, &["--fail-on", "kev"]).status.code(), Some(1));
    assert_eq!(
        scan(&root, &db, &["--fail-on", "critical"]).status.code(),
        Some(0)
    );
    let both = scan(&root, &db, &["--fail-on", "critical,kev"]);
    assert_eq!(both.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&both.stderr).contains("--fail-on: kev met"));
    // The same root with the catalog gone: no silent pass.
    std::fs::remove_file(db.join("kev.json")).unwrap();
    let out = scan(&root, &db, &["--fail-on", "high,kev"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no KEV data") && err.contains("--kev-source"),
        "{err}"
    );
    // Without a catalog the field is unknown (absent), not false.
    let r = report(&scan(&root, &db, &["--format", "json"]));
    assert!(r["findings"]
        .as_array()
        .unwrap()
        .iter()
        .all(|f| f.get("known_exploited").is_none()));
    assert!(r["summary"].get("known_exploited").is_none());
    let bad = scan(&root, &db, &["--fail-on", "high,exploited"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("unknown severity \"exploited\""));
}

/// An EPSS file in FIRST's layout: real CVE ids of the fixture's findings, test scores.
fn epss_file(dir: &Path, gzip: bool) -> PathBuf {
    let rows = [
        ("CVE-2021-41773", "0.94400", "0.99990"),
        ("CVE-2014-6271", "0.97000", "0.99999"),
        ("CVE-2005-1119", "0.50000", "0.90000"),
        ("CVE-2003-1307", "0.00100", "0.20000"),
    ];
    let mut csv =
        String::from("#model_version:v2025.03.14,score_date:2025-08-24T12:55:00Z\ncve,epss,percentile\n");
    for (c, s, p) in rows {
        csv.push_str(&format!("{c},{s},{p}\n"));
    }
    let path = dir.join(if gzip { "epss.csv.gz" } else { "epss.csv" });
    if gzip {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(csv.as_bytes()).unwrap();
        std::fs::write(&path, gz.finish().unwrap()).unwrap();
    } else {
        std::fs::write(&path, csv).unwrap();
    }
    path
}

fn update_epss(db: &Path, source: &Path) -> std::process::Output {
    stalewatch(&[
        "db",
        "update",
        "--advisory-source",
        shared_data().join("osv").to_str().unwrap(),
        "--db-dir",
        db.to_str().unwrap(),
        "--ecosystem",
        "Debian",
        "--epss-source",
        source.to_str().unwrap(),
    ])
}

#[test]
fn epss_scores_order_the_table_and_a_truncated_file_changes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let Some((root, db)) = kev_setup(tmp.path()) else {
        return;
    };
    let gz = epss_file(tmp.path(), true);
    let out = update_epss(&db, &gz);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let r = report(&scan(&root, &db, &["--format", "json"]));
    let score = |id: &str| {
        r["findings"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["id"] == id)
            .map(|f| f["epss"]["score"].as_f64().unwrap())
    };
    assert_eq!(score("DEBIAN-CVE-2014-6271"), Some(0.97));
    assert_eq!(score("DEBIAN-CVE-2005-1119"), Some(0.5));
    // Table: KEV first (by EPSS among them), then the rest by EPSS.
    let table = String::from_utf8(scan(&root, &db, &[]).stdout).unwrap();
    let ids: Vec<&str> = table
        .lines()
        .skip(1)
        .take(20)
        .map(|l| l.split_whitespace().nth(3).unwrap_or(""))
        .collect();
    assert_eq!(
        &ids[..2],
        ["DEBIAN-CVE-2014-6271", "DEBIAN-CVE-2021-41773"],
        "{table}"
    );
    let after_kev = table
        .lines()
        .find(|l| l.starts_with("    ") && l.contains("0.5000"))
        .unwrap();
    assert!(after_kev.contains("DEBIAN-CVE-2005-1119"), "{table}");
    assert_eq!(
        scan(&root, &db, &["--fail-on", "epss>=0.96"]).status.code(),
        Some(1)
    );
    assert_eq!(
        scan(&root, &db, &["--fail-on", "epss>=0.98"]).status.code(),
        Some(0)
    );
    // A truncated download is refused; the scores in force stay.
    let bytes = std::fs::read(&gz).unwrap();
    let cut = tmp.path().join("cut.csv.gz");
    std::fs::write(&cut, &bytes[..bytes.len() - 20]).unwrap();
    let out = update_epss(&db, &cut);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("EPSS"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        score("DEBIAN-CVE-2014-6271"),
        report(&scan(&root, &db, &["--format", "json"]))["findings"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["id"] == "DEBIAN-CVE-2014-6271")
            .map(|f| f["epss"]["score"].as_f64().unwrap())
    );
    // The plain CSV reads the same.
    assert!(update_epss(&db, &epss_file(tmp.path(), false)).status.success());
}

fn write(dir: &Path, name: &str, doc: &serde_json::Value) -> String {
    let p = dir.join(name);
    std::fs::write(&p, serde_json::to_vec_pretty(doc).unwrap()).unwrap();
    p.to_str().unwrap().to_string()
}

fn vex_doc(statements: serde_json::Value) -> serde_json::Value {
    serde_json::json!({
        "@context": "https://openvex.dev/ns/v0.2.0",
        "@id": "https://example.com/vex/ops-1",
        "author": "ops@example.com",
        "timestamp": "2025-01-01T00:00:00Z",
        "version": 1,
        "statements": statements,
    })
}

#[test]
#[allow(clippy::too_many_lines)] // a scenario test that reads top to bottom
fn openvex_suppresses_and_round_trips_through_the_schema() {
    let tmp = tempfile::tempdir().unwrap();
    let Some((root, db)) = kev_setup(tmp.path()) else {
        return;
    };
    let plain = report(&scan(&root, &db, &["--format", "json"]));
    let count = |r: &serde_json::Value, key: &str| r[key].as_array().map_or(0, Vec::len);
    let doc = vex_doc(serde_json::json!([
        // Versionless purl: every bash; by CVE id (the finding's id is DEBIAN-CVE-…).
        {"vulnerability": {"name": "CVE-2014-6271"}, "products": [{"@id": "pkg:deb/debian/bash"}],
         "status": "not_affected", "justification": "vulnerable_code_not_in_execute_path"},
        // A version that is not installed: no effect.
        {"vulnerability": {"name": "CVE-2014-7169"}, "products": [{"@id": "pkg:deb/debian/bash@4.3-1"}],
         "status": "fixed"},
        // A qualifier the package has; superseded by a later statement.
        {"vulnerability": {"name": "CVE-2021-3156"}, "products": [{"@id": "pkg:deb/debian/sudo?arch=amd64"}],
         "status": "fixed", "timestamp": "2025-02-01T00:00:00Z"},
        {"vulnerability": {"name": "CVE-2021-3156"}, "products": [{"@id": "pkg:deb/debian/sudo"}],
         "status": "under_investigation", "timestamp": "2025-03-01T00:00:00Z"},
        // A qualifier the package lacks a match for.
        {"vulnerability": {"name": "CVE-2021-41773"}, "products": [{"@id": "pkg:deb/debian/apache2?arch=arm64"}],
         "status": "not_affected", "impact_statement": "not on arm64"},
    ]));
    let path = write(tmp.path(), "ops.json", &doc);
    let out = scan(&root, &db, &["--format", "json", "--vex", &path]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let r = report(&out);
    assert_eq!(count(&r, "suppressed"), 1);
    assert_eq!(count(&r, "findings"), count(&plain, "findings") - 1);
    let s = &r["suppressed"][0];
    assert_eq!(
        (s["id"].as_str(), s["package"].as_str()),
        (Some("DEBIAN-CVE-2014-6271"), Some("bash"))
    );
    assert_eq!(s["vex"]["status"], "not_affected");
    assert_eq!(s["vex"]["justification"], "vulnerable_code_not_in_execute_path");
    assert_eq!(s["vex"]["document"], "https://example.com/vex/ops-1");
    let find = |id: &str| {
        r["findings"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["id"] == id)
            .unwrap()
            .clone()
    };
    assert_eq!(
        find("DEBIAN-CVE-2021-3156")["vex"]["status"],
        "under_investigation"
    );
    assert!(find("DEBIAN-CVE-2014-7169").get("vex").is_none());
    assert!(find("DEBIAN-CVE-2021-41773").get("vex").is_none());
    assert_eq!(
        r["summary"]["known_exploited"],
        plain["summary"]["known_exploited"].as_u64().unwrap() - 1
    );
    // --show-suppressed lists it in the table.
    let table = String::from_utf8(scan(&root, &db, &["--vex", &path, "--show-suppressed"]).stdout).unwrap();
    assert!(table.contains("SUPPRESSED by VEX") && table.contains("vulnerable_code_not_in_execute_path"));

    // OpenVEX out: valid against the published schema, and read back by our reader it
    // suppresses nothing new (only `not_affected`/`fixed` carried through do).
    let out = scan(
        &root,
        &db,
        &[
            "--format",
            "openvex",
            "--vex",
            &path,
            "--vex-author",
            "security@example.com",
        ],
    );
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let schema = shared_data().join("schemas/openvex/openvex_json_schema.json");
    if let Err(e) = common::schema_errors(&schema, &text) {
        panic!("OpenVEX output does not match the schema:\n{e}");
    }
    let vex: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(vex["author"], "security@example.com");
    let statements = vex["statements"].as_array().unwrap();
    assert_eq!(statements.len(), count(&plain, "findings"));
    let affected: Vec<_> = statements.iter().filter(|s| s["status"] == "affected").collect();
    assert!(affected
        .iter()
        .all(|s| s["action_statement"].as_str().is_some_and(|a| !a.is_empty())));
    let back = write(tmp.path(), "out.json", &vex);
    let again = report(&scan(&root, &db, &["--format", "json", "--vex", &back]));
    assert_eq!(count(&again, "suppressed"), 1);
    assert_eq!(
        again["suppressed"][0]["vex"]["justification"],
        "vulnerable_code_not_in_execute_path"
    );
}

#[test]
fn bad_vex_documents_are_refused_before_the_scan() {
    let tmp = tempfile::tempdir().unwrap();
    let Some((root, db)) = kev_setup(tmp.path()) else {
        return;
    };
    let cases = [
        (
            "notjson.json",
            serde_json::Value::String("{".into()),
            "not an OpenVEX JSON document",
        ),
        (
            "context.json",
            serde_json::json!({"@context": "https://example.com/other", "statements": []}),
            "@context",
        ),
        (
            "noproducts.json",
            vex_doc(
                serde_json::json!([{"vulnerability": {"name": "CVE-1"}, "products": [], "status": "fixed"}]),
            ),
            "statement 0: no products",
        ),
        (
            "status.json",
            vex_doc(
                serde_json::json!([{"vulnerability": {"name": "CVE-1"}, "products": [{"@id": "pkg:deb/debian/bash"}], "status": "wontfix"}]),
            ),
            "unknown status",
        ),
        (
            "justification.json",
            vex_doc(
                serde_json::json!([{"vulnerability": {"name": "CVE-1"}, "products": [{"@id": "pkg:deb/debian/bash"}], "status": "not_affected", "justification": "trust_me"}]),
            ),
            "unknown justification",
        ),
    ];
    for (name, doc, why) in cases {
        let path = match &doc {
            serde_json::Value::String(s) => {
                let p = tmp.path().join(name);
                std::fs::write(&p, s).unwrap();
                p.to_str().unwrap().to_string()
            }
            d => write(tmp.path(), name, d),
        };
        let out = scan(&root, &db, &["--vex", &path]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{name}: {err}");
        assert!(err.contains(why) && err.contains(name), "{name}: {err}");
        assert!(out.stdout.is_empty(), "{name}: nothing half-applied");
    }
    let huge = tmp.path().join("huge.json");
    std::fs::write(&huge, vec![b' '; 100 << 20]).unwrap();
    let out = scan(&root, &db, &["--vex", huge.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("allowed"));
}

/// AlmaLinux's ALSA records name their CVEs only in `related`: every record's CVE ids in the
/// index equal those of its raw JSON (id, aliases, upstream, related), read independently.
#[test]
fn cve_ids_include_related_on_the_real_almalinux_feed() {
    use std::io::Read;
    let path = shared_data().join("osv/AlmaLinux/all.zip");
    let index = stalewatch_core::advisory::EcosystemIndex::from_osv_zip(
        "AlmaLinux",
        std::io::BufReader::new(std::fs::File::open(&path).unwrap()),
    )
    .unwrap();
    let mut zip = zip::ZipArchive::new(std::fs::File::open(&path).unwrap()).unwrap();
    let mut expected: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut only_related = 0;
    for i in 0..zip.len() {
        let mut text = String::new();
        zip.by_index(i).unwrap().read_to_string(&mut text).unwrap();
        let rec: serde_json::Value = serde_json::from_str(&text).unwrap();
        let ids = |key: &str| -> Vec<String> {
            rec[key]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|v| v.as_str().map(String::from))
                .collect()
        };
        let cve = |s: &String| s.starts_with("CVE-");
        let mut all: Vec<String> = [rec["id"].as_str().unwrap().to_string()]
            .into_iter()
            .chain(ids("aliases"))
            .chain(ids("upstream"))
            .chain(ids("related"))
            .filter(cve)
            .collect();
        all.sort();
        all.dedup();
        let without_related = ids("aliases")
            .iter()
            .chain(&ids("upstream"))
            .filter(|s| cve(s))
            .count();
        if without_related == 0 && !all.is_empty() {
            only_related += 1;
        }
        expected.insert(rec["id"].as_str().unwrap().to_string(), all);
    }
    assert!(index.advisories.len() > 1000);
    for a in &index.advisories {
        assert_eq!(*a.cves, expected[&a.id][..], "{}", a.id);
    }
    assert!(
        only_related > 1000,
        "{only_related} records name CVEs only in related"
    );
}

/// SARIF raises known-exploited results to `error` (whatever their severity: these Debian
/// records carry none) with the KEV facts in their properties; CycloneDX carries them as
/// properties and stays valid against the official schema.
#[test]
fn sarif_and_cyclonedx_carry_the_kev_facts() {
    let tmp = tempfile::tempdir().unwrap();
    let Some((root, db)) = kev_setup(tmp.path()) else {
        return;
    };
    let sarif = report(&scan(&root, &db, &["--format", "sarif"]));
    let results = sarif["runs"][0]["results"].as_array().unwrap();
    let kev: Vec<&serde_json::Value> = results
        .iter()
        .filter(|r| r["properties"]["known_exploited"] == true)
        .collect();
    let json = report(&scan(&root, &db, &["--format", "json"]));
    assert_eq!(
        kev.len() as u64,
        json["summary"]["known_exploited"].as_u64().unwrap()
    );
    assert!(!kev.is_empty());
    assert!(kev
        .iter()
        .all(|r| r["level"] == "error" && r["properties"]["kev"]["due_date"].is_string()));
    assert!(results
        .iter()
        .filter(|r| r["properties"]["known_exploited"] == false)
        .all(|r| r["level"] == "note"));
    let out = scan(&root, &db, &["--format", "cyclonedx"]);
    let text = String::from_utf8(out.stdout).unwrap();
    if let Some(check) = common::cyclonedx_schema_errors(&text, "triage: CycloneDX") {
        check.unwrap_or_else(|e| panic!("CycloneDX with KEV properties is invalid:\n{e}"));
    }
    let bom: serde_json::Value = serde_json::from_str(&text).unwrap();
    let shellshock = bom["vulnerabilities"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["id"] == "DEBIAN-CVE-2014-6271")
        .unwrap();
    let prop = |name: &str| {
        shellshock["properties"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name)
            .map(|p| p["value"].clone())
    };
    assert_eq!(prop("stalewatch:known_exploited"), Some("true".into()));
    assert_eq!(prop("stalewatch:kev:date_added"), Some("2022-01-28".into()));
}
