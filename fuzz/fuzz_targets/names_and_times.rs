//! covers: ecosystem, time, node_image
#![no_main]
use libfuzzer_sys::fuzz_target;
use stalewatch_core::ecosystem::{self, Ecosystem};
use stalewatch_core::{node_image, time};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    // An ecosystem name: its base is its start, its release what follows the first colon.
    let e = Ecosystem::parse(&text);
    assert!(text.starts_with(e.base));
    assert_eq!(ecosystem::base(&text), e.base);
    if let Some(r) = e.release {
        assert_eq!(format!("{}:{r}", e.base), text);
    }
    // A date-time (records' published, images' created, VEX and KEV dates): whatever parses
    // formats back to a text that parses to the same instant.
    // (RFC 3339 has four-digit years: 9999-12-31 with a negative offset is in year 10000.)
    if let Some(secs) = time::rfc3339_seconds(&text).filter(|s| *s < 253_402_300_800) {
        let back = time::format_rfc3339(secs);
        assert_eq!(time::rfc3339_seconds(&back), Some(secs), "{text:?} -> {back}");
    }
    // A node image version: a date it encodes is a whole day.
    if let Some(day) = node_image::build_date(&text) {
        assert_eq!(day % 86_400, 0, "{text:?}");
    }
});
