//! No module of any workspace crate depends, through others, on itself: each crate's modules import one way.
//!
//! Reads every crate's `src/` and draws an edge from a module to each module it names with `crate::…` or
//! `super::…` (outside comments and `#[cfg(test)]` code; the crate root, which declares the modules, is not
//! a node). A cycle fails the test, naming its modules.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            out.push(path);
        }
    }
}

/// `a::b` for `src/a/b.rs` or `src/a/b/mod.rs`; "" for `lib.rs` and `main.rs`.
fn module_of(src: &Path, file: &Path) -> String {
    let relative = file.strip_prefix(src).unwrap().with_extension("");
    let mut parts: Vec<String> = relative.iter().map(|part| part.to_string_lossy().into_owned()).collect();
    if matches!(parts.last().map(String::as_str), Some("mod" | "lib" | "main")) {
        parts.pop();
    }
    parts.join("::")
}

/// The paths after `prefix` (`crate::` or `super::`) in `code`, as module-name segments.
fn paths_after<'a>(code: &'a str, prefix: &str) -> Vec<Vec<&'a str>> {
    let mut found = Vec::new();
    for (at, _) in code.match_indices(prefix) {
        let before = code[..at].chars().next_back();
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue;
        }
        let rest = &code[at + prefix.len()..];
        let end = rest.find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':')).unwrap_or(rest.len());
        found.push(rest[..end].split("::").filter(|part| !part.is_empty()).collect());
    }
    found
}

fn edges(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    let modules: BTreeMap<String, PathBuf> = files.iter().map(|file| (module_of(src, file), file.clone())).collect();
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (module, file) in &modules {
        let text = std::fs::read_to_string(file).unwrap();
        let code: String = text
            .split("#[cfg(test)]")
            .next()
            .unwrap()
            .lines()
            .filter(|line| !line.trim_start().starts_with("//"))
            .collect::<Vec<_>>()
            .join("\n");
        let parent: Vec<&str> = module.split("::").filter(|part| !part.is_empty()).collect();
        let parent = &parent[..parent.len().saturating_sub(1)];
        let mut targets: Vec<Vec<&str>> = paths_after(&code, "crate::");
        targets.extend(paths_after(&code, "super::").into_iter().map(|path| parent.iter().copied().chain(path).collect()));
        for path in targets {
            // The longest prefix that names a module.
            let target = (1..=path.len()).rev().map(|n| path[..n].join("::")).find(|name| modules.contains_key(name));
            if let Some(target) = target
                && &target != module
                && !module.starts_with(&format!("{target}::"))
            {
                graph.entry(module.clone()).or_default().insert(target);
            }
        }
    }
    graph
}

/// A cycle in `graph`, if any (depth-first).
fn cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|seen| seen == node) {
            return Some(path[at..].iter().cloned().chain([node.to_string()]).collect());
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_string());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(found) = visit(next, graph, path, done) {
                return Some(found);
            }
        }
        path.pop();
        done.insert(node.to_string());
        None
    }
    let mut done = BTreeSet::new();
    graph.keys().find_map(|node| visit(node, graph, &mut Vec::new(), &mut done))
}

#[test]
fn no_module_imports_itself_through_others() {
    let crates = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let mut checked = 0;
    for entry in std::fs::read_dir(crates).unwrap() {
        let src = entry.unwrap().path().join("src");
        if !src.is_dir() {
            continue;
        }
        let graph = edges(&src);
        if let Some(found) = cycle(&graph) {
            panic!("{}: modules import each other: {}", src.display(), found.join(" -> "));
        }
        checked += 1;
    }
    assert!(checked >= 10, "found only {checked} crates under {}", crates.display());
}

#[test]
fn the_check_finds_a_cycle() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("lib.rs"), "mod a;\nmod b;\n").unwrap();
    std::fs::write(dir.path().join("a.rs"), "use crate::b::Thing;\n// crate::nothing in a comment\n").unwrap();
    std::fs::write(dir.path().join("b.rs"), "pub struct Thing;\nfn f() { crate::a::g(); }\n").unwrap();
    let graph = edges(dir.path());
    assert_eq!(cycle(&graph), Some(vec!["a".to_string(), "b".to_string(), "a".to_string()]));
    std::fs::write(dir.path().join("b.rs"), "pub struct Thing;\n").unwrap();
    assert_eq!(cycle(&edges(dir.path())), None);
}
