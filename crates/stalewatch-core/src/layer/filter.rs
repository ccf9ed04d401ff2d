//! Wanted files streamed line by line through a cataloger's filter, a chunk at a time: a
//! package database far larger than what its parser reads is never in memory whole.

use super::entry::{Entry, EntrySource, LayerError};

/// Decides, line by line in file order, which lines of a streamed file are kept.
pub trait LineFilter {
    /// `line` without its `\n`.
    fn keep(&mut self, line: &[u8]) -> bool;
}

/// `bytes` as a streamed wanted file of them would be kept through `filter`.
pub fn filter_lines(bytes: &[u8], filter: &mut dyn LineFilter) -> Vec<u8> {
    /// One file's bytes as an entry source, a chunk per read.
    struct InMemory<'a>(&'a [u8]);
    impl EntrySource for InMemory<'_> {
        fn next_entry(&mut self) -> Result<Option<Entry>, LayerError> {
            Ok(None)
        }
        fn read_data(&mut self, max: u64) -> Result<Vec<u8>, LayerError> {
            let (now, rest) = self.0.split_at((max as usize).min(self.0.len()));
            self.0 = rest;
            Ok(now.to_vec())
        }
    }
    // Reading from memory cannot fail.
    read_filtered(&mut InMemory(bytes), bytes.len() as u64, filter).unwrap_or_default()
}

/// The current entry's `size` bytes, read a chunk at a time, keeping the lines `filter` keeps
/// (each with its `\n`; a last line without one stays without).
pub(super) fn read_filtered(
    src: &mut dyn EntrySource,
    size: u64,
    filter: &mut dyn LineFilter,
) -> Result<Vec<u8>, LayerError> {
    const CHUNK: u64 = 1 << 20;
    // A longer line is cut here: no database line is that long, and one newline-less
    // hostile file must not be held whole.
    const MAX_LINE: usize = 1 << 20;
    let (mut out, mut partial, mut left) = (Vec::new(), Vec::new(), size);
    while left > 0 {
        let chunk = src.read_data(left.min(CHUNK))?;
        if chunk.is_empty() {
            break;
        }
        left -= chunk.len() as u64;
        let mut rest = &chunk[..];
        while let Some(nl) = memchr::memchr(b'\n', rest) {
            let line = if partial.is_empty() {
                &rest[..nl]
            } else {
                let room = MAX_LINE.saturating_sub(partial.len());
                partial.extend_from_slice(&rest[..nl.min(room)]);
                &partial[..]
            };
            let line = &line[..line.len().min(MAX_LINE)];
            if filter.keep(line) {
                out.extend_from_slice(line);
                out.push(b'\n');
            }
            partial.clear();
            rest = &rest[nl + 1..];
        }
        let room = MAX_LINE.saturating_sub(partial.len());
        partial.extend_from_slice(&rest[..rest.len().min(room)]);
    }
    if !partial.is_empty() && filter.keep(&partial) {
        out.extend_from_slice(&partial);
    }
    out.shrink_to_fit();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A file's content handed out a few bytes per read, as a slow stream would.
    struct Trickle(Vec<u8>, usize);
    impl EntrySource for Trickle {
        fn next_entry(&mut self) -> Result<Option<Entry>, LayerError> {
            Ok(None)
        }
        fn read_data(&mut self, max: u64) -> Result<Vec<u8>, LayerError> {
            let n = (max as usize).min(3).min(self.0.len() - self.1);
            self.1 += n;
            Ok(self.0[self.1 - n..self.1].to_vec())
        }
    }

    /// Keeps lines that start with `k`.
    struct StartsWithK;
    impl LineFilter for StartsWithK {
        fn keep(&mut self, line: &[u8]) -> bool {
            line.starts_with(b"k")
        }
    }

    #[test]
    fn filtered_lines_across_reads_and_without_a_last_newline() {
        let data = b"k1 kept\ndrop\n\nk2 across the 3-byte reads\nx\nk3 no newline".to_vec();
        let size = data.len() as u64;
        let out = read_filtered(&mut Trickle(data, 0), size, &mut StartsWithK).unwrap();
        assert_eq!(out, b"k1 kept\nk2 across the 3-byte reads\nk3 no newline");
    }

    #[test]
    fn an_overlong_line_is_cut_not_held_whole() {
        let mut data = b"k".to_vec();
        data.extend(std::iter::repeat_n(b'a', (1 << 20) + 5000));
        data.extend(b"\nk-next\n");
        let size = data.len() as u64;
        let out = read_filtered(&mut Trickle(data, 0), size, &mut StartsWithK).unwrap();
        assert_eq!(out.len(), (1 << 20) + 1 + b"k-next\n".len());
        assert!(out.ends_with(b"a\nk-next\n"));
    }
}
