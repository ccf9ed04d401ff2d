//! Bounds on what reading one image may cost, and how each wanted file is kept.

use super::filter::LineFilter;

/// How a wanted file is kept (catalogers decide by path: `catalog::keep`).
pub enum Keep {
    /// Whole, up to `Limits::max_file_bytes`.
    Whole,
    /// Whole, and skipped unread beyond this many bytes, with this reason (language
    /// manifests: `manifest_too_large`).
    UpTo(u64, &'static str),
    /// Streamed line by line through a filter that keeps only what its cataloger reads, so a
    /// database far larger than that is never in memory whole.
    Lines(fn() -> Box<dyn LineFilter>),
}

/// Bounds on what one image may cost.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// How each wanted file is kept.
    pub keep: fn(&str) -> Keep,
    /// A wanted file larger than this is skipped (and reported): 256 MiB by default, enough
    /// for the largest real rpm databases.
    pub max_file_bytes: u64,
    /// All kept files of one image together.
    pub max_kept_bytes: u64,
    /// Decompressed bytes of one layer (time bound against decompression bombs).
    pub max_layer_bytes: u64,
    /// Symlinks kept per image.
    pub max_symlinks: usize,
    /// Files whose earlier versions are kept when a later layer replaces or hides them (the
    /// package databases, so each package's first layer can be told): none by default.
    pub history: fn(&str) -> bool,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            keep: |_| Keep::Whole,
            max_file_bytes: 256 << 20,
            max_kept_bytes: 1 << 30,
            max_layer_bytes: 32 << 30,
            max_symlinks: 500_000,
            history: |_| false,
        }
    }
}
