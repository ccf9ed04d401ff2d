//! covers: image (OCI index, manifest, config; docker-archive manifest)
#![no_main]
use libfuzzer_sys::fuzz_target;
use stalewatch_core::image;

fuzz_target!(|data: &[u8]| {
    let _ = image::parse_document(data);
    if let Ok(index) = image::parse_index(data) {
        let _ = image::select_platform(&index.manifests, "amd64");
    }
    let _ = image::parse_manifest(data);
    let _ = image::parse_docker_manifest(data);
    if let Some(ids) = image::config_diff_ids(data) {
        let _ = image::chain_id(&ids);
    }
});
