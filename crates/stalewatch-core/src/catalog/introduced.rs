//! In which layer each OS package first appeared: a package database's earlier versions (the
//! tree's history, `Limits::history`) replayed oldest first. A package whose name and version
//! a later version of the database drops, or a layer hides, starts again where it reappears;
//! a package the top layer removed is not in the inventory at all.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use super::{apk, dpkg, rpm, APK_INSTALLED, DPKG_STATUS, DPKG_STATUS_D, RPM_DBS};
use crate::layer::FileTree;
use crate::package::Package;

type FirstSeen = BTreeMap<(String, String), Arc<str>>;

/// Whether earlier versions of a file are worth keeping: the package databases whose
/// packages a layer can add to or remove from.
pub fn tracked(path: &str) -> bool {
    path == DPKG_STATUS
        || APK_INSTALLED.contains(&path)
        || RPM_DBS.contains(&path)
        || path
            .strip_prefix(DPKG_STATUS_D)
            .is_some_and(|rest| rest.starts_with('/') && !rest[1..].contains('/'))
}

/// Sets every package's `introduced_layer`: for a package of a database some layer rewrote,
/// the first layer of the run of versions that ends with the current one and records its
/// name and version; otherwise its `layer` (the one layer that wrote its database or
/// manifest). Unknown (`None`) where the database's earlier versions were too large to keep.
pub fn attribute(tree: &FileTree, packages: &mut [Package]) {
    let mut replayed: BTreeMap<String, Option<FirstSeen>> = BTreeMap::new();
    for p in packages {
        let real = tree.resolve_path(&p.path).unwrap_or_else(|_| p.path.to_string());
        if !tracked(&real) {
            p.introduced_layer = p.layer.clone();
            continue;
        }
        let first = replayed.entry(real).or_insert_with_key(|path| replay(tree, path));
        p.introduced_layer = match first {
            None => None,
            Some(m) if m.is_empty() => p.layer.clone(),
            Some(m) => m.get(&(p.name.to_string(), p.version.to_string())).cloned(),
        };
    }
}

/// The first layer of each (name, version) of a database with earlier versions (empty when
/// it has none: one layer wrote it).
fn replay(tree: &FileTree, path: &str) -> Option<FirstSeen> {
    let earlier = tree.history(path)?;
    let mut first = FirstSeen::new();
    if earlier.is_empty() {
        return Some(first);
    }
    let current = tree
        .origin(path)
        .zip(tree.read(path).ok().flatten())
        .map(|(l, b)| (Arc::<str>::from(l), Some(b)));
    let versions = earlier
        .iter()
        .map(|v| (v.layer.clone(), v.bytes.as_deref()))
        .chain(current);
    for (layer, bytes) in versions {
        let Some(bytes) = bytes else {
            first.clear();
            continue;
        };
        let now = installed(path, bytes);
        first.retain(|k, _| now.contains(k));
        for k in now {
            first.entry(k).or_insert_with(|| layer.clone());
        }
    }
    Some(first)
}

/// The (name, version) pairs one version of a database records, parsed as the cataloger does.
fn installed(path: &str, bytes: &[u8]) -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    let mut add = |p: super::RawPackage| {
        out.insert((p.name, p.version));
    };
    if path == DPKG_STATUS {
        dpkg::each_status(bytes, true, &mut add);
    } else if APK_INSTALLED.contains(&path) {
        apk::each_installed(bytes, &mut add);
    } else if RPM_DBS.contains(&path) {
        rpm::parse_any(bytes)
            .into_iter()
            .flat_map(|o| o.packages)
            .for_each(add);
    } else {
        dpkg::parse_status(bytes, false)
            .packages
            .into_iter()
            .for_each(add);
    }
    out
}

#[cfg(test)]
mod tests {
    use crate::layer::tree::{LayerDelta, Node};
    use crate::layer::{Diagnostics, FileTree};

    fn db(packages: &[(&str, &str)]) -> LayerDelta {
        let text: String = packages
            .iter()
            .map(|(n, v)| format!("P:{n}\nV:{v}\n\n"))
            .collect();
        let mut d = LayerDelta::default();
        d.nodes
            .insert("lib/apk/db/installed".into(), Node::File(text.into_bytes()));
        d
    }

    fn firsts(layers: &[LayerDelta]) -> Vec<(String, String, Option<String>)> {
        let mut t = FileTree::new();
        let mut diag = Diagnostics::default();
        let limits = crate::catalog::limits();
        for (i, d) in layers.iter().enumerate() {
            t.apply(d, &limits, &format!("sha256:{i}"), &mut diag);
        }
        let inv = crate::catalog::catalog(&t, &mut diag);
        inv.packages
            .iter()
            .map(|p| {
                (
                    p.name.to_string(),
                    p.version.to_string(),
                    p.introduced_layer.as_deref().map(str::to_string),
                )
            })
            .collect()
    }

    #[test]
    fn each_package_is_attributed_to_the_layer_that_first_records_its_version() {
        let mut hide = LayerDelta::default();
        hide.hide_nodes.push("lib/apk/db/installed".into());
        let layers = [
            db(&[("a", "1"), ("b", "1"), ("gone", "1")]),
            LayerDelta::default(),
            // b upgraded, c added, gone removed.
            db(&[("a", "1"), ("b", "2"), ("c", "1")]),
            db(&[("a", "1"), ("b", "2"), ("c", "1"), ("d", "1")]),
        ];
        let s = |n: &str, v: &str, l: &str| (n.to_string(), v.to_string(), Some(format!("sha256:{l}")));
        assert_eq!(
            firsts(&layers),
            [
                s("a", "1", "0"),
                s("b", "2", "2"),
                s("c", "1", "2"),
                s("d", "1", "3")
            ]
        );
        // The database hidden (a whiteout), then written again: everything starts again.
        let layers = [db(&[("a", "1")]), hide, db(&[("a", "1")])];
        assert_eq!(firsts(&layers), [s("a", "1", "2")]);
        // Written once: the layer that wrote it.
        assert_eq!(
            firsts(&[LayerDelta::default(), db(&[("a", "1")])]),
            [s("a", "1", "1")]
        );
    }
}
