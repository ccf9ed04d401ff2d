//! covers: triage::kev
#![no_main]
use libfuzzer_sys::fuzz_target;
use stalewatch_core::triage::KevCatalog;

fuzz_target!(|data: &[u8]| {
    if let Ok(k) = KevCatalog::parse(data) {
        let _ = k.lookup(&["CVE-2014-6271".to_string()]);
    }
});
