//! Applying a run of root patches at once, for the snapshot rewrite.
//!
//! This module owns [`apply_all`]: the same result as folding
//! [`crate::patch::apply_owned`] over the patches in order, but a run of
//! plain object patches is routed key by key, so an object with many keys is
//! searched once per run (through a hash map) instead of once per patch. It
//! never changes what a patch means: where the routing is not exactly
//! equivalent, it applies the patches one by one.
//!
//! # Why routing is exact
//!
//! Let every patch of a run be an *untagged* object whose values are all
//! untagged too. Applying such a patch to a document keeps the document's
//! tag when it is an object (else starts from an empty untagged object),
//! and for each patch key applies the value to the child under that key
//! (the first one with that key). An untagged value never removes its
//! child (objects, arrays and scalars all give a node), so keys only ever
//! appear, each new key at the end, in the order the run first names them.
//! Hence the run's result is the object with the document's keys in their
//! order, then the new keys in first-mention order, where each child is the
//! fold of the values the run gives it, in patch order — which is what
//! [`apply_all`] computes, recursively. Anything else (a tagged patch or
//! value, a run of one) is applied one patch at a time.
//!
//! Depth: sub-runs restart [`apply_owned`]'s depth count, so routing is used
//! only when every patch is shallower than `MAX_DEPTH - ROUTE_DEPTH`; then
//! no patch can reach the limit either way.

use std::collections::HashMap;

use crate::node::{Key, Node, Value};
use crate::patch::{MAX_DEPTH, PatchError, apply_owned, key_segment};

use super::tree::depth_within;

/// Routing goes at most this many object levels down.
const ROUTE_DEPTH: usize = 8;

/// Folds `patches` over `doc` in order (see the module docs). On failure,
/// the position of the failing patch and its error.
pub(crate) fn apply_all(
    doc: Option<Node>,
    patches: &[&Node],
) -> Result<Option<Node>, (usize, PatchError)> {
    let route = patches.len() > 1
        && patches
            .iter()
            .all(|p| depth_within(p, MAX_DEPTH - ROUTE_DEPTH));
    if !route {
        let mut doc = doc;
        for (i, p) in patches.iter().enumerate() {
            doc = apply_owned(doc, p).map_err(|e| (i, e))?;
        }
        return Ok(doc);
    }
    let items: Vec<(usize, &Node)> = patches.iter().copied().enumerate().collect();
    run(doc, &items, 0)
}

/// Whether `p` is an untagged object whose values are all untagged.
fn routable(p: &Node) -> bool {
    match &p.value {
        Value::Object(kv) if p.tag.is_none() => kv.iter().all(|(_, v)| v.tag.is_none()),
        _ => false,
    }
}

fn run(
    doc: Option<Node>,
    items: &[(usize, &Node)],
    level: usize,
) -> Result<Option<Node>, (usize, PatchError)> {
    if level >= ROUTE_DEPTH || items.len() < 2 || !items.iter().all(|(_, p)| routable(p)) {
        let mut doc = doc;
        for &(i, p) in items {
            doc = apply_owned(doc, p).map_err(|e| (i, e))?;
        }
        return Ok(doc);
    }
    let (tag, mut entries) = match doc.map(Node::into_parts) {
        Some((tag, Value::Object(kv))) => (tag, kv),
        _ => (None, Vec::new()),
    };
    // The document's first occurrence of each key.
    let mut at: HashMap<Key, usize> = HashMap::with_capacity(entries.len());
    for (i, (k, _)) in entries.iter().enumerate() {
        at.entry(k.clone()).or_insert(i);
    }
    // Each key's values, in patch order; keys in first-mention order.
    let mut groups: Vec<(&Key, Vec<(usize, &Node)>)> = Vec::new();
    let mut group_of: HashMap<&Key, usize> = HashMap::new();
    for &(i, p) in items {
        let Value::Object(kv) = &p.value else {
            continue; // cannot happen: checked by `routable`
        };
        for (k, v) in kv {
            let g = *group_of.entry(k).or_insert_with(|| {
                groups.push((k, Vec::new()));
                groups.len() - 1
            });
            if let Some((_, vals)) = groups.get_mut(g) {
                vals.push((i, v));
            }
        }
    }
    for (k, vals) in groups {
        let with_key = |(i, mut e): (usize, PatchError)| {
            e.prepend(key_segment(k));
            (i, e)
        };
        match at.get(k).copied() {
            Some(pos) => {
                let Some(slot) = entries.get_mut(pos) else {
                    continue; // cannot happen: positions come from `entries`
                };
                let child = std::mem::replace(&mut slot.1, Node::null());
                match run(Some(child), &vals, level + 1).map_err(with_key)? {
                    Some(n) => slot.1 = n,
                    // Untagged values never remove; keep the fold honest anyway.
                    None => {
                        return Err((
                            vals.first().map_or(0, |v| v.0),
                            PatchError::bad("snapshot", "an untagged value removed its key"),
                        ));
                    }
                }
            }
            None => {
                if let Some(n) = run(None, &vals, level + 1).map_err(with_key)? {
                    at.insert(k.clone(), entries.len());
                    entries.push((k.clone(), n));
                }
            }
        }
    }
    Ok(Some(Node {
        tag,
        value: Value::Object(entries),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn fold(doc: Option<Node>, patches: &[&Node]) -> Result<Option<Node>, (usize, PatchError)> {
        let mut doc = doc;
        for (i, p) in patches.iter().enumerate() {
            doc = apply_owned(doc, p).map_err(|e| (i, e))?;
        }
        Ok(doc)
    }

    fn parse(s: &str) -> Node {
        s.parse().unwrap()
    }

    #[test]
    fn routes_many_small_patches_like_the_fold() {
        let patches: Vec<Node> = (0..300)
            .map(|i| {
                parse(&format!(
                    "{{users: {{u{}: {{name: \"user-{i}\", n: {i}, tags: [a, b]}}}}}}",
                    i % 37
                ))
            })
            .collect();
        let refs: Vec<&Node> = patches.iter().collect();
        let doc = Some(parse("!doc {users: !t {u5: 1, z: {q: 2}}, other: [1, 2]}"));
        assert_eq!(apply_all(doc.clone(), &refs), fold(doc, &refs));
        assert_eq!(apply_all(None, &refs), fold(None, &refs));
    }

    #[test]
    fn deletes_and_ops_fall_back_to_one_by_one() {
        let ps = [
            parse("{a: {x: 1}, b: 2}"),
            parse("{a: !delete null}"),
            parse("{c: 3, a: {y: 4}}"),
            parse("{b: !delete null, d: {e: [1]}}"),
            parse("{b: 5}"),
        ];
        let refs: Vec<&Node> = ps.iter().collect();
        let doc = Some(parse("{b: 0, z: 9}"));
        assert_eq!(apply_all(doc.clone(), &refs), fold(doc, &refs));
    }

    #[test]
    fn errors_name_the_failing_patch() {
        let ps = [
            parse("{a: {x: 1}}"),
            parse("{a: {x: !replace {from: 7, to: 8}}}"),
        ];
        let refs: Vec<&Node> = ps.iter().collect();
        let got = apply_all(None, &refs).unwrap_err();
        let want = fold(None, &refs).unwrap_err();
        assert_eq!(got.0, want.0);
        assert_eq!(got.1.to_string(), want.1.to_string());
    }

    fn key() -> impl Strategy<Value = String> {
        prop::sample::select(vec!["a", "b", "c", "d"]).prop_map(str::to_string)
    }

    fn value() -> impl Strategy<Value = Node> {
        let leaf = prop_oneof![
            any::<i8>().prop_map(|i| Node::int(i64::from(i))),
            Just(Node::null()),
            Just(Node::tagged("delete", Value::Null)),
            Just(Node::tagged("keep", Value::Int(1))),
            Just(Node::array([Node::int(1), Node::int(2)])),
        ];
        leaf.prop_recursive(4, 24, 4, |inner| {
            prop_oneof![
                3 => prop::collection::vec((key(), inner.clone()), 0..4)
                    .prop_map(Node::object),
                1 => prop::collection::vec((key(), inner), 0..3).prop_map(|kv| Node::tagged(
                    "t",
                    Value::Object(kv.into_iter().map(|(k, v)| (Key::Field(k), v)).collect())
                )),
            ]
        })
    }

    proptest! {
        #[test]
        fn equals_the_fold(
            doc in prop::option::of(value()),
            patches in prop::collection::vec(value(), 0..12),
        ) {
            let refs: Vec<&Node> = patches.iter().collect();
            let got = apply_all(doc.clone(), &refs);
            let want = fold(doc, &refs);
            match (got, want) {
                (Ok(a), Ok(b)) => prop_assert_eq!(a, b),
                (Err(a), Err(b)) => {
                    prop_assert_eq!(a.0, b.0);
                    prop_assert_eq!(a.1.to_string(), b.1.to_string());
                }
                (a, b) => prop_assert!(false, "{:?} vs {:?}", a, b),
            }
        }
    }
}
