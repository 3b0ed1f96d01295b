//! The conformance runner: every case of every `*.tony` file in
//! `core/tests/conformance/` (the project's own copy; and, when `LOGD_CONFORMANCE_DIR` is set, every
//! `*.tony` file there too) must pass.
//!
//! Format (see the vectors' README): one case per line in Tony flow syntax;
//! blank lines and `#` lines are skipped; the file's name says its kind. A
//! failing case is reported by file and name; a file that yields no case is a
//! failure too, so a renamed or emptied vector file cannot pass silently.

use std::path::{Path, PathBuf};

use logd_core::patch;
use logd_core::text;
use logd_core::{KPath, Key, Node, Value};

/// Structural equality where object keys compare as sets (the vectors' rule).
fn same(a: &Node, b: &Node) -> bool {
    if a.tag != b.tag {
        return false;
    }
    match (&a.value, &b.value) {
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter().all(|(k, v)| {
                    y.iter()
                        .find(|(k2, _)| k2 == k)
                        .is_some_and(|(_, v2)| same(v, v2))
                })
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| same(p, q))
        }
        (x, y) => x == y,
    }
}

fn field<'a>(case: &'a Node, name: &str) -> Option<&'a Node> {
    case.field(name)
}

fn string_field(case: &Node, name: &str) -> Result<String, String> {
    match field(case, name).map(|n| &n.value) {
        Some(Value::String(s)) => Ok(s.clone()),
        other => Err(format!("field {name:?} should be a string, got {other:?}")),
    }
}

fn bool_field(case: &Node, name: &str) -> bool {
    matches!(field(case, name).map(|n| &n.value), Some(Value::Bool(true)))
}

fn required<'a>(case: &'a Node, name: &str) -> Result<&'a Node, String> {
    field(case, name).ok_or_else(|| format!("case has no {name:?}"))
}

fn show(n: Option<&Node>) -> String {
    n.map_or_else(|| "<absent>".to_owned(), |n| n.to_string())
}

/// Runs one case of the given kind; `Err` says why it failed.
fn run_case(kind: &str, case: &Node) -> Result<(), String> {
    match kind {
        "patch" => {
            let doc = field(case, "doc");
            let got = match field(case, "path") {
                // A patch at a path (keyed segments resolved against `doc`).
                Some(p) => {
                    let Value::String(p) = &p.value else {
                        return Err("path should be a string".into());
                    };
                    let path = KPath::parse(p).map_err(|e| e.to_string())?;
                    patch::apply_at(doc, &path, required(case, "patch")?)
                }
                None => patch::apply(doc, required(case, "patch")?),
            };
            if bool_field(case, "error") {
                return match got {
                    Err(_) => Ok(()),
                    Ok(n) => Err(format!("want an error, got {}", show(n.as_ref()))),
                };
            }
            let got = got.map_err(|e| format!("unexpected error: {e}"))?;
            if bool_field(case, "deleted") {
                return match got {
                    None => Ok(()),
                    Some(n) => Err(format!("want deleted, got {n}")),
                };
            }
            let want = required(case, "want")?;
            match &got {
                Some(g) if same(g, want) => Ok(()),
                _ => Err(format!("want {want}, got {}", show(got.as_ref()))),
            }
        }
        "match" => {
            let got = patch::matches(field(case, "doc"), required(case, "pattern")?);
            if bool_field(case, "error") {
                return match got {
                    Err(_) => Ok(()),
                    Ok(m) => Err(format!("want an error, got {m}")),
                };
            }
            let want = bool_field(case, "want");
            let got = got.map_err(|e| format!("unexpected error: {e}"))?;
            if got == want {
                Ok(())
            } else {
                Err(format!("want {want}, got {got}"))
            }
        }
        "trim" => {
            let got = patch::trim(required(case, "pattern")?, required(case, "doc")?);
            let want = required(case, "want")?;
            if same(&got, want) {
                Ok(())
            } else {
                Err(format!("want {want}, got {got}"))
            }
        }
        "merge" => {
            let Value::Array(items) = &required(case, "parts")?.value else {
                return Err("parts should be an array".into());
            };
            let mut parts = Vec::new();
            for item in items {
                match &item.value {
                    Value::Array(pair) if pair.len() == 2 => {
                        let Value::String(p) = &pair[0].value else {
                            return Err("a part's path should be a string".into());
                        };
                        let path = KPath::parse(p).map_err(|e| e.to_string())?;
                        parts.push((path, pair[1].clone()));
                    }
                    _ => return Err("a part should be [path, data]".into()),
                }
            }
            let got = match field(case, "doc") {
                // Against a document: keyed paths allowed (`merge_in`).
                Some(doc) => {
                    let refs: Vec<(&KPath, &Node)> = parts.iter().map(|(p, d)| (p, d)).collect();
                    patch::merge_in(Some(doc), &refs)
                }
                None => patch::merge(&parts),
            };
            if bool_field(case, "error") {
                return match got {
                    Err(_) => Ok(()),
                    Ok(n) => Err(format!("want an error, got {n}")),
                };
            }
            let got = got.map_err(|e| format!("unexpected error: {e}"))?;
            let want = required(case, "want")?;
            if same(&got, want) {
                Ok(())
            } else {
                Err(format!("want {want}, got {got}"))
            }
        }
        "kpath" => {
            if let Some(sorted) = field(case, "sorted") {
                let Value::Array(items) = &sorted.value else {
                    return Err("sorted should be an array".into());
                };
                let want = items
                    .iter()
                    .map(|n| match &n.value {
                        Value::String(s) => KPath::parse(s).map_err(|e| e.to_string()),
                        _ => Err("sorted items should be strings".to_owned()),
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                let mut got = want.clone();
                got.reverse();
                got.sort();
                return if got == want {
                    Ok(())
                } else {
                    Err(format!("sorted to {got:?}"))
                };
            }
            let input = string_field(case, "in")?;
            let parsed = KPath::parse(&input);
            if bool_field(case, "error") {
                return match parsed {
                    Err(_) => Ok(()),
                    Ok(p) => Err(format!("want an error, parsed {p}")),
                };
            }
            let parsed = parsed.map_err(|e| format!("unexpected error: {e}"))?;
            if let Some(doc) = field(case, "doc") {
                // get_path: the node at the path, or `absent: true`.
                let got = doc.get_path(&parsed);
                if bool_field(case, "absent") {
                    return match got {
                        None => Ok(()),
                        Some(n) => Err(format!("want absent, got {n}")),
                    };
                }
                let want = required(case, "get")?;
                return match got {
                    Some(n) if same(n, want) => Ok(()),
                    other => Err(format!("want {want}, got {}", show(other))),
                };
            }
            let want = string_field(case, "out")?;
            if parsed.to_string() == want {
                Ok(())
            } else {
                Err(format!("want {want:?}, printed {:?}", parsed.to_string()))
            }
        }
        "text" => {
            let input = string_field(case, "in")?;
            if bool_field(case, "error") {
                return match text::parse(&input) {
                    Err(_) => Ok(()),
                    Ok(n) => Err(format!("want an error, parsed {n}")),
                };
            }
            let want = string_field(case, "out")?;
            let node = text::parse(&input).map_err(|e| format!("parse error: {e}"))?;
            let printed = node.to_string();
            if printed != want {
                return Err(format!("want {want:?}, printed {printed:?}"));
            }
            let back = text::parse(&printed).map_err(|e| format!("reparse error: {e}"))?;
            if back != node {
                return Err(format!("printed form {printed:?} reads back differently"));
            }
            Ok(())
        }
        other => Err(format!("unknown vector kind {other:?}")),
    }
}

/// Runs every case of one file; returns (cases run, failures).
fn run_file(path: &Path) -> (usize, Vec<String>) {
    let file = path.display().to_string();
    let kind = path
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or_default()
        .to_owned();
    let body = match std::fs::read_to_string(path) {
        Ok(b) => b,
        Err(e) => return (0, vec![format!("{file}: cannot read: {e}")]),
    };
    let mut cases = 0;
    let mut failures = Vec::new();
    for (i, line) in body.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        cases += 1;
        let case = match text::parse(line) {
            Ok(c) => c,
            Err(e) => {
                failures.push(format!("{file}:{}: cannot parse case: {e}", i + 1));
                continue;
            }
        };
        let name = case
            .get(&Key::Field("name".into()))
            .map_or_else(|| format!("line {}", i + 1), |n| n.to_string());
        if let Err(why) = run_case(&kind, &case) {
            failures.push(format!("{file}: case {name}: {why}"));
        }
    }
    if cases == 0 {
        failures.push(format!("{file}: yields no case"));
    }
    (cases, failures)
}

fn vector_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot read vector directory {}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "tony"))
        .collect();
    files.sort();
    files
}

fn run_dir(dir: &Path) {
    let files = vector_files(dir);
    assert!(
        !files.is_empty(),
        "no *.tony vector files in {}",
        dir.display()
    );
    let mut total = 0;
    let mut failures = Vec::new();
    for f in &files {
        let (n, mut fails) = run_file(f);
        total += n;
        failures.append(&mut fails);
    }
    for f in &failures {
        eprintln!("FAIL {f}");
    }
    eprintln!(
        "{}: {} files, {total} cases, {} failures",
        dir.display(),
        files.len(),
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "{} conformance failures",
        failures.len()
    );
}

#[test]
fn repository_vectors_pass() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/conformance");
    run_dir(&dir);
}

#[test]
fn extra_vectors_from_env_pass() {
    if let Some(dir) = std::env::var_os("LOGD_CONFORMANCE_DIR") {
        run_dir(Path::new(&dir));
    }
}

#[test]
fn a_file_without_cases_fails() {
    let dir = tempfile::tempdir().expect("tempdir");
    let f = dir.path().join("patch.tony");
    std::fs::write(&f, "# only a comment\n\n").expect("write");
    let (n, failures) = run_file(&f);
    assert_eq!(n, 0);
    assert_eq!(failures.len(), 1);
}

#[test]
fn a_wrong_expectation_is_reported_by_name() {
    let dir = tempfile::tempdir().expect("tempdir");
    let f = dir.path().join("patch.tony");
    std::fs::write(
        &f,
        "{name: wrong, doc: {a: 1}, patch: {b: 1}, want: {a: 2}}\n",
    )
    .expect("write");
    let (n, failures) = run_file(&f);
    assert_eq!(n, 1);
    assert_eq!(failures.len(), 1);
    assert!(failures[0].contains("case wrong"), "{failures:?}");
}
