//! covers: image (OCI index, manifest, config; docker-archive manifest), lineage (image facts from a config and annotations)
#![no_main]
use libfuzzer_sys::fuzz_target;
use stalewatch_core::{image, lineage};

fuzz_target!(|data: &[u8]| {
    let _ = image::parse_document(data);
    if let Ok(index) = image::parse_index(data) {
        let _ = image::select_platform(&index.manifests, "amd64");
    }
    let annotations = match image::parse_manifest(data) {
        Ok(m) => m.string_annotations(),
        Err(_) => Default::default(),
    };
    let _ = image::parse_docker_manifest(data);
    if let Some(ids) = image::config_diff_ids(data) {
        let _ = image::chain_id(&ids);
    }
    // Labels are untrusted: their names are compared with the node's images, never followed.
    if let Some(facts) = lineage::ImageFacts::from_config(data, &annotations) {
        let node = [facts.clone()];
        if let Some(base) = lineage::detect(&facts, &[], &node) {
            let _ = lineage::newer_build(&facts, &base, &node);
        }
        for v in facts.labels.values() {
            let _ = lineage::normalize_reference(v);
        }
    }
});
