//! Language packages installed by the real tools (pip, npm, cargo) into a root, scanned with
//! `scan rootfs:` and matched against the shared OSV mirror's PyPI, npm and crates.io records.

mod common;

use common::*;
use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A root with urllib3 1.26.4 (pip), lodash 4.17.15 and a scoped package (npm), and a crate
/// locked on smallvec 1.6.0 (cargo generate-lockfile).
fn build_root(root: &Path) {
    let site = root.join("usr/lib/python3/site-packages");
    run(Command::new("pip")
        .args(["install", "--quiet", "--no-deps", "--no-compile", "--target"])
        .arg(&site)
        .arg("urllib3==1.26.4"));
    let app = root.join("srv/web");
    std::fs::create_dir_all(&app).unwrap();
    std::fs::write(
        app.join("package.json"),
        r#"{"name":"web","version":"1.0.0","private":true}"#,
    )
    .unwrap();
    run(Command::new("npm")
        .args([
            "install",
            "--ignore-scripts",
            "--no-audit",
            "--no-fund",
            "--silent",
            "lodash@4.17.15",
            "@types/ms@0.7.34",
        ])
        .current_dir(&app));
    let krate = root.join("opt/tool");
    std::fs::create_dir_all(krate.join("src")).unwrap();
    std::fs::write(
        krate.join("Cargo.toml"),
        "[package]\nname = \"tool\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n[dependencies]\nsmallvec = \"=1.6.0\"\n",
    )
    .unwrap();
    std::fs::write(krate.join("src/main.rs"), "fn main() {}\n").unwrap();
    run(Command::new("cargo").arg("generate-lockfile").current_dir(&krate));
}

#[test]
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
    let out = scan_json(&format!("rootfs:{}", root.display()), &db);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();

    // Packages: each with its ecosystem, purl and the manifest it came from.
    let packages: BTreeSet<(String, String, String, String)> = r["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let s = |k: &str| p[k].as_str().unwrap().to_string();
            (s("ecosystem"), s("name"), s("version"), s("path"))
        })
        .collect();
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
    let ids: BTreeSet<(String, String)> = r["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["package"].as_str().unwrap().to_string(),
                f["id"].as_str().unwrap().to_string(),
            )
        })
        .collect();
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
    let reasons: Vec<(String, String)> = r["unreadable"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| {
            (
                u["reason"].as_str().unwrap().to_string(),
                u["what"].as_str().unwrap().to_string(),
            )
        })
        .collect();
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
        assert!(
            reasons.iter().any(|(r, p)| r == reason && p == path),
            "{reason} {path} not in {reasons:?}"
        );
    }
}
