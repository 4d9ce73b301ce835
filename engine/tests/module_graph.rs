//! No import circle inside a crate: the modules of every crate (`engine`,
//! `connector`, `protocol`, `bench`, `cli`, `testkit`) depend on each other
//! in one direction only.
//!
//! The graph is read from the sources, one node per module (file): an edge
//! `a → b` for every path in `a` that names something in module `b` —
//! `crate::b::…` (in `use` lines and in code, grouped `use crate::{…}`
//! expanded), `super::…`, `self::…`, and a path that starts with a child
//! module's name. A path that names no module (`crate::Shared`) points at
//! the crate root, `lib.rs`. Comments, doc comments and `#[cfg(test)]`
//! modules are not read: doc links and unit tests do not shape the build.
//! A module's edges to its own submodules are not counted (a module owns
//! its submodules; `mod x;` and calling into `x` is structure, not an
//! import), the other direction is: `feed.rs` using `super::revoke` is an
//! edge `revocation::feed → revocation`. The crate root is the exception:
//! its `use` and `pub use` lines are edges, so a module that calls back into
//! code kept in `lib.rs` closes a circle through `lib`.
//!
//! Any strongly connected set of two or more modules fails the test, named
//! as one cycle (`browser → worker → browser`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Module path (`""` for the crate root, `revocation::feed`) → its source file.
fn modules(src: &Path) -> BTreeMap<String, PathBuf> {
    let mut found = BTreeMap::new();
    let mut stack = vec![src.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("read src dir") {
            let path = entry.expect("dir entry").path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            if path.extension().and_then(|e| e.to_str()) != Some("rs") {
                continue;
            }
            let relative = path.strip_prefix(src).expect("under src").with_extension("");
            let mut parts: Vec<String> =
                relative.components().map(|c| c.as_os_str().to_string_lossy().into_owned()).collect();
            if parts.last().is_some_and(|last| last == "mod" || last == "lib" || last == "main") {
                parts.pop();
            }
            // Binaries under src/bin are crates of their own.
            if parts.first().is_some_and(|first| first == "bin") {
                continue;
            }
            found.insert(parts.join("::"), path);
        }
    }
    found
}

/// The source without comments and without `#[cfg(test)] mod … { … }` blocks.
fn code_of(source: &str) -> String {
    let mut out = String::new();
    let mut lines = source.lines().peekable();
    let mut skip_depth: Option<i64> = None;
    while let Some(line) = lines.next() {
        let trimmed = line.trim_start();
        if let Some(depth) = skip_depth.as_mut() {
            *depth += brace_balance(line);
            if *depth <= 0 {
                skip_depth = None;
            }
            continue;
        }
        if trimmed.starts_with("#[cfg(test)]") {
            if let Some(next) = lines.peek() {
                let next = next.trim_start();
                if next.starts_with("mod ") || next.starts_with("pub mod ") || next.starts_with("pub(crate) mod ") {
                    let next = lines.next().unwrap_or_default();
                    if next.trim_end().ends_with(';') {
                        continue; // `#[cfg(test)] mod tests;`: another file, not read either
                    }
                    let depth = brace_balance(next);
                    if depth > 0 {
                        skip_depth = Some(depth);
                    }
                    continue;
                }
            }
        }
        if trimmed.starts_with("//") {
            continue;
        }
        // A trailing comment (`//` not part of `://` in a string).
        let line = match line.match_indices("//").find(|(at, _)| !line[..*at].ends_with(':')) {
            Some((at, _)) => &line[..at],
            None => line,
        };
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// `{` minus `}` on a line, ignoring those in char literals and strings.
fn brace_balance(line: &str) -> i64 {
    let mut balance = 0;
    let mut in_string = false;
    let mut chars = line.chars().peekable();
    let mut previous = ' ';
    while let Some(c) = chars.next() {
        match c {
            '"' if previous != '\\' => in_string = !in_string,
            '\'' if !in_string => {
                // Skip a char literal like '{' (lifetimes have no closing quote nearby).
                let rest: String = chars.clone().take(3).collect();
                if rest.len() >= 2 && rest.chars().nth(1) == Some('\'') {
                    chars.next();
                    chars.next();
                }
            }
            '{' if !in_string => balance += 1,
            '}' if !in_string => balance -= 1,
            _ => {}
        }
        previous = c;
    }
    balance
}

fn is_ident_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// Expands a use tree (`a::{b, c::{d, e}}`, `x as y`, `self`) into paths.
fn expand(prefix: &[String], tree: &str, out: &mut Vec<Vec<String>>) {
    let tree = tree.trim();
    if tree.is_empty() {
        return;
    }
    if let Some(inner) = tree.strip_prefix('{').and_then(|t| t.strip_suffix('}')) {
        let mut depth = 0;
        let mut start = 0;
        for (at, c) in inner.char_indices() {
            match c {
                '{' => depth += 1,
                '}' => depth -= 1,
                ',' if depth == 0 => {
                    expand(prefix, &inner[start..at], out);
                    start = at + 1;
                }
                _ => {}
            }
        }
        expand(prefix, &inner[start..], out);
        return;
    }
    match tree.split_once("::") {
        Some((head, rest)) => {
            let mut path = prefix.to_vec();
            path.push(head.trim().to_owned());
            expand(&path, rest, out);
        }
        None => {
            let name = tree.split(" as ").next().unwrap_or(tree).trim();
            let mut path = prefix.to_vec();
            if name != "self" && name != "*" {
                path.push(name.to_owned());
            }
            out.push(path);
        }
    }
}

/// Every path in `code` that starts with `crate`, `super`, `self` or one of
/// `children`, as written (segments).
fn paths_in(code: &str, children: &BTreeSet<String>) -> Vec<Vec<String>> {
    let mut paths = Vec::new();
    let bytes: Vec<char> = code.chars().collect();
    let text: String = bytes.iter().collect();
    let mut at = 0;
    while at < bytes.len() {
        if !is_ident_char(bytes[at]) || (at > 0 && (is_ident_char(bytes[at - 1]) || bytes[at - 1] == ':')) {
            at += 1;
            continue;
        }
        let start = at;
        while at < bytes.len() && is_ident_char(bytes[at]) {
            at += 1;
        }
        let head: String = bytes[start..at].iter().collect();
        let rooted = matches!(head.as_str(), "crate" | "super" | "self") || children.contains(&head);
        if !rooted || !text[char_offset(&text, at)..].starts_with("::") {
            continue;
        }
        // Take the rest of the path: segments, `::`, and one balanced `{…}` group.
        let mut end = at;
        let mut depth = 0;
        while end < bytes.len() {
            let c = bytes[end];
            if c == '{' {
                depth += 1;
            } else if c == '}' {
                if depth == 0 {
                    break;
                }
                depth -= 1;
                if depth == 0 {
                    end += 1;
                    break;
                }
            } else if depth == 0 && !(is_ident_char(c) || c == ':' || c == '*') {
                break;
            }
            end += 1;
        }
        let tail: String = bytes[at..end].iter().collect();
        let tail = tail.trim_start_matches("::");
        let mut expanded = Vec::new();
        expand(std::slice::from_ref(&head), tail, &mut expanded);
        paths.extend(expanded);
        at = end;
    }
    paths
}

fn char_offset(text: &str, chars: usize) -> usize {
    text.char_indices().nth(chars).map_or(text.len(), |(at, _)| at)
}

/// The module a path names something in: the longest prefix that is a module.
fn target(from: &str, path: &[String], modules: &BTreeMap<String, PathBuf>) -> Option<String> {
    let mut base: Vec<String> =
        if from.is_empty() { Vec::new() } else { from.split("::").map(str::to_owned).collect() };
    let mut rest = path;
    match path.first().map(String::as_str) {
        Some("crate") => {
            base.clear();
            rest = &path[1..];
        }
        Some("self") => rest = &path[1..],
        Some("super") => {
            while rest.first().is_some_and(|s| s == "super") {
                base.pop()?;
                rest = &rest[1..];
            }
        }
        _ => {}
    }
    let mut best = base.join("::");
    let mut walk = base;
    for segment in rest {
        walk.push(segment.clone());
        let name = walk.join("::");
        if modules.contains_key(&name) {
            best = name;
        } else {
            break;
        }
    }
    Some(best)
}

/// True when `module` is a submodule of `of` (not of the crate root: the
/// root's re-exports are edges like any other, so code in `lib.rs` that
/// modules call back into shows up as a circle).
fn is_descendant(of: &str, module: &str) -> bool {
    !of.is_empty() && module.starts_with(&format!("{of}::"))
}

fn graph(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let modules = modules(src);
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (module, file) in &modules {
        let source = std::fs::read_to_string(file).expect("read source");
        let prefix = if module.is_empty() { String::new() } else { format!("{module}::") };
        let children: BTreeSet<String> = modules
            .keys()
            .filter_map(|m| m.strip_prefix(&prefix).filter(|rest| !rest.is_empty() && !rest.contains("::")))
            .map(str::to_owned)
            .collect();
        let out = edges.entry(module.clone()).or_default();
        for path in paths_in(&code_of(&source), &children) {
            let Some(to) = target(module, &path, &modules) else { continue };
            if to != *module && !is_descendant(module, &to) {
                out.insert(to);
            }
        }
    }
    edges
}

/// Per strongly connected set of two or more modules: one cycle through it,
/// and all its members.
fn cycles(edges: &BTreeMap<String, BTreeSet<String>>) -> Vec<(Vec<String>, BTreeSet<String>)> {
    // Tarjan's algorithm, recursive: the graphs are a few dozen nodes.
    struct State<'a> {
        edges: &'a BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on_stack: BTreeSet<&'a str>,
        sets: Vec<Vec<&'a str>>,
    }
    fn visit<'a>(state: &mut State<'a>, node: &'a str) {
        let next = state.index.len();
        state.index.insert(node, next);
        state.low.insert(node, next);
        state.stack.push(node);
        state.on_stack.insert(node);
        for to in state.edges.get(node).into_iter().flatten() {
            let to = to.as_str();
            if !state.index.contains_key(to) {
                visit(state, to);
                let low = state.low[node].min(state.low[to]);
                state.low.insert(node, low);
            } else if state.on_stack.contains(to) {
                let low = state.low[node].min(state.index[to]);
                state.low.insert(node, low);
            }
        }
        if state.low[node] == state.index[node] {
            let mut set = Vec::new();
            while let Some(top) = state.stack.pop() {
                state.on_stack.remove(top);
                set.push(top);
                if top == node {
                    break;
                }
            }
            if set.len() > 1 {
                state.sets.push(set);
            }
        }
    }
    let mut state = State {
        edges,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        sets: Vec::new(),
    };
    for node in edges.keys() {
        if !state.index.contains_key(node.as_str()) {
            visit(&mut state, node);
        }
    }
    state.sets.iter().map(|set| (one_cycle(edges, set), set.iter().map(|s| (*s).to_owned()).collect())).collect()
}

/// A shortest cycle through the first member of `set`, within `set`.
fn one_cycle(edges: &BTreeMap<String, BTreeSet<String>>, set: &[&str]) -> Vec<String> {
    let members: BTreeSet<&str> = set.iter().copied().collect();
    let start = *members.iter().next().expect("non-empty set");
    let mut came_from: BTreeMap<&str, &str> = BTreeMap::new();
    let mut queue = std::collections::VecDeque::from([start]);
    while let Some(node) = queue.pop_front() {
        for to in edges.get(node).into_iter().flatten() {
            let to = to.as_str();
            if !members.contains(to) {
                continue;
            }
            if to == start {
                let mut cycle = vec![node.to_owned()];
                let mut at = node;
                while at != start {
                    at = came_from[at];
                    cycle.push(at.to_owned());
                }
                cycle.reverse();
                cycle.push(start.to_owned());
                return cycle;
            }
            if !came_from.contains_key(to) && to != start {
                came_from.insert(to, node);
                queue.push_back(to);
            }
        }
    }
    set.iter().map(|s| (*s).to_owned()).collect()
}

fn name(module: &str) -> &str {
    if module.is_empty() {
        "lib"
    } else {
        module
    }
}

fn check(krate: &str) {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(krate).join("src");
    let edges = graph(&src);
    assert!(edges.len() > 3, "{krate}: found only {} modules under {}", edges.len(), src.display());
    let found = cycles(&edges);
    let described: Vec<String> = found
        .iter()
        .map(|(cycle, members)| {
            let cycle = cycle.iter().map(|m| name(m)).collect::<Vec<_>>().join(" → ");
            let members = members.iter().map(|m| name(m)).collect::<Vec<_>>().join(", ");
            format!("{cycle} (one loop of the circle {{{members}}})")
        })
        .collect();
    assert!(described.is_empty(), "{krate}: import circles between modules:\n  {}", described.join("\n  "));
}

#[test]
fn engine_modules_have_no_import_circle() {
    check("engine");
}

#[test]
fn connector_modules_have_no_import_circle() {
    check("connector");
}

#[test]
fn protocol_modules_have_no_import_circle() {
    check("protocol");
}

#[test]
fn bench_modules_have_no_import_circle() {
    check("bench");
}

#[test]
fn cli_modules_have_no_import_circle() {
    check("cli");
}

#[test]
fn testkit_modules_have_no_import_circle() {
    check("testkit");
}

/// The checker itself finds a circle, through `super`, grouped uses and the root.
#[test]
fn a_circle_is_found_and_named() {
    let dir = std::env::temp_dir().join(format!("volley-module-graph-{}", std::process::id()));
    let src = dir.join("src");
    std::fs::create_dir_all(src.join("a")).expect("mkdir");
    std::fs::write(src.join("lib.rs"), "pub mod a;\npub mod b;\npub use b::Thing;\n").expect("write");
    std::fs::write(src.join("a.rs"), "pub mod inner;\n").expect("write");
    std::fs::write(src.join("a/inner.rs"), "use crate::{b::{self, Other}};\n").expect("write");
    std::fs::write(
        src.join("b.rs"),
        "// use crate::a::inner; (a comment)\npub struct Thing;\npub struct Other;\n\
         fn f() { crate::a::inner::g(); }\n#[cfg(test)]\nmod tests {\n    use crate::Thing;\n}\n",
    )
    .expect("write");
    let edges = graph(&src);
    let found = cycles(&edges);
    std::fs::remove_dir_all(&dir).expect("cleanup");
    let cycle = vec!["a::inner".to_owned(), "b".to_owned(), "a::inner".to_owned()];
    let members = BTreeSet::from(["a::inner".to_owned(), "b".to_owned()]);
    assert_eq!(found, vec![(cycle, members)], "{edges:?}");
}
