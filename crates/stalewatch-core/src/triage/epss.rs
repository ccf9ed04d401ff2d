//! FIRST's EPSS scores: the daily CSV (plain or gzip) whose first line is
//! `#model_version:…,score_date:…`, then the header `cve,epss,percentile`, then one row per
//! CVE. Kept compactly — a packed CVE key and two `f32`s, 12 bytes a row, sorted — so the
//! full file (~300,000 rows) costs under 4 MiB, and looked up by binary search.

use serde::{Deserialize, Serialize};
use std::io::Read;
use std::sync::Arc;

/// A decompressed file larger than this is refused (the real one is about 10 MB).
pub const MAX_CSV_BYTES: u64 = 256 << 20;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum EpssError {
    #[error("EPSS file is not valid gzip: {0}")]
    Gzip(String),
    #[error("EPSS file is larger than {MAX_CSV_BYTES} bytes")]
    TooLarge,
    #[error("EPSS file does not start with #model_version:…,score_date:…")]
    NoModelLine,
    #[error("EPSS file's header is {0:?}, not cve,epss,percentile")]
    Header(String),
    #[error("EPSS file line {line}: {why}")]
    Row { line: usize, why: String },
    #[error("EPSS file is truncated: its last line has no newline")]
    Truncated,
    #[error("EPSS file has no scores")]
    Empty,
}

/// One CVE's scores, as a finding carries them (`epss` in report v1).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EpssFacts {
    pub score: f32,
    pub percentile: f32,
    /// The scores' `score_date`.
    pub date: Arc<str>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpssScores {
    pub model_version: String,
    /// The `score_date` of the file, as published.
    pub score_date: Arc<str>,
    /// Packed CVE keys (`key`), sorted; `scores[i]` and `percentiles[i]` belong to `keys[i]`.
    keys: Vec<u32>,
    scores: Vec<f32>,
    percentiles: Vec<f32>,
}

/// `CVE-YYYY-N` as `(YYYY - 1990) << 25 | N`: years 1990–2117, numbers below 2^25.
fn key(cve: &str) -> Option<u32> {
    let rest = cve.strip_prefix("CVE-")?;
    let (year, number) = rest.split_once('-')?;
    if year.len() != 4 || number.len() < 4 || number.len() > 8 {
        return None;
    }
    let year: u32 = year.parse().ok()?;
    let number: u32 = number.parse().ok()?;
    let y = year.checked_sub(1990).filter(|y| *y < 128)?;
    (number < 1 << 25).then_some(y << 25 | number)
}

fn probability(s: &str) -> Option<f32> {
    let v: f32 = s.trim().parse().ok()?;
    (0.0..=1.0).contains(&v).then_some(v)
}

fn decompress(bytes: &[u8]) -> Result<Vec<u8>, EpssError> {
    if !bytes.starts_with(&[0x1f, 0x8b]) {
        if bytes.len() as u64 > MAX_CSV_BYTES {
            return Err(EpssError::TooLarge);
        }
        return Ok(bytes.to_vec());
    }
    let mut out = Vec::new();
    flate2::read::MultiGzDecoder::new(bytes)
        .take(MAX_CSV_BYTES + 1)
        .read_to_end(&mut out)
        .map_err(|e| EpssError::Gzip(e.to_string()))?;
    if out.len() as u64 > MAX_CSV_BYTES {
        return Err(EpssError::TooLarge);
    }
    Ok(out)
}

/// `#model_version:v2025.03.14,score_date:2025-08-24T12:55:00Z` → its two values.
fn model_line(line: &str) -> Option<(String, Arc<str>)> {
    let rest = line.trim().strip_prefix('#')?;
    let mut model = None;
    let mut date = None;
    for part in rest.split(',') {
        match part.split_once(':') {
            Some(("model_version", v)) => model = Some(v.trim().to_string()),
            Some(("score_date", v)) => date = Some(Arc::from(v.trim())),
            _ => {}
        }
    }
    Some((model?, date?))
}

impl EpssScores {
    /// Parses a whole file (gzip recognised by its magic bytes).
    pub fn parse(bytes: &[u8]) -> Result<EpssScores, EpssError> {
        let text = decompress(bytes)?;
        if !text.ends_with(b"\n") {
            return Err(EpssError::Truncated);
        }
        let text = std::str::from_utf8(&text).map_err(|e| EpssError::Row {
            line: 0,
            why: format!("not UTF-8: {e}"),
        })?;
        let mut lines = text.lines();
        let (model_version, score_date) = lines.next().and_then(model_line).ok_or(EpssError::NoModelLine)?;
        let header = lines.next().unwrap_or_default().trim();
        if header != "cve,epss,percentile" {
            return Err(EpssError::Header(header.to_string()));
        }
        let mut rows: Vec<(u32, f32, f32)> = Vec::with_capacity(text.len() / 32);
        for (i, line) in lines.enumerate() {
            let line_no = i + 3;
            let bad = |why: &str| EpssError::Row {
                line: line_no,
                why: format!("{why}: {:?}", line.chars().take(80).collect::<String>()),
            };
            if line.trim().is_empty() {
                continue;
            }
            let mut fields = line.split(',');
            let (Some(cve), Some(score), Some(pct), None) =
                (fields.next(), fields.next(), fields.next(), fields.next())
            else {
                return Err(bad("not three fields"));
            };
            let k = key(cve.trim()).ok_or_else(|| bad("not a CVE id"))?;
            let s = probability(score).ok_or_else(|| bad("epss is not a number in [0, 1]"))?;
            let p = probability(pct).ok_or_else(|| bad("percentile is not a number in [0, 1]"))?;
            rows.push((k, s, p));
        }
        if rows.is_empty() {
            return Err(EpssError::Empty);
        }
        rows.sort_by_key(|r| r.0);
        rows.dedup_by_key(|r| r.0);
        Ok(EpssScores {
            model_version,
            score_date,
            keys: rows.iter().map(|r| r.0).collect(),
            scores: rows.iter().map(|r| r.1).collect(),
            percentiles: rows.iter().map(|r| r.2).collect(),
        })
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Whether a value read back from disk is internally consistent (the three columns line
    /// up and the keys are sorted): a corrupt file is refused, never searched.
    pub fn is_consistent(&self) -> bool {
        self.keys.len() == self.scores.len()
            && self.keys.len() == self.percentiles.len()
            && self.keys.windows(2).all(|w| w[0] < w[1])
    }

    pub fn get(&self, cve: &str) -> Option<EpssFacts> {
        let i = self.keys.binary_search(&key(cve)?).ok()?;
        Some(EpssFacts {
            score: self.scores[i],
            percentile: self.percentiles[i],
            date: self.score_date.clone(),
        })
    }

    /// The highest score among `cves` (with that CVE's percentile).
    pub fn highest<'a>(&self, cves: impl IntoIterator<Item = &'a String>) -> Option<EpssFacts> {
        cves.into_iter()
            .filter_map(|c| self.get(c))
            .max_by(|a, b| a.score.total_cmp(&b.score))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    // FIRST's layout; real CVE ids, test scores.
    const CSV: &str = "#model_version:v2025.03.14,score_date:2025-08-24T12:55:00Z\ncve,epss,percentile\nCVE-2014-6271,0.94367,0.99950\nCVE-2021-44228,0.94358,0.99930\nCVE-1999-0001,0.01297,0.79201\nCVE-2024-1234567,0.00043,0.12000\n";

    #[test]
    fn parses_plain_and_gzip() {
        let e = EpssScores::parse(CSV.as_bytes()).unwrap();
        assert_eq!(e.model_version, "v2025.03.14");
        assert_eq!(&*e.score_date, "2025-08-24T12:55:00Z");
        assert_eq!(e.len(), 4);
        assert!(e.is_consistent());
        assert_eq!(e.get("CVE-2014-6271").unwrap().score, 0.94367);
        assert_eq!(e.get("CVE-2024-1234567").unwrap().percentile, 0.12);
        assert!(e.get("CVE-2014-6272").is_none());
        let ids = ["CVE-1999-0001".to_string(), "CVE-2021-44228".to_string()];
        assert_eq!(e.highest(&ids).unwrap().score, 0.94358);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(CSV.as_bytes()).unwrap();
        let gz = gz.finish().unwrap();
        assert_eq!(EpssScores::parse(&gz).unwrap(), e);
        let round: EpssScores = postcard::from_bytes(&postcard::to_stdvec(&e).unwrap()).unwrap();
        assert_eq!(round, e);
    }

    #[test]
    fn refuses_broken_files() {
        let cut = &CSV[..CSV.len() - 9];
        assert_eq!(EpssScores::parse(cut.as_bytes()), Err(EpssError::Truncated));
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(CSV.as_bytes()).unwrap();
        let gz = gz.finish().unwrap();
        assert!(matches!(
            EpssScores::parse(&gz[..gz.len() / 2]),
            Err(EpssError::Gzip(_))
        ));
        assert_eq!(
            EpssScores::parse(b"cve,epss,percentile\nCVE-2014-6271,0.9,0.9\n"),
            Err(EpssError::NoModelLine)
        );
        let header = CSV.replace("cve,epss,percentile", "cve,score");
        assert!(matches!(
            EpssScores::parse(header.as_bytes()),
            Err(EpssError::Header(_))
        ));
        let score = CSV.replace("0.94367", "1.5");
        assert!(matches!(
            EpssScores::parse(score.as_bytes()),
            Err(EpssError::Row { line: 3, .. })
        ));
        let id = CSV.replace("CVE-1999-0001", "GHSA-1");
        assert!(matches!(
            EpssScores::parse(id.as_bytes()),
            Err(EpssError::Row { line: 5, .. })
        ));
        let fields = CSV.replace("0.79201", "0.79201,extra");
        assert!(matches!(
            EpssScores::parse(fields.as_bytes()),
            Err(EpssError::Row { line: 5, .. })
        ));
        let empty = "#model_version:v1,score_date:2025-01-01\ncve,epss,percentile\n";
        assert_eq!(EpssScores::parse(empty.as_bytes()), Err(EpssError::Empty));
    }
}
