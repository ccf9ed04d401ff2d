//! Packagist (Composer) ordering: PHP's `version_compare` on versions without their leading
//! `v`, as `ext/standard/versioning.c` does it (checked against PHP itself by
//! tests/php_version_compare.rs). A version is canonicalised (`-`, `_`, `+` and any other
//! byte that is not a letter or digit become `.`, and a `.` goes between a digit and a
//! non-digit), then compared part by part: numbers as numbers; words by their special-form
//! rank, found by prefix (`dev` < `alpha`/`a` < `beta`/`b` < `RC`/`rc` < `#` and numbers <
//! `pl`/`p`; any other word ranks lowest); when one side runs out, what is left of the other
//! weighs against a number (`#N#`).

use std::cmp::Ordering;

/// PHP's `php_canonicalize_version`: the first byte kept as is; then `-`, `_`, `+` and any
/// other byte that is not a letter or digit become one `.`, and a `.` goes between a digit and
/// a non-digit (judged against the previous *input* byte).
fn canonical(v: &[u8]) -> Vec<u8> {
    let Some((&first, rest)) = v.split_first() else {
        return Vec::new();
    };
    let digit = |x: u8| x.is_ascii_digit();
    let non_digit = |x: u8| !x.is_ascii_digit() && x != b'.';
    let mut out = Vec::with_capacity(v.len() * 2);
    out.push(first);
    let mut lp = first;
    for &c in rest {
        let dot_last = out.last() == Some(&b'.');
        if matches!(c, b'-' | b'_' | b'+') {
            if !dot_last {
                out.push(b'.');
            }
        } else if (non_digit(lp) && digit(c)) || (digit(lp) && non_digit(c)) {
            if !dot_last {
                out.push(b'.');
            }
            out.push(c);
        } else if !c.is_ascii_alphanumeric() {
            if !dot_last {
                out.push(b'.');
            }
        } else {
            out.push(c);
        }
        lp = c;
    }
    out
}

/// PHP's `compare_special_version_forms` order of a part (matched by prefix); -1 for any
/// other word.
fn rank(form: &[u8]) -> i32 {
    const FORMS: [(&[u8], i32); 10] = [
        (b"dev", 0),
        (b"alpha", 1),
        (b"a", 1),
        (b"beta", 2),
        (b"b", 2),
        (b"RC", 3),
        (b"rc", 3),
        (b"#", 4),
        (b"pl", 5),
        (b"p", 5),
    ];
    FORMS
        .iter()
        .find(|(name, _)| form.starts_with(name))
        .map_or(-1, |&(_, r)| r)
}

/// The form a number takes against a word (PHP compares it as `#N#`).
const NUMBER: &[u8] = b"#N#";

fn starts_with_digit(s: &[u8]) -> bool {
    s.first().is_some_and(u8::is_ascii_digit)
}

/// A part's leading digits as a number of any size. PHP's `strtol` saturates at the long's
/// limit (so 10^20 + 1 = 10^20 + 2 there); the OSV vectors, and intent, say otherwise.
fn cmp_numbers(a: &[u8], b: &[u8]) -> Ordering {
    let digits = |s: &[u8]| -> Vec<u8> {
        let d: Vec<u8> = s.iter().copied().take_while(u8::is_ascii_digit).collect();
        let zeros = d.iter().take_while(|&&c| c == b'0').count();
        d[zeros..].to_vec()
    };
    let (x, y) = (digits(a), digits(b));
    x.len().cmp(&y.len()).then_with(|| x.cmp(&y))
}

fn cmp_part(a: &[u8], b: &[u8]) -> Ordering {
    match (starts_with_digit(a), starts_with_digit(b)) {
        (true, true) => cmp_numbers(a, b),
        (false, false) => rank(a).cmp(&rank(b)),
        (true, false) => rank(NUMBER).cmp(&rank(b)),
        (false, true) => rank(a).cmp(&rank(NUMBER)),
    }
}

/// PHP's `php_version_compare`, part by part as its C loop walks them: it stops at the first
/// difference, or when either side has no further part or an empty one; then what is left of
/// the longer side weighs against `#N#`.
fn php_compare(v1: &[u8], v2: &[u8]) -> Ordering {
    match (v1.is_empty(), v2.is_empty()) {
        (true, true) => return Ordering::Equal,
        (true, false) => return Ordering::Less,
        (false, true) => return Ordering::Greater,
        (false, false) => {}
    }
    let canon = |v: &[u8]| {
        if v.first() == Some(&b'#') {
            v.to_vec()
        } else {
            canonical(v)
        }
    };
    let (c1, c2) = (canon(v1), canon(v2));
    let (mut p1, mut p2): (&[u8], &[u8]) = (&c1, &c2);
    // Whether a `.` followed the part just compared (C's n1/n2 not NULL).
    let (mut more1, mut more2) = (true, true);
    let mut result = Ordering::Equal;
    while !p1.is_empty() && !p2.is_empty() && more1 && more2 {
        let (part1, rest1) = split_part(p1);
        let (part2, rest2) = split_part(p2);
        more1 = rest1.is_some();
        more2 = rest2.is_some();
        result = cmp_part(part1, part2);
        if result != Ordering::Equal {
            break;
        }
        if let Some(r) = rest1 {
            p1 = r;
        }
        if let Some(r) = rest2 {
            p2 = r;
        }
    }
    if result == Ordering::Equal {
        // What is left of the side that goes on weighs against a number. PHP looks at the
        // first side first even when both are left with nothing (so it says "1.2.3.#" <
        // "1.2.3.#"); both empty is equal here, which keeps the order antisymmetric.
        let (rest1, rest2) = (more1 && !p1.is_empty(), more2 && !p2.is_empty());
        let first = rest1 || (!rest2 && more1 && !more2);
        let second = !rest1 && (rest2 || (more2 && !more1));
        if first {
            result = if starts_with_digit(p1) {
                Ordering::Greater
            } else {
                php_compare(p1, NUMBER)
            };
        } else if second {
            result = if starts_with_digit(p2) {
                Ordering::Less
            } else {
                php_compare(NUMBER, p2)
            };
        }
    }
    result
}

/// The part before the first `.`, and what follows that `.` (`None` without one).
fn split_part(p: &[u8]) -> (&[u8], Option<&[u8]>) {
    match p.iter().position(|&c| c == b'.') {
        Some(i) => (&p[..i], Some(&p[i + 1..])),
        None => (p, None),
    }
}

/// Compares two Packagist versions.
pub fn compare(a: &str, b: &str) -> Ordering {
    let strip = |s: &str| {
        let s = s.trim();
        s.strip_prefix(['v', 'V']).unwrap_or(s).to_string()
    };
    php_compare(strip(a).as_bytes(), strip(b).as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::version::vectors;

    #[test]
    fn edge_cases() {
        use Ordering::*;
        for (a, o, b) in [
            ("1.0-dev", Less, "1.0a1"),
            ("1.0rc1", Equal, "1.0RC1"),
            ("1.0", Less, "1.0pl1"),
            ("1.0.0", Greater, "1.0"),
            ("v1.2", Greater, "1.0.1"),
            ("dev-main", Less, "0.1"),
            ("", Equal, ""),
            ("1.0", Greater, ""),
        ] {
            assert_eq!(compare(a, b), o, "{a} vs {b}");
            assert_eq!(compare(b, a), o.reverse(), "{b} vs {a}");
        }
    }

    #[test]
    fn shared_vectors() {
        // PHP itself says `version_compare("1.2.3.#", "1.2.3")` and `("1.2.3.#", "1.2.3.1")`
        // are -1: `#` inside a version becomes a `.`, and the empty part left ranks below a
        // number (both directions agree there, so it is PHP's order, not a quirk).
        let php = [("1.2.3.#", "1.2.3"), ("1.2.3.#", "1.2.3.1")];
        vectors::assert_all_hold_but("packagist-versions.txt", 90, compare, &php);
        vectors::assert_all_hold("packagist-versions-generated.txt", 90, compare);
    }
}
