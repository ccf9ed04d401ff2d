//! stalewatch's Packagist ordering against PHP's own `version_compare` (Debian's php-cli) on
//! generated versions: digits, the special forms, words, and separators and other bytes PHP
//! canonicalises, in every mix. Deliberate differences, left out here: numbers beyond a
//! 64-bit long (PHP's `strtol` saturates; stalewatch compares them exactly, as the OSV vectors
//! do) and a leading `v` (Composer strips it; PHP does not).

mod common;

use common::{require, with_stdin};
use stalewatch_core::version::Scheme;

/// Versions from a fixed-seed generator (xorshift): tokens glued by separators.
fn generated(n: usize) -> Vec<String> {
    const TOKENS: [&str; 26] = [
        "0", "1", "2", "10", "007", "dev", "alpha", "a", "beta", "b", "RC", "rc", "#", "pl", "p", "patch",
        "x", "stable", "", "9", "foo", "A", "B1", "1a", ":", "é",
    ];
    const GLUE: [&str; 8] = [".", "-", "_", "+", "", "..", "#", ";"];
    let mut s: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = |m: usize| {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        (s % m as u64) as usize
    };
    (0..n)
        .map(|_| {
            let mut v = String::new();
            for i in 0..next(6) {
                if i > 0 {
                    v.push_str(GLUE[next(GLUE.len())]);
                }
                v.push_str(TOKENS[next(TOKENS.len())]);
            }
            v
        })
        .filter(|v| !v.starts_with(['v', 'V']) && v.trim() == v)
        .collect()
}

#[test]
fn packagist_order_equals_php_version_compare() {
    if !require("php", "Packagist ordering against PHP") {
        return;
    }
    let versions = generated(700);
    let mut pairs: Vec<(String, String)> = Vec::new();
    for (i, a) in versions.iter().enumerate() {
        for b in versions.iter().skip(i + 1).step_by(5) {
            pairs.push((a.clone(), b.clone()));
        }
    }
    // The version_order fuzz target's counterexample to transitivity (before this was PHP's).
    for (a, b) in [
        (":.+#+#;;;;", "A"),
        ("A", "\u{fffd}5\u{1c}"),
        (":.+#+#;;;;", "\u{fffd}5\u{1c}"),
    ] {
        pairs.push((a.into(), b.into()));
    }
    // Each pair both ways: where PHP contradicts itself (a < b and b < a: it says
    // "1.2.3.#" < "1.2.3.#"), stalewatch keeps the order antisymmetric instead.
    let input: String = pairs
        .iter()
        .map(|(a, b)| format!("{a}\t{b}\n{b}\t{a}\n"))
        .collect();
    let script = r#"while (($l = fgets(STDIN)) !== false) { [$a, $b] = explode("\t", rtrim($l, "\n"), 2); echo version_compare($a, $b), "\n"; }"#;
    let out = with_stdin("php", &["-r", script], &input);
    assert!(out.status.success());
    let php: Vec<i32> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| l.parse().unwrap())
        .collect();
    assert_eq!(php.len(), 2 * pairs.len());
    let mut contradictions = 0;
    let mut differ: Vec<String> = Vec::new();
    for ((a, b), both) in pairs.iter().zip(php.chunks(2)) {
        let (p, back) = (both[0], both[1]);
        let ours = Scheme::Packagist.compare(a, b) as i32;
        assert_eq!(
            ours,
            -(Scheme::Packagist.compare(b, a) as i32),
            "{a:?} vs {b:?}: not antisymmetric"
        );
        if p != -back {
            contradictions += 1;
        } else if ours != p {
            differ.push(format!("{a:?} vs {b:?}: php {p}, stalewatch {ours}"));
        }
    }
    eprintln!(
        "{contradictions} of {} pairs PHP orders both ways alike (left out)",
        pairs.len()
    );
    assert!(
        contradictions * 50 < pairs.len(),
        "{contradictions} contradictions"
    );
    assert!(pairs.len() > 40_000, "{} pairs", pairs.len());
    assert!(
        differ.is_empty(),
        "{} of {} pairs differ:\n{}",
        differ.len(),
        pairs.len(),
        differ[..differ.len().min(30)].join("\n")
    );
}
