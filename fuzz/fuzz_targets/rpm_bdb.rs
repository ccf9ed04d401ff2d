//! covers: catalog::rpm::bdb, catalog::rpm (headers of the blobs found)
#![no_main]
use libfuzzer_sys::fuzz_target;
use stalewatch_core::catalog::rpm;

fuzz_target!(|data: &[u8]| {
    if let Ok(blobs) = rpm::bdb::package_blobs(data) {
        let _ = rpm::packages_from_headers(blobs);
    }
});
