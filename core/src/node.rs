//! The document model: [`Node`], [`Value`], [`Key`] and [`Tag`].
//!
//! A Tony document is a tree of nodes. Every node carries an optional tag
//! (`!delete`, `!key(id)`, `!all.if`, or any user tag) and a value. Objects keep
//! their keys in insertion order; an object whose keys are all [`Key::Index`]
//! is a *sparse array*. Integers and floats are different values (`1 != 1.0`).
//!
//! This module owns the in-memory shape of documents, their serde encoding
//! (what the log and snapshots store, through rmp-serde) and JSON interop. It
//! never parses or prints Tony text (that is [`crate::text`]) and never
//! interprets tags as operations (that is [`crate::patch`]).
//!
//! # Depth
//!
//! A node may be nested arbitrarily deep when built in code, so nothing here
//! recurses without bound: dropping, cloning and comparing nodes walk the
//! tree with an explicit heap stack; `Debug` prints at most
//! [`MAX_DEBUG_DEPTH`] levels (deeper nodes show as `Node { .. }`);
//! serde encoding and decoding, and [`Node::to_json`], stop with an error
//! past [`MAX_SERDE_DEPTH`] levels. Text printing (in [`crate::text`]) is
//! iterative too.

use std::cell::Cell;
use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::kpath::{KPath, Segment};

/// The deepest nesting of nodes that serde encodes or decodes (and that
/// [`Node::to_json`] converts); deeper is an error from the serializer or
/// deserializer, never a stack overflow.
///
/// It is chosen so that anything encoded also decodes: rmp-serde's default
/// decoder stops at 1024 nested MessagePack containers and an object level
/// costs three of them (the node, the value variant, the entry list), so
/// 320 levels plus the few containers a log record or snapshot entry wraps
/// around a node stay inside it. Text parsing stops earlier
/// ([`crate::text::MAX_DEPTH`]).
///
/// Stack cost of decoding (rmp-serde) a 319-level object chain, measured:
/// under 1 MiB with the workspace's test profile (opt-level 1, about
/// 3 KiB per level), but 4 to 8 MiB in a plain unoptimised build (about
/// 16 KiB per level: serde's generic code is instantiated in this crate at
/// opt-level 0). Code that decodes log records or snapshots on a 2 MiB
/// thread must therefore be built with at least opt-level 1.
pub const MAX_SERDE_DEPTH: usize = 320;

/// How many levels `Debug` prints before abbreviating a node as `Node { .. }`.
pub const MAX_DEBUG_DEPTH: usize = 128;

/// The one nesting limit of stored data: a participant's path plus its
/// data (and a match path plus its pattern) may nest at most this deep, as
/// [`Node::nesting`] counts it, so that whatever is stored prints (in wire
/// and block form) to text that [`crate::text::parse`] reads back. Equal to
/// [`crate::text::MAX_DEPTH`].
pub const MAX_NESTING: usize = crate::text::MAX_DEPTH;

/// One node of a Tony document: an optional tag and a value.
///
/// `Drop`, `Clone` and `PartialEq` do not recurse (see the module docs), so
/// a node of any depth can be handled on a small thread stack. Because `Node`
/// implements `Drop`, its fields cannot be moved out by a pattern; use
/// [`Node::into_parts`].
pub struct Node {
    /// The tag written before the value, e.g. `!delete` or `!key(id)`; `None` when untagged.
    pub tag: Option<Tag>,
    /// The value itself.
    pub value: Value,
}

/// The value of a [`Node`].
///
/// Equality is structural; `Float` compares with `f64` equality, so a NaN is
/// not equal to itself (Tony text cannot write a NaN, so parsed documents never
/// hold one).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Value {
    /// `null`.
    Null,
    /// `true` / `false`.
    Bool(bool),
    /// A 64-bit signed integer. Never equal to a float.
    Int(i64),
    /// A 64-bit float. Never equal to an integer.
    Float(f64),
    /// A string.
    String(String),
    /// A dense array.
    Array(Vec<Node>),
    /// An object (string keys), or a sparse array (all keys are [`Key::Index`]).
    /// Key order is kept.
    Object(Vec<(Key, Node)>),
}

/// An object key: a field name, or an index of a sparse array.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Key {
    /// A string field name.
    Field(String),
    /// An unsigned integer key of a sparse array (`{0: a, 42: b}`).
    Index(u32),
}

/// A tag: the text after `!`, e.g. `delete`, `key(id)`, `all.if`,
/// `insert(foo(bar,baz))`.
///
/// A tag may be a chain of dot-separated parts, each a name with optional
/// parenthesised arguments; [`Tag::split_first`] takes the first part off.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Tag(String);

/// The first part of a tag chain: its name and its arguments.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TagHead<'a> {
    /// The name, e.g. `key` in `key(id)`.
    pub name: &'a str,
    /// The top-level comma-separated arguments, trimmed; empty when there are no parentheses.
    pub args: Vec<&'a str>,
}

impl Tag {
    /// A tag from its text without the leading `!` (a leading `!` is stripped if present).
    pub fn new(text: impl Into<String>) -> Tag {
        let text = text.into();
        match text.strip_prefix('!') {
            Some(rest) => Tag(rest.to_owned()),
            None => Tag(text),
        }
    }

    /// The text without the leading `!`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Splits the chain into its first part and the rest (`all.if` → (`all`, `if`)).
    ///
    /// Dots inside parentheses do not split. Never fails: malformed
    /// parentheses simply extend to the end of the text.
    pub fn split_first(&self) -> (TagHead<'_>, Option<Tag>) {
        let s = self.0.as_str();
        let mut depth = 0usize;
        let mut head_end = s.len();
        for (i, c) in s.char_indices() {
            match c {
                '(' => depth += 1,
                ')' => depth = depth.saturating_sub(1),
                '.' if depth == 0 => {
                    head_end = i;
                    break;
                }
                _ => {}
            }
        }
        let head = &s[..head_end];
        let rest = if head_end < s.len() && head_end + 1 < s.len() {
            Some(Tag(s[head_end + 1..].to_owned()))
        } else {
            None
        };
        (parse_head(head), rest)
    }

    /// The name of the first part of the chain (`key` for `key(id).x`).
    pub fn first_name(&self) -> &str {
        self.split_first().0.name
    }
}

fn parse_head(head: &str) -> TagHead<'_> {
    let Some(open) = head.find('(') else {
        return TagHead {
            name: head,
            args: Vec::new(),
        };
    };
    let name = &head[..open];
    let inner = &head[open + 1..];
    let inner = inner.strip_suffix(')').unwrap_or(inner);
    let mut args = Vec::new();
    let mut depth = 0usize;
    let mut start = 0usize;
    for (i, c) in inner.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                args.push(inner[start..i].trim());
                start = i + 1;
            }
            _ => {}
        }
    }
    if !inner.trim().is_empty() || start > 0 {
        args.push(inner[start..].trim());
    }
    TagHead { name, args }
}

impl fmt::Display for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "!{}", self.0)
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Key::Field(s) => f.write_str(s),
            Key::Index(i) => write!(f, "{i}"),
        }
    }
}

impl From<&str> for Key {
    fn from(s: &str) -> Key {
        Key::Field(s.to_owned())
    }
}

impl From<String> for Key {
    fn from(s: String) -> Key {
        Key::Field(s)
    }
}

impl From<u32> for Key {
    fn from(i: u32) -> Key {
        Key::Index(i)
    }
}

/// The kind of a node's value, used in error messages and `!irtype`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    /// `null`
    Null,
    /// `true`/`false`
    Bool,
    /// integer
    Int,
    /// float
    Float,
    /// string
    String,
    /// dense array
    Array,
    /// object with field keys (or empty object)
    Object,
    /// object whose keys are all sparse indexes (non-empty)
    Sparse,
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Kind::Null => "null",
            Kind::Bool => "bool",
            Kind::Int => "int",
            Kind::Float => "float",
            Kind::String => "string",
            Kind::Array => "array",
            Kind::Object => "object",
            Kind::Sparse => "sparse array",
        })
    }
}

impl Value {
    /// The kind of this value.
    pub fn kind(&self) -> Kind {
        match self {
            Value::Null => Kind::Null,
            Value::Bool(_) => Kind::Bool,
            Value::Int(_) => Kind::Int,
            Value::Float(_) => Kind::Float,
            Value::String(_) => Kind::String,
            Value::Array(_) => Kind::Array,
            Value::Object(kv) => {
                if !kv.is_empty() && kv.iter().all(|(k, _)| matches!(k, Key::Index(_))) {
                    Kind::Sparse
                } else {
                    Kind::Object
                }
            }
        }
    }
}

impl Node {
    /// How many text nesting levels this node needs at worst: one per
    /// array or object, one more for a tagged one (the block form puts a
    /// tag alone on its line above the block, which the parser counts as a
    /// level); 0 for a scalar. Iterative (any depth).
    pub fn nesting(&self) -> usize {
        let mut deepest = 0;
        let mut stack: Vec<(&Node, usize)> = vec![(self, 0)];
        while let Some((n, above)) = stack.pop() {
            let own = match &n.value {
                Value::Array(_) | Value::Object(_) => 1 + usize::from(n.tag.is_some()),
                _ => 0,
            };
            let here = above + own;
            deepest = deepest.max(here);
            match &n.value {
                Value::Array(items) => stack.extend(items.iter().map(|c| (c, here))),
                Value::Object(kv) => stack.extend(kv.iter().map(|(_, c)| (c, here))),
                _ => {}
            }
        }
        deepest
    }

    /// Takes the node apart into its tag and value (the way to move the
    /// fields out, since `Node` implements `Drop`).
    pub fn into_parts(mut self) -> (Option<Tag>, Value) {
        let tag = self.tag.take();
        let value = std::mem::replace(&mut self.value, Value::Null);
        (tag, value)
    }

    /// An untagged node.
    pub fn new(value: Value) -> Node {
        Node { tag: None, value }
    }

    /// A tagged node; `tag` may be given with or without its leading `!`.
    pub fn tagged(tag: impl Into<String>, value: Value) -> Node {
        Node {
            tag: Some(Tag::new(tag)),
            value,
        }
    }

    /// `null`.
    pub fn null() -> Node {
        Node::new(Value::Null)
    }

    /// A string node.
    pub fn string(s: impl Into<String>) -> Node {
        Node::new(Value::String(s.into()))
    }

    /// An integer node.
    pub fn int(i: i64) -> Node {
        Node::new(Value::Int(i))
    }

    /// An object from key/value pairs, order kept.
    pub fn object<K: Into<Key>>(pairs: impl IntoIterator<Item = (K, Node)>) -> Node {
        Node::new(Value::Object(
            pairs.into_iter().map(|(k, v)| (k.into(), v)).collect(),
        ))
    }

    /// An array node.
    pub fn array(items: impl IntoIterator<Item = Node>) -> Node {
        Node::new(Value::Array(items.into_iter().collect()))
    }

    /// The kind of this node's value.
    pub fn kind(&self) -> Kind {
        self.value.kind()
    }

    /// Whether the value is `null` (tags are not considered).
    pub fn is_null(&self) -> bool {
        matches!(self.value, Value::Null)
    }

    /// The same node with its tag replaced.
    pub fn with_tag(mut self, tag: Option<Tag>) -> Node {
        self.tag = tag;
        self
    }

    /// The value under `key` when this node is an object.
    pub fn get(&self, key: &Key) -> Option<&Node> {
        match &self.value {
            Value::Object(kv) => kv.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// The value under the field `name` when this node is an object.
    pub fn field(&self, name: &str) -> Option<&Node> {
        match &self.value {
            Value::Object(kv) => kv
                .iter()
                .find(|(k, _)| matches!(k, Key::Field(f) if f == name))
                .map(|(_, v)| v),
            _ => None,
        }
    }

    /// The node at one path segment below this one.
    pub fn child(&self, seg: &Segment) -> Option<&Node> {
        match (seg, &self.value) {
            (Segment::Field(f), Value::Object(_)) => self.field(f),
            (Segment::Index(i), Value::Array(items)) => items.get(*i as usize),
            (Segment::Sparse(i), Value::Object(_)) => self.get(&Key::Index(*i)),
            (Segment::Key(k), Value::Array(items)) => {
                self.keyed_position(k).and_then(|i| items.get(i))
            }
            _ => None,
        }
    }

    /// The field a keyed list is keyed by: `id` when this node is tagged
    /// `!key(id)` (the first part of its tag chain).
    pub fn key_field(&self) -> Option<&str> {
        let (head, _) = self.tag.as_ref()?.split_first();
        match (head.name, head.args.as_slice()) {
            ("key", [f]) => Some(f),
            _ => None,
        }
    }

    /// The position of the element a `(k)` path segment selects: this node
    /// is an array tagged `!key(field)` and the element is the first object
    /// whose `field` reads as `k` (a string as itself; an integer, boolean,
    /// float or `null` as its printed text, so `(1)` selects `id: 1` and
    /// `id: "1"` alike).
    pub fn keyed_position(&self, k: &str) -> Option<usize> {
        let field = self.key_field()?;
        let Value::Array(items) = &self.value else {
            return None;
        };
        items
            .iter()
            .position(|it| it.field(field).is_some_and(|v| key_text_is(&v.value, k)))
    }

    /// `path` with every keyed segment `(k)` replaced by the position `[i]`
    /// of the element it names in this document; other segments are kept
    /// (they may name nodes that do not exist yet). `Err(depth)` names the
    /// first keyed segment that names no element.
    pub fn resolve_path(&self, path: &KPath) -> Result<KPath, usize> {
        let mut out = Vec::with_capacity(path.len());
        let mut cur = Some(self);
        for (depth, seg) in path.segments().iter().enumerate() {
            match seg {
                Segment::Key(k) => {
                    let i = cur.and_then(|n| n.keyed_position(k)).ok_or(depth)?;
                    let i = u32::try_from(i).map_err(|_| depth)?;
                    out.push(Segment::Index(i));
                }
                other => out.push(other.clone()),
            }
            cur = cur.and_then(|n| n.child(seg));
        }
        Ok(KPath::from_segments(out))
    }

    /// The node at `path` below this one (`self` for the root path). A
    /// `(k)` segment selects an element of a keyed list (see
    /// [`Node::keyed_position`]); on any other node it finds nothing.
    pub fn get_path(&self, path: &KPath) -> Option<&Node> {
        let mut cur = self;
        for seg in path.segments() {
            cur = cur.child(seg)?;
        }
        Some(cur)
    }

    /// Converts to JSON. Tags cannot be represented in JSON and are an error,
    /// as are non-finite floats; sparse-array keys become decimal string keys.
    ///
    /// Nodes nested deeper than [`MAX_SERDE_DEPTH`] are [`JsonError::TooDeep`]
    /// (a `serde_json::Value` drops recursively, so a deeper one could not
    /// even be dropped safely).
    pub fn to_json(&self) -> Result<serde_json::Value, JsonError> {
        self.to_json_at(0)
    }

    fn to_json_at(&self, depth: usize) -> Result<serde_json::Value, JsonError> {
        if depth >= MAX_SERDE_DEPTH {
            return Err(JsonError::TooDeep {
                limit: MAX_SERDE_DEPTH,
            });
        }
        if let Some(tag) = &self.tag {
            return Err(JsonError::Tagged {
                tag: tag.to_string(),
            });
        }
        Ok(match &self.value {
            Value::Null => serde_json::Value::Null,
            Value::Bool(b) => serde_json::Value::Bool(*b),
            Value::Int(i) => serde_json::Value::from(*i),
            Value::Float(f) => serde_json::Number::from_f64(*f)
                .map(serde_json::Value::Number)
                .ok_or(JsonError::NonFinite { value: *f })?,
            Value::String(s) => serde_json::Value::String(s.clone()),
            Value::Array(items) => serde_json::Value::Array(
                items
                    .iter()
                    .map(|n| n.to_json_at(depth + 1))
                    .collect::<Result<Vec<_>, _>>()?,
            ),
            Value::Object(kv) => {
                let mut map = serde_json::Map::with_capacity(kv.len());
                for (k, v) in kv {
                    map.insert(k.to_string(), v.to_json_at(depth + 1)?);
                }
                serde_json::Value::Object(map)
            }
        })
    }
}

/// Why a node could not be converted to JSON.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum JsonError {
    /// JSON has no tags.
    #[error("tag {tag} cannot be represented in JSON")]
    Tagged {
        /// The tag, with its `!`.
        tag: String,
    },
    /// JSON has no NaN or infinities.
    #[error("float {value} cannot be represented in JSON")]
    NonFinite {
        /// The float.
        value: f64,
    },
    /// The node is nested deeper than [`MAX_SERDE_DEPTH`].
    #[error("nesting deeper than {limit} levels cannot be converted to JSON")]
    TooDeep {
        /// The limit, [`MAX_SERDE_DEPTH`].
        limit: usize,
    },
}

impl From<serde_json::Value> for Node {
    /// Converts JSON (integers that fit `i64` become [`Value::Int`], other
    /// numbers [`Value::Float`]). Iterative: a JSON value of any depth
    /// converts without recursion.
    fn from(v: serde_json::Value) -> Node {
        let mut stack: Vec<JsonFrame> = Vec::new();
        let mut next = v;
        loop {
            // Descend into `next` until a finished node comes out.
            let mut done = match json_open(next) {
                Ok(frame) => {
                    stack.push(frame);
                    None
                }
                Err(leaf) => Some(leaf),
            };
            // Hand finished nodes up, and find the next child to convert.
            loop {
                let Some(top) = stack.last_mut() else {
                    return done.unwrap_or_else(Node::null);
                };
                if let Some(node) = done.take() {
                    top.push(node);
                }
                match top.next_child() {
                    Some(child) => {
                        next = child;
                        break;
                    }
                    None => {
                        if let Some(frame) = stack.pop() {
                            done = Some(frame.finish());
                        }
                    }
                }
            }
        }
    }
}

/// A JSON container being converted: the children left and the nodes made.
enum JsonFrame {
    Array {
        rest: std::vec::IntoIter<serde_json::Value>,
        out: Vec<Node>,
    },
    Object {
        rest: serde_json::map::IntoIter,
        /// The key of the child being converted.
        pending: Option<String>,
        out: Vec<(Key, Node)>,
    },
}

impl JsonFrame {
    fn next_child(&mut self) -> Option<serde_json::Value> {
        match self {
            JsonFrame::Array { rest, .. } => rest.next(),
            JsonFrame::Object { rest, pending, .. } => rest.next().map(|(k, v)| {
                *pending = Some(k);
                v
            }),
        }
    }

    fn push(&mut self, node: Node) {
        match self {
            JsonFrame::Array { out, .. } => out.push(node),
            JsonFrame::Object { pending, out, .. } => {
                out.push((Key::Field(pending.take().unwrap_or_default()), node));
            }
        }
    }

    fn finish(self) -> Node {
        match self {
            JsonFrame::Array { out, .. } => Node::new(Value::Array(out)),
            JsonFrame::Object { out, .. } => Node::new(Value::Object(out)),
        }
    }
}

/// A frame for a JSON container, or the node of a scalar.
fn json_open(v: serde_json::Value) -> Result<JsonFrame, Node> {
    Err(Node::new(match v {
        serde_json::Value::Null => Value::Null,
        serde_json::Value::Bool(b) => Value::Bool(b),
        serde_json::Value::Number(n) => match n.as_i64() {
            Some(i) => Value::Int(i),
            None => Value::Float(n.as_f64().unwrap_or(f64::NAN)),
        },
        serde_json::Value::String(s) => Value::String(s),
        serde_json::Value::Array(items) => {
            return Ok(JsonFrame::Array {
                out: Vec::with_capacity(items.len()),
                rest: items.into_iter(),
            });
        }
        serde_json::Value::Object(map) => {
            return Ok(JsonFrame::Object {
                out: Vec::with_capacity(map.len()),
                rest: map.into_iter(),
                pending: None,
            });
        }
    }))
}

impl From<Value> for Node {
    fn from(value: Value) -> Node {
        Node::new(value)
    }
}

// ---------------------------------------------------------------------------
// Non-recursive Drop, Clone, PartialEq; depth-bounded Debug and serde.

impl Drop for Node {
    /// Drops the tree without recursion: every non-empty container below
    /// this node is moved onto a heap stack and emptied there, so each node
    /// dropped afterwards holds only shallow children.
    fn drop(&mut self) {
        if !has_deep_children(&self.value) {
            return;
        }
        let mut stack: Vec<Value> = Vec::new();
        move_out_containers(&mut self.value, &mut stack);
        while let Some(mut v) = stack.pop() {
            move_out_containers(&mut v, &mut stack);
            // `v` drops here; its children now hold no non-empty containers.
        }
    }
}

/// Whether `v` has a child whose value is a non-empty container (only then
/// can dropping it recurse more than one level).
fn has_deep_children(v: &Value) -> bool {
    match v {
        Value::Array(items) => items.iter().any(|n| is_nonempty_container(&n.value)),
        Value::Object(kv) => kv.iter().any(|(_, n)| is_nonempty_container(&n.value)),
        _ => false,
    }
}

fn is_nonempty_container(v: &Value) -> bool {
    match v {
        Value::Array(items) => !items.is_empty(),
        Value::Object(kv) => !kv.is_empty(),
        _ => false,
    }
}

/// Moves the value of every child of `v` that is a non-empty container onto
/// `stack`, leaving `null` in its place.
fn move_out_containers(v: &mut Value, stack: &mut Vec<Value>) {
    let mut take = |n: &mut Node| {
        if is_nonempty_container(&n.value) {
            stack.push(std::mem::replace(&mut n.value, Value::Null));
        }
    };
    match v {
        Value::Array(items) => items.iter_mut().for_each(&mut take),
        Value::Object(kv) => kv.iter_mut().for_each(|(_, n)| take(n)),
        _ => {}
    }
}

/// A container being cloned: the source children and the clones made so far.
enum CloneFrame<'a> {
    Array {
        tag: Option<Tag>,
        src: &'a [Node],
        out: Vec<Node>,
    },
    Object {
        tag: Option<Tag>,
        src: &'a [(Key, Node)],
        out: Vec<(Key, Node)>,
    },
}

impl<'a> CloneFrame<'a> {
    /// A frame for `n` when it is a non-empty container, else its clone.
    fn open(n: &'a Node) -> Result<CloneFrame<'a>, Node> {
        match &n.value {
            Value::Array(items) if !items.is_empty() => Ok(CloneFrame::Array {
                tag: n.tag.clone(),
                src: items,
                out: Vec::with_capacity(items.len()),
            }),
            Value::Object(kv) if !kv.is_empty() => Ok(CloneFrame::Object {
                tag: n.tag.clone(),
                src: kv,
                out: Vec::with_capacity(kv.len()),
            }),
            other => Err(Node {
                tag: n.tag.clone(),
                value: match other {
                    Value::Null => Value::Null,
                    Value::Bool(b) => Value::Bool(*b),
                    Value::Int(i) => Value::Int(*i),
                    Value::Float(f) => Value::Float(*f),
                    Value::String(s) => Value::String(s.clone()),
                    Value::Array(_) => Value::Array(Vec::new()),
                    Value::Object(_) => Value::Object(Vec::new()),
                },
            }),
        }
    }

    /// The next source child to clone, or `None` when all are done.
    fn next_src(&self) -> Option<&'a Node> {
        match self {
            CloneFrame::Array { src, out, .. } => src.get(out.len()),
            CloneFrame::Object { src, out, .. } => src.get(out.len()).map(|(_, n)| n),
        }
    }

    /// Records the clone of the child [`Self::next_src`] returned.
    fn push(&mut self, n: Node) {
        match self {
            CloneFrame::Array { out, .. } => out.push(n),
            CloneFrame::Object { src, out, .. } => {
                let key = src[out.len()].0.clone();
                out.push((key, n));
            }
        }
    }

    fn finish(self) -> Node {
        match self {
            CloneFrame::Array { tag, out, .. } => Node {
                tag,
                value: Value::Array(out),
            },
            CloneFrame::Object { tag, out, .. } => Node {
                tag,
                value: Value::Object(out),
            },
        }
    }
}

impl Clone for Node {
    /// A deep copy, made without recursion.
    fn clone(&self) -> Node {
        let mut stack = match CloneFrame::open(self) {
            Ok(frame) => vec![frame],
            Err(leaf) => return leaf,
        };
        loop {
            let next = stack.last().and_then(CloneFrame::next_src);
            match next {
                Some(child) => match CloneFrame::open(child) {
                    Ok(frame) => stack.push(frame),
                    Err(leaf) => {
                        if let Some(top) = stack.last_mut() {
                            top.push(leaf);
                        }
                    }
                },
                None => {
                    let Some(done) = stack.pop() else {
                        // Unreachable: the loop returns when the root frame is done.
                        return Node::null();
                    };
                    let node = done.finish();
                    match stack.last_mut() {
                        Some(parent) => parent.push(node),
                        None => return node,
                    }
                }
            }
        }
    }
}

impl PartialEq for Node {
    /// Structural equality (tags, kinds, keys in order, values), compared
    /// without recursion.
    fn eq(&self, other: &Node) -> bool {
        let mut stack: Vec<(&Node, &Node)> = vec![(self, other)];
        while let Some((a, b)) = stack.pop() {
            if a.tag != b.tag {
                return false;
            }
            match (&a.value, &b.value) {
                (Value::Array(x), Value::Array(y)) => {
                    if x.len() != y.len() {
                        return false;
                    }
                    stack.extend(x.iter().zip(y.iter()));
                }
                (Value::Object(x), Value::Object(y)) => {
                    if x.len() != y.len() {
                        return false;
                    }
                    for ((ka, na), (kb, nb)) in x.iter().zip(y.iter()) {
                        if ka != kb {
                            return false;
                        }
                        stack.push((na, nb));
                    }
                }
                (Value::Null, Value::Null) => {}
                (Value::Bool(x), Value::Bool(y)) if x == y => {}
                (Value::Int(x), Value::Int(y)) if x == y => {}
                (Value::Float(x), Value::Float(y)) if x == y => {}
                (Value::String(x), Value::String(y)) if x == y => {}
                _ => return false,
            }
        }
        true
    }
}

thread_local! {
    /// How many `Node::fmt` (Debug) calls are active on this thread.
    static DEBUG_DEPTH: Cell<usize> = const { Cell::new(0) };
    /// How many `Node::serialize` calls are active on this thread.
    static SER_DEPTH: Cell<usize> = const { Cell::new(0) };
    /// How many `Node::deserialize` calls are active on this thread.
    static DE_DEPTH: Cell<usize> = const { Cell::new(0) };
}

/// One level of a depth counter; leaving the level (even by an error
/// return) gives it back.
struct DepthGuard(&'static std::thread::LocalKey<Cell<usize>>);

impl DepthGuard {
    /// Enters one more level of `counter`, or `None` when `limit` levels are
    /// already active.
    fn enter(counter: &'static std::thread::LocalKey<Cell<usize>>, limit: usize) -> Option<Self> {
        counter.with(|c| {
            let d = c.get();
            if d >= limit {
                None
            } else {
                c.set(d + 1);
                Some(DepthGuard(counter))
            }
        })
    }
}

impl Drop for DepthGuard {
    fn drop(&mut self) {
        self.0.with(|c| c.set(c.get().saturating_sub(1)));
    }
}

impl fmt::Debug for Node {
    /// The derived form (`Node { tag: .., value: .. }`), abbreviated to
    /// `Node { .. }` below [`MAX_DEBUG_DEPTH`] levels.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match DepthGuard::enter(&DEBUG_DEPTH, MAX_DEBUG_DEPTH) {
            Some(_guard) => f
                .debug_struct("Node")
                .field("tag", &self.tag)
                .field("value", &self.value)
                .finish(),
            None => f.write_str("Node { .. }"),
        }
    }
}

/// What serde sees of a node: the same shape the derive would give `Node`.
#[derive(Serialize)]
#[serde(rename = "Node")]
struct NodeSer<'a> {
    tag: &'a Option<Tag>,
    value: &'a Value,
}

/// What serde reads for a node: the same shape the derive would give `Node`.
#[derive(Deserialize)]
#[serde(rename = "Node")]
struct NodeDe {
    tag: Option<Tag>,
    value: Value,
}

impl Serialize for Node {
    /// The derived encoding (a struct `Node` with fields `tag` and `value`);
    /// an error past [`MAX_SERDE_DEPTH`] levels.
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let Some(_guard) = DepthGuard::enter(&SER_DEPTH, MAX_SERDE_DEPTH) else {
            return Err(serde::ser::Error::custom(format!(
                "node nested deeper than {MAX_SERDE_DEPTH} levels"
            )));
        };
        NodeSer {
            tag: &self.tag,
            value: &self.value,
        }
        .serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Node {
    /// The derived decoding; an error past [`MAX_SERDE_DEPTH`] levels.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Node, D::Error> {
        let Some(_guard) = DepthGuard::enter(&DE_DEPTH, MAX_SERDE_DEPTH) else {
            return Err(serde::de::Error::custom(format!(
                "node nested deeper than {MAX_SERDE_DEPTH} levels"
            )));
        };
        let NodeDe { tag, value } = NodeDe::deserialize(deserializer)?;
        Ok(Node { tag, value })
    }
}

/// Whether the scalar `v` reads as the key text `k` of a `(k)` path segment.
fn key_text_is(v: &Value, k: &str) -> bool {
    match v {
        Value::String(s) => s == k,
        Value::Int(i) => k.parse::<i64>().is_ok_and(|j| j == *i) && !k.starts_with('+'),
        Value::Bool(b) => k == if *b { "true" } else { "false" },
        Value::Null => k == "null",
        Value::Float(_) => Node::new(v.clone()).to_string() == k,
        Value::Array(_) | Value::Object(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tag_chain_splits_outside_parentheses() {
        let t = Tag::new("!field(a.b,A).field(d,D)");
        let (head, rest) = t.split_first();
        assert_eq!(head.name, "field");
        assert_eq!(head.args, vec!["a.b", "A"]);
        assert_eq!(rest, Some(Tag::new("field(d,D)")));
        let t = Tag::new("insert(foo(bar,baz))");
        let (head, rest) = t.split_first();
        assert_eq!(head.name, "insert");
        assert_eq!(head.args, vec!["foo(bar,baz)"]);
        assert_eq!(rest, None);
        let all_if = Tag::new("all.if");
        let (head, rest) = all_if.split_first();
        assert_eq!((head.name, head.args.len()), ("all", 0));
        assert_eq!(rest, Some(Tag::new("if")));
        assert_eq!(Tag::new("x()").split_first().0.args.len(), 0);
    }

    #[test]
    fn json_round_trip_keeps_int_and_float_apart() {
        let j = serde_json::json!({"a": 1, "b": 1.0, "c": [null, true, "s"]});
        let n = Node::from(j.clone());
        assert_eq!(n.field("a").map(Node::kind), Some(Kind::Int));
        assert_eq!(n.field("b").map(Node::kind), Some(Kind::Float));
        assert_eq!(n.to_json(), Ok(j));
        assert!(Node::tagged("x", Value::Null).to_json().is_err());
    }

    #[test]
    fn serde_rmp_round_trip() {
        let n = Node::object([
            (
                "a",
                Node::tagged("key(id)", Value::Array(vec![Node::int(3)])),
            ),
            ("b", Node::new(Value::Float(2.5))),
        ]);
        let bytes = rmp_serde::to_vec(&n).expect("encode");
        let back: Node = rmp_serde::from_slice(&bytes).expect("decode");
        assert_eq!(back, n);
    }
}
