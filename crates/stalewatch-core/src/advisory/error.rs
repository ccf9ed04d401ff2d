//! What reading or building an advisory index can fail with (shared by the builder and the
//! file reader, so neither imports the other for it).

#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    #[error("advisory archive is not a readable zip: {0}")]
    Zip(String),
    #[error("index file is not a stalewatch index (bad magic)")]
    BadMagic,
    #[error("index file has format version {found}, this build reads {expected}")]
    Version { found: u16, expected: u16 },
    #[error("index file is corrupt: {0}")]
    Corrupt(String),
}
