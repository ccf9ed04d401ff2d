//! Installed Ruby gems: the `specifications/*.gemspec` files RubyGems writes on install
//! (`s.name = "rake".freeze`, `s.version = "13.0.6"`); the file name (`<name>-<version>`)
//! where the lines are missing. The Ruby is read as text, never run.

use super::{utf8, LangPackage};

/// The quoted string assigned to `<var>.<field>` on a line.
fn assigned<'a>(line: &'a str, field: &str) -> Option<&'a str> {
    let (lhs, rhs) = line.split_once('=')?;
    let lhs = lhs.trim();
    if !lhs.ends_with(&format!(".{field}")) || lhs.contains(' ') {
        return None;
    }
    let rhs = rhs.trim();
    let rhs = rhs.strip_prefix("Gem::Version.new(").unwrap_or(rhs);
    let quote = rhs.chars().next().filter(|c| *c == '"' || *c == '\'')?;
    let rest = &rhs[1..];
    rest.split_once(quote).map(|(v, _)| v)
}

pub fn parse_gemspec(bytes: &[u8]) -> Result<Vec<LangPackage>, String> {
    let text = utf8(bytes)?;
    let (mut name, mut version) = (None, None);
    for line in text.lines() {
        let line = line.trim();
        if name.is_none() {
            name = assigned(line, "name");
        }
        if version.is_none() {
            version = assigned(line, "version");
        }
    }
    match (name, version) {
        (Some(n), Some(v)) if !n.is_empty() && !v.is_empty() => Ok(vec![LangPackage {
            name: n.to_string(),
            version: v.to_string(),
        }]),
        _ => Err("no name and version assignments".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rubygems_written_spec() {
        let spec = br#"# -*- encoding: utf-8 -*-
# stub: rake 13.0.6 ruby lib

Gem::Specification.new do |s|
  s.name = "rake".freeze
  s.version = "13.0.6"
  s.required_rubygems_version = Gem::Requirement.new(">= 1.3.2".freeze) if s.respond_to? :required_rubygems_version=
end
"#;
        assert_eq!(
            parse_gemspec(spec).unwrap(),
            vec![LangPackage {
                name: "rake".into(),
                version: "13.0.6".into()
            }]
        );
        assert!(parse_gemspec(b"puts 1").is_err());
    }
}
