//! CycloneDX 1.5 JSON: the scanned target as the BOM's subject, the OS as an
//! `operating-system` component, every package as a `library` with its purl and where it was
//! found (`stalewatch:path`, `stalewatch:layer`, `stalewatch:ecosystem` properties), and the findings as
//! `vulnerabilities` that reference the affected components.

use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

use crate::matcher::Finding;
use crate::report::Report;

/// A component's `bom-ref`: unique within the BOM (one package can be found at two paths).
fn bom_ref(purl: &str, path: &str) -> String {
    format!("{purl}#{path}")
}

/// A UUID-shaped serial number derived from the BOM's content (RFC 4122 layout, version 5
/// style bits): the same report gives the same serial.
fn serial(content: &[u8]) -> String {
    let h = Sha256::digest(content);
    let mut b = [0u8; 16];
    b.copy_from_slice(&h[..16]);
    b[6] = (b[6] & 0x0f) | 0x50;
    b[8] = (b[8] & 0x3f) | 0x80;
    let x = hex::encode(b);
    format!(
        "urn:uuid:{}-{}-{}-{}-{}",
        &x[..8],
        &x[8..12],
        &x[12..16],
        &x[16..20],
        &x[20..]
    )
}

fn rating(f: &Finding) -> Value {
    let mut r = json!({ "severity": f.severity.as_str(), "source": { "name": "OSV" } });
    if let Some(score) = f.cvss_score {
        // Scores come from CVSS vectors (v3.x or v4); the vector's own version is not kept.
        r["score"] = json!((f64::from(score) * 10.0).round() / 10.0);
    }
    r
}

/// The BOM of one report. `timestamp` is RFC 3339 (the caller's clock).
pub fn bom(report: &Report, timestamp: &str) -> Value {
    let mut components: Vec<Value> = report.os.iter().map(os_component).collect();
    // (name, version, path) → bom-ref, for the vulnerabilities' `affects`.
    let mut refs: BTreeMap<(&str, &str, &str), String> = BTreeMap::new();
    let mut packages: Vec<_> = report.packages.iter().collect();
    packages.sort_by(|a, b| (&a.purl, &a.path, &a.name).cmp(&(&b.purl, &b.path, &b.name)));
    for p in packages {
        let r = bom_ref(&p.purl, &p.path);
        if refs.insert((&p.name, &p.version, &p.path), r.clone()).is_none() {
            components.push(package_component(p, r));
        }
    }
    // One vulnerability per advisory id, affecting every component it was found in.
    let mut vulns: BTreeMap<&str, (&Finding, Vec<String>)> = BTreeMap::new();
    for f in &report.findings {
        let r = refs.get(&(&*f.package, &*f.installed_version, &*f.path)).cloned();
        let entry = vulns.entry(&f.id).or_insert_with(|| (f, Vec::new()));
        if f.severity > entry.0.severity {
            entry.0 = f;
        }
        entry.1.extend(r);
    }
    let vulnerabilities: Vec<Value> = vulns
        .into_iter()
        .map(|(id, (f, affects))| vulnerability(id, f, affects))
        .collect();
    let mut bom = json!({
        "bomFormat": "CycloneDX",
        "specVersion": "1.5",
        "version": 1,
        "metadata": {
            "timestamp": timestamp,
            "tools": { "components": [{ "type": "application", "name": super::TOOL, "version": super::TOOL_VERSION }] },
            "component": target_component(report),
        },
        "components": components,
        "vulnerabilities": vulnerabilities,
    });
    let content = serde_json::to_vec(&bom).unwrap_or_default();
    bom["serialNumber"] = json!(serial(&content));
    bom
}

/// The scanned image, with its lineage as properties (`stalewatch:base_name`,
/// `stalewatch:base_digest`, `stalewatch:base_detected_by`, `stalewatch:source`,
/// `stalewatch:revision`, `stalewatch:rebuild_fixes`, `stalewatch:new_base_digest`).
fn target_component(report: &Report) -> Value {
    let mut props = Vec::new();
    let mut prop = |name: &str, value: Option<String>| {
        if let Some(v) = value {
            props.push(json!({"name": format!("stalewatch:{name}"), "value": v}));
        }
    };
    if let Some(b) = &report.base {
        prop("base_name", b.name.clone());
        prop("base_digest", b.digest.clone());
        prop("base_detected_by", Some(b.detected_by.as_str().to_string()));
    }
    prop("source", report.source.clone());
    prop("revision", report.revision.clone());
    if let Some(r) = &report.rebuild {
        prop("new_base_digest", Some(r.new_base_digest.clone()));
        prop("rebuild_fixes", Some(r.fixed_by_rebuild.to_string()));
    }
    let mut c =
        json!({ "type": "container", "bom-ref": format!("target:{}", report.target), "name": report.target });
    if !props.is_empty() {
        c["properties"] = Value::Array(props);
    }
    c
}

fn os_component(os: &crate::report::ReportOs) -> Value {
    let mut props = Vec::new();
    if let Some(e) = &os.ecosystem {
        props.push(json!({"name": "stalewatch:ecosystem", "value": e}));
    }
    if let Some(d) = &os.eol_date {
        props.push(json!({"name": "stalewatch:eol_date", "value": d}));
    }
    props.push(json!({"name": "stalewatch:eol", "value": os.eol.to_string()}));
    json!({
        "type": "operating-system",
        "bom-ref": format!("os:{}@{}", os.id, os.version_id),
        "name": os.id,
        "version": os.version_id,
        "properties": props,
    })
}

fn package_component(p: &crate::package::Package, bom_ref: String) -> Value {
    let mut props = vec![json!({"name": "stalewatch:path", "value": p.path})];
    if !p.ecosystem.is_empty() {
        props.push(json!({"name": "stalewatch:ecosystem", "value": p.ecosystem}));
    }
    if let Some(l) = &p.layer {
        props.push(json!({"name": "stalewatch:layer", "value": l}));
    }
    if p.source_name != p.name && !p.source_name.is_empty() {
        props.push(json!({"name": "stalewatch:source_name", "value": p.source_name}));
    }
    let mut c = json!({
        "type": "library",
        "bom-ref": bom_ref,
        "name": p.name,
        "version": p.version,
        "properties": props,
    });
    if !p.purl.is_empty() {
        c["purl"] = json!(p.purl);
    }
    c
}

/// One advisory: its most severe finding's facts, affecting `affects`.
fn vulnerability(id: &str, f: &Finding, mut affects: Vec<String>) -> Value {
    affects.sort();
    affects.dedup();
    let mut v = json!({
        "bom-ref": format!("vuln:{id}"),
        "id": id,
        "source": { "name": "OSV", "url": format!("https://osv.dev/vulnerability/{id}") },
        "ratings": [rating(f)],
        "affects": affects.iter().map(|r| json!({"ref": r})).collect::<Vec<_>>(),
    });
    if !f.summary.is_empty() {
        v["description"] = json!(&*f.summary);
    }
    if !f.aliases.is_empty() {
        let osv = |a: &String| json!({"id": a, "source": {"name": "OSV", "url": format!("https://osv.dev/vulnerability/{a}")}});
        v["references"] = Value::Array(f.aliases.iter().map(osv).collect());
    }
    if let Some(fixed) = &f.fixed_version {
        v["recommendation"] = json!(format!("Upgrade {} to {fixed} or later", f.package));
    }
    if let Some(p) = &f.published {
        v["published"] = json!(&**p);
    }
    let properties = triage_properties(f);
    if !properties.is_empty() {
        v["properties"] = Value::Array(properties);
    }
    v
}

/// KEV and EPSS facts as name/value properties (documented in docs/cli.md).
fn triage_properties(f: &Finding) -> Vec<Value> {
    let prop = |n: &str, v: String| json!({ "name": n, "value": v });
    let mut out = Vec::new();
    if let Some(k) = f.known_exploited {
        out.push(prop("stalewatch:known_exploited", k.to_string()));
    }
    if let Some(k) = &f.kev {
        out.push(prop("stalewatch:kev:date_added", k.date_added.clone()));
        out.push(prop("stalewatch:kev:due_date", k.due_date.clone()));
        out.push(prop(
            "stalewatch:kev:known_ransomware_use",
            k.known_ransomware_use.to_string(),
        ));
        out.push(prop(
            "stalewatch:kev:catalog_version",
            k.catalog_version.to_string(),
        ));
    }
    if let Some(e) = &f.epss {
        out.push(prop("stalewatch:epss:score", e.score.to_string()));
        out.push(prop("stalewatch:epss:percentile", e.percentile.to_string()));
        out.push(prop("stalewatch:epss:date", e.date.to_string()));
    }
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::catalog::Inventory;
    use crate::os::OsInfo;
    use crate::package::Package;
    use std::sync::Arc;

    pub(crate) fn sample() -> Report {
        let pkg = |eco: &str, name: &str, version: &str, purl: &str, path: &str| Package {
            ecosystem: eco.into(),
            name: name.into(),
            version: version.into(),
            source_name: name.into(),
            source_version: version.into(),
            purl: purl.into(),
            path: path.into(),
            arch: Default::default(),
            layer: None,
            introduced_layer: None,
        };
        let inv = Inventory {
            os: Some(OsInfo {
                id: "alpine".into(),
                version_id: "3.20.3".into(),
                pretty_name: String::new(),
                ecosystem: Some("Alpine:v3.20".into()),
            }),
            packages: vec![
                pkg(
                    "Alpine:v3.20",
                    "libcrypto3",
                    "3.3.2-r0",
                    "pkg:apk/alpine/libcrypto3@3.3.2-r0?arch=x86_64",
                    "lib/apk/db/installed",
                ),
                pkg(
                    "npm",
                    "lodash",
                    "4.17.15",
                    "pkg:npm/lodash@4.17.15",
                    "app/node_modules/lodash/package.json",
                ),
            ]
            .into(),
            databases: vec!["lib/apk/db/installed".into()],
            ..Default::default()
        };
        let finding = |id: &str, package: &str, version: &str, path: &str, fixed: &str| Finding {
            id: id.into(),
            aliases: Arc::from(vec!["CVE-2024-9143".to_string()]),
            ecosystem: "Alpine:v3.20".into(),
            package: package.into(),
            source_name: package.into(),
            installed_version: version.into(),
            fixed_version: Some(fixed.into()),
            fixable: true,
            severity: crate::advisory::Severity::Medium,
            cvss_score: Some(4.3),
            published: None,
            summary: "a flaw".into(),
            path: path.into(),
            informational: None,
            ..Default::default()
        };
        Report::new(
            "containerd:example.org/app:1",
            inv,
            vec![
                finding(
                    "ALPINE-CVE-2024-9143",
                    "libcrypto3",
                    "3.3.2-r0",
                    "lib/apk/db/installed",
                    "3.3.2-r1",
                ),
                finding(
                    "NSWG-ECO-516",
                    "lodash",
                    "4.17.15",
                    "app/node_modules/lodash/package.json",
                    "4.17.19",
                ),
            ],
            vec![],
            0,
        )
    }

    #[test]
    fn components_and_vulnerabilities_reference_each_other() {
        let b = bom(&sample(), "2026-12-01T00:00:00Z");
        assert_eq!(b["specVersion"], "1.5");
        let comps = b["components"].as_array().unwrap();
        assert_eq!(comps[0]["type"], "operating-system");
        assert_eq!(comps.len(), 3);
        let refs: Vec<&str> = comps.iter().map(|c| c["bom-ref"].as_str().unwrap()).collect();
        for v in b["vulnerabilities"].as_array().unwrap() {
            for a in v["affects"].as_array().unwrap() {
                assert!(refs.contains(&a["ref"].as_str().unwrap()), "{a} not a component");
            }
            assert_eq!(v["affects"].as_array().unwrap().len(), 1);
        }
        // Same input, same bytes (serial included); another report, another serial.
        assert_eq!(b, bom(&sample(), "2026-12-01T00:00:00Z"));
        let mut other = sample();
        other.target = "x".into();
        assert_ne!(
            b["serialNumber"],
            bom(&other, "2026-12-01T00:00:00Z")["serialNumber"]
        );
        assert!(b["serialNumber"].as_str().unwrap().starts_with("urn:uuid:"));
    }
}
