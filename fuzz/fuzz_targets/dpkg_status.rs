//! covers: catalog::dpkg
#![no_main]
use libfuzzer_sys::fuzz_target;
use stalewatch_core::catalog::{dpkg, ParseOutcome};
use stalewatch_core::layer::tree::filter_lines;

/// What the inventory keeps of each package.
fn kept(o: &ParseOutcome) -> Vec<(String, String, String, String, String)> {
    o.packages
        .iter()
        .map(|p| {
            let (n, v) = (p.name.clone(), p.version.clone());
            (
                n,
                v,
                p.source_name.clone(),
                p.source_version.clone(),
                p.arch.clone(),
            )
        })
        .collect()
}

fuzz_target!(|data: &[u8]| {
    let whole = dpkg::parse_status(data, true);
    let _ = dpkg::parse_status(data, false);
    let _ = dpkg::parse_list(data);
    // Streamed through the layer reader's filter, a status file yields the same packages.
    let filtered = dpkg::parse_status(&filter_lines(data, &mut *dpkg::status_filter()), true);
    assert_eq!(kept(&whole), kept(&filtered));
});
