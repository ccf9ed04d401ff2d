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

fn statement(f: &Finding, ctx: &VexContext, runtime_note: Option<&str>) -> Value {
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
    let status = f.vex.as_ref().map_or(VexStatus::Affected, |v| v.status);
    s.insert("status".into(), json!(status.as_str()));
    let mut notes: Vec<String> = runtime_note.map(str::to_string).into_iter().collect();
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
                (None, None) => {}
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
/// valid OpenVEX). `runtime_note` gives runtime evidence per finding (the agent's in-use
/// marks), put into `status_notes` only.
pub fn document(
    report: &Report,
    ctx: &VexContext,
    runtime_note: &dyn Fn(&Finding) -> Option<String>,
) -> Option<Value> {
    let statements: Vec<Value> = report
        .findings
        .iter()
        .chain(&report.suppressed)
        .map(|f| statement(f, ctx, runtime_note(f).as_deref()))
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
