//! Node.js packages: each installed package's own `package.json` under `node_modules`
//! (nested trees and `@scope/name` included), and `package-lock.json` v1 (nested
//! `dependencies`) to v3 (`packages` keyed by install path).

use serde::Deserialize;
use std::collections::BTreeMap;

use super::{utf8, LangPackage};

/// Whether `dir` is a package's directory right under a `node_modules` (`…/node_modules/x`
/// or `…/node_modules/@scope/x`), not a subdirectory of one.
pub fn is_installed_package_dir(dir: &str) -> bool {
    let parts: Vec<&str> = dir.split('/').collect();
    let n = parts.len();
    let plain = n >= 2 && parts[n - 2] == "node_modules" && !parts[n - 1].starts_with(['@', '.']);
    let scoped = n >= 3 && parts[n - 3] == "node_modules" && parts[n - 2].starts_with('@');
    plain || scoped
}

#[derive(Deserialize)]
struct PackageJson {
    name: Option<serde_json::Value>,
    version: Option<serde_json::Value>,
}

/// An installed package's name and version; `None` for a `package.json` without them (some
/// packages ship inner ones).
pub fn parse_package_json(bytes: &[u8]) -> Result<Option<LangPackage>, String> {
    let text = utf8(bytes)?;
    let p: PackageJson = serde_json::from_str(text).map_err(|e| format!("invalid JSON: {e}"))?;
    match (p.name, p.version) {
        (Some(serde_json::Value::String(n)), Some(serde_json::Value::String(v)))
            if !n.is_empty() && !v.is_empty() =>
        {
            Ok(Some(LangPackage { name: n, version: v }))
        }
        _ => Ok(None),
    }
}

#[derive(Deserialize)]
struct Lock {
    #[serde(default)]
    packages: BTreeMap<String, LockEntry>,
    #[serde(default)]
    dependencies: BTreeMap<String, LockDependency>,
}

#[derive(Deserialize)]
struct LockEntry {
    name: Option<String>,
    version: Option<String>,
    #[serde(default)]
    link: bool,
}

#[derive(Deserialize)]
struct LockDependency {
    version: Option<String>,
    #[serde(default)]
    dependencies: BTreeMap<String, LockDependency>,
}

fn walk_v1(deps: &BTreeMap<String, LockDependency>, out: &mut Vec<LangPackage>, depth: usize) {
    if depth > 64 {
        return;
    }
    for (name, d) in deps {
        // A `file:` or git spec is not a registry version.
        if let Some(v) = d
            .version
            .as_deref()
            .filter(|v| !v.contains(':') && !v.contains('/'))
        {
            out.push(LangPackage {
                name: name.clone(),
                version: v.to_string(),
            });
        }
        walk_v1(&d.dependencies, out, depth + 1);
    }
}

pub fn parse_lock(bytes: &[u8]) -> Result<Vec<LangPackage>, String> {
    let text = utf8(bytes)?;
    let lock: Lock = serde_json::from_str(text).map_err(|e| format!("invalid JSON: {e}"))?;
    let mut out = Vec::new();
    if !lock.packages.is_empty() {
        for (path, e) in &lock.packages {
            // "" is the project itself; links point at workspace packages.
            if path.is_empty() || e.link || !path.contains("node_modules/") {
                continue;
            }
            let name = match &e.name {
                Some(n) => n.clone(),
                None => path
                    .rsplit_once("node_modules/")
                    .map(|(_, n)| n.to_string())
                    .unwrap_or_default(),
            };
            if let Some(v) = e.version.as_deref().filter(|v| !v.contains(':')) {
                if !name.is_empty() {
                    out.push(LangPackage {
                        name,
                        version: v.to_string(),
                    });
                }
            }
        }
    } else {
        walk_v1(&lock.dependencies, &mut out, 0);
    }
    Ok(super::sorted(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn installed_dirs() {
        assert!(is_installed_package_dir("app/node_modules/ms"));
        assert!(is_installed_package_dir("node_modules/@types/node"));
        assert!(!is_installed_package_dir("app/node_modules/@types"));
        assert!(!is_installed_package_dir("app/node_modules/.bin"));
        assert!(!is_installed_package_dir("app/node_modules/ms/dist"));
    }

    #[test]
    fn package_json_without_a_version_is_not_a_package() {
        assert_eq!(parse_package_json(br#"{"name":"inner"}"#).unwrap(), None);
        assert_eq!(parse_package_json(br#"{"name":1,"version":[]}"#).unwrap(), None);
        assert!(parse_package_json(b"{").is_err());
    }

    #[test]
    fn lock_v1_nested_and_v3_paths() {
        let v1 = br#"{"lockfileVersion":1,"dependencies":{"debug":{"version":"2.6.9","dependencies":{"ms":{"version":"2.0.0"}}},"local":{"version":"file:../local"}}}"#;
        let got: Vec<_> = parse_lock(v1)
            .unwrap()
            .into_iter()
            .map(|p| format!("{}@{}", p.name, p.version))
            .collect();
        assert_eq!(got, vec!["debug@2.6.9", "ms@2.0.0"]);
        let v3 = br#"{"lockfileVersion":3,"packages":{"":{"name":"app","version":"1.0.0"},"node_modules/@scope/a":{"version":"1.0.0"},"node_modules/b/node_modules/c":{"version":"3.0.0"},"node_modules/ws":{"resolved":"../ws","link":true}}}"#;
        let got: Vec<_> = parse_lock(v3)
            .unwrap()
            .into_iter()
            .map(|p| format!("{}@{}", p.name, p.version))
            .collect();
        assert_eq!(got, vec!["@scope/a@1.0.0", "c@3.0.0"]);
    }
}
