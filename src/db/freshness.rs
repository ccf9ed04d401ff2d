//! The advisory source's own age: when its data was last synced upstream. A cluster mirror
//! (`stalewatch mirror`, src/mirror) writes `stalewatch-sync.json` (`{"synced_at": "<RFC 3339>"}`) at its
//! root after a sync where every ecosystem succeeded; the public OSV bucket has no such file,
//! and its root `modified_id.csv` (newest record first) says the same: the time of its first
//! line. A mirror whose sync stopped still answers every conditional request with 304 — the
//! agents' last successful refresh moves on, this time does not.

use serde::{Deserialize, Serialize};
use std::io::Read;

use stalewatch_core::time::{format_rfc3339, rfc3339_seconds};

/// The mirror's sync file, at the source's root.
pub const SYNC_FILE: &str = "stalewatch-sync.json";
/// At most this much of either file is read (a sync file is a line; the first line of
/// `modified_id.csv` a few dozen bytes).
const MAX_BYTES: u64 = 4096;

/// When the source was last synced, and which file said so.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceSynced {
    /// RFC 3339, UTC.
    pub at: String,
    /// `stalewatch-sync.json` or `modified_id.csv`.
    pub from: String,
}

#[derive(Deserialize)]
struct SyncFile {
    synced_at: String,
}

/// The time `stalewatch-sync.json` holds, or `None` when the text is no such file.
pub fn parse_sync_file(text: &[u8]) -> Option<i64> {
    let f: SyncFile = serde_json::from_slice(text).ok()?;
    rfc3339_seconds(&f.synced_at)
}

/// The time of the first line of an OSV `modified_id.csv` (`<RFC 3339>,<Ecosystem>/<id>`).
pub fn parse_modified_id_head(text: &[u8]) -> Option<i64> {
    let line = text.split(|&b| b == b'\n').next()?;
    let (time, _) = std::str::from_utf8(line).ok()?.split_once(',')?;
    rfc3339_seconds(time.trim())
}

fn found(secs: i64, from: &str) -> SourceSynced {
    SourceSynced {
        at: format_rfc3339(secs),
        from: from.to_string(),
    }
}

/// Asks a directory source; `None` when it has neither file.
pub fn dir_synced(d: &std::path::Path) -> Option<SourceSynced> {
    let head = |name: &str| -> Option<Vec<u8>> {
        let mut buf = Vec::new();
        std::fs::File::open(d.join(name))
            .ok()?
            .take(MAX_BYTES)
            .read_to_end(&mut buf)
            .ok()?;
        Some(buf)
    };
    if let Some(secs) = head(SYNC_FILE).and_then(|b| parse_sync_file(&b)) {
        return Some(found(secs, SYNC_FILE));
    }
    head("modified_id.csv")
        .and_then(|b| parse_modified_id_head(&b))
        .map(|s| found(s, "modified_id.csv"))
}

/// Asks an HTTP source at `base`; `Err` when it could not be asked (the previous value should
/// stand), `Ok(None)` when it has neither file.
pub async fn http_synced(base: &str, client: &reqwest::Client) -> Result<Option<SourceSynced>, String> {
    if let Some(secs) = http_head(client, &format!("{base}/{SYNC_FILE}"))
        .await?
        .and_then(|b| parse_sync_file(&b))
    {
        return Ok(Some(found(secs, SYNC_FILE)));
    }
    Ok(http_head(client, &format!("{base}/modified_id.csv"))
        .await?
        .and_then(|b| parse_modified_id_head(&b))
        .map(|s| found(s, "modified_id.csv")))
}

/// The first `MAX_BYTES` of a URL (a range request; a server that ignores it is cut off
/// there), `None` on 404.
async fn http_head(client: &reqwest::Client, url: &str) -> Result<Option<Vec<u8>>, String> {
    let resp = client
        .get(url)
        .header(reqwest::header::RANGE, format!("bytes=0-{}", MAX_BYTES - 1))
        .send()
        .await
        .map_err(|e| format!("{url}: {e}"))?;
    match resp.status().as_u16() {
        200 | 206 => {}
        404 | 403 => return Ok(None),
        s => return Err(format!("{url}: HTTP {s}")),
    }
    let mut body = Vec::new();
    let mut stream = resp.bytes_stream();
    use futures_util::StreamExt;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| format!("{url}: {e}"))?;
        let room = MAX_BYTES as usize - body.len();
        body.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if body.len() >= MAX_BYTES as usize {
            break;
        }
    }
    Ok(Some(body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sync_file_and_the_buckets_newest_record_are_read_and_nothing_else() {
        // `date -u -d 2026-12-01T06:00:00Z +%s` is 1796104800.
        assert_eq!(
            parse_sync_file(br#"{"synced_at": "2026-12-01T06:00:00Z"}"#),
            Some(1_796_104_800)
        );
        assert_eq!(parse_sync_file(br#"{"synced_at": "yesterday"}"#), None);
        assert_eq!(parse_sync_file(b"<html>not found</html>"), None);
        // The shared mirror's root modified_id.csv starts so; `date -u -d 2026-08-21T20:38:00Z +%s`.
        assert_eq!(
            parse_modified_id_head(
                b"2026-08-21T20:38:00Z,Go/GO-2026-5026\n2026-08-21T12:56:10Z,AlmaLinux/ALSA-2026:55775\n"
            ),
            Some(1_787_344_680)
        );
        assert_eq!(parse_modified_id_head(b"GO-2026-5026\n"), None);
        assert_eq!(parse_modified_id_head(b""), None);
    }
}
