//! Maven ordering (the rules of Maven's `ComparableVersion`): a version is a tree of items.
//! `.` separates items, `-` and a switch between digits and letters open a sub-list; numbers
//! compare as numbers, qualifiers by rank (`alpha` < `beta` < `milestone` < `rc` = `cr` <
//! `snapshot` < release (`""`, `ga`, `final`, `release`) < `sp` < any other, alphabetically);
//! trailing zeros and release qualifiers are dropped. Case-insensitive; total on any input.

use std::cmp::Ordering;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Item {
    /// Digits without leading zeros (compared by length, then text: any size).
    Int(String),
    Text(String),
    List(Vec<Item>),
}

const QUALIFIERS: [&str; 7] = ["alpha", "beta", "milestone", "rc", "snapshot", "", "sp"];

/// A qualifier's sort key: its rank, or after every known one, by name.
fn qualifier_key(q: &str) -> (usize, &str) {
    match QUALIFIERS.iter().position(|k| *k == q) {
        Some(i) => (i, ""),
        None => (QUALIFIERS.len(), q),
    }
}

const RELEASE: (usize, &str) = (5, "");

fn text_item(s: &str, followed_by_digit: bool) -> Item {
    let s = if followed_by_digit && s.len() == 1 {
        match s {
            "a" => "alpha",
            "b" => "beta",
            "m" => "milestone",
            _ => s,
        }
    } else {
        s
    };
    let s = match s {
        "ga" | "final" | "release" => "",
        "cr" => "rc",
        _ => s,
    };
    Item::Text(s.to_string())
}

fn parse_item(s: &str) -> Item {
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        Item::Int(s.trim_start_matches('0').to_string())
    } else {
        text_item(s, false)
    }
}

impl Item {
    fn is_null(&self) -> bool {
        match self {
            Item::Int(n) => n.is_empty(),
            Item::Text(s) => s.is_empty(),
            Item::List(l) => l.is_empty(),
        }
    }

    /// Compares with an absent item (what a shorter version has at this place).
    fn cmp_none(&self) -> Ordering {
        match self {
            Item::Int(n) => {
                if n.is_empty() {
                    Ordering::Equal
                } else {
                    Ordering::Greater
                }
            }
            Item::Text(s) => qualifier_key(s).cmp(&RELEASE),
            Item::List(l) => l
                .iter()
                .map(Item::cmp_none)
                .find(|o| *o != Ordering::Equal)
                .unwrap_or(Ordering::Equal),
        }
    }

    fn cmp(&self, other: &Item) -> Ordering {
        use Item::*;
        match (self, other) {
            (Int(a), Int(b)) => a.len().cmp(&b.len()).then_with(|| a.cmp(b)),
            (Int(_), _) => Ordering::Greater,
            (Text(_), Int(_)) => Ordering::Less,
            (Text(a), Text(b)) => qualifier_key(a).cmp(&qualifier_key(b)),
            (Text(_), List(_)) => Ordering::Less,
            (List(_), Int(_)) => Ordering::Less,
            (List(_), Text(_)) => Ordering::Greater,
            (List(a), List(b)) => {
                for i in 0..a.len().max(b.len()) {
                    let c = match (a.get(i), b.get(i)) {
                        (Some(x), Some(y)) => x.cmp(y),
                        (Some(x), None) => x.cmp_none(),
                        (None, Some(y)) => y.cmp_none().reverse(),
                        (None, None) => Ordering::Equal,
                    };
                    if c != Ordering::Equal {
                        return c;
                    }
                }
                Ordering::Equal
            }
        }
    }
}

/// Drops trailing null items of a list (stopping at the first non-null non-list item).
fn normalize(list: &mut Vec<Item>) {
    let mut i = list.len();
    while i > 0 {
        i -= 1;
        if list[i].is_null() {
            list.remove(i);
        } else if !matches!(list[i], Item::List(_)) {
            break;
        }
    }
}

fn parse(version: &str) -> Item {
    let v = version.trim().to_ascii_lowercase();
    // The open lists, innermost last; each closed list is normalised and added to its parent.
    let mut stack: Vec<Vec<Item>> = vec![Vec::new()];
    let bytes = v.as_bytes();
    let mut start = 0;
    let mut is_digit = false;
    let push_list = |stack: &mut Vec<Vec<Item>>| stack.push(Vec::new());
    for (i, &c) in bytes.iter().enumerate() {
        let top = stack.len() - 1;
        if c == b'.' {
            let item = if i == start {
                Item::Int(String::new())
            } else {
                parse_item(&v[start..i])
            };
            stack[top].push(item);
            start = i + 1;
        } else if c == b'-' {
            let item = if i == start {
                Item::Int(String::new())
            } else {
                parse_item(&v[start..i])
            };
            stack[top].push(item);
            start = i + 1;
            push_list(&mut stack);
        } else if c.is_ascii_digit() {
            if !is_digit && i > start {
                stack[top].push(text_item(&v[start..i], true));
                start = i;
                push_list(&mut stack);
            }
            is_digit = true;
        } else {
            if is_digit && i > start {
                stack[top].push(parse_item(&v[start..i]));
                start = i;
                push_list(&mut stack);
            }
            is_digit = false;
        }
    }
    if v.len() > start {
        let top = stack.len() - 1;
        stack[top].push(parse_item(&v[start..]));
    }
    while stack.len() > 1 {
        let mut list = stack.pop().expect("len > 1");
        normalize(&mut list);
        // A hyphen whose whole segment was null (`1-ga-1`) joins the next one: `1-1`.
        if let [Item::List(inner)] = list.as_mut_slice() {
            list = std::mem::take(inner);
        }
        stack.last_mut().expect("len >= 1").push(Item::List(list));
    }
    let mut root = stack.pop().unwrap_or_default();
    normalize(&mut root);
    Item::List(root)
}

/// Compares two Maven versions.
pub fn compare(a: &str, b: &str) -> Ordering {
    parse(a).cmp(&parse(b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::version::vectors;

    #[test]
    fn edge_cases() {
        use Ordering::*;
        for (a, o, b) in [
            ("1.0-alpha-1", Less, "1.0"),
            ("1.0-SNAPSHOT", Less, "1.0"),
            ("1.0", Less, "1.0-sp"),
            ("1.0-sp", Less, "1.0-foo"),
            ("2.17.1", Greater, "2.17.0"),
            ("2.0.1-xyz", Less, "2.0.1-123"),
            ("1a1", Equal, "1-alpha-1"),
            ("", Equal, "0"),
            ("1-", Equal, "1"),
            ("1-ga-1", Equal, "1-1"),
        ] {
            assert_eq!(compare(a, b), o, "{a} vs {b}");
            assert_eq!(compare(b, a), o.reverse(), "{b} vs {a}");
        }
    }

    #[test]
    fn shared_vectors() {
        vectors::assert_all_hold("maven-versions.txt", 100, compare);
        vectors::assert_all_hold("maven-versions-generated.txt", 100, compare);
    }
}
