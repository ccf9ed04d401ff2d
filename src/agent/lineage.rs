//! The lineage owner: each wanted image's base — its labels, a declared `--base-image`, or
//! the longest layer prefix among the node's images — kept once known (`bases-v1.json`), so a
//! base whose tag moved on to a newer build is still known; and the newer builds of bases
//! the node holds, which it has inventoried like any image, so each report says what a
//! rebuild would fix. Pure decisions live in the core (`stalewatch_core::lineage`).

use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

use stalewatch_core::lineage::{self, Base, ImageFacts};
use stalewatch_core::report::Report;

use super::images::ImageStore;
use super::store::{lineage_unchanged, FindingsStore, LineageUpdate};

const STATE_FILE: &str = "bases-v1.json";

#[derive(Default, Serialize, Deserialize)]
struct Saved {
    bases: BTreeMap<String, Base>,
}

pub struct Lineage {
    file: crate::agent::state_file::StateFile<Saved>,
    declared: Vec<String>,
    /// The node's images as last listed.
    node: Vec<ImageFacts>,
    /// The base found for each image digest, kept once found.
    known: BTreeMap<String, Base>,
    /// The newer base each image was last logged with.
    logged: BTreeMap<String, String>,
}

impl Lineage {
    pub fn new(
        state_dir: &std::path::Path,
        declared: Vec<String>,
        state: crate::agent::state_file::StateCounters,
    ) -> Lineage {
        // Lost, the bases are found again (labels, layers): nothing is told twice for it.
        let file: crate::agent::state_file::StateFile<Saved> =
            crate::agent::state_file::StateFile::new(state_dir, STATE_FILE, "bases", 1, state);
        let known = file.load().0.bases;
        Lineage {
            file,
            declared,
            node: Vec::new(),
            known,
            logged: BTreeMap::new(),
        }
    }

    pub fn set_node(&mut self, node: Vec<ImageFacts>) {
        self.node = node;
    }

    /// Each declared base and whether the node holds an image of that name.
    pub fn declared_present(&self) -> Vec<(String, bool)> {
        self.declared
            .iter()
            .map(|r| (r.clone(), self.node.iter().any(|f| f.named(r))))
            .collect()
    }

    fn facts(&self, digest: &str) -> Option<&ImageFacts> {
        self.node.iter().find(|f| f.known_as(digest))
    }

    /// The image's base now: what detection finds, or what was found before when that is
    /// better (the image's chain never changes, so a base once found stays its base).
    fn base_of(&mut self, digest: &str) -> Option<Base> {
        let declared: Vec<(String, ImageFacts)> = self
            .declared
            .iter()
            .flat_map(|r| {
                self.node
                    .iter()
                    .filter(|f| f.named(r))
                    .map(|f| (r.clone(), f.clone()))
            })
            .collect();
        let found = self
            .facts(digest)
            .and_then(|f| lineage::detect(f, &declared, &self.node));
        let chosen = match (found, self.known.get(digest)) {
            (Some(f), Some(k)) => Some(better(f, k)),
            (f, k) => f.or_else(|| k.cloned()),
        };
        if let Some(b) = chosen.as_ref().filter(|b| b.layers.is_some()) {
            if self.known.get(digest) != Some(b) {
                self.known.insert(digest.to_string(), b.clone());
                self.save();
            }
        }
        chosen
    }

    /// The newer builds of the wanted images' bases the node holds: inventoried like any image.
    pub fn newer_bases(&mut self, wanted: &BTreeSet<String>) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        for d in wanted {
            let (Some(b), Some(f)) = (self.base_of(d), self.facts(d)) else {
                continue;
            };
            if let Some(n) = lineage::newer_build(f, &b, &self.node).and_then(|n| n.digests.first()) {
                out.insert(n.clone());
            }
        }
        out
    }

    /// What each wanted image's report should say of its lineage, where that changed (the
    /// findings store sets it).
    pub fn decide(
        &mut self,
        wanted: &BTreeSet<String>,
        images: &ImageStore,
        store: &FindingsStore,
    ) -> Vec<(String, LineageUpdate)> {
        let mut out = Vec::new();
        for digest in wanted {
            let Some(current) = store.image(digest) else {
                continue;
            };
            let layers = images
                .record(digest)
                .map(|r| r.layers.as_slice())
                .unwrap_or_default();
            let d = self.desired(digest, current, layers, store);
            // Compared before anything is copied: most publishes change no lineage.
            if lineage_unchanged(current, &d) {
                continue;
            }
            if let Some(r) = &d.rebuild {
                if self.logged.get(digest) != Some(&r.new_base_digest) {
                    self.logged.insert(digest.clone(), r.new_base_digest.clone());
                    tracing::info!(
                        image = %digest,
                        base = %r.base_name,
                        new_base = %r.new_base_digest,
                        "a newer build of the base is on the node: a rebuild fixes {} findings, {} remain",
                        r.fixed_by_rebuild,
                        r.remaining
                    );
                }
            }
            out.push((digest.clone(), d));
        }
        self.known
            .retain(|d, _| images.record(d).is_some() || wanted.contains(d));
        out
    }

    /// What an image's report should say of its lineage now.
    fn desired(
        &mut self,
        digest: &str,
        current: &Report,
        layers: &[String],
        store: &FindingsStore,
    ) -> LineageUpdate {
        let base = self.base_of(digest);
        let facts = self.facts(digest).cloned();
        let base_layers = base.as_ref().and_then(|b| b.layers);
        let in_base: Vec<Option<bool>> = current
            .findings
            .iter()
            .map(|f| lineage::in_base(f, layers, base_layers))
            .collect();
        let newer = base.as_ref().zip(facts.as_ref());
        let newer = newer.and_then(|(b, f)| lineage::newer_build(f, b, &self.node));
        let newer_report = newer.and_then(|n| n.digests.first()).and_then(|d| store.image(d));
        let rebuild = match (&base, newer, newer_report) {
            (Some(b), Some(n), Some(r)) => lineage::rebuild(&current.findings, &in_base, b, n, &r.findings),
            _ => None,
        };
        LineageUpdate {
            base,
            facts,
            in_base,
            rebuild,
        }
    }

    fn save(&self) {
        let saved = Saved {
            bases: self.known.clone(),
        };
        self.file.save(&saved);
    }
}

/// Of a base found now and one found before: the method that ranks first (a label, then a
/// declaration, then layers), then the one whose layers are known and more.
fn better(found: Base, known: &Base) -> Base {
    let rank = |b: &Base| (std::cmp::Reverse(b.detected_by), b.layers);
    if found.layers.is_none() && known.layers.is_some() && found.name == known.name {
        return Base {
            layers: known.layers,
            ..found
        };
    }
    if rank(&found) >= rank(known) {
        found
    } else {
        known.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use stalewatch_core::lineage::DetectedBy;

    fn base(by: DetectedBy, layers: Option<usize>, name: &str) -> Base {
        Base {
            name: Some(name.into()),
            digest: None,
            detected_by: by,
            layers,
        }
    }

    #[test]
    fn a_base_found_before_stays_unless_something_better_is_found() {
        use DetectedBy::*;
        // The tag moved on: a shorter prefix found now does not replace the longer one.
        let known = base(Layers, Some(2), "base:1");
        assert_eq!(better(base(Layers, Some(1), "alpine"), &known), known);
        // A declaration made since wins over layers.
        assert_eq!(
            better(base(Config, Some(1), "alpine"), &known).detected_by,
            Config
        );
        // A label whose base left the node keeps the layers counted while it was there.
        let label = better(base(Label, None, "base:1"), &base(Label, Some(2), "base:1"));
        assert_eq!((label.detected_by, label.layers), (Label, Some(2)));
    }
}
