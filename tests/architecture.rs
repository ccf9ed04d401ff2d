//! The shape of the code, guarded: no two modules import each other (directly or through a
//! circle), and the core crate stays pure — no async runtime, sockets or HTTP among its
//! dependencies, no file system, network or process access in its code.
//!
//! Edges are the `use crate::…`, `use super::…`, `self::…` and inline `crate::…`/`super::…`
//! paths of each file's non-test code, resolved to the deepest module file they name.
//! Modules are files (`a/mod.rs` is `a`, `a/b.rs` is `a::b`); an owner directory also counts
//! as one node (`a` stands for `a` and everything below it) so two owners cannot import each
//! other through their children either.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

type Module = Vec<String>;

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push(p);
        }
    }
}

fn module_of(root: &Path, file: &Path) -> Module {
    let rel = file.strip_prefix(root).unwrap();
    let mut parts: Vec<String> = rel.iter().map(|c| c.to_string_lossy().into_owned()).collect();
    let last = parts.pop().unwrap();
    match last.as_str() {
        "mod.rs" | "main.rs" | "lib.rs" => {}
        name => parts.push(name.trim_end_matches(".rs").to_string()),
    }
    parts
}

/// The code without comments, string contents and `#[cfg(test)]` items.
fn non_test_code(text: &str) -> String {
    let mut code = String::with_capacity(text.len());
    let b = text.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i..].starts_with(b"//") {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
        } else if b[i..].starts_with(b"r#\"") {
            // A raw string: up to its closing `"#`.
            let end = text[i + 3..].find("\"#").map_or(b.len(), |e| i + 3 + e + 2);
            i = end;
            code.push_str("\"\"");
        } else if b[i] == b'\'' && (b.get(i + 2) == Some(&b'\'') || b.get(i + 1) == Some(&b'\\')) {
            // A char literal (`'"'`, `'\''`): skipped whole; a lifetime is not one.
            let from = if b[i + 1] == b'\\' { i + 3 } else { i + 2 };
            i = text[from..].find('\'').map_or(b.len(), |e| from + e + 1);
        } else if b[i] == b'"' {
            // A string literal: its contents never name a module.
            i += 1;
            while i < b.len() && b[i] != b'"' {
                i += if b[i] == b'\\' { 2 } else { 1 };
            }
            i += 1;
            code.push_str("\"\"");
        } else if b[i..].starts_with(b"#[cfg(test)]") {
            // Skip the item: up to its `;`, or its balanced `{ … }`.
            while i < b.len() && b[i] != b'{' && b[i] != b';' {
                i += 1;
            }
            if i < b.len() && b[i] == b'{' {
                let mut depth = 0;
                while i < b.len() {
                    match b[i] {
                        b'{' => depth += 1,
                        b'}' => {
                            depth -= 1;
                            if depth == 0 {
                                break;
                            }
                        }
                        _ => {}
                    }
                    i += 1;
                }
            }
            i += 1;
        } else {
            code.push(b[i] as char);
            i += 1;
        }
    }
    code
}

/// `a::{b, c::{d, e}}` → `a::b`, `a::c::d`, `a::c::e`.
fn expand(tree: &str) -> Vec<String> {
    let tree: String = tree.chars().filter(|c| !c.is_whitespace()).collect();
    let Some(open) = tree.find('{') else {
        return vec![tree.split(" as ").next().unwrap_or(&tree).to_string()];
    };
    let prefix = &tree[..open];
    let inner = &tree[open + 1..tree.len().saturating_sub(1)];
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0, 0);
    for (i, c) in inner.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&inner[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&inner[start..]);
    parts
        .into_iter()
        .filter(|p| !p.is_empty())
        .flat_map(expand)
        .map(|p| {
            if p == "self" {
                prefix.trim_end_matches("::").to_string()
            } else {
                format!("{prefix}{p}")
            }
        })
        .collect()
}

/// Every path a file's code names: its `use` trees and its inline `crate::`/`super::` paths.
fn paths_named(code: &str) -> Vec<Vec<String>> {
    let mut paths = Vec::new();
    let mut rest = code;
    while let Some(at) = rest.find("use ") {
        let before = rest[..at].chars().last();
        rest = &rest[at + 4..];
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue;
        }
        let end = rest.find(';').unwrap_or(rest.len());
        paths.extend(expand(&rest[..end]));
    }
    let ident = |c: char| c.is_alphanumeric() || c == '_';
    for key in ["crate::", "super::"] {
        let mut from = 0;
        while let Some(at) = code[from..].find(key) {
            let start = from + at;
            from = start + key.len();
            if code[..start].chars().last().is_some_and(|c| ident(c) || c == ':') {
                continue;
            }
            let len = code[start..]
                .find(|c: char| !(ident(c) || c == ':'))
                .unwrap_or(code.len() - start);
            paths.push(code[start..start + len].trim_end_matches(':').to_string());
        }
    }
    paths
        .into_iter()
        .map(|p| {
            p.split("::")
                .filter(|s| !s.is_empty())
                .map(String::from)
                .collect()
        })
        .collect()
}

/// The module a path names from `current`, or `None` for another crate or a local item.
fn resolve(current: &Module, path: &[String], modules: &BTreeSet<Module>) -> Option<Module> {
    let (mut base, mut rest) = match path.first()?.as_str() {
        "crate" => (Vec::new(), &path[1..]),
        "self" => (current.clone(), &path[1..]),
        "super" => (current.clone(), path),
        first => {
            let mut child = current.clone();
            child.push(first.to_string());
            if !modules.contains(&child) {
                return None;
            }
            (current.clone(), path)
        }
    };
    while rest.first().is_some_and(|s| s == "super") {
        base.pop();
        rest = &rest[1..];
    }
    let mut best = base.clone();
    for seg in rest {
        base.push(seg.clone());
        if modules.contains(&base) {
            best = base.clone();
        } else {
            break;
        }
    }
    Some(best)
}

/// The import graph of one crate, file by file.
fn graph(root: &Path) -> BTreeMap<Module, BTreeSet<Module>> {
    let mut files = Vec::new();
    rust_files(root, &mut files);
    let modules: BTreeSet<Module> = files.iter().map(|f| module_of(root, f)).collect();
    let mut g = BTreeMap::new();
    for f in &files {
        let m = module_of(root, f);
        let code = non_test_code(&std::fs::read_to_string(f).unwrap());
        let edges: BTreeSet<Module> = paths_named(&code)
            .iter()
            .filter_map(|p| resolve(&m, p, &modules))
            .filter(|t| *t != m)
            .collect();
        g.insert(m, edges);
    }
    g
}

/// The strongly connected components with more than one node (Tarjan).
fn circles(g: &BTreeMap<Module, BTreeSet<Module>>) -> Vec<Vec<Module>> {
    struct State<'a> {
        g: &'a BTreeMap<Module, BTreeSet<Module>>,
        index: BTreeMap<&'a Module, usize>,
        low: BTreeMap<&'a Module, usize>,
        stack: Vec<&'a Module>,
        on_stack: BTreeSet<&'a Module>,
        out: Vec<Vec<Module>>,
    }
    fn visit<'a>(s: &mut State<'a>, v: &'a Module) {
        let n = s.index.len();
        s.index.insert(v, n);
        s.low.insert(v, n);
        s.stack.push(v);
        s.on_stack.insert(v);
        let g = s.g;
        for w in g.get(v).into_iter().flatten() {
            let Some((w, _)) = g.get_key_value(w) else {
                continue;
            };
            if !s.index.contains_key(w) {
                visit(s, w);
                let lw = s.low[w];
                let lv = s.low.get_mut(v).unwrap();
                *lv = (*lv).min(lw);
            } else if s.on_stack.contains(w) {
                let iw = s.index[w];
                let lv = s.low.get_mut(v).unwrap();
                *lv = (*lv).min(iw);
            }
        }
        if s.low[v] == s.index[v] {
            let mut comp = Vec::new();
            while let Some(w) = s.stack.pop() {
                s.on_stack.remove(w);
                comp.push(w.clone());
                if w == v {
                    break;
                }
            }
            if comp.len() > 1 {
                comp.sort();
                s.out.push(comp);
            }
        }
    }
    let mut s = State {
        g,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        out: Vec::new(),
    };
    for v in g.keys() {
        if !s.index.contains_key(v) {
            visit(&mut s, v);
        }
    }
    s.out
}

/// The same graph with every module folded into its top-level owner under `scope` (e.g.
/// `agent::images::read` → `agent::images`).
fn owners(g: &BTreeMap<Module, BTreeSet<Module>>, scope: &[&str]) -> BTreeMap<Module, BTreeSet<Module>> {
    let fold = |m: &Module| -> Module {
        let inside = m.len() > scope.len() && m.iter().zip(scope).all(|(a, b)| a == b);
        if inside {
            m[..scope.len() + 1].to_vec()
        } else {
            m.clone()
        }
    };
    let mut out: BTreeMap<Module, BTreeSet<Module>> = BTreeMap::new();
    for (from, tos) in g {
        let f = fold(from);
        let e = out.entry(f.clone()).or_default();
        e.extend(tos.iter().map(fold).filter(|t| *t != f));
    }
    out
}

fn show(c: &[Vec<Module>]) -> String {
    c.iter()
        .map(|comp| {
            comp.iter()
                .map(|m| {
                    if m.is_empty() {
                        "<root>".into()
                    } else {
                        m.join("::")
                    }
                })
                .collect::<Vec<_>>()
                .join(" <-> ")
        })
        .collect::<Vec<_>>()
        .join("; ")
}

fn crate_roots() -> [PathBuf; 2] {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    [here.join("src"), here.join("crates/stalewatch-core/src")]
}

#[test]
fn no_module_imports_another_that_imports_it_back() {
    for root in crate_roots() {
        let g = graph(&root);
        assert!(g.len() > 10, "{}: found only {} modules", root.display(), g.len());
        let c = circles(&g);
        assert!(c.is_empty(), "{}: import circles: {}", root.display(), show(&c));
    }
}

#[test]
fn the_agents_owners_import_each_other_one_way() {
    let g = graph(&crate_roots()[0]);
    let folded = owners(&g, &["agent"]);
    for owner in [
        "images",
        "inventory",
        "matching",
        "runtime_checks",
        "publishing",
        "events",
        "engine",
    ] {
        assert!(
            folded.contains_key(&vec!["agent".to_string(), owner.to_string()]),
            "no owner agent::{owner}"
        );
    }
    let c = circles(&folded);
    assert!(c.is_empty(), "owners import each other: {}", show(&c));
    let top = owners(&g, &[]);
    let c = circles(&top);
    assert!(c.is_empty(), "top-level modules import each other: {}", show(&c));
}

#[test]
fn the_detector_finds_a_circle_and_resolves_groups() {
    // A known circle through a child and a `use` group, to prove the test can fail.
    let modules: BTreeSet<Module> = [
        vec![],
        vec!["a".into()],
        vec!["a".into(), "b".into()],
        vec!["c".into()],
    ]
    .into();
    let code = non_test_code("use crate::{c::{self, X}, a::b};\n// use crate::zzz;\n#[cfg(test)]\nmod tests { use crate::q; }\nfn f() { super::b::g(); }");
    let named: Vec<Module> = paths_named(&code)
        .iter()
        .filter_map(|p| resolve(&vec!["a".into()], p, &modules))
        .collect();
    assert!(named.contains(&vec!["c".to_string()]), "{named:?}");
    assert!(
        named.contains(&vec!["a".to_string(), "b".to_string()]),
        "{named:?}"
    );
    assert!(
        !named
            .iter()
            .any(|m| m.first().is_some_and(|s| s == "q" || s == "zzz")),
        "{named:?}"
    );
    let g: BTreeMap<Module, BTreeSet<Module>> = [
        (vec!["a".to_string()], [vec!["c".to_string()]].into()),
        (
            vec!["c".to_string()],
            [vec!["a".to_string(), "b".to_string()]].into(),
        ),
        (vec!["a".to_string(), "b".to_string()], BTreeSet::new()),
    ]
    .into();
    assert!(circles(&g).is_empty());
    assert_eq!(circles(&owners(&g, &[])).len(), 1);
}

#[test]
fn the_core_has_no_async_network_or_io_dependency() {
    let out = std::process::Command::new(env!("CARGO"))
        .args([
            "tree",
            "-p",
            "stalewatch-core",
            "-e",
            "normal",
            "--prefix",
            "none",
            "--offline",
            "--locked",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run cargo tree");
    assert!(
        out.status.success(),
        "cargo tree: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let tree = String::from_utf8_lossy(&out.stdout);
    let crates: BTreeSet<&str> = tree.lines().filter_map(|l| l.split_whitespace().next()).collect();
    assert!(
        crates.contains("stalewatch-core") && crates.contains("serde"),
        "{tree}"
    );
    for banned in [
        "tokio",
        "mio",
        "hyper",
        "reqwest",
        "tonic",
        "axum",
        "kube",
        "h2",
        "futures",
        "async-std",
        "socket2",
    ] {
        assert!(!crates.contains(banned), "the core depends on {banned}:\n{tree}");
    }
    let mut files = Vec::new();
    rust_files(&crate_roots()[1], &mut files);
    for f in files {
        let code = non_test_code(&std::fs::read_to_string(&f).unwrap());
        for io in [
            "std::fs",
            "std::net",
            "std::process",
            "File::open",
            "std::env::var",
        ] {
            assert!(
                !code.contains(io),
                "{} uses {io}: the core takes bytes, not paths",
                f.display()
            );
        }
    }
}

/// Each non-test agent file under `src/agent`, by its path relative to it, with its code.
fn agent_code() -> Vec<(String, String)> {
    let root = crate_roots()[0].join("agent");
    let mut files = Vec::new();
    rust_files(&root, &mut files);
    files
        .iter()
        .map(|f| {
            let rel = f.strip_prefix(&root).unwrap().to_string_lossy().into_owned();
            (rel, non_test_code(&std::fs::read_to_string(f).unwrap()))
        })
        .collect()
}

/// Whether `code` has `token` not as the tail of a longer name (`ContainerReport::new(` is
/// not `Report::new(`).
fn names(code: &str, token: &str) -> bool {
    let ident = |c: char| c.is_alphanumeric() || c == '_';
    code.match_indices(token)
        .any(|(i, _)| !token.starts_with(ident) || !code[..i].chars().next_back().is_some_and(ident))
}

#[test]
fn only_the_findings_store_holds_reports_mutably() {
    // What editing a held report looks like; a matching pass makes new ones (and triages
    // them before handing them over), nobody else makes or edits one.
    let edits = [
        "&mut Report",
        "Arc::make_mut",
        "set_lineage(",
        ".rebuild =",
        "findings.push",
        "findings.retain",
        "findings.iter_mut",
    ];
    let makes = ["Report::new(", "apply_triage("];
    let files = agent_code();
    assert!(files.len() > 20, "found {} agent files", files.len());
    let mut found = Vec::new();
    for (file, code) in &files {
        for e in edits.iter().filter(|e| names(code, e)) {
            if file != "store.rs" {
                found.push(format!("{file}: {e}"));
            }
        }
        for m in makes.iter().filter(|m| names(code, m)) {
            if file != "store.rs" && file != "matching/mod.rs" {
                found.push(format!("{file}: {m}"));
            }
        }
    }
    assert!(found.is_empty(), "reports edited outside the store: {found:?}");
    // The store itself is where they are edited (the check above would pass on any names).
    let store = &files
        .iter()
        .find(|(f, _)| f == "store.rs")
        .expect("src/agent/store.rs")
        .1;
    assert!(store.contains("Arc::make_mut") && store.contains("set_lineage("));
}

#[test]
fn the_snapshot_is_built_without_a_clock_a_file_a_socket_or_a_runtime() {
    let g = graph(&crate_roots()[0]);
    let io = [
        "std::fs",
        "File::",
        "tokio",
        "std::net",
        "reqwest",
        "hyper",
        "SystemTime",
        "Instant::now",
        "std::env",
        "std::process",
    ];
    for (module, file) in [
        (vec!["agent", "publishing", "build"], "publishing/build.rs"),
        (vec!["agent", "snapshot"], "snapshot.rs"),
        (vec!["agent", "changes"], "changes.rs"),
    ] {
        let module: Module = module.into_iter().map(String::from).collect();
        let edges = g
            .get(&module)
            .unwrap_or_else(|| panic!("no module {}", module.join("::")));
        assert!(
            !edges.contains(&vec!["clock".to_string()]),
            "{file} reads the clock: the time is an argument"
        );
        let code = &agent_code().into_iter().find(|(f, _)| f == file).unwrap().1;
        let used: Vec<&str> = io.iter().copied().filter(|w| code.contains(w)).collect();
        assert!(used.is_empty(), "{file} does I/O: {used:?}");
    }
    // The builder is the pure function the issue asks for: `Snapshot::build(&inputs, now)`.
    let build = &agent_code()
        .into_iter()
        .find(|(f, _)| f == "publishing/build.rs")
        .unwrap()
        .1;
    assert!(build.contains("pub fn build(inputs: &Inputs, now: i64) -> Snapshot"));
}

#[test]
fn notifiers_take_the_change_list_not_the_owners_that_make_it() {
    let g = graph(&crate_roots()[0]);
    let folded = owners(&g, &["agent"]);
    let makers = [
        "telling",
        "matching",
        "runtime_checks",
        "images",
        "inventory",
        "store",
        "lineage",
        "publishing",
    ];
    for notifier in ["events", "notify", "redeploy"] {
        let key = vec!["agent".to_string(), notifier.to_string()];
        let edges = folded
            .get(&key)
            .unwrap_or_else(|| panic!("no owner agent::{notifier}"));
        let bad: Vec<String> = edges
            .iter()
            .filter(|t| t.len() == 2 && t[0] == "agent" && makers.contains(&t[1].as_str()))
            .map(|t| t.join("::"))
            .collect();
        assert!(bad.is_empty(), "agent::{notifier} imports {bad:?}");
        assert!(
            edges.contains(&vec!["agent".to_string(), "changes".to_string()]),
            "agent::{notifier} should take the change list"
        );
    }
}
