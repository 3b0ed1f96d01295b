//! `matches`: subset matching of a document against a pattern, and the match
//! ops (`!and !or !not !glob !irtype !has-path !all !key !subtree !field !tag
//! !pass`).
//!
//! Never changes the document, never panics; recursion follows the pattern
//! (`!subtree` walks the document with an explicit stack).

use std::collections::HashMap;

use super::{
    MAX_DEPTH, PatchError, REFUSED_OPS, View, glob::glob_match, index_segment, key_segment,
    no_rest, split_op,
};
use crate::kpath::KPath;
use crate::node::{Key, Kind, Node, Tag, TagHead, Value};

/// Whether `doc` (`None` = absent) matches `pattern` (see `docs/TONY.md`, "Match").
/// Errors only on a malformed pattern (a bad op body, a bad `!has-path`).
pub fn matches(doc: Option<&Node>, pattern: &Node) -> Result<bool, PatchError> {
    match_view(doc, None, View::of(pattern), 0)
}

/// [`matches()`] from inside a walk already `depth` levels deep (`!if`).
pub(crate) fn matches_at(
    doc: Option<&Node>,
    pattern: &Node,
    depth: usize,
) -> Result<bool, PatchError> {
    match_view(doc, None, View::of(pattern), depth)
}

fn is_match_op(name: &str) -> bool {
    matches!(
        name,
        "and"
            | "or"
            | "not"
            | "glob"
            | "irtype"
            | "has-path"
            | "all"
            | "key"
            | "subtree"
            | "field"
            | "tag"
            | "pass"
    )
}

/// Whether a pattern node's tag starts with a match op.
pub(crate) fn has_match_op(pattern: &Node) -> bool {
    split_op(pattern.tag.as_ref(), is_match_op).is_some()
}

/// `key` is the node's key in its parent object, for `!field`.
fn match_view(
    doc: Option<&Node>,
    key: Option<&Key>,
    p: View<'_>,
    depth: usize,
) -> Result<bool, PatchError> {
    if depth > MAX_DEPTH {
        return Err(PatchError::TooDeep {
            limit: MAX_DEPTH,
            at: KPath::root(),
        });
    }
    if let Some((head, rest)) = split_op(p.tag, is_match_op) {
        return match_op(doc, key, &head, rest.as_ref(), p.value, depth);
    }
    // A refused op (`!let`, `!eval`, ...) in a pattern is refused, not
    // silently read as data that matches nothing.
    if let Some((head, _)) = split_op(p.tag, |n| REFUSED_OPS.contains(&n)) {
        return Err(PatchError::Refused {
            op: head.name.to_owned(),
            at: KPath::root(),
        });
    }
    plain(doc, p.value, depth)
}

fn plain(doc: Option<&Node>, pv: &Value, depth: usize) -> Result<bool, PatchError> {
    if matches!(pv, Value::Null) {
        return Ok(true);
    }
    let Some(doc) = doc else {
        return Ok(false);
    };
    Ok(match (pv, &doc.value) {
        (Value::Object(pkv), Value::Object(dkv)) => {
            let index: Option<HashMap<&Key, &Node>> =
                (pkv.len() > 8 && dkv.len() > 32).then(|| {
                    let mut m = HashMap::with_capacity(dkv.len());
                    for (k, v) in dkv {
                        m.entry(k).or_insert(v);
                    }
                    m
                });
            for (k, pn) in pkv {
                let d = match &index {
                    Some(m) => m.get(k).copied(),
                    None => dkv.iter().find(|(dk, _)| dk == k).map(|(_, v)| v),
                };
                let Some(d) = d else {
                    return Ok(false);
                };
                if !match_view(Some(d), Some(k), View::of(pn), depth + 1)
                    .map_err(|e| e.under(key_segment(k)))?
                {
                    return Ok(false);
                }
            }
            true
        }
        (Value::Array(pa), Value::Array(da)) => {
            if pa.len() != da.len() {
                return Ok(false);
            }
            for (i, (pn, dn)) in pa.iter().zip(da).enumerate() {
                if !match_view(Some(dn), None, View::of(pn), depth + 1)
                    .map_err(|e| e.under(index_segment(i)))?
                {
                    return Ok(false);
                }
            }
            true
        }
        (Value::Bool(a), Value::Bool(b)) => a == b,
        (Value::Int(a), Value::Int(b)) => a == b,
        (Value::Float(a), Value::Float(b)) => a == b,
        (Value::String(a), Value::String(b)) => a == b,
        _ => false,
    })
}

/// Objects and sparse arrays are one type; int and float are two.
fn ir_kind(v: &Value) -> Kind {
    match v.kind() {
        Kind::Sparse => Kind::Object,
        k => k,
    }
}

fn match_op(
    doc: Option<&Node>,
    key: Option<&Key>,
    head: &TagHead<'_>,
    rest: Option<&Tag>,
    value: &Value,
    depth: usize,
) -> Result<bool, PatchError> {
    let child = View { tag: rest, value };
    let op = head.name;
    match op {
        "pass" => Ok(true),
        "and" | "or" => {
            no_rest(op, rest)?;
            let Value::Array(items) = value else {
                return Err(PatchError::bad(op, "the value must be a list of patterns"));
            };
            for (i, it) in items.iter().enumerate() {
                let m = match_view(doc, key, View::of(it), depth + 1)
                    .map_err(|e| e.under(index_segment(i)))?;
                if m == (op == "or") {
                    return Ok(m);
                }
            }
            Ok(op == "and")
        }
        "not" => Ok(!match_view(doc, key, child, depth + 1)?),
        "glob" => {
            no_rest(op, rest)?;
            let Value::String(pat) = value else {
                return Err(PatchError::bad(op, "the value must be a string pattern"));
            };
            Ok(match doc.map(|d| &d.value) {
                Some(Value::String(s)) => glob_match(pat, s),
                _ => false,
            })
        }
        "irtype" => {
            no_rest(op, rest)?;
            Ok(doc.is_some_and(|d| ir_kind(&d.value) == ir_kind(value)))
        }
        "has-path" => {
            no_rest(op, rest)?;
            let Value::String(text) = value else {
                return Err(PatchError::bad(op, "the value must be a path string"));
            };
            let path = KPath::parse(text).map_err(|source| PatchError::BadPath {
                source,
                at: KPath::root(),
            })?;
            Ok(doc.is_some_and(|d| d.get_path(&path).is_some()))
        }
        "all" => match doc {
            None => match_view(None, None, child, depth + 1),
            Some(d) => match &d.value {
                Value::Array(items) => {
                    for (i, it) in items.iter().enumerate() {
                        if !match_view(Some(it), None, child, depth + 1)
                            .map_err(|e| e.under(index_segment(i)))?
                        {
                            return Ok(false);
                        }
                    }
                    Ok(true)
                }
                Value::Object(kv) => {
                    for (k, v) in kv {
                        if !match_view(Some(v), Some(k), child, depth + 1)
                            .map_err(|e| e.under(key_segment(k)))?
                        {
                            return Ok(false);
                        }
                    }
                    Ok(true)
                }
                _ => match_view(Some(d), key, child, depth + 1),
            },
        },
        "key" => {
            no_rest(op, rest)?;
            let field = match head.args.as_slice() {
                [f] if !f.is_empty() => *f,
                _ => return Err(PatchError::bad(op, "takes exactly one argument")),
            };
            let Value::Array(pitems) = value else {
                return Err(PatchError::bad(op, "the value must be a list of patterns"));
            };
            let Some(Value::Array(ditems)) = doc.map(|d| &d.value) else {
                return Ok(false);
            };
            for (j, pi) in pitems.iter().enumerate() {
                let Some(kn) = View::of(pi).field(field) else {
                    return Err(PatchError::bad(
                        op,
                        format!("pattern item {j} has no field {field:?}"),
                    ));
                };
                let hit = ditems
                    .iter()
                    .enumerate()
                    .find(|(_, d)| d.field(field).is_some_and(|k| k.value == kn.value));
                let Some((i, d)) = hit else {
                    return Ok(false);
                };
                if !match_view(Some(d), None, View::of(pi), depth + 1)
                    .map_err(|e| e.under(index_segment(i)))?
                {
                    return Ok(false);
                }
            }
            Ok(true)
        }
        "subtree" => {
            let Some(d) = doc else {
                return match_view(None, key, child, depth + 1);
            };
            let mut stack: Vec<(&Node, Option<&Key>)> = vec![(d, key)];
            while let Some((n, k)) = stack.pop() {
                if match_view(Some(n), k, child, depth + 1)? {
                    return Ok(true);
                }
                match &n.value {
                    Value::Array(items) => stack.extend(items.iter().rev().map(|it| (it, None))),
                    Value::Object(kv) => stack.extend(kv.iter().rev().map(|(k, v)| (v, Some(k)))),
                    _ => {}
                }
            }
            Ok(false)
        }
        "field" => match key {
            Some(k) => match_view(Some(&Node::string(k.to_string())), None, child, depth + 1),
            None => match_view(None, None, child, depth + 1),
        },
        "tag" => match doc {
            Some(d) => match_view(Some(&tag_node(d.tag.as_ref())), None, child, depth + 1),
            None => match_view(None, None, child, depth + 1),
        },
        other => Err(PatchError::bad(other, "unknown match op")),
    }
}

/// What `!tag p` matches `p` against, as go-tony does: `{name, args}`, the
/// name being the tag without `!` and without its arguments (a chain's names
/// joined by `.`), the arguments every part's arguments in order, as strings.
/// An untagged node gives `{name: "", args: []}`.
fn tag_node(tag: Option<&Tag>) -> Node {
    let mut names: Vec<String> = Vec::new();
    let mut args: Vec<Node> = Vec::new();
    let mut cur = tag.cloned();
    while let Some(t) = cur {
        let (head, rest) = t.split_first();
        names.push(head.name.to_owned());
        args.extend(head.args.iter().map(|a| Node::string(*a)));
        cur = rest;
    }
    Node::new(Value::Object(vec![
        (Key::Field("name".into()), Node::string(names.join("."))),
        (Key::Field("args".into()), Node::new(Value::Array(args))),
    ]))
}
