//! The stored form of a [`LayerDelta`]: magic, format version, postcard body. Bytes read back
//! from disk are untrusted (a torn write, another version, a tampered file): anything but an
//! entry of this version is `None`, and the caller reads the layer again.

use super::tree::LayerDelta;

const MAGIC: &[u8; 6] = b"SWLD\0\0";
/// 2: deltas keep dpkg's `info/*.list` (packages in use). 4: summaries of binaries.
const VERSION: u16 = 4;

/// The entry's bytes.
pub fn encode(delta: &LayerDelta) -> Result<Vec<u8>, postcard::Error> {
    let mut bytes = MAGIC.to_vec();
    bytes.extend_from_slice(&VERSION.to_le_bytes());
    bytes.extend(postcard::to_stdvec(delta)?);
    Ok(bytes)
}

/// The delta an entry holds, or `None` for anything that is not an entry of this version.
pub fn decode(bytes: &[u8]) -> Option<LayerDelta> {
    let body = bytes.strip_prefix(MAGIC.as_slice())?;
    let (version, body) = body.split_at_checked(2)?;
    if u16::from_le_bytes([version[0], version[1]]) != VERSION {
        return None;
    }
    postcard::from_bytes(body).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layer::tree::Node;

    #[test]
    fn round_trips_and_refuses_other_bytes() {
        let mut delta = LayerDelta::default();
        delta.hide_subtrees.push("var/lib/dpkg".into());
        delta.nodes.insert(
            "etc/os-release".into(),
            Node::Symlink("../usr/lib/os-release".into()),
        );
        let bytes = encode(&delta).unwrap();
        assert_eq!(decode(&bytes), Some(delta));
        let mut other_version = bytes.clone();
        other_version[6] ^= 1;
        assert_eq!(decode(&other_version), None);
        assert_eq!(decode(&bytes[..bytes.len() - 1]), None);
        assert_eq!(decode(b"SWLD"), None);
    }
}
