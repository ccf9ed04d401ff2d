//! Hostile image input, through the real CLI: path escapes, links out of the root, bombs,
//! huge files, truncated and corrupt layers, digest mismatches. Each gets a clear error or a
//! counted skip; none panics, escapes, or looks clean.

mod common;

use common::oci::{gzip, tar_end, tar_entry, write_layout};
use common::*;
use std::path::Path;

const OS_RELEASE: &[u8] = b"ID=alpine\nVERSION_ID=3.20.3\n";
const APK_DB: &[u8] = b"P:libssl3\nV:3.3.2-r0\nA:x86_64\no:openssl\n\n";

fn scan_layout(dir: &Path) -> std::process::Output {
    let db = dir.with_extension("db");
    empty_db(&db, &["Alpine"]);
    scan_json(&format!("oci:{}", dir.display()), &db)
}

fn report(dir: &Path) -> serde_json::Value {
    let out = scan_layout(dir);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn reasons(r: &serde_json::Value) -> Vec<String> {
    r["unreadable"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["reason"].as_str().unwrap().to_string())
        .collect()
}

fn base_layer() -> Vec<u8> {
    let mut t = Vec::new();
    tar_entry(&mut t, "etc/os-release", b'0', OS_RELEASE, "");
    tar_entry(&mut t, "lib/apk/db/installed", b'0', APK_DB, "");
    tar_end(&mut t);
    gzip(&t)
}

#[test]
fn path_escapes_are_refused_and_counted() {
    let tmp = tempfile::tempdir().unwrap();
    let mut evil = Vec::new();
    tar_entry(&mut evil, "../../../../tmp/stalewatch-escape", b'0', b"pwned", "");
    tar_entry(&mut evil, "/etc/alpine-release", b'0', b"9.9.9", "");
    tar_entry(
        &mut evil,
        "lib/apk/../../../lib/apk/db/installed",
        b'0',
        b"P:evil\nV:1\n",
        "",
    );
    tar_end(&mut evil);
    let dir = tmp.path().join("img");
    write_layout(&dir, &[base_layer(), gzip(&evil)]);
    let r = report(&dir);
    let rs = reasons(&r);
    assert_eq!(
        rs.iter().filter(|x| *x == "parent_path_component").count(),
        2,
        "{rs:?}"
    );
    assert_eq!(rs.iter().filter(|x| *x == "absolute_path").count(), 1, "{rs:?}");
    assert_eq!(
        r["packages"].as_array().unwrap().len(),
        1,
        "the evil apk db must not replace the real one"
    );
    assert!(!Path::new("/tmp/stalewatch-escape").exists());
}

#[test]
fn symlinks_never_leave_the_image_root() {
    let tmp = tempfile::tempdir().unwrap();
    // os-release links far above the root; the apk database links to an absolute path.
    let mut t = Vec::new();
    tar_entry(&mut t, "usr/lib/os-release", b'0', OS_RELEASE, "");
    tar_entry(
        &mut t,
        "etc/os-release",
        b'2',
        b"",
        "../../../../../../usr/lib/os-release",
    );
    tar_entry(&mut t, "real/installed", b'0', APK_DB, "");
    tar_entry(&mut t, "lib/apk/db/installed", b'2', b"", "/real/installed");
    tar_entry(&mut t, "etc/alpine-release", b'2', b"", "/etc/alpine-release");
    tar_end(&mut t);
    let dir = tmp.path().join("img");
    write_layout(&dir, &[gzip(&t)]);
    // real/installed is not a wanted path, so the link resolves to nothing kept: no packages,
    // and the report says no package database was read rather than looking clean.
    let r = report(&dir);
    assert_eq!(
        r["os"]["ecosystem"], "Alpine:v3.20",
        "os-release resolved inside the root"
    );
    assert!(
        reasons(&r).contains(&"no_package_db".to_string()),
        "{}",
        r["unreadable"]
    );

    // Links to a host file that exists outside the image resolve inside the image instead.
    let rootfs = tmp.path().join("rootfs");
    std::fs::create_dir_all(rootfs.join("etc")).unwrap();
    std::fs::create_dir_all(rootfs.join("lib/apk/db")).unwrap();
    std::os::unix::fs::symlink("/etc/os-release", rootfs.join("etc/os-release")).unwrap();
    std::os::unix::fs::symlink(
        "../../../../../../var/lib/dpkg/status",
        rootfs.join("lib/apk/db/installed"),
    )
    .unwrap();
    let db = tmp.path().join("db");
    std::fs::create_dir_all(&db).unwrap();
    let out = stalewatch(&[
        "scan",
        &format!("rootfs:{}", rootfs.display()),
        "--db-dir",
        db.to_str().unwrap(),
        "--format",
        "json",
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        r["os"].is_null(),
        "the host's /etc/os-release must not be read: {}",
        r["os"]
    );
    assert!(r["packages"].as_array().unwrap().is_empty());
}

#[test]
fn whiteouts_hide_lower_layers() {
    let tmp = tempfile::tempdir().unwrap();
    let mut upper = Vec::new();
    tar_entry(&mut upper, "lib/apk/db/.wh.installed", b'0', b"", "");
    tar_end(&mut upper);
    let dir = tmp.path().join("img");
    write_layout(&dir, &[base_layer(), gzip(&upper)]);
    let r = report(&dir);
    assert!(r["packages"].as_array().unwrap().is_empty());
    assert!(reasons(&r).contains(&"no_package_db".to_string()));
    let mut opaque = Vec::new();
    tar_entry(&mut opaque, "lib/apk/db/.wh..wh..opq", b'0', b"", "");
    tar_entry(
        &mut opaque,
        "lib/apk/db/installed",
        b'0',
        b"P:musl\nV:1.2.5-r0\n\n",
        "",
    );
    tar_end(&mut opaque);
    let dir = tmp.path().join("img2");
    write_layout(&dir, &[base_layer(), gzip(&opaque)]);
    let r = report(&dir);
    let names: Vec<&str> = r["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["musl"]);
}

#[test]
fn a_huge_wanted_file_is_skipped_without_being_read() {
    let tmp = tempfile::tempdir().unwrap();
    // A 300 MiB apk database of zeros: 300 KiB compressed, over the 256 MiB per-file cap.
    let mut t = Vec::new();
    tar_entry(&mut t, "etc/os-release", b'0', OS_RELEASE, "");
    tar_entry(&mut t, "lib/apk/db/installed", b'0', &vec![0u8; 300 << 20], "");
    tar_end(&mut t);
    let layer = gzip(&t);
    drop(t);
    assert!(layer.len() < 2 << 20);
    let dir = tmp.path().join("img");
    write_layout(&dir, &[layer]);
    let r = report(&dir);
    assert!(
        reasons(&r).contains(&"file_too_large".to_string()),
        "{}",
        r["unreadable"]
    );
    assert!(r["packages"].as_array().unwrap().is_empty());
}

#[test]
fn broken_layers_fail_with_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let good = base_layer();
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("truncated gzip", good[..good.len() / 2].to_vec(), "layer"),
        (
            "garbage",
            b"this is not a tar archive at all, just text padding it out..".repeat(20),
            "corrupt tar header",
        ),
        (
            "truncated tar",
            {
                let mut t = Vec::new();
                tar_entry(&mut t, "lib/apk/db/installed", b'0', &[b'x'; 4000], "");
                t.truncate(1500);
                gzip(&t)
            },
            "truncated",
        ),
    ];
    for (name, layer, needle) in cases {
        let dir = tmp.path().join(name.replace(' ', "-"));
        write_layout(&dir, &[layer]);
        let out = scan_layout(&dir);
        assert_eq!(out.status.code(), Some(2), "{name}: exit code");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(needle), "{name}: {err}");
        assert!(!err.contains("panicked"), "{name}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{name}: one-line reason: {err}");
    }
}

#[test]
fn a_tampered_layer_fails_its_digest_check() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("img");
    write_layout(&dir, &[base_layer()]);
    // Swap the layer blob's content for another valid layer.
    let blobs = dir.join("blobs/sha256");
    for e in std::fs::read_dir(&blobs).unwrap() {
        let p = e.unwrap().path();
        if std::fs::read(&p).unwrap().starts_with(&[0x1f, 0x8b]) {
            let mut t = Vec::new();
            tar_entry(
                &mut t,
                "etc/os-release",
                b'0',
                b"ID=alpine\nVERSION_ID=3.19.0\n",
                "",
            );
            tar_end(&mut t);
            std::fs::write(&p, gzip(&t)).unwrap();
        }
    }
    let out = scan_layout(&dir);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("does not match its digest"));
}

#[test]
fn bad_targets_and_flags_are_usage_errors() {
    // Each is refused before anything is read, with a message naming what is wrong.
    for (args, says) in [
        (vec!["scan", "nonsense"], "has no type"),
        (
            vec!["scan", "rootfs:/definitely/not/here"],
            "/definitely/not/here",
        ),
        (
            vec!["scan", "oci:/tmp", "--fail-on", "severe"],
            "unknown severity \"severe\"",
        ),
        (
            vec![
                "db",
                "update",
                "--ecosystem",
                "../../etc",
                "--db-dir",
                "/tmp/stalewatch-never",
            ],
            "not an OSV ecosystem name",
        ),
        (
            vec![
                "db",
                "update",
                "--advisory-source",
                "ftp://mirror",
                "--db-dir",
                "/tmp/stalewatch-never",
            ],
            "unsupported scheme",
        ),
        (vec!["agent", "--drift-interval", "0s"], "must be more than zero"),
        (
            vec!["agent", "--kube-events", "maybe"],
            "possible values: auto, on, off",
        ),
        (
            vec!["agent", "--unpacked-fallback", "snapshot,disk"],
            "possible values: snapshot, proc, none",
        ),
        (vec!["agent", "--findings-listen", "everywhere"], "or off"),
        (
            vec!["agent", "--scan-concurrency", "0", "--kubeconfig", "/nope"],
            "--scan-concurrency: must be at least 1; --kubeconfig /nope: not a readable file",
        ),
        (
            vec!["agent", "--stuck-after", "30s", "--reconcile-interval", "1m"],
            "--stuck-after: must be longer than --reconcile-interval",
        ),
    ] {
        let out = stalewatch(&args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(says), "{args:?}: expected {says:?} in: {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
    }
    // The agent's clock is validated with the rest: never a silent epoch 0.
    let out = std::process::Command::new(bin())
        .args(["agent", "--scan-concurrency", "0"])
        .env("STALEWATCH_NOW", "tomorrow")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("STALEWATCH_NOW=\"tomorrow\"") && err.contains("--scan-concurrency"),
        "both errors at once: {err}"
    );
    assert!(
        !Path::new("/tmp/stalewatch-never").exists(),
        "a refused command touched the disk"
    );
}
