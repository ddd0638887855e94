//! The workspace's layout rules, checked on its sources (see
//! `docs/architecture.md`): no import circle between the modules of any
//! crate, nor between the files of one module folder; no library source
//! file over 700 lines (its unit tests aside).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The most lines a source file outside the lab may have before its
/// `#[cfg(test)]` module.
const MAX_LINES: usize = 700;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// Every crate of the workspace: its name (folder) and `src/`.
fn crates() -> Vec<(String, PathBuf)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(workspace()).unwrap() {
        let dir = e.unwrap().path();
        if dir.join("Cargo.toml").is_file() && dir.join("src").is_dir() {
            let name = dir.file_name().unwrap().to_string_lossy().into_owned();
            out.push((name, dir.join("src")));
        }
    }
    out.sort();
    assert!(out.len() >= 6, "found the crates: {out:?}");
    out
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The source without comments (line comments and doc comments).
fn code(text: &str) -> String {
    text.lines()
        .map(|l| match l.find("//") {
            Some(i) if !l[..i].contains('"') => &l[..i],
            _ => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn ident(s: &str) -> &str {
    let end = s
        .find(|c: char| !(c.is_alphanumeric() || c == '_'))
        .unwrap_or(s.len());
    &s[..end]
}

/// The first path segments after every `prefix` (`crate::`, `super::`),
/// including each item of a `prefix{a, b::c}` group.
fn heads(code: &str, prefix: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = code;
    while let Some(i) = rest.find(prefix) {
        let before = rest[..i].chars().last();
        rest = &rest[i + prefix.len()..];
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue;
        }
        if let Some(group) = rest.strip_prefix('{') {
            let mut depth = 1;
            let mut start = 0;
            for (j, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' => depth -= 1,
                    ',' if depth == 1 => {
                        out.insert(ident(group[start..j].trim()).to_string());
                        start = j + 1;
                    }
                    _ => {}
                }
                if depth == 0 {
                    out.insert(ident(group[start..j].trim()).to_string());
                    break;
                }
            }
        } else {
            out.insert(ident(rest).to_string());
        }
    }
    out.remove("");
    out
}

/// A circle in `graph`, as the path that closes it.
fn circle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        n: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(i) = path.iter().position(|p| p == n) {
            let mut c = path[i..].to_vec();
            c.push(n.to_string());
            return Some(c);
        }
        if done.contains(n) {
            return None;
        }
        path.push(n.to_string());
        for m in graph.get(n).into_iter().flatten() {
            if let Some(c) = visit(m, graph, path, done) {
                return Some(c);
            }
        }
        path.pop();
        done.insert(n.to_string());
        None
    }
    let mut done = BTreeSet::new();
    for n in graph.keys() {
        if let Some(c) = visit(n, graph, &mut Vec::new(), &mut done) {
            return Some(c);
        }
    }
    None
}

/// The module a file belongs to: `src/fleet/ops.rs` → (`fleet`, `ops`);
/// `src/error.rs` → (`error`, ``); the crate root → none.
fn place(src: &Path, file: &Path) -> Option<(String, String)> {
    let rel = file.strip_prefix(src).unwrap();
    let parts: Vec<String> = rel
        .iter()
        .map(|p| p.to_string_lossy().trim_end_matches(".rs").to_string())
        .collect();
    match parts.as_slice() {
        [root] if root == "lib" || root == "main" => None,
        [m] => Some((m.clone(), String::new())),
        [m, f, ..] if f == "mod" => Some((m.clone(), String::new())),
        [m, f, ..] => Some((m.clone(), f.clone())),
        [] => None,
    }
}

#[test]
fn no_crate_has_an_import_circle_between_its_modules_or_within_a_module() {
    let mut checked = 0;
    for (krate, src) in crates() {
        let mut files = Vec::new();
        rust_files(&src, &mut files);
        let modules: BTreeSet<String> = files
            .iter()
            .filter_map(|f| place(&src, f).map(|p| p.0))
            .collect();
        // Between the crate's top-level modules.
        let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        // Between the files of each module folder (its mod.rs aside).
        let mut inner: BTreeMap<String, BTreeMap<String, BTreeSet<String>>> = BTreeMap::new();
        for f in &files {
            let Some((m, file)) = place(&src, f) else {
                continue;
            };
            let text = code(&std::fs::read_to_string(f).unwrap());
            let entry = graph.entry(m.clone()).or_default();
            for h in heads(&text, "crate::") {
                if h != m && modules.contains(&h) {
                    entry.insert(h);
                }
            }
            if !file.is_empty() {
                let siblings = inner.entry(m.clone()).or_default();
                let mut uses = heads(&text, "super::");
                uses.extend(heads(&text, &format!("crate::{m}::")));
                let mine = siblings.entry(file.clone()).or_default();
                for u in uses {
                    if u != file && src.join(&m).join(format!("{u}.rs")).is_file() {
                        mine.insert(u);
                    }
                }
            }
            checked += 1;
        }
        if let Some(c) = circle(&graph) {
            panic!(
                "{krate}: the modules import each other in a circle: {}",
                c.join(" → ")
            );
        }
        for (m, g) in &inner {
            if let Some(c) = circle(g) {
                panic!(
                    "{krate}: the files of {m}/ import each other in a circle: {}",
                    c.join(" → ")
                );
            }
        }
    }
    assert!(checked > 40, "checked {checked} files");
}

#[test]
fn the_check_finds_a_circle_when_there_is_one() {
    let text = code(
        "use crate::{engine::Write, fleet};\n// crate::plan\nlet x = crate::rolling::Step::Drain;\nuse super::{a, b::{c, d}};",
    );
    assert_eq!(
        heads(&text, "crate::"),
        ["engine", "fleet", "rolling"].map(String::from).into()
    );
    assert_eq!(heads(&text, "super::"), ["a", "b"].map(String::from).into());
    let g: BTreeMap<String, BTreeSet<String>> = [
        ("error", vec![]),
        ("fleet", vec!["engine", "error"]),
        ("engine", vec!["error", "rolling"]),
        ("rolling", vec!["fleet"]),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.into_iter().map(String::from).collect()))
    .collect();
    let c = circle(&g).unwrap();
    assert_eq!(c.first(), c.last());
    assert_eq!(c.len(), 4, "{c:?}");
    let mut g = g;
    g.get_mut("rolling").unwrap().clear();
    assert_eq!(circle(&g), None);
}

#[test]
fn no_library_source_file_is_over_700_lines() {
    let mut over = Vec::new();
    for (krate, src) in crates() {
        // The lab is test code.
        if krate == "tests" {
            continue;
        }
        let mut files = Vec::new();
        rust_files(&src, &mut files);
        for f in files {
            let text = std::fs::read_to_string(&f).unwrap();
            let lines = text
                .lines()
                .take_while(|l| !l.starts_with("#[cfg(test)]"))
                .count();
            if lines > MAX_LINES {
                over.push(format!("{} ({lines} lines)", f.display()));
            }
        }
    }
    assert!(
        over.is_empty(),
        "over {MAX_LINES} lines: {}",
        over.join(", ")
    );
}
