//! The path index: which commits touch which paths.
//!
//! This module owns the pure rules and data structures that answer "which
//! commits in `(from, to]` can change the node at path `p`". It never reads
//! files and never applies patches.
//!
//! # Touched paths ("ends")
//!
//! A merged root patch is walked from the root. The walk goes *down* through
//! plain (untagged, or tagged with a non-op tag) non-empty objects — field keys
//! become `.field` segments, int keys `{i}` segments — and through `!arraydiff`
//! entries that edit an element in place. It *ends* (the path is recorded, and
//! the whole subtree below it counts as changed) at everything else: a scalar
//! or `null`, a plain array, an empty object, any op tag (`!delete`,
//! `!replace`, `!insert`, `!key(..)`, `!all`, ...), and an `!arraydiff` that
//! inserts or deletes elements.
//!
//! # The affects relation
//!
//! A commit whose patch ends at `e` can change the node at `p` when
//!
//! 1. `e` is `p` or an ancestor of `p` (the whole subtree at `e` was rewritten), or
//! 2. `e` is a descendant of `p` (something inside `p` changed), or
//! 3. `p` continues below some strict ancestor `a` with a dense index `a[i]..`,
//!    and `e` lies below `a` through a field or sparse segment: an object patch
//!    at `a` turns an array there into an object, which removes `a[i]`.
//!
//! Rule 3 is why the walk never needs to record the objects it passes through:
//! memory per commit grows with the number of ends, not with the depth of the
//! document.

use crate::kpath::{KPath, Segment};
use crate::node::{Key, Node, Value};

/// Whether a tag's first name is a patch op (anything else is data).
fn is_op(name: &str) -> bool {
    matches!(
        name,
        "delete"
            | "insert"
            | "replace"
            | "nullify"
            | "pass"
            | "arraydiff"
            | "strdiff"
            | "key"
            | "all"
            | "if"
            | "field"
            | "rename"
            | "addtag"
            | "rmtag"
            | "retag"
            | "pipe"
            | "embed"
            | "quote"
            | "unquote"
            | "json-patch"
            | "let"
            | "dive"
            | "eval"
    )
}

/// The paths where the walk of `patch` ends (see the module docs), in walk order.
pub fn touched_paths(patch: &Node) -> Vec<KPath> {
    let mut out = Vec::new();
    let mut path = KPath::root();
    walk(patch, &mut path, &mut out);
    out
}

fn walk(node: &Node, path: &mut KPath, out: &mut Vec<KPath>) {
    let op = node
        .tag
        .as_ref()
        .map(|t| t.first_name())
        .filter(|n| is_op(n));
    match (op, &node.value) {
        (None, Value::Object(kv)) if !kv.is_empty() => {
            for (k, child) in kv {
                path.push(match k {
                    Key::Field(f) => Segment::Field(f.clone()),
                    Key::Index(i) => Segment::Sparse(*i),
                });
                walk(child, path, out);
                path.pop();
            }
        }
        (Some("arraydiff"), Value::Object(kv)) if in_place_arraydiff(kv) => {
            for (k, child) in kv {
                if let Key::Index(i) = k {
                    path.push(Segment::Index(*i));
                    if child.tag.as_ref().map(|t| t.first_name()) == Some("replace") {
                        out.push(path.clone());
                    } else {
                        walk(child, path, out);
                    }
                    path.pop();
                }
            }
        }
        _ => out.push(path.clone()),
    }
}

/// An `!arraydiff` that keeps every element in its place: all entries are
/// int-keyed and either plain (untagged or data-tagged: applying one never
/// removes the element) or `!replace`. Slot `i` is then doc element `i`, so
/// the walk can go down. Any other op (`!insert`, `!delete`, `!if` that may
/// delete, ...) can shift later elements and ends the walk at the array.
fn in_place_arraydiff(kv: &[(Key, Node)]) -> bool {
    kv.iter().all(|(k, v)| {
        let op = v.tag.as_ref().map(|t| t.first_name()).filter(|n| is_op(n));
        matches!(k, Key::Index(_)) && matches!(op, None | Some("replace"))
    })
}

/// Whether a commit whose patch ends at `end` can change the node at `path`
/// (the three rules of the module docs).
pub fn affects(end: &KPath, path: &KPath) -> bool {
    if end.is_prefix_of(path) || path.is_prefix_of(end) {
        return true;
    }
    // Rule 3: the longest common prefix `a` of the two paths, where `path`
    // continues with a dense index and `end` with a field or sparse index.
    let common = end
        .segments()
        .iter()
        .zip(path.segments())
        .take_while(|(a, b)| a == b)
        .count();
    matches!(path.segments().get(common), Some(Segment::Index(_)))
        && matches!(
            end.segments().get(common),
            Some(Segment::Field(_) | Segment::Sparse(_))
        )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::Tag;

    fn p(s: &str) -> KPath {
        KPath::parse(s).unwrap_or_else(|e| panic!("{e}"))
    }

    fn obj(pairs: Vec<(&str, Node)>) -> Node {
        Node::object(pairs)
    }

    #[test]
    fn walk_ends_at_scalars_ops_and_arrays() {
        let patch = obj(vec![
            (
                "users",
                obj(vec![(
                    "u1",
                    obj(vec![
                        ("name", Node::string("x")),
                        ("tags", Node::array([Node::string("a")])),
                    ]),
                )]),
            ),
            ("gone", Node::tagged("delete", Value::Null)),
            ("mine", Node::tagged("mytag", Value::Object(vec![]))),
        ]);
        assert_eq!(
            touched_paths(&patch),
            vec![p("users.u1.name"), p("users.u1.tags"), p("gone"), p("mine")]
        );
    }

    #[test]
    fn arraydiff_in_place_goes_down_inserting_stops() {
        let in_place = Node {
            tag: Some(Tag::new("arraydiff")),
            value: Value::Object(vec![
                (Key::Index(0), Node::string("first")),
                (Key::Index(3), obj(vec![("a", Node::int(1))])),
            ]),
        };
        let root = obj(vec![("x", in_place)]);
        assert_eq!(touched_paths(&root), vec![p("x[0]"), p("x[3].a")]);
        let inserting = Node {
            tag: Some(Tag::new("arraydiff")),
            value: Value::Object(vec![(Key::Index(1), Node::tagged("insert", Value::Int(1)))]),
        };
        assert_eq!(touched_paths(&obj(vec![("x", inserting)])), vec![p("x")]);
        let sparse = Node::object([(Key::Index(7), Node::int(1))]);
        assert_eq!(touched_paths(&sparse), vec![p("{7}")]);
        assert_eq!(touched_paths(&Node::int(1)), vec![KPath::root()]);
    }

    #[test]
    fn affects_relation() {
        assert!(affects(&p("a"), &p("a.b")));
        assert!(affects(&p("a.b"), &p("a")));
        assert!(affects(&p("a.b"), &p("a.b")));
        assert!(affects(&KPath::root(), &p("z")));
        assert!(!affects(&p("a.b"), &p("a.c")));
        // Object patch over an array removes its elements.
        assert!(affects(&p("a.f"), &p("a[0].x")));
        assert!(affects(&p("a{2}"), &p("a[0]")));
        assert!(!affects(&p("a[1]"), &p("a[0]")));
        assert!(!affects(&p("a[0]"), &p("a.f")));
    }
}
