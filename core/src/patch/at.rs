//! A patch at a path: [`patch_at`] builds the root patch that applies a
//! participant's data at its path in a given document, [`apply_at`] applies
//! it.
//!
//! It owns the meaning of keyed path segments in patches: `users(jane)`
//! names the element of the keyed list `users` (an array tagged
//! `!key(field)`) whose `field` reads as `jane`, so the data at
//! `users(jane).email` becomes `{users: !key(field) [{field: jane, email:
//! data}]}`, a patch by identity, not by position. Fields, `[i]` and `{i}`
//! mount as in [`super::merge`]. It never panics; recursion depth is the
//! path length.

use super::PatchError;
use crate::kpath::{KPath, Segment};
use crate::node::{Key, Node, Tag, Value};

/// The root patch that applies `data` at `path` of `doc`. Keyed segments
/// are looked up in `doc` ([`Node::keyed_position`]); a path without them
/// gives what [`super::merge`] gives for one participant.
///
/// Errors ([`PatchError::KeyedPath`]): a keyed segment over a node that is
/// not a keyed list, with no element of that key, or whose element data is
/// neither an object patch nor a `!delete` (or would change the key).
pub fn patch_at(doc: Option<&Node>, path: &KPath, data: &Node) -> Result<Node, PatchError> {
    mount(doc, path.segments(), 0, data)
}

/// `apply(doc, patch_at(doc, path, data))`.
pub fn apply_at(doc: Option<&Node>, path: &KPath, data: &Node) -> Result<Option<Node>, PatchError> {
    let root = patch_at(doc, path, data)?;
    super::apply(doc, &root)
}

fn keyed_error(segs: &[Segment], depth: usize, reason: impl Into<String>) -> PatchError {
    PatchError::KeyedPath {
        path: KPath::from_segments(segs[..=depth].to_vec()),
        reason: reason.into(),
    }
}

fn mount(
    doc: Option<&Node>,
    segs: &[Segment],
    depth: usize,
    data: &Node,
) -> Result<Node, PatchError> {
    let Some(seg) = segs.get(depth) else {
        return Ok(data.clone());
    };
    let below = doc.and_then(|d| d.child(seg));
    Ok(match seg {
        Segment::Field(f) => Node::new(Value::Object(vec![(
            Key::Field(f.clone()),
            mount(below, segs, depth + 1, data)?,
        )])),
        Segment::Sparse(i) => Node::new(Value::Object(vec![(
            Key::Index(*i),
            mount(below, segs, depth + 1, data)?,
        )])),
        Segment::Index(i) => Node {
            tag: Some(Tag::new("arraydiff")),
            value: Value::Object(vec![(Key::Index(*i), mount(below, segs, depth + 1, data)?)]),
        },
        Segment::Key(k) => {
            let Some(list) = doc else {
                return Err(keyed_error(
                    segs,
                    depth,
                    "there is no keyed list here (absent)",
                ));
            };
            let Some(field) = list.key_field() else {
                return Err(keyed_error(
                    segs,
                    depth,
                    "the node here is not a keyed list (an array tagged !key(field))",
                ));
            };
            let Some(elem) = list.keyed_position(k).and_then(|i| match &list.value {
                Value::Array(items) => items.get(i),
                _ => None,
            }) else {
                return Err(keyed_error(
                    segs,
                    depth,
                    format!("no element has {field} = {k:?}"),
                ));
            };
            let Some(key_value) = elem.field(field) else {
                return Err(keyed_error(segs, depth, "the element has no key field"));
            };
            let item = mount(Some(elem), segs, depth + 1, data)?;
            let item =
                keyed_item(item, field, key_value).map_err(|r| keyed_error(segs, depth, r))?;
            Node {
                tag: Some(Tag::new(format!("key({field})"))),
                value: Value::Array(vec![item]),
            }
        }
    })
}

/// The item of a `!key(field)` patch that applies `item` to the element
/// whose key is `key_value`: an object patch gets the key field (it may not
/// change it), a `!delete` gets `{field: key}` to name its victim; anything
/// else is refused (the reason is returned).
pub(crate) fn keyed_item(mut item: Node, field: &str, key_value: &Node) -> Result<Node, String> {
    match &mut item.value {
        Value::Object(kv) => match kv
            .iter()
            .find(|(k, _)| matches!(k, Key::Field(f) if f == field))
        {
            Some((_, v)) if v.value != key_value.value => {
                return Err(format!("the data would change the key field {field}"));
            }
            Some(_) => {}
            None => kv.insert(0, (Key::Field(field.to_owned()), key_value.clone())),
        },
        // `!delete` (the whole element): the key names the victim.
        Value::Null
            if item
                .tag
                .as_ref()
                .is_some_and(|t| t.split_first().0.name == "delete") =>
        {
            item.value = Value::Object(vec![(Key::Field(field.to_owned()), key_value.clone())]);
        }
        _ => {
            return Err(
                "the data for a keyed list element must be an object patch or !delete".into(),
            );
        }
    }
    Ok(item)
}
