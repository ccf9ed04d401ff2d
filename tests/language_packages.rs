//! Language packages installed by the real tools (pip, npm, cargo) into a root, scanned with
//! `scan rootfs:` and matched against the shared OSV mirror's PyPI, npm and crates.io records.

mod common;

use common::agent::{value, Agent};
use common::containerd;
use common::lang::*;
use common::mirror::Mirror;
use common::*;
use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

/// A root with urllib3 1.26.4 (pip), lodash 4.17.15 and a scoped package (npm), and a crate
/// locked on smallvec 1.6.0 (cargo generate-lockfile).
fn build_root(root: &Path) {
    pip_install(root, &["urllib3==1.26.4"]);
    npm_install(root, "srv/web", &["lodash@4.17.15", "@types/ms@0.7.34"]);
    cargo_lock(root, "smallvec = \"=1.6.0\"\n");
}

#[test]
#[allow(clippy::too_many_lines)] // a scenario test that reads top to bottom
fn pip_npm_and_cargo_packages_are_found_and_matched() {
    for tool in ["pip", "npm", "cargo"] {
        if !require(tool, "language packages") {
            return;
        }
    }
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    build_root(&root);

    let db = tmp.path().join("db");
    shared_db(&db, &["PyPI", "npm", "crates.io"]);

    // Packages: each with its ecosystem, purl and the manifest it came from.
    let (r, packages) = scan_packages(&root, &db);
    let want = [
        (
            "PyPI",
            "urllib3",
            "1.26.4",
            "usr/lib/python3/site-packages/urllib3-1.26.4.dist-info/METADATA",
        ),
        (
            "npm",
            "lodash",
            "4.17.15",
            "srv/web/node_modules/lodash/package.json",
        ),
        (
            "npm",
            "@types/ms",
            "0.7.34",
            "srv/web/node_modules/@types/ms/package.json",
        ),
        ("crates.io", "smallvec", "1.6.0", "opt/tool/Cargo.lock"),
    ];
    for (e, n, v, p) in want {
        assert!(
            packages.contains(&(e.into(), n.into(), v.into(), p.into())),
            "{e} {n} {v} at {p} missing from {packages:#?}"
        );
    }
    // The lockfile beside the installed node_modules adds nothing; the crate itself (a
    // workspace member, no registry source) is not a crates.io package.
    assert_eq!(packages.len(), want.len(), "{packages:#?}");
    let purls: BTreeSet<&str> = r["packages"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["purl"].as_str())
        .collect();
    assert!(purls.contains("pkg:npm/%40types/ms@0.7.34"), "{purls:?}");
    assert!(purls.contains("pkg:pypi/urllib3@1.26.4"), "{purls:?}");

    // Findings: per the real records' ranges (SEMVER for crates.io and npm, ECOSYSTEM/PEP 440
    // for PyPI; PyPI's GIT ranges name commits and are not used).
    let ids = finding_ids(&r);
    let has = |p: &str, id: &str| ids.contains(&(p.to_string(), id.to_string()));
    // urllib3: fixed in 1.26.5, 1.26.17 and 1.26.18; 1.26.4 is the fix of PYSEC-2021-59.
    assert!(
        has("urllib3", "PYSEC-2021-108")
            && has("urllib3", "PYSEC-2023-192")
            && has("urllib3", "PYSEC-2023-212"),
        "{ids:?}"
    );
    assert!(
        !has("urllib3", "PYSEC-2021-59") && !has("urllib3", "PYSEC-2019-132"),
        "{ids:?}"
    );
    // lodash: introduced 4.17.15, fixed 4.17.19; NSWG-ECO-493 was fixed in 4.17.11.
    assert!(
        has("lodash", "NSWG-ECO-516") && !has("lodash", "NSWG-ECO-493"),
        "{ids:?}"
    );
    // smallvec 1.6.0: RUSTSEC-2021-0003 (introduced 1.0.0, fixed 1.6.1).
    assert!(
        has("smallvec", "RUSTSEC-2021-0003") && !has("smallvec", "RUSTSEC-2019-0009"),
        "{ids:?}"
    );
    let finding = r["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["id"] == "RUSTSEC-2021-0003")
        .unwrap();
    assert_eq!(finding["fixed_version"], "1.6.1");
    assert_eq!(finding["path"], "opt/tool/Cargo.lock");

    // The same scan as CycloneDX 1.5 (valid against the schema; one component per package
    // with its purl and path) and as SARIF 2.1.0 (one result per finding).
    let target = format!("rootfs:{}", root.display());
    let scan_as = |format: &str| {
        let out = stalewatch(&[
            "scan",
            &target,
            "--db-dir",
            db.to_str().unwrap(),
            "--format",
            format,
        ]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    };
    let text = scan_as("cyclonedx");
    if let Some(valid) = cyclonedx_schema_errors(&text, "CycloneDX output") {
        valid.unwrap_or_else(|e| panic!("not valid CycloneDX 1.5: {e}"));
    }
    let bom: serde_json::Value = serde_json::from_str(&text).unwrap();
    let comps = bom["components"].as_array().unwrap();
    assert_eq!(comps.len(), packages.len());
    let lodash = comps
        .iter()
        .find(|c| c["purl"] == "pkg:npm/lodash@4.17.15")
        .expect("lodash component");
    assert!(lodash["properties"]
        .as_array()
        .unwrap()
        .iter()
        .any(|p| p["name"] == "stalewatch:path" && p["value"] == "srv/web/node_modules/lodash/package.json"));
    assert_eq!(bom["metadata"]["timestamp"], "2026-11-29T00:00:00Z");
    let vulns: BTreeSet<&str> = bom["vulnerabilities"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["id"].as_str().unwrap())
        .collect();
    let report_ids: BTreeSet<&str> = r["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["id"].as_str().unwrap())
        .collect();
    assert_eq!(vulns, report_ids);

    let sarif: serde_json::Value = serde_json::from_str(&scan_as("sarif")).unwrap();
    assert_eq!(sarif["version"], "2.1.0");
    let results = sarif["runs"][0]["results"].as_array().unwrap();
    assert_eq!(results.len(), r["findings"].as_array().unwrap().len());
    assert!(results.iter().any(|x| x["ruleId"] == "RUSTSEC-2021-0003"
        && x["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] == "opt/tool/Cargo.lock"));
}

#[test]
fn go_binaries_stripped_or_not_are_cataloged_from_their_build_info() {
    if !require("go", "Go binaries") || !require("strip", "Go binaries") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    let go = go_binary(tmp.path(), &root.join("usr/local/bin/svc"), false);
    go_binary(tmp.path(), &root.join("app/svc-stripped"), true);
    // A file that only looks like ELF.
    let mut fake = b"\x7fELF".to_vec();
    fake.resize(1 << 20, 0);
    std::fs::write(root.join("app/not-really-elf"), &fake).unwrap();
    let db = tmp.path().join("db");
    shared_db(&db, &["Go"]);
    let (r, packages) = scan_packages(&root, &db);
    let mut want = BTreeSet::new();
    for path in ["usr/local/bin/svc", "app/svc-stripped"] {
        want.insert(("Go".into(), "stdlib".into(), go.clone(), path.into()));
        want.insert((
            "Go".into(),
            "golang.org/x/text".into(),
            "v0.3.2".into(),
            path.into(),
        ));
    }
    assert_eq!(packages, want);
    let purls: BTreeSet<&str> = r["packages"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["purl"].as_str())
        .collect();
    assert!(purls.contains("pkg:golang/golang.org/x/text@v0.3.2"), "{purls:?}");
    // The real Go advisories: x/text before 0.3.3 and 0.3.7, and the toolchain's own.
    let ids = finding_ids(&r);
    for id in ["GO-2020-0015", "GO-2021-0113"] {
        assert!(
            ids.contains(&("golang.org/x/text".into(), id.into())),
            "{id} missing: {ids:?}"
        );
    }
    assert!(
        ids.iter().any(|(p, _)| p == "stdlib"),
        "no stdlib finding for Go {go}: {ids:?}"
    );
}

#[test]
#[allow(clippy::too_many_lines)] // a scenario test that reads top to bottom
fn a_running_container_s_language_packages_are_matched_from_containerd() {
    let Some(lab) = containerd::Lab::start("language packages in containerd") else {
        return;
    };
    for tool in ["umoci", "go", "npm"] {
        if !require(tool, "language packages in containerd") {
            return;
        }
    }
    // An Alpine image with a Go service and a node_modules: OS and language packages in one
    // layer, read from containerd's content store.
    let tmp = tempfile::tempdir().unwrap();
    let root = unpack_alpine("3.20.3", tmp.path());
    go_binary(tmp.path(), &root.join("usr/local/bin/svc"), true);
    npm_install(&root, "srv/web", &["lodash@4.17.15"]);
    let (layout, archive) = umoci_archive(&root, tmp.path());
    lab.import(&archive, "example.org/polyglot");
    lab.run_container(
        "poly",
        "example.org/polyglot:latest",
        &[
            ("io.kubernetes.pod.namespace", "shop"),
            ("io.kubernetes.pod.name", "poly-0"),
            ("io.kubernetes.container.name", "app"),
        ],
    );
    let mirror = Mirror::start(shared_data().join("osv"));
    let agent = Agent::start(
        &lab.sock,
        &tmp.path().join("state"),
        &mirror.url(),
        &[
            "--ecosystem",
            "Go",
            "--ecosystem",
            "npm",
            "--reconcile-interval",
            "1s",
        ],
    );
    agent.wait_for("the polyglot container scanned", Duration::from_secs(60), |a| {
        value(
            &a.metrics(),
            "stalewatch_container_scan_status",
            &[("pod", "poly-0"), ("status", "ok")],
        ) == Some(1.0)
    });
    let doc: serde_json::Value = serde_json::from_str(&agent.findings().1).unwrap();
    let c = container_of(&doc, "poly-0");
    let ids = finding_ids(&c["report"]);
    for (p, id) in [("golang.org/x/text", "GO-2020-0015"), ("lodash", "NSWG-ECO-516")] {
        assert!(ids.contains(&(p.into(), id.into())), "{p} {id} missing: {ids:?}");
    }
    let paths: BTreeSet<&str> = c["report"]["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["path"].as_str().unwrap())
        .collect();
    assert!(
        paths.contains("usr/local/bin/svc") && paths.contains("lib/apk/db/installed"),
        "{paths:?}"
    );
    // The one layer of the image brought every package, and each package says so.
    let layer = first_layer(&layout);
    let layers: BTreeSet<&str> = c["report"]["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["layer"].as_str().unwrap_or("none"))
        .collect();
    assert_eq!(layers, BTreeSet::from([layer.as_str()]));
    // And the image's SBOM carries it as a property of each component.
    let manifest = c["manifest_digest"].as_str().unwrap();
    let (code, body) = common::agent::get(agent.findings_port, &format!("/v1/sbom/{manifest}"));
    assert_eq!(code, 200);
    if let Some(valid) = cyclonedx_schema_errors(&body, "polyglot SBOM") {
        valid.unwrap_or_else(|e| panic!("not valid CycloneDX 1.5: {e}"));
    }
    let bom: serde_json::Value = serde_json::from_str(&body).unwrap();
    let svc = bom["components"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["purl"] == "pkg:golang/golang.org/x/text@v0.3.2")
        .expect("the Go module in the SBOM");
    assert!(svc["properties"]
        .as_array()
        .unwrap()
        .iter()
        .any(|p| p["name"] == "stalewatch:layer" && p["value"] == layer.as_str()));
}

#[test]
#[allow(clippy::too_many_lines)] // a scenario test that reads top to bottom
fn java_archives_from_debian_and_a_fat_jar_inside_them() {
    if !require("apt-get", "Java archives") || !require("dpkg-deb", "Java archives") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    let jars = debian_jars(&root);
    // Debian ships the jar as log4j-core.jar and links the versioned name to it.
    assert!(jars.iter().any(|j| j == "log4j-core.jar"), "{jars:?}");
    // A Spring Boot–style fat jar holding two of them under BOOT-INF/lib.
    fat_jar(&root);

    let site = tmp.path().join("site");
    write_osv_zip(
        &site,
        "Maven",
        &[(
            "TEST-MAVEN-0001.json",
            include_bytes!("fixtures/osv/TEST-MAVEN-0001.json"),
        )],
    );
    let db = tmp.path().join("db");
    db_from(&site, &db, &["Maven"]);
    let (r, all) = scan_packages(&root, &db);
    let packages: BTreeSet<(String, String, String)> =
        all.into_iter().map(|(_, n, v, p)| (n, v, p)).collect();
    for (n, v, p) in [
        (
            "org.apache.logging.log4j:log4j-core",
            "2.19.0",
            "usr/share/java/log4j-core.jar",
        ),
        (
            "org.apache.commons:commons-lang3",
            "3.12.0",
            "usr/share/java/commons-lang3.jar",
        ),
        (
            "org.apache.logging.log4j:log4j-core",
            "2.19.0",
            "srv/app.jar!/BOOT-INF/lib/log4j-core-2.19.0.jar",
        ),
        (
            "org.apache.commons:commons-lang3",
            "3.12.0",
            "srv/app.jar!/BOOT-INF/lib/commons-lang3-3.12.0.jar",
        ),
    ] {
        assert!(
            packages.contains(&(n.into(), v.into(), p.into())),
            "{n} {v} at {p} missing: {packages:#?}"
        );
    }
    // Every real jar of the two packages is cataloged once (links to them are not files).
    let outer: BTreeSet<&str> = packages
        .iter()
        .filter(|(_, _, p)| p.starts_with("usr/share/java/"))
        .map(|(_, _, p)| p.as_str())
        .collect();
    assert_eq!(outer.len(), jars.len(), "{outer:?} vs {jars:?}");
    let purls: BTreeSet<&str> = r["packages"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["purl"].as_str())
        .collect();
    assert!(
        purls.contains("pkg:maven/org.apache.logging.log4j/log4j-core@2.19.0"),
        "{purls:?}"
    );
    // Matched with Maven's ordering (2.0-beta9 <= 2.19.0 < 2.20.0), in both places.
    let hits: BTreeSet<&str> = r["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["id"] == "TEST-MAVEN-0001")
        .map(|f| f["path"].as_str().unwrap())
        .collect();
    assert_eq!(
        hits,
        BTreeSet::from([
            "usr/share/java/log4j-core.jar",
            "srv/app.jar!/BOOT-INF/lib/log4j-core-2.19.0.jar"
        ])
    );

    // Against a source without Maven (the shared mirror): listed, not matched, and said so.
    let bare = tmp.path().join("db-no-maven");
    shared_db(&bare, &["Maven"]);
    let (r, packages) = scan_packages(&root, &bare);
    assert!(packages.len() >= jars.len() + 2);
    assert!(r["findings"].as_array().unwrap().is_empty());
    let note = r["unreadable"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["reason"] == "no_advisory_feed")
        .expect("the report says Maven was not matched");
    assert!(
        note["detail"]
            .as_str()
            .unwrap()
            .starts_with("Maven is not on the advisory source"),
        "{note}"
    );
}

#[test]
#[allow(clippy::too_many_lines)] // a scenario test that reads top to bottom
fn ruby_gems_and_composer_packages_from_the_real_tools() {
    for tool in ["gem", "composer", "apt-get", "dpkg-deb"] {
        if !require(tool, "Ruby and PHP packages") {
            return;
        }
    }
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    // Debian's ruby-rack (its gemspec under rubygems-integration), a gem RubyGems installed,
    // and what Composer installed.
    let rack = debian_debs("ruby-rack", &["ruby-rack"]);
    let specs = rack.join("usr/share/rubygems-integration/all/specifications");
    let spec = std::fs::read_dir(&specs)
        .unwrap()
        .flatten()
        .next()
        .expect("a rack gemspec")
        .file_name();
    let spec = spec.to_string_lossy().into_owned();
    let rack_version = spec
        .trim_start_matches("rack-")
        .trim_end_matches(".gemspec")
        .to_string();
    let dst = root.join("usr/share/rubygems-integration/all/specifications");
    std::fs::create_dir_all(&dst).unwrap();
    std::fs::copy(specs.join(&spec), dst.join(&spec)).unwrap();
    gem_install(&root, tmp.path());
    composer_install(&root, tmp.path());

    let site = tmp.path().join("site");
    write_osv_zip(
        &site,
        "Packagist",
        &[(
            "TEST-PACKAGIST-0001.json",
            include_bytes!("fixtures/osv/TEST-PACKAGIST-0001.json"),
        )],
    );
    write_osv_zip(
        &site,
        "RubyGems",
        &[(
            "TEST-RUBYGEMS-0001.json",
            include_bytes!("fixtures/osv/TEST-RUBYGEMS-0001.json"),
        )],
    );
    let db = tmp.path().join("db");
    db_from(&site, &db, &["Packagist", "RubyGems"]);
    let (r, packages) = scan_packages(&root, &db);
    let want: BTreeSet<(String, String, String, String)> = [
        (
            "RubyGems",
            "rack",
            rack_version.as_str(),
            format!("usr/share/rubygems-integration/all/specifications/{spec}"),
        ),
        (
            "RubyGems",
            "demo-tool",
            "1.2.3",
            "usr/local/bundle/specifications/demo-tool-1.2.3.gemspec".to_string(),
        ),
        (
            "Packagist",
            "monolog/monolog",
            "2.9.1",
            "var/www/vendor/composer/installed.json".to_string(),
        ),
        (
            "Packagist",
            "symfony/http-kernel",
            "v6.4.1",
            "var/www/vendor/composer/installed.json".to_string(),
        ),
    ]
    .into_iter()
    .map(|(e, n, v, p)| (e.to_string(), n.to_string(), v.to_string(), p))
    .collect();
    assert_eq!(packages, want);
    let purls: BTreeSet<&str> = r["packages"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["purl"].as_str())
        .collect();
    assert!(
        purls.contains("pkg:composer/monolog/monolog@2.9.1") && purls.contains("pkg:gem/demo-tool@1.2.3"),
        "{purls:?}"
    );
    // Packagist's ordering reads `v6.4.1` as 6.4.1 (< 6.4.2); RubyGems' 1.2.3 < 1.2.10.
    let ids = finding_ids(&r);
    assert_eq!(
        ids,
        BTreeSet::from([
            ("demo-tool".to_string(), "TEST-RUBYGEMS-0001".to_string()),
            (
                "symfony/http-kernel".to_string(),
                "TEST-PACKAGIST-0001".to_string()
            ),
        ])
    );
}

#[test]
fn hostile_manifests_are_counted_skips() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    let put = |p: &str, b: &[u8]| {
        let f = root.join(p);
        std::fs::create_dir_all(f.parent().unwrap()).unwrap();
        std::fs::write(f, b).unwrap();
    };
    put(
        "app/node_modules/bad/package.json",
        b"{\"name\": \"bad\", \"version\": ",
    );
    put(
        "app/node_modules/latin1/package.json",
        b"{\"name\": \"caf\xe9\", \"version\": \"1.0.0\"}",
    );
    put("app/Cargo.lock", b"[[[ not toml");
    put(
        "usr/lib/python3/site-packages/x-1.dist-info/METADATA",
        b"Metadata-Version: 2.1\n",
    );
    // An enormous package.json: over the manifest cap, never parsed.
    let big = format!(
        "{{\"name\":\"big\",\"version\":\"1.0.0\",\"pad\":\"{}\"}}",
        "x".repeat(33 << 20)
    );
    put("app/node_modules/big/package.json", big.as_bytes());
    put(
        "app/node_modules/good/package.json",
        br#"{"name":"good","version":"2.0.0"}"#,
    );
    let db = tmp.path().join("db");
    empty_db(&db, &["npm", "crates.io", "PyPI"]);
    let out = scan_json(&format!("rootfs:{}", root.display()), &db);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let names: Vec<&str> = r["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["good"]);
    let reasons = unreadable(&r);
    for (reason, path) in [
        ("malformed_manifest", "app/node_modules/bad/package.json"),
        ("malformed_manifest", "app/node_modules/latin1/package.json"),
        ("malformed_manifest", "app/Cargo.lock"),
        (
            "malformed_manifest",
            "usr/lib/python3/site-packages/x-1.dist-info/METADATA",
        ),
        ("manifest_too_large", "app/node_modules/big/package.json"),
    ] {
        // Skipped while reading (`<layer>:<path>`, unread) or while parsing (`<path>`).
        assert!(
            reasons
                .iter()
                .any(|(r, p)| r == reason && (p == path || p.ends_with(&format!(":{path}")))),
            "{reason} {path} not in {reasons:?}"
        );
    }
}
