//! Path normalisation for layer entries: relative, no `.` or empty parts, never `..`.

/// Why an entry's path was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathRefusal {
    Absolute,
    ParentComponent,
    Empty,
}

impl PathRefusal {
    pub fn reason(self) -> &'static str {
        match self {
            PathRefusal::Absolute => "absolute_path",
            PathRefusal::ParentComponent => "parent_path_component",
            PathRefusal::Empty => "empty_path",
        }
    }
}

/// Normalises a layer entry path to `a/b/c`. `./a//b/` is fine; `/a` and `a/../b` are refused:
/// a layer has no business naming either.
pub fn normalize(raw: &str) -> Result<String, PathRefusal> {
    let mut s = raw;
    while let Some(rest) = s.strip_prefix("./") {
        s = rest;
    }
    let absolute = s.starts_with('/');
    let mut parts = Vec::new();
    for c in s.split('/') {
        match c {
            "" | "." => {}
            ".." => return Err(PathRefusal::ParentComponent),
            c => parts.push(c),
        }
    }
    if parts.is_empty() {
        // `/` or `./`: the layer's root directory entry, harmless.
        return Err(PathRefusal::Empty);
    }
    if absolute {
        return Err(PathRefusal::Absolute);
    }
    Ok(parts.join("/"))
}

/// Splits a path (or a symlink target) into its non-empty components.
pub fn components(p: &str) -> impl DoubleEndedIterator<Item = &str> {
    p.split('/').filter(|c| !c.is_empty())
}

/// Parent directory of a normalised path (`""` for top-level entries).
pub fn parent(p: &str) -> &str {
    p.rfind('/').map_or("", |i| &p[..i])
}

/// Joins a normalised directory and a name.
pub fn join(dir: &str, name: &str) -> String {
    if dir.is_empty() {
        name.to_string()
    } else {
        format!("{dir}/{name}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_and_refuses() {
        assert_eq!(normalize("./etc//os-release").unwrap(), "etc/os-release");
        assert_eq!(normalize("etc/./apk/").unwrap(), "etc/apk");
        assert_eq!(normalize("/etc/passwd"), Err(PathRefusal::Absolute));
        assert_eq!(normalize("a/../../etc/passwd"), Err(PathRefusal::ParentComponent));
        assert_eq!(normalize("./"), Err(PathRefusal::Empty));
        assert_eq!(normalize("/"), Err(PathRefusal::Empty));
        assert_eq!(parent("a/b/c"), "a/b");
        assert_eq!(parent("a"), "");
    }
}
