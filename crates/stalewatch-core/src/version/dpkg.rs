//! Debian package version ordering, as `dpkg --compare-versions` defines it:
//! `[epoch:]upstream[-revision]`, compared part by part with `verrevcmp`.

use std::cmp::Ordering;

struct Parsed<'a> {
    epoch: u64,
    upstream: &'a str,
    revision: &'a str,
}

fn parse(v: &str) -> Parsed<'_> {
    let v = v.trim();
    let (epoch, rest) = match v.split_once(':') {
        Some((e, rest)) if !e.is_empty() && e.bytes().all(|b| b.is_ascii_digit()) => {
            (e.parse().unwrap_or(u64::MAX), rest)
        }
        _ => (0, v),
    };
    let (upstream, revision) = match rest.rfind('-') {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (rest, ""),
    };
    Parsed {
        epoch,
        upstream,
        revision,
    }
}

/// The weight dpkg gives a non-digit character: `~` sorts before everything, even the end.
fn order(c: Option<u8>) -> i32 {
    match c {
        None => 0,
        Some(b'~') => -1,
        Some(c) if c.is_ascii_digit() => 0,
        Some(c) if c.is_ascii_alphabetic() => c as i32,
        Some(c) => c as i32 + 256,
    }
}

fn verrevcmp(a: &str, b: &str) -> Ordering {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let (mut i, mut j) = (0, 0);
    while i < a.len() || j < b.len() {
        // Non-digit prefix.
        while (i < a.len() && !a[i].is_ascii_digit()) || (j < b.len() && !b[j].is_ascii_digit()) {
            let ac = order(a.get(i).copied().filter(|c| !c.is_ascii_digit()));
            let bc = order(b.get(j).copied().filter(|c| !c.is_ascii_digit()));
            if ac != bc {
                return ac.cmp(&bc);
            }
            if i < a.len() && !a[i].is_ascii_digit() {
                i += 1;
            }
            if j < b.len() && !b[j].is_ascii_digit() {
                j += 1;
            }
        }
        // Numeric part: leading zeros do not count; then longer is larger.
        while i < a.len() && a[i] == b'0' {
            i += 1;
        }
        while j < b.len() && b[j] == b'0' {
            j += 1;
        }
        let si = i;
        while i < a.len() && a[i].is_ascii_digit() {
            i += 1;
        }
        let sj = j;
        while j < b.len() && b[j].is_ascii_digit() {
            j += 1;
        }
        let (da, db) = (&a[si..i], &b[sj..j]);
        let c = da.len().cmp(&db.len()).then_with(|| da.cmp(db));
        if c != Ordering::Equal {
            return c;
        }
    }
    Ordering::Equal
}

/// Compares two Debian versions.
pub fn compare(a: &str, b: &str) -> Ordering {
    let (pa, pb) = (parse(a), parse(b));
    pa.epoch
        .cmp(&pb.epoch)
        .then_with(|| verrevcmp(pa.upstream, pb.upstream))
        .then_with(|| verrevcmp(pa.revision, pb.revision))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::version::vectors;

    #[test]
    fn edge_cases() {
        assert_eq!(compare("1.0~rc1", "1.0"), Ordering::Less);
        assert_eq!(compare("1.0", "1.0+deb12u1"), Ordering::Less);
        assert_eq!(compare("1:0.9", "2.0"), Ordering::Greater);
        assert_eq!(compare("3.0.11-1~deb12u2", "3.0.11-1~deb12u1"), Ordering::Greater);
        assert_eq!(compare("1.2.3-1", "1.2.3-1.1"), Ordering::Less);
        assert_eq!(compare("2.36-9+deb12u4", "2.36-9+deb12u10"), Ordering::Less);
        assert_eq!(compare("1.0-0", "1.0"), Ordering::Equal);
        assert_eq!(compare("", "0"), Ordering::Equal);
        assert_eq!(compare("99999999999999999999999:1", "1:1"), Ordering::Greater);
    }

    #[test]
    fn shared_vectors() {
        for file in ["debian-versions.txt", "debian-versions-generated.txt"] {
            let (total, bad) = vectors::failures(&vectors::shared(file), compare);
            assert!(total > 0, "{file} had no vectors");
            assert!(
                bad.is_empty(),
                "{file}: {} of {total} fail: {:?}",
                bad.len(),
                &bad[..bad.len().min(10)]
            );
        }
    }
}
