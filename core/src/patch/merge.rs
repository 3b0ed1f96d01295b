//! `merge`: participant patches `(path, data)` into one root patch.
//!
//! Owns the mounting rules of `docs/TONY.md` ("Merge of participant patches").
//! Never applies a patch, never panics; recursion depth is the length of the
//! longest participant path.

use super::PatchError;
use crate::kpath::{KPath, Segment};
use crate::node::{Key, Node, Tag, Value};

/// Mounts every participant's data at its path: fields build objects, `[i]`
/// children become `!arraydiff {i: data}`, `{i}` children an int-keyed object;
/// the root path alone gives the data itself. Equal or nested paths
/// ([`PatchError::Conflict`]) and mixed accessors under one parent
/// ([`PatchError::MixedAccessors`]) are errors. No participants gives
/// `!pass null`.
pub fn merge(parts: &[(KPath, Node)]) -> Result<Node, PatchError> {
    let refs: Vec<(&KPath, &Node)> = parts.iter().map(|(p, d)| (p, d)).collect();
    merge_refs(&refs)
}

/// [`merge`] over borrowed parts: each participant's data is cloned once,
/// into the merged patch (the commit path calls this with its
/// participants' own patches).
pub fn merge_refs(parts: &[(&KPath, &Node)]) -> Result<Node, PatchError> {
    // Which element a keyed segment names depends on the document, which a
    // merge does not see: such paths go through `merge_in`.
    for (path, _) in parts {
        if let Some(i) = path
            .segments()
            .iter()
            .position(|s| matches!(s, Segment::Key(_)))
        {
            return Err(PatchError::KeyedPath {
                path: KPath::from_segments(path.segments()[..=i].to_vec()),
                reason: "a merge without the document needs positional paths (merge keyed paths with patch::merge_in)".into(),
            });
        }
    }
    merge_in(None, parts)
}

/// [`merge_refs`] against the document the merged patch will apply to, so
/// that participants may use keyed paths: the children of a keyed list
/// (`a(k)`) become one `!key(field) [...]` patch holding an item per key,
/// each item carrying its element's key (see [`super::patch_at`]). Keys
/// and other accessors under one parent are [`PatchError::MixedAccessors`];
/// a key naming no element is [`PatchError::KeyedPath`].
pub fn merge_in(doc: Option<&Node>, parts: &[(&KPath, &Node)]) -> Result<Node, PatchError> {
    match parts {
        [] => return Ok(Node::tagged("pass", Value::Null)),
        // One participant (most commits): nothing to group or check.
        [(path, data)] if !has_key(path) => return Ok(mount(path, data)),
        [(path, data)] => return super::patch_at(doc, path, data),
        _ => {}
    }
    let mut order: Vec<(&KPath, &Node)> = parts.to_vec();
    order.sort_by(|a, b| a.0.cmp(b.0));
    // In path order, a path that is a prefix of another is a prefix of the
    // one right after it.
    for w in order.windows(2) {
        if let [a, b] = w
            && a.0.is_prefix_of(b.0)
        {
            return Err(PatchError::Conflict {
                a: a.0.clone(),
                b: b.0.clone(),
            });
        }
    }
    build(doc, &order, 0, &KPath::root())
}

fn has_key(path: &KPath) -> bool {
    path.segments().iter().any(|s| matches!(s, Segment::Key(_)))
}

/// The patch that sets `data` at `path`, built from the inside out: what
/// [`build`] gives for a single part, without its grouping.
fn mount(path: &KPath, data: &Node) -> Node {
    let mut node = data.clone();
    for seg in path.segments().iter().rev() {
        node = match seg {
            Segment::Field(f) => Node::new(Value::Object(vec![(Key::Field(f.clone()), node)])),
            Segment::Sparse(i) => Node::new(Value::Object(vec![(Key::Index(*i), node)])),
            Segment::Index(i) => Node {
                tag: Some(Tag::new("arraydiff")),
                value: Value::Object(vec![(Key::Index(*i), node)]),
            },
            // Refused by `merge_refs` before mounting; a field is the
            // harmless stand-in.
            Segment::Key(k) => Node::new(Value::Object(vec![(Key::Field(k.clone()), node)])),
        };
    }
    node
}

#[derive(PartialEq)]
enum Accessor {
    Key,
    Field,
    Index,
    Sparse,
}

fn accessor(s: &Segment) -> Accessor {
    match s {
        Segment::Field(_) => Accessor::Field,
        Segment::Key(_) => Accessor::Key,
        Segment::Index(_) => Accessor::Index,
        Segment::Sparse(_) => Accessor::Sparse,
    }
}

/// Builds the patch for `parts` (sorted, conflict-free, all under `prefix`,
/// which has `depth` segments).
fn build(
    doc: Option<&Node>,
    parts: &[(&KPath, &Node)],
    depth: usize,
    prefix: &KPath,
) -> Result<Node, PatchError> {
    let seg_at = |p: &(&KPath, &Node)| p.0.segments().get(depth).cloned();
    match parts {
        [] => return Ok(Node::tagged("pass", Value::Null)),
        [only] if only.0.len() == depth => return Ok(only.1.clone()),
        _ => {}
    }
    // Every part continues below `prefix` (no conflicts); group by next segment.
    let mut groups: Vec<(Segment, Vec<(&KPath, &Node)>)> = Vec::new();
    for p in parts {
        let Some(seg) = seg_at(p) else {
            // A part ending here next to others: a conflict `merge` reports
            // before building; kept as an error rather than a panic.
            return Err(PatchError::Conflict {
                a: p.0.clone(),
                b: prefix.clone(),
            });
        };
        match groups.last_mut() {
            Some((s, g)) if *s == seg => g.push(*p),
            _ => groups.push((seg, vec![*p])),
        }
    }
    let kind = groups.first().map(|(s, _)| accessor(s));
    if groups.iter().any(|(s, _)| Some(accessor(s)) != kind) {
        return Err(PatchError::MixedAccessors {
            parent: prefix.clone(),
        });
    }
    if kind == Some(Accessor::Key) {
        return build_keyed(doc, groups, depth, prefix);
    }
    let mut entries = Vec::with_capacity(groups.len());
    for (seg, group) in groups {
        let below = doc.and_then(|d| d.child(&seg));
        let child = build(below, &group, depth + 1, &prefix.child(seg.clone()))?;
        let key = match seg {
            Segment::Field(f) | Segment::Key(f) => Key::Field(f),
            Segment::Index(i) | Segment::Sparse(i) => Key::Index(i),
        };
        entries.push((key, child));
    }
    let value = Value::Object(entries);
    Ok(match kind {
        Some(Accessor::Index) => Node {
            tag: Some(Tag::new("arraydiff")),
            value,
        },
        _ => Node::new(value),
    })
}

/// The `!key(field) [...]` patch for the keyed children of `prefix`: one
/// item per key, each the merged patch of its group with the element's key
/// field added (as [`super::patch_at`] does for one participant).
fn build_keyed(
    doc: Option<&Node>,
    groups: Vec<(Segment, Vec<(&KPath, &Node)>)>,
    depth: usize,
    prefix: &KPath,
) -> Result<Node, PatchError> {
    let keyed_error = |seg: &Segment, reason: String| PatchError::KeyedPath {
        path: prefix.child(seg.clone()),
        reason,
    };
    let Some((list, field)) = doc.and_then(|d| Some((d, d.key_field()?))) else {
        let seg = groups
            .first()
            .map_or(Segment::Key(String::new()), |g| g.0.clone());
        return Err(keyed_error(
            &seg,
            "the node here is not a keyed list (an array tagged !key(field))".into(),
        ));
    };
    let mut items = Vec::with_capacity(groups.len());
    for (seg, group) in groups {
        let Segment::Key(k) = &seg else {
            return Err(PatchError::MixedAccessors {
                parent: prefix.clone(),
            });
        };
        let elem = match (&list.value, list.keyed_position(k)) {
            (Value::Array(items), Some(i)) => items.get(i),
            _ => None,
        };
        let Some((elem, key_value)) = elem.and_then(|e| Some((e, e.field(field)?))) else {
            return Err(keyed_error(&seg, format!("no element has {field} = {k:?}")));
        };
        let item = build(Some(elem), &group, depth + 1, &prefix.child(seg.clone()))?;
        let item =
            super::at::keyed_item(item, field, key_value).map_err(|r| keyed_error(&seg, r))?;
        items.push(item);
    }
    Ok(Node {
        tag: Some(Tag::new(format!("key({field})"))),
        value: Value::Array(items),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn seg() -> impl Strategy<Value = Segment> {
        prop_oneof![
            "[a-c]{1,2}".prop_map(Segment::Field),
            (0u32..4).prop_map(Segment::Index),
            (0u32..4).prop_map(Segment::Sparse),
        ]
    }

    proptest! {
        /// The one-participant shortcut builds exactly what the general
        /// grouping builds.
        #[test]
        fn mounting_one_part_equals_building_it(
            segs in proptest::collection::vec(seg(), 0..5),
            n in any::<i64>(),
        ) {
            let path = KPath::from_segments(segs);
            let data = Node::int(n);
            let general = build(None, &[(&path, &data)], 0, &KPath::root());
            prop_assert_eq!(Ok(mount(&path, &data)), general);
        }
    }
}
