//! covers: triage::epss (FIRST's CSV, and the compact form `db update` stores)
#![no_main]
use libfuzzer_sys::fuzz_target;
use stalewatch_core::triage::EpssScores;

fuzz_target!(|data: &[u8]| {
    if let Ok(e) = EpssScores::parse(data) {
        assert!(e.is_consistent());
        let _ = e.get("CVE-2014-6271");
    }
    // As the store reads it back: only a consistent table is used.
    if let Ok(e) = postcard::from_bytes::<EpssScores>(data) {
        if e.is_consistent() {
            let _ = e.get("CVE-2014-6271");
            let _ = e.get("CVE-0-0");
        }
    }
});
