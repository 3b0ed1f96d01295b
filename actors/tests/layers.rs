//! The module order of `logd-actors` is acyclic: every `crate::` path in a
//! module names a module listed above it in the numbered list at the top of
//! `src/lib.rs` (or the module itself, or one of its submodules).
//!
//! The list in `lib.rs` is the one source of truth: this test reads it, and
//! the old module paths that `lib.rs` re-exports (`pub use commit::log_writer`,
//! `pub use read as reader`, ...) are resolved to the module they name, so an
//! import through an old path is checked like one through the new path. A
//! module that is not in the list fails the test until it is added there.
//!
//! What it does not see: `super::` paths (they stay inside one module's tree)
//! and macros that build paths.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The numbered layer list of `lib.rs`: module path -> rank (its position).
fn layer_list(lib: &str) -> Vec<String> {
    let mut out = Vec::new();
    for line in lib.lines() {
        let Some(rest) = line.strip_prefix("//! ") else {
            continue;
        };
        let Some((num, rest)) = rest.split_once(". [`") else {
            continue;
        };
        if num.is_empty() || !num.chars().all(|c| c.is_ascii_digit()) {
            continue;
        }
        if let Some((module, _)) = rest.split_once("`]") {
            out.push(module.to_string());
        }
    }
    out
}

/// Removes `//` comments (doc comments included: their links are not imports).
fn strip_comments(src: &str) -> String {
    src.lines()
        .map(|l| match l.find("//") {
            Some(i) => &l[..i],
            None => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// Parses a path or use tree starting at `s` (just after `crate::`):
/// `a::b::c`, `a::{b, c::d}`, and appends every full path to `out`.
/// Returns how many bytes it consumed.
fn parse_tree(s: &str, prefix: &[String], out: &mut Vec<Vec<String>>) -> usize {
    let b = s.as_bytes();
    let mut i = 0;
    let mut segs = prefix.to_vec();
    loop {
        while i < b.len() && (b[i] as char).is_whitespace() {
            i += 1;
        }
        if i < b.len() && b[i] == b'{' {
            i += 1;
            loop {
                while i < b.len() && ((b[i] as char).is_whitespace() || b[i] == b',') {
                    i += 1;
                }
                if i >= b.len() || b[i] == b'}' {
                    return i + 1;
                }
                i += parse_tree(&s[i..], &segs, out);
            }
        }
        let start = i;
        while i < b.len() && is_ident(b[i] as char) {
            i += 1;
        }
        if i > start {
            segs.push(s[start..i].to_string());
        }
        if s[i..].starts_with("::") {
            i += 2;
            continue;
        }
        // `x as y`: skip the alias.
        let rest = &s[i..];
        let trimmed = rest.trim_start();
        if let Some(after) = trimmed.strip_prefix("as ") {
            let skip = rest.len() - after.len();
            let after_trim = after.trim_start();
            let name_len = after_trim
                .find(|c: char| !is_ident(c))
                .unwrap_or(after_trim.len());
            i += skip + (after.len() - after_trim.len()) + name_len;
        }
        out.push(segs);
        return i;
    }
}

/// Every path named after `crate::` in (comment-free) source.
fn crate_paths(src: &str) -> Vec<Vec<String>> {
    let code = strip_comments(src);
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(at) = code[from..].find("crate::") {
        let start = from + at;
        let before = code[..start].chars().next_back();
        from = start + "crate::".len();
        if before.is_some_and(|c| is_ident(c) || c == ':') {
            continue; // `logd_crate::`, `$crate::`: not this crate's root
        }
        parse_tree(&code[from..], &[], &mut out);
    }
    out
}

/// The old (and root) names `lib.rs` re-exports: alias -> full path.
fn root_aliases(lib: &str) -> BTreeMap<String, Vec<String>> {
    let code = strip_comments(lib);
    let mut out = BTreeMap::new();
    for stmt in code.split(';') {
        let stmt = stmt.trim();
        let Some(body) = stmt.strip_prefix("pub use ") else {
            continue;
        };
        let mut paths = Vec::new();
        parse_tree(body, &[], &mut paths);
        // Aliases: `x as y` names the last path `y`.
        let renamed: Vec<Option<String>> = body
            .split([',', '{', '}'])
            .filter(|p| !p.trim().is_empty() && !p.trim().ends_with("::"))
            .map(|p| p.split_once(" as ").map(|(_, y)| y.trim().to_string()))
            .collect();
        for (k, path) in paths.into_iter().enumerate() {
            let name = renamed
                .get(k)
                .cloned()
                .flatten()
                .or_else(|| path.last().cloned());
            if let Some(name) = name {
                out.insert(name, path);
            }
        }
    }
    out
}

/// The listed module a path names: its longest listed prefix.
fn resolve(
    path: &[String],
    aliases: &BTreeMap<String, Vec<String>>,
    list: &[String],
) -> Option<usize> {
    let mut full = path.to_vec();
    if let Some(first) = full.first()
        && let Some(expanded) = aliases.get(first)
    {
        full.splice(0..1, expanded.iter().cloned());
    }
    (1..=full.len()).rev().find_map(|n| {
        let p = full[..n].join("::");
        list.iter().position(|m| *m == p)
    })
}

/// The module path of a source file under `src/`.
fn module_of(rel: &Path) -> String {
    let mut parts: Vec<String> = rel
        .iter()
        .map(|p| p.to_string_lossy().trim_end_matches(".rs").to_string())
        .collect();
    if parts.last().is_some_and(|p| p == "mod") {
        parts.pop();
    }
    parts.join("::")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
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

/// The violations in one file: `(file module, named path, why)`.
fn check_file(
    module: &str,
    src: &str,
    aliases: &BTreeMap<String, Vec<String>>,
    list: &[String],
) -> Vec<String> {
    let mut bad = Vec::new();
    let own = resolve(
        &module.split("::").map(String::from).collect::<Vec<_>>(),
        &BTreeMap::new(),
        list,
    );
    let paths = crate_paths(src);
    let Some(own) = own else {
        // A facade (`disk/mod.rs`) only declares its submodules.
        let is_facade = list.iter().any(|m| m.starts_with(&format!("{module}::")));
        if !is_facade {
            bad.push(format!(
                "module `{module}` is not in the layer list at the top of src/lib.rs: add it there"
            ));
        } else if !paths.is_empty() {
            bad.push(format!(
                "facade `{module}` names `crate::{}`: a facade only declares its submodules",
                paths[0].join("::")
            ));
        }
        return bad;
    };
    for p in paths {
        match resolve(&p, aliases, list) {
            None => bad.push(format!(
                "`{module}` names `crate::{}`, which is not a module of the layer list",
                p.join("::")
            )),
            Some(target) if target > own => bad.push(format!(
                "`{module}` (layer {}) imports `crate::{}` from `{}` (layer {}): an upward import",
                own + 1,
                p.join("::"),
                list[target],
                target + 1
            )),
            Some(_) => {}
        }
    }
    bad
}

#[test]
fn no_module_imports_from_a_layer_above_it() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let lib = std::fs::read_to_string(src.join("lib.rs")).unwrap();
    let list = layer_list(&lib);
    assert!(list.len() >= 10, "the layer list in src/lib.rs: {list:?}");
    let aliases = root_aliases(&lib);
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut bad = Vec::new();
    let mut checked = 0;
    for f in files {
        let rel = f.strip_prefix(&src).unwrap();
        if rel == Path::new("lib.rs") {
            continue;
        }
        let text = std::fs::read_to_string(&f).unwrap();
        bad.extend(check_file(&module_of(rel), &text, &aliases, &list));
        checked += 1;
    }
    eprintln!(
        "layers: {checked} files checked against {} listed modules",
        list.len()
    );
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}

/// The checker itself can fail: an upward import, one through an old path
/// and one in a group are each reported; a downward one is not.
#[test]
fn the_checker_reports_upward_imports() {
    let list: Vec<String> = ["error", "disk::layout", "index", "commit::log_writer"]
        .map(String::from)
        .to_vec();
    let lib = "pub use commit::{log_writer};\npub use error::Error;\n";
    let aliases = root_aliases(lib);
    let ok = "use crate::error::Error;\nuse crate::{disk::layout::wal_dir, Error};\n// crate::log_writer in a comment\n";
    assert_eq!(
        check_file("index", ok, &aliases, &list),
        Vec::<String>::new()
    );
    let up = "fn f() { crate::commit::log_writer::go(); }\n";
    assert_eq!(check_file("index", up, &aliases, &list).len(), 1);
    let old = "use crate::log_writer::Committed;\n";
    assert_eq!(check_file("disk::layout", old, &aliases, &list).len(), 1);
    let group = "use crate::{error::Error, index::{IndexActor, Plan}};\n";
    assert_eq!(check_file("disk::layout", group, &aliases, &list).len(), 2);
    let unlisted = "use crate::error::Error;\n";
    assert_eq!(check_file("watch", unlisted, &aliases, &list).len(), 1);
}
