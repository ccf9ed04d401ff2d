//! RubyGems ordering (`Gem::Version`): a version is a list of numeric and alphabetic segments
//! (`1.0.a2` → 1, 0, "a", 2; `-` means `.pre.`); trailing zeros of the numeric part and of
//! each later run are dropped; a string segment sorts before a number (a pre-release), strings
//! compare as bytes. Total on any input: characters other than digits and letters separate.

use std::cmp::Ordering;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment<'a> {
    Number(u128),
    Text(&'a str),
}

fn segments(v: &str) -> Vec<Segment<'_>> {
    let mut out = Vec::new();
    let bytes = v.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'-' {
            // `1.0-beta` is `1.0.pre.beta`.
            out.push(Segment::Text("pre"));
            i += 1;
        } else if b.is_ascii_digit() {
            let start = i;
            while i < bytes.len() && bytes[i].is_ascii_digit() {
                i += 1;
            }
            let n = v[start..i].bytes().fold(0u128, |n, d| {
                n.saturating_mul(10).saturating_add(u128::from(d - b'0'))
            });
            out.push(Segment::Number(n));
        } else if b.is_ascii_alphabetic() {
            let start = i;
            while i < bytes.len() && bytes[i].is_ascii_alphabetic() {
                i += 1;
            }
            out.push(Segment::Text(&v[start..i]));
        } else {
            i += 1;
        }
    }
    out
}

/// `Gem::Version#canonical_segments`: the numeric prefix and the rest, each without trailing
/// zeros.
fn canonical(v: &str) -> Vec<Segment<'_>> {
    let mut all = segments(v.trim());
    let split = all
        .iter()
        .position(|s| matches!(s, Segment::Text(_)))
        .unwrap_or(all.len());
    let mut rest = all.split_off(split);
    let trim = |s: &mut Vec<Segment>| {
        while s.last() == Some(&Segment::Number(0)) {
            s.pop();
        }
    };
    trim(&mut all);
    trim(&mut rest);
    all.extend(rest);
    all
}

/// Compares two RubyGems versions.
pub fn compare(a: &str, b: &str) -> Ordering {
    let (x, y) = (canonical(a), canonical(b));
    for i in 0..x.len().max(y.len()) {
        let l = x.get(i).cloned().unwrap_or(Segment::Number(0));
        let r = y.get(i).cloned().unwrap_or(Segment::Number(0));
        let c = match (&l, &r) {
            (Segment::Number(p), Segment::Number(q)) => p.cmp(q),
            (Segment::Text(p), Segment::Text(q)) => p.cmp(q),
            (Segment::Text(_), Segment::Number(_)) => Ordering::Less,
            (Segment::Number(_), Segment::Text(_)) => Ordering::Greater,
        };
        if c != Ordering::Equal {
            return c;
        }
    }
    Ordering::Equal
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::version::vectors;

    #[test]
    fn edge_cases() {
        use Ordering::*;
        for (a, o, b) in [
            ("1.0", Equal, "1"),
            ("1.0.a", Less, "1.0"),
            ("1.0.a1", Less, "1.0.b1"),
            ("1.0-beta", Equal, "1.0.pre.beta"),
            ("1.0.0.rc1", Less, "1.0.0"),
            ("1.10", Greater, "1.9"),
            ("1.0.a.0", Equal, "1.0.a"),
            ("", Equal, "0"),
        ] {
            assert_eq!(compare(a, b), o, "{a} vs {b}");
            assert_eq!(compare(b, a), o.reverse(), "{b} vs {a}");
        }
    }

    #[test]
    fn shared_vectors() {
        vectors::assert_all_hold("rubygems-versions.txt", 15, compare);
        vectors::assert_all_hold("rubygems-versions-generated.txt", 15, compare);
    }
}
