//! What every layer source yields: entries (a tar member, a file of an unpacked tree), the
//! source trait the tree reads them through, and the errors of reading them. Below every
//! other layer module, so they share these without importing each other.

/// What kind of filesystem object an entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    File,
    Dir,
    Symlink,
    Hardlink,
    /// Devices, fifos, sockets: never read.
    Other,
}

/// One entry of a layer (a tar member, or a file of an unpacked tree).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The path as the source wrote it (normalised by the tree, not here).
    pub path: String,
    pub kind: EntryKind,
    pub size: u64,
    /// Permission bits (`0o7777`) where the source has them; 0 when unknown.
    pub mode: u32,
    /// Symlink target, or hardlink target path.
    pub link: String,
}

/// A stream of entries; [`tar::TarReader`] is one, the shell's directory walker another.
pub trait EntrySource {
    fn next_entry(&mut self) -> Result<Option<Entry>, LayerError>;
    /// Reads the current entry's content, at most `max` bytes (callers check size first);
    /// a further call goes on where the last one stopped, and returns nothing at the end.
    fn read_data(&mut self, max: u64) -> Result<Vec<u8>, LayerError>;
    /// Skips up to `n` bytes of the current entry's content; returns how many were skipped
    /// (fewer at its end). Sources that can seek override this.
    fn skip_data(&mut self, n: u64) -> Result<u64, LayerError> {
        let mut left = n;
        while left > 0 {
            let got = self.read_data(left.min(1 << 20))?.len() as u64;
            if got == 0 {
                break;
            }
            left -= got;
        }
        Ok(n - left)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LayerError {
    #[error("layer is truncated")]
    Truncated,
    #[error("corrupt tar header at byte {offset}: {reason}")]
    CorruptHeader { offset: u64, reason: String },
    #[error("layer decompresses to more than {cap} bytes (cap)")]
    DecompressedTooLarge { cap: u64 },
    /// The bytes could not be read; the `io::Error` keeps its typed cause (a content store's
    /// own error) for callers that branch on it.
    #[error("layer read failed: {0}")]
    Io(std::io::Error),
}

impl LayerError {
    /// A bounded reason for metrics and reports.
    pub fn reason(&self) -> &'static str {
        match self {
            LayerError::Truncated => "truncated_layer",
            LayerError::CorruptHeader { .. } => "corrupt_layer",
            LayerError::DecompressedTooLarge { .. } => "layer_too_large",
            LayerError::Io(_) => "layer_read_error",
        }
    }

    pub(crate) fn from_io(e: std::io::Error) -> Self {
        if e.kind() == std::io::ErrorKind::UnexpectedEof {
            return LayerError::Truncated;
        }
        if let Some(cap) = e
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<super::decompress::CapExceeded>())
        {
            return LayerError::DecompressedTooLarge { cap: cap.0 };
        }
        LayerError::Io(e)
    }
}
