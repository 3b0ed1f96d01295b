//! [`diff`]: the patch that turns one state into another, so that
//! `patch::apply(a, &diff(a, b)?) == b`.
//!
//! It only builds patches (it never applies one, and never reads the
//! store). Objects and arrays of the same kind and tag are diffed key by
//! key / element by element; anything else that differs becomes a
//! `!replace {from: a, to: b}` when `a` is present (which emits `to`
//! verbatim) or the data itself when `a` is absent. Unchanged parts are
//! left out (objects) or `!pass` (array elements).

use logd_core::node::{Key, Node, Tag, Value};
use logd_core::patch::is_patch_op;

/// Why no patch could be built.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum DiffError {
    /// The new state holds a node tagged with a patch op (e.g. `!delete`)
    /// where it would have to be written as data over an absent node: a
    /// patch would run the op instead of storing it.
    #[error("the new state holds an op tag (!{tag}) that a patch cannot write as data there")]
    OpTag {
        /// The tag, without `!`.
        tag: String,
    },
}

/// The patch `p` with `apply(a, p) == b` (`None` is absent).
pub fn diff(a: Option<&Node>, b: Option<&Node>) -> Result<Node, DiffError> {
    match (a, b) {
        (None, None) => Ok(pass()),
        (Some(_), None) => Ok(Node::tagged("delete", Value::Null)),
        (None, Some(b)) => literal(b),
        (Some(a), Some(b)) => present(a, b),
    }
}

fn pass() -> Node {
    Node::tagged("pass", Value::Null)
}

/// `b` written over an absent node: the data itself, when it has no op tag.
fn literal(b: &Node) -> Result<Node, DiffError> {
    let mut stack = vec![b];
    while let Some(n) = stack.pop() {
        if let Some(tag) = &n.tag
            && is_patch_op(tag.first_name())
        {
            return Err(DiffError::OpTag {
                tag: tag.as_str().to_owned(),
            });
        }
        match &n.value {
            Value::Array(items) => stack.extend(items.iter()),
            Value::Object(kv) => stack.extend(kv.iter().map(|(_, v)| v)),
            _ => {}
        }
    }
    Ok(b.clone())
}

fn replace(a: &Node, b: &Node) -> Node {
    Node::tagged(
        "replace",
        Value::Object(vec![
            (Key::Field("from".into()), a.clone()),
            (Key::Field("to".into()), b.clone()),
        ]),
    )
}

fn has_duplicates(kv: &[(Key, Node)]) -> bool {
    let mut seen = std::collections::HashSet::with_capacity(kv.len());
    kv.iter().any(|(k, _)| !seen.insert(k))
}

fn present(a: &Node, b: &Node) -> Result<Node, DiffError> {
    if a == b {
        return Ok(pass());
    }
    if a.tag != b.tag {
        return Ok(replace(a, b));
    }
    match (&a.value, &b.value) {
        (Value::Object(ak), Value::Object(bk)) => {
            Ok(objects(ak, bk)?.unwrap_or_else(|| replace(a, b)))
        }
        (Value::Array(ai), Value::Array(bi)) => {
            let mut items = Vec::with_capacity(bi.len());
            for (i, bn) in bi.iter().enumerate() {
                items.push(match ai.get(i) {
                    Some(an) => present(an, bn)?,
                    None => literal(bn)?,
                });
            }
            // An empty array patch on a non-empty array empties it; an
            // untagged array patch keeps the array's tag.
            Ok(Node::new(Value::Array(items)))
        }
        // Scalars (and kind changes): a scalar patch replaces the node,
        // tag included; `!replace` emits `to` verbatim.
        (_, Value::Object(_) | Value::Array(_)) => Ok(replace(a, b)),
        _ => match &b.tag {
            Some(t) if is_op(t) => Ok(replace(a, b)),
            _ => Ok(b.clone()),
        },
    }
}

fn is_op(t: &Tag) -> bool {
    is_patch_op(t.first_name())
}

/// An object patch from `a` to `b`, or `None` when a merge cannot keep
/// `b`'s key order (the doc's order is kept and new keys follow).
fn objects(a: &[(Key, Node)], b: &[(Key, Node)]) -> Result<Option<Node>, DiffError> {
    if has_duplicates(a) || has_duplicates(b) {
        return Ok(None);
    }
    let in_b: std::collections::HashMap<&Key, &Node> = b.iter().map(|(k, v)| (k, v)).collect();
    let in_a: std::collections::HashMap<&Key, &Node> = a.iter().map(|(k, v)| (k, v)).collect();
    // The kept keys, in a's order, must be b's first keys in the same order.
    let kept: Vec<&Key> = a
        .iter()
        .map(|(k, _)| k)
        .filter(|k| in_b.contains_key(k))
        .collect();
    if b.len() < kept.len() || b.iter().zip(&kept).any(|((bk, _), k)| bk != *k) {
        return Ok(None);
    }
    let mut patch = Vec::new();
    for (k, av) in a {
        match in_b.get(k) {
            None => patch.push((k.clone(), Node::tagged("delete", Value::Null))),
            Some(bv) if *bv != av => patch.push((k.clone(), present(av, bv)?)),
            Some(_) => {}
        }
    }
    for (k, bv) in &b[kept.len()..] {
        debug_assert!(!in_a.contains_key(k));
        patch.push((k.clone(), literal(bv)?));
    }
    Ok(Some(Node::new(Value::Object(patch))))
}

#[cfg(test)]
mod tests {
    use super::*;
    use logd_core::patch::apply;
    use proptest::prelude::*;

    fn t(s: &str) -> Node {
        logd_core::text::parse(s).unwrap()
    }

    fn check(a: Option<&Node>, b: Option<&Node>) {
        let p = diff(a, b).unwrap();
        // The patch survives its text form (the CLI prints it).
        let p = t(&p.to_string());
        assert_eq!(apply(a, &p).unwrap().as_ref(), b, "patch {p}");
    }

    #[test]
    fn examples() {
        let a = t("{x: 1, y: [1, 2, 3], z: {q: !t 1}}");
        let b = t("{x: 2, y: [1, 5], z: {q: !u 1}, w: new}");
        check(Some(&a), Some(&b));
        assert_eq!(
            diff(Some(&a), Some(&b)).unwrap().to_string(),
            "{x: 2, y: [!pass null, 5], z: {q: !replace {from: !t 1, to: !u 1}}, w: new}"
        );
        check(None, Some(&a));
        check(Some(&a), None);
        check(None, None);
        // Reordered keys: a replace.
        check(Some(&t("{a: 1, b: 2}")), Some(&t("{b: 2, a: 1}")));
        // A stored op tag cannot be written over an absent node.
        let d = Node::tagged("delete", Value::Null);
        assert!(diff(None, Some(&d)).is_err());
        check(Some(&Node::int(1)), Some(&d));
    }

    fn node() -> impl Strategy<Value = Node> {
        let leaf = prop_oneof![
            Just(Node::null()),
            any::<bool>().prop_map(|b| Node::new(Value::Bool(b))),
            (-3i64..4).prop_map(Node::int),
            (-2i32..3).prop_map(|f| Node::new(Value::Float(f64::from(f) / 2.0))),
            "[a-c]{0,2}".prop_map(Node::string),
        ];
        let tagged = (leaf, prop::option::of(prop_oneof![Just("t"), Just("u")]))
            .prop_map(|(n, tag)| n.with_tag(tag.map(Tag::new)));
        tagged.prop_recursive(4, 40, 5, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..5).prop_map(Node::array),
                prop::collection::vec(("[a-e]", inner.clone()), 0..5).prop_map(|kv| {
                    let mut seen = std::collections::HashSet::new();
                    Node::object(kv.into_iter().filter(|(k, _)| seen.insert(k.clone())))
                }),
                prop::collection::vec((0u32..6, inner), 1..4).prop_map(|kv| {
                    let mut seen = std::collections::HashSet::new();
                    let kv: Vec<(Key, Node)> = kv
                        .into_iter()
                        .filter(|(k, _)| seen.insert(*k))
                        .map(|(k, v)| (Key::Index(k), v))
                        .collect();
                    Node::new(Value::Object(kv))
                }),
            ]
        })
    }

    /// `b` derived from `a` by small edits, so the structural paths run
    /// (two independent trees mostly differ at the root).
    fn edited() -> impl Strategy<Value = (Node, Node)> {
        (node(), node(), any::<u64>()).prop_map(|(a, other, seed)| {
            let mut b = a.clone();
            edit(&mut b, &other, seed);
            (a, b)
        })
    }

    fn edit(n: &mut Node, other: &Node, seed: u64) {
        let choice = seed % 4;
        let next = seed / 4;
        match &mut n.value {
            Value::Object(kv) if !kv.is_empty() && choice != 0 => {
                let i = (next as usize) % kv.len();
                match choice {
                    1 => edit(&mut kv[i].1, other, next / 7),
                    2 => {
                        kv.remove(i);
                    }
                    _ => {
                        if !kv.iter().any(|(k, _)| k == &Key::Field("new".into()))
                            && kv.iter().all(|(k, _)| matches!(k, Key::Field(_)))
                        {
                            kv.push((Key::Field("new".into()), other.clone()));
                        }
                    }
                }
            }
            Value::Array(items) if !items.is_empty() && choice != 0 => {
                let i = (next as usize) % items.len();
                match choice {
                    1 => edit(&mut items[i], other, next / 7),
                    2 => {
                        items.truncate(i);
                    }
                    _ => items.push(other.clone()),
                }
            }
            _ => *n = other.clone(),
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(400))]

        #[test]
        fn apply_of_diff_gives_the_new_state((a, b) in edited()) {
            let p = diff(Some(&a), Some(&b)).unwrap();
            prop_assert_eq!(apply(Some(&a), &p).unwrap(), Some(b.clone()), "patch {}", p);
        }

        #[test]
        fn apply_of_diff_any_two(a in prop::option::of(node()), b in prop::option::of(node())) {
            let p = diff(a.as_ref(), b.as_ref()).unwrap();
            prop_assert_eq!(apply(a.as_ref(), &p).unwrap(), b.clone(), "patch {}", p);
        }
    }
}
