//! OpenVEX in: documents parsed strictly (a bad one is refused whole, naming the document and
//! the statement), and the statements that apply to a finding found by the rules Trivy
//! documents for OpenVEX (docs/vex.md): the vulnerability by name or alias among the finding's
//! ids, the product by package URL (a part the statement leaves out matches anything), an
//! image product (`pkg:oci/…`) only through its subcomponents and only for that image; the
//! latest statement by timestamp wins, document order breaking ties.

use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::Arc;

use super::purl::Purl;

/// A VEX document larger than this is refused (real ones are kilobytes).
pub const MAX_DOCUMENT_BYTES: usize = 16 << 20;
const JUSTIFICATIONS: [&str; 5] = [
    "component_not_present",
    "vulnerable_code_not_present",
    "vulnerable_code_not_in_execute_path",
    "vulnerable_code_cannot_be_controlled_by_adversary",
    "inline_mitigations_already_exist",
];

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum VexError {
    #[error("VEX document {document}: {why}")]
    Document { document: String, why: String },
    #[error("VEX document {document}, statement {index}: {why}")]
    Statement {
        document: String,
        index: usize,
        why: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VexStatus {
    NotAffected,
    Affected,
    Fixed,
    UnderInvestigation,
}

impl VexStatus {
    /// `not_affected` and `fixed` take a finding out of the counts; the others never do.
    pub fn suppresses(self) -> bool {
        matches!(self, VexStatus::NotAffected | VexStatus::Fixed)
    }
    pub fn as_str(self) -> &'static str {
        match self {
            VexStatus::NotAffected => "not_affected",
            VexStatus::Affected => "affected",
            VexStatus::Fixed => "fixed",
            VexStatus::UnderInvestigation => "under_investigation",
        }
    }
    fn parse(s: &str) -> Option<VexStatus> {
        Some(match s {
            "not_affected" => VexStatus::NotAffected,
            "affected" => VexStatus::Affected,
            "fixed" => VexStatus::Fixed,
            "under_investigation" => VexStatus::UnderInvestigation,
            _ => return None,
        })
    }
}

/// The statement that decided a finding, as the report shows it (`vex`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VexVerdict {
    pub status: VexStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub justification: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub impact_statement: Option<String>,
    /// The document's `@id` (or its name when it has none).
    pub document: Arc<str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub statement_timestamp: Option<String>,
}

#[derive(Debug, Clone)]
struct Product {
    purl: Option<Purl>,
    subcomponents: Vec<Purl>,
}

#[derive(Debug, Clone)]
struct Statement {
    names: Vec<String>,
    products: Vec<Product>,
    /// Seconds since the epoch (the statement's timestamp, else the document's).
    time: i64,
    /// Position among every statement loaded: later wins a tie.
    order: usize,
    verdict: Arc<VexVerdict>,
}

/// One parsed document.
#[derive(Debug, Clone)]
pub struct VexDocument {
    pub id: String,
    statements: Vec<Statement>,
}

impl VexDocument {
    pub fn statements(&self) -> usize {
        self.statements.len()
    }
}

#[derive(Deserialize)]
struct RawDocument {
    #[serde(rename = "@context")]
    context: Option<String>,
    #[serde(rename = "@id")]
    id: Option<String>,
    timestamp: Option<String>,
    statements: Option<Vec<serde_json::Value>>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RawVulnerability {
    /// OpenVEX 0.0.x: the name alone.
    Name(String),
    Object {
        name: String,
        #[serde(default)]
        aliases: Vec<String>,
    },
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RawProduct {
    /// OpenVEX 0.0.x: the identifier alone.
    Id(String),
    Object {
        #[serde(rename = "@id")]
        id: Option<String>,
        identifiers: Option<HashMap<String, String>>,
        #[serde(default)]
        subcomponents: Vec<RawProduct>,
    },
}

#[derive(Deserialize)]
struct RawStatement {
    vulnerability: RawVulnerability,
    #[serde(default)]
    products: Vec<RawProduct>,
    status: String,
    timestamp: Option<String>,
    justification: Option<String>,
    impact_statement: Option<String>,
}

pub use crate::time::rfc3339_seconds;

fn product_purl(id: Option<&String>, identifiers: Option<&HashMap<String, String>>) -> Option<Purl> {
    identifiers
        .and_then(|i| i.get("purl"))
        .or(id)
        .and_then(|s| Purl::parse(s))
}

fn convert_product(p: RawProduct) -> Product {
    match p {
        RawProduct::Id(id) => Product {
            purl: Purl::parse(&id),
            subcomponents: Vec::new(),
        },
        RawProduct::Object {
            id,
            identifiers,
            subcomponents,
        } => Product {
            purl: product_purl(id.as_ref(), identifiers.as_ref()),
            subcomponents: subcomponents
                .into_iter()
                .filter_map(|s| convert_product(s).purl)
                .collect(),
        },
    }
}

/// Where a statement sits, for its errors, its document and its defaults.
struct StatementAt<'a> {
    name: &'a str,
    index: usize,
    document: &'a Arc<str>,
    doc_time: Option<i64>,
    doc_timestamp: Option<&'a str>,
    order: usize,
}

fn convert_statement(value: serde_json::Value, at: &StatementAt) -> Result<Statement, VexError> {
    let bad = |why: String| VexError::Statement {
        document: at.name.to_string(),
        index: at.index,
        why,
    };
    let s: RawStatement = serde_json::from_value(value).map_err(|e| bad(e.to_string()))?;
    let status = VexStatus::parse(&s.status).ok_or_else(|| bad(format!("unknown status {:?}", s.status)))?;
    if let Some(j) = s.justification.as_deref().filter(|j| !JUSTIFICATIONS.contains(j)) {
        return Err(bad(format!("unknown justification {j:?}")));
    }
    if status == VexStatus::NotAffected && s.justification.is_none() && s.impact_statement.is_none() {
        return Err(bad(
            "not_affected needs a justification or an impact_statement".into()
        ));
    }
    if s.products.is_empty() {
        return Err(bad("no products".into()));
    }
    let (name, aliases) = match s.vulnerability {
        RawVulnerability::Name(n) => (n, Vec::new()),
        RawVulnerability::Object { name, aliases } => (name, aliases),
    };
    if name.trim().is_empty() {
        return Err(bad("vulnerability has no name".into()));
    }
    let time = match s.timestamp.as_deref() {
        Some(t) => rfc3339_seconds(t).ok_or_else(|| bad(format!("timestamp {t:?} is not RFC 3339")))?,
        None => at.doc_time.unwrap_or(0),
    };
    let products: Vec<Product> = s.products.into_iter().map(convert_product).collect();
    if products
        .iter()
        .all(|p| p.purl.is_none() && p.subcomponents.is_empty())
    {
        return Err(bad("no product is named by a package URL".into()));
    }
    Ok(Statement {
        names: std::iter::once(name).chain(aliases).collect(),
        products,
        time,
        order: at.order,
        verdict: Arc::new(VexVerdict {
            status,
            justification: s.justification,
            impact_statement: s.impact_statement,
            document: at.document.clone(),
            statement_timestamp: s.timestamp.or(at.doc_timestamp.map(str::to_string)),
        }),
    })
}

/// Parses one document. `name` (its file or URL) names it in errors and when it has no `@id`.
/// `first_order` numbers its statements after those already loaded.
pub fn parse_document(bytes: &[u8], name: &str, first_order: usize) -> Result<VexDocument, VexError> {
    let doc_err = |why: String| VexError::Document {
        document: name.to_string(),
        why,
    };
    if bytes.len() > MAX_DOCUMENT_BYTES {
        return Err(doc_err(format!(
            "{} bytes, more than the {MAX_DOCUMENT_BYTES} allowed",
            bytes.len()
        )));
    }
    let raw: RawDocument =
        serde_json::from_slice(bytes).map_err(|e| doc_err(format!("not an OpenVEX JSON document: {e}")))?;
    match raw.context.as_deref() {
        Some(c) if c.starts_with("https://openvex.dev/ns") => {}
        Some(c) => {
            return Err(doc_err(format!(
                "@context {c:?} is not OpenVEX's (https://openvex.dev/ns…)"
            )))
        }
        None => return Err(doc_err("no @context: not an OpenVEX document".into())),
    }
    let doc_time = match raw.timestamp.as_deref() {
        Some(t) => {
            Some(rfc3339_seconds(t).ok_or_else(|| doc_err(format!("timestamp {t:?} is not RFC 3339")))?)
        }
        None => None,
    };
    let document: Arc<str> = Arc::from(raw.id.as_deref().filter(|i| !i.is_empty()).unwrap_or(name));
    let raw_statements = raw.statements.ok_or_else(|| doc_err("no statements".into()))?;
    let mut statements = Vec::with_capacity(raw_statements.len());
    for (index, value) in raw_statements.into_iter().enumerate() {
        let at = StatementAt {
            name,
            index,
            document: &document,
            doc_time,
            doc_timestamp: raw.timestamp.as_deref(),
            order: first_order + index,
        };
        statements.push(convert_statement(value, &at)?);
    }
    if statements.is_empty() {
        return Err(doc_err("no statements".into()));
    }
    Ok(VexDocument {
        id: document.to_string(),
        statements,
    })
}

/// The image a finding was found in, for `pkg:oci/…` products: its manifest digest and its
/// repository's last path segment, where known.
#[derive(Debug, Clone, Default)]
pub struct ImageIdentity {
    pub digest: Option<String>,
    pub name: Option<String>,
}

impl ImageIdentity {
    fn is(&self, product: &Purl) -> bool {
        if product.kind != "oci" {
            return false;
        }
        match &product.version {
            Some(v) => self.digest.as_deref() == Some(v.as_str()),
            None => self.name.as_deref() == Some(product.name.as_str()),
        }
    }
}

/// Every statement loaded, indexed by vulnerability name and alias.
#[derive(Debug, Clone, Default)]
pub struct VexSet {
    statements: Vec<Statement>,
    by_name: HashMap<String, Vec<usize>>,
    pub documents: usize,
}

impl VexSet {
    pub fn new(documents: Vec<VexDocument>) -> VexSet {
        let mut set = VexSet {
            documents: documents.len(),
            ..Default::default()
        };
        for s in documents.into_iter().flat_map(|d| d.statements) {
            let i = set.statements.len();
            for n in &s.names {
                let slot = set.by_name.entry(n.clone()).or_default();
                if slot.last() != Some(&i) {
                    slot.push(i);
                }
            }
            set.statements.push(s);
        }
        set
    }

    pub fn is_empty(&self) -> bool {
        self.statements.is_empty()
    }

    pub fn statements(&self) -> usize {
        self.statements.len()
    }

    /// The statement that decides a finding with these ids about the package `purl`, in
    /// `image`: the latest applicable one.
    pub fn verdict<'a>(
        &self,
        ids: impl IntoIterator<Item = &'a str>,
        purl: &str,
        image: &ImageIdentity,
    ) -> Option<Arc<VexVerdict>> {
        let package = Purl::parse(purl)?;
        let mut candidates: Vec<usize> = ids
            .into_iter()
            .filter_map(|id| self.by_name.get(id))
            .flatten()
            .copied()
            .collect();
        candidates.sort_unstable();
        candidates.dedup();
        candidates
            .into_iter()
            .map(|i| &self.statements[i])
            .filter(|s| s.products.iter().any(|p| applies(p, &package, image)))
            .max_by_key(|s| (s.time, s.order))
            .map(|s| s.verdict.clone())
    }
}

fn applies(p: &Product, package: &Purl, image: &ImageIdentity) -> bool {
    if p.subcomponents.is_empty() {
        return p.purl.as_ref().is_some_and(|purl| purl.covers(package));
    }
    // Subcomponents name packages of the product: they apply only inside that image.
    p.purl.as_ref().is_some_and(|purl| image.is(purl)) && p.subcomponents.iter().any(|s| s.covers(package))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(statements: &str) -> String {
        format!(
            r#"{{"@context":"https://openvex.dev/ns/v0.2.0","@id":"https://example.com/vex/1","author":"ops","timestamp":"2024-01-01T00:00:00Z","version":1,"statements":[{statements}]}}"#
        )
    }

    const BUSYBOX: &str = "pkg:apk/alpine/busybox@1.36.1-r2?arch=x86_64&distro=3.20.3";

    fn verdict(set: &VexSet, ids: &[&str], purl: &str, image: &ImageIdentity) -> Option<VexStatus> {
        set.verdict(ids.iter().copied(), purl, image).map(|v| v.status)
    }

    #[test]
    fn matches_by_name_alias_and_purl() {
        let d = doc(
            r#"{"vulnerability":{"name":"CVE-2023-42366","aliases":["GHSA-x"]},"products":[{"@id":"pkg:apk/alpine/busybox?arch=x86_64"}],"status":"not_affected","justification":"vulnerable_code_not_in_execute_path"},
               {"vulnerability":{"name":"CVE-2024-0001"},"products":[{"@id":"pkg:apk/alpine/busybox@1.0-r0"}],"status":"fixed"}"#,
        );
        let set = VexSet::new(vec![parse_document(d.as_bytes(), "a.json", 0).unwrap()]);
        let none = ImageIdentity::default();
        assert_eq!(
            verdict(&set, &["ALPINE-CVE-2023-42366", "CVE-2023-42366"], BUSYBOX, &none),
            Some(VexStatus::NotAffected)
        );
        assert_eq!(
            verdict(&set, &["GHSA-x"], BUSYBOX, &none),
            Some(VexStatus::NotAffected),
            "by alias"
        );
        assert_eq!(
            verdict(&set, &["CVE-2024-0001"], BUSYBOX, &none),
            None,
            "other version"
        );
        assert_eq!(
            verdict(
                &set,
                &["CVE-2023-42366"],
                "pkg:apk/alpine/ssl_client@1.36.1-r2",
                &none
            ),
            None
        );
        let v = set.verdict(["CVE-2023-42366"], BUSYBOX, &none).unwrap();
        assert_eq!(&*v.document, "https://example.com/vex/1");
        assert_eq!(v.statement_timestamp.as_deref(), Some("2024-01-01T00:00:00Z"));
    }

    #[test]
    fn image_products_apply_through_subcomponents_to_that_image_only() {
        let d = doc(
            r#"{"vulnerability":{"name":"CVE-2023-42366"},"products":[{"@id":"pkg:oci/app@sha256%3Aabc","subcomponents":[{"@id":"pkg:apk/alpine/busybox"}]}],"status":"not_affected","impact_statement":"not reachable"}"#,
        );
        let set = VexSet::new(vec![parse_document(d.as_bytes(), "a.json", 0).unwrap()]);
        let app = ImageIdentity {
            digest: Some("sha256:abc".into()),
            name: Some("app".into()),
        };
        let other = ImageIdentity {
            digest: Some("sha256:def".into()),
            name: Some("app".into()),
        };
        assert_eq!(
            verdict(&set, &["CVE-2023-42366"], BUSYBOX, &app),
            Some(VexStatus::NotAffected)
        );
        assert_eq!(verdict(&set, &["CVE-2023-42366"], BUSYBOX, &other), None);
        assert_eq!(
            verdict(&set, &["CVE-2023-42366"], BUSYBOX, &ImageIdentity::default()),
            None
        );
    }

    #[test]
    fn latest_statement_wins_and_document_order_breaks_ties() {
        let d = doc(
            r#"{"vulnerability":{"name":"CVE-1"},"products":[{"@id":"pkg:apk/alpine/busybox"}],"status":"not_affected","justification":"component_not_present","timestamp":"2024-03-01T00:00:00+01:00"},
               {"vulnerability":{"name":"CVE-1"},"products":[{"@id":"pkg:apk/alpine/busybox"}],"status":"affected","timestamp":"2024-02-29T23:30:00Z"},
               {"vulnerability":{"name":"CVE-2"},"products":[{"@id":"pkg:apk/alpine/busybox"}],"status":"under_investigation"},
               {"vulnerability":{"name":"CVE-2"},"products":[{"@id":"pkg:apk/alpine/busybox"}],"status":"fixed"}"#,
        );
        let set = VexSet::new(vec![parse_document(d.as_bytes(), "a.json", 0).unwrap()]);
        let none = ImageIdentity::default();
        // 2024-03-01T00:00+01:00 is 2024-02-29T23:00Z: the affected statement is later.
        assert_eq!(
            verdict(&set, &["CVE-1"], BUSYBOX, &none),
            Some(VexStatus::Affected)
        );
        assert_eq!(verdict(&set, &["CVE-2"], BUSYBOX, &none), Some(VexStatus::Fixed));
        assert!(VexStatus::Fixed.suppresses() && VexStatus::NotAffected.suppresses());
        assert!(!VexStatus::Affected.suppresses() && !VexStatus::UnderInvestigation.suppresses());
    }

    #[test]
    fn bad_documents_are_refused_naming_document_and_statement() {
        let err = |bytes: &[u8]| parse_document(bytes, "bad.json", 0).unwrap_err().to_string();
        assert!(err(b"{not json").contains("bad.json"));
        assert!(err(br#"{"@context":"https://example.com","statements":[]}"#).contains("@context"));
        let st = |s: &str| err(doc(s).as_bytes());
        assert!(
            st(r#"{"vulnerability":{"name":"CVE-1"},"products":[],"status":"fixed"}"#)
                .contains("statement 0: no products")
        );
        assert!(st(
            r#"{"vulnerability":{"name":"CVE-1"},"products":[{"@id":"pkg:apk/alpine/x"}],"status":"gone"}"#
        )
        .contains("unknown status"));
        assert!(st(r#"{"vulnerability":{"name":"CVE-1"},"products":[{"@id":"pkg:apk/alpine/x"}],"status":"not_affected","justification":"trust_me"}"#).contains("unknown justification"));
        assert!(st(r#"{"vulnerability":{"name":"CVE-1"},"products":[{"@id":"pkg:apk/alpine/x"}],"status":"not_affected"}"#).contains("justification or an impact_statement"));
        assert!(st(r#"{"vulnerability":{"name":"CVE-1"},"products":[{"@id":"pkg:apk/alpine/x"}],"status":"fixed","timestamp":"yesterday"}"#).contains("RFC 3339"));
        let huge = vec![b' '; MAX_DOCUMENT_BYTES + 1];
        assert!(err(&huge).contains("allowed"));
    }

    #[test]
    fn reads_rfc3339() {
        assert_eq!(rfc3339_seconds("1970-01-02T00:00:00Z"), Some(86400));
        assert_eq!(
            rfc3339_seconds("2023-01-08T18:02:03.647787998-06:00"),
            Some(1673222523)
        );
        assert_eq!(rfc3339_seconds("2023-03-07T00:00:00+0000"), Some(1678147200));
        assert_eq!(rfc3339_seconds("2023-01-08"), None);
    }
}
