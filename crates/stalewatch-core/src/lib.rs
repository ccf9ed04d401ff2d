//! stalewatch's pure core: bytes in, values out. No async, no sockets, no file paths opened here.
#![forbid(unsafe_code)]

pub mod version;
pub mod advisory;
pub mod layer;
