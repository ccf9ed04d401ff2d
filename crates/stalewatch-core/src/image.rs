//! OCI and Docker image metadata: index → manifest for a platform → config and layers.
//! JSON in, descriptors out; reading the blobs is the shell's job.

use serde::Deserialize;

pub const MEDIA_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const MEDIA_DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct Platform {
    #[serde(default)]
    pub os: String,
    #[serde(default)]
    pub architecture: String,
    #[serde(default)]
    pub variant: Option<String>,
}

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct Descriptor {
    #[serde(rename = "mediaType", default)]
    pub media_type: String,
    pub digest: String,
    #[serde(default)]
    pub size: u64,
    #[serde(default)]
    pub platform: Option<Platform>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Index {
    #[serde(default)]
    pub manifests: Vec<Descriptor>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Manifest {
    #[serde(rename = "mediaType", default)]
    pub media_type: String,
    pub config: Descriptor,
    #[serde(default)]
    pub layers: Vec<Descriptor>,
    /// The manifest's annotations (string values only; others are ignored, not an error).
    #[serde(default)]
    pub annotations: Option<std::collections::BTreeMap<String, serde_json::Value>>,
}

impl Manifest {
    /// The annotations whose values are strings.
    pub fn string_annotations(&self) -> std::collections::BTreeMap<String, String> {
        self.annotations
            .iter()
            .flatten()
            .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
            .collect()
    }
}

/// An image document: an index (or Docker manifest list) or a manifest.
#[derive(Debug, Clone)]
pub enum Document {
    Index(Index),
    Manifest(Manifest),
}

/// Parses an index or a manifest, told apart by content (descriptors' media types are
/// optional in OCI).
pub fn parse_document(b: &[u8]) -> Result<Document, ImageError> {
    #[derive(Deserialize)]
    struct Probe {
        #[serde(default)]
        manifests: Option<serde_json::Value>,
    }
    let probe: Probe = json("image document", b)?;
    if probe.manifests.is_some() {
        Ok(Document::Index(parse_index(b)?))
    } else {
        Ok(Document::Manifest(parse_manifest(b)?))
    }
}

/// `docker save`'s `manifest.json` entry.
#[derive(Debug, Clone, Deserialize)]
pub struct DockerArchiveEntry {
    #[serde(rename = "Config")]
    pub config: String,
    #[serde(rename = "RepoTags", default)]
    pub repo_tags: Option<Vec<String>>,
    #[serde(rename = "Layers")]
    pub layers: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("invalid {what}: {detail}")]
    Json { what: &'static str, detail: String },
    #[error("no manifest for platform {0} in the image index")]
    NoPlatform(String),
    #[error("invalid digest {0:?}")]
    BadDigest(String),
}

fn json<'a, T: Deserialize<'a>>(what: &'static str, b: &'a [u8]) -> Result<T, ImageError> {
    serde_json::from_slice(b).map_err(|e| ImageError::Json {
        what,
        detail: e.to_string(),
    })
}

pub fn parse_index(b: &[u8]) -> Result<Index, ImageError> {
    json("image index", b)
}
pub fn parse_manifest(b: &[u8]) -> Result<Manifest, ImageError> {
    json("image manifest", b)
}
pub fn parse_docker_manifest(b: &[u8]) -> Result<Vec<DockerArchiveEntry>, ImageError> {
    json("docker manifest.json", b)
}

/// Whether a descriptor points at another index rather than a manifest.
pub fn is_index(d: &Descriptor) -> bool {
    d.media_type == MEDIA_INDEX || d.media_type == MEDIA_DOCKER_LIST
}

/// The OCI architecture name of the machine this runs on.
pub fn host_architecture() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "arm" => "arm",
        "s390x" => "s390x",
        "powerpc64" => "ppc64le",
        other => other,
    }
}

/// Picks the manifest for `linux/<arch>` from index entries; entries without a platform
/// (single-image layouts) match anything. Attestation manifests (`unknown/unknown`) never do.
pub fn select_platform<'a>(entries: &'a [Descriptor], arch: &str) -> Result<&'a Descriptor, ImageError> {
    let usable: Vec<&Descriptor> = entries
        .iter()
        .filter(|d| d.platform.as_ref().is_none_or(|p| p.os != "unknown"))
        .collect();
    usable
        .iter()
        .find(|d| {
            d.platform
                .as_ref()
                .is_some_and(|p| p.os == "linux" && p.architecture == arch)
        })
        .or_else(|| usable.iter().find(|d| d.platform.is_none()))
        .copied()
        .ok_or_else(|| ImageError::NoPlatform(format!("linux/{arch}")))
}

/// A content digest (`sha256:<hex>`), checked once: an algorithm of lower-case letters and
/// digits, at least 32 hex digits — safe to use in a path (`blobs/<alg>/<hex>`,
/// `layers/<alg>-<hex>`), never a `..` or a `/`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Digest<'a> {
    pub algorithm: &'a str,
    pub hex: &'a str,
}

impl<'a> Digest<'a> {
    pub fn parse(d: &'a str) -> Result<Digest<'a>, ImageError> {
        let (alg, hex) = d.split_once(':').ok_or_else(|| ImageError::BadDigest(d.into()))?;
        let alg_ok = !alg.is_empty() && alg.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
        let hex_ok = hex.len() >= 32 && hex.bytes().all(|b| b.is_ascii_hexdigit());
        if !alg_ok || !hex_ok {
            return Err(ImageError::BadDigest(d.into()));
        }
        Ok(Digest { algorithm: alg, hex })
    }

    /// Whether `bytes_digest` (a SHA-256 of the content) is this digest; `None` for an
    /// algorithm other than SHA-256, which cannot be checked here.
    pub fn matches_sha256(&self, sha256: &[u8]) -> Option<bool> {
        (self.algorithm == "sha256").then(|| self.hex.eq_ignore_ascii_case(&hex_lower(sha256)))
    }
}

impl std::fmt::Display for Digest<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.algorithm, self.hex)
    }
}

fn hex_lower(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The uncompressed layer digests (`rootfs.diff_ids`) of an image config.
pub fn config_diff_ids(config: &[u8]) -> Option<Vec<String>> {
    #[derive(Deserialize)]
    struct RootFs {
        #[serde(default)]
        diff_ids: Vec<String>,
    }
    #[derive(Deserialize)]
    struct Config {
        rootfs: RootFs,
    }
    let c: Config = serde_json::from_slice(config).ok()?;
    Some(c.rootfs.diff_ids)
}

/// The OCI chain ID of a layer stack (what containerd names the committed snapshot of an
/// image's top layer, so the parent of a container's snapshot): `chain(L0) = diff(L0)`,
/// `chain(Ln) = sha256(chain(Ln-1) + " " + diff(Ln))`. `None` for an empty stack.
pub fn chain_id(diff_ids: &[String]) -> Option<String> {
    use sha2::{Digest, Sha256};
    let mut chain = diff_ids.first()?.clone();
    for d in &diff_ids[1..] {
        chain = format!(
            "sha256:{}",
            hex::encode(Sha256::digest(format!("{chain} {d}").as_bytes()))
        );
    }
    Some(chain)
}

#[cfg(test)]
mod tests {
    #[test]
    fn chain_ids_follow_the_oci_rule() {
        let a = "sha256:aaaa".to_string();
        let b = "sha256:bbbb".to_string();
        assert_eq!(chain_id(&[]), None);
        assert_eq!(chain_id(std::slice::from_ref(&a)).as_deref(), Some("sha256:aaaa"));
        // sha256("sha256:aaaa sha256:bbbb"), computed with sha256sum.
        assert_eq!(
            chain_id(&[a, b]).as_deref(),
            Some("sha256:2c4d8760379f05d0ad1ed610712309f0114e7345e6e6a351494cff030ffdf197")
        );
        assert_eq!(
            config_diff_ids(br#"{"rootfs":{"type":"layers","diff_ids":["sha256:aaaa"]}}"#),
            Some(vec!["sha256:aaaa".to_string()])
        );
        assert_eq!(config_diff_ids(b"not json"), None);
    }

    use super::*;

    #[test]
    fn selects_the_host_platform() {
        let idx = parse_index(br#"{"manifests":[
            {"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:aa","platform":{"os":"linux","architecture":"arm64"}},
            {"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:bb","platform":{"os":"linux","architecture":"amd64"}},
            {"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:cc","platform":{"os":"unknown","architecture":"unknown"}}]}"#).unwrap();
        assert_eq!(
            select_platform(&idx.manifests, "amd64").unwrap().digest,
            "sha256:bb"
        );
        assert!(select_platform(&idx.manifests, "riscv64").is_err());
    }

    #[test]
    fn digests_are_checked() {
        assert!(Digest::parse("sha256:../../etc/passwd").is_err());
        assert!(Digest::parse("sha256").is_err());
        assert!(Digest::parse("SHA256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa").is_err());
        let text = format!("sha256:{}", "a".repeat(64));
        let d = Digest::parse(&text).unwrap();
        assert_eq!((d.algorithm, d.to_string()), ("sha256", text.clone()));
        // sha256 of the empty string (`sha256sum </dev/null`).
        let empty = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        let sum = [
            0xe3, 0xb0, 0xc4, 0x42, 0x98, 0xfc, 0x1c, 0x14, 0x9a, 0xfb, 0xf4, 0xc8, 0x99, 0x6f, 0xb9, 0x24,
            0x27, 0xae, 0x41, 0xe4, 0x64, 0x9b, 0x93, 0x4c, 0xa4, 0x95, 0x99, 0x1b, 0x78, 0x52, 0xb8, 0x55,
        ];
        assert_eq!(Digest::parse(empty).unwrap().matches_sha256(&sum), Some(true));
        assert_eq!(d.matches_sha256(&sum), Some(false));
    }
}
