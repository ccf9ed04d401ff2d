//! Packagist (Composer) ordering: PHP's `version_compare` on versions without their leading
//! `v`. A version is canonicalised (`-`, `_`, `+` become `.`, and a `.` goes between a digit and
//! a non-digit), then compared part by part: numbers as numbers; words by their special-form
//! rank, found by prefix (`dev` < `alpha`/`a` < `beta`/`b` < `RC`/`rc` < `#` and numbers <
//! `pl`/`p`; any other word ranks lowest); when one side runs out, the other's next part
//! decides (a number: it is greater; a word: its rank against a number's).

use std::cmp::Ordering;

fn canonical(v: &str) -> String {
    let mut out = String::with_capacity(v.len() + 4);
    let mut last: Option<char> = None;
    for c in v.chars() {
        if matches!(c, '-' | '_' | '+') {
            if !out.is_empty() && !out.ends_with('.') {
                out.push('.');
            }
            last = Some(c);
            continue;
        }
        if let Some(l) = last {
            let digit = |x: char| x.is_ascii_digit();
            let word = |x: char| !x.is_ascii_digit() && x != '.';
            if ((word(l) && digit(c)) || (digit(l) && word(c))) && !out.ends_with('.') {
                out.push('.');
            }
        }
        out.push(c);
        last = Some(c);
    }
    out
}

/// The rank of a word part (PHP's special version forms, matched by prefix).
fn rank(form: &str) -> i32 {
    const FORMS: [(&str, i32); 10] = [
        ("dev", 0),
        ("alpha", 1),
        ("a", 1),
        ("beta", 2),
        ("b", 2),
        ("RC", 3),
        ("rc", 3),
        ("#", 4),
        ("pl", 5),
        ("p", 5),
    ];
    FORMS
        .iter()
        .find(|(name, _)| form.starts_with(name))
        .map_or(-6, |&(_, r)| r)
}

/// A number's rank among words (`#`).
const NUMBER: i32 = 4;

fn starts_with_digit(s: &str) -> bool {
    s.starts_with(|c: char| c.is_ascii_digit())
}

/// Compares digit runs of any length as numbers (PHP reads the leading digits of a part).
fn cmp_numbers(a: &str, b: &str) -> Ordering {
    let digits = |s: &str| -> String {
        let d: String = s.chars().take_while(char::is_ascii_digit).collect();
        let t = d.trim_start_matches('0');
        t.to_string()
    };
    let (x, y) = (digits(a), digits(b));
    x.len().cmp(&y.len()).then_with(|| x.cmp(&y))
}

fn cmp_part(a: &str, b: &str) -> Ordering {
    match (starts_with_digit(a), starts_with_digit(b)) {
        (true, true) => cmp_numbers(a, b),
        (false, false) => rank(a).cmp(&rank(b)),
        (true, false) => NUMBER.cmp(&rank(b)),
        (false, true) => rank(a).cmp(&NUMBER),
    }
}

/// What the rest of a longer version weighs against nothing more: a number wins; a word
/// part counts by its rank against a number's, and then what follows it.
fn cmp_rest(rest: &[&str]) -> Ordering {
    match rest.first() {
        None => Ordering::Equal,
        Some(p) if starts_with_digit(p) => Ordering::Greater,
        Some(p) => rank(p).cmp(&NUMBER).then_with(|| cmp_rest(&rest[1..])),
    }
}

/// Compares two Packagist versions.
pub fn compare(a: &str, b: &str) -> Ordering {
    let strip = |s: &str| {
        let s = s.trim();
        s.strip_prefix(['v', 'V']).unwrap_or(s).to_string()
    };
    let (ca, cb) = (canonical(&strip(a)), canonical(&strip(b)));
    let pa: Vec<&str> = ca.split('.').collect();
    let pb: Vec<&str> = cb.split('.').collect();
    for (x, y) in pa.iter().zip(pb.iter()) {
        let c = cmp_part(x, y);
        if c != Ordering::Equal {
            return c;
        }
    }
    match pa.len().cmp(&pb.len()) {
        Ordering::Equal => Ordering::Equal,
        Ordering::Greater => cmp_rest(&pa[pb.len()..]),
        Ordering::Less => cmp_rest(&pb[pa.len()..]).reverse(),
    }
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
        vectors::assert_all_hold("packagist-versions.txt", 90, compare);
        vectors::assert_all_hold("packagist-versions-generated.txt", 90, compare);
    }
}
