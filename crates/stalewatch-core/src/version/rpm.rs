//! RPM version ordering (`rpmvercmp` plus epoch and release), as rpm 4.x defines it,
//! including `~` (sorts before everything) and `^` (sorts after the base version only).

use std::cmp::Ordering;

/// Splits `[epoch:]version[-release]`; a missing epoch is 0. A missing release sorts
/// below any release, even an empty one (`1 < 1-`), as osv-scalibr's vectors expect.
fn split_evr(evr: &str) -> (u64, &str, Option<&str>) {
    let evr = evr.trim();
    let (epoch, rest) = match evr.split_once(':') {
        Some((e, rest)) if e.bytes().all(|b| b.is_ascii_digit()) => {
            (e.parse().unwrap_or(if e.is_empty() { 0 } else { u64::MAX }), rest)
        }
        _ => (0, evr),
    };
    match rest.rfind('-') {
        Some(i) => (epoch, &rest[..i], Some(&rest[i + 1..])),
        None => (epoch, rest, None),
    }
}

/// rpm's segment-wise comparison of one version or release string.
#[allow(clippy::too_many_lines)] // rpm's rpmvercmp segment loop, kept in the order of rpm's own C for checking against it
pub fn rpmvercmp(a: &str, b: &str) -> Ordering {
    if a == b {
        return Ordering::Equal;
    }
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let (mut i, mut j) = (0, 0);
    let sep = |c: u8| !c.is_ascii_alphanumeric() && c != b'~' && c != b'^';
    while i < a.len() || j < b.len() {
        while i < a.len() && sep(a[i]) {
            i += 1;
        }
        while j < b.len() && sep(b[j]) {
            j += 1;
        }
        let (ca, cb) = (a.get(i).copied(), b.get(j).copied());
        if ca == Some(b'~') || cb == Some(b'~') {
            if ca != Some(b'~') {
                return Ordering::Greater;
            }
            if cb != Some(b'~') {
                return Ordering::Less;
            }
            i += 1;
            j += 1;
            continue;
        }
        if ca == Some(b'^') || cb == Some(b'^') {
            if ca.is_none() {
                return Ordering::Less;
            }
            if cb.is_none() {
                return Ordering::Greater;
            }
            if ca != Some(b'^') {
                return Ordering::Greater;
            }
            if cb != Some(b'^') {
                return Ordering::Less;
            }
            i += 1;
            j += 1;
            continue;
        }
        if ca.is_none() || cb.is_none() {
            break;
        }
        let numeric = a[i].is_ascii_digit();
        let take = |s: &[u8], mut k: usize| {
            let start = k;
            while k < s.len()
                && (if numeric {
                    s[k].is_ascii_digit()
                } else {
                    s[k].is_ascii_alphabetic()
                })
            {
                k += 1;
            }
            (start, k)
        };
        let (sa, ea) = take(a, i);
        let (sb, eb) = take(b, j);
        i = ea;
        j = eb;
        if sb == eb {
            // Segments of different kinds: a number is newer than letters.
            return if numeric {
                Ordering::Greater
            } else {
                Ordering::Less
            };
        }
        let (mut x, mut y) = (&a[sa..ea], &b[sb..eb]);
        if numeric {
            while x.first() == Some(&b'0') {
                x = &x[1..];
            }
            while y.first() == Some(&b'0') {
                y = &y[1..];
            }
            let c = x.len().cmp(&y.len());
            if c != Ordering::Equal {
                return c;
            }
        }
        let c = x.cmp(y);
        if c != Ordering::Equal {
            return c;
        }
    }
    match (i >= a.len(), j >= b.len()) {
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Less,
        _ => Ordering::Greater,
    }
}

/// Compares two `[epoch:]version[-release]` strings.
pub fn compare(a: &str, b: &str) -> Ordering {
    let (ea, va, ra) = split_evr(a);
    let (eb, vb, rb) = split_evr(b);
    ea.cmp(&eb)
        .then_with(|| rpmvercmp(va, vb))
        .then_with(|| match (ra, rb) {
            (Some(x), Some(y)) => rpmvercmp(x, y),
            (x, y) => x.is_some().cmp(&y.is_some()),
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::version::vectors;

    #[test]
    fn edge_cases() {
        assert_eq!(compare("1.0~rc1-1", "1.0-1"), Ordering::Less);
        assert_eq!(compare("1.0^git1-1", "1.0-1"), Ordering::Greater);
        assert_eq!(compare("1.0^git1-1", "1.0.1-1"), Ordering::Less);
        assert_eq!(compare("1:1.0-1", "2.0-1"), Ordering::Greater);
        assert_eq!(compare("3.0.7-27.el9", "3.0.7-28.el9"), Ordering::Less);
        assert_eq!(compare("3.0.7-27.el9_4", "3.0.7-27.el9"), Ordering::Greater);
        assert_eq!(compare("0:1.0-1", "1.0-1"), Ordering::Equal);
        assert_eq!(compare("1.0a", "1.0.1"), Ordering::Less);
    }

    #[test]
    fn shared_vectors() {
        let (total, bad) = vectors::failures(&vectors::shared("redhat-versions.txt"), compare);
        assert!(total > 100);
        assert!(bad.is_empty(), "{} of {total} fail: {bad:?}", bad.len());
    }
}
