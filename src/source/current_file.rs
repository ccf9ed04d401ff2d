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
}

impl CurrentFile {
    /// Positions on `path` (`None`: on no file, as for directories and links).
    pub fn set(&mut self, path: Option<PathBuf>) {
        self.path = path;
        self.open = None;
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

    /// At most `max` more bytes of the file; nothing at its end (or on no file).
    pub fn read(&mut self, max: u64) -> Result<Vec<u8>, LayerError> {
        let mut buf = Vec::new();
        let res = match self.file()? {
            Some(f) => f.take(max).read_to_end(&mut buf).map(|_| ()),
            None => Ok(()),
        };
        res.map_err(|e| self.io(e))?;
        Ok(buf)
    }

    /// Seeks over up to `n` bytes; returns how many (fewer at the file's end).
    pub fn skip(&mut self, n: u64) -> Result<u64, LayerError> {
        let res = match self.file()? {
            Some(f) => (|| {
                let len = f.metadata()?.len();
                let at = f.stream_position()?;
                let n = n.min(len.saturating_sub(at));
                f.seek(SeekFrom::Current(n as i64))?;
                Ok(n)
            })(),
            None => Ok(0),
        };
        res.map_err(|e| self.io(e))
    }
}
