//! SARIF 2.1.0: one rule per advisory, one result per (advisory, package, place), located at
//! the database or manifest the package was found in. `security-severity` carries the CVSS
//! score (or the severity's usual score) so code-scanning dashboards rank results.

use serde_json::{json, Value};
use std::collections::BTreeMap;

use crate::advisory::Severity;
use crate::matcher::Finding;
use crate::report::Report;

fn level(s: Severity) -> &'static str {
    match s {
        Severity::Critical | Severity::High => "error",
        Severity::Medium => "warning",
        Severity::Low | Severity::Unknown => "note",
    }
}

/// The score dashboards sort by: the CVSS score, else the middle of the severity's band.
fn security_severity(f: &Finding) -> String {
    let score = f.cvss_score.map(f64::from).unwrap_or(match f.severity {
        Severity::Critical => 9.5,
        Severity::High => 8.0,
        Severity::Medium => 5.5,
        Severity::Low => 2.0,
        Severity::Unknown => 0.0,
    });
    format!("{:.1}", score)
}

/// A result's properties: where the package comes from, its fix, and the triage facts.
fn triage_properties(f: &Finding) -> Value {
    let mut p = json!({ "ecosystem": &*f.ecosystem, "fixed_version": f.fixed_version.as_deref() });
    if let Some(k) = f.known_exploited {
        p["known_exploited"] = json!(k);
    }
    if let Some(k) = &f.kev {
        p["kev"] = json!(&**k);
    }
    if let Some(e) = &f.epss {
        p["epss"] = json!(e);
    }
    if !f.cves.is_empty() {
        p["cves"] = json!(&*f.cves);
    }
    p
}

/// The SARIF log of one report.
pub fn log(report: &Report) -> Value {
    let mut rules: BTreeMap<&str, &Finding> = BTreeMap::new();
    for f in &report.findings {
        let e = rules.entry(&f.id).or_insert(f);
        if f.severity > e.severity {
            *e = f;
        }
    }
    let rule_index: BTreeMap<&str, usize> = rules.keys().enumerate().map(|(i, id)| (*id, i)).collect();
    let rules_json: Vec<Value> = rules
        .values()
        .map(|f| {
            let text = if f.summary.is_empty() {
                f.id.to_string()
            } else {
                f.summary.to_string()
            };
            json!({
                "id": &*f.id,
                "shortDescription": { "text": text },
                "helpUri": format!("https://osv.dev/vulnerability/{}", f.id),
                "properties": {
                    "security-severity": security_severity(f),
                    "tags": ["security", "vulnerability"],
                },
            })
        })
        .collect();
    let results: Vec<Value> = report
        .findings
        .iter()
        .map(|f| {
            let fix = match &f.fixed_version {
                Some(v) => format!("; fixed in {v}"),
                None => "; no fix yet".to_string(),
            };
            json!({
                "ruleId": &*f.id,
                "ruleIndex": rule_index[&*f.id],
                // Known exploitation outranks any severity.
                "level": if f.known_exploited == Some(true) { "error" } else { level(f.severity) },
                "message": { "text": format!("{} {} is affected by {}{fix}", f.package, f.installed_version, f.id) },
                "locations": [{
                    "physicalLocation": { "artifactLocation": { "uri": &*f.path } },
                    "logicalLocations": [{ "name": format!("{}@{}", f.package, f.installed_version), "kind": "package" }],
                }],
                "properties": triage_properties(f),
            })
        })
        .collect();
    json!({
        "version": "2.1.0",
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "runs": [{
            "tool": { "driver": {
                "name": super::TOOL,
                "version": super::TOOL_VERSION,
                "rules": rules_json,
            }},
            "automationDetails": { "id": format!("stalewatch/{}", report.target) },
            "results": results,
        }],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_rule_per_advisory_and_results_point_at_their_rule() {
        let r = super::super::cyclonedx::tests::sample();
        let l = log(&r);
        let run = &l["runs"][0];
        let rules = run["tool"]["driver"]["rules"].as_array().unwrap();
        let results = run["results"].as_array().unwrap();
        assert_eq!(rules.len(), 2);
        assert_eq!(results.len(), 2);
        for res in results {
            let i = res["ruleIndex"].as_u64().unwrap() as usize;
            assert_eq!(rules[i]["id"], res["ruleId"]);
            assert_eq!(res["level"], "warning");
        }
        assert_eq!(rules[0]["properties"]["security-severity"], "4.3");
        assert_eq!(
            results[1]["locations"][0]["physicalLocation"]["artifactLocation"]["uri"],
            "app/node_modules/lodash/package.json"
        );
    }
}
