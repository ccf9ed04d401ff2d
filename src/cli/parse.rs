//! The command line's value parsers (clap's `value_parser`s): each flag's text to its value,
//! or a message saying what it should be.

use std::net::SocketAddr;
use std::time::Duration;

use crate::db;
use crate::db::feeds::FeedSource;
use crate::db::update::Source;
use crate::fail_on::FailOn;

/// A flag's value, or `off`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Off<T>(pub Option<T>);

/// A severity floor: critical, high, medium or low.
pub(super) fn parse_severity(v: &str) -> Result<stalewatch_core::advisory::Severity, String> {
    match v.trim().parse::<stalewatch_core::advisory::Severity>() {
        Ok(s) if s != stalewatch_core::advisory::Severity::Unknown => Ok(s),
        _ => Err("critical, high, medium or low".into()),
    }
}

/// A severity floor, or `kev` (known exploited only).
pub(super) fn parse_min_severity(v: &str) -> Result<crate::agent::notify::MinSeverity, String> {
    use crate::agent::notify::MinSeverity;
    match v.trim() {
        "kev" => Ok(MinSeverity::Kev),
        s => match s.parse::<stalewatch_core::advisory::Severity>() {
            Ok(sev) if sev != stalewatch_core::advisory::Severity::Unknown => Ok(MinSeverity::Severity(sev)),
            _ => Err("critical, high, medium, low or kev".into()),
        },
    }
}

/// A severity floor where `unknown` admits every finding.
pub(super) fn parse_severity_or_unknown(v: &str) -> Result<stalewatch_core::advisory::Severity, String> {
    match v.trim() {
        s @ ("critical" | "high" | "medium" | "low" | "unknown") => s.parse().map_err(|_| s.to_string()),
        _ => Err("critical, high, medium, low or unknown".into()),
    }
}

/// A humantime duration (90s, 5m, 1h) of more than zero.
pub(super) fn parse_interval(v: &str) -> Result<Duration, String> {
    match humantime::parse_duration(v.trim()) {
        Ok(d) if !d.is_zero() => Ok(d),
        Ok(_) => Err("must be more than zero".into()),
        Err(e) => Err(e.to_string()),
    }
}

/// A humantime duration, zero allowed.
pub(super) fn parse_age(v: &str) -> Result<Duration, String> {
    humantime::parse_duration(v.trim()).map_err(|e| e.to_string())
}

pub(super) fn parse_optional_interval(v: &str) -> Result<Off<Duration>, String> {
    match v.trim() {
        "off" => Ok(Off(None)),
        v => parse_interval(v).map(|d| Off(Some(d))),
    }
}

pub(super) fn parse_optional_listen(v: &str) -> Result<Off<SocketAddr>, String> {
    match v.trim() {
        "off" | "" => Ok(Off(None)),
        a => a
            .parse()
            .map(|a| Off(Some(a)))
            .map_err(|e| format!("{e} (an address such as 127.0.0.1:9478, or off)")),
    }
}

pub(super) fn parse_source(v: &str) -> Result<Source, String> {
    Source::parse(v).map_err(|e| format!("{e:#}"))
}

pub(super) fn parse_ecosystem(v: &str) -> Result<String, String> {
    if db::valid_ecosystem_name(v) {
        Ok(v.to_string())
    } else {
        Err("not an OSV ecosystem name (such as Alpine, Debian, \"Rocky Linux\")".into())
    }
}

pub(super) fn parse_fail_on(v: &str) -> Result<FailOn, String> {
    FailOn::parse(v)
}

/// A feed's source, or `off` (a deployment's default turned off).
pub(super) fn parse_feed(v: &str) -> Result<Off<FeedSource>, String> {
    match v.trim() {
        "off" => Ok(Off(None)),
        v => FeedSource::parse(v).map(|f| Off(Some(f))),
    }
}

/// The ecosystems asked for, or every supported one.
pub(super) fn ecosystems_or_all(asked: &[String]) -> Vec<String> {
    if asked.is_empty() {
        db::SUPPORTED_ECOSYSTEMS.iter().map(|s| s.to_string()).collect()
    } else {
        asked.to_vec()
    }
}
