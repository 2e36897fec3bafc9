//! The code's shape: no source file imports, through others, a file that
//! imports it (each crate reads in one direction, as a book does). A module
//! may use its own submodules and its parent; siblings and cousins must not
//! go round in a circle.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Each module of a crate (`ops::series`) and the crate modules it names
/// outside comments and test modules (`crate::x`, `super::x`).
fn imports(root: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mut files = Vec::new();
    collect(root, &mut files);
    let name = |path: &Path| -> String {
        let relative = path.strip_prefix(root).unwrap_or(path).with_extension("");
        let mut parts: Vec<String> = relative.iter().map(|p| p.to_string_lossy().into_owned()).collect();
        if parts.last().is_some_and(|last| ["mod", "lib", "main"].contains(&last.as_str())) {
            parts.pop();
        }
        parts.join("::")
    };
    let modules: BTreeSet<String> = files.iter().map(|f| name(f)).collect();
    let mut graph = BTreeMap::new();
    for file in &files {
        let module = name(file);
        let text = std::fs::read_to_string(file).unwrap_or_default();
        let code: String = text
            .split("#[cfg(test)]")
            .next()
            .unwrap_or_default()
            .lines()
            .map(|line| line.split("//").next().unwrap_or_default())
            .collect::<Vec<_>>()
            .join("\n");
        let parent = module.rsplit_once("::").map_or(String::new(), |(parent, _)| parent.to_string());
        let mut named = BTreeSet::new();
        for (prefix, base) in [("crate::", String::new()), ("super::", parent)] {
            for (at, _) in code.match_indices(prefix) {
                let path: String = code[at + prefix.len()..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == ':')
                    .collect();
                let mut segments: Vec<&str> = path.split("::").filter(|s| !s.is_empty()).collect();
                // The longest prefix of the path that is a module.
                while !segments.is_empty() {
                    let candidate =
                        if base.is_empty() { segments.join("::") } else { format!("{base}::{}", segments.join("::")) };
                    if modules.contains(&candidate) {
                        named.insert(candidate);
                        break;
                    }
                    segments.pop();
                }
            }
        }
        graph.insert(module, named);
    }
    graph
}

fn collect(dir: &Path, files: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            collect(&path, files);
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
}

/// Whether the modules are one, or one contains the other (a parent and its
/// submodules may name each other).
fn related(a: &str, b: &str) -> bool {
    a == b || a.is_empty() || b.is_empty() || a.starts_with(&format!("{b}::")) || b.starts_with(&format!("{a}::"))
}

fn circles(graph: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    fn visit(
        module: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
        found: &mut Vec<Vec<String>>,
    ) {
        path.push(module.to_string());
        for next in graph.get(module).into_iter().flatten() {
            if related(module, next) {
                continue;
            }
            if let Some(start) = path.iter().position(|m| m == next) {
                found.push([&path[start..], std::slice::from_ref(next)].concat());
            } else if !done.contains(next) {
                visit(next, graph, path, done, found);
            }
        }
        path.pop();
        done.insert(module.to_string());
    }
    let (mut done, mut found) = (BTreeSet::new(), Vec::new());
    for module in graph.keys() {
        if !done.contains(module) {
            visit(module, graph, &mut Vec::new(), &mut done, &mut found);
        }
    }
    found
}

#[test]
fn no_source_file_imports_itself_through_others() {
    let top = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut roots = vec![top.join("src")];
    roots.extend(std::fs::read_dir(top.join("crates")).into_iter().flatten().flatten().map(|c| c.path().join("src")));
    let mut checked = 0;
    for root in roots.iter().filter(|root| root.is_dir()) {
        let graph = imports(root);
        checked += graph.len();
        let found = circles(&graph);
        assert!(found.is_empty(), "import circles in {}: {:?}", root.display(), found);
    }
    assert!(checked > 50, "only {checked} modules found");
}

#[test]
fn the_check_sees_a_circle() {
    let graph: BTreeMap<String, BTreeSet<String>> = [
        ("a", vec!["b"]),
        ("b", vec!["c"]),
        ("c", vec!["a"]),
        ("ops", vec!["ops::state"]),
        ("ops::state", vec!["ops"]),
    ]
    .into_iter()
    .map(|(m, to)| (m.to_string(), to.into_iter().map(str::to_string).collect()))
    .collect();
    let found = circles(&graph);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0], ["a", "b", "c", "a"]);
}
