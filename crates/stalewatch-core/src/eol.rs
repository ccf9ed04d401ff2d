//! End-of-life dates of distribution releases: the day after which the distribution publishes
//! no more security fixes for the release in its own archive (Debian: end of LTS; Ubuntu: end
//! of standard support; Alpine: the branch's end of life; RHEL and rebuilds: end of
//! maintenance support). Dates are facts from endoflife.date (checked against
//! `shared/data/eol/` in a test); Rocky Linux follows its published lifecycle, Azure Linux
//! Microsoft's (its source named in the table).

/// (os-release ID, release cycle, end-of-life date).
const TABLE: &[(&str, &str, &str)] = &[
    ("alpine", "3.24", "2028-06-01"),
    ("alpine", "3.23", "2027-11-01"),
    ("alpine", "3.22", "2027-05-01"),
    ("alpine", "3.21", "2026-11-01"),
    ("alpine", "3.20", "2026-04-01"),
    ("alpine", "3.19", "2025-11-01"),
    ("alpine", "3.18", "2025-05-09"),
    ("alpine", "3.17", "2024-11-22"),
    ("alpine", "3.16", "2024-05-23"),
    ("alpine", "3.15", "2023-11-01"),
    ("alpine", "3.14", "2023-05-01"),
    ("alpine", "3.13", "2022-11-01"),
    ("alpine", "3.12", "2022-05-01"),
    ("alpine", "3.11", "2021-11-01"),
    ("alpine", "3.10", "2021-05-01"),
    ("alpine", "3.9", "2020-11-01"),
    ("alpine", "3.8", "2020-05-01"),
    ("alpine", "3.7", "2019-11-01"),
    ("alpine", "3.6", "2019-05-01"),
    ("alpine", "3.5", "2018-11-01"),
    ("alpine", "3.4", "2018-05-01"),
    ("alpine", "3.3", "2017-11-01"),
    ("alpine", "3.2", "2017-05-01"),
    ("alpine", "3.1", "2016-11-01"),
    ("alpine", "3.0", "2016-05-01"),
    ("alpine", "2.7", "2015-11-01"),
    ("alpine", "2.6", "2015-05-01"),
    ("alpine", "2.5", "2014-11-01"),
    ("alpine", "2.4", "2014-05-01"),
    ("alpine", "2.3", "2013-11-01"),
    ("alpine", "2.2", "2013-05-01"),
    ("alpine", "2.1", "2012-11-01"),
    ("debian", "13", "2030-06-30"),
    ("debian", "12", "2028-06-30"),
    ("debian", "11", "2026-08-31"),
    ("debian", "10", "2024-06-30"),
    ("debian", "9", "2022-07-01"),
    ("debian", "8", "2020-06-30"),
    ("debian", "7", "2018-05-31"),
    ("debian", "6", "2016-02-29"),
    ("debian", "5", "2012-02-06"),
    ("debian", "4", "2010-02-15"),
    ("debian", "3.1", "2008-03-31"),
    ("debian", "3.0", "2006-06-30"),
    ("debian", "2.2", "2003-06-30"),
    ("debian", "2.1", "2000-10-30"),
    ("debian", "2.0", "1999-02-15"),
    ("debian", "1.3", "1998-12-08"),
    ("debian", "1.2", "1997-10-23"),
    ("debian", "1.1", "1996-12-12"),
    ("ubuntu", "26.04", "2031-04-30"),
    ("ubuntu", "25.10", "2026-07-01"),
    ("ubuntu", "25.04", "2026-01-17"),
    ("ubuntu", "24.10", "2025-07-10"),
    ("ubuntu", "24.04", "2029-05-31"),
    ("ubuntu", "23.10", "2024-07-12"),
    ("ubuntu", "23.04", "2024-01-20"),
    ("ubuntu", "22.10", "2023-07-20"),
    ("ubuntu", "22.04", "2027-04-01"),
    ("ubuntu", "21.10", "2022-07-14"),
    ("ubuntu", "21.04", "2022-01-20"),
    ("ubuntu", "20.10", "2021-07-22"),
    ("ubuntu", "20.04", "2025-05-31"),
    ("ubuntu", "19.10", "2020-07-06"),
    ("ubuntu", "19.04", "2020-01-23"),
    ("ubuntu", "18.10", "2019-07-18"),
    ("ubuntu", "18.04", "2023-05-31"),
    ("ubuntu", "17.10", "2018-07-19"),
    ("ubuntu", "17.04", "2018-01-13"),
    ("ubuntu", "16.10", "2017-07-20"),
    ("ubuntu", "16.04", "2021-04-02"),
    ("ubuntu", "15.10", "2016-07-28"),
    ("ubuntu", "15.04", "2016-02-04"),
    ("ubuntu", "14.10", "2015-07-23"),
    ("ubuntu", "14.04", "2019-04-02"),
    ("ubuntu", "13.10", "2014-07-17"),
    ("ubuntu", "13.04", "2014-01-27"),
    ("ubuntu", "12.10", "2014-05-16"),
    ("ubuntu", "12.04", "2017-04-28"),
    ("ubuntu", "11.10", "2013-05-09"),
    ("ubuntu", "11.04", "2012-10-28"),
    ("ubuntu", "10.10", "2012-04-10"),
    ("ubuntu", "10.04", "2013-05-09"),
    ("ubuntu", "9.10", "2011-04-30"),
    ("ubuntu", "9.04", "2010-10-23"),
    ("ubuntu", "8.10", "2010-04-30"),
    ("ubuntu", "8.04", "2013-05-09"),
    ("ubuntu", "7.10", "2009-04-18"),
    ("ubuntu", "7.04", "2008-10-19"),
    ("ubuntu", "6.10", "2008-04-26"),
    ("ubuntu", "6.06", "2011-06-01"),
    ("ubuntu", "5.10", "2007-04-13"),
    ("ubuntu", "5.04", "2006-10-31"),
    ("ubuntu", "4.10", "2006-04-30"),
    ("almalinux", "10", "2035-05-31"),
    ("almalinux", "9", "2032-05-31"),
    ("almalinux", "8", "2029-05-31"),
    ("rhel", "10", "2035-05-31"),
    ("rhel", "9", "2032-05-31"),
    ("rhel", "8", "2029-05-31"),
    ("rhel", "7", "2024-06-30"),
    ("rhel", "6", "2020-11-30"),
    ("rhel", "5", "2017-03-31"),
    ("rhel", "4", "2012-02-29"),
    ("rocky", "9", "2032-05-31"),
    ("rocky", "8", "2029-05-31"),
    // Not on endoflife.date; hand-written from Microsoft Learn, "Azure Linux Container Host
    // support lifecycle" (learn.microsoft.com/azure/azure-linux/support-cycle): security
    // updates for Azure Linux 2.0 (CBL-Mariner, `ID=mariner`) ceased on 2025-11-30. Azure
    // Linux 3.0 has no published date yet ("roughly three years after" AKS 1.32): none is
    // claimed, so its images are never called end of life on a guess.
    ("mariner", "2", "2025-11-30"),
];

/// Paid extended security maintenance after end of life (Ubuntu Pro ESM), reported beside
/// the end-of-life date, never instead of it.
const EXTENDED: &[(&str, &str, &str)] = &[
    ("ubuntu", "26.04", "2036-04-30"),
    ("ubuntu", "24.04", "2036-05-31"),
    ("ubuntu", "22.04", "2032-04-09"),
    ("ubuntu", "20.04", "2030-04-02"),
    ("ubuntu", "18.04", "2028-04-01"),
    ("ubuntu", "16.04", "2026-04-02"),
    ("ubuntu", "14.04", "2024-04-02"),
    ("ubuntu", "12.04", "2019-04-26"),
];

/// The release cycle an os-release VERSION_ID belongs to.
fn cycle(id: &str, version_id: &str) -> String {
    let parts: Vec<&str> = version_id.split('.').collect();
    match id {
        "alpine" | "ubuntu" => parts.iter().take(2).copied().collect::<Vec<_>>().join("."),
        _ => parts.first().copied().unwrap_or_default().to_string(),
    }
}

/// The end-of-life date (`YYYY-MM-DD`) of a release, if known.
pub fn eol_date(id: &str, version_id: &str) -> Option<&'static str> {
    let c = cycle(id, version_id);
    TABLE
        .iter()
        .find(|(d, r, _)| *d == id && *r == c)
        .map(|(_, _, e)| *e)
}

/// The end of paid extended support (Ubuntu ESM), if the distribution offers one.
pub fn extended_support_date(id: &str, version_id: &str) -> Option<&'static str> {
    let c = cycle(id, version_id);
    EXTENDED
        .iter()
        .find(|(d, r, _)| *d == id && *r == c)
        .map(|(_, _, e)| *e)
}

pub use crate::time::days_from_date;

/// Whether `date` has passed at `now` (seconds since the epoch): the release is supported
/// through its end-of-life day.
pub fn is_past(date: &str, now_unix: i64) -> bool {
    days_from_date(date).is_some_and(|d| now_unix.div_euclid(86400) > d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookups_and_clock() {
        assert_eq!(eol_date("alpine", "3.20.3"), Some("2026-04-01"));
        assert_eq!(eol_date("debian", "12"), Some("2028-06-30"));
        assert_eq!(eol_date("ubuntu", "22.04"), Some("2027-04-01"));
        assert_eq!(eol_date("nonesuch", "1"), None);
        assert_eq!(extended_support_date("ubuntu", "22.04"), Some("2032-04-09"));
        assert_eq!(extended_support_date("debian", "12"), None);
        assert_eq!(days_from_date("1970-01-01"), Some(0));
        assert_eq!(days_from_date("2000-03-01"), Some(11017));
        let day = 86400;
        let eol = days_from_date("2026-04-01").unwrap() * day;
        assert!(!is_past("2026-04-01", eol + day - 1));
        assert!(is_past("2026-04-01", eol + day));
    }

    /// Every date in the table equals endoflife.date's (the column DESIGN.md names).
    #[test]
    fn mariner_2_is_past_its_end_and_azure_linux_3_has_none_claimed() {
        assert_eq!(eol_date("mariner", "2.0"), Some("2025-11-30"));
        assert_eq!(eol_date("azurelinux", "3.0"), None);
    }

    #[test]
    fn table_matches_shared_endoflife_data() {
        let dir = format!("{}/../../../shared/data/eol", env!("CARGO_MANIFEST_DIR"));
        let products = [
            ("alpine", "alpine-linux", "eol"),
            ("debian", "debian", "eoes"),
            ("ubuntu", "ubuntu", "eol"),
            ("almalinux", "almalinux", "eol"),
            ("rhel", "rhel", "eol"),
        ];
        let mut checked = 0;
        for (id, file, column) in products {
            let text = std::fs::read_to_string(format!("{dir}/{file}.json")).expect("shared eol data");
            let v: serde_json::Value = serde_json::from_str(&text).unwrap();
            for r in v["releases"].as_array().unwrap() {
                let cycle = r["releaseCycle"].as_str().unwrap();
                let want = r[column].as_str().or(r["eol"].as_str());
                let Some(want) = want else { continue };
                let got = TABLE
                    .iter()
                    .find(|(d, c, _)| *d == id && *c == cycle)
                    .map(|t| t.2);
                assert_eq!(got, Some(want), "{id} {cycle}");
                checked += 1;
            }
        }
        assert!(checked > 90, "only {checked} releases checked");
    }
}
