//! The injectable clock: `STALEWATCH_NOW` (RFC 3339 or seconds since the epoch) for tests.

use std::time::{SystemTime, UNIX_EPOCH};

/// Seconds since the epoch, from `STALEWATCH_NOW` when set.
pub fn now_unix() -> anyhow::Result<i64> {
    match std::env::var("STALEWATCH_NOW") {
        Ok(v) if !v.trim().is_empty() => parse(&v),
        _ => Ok(SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0)),
    }
}

/// Seconds since the epoch for the agent, whose configuration validated `STALEWATCH_NOW` at
/// start: the system clock should the variable have become unreadable since.
pub fn now() -> i64 {
    now_unix().unwrap_or_else(|_| {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0)
    })
}

fn parse(v: &str) -> anyhow::Result<i64> {
    let v = v.trim();
    if let Ok(secs) = v.parse::<i64>() {
        return Ok(secs);
    }
    let t = humantime::parse_rfc3339_weak(v)
        .map_err(|e| anyhow::anyhow!("STALEWATCH_NOW={v:?} is neither RFC 3339 nor epoch seconds: {e}"))?;
    Ok(t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0))
}

/// RFC 3339 (UTC, seconds) of an epoch time.
pub fn rfc3339(secs: i64) -> String {
    stalewatch_core::time::format_rfc3339(secs.max(0))
}

#[cfg(test)]
mod tests {
    #[test]
    fn parses_both_forms() {
        assert_eq!(super::parse("86400").unwrap(), 86400);
        assert_eq!(super::parse("1970-01-02T00:00:00Z").unwrap(), 86400);
        assert!(super::parse("tomorrow").is_err());
    }
}
