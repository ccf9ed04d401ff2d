//! The file an unpacked-tree entry source is positioned on: opened on its first read, so
//! reads go on where the last one stopped and skips are seeks.

use std::fs;
use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;

use stalewatch_core::layer::LayerError;

#[derive(Default)]
pub struct CurrentFile {
    path: Option<PathBuf>,
    open: Option<fs::File>,
    /// The size the walk saw, and the position read to: no stat after the walk's own.
    size: u64,
    pos: u64,
}

impl CurrentFile {
    /// Positions on `path` of `size` bytes (`None`: on no file, as for directories and links).
    pub fn set(&mut self, path: Option<PathBuf>, size: u64) {
        self.path = path;
        self.open = None;
        self.size = size;
        self.pos = 0;
    }

    fn io(&self, e: std::io::Error) -> LayerError {
        let p = self.path.as_deref().unwrap_or(std::path::Path::new(""));
        LayerError::Io(std::io::Error::new(e.kind(), format!("{}: {e}", p.display())))
    }

    fn file(&mut self) -> Result<Option<&mut fs::File>, LayerError> {
        let Some(p) = &self.path else {
            return Ok(None);
        };
        if self.open.is_none() {
            let f = fs::File::open(p).map_err(|e| self.io(e))?;
            self.open = Some(f);
        }
        Ok(self.open.as_mut())
    }

    /// At most `max` more bytes of the file; nothing at its end (or on no file). The buffer
    /// is sized from the walk's size (a file that grew since is read only that far).
    pub fn read(&mut self, max: u64) -> Result<Vec<u8>, LayerError> {
        let want = max.min(self.size.saturating_sub(self.pos)) as usize;
        let mut buf = vec![0u8; want];
        let mut got = 0;
        if want > 0 {
            if let Some(f) = self.file()? {
                while got < want {
                    match f.read(&mut buf[got..]) {
                        Ok(0) => break,
                        Ok(n) => got += n,
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                        Err(e) => return Err(self.io(e)),
                    }
                }
            }
        }
        buf.truncate(got);
        self.pos += got as u64;
        Ok(buf)
    }

    /// Seeks over up to `n` bytes; returns how many (fewer at the file's end).
    pub fn skip(&mut self, n: u64) -> Result<u64, LayerError> {
        let n = n.min(self.size.saturating_sub(self.pos));
        if n == 0 {
            return Ok(0);
        }
        let res = match self.file()? {
            Some(f) => f.seek(SeekFrom::Current(n as i64)).map(|_| n),
            None => Ok(0),
        };
        let n = res.map_err(|e| self.io(e))?;
        self.pos += n;
        Ok(n)
    }
}
