//! Dates and times as the data writes them: the one RFC 3339 parser (records' `published`,
//! images' `created`, VEX timestamps, KEV and EPSS dates; any offset) and formatter, in
//! seconds since the epoch. Pure: the clock is the caller's.

/// Days since 1970-01-01 of a `YYYY-MM-DD` date (proleptic Gregorian).
pub fn days_from_date(date: &str) -> Option<i64> {
    let mut it = date.get(..10)?.split('-');
    let y: i64 = it.next()?.parse().ok()?;
    let m: i64 = it.next()?.parse().ok()?;
    let d: i64 = it.next()?.parse().ok()?;
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return None;
    }
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    Some(era * 146097 + doe - 719468)
}

/// Seconds since the epoch of an RFC 3339 date-time (`2023-01-08T18:02:03.647787998-06:00`).
pub fn rfc3339_seconds(s: &str) -> Option<i64> {
    let s = s.trim();
    let days = days_from_date(s)?;
    let t = s.get(10..)?;
    let t = t
        .strip_prefix('T')
        .or_else(|| t.strip_prefix('t'))
        .or_else(|| t.strip_prefix(' '))?;
    let num = |a: usize, b: usize| t.get(a..b)?.parse::<i64>().ok();
    let (h, m, sec) = (num(0, 2)?, num(3, 5)?, num(6, 8)?);
    if t.get(2..3)? != ":" || t.get(5..6)? != ":" || h > 23 || m > 59 || sec > 60 {
        return None;
    }
    let zone = t
        .get(8..)?
        .trim_start_matches(|c: char| c == '.' || c.is_ascii_digit());
    let offset = match zone {
        "Z" | "z" => 0,
        // `+01:00`, and `+0100` as FIRST's EPSS files write it.
        z if (z.len() == 6 && z.get(3..4) == Some(":") || z.len() == 5)
            && (z.starts_with('+') || z.starts_with('-')) =>
        {
            let digits = |s: &str| {
                s.bytes()
                    .all(|b| b.is_ascii_digit())
                    .then(|| s.parse::<i64>().ok())?
            };
            let (h, m) = (digits(z.get(1..3)?)?, digits(z.get(z.len() - 2..)?)?);
            // RFC 3339's offsets: hours 00–23, minutes 00–59.
            if h > 23 || m > 59 {
                return None;
            }
            let mins = h * 60 + m;
            if z.starts_with('-') {
                -mins * 60
            } else {
                mins * 60
            }
        }
        _ => return None,
    };
    Some(days * 86400 + h * 3600 + m * 60 + sec - offset)
}

/// RFC 3339 in UTC to the second (`1970-01-02T00:00:00Z`) of seconds since the epoch.
pub fn format_rfc3339(secs: i64) -> String {
    let (days, rem) = (secs.div_euclid(86400), secs.rem_euclid(86400));
    // Days to a civil date (proleptic Gregorian), the inverse of `days_from_date`.
    let z = days + 719468;
    let era = z.div_euclid(146097);
    let doe = z - era * 146097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_and_parses_back_across_eras_and_leap_days() {
        // Oracle: `date -u -d @SECS +%FT%TZ` (GNU coreutils) for each.
        for (secs, text) in [
            (0, "1970-01-01T00:00:00Z"),
            (951_782_400, "2000-02-29T00:00:00Z"),
            (1_709_251_199, "2024-02-29T23:59:59Z"),
            (4_102_444_800, "2100-01-01T00:00:00Z"),
            (-86_400, "1969-12-31T00:00:00Z"),
        ] {
            assert_eq!(format_rfc3339(secs), text);
            assert_eq!(rfc3339_seconds(text), Some(secs));
        }
    }

    #[test]
    fn an_offset_past_rfc_3339_s_bounds_is_no_date() {
        assert_eq!(rfc3339_seconds("2024-05-01T10:00:00+24:00"), None);
        assert_eq!(rfc3339_seconds("2024-05-01T10:00:00-00:60"), None);
        assert_eq!(rfc3339_seconds("2024-05-01T10:00:00+-1:00"), None);
    }

    #[test]
    fn an_offset_is_the_same_instant() {
        assert_eq!(
            rfc3339_seconds("2024-05-01T12:00:00+02:00"),
            rfc3339_seconds("2024-05-01T10:00:00Z")
        );
        assert_eq!(
            rfc3339_seconds("2024-05-01T10:00:00.5-00:30"),
            Some(1_714_559_400)
        );
    }
}
