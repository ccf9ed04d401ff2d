//! covers: advisory::file, advisory::set (a corrupt index file on disk)
#![no_main]
use libfuzzer_sys::fuzz_target;
use stalewatch_core::advisory::{IndexReader, IndexSet};

fuzz_target!(|data: &[u8]| {
    let Ok(reader) = IndexReader::open(Box::new(data.to_vec())) else {
        return;
    };
    let set = IndexSet::new([reader]);
    let releases: Vec<String> = set.full_ecosystems().map(str::to_string).collect();
    for r in releases.iter().take(4) {
        for name in ["openssl", "busybox", "musl", "a"] {
            if let Ok(Some((reader, entries))) = set.lookup(r, name) {
                for e in entries.iter().take(8) {
                    let _ = reader.advisory(e.advisory);
                }
            }
        }
    }
    let _ = set.severity_by_alias(["CVE-2024-9143".to_string()].iter());
});
