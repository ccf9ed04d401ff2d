//! Operating-system detection from release files, mapped to the OSV ecosystem release.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OsInfo {
    /// os-release `ID` (`alpine`, `debian`, `ubuntu`, `almalinux`, `rocky`, `rhel`,
    /// `azurelinux`, `mariner`, …).
    pub id: String,
    pub version_id: String,
    pub pretty_name: String,
    /// OSV ecosystem with release (`Alpine:v3.20`, `Debian:12`, `Ubuntu:22.04:LTS`), or `None`
    /// when stalewatch knows no advisory feed for this release.
    pub ecosystem: Option<String>,
}

/// Parses os-release `KEY=value` lines (quoted or not).
pub fn parse_os_release(text: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('#') {
            continue;
        }
        let Some((k, v)) = line.split_once('=') else {
            continue;
        };
        let v = v.trim();
        let v = v
            .strip_prefix('"')
            .and_then(|x| x.strip_suffix('"'))
            .or_else(|| v.strip_prefix('\'').and_then(|x| x.strip_suffix('\'')))
            .unwrap_or(v);
        out.insert(k.trim().to_string(), v.replace("\\\"", "\"").replace("\\$", "$"));
    }
    out
}

fn major(v: &str) -> &str {
    v.split('.').next().unwrap_or(v)
}

fn major_minor(v: &str) -> String {
    v.split('.').take(2).collect::<Vec<_>>().join(".")
}

/// The OSV ecosystem for a distribution release.
pub fn ecosystem_for(id: &str, version_id: &str, version: &str) -> Option<String> {
    // Wolfi and Chainguard roll: one ecosystem each, no release (their VERSION_ID is a build
    // date with no bearing on advisories).
    match id {
        "wolfi" => return Some("Wolfi".into()),
        "chainguard" => return Some("Chainguard".into()),
        _ => {}
    }
    if version_id.is_empty() {
        return None;
    }
    Some(match id {
        "alpine" => format!("Alpine:v{}", major_minor(version_id)),
        "debian" => format!("Debian:{}", major(version_id)),
        "ubuntu" => {
            if version.contains("LTS") {
                format!("Ubuntu:{version_id}:LTS")
            } else {
                format!("Ubuntu:{version_id}")
            }
        }
        "almalinux" => format!("AlmaLinux:{}", major(version_id)),
        "rocky" => format!("Rocky Linux:{}", major(version_id)),
        // Red Hat's OSV ecosystems name product streams (`Red Hat:enterprise_linux:9::baseos`);
        // the matcher expands this prefix to every stream of the major release.
        "rhel" => format!("Red Hat:enterprise_linux:{}::", major(version_id)),
        // Azure Linux 3 (`ID=azurelinux`, `VERSION_ID=3.0`) and its predecessor CBL-Mariner 2
        // (`ID=mariner`, `VERSION_ID=2.0`): one OSV ecosystem, by major release.
        "azurelinux" | "mariner" => format!("Azure Linux:{}", major(version_id)),
        _ => return None,
    })
}

/// Files the OS detector reads.
pub const FILES: [&str; 5] = [
    "etc/os-release",
    "usr/lib/os-release",
    "etc/alpine-release",
    "etc/debian_version",
    "etc/redhat-release",
];

/// Detects the OS from the contents of [`FILES`] (`None` where a file is absent).
pub fn detect(read: &dyn Fn(&str) -> Option<Vec<u8>>) -> Option<OsInfo> {
    let text = |p: &str| read(p).map(|b| String::from_utf8_lossy(&b).into_owned());
    if let Some(t) = text("etc/os-release").or_else(|| text("usr/lib/os-release")) {
        let kv = parse_os_release(&t);
        let id = kv.get("ID").cloned().unwrap_or_default().to_ascii_lowercase();
        if !id.is_empty() {
            let mut version_id = kv.get("VERSION_ID").cloned().unwrap_or_default();
            // Debian testing/sid have no VERSION_ID; debian_version may still say "12.5".
            if version_id.is_empty() && id == "debian" {
                if let Some(v) = text("etc/debian_version") {
                    let v = v.trim();
                    if v.starts_with(|c: char| c.is_ascii_digit()) {
                        version_id = v.to_string();
                    }
                }
            }
            let version = kv.get("VERSION").cloned().unwrap_or_default();
            return Some(OsInfo {
                ecosystem: ecosystem_for(&id, &version_id, &version),
                pretty_name: kv.get("PRETTY_NAME").cloned().unwrap_or_default(),
                id,
                version_id,
            });
        }
    }
    if let Some(v) = text("etc/alpine-release") {
        let v = v.trim().to_string();
        return Some(OsInfo {
            ecosystem: ecosystem_for("alpine", &v, ""),
            pretty_name: format!("Alpine Linux v{v}"),
            id: "alpine".into(),
            version_id: v,
        });
    }
    if let Some(v) = text("etc/debian_version") {
        let v = v.trim().to_string();
        let numeric = v.starts_with(|c: char| c.is_ascii_digit());
        return Some(OsInfo {
            ecosystem: if numeric {
                ecosystem_for("debian", &v, "")
            } else {
                None
            },
            pretty_name: format!("Debian {v}"),
            id: "debian".into(),
            version_id: if numeric { v } else { String::new() },
        });
    }
    if let Some(t) = text("etc/redhat-release") {
        let line = t.lines().next().unwrap_or("").trim().to_string();
        let id = if line.starts_with("AlmaLinux") {
            "almalinux"
        } else if line.starts_with("Rocky") {
            "rocky"
        } else if line.starts_with("Red Hat") {
            "rhel"
        } else if line.starts_with("CentOS") {
            "centos"
        } else {
            "rhel-like"
        };
        let version = line
            .split_whitespace()
            .find(|w| w.starts_with(|c: char| c.is_ascii_digit()))
            .unwrap_or("")
            .to_string();
        return Some(OsInfo {
            ecosystem: ecosystem_for(id, &version, ""),
            pretty_name: line,
            id: id.into(),
            version_id: version,
        });
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<Vec<u8>> {
        let map: BTreeMap<String, Vec<u8>> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
            .collect();
        move |p: &str| map.get(p).cloned()
    }

    #[test]
    fn real_os_release_files() {
        let alpine =
            "NAME=\"Alpine Linux\"\nID=alpine\nVERSION_ID=3.20.3\nPRETTY_NAME=\"Alpine Linux v3.20\"\n";
        let os = detect(&files(&[("etc/os-release", alpine)])).unwrap();
        assert_eq!(os.ecosystem.as_deref(), Some("Alpine:v3.20"));
        let ubuntu =
            "NAME=\"Ubuntu\"\nVERSION_ID=\"22.04\"\nVERSION=\"22.04.4 LTS (Jammy Jellyfish)\"\nID=ubuntu\n";
        assert_eq!(
            detect(&files(&[("usr/lib/os-release", ubuntu)]))
                .unwrap()
                .ecosystem
                .as_deref(),
            Some("Ubuntu:22.04:LTS")
        );
        let debian = "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nVERSION_ID=\"12\"\nID=debian\n";
        assert_eq!(
            detect(&files(&[("etc/os-release", debian)]))
                .unwrap()
                .ecosystem
                .as_deref(),
            Some("Debian:12")
        );
        let alma =
            "NAME=\"AlmaLinux\"\nVERSION=\"9.4 (Seafoam Ocelot)\"\nID=\"almalinux\"\nVERSION_ID=\"9.4\"\n";
        assert_eq!(
            detect(&files(&[("etc/os-release", alma)]))
                .unwrap()
                .ecosystem
                .as_deref(),
            Some("AlmaLinux:9")
        );
        // Microsoft's own: /etc/os-release of mcr.microsoft.com/azurelinux/base/core:3.0 and
        // cbl-mariner/base/core:2.0.
        let azl =
            "NAME=\"Microsoft Azure Linux\"\nVERSION=\"3.0.20241005\"\nID=azurelinux\nVERSION_ID=\"3.0\"\n";
        assert_eq!(
            detect(&files(&[("etc/os-release", azl)]))
                .unwrap()
                .ecosystem
                .as_deref(),
            Some("Azure Linux:3")
        );
        let mariner =
            "NAME=\"Common Base Linux Mariner\"\nVERSION=\"2.0.20240609\"\nID=mariner\nVERSION_ID=\"2.0\"\n";
        assert_eq!(
            detect(&files(&[("etc/os-release", mariner)]))
                .unwrap()
                .ecosystem
                .as_deref(),
            Some("Azure Linux:2")
        );
        let sid = "PRETTY_NAME=\"Debian GNU/Linux trixie/sid\"\nID=debian\n";
        assert_eq!(
            detect(&files(&[
                ("etc/os-release", sid),
                ("etc/debian_version", "trixie/sid\n")
            ]))
            .unwrap()
            .ecosystem,
            None
        );
    }

    #[test]
    fn wolfi_and_chainguard_are_release_less_ecosystems() {
        // Their os-release files as Chainguard's scanner documentation shows them; a missing
        // VERSION_ID changes nothing (it is a build date).
        for (text, want) in [
            (
                "ID=wolfi\nNAME=\"Wolfi\"\nPRETTY_NAME=\"Wolfi\"\nVERSION_ID=\"20230201\"\n",
                "Wolfi",
            ),
            (
                "ID=chainguard\nNAME=\"Chainguard\"\nVERSION_ID=\"20230214\"\n",
                "Chainguard",
            ),
            ("ID=wolfi\nNAME=\"Wolfi\"\n", "Wolfi"),
        ] {
            let os = detect(&files(&[("etc/os-release", text)])).unwrap();
            assert_eq!(os.ecosystem.as_deref(), Some(want), "{text}");
        }
    }

    #[test]
    fn fallbacks() {
        assert_eq!(
            detect(&files(&[("etc/alpine-release", "3.16.9\n")]))
                .unwrap()
                .ecosystem
                .as_deref(),
            Some("Alpine:v3.16")
        );
        assert_eq!(
            detect(&files(&[("etc/debian_version", "11.9\n")]))
                .unwrap()
                .ecosystem
                .as_deref(),
            Some("Debian:11")
        );
        let os = detect(&files(&[(
            "etc/redhat-release",
            "Rocky Linux release 9.3 (Blue Onyx)\n",
        )]))
        .unwrap();
        assert_eq!(os.ecosystem.as_deref(), Some("Rocky Linux:9"));
        let os = detect(&files(&[(
            "etc/redhat-release",
            "CentOS Linux release 7.9.2009 (Core)\n",
        )]))
        .unwrap();
        assert_eq!((os.id.as_str(), os.ecosystem), ("centos", None));
        assert!(detect(&files(&[])).is_none());
        assert!(detect(&files(&[("etc/os-release", "\u{0}\u{1}garbage")])).is_none());
    }
}
