//! covers: catalog::dpkg
#![no_main]
use libfuzzer_sys::fuzz_target;
use stalewatch_core::catalog::dpkg;

fuzz_target!(|data: &[u8]| {
    let _ = dpkg::parse_status(data, true);
    let _ = dpkg::parse_status(data, false);
    let _ = dpkg::parse_list(data);
});
