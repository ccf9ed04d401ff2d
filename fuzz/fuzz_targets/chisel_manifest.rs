//! covers: catalog::chisel
#![no_main]
use libfuzzer_sys::fuzz_target;
use stalewatch_core::catalog::chisel::{parse_jsonwall, parse_manifest};

fuzz_target!(|data: &[u8]| {
    // As found in an image (zstd), and as the decompressed text the parser reads.
    let _ = parse_manifest(data);
    if let Ok(out) = parse_jsonwall(data) {
        for p in &out.packages {
            assert!(!p.name.is_empty() && !p.version.is_empty() && p.source_name.is_empty());
        }
    }
});
