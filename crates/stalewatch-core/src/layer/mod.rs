//! Reading image layers: decompression, a bounded streaming tar reader, and the merged file
//! tree (whiteouts, opaque directories) that keeps only the files catalogers ask for.

pub mod cache_entry;
pub mod decompress;
pub mod diagnostics;
pub mod entry;
pub mod filter;
pub mod history;
pub mod limits;
pub mod path;
pub mod tar;
pub mod tree;

pub use diagnostics::Diagnostics;
pub use entry::{Entry, EntryKind, EntrySource, LayerError};
pub use tree::{FileTree, Keep, Limits, LineFilter};
