//! covers: advisory::index (the OSV bulk archive reader)
#![no_main]
use libfuzzer_sys::fuzz_target;
use stalewatch_core::advisory::EcosystemIndex;

fuzz_target!(|data: &[u8]| {
    let _ = EcosystemIndex::from_osv_zip("Alpine", std::io::Cursor::new(data));
});
