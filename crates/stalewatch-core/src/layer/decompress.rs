//! Layer decompression picked by magic bytes (media types lie): gzip, zstd or plain tar,
//! behind a cap on decompressed bytes so a bomb costs bounded time.

use std::io::{self, BufRead, BufReader, Read};

/// The error a [`Capped`] reader raises past its cap (found again by `LayerError::from_io`).
#[derive(Debug)]
pub struct CapExceeded(pub u64);

impl std::fmt::Display for CapExceeded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "decompressed size cap of {} bytes exceeded", self.0)
    }
}
impl std::error::Error for CapExceeded {}

/// Counts bytes read and fails once more than `cap` have passed.
pub struct Capped<R> {
    inner: R,
    pub read: u64,
    cap: u64,
}

impl<R: Read> Capped<R> {
    pub fn new(inner: R, cap: u64) -> Self {
        Capped { inner, read: 0, cap }
    }
}

impl<R: Read> Read for Capped<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read += n as u64;
        if self.read > self.cap {
            return Err(io::Error::other(CapExceeded(self.cap)));
        }
        Ok(n)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    Gzip,
    Zstd,
    None,
}

/// Detects the compression of a stream from its first bytes.
pub fn detect(head: &[u8]) -> Compression {
    if head.starts_with(&[0x1f, 0x8b]) {
        Compression::Gzip
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Compression::Zstd
    } else {
        Compression::None
    }
}

/// Wraps a (possibly compressed) layer stream into a decompressed, capped reader.
pub fn open<'a, R: Read + 'a>(raw: R, cap: u64) -> io::Result<Capped<Box<dyn Read + 'a>>> {
    let mut buffered = BufReader::with_capacity(64 * 1024, raw);
    let kind = detect(buffered.fill_buf()?);
    let inner: Box<dyn Read + 'a> = match kind {
        Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(buffered)),
        Compression::Zstd => Box::new(zstd::stream::read::Decoder::with_buffer(buffered)?),
        Compression::None => Box::new(buffered),
    };
    Ok(Capped::new(inner, cap))
}
