//! `apply` / `apply_owned`: object, array and scalar merge rules and every
//! patch op of `docs/TONY.md`.
//!
//! Owns the patch side of op tags. Never clones a document part the patch
//! does not replace, never recurses deeper than the patch, never panics.

use std::collections::HashMap;

use super::{
    MAX_DEPTH, PatchError, REFUSED_OPS, View, brief, index_segment, is_patch_op, key_segment,
    no_rest, split_op,
};
use crate::kpath::{KPath, Segment};
use crate::node::{Key, Node, Tag, TagHead, Value};

/// Applies `patch` to `doc` (`None` = absent); `Ok(None)` means the result is
/// absent (deleted). Clones `doc` once; see [`apply_owned`] to avoid that.
pub fn apply(doc: Option<&Node>, patch: &Node) -> Result<Option<Node>, PatchError> {
    if ignores_doc(patch) {
        return apply_owned(None, patch);
    }
    apply_owned(doc.cloned(), patch)
}

/// Whether the result of `patch` cannot depend on the document (a scalar or
/// `null` patch, `!delete`), so [`apply`] need not clone it.
fn ignores_doc(patch: &Node) -> bool {
    match split_op(patch.tag.as_ref(), is_patch_op) {
        Some((head, _)) => head.name == "delete",
        None => !matches!(patch.value, Value::Object(_) | Value::Array(_)),
    }
}

/// Applies `patch` to `doc`, consuming it: untouched parts of the document
/// are moved into the result, never deep-cloned. `Ok(None)` = absent.
pub fn apply_owned(doc: Option<Node>, patch: &Node) -> Result<Option<Node>, PatchError> {
    apply_view(doc, View::of(patch), 0).map_err(|e| *e)
}

type Res = Result<Option<Node>, PatchError>;

/// The result type of the per-level recursion (`apply_view` and the plain
/// object/array merges): the error is boxed so every frame on the recursion
/// path carries an 8-byte error instead of a ~100-byte one. The depth a
/// thread stack allows depends directly on these frame sizes.
type Hot = Result<Option<Node>, Box<PatchError>>;

/// Adds a path segment to a boxed error while it unwinds.
fn at_box(mut e: Box<PatchError>, seg: Segment) -> Box<PatchError> {
    e.prepend(seg);
    e
}

pub(crate) fn apply_view(doc: Option<Node>, p: View<'_>, depth: usize) -> Hot {
    // Kept small: this frame is on the stack once per level of the patch.
    if depth > MAX_DEPTH {
        return Err(too_deep());
    }
    if p.tag.is_some_and(|t| is_patch_op(t.first_name())) {
        return apply_op_view(doc, p, depth);
    }
    match p.value {
        Value::Object(pkv) => apply_object(doc, p.tag, pkv, depth),
        Value::Array(pitems) => apply_array(doc, p.tag, pitems, depth),
        _ => Ok(Some(p.to_node())),
    }
}

#[cold]
fn too_deep() -> Box<PatchError> {
    Box::new(PatchError::TooDeep {
        limit: MAX_DEPTH,
        at: KPath::root(),
    })
}

fn apply_op_view(doc: Option<Node>, p: View<'_>, depth: usize) -> Hot {
    match split_op(p.tag, is_patch_op) {
        Some((head, rest)) => Ok(apply_op(doc, &head, rest.as_ref(), p.value, depth)?),
        None => Err(Box::new(PatchError::bad("?", "not an op"))),
    }
}

fn apply_object(doc: Option<Node>, tag: Option<&Tag>, pkv: &[(Key, Node)], depth: usize) -> Hot {
    let (doc_tag, entries) = match doc.map(Node::into_parts) {
        Some((tag, Value::Object(kv))) => (tag, kv),
        _ => (None, Vec::new()),
    };
    Ok(Some(Node {
        tag: tag.cloned().or(doc_tag),
        value: Value::Object(merge_object(entries, pkv, depth)?),
    }))
}

fn apply_array(doc: Option<Node>, tag: Option<&Tag>, pitems: &[Node], depth: usize) -> Hot {
    let (doc_tag, items) = match doc.map(Node::into_parts) {
        Some((tag, Value::Array(items))) => (tag, items),
        _ => (None, Vec::new()),
    };
    let mut out = Vec::with_capacity(pitems.len());
    let mut doc_items = items.into_iter();
    for (i, pe) in pitems.iter().enumerate() {
        let r = apply_view(doc_items.next(), View::of(pe), depth + 1)
            .map_err(|e| at_box(e, index_segment(i)))?;
        out.extend(r);
    }
    Ok(Some(Node {
        tag: tag.cloned().or(doc_tag),
        value: Value::Array(out),
    }))
}

/// Merges an object patch into the document's entries (see the module docs of
/// `patch` for key order). Uses a hash index when linear lookups could add up.
///
/// Entries are patched in place; removals are marked and swept once at the
/// end, so a one-key patch costs one scan and no reallocation. The loop keeps
/// one recursive call site and does its bookkeeping in helpers, so this frame
/// (on the stack once per patch level) stays small.
fn merge_object(
    entries: Vec<(Key, Node)>,
    pkv: &[(Key, Node)],
    depth: usize,
) -> Result<Vec<(Key, Node)>, Box<PatchError>> {
    let mut slots = Slots::new(entries, pkv.len());
    for (k, pv) in pkv {
        let (pos, doc) = slots.take(k);
        let r = apply_view(doc, View::of(pv), depth + 1);
        slots.store(pos, k, r)?;
    }
    Ok(slots.finish())
}

/// The document entries of an object merge, with an optional hash index and
/// removal marks.
struct Slots {
    entries: Vec<(Key, Node)>,
    index: Option<HashMap<Key, usize>>,
    removed: Vec<bool>,
}

impl Slots {
    fn new(entries: Vec<(Key, Node)>, patch_len: usize) -> Slots {
        let index = (patch_len > 8 && entries.len() + patch_len > 32).then(|| {
            let mut m = HashMap::with_capacity(entries.len() + patch_len);
            for (i, (k, _)) in entries.iter().enumerate() {
                m.entry(k.clone()).or_insert(i);
            }
            m
        });
        Slots {
            entries,
            index,
            removed: Vec::new(),
        }
    }

    fn is_removed(&self, i: usize) -> bool {
        self.removed.get(i).copied().unwrap_or(false)
    }

    /// The position of `k` (first occurrence) and its live value, taken out.
    fn take(&mut self, k: &Key) -> (Option<usize>, Option<Node>) {
        let pos = match &self.index {
            Some(m) => m.get(k).copied(),
            None => self.entries.iter().position(|(dk, _)| dk == k),
        };
        let doc = match pos {
            Some(i) if !self.is_removed(i) => self
                .entries
                .get_mut(i)
                .map(|e| std::mem::replace(&mut e.1, Node::null())),
            _ => None,
        };
        (pos, doc)
    }

    /// Puts the result for `k` back (or marks it removed, or appends it).
    fn store(
        &mut self,
        pos: Option<usize>,
        k: &Key,
        r: Result<Option<Node>, Box<PatchError>>,
    ) -> Result<(), Box<PatchError>> {
        let r = r.map_err(|e| at_box(e, key_segment(k)))?;
        match (pos, r) {
            (Some(i), Some(n)) => {
                if let Some(e) = self.entries.get_mut(i) {
                    e.1 = n;
                }
                if let Some(m) = self.removed.get_mut(i) {
                    *m = false;
                }
            }
            (Some(i), None) => {
                if self.removed.len() <= i {
                    self.removed.resize(self.entries.len(), false);
                }
                if let Some(m) = self.removed.get_mut(i) {
                    *m = true;
                }
            }
            (None, Some(n)) => {
                if let Some(m) = &mut self.index {
                    m.insert(k.clone(), self.entries.len());
                }
                self.entries.push((k.clone(), n));
            }
            (None, None) => {}
        }
        Ok(())
    }

    fn finish(self) -> Vec<(Key, Node)> {
        let Slots {
            mut entries,
            removed,
            ..
        } = self;
        if removed.contains(&true) {
            let mut i = 0;
            entries.retain(|_| {
                let keep = !removed.get(i).copied().unwrap_or(false);
                i += 1;
                keep
            });
        }
        entries
    }
}

fn apply_op(
    doc: Option<Node>,
    head: &TagHead<'_>,
    rest: Option<&Tag>,
    value: &Value,
    depth: usize,
) -> Res {
    let child = View { tag: rest, value };
    match head.name {
        "delete" => Ok(None),
        // go-tony keeps the node's tag: `!t x` becomes `!t null`.
        "nullify" => Ok(Some(Node::null().with_tag(doc.and_then(|d| d.tag.clone())))),
        "pass" => Ok(doc),
        "insert" => {
            let tag = opt_arg("insert", head)?;
            let r = apply_view(doc, child, depth + 1).map_err(|e| *e)?;
            Ok(r.map(|n| with_tag_arg(n, tag)))
        }
        "replace" => {
            no_rest("replace", rest)?;
            let tag = opt_arg("replace", head)?;
            let (from, to) = replace_body("replace", value)?;
            match &doc {
                Some(d) if same(d, tag.as_ref(), from) => Ok(Some(with_tag_arg(to.clone(), tag))),
                _ => Err(replace_mismatch("replace", from, tag, doc.as_ref())),
            }
        }
        "arraydiff" => {
            no_rest("arraydiff", rest)?;
            arraydiff(doc, value, depth)
        }
        "strdiff" => {
            no_rest("strdiff", rest)?;
            strdiff(doc, head, value)
        }
        "key" => {
            no_rest("key", rest)?;
            keyed(doc, head, value, depth)
        }
        "all" => all(doc, child, depth),
        "if" => {
            no_rest("if", rest)?;
            let body = View { tag: None, value };
            let Some(cond) = body.field("if") else {
                return Err(PatchError::bad("if", "the value needs an `if` pattern"));
            };
            let branch = if super::matches::matches_at(doc.as_ref(), cond, depth + 1)? {
                body.field("then")
            } else {
                body.field("else")
            };
            match branch {
                Some(b) => apply_view(doc, View::of(b), depth + 1).map_err(|e| *e),
                None => Ok(doc),
            }
        }
        "field" => {
            let [from, to] = two_args("field", head)?;
            let (tag, mut kv) = object_doc("field", doc)?;
            let sparse = is_sparse(&kv);
            let from_key = key_for(from, sparse);
            let to_key = key_for(to, sparse);
            if from_key != to_key
                && let Some(i) = kv.iter().position(|(k, _)| *k == from_key)
            {
                let mut i = i;
                if let Some(j) = kv.iter().position(|(k, _)| *k == to_key) {
                    kv.remove(j);
                    if j < i {
                        i -= 1;
                    }
                }
                if let Some(entry) = kv.get_mut(i) {
                    entry.0 = to_key;
                }
            }
            then_child(
                Node {
                    tag,
                    value: Value::Object(kv),
                },
                child,
                depth,
            )
        }
        "rename" => {
            no_rest("rename", rest)?;
            rename(doc, value)
        }
        "addtag" => {
            let t = one_arg("addtag", head)?;
            let Some(d) = doc else {
                return Err(PatchError::mismatch("addtag", "a node", None));
            };
            Ok(then_child(d, child, depth)?.map(|mut n| {
                n.tag = Some(Tag::new(t));
                n
            }))
        }
        "rmtag" => {
            let t = one_arg("rmtag", head)?;
            let Some(d) = doc else {
                return Err(PatchError::mismatch("rmtag", "a node", None));
            };
            let t = Tag::new(t);
            Ok(then_child(d, child, depth)?.map(|mut n| {
                if n.tag.as_ref() == Some(&t) {
                    n.tag = None;
                }
                n
            }))
        }
        "retag" => {
            let [a, b] = two_args("retag", head)?;
            let Some(d) = doc else {
                return Err(PatchError::mismatch("retag", "a node", None));
            };
            let (a, b) = (Tag::new(a), Tag::new(b));
            match then_child(d, child, depth)? {
                Some(mut n) => {
                    if n.tag.as_ref() != Some(&a) {
                        return Err(PatchError::TagMismatch {
                            expected: a.as_str().to_owned(),
                            found: n
                                .tag
                                .as_ref()
                                .map_or_else(|| "no tag".to_owned(), Tag::to_string),
                            at: KPath::root(),
                        });
                    }
                    n.tag = Some(b);
                    Ok(Some(n))
                }
                None => Ok(None),
            }
        }
        name if REFUSED_OPS.contains(&name) => Err(PatchError::Refused {
            op: name.to_owned(),
            at: KPath::root(),
        }),
        // `is_patch_op` admitted it, so this is unreachable in practice; treat
        // it as an unknown op rather than panic.
        other => Err(PatchError::bad(other, "unknown op")),
    }
}

/// Applies the child of a chain op: an untagged `null` child changes nothing.
fn then_child(node: Node, child: View<'_>, depth: usize) -> Res {
    if child.is_plain_null() {
        Ok(Some(node))
    } else {
        apply_view(Some(node), child, depth + 1).map_err(|e| *e)
    }
}

/// The optional single tag argument of `!insert(t)`, `!delete(t)`, `!replace(t)`.
fn opt_arg(op: &str, head: &TagHead<'_>) -> Result<Option<Tag>, PatchError> {
    match head.args.as_slice() {
        [] => Ok(None),
        [t] if !t.is_empty() => Ok(Some(Tag::new(*t))),
        _ => Err(PatchError::bad(op, "takes at most one tag argument")),
    }
}

fn one_arg<'a>(op: &str, head: &TagHead<'a>) -> Result<&'a str, PatchError> {
    match head.args.as_slice() {
        [t] if !t.is_empty() => Ok(t),
        _ => Err(PatchError::bad(op, "takes exactly one argument")),
    }
}

fn two_args<'a>(op: &str, head: &TagHead<'a>) -> Result<[&'a str; 2], PatchError> {
    match head.args.as_slice() {
        [a, b] if !a.is_empty() && !b.is_empty() => Ok([a, b]),
        _ => Err(PatchError::bad(op, "takes exactly two arguments")),
    }
}

fn with_tag_arg(mut n: Node, tag: Option<Tag>) -> Node {
    if let Some(t) = tag {
        n.tag = Some(t);
    }
    n
}

/// Whether `doc` equals `want`, with `want`'s tag replaced by `tag` when given.
fn same(doc: &Node, tag: Option<&Tag>, want: &Node) -> bool {
    match tag {
        Some(t) => doc.tag.as_ref() == Some(t) && doc.value == want.value,
        None => doc == want,
    }
}

fn replace_mismatch(op: &str, want: &Node, tag: Option<Tag>, found: Option<&Node>) -> PatchError {
    let expected = match tag {
        Some(t) => brief(Some(&Node {
            tag: Some(t),
            value: want.value.clone(),
        })),
        None => brief(Some(want)),
    };
    PatchError::ReplaceMismatch {
        op: op.to_owned(),
        expected,
        found: brief(found),
        at: KPath::root(),
    }
}

fn replace_body<'a>(op: &str, value: &'a Value) -> Result<(&'a Node, &'a Node), PatchError> {
    let body = View { tag: None, value };
    match (body.field("from"), body.field("to")) {
        (Some(f), Some(t)) => Ok((f, t)),
        _ => Err(PatchError::bad(op, "the value must be {from: .., to: ..}")),
    }
}

/// A document object taken apart: its tag and entries.
type ObjectParts = (Option<Tag>, Vec<(Key, Node)>);

fn object_doc(op: &str, doc: Option<Node>) -> Result<ObjectParts, PatchError> {
    match doc.map(Node::into_parts) {
        Some((tag, Value::Object(kv))) => Ok((tag, kv)),
        other => Err(PatchError::mismatch(
            op,
            "an object",
            other.map(|(tag, value)| Node { tag, value }).as_ref(),
        )),
    }
}

fn is_sparse(kv: &[(Key, Node)]) -> bool {
    !kv.is_empty() && kv.iter().all(|(k, _)| matches!(k, Key::Index(_)))
}

/// The key a `!field`/`!rename` argument names: an int key on a sparse array
/// when it is a decimal number, else a field.
fn key_for(name: &str, sparse: bool) -> Key {
    if sparse
        && !name.is_empty()
        && name.bytes().all(|b| b.is_ascii_digit())
        && let Ok(i) = name.parse::<u32>()
    {
        return Key::Index(i);
    }
    Key::Field(name.to_owned())
}

fn rename(doc: Option<Node>, value: &Value) -> Res {
    let Value::Array(pairs) = value else {
        return Err(PatchError::bad(
            "rename",
            "the value must be a list of {from, to}",
        ));
    };
    let (tag, mut kv) = object_doc("rename", doc)?;
    let sparse = is_sparse(&kv);
    for (i, pair) in pairs.iter().enumerate() {
        let view = View::of(pair);
        let key_of = |n: Option<&Node>| -> Option<Key> {
            match n.map(|n| &n.value) {
                Some(Value::String(s)) => Some(key_for(s, sparse)),
                Some(Value::Int(i)) => u32::try_from(*i).ok().map(Key::Index),
                _ => None,
            }
        };
        let (Some(from), Some(to)) = (key_of(view.field("from")), key_of(view.field("to"))) else {
            return Err(PatchError::bad(
                "rename",
                format!("item {i} must be {{from: key, to: key}}"),
            ));
        };
        if from == to {
            continue;
        }
        if let Some(p) = kv.iter().position(|(k, _)| *k == from) {
            let (_, v) = kv.remove(p);
            match kv.iter_mut().find(|(k, _)| *k == to) {
                Some(slot) => slot.1 = v,
                None => kv.push((to, v)),
            }
        }
    }
    Ok(Some(Node {
        tag,
        value: Value::Object(kv),
    }))
}

fn all(doc: Option<Node>, child: View<'_>, depth: usize) -> Res {
    match doc.map(Node::into_parts) {
        None => Ok(None),
        Some((tag, Value::Array(items))) => {
            let mut out = Vec::with_capacity(items.len());
            for (i, it) in items.into_iter().enumerate() {
                out.extend(
                    apply_view(Some(it), child, depth + 1)
                        .map_err(|e| e.under(index_segment(i)))?,
                );
            }
            Ok(Some(Node {
                tag,
                value: Value::Array(out),
            }))
        }
        Some((tag, Value::Object(kv))) => {
            let mut out = Vec::with_capacity(kv.len());
            for (k, v) in kv {
                match apply_view(Some(v), child, depth + 1) {
                    Ok(Some(n)) => out.push((k, n)),
                    Ok(None) => {}
                    Err(e) => return Err(e.under(key_segment(&k))),
                }
            }
            Ok(Some(Node {
                tag,
                value: Value::Object(out),
            }))
        }
        Some((tag, value)) => {
            apply_view(Some(Node { tag, value }), child, depth + 1).map_err(|e| *e)
        }
    }
}

/// The entries of an `!arraydiff`/`!strdiff` body, in slot order.
fn diff_entries<'a>(op: &str, value: &'a Value) -> Result<Vec<(u32, &'a Node)>, PatchError> {
    let Value::Object(kv) = value else {
        return Err(PatchError::bad(
            op,
            "the value must be an int-keyed object {i: op}",
        ));
    };
    let mut out = Vec::with_capacity(kv.len());
    for (k, v) in kv {
        match k {
            Key::Index(i) => out.push((*i, v)),
            Key::Field(f) => {
                return Err(PatchError::bad(op, format!("key {f:?} is not an int slot")));
            }
        }
    }
    out.sort_by_key(|(i, _)| *i);
    if let Some(w) = out.windows(2).find(|w| w[0].0 == w[1].0) {
        return Err(PatchError::bad(
            op,
            format!("slot {} appears twice", w[0].0),
        ));
    }
    Ok(out)
}

/// The diff op of an `!arraydiff`/`!strdiff` entry (`delete`, `insert`,
/// `replace`), with its head and the rest of the chain.
fn diff_op(entry: &Node) -> Option<(TagHead<'_>, Option<Tag>)> {
    split_op(entry.tag.as_ref(), |n| {
        matches!(n, "delete" | "insert" | "replace")
    })
}

fn arraydiff(doc: Option<Node>, value: &Value, depth: usize) -> Res {
    let entries = diff_entries("arraydiff", value)?;
    let (tag, items) = match doc.map(Node::into_parts) {
        Some((tag, Value::Array(items))) => (tag, items),
        other => {
            return Err(PatchError::mismatch(
                "arraydiff",
                "an array",
                other.map(|(tag, value)| Node { tag, value }).as_ref(),
            ));
        }
    };
    let len = items.len();
    let mut src = items.into_iter();
    let mut d = 0usize; // doc cursor
    let mut s = 0u64; // slot
    let mut out = Vec::with_capacity(len + entries.len());
    let beyond = |slot: u32, what: &str| {
        PatchError::bad(
            "arraydiff",
            format!("slot {slot}: {what} (the array has {len} elements)"),
        )
    };
    for (slot, entry) in entries {
        while s < u64::from(slot) {
            let Some(n) = src.next() else {
                return Err(beyond(slot, "lies beyond the end of the array"));
            };
            out.push(n);
            d += 1;
            s += 1;
        }
        let at = index_segment(d);
        match diff_op(entry) {
            Some((head, rest)) if head.name == "insert" => {
                let t = opt_arg("insert", &head)?;
                let r = apply_view(
                    None,
                    View {
                        tag: rest.as_ref(),
                        value: &entry.value,
                    },
                    depth + 1,
                )
                .map_err(|e| e.under(at))?;
                out.extend(r.map(|n| with_tag_arg(n, t)));
            }
            Some((head, rest)) if head.name == "delete" => {
                let t = opt_arg("delete", &head)?;
                let Some(n) = src.next() else {
                    return Err(beyond(slot, "no element left to delete"));
                };
                // The rest of the chain is ignored, as for a top-level `!delete`.
                let _ = rest;
                let want = Node {
                    tag: t,
                    value: entry.value.clone(),
                };
                if n != want {
                    return Err(replace_mismatch("delete", &want, None, Some(&n)).under(at));
                }
                d += 1;
            }
            Some((head, rest)) => {
                // replace
                no_rest("replace", rest.as_ref())?;
                let t = opt_arg("replace", &head)?;
                let (from, to) = replace_body("replace", &entry.value)?;
                let Some(n) = src.next() else {
                    return Err(beyond(slot, "no element left to replace"));
                };
                if !same(&n, t.as_ref(), from) {
                    return Err(replace_mismatch("replace", from, t, Some(&n)).under(at));
                }
                out.push(with_tag_arg(to.clone(), t));
                d += 1;
            }
            None => {
                let Some(n) = src.next() else {
                    return Err(beyond(slot, "no element left to patch"));
                };
                out.extend(
                    apply_view(Some(n), View::of(entry), depth + 1).map_err(|e| e.under(at))?,
                );
                d += 1;
            }
        }
        s += 1;
    }
    out.extend(src);
    Ok(Some(Node {
        tag,
        value: Value::Array(out),
    }))
}

/// Byte ranges of the characters of `s` (the units of `!strdiff`).
fn units(s: &str) -> Vec<(usize, usize)> {
    s.char_indices()
        .map(|(i, c)| (i, i + c.len_utf8()))
        .collect()
}

fn unit_count(s: &str) -> usize {
    s.chars().count()
}

fn strdiff(doc: Option<Node>, head: &TagHead<'_>, value: &Value) -> Res {
    let lines = match head.args.as_slice() {
        [] | ["false"] => false,
        ["true"] => true,
        _ => {
            return Err(PatchError::bad(
                "strdiff",
                "the argument must be true (lines) or false (characters)",
            ));
        }
    };
    let entries = diff_entries("strdiff", value)?;
    let (tag, text) = match doc.map(Node::into_parts) {
        Some((tag, Value::String(s))) if lines => {
            let out = strdiff_lines(&s, &entries)?;
            return Ok(Some(Node {
                tag,
                value: Value::String(out),
            }));
        }
        Some((tag, Value::String(s))) => (tag, s),
        other => {
            return Err(PatchError::mismatch(
                "strdiff",
                "a string",
                other.map(|(tag, value)| Node { tag, value }).as_ref(),
            ));
        }
    };
    let doc_units = units(&text);
    let n_units = doc_units.len();
    // Bytes of doc units [a, b).
    let span = |a: usize, b: usize| -> Option<&str> {
        if a == b {
            return Some("");
        }
        let start = doc_units.get(a)?.0;
        let end = doc_units.get(b.checked_sub(1)?)?.1;
        text.get(start..end)
    };
    let bad = |slot: u32, what: &str| {
        PatchError::bad("strdiff", format!("slot {slot}: {what} ({n_units} units)"))
    };
    let string_of = |n: &Node, slot: u32| -> Result<String, PatchError> {
        match &n.value {
            Value::String(s) => Ok(s.clone()),
            _ => Err(bad(slot, "the value must be a string")),
        }
    };
    let mut out = String::with_capacity(text.len());
    let mut d = 0usize;
    let mut s = 0u64;
    for (slot, entry) in entries {
        if u64::from(slot) < s {
            return Err(bad(slot, "overlaps the text of an earlier entry"));
        }
        while s < u64::from(slot) {
            let Some(u) = span(d, d + 1).filter(|_| d < n_units) else {
                return Err(bad(slot, "lies beyond the end of the string"));
            };
            out.push_str(u);
            d += 1;
            s += 1;
        }
        let Some((head, rest)) = diff_op(entry) else {
            return Err(bad(slot, "entries must be !delete, !insert or !replace"));
        };
        if !head.args.is_empty() {
            return Err(bad(slot, "string ops take no arguments"));
        }
        match head.name {
            "insert" => {
                no_rest("insert", rest.as_ref())?;
                let ins = string_of(entry, slot)?;
                out.push_str(&ins);
                s += unit_count(&ins) as u64;
            }
            "delete" => {
                no_rest("delete", rest.as_ref())?;
                let del = string_of(entry, slot)?;
                let n = unit_count(&del);
                let Some(have) = span(d, d + n).filter(|_| d + n <= n_units) else {
                    return Err(bad(slot, "deletes past the end of the string"));
                };
                if have != del {
                    return Err(PatchError::ReplaceMismatch {
                        op: "delete".to_owned(),
                        expected: format!("{del:?}"),
                        found: format!("{have:?}"),
                        at: KPath::root(),
                    });
                }
                d += n;
                s += 1;
            }
            _ => {
                no_rest("replace", rest.as_ref())?;
                let (from, to) = replace_body("replace", &entry.value)?;
                let (from, to) = (string_of(from, slot)?, string_of(to, slot)?);
                let n = unit_count(&from);
                let Some(have) = span(d, d + n).filter(|_| d + n <= n_units) else {
                    return Err(bad(slot, "replaces past the end of the string"));
                };
                if have != from {
                    return Err(PatchError::ReplaceMismatch {
                        op: "replace".to_owned(),
                        expected: format!("{from:?}"),
                        found: format!("{have:?}"),
                        at: KPath::root(),
                    });
                }
                out.push_str(&to);
                d += n;
                s += unit_count(&to) as u64;
            }
        }
    }
    if let Some(rest) = span(d, n_units).filter(|_| d <= n_units) {
        out.push_str(rest);
    }
    Ok(Some(Node {
        tag,
        value: Value::String(out),
    }))
}

/// `!strdiff(true)`: the walk over lines, a line being the text between
/// newlines without its `\n` (so `"a\nb\n"` is `a`, `b` and an empty last
/// line). Every op string is one line: `!delete l` removes the line `l`,
/// `!insert s` adds the line `s`, `!replace {from, to}` swaps one line; the
/// lines are joined back with `\n`.
fn strdiff_lines(text: &str, entries: &[(u32, &Node)]) -> Result<String, PatchError> {
    let doc: Vec<&str> = text.split('\n').collect();
    let n_units = doc.len();
    let bad = |slot: u32, what: &str| {
        PatchError::bad("strdiff", format!("slot {slot}: {what} ({n_units} lines)"))
    };
    let string_of = |n: &Node, slot: u32| -> Result<String, PatchError> {
        match &n.value {
            Value::String(s) => Ok(s.clone()),
            _ => Err(bad(slot, "the value must be a string")),
        }
    };
    let mismatch = |op: &str, want: &str, have: &str| PatchError::ReplaceMismatch {
        op: op.to_owned(),
        expected: format!("{want:?}"),
        found: format!("{have:?}"),
        at: KPath::root(),
    };
    let mut out: Vec<String> = Vec::with_capacity(doc.len() + entries.len());
    let (mut d, mut s) = (0usize, 0u64);
    for &(slot, entry) in entries {
        if u64::from(slot) < s {
            return Err(bad(slot, "overlaps an earlier entry"));
        }
        while s < u64::from(slot) {
            let Some(line) = doc.get(d) else {
                return Err(bad(slot, "lies beyond the end of the string"));
            };
            out.push((*line).to_owned());
            d += 1;
            s += 1;
        }
        let Some((head, rest)) = diff_op(entry) else {
            return Err(bad(slot, "entries must be !delete, !insert or !replace"));
        };
        if !head.args.is_empty() {
            return Err(bad(slot, "string ops take no arguments"));
        }
        match head.name {
            "insert" => {
                no_rest("insert", rest.as_ref())?;
                out.push(string_of(entry, slot)?);
            }
            "delete" => {
                no_rest("delete", rest.as_ref())?;
                let del = string_of(entry, slot)?;
                let Some(have) = doc.get(d) else {
                    return Err(bad(slot, "deletes past the end of the string"));
                };
                if *have != del {
                    return Err(mismatch("delete", &del, have));
                }
                d += 1;
            }
            _ => {
                no_rest("replace", rest.as_ref())?;
                let (from, to) = replace_body("replace", &entry.value)?;
                let (from, to) = (string_of(from, slot)?, string_of(to, slot)?);
                let Some(have) = doc.get(d) else {
                    return Err(bad(slot, "replaces past the end of the string"));
                };
                if *have != from {
                    return Err(mismatch("replace", &from, have));
                }
                out.push(to);
                d += 1;
            }
        }
        s += 1;
    }
    out.extend(doc.iter().skip(d).map(|l| (*l).to_owned()));
    Ok(out.join("\n"))
}

/// A hashable identity for scalar `!key` values (tags ignored).
#[derive(PartialEq, Eq, Hash)]
enum ScalarKey {
    Null,
    Bool(bool),
    Int(i64),
    Float(u64),
    Str(String),
}

fn scalar_key(v: &Value) -> Option<ScalarKey> {
    Some(match v {
        Value::Null => ScalarKey::Null,
        Value::Bool(b) => ScalarKey::Bool(*b),
        Value::Int(i) => ScalarKey::Int(*i),
        // NaN equals nothing, so it gets no identity; -0.0 == 0.0.
        Value::Float(f) if f.is_nan() => return None,
        Value::Float(f) if *f == 0.0 => ScalarKey::Float(0),
        Value::Float(f) => ScalarKey::Float(f.to_bits()),
        Value::String(s) => ScalarKey::Str(s.clone()),
        Value::Array(_) | Value::Object(_) => return None,
    })
}

fn keyed(doc: Option<Node>, head: &TagHead<'_>, value: &Value, depth: usize) -> Res {
    let field = one_arg("key", head)?;
    let Value::Array(pitems) = value else {
        return Err(PatchError::bad(
            "key",
            "the value must be an array of items",
        ));
    };
    let (tag, items) = match doc.map(Node::into_parts) {
        None => (None, Vec::new()),
        Some((tag, Value::Array(items))) => (tag, items),
        Some((tag, value)) => {
            return Err(PatchError::mismatch(
                "key",
                "an array of objects",
                Some(&Node { tag, value }),
            ));
        }
    };
    let mut slots: Vec<Option<Node>> = Vec::with_capacity(items.len() + pitems.len());
    let mut map: HashMap<ScalarKey, usize> = HashMap::new();
    let mut compound: Vec<usize> = Vec::new();
    for (i, it) in items.into_iter().enumerate() {
        if !matches!(it.value, Value::Object(_)) {
            return Err(
                PatchError::mismatch("key", "an array of objects", Some(&it))
                    .under(index_segment(i)),
            );
        }
        if let Some(k) = it.field(field) {
            match scalar_key(&k.value) {
                Some(sk) => {
                    map.entry(sk).or_insert(i);
                }
                None => compound.push(i),
            }
        }
        slots.push(Some(it));
    }
    for (j, pi) in pitems.iter().enumerate() {
        let Some(kn) = View::of(pi).field(field) else {
            return Err(PatchError::bad(
                "key",
                format!("patch item {j} has no field {field:?}"),
            ));
        };
        let sk = scalar_key(&kn.value);
        let found = match &sk {
            Some(sk) => map.get(sk).copied(),
            None => compound.iter().copied().find(|&i| {
                slots
                    .get(i)
                    .and_then(Option::as_ref)
                    .and_then(|n| n.field(field))
                    .is_some_and(|k| k.value == kn.value)
            }),
        };
        let live = found.filter(|&i| slots.get(i).is_some_and(Option::is_some));
        match live.and_then(|i| slots.get_mut(i).map(|s| (i, s))) {
            Some((i, slot)) => {
                let r = apply_view(slot.take(), View::of(pi), depth + 1)
                    .map_err(|e| e.under(index_segment(i)))?;
                *slot = r;
            }
            None => {
                let r = apply_view(None, View::of(pi), depth + 1)
                    .map_err(|e| e.under(index_segment(slots.len())))?;
                if let Some(n) = r {
                    let i = slots.len();
                    match sk {
                        Some(sk) => {
                            map.insert(sk, i);
                        }
                        None => compound.push(i),
                    }
                    slots.push(Some(n));
                }
            }
        }
    }
    Ok(Some(Node {
        tag,
        value: Value::Array(slots.into_iter().flatten().collect()),
    }))
}
