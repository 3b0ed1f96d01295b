//! Runs `shared/conformance/{patch,match,trim,merge}.tony` through the patch
//! engine, reading the cases with `text::parse`. Reports every failing case
//! by file and name; fails when a file yields no case.
//!
//! The directory is `$LOGD_CONFORMANCE_DIR`, else the first of
//! `<core>/../../shared/conformance`, `<core>/../shared/conformance` that exists.

use std::path::PathBuf;

use logd_core::patch::{apply, apply_owned, matches, merge, trim};
use logd_core::text::parse;
use logd_core::{KPath, Node, Value};

fn dir() -> PathBuf {
    if let Ok(d) = std::env::var("LOGD_CONFORMANCE_DIR") {
        return PathBuf::from(d);
    }
    let core = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let candidates = [
        core.join("../../shared/conformance"),
        core.join("../shared/conformance"),
    ];
    candidates
        .iter()
        .find(|p| p.is_dir())
        .cloned()
        .unwrap_or_else(|| panic!("no conformance directory among {candidates:?}"))
}

/// The cases of one file: (name, case object).
fn cases(file: &str) -> Vec<(String, Node)> {
    let path = dir().join(file);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let case = parse(line).unwrap_or_else(|e| panic!("{file}:{}: {e}", n + 1));
        let name = match case.field("name").map(|n| &n.value) {
            Some(Value::String(s)) => s.clone(),
            _ => panic!("{file}:{}: case without a name", n + 1),
        };
        out.push((name, case));
    }
    assert!(!out.is_empty(), "{file} yields no case");
    out
}

/// Objects compare without regard to key order: sort keys recursively.
fn normal(n: &Node) -> Node {
    let value = match &n.value {
        Value::Object(kv) => {
            let mut kv: Vec<_> = kv.iter().map(|(k, v)| (k.clone(), normal(v))).collect();
            kv.sort_by(|a, b| a.0.cmp(&b.0));
            Value::Object(kv)
        }
        Value::Array(items) => Value::Array(items.iter().map(normal).collect()),
        v => v.clone(),
    };
    Node {
        tag: n.tag.clone(),
        value,
    }
}

fn is_true(case: &Node, field: &str) -> bool {
    matches!(case.field(field).map(|n| &n.value), Some(Value::Bool(true)))
}

fn run(file: &str, check: impl Fn(&Node) -> Result<(), String>) {
    let all = cases(file);
    let failures: Vec<String> = all
        .iter()
        .filter_map(|(name, case)| check(case).err().map(|e| format!("{file} / {name}: {e}")))
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {} cases fail:\n{}",
        failures.len(),
        all.len(),
        failures.join("\n")
    );
}

#[test]
fn patch_tony() {
    run("patch.tony", |case| {
        let doc = case.field("doc");
        let patch = case.field("patch").ok_or("no patch")?;
        let got = apply(doc, patch);
        let owned = apply_owned(doc.cloned(), patch);
        if got != owned {
            return Err(format!("apply {got:?} != apply_owned {owned:?}"));
        }
        if is_true(case, "error") {
            return match got {
                Err(_) => Ok(()),
                Ok(v) => Err(format!("expected an error, got {v:?}")),
            };
        }
        if is_true(case, "deleted") {
            return match got {
                Ok(None) => Ok(()),
                other => Err(format!("expected deleted, got {other:?}")),
            };
        }
        let want = case.field("want").ok_or("no want")?;
        match got {
            Ok(Some(n)) if normal(&n) == normal(want) => Ok(()),
            Ok(Some(n)) => Err(format!("want {want}, got {n}")),
            other => Err(format!("want {want}, got {other:?}")),
        }
    });
}

#[test]
fn match_tony() {
    run("match.tony", |case| {
        let pattern = case.field("pattern").ok_or("no pattern")?;
        let want = is_true(case, "want");
        match matches(case.field("doc"), pattern) {
            Ok(b) if b == want => Ok(()),
            other => Err(format!("want {want}, got {other:?}")),
        }
    });
}

#[test]
fn trim_tony() {
    run("trim.tony", |case| {
        let doc = case.field("doc").ok_or("no doc")?;
        let pattern = case.field("pattern").ok_or("no pattern")?;
        let want = case.field("want").ok_or("no want")?;
        let got = trim(pattern, doc);
        if normal(&got) == normal(want) {
            Ok(())
        } else {
            Err(format!("want {want}, got {got}"))
        }
    });
}

#[test]
fn merge_tony() {
    run("merge.tony", |case| {
        let Some(Value::Array(parts)) = case.field("parts").map(|n| &n.value) else {
            return Err("no parts".into());
        };
        let mut list = Vec::new();
        for part in parts {
            let Value::Array(pair) = &part.value else {
                return Err(format!("part {part} is not [path, data]"));
            };
            let [path, data] = pair.as_slice() else {
                return Err(format!("part {part} is not [path, data]"));
            };
            let Value::String(path) = &path.value else {
                return Err(format!("path {path} is not a string"));
            };
            list.push((KPath::parse(path).map_err(|e| e.to_string())?, data.clone()));
        }
        let got = merge(&list);
        if is_true(case, "error") {
            return match got {
                Err(_) => Ok(()),
                Ok(v) => Err(format!("expected an error, got {v}")),
            };
        }
        let want = case.field("want").ok_or("no want")?;
        match got {
            Ok(n) if normal(&n) == normal(want) => Ok(()),
            Ok(n) => Err(format!("want {want}, got {n}")),
            Err(e) => Err(format!("want {want}, got error: {e}")),
        }
    });
}
