//! dpkg's status database (`var/lib/dpkg/status`, and distroless `status.d/*`): RFC-822-like
//! stanzas; only `install ok installed` packages count (syft also lists removed ones).

use super::{ParseOutcome, RawPackage};

/// The lines [`parse_status`] reads, kept as a status file streams by: stanza separators and
/// the `Package`, `Version`, `Status`, `Source`, `Architecture` fields (descriptions and
/// conffiles, most of a real file, are dropped).
pub fn status_filter() -> Box<dyn crate::layer::LineFilter> {
    struct StatusFilter;
    impl crate::layer::LineFilter for StatusFilter {
        fn keep(&mut self, line: &[u8]) -> bool {
            const FIELDS: [&[u8]; 5] = [b"Package:", b"Version:", b"Status:", b"Source:", b"Architecture:"];
            line.is_empty() || FIELDS.iter().any(|f| line.starts_with(f))
        }
    }
    Box::new(StatusFilter)
}

/// Parses one status file. `require_status`: distroless `status.d` stanzas carry no
/// `Status` field and are installed by construction.
pub fn parse_status(text: &[u8], require_status: bool) -> ParseOutcome {
    let mut packages = Vec::new();
    let mut out = each_status(text, require_status, &mut |p| packages.push(p));
    out.packages = packages;
    out
}

/// [`parse_status`] handing each package to `each` as it is read; the outcome's counts
/// (its `packages` stay empty).
pub fn each_status(text: &[u8], require_status: bool, each: &mut dyn FnMut(RawPackage)) -> ParseOutcome {
    let text = String::from_utf8_lossy(text);
    let mut out = ParseOutcome::default();
    for stanza in text.split("\n\n") {
        if stanza.trim().is_empty() {
            continue;
        }
        let mut name = None;
        let mut version = None;
        let mut status = None;
        let mut source = None;
        let mut arch = None;
        for line in stanza.lines() {
            if line.starts_with([' ', '\t']) {
                continue; // continuation of a multi-line field (Description, Conffiles)
            }
            let Some((k, v)) = line.split_once(':') else {
                continue;
            };
            let v = v.trim();
            match k {
                "Package" => name = Some(v),
                "Version" => version = Some(v),
                "Status" => status = Some(v),
                "Source" => source = Some(v),
                "Architecture" => arch = Some(v),
                _ => {}
            }
        }
        let installed = match status {
            Some(s) => s.split_whitespace().last() == Some("installed"),
            None => !require_status,
        };
        let (Some(name), Some(version)) = (name, version) else {
            out.malformed += 1;
            continue;
        };
        if !installed {
            out.not_installed += 1;
            continue;
        }
        if name.is_empty() || version.is_empty() {
            out.malformed += 1;
            continue;
        }
        // `Source: name (version)` when the source version differs (binNMUs).
        let (source_name, source_version) = match source {
            Some(s) => match s.split_once('(') {
                Some((n, v)) => (n.trim(), v.trim_end_matches(')').trim()),
                None => (s.trim(), version),
            },
            None => (name, version),
        };
        each(RawPackage {
            name: name.to_string(),
            version: version.to_string(),
            source_name: source_name.to_string(),
            source_version: source_version.to_string(),
            arch: arch.unwrap_or("").to_string(),
            files: None,
            module: None,
        });
    }
    out
}

/// A dpkg `info/<package>.list`: one absolute path per line (directories included).
pub fn parse_list(text: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(text)
        .lines()
        .map(|l| l.trim().trim_start_matches('/'))
        .filter(|l| !l.is_empty() && *l != ".")
        .map(str::to_string)
        .collect()
}

/// The paths of a package's `md5sums` file (`<md5>  <path>` per line, paths relative to
/// the root): distroless's file list of a `status.d` package.
pub fn parse_md5sums(text: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(text)
        .lines()
        .filter_map(|l| l.trim().split_once(char::is_whitespace))
        .map(|(_, path)| path.trim().trim_start_matches('/').to_string())
        .filter(|p| !p.is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_files_are_root_relative_paths() {
        let l = b"/.\n/usr\n/usr/bin\n/usr/bin/dpkg\n/lib/x86_64-linux-gnu/libc.so.6\n\n";
        assert_eq!(
            parse_list(l),
            ["usr", "usr/bin", "usr/bin/dpkg", "lib/x86_64-linux-gnu/libc.so.6"]
        );
    }

    const STATUS: &str = "Package: libssl3\nStatus: install ok installed\nPriority: optional\nArchitecture: amd64\nSource: openssl\nVersion: 3.0.11-1~deb12u2\nDescription: Secure Sockets Layer toolkit\n multi-line continuation: Version: 9\n\nPackage: libgcc-s1\nStatus: install ok installed\nArchitecture: amd64\nSource: gcc-12 (12.2.0-14)\nVersion: 12.2.0-14\n\nPackage: oldpkg\nStatus: deinstall ok config-files\nVersion: 1.0\n\nPackage: broken\nStatus: install ok installed\n";

    #[test]
    fn installed_only_with_sources() {
        let out = parse_status(STATUS.as_bytes(), true);
        assert_eq!(out.packages.len(), 2);
        assert_eq!(out.packages[0].source_name, "openssl");
        assert_eq!(out.packages[0].source_version, "3.0.11-1~deb12u2");
        assert_eq!(out.packages[1].source_name, "gcc-12");
        assert_eq!(out.packages[1].source_version, "12.2.0-14");
        assert_eq!(out.not_installed, 1);
        assert_eq!(out.malformed, 1);
    }

    #[test]
    fn distroless_and_garbage() {
        let out = parse_status(
            b"Package: base-files\nVersion: 12.4+deb12u5\nArchitecture: amd64\n",
            false,
        );
        assert_eq!(out.packages.len(), 1);
        let out = parse_status(&[0xff, 0xfe, b'\n', b'\n', 0, 1, 2], true);
        assert!(out.packages.is_empty());
    }
}
