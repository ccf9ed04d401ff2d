//! covers: layer::cache_entry (the agent's stored layer deltas, applied and cataloged as a
//! restart does), catalog::Inventory as the image cache file holds it (JSON)
#![no_main]
use libfuzzer_sys::fuzz_target;
use stalewatch_core::catalog::{self, Inventory};
use stalewatch_core::layer::tree::{FileTree, Limits};
use stalewatch_core::layer::{cache_entry, Diagnostics};

fuzz_target!(|data: &[u8]| {
    let mut diag = Diagnostics::default();
    // The stored bytes with and without a valid header: the body is what postcard must survive.
    for bytes in [data.to_vec(), [b"SWLD\0\0\x04\0".as_slice(), data].concat()] {
        if let Some(delta) = cache_entry::decode(&bytes) {
            let mut tree = FileTree::new();
            tree.apply(&delta, &Limits::default(), "sha256:fuzz", &mut diag);
            let _ = catalog::catalog(&tree, &mut diag);
        }
    }
    let _ = serde_json::from_slice::<Inventory>(data);
});
