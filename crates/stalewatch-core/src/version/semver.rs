//! SemVer 2.0 precedence, lax on input as OSV SEMVER ranges need it: a leading `v` (Go),
//! missing minor/patch parts, and build metadata (ignored) are accepted.

use std::cmp::Ordering;

fn split(v: &str) -> (Vec<&str>, Option<&str>) {
    let v = v.trim();
    let v = v.strip_prefix('v').unwrap_or(v);
    let v = v.split_once('+').map_or(v, |(core, _build)| core);
    let (core, pre) = match v.split_once('-') {
        Some((c, p)) => (c, Some(p)),
        None => (v, None),
    };
    (core.split('.').collect(), pre)
}

fn cmp_numeric_or_text(a: &str, b: &str) -> Ordering {
    match (a.parse::<u128>(), b.parse::<u128>()) {
        (Ok(x), Ok(y)) => x.cmp(&y),
        // Numeric identifiers have lower precedence than alphanumeric ones.
        (Ok(_), Err(_)) => Ordering::Less,
        (Err(_), Ok(_)) => Ordering::Greater,
        (Err(_), Err(_)) => a.cmp(b),
    }
}

/// Compares two SemVer versions.
pub fn compare(a: &str, b: &str) -> Ordering {
    let (ca, pa) = split(a);
    let (cb, pb) = split(b);
    for k in 0..ca.len().max(cb.len()).max(3) {
        let x = ca.get(k).copied().unwrap_or("0");
        let y = cb.get(k).copied().unwrap_or("0");
        let c = cmp_numeric_or_text(x, y);
        if c != Ordering::Equal {
            return c;
        }
    }
    cmp_prerelease(pa, pb, cmp_numeric_or_text)
}

/// SemVer pre-release precedence (shared with NuGet, which compares labels its own way): a
/// release sorts after its pre-releases; dot-separated labels compare in turn with `label`,
/// and a longer list of equal labels sorts after a shorter one.
pub(crate) fn cmp_prerelease(
    a: Option<&str>,
    b: Option<&str>,
    label: fn(&str, &str) -> Ordering,
) -> Ordering {
    match (a, b) {
        (None, None) => Ordering::Equal,
        (None, Some(_)) => Ordering::Greater,
        (Some(_), None) => Ordering::Less,
        (Some(x), Some(y)) => {
            let (xs, ys): (Vec<&str>, Vec<&str>) = (x.split('.').collect(), y.split('.').collect());
            for (p, q) in xs.iter().zip(ys.iter()) {
                let c = label(p, q);
                if c != Ordering::Equal {
                    return c;
                }
            }
            xs.len().cmp(&ys.len())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::version::vectors;

    #[test]
    fn edge_cases() {
        assert_eq!(compare("1.0.0-alpha", "1.0.0"), Ordering::Less);
        assert_eq!(compare("1.0.0-alpha.1", "1.0.0-alpha.beta"), Ordering::Less);
        assert_eq!(compare("v1.2.3", "1.2.3"), Ordering::Equal);
        assert_eq!(compare("1.2", "1.2.0"), Ordering::Equal);
        assert_eq!(compare("1.0.0+build", "1.0.0"), Ordering::Equal);
        assert_eq!(compare("0.0.0-20210101000000-abcdef", "0.0.1"), Ordering::Less);
    }

    #[test]
    fn shared_vectors() {
        let (total, bad) = vectors::failures(&vectors::shared("semver-versions.txt"), compare);
        assert!(total > 50);
        assert!(bad.is_empty(), "{} of {total} fail: {bad:?}", bad.len());
    }
}
