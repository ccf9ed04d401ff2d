//! covers: catalog::lang::npm
#![no_main]
use libfuzzer_sys::fuzz_target;
use stalewatch_core::catalog::lang::{self, Manifest};

fuzz_target!(|data: &[u8]| {
    let _ = lang::parse(Manifest::NpmLock, data);
});
