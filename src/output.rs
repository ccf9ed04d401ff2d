//! Rendering: the report as a table for people or JSON for machines; `db status`.

use std::io::Write;
use std::path::Path;

use stalewatch_core::matcher::Finding;
use stalewatch_core::report::Report;

use crate::db::State;

fn cut(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        format!("{}…", s.chars().take(n - 1).collect::<String>())
    }
}

/// How `scan` prints a report.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Table,
    /// Report v1 (stalewatch/report/v1).
    Json,
    /// SARIF 2.1.0, for code-scanning dashboards.
    Sarif,
    /// CycloneDX 1.5 JSON: the SBOM, with the vulnerabilities found.
    Cyclonedx,
    /// OpenVEX 0.2.0: a statement per finding (nothing, and a note on stderr, without findings).
    Openvex,
}

/// How `db status` prints.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum StatusFormat {
    Table,
    Json,
}

/// How a report is printed.
pub struct PrintOptions {
    pub format: Format,
    pub now_unix: i64,
    /// The table lists VEX-suppressed findings too.
    pub show_suppressed: bool,
    /// Names the advisory data (the OpenVEX document's `@id` is stable per target and data).
    pub data_version: String,
    /// The OpenVEX document's author.
    pub vex_author: String,
}

/// Prints a report; everything goes through one buffer, written and flushed once.
pub fn print_report(r: &Report, o: &PrintOptions) -> anyhow::Result<()> {
    let (format, now_unix) = (o.format, o.now_unix);
    let mut out = std::io::BufWriter::with_capacity(64 << 10, std::io::stdout().lock());
    match format {
        Format::Openvex => {
            let timestamp = crate::clock::rfc3339(now_unix);
            let ctx = stalewatch_core::export::openvex::VexContext {
                author: &o.vex_author,
                timestamp: &timestamp,
                image_digest: None,
                data_version: &o.data_version,
                not_loaded_is_not_affected: false,
            };
            match stalewatch_core::export::openvex::document(r, &ctx, &|_| None) {
                Some(doc) => serde_json::to_writer_pretty(&mut out, &doc)?,
                None => {
                    eprintln!("stalewatch: {}: no findings, so no VEX statements (OpenVEX forbids an empty document)", r.target);
                    return Ok(());
                }
            }
        }
        Format::Json => serde_json::to_writer_pretty(&mut out, r)?,
        Format::Sarif => serde_json::to_writer_pretty(&mut out, &stalewatch_core::export::sarif::log(r))?,
        Format::Cyclonedx => {
            let bom = stalewatch_core::export::cyclonedx::bom(r, &crate::clock::rfc3339(now_unix));
            serde_json::to_writer_pretty(&mut out, &bom)?;
        }
        Format::Table => {
            write_findings(&mut out, r)?;
            if o.show_suppressed {
                write_suppressed(&mut out, r)?;
            }
            write_summary(&mut out, r)?;
        }
    }
    if format != Format::Table {
        writeln!(out)?;
    }
    out.flush()?;
    Ok(())
}

/// The order a person should read findings in: known-exploited first, then by EPSS score,
/// then most severe, then by id and package.
fn reading_order(a: &&Finding, b: &&Finding) -> std::cmp::Ordering {
    let epss = |f: &Finding| f.epss.as_ref().map_or(-1.0, |e| e.score);
    (b.known_exploited == Some(true))
        .cmp(&(a.known_exploited == Some(true)))
        .then(epss(b).total_cmp(&epss(a)))
        .then(b.severity.cmp(&a.severity))
        .then(a.id.cmp(&b.id))
        .then(a.package.cmp(&b.package))
}

/// The findings in reading order, with KEV and EPSS columns when that data was loaded; then
/// the informational advisories apart.
fn write_findings(out: &mut impl Write, r: &Report) -> std::io::Result<()> {
    let mut rows: Vec<&Finding> = r.findings.iter().map(|f| &**f).collect();
    rows.sort_by(reading_order);
    let kev = r.summary.known_exploited.is_some();
    let epss = rows.iter().any(|f| f.epss.is_some());
    let triage = |f: &Finding| {
        let mut t = String::new();
        if kev {
            t.push_str(if f.known_exploited == Some(true) {
                "KEV "
            } else {
                "    "
            });
        }
        if epss {
            t.push_str(
                &f.epss
                    .as_ref()
                    .map_or("       ".into(), |e| format!("{:<6.4} ", e.score)),
            );
        }
        t
    };
    if !rows.is_empty() {
        let head = format!(
            "{}{}",
            if kev { "KEV " } else { "" },
            if epss { "EPSS   " } else { "" }
        );
        writeln!(
            out,
            "{head}{:<9} {:<24} {:<22} {:<34} SUMMARY",
            "SEVERITY", "ID", "PACKAGE", "INSTALLED -> FIXED"
        )?;
    }
    for f in rows {
        let fix = f.fixed_version.as_deref().unwrap_or("(no fix)");
        let summary = if f.summary.is_empty() {
            f.aliases.join(" ")
        } else {
            f.summary.to_string()
        };
        writeln!(
            out,
            "{}{:<9} {:<24} {:<22} {:<34} {}",
            triage(f),
            f.severity.as_str(),
            cut(&f.id, 24),
            cut(&f.package, 22),
            cut(&format!("{} -> {}", f.installed_version, fix), 34),
            cut(&summary, 60)
        )?;
    }
    if !r.informational.is_empty() {
        writeln!(out, "\nINFORMATIONAL (not vulnerabilities):")?;
        for f in &r.informational {
            writeln!(
                out,
                "{:<13} {:<24} {:<22} {}",
                f.informational.as_deref().unwrap_or(""),
                cut(&f.id, 24),
                cut(&format!("{} {}", f.package, f.installed_version), 22),
                cut(&f.summary, 60)
            )?;
        }
    }
    Ok(())
}

/// What VEX statements took out, and which statement did (`--show-suppressed`).
fn write_suppressed(out: &mut impl Write, r: &Report) -> std::io::Result<()> {
    if r.suppressed.is_empty() {
        return Ok(());
    }
    writeln!(out, "\nSUPPRESSED by VEX (not counted):")?;
    for f in &r.suppressed {
        let Some(v) = &f.vex else { continue };
        let why = v
            .justification
            .as_deref()
            .or(v.impact_statement.as_deref())
            .unwrap_or("");
        writeln!(
            out,
            "{:<13} {:<24} {:<22} {} ({})",
            v.status.as_str(),
            cut(&f.id, 24),
            cut(&format!("{} {}", f.package, f.installed_version), 22),
            cut(why, 50),
            v.document
        )?;
    }
    Ok(())
}

/// The counts, the OS and its end of life, and what could not be read.
fn write_summary(out: &mut impl Write, r: &Report) -> std::io::Result<()> {
    let s = &r.summary;
    let b = &s.by_severity;
    writeln!(out)?;
    writeln!(
        out,
        "{}: {} packages, {} findings ({} fixable): {} critical, {} high, {} medium, {} low, {} unknown",
        r.target, s.packages, s.findings, s.fixable, b.critical, b.high, b.medium, b.low, b.unknown
    )?;
    if let Some(k) = s.known_exploited {
        writeln!(out, "known exploited (CISA KEV): {k}")?;
    }
    if let Some(n) = s.suppressed {
        writeln!(out, "suppressed by VEX: {n}")?;
    }
    match &r.os {
        Some(os) => {
            let eol = match (&os.eol_date, os.eol) {
                (Some(d), true) => format!("END OF LIFE since {d}"),
                (Some(d), false) => format!("supported until {d}"),
                (None, _) => "end of life unknown".to_string(),
            };
            let feed = os.ecosystem.as_deref().unwrap_or("no advisory feed");
            writeln!(out, "OS: {} {} ({feed}), {eol}", os.id, os.version_id)?;
        }
        None => writeln!(out, "OS: not recognised")?,
    }
    if let Some(line) = lineage_line(r) {
        writeln!(out, "{line}")?;
    }
    if !r.unreadable.is_empty() {
        writeln!(
            out,
            "INCOMPLETE: {} item(s) could not be read:",
            r.unreadable.len()
        )?;
        for u in &r.unreadable {
            writeln!(out, "  {} [{}] {}", u.what, u.reason, u.detail)?;
        }
    }
    Ok(())
}

pub fn print_status(state: &State, dir: &Path, format: StatusFormat) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    match format {
        StatusFormat::Json => {
            let v = serde_json::json!({ "db_dir": dir, "ecosystems": state.ecosystems, "feeds": state.feeds,
                "source_synced": state.source_synced });
            serde_json::to_writer_pretty(&mut out, &v)?;
            writeln!(out)?;
        }
        StatusFormat::Table => {
            writeln!(out, "database: {}", dir.display())?;
            if state.ecosystems.is_empty() {
                writeln!(out, "empty: run `stalewatch db update`")?;
                return Ok(());
            }
            writeln!(
                out,
                "{:<12} {:>8} {:<22} {:<22} STATUS",
                "ECOSYSTEM", "RECORDS", "SOURCE MODIFIED", "LAST SUCCESS"
            )?;
            for (eco, s) in &state.ecosystems {
                let status = match (&s.last_error, s.missing) {
                    (Some(e), _) => format!("last update failed: {e}"),
                    (None, true) => "not on mirror".to_string(),
                    (None, false) => "ok".to_string(),
                };
                writeln!(
                    out,
                    "{:<12} {:>8} {:<22} {:<22} {}",
                    eco,
                    s.records,
                    s.source_modified.as_deref().unwrap_or("-"),
                    s.last_success.as_deref().unwrap_or("never"),
                    status
                )?;
            }
            write_feeds(&mut out, state)?;
            match &state.source_synced {
                Some(s) => writeln!(out, "source last synced: {} (its {})", s.at, s.from)?,
                None => writeln!(
                    out,
                    "source last synced: unknown (no stalewatch-sync.json nor modified_id.csv)"
                )?,
            }
        }
    }
    Ok(())
}

/// The KEV and EPSS feeds: version, date, age and the last refresh.
fn write_feeds(out: &mut impl Write, state: &State) -> std::io::Result<()> {
    let now = crate::clock::now_unix().unwrap_or(0);
    for (name, f) in &state.feeds {
        let age = f
            .date
            .as_deref()
            .and_then(stalewatch_core::triage::vex::rfc3339_seconds)
            .map_or("age unknown".to_string(), |t| {
                format!("{} days old", (now - t).div_euclid(86400))
            });
        let status = match &f.last_error {
            Some(e) => format!("last update failed: {e}"),
            None => "ok".into(),
        };
        writeln!(
            out,
            "{:<12} {:>8} version {}, dated {} ({age}); last success {}; {status}",
            name.to_uppercase(),
            f.entries,
            f.version.as_deref().unwrap_or("-"),
            f.date.as_deref().unwrap_or("-"),
            f.last_success.as_deref().unwrap_or("never"),
        )?;
    }
    Ok(())
}

/// The table's one line on the image's base, source and what a rebuild fixes.
fn lineage_line(r: &Report) -> Option<String> {
    let base = r.base.as_ref().map(|b| {
        let name = b.name.as_deref().unwrap_or("(unnamed)");
        let digest = b.digest.as_deref().map(|d| format!("@{d}")).unwrap_or_default();
        format!("Base: {name}{digest} (by {})", b.detected_by.as_str())
    });
    let source = r.source.as_deref().map(|s| match &r.revision {
        Some(rev) => format!("source {s} at {rev}"),
        None => format!("source {s}"),
    });
    let rebuild = r.rebuild.as_ref().map(|rb| {
        format!(
            "a rebuild on {} fixes {} ({} remain)",
            rb.new_base_digest, rb.fixed_by_rebuild, rb.remaining
        )
    });
    let parts: Vec<String> = [base, source, rebuild].into_iter().flatten().collect();
    (!parts.is_empty()).then(|| parts.join("; "))
}
