//! covers: catalog::apk
#![no_main]
use libfuzzer_sys::fuzz_target;
use stalewatch_core::catalog::{self, apk, ParseOutcome};
use stalewatch_core::layer::tree::filter_lines;

/// What the inventory keeps of each package: its fields and its mappable files.
fn kept(o: &ParseOutcome) -> Vec<(String, String, String, String, String, Option<Vec<String>>)> {
    let mappable = |f: &Vec<String>| f.iter().filter(|f| catalog::mappable(f)).cloned().collect();
    o.packages
        .iter()
        .map(|p| {
            let (n, v) = (p.name.clone(), p.version.clone());
            let files = p.files.as_ref().map(mappable);
            (
                n,
                v,
                p.source_name.clone(),
                p.source_version.clone(),
                p.arch.clone(),
                files,
            )
        })
        .collect()
}

fuzz_target!(|data: &[u8]| {
    let whole = apk::parse_installed(data);
    // Streamed through the layer reader's filter, a database yields the same packages and
    // the same mappable files (the only ones the inventory keeps).
    let filtered = apk::parse_installed(&filter_lines(data, &mut *apk::installed_filter()));
    assert_eq!(kept(&whole), kept(&filtered));
});
