//! covers: catalog::lang::auditable (the .dep-v0 section found from an ELF's head and tail)
#![no_main]
use libfuzzer_sys::fuzz_target;
use stalewatch_core::catalog::lang::{self, auditable, Manifest};

fuzz_target!(|data: &[u8]| {
    let half = data.len() / 2;
    if let Some(section) = auditable::dep_section(&data[..half], &data[half..], half as u64) {
        let summary = auditable::summary(&section);
        let _ = auditable::parse_summary(&summary);
    }
    let _ = auditable::parse_summary(data);
    let _ = lang::parse(Manifest::RustBinary, data);
});
