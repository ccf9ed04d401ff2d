//! `stalewatch scan containerd:REF` against a real private containerd: multi-layer images
//! (opaque directory, whiteout) with gzip, zstd and plain tar layers, read through the
//! Content service, give exactly what the unpacked root gives.

mod common;

use common::containerd::Lab;
use common::*;
use std::path::Path;
use std::process::Command;

fn run(cmd: &str, args: &[&str]) {
    let out = Command::new(cmd).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{cmd} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Four layers built by umoci: Alpine 3.16.9, then an opaque /lib/apk/db holding 3.20.3's
/// database, then 3.20.3's os-release, then a whiteout of /etc/alpine-release.
fn layered_image(work: &Path, old: &Path, new: &Path) -> std::path::PathBuf {
    let layout = work.join("layered");
    let image = format!("{}:3.20-upgraded", layout.display());
    run("umoci", &["init", "--layout", layout.to_str().unwrap()]);
    run("umoci", &["new", "--image", &image]);
    run(
        "umoci",
        &["insert", "--image", &image, old.to_str().unwrap(), "/"],
    );
    let db = work.join("apkdb");
    std::fs::create_dir_all(&db).unwrap();
    std::fs::copy(new.join("lib/apk/db/installed"), db.join("installed")).unwrap();
    run(
        "umoci",
        &[
            "insert",
            "--image",
            &image,
            "--opaque",
            db.to_str().unwrap(),
            "/lib/apk/db",
        ],
    );
    run(
        "umoci",
        &[
            "insert",
            "--image",
            &image,
            new.join("etc/os-release").to_str().unwrap(),
            "/etc/os-release",
        ],
    );
    run(
        "umoci",
        &["insert", "--image", &image, "--whiteout", "/etc/alpine-release"],
    );
    layout
}

/// `stalewatch scan TARGET` against the lab's containerd and `db`.
fn scan(lab: &Lab, target: &str, db: &Path, extra: &[&str]) -> std::process::Output {
    let mut args = vec![
        "scan",
        target,
        "--containerd-address",
        lab.sock.to_str().unwrap(),
        "--db-dir",
        db.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    stalewatch(&args)
}

fn archive(layout: &Path, out: &Path) {
    run(
        "tar",
        &["-C", layout.to_str().unwrap(), "-cf", out.to_str().unwrap(), "."],
    );
}

#[test]
#[allow(clippy::too_many_lines)] // a scenario test that reads top to bottom
fn containerd_images_scan_like_their_unpacked_roots() {
    let Some(lab) = Lab::start("containerd scan") else {
        return;
    };
    if !require("umoci", "containerd scan") || !require("skopeo", "containerd scan") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("db");
    let mirror = common::mirror::Mirror::start(shared_data().join("osv"));
    let out = stalewatch(&[
        "db",
        "update",
        "--advisory-source",
        &mirror.url(),
        "--db-dir",
        db.to_str().unwrap(),
        "--ecosystem",
        "Alpine",
    ]);
    assert!(out.status.success());

    let old = unpack_alpine("3.16.9", tmp.path());
    let new = unpack_alpine("3.20.3", tmp.path());
    let expected: serde_json::Value =
        serde_json::from_slice(&scan_json(&format!("rootfs:{}", new.display()), &db).stdout).unwrap();
    assert_eq!(expected["findings"].as_array().unwrap().len(), 2);

    let gzip = layered_image(tmp.path(), &old, &new);
    let src = format!("oci:{}:3.20-upgraded", gzip.display());
    // zstd layers, and plain tar layers (through a `dir:` copy, as skopeo stores them).
    let zstd = tmp.path().join("zstd");
    run(
        "skopeo",
        &[
            "copy",
            "--dest-compress-format",
            "zstd",
            &src,
            &format!("oci:{}:3.20-upgraded", zstd.display()),
        ],
    );
    let plain_dir = tmp.path().join("plain-dir");
    run(
        "skopeo",
        &[
            "copy",
            "--dest-decompress",
            &src,
            &format!("dir:{}", plain_dir.display()),
        ],
    );
    let plain = tmp.path().join("plain");
    run(
        "skopeo",
        &[
            "copy",
            "--dest-oci-accept-uncompressed-layers",
            &format!("dir:{}", plain_dir.display()),
            &format!("oci:{}:3.20-upgraded", plain.display()),
        ],
    );

    for (name, layout) in [("gzip", &gzip), ("zstd", &zstd), ("plain", &plain)] {
        let tar = tmp.path().join(format!("{name}.tar"));
        archive(layout, &tar);
        let base = format!("example.org/stalewatch/{name}");
        lab.import(&tar, &base);
        let target = format!("containerd:{base}:3.20-upgraded");
        let out = scan(&lab, &target, &db, &["--format", "json"]);
        assert!(
            out.status.success(),
            "{target}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(
            findings_without_layers(&r["findings"], true),
            expected["findings"],
            "{name}"
        );
        assert_eq!(
            packages_without_layers(&r["packages"], true),
            expected["packages"],
            "{name}"
        );
        assert_eq!(r["os"], expected["os"], "{name}");
        assert!(
            r["unreadable"].as_array().unwrap().is_empty(),
            "{name}: {}",
            r["unreadable"]
        );
        // The same image from the archive gives the same answer.
        let from_archive: serde_json::Value =
            serde_json::from_slice(&scan_json(&format!("oci-archive:{}", tar.display()), &db).stdout)
                .unwrap();
        assert_eq!(from_archive["findings"], r["findings"], "{name}");
    }

    // A layer blob changed in the content store after the pull: its digest check fails
    // (containerd serves the file as it is; the gRPC task hashes what it sends).
    let content = lab
        .dir
        .path()
        .join("root/io.containerd.content.v1.content/blobs/sha256");
    let manifest: serde_json::Value = {
        let index: serde_json::Value =
            serde_json::from_slice(&std::fs::read(gzip.join("index.json")).unwrap()).unwrap();
        let digest = index["manifests"][0]["digest"].as_str().unwrap();
        let hex = digest.strip_prefix("sha256:").unwrap();
        serde_json::from_slice(&std::fs::read(gzip.join("blobs/sha256").join(hex)).unwrap()).unwrap()
    };
    let layer = manifest["layers"][0]["digest"].as_str().unwrap().to_string();
    let blob = content.join(layer.strip_prefix("sha256:").unwrap());
    let mut other = Vec::new();
    oci::tar_entry(
        &mut other,
        "etc/os-release",
        b'0',
        b"ID=alpine\nVERSION_ID=3.19.0\n",
        "",
    );
    oci::tar_end(&mut other);
    std::fs::write(&blob, oci::gzip(&other)).unwrap();
    let out = scan(
        &lab,
        "containerd:example.org/stalewatch/gzip:3.20-upgraded",
        &db,
        &[],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("does not match its digest") && stderr.contains(&layer),
        "{stderr}"
    );

    // Errors: an unknown image, and a socket that is not there.
    let out = scan(&lab, "containerd:example.org/none:1", &db, &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not found"));
    let out = stalewatch(&[
        "scan",
        "containerd:x",
        "--containerd-address",
        "/nonexistent/containerd.sock",
        "--db-dir",
        db.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot connect to containerd"));
}
