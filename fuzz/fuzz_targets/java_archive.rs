//! covers: catalog::lang::java (zip with nested jars, pom.properties, MANIFEST.MF)
#![no_main]
use libfuzzer_sys::fuzz_target;
use stalewatch_core::catalog::lang::{self, java, Manifest};

fuzz_target!(|data: &[u8]| {
    let mut given = false;
    let mut read = |_max: u64| {
        let chunk = if given { Vec::new() } else { data.to_vec() };
        given = true;
        Ok(chunk)
    };
    if let Ok(Some(summary)) = java::summarize("app/lib/fuzz.jar", &mut read) {
        let _ = java::parse_summary(&summary);
        let _ = lang::parse(Manifest::JavaArchive, &summary);
    }
    let _ = java::parse_summary(data);
});
