//! An image's base, and what rebuilding it on a newer build of that base would fix. Facts
//! about images in (layer chains, OCI labels, names, creation times), values out.
//!
//! A base is found in this order, the first that answers wins: the build's own statement
//! (`label`: the OCI base keys in the config's labels or the manifest's annotations), a base
//! the operator declared (`config`), and another image whose layer chain is a strict prefix
//! of this one's (`layers`: the longest, ties broken by name).

use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

use crate::matcher::Finding;

pub const BASE_NAME: &str = "org.opencontainers.image.base.name";
pub const BASE_DIGEST: &str = "org.opencontainers.image.base.digest";
pub const SOURCE: &str = "org.opencontainers.image.source";
pub const REVISION: &str = "org.opencontainers.image.revision";
/// The keys kept of an image's labels and annotations.
const KEPT: [&str; 4] = [BASE_NAME, BASE_DIGEST, SOURCE, REVISION];
/// A label value longer than this is not kept (real ones are references and URLs).
const MAX_LABEL_BYTES: usize = 1024;

/// What the node (or a scan) knows of one image.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageFacts {
    /// The digests it is known by: what its names point at, and its manifest's.
    pub digests: Vec<String>,
    /// Its names (image references), sorted.
    #[serde(default)]
    pub names: Vec<String>,
    /// Its layer chain, bottom first (`rootfs.diff_ids`).
    pub diff_ids: Vec<String>,
    /// The OCI base, source and revision keys of its config labels and manifest annotations
    /// (labels win where both say).
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// The config's `created`, seconds since the epoch.
    pub created: Option<i64>,
}

impl ImageFacts {
    /// Facts from an image config (JSON) and its manifest's annotations; `None` when the
    /// config is not an image config.
    pub fn from_config(config: &[u8], annotations: &BTreeMap<String, String>) -> Option<ImageFacts> {
        #[derive(Deserialize)]
        struct Inner {
            #[serde(rename = "Labels", default)]
            labels: Option<BTreeMap<String, String>>,
        }
        #[derive(Deserialize)]
        struct Config {
            created: Option<String>,
            #[serde(default)]
            config: Option<Inner>,
            rootfs: RootFs,
        }
        #[derive(Deserialize)]
        struct RootFs {
            #[serde(default)]
            diff_ids: Vec<String>,
        }
        let c: Config = serde_json::from_slice(config).ok()?;
        let labels = c.config.and_then(|i| i.labels).unwrap_or_default();
        let mut kept = BTreeMap::new();
        for key in KEPT {
            let value = labels.get(key).or_else(|| annotations.get(key));
            if let Some(v) = value.filter(|v| !v.is_empty() && v.len() <= MAX_LABEL_BYTES) {
                kept.insert(key.to_string(), v.clone());
            }
        }
        Some(ImageFacts {
            digests: Vec::new(),
            names: Vec::new(),
            diff_ids: c.rootfs.diff_ids,
            labels: kept,
            created: c.created.as_deref().and_then(crate::triage::vex::rfc3339_seconds),
        })
    }

    pub fn label(&self, key: &str) -> Option<&str> {
        self.labels.get(key).map(String::as_str)
    }

    pub fn known_as(&self, digest: &str) -> bool {
        self.digests.iter().any(|d| d == digest)
    }

    /// Whether one of its names is `reference` (both normalised: `alpine` is
    /// `docker.io/library/alpine:latest`).
    pub fn named(&self, reference: &str) -> bool {
        let want = normalize_reference(reference);
        self.names.iter().any(|n| normalize_reference(n) == want)
    }

    /// Its first name, else its first digest: how it is named in a report.
    fn display_name(&self) -> Option<String> {
        self.names.first().or(self.digests.first()).cloned()
    }
}

/// A reference in its full form: registry, repository and tag (`:latest` when it has none);
/// a digest reference is kept as it is.
pub fn normalize_reference(r: &str) -> String {
    let (name, digest) = match r.split_once('@') {
        Some((n, d)) => (n, Some(d)),
        None => (r, None),
    };
    let last = name.rsplit('/').next().unwrap_or(name);
    let tagged = if last.contains(':') || digest.is_some() {
        name.to_string()
    } else {
        format!("{name}:latest")
    };
    let first = tagged.split('/').next().unwrap_or_default();
    let has_registry =
        tagged.contains('/') && (first.contains('.') || first.contains(':') || first == "localhost");
    let full = if has_registry {
        tagged
    } else if tagged.contains('/') {
        format!("docker.io/{tagged}")
    } else {
        format!("docker.io/library/{tagged}")
    };
    match digest {
        Some(d) => format!("{full}@{d}"),
        None => full,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DetectedBy {
    Label,
    Config,
    Layers,
}

impl DetectedBy {
    pub fn as_str(self) -> &'static str {
        match self {
            DetectedBy::Label => "label",
            DetectedBy::Config => "config",
            DetectedBy::Layers => "layers",
        }
    }
}

/// An image's base, as a report says it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Base {
    pub name: Option<String>,
    pub digest: Option<String>,
    pub detected_by: DetectedBy,
    /// How many of the image's layers, bottom first, are the base's; absent when the base's
    /// layer chain is not known (a label names a base the node does not hold).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layers: Option<usize>,
}

fn strict_prefix(base: &[String], image: &[String]) -> bool {
    !base.is_empty() && base.len() < image.len() && image.starts_with(base)
}

/// The longest strict prefix among candidates (named), ties broken by name.
fn longest<'a>(
    image: &ImageFacts,
    candidates: impl Iterator<Item = (String, &'a ImageFacts)>,
) -> Option<(String, &'a ImageFacts)> {
    candidates
        .filter(|(_, c)| strict_prefix(&c.diff_ids, &image.diff_ids))
        .min_by(|(an, a), (bn, b)| b.diff_ids.len().cmp(&a.diff_ids.len()).then_with(|| an.cmp(bn)))
}

/// The image's base: its labels first, then a declared base (`declared`: reference and the
/// facts of what it resolves to), then any image on the node. `None` when none applies.
pub fn detect(image: &ImageFacts, declared: &[(String, ImageFacts)], node: &[ImageFacts]) -> Option<Base> {
    if let Some(base) = from_labels(image, declared, node) {
        return Some(base);
    }
    let declared = declared.iter().map(|(r, f)| (r.clone(), f));
    if let Some((name, c)) = longest(image, declared) {
        return Some(Base {
            name: Some(name),
            digest: c.digests.first().cloned(),
            detected_by: DetectedBy::Config,
            layers: Some(c.diff_ids.len()),
        });
    }
    let named = node.iter().filter_map(|c| Some((c.display_name()?, c)));
    longest(image, named).map(|(name, c)| Base {
        name: Some(name),
        digest: c.digests.first().cloned(),
        detected_by: DetectedBy::Layers,
        layers: Some(c.diff_ids.len()),
    })
}

/// The base the image's labels name, with its layer count when the node holds it (by digest,
/// or by name with a chain that is a prefix of the image's), else when a declared base's
/// chain is a prefix (the operator said where the base ends).
fn from_labels(image: &ImageFacts, declared: &[(String, ImageFacts)], node: &[ImageFacts]) -> Option<Base> {
    let name = image.label(BASE_NAME);
    let digest = image.label(BASE_DIGEST);
    if name.is_none() && digest.is_none() {
        return None;
    }
    let prefix = |c: &&ImageFacts| strict_prefix(&c.diff_ids, &image.diff_ids);
    let by_digest = digest.and_then(|d| node.iter().filter(prefix).find(|c| c.known_as(d)));
    let by_name = || {
        let named = node
            .iter()
            .filter(|c| name.is_some_and(|n| c.named(n)))
            .filter_map(|c| Some((c.display_name()?, c)));
        longest(image, named).map(|(_, c)| c)
    };
    let by_declaration = || longest(image, declared.iter().map(|(r, f)| (r.clone(), f))).map(|(_, c)| c);
    let held = by_digest.or_else(by_name).or_else(by_declaration);
    Some(Base {
        name: name.map(str::to_string),
        digest: digest
            .map(str::to_string)
            .or_else(|| held.and_then(|c| c.digests.first().cloned())),
        detected_by: DetectedBy::Label,
        layers: held.map(|c| c.diff_ids.len()),
    })
}

/// A newer build of `base` on the node: an image named as the base is, known by another
/// digest, whose layers are not the ones `image` was built on (a base re-pushed under another
/// digest is the same base), and (when both times are known) not created before it. Equal
/// times are the rule for bases built reproducibly (Bazel rules_oci, ko, apko, distroless fix
/// `created`, often at the epoch): there the evidence of "newer" is that the base's name now
/// names another build. The latest such build, if any.
pub fn newer_build<'a>(image: &ImageFacts, base: &Base, node: &'a [ImageFacts]) -> Option<&'a ImageFacts> {
    let name = base.name.as_deref()?;
    let old = base.digest.as_deref();
    let old_created = old
        .and_then(|d| node.iter().find(|c| c.known_as(d)))
        .and_then(|c| c.created);
    node.iter()
        .filter(|c| c.named(name) && old.is_none_or(|d| !c.known_as(d)))
        // Not the image itself (an image whose label names its own tag: rebuilt in place).
        .filter(|c| !image.digests.iter().any(|d| c.known_as(d)))
        .filter(|c| !strict_prefix(&c.diff_ids, &image.diff_ids))
        .filter(|c| match (old_created, c.created) {
            (Some(o), Some(n)) => n >= o,
            _ => true,
        })
        .max_by(|a, b| a.created.cmp(&b.created).then_with(|| b.digests.cmp(&a.digests)))
}

/// Sets each finding's `in_base`: whether the layer that introduced its package is one of the
/// base's (`image_layers` bottom first; `base_layers` of them are the base's). Unknown when
/// the base's layers are, or the finding's layer is.
pub fn mark_in_base(
    findings: &mut [std::sync::Arc<Finding>],
    image_layers: &[String],
    base_layers: Option<usize>,
) {
    for f in findings {
        let in_base = in_base(f, image_layers, base_layers);
        // Written only when it differs: a finding shared with other images stays shared.
        if f.in_base != in_base {
            std::sync::Arc::make_mut(f).in_base = in_base;
        }
    }
}

/// Whether a finding's package came with the base (see [`mark_in_base`]).
pub fn in_base(f: &Finding, image_layers: &[String], base_layers: Option<usize>) -> Option<bool> {
    match (base_layers, f.introduced_layer.as_deref()) {
        (Some(k), Some(l)) => Some(image_layers.iter().take(k).any(|b| b == l)),
        _ => None,
    }
}

/// One finding a rebuild would remove.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Fixed {
    pub id: String,
    pub package: String,
}

/// What rebuilding an image on the newer build of its base would change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Rebuild {
    pub base_name: String,
    pub base_digest: Option<String>,
    pub new_base_digest: String,
    /// Findings (one per id and package, as a report counts them) the rebuild removes.
    pub fixed_by_rebuild: u64,
    pub fixed: Vec<Fixed>,
    /// Findings the rebuilt image would still have.
    pub remaining: u64,
}

/// The app's findings in base layers that the newer base no longer has (by id and package:
/// a package the new base dropped, or holds at a version the advisory does not affect).
/// `in_base` holds each app finding's [`in_base`], in order.
pub fn rebuild<F: std::borrow::Borrow<Finding>>(
    app: &[F],
    in_base: &[Option<bool>],
    base: &Base,
    new_base: &ImageFacts,
    new_base_findings: &[F],
) -> Option<Rebuild> {
    let app: Vec<&Finding> = app.iter().map(F::borrow).collect();
    let new_base_findings: Vec<&Finding> = new_base_findings.iter().map(F::borrow).collect();
    let still: BTreeSet<(&str, &str)> = new_base_findings.iter().map(|f| (&*f.id, &*f.package)).collect();
    let fixed: BTreeSet<Fixed> = app
        .iter()
        .zip(in_base)
        .filter(|(f, b)| **b == Some(true) && !still.contains(&(&*f.id, &*f.package)))
        .map(|(f, _)| f)
        .map(|f| Fixed {
            id: f.id.to_string(),
            package: f.package.to_string(),
        })
        .collect();
    let total: BTreeSet<(&str, &str)> = app.iter().map(|f| (&*f.id, &*f.package)).collect();
    Some(Rebuild {
        base_name: base.name.clone()?,
        base_digest: base.digest.clone(),
        new_base_digest: new_base.digests.first()?.clone(),
        fixed_by_rebuild: fixed.len() as u64,
        remaining: (total.len() - fixed.len()) as u64,
        fixed: fixed.into_iter().collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn img(name: &str, digest: &str, chain: &[&str], created: i64) -> ImageFacts {
        ImageFacts {
            digests: vec![digest.to_string()],
            names: vec![name.to_string()],
            diff_ids: chain.iter().map(|s| s.to_string()).collect(),
            labels: BTreeMap::new(),
            created: Some(created),
        }
    }

    #[test]
    fn references_normalise_as_docker_does() {
        assert_eq!(normalize_reference("alpine"), "docker.io/library/alpine:latest");
        assert_eq!(
            normalize_reference("library/alpine:3.20"),
            "docker.io/library/alpine:3.20"
        );
        assert_eq!(normalize_reference("localhost/base:1"), "localhost/base:1");
        assert_eq!(
            normalize_reference("registry:5000/a/b"),
            "registry:5000/a/b:latest"
        );
        assert_eq!(
            normalize_reference("ghcr.io/o/r@sha256:ab"),
            "ghcr.io/o/r@sha256:ab"
        );
    }

    #[test]
    fn labels_then_declared_then_the_longest_prefix_on_the_node() {
        let base1 = img("localhost/base:1", "sha256:b1", &["l1"], 10);
        let base2 = img("localhost/base:2", "sha256:b2", &["l1", "l2"], 10);
        let twin = img("localhost/aaa:2", "sha256:b3", &["l1", "l2"], 10);
        let mut app = img("localhost/app:1", "sha256:a", &["l1", "l2", "l3"], 20);
        let node = vec![base1.clone(), base2.clone(), twin.clone(), app.clone()];
        // Layers: the longest strict prefix, ties by name (aaa before base).
        let b = detect(&app, &[], &node).unwrap();
        assert_eq!(
            (b.name.as_deref(), b.detected_by, b.layers),
            (Some("localhost/aaa:2"), DetectedBy::Layers, Some(2))
        );
        // Declared beats layers, even when shorter.
        let declared = vec![("localhost/base:1".to_string(), base1.clone())];
        let b = detect(&app, &declared, &node).unwrap();
        assert_eq!(
            (b.name.as_deref(), b.detected_by, b.layers),
            (Some("localhost/base:1"), DetectedBy::Config, Some(1))
        );
        // A label beats both; it names a base the node holds by digest.
        app.labels.insert(BASE_NAME.into(), "localhost/base:1".into());
        app.labels.insert(BASE_DIGEST.into(), "sha256:b1".into());
        let b = detect(&app, &declared, &node).unwrap();
        assert_eq!(
            (b.detected_by, b.layers, b.digest.as_deref()),
            (DetectedBy::Label, Some(1), Some("sha256:b1"))
        );
        // A label naming a base the node lacks: its layers are unknown.
        app.labels.insert(BASE_DIGEST.into(), "sha256:gone".into());
        app.labels.insert(BASE_NAME.into(), "localhost/other:1".into());
        let b = detect(&app, &[], &node).unwrap();
        assert_eq!((b.detected_by, b.layers), (DetectedBy::Label, None));
        // An image is not its own base, nor is an image of the same chain.
        assert_eq!(detect(&base1, &[], &node), None);
    }

    #[test]
    fn a_newer_build_is_named_as_the_base_with_another_digest_created_later() {
        let base = Base {
            name: Some("base:1".into()),
            digest: Some("sha256:old".into()),
            detected_by: DetectedBy::Label,
            layers: Some(1),
        };
        let app = img("app:1", "sha256:app", &["l1", "l2"], 150);
        let old = img("docker.io/library/base:0", "sha256:old", &["l1"], 100);
        let earlier = img("docker.io/library/base:1", "sha256:earlier", &["l0"], 50);
        assert_eq!(newer_build(&app, &base, &[old.clone(), earlier]), None);
        // The base the app was built on, under another digest (pushed again): not newer.
        let same = img("docker.io/library/base:1", "sha256:repushed", &["l1"], 300);
        assert_eq!(newer_build(&app, &base, &[old.clone(), same]), None);
        let newer = img("docker.io/library/base:1", "sha256:new", &["l9"], 200);
        assert_eq!(newer_build(&app, &base, &[old, newer.clone()]), Some(&newer));
        // Reproducible builds: every build's `created` is the same (the epoch). The other
        // build under the base's name is newer; the same build under it (re-tagged, or pushed
        // again under another digest) is not; an older build is not, at any time.
        let (old0, app0) = (
            img("docker.io/library/base:0", "sha256:old", &["l1"], 0),
            img("app:1", "sha256:app", &["l1", "l2"], 0),
        );
        let rebuilt = img("docker.io/library/base:1", "sha256:rebuilt", &["l7"], 0);
        assert_eq!(
            newer_build(&app0, &base, &[old0.clone(), rebuilt.clone()]),
            Some(&rebuilt)
        );
        let retagged = img("docker.io/library/base:1", "sha256:old", &["l1"], 0);
        assert_eq!(newer_build(&app0, &base, &[old0.clone(), retagged]), None);
        let repushed = img("docker.io/library/base:1", "sha256:other", &["l1"], 0);
        assert_eq!(newer_build(&app0, &base, &[old0.clone(), repushed]), None);
        let before = img("docker.io/library/base:1", "sha256:before", &["l8"], -1);
        assert_eq!(newer_build(&app0, &base, &[old0, before]), None);
        // An image rebuilt in place under its base's tag is not its own newer base.
        let in_place = img("docker.io/library/base:1", "sha256:app2", &["l1", "l3"], 400);
        assert_eq!(
            newer_build(&in_place, &base, std::slice::from_ref(&in_place)),
            None
        );
    }

    #[test]
    fn a_rebuild_fixes_base_findings_the_new_base_lacks() {
        let f = |id: &str, pkg: &str, in_base: Option<bool>| Finding {
            id: Arc::from(id),
            package: Arc::from(pkg),
            in_base,
            ..Default::default()
        };
        let app = vec![
            f("CVE-1", "musl", Some(true)),
            f("CVE-1", "musl-utils", Some(true)),
            f("CVE-2", "busybox", Some(true)),
            f("CVE-3", "app-lib", Some(false)),
            f("CVE-4", "unknown", None),
        ];
        let new_base = vec![f("CVE-2", "busybox", None)];
        let base = Base {
            name: Some("base:1".into()),
            digest: Some("sha256:old".into()),
            detected_by: DetectedBy::Label,
            layers: Some(1),
        };
        let nb = img("base:1", "sha256:new", &[], 0);
        let marks: Vec<Option<bool>> = app.iter().map(|f| f.in_base).collect();
        let r = rebuild(&app, &marks, &base, &nb, &new_base).unwrap();
        assert_eq!(r.fixed_by_rebuild, 2);
        assert_eq!(r.remaining, 3);
        let fixed: Vec<(&str, &str)> = r
            .fixed
            .iter()
            .map(|x| (x.id.as_str(), x.package.as_str()))
            .collect();
        assert_eq!(fixed, [("CVE-1", "musl"), ("CVE-1", "musl-utils")]);
    }

    #[test]
    fn facts_from_a_config_keep_the_oci_keys_labels_first() {
        let cfg = br#"{"created":"2024-01-02T03:04:05.5Z","config":{"Labels":{"org.opencontainers.image.base.name":"alpine:3.20","other":"x"}},"rootfs":{"type":"layers","diff_ids":["sha256:aa"]}}"#;
        let ann: BTreeMap<String, String> = [
            (BASE_NAME.to_string(), "ignored".to_string()),
            (REVISION.to_string(), "abc".to_string()),
        ]
        .into();
        let f = ImageFacts::from_config(cfg, &ann).unwrap();
        assert_eq!(f.label(BASE_NAME), Some("alpine:3.20"));
        assert_eq!(f.label(REVISION), Some("abc"));
        assert_eq!(f.labels.len(), 2);
        assert_eq!(f.diff_ids, ["sha256:aa"]);
        assert_eq!(f.created, Some(1_704_164_645));
        assert_eq!(ImageFacts::from_config(b"[]", &ann), None);
    }
}
