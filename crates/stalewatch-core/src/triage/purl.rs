//! Package URLs as VEX statements name products (`pkg:type/namespace/name@version?q=v#sub`):
//! parsed into comparable parts, and matched the way OpenVEX consumers (Trivy) match them —
//! a part the statement leaves out matches anything.

use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Purl {
    /// Lower-cased, as the spec says types are case-insensitive.
    pub kind: String,
    pub namespace: String,
    pub name: String,
    pub version: Option<String>,
    pub qualifiers: BTreeMap<String, String>,
}

fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        match (
            b[i],
            b.get(i + 1).copied().and_then(hex),
            b.get(i + 2).copied().and_then(hex),
        ) {
            (b'%', Some(h), Some(l)) => {
                out.push((h * 16 + l) as u8);
                i += 3;
            }
            (c, _, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl Purl {
    /// Parses a purl; `None` when it is not one (no `pkg:` scheme, no type or name).
    pub fn parse(s: &str) -> Option<Purl> {
        let rest = s.trim().strip_prefix("pkg:")?.trim_start_matches('/');
        let rest = rest.split_once('#').map_or(rest, |(r, _)| r);
        let (rest, query) = rest.split_once('?').map_or((rest, None), |(r, q)| (r, Some(q)));
        let mut qualifiers = BTreeMap::new();
        for pair in query.unwrap_or_default().split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=')?;
            qualifiers.insert(k.to_ascii_lowercase(), decode(v));
        }
        // The version starts at the last '@' after the name's slash (namespaces may hold '@').
        let (path, version) = match rest.rfind('@') {
            Some(at) if !rest[at..].contains('/') => (&rest[..at], Some(decode(&rest[at + 1..]))),
            _ => (rest, None),
        };
        let (kind, path) = path.split_once('/')?;
        let (namespace, name) = path.trim_end_matches('/').rsplit_once('/').unwrap_or(("", path));
        if kind.is_empty() || name.is_empty() {
            return None;
        }
        Some(Purl {
            kind: kind.to_ascii_lowercase(),
            namespace: decode(namespace),
            name: decode(name),
            version: version.filter(|v| !v.is_empty()),
            qualifiers,
        })
    }

    /// Whether this purl (a statement's) covers `package` (an installed package's): same
    /// type, namespace and name; the version only where this one gives it; each qualifier
    /// this one gives present with the same value in `package`.
    pub fn covers(&self, package: &Purl) -> bool {
        self.kind == package.kind
            && self.namespace == package.namespace
            && self.name == package.name
            && self
                .version
                .as_ref()
                .is_none_or(|v| package.version.as_ref() == Some(v))
            && self
                .qualifiers
                .iter()
                .all(|(k, v)| package.qualifiers.get(k) == Some(v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_spec_examples() {
        let p = Purl::parse("pkg:deb/debian/curl@7.50.3-1?arch=i386&distro=jessie").unwrap();
        assert_eq!(
            (p.kind.as_str(), p.namespace.as_str(), p.name.as_str()),
            ("deb", "debian", "curl")
        );
        assert_eq!(p.version.as_deref(), Some("7.50.3-1"));
        assert_eq!(p.qualifiers["distro"], "jessie");
        let n = Purl::parse("pkg:npm/%40angular/animation@12.3.1").unwrap();
        assert_eq!((n.namespace.as_str(), n.name.as_str()), ("@angular", "animation"));
        let o = Purl::parse("pkg:oci/debian@sha256%3A244fd47e07d10?repository_url=docker.io/library/debian")
            .unwrap();
        assert_eq!(o.version.as_deref(), Some("sha256:244fd47e07d10"));
        assert_eq!(
            Purl::parse("pkg:golang/github.com/gorilla/context@v1.1.1#api")
                .unwrap()
                .namespace,
            "github.com/gorilla"
        );
        assert!(Purl::parse("cpe:2.3:a:gnu:bash").is_none());
        assert!(Purl::parse("pkg:apk").is_none());
    }

    #[test]
    fn covers_as_trivy_documents() {
        let installed = Purl::parse("pkg:apk/alpine/busybox@1.36.1-r2?arch=x86_64&distro=3.20.3").unwrap();
        let covers = |s: &str| Purl::parse(s).unwrap().covers(&installed);
        assert!(covers("pkg:apk/alpine/busybox"), "no version: every version");
        assert!(covers("pkg:apk/alpine/busybox@1.36.1-r2"));
        assert!(!covers("pkg:apk/alpine/busybox@1.36.1-r1"));
        assert!(
            covers("pkg:apk/alpine/busybox?arch=x86_64"),
            "only the qualifiers given"
        );
        assert!(!covers("pkg:apk/alpine/busybox?arch=aarch64"));
        assert!(
            !covers("pkg:apk/alpine/busybox?os=linux"),
            "a qualifier the package lacks"
        );
        assert!(!covers("pkg:apk/alpine/ssl_client"));
        assert!(!covers("pkg:deb/alpine/busybox"));
    }
}
