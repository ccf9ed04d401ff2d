//! covers: catalog::apk
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = stalewatch_core::catalog::apk::parse_installed(data);
});
