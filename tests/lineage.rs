//! Base images and what a rebuild fixes, on real images: built with buildah (`FROM` a base, so
//! with the OCI base annotations buildah writes, a multi-stage build, an image with no base)
//! and with the OCI writer (no labels: the base declared, or found by its layers on a real
//! containerd); the newer build of a base imported while an app built on it runs.

mod common;

use common::buildah::{alpine_installed, apk_packages, layout_layers, Buildah};
use common::*;
use std::path::Path;
use std::time::Duration;

/// The apk database of the app built on the base: the base's, and curl (vulnerable in 3.16).
fn app_installed() -> Vec<u8> {
    let mut db = alpine_installed("3.16.9");
    db.extend_from_slice(b"P:curl\nV:7.83.1-r0\nA:x86_64\nT:URL retrieval utility and library\no:curl\n\n");
    db
}

#[test]
fn scans_name_each_images_base_and_the_layer_each_finding_came_with() {
    let Some(b) = Buildah::new("lineage scan") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("db");
    shared_db(&db, &["Alpine"]);
    b.alpine("3.16.9", "localhost/base:1");
    b.alpine("3.20.3", "localhost/other:1");
    let source = ("org.opencontainers.image.source", "https://example.org/app");
    let revision = ("org.opencontainers.image.revision", "0123abc");
    b.derive(
        "localhost/base:1",
        &[("/lib/apk/db/installed", &app_installed())],
        &[source, revision],
        "localhost/app:1",
    );
    let base = b.oci_dir("localhost/base:1", &tmp.path().join("base"));
    let app = b.oci_dir("localhost/app:1", &tmp.path().join("app"));
    let app_target = format!("oci:{}", app.display());

    // The label names the base; its layers are known once the base is declared.
    let r = report_of(&app_target, &db, &[]);
    assert_eq!(r["base"]["name"], "localhost/base:1");
    assert_eq!(r["base"]["detected_by"], "label");
    assert!(r["base"]["digest"].as_str().unwrap().starts_with("sha256:"));
    assert_eq!(
        (r["source"].as_str(), r["revision"].as_str()),
        (Some(source.1), Some(revision.1))
    );
    let findings = r["findings"].as_array().unwrap();
    assert!(
        findings.iter().all(|f| f["in_base"].is_null()),
        "no layers known, no in_base"
    );
    let r = report_of(
        &app_target,
        &db,
        &["--base-image", &format!("oci:{}", base.display())],
    );
    assert_eq!(
        (r["base"]["detected_by"].as_str(), r["base"]["layers"].as_u64()),
        (Some("label"), Some(1))
    );

    // Oracle: a package the base's own database lists at that version came with the base's
    // layer; the others (curl) with the app's layer, which rewrote the database.
    let layers = layout_layers(&app);
    let in_base_db = apk_packages(&alpine_installed("3.16.9"));
    let (mut from_base, mut from_app) = (0, 0);
    for f in r["findings"].as_array().unwrap() {
        let key = (
            f["package"].as_str().unwrap().to_string(),
            f["installed_version"].as_str().unwrap().to_string(),
        );
        let expected = in_base_db.contains(&key);
        assert_eq!(f["in_base"], expected, "{key:?}");
        assert_eq!(
            f["introduced_layer"],
            layers[usize::from(!expected)].as_str(),
            "{key:?}"
        );
        if expected {
            from_base += 1
        } else {
            from_app += 1
        }
    }
    assert!(from_base > 0 && from_app > 0, "base {from_base}, app {from_app}");
    // Each package's `layer` keeps its meaning: the layer that last wrote its database.
    assert!(r["packages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["path"] == "lib/apk/db/installed")
        .all(|p| p["layer"] == layers[1].as_str()));

    other_bases(&b, &db, &base, &app_target, tmp.path());
}

/// A multi-stage build, an image with no base, the table's line.
fn other_bases(b: &Buildah, db: &Path, base: &Path, app_target: &str, tmp: &Path) {
    // A multi-stage build: the final stage's base, not the builder's.
    b.bud("FROM localhost/base:1 AS build\nFROM localhost/other:1\nCOPY --from=build /etc/alpine-release /built-on\n", "localhost/multi:1");
    let multi = b.oci_dir("localhost/multi:1", &tmp.join("multi"));
    let r = report_of(&format!("oci:{}", multi.display()), db, &[]);
    assert_eq!(r["base"]["name"], "localhost/other:1");

    // An image built from scratch has no base: a normal state, not an error.
    let r = report_of(&format!("oci:{}", base.display()), db, &[]);
    assert!(r["base"].is_null() && r["source"].is_null(), "{}", r["base"]);
    // CycloneDX: the lineage as properties of the metadata component, schema-valid.
    let out = stalewatch(&[
        "scan",
        app_target,
        "--db-dir",
        db.to_str().unwrap(),
        "--format",
        "cyclonedx",
    ]);
    let bom = String::from_utf8(out.stdout).unwrap();
    if let Some(valid) = cyclonedx_schema_errors(&bom, "lineage cyclonedx") {
        valid.unwrap();
    }
    let bom: serde_json::Value = serde_json::from_str(&bom).unwrap();
    let props = string_pairs(&bom["metadata"]["component"]["properties"], "name", "value");
    assert!(
        props.contains(&("stalewatch:base_name".into(), "localhost/base:1".into())),
        "{props:?}"
    );
    assert!(
        props.contains(&("stalewatch:base_detected_by".into(), "label".into())),
        "{props:?}"
    );
    assert!(
        props.contains(&("stalewatch:revision".into(), "0123abc".into())),
        "{props:?}"
    );
    let table = stalewatch(&["scan", app_target, "--db-dir", db.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(
        text.contains("Base: localhost/base:1@sha256:") && text.contains("(by label)"),
        "{text}"
    );
}

#[test]
fn a_declared_base_is_matched_by_its_layers_when_no_label_names_one() {
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("db");
    empty_db(&db, &["Alpine"]);
    let layer = |name: &str| {
        let mut t = Vec::new();
        oci::tar_entry(&mut t, name, b'0', name.as_bytes(), "");
        oci::tar_end(&mut t);
        oci::gzip(&t)
    };
    let (a, b, c) = (layer("etc/a"), layer("etc/b"), layer("etc/c"));
    let base = tmp.path().join("base");
    let app = tmp.path().join("app");
    let unrelated = tmp.path().join("unrelated");
    oci::write_image(&base, &[a.clone(), b.clone()], &[], "1");
    oci::write_image(&app, &[a.clone(), b, c.clone()], &[], "1");
    oci::write_image(&unrelated, &[c, a], &[], "1");
    let declared = format!("oci:{}", base.display());
    let r = report_of(
        &format!("oci:{}", app.display()),
        &db,
        &["--base-image", &declared],
    );
    assert_eq!(r["base"]["name"], declared.as_str());
    assert_eq!(
        (r["base"]["detected_by"].as_str(), r["base"]["layers"].as_u64()),
        (Some("config"), Some(2))
    );
    // A declared image whose layers are not a prefix is not the base.
    let r = report_of(
        &format!("oci:{}", unrelated.display()),
        &db,
        &["--base-image", &declared],
    );
    assert!(r["base"].is_null());
    // An image is not its own base (a strict prefix only).
    let r = report_of(&declared, &db, &["--base-image", &declared]);
    assert!(r["base"].is_null());
    let bad = stalewatch(&[
        "scan",
        &declared,
        "--db-dir",
        db.to_str().unwrap(),
        "--base-image",
        "rootfs:/",
    ]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--base-image"));
}

/// The agent on a real containerd, images without labels (the OCI writer: an Alpine
/// minirootfs as the base's one layer, one more layer for the app): the base found by its
/// layers — the longest prefix, ties broken by name, the same after a restart — then a
/// declared `--base-image` beating the guess; a declared base the node lacks shows as 0.
#[test]
#[allow(clippy::too_many_lines)] // a scenario test that reads top to bottom
fn the_agent_finds_bases_by_layers_and_by_declaration() {
    use common::agent::{value, Agent};
    let Some(lab) = common::containerd::Lab::start("lineage agent") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let alpine =
        std::fs::read(shared_data().join("rootfs/alpine/alpine-minirootfs-3.16.9-x86_64.tar.gz")).unwrap();
    let mut extra = Vec::new();
    oci::tar_entry(&mut extra, "etc/app.conf", b'0', b"app", "");
    oci::tar_end(&mut extra);
    let extra = oci::gzip(&extra);
    let images = [
        ("localhost/zzz-base", vec![alpine.clone()]),
        ("localhost/aaa-base", vec![alpine.clone()]),
        ("localhost/app", vec![alpine.clone(), extra]),
    ];
    for (name, layers) in &images {
        let dir = tmp.path().join(name.rsplit('/').next().unwrap());
        oci::write_image(&dir, layers, &[], "1");
        let archive = tmp
            .path()
            .join(format!("{}.tar", name.rsplit('/').next().unwrap()));
        let out = std::process::Command::new("tar")
            .args(["-cf", archive.to_str().unwrap(), "-C", dir.to_str().unwrap(), "."])
            .output()
            .unwrap();
        assert!(out.status.success());
        lab.import(&archive, name);
    }
    lab.run_container("app", "localhost/app:1", &[("io.kubernetes.pod.name", "app-0")]);
    let site = tmp.path().join("site");
    write_osv_zip(&site, "Alpine", &[]);
    let mirror = common::mirror::Mirror::start(site);
    let state = tmp.path().join("state");
    let base_is = |a: &Agent, name: &str, by: &str| {
        value(
            &a.metrics(),
            "stalewatch_image_base_info",
            &[
                ("image", "localhost/app:1"),
                ("base_name", name),
                ("detected_by", by),
            ],
        ) == Some(1.0)
    };
    let agent = Agent::start(&lab.sock, &state, &mirror.url(), &[]);
    agent.wait_for("the base by layers, ties by name", Duration::from_secs(60), |a| {
        base_is(a, "localhost/aaa-base:1", "layers")
    });
    let doc: serde_json::Value = serde_json::from_str(&agent.findings().1).unwrap();
    let base = &container_of(&doc, "app-0")["report"]["base"];
    assert_eq!(
        (base["detected_by"].as_str(), base["layers"].as_u64()),
        (Some("layers"), Some(1)),
        "{base}"
    );
    agent.stop();
    let agent = Agent::start(&lab.sock, &state, &mirror.url(), &[]);
    agent.wait_for("the same after a restart", Duration::from_secs(60), |a| {
        base_is(a, "localhost/aaa-base:1", "layers")
    });
    agent.stop();
    let declared = [
        "--base-image",
        "localhost/zzz-base:1",
        "--base-image",
        "localhost/missing:1",
    ];
    let agent = Agent::start(&lab.sock, &state, &mirror.url(), &declared);
    agent.wait_for("the declared base", Duration::from_secs(60), |a| {
        base_is(a, "localhost/zzz-base:1", "config")
    });
    let m = agent.metrics();
    assert_eq!(
        value(
            &m,
            "stalewatch_base_image_present",
            &[("base_name", "localhost/zzz-base:1")]
        ),
        Some(1.0)
    );
    assert_eq!(
        value(
            &m,
            "stalewatch_base_image_present",
            &[("base_name", "localhost/missing:1")]
        ),
        Some(0.0)
    );
}
