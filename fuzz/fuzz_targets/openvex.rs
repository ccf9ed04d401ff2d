//! covers: triage::vex, triage::purl
#![no_main]
use libfuzzer_sys::fuzz_target;
use stalewatch_core::triage::purl::Purl;
use stalewatch_core::triage::vex::{parse_document, ImageIdentity, VexSet};

fuzz_target!(|data: &[u8]| {
    if let Ok(doc) = parse_document(data, "fuzz.json", 0) {
        let set = VexSet::new(vec![doc]);
        let image = ImageIdentity {
            digest: Some("sha256:abc".into()),
            name: Some("app".into()),
        };
        let _ = set.verdict(["CVE-2014-6271"], "pkg:deb/debian/bash@4.2?arch=amd64", &image);
    }
    let text = String::from_utf8_lossy(data);
    if let Some(p) = Purl::parse(&text) {
        let _ = p.covers(&p);
    }
});
