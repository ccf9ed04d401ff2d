//! covers: version (every scheme: never panics, reflexive, antisymmetric, transitive on
//! triples — but Maven and Packagist, whose own tools are not transitive, found here first
//! (docs/security.md): Debian's Maven 3.8.7 says `]` < `0a0ab-c` < `` and `]` > ``; PHP 8.2's
//! version_compare says `6+A\0\0\0.1` < `#.1c` < `5+5_-\x01c9` and the first > the last.
//! stalewatch follows them, so those two are held to the other properties only.)
#![no_main]
use libfuzzer_sys::fuzz_target;
use stalewatch_core::version::Scheme;
use std::cmp::Ordering;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut parts = text.splitn(3, '\n');
    let (a, b, c) = (
        parts.next().unwrap_or(""),
        parts.next().unwrap_or(""),
        parts.next().unwrap_or(""),
    );
    for s in Scheme::ALL {
        let ab = s.compare(a, b);
        assert_eq!(
            ab,
            s.compare(b, a).reverse(),
            "{s:?}: antisymmetry of {a:?} {b:?}"
        );
        assert_eq!(s.compare(a, a), Ordering::Equal, "{s:?}: reflexivity of {a:?}");
        let bc = s.compare(b, c);
        let transitive = !matches!(s, Scheme::Maven | Scheme::Packagist);
        if transitive && ab != Ordering::Greater && bc != Ordering::Greater {
            assert_ne!(
                s.compare(a, c),
                Ordering::Greater,
                "{s:?}: transitivity of {a:?} <= {b:?} <= {c:?}"
            );
        }
    }
});
