//! Shared helpers for the snapshot tests: document generators and path enumeration.
#![allow(dead_code)]

use logd_core::{KPath, Key, Node, Segment, Value};
use proptest::prelude::*;

pub fn tag() -> impl Strategy<Value = Option<String>> {
    prop_oneof![
        4 => Just(None),
        1 => Just(Some("t".to_owned())),
        1 => Just(Some("key(id)".to_owned())),
        1 => Just(Some("ünï.cödé(a,b)".to_owned())),
    ]
}

pub fn key_name() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-e]{1,3}",
        Just(String::new()),
        Just("a.b".to_owned()),
        Just("ключ".to_owned()),
        Just("日本".to_owned()),
        Just("\u{0}x".to_owned()),
        "\\PC{0,4}",
    ]
}

fn with_tag(value: Value, tag: Option<String>) -> Node {
    match tag {
        Some(t) => Node::tagged(t, value),
        None => Node::new(value),
    }
}

pub fn scalar() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::Int),
        (-1e12f64..1e12).prop_map(Value::Float),
        "\\PC{0,12}".prop_map(Value::String),
        "x{0,300}".prop_map(Value::String),
    ]
}

fn dedup<K: PartialEq>(kv: Vec<(K, Node)>) -> Vec<(K, Node)> {
    let mut out: Vec<(K, Node)> = Vec::with_capacity(kv.len());
    for (k, v) in kv {
        if !out.iter().any(|(o, _)| *o == k) {
            out.push((k, v));
        }
    }
    out
}

/// Random documents: tags, dense and sparse arrays, nested arrays, empty
/// containers, unicode keys, keys in non-sorted insertion order.
pub fn doc() -> impl Strategy<Value = Node> {
    let leaf = (scalar(), tag()).prop_map(|(v, t)| with_tag(v, t));
    leaf.prop_recursive(5, 80, 8, |inner| {
        prop_oneof![
            (prop::collection::vec(inner.clone(), 0..8), tag())
                .prop_map(|(items, t)| with_tag(Value::Array(items), t)),
            (
                prop::collection::vec((key_name(), inner.clone()), 0..8),
                tag()
            )
                .prop_map(|(kv, t)| {
                    let kv = dedup(kv.into_iter().map(|(k, v)| (Key::Field(k), v)).collect());
                    with_tag(Value::Object(kv), t)
                }),
            (prop::collection::vec((0u32..40, inner), 0..6), tag()).prop_map(|(kv, t)| {
                let kv = dedup(kv.into_iter().map(|(k, v)| (Key::Index(k), v)).collect());
                with_tag(Value::Object(kv), t)
            }),
        ]
    })
}

/// Every path of `node` (root first).
pub fn all_paths(node: &Node) -> Vec<KPath> {
    let mut out = Vec::new();
    let mut path = KPath::root();
    walk(node, &mut path, &mut out);
    out
}

fn walk(node: &Node, path: &mut KPath, out: &mut Vec<KPath>) {
    out.push(path.clone());
    match &node.value {
        Value::Array(items) => {
            for (i, c) in items.iter().enumerate() {
                path.push(Segment::Index(i as u32));
                walk(c, path, out);
                path.pop();
            }
        }
        Value::Object(kv) => {
            for (k, c) in kv {
                path.push(match k {
                    Key::Field(f) => Segment::Field(f.clone()),
                    Key::Index(i) => Segment::Sparse(*i),
                });
                walk(c, path, out);
                path.pop();
            }
        }
        _ => {}
    }
}

/// Paths near the document's that do not exist in it (mostly).
pub fn absent_paths(paths: &[KPath]) -> Vec<KPath> {
    let mut out = Vec::new();
    for p in paths.iter().take(20) {
        out.push(p.child(Segment::Field("zz-absent".into())));
        out.push(p.child(Segment::Index(999)));
        out.push(p.child(Segment::Sparse(999)));
        out.push(p.child(Segment::Index(0)));
        out.push(p.child(Segment::Sparse(0)));
        out.push(p.child(Segment::Field(String::new())));
    }
    out
}
