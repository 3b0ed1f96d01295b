//! `trim(pattern, doc)`: the part of a document a pattern names.
//!
//! Owns trimming only; it never fails and never panics (a malformed pattern
//! simply matches nothing). Recursion follows the pattern.

use std::collections::HashMap;

use super::MAX_DEPTH;
use super::matches::{has_match_op, matches_at};
use crate::node::{Key, Node, Value};

/// Keeps what `pattern` names of `doc`: objects keep only the keys the pattern
/// names (recursively), dropping a key whose pattern is op-tagged and does
/// not match its value; arrays keep, in pattern order, the first unused doc
/// element each pattern element matches (trimmed by it); anything else, and
/// every `null` or op-tagged pattern, keeps the doc node whole (so does a
/// pattern nested deeper than [`MAX_DEPTH`](super::MAX_DEPTH)).
pub fn trim(pattern: &Node, doc: &Node) -> Node {
    trim_at(pattern, doc, 0)
}

fn trim_at(pattern: &Node, doc: &Node, depth: usize) -> Node {
    if has_match_op(pattern) || depth > MAX_DEPTH {
        return doc.clone();
    }
    match (&pattern.value, &doc.value) {
        (Value::Object(pkv), Value::Object(dkv)) => {
            let index: Option<HashMap<&Key, &Node>> = (pkv.len() > 8).then(|| {
                let mut m = HashMap::with_capacity(pkv.len());
                for (k, v) in pkv {
                    m.entry(k).or_insert(v);
                }
                m
            });
            let lookup = |k: &Key| -> Option<&Node> {
                match &index {
                    Some(m) => m.get(k).copied(),
                    None => pkv.iter().find(|(pk, _)| pk == k).map(|(_, v)| v),
                }
            };
            // A key whose pattern is op-tagged (`!or`, `!not`, `!glob`, ...)
            // stays only when the value matches it, as in go-tony.
            let kept = dkv
                .iter()
                .filter_map(|(k, dv)| {
                    let pv = lookup(k)?;
                    if has_match_op(pv) && !matches_at(Some(dv), pv, depth + 1).unwrap_or(false) {
                        return None;
                    }
                    Some((k.clone(), trim_at(pv, dv, depth + 1)))
                })
                .collect();
            Node {
                tag: doc.tag.clone(),
                value: Value::Object(kept),
            }
        }
        (Value::Array(pa), Value::Array(da)) => {
            let mut used = vec![false; da.len()];
            let mut kept = Vec::with_capacity(pa.len().min(da.len()));
            for pe in pa {
                let hit = da
                    .iter()
                    .zip(used.iter_mut())
                    .find(|(d, u)| !**u && matches_at(Some(d), pe, depth + 1).unwrap_or(false));
                if let Some((d, u)) = hit {
                    *u = true;
                    kept.push(trim_at(pe, d, depth + 1));
                }
            }
            Node {
                tag: doc.tag.clone(),
                value: Value::Array(kept),
            }
        }
        _ => doc.clone(),
    }
}
