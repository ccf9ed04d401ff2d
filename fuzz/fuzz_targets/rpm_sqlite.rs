//! covers: catalog::rpm::sqlite, catalog::rpm (parse_any's format detection)
#![no_main]
use libfuzzer_sys::fuzz_target;
use stalewatch_core::catalog::rpm;

fuzz_target!(|data: &[u8]| {
    if let Ok(blobs) = rpm::sqlite::package_blobs(data) {
        let _ = rpm::packages_from_headers(blobs);
    }
    let _ = rpm::parse_any(data);
});
