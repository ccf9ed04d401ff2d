//! covers: advisory::osv, advisory::index, advisory::range, advisory::severity
#![no_main]
use libfuzzer_sys::fuzz_target;
use stalewatch_core::advisory::EcosystemIndex;

fuzz_target!(|data: &[u8]| {
    for eco in [
        "Alpine",
        "Debian",
        "AlmaLinux",
        "PyPI",
        "crates.io",
        "npm",
        "Go",
        "Maven",
    ] {
        let mut idx = EcosystemIndex::new(eco);
        idx.add_record_json(data);
    }
});
