//! The patch engine: [`apply`] / [`apply_owned`], [`matches()`], [`trim`] and
//! [`merge`], exactly as `docs/TONY.md` ("Patch", "Match", "Merge of participant
//! patches") describes them.
//!
//! This module owns the meaning of op tags. It never parses or prints Tony
//! text, never touches files, never runs a program or evaluates code (`!pipe`,
//! `!embed`, `!quote`, `!unquote`, `!json-patch`, `!let`, `!dive` and `!eval`
//! are refused with [`PatchError::Refused`]), and never panics on any input.
//!
//! | submodule | owns |
//! |---|---|
//! | `apply` | `apply`, `apply_owned`: merge rules and every patch op |
//! | `matches` | `matches`: subset matching and the match ops |
//! | `glob` | the shell glob of `!glob` (no regex, no exponential blowup) |
//! | `trim` | `trim` |
//! | `merge` | `merge`: participant patches into one root patch |
//! | `at` | `patch_at`, `apply_at`: a patch at a path, keyed segments resolved against the document |
//!
//! # Recursion and cost
//!
//! `apply` recurses along the *patch* (untouched parts of the document are
//! moved, never walked), so its stack depth is bounded by the depth of the
//! patch. `matches` and `trim` recurse along the pattern; `!subtree` walks the
//! document with an explicit stack. `merge` recurses along the participants'
//! paths. `apply` and `matches` stop with [`PatchError::TooDeep`] past
//! [`MAX_DEPTH`] levels (see there for measured frame sizes); `trim` keeps
//! the document node whole past it. The per-level recursion of `apply` boxes
//! its error internally to keep frames small.
//! Comparing, cloning and dropping nodes (`!replace`, `!delete v`) recurse
//! along the document, as `Node`'s derives do. Object merges switch to a hash index when both sides are large, and
//! `!key(field)` lists look items up through a hash map on scalar keys, so a
//! 10,000-key patch over a 10,000-key document is linear, not quadratic.
//! [`apply_owned`] consumes the document and never deep-clones a part the
//! patch does not replace; [`apply`] clones the document once and then does
//! the same.
//!
//! # Decisions where `docs/TONY.md` is silent
//!
//! Patch:
//! - An *untagged* object or array patch keeps the document's tag when the
//!   document has the same kind; a patch carrying a data tag sets it. A scalar
//!   or `null` patch replaces the node, tag included (untagged → untagged).
//! - Array patches: elements past the document's length (and every element
//!   when the document is not an array) are `apply(absent, p)`: plain data is
//!   appended as it is, a `!delete` element is dropped, nested ops run.
//! - A key that appears twice in an object patch is applied twice, in order.
//! - `!nullify` keeps the node's tag (`!t 1` becomes `!t null`), as go-tony
//!   does; an absent node becomes an untagged `null`.
//! - The rest of a tag chain after an op that takes its value as an argument
//!   (`!replace`, `!arraydiff`, `!strdiff`, `!key`, `!if`, `!rename`, and the
//!   match ops `!and`, `!or`, `!glob`, `!irtype`, `!has-path`, `!key`) is an
//!   error ([`PatchError::BadArgument`]); after `!delete`, `!nullify` and
//!   `!pass` it is ignored (the value is ignored too, except as the value an
//!   `!arraydiff` `!delete` entry compares).
//! - Keys of a sparse document and field keys of a patch (or the other way
//!   round) merge like any keys; the result then mixes them (text cannot
//!   print that; it is the caller's patch that asked for it).
//! - `!field`, `!addtag`, `!rmtag`, `!retag` with an untagged `null` child
//!   (the last op of a chain, as in `!addtag(j) null`) change nothing else; any
//!   other child is applied as a patch. `!field` renames first and then applies
//!   the child; the tag ops apply the child first and then change the tag.
//!   They need a present node (object for `!field`/`!rename`), else
//!   [`PatchError::TypeMismatch`].
//! - `!field(from,to)`/`!rename` when `to` already exists: the moved value
//!   overwrites it (like `rename(2)`); `!field` keeps the position of `from`,
//!   `!rename` keeps the position of `to` (or appends). A missing `from` is a
//!   no-op. On a sparse array an argument that is a decimal number names an
//!   int key.
//! - `!rmtag(t)` removes the tag only when it is exactly `!t`; otherwise the
//!   node is unchanged (not an error). `!retag(a,b)` errors unless the tag is
//!   exactly `!a`.
//! - `!replace {from, to}` needs both keys. The document (absent counts as
//!   different from everything) must equal `from`, tags included.
//! - `!arraydiff` / `!strdiff` bodies are int-keyed objects (`{}` is allowed);
//!   entries are taken in slot order. An entry whose slot lies beyond the end
//!   of the document, a `!delete`/`!replace`/patch entry with no document
//!   element left, and (for `!strdiff`) an entry whose slot was already passed
//!   by a longer insert/replace are [`PatchError::BadArgument`]. The document's
//!   tag is kept. `!replace(t)` puts `!t` on both the compared `from` and the
//!   emitted `to`. An `!insert` entry emits `apply(absent, v)`.
//! - `!strdiff` counts Unicode scalar values; with `!strdiff(true)` a unit is a
//!   line without its `\n` (as in go-tony: the text is split at every `\n`,
//!   so `"a\n"` is the lines `a` and `""`), every op string is one line, and
//!   the result is the lines joined with `\n`. Its argument must be `true` or `false`
//!   (none = `false`). Entries must be `!delete`, `!replace` or `!insert` of
//!   strings.
//! - `!key(field)`: an absent document counts as `[]`. Items are identified by
//!   the *value* of `field` (tags ignored); a patch item without `field` is an
//!   error; a document item without it never matches. Unmatched patch items
//!   are `apply(absent, item)` and appended (a later patch item with the same
//!   key patches the appended one).
//! - `!all` over an absent document leaves it absent; over an object it
//!   applies to every value (an absent result removes the key).
//! - `!if` needs `if`; a missing `then`/`else` leaves the document unchanged.
//!
//! Match:
//! - `!irtype`: objects and sparse arrays are one type; int and float are two.
//! - `!field p` matches the node's key in its parent object (int keys as
//!   decimal); a node that is not an object value (the root, an array element)
//!   has no key and `p` is matched against an absent node.
//! - `!tag p` matches `p` against `{name, args}` (as go-tony does): the tag's
//!   name without `!` and arguments (a chain's names joined by `.`), and all
//!   its arguments as strings; `{name: "", args: []}` when untagged. So
//!   `!tag {name: !glob my*}` matches `!mytag d`, and a string pattern
//!   (`!tag mytag`) matches nothing.
//! - A refused op (`!let`, `!eval`, …) in a pattern is
//!   [`PatchError::Refused`], not data that silently matches nothing.
//! - `!key(field)`: each pattern item must match the *first* document item
//!   whose `field` has the same value; a non-array document does not match.
//! - `!all p` / `!subtree p` on a scalar test the node itself; on an absent
//!   node they test `p` against absent.
//! - `!glob`: `*`, `?` and `[...]` never match `/`; `[!..]`/`[^..]` negate; an
//!   unclosed `[` and a trailing `\` are literal characters.
//!
//! Trim: an op-tagged or `null` pattern keeps the document node whole,
//! except that an object key whose pattern is op-tagged and does not match
//! its value is dropped (go-tony: `{a: x, b: y}` trimmed by
//! `{a: !or [b, c], b: y}` is `{b: y}`); an
//! array pattern keeps, in pattern order, the first unused document element
//! each pattern element matches, trimmed by that pattern element; the
//! document's tags are kept.
//!
//! Merge: no participants gives `!pass null` (the identity patch).

mod apply;
mod at;
mod glob;
mod matches;
mod merge;
mod trim;

use std::fmt::Write as _;

pub use apply::{apply, apply_owned};
pub use at::{apply_at, patch_at};
pub use glob::glob_match;
pub use matches::matches;
pub use merge::{merge, merge_in, merge_refs};
pub use trim::trim;

use crate::kpath::{KPath, KPathError, Segment};
use crate::node::{Key, Node, Tag, TagHead, Value};

/// Why a patch could not be applied, a pattern evaluated, or participants merged.
///
/// `at` is where in the document (for `apply`) or in the pattern (for
/// `matches`) the problem was found; the root prints as `root`.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum PatchError {
    /// An op that would run a program or evaluate code.
    #[error("{}: !{op} is refused: logd never runs programs or evaluates code", place(.at))]
    Refused {
        /// The op name.
        op: String,
        /// Where.
        at: KPath,
    },
    /// An op met a node of the wrong kind (or an absent node).
    #[error("{}: !{op} needs {expected}, found {found}", place(.at))]
    TypeMismatch {
        /// The op name.
        op: String,
        /// What the op needs.
        expected: String,
        /// What it found (a kind, or `absent`).
        found: String,
        /// Where.
        at: KPath,
    },
    /// A `!replace` (or an `!arraydiff`/`!strdiff` `!delete`/`!replace`
    /// entry) whose expected value differs from the document.
    #[error("{}: !{op} expected {expected}, found {found}", place(.at))]
    ReplaceMismatch {
        /// The op name (`replace`, `delete`).
        op: String,
        /// The expected value, abbreviated.
        expected: String,
        /// The document's value, abbreviated (or `absent`).
        found: String,
        /// Where.
        at: KPath,
    },
    /// A malformed op body or argument list.
    #[error("{}: bad !{op}: {reason}", place(.at))]
    BadArgument {
        /// The op name.
        op: String,
        /// What is wrong.
        reason: String,
        /// Where.
        at: KPath,
    },
    /// `!retag(a,b)` on a node whose tag is not `!a`.
    #[error("{}: !retag expected tag !{expected}, found {found}", place(.at))]
    TagMismatch {
        /// The tag `!retag` expected (without `!`).
        expected: String,
        /// The node's tag (with `!`), or `no tag`.
        found: String,
        /// Where.
        at: KPath,
    },
    /// A malformed path in `!has-path`.
    #[error("{}: !has-path: {source}", place(.at))]
    BadPath {
        /// The parse error.
        source: KPathError,
        /// Where in the pattern.
        at: KPath,
    },
    /// The patch or pattern nests deeper than [`MAX_DEPTH`] levels.
    #[error("{}: nesting deeper than {limit} levels", place(.at))]
    TooDeep {
        /// The limit, [`MAX_DEPTH`].
        limit: usize,
        /// Where the limit was reached.
        at: KPath,
    },
    /// A path with a keyed segment `(k)` that cannot be used: the node above
    /// it is not a keyed list (an array tagged `!key(field)`), no element has
    /// that key, the data for the element is not an object or `!delete`, or
    /// the operation needs positional paths (merge of participants).
    #[error("keyed path {path}: {reason}")]
    KeyedPath {
        /// The path, up to and including the keyed segment at fault.
        path: KPath,
        /// What is wrong.
        reason: String,
    },
    /// Merge: two participant paths are equal, or one is a prefix of the other.
    #[error("participant paths {} and {} conflict (equal or nested)", show(.a), show(.b))]
    Conflict {
        /// The first path.
        a: KPath,
        /// The second path.
        b: KPath,
    },
    /// Merge: children of one parent use different accessors (field, `[i]`, `{i}`).
    #[error("participants under {} mix field, [i] and {{i}} accessors", show(.parent))]
    MixedAccessors {
        /// The common parent.
        parent: KPath,
    },
}

/// How deep `apply` and `matches` recurse (along the patch or pattern, op
/// chains included) before they stop with [`PatchError::TooDeep`].
///
/// Text parsing allows 256 levels and merging mounts data below a path, so
/// 384 leaves room for both. Measured frame cost per level: `apply` about
/// 2.1 KiB unoptimised (1.2 KiB at opt-level 1), `matches` about 2.4 KiB
/// unoptimised, so 384 levels stay under 1 MiB even in a debug build on a
/// 2 MiB thread stack (tokio's default).
pub const MAX_DEPTH: usize = 384;

fn place(at: &KPath) -> String {
    if at.is_root() {
        "at the root".to_owned()
    } else {
        format!("at {at}")
    }
}

fn show(p: &KPath) -> String {
    if p.is_root() {
        "\"\" (root)".to_owned()
    } else {
        p.to_string()
    }
}

impl PatchError {
    /// The same error, one segment further down (`at` gets `seg` prepended).
    /// Used while an error unwinds, so successful walks never build paths.
    pub(crate) fn under(mut self, seg: Segment) -> PatchError {
        self.prepend(seg);
        self
    }

    /// The path the error names (relative to where the patch was applied),
    /// for the errors that name one.
    pub fn at_mut(&mut self) -> Option<&mut KPath> {
        match self {
            PatchError::Refused { at, .. }
            | PatchError::TypeMismatch { at, .. }
            | PatchError::ReplaceMismatch { at, .. }
            | PatchError::BadArgument { at, .. }
            | PatchError::TagMismatch { at, .. }
            | PatchError::BadPath { at, .. }
            | PatchError::TooDeep { at, .. } => Some(at),
            PatchError::Conflict { .. }
            | PatchError::MixedAccessors { .. }
            | PatchError::KeyedPath { .. } => None,
        }
    }

    /// Prepends `seg` to `at` in place (see [`PatchError::under`]).
    pub(crate) fn prepend(&mut self, seg: Segment) {
        let Some(at) = self.at_mut() else { return };
        let mut segs = Vec::with_capacity(at.len() + 1);
        segs.push(seg);
        segs.extend(std::mem::take(at).into_segments());
        *at = KPath::from_segments(segs);
    }

    pub(crate) fn bad(op: &str, reason: impl Into<String>) -> PatchError {
        PatchError::BadArgument {
            op: op.to_owned(),
            reason: reason.into(),
            at: KPath::root(),
        }
    }

    pub(crate) fn mismatch(op: &str, expected: &str, found: Option<&Node>) -> PatchError {
        PatchError::TypeMismatch {
            op: op.to_owned(),
            expected: expected.to_owned(),
            found: found.map_or_else(|| "absent".to_owned(), |n| n.kind().to_string()),
            at: KPath::root(),
        }
    }
}

/// The segment of an object key, for error paths.
pub(crate) fn key_segment(k: &Key) -> Segment {
    match k {
        Key::Field(f) => Segment::Field(f.clone()),
        Key::Index(i) => Segment::Sparse(*i),
    }
}

/// The segment of an array position, for error paths.
pub(crate) fn index_segment(i: usize) -> Segment {
    Segment::Index(u32::try_from(i).unwrap_or(u32::MAX))
}

/// Patch ops, in the order `docs/TONY.md` lists them.
const PATCH_OPS: &[&str] = &[
    "delete",
    "insert",
    "replace",
    "nullify",
    "pass",
    "arraydiff",
    "strdiff",
    "key",
    "all",
    "if",
    "field",
    "rename",
    "addtag",
    "rmtag",
    "retag",
];

/// Ops that run programs or evaluate code: always refused.
const REFUSED_OPS: &[&str] = &[
    "pipe",
    "embed",
    "quote",
    "unquote",
    "json-patch",
    "let",
    "dive",
    "eval",
];

/// The static name of a patch op (registered or refused), `None` for a data
/// tag. This is the single list of op names; the index walk uses it too.
pub fn op_name(name: &str) -> Option<&'static str> {
    PATCH_OPS
        .iter()
        .chain(REFUSED_OPS)
        .find(|op| **op == name)
        .copied()
}

/// Whether `name` is a patch op (registered or refused); any other tag is data.
pub fn is_patch_op(name: &str) -> bool {
    op_name(name).is_some()
}

/// A node seen through a tag other than its own: the rest of a chain after
/// the first op was taken off, over the original value (no clone).
#[derive(Clone, Copy)]
pub(crate) struct View<'a> {
    pub(crate) tag: Option<&'a Tag>,
    pub(crate) value: &'a Value,
}

impl<'a> View<'a> {
    pub(crate) fn of(node: &'a Node) -> View<'a> {
        View {
            tag: node.tag.as_ref(),
            value: &node.value,
        }
    }

    /// The node this view stands for, cloned.
    pub(crate) fn to_node(self) -> Node {
        Node {
            tag: self.tag.cloned(),
            value: self.value.clone(),
        }
    }

    /// Whether this is an untagged `null`.
    pub(crate) fn is_plain_null(self) -> bool {
        self.tag.is_none() && matches!(self.value, Value::Null)
    }

    /// The value of field `name` when the value is an object.
    pub(crate) fn field(self, name: &str) -> Option<&'a Node> {
        match self.value {
            Value::Object(kv) => kv
                .iter()
                .find(|(k, _)| matches!(k, Key::Field(f) if f == name))
                .map(|(_, v)| v),
            _ => None,
        }
    }
}

/// Refuses a tag chain after an op that ends it (`!delete`, a match op, ...).
pub(crate) fn no_rest(op: &str, rest: Option<&Tag>) -> Result<(), PatchError> {
    match rest {
        None => Ok(()),
        Some(r) => Err(PatchError::bad(
            op,
            format!("nothing may be chained after !{op} (found {r})"),
        )),
    }
}

/// The first part of a tag chain when it names an op in `ops`, with the rest
/// of the chain.
pub(crate) fn split_op<'t>(
    tag: Option<&'t Tag>,
    is_op: impl Fn(&str) -> bool,
) -> Option<(TagHead<'t>, Option<Tag>)> {
    let tag = tag?;
    let (head, rest) = tag.split_first();
    if is_op(head.name) {
        Some((head, rest))
    } else {
        None
    }
}

/// A short one-line rendering of a node for error messages (JSON-like, tags
/// shown, cut after about 80 characters).
pub(crate) fn brief(node: Option<&Node>) -> String {
    const LIMIT: usize = 80;
    let Some(node) = node else {
        return "absent".to_owned();
    };
    let mut out = String::new();
    // An explicit stack keeps this safe on deep documents.
    enum Item<'a> {
        Node(&'a Node),
        Text(&'static str),
        Key(&'a Key),
    }
    let mut stack = vec![Item::Node(node)];
    while let Some(item) = stack.pop() {
        if out.len() > LIMIT {
            out.push('…');
            break;
        }
        match item {
            Item::Text(t) => out.push_str(t),
            Item::Key(k) => {
                let _ = write!(out, "{k}: ");
            }
            Item::Node(n) => {
                if let Some(t) = &n.tag {
                    let _ = write!(out, "{t} ");
                }
                match &n.value {
                    Value::Null => out.push_str("null"),
                    Value::Bool(b) => {
                        let _ = write!(out, "{b}");
                    }
                    Value::Int(i) => {
                        let _ = write!(out, "{i}");
                    }
                    Value::Float(f) => {
                        let _ = write!(out, "{f:?}");
                    }
                    Value::String(s) => {
                        let _ = write!(out, "{s:?}");
                    }
                    Value::Array(items) => {
                        out.push('[');
                        stack.push(Item::Text("]"));
                        for (i, it) in items.iter().enumerate().rev() {
                            stack.push(Item::Node(it));
                            if i > 0 {
                                stack.push(Item::Text(", "));
                            }
                        }
                    }
                    Value::Object(kv) => {
                        out.push('{');
                        stack.push(Item::Text("}"));
                        for (i, (k, v)) in kv.iter().enumerate().rev() {
                            stack.push(Item::Node(v));
                            stack.push(Item::Key(k));
                            if i > 0 {
                                stack.push(Item::Text(", "));
                            }
                        }
                    }
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests;
