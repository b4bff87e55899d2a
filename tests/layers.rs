//! The layer rule (README, "Layout"): layers only look down,
//! model → backend → {cpu, gpu} → methods → {viz, report} → bin, and no file imports in a circle.
//!
//! A small scanner reads every `.rs` file under `src/` (comments, doc comments, strings and char
//! literals skipped, so doc links never count) and collects the module paths each file names:
//! `use` items (nested braces, `self`, globs and renames expanded) and `crate::a::b`,
//! `super::`, `self::` paths anywhere in code, resolved against the file's place in the module
//! tree (inline `mod x { .. }` blocks included); in a binary, `netlens::` names the library.
//!
//! Edge definition: file A → file B when A names a path whose longest module prefix is defined
//! in B (`crate::gpu::embed::MapFormat` → `src/gpu/embed.rs`, `crate::gpu::GpuBackend` →
//! `src/gpu/mod.rs`). A path into A's own module or one of A's ancestor modules is not an edge
//! (a child using its parent's items, `use super::GpuBackend` in gpu/exec.rs); a parent naming its
//! child (`pub use embed::X` in gpu/mod.rs) is. `mod x;` declarations are not edges.
//!
//! Exempt from the layer rule (not from the circle check): test code, i.e. files named
//! `tests*.rs`, files under a `tests/` folder, modules declared under `#[cfg(test)]`, and inline
//! `#[cfg(test)] mod x { .. }` blocks. Tests may compare a backend against a method, but their
//! imports still take part in the circle check.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::{Path, PathBuf};

/// What each layer must never name, by top-level module. `model` and `backend` sit below
/// everything else; `cpu` and `gpu` know no method, no engine and nothing above; `methods` are
/// written against the `Backend` trait only.
const FORBIDDEN: &[(&str, &[&str])] = &[
    (
        "model",
        &[
            "backend", "cpu", "gpu", "methods", "viz", "report", "engine", "bench",
        ],
    ),
    (
        "backend",
        &["cpu", "gpu", "methods", "viz", "report", "engine", "bench"],
    ),
    ("cpu", &["methods", "viz", "report", "engine", "bench"]),
    ("gpu", &["methods", "viz", "report", "engine", "bench"]),
    ("methods", &["gpu", "cpu", "engine"]),
];

// ---------------------------------------------------------------------------------------------
// Tokens

#[derive(Clone, Debug, PartialEq)]
enum Tok {
    Ident(String),
    /// `::`
    Path,
    Punct(char),
}

/// Rust source as tokens with their line numbers: comments (doc comments included), string,
/// byte-string, raw-string and char literals, numbers and lifetimes are dropped.
fn tokenize(src: &str) -> Vec<(Tok, usize)> {
    let c: Vec<char> = src.chars().collect();
    let mut out = Vec::new();
    let (mut i, mut line) = (0usize, 1usize);
    let at = |k: usize| c.get(k).copied().unwrap_or('\0');
    while i < c.len() {
        let ch = c[i];
        if ch == '\n' {
            line += 1;
            i += 1;
        } else if ch.is_whitespace() {
            i += 1;
        } else if ch == '/' && at(i + 1) == '/' {
            while i < c.len() && c[i] != '\n' {
                i += 1;
            }
        } else if ch == '/' && at(i + 1) == '*' {
            let mut depth = 0;
            while i < c.len() {
                if c[i] == '/' && at(i + 1) == '*' {
                    depth += 1;
                    i += 2;
                } else if c[i] == '*' && at(i + 1) == '/' {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    line += (c[i] == '\n') as usize;
                    i += 1;
                }
            }
        } else if let Some(len) = raw_string_start(&c, i) {
            // r"..", r#".."#, br#".."#: ends at a quote followed by as many #.
            let hashes = len - 1 - (c[i] == 'b' || c[i] == 'c') as usize - 1;
            i += len;
            loop {
                if i >= c.len() {
                    break;
                }
                if c[i] == '"' && (1..=hashes).all(|h| at(i + h) == '#') {
                    i += 1 + hashes;
                    break;
                }
                line += (c[i] == '\n') as usize;
                i += 1;
            }
        } else if ch == '"' || ((ch == 'b' || ch == 'c') && at(i + 1) == '"') {
            i += if ch == '"' { 1 } else { 2 };
            while i < c.len() && c[i] != '"' {
                if c[i] == '\\' {
                    i += 1;
                }
                line += (at(i) == '\n') as usize;
                i += 1;
            }
            i += 1;
        } else if ch == '\'' || (ch == 'b' && at(i + 1) == '\'') {
            let q = if ch == '\'' { i } else { i + 1 };
            if at(q + 1) == '\\' {
                // '\n', '\'', '\u{1F600}'
                i = q + 2;
                while i < c.len() && c[i] != '\'' {
                    i += 1;
                }
                i += 1;
            } else if at(q + 2) == '\'' {
                i = q + 3;
            } else {
                // A lifetime or label: skip the quote, the name follows as an identifier that
                // no path starts with.
                i = q + 1;
                while at(i).is_alphanumeric() || at(i) == '_' {
                    i += 1;
                }
            }
        } else if ch == 'r' && at(i + 1) == '#' && (at(i + 2).is_alphabetic() || at(i + 2) == '_') {
            let s = i + 2;
            i = s;
            while at(i).is_alphanumeric() || at(i) == '_' {
                i += 1;
            }
            out.push((Tok::Ident(c[s..i].iter().collect()), line));
        } else if ch.is_alphabetic() || ch == '_' {
            let s = i;
            while at(i).is_alphanumeric() || at(i) == '_' {
                i += 1;
            }
            out.push((Tok::Ident(c[s..i].iter().collect()), line));
        } else if ch.is_ascii_digit() {
            while at(i).is_alphanumeric()
                || at(i) == '_'
                || (at(i) == '.' && at(i + 1).is_ascii_digit())
            {
                i += 1;
            }
        } else if ch == ':' && at(i + 1) == ':' {
            out.push((Tok::Path, line));
            i += 2;
        } else {
            out.push((Tok::Punct(ch), line));
            i += 1;
        }
    }
    out
}

/// The length of a raw string's opening (`r"`, `r#"`, `br##"`, ..) at `i`, if one starts there.
fn raw_string_start(c: &[char], i: usize) -> Option<usize> {
    let mut k = i;
    if c.get(k) == Some(&'b') || c.get(k) == Some(&'c') {
        k += 1;
    }
    if c.get(k) != Some(&'r') {
        return None;
    }
    k += 1;
    while c.get(k) == Some(&'#') {
        k += 1;
    }
    if c.get(k) == Some(&'"') {
        // Not the end of an identifier such as `for"`: the char before must not be one.
        let before = i.checked_sub(1).map(|b| c[b]);
        if before.is_some_and(|b| b.is_alphanumeric() || b == '_') {
            return None;
        }
        Some(k + 1 - i)
    } else {
        None
    }
}

// ---------------------------------------------------------------------------------------------
// References

/// One path a file names.
#[derive(Clone, Debug)]
struct Reference {
    /// The inline module it appears in, relative to the file's own module.
    scope: Vec<String>,
    segments: Vec<String>,
    line: usize,
    /// Inside a `#[cfg(test)]` inline module.
    in_test: bool,
}

/// What scanning one file finds.
#[derive(Debug, Default)]
struct Scan {
    references: Vec<Reference>,
    /// `mod x;` declarations: (scope, name, under `#[cfg(test)]`).
    declared: Vec<(Vec<String>, String, bool)>,
}

fn ident(t: Option<&(Tok, usize)>) -> Option<&str> {
    match t {
        Some((Tok::Ident(s), _)) => Some(s),
        _ => None,
    }
}

fn punct(t: Option<&(Tok, usize)>, p: char) -> bool {
    matches!(t, Some((Tok::Punct(q), _)) if *q == p)
}

/// Expands a use tree starting at `toks[*i]` into full paths (a leading `::` becomes the segment
/// `::`, which resolves to nothing). Stops after the tree, before `,`, `}` or `;`.
fn use_tree(toks: &[(Tok, usize)], i: &mut usize, prefix: Vec<String>, out: &mut Vec<Vec<String>>) {
    let mut path = prefix;
    if matches!(toks.get(*i), Some((Tok::Path, _))) && path.is_empty() {
        path.push("::".into());
        *i += 1;
    }
    loop {
        match toks.get(*i) {
            Some((Tok::Ident(s), _)) => {
                if s != "self" || path.is_empty() {
                    path.push(s.clone());
                }
                *i += 1;
                if matches!(toks.get(*i), Some((Tok::Path, _))) {
                    *i += 1;
                    continue;
                }
                if ident(toks.get(*i)) == Some("as") {
                    *i += 2;
                }
                out.push(path);
                return;
            }
            Some((Tok::Punct('*'), _)) => {
                *i += 1;
                out.push(path);
                return;
            }
            Some((Tok::Punct('{'), _)) => {
                *i += 1;
                loop {
                    match toks.get(*i) {
                        Some((Tok::Punct('}'), _)) => {
                            *i += 1;
                            return;
                        }
                        Some((Tok::Punct(','), _)) => *i += 1,
                        None => return,
                        _ => {
                            let before = *i;
                            use_tree(toks, i, path.clone(), out);
                            if *i == before {
                                *i += 1;
                            }
                        }
                    }
                }
            }
            _ => {
                if !path.is_empty() {
                    out.push(path);
                }
                return;
            }
        }
    }
}

/// Every path a file names, with the inline module each appears in.
fn scan(src: &str) -> Scan {
    let toks = tokenize(src);
    let mut scan = Scan::default();
    // Open inline modules: (name, brace depth inside it, cfg(test)).
    let mut modules: Vec<(String, usize, bool)> = Vec::new();
    let mut depth = 0usize;
    let mut cfg_test = false;
    let mut i = 0;
    while i < toks.len() {
        let scope: Vec<String> = modules.iter().map(|m| m.0.clone()).collect();
        let in_test = modules.iter().any(|m| m.2);
        match &toks[i].0 {
            Tok::Punct('#') => {
                // #[cfg(test)]
                let want = [
                    Tok::Punct('['),
                    Tok::Ident("cfg".into()),
                    Tok::Punct('('),
                    Tok::Ident("test".into()),
                    Tok::Punct(')'),
                    Tok::Punct(']'),
                ];
                if toks.len() > i + 6 && (0..6).all(|k| toks[i + 1 + k].0 == want[k]) {
                    cfg_test = true;
                    i += 7;
                    continue;
                }
            }
            Tok::Punct('{') => {
                depth += 1;
                cfg_test = false;
            }
            Tok::Punct('}') => {
                if modules.last().is_some_and(|m| m.1 == depth) {
                    modules.pop();
                }
                depth = depth.saturating_sub(1);
                cfg_test = false;
            }
            Tok::Punct(';') => cfg_test = false,
            Tok::Ident(k) if k == "mod" => {
                if let Some(name) = ident(toks.get(i + 1)) {
                    if punct(toks.get(i + 2), '{') {
                        depth += 1;
                        modules.push((name.to_string(), depth, cfg_test || in_test));
                        cfg_test = false;
                        i += 3;
                        continue;
                    }
                    if punct(toks.get(i + 2), ';') {
                        scan.declared
                            .push((scope, name.to_string(), cfg_test || in_test));
                        cfg_test = false;
                        i += 3;
                        continue;
                    }
                }
            }
            Tok::Ident(k) if k == "use" => {
                let line = toks[i].1;
                let mut j = i + 1;
                let mut paths = Vec::new();
                use_tree(&toks, &mut j, Vec::new(), &mut paths);
                for segments in paths {
                    scan.references.push(Reference {
                        scope: scope.clone(),
                        segments,
                        line,
                        in_test,
                    });
                }
                // The use tree's own tokens are read again below as code paths: harmless, the
                // same edges.
            }
            Tok::Ident(first) => {
                // A path in code: ident (:: ident)+, not itself the tail of a longer path.
                let tail = i > 0 && matches!(toks[i - 1].0, Tok::Path);
                if !tail && matches!(toks.get(i + 1), Some((Tok::Path, _))) {
                    let mut segments = vec![first.clone()];
                    let mut j = i + 1;
                    while matches!(toks.get(j), Some((Tok::Path, _))) {
                        match ident(toks.get(j + 1)) {
                            Some(s) => segments.push(s.to_string()),
                            None => break,
                        }
                        j += 2;
                    }
                    scan.references.push(Reference {
                        scope,
                        segments,
                        line: toks[i].1,
                        in_test,
                    });
                }
            }
            _ => {}
        }
        i += 1;
    }
    scan
}

// ---------------------------------------------------------------------------------------------
// The module tree

/// One source file and its module.
#[derive(Debug)]
struct File {
    /// Relative to the crate root, e.g. `src/gpu/embed.rs`.
    path: String,
    /// 0: the library; 1..: one per binary.
    krate: usize,
    module: Vec<String>,
    scan: Scan,
    test: bool,
}

/// `(crate, module path)` of a file under `src/`, or `None` for a file outside any crate root.
fn module_of(rel: &Path, bins: &mut Vec<PathBuf>) -> Option<(usize, Vec<String>)> {
    let parts: Vec<String> = rel
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    let strip = |parts: &[String]| -> Vec<String> {
        let mut m: Vec<String> = parts.to_vec();
        let last = m.pop().unwrap();
        let stem = last.trim_end_matches(".rs").to_string();
        if stem != "mod" {
            m.push(stem);
        }
        m
    };
    if parts[0] == "bin" {
        // src/bin/NAME.rs or src/bin/NAME/main.rs (+ its modules): a crate each.
        let (root, rest) = if parts.len() == 2 {
            (PathBuf::from(&parts[1]), Vec::new())
        } else {
            let rest = &parts[2..];
            let m = if rest == ["main.rs"] {
                Vec::new()
            } else {
                strip(rest)
            };
            (PathBuf::from(&parts[1]), m)
        };
        let k = match bins.iter().position(|b| *b == root) {
            Some(k) => k,
            None => {
                bins.push(root);
                bins.len() - 1
            }
        };
        return Some((k + 1, rest));
    }
    if parts == ["lib.rs"] {
        return Some((0, Vec::new()));
    }
    if parts == ["main.rs"] {
        return None;
    }
    Some((0, strip(&parts)))
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
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

/// Every file of `root/src` with its scan.
fn read_tree(root: &Path) -> Vec<File> {
    let src = root.join("src");
    let mut paths = Vec::new();
    rust_files(&src, &mut paths);
    let mut bins = Vec::new();
    let mut files = Vec::new();
    for p in paths {
        let rel = p.strip_prefix(&src).unwrap();
        let Some((krate, module)) = module_of(rel, &mut bins) else {
            continue;
        };
        let name = rel.file_name().unwrap().to_string_lossy();
        let test = name.starts_with("tests") || rel.iter().any(|c| c == "tests");
        let text = std::fs::read_to_string(&p).unwrap();
        files.push(File {
            path: format!("src/{}", rel.display()),
            krate,
            module,
            scan: scan(&text),
            test,
        });
    }
    // Modules declared under #[cfg(test)], and everything below them, are test code.
    let mut test_modules = BTreeSet::new();
    for f in &files {
        for (scope, name, test) in &f.scan.declared {
            if *test {
                let mut m = f.module.clone();
                m.extend(scope.iter().cloned());
                m.push(name.clone());
                test_modules.insert((f.krate, m));
            }
        }
    }
    for f in &mut files {
        if test_modules
            .iter()
            .any(|(k, m)| *k == f.krate && f.module.starts_with(m))
        {
            f.test = true;
        }
    }
    files
}

/// One import edge, for messages.
#[derive(Clone, Debug)]
struct Edge {
    from: usize,
    to: usize,
    line: usize,
    path: String,
    test: bool,
}

/// `(crate, module path)` → the file that defines that module.
type Index<'a> = BTreeMap<(usize, &'a [String]), usize>;

/// The file that defines the module `segments` (as written in `from`) points into, if any.
fn resolve(index: &Index, from: &File, r: &Reference) -> Option<usize> {
    let mut here = from.module.clone();
    here.extend(r.scope.iter().cloned());
    let segs = &r.segments;
    let (krate, mut full) = match segs[0].as_str() {
        "crate" => (from.krate, Vec::new()),
        "self" => (from.krate, here.clone()),
        "super" => {
            let mut base = here.clone();
            let mut k = 0;
            while segs.get(k).map(String::as_str) == Some("super") {
                base.pop()?;
                k += 1;
            }
            let mut full = base;
            full.extend(segs[k..].iter().cloned());
            return lookup(index, from.krate, &full);
        }
        "netlens" if from.krate != 0 => (0, Vec::new()),
        first => {
            // A bare path into a child module of the current module.
            let mut child = here.clone();
            child.push(first.to_string());
            if !index.contains_key(&(from.krate, child.as_slice())) {
                return None;
            }
            (from.krate, here.clone())
        }
    };
    let skip = matches!(segs[0].as_str(), "crate" | "self" | "netlens") as usize;
    full.extend(segs[skip..].iter().cloned());
    lookup(index, krate, &full)
}

/// The longest prefix of `full` that is a file's module.
fn lookup(index: &Index, krate: usize, full: &[String]) -> Option<usize> {
    (0..=full.len())
        .rev()
        .find_map(|n| index.get(&(krate, &full[..n])).copied())
}

/// Every edge between files (see the module doc for what counts).
fn edges(files: &[File]) -> Vec<Edge> {
    let index: Index = files
        .iter()
        .enumerate()
        .map(|(k, f)| ((f.krate, f.module.as_slice()), k))
        .collect();
    let mut out = Vec::new();
    for (k, f) in files.iter().enumerate() {
        for r in &f.scan.references {
            let Some(to) = resolve(&index, f, r) else {
                continue;
            };
            let t = &files[to];
            let ancestor = t.krate == f.krate && f.module.starts_with(&t.module);
            if to == k || ancestor {
                continue;
            }
            out.push(Edge {
                from: k,
                to,
                line: r.line,
                path: r.segments.join("::"),
                test: f.test || r.in_test,
            });
        }
    }
    out
}

/// Layer-rule breaches, one line per file, line and file named: `file:line names paths (rule)`.
fn upward(files: &[File], edges: &[Edge]) -> Vec<String> {
    let mut found: BTreeMap<(String, usize, String), BTreeSet<String>> = BTreeMap::new();
    for e in edges.iter().filter(|e| !e.test) {
        let (f, t) = (&files[e.from], &files[e.to]);
        if f.krate != 0 || t.krate != 0 {
            continue;
        }
        let (Some(layer), Some(target)) = (f.module.first(), t.module.first()) else {
            continue;
        };
        for (l, banned) in FORBIDDEN {
            if layer == l && banned.contains(&target.as_str()) {
                let rule = format!("{l} must not look up at {target}");
                found
                    .entry((f.path.clone(), e.line, rule))
                    .or_default()
                    .insert(e.path.clone());
            }
        }
    }
    found
        .into_iter()
        .map(|((path, line, rule), names)| {
            // `a::b` read as a code path beside `a::b::{C, D}` from the use tree: keep the longest.
            let longest: Vec<&String> = names
                .iter()
                .filter(|n| !names.iter().any(|m| m.starts_with(&format!("{n}::"))))
                .collect();
            let longest: Vec<&str> = longest.iter().map(|s| s.as_str()).collect();
            format!("{path}:{line} names {} ({rule})", longest.join(", "))
        })
        .collect()
}

/// Each circle of imports, as `a.rs:LINE → b.rs:LINE → … → a.rs`, one per strongly connected
/// component (the shortest one through its first file), plus the component's size.
fn circles(files: &[File], edges: &[Edge]) -> Vec<String> {
    let n = files.len();
    let mut adj: Vec<BTreeMap<usize, &Edge>> = vec![BTreeMap::new(); n];
    for e in edges {
        adj[e.from].entry(e.to).or_insert(e);
    }
    // Tarjan's strongly connected components, iteratively.
    let mut index = vec![usize::MAX; n];
    let mut low = vec![0; n];
    let mut on = vec![false; n];
    let mut stack = Vec::new();
    let mut comps: Vec<Vec<usize>> = Vec::new();
    let mut next = 0;
    for root in 0..n {
        if index[root] != usize::MAX {
            continue;
        }
        let mut work: Vec<(usize, Vec<usize>)> = vec![(root, adj[root].keys().copied().collect())];
        index[root] = next;
        low[root] = next;
        next += 1;
        stack.push(root);
        on[root] = true;
        while let Some((v, todo)) = work.last_mut() {
            let v = *v;
            if let Some(w) = todo.pop() {
                if index[w] == usize::MAX {
                    index[w] = next;
                    low[w] = next;
                    next += 1;
                    stack.push(w);
                    on[w] = true;
                    work.push((w, adj[w].keys().copied().collect()));
                } else if on[w] {
                    low[v] = low[v].min(index[w]);
                }
            } else {
                work.pop();
                if let Some((u, _)) = work.last() {
                    low[*u] = low[*u].min(low[v]);
                }
                if low[v] == index[v] {
                    let mut comp = Vec::new();
                    loop {
                        let w = stack.pop().unwrap();
                        on[w] = false;
                        comp.push(w);
                        if w == v {
                            break;
                        }
                    }
                    if comp.len() > 1 {
                        comp.sort();
                        comps.push(comp);
                    }
                }
            }
        }
    }
    let mut out = Vec::new();
    for comp in comps {
        let inside: BTreeSet<usize> = comp.iter().copied().collect();
        let start = comp[0];
        // Breadth-first from start back to start, inside the component.
        let mut prev: BTreeMap<usize, usize> = BTreeMap::new();
        let mut queue = VecDeque::from([start]);
        let mut closing = None;
        while let Some(v) = queue.pop_front() {
            for &w in adj[v].keys() {
                if w == start {
                    closing = Some(v);
                    break;
                }
                if inside.contains(&w) && !prev.contains_key(&w) {
                    prev.insert(w, v);
                    queue.push_back(w);
                }
            }
            if closing.is_some() {
                break;
            }
        }
        let mut cycle = vec![start];
        let mut v = closing.expect("a component of two or more files has a circle");
        while v != start {
            cycle.push(v);
            v = prev[&v];
        }
        cycle[1..].reverse();
        cycle.push(start);
        let hops: Vec<String> = cycle
            .windows(2)
            .map(|w| {
                let e = adj[w[0]][&w[1]];
                format!("{}:{} ({})", files[w[0]].path, e.line, e.path)
            })
            .collect();
        let members: Vec<&str> = comp.iter().map(|&k| files[k].path.as_str()).collect();
        out.push(format!(
            "{} files in a circle ({}), e.g. {} → {}",
            comp.len(),
            members.join(", "),
            hops.join(" → "),
            files[start].path
        ));
    }
    out
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn layers_only_look_down() {
    let files = read_tree(&root());
    let edges = edges(&files);
    assert!(
        files.len() > 50,
        "only {} files found under src/",
        files.len()
    );
    assert!(edges.len() > 100, "only {} edges found", edges.len());
    let exempt: Vec<&str> = files
        .iter()
        .filter(|f| f.test)
        .map(|f| f.path.as_str())
        .collect();
    eprintln!(
        "{} files, {} edges; test files exempt from the layer rule: {exempt:?}",
        files.len(),
        edges.len()
    );
    let bad = upward(&files, &edges);
    assert!(
        bad.is_empty(),
        "{} upward import(s):\n{}",
        bad.len(),
        bad.join("\n")
    );
}

#[test]
fn no_import_circles() {
    let files = read_tree(&root());
    let edges = edges(&files);
    let found = circles(&files, &edges);
    assert!(
        found.is_empty(),
        "{} import circle(s):\n{}",
        found.len(),
        found.join("\n")
    );
}

/// The scanner on a made-up tree: comments, doc links, strings and chars name nothing; nested use
/// braces, `self`, `super` (also from an inline module), bare child paths and code paths do; a
/// `#[cfg(test)]` module is exempt; the rule and the circle check fire.
#[test]
fn the_checker_itself_can_fail() {
    let dir = std::env::temp_dir().join(format!("netlens_layers_{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let write = |rel: &str, text: &str| {
        let p = dir.join("src").join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    };
    write("lib.rs", "pub mod gpu; pub mod methods; pub mod backend;");
    write(
        "gpu/mod.rs",
        "mod exec; mod ops;\n#[cfg(test)]\nmod tests;\npub use exec::run;\n\
         /// [`crate::methods::x`] in a doc comment\n// crate::methods in a comment\n\
         /* crate::methods /* nested */ crate::methods */\n\
         fn f() -> &'static str { let _c = '\"'; let _l: &'static u8; \"crate::methods::x\" }\n\
         fn g() { r#\"crate::methods\"#; }\n",
    );
    write(
        "gpu/exec.rs",
        "use super::{ops::{self, Kernel as K}, GpuBackend};\npub fn run() {}\n\
         #[cfg(test)]\nmod tests { use super::super::ops::x; use crate::methods::m; }\n",
    );
    write("gpu/ops.rs", "fn h() { crate::backend::b(); }\n");
    write("gpu/tests.rs", "use crate::methods::m;\n");
    write(
        "methods/mod.rs",
        "pub fn m() { let _ = crate::gpu::exec::run(); }\n",
    );
    write("backend.rs", "fn b() { crate::methods::m(); }\n");
    let files = read_tree(&dir);
    let edges = edges(&files);
    let names = |e: &Edge| (files[e.from].path.clone(), files[e.to].path.clone());
    let got: BTreeSet<(String, String)> = edges.iter().map(names).collect();
    let want: BTreeSet<(String, String)> = [
        ("src/gpu/mod.rs", "src/gpu/exec.rs"),
        ("src/gpu/exec.rs", "src/gpu/ops.rs"),
        ("src/gpu/exec.rs", "src/methods/mod.rs"),
        ("src/gpu/ops.rs", "src/backend.rs"),
        ("src/gpu/tests.rs", "src/methods/mod.rs"),
        ("src/methods/mod.rs", "src/gpu/exec.rs"),
        ("src/backend.rs", "src/methods/mod.rs"),
    ]
    .iter()
    .map(|(a, b)| (a.to_string(), b.to_string()))
    .collect();
    assert_eq!(got, want);
    let bad = upward(&files, &edges);
    let breaches: Vec<&str> = bad.iter().map(|b| b.split(' ').next().unwrap()).collect();
    assert_eq!(
        breaches,
        ["src/backend.rs:1", "src/methods/mod.rs:1"],
        "{bad:#?}"
    );
    let found = circles(&files, &edges);
    assert_eq!(found.len(), 1, "{found:#?}");
    assert!(found[0].starts_with("4 files in a circle"), "{found:#?}");
    let _ = std::fs::remove_dir_all(&dir);
}
