//! stalewatch's pure core: bytes in, values out. No async, no sockets, no file paths opened here.
#![forbid(unsafe_code)]

pub mod advisory;
pub mod catalog;
pub mod ecosystem;
pub mod eol;
pub mod export;
pub mod gate;
pub mod image;
pub mod kernel;
pub mod layer;
pub mod lineage;
pub mod matcher;
pub mod node_image;
pub mod os;
pub mod package;
pub mod report;
pub mod time;
pub mod triage;
pub mod version;
pub mod vulnerability;
