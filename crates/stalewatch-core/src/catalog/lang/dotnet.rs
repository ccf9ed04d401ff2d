//! .NET dependencies: the `libraries` of an application's `*.deps.json` (`"Name/Version"`
//! keys); only `"type": "package"` entries are NuGet packages (projects are the app's own).

use serde::Deserialize;
use std::collections::BTreeMap;

use super::{utf8, LangPackage};

#[derive(Deserialize)]
struct Deps {
    #[serde(default)]
    libraries: BTreeMap<String, Library>,
}

#[derive(Deserialize)]
struct Library {
    #[serde(rename = "type")]
    kind: Option<String>,
}

pub fn parse_deps(bytes: &[u8]) -> Result<Vec<LangPackage>, String> {
    let text = utf8(bytes)?;
    let deps: Deps = serde_json::from_str(text).map_err(|e| format!("invalid deps.json: {e}"))?;
    Ok(deps
        .libraries
        .into_iter()
        .filter(|(_, l)| l.kind.as_deref() == Some("package"))
        .filter_map(|(key, _)| {
            let (name, version) = key.split_once('/')?;
            (!name.is_empty() && !version.is_empty()).then(|| LangPackage {
                name: name.to_string(),
                version: version.to_string(),
            })
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broken_deps_files_are_clear_errors() {
        assert!(parse_deps(b"{\"libraries\": ")
            .unwrap_err()
            .contains("invalid deps.json"));
        assert!(parse_deps(&[0xff, 0xfe]).unwrap_err().contains("UTF-8"));
        // Keys without a version, and libraries of the wrong shape, are not packages.
        assert_eq!(
            parse_deps(br#"{"libraries":{"NoVersion":{"type":"package"},"A/":{"type":"package"}}}"#).unwrap(),
            vec![]
        );
        assert!(parse_deps(br#"{"libraries":{"A/1.0":"package"}}"#).is_err());
    }

    #[test]
    fn packages_not_projects() {
        let deps = br#"{"runtimeTarget":{"name":".NETCoreApp,Version=v8.0"},"libraries":{"App/1.0.0":{"type":"project"},"Newtonsoft.Json/13.0.1":{"type":"package","serviceable":true}}}"#;
        assert_eq!(
            parse_deps(deps).unwrap(),
            vec![LangPackage {
                name: "Newtonsoft.Json".into(),
                version: "13.0.1".into()
            }]
        );
    }
}
