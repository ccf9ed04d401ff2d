//! The advisory database against a real OSV mirror (../shared/data/osv served on loopback),
//! conditional updates, and the three real Alpine minirootfs scanned unpacked and as OCI
//! archives built by umoci.

mod common;

use common::mirror::{Fault, Mirror};
use common::*;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

fn db_status(db: &Path) -> serde_json::Value {
    ok_json(&[
        "db",
        "status",
        "--db-dir",
        db.to_str().unwrap(),
        "--format",
        "json",
    ])
}

/// (advisory id, package, installed version, fixed version).
type Expected = (&'static str, &'static str, &'static str, &'static str);

/// Converts an OCI layout with skopeo (a real image tool) to another transport.
fn skopeo_copy(layout: &Path, dest: &str, extra: &[&str]) {
    let src = format!("oci:{}:latest", layout.display());
    let out = Command::new("skopeo")
        .arg("copy")
        .args(extra)
        .arg(&src)
        .arg(dest)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "skopeo copy {dest}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
#[allow(clippy::too_many_lines)] // a scenario test that reads top to bottom
fn mirror_update_is_conditional_and_alpine_images_match_unpacked_roots() {
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("db");
    let mirror = Mirror::start(shared_data().join("osv"));
    let url = mirror.url();
    let update = |ecos: &[&str]| {
        let flags: Vec<&str> = ecos.iter().flat_map(|e| ["--ecosystem", e]).collect();
        let out = db_update(&url, &db, &flags);
        assert!(
            out.status.success(),
            "db update: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };

    // First update: Alpine downloaded; SUSE is not on this mirror (reported, not fatal).
    update(&["Alpine", "SUSE"]);
    let log = mirror.log.lock().unwrap().clone();
    // Exactly one request per ecosystem, in the order asked; then the source's own age: its
    // stalewatch-sync.json (this mirror has none), else the head of its modified_id.csv.
    let want_log = [
        ("/Alpine/all.zip".to_string(), 200),
        ("/SUSE/all.zip".to_string(), 404),
        ("/stalewatch-sync.json".to_string(), 404),
        ("/modified_id.csv".to_string(), 200),
    ];
    assert_eq!(log, want_log, "{log:?}");

    // What was downloaded is exactly the mirror's archive, every record counted.
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(shared_data().join("osv/index.json")).unwrap()).unwrap();
    let want = &index["ecosystems"]["Alpine"];
    let status = db_status(&db);
    let alpine = &status["ecosystems"]["Alpine"];
    assert_eq!(alpine["records"], want["records"]);
    assert_eq!(alpine["archive_sha256"], want["sha256"]);
    assert_eq!(alpine["source_modified"], want["modified"]);
    assert_eq!(
        alpine["entries"], want["affected_entries_per_ecosystem"],
        "per-release entries"
    );
    assert_eq!(status["ecosystems"]["SUSE"]["missing"], true);

    // Second update: one round trip answered 304, index kept, success recorded.
    mirror.log.lock().unwrap().clear();
    update(&["Alpine"]);
    let log = mirror.log.lock().unwrap().clone();
    assert_eq!(
        log[0],
        ("/Alpine/all.zip".to_string(), 304),
        "conditional request: {log:?}"
    );
    assert_eq!(
        log.len(),
        3,
        "the archive, then the sync time's two files: {log:?}"
    );
    let again = db_status(&db);
    assert_eq!(again["ecosystems"]["Alpine"]["records"], want["records"]);
    assert!(again["ecosystems"]["Alpine"]["last_success"].is_string());

    // Hand-checked against the OSV records (secfixes of each release) and the apk databases:
    // 3.12.12 zlib 1.2.12-r0 < fixed 1.2.12-r2; 3.16.9 busybox 1.35.0-r17 < 1.35.0-r18 (origin of
    // busybox and ssl_client); 3.20.3 openssl 3.3.2-r0 < 3.3.2-r1 (libcrypto3, libssl3).
    // Not findings: ALPINE-CVE-2024-6119 on 3.20 (fixed in the installed 3.3.2-r0) and
    // ALPINE-CVE-2022-28391 on 3.12 (fixed in the installed busybox 1.31.1-r22).
    let expected: [(&str, &[Expected]); 3] = [
        (
            "3.12.12",
            &[("ALPINE-CVE-2022-37434", "zlib", "1.2.12-r0", "1.2.12-r2")],
        ),
        (
            "3.16.9",
            &[
                ("ALPINE-CVE-2023-42366", "busybox", "1.35.0-r17", "1.35.0-r18"),
                ("ALPINE-CVE-2023-42366", "ssl_client", "1.35.0-r17", "1.35.0-r18"),
            ],
        ),
        (
            "3.20.3",
            &[
                ("ALPINE-CVE-2024-9143", "libcrypto3", "3.3.2-r0", "3.3.2-r1"),
                ("ALPINE-CVE-2024-9143", "libssl3", "3.3.2-r0", "3.3.2-r1"),
            ],
        ),
    ];
    let have_umoci = require("umoci", "alpine oci-archive scans");
    for (version, findings) in expected {
        let root = unpack_alpine(version, tmp.path());
        let rootfs: serde_json::Value =
            serde_json::from_slice(&scan_json(&format!("rootfs:{}", root.display()), &db).stdout).unwrap();
        let want: Vec<(String, String, String, String)> = findings
            .iter()
            .map(|(a, b, c, d)| (a.to_string(), b.to_string(), c.to_string(), d.to_string()))
            .collect();
        assert_eq!(finding_keys(&rootfs), want, "alpine {version}");
        assert_eq!(
            rootfs["packages"].as_array().unwrap().len(),
            14,
            "alpine {version} minirootfs has 14 packages"
        );
        assert!(
            rootfs["unreadable"].as_array().unwrap().is_empty(),
            "{}",
            rootfs["unreadable"]
        );
        // Both Alpine EOL dates are long past on the fixed clock (2026-11-29).
        assert_eq!(rootfs["os"]["eol"], true);
        if have_umoci {
            let (layout, archive) = umoci_archive(&root, tmp.path());
            let mut targets = vec![format!("oci-archive:{}", archive.display())];
            // The same image as docker saves it, and with zstd layers, written by skopeo.
            if version == "3.20.3" && require("skopeo", "docker-archive and zstd scans") {
                let docker = tmp.path().join("docker.tar");
                skopeo_copy(
                    &layout,
                    &format!("docker-archive:{}:alpine:3.20", docker.display()),
                    &[],
                );
                let zstd = tmp.path().join("zstd-layout");
                skopeo_copy(
                    &layout,
                    &format!("oci:{}:latest", zstd.display()),
                    &["--dest-compress-format", "zstd"],
                );
                targets.push(format!("docker-archive:{}", docker.display()));
                targets.push(format!("oci:{}", zstd.display()));
            }
            for target in targets {
                let image = ok_json(&[
                    "scan",
                    &target,
                    "--db-dir",
                    db.to_str().unwrap(),
                    "--format",
                    "json",
                ]);
                assert_eq!(
                    findings_without_layers(&image["findings"], true),
                    rootfs["findings"],
                    "{target}: image and rootfs differ"
                );
                // Images also name the layer (digest) packages came from — a docker-archive's
                // plain-tar layers by their diff_ids — an unpacked root cannot.
                let packages = packages_without_layers(&image["packages"], true);
                assert_eq!(packages, rootfs["packages"], "{target}");
                assert_eq!(image["os"], rootfs["os"], "{target}");
            }
        }
        // Exit codes: findings of unknown severity fail `--fail-on unknown` only.
        let target = format!("rootfs:{}", root.display());
        let code = |fail_on: &str| {
            stalewatch(&[
                "scan",
                &target,
                "--db-dir",
                db.to_str().unwrap(),
                "--fail-on",
                fail_on,
            ])
            .status
            .code()
        };
        assert_eq!(code("unknown"), Some(1), "alpine {version}");
        assert_eq!(code("low"), Some(0), "alpine {version}");
        let table = stalewatch(&["scan", &target, "--db-dir", db.to_str().unwrap()]);
        let text = String::from_utf8_lossy(&table.stdout);
        assert!(text.contains(&format!("{} findings", findings.len())), "{text}");
        assert!(text.contains("END OF LIFE since"), "{text}");
        assert!(text.contains(findings[0].0), "{text}");
    }
}

/// A small mirror of real records for the failure cases.
fn write_mirror(dir: &Path, entries: &[(&str, &[u8])]) {
    use std::io::Write;
    std::fs::create_dir_all(dir.join("Alpine")).unwrap();
    let f = std::fs::File::create(dir.join("Alpine/all.zip")).unwrap();
    let mut z = zip::ZipWriter::new(f);
    for (name, body) in entries {
        z.start_file(*name, zip::write::SimpleFileOptions::default())
            .unwrap();
        z.write_all(body).unwrap();
    }
    z.finish().unwrap();
}

const ALPINE_9143: &[u8] = include_bytes!("fixtures/osv/ALPINE-CVE-2024-9143.json");
const ALPINE_42366: &[u8] = include_bytes!("fixtures/osv/ALPINE-CVE-2023-42366.json");

/// An Alpine 3.20.3 root with libssl3 3.3.2-r0 (one finding: ALPINE-CVE-2024-9143).
fn alpine_libssl_root() -> std::path::PathBuf {
    let mut root = tempfile::tempdir().unwrap().keep();
    root.push("root");
    std::fs::create_dir_all(root.join("etc")).unwrap();
    std::fs::create_dir_all(root.join("lib/apk/db")).unwrap();
    std::fs::write(root.join("etc/os-release"), "ID=alpine\nVERSION_ID=3.20.3\n").unwrap();
    std::fs::write(
        root.join("lib/apk/db/installed"),
        "P:libssl3\nV:3.3.2-r0\nA:x86_64\no:openssl\n\n",
    )
    .unwrap();
    root
}

/// Every way the mirror fails `path` in the test, with the reason `db status` must give.
fn mirror_faults(full: &[u8], url: &str, path: &str) -> Vec<(Fault, &'static str)> {
    // Servers that answer and then do not: a head and no body for longer than the client's
    // 60 s read timeout; a Content-Length over the 4 GiB cap; a redirect to itself.
    let head = |h: &str, hold: u64| Fault::Head(h.to_string(), Duration::from_secs(hold));
    vec![
        (Fault::Status(500), "HTTP 500"),
        (Fault::CutBody(full.len() / 2), "network"),
        (Fault::Body(full[..full.len() / 2].to_vec()), "bad_archive"),
        (Fault::Body(b"<html>not a zip</html>".to_vec()), "bad_archive"),
        (
            head("HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n", 90),
            "network",
        ),
        (
            head("HTTP/1.1 200 OK\r\nContent-Length: 99999999999\r\n\r\n", 5),
            "too_large",
        ),
        (
            // Connection: close: the server hangs up after each hop, so no hop may reuse it.
            head(
                &format!("HTTP/1.1 302 Found\r\nLocation: {url}{path}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"),
                0,
            ),
            "redirect",
        ),
    ]
}

#[test]
fn a_corrupted_mirror_leaves_the_previous_index_in_use() {
    let tmp = tempfile::tempdir().unwrap();
    let (db, site) = (tmp.path().join("db"), tmp.path().join("site"));
    write_mirror(&site, &[("ALPINE-CVE-2024-9143.json", ALPINE_9143)]);
    let mirror = Mirror::start(site.clone());
    let url = mirror.url();
    let db_s = db.to_str().unwrap();
    let update = || {
        stalewatch(&[
            "db",
            "update",
            "--advisory-source",
            &url,
            "--db-dir",
            db_s,
            "--ecosystem",
            "Alpine",
        ])
    };
    assert!(update().status.success());

    let root = alpine_libssl_root();
    let target = format!("rootfs:{}", root.display());
    let scan = || finding_keys(&ok_json(&["scan", &target, "--db-dir", db_s, "--format", "json"]));
    let baseline = scan();
    assert_eq!(baseline.len(), 1);

    let path = "/Alpine/all.zip";
    let full = std::fs::read(site.join("Alpine/all.zip")).unwrap();
    for (fault, reason) in mirror_faults(&full, &url, path) {
        mirror.set_fault(path, Some(fault.clone()));
        let started = Instant::now();
        let out = update();
        // Bounded: the read timeout (60 s) and the redirect limit end every wait.
        assert!(
            started.elapsed() < Duration::from_secs(85),
            "{fault:?}: {:?}",
            started.elapsed()
        );
        assert_eq!(out.status.code(), Some(1), "{fault:?} must fail the update");
        let status = db_status(&db);
        let err = status["ecosystems"]["Alpine"]["last_error"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        assert!(err.contains(reason), "{fault:?}: last_error {err:?}");
        assert_eq!(scan(), baseline, "{fault:?}: previous index must stay in use");
        let table = stalewatch(&["db", "status", "--db-dir", db_s]);
        assert!(String::from_utf8_lossy(&table.stdout).contains("last update failed"));
    }

    // An invalid JSON entry is skipped and counted; the good records still land.
    mirror.set_fault(path, None);
    write_mirror(
        &site,
        &[
            ("ALPINE-CVE-2023-42366.json", ALPINE_42366),
            ("BROKEN.json", b"{\"id\": \"BROKEN\", \"affected\": ["),
            ("ALPINE-CVE-2024-9143.json", ALPINE_9143),
        ],
    );
    let out = update();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let status = db_status(&db);
    assert_eq!(status["ecosystems"]["Alpine"]["records"], 2);
    assert_eq!(status["ecosystems"]["Alpine"]["skipped"], 1);
    assert!(status["ecosystems"]["Alpine"]["last_error"].is_null());
    assert_eq!(scan(), baseline);
}

#[test]
fn file_urls_and_directories_are_mirrors_too() {
    let tmp = tempfile::tempdir().unwrap();
    let site = tmp.path().join("site");
    write_mirror(&site, &[("ALPINE-CVE-2024-9143.json", ALPINE_9143)]);
    let db = tmp.path().join("db");
    let db_s = db.to_str().unwrap();
    for source in [format!("file://{}", site.display()), site.display().to_string()] {
        let out = stalewatch(&[
            "db",
            "update",
            "--advisory-source",
            &source,
            "--db-dir",
            db_s,
            "--ecosystem",
            "Alpine",
        ]);
        assert!(
            out.status.success(),
            "{source}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(db_status(&db)["ecosystems"]["Alpine"]["records"], 1);
    }
    // Unchanged archive (same size and mtime): no rebuild.
    let update = [
        "db",
        "update",
        "--advisory-source",
        site.to_str().unwrap(),
        "--db-dir",
        db_s,
        "--ecosystem",
        "Alpine",
    ];
    let out = stalewatch(&update);
    assert!(String::from_utf8_lossy(&out.stderr).contains("Alpine: unchanged"));
    // A corrupt state file neither stops updates nor survives one: fetched whole, rewritten.
    let state = db.join("state.json");
    let whole = std::fs::read(&state).unwrap();
    std::fs::write(&state, &whole[..whole.len() / 2]).unwrap();
    let out = stalewatch(&update);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && stderr.contains("is corrupt"), "{stderr}");
    assert_eq!(db_status(&db)["ecosystems"]["Alpine"]["records"], 1);
    // A relative file URL is refused before anything is read.
    let out = stalewatch(&[
        "db",
        "update",
        "--advisory-source",
        "file://relative/path",
        "--db-dir",
        db_s,
    ]);
    assert_eq!(out.status.code(), Some(2));
}

/// The data's own age: agents refreshing from a mirror whose sync stopped get 304 for every
/// archive — their last successful refresh moves on — while
/// `stalewatch_advisory_source_synced_timestamp_seconds` stays the time the mirror's
/// `stalewatch-sync.json` says; from a source without that file (the OSV bucket's layout, here
/// the shared mirror), the newest time of its root `modified_id.csv`. Times by `date`.
#[test]
fn agents_export_when_their_source_last_synced() {
    let epoch = |t: &str| -> f64 {
        let out = Command::new("date")
            .args(["-u", "-d", t, "+%s"])
            .output()
            .unwrap();
        String::from_utf8(out.stdout).unwrap().trim().parse().unwrap()
    };
    let tmp = tempfile::tempdir().unwrap();
    let site = tmp.path().join("site");
    std::fs::create_dir_all(site.join("Alpine")).unwrap();
    std::os::unix::fs::symlink(
        shared_data().join("osv/Alpine/all.zip"),
        site.join("Alpine/all.zip"),
    )
    .unwrap();
    std::fs::write(
        site.join("stalewatch-sync.json"),
        r#"{"synced_at": "2026-11-20T04:00:00Z"}"#,
    )
    .unwrap();
    let synced =
        |m: &str| common::agent::value(m, "stalewatch_advisory_source_synced_timestamp_seconds", &[]);
    let updated = |m: &str| common::agent::value(m, "stalewatch_advisory_db_updated_timestamp_seconds", &[]);
    for (root, expected) in [
        (site.clone(), epoch("2026-11-20T04:00:00Z")),
        // The shared mirror's modified_id.csv starts with its newest record's time.
        (shared_data().join("osv"), epoch("2026-08-21T20:38:00Z")),
    ] {
        let mirror = Mirror::start(root);
        let state = tmp.path().join(format!("state-{}", expected as i64));
        let agent = common::agent::Agent::start(
            &tmp.path().join("no-containerd.sock"),
            &state,
            &mirror.url(),
            &["--advisory-refresh", "1s"],
        );
        agent.wait_for("two refreshes", Duration::from_secs(60), |a| {
            mirror.statuses().iter().filter(|s| **s == 304).count() >= 1 && synced(&a.metrics()).is_some()
        });
        let m = agent.metrics();
        assert_eq!(synced(&m), Some(expected), "{m}");
        // The refreshes succeed (304 counts as one): the last success is no measure of age.
        assert!(updated(&m).unwrap() > expected, "{m}");
    }
}
