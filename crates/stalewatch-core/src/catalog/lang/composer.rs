//! PHP packages Composer installed: `vendor/composer/installed.json`, a list of packages
//! (Composer 1) or `{"packages": [...]}` (Composer 2).

use serde::Deserialize;

use super::{utf8, LangPackage};

#[derive(Deserialize)]
#[serde(untagged)]
enum Installed {
    V2 { packages: Vec<Entry> },
    V1(Vec<Entry>),
}

#[derive(Deserialize)]
struct Entry {
    name: Option<String>,
    version: Option<String>,
}

pub fn parse_installed(bytes: &[u8]) -> Result<Vec<LangPackage>, String> {
    let text = utf8(bytes)?;
    let installed: Installed =
        serde_json::from_str(text).map_err(|e| format!("not a Composer installed.json: {e}"))?;
    let entries = match installed {
        Installed::V2 { packages } => packages,
        Installed::V1(p) => p,
    };
    let out: Vec<LangPackage> = entries
        .into_iter()
        .filter_map(|e| match (e.name, e.version) {
            (Some(name), Some(version)) if !name.is_empty() && !version.is_empty() => {
                Some(LangPackage { name, version })
            }
            _ => None,
        })
        .collect();
    Ok(super::sorted(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_layouts() {
        let v2 = br#"{"packages":[{"name":"monolog/monolog","version":"3.5.0","version_normalized":"3.5.0.0"}],"dev":true}"#;
        let v1 = br#"[{"name":"psr/log","version":"1.1.4"}]"#;
        assert_eq!(parse_installed(v2).unwrap()[0].name, "monolog/monolog");
        assert_eq!(parse_installed(v1).unwrap()[0].version, "1.1.4");
        assert!(parse_installed(br#"{"x":1}"#).is_err());
    }
}
