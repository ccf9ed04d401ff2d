//! Google distroless (Debian) end to end. Its package metadata is `var/lib/dpkg/status.d/`:
//! per package the output of `dpkg-deb --field` and, beside it, the `.deb`'s md5sums
//! (GoogleContainerTools/distroless PACKAGE_METADATA.md) — made here exactly so, from real
//! Debian 12 packages (`apt-get download`, cached under target/), into a base image and an
//! app image `FROM` it with buildah. Against them:
//! - the package list equals syft's (1.18);
//! - findings equal those of the same packages recorded in a classic dpkg `status`, each
//!   finding's layer is the one that added its package, and the base is found by its label
//!   with `in_base` set accordingly;
//! - the directory-per-package layout one 2024 build-rule version wrote (`status.d/<name>/`) is
//!   reported unreadable (`unsupported_package_db`), never an image without packages; syft
//!   reads no package from it either.

mod common;

use common::buildah::{layout_config, layout_layers, Buildah};
use common::*;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The base's packages (a distroless `base`-like set) and the app's own.
const BASE: [&str; 6] = [
    "base-files",
    "netbase",
    "tzdata",
    "libc6",
    "libgcc-s1",
    "gcc-12-base",
];
const APP: [&str; 2] = ["libssl3", "zlib1g"];

fn run(cmd: &mut Command) -> Vec<u8> {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// The `.deb` of each package, downloaded once into target/test-roots/distroless-debs.
fn debs(test: &str) -> Option<Vec<(String, PathBuf)>> {
    if !require("apt-get", test) || !require("dpkg-deb", test) {
        return None;
    }
    // The tests of this file run as threads: one downloads while the others wait, so none
    // looks at a .deb another's apt-get is still writing.
    static DOWNLOAD: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one_at_a_time = DOWNLOAD.lock().unwrap_or_else(|e| e.into_inner());
    let dir = project().join("target/test-roots/distroless-debs");
    std::fs::create_dir_all(&dir).unwrap();
    let find = |pkg: &str| -> Option<PathBuf> {
        std::fs::read_dir(&dir)
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .find(|p| {
                p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with(&format!("{pkg}_")))
            })
    };
    let all: Vec<&str> = BASE.iter().chain(APP.iter()).copied().collect();
    if all.iter().any(|p| find(p).is_none()) {
        let download = || {
            Command::new("apt-get")
                .arg("download")
                .args(&all)
                .current_dir(&dir)
                .output()
                .unwrap()
        };
        if !download().status.success() {
            run(Command::new("apt-get").args(["update", "-qq"]));
            let out = download();
            assert!(
                out.status.success(),
                "apt-get download: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
    Some(all.iter().map(|p| (p.to_string(), find(p).unwrap())).collect())
}

/// Installs a `.deb` into `root` as distroless does: its files, its control fields as
/// `status.d/<name>`, its md5sums as `status.d/<name>.md5sums` (or, `per_dir`, the layout of a
/// directory per package: `status.d/<name>/control` and `status.d/<name>/md5sums`).
fn install(deb: &Path, root: &Path, per_dir: bool) {
    run(Command::new("dpkg-deb").arg("-x").arg(deb).arg(root));
    let name = String::from_utf8(run(Command::new("dpkg-deb").arg("-f").arg(deb).arg("Package")))
        .unwrap()
        .trim()
        .to_string();
    let control = run(Command::new("dpkg-deb").arg("-f").arg(deb));
    let ctrl = tempfile::tempdir().unwrap();
    run(Command::new("dpkg-deb").arg("-e").arg(deb).arg(ctrl.path()));
    let sums = std::fs::read(ctrl.path().join("md5sums")).unwrap_or_default();
    let statusd = root.join("var/lib/dpkg/status.d");
    if per_dir {
        std::fs::create_dir_all(statusd.join(&name)).unwrap();
        std::fs::write(statusd.join(&name).join("control"), &control).unwrap();
        std::fs::write(statusd.join(&name).join("md5sums"), &sums).unwrap();
    } else {
        std::fs::create_dir_all(&statusd).unwrap();
        std::fs::write(statusd.join(&name), &control).unwrap();
        std::fs::write(statusd.join(format!("{name}.md5sums")), &sums).unwrap();
    }
}

/// The same packages' control fields as one classic dpkg `status` (each stanza marked
/// installed), in a root of its own with the base's os-release: the dpkg image to compare with.
fn as_dpkg_status(debs: &[(String, PathBuf)], base_root: &Path, dir: &Path) -> PathBuf {
    let root = dir.join("dpkg-root");
    std::fs::create_dir_all(root.join("var/lib/dpkg")).unwrap();
    std::fs::create_dir_all(root.join("etc")).unwrap();
    let os_release = std::fs::read(base_root.join("usr/lib/os-release")).unwrap();
    std::fs::write(root.join("etc/os-release"), os_release).unwrap();
    let mut status = String::new();
    for (_, deb) in debs {
        let fields = String::from_utf8(run(Command::new("dpkg-deb").arg("-f").arg(deb))).unwrap();
        let (first, rest) = fields.split_once('\n').unwrap();
        status.push_str(&format!("{first}\nStatus: install ok installed\n{rest}"));
        if !status.ends_with('\n') {
            status.push('\n');
        }
        status.push('\n');
    }
    std::fs::write(root.join("var/lib/dpkg/status"), status).unwrap();
    root
}

/// syft's deb packages of a source (`dir:…`, `oci-dir:…`): (name, version).
fn syft_debs(source: &str) -> BTreeSet<(String, String)> {
    let out = run(Command::new("syft")
        .arg(source)
        .args(["-o", "json", "-q"])
        .env("SYFT_CHECK_FOR_APP_UPDATE", "false"));
    let doc: serde_json::Value = serde_json::from_slice(&out).unwrap();
    doc["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["type"] == "deb")
        .map(|a| {
            (
                a["name"].as_str().unwrap().into(),
                a["version"].as_str().unwrap().into(),
            )
        })
        .collect()
}

fn our_debs(report: &serde_json::Value) -> BTreeSet<(String, String)> {
    report["packages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["purl"].as_str().is_some_and(|u| u.starts_with("pkg:deb/")))
        .map(|p| {
            (
                p["name"].as_str().unwrap().into(),
                p["version"].as_str().unwrap().into(),
            )
        })
        .collect()
}

/// (id, package, version) of a report's findings.
fn findings(report: &serde_json::Value) -> BTreeSet<(String, String, String)> {
    report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            let s = |k: &str| f[k].as_str().unwrap_or_default().to_string();
            (s("id"), s("package"), s("version"))
        })
        .collect()
}

#[test]
#[allow(clippy::too_many_lines)] // a scenario test that reads top to bottom
fn a_distroless_image_is_read_as_a_dpkg_one_and_as_syft_reads_it() {
    let test = "distroless";
    let Some(debs) = debs(test) else {
        return;
    };
    if !require("syft", test) {
        return;
    }
    let Some(b) = Buildah::new(test) else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let (base_root, app_root) = (tmp.path().join("base-root"), tmp.path().join("app-root"));
    for (pkg, deb) in &debs {
        let root = if BASE.contains(&pkg.as_str()) {
            &base_root
        } else {
            &app_root
        };
        install(deb, root, false);
    }
    let c = b.run(&["from", "scratch"]);
    b.run(&["copy", &c, base_root.to_str().unwrap(), "/"]);
    b.run(&["commit", "-q", "--rm", &c, "localhost/distroless-base:12"]);
    let c = b.run(&["from", "--pull=never", "localhost/distroless-base:12"]);
    b.run(&["copy", &c, app_root.to_str().unwrap(), "/"]);
    b.run(&["commit", "-q", "--rm", &c, "localhost/distroless-app:1"]);
    let layout = b.oci_dir("localhost/distroless-app:1", &tmp.path().join("app"));
    // Layers are named by the manifest's digests (as containerd's content store names them).
    let layers = layout_layers(&layout);
    assert_eq!(layers.len(), 2);
    assert_eq!(
        layout_config(&layout)["rootfs"]["diff_ids"]
            .as_array()
            .unwrap()
            .len(),
        2
    );

    let db = tmp.path().join("db");
    shared_db(&db, &["Debian"]);
    // The base's layer count from the base itself (its label names it; no node holds it).
    let base_layout = b.oci_dir("localhost/distroless-base:12", &tmp.path().join("base"));
    let report = report_of(
        &format!("oci:{}", layout.display()),
        &db,
        &["--base-image", &format!("oci:{}", base_layout.display())],
    );
    assert_eq!(report["os"]["id"], "debian", "{:#}", report["os"]);

    // The package list: syft's, and every package installed.
    let ours = our_debs(&report);
    assert_eq!(ours, syft_debs(&format!("oci-dir:{}", layout.display())));
    let names: BTreeSet<&str> = ours.iter().map(|(n, _)| n.as_str()).collect();
    let installed: BTreeSet<&str> = BASE.iter().chain(APP.iter()).copied().collect();
    assert_eq!(names, installed);

    // Findings as for the same packages in a dpkg status.
    let dpkg_root = as_dpkg_status(&debs, &base_root, tmp.path());
    let classic = report_of(&format!("rootfs:{}", dpkg_root.display()), &db, &[]);
    assert_eq!(our_debs(&classic), ours);
    let got = findings(&report);
    assert!(!got.is_empty(), "Debian 12's glibc and openssl have advisories");
    assert_eq!(got, findings(&classic));

    // Each finding's layer is the one that added its package; the base by its label.
    for f in report["findings"].as_array().unwrap() {
        let pkg = f["package"].as_str().unwrap();
        let in_base = BASE.contains(&pkg);
        let want = &layers[usize::from(!in_base)];
        assert_eq!(f["introduced_layer"], want.as_str(), "{pkg} {layers:?}");
        assert_eq!(f["in_base"], in_base, "{f:#}");
    }
    assert_eq!(
        report["base"]["name"], "localhost/distroless-base:12",
        "{:#}",
        report["base"]
    );
    assert_eq!(report["base"]["layers"], 1);
    // Nothing unread: every status.d file is one stanza (the md5sums are file lists).
    assert!(
        report["unreadable"].as_array().unwrap().is_empty(),
        "{:#}",
        report["unreadable"]
    );
}

#[test]
fn the_directory_per_package_layout_is_unreadable_not_empty() {
    let test = "distroless: a directory per package";
    let Some(debs) = debs(test) else {
        return;
    };
    if !require("syft", test) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    for (pkg, deb) in &debs {
        if BASE.contains(&pkg.as_str()) {
            install(deb, &root, true);
        }
    }
    let db = tmp.path().join("db");
    shared_db(&db, &["Debian"]);
    let report = report_of(&format!("rootfs:{}", root.display()), &db, &[]);
    assert!(our_debs(&report).is_empty());
    let notes = unreadable(&report);
    assert!(
        notes
            .iter()
            .any(|(reason, what)| reason == "unsupported_package_db" && what == "var/lib/dpkg/status.d"),
        "{notes:?}"
    );
    // The peer reads nothing there either: not a package list we miss.
    assert!(syft_debs(&format!("dir:{}", root.display())).is_empty());
}

/// The agent is never quieter than `scan`: a running image whose only package metadata is
/// the directory layout is `failed`, its error naming it — not `no_package_db`. (An Alpine
/// root without its apk database, for a `sleep` to run, and the layout made from real .debs.)
#[test]
fn the_agent_fails_an_image_of_the_directory_layout() {
    use common::agent::{value, Agent};
    let test = "distroless: the agent on a directory per package";
    let Some(debs) = debs(test) else {
        return;
    };
    let Some(lab) = common::containerd::Lab::start(test) else {
        return;
    };
    if !require("umoci", test) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let root = unpack_alpine("3.20.3", tmp.path());
    std::fs::remove_file(root.join("lib/apk/db/installed")).unwrap();
    let (_, base_files) = debs.iter().find(|(p, _)| p == "base-files").unwrap();
    install(base_files, &root.join("x"), true);
    std::fs::create_dir_all(root.join("var/lib/dpkg")).unwrap();
    std::fs::rename(
        root.join("x/var/lib/dpkg/status.d"),
        root.join("var/lib/dpkg/status.d"),
    )
    .unwrap();
    std::fs::remove_dir_all(root.join("x")).unwrap();
    let (_, archive) = umoci_archive(&root, tmp.path());
    lab.import(&archive, "example.org/dirlayout");
    lab.run_container(
        "dirlayout",
        "example.org/dirlayout:latest",
        &[("io.kubernetes.pod.name", "dirlayout-0")],
    );
    let site = tmp.path().join("site");
    let record = shared_record("Alpine", "ALPINE-CVE-2022-37434.json");
    write_osv_zip(&site, "Alpine", &[("ALPINE-CVE-2022-37434.json", &record)]);
    let mirror = common::mirror::Mirror::start(site);
    let agent = Agent::start(&lab.sock, &tmp.path().join("state"), &mirror.url(), &[]);
    agent.wait_for("the image failed", std::time::Duration::from_secs(60), |a| {
        value(
            &a.metrics(),
            "stalewatch_container_scan_status",
            &[("pod", "dirlayout-0"), ("status", "failed")],
        ) == Some(1.0)
    });
    let doc: serde_json::Value = serde_json::from_str(&agent.findings().1).unwrap();
    let c = container_of(&doc, "dirlayout-0");
    let error = c["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("var/lib/dpkg/status.d") && error.contains("packages as directories"),
        "{c:#}"
    );
}
