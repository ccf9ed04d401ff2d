//! covers: catalog::lang::golang, catalog::lang::elf (Go build info found in an ELF window)
#![no_main]
use libfuzzer_sys::fuzz_target;
use stalewatch_core::catalog::lang::{self, golang, Manifest};

fuzz_target!(|data: &[u8]| {
    let _ = golang::parse_summary(data);
    let _ = lang::parse(Manifest::GoBinary, data);
});
