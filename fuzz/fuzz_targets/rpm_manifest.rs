//! covers: catalog::rpm::manifest
#![no_main]
use libfuzzer_sys::fuzz_target;
use stalewatch_core::catalog::rpm::manifest::parse_manifest;

fuzz_target!(|data: &[u8]| {
    let out = parse_manifest(data);
    // Every non-blank line is a package or a malformed one: none is lost silently.
    let lines = data
        .split(|&b| b == b'\n')
        .filter(|l| !l.iter().all(u8::is_ascii_whitespace))
        .count();
    assert_eq!(out.packages.len() as u64 + out.malformed, lines as u64);
    for p in &out.packages {
        assert!(!p.name.is_empty() && !p.version.is_empty());
    }
});
