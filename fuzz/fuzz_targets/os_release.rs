//! covers: os
#![no_main]
use libfuzzer_sys::fuzz_target;
use stalewatch_core::os;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let fields = os::parse_os_release(&text);
    if let (Some(id), Some(v)) = (fields.get("ID"), fields.get("VERSION_ID")) {
        let _ = os::ecosystem_for(id, v, fields.get("VERSION").map_or("", String::as_str));
    }
    // The same bytes as every release file detection reads.
    let _ = os::detect(&|_| Some(data.to_vec()));
});
