//! OpenVEX 0.2.0 out: one statement per finding — `affected` with an action statement for
//! what is found, the status of an input statement carried through (`fixed`, `not_affected`
//! with its justification) for what VEX suppressed. A report without findings has no
//! statements, and OpenVEX forbids an empty list: `None`.

use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

use crate::matcher::Finding;
use crate::report::Report;
use crate::triage::VexStatus;

/// Who and what the document is about.
pub struct VexContext<'a> {
    pub author: &'a str,
    /// RFC 3339 (the caller's clock).
    pub timestamp: &'a str,
    /// The image's manifest digest, when known: products become the image with the package
    /// as a subcomponent.
    pub image_digest: Option<&'a str>,
    /// Names the advisory data the findings came from: with the target it makes `@id`.
    pub data_version: &'a str,
    /// Findings whose package no running process loads become `not_affected`
    /// (`vulnerable_code_not_in_execute_path`), the evidence in `status_notes`: the
    /// operator's opt-in trade-off (`--vex-in-use-not-affected`), never the default.
    pub not_loaded_is_not_affected: bool,
}

/// What the agent saw at run time of a finding's package.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeEvidence {
    /// Some process of the image's running containers maps a file of the package.
    pub loaded: bool,
    /// How that was seen, for `status_notes`.
    pub note: String,
}

fn product_id(f: &Finding) -> String {
    if f.purl.is_empty() {
        format!(
            "pkg:generic/{}@{}",
            crate::package::purl_encode(&f.package),
            crate::package::purl_encode(&f.installed_version)
        )
    } else {
        f.purl.to_string()
    }
}

fn statement(f: &Finding, ctx: &VexContext, evidence: Option<&RuntimeEvidence>) -> Value {
    let mut aliases: Vec<&str> = f
        .aliases
        .iter()
        .chain(f.cves.iter())
        .map(String::as_str)
        .filter(|a| *a != &*f.id)
        .collect();
    aliases.sort_unstable();
    aliases.dedup();
    let mut vulnerability = json!({ "name": &*f.id });
    if !aliases.is_empty() {
        vulnerability["aliases"] = json!(aliases);
    }
    let product = match ctx.image_digest {
        Some(d) => json!({
            "@id": format!("pkg:oci/image@{}", crate::package::purl_encode(d)),
            "subcomponents": [{ "@id": product_id(f) }],
        }),
        None => json!({ "@id": product_id(f) }),
    };
    let mut s = Map::new();
    s.insert("vulnerability".into(), vulnerability);
    s.insert("products".into(), json!([product]));
    let not_loaded = evidence.is_some_and(|e| !e.loaded);
    let status = match f.vex.as_ref() {
        Some(v) => v.status,
        None if not_loaded && ctx.not_loaded_is_not_affected => VexStatus::NotAffected,
        None => VexStatus::Affected,
    };
    s.insert("status".into(), json!(status.as_str()));
    let mut notes: Vec<String> = evidence.map(|e| e.note.clone()).into_iter().collect();
    match status {
        VexStatus::Affected => {
            let action = match &f.fixed_version {
                Some(v) => format!("upgrade {} to {v}", f.package),
                None => format!("no fix available for {} yet", f.package),
            };
            s.insert("action_statement".into(), json!(action));
        }
        VexStatus::NotAffected => {
            // Exactly one of justification and impact statement; the other goes to the notes.
            let v = f.vex.as_ref();
            match (
                v.and_then(|v| v.justification.clone()),
                v.and_then(|v| v.impact_statement.clone()),
            ) {
                (Some(j), impact) => {
                    s.insert("justification".into(), json!(j));
                    notes.extend(impact);
                }
                (None, Some(i)) => {
                    s.insert("impact_statement".into(), json!(i));
                }
                // Only runtime evidence says so (the opt-in above).
                (None, None) => {
                    s.insert(
                        "justification".into(),
                        json!("vulnerable_code_not_in_execute_path"),
                    );
                }
            }
        }
        VexStatus::Fixed | VexStatus::UnderInvestigation => {}
    }
    if let Some(v) = &f.vex {
        notes.push(format!("status from VEX document {}", v.document));
    }
    if !notes.is_empty() {
        s.insert("status_notes".into(), json!(notes.join("; ")));
    }
    Value::Object(s)
}

/// The document for a report; `None` when it has no findings (an empty statement list is not
/// valid OpenVEX). `evidence` gives what was seen at run time of each of `report.findings`
/// (by index; the agent's in-use marks): it goes into `status_notes`, and changes a status
/// only with `not_loaded_is_not_affected`.
pub fn document(
    report: &Report,
    ctx: &VexContext,
    evidence: &dyn Fn(usize) -> Option<RuntimeEvidence>,
) -> Option<Value> {
    let statements: Vec<Value> = report
        .findings
        .iter()
        .enumerate()
        .map(|(i, f)| statement(f, ctx, evidence(i).as_ref()))
        .chain(report.suppressed.iter().map(|f| statement(f, ctx, None)))
        .collect();
    if statements.is_empty() {
        return None;
    }
    let subject = ctx.image_digest.unwrap_or(&report.target);
    let id = hex::encode(Sha256::digest(format!("{subject}\n{}", ctx.data_version)));
    Some(json!({
        "@context": "https://openvex.dev/ns/v0.2.0",
        "@id": format!("https://openvex.dev/docs/stalewatch/{}", &id[..32]),
        "author": ctx.author,
        "role": "scanner",
        "timestamp": ctx.timestamp,
        "version": 1,
        "tooling": format!("{} {}", super::TOOL, super::TOOL_VERSION),
        "statements": statements,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(opt_in: bool) -> VexContext<'static> {
        VexContext {
            author: "t",
            timestamp: "2025-01-01T00:00:00Z",
            image_digest: Some("sha256:abc"),
            data_version: "v1",
            not_loaded_is_not_affected: opt_in,
        }
    }

    fn evidence(i: usize) -> Option<RuntimeEvidence> {
        Some(RuntimeEvidence {
            loaded: i == 0,
            note: format!("seen {i}"),
        })
    }

    #[test]
    fn runtime_evidence_is_a_note_unless_the_operator_opts_in() {
        let r = super::super::cyclonedx::tests::sample();
        let statuses = |doc: &Value| -> Vec<(String, String)> {
            doc["statements"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| {
                    (
                        s["status"].as_str().unwrap().into(),
                        s["status_notes"].as_str().unwrap_or("").into(),
                    )
                })
                .collect()
        };
        let plain = document(&r, &ctx(false), &evidence).unwrap();
        assert_eq!(
            statuses(&plain),
            [
                ("affected".into(), "seen 0".into()),
                ("affected".into(), "seen 1".into())
            ]
        );
        assert!(plain["statements"][1]["action_statement"].is_string());
        let opted = document(&r, &ctx(true), &evidence).unwrap();
        assert_eq!(
            statuses(&opted),
            [
                ("affected".into(), "seen 0".into()),
                ("not_affected".into(), "seen 1".into())
            ]
        );
        let s = &opted["statements"][1];
        assert_eq!(s["justification"], "vulnerable_code_not_in_execute_path");
        assert!(s.get("impact_statement").is_none() && s.get("action_statement").is_none());
        assert_eq!(s["products"][0]["@id"], "pkg:oci/image@sha256%3Aabc");
        // The same image and data: the same @id.
        assert_eq!(plain["@id"], opted["@id"]);
        let empty = Report {
            findings: Vec::new(),
            ..r
        };
        assert!(document(&empty, &ctx(false), &evidence).is_none());
    }
}
