//! Azure Linux distroless images have no rpm database: their build writes
//! `var/lib/rpmmanifest/container-manifest-2`, one line per package, the tab-separated output
//! of `rpm -qa --qf` with NAME, VERSION-RELEASE, INSTALLTIME, BUILDTIME, VENDOR, EPOCH
//! (`(none)` when absent), SIZE, ARCH, EPOCHNUM, SOURCERPM. A line with fewer fields is
//! counted as malformed, never guessed at.

use crate::catalog::{ParseOutcome, RawPackage};

/// Where the manifest is.
pub const PATH: &str = "var/lib/rpmmanifest/container-manifest-2";
const FIELDS: usize = 10;

/// Parses a manifest's lines into packages.
pub fn parse_manifest(bytes: &[u8]) -> ParseOutcome {
    let mut out = ParseOutcome::default();
    for line in bytes.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        match package(line) {
            Some(p) => out.packages.push(p),
            None => out.malformed += 1,
        }
    }
    out
}

fn package(line: &[u8]) -> Option<RawPackage> {
    let line = std::str::from_utf8(line).ok()?;
    let f: Vec<&str> = line.split('\t').collect();
    if f.len() < FIELDS {
        return None;
    }
    let (name, arch) = (f[0].trim(), f[7].trim());
    // VERSION-RELEASE: the release is after the last dash (a version has none).
    let (version, release) = f[1].trim().rsplit_once('-')?;
    if name.is_empty() || version.is_empty() || release.is_empty() {
        return None;
    }
    let epoch = match f[5].trim() {
        "(none)" | "" => None,
        e => Some(e.parse::<u32>().ok()?),
    };
    let source = match f[9].trim() {
        "(none)" | "" => None,
        s => Some(s),
    };
    Some(RawPackage::from_rpm(name, epoch, version, release, arch, source))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_as_rpm_writes_them() {
        let text = "openssl-libs\t3.3.2-1.azl3\t1728000000\t1727000000\tMicrosoft Corporation\t(none)\t6000000\tx86_64\t0\topenssl-3.3.2-1.azl3.src.rpm\n\
                    shadow-utils\t4.14.3-2.azl3\t1728000000\t1727000000\tMicrosoft Corporation\t2\t100\tx86_64\t2\tshadow-utils-4.14.3-2.azl3.src.rpm\n";
        let out = parse_manifest(text.as_bytes());
        assert_eq!(out.malformed, 0);
        let p = &out.packages[0];
        assert_eq!(
            (
                p.name.as_str(),
                p.version.as_str(),
                p.source_name.as_str(),
                p.source_version.as_str(),
                p.arch.as_str()
            ),
            (
                "openssl-libs",
                "3.3.2-1.azl3",
                "openssl",
                "3.3.2-1.azl3",
                "x86_64"
            )
        );
        assert_eq!(out.packages[1].version, "2:4.14.3-2.azl3");
        assert_eq!(out.packages[1].source_version, "2:4.14.3-2.azl3");
    }

    #[test]
    fn short_or_broken_lines_are_counted() {
        let text = "bash\t5.2.15-3.azl3\t1\t2\tMicrosoft\n\
                    \n\
                    noversion\tnodash\t1\t2\tv\t(none)\t1\tx86_64\t0\tx.src.rpm\n\
                    badepoch\t1-1\t1\t2\tv\tone\t1\tx86_64\t0\tx-1-1.src.rpm\n\
                    \u{0}\u{1}\n";
        let out = parse_manifest(text.as_bytes());
        assert!(out.packages.is_empty());
        assert_eq!(out.malformed, 4);
        assert_eq!(parse_manifest(&[0xff, 0xfe, b'\t']).malformed, 1);
    }
}
