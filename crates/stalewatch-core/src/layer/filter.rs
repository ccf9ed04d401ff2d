//! Wanted files streamed line by line through a cataloger's filter, a chunk at a time: a
//! package database far larger than what its parser reads is never in memory whole.

use super::diagnostics::Diagnostics;
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
    read_filtered(&mut InMemory(bytes), bytes.len() as u64, filter)
        .map(|f| f.data)
        .unwrap_or_default()
}

/// Kept bytes of one record (the lines between blank lines) at most. A real record is a few
/// KiB — a package with thousands of files a few hundred — so one hostile record of hundreds
/// of MB (no blank line, every line one the parser reads) is refused, never held whole.
pub const MAX_RECORD: usize = 16 << 20;

/// A line longer than this is cut: no database line is that long, and one newline-less
/// hostile file must not be held whole.
pub const MAX_LINE: usize = 1 << 20;

/// The lines a filter kept, and how many records were refused for their size.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Filtered {
    pub data: Vec<u8>,
    pub refused_records: u64,
}

/// Where kept lines go: the output, where the current record started in it, and whether
/// that record is being dropped.
struct Sink {
    out: Filtered,
    record_start: usize,
    dropping: bool,
    max_record: usize,
}

impl Sink {
    /// One line (without its `\n`; `newline`: whether one followed it).
    fn line(&mut self, line: &[u8], newline: bool, filter: &mut dyn LineFilter) {
        // The filter sees every line, dropped or not: its state follows the file.
        let keep = filter.keep(line);
        if line.is_empty() {
            self.dropping = false;
        } else if self.dropping {
            return;
        }
        if !keep {
            if line.is_empty() {
                self.record_start = self.out.data.len();
            }
            return;
        }
        let data = &mut self.out.data;
        if !line.is_empty() && data.len() - self.record_start + line.len() + 1 > self.max_record {
            data.truncate(self.record_start);
            self.dropping = true;
            self.out.refused_records += 1;
            return;
        }
        data.extend_from_slice(line);
        if newline {
            data.push(b'\n');
        }
        if line.is_empty() {
            self.record_start = data.len();
        }
    }
}

/// [`read_filtered`]'s kept lines; each refused record a counted skip (`record_too_large`).
pub(super) fn read_kept_lines(
    src: &mut dyn EntrySource,
    size: u64,
    filter: &mut dyn LineFilter,
    diag: &mut Diagnostics,
    at: &str,
) -> Result<Vec<u8>, LayerError> {
    let f = read_filtered(src, size, filter)?;
    if f.refused_records > 0 {
        let why = format!("{} record(s) over {MAX_RECORD} bytes refused", f.refused_records);
        diag.skip("record_too_large", at, why);
    }
    Ok(f.data)
}

/// The current entry's `size` bytes, read a chunk at a time, keeping the lines `filter` keeps
/// (each with its `\n`; a last line without one stays without), lines cut at [`MAX_LINE`],
/// records over [`MAX_RECORD`] refused and counted.
pub(super) fn read_filtered(
    src: &mut dyn EntrySource,
    size: u64,
    filter: &mut dyn LineFilter,
) -> Result<Filtered, LayerError> {
    read_bounded(src, size, filter, MAX_RECORD)
}

fn read_bounded(
    src: &mut dyn EntrySource,
    size: u64,
    filter: &mut dyn LineFilter,
    max_record: usize,
) -> Result<Filtered, LayerError> {
    const CHUNK: u64 = 1 << 20;
    let mut sink = Sink {
        out: Filtered::default(),
        record_start: 0,
        dropping: false,
        max_record,
    };
    let (mut partial, mut left) = (Vec::new(), size);
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
            sink.line(&line[..line.len().min(MAX_LINE)], true, filter);
            partial.clear();
            rest = &rest[nl + 1..];
        }
        let room = MAX_LINE.saturating_sub(partial.len());
        partial.extend_from_slice(&rest[..rest.len().min(room)]);
    }
    if !partial.is_empty() {
        sink.line(&partial, false, filter);
    }
    let mut out = sink.out;
    out.data.shrink_to_fit();
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
        let out = read_filtered(&mut Trickle(data, 0), size, &mut StartsWithK)
            .unwrap()
            .data;
        assert_eq!(out, b"k1 kept\nk2 across the 3-byte reads\nk3 no newline");
    }

    #[test]
    fn an_overlong_line_is_cut_not_held_whole() {
        let mut data = b"k".to_vec();
        data.extend(std::iter::repeat_n(b'a', (1 << 20) + 5000));
        data.extend(b"\nk-next\n");
        let size = data.len() as u64;
        let out = read_filtered(&mut Trickle(data, 0), size, &mut StartsWithK)
            .unwrap()
            .data;
        assert_eq!(out.len(), (1 << 20) + 1 + b"k-next\n".len());
        assert!(out.ends_with(b"a\nk-next\n"));
    }

    #[test]
    fn one_enormous_record_is_refused_and_counted_and_the_others_kept() {
        // A record of 17 MiB of kept lines and no blank line, between two ordinary ones.
        let mut data = b"k-a 1\ndrop\n\n".to_vec();
        while data.len() < MAX_RECORD + (1 << 20) {
            data.extend_from_slice(b"k-hostile line of the one record\n");
        }
        data.extend_from_slice(b"\nk-c 3\n");
        let size = data.len() as u64;
        let mut src = Chunked(data, 0, 1 << 16);
        let out = read_filtered(&mut src, size, &mut KOrBlank).unwrap();
        assert_eq!(out.refused_records, 1);
        assert_eq!(String::from_utf8_lossy(&out.data), "k-a 1\n\n\nk-c 3\n");
    }

    /// A file's content handed out `step` bytes per read.
    struct Chunked(Vec<u8>, usize, usize);
    impl EntrySource for Chunked {
        fn next_entry(&mut self) -> Result<Option<Entry>, LayerError> {
            Ok(None)
        }
        fn read_data(&mut self, max: u64) -> Result<Vec<u8>, LayerError> {
            let n = (max as usize).min(self.2).min(self.0.len() - self.1);
            self.1 += n;
            Ok(self.0[self.1 - n..self.1].to_vec())
        }
    }

    /// The spec over the whole buffer at once: lines split at `\n` (a last one without),
    /// each cut at `max_line`, kept by the filter; a record (lines between blank lines) whose
    /// kept bytes would pass `max_record` loses what it kept and keeps nothing more.
    fn spec(data: &[u8], max_line: usize, max_record: usize) -> Filtered {
        let mut out = Filtered::default();
        let mut pieces: Vec<&[u8]> = data.split(|b| *b == b'\n').collect();
        let last_has_newline = data.ends_with(b"\n") || data.is_empty();
        if last_has_newline {
            pieces.pop();
        }
        let (mut start, mut dropping) = (0, false);
        let n = pieces.len();
        for (i, piece) in pieces.into_iter().enumerate() {
            let line = &piece[..piece.len().min(max_line)];
            let newline = i + 1 < n || last_has_newline;
            let keep = line.starts_with(b"k") || line.is_empty();
            if line.is_empty() {
                dropping = false;
            }
            if dropping || !keep {
                continue;
            }
            if !line.is_empty() && out.data.len() - start + line.len() + 1 > max_record {
                out.data.truncate(start);
                out.refused_records += 1;
                dropping = true;
                continue;
            }
            out.data.extend_from_slice(line);
            if newline {
                out.data.push(b'\n');
            }
            if line.is_empty() {
                start = out.data.len();
            }
        }
        out
    }

    /// Keeps lines that start with `k`, and blank lines (the record separators).
    struct KOrBlank;
    impl LineFilter for KOrBlank {
        fn keep(&mut self, line: &[u8]) -> bool {
            line.is_empty() || line.starts_with(b"k")
        }
    }

    #[test]
    fn streamed_filtering_is_the_whole_buffer_spec_for_any_input_and_read_size() {
        // A seeded generator (xorshift): 400 random files over {k, a, newline} with random
        // read sizes and record bounds; a failure names its seed.
        for seed in 1..=400u64 {
            let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
            let mut next = |n: u64| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x % n
            };
            let len = next(600) as usize;
            let data: Vec<u8> = (0..len).map(|_| b"kka\n\n"[next(5) as usize]).collect();
            let step = 1 + next(40) as usize;
            let max_record = 1 + next(60) as usize;
            let size = data.len() as u64;
            let got = read_bounded(
                &mut Chunked(data.clone(), 0, step),
                size,
                &mut KOrBlank,
                max_record,
            )
            .unwrap();
            let want = spec(&data, MAX_LINE, max_record);
            assert_eq!(got, want, "seed {seed}: {:?}", String::from_utf8_lossy(&data));
            // The bound holds for every record kept.
            for record in got
                .data
                .split(|b| *b == b'\n')
                .collect::<Vec<_>>()
                .split(|l| l.is_empty())
            {
                let bytes: usize = record.iter().map(|l| l.len() + 1).sum();
                assert!(bytes <= max_record + 1, "seed {seed}");
            }
        }
    }
}
