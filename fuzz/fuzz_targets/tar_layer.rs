//! covers: layer::decompress, layer::tar, layer::tree, layer::filter, layer::path, catalog (every cataloger
//! reached from a layer: OS databases, language manifests, ELF/Go/cargo-auditable/jar summaries)
#![no_main]
use libfuzzer_sys::fuzz_target;
use stalewatch_core::catalog;
use stalewatch_core::layer::tree::FileTree;
use stalewatch_core::layer::{decompress, tar::TarReader, Diagnostics};

fuzz_target!(|data: &[u8]| {
    // Plain, gzip or zstd, as the stream's magic says; decompressed size capped.
    let Ok(stream) = decompress::open(data, 64 << 20) else {
        return;
    };
    let mut tar = TarReader::new(stream);
    let mut tree = FileTree::new();
    let mut diag = Diagnostics::default();
    let limits = catalog::limits();
    let _ = tree.apply_layer_with(
        &mut tar,
        &catalog::wants,
        Some(&catalog::lang::BINARIES),
        &limits,
        "sha256:fuzz",
        &mut diag,
    );
    let _ = catalog::catalog(&tree, &mut diag);
});
