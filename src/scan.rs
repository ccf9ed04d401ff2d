//! `stalewatch scan TARGET`: a source read into an inventory, matched against the local
//! advisory database, reported.

use anyhow::bail;
use std::path::Path;

use stalewatch_core::catalog::Inventory;
use stalewatch_core::lineage::{self, ImageFacts};
use stalewatch_core::matcher;
use stalewatch_core::report::Report;

use crate::db::Store;
use crate::source::{image_meta, inventory, note, ContainerdOptions, Scanned, Target};

/// The top-level OSV ecosystems an inventory needs.
fn needed_ecosystems(inv: &Inventory) -> Vec<String> {
    let mut v: Vec<String> = inv
        .packages
        .iter()
        .filter(|p| !p.ecosystem.is_empty())
        .map(|p| stalewatch_core::ecosystem::base(&p.ecosystem).to_string())
        .collect();
    v.sort();
    v.dedup();
    v
}

pub fn run(
    target: &Target,
    target_text: &str,
    base_image: Option<(&Target, &str)>,
    ctrd: &ContainerdOptions,
    db_dir: &Path,
    now: i64,
) -> anyhow::Result<Report> {
    // A declared base is read first (manifest and config only): a bad one fails fast.
    let declared = declared_base(base_image, ctrd)?;
    let Scanned {
        inventory: inv,
        mut unreadable,
        meta,
    } = inventory(target, ctrd)?;
    let store = Store::new(db_dir);
    let mut needed = needed_ecosystems(&inv);
    // An ecosystem (or release) the advisory source has no records for has nothing to match
    // against: its packages are listed, and the report says they were not matched.
    let state = store.state().unwrap_or_default();
    for gap in crate::db::coverage::gaps(&inv, &state, None) {
        unreadable.push(note("no_advisory_feed", &gap.detail()));
    }
    let absent_upstream =
        |e: &String| !store.has_index(e) && state.ecosystems.get(e).is_some_and(|s| s.missing);
    needed.retain(|e| !absent_upstream(e));
    let missing: Vec<&String> = needed.iter().filter(|e| !store.has_index(e)).collect();
    if !missing.is_empty() {
        bail!(
            "no advisory data for {} in {}: run `stalewatch db update` first",
            missing.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", "),
            db_dir.display()
        );
    }
    let db = store.load(&needed)?;
    let mut m = matcher::Matcher::new(&db);
    let findings = m.match_inventory(&inv)?;
    let unresolved = m.unresolved_binaries(&inv)?;
    unreadable.extend(
        unresolved
            .iter()
            .map(|b| stalewatch_core::catalog::chisel::unresolved_note(b)),
    );
    let mut report = Report::new(target_text, inv, findings, unreadable, now);
    if let Some(meta) = meta {
        let base = lineage::detect(&meta.facts, &declared, &[]);
        report.set_lineage(Some(&meta.facts), base, &meta.layers);
    }
    Ok(report)
}

/// `--base-image TARGET`: its facts, named as given.
fn declared_base(
    base: Option<(&Target, &str)>,
    ctrd: &ContainerdOptions,
) -> anyhow::Result<Vec<(String, ImageFacts)>> {
    let Some((target, text)) = base else {
        return Ok(Vec::new());
    };
    match image_meta(target, ctrd)? {
        Some(meta) => Ok(vec![(text.to_string(), meta.facts)]),
        None => bail!("--base-image {text}: an unpacked root has no layers to compare; give an image"),
    }
}
