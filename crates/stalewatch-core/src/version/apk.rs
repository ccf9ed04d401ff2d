//! Alpine package version ordering as apk-tools 2.x (every Alpine 3.x release) defines it:
//! a token machine over digits, letters, `_suffix` with number, and `-rN` revision.
//! apk-tools 3 orders a few malformed versions differently; we follow the release's own apk.

use std::cmp::Ordering;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Token {
    Invalid = -1,
    DigitOrZero = 0,
    Digit = 1,
    Letter = 2,
    Suffix = 3,
    SuffixNo = 4,
    RevisionNo = 5,
    End = 6,
}

const PRE_SUFFIXES: [&str; 4] = ["alpha", "beta", "pre", "rc"];
const POST_SUFFIXES: [&str; 5] = ["cvs", "svn", "git", "hg", "p"];

struct Cursor<'a> {
    s: &'a [u8],
}

impl Cursor<'_> {
    /// Decides what kind of token follows, consuming its separator.
    fn next_token(&mut self, kind: &mut Token) {
        let mut n = Token::Invalid;
        match self.s.first().copied() {
            None | Some(0) => n = Token::End,
            Some(c) if matches!(kind, Token::Digit | Token::DigitOrZero) && c.is_ascii_lowercase() => {
                n = Token::Letter
            }
            Some(c) if *kind == Token::Letter && c.is_ascii_digit() => n = Token::Digit,
            Some(c) if *kind == Token::Suffix && c.is_ascii_digit() => n = Token::SuffixNo,
            Some(c) => {
                match c {
                    b'.' => n = Token::DigitOrZero,
                    b'_' => n = Token::Suffix,
                    b'-' if self.s.get(1) == Some(&b'r') => {
                        n = Token::RevisionNo;
                        self.s = &self.s[1..];
                    }
                    _ => {}
                }
                self.s = &self.s[1..];
            }
        }
        if n < *kind
            && !((n == Token::DigitOrZero && *kind == Token::Digit)
                || (n == Token::Suffix && *kind == Token::SuffixNo)
                || (n == Token::Digit && *kind == Token::Letter))
        {
            n = Token::Invalid;
        }
        *kind = n;
    }

    /// Reads the value of a token of the given kind and advances `kind` to the next one.
    fn get_token(&mut self, kind: &mut Token) -> i128 {
        if self.s.is_empty() {
            *kind = Token::End;
            return 0;
        }
        let mut i = 0;
        let mut v: i128 = 0;
        let mut next = Token::Invalid;
        let digits = |s: &[u8], i: &mut usize, v: &mut i128| {
            while *i < s.len() && s[*i].is_ascii_digit() {
                *v = v.saturating_mul(10).saturating_add((s[*i] - b'0') as i128);
                *i += 1;
            }
        };
        match *kind {
            Token::DigitOrZero if self.s[0] == b'0' => {
                // Leading zeros: a component like ".01" sorts below ".1".
                while i < self.s.len() && self.s[i] == b'0' {
                    i += 1;
                }
                next = Token::Digit;
                v = -(i as i128);
            }
            Token::DigitOrZero | Token::Digit | Token::SuffixNo | Token::RevisionNo => {
                digits(self.s, &mut i, &mut v)
            }
            Token::Letter => {
                v = self.s[0] as i128;
                i = 1;
            }
            Token::Suffix => {
                if let Some(k) = PRE_SUFFIXES.iter().position(|p| self.s.starts_with(p.as_bytes())) {
                    i = PRE_SUFFIXES[k].len();
                    v = k as i128 - PRE_SUFFIXES.len() as i128;
                } else if let Some(k) = POST_SUFFIXES
                    .iter()
                    .position(|p| self.s.starts_with(p.as_bytes()))
                {
                    i = POST_SUFFIXES[k].len();
                    v = k as i128;
                } else {
                    *kind = Token::Invalid;
                    return -1;
                }
            }
            _ => {
                *kind = Token::Invalid;
                return -1;
            }
        }
        self.s = &self.s[i..];
        if self.s.is_empty() {
            *kind = Token::End;
        } else if next != Token::Invalid {
            *kind = next;
        } else {
            self.next_token(kind);
        }
        v
    }
}

/// Compares two Alpine package versions.
pub fn compare(a: &str, b: &str) -> Ordering {
    let mut ca = Cursor {
        s: a.trim().as_bytes(),
    };
    let mut cb = Cursor {
        s: b.trim().as_bytes(),
    };
    let (mut at, mut bt) = (Token::Digit, Token::Digit);
    let (mut av, mut bv) = (0i128, 0i128);
    while at == bt && at != Token::End && at != Token::Invalid && av == bv {
        av = ca.get_token(&mut at);
        bv = cb.get_token(&mut bt);
    }
    if av != bv {
        return av.cmp(&bv);
    }
    if at == bt {
        return Ordering::Equal;
    }
    // Equal so far: the longer version is newer, unless what follows is a pre-release suffix.
    let mut tt = at;
    if at == Token::Suffix && ca.get_token(&mut tt) < 0 {
        return Ordering::Less;
    }
    let mut tt = bt;
    if bt == Token::Suffix && cb.get_token(&mut tt) < 0 {
        return Ordering::Greater;
    }
    bt.cmp(&at)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::version::vectors;

    #[test]
    fn edge_cases() {
        assert_eq!(compare("3.3.2-r0", "3.3.2-r1"), Ordering::Less);
        assert_eq!(compare("1.1_rc1", "1.1"), Ordering::Less);
        assert_eq!(compare("2.0_rc7-r0", "2.0-r0"), Ordering::Less);
        // apk-tools 2 quirk: a trailing zero component followed by a suffix and no revision.
        assert_eq!(compare("1.0_rc1", "1.0"), Ordering::Greater);
        assert_eq!(compare("1.0_p1", "1.0"), Ordering::Greater);
        assert_eq!(compare("1.0_alpha", "1.0_beta"), Ordering::Less);
        assert_eq!(compare("1.36.1-r29", "1.36.1-r30"), Ordering::Less);
        assert_eq!(compare("2.0a", "2.0"), Ordering::Greater);
        assert_eq!(compare("1.01", "1.1"), Ordering::Less);
        assert_eq!(
            compare("1.0.0_pre20191002222144-r0", "1.0.0_pre20210530193627-r0"),
            Ordering::Less
        );
        assert_eq!(compare("", "1"), Ordering::Less);
    }

    /// The vectors whose expected result is apk-tools 3's (shared/data/SOURCES.md):
    /// apk-tools 2, which every Alpine 3.x release ships, orders them the other way.
    const APK3_ONLY: [&str; 8] = [
        "1-r-0 < 1-r0",
        "1-r-1 < 1-r0",
        "0.r1 < 0r2",
        "0.8.21.r2 < 0.8.21r2",
        "1.2.0A < 1.2.0d",
        "1.2.0D < 1.2.0d",
        "1 > 1-ruff",
        "1-ruff2 = 1--ruff1",
    ];

    #[test]
    fn shared_vectors() {
        let (total, bad) = vectors::failures(&vectors::shared("alpine-versions.txt"), compare);
        let mut bad: Vec<String> = bad
            .iter()
            .map(|(a, o, b)| {
                let op = match o {
                    Ordering::Less => "<",
                    Ordering::Equal => "=",
                    Ordering::Greater => ">",
                };
                format!("{a} {op} {b}")
            })
            .collect();
        bad.sort();
        let mut known: Vec<String> = APK3_ONLY.iter().map(|s| s.to_string()).collect();
        known.sort();
        assert!(total > 700);
        assert_eq!(bad, known, "only the apk-tools-3 vectors may differ");

        let (total, bad) = vectors::failures(&vectors::shared("alpine-versions-generated.txt"), compare);
        assert!(total > 13000);
        assert!(
            bad.is_empty(),
            "{} of {total} fail: {:?}",
            bad.len(),
            &bad[..bad.len().min(10)]
        );
    }
}
