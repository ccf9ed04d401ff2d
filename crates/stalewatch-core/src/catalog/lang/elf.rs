//! ELF files met while a layer streams: a non-ELF file costs one 64-byte read; an ELF file,
//! its program headers, then what its language says it holds — a Go executable's build info
//! (`golang`), else a Rust executable's cargo-auditable dependencies (`auditable`).

use crate::layer::{EntrySource, LayerError};

/// Smaller files are not looked into (a Go executable is over 1 MiB, a small Rust one a few
/// hundred KiB).
pub const MIN_BINARY_BYTES: u64 = 64 << 10;
/// Larger files are not scanned.
pub const MAX_BINARY_BYTES: u64 = 1 << 30;

/// Reads an ELF file's content from `src` (the current entry) and returns its summary: a Go
/// executable's build info, else a cargo-auditable `.dep-v0` section (see `auditable`), if
/// it has one. A non-ELF file costs one 64-byte read; an ELF file, its headers, one window of
/// its data segment and its tail (what lies between is skipped: seeked over in a directory,
/// streamed past in a layer).
pub fn summarize(size: u64, src: &mut dyn EntrySource) -> Result<Option<Vec<u8>>, LayerError> {
    if !(MIN_BINARY_BYTES..=MAX_BINARY_BYTES).contains(&size) {
        return Ok(None);
    }
    let head = src.read_data(64)?;
    if head.len() < 64 || &head[..4] != b"\x7fELF" {
        return Ok(None);
    }
    let mut pos = head.len() as u64;
    let Some(layout) = program_headers(&head, src, &mut pos)? else {
        return Ok(None);
    };
    if let Some(go) = super::golang::build_info(layout.writable, src, &mut pos)? {
        return Ok(Some(go));
    }
    // Only executables carry cargo-auditable data: shared libraries (no interpreter, not
    // ET_EXEC) are not read to their end.
    if !layout.executable {
        return Ok(None);
    }
    let start = size.saturating_sub(super::auditable::TAIL).max(pos);
    if src.skip_data(start - pos)? < start - pos {
        return Ok(None);
    }
    let tail = src.read_data(size - start)?;
    Ok(super::auditable::dep_section(&head, &tail, start).map(|d| super::auditable::summary(&d)))
}

/// What the program headers say.
struct Layout {
    /// (file offset, file size) of the first writable `PT_LOAD` segment.
    writable: Option<(u64, u64)>,
    /// An executable (`ET_EXEC`, or a program interpreter), not a shared library.
    executable: bool,
}

/// Reads the program headers (from `src`, which is at `pos`); `None` when they make no sense.
fn program_headers(
    head: &[u8],
    src: &mut dyn EntrySource,
    pos: &mut u64,
) -> Result<Option<Layout>, LayerError> {
    let wide = match head[4] {
        1 => false,
        2 => true,
        _ => return Ok(None),
    };
    let big = head[5] == 2;
    let u16_at = |b: &[u8], at: usize| -> u64 {
        let x = [b[at], b[at + 1]];
        u64::from(if big {
            u16::from_be_bytes(x)
        } else {
            u16::from_le_bytes(x)
        })
    };
    let u32_at = |b: &[u8], at: usize| -> u64 {
        let x = [b[at], b[at + 1], b[at + 2], b[at + 3]];
        u64::from(if big {
            u32::from_be_bytes(x)
        } else {
            u32::from_le_bytes(x)
        })
    };
    let u64_at = |b: &[u8], at: usize| -> u64 {
        let mut x = [0u8; 8];
        x.copy_from_slice(&b[at..at + 8]);
        if big {
            u64::from_be_bytes(x)
        } else {
            u64::from_le_bytes(x)
        }
    };
    let (phoff, phentsize, phnum) = if wide {
        (u64_at(head, 0x20), u16_at(head, 0x36), u16_at(head, 0x38))
    } else {
        (u32_at(head, 0x1c), u16_at(head, 0x2a), u16_at(head, 0x2c))
    };
    let need = phentsize.saturating_mul(phnum);
    if phoff < *pos || need == 0 || need > 64 << 10 || phentsize < if wide { 56 } else { 32 } {
        return Ok(None);
    }
    *pos += src.skip_data(phoff - *pos)?;
    let table = src.read_data(need)?;
    *pos += table.len() as u64;
    const ET_EXEC: u64 = 2;
    const PT_INTERP: u64 = 3;
    let mut layout = Layout {
        writable: None,
        executable: u16_at(head, 0x10) == ET_EXEC,
    };
    for ph in table.chunks_exact(phentsize as usize) {
        let (kind, flags, offset, filesz) = if wide {
            (u32_at(ph, 0), u32_at(ph, 4), u64_at(ph, 8), u64_at(ph, 32))
        } else {
            (u32_at(ph, 0), u32_at(ph, 24), u32_at(ph, 4), u32_at(ph, 16))
        };
        const PT_LOAD: u64 = 1;
        const PF_W: u64 = 2;
        if kind == PT_LOAD && flags & PF_W != 0 && filesz > 0 && layout.writable.is_none() {
            layout.writable = Some((offset, filesz));
        }
        layout.executable |= kind == PT_INTERP;
    }
    Ok(Some(layout))
}
