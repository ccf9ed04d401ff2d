//! `--fail-on`: a comma-separated list of conditions, any of which fails a scan (exit 1) — a
//! severity (that severity or above), `kev` (a known-exploited finding), `epss>=X` (a finding
//! whose EPSS score is at least X). Conditions on data that is not loaded are a usage error,
//! never a silent pass.

use stalewatch_core::advisory::Severity;
use stalewatch_core::report::Report;

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Condition {
    Severity(Severity),
    Kev,
    Epss(f32),
}

#[derive(Clone, Debug, PartialEq)]
pub struct FailOn(pub Vec<Condition>);

impl FailOn {
    pub fn parse(v: &str) -> Result<FailOn, String> {
        let mut out = Vec::new();
        for part in v.split(',').map(str::trim) {
            let c = if part.eq_ignore_ascii_case("kev") {
                Condition::Kev
            } else if let Some(x) = part.strip_prefix("epss>=") {
                match x.trim().parse::<f32>() {
                    Ok(x) if (0.0..=1.0).contains(&x) => Condition::Epss(x),
                    _ => {
                        return Err(format!(
                            "{part:?}: the EPSS threshold must be a number from 0 to 1"
                        ))
                    }
                }
            } else {
                match part.parse::<Severity>() {
                    Ok(s) => Condition::Severity(s),
                    Err(e) => return Err(format!("{e}; or kev, or epss>=X")),
                }
            };
            out.push(c);
        }
        Ok(FailOn(out))
    }

    pub fn needs_kev(&self) -> bool {
        self.0.contains(&Condition::Kev)
    }

    pub fn needs_epss(&self) -> bool {
        self.0.iter().any(|c| matches!(c, Condition::Epss(_)))
    }

    /// The conditions the report meets, as the user wrote them (empty: it passes).
    pub fn met(&self, r: &Report) -> Vec<String> {
        self.0
            .iter()
            .filter(|c| match c {
                Condition::Severity(s) => r.max_severity().is_some_and(|max| max >= *s),
                Condition::Kev => r.findings.iter().any(|f| f.known_exploited == Some(true)),
                Condition::Epss(x) => r
                    .findings
                    .iter()
                    .any(|f| f.epss.as_ref().is_some_and(|e| e.score >= *x)),
            })
            .map(|c| match c {
                Condition::Severity(s) => s.as_str().to_string(),
                Condition::Kev => "kev".to_string(),
                Condition::Epss(x) => format!("epss>={x}"),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_grammar() {
        assert_eq!(
            FailOn::parse("high, kev,epss>=0.5").unwrap(),
            FailOn(vec![
                Condition::Severity(Severity::High),
                Condition::Kev,
                Condition::Epss(0.5)
            ])
        );
        assert!(FailOn::parse("kev").unwrap().needs_kev());
        assert!(FailOn::parse("epss>=0").unwrap().needs_epss());
        for bad in ["severe", "epss>=2", "epss>x", "high,", "epss>0.5"] {
            assert!(FailOn::parse(bad).is_err(), "{bad}");
        }
    }
}
