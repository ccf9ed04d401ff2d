//! Every input a fuzz target found is fed again to the public functions it broke, from
//! tests/fixtures/fuzz-regressions/<target>-<what> (the minimised reproducer as libFuzzer
//! wrote it). The version findings were orderings that are not transitive: there the oracle
//! is the ecosystem's own tool, which must give the same three answers (so the cycle is its,
//! and stalewatch follows it) while stalewatch's order stays reflexive and antisymmetric.

mod common;

use std::cmp::Ordering;
use std::path::Path;
use std::process::Command;

use common::{require, with_stdin};
use stalewatch_core::version::Scheme;

/// An ecosystem's own comparison: a ? b, b ? c, c ? a.
type Peer = fn(&[String; 3]) -> [Ordering; 3];

const MAVEN_ARTIFACT: &str =
    "/usr/share/maven-repo/org/apache/maven/maven-artifact/3.8.7/maven-artifact-3.8.7.jar";

fn reproducers(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/fuzz-regressions");
    let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| {
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .filter(|(n, _)| n.starts_with(&format!("{target}-")))
        .collect();
    out.sort();
    out
}

/// The three versions as the version_order target reads them.
fn triple(data: &[u8]) -> [String; 3] {
    let text = String::from_utf8_lossy(data);
    let mut parts = text.splitn(3, '\n').map(str::to_string);
    [(); 3].map(|()| parts.next().unwrap_or_default())
}

/// a ? b, b ? c, c ? a.
fn cycle(cmp: impl Fn(&str, &str) -> Ordering, [a, b, c]: &[String; 3]) -> [Ordering; 3] {
    [cmp(a, b), cmp(b, c), cmp(c, a)]
}

/// Maven's own ComparableVersion (Debian's maven 3.8.7): it prints each consecutive pair.
fn maven(v: &[String; 3]) -> [Ordering; 3] {
    let out = Command::new("java")
        .env("LC_ALL", "C.UTF-8")
        .args([
            "-cp",
            MAVEN_ARTIFACT,
            "org.apache.maven.artifact.versioning.ComparableVersion",
        ])
        .args([&v[0], &v[1], &v[2], &v[0]])
        .output()
        .expect("run java");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    let answers: Vec<Ordering> = text
        .lines()
        .filter(|l| l.starts_with("   "))
        .map(|l| match l {
            l if l.contains(" < ") => Ordering::Less,
            l if l.contains(" > ") => Ordering::Greater,
            l if l.contains(" == ") => Ordering::Equal,
            l => panic!("unexpected Maven line {l:?}"),
        })
        .collect();
    answers
        .try_into()
        .unwrap_or_else(|a| panic!("Maven printed {a:?} for {v:?}: {text}"))
}

/// PHP's own version_compare (Debian's php-cli), the versions passed in hex (they hold NULs).
fn php(v: &[String; 3]) -> [Ordering; 3] {
    let hex = |s: &str| s.bytes().map(|b| format!("{b:02x}")).collect::<String>();
    let input: String = [(0, 1), (1, 2), (2, 0)]
        .iter()
        .map(|&(i, j)| format!("{} {}\n", hex(&v[i]), hex(&v[j])))
        .collect();
    let script = r#"while (($l = fgets(STDIN)) !== false) { [$a, $b] = explode(" ", trim($l)); echo version_compare(hex2bin($a), hex2bin($b)), "\n"; }"#;
    let out = with_stdin("php", &["-r", script], &input);
    assert!(out.status.success());
    let answers: Vec<Ordering> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| l.parse::<i32>().unwrap().cmp(&0))
        .collect();
    answers.try_into().unwrap()
}

#[test]
fn version_order_reproducers() {
    let found = reproducers("version_order");
    assert!(
        found.len() >= 2,
        "reproducers: {:?}",
        found.iter().map(|f| &f.0).collect::<Vec<_>>()
    );
    for (name, data) in found {
        let v = triple(&data);
        for s in Scheme::ALL {
            for a in &v {
                assert_eq!(
                    s.compare(a, a),
                    Ordering::Equal,
                    "{name}: {s:?} reflexivity of {a:?}"
                );
                for b in &v {
                    assert_eq!(
                        s.compare(a, b),
                        s.compare(b, a).reverse(),
                        "{name}: {s:?} antisymmetry {a:?} {b:?}"
                    );
                }
            }
        }
        let (scheme, peer): (Scheme, Peer) = if name.contains("maven") {
            if !require("java", "the Maven reproducer against Maven") {
                continue;
            }
            (Scheme::Maven, maven)
        } else if name.contains("packagist") {
            if !require("php", "the Packagist reproducer against PHP") {
                continue;
            }
            (Scheme::Packagist, php)
        } else {
            panic!("{name}: which scheme's reproducer is this?");
        };
        let theirs = peer(&v);
        let ours = cycle(|a, b| scheme.compare(a, b), &v);
        assert_eq!(ours, theirs, "{name}: {scheme:?} on {v:?} vs its own tool");
        // The peer's cycle: a <= b <= c yet c < a (or the reverse), so no order can be both
        // transitive and the peer's.
        let all_le = theirs.iter().all(|o| *o != Ordering::Greater) && theirs.contains(&Ordering::Less);
        let all_ge = theirs.iter().all(|o| *o != Ordering::Less) && theirs.contains(&Ordering::Greater);
        assert!(
            all_le || all_ge,
            "{name}: {theirs:?} is no cycle: the exemption in the fuzz target is stale"
        );
    }
}
