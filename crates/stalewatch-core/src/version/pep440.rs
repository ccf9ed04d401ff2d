//! PEP 440 ordering (PyPI): `[N!]N(.N)*[{a|b|rc}N][.postN][.devN][+local]`, with the spelling
//! variants the specification normalises (`alpha`, `c`, `pre`, `-1` for `.post1`, separators,
//! case, a leading `v`). Strings that are not PEP 440 versions sort before every valid one, and
//! among themselves as text, so the order stays total.

use std::cmp::Ordering;

/// A pre-release, post-release or development part: absent parts sort per PEP 440 through
/// these ranks.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Pre {
    /// `X.devN` without a pre or post part sorts before `XaN`.
    DevOnly,
    Some(u8, u64),
    None,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum LocalPart {
    // Strings sort before numbers in a local label.
    Text(String),
    Number(u64),
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Parsed {
    epoch: u64,
    release: Vec<u64>,
    pre: Pre,
    /// `None` sorts before any post-release.
    post: Option<u64>,
    /// `None` (no dev part) sorts after any dev release: stored inverted.
    dev: DevRank,
    local: Vec<LocalPart>,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum DevRank {
    Dev(u64),
    Final,
}

/// Splits off a leading run of ASCII digits as a number (saturating).
fn number(s: &str) -> Option<(u64, &str)> {
    let end = s.bytes().position(|b| !b.is_ascii_digit()).unwrap_or(s.len());
    if end == 0 {
        return None;
    }
    let n = s[..end].bytes().fold(0u64, |n, d| {
        n.saturating_mul(10).saturating_add(u64::from(d - b'0'))
    });
    Some((n, &s[end..]))
}

fn strip_separator(s: &str) -> &str {
    s.strip_prefix(['.', '-', '_']).unwrap_or(s)
}

/// The optional number after a pre/post/dev word (`rc1`, `rc.1`, `rc`): 0 when absent.
fn optional_number(s: &str) -> (u64, &str) {
    let after = strip_separator(s);
    match number(after) {
        Some((n, rest)) => (n, rest),
        None => (0, s),
    }
}

fn word<'a>(s: &'a str, words: &[&str]) -> Option<(&'a str, &'a str)> {
    // Longest first: `preview` before `pre`.
    words
        .iter()
        .filter(|w| s.starts_with(**w))
        .max_by_key(|w| w.len())
        .map(|w| (&s[..w.len()], &s[w.len()..]))
}

#[allow(clippy::too_many_lines)] // PEP 440's grammar, one clause after another in the spec's order
fn parse(v: &str) -> Option<Parsed> {
    let lower = v.trim().to_ascii_lowercase();
    let mut s = lower.strip_prefix('v').unwrap_or(&lower);
    let (public, local) = match s.split_once('+') {
        Some((p, l)) => (p, Some(l)),
        None => (s, None),
    };
    s = public;
    let mut epoch = 0;
    if let Some((e, rest)) = number(s).and_then(|(e, r)| r.strip_prefix('!').map(|r| (e, r))) {
        epoch = e;
        s = rest;
    }
    let mut release = Vec::new();
    loop {
        let (n, rest) = number(s)?;
        release.push(n);
        s = rest;
        match s.strip_prefix('.') {
            Some(r) if r.starts_with(|c: char| c.is_ascii_digit()) => s = r,
            _ => break,
        }
    }
    let mut pre = Pre::None;
    {
        let t = strip_separator(s);
        if let Some((w, rest)) = word(t, &["alpha", "a", "beta", "b", "preview", "pre", "c", "rc"]) {
            let rank = match w {
                "alpha" | "a" => 0,
                "beta" | "b" => 1,
                _ => 2,
            };
            let (n, rest) = optional_number(rest);
            pre = Pre::Some(rank, n);
            s = rest;
        }
    }
    let mut post = None;
    if let Some(rest) = s
        .strip_prefix('-')
        .filter(|r| r.starts_with(|c: char| c.is_ascii_digit()))
    {
        let (n, rest) = number(rest)?;
        post = Some(n);
        s = rest;
    } else {
        let t = strip_separator(s);
        if let Some((_, rest)) = word(t, &["post", "rev", "r"]) {
            let (n, rest) = optional_number(rest);
            post = Some(n);
            s = rest;
        }
    }
    let mut dev = DevRank::Final;
    {
        let t = strip_separator(s);
        if let Some(rest) = t.strip_prefix("dev") {
            let (n, rest) = optional_number(rest);
            dev = DevRank::Dev(n);
            s = rest;
        }
    }
    if !s.is_empty() {
        return None;
    }
    let local = match local {
        None => Vec::new(),
        Some(l) => {
            let parts: Vec<&str> = l.split(['.', '-', '_']).collect();
            if parts
                .iter()
                .any(|p| p.is_empty() || !p.bytes().all(|b| b.is_ascii_alphanumeric()))
            {
                return None;
            }
            parts
                .into_iter()
                .map(|p| match number(p) {
                    Some((n, "")) => LocalPart::Number(n),
                    _ => LocalPart::Text(p.to_string()),
                })
                .collect()
        }
    };
    while release.len() > 1 && release.last() == Some(&0) {
        release.pop();
    }
    if pre == Pre::None && post.is_none() && dev != DevRank::Final {
        pre = Pre::DevOnly;
    }
    Some(Parsed {
        epoch,
        release,
        pre,
        post,
        dev,
        local,
    })
}

/// Compares two PyPI versions.
pub fn compare(a: &str, b: &str) -> Ordering {
    match (parse(a), parse(b)) {
        (Some(x), Some(y)) => x.cmp(&y),
        (None, Some(_)) => Ordering::Less,
        (Some(_), None) => Ordering::Greater,
        (None, None) => a.cmp(b),
    }
}

/// Whether a string is a valid PEP 440 version.
pub fn is_valid(v: &str) -> bool {
    parse(v).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::version::vectors;

    #[test]
    fn edge_cases() {
        use Ordering::*;
        for (a, o, b) in [
            ("1.0.dev0", Less, "1.0a0"),
            ("1.0a1", Less, "1.0b1"),
            ("1.0rc1", Equal, "1.0c1"),
            ("1.0.post1", Equal, "1.0-1"),
            ("1.0.post1", Equal, "1.0.r1"),
            ("1.0", Equal, "1.0.0"),
            ("1!0.1", Greater, "2.0"),
            ("1.0+abc", Less, "1.0+1"),
            ("1.0+1.2", Greater, "1.0+1"),
            ("1.0", Less, "1.0+anything"),
            ("1.0.post1.dev1", Less, "1.0.post1"),
            ("1.0a1.post1", Greater, "1.0a1"),
            ("V1.0", Equal, "1.0"),
            ("not a version", Less, "0"),
            ("1.0-alpha", Equal, "1.0a0"),
        ] {
            assert_eq!(compare(a, b), o, "{a} vs {b}");
            assert_eq!(compare(b, a), o.reverse(), "{b} vs {a}");
        }
        assert!(!is_valid("1.0+") && !is_valid("1..0") && !is_valid("") && is_valid("2024.1.0rc2"));
        // Huge numbers saturate, never panic.
        assert_eq!(compare("99999999999999999999999", "1"), Greater);
    }

    #[test]
    fn shared_vectors() {
        vectors::assert_all_hold("pypi-versions.txt", 15, compare);
        vectors::assert_all_hold("pypi-versions-generated.txt", 15, compare);
    }
}
