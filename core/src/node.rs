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

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::kpath::{KPath, Segment};

/// One node of a Tony document: an optional tag and a value.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
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
            _ => None,
        }
    }

    /// The node at `path` below this one (`self` for the root path).
    pub fn get_path(&self, path: &KPath) -> Option<&Node> {
        let mut cur = self;
        for seg in path.segments() {
            cur = cur.child(seg)?;
        }
        Some(cur)
    }

    /// Converts to JSON. Tags cannot be represented in JSON and are an error,
    /// as are non-finite floats; sparse-array keys become decimal string keys.
    pub fn to_json(&self) -> Result<serde_json::Value, JsonError> {
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
                    .map(Node::to_json)
                    .collect::<Result<Vec<_>, _>>()?,
            ),
            Value::Object(kv) => {
                let mut map = serde_json::Map::with_capacity(kv.len());
                for (k, v) in kv {
                    map.insert(k.to_string(), v.to_json()?);
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
}

impl From<serde_json::Value> for Node {
    fn from(v: serde_json::Value) -> Node {
        Node::new(match v {
            serde_json::Value::Null => Value::Null,
            serde_json::Value::Bool(b) => Value::Bool(b),
            serde_json::Value::Number(n) => match n.as_i64() {
                Some(i) => Value::Int(i),
                None => Value::Float(n.as_f64().unwrap_or(f64::NAN)),
            },
            serde_json::Value::String(s) => Value::String(s),
            serde_json::Value::Array(items) => {
                Value::Array(items.into_iter().map(Node::from).collect())
            }
            serde_json::Value::Object(map) => Value::Object(
                map.into_iter()
                    .map(|(k, v)| (Key::Field(k), Node::from(v)))
                    .collect(),
            ),
        })
    }
}

impl From<Value> for Node {
    fn from(value: Value) -> Node {
        Node::new(value)
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
