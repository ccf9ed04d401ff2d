//! NuGet ordering: up to four numeric parts (missing ones are 0; leading zeros do not count),
//! then SemVer 2.0 pre-release precedence with labels compared case-insensitively; build
//! metadata (`+…`) is ignored. Numbers of any length compare as numbers.

use std::cmp::Ordering;

fn cmp_numbers(a: &str, b: &str) -> Ordering {
    let (x, y) = (a.trim_start_matches('0'), b.trim_start_matches('0'));
    x.len().cmp(&y.len()).then_with(|| x.cmp(y))
}

fn is_number(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

fn cmp_label(a: &str, b: &str) -> Ordering {
    match (is_number(a), is_number(b)) {
        (true, true) => cmp_numbers(a, b),
        (true, false) => Ordering::Less,
        (false, true) => Ordering::Greater,
        (false, false) => a.to_ascii_lowercase().cmp(&b.to_ascii_lowercase()),
    }
}

/// Compares two NuGet versions.
pub fn compare(a: &str, b: &str) -> Ordering {
    let split = |v: &str| -> (Vec<String>, Option<String>) {
        let v = v.trim();
        let v = v.split_once('+').map_or(v, |(core, _)| core);
        let (core, pre) = match v.split_once('-') {
            Some((c, p)) => (c, Some(p.to_string())),
            None => (v, None),
        };
        (core.split('.').map(str::to_string).collect(), pre)
    };
    let ((ca, pa), (cb, pb)) = (split(a), split(b));
    for i in 0..ca.len().max(cb.len()).max(4) {
        let x = ca.get(i).map_or("0", String::as_str);
        let y = cb.get(i).map_or("0", String::as_str);
        let c = match (is_number(x), is_number(y)) {
            (true, true) => cmp_numbers(x, y),
            _ => cmp_label(x, y),
        };
        if c != Ordering::Equal {
            return c;
        }
    }
    super::semver::cmp_prerelease(pa.as_deref(), pb.as_deref(), cmp_label)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::version::vectors;

    #[test]
    fn edge_cases() {
        use Ordering::*;
        for (a, o, b) in [
            ("1.0", Equal, "1.0.0.0"),
            ("1.0.0-BETA", Equal, "1.0.0-beta"),
            ("1.0.0-beta", Less, "1.0.0"),
            ("1.0.0-alpha.2", Less, "1.0.0-alpha.10"),
            ("1.0.01", Equal, "1.0.1"),
            ("4.0.0+sha.1", Equal, "4.0.0"),
        ] {
            assert_eq!(compare(a, b), o, "{a} vs {b}");
            assert_eq!(compare(b, a), o.reverse(), "{b} vs {a}");
        }
    }

    #[test]
    fn shared_vectors() {
        vectors::assert_all_hold("nuget-versions.txt", 30, compare);
    }
}
