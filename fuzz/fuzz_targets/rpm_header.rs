//! covers: catalog::rpm::header
#![no_main]
use libfuzzer_sys::fuzz_target;
use stalewatch_core::catalog::rpm::header::Header;

fuzz_target!(|data: &[u8]| {
    if let Ok(h) = Header::parse(data) {
        let _ = h.package();
        let _ = h.files();
        let _ = h.strings(1000);
        let _ = h.int32s(1003);
    }
});
