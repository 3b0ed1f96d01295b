//! Kinded paths: `a.b`, `"a b".c`, `a[3]` (dense index), `a{3}` (sparse
//! index), `a(jane)` / `a("jane doe")` (the element of a keyed list, an array
//! tagged `!key(field)`, whose `field` is `jane`), and the root `""`.
//!
//! This module owns parsing (strict: every error names the byte offset),
//! printing (fields and keys are quoted when they need it), the total order
//! (segment by segment, a prefix first; field < dense index < sparse index <
//! key) and ancestry tests. Looking a path up in a document is
//! [`crate::Node::get_path`]. The older `$`-rooted syntax (`$.a[3]`) is
//! refused with an error, never read as a field named `$`.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::lexical;

/// One step of a path. The derived order is the path order: fields (bytewise)
/// before dense indexes before sparse indexes before keys, indexes
/// numerically, keys bytewise.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Segment {
    /// `.name` (or the leading `name`).
    Field(String),
    /// `[i]`: an element of a dense array.
    Index(u32),
    /// `{i}`: an element of a sparse array (an int-keyed object).
    Sparse(u32),
    /// `(k)`: the element of a keyed list (an array tagged `!key(field)`)
    /// whose `field` reads as `k` (see [`crate::Node::get_path`]).
    Key(String),
}

/// A kinded path. The empty path is the root.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct KPath {
    segs: Vec<Segment>,
}

/// A path could not be parsed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid path {path:?} at offset {offset}: {message}")]
pub struct KPathError {
    /// The text that was parsed.
    pub path: String,
    /// Byte offset of the problem.
    pub offset: usize,
    /// What was wrong.
    pub message: String,
}

impl KPath {
    /// The root path `""`.
    pub fn root() -> KPath {
        KPath { segs: Vec::new() }
    }

    /// A path from its segments.
    pub fn from_segments(segs: Vec<Segment>) -> KPath {
        KPath { segs }
    }

    /// The segments, outermost first.
    pub fn segments(&self) -> &[Segment] {
        &self.segs
    }

    /// Consumes the path into its segments.
    pub fn into_segments(self) -> Vec<Segment> {
        self.segs
    }

    /// Number of segments (0 for the root).
    pub fn len(&self) -> usize {
        self.segs.len()
    }

    /// Whether this is the root path.
    pub fn is_root(&self) -> bool {
        self.segs.is_empty()
    }

    /// Whether this is the root path (alias of [`KPath::is_root`]).
    pub fn is_empty(&self) -> bool {
        self.segs.is_empty()
    }

    /// The parent path, `None` for the root.
    pub fn parent(&self) -> Option<KPath> {
        let n = self.segs.len().checked_sub(1)?;
        Some(KPath {
            segs: self.segs[..n].to_vec(),
        })
    }

    /// The last segment, `None` for the root.
    pub fn last(&self) -> Option<&Segment> {
        self.segs.last()
    }

    /// This path extended by one segment.
    pub fn child(&self, seg: Segment) -> KPath {
        let mut segs = Vec::with_capacity(self.segs.len() + 1);
        segs.extend_from_slice(&self.segs);
        segs.push(seg);
        KPath { segs }
    }

    /// Appends a segment in place.
    pub fn push(&mut self, seg: Segment) {
        self.segs.push(seg);
    }

    /// Removes and returns the last segment (`None` for the root).
    pub fn pop(&mut self) -> Option<Segment> {
        self.segs.pop()
    }

    /// Whether `self` is `other` or an ancestor of it.
    pub fn is_prefix_of(&self, other: &KPath) -> bool {
        other.segs.starts_with(&self.segs)
    }

    /// Whether `self` is a strict ancestor of `other`.
    pub fn is_ancestor_of(&self, other: &KPath) -> bool {
        self.segs.len() < other.segs.len() && self.is_prefix_of(other)
    }

    /// The path of `self` relative to its ancestor-or-self `base`, or `None`
    /// when `base` is not a prefix of `self`.
    pub fn strip_prefix(&self, base: &KPath) -> Option<KPath> {
        self.segs
            .strip_prefix(base.segs.as_slice())
            .map(|s| KPath { segs: s.to_vec() })
    }

    /// Parses a path (same as `str::parse`).
    pub fn parse(text: &str) -> Result<KPath, KPathError> {
        Parser { text, pos: 0 }.path()
    }
}

struct Parser<'a> {
    text: &'a str,
    pos: usize,
}

impl Parser<'_> {
    fn err(&self, offset: usize, message: impl Into<String>) -> KPathError {
        KPathError {
            path: self.text.to_owned(),
            offset,
            message: message.into(),
        }
    }

    fn peek(&self) -> Option<char> {
        self.text[self.pos..].chars().next()
    }

    fn path(mut self) -> Result<KPath, KPathError> {
        let mut segs = Vec::new();
        if self.text.is_empty() {
            return Ok(KPath { segs });
        }
        // The older `$`-rooted syntax: refused rather than read as a field
        // named `$` (a field of that name is written quoted, `"$"`).
        if self.text.starts_with('$')
            && matches!(
                self.text[1..].chars().next(),
                None | Some('.' | '[' | '{' | '(')
            )
        {
            return Err(self.err(
                0,
                "`$`-rooted paths are not supported: write `$.a[3]` as `a[3]` (a field named `$` is written \"$\")",
            ));
        }
        // A leading field has no dot.
        if !matches!(self.peek(), Some('[' | '{' | '(')) {
            segs.push(self.field()?);
        }
        while let Some(c) = self.peek() {
            match c {
                '.' => {
                    self.pos += 1;
                    segs.push(self.field()?);
                }
                '[' => segs.push(Segment::Index(self.index('[', ']')?)),
                '{' => segs.push(Segment::Sparse(self.index('{', '}')?)),
                '(' => segs.push(self.key()?),
                _ => return Err(self.err(self.pos, format!("unexpected {c:?}"))),
            }
        }
        Ok(KPath { segs })
    }

    /// A `(key)` segment: a quoted string or unquoted text up to `)`.
    fn key(&mut self) -> Result<Segment, KPathError> {
        let open = self.pos;
        self.pos += 1;
        let start = self.pos;
        match self.peek() {
            Some('"' | '\'') => {
                let (s, end) = lexical::read_quoted(self.text, start)
                    .map_err(|e| self.err(e.offset, e.message))?;
                if !self.text[end..].starts_with(')') {
                    return Err(self.err(end, "expected ')' after a quoted key"));
                }
                self.pos = end + 1;
                Ok(Segment::Key(s))
            }
            _ => {
                let rest = &self.text[start..];
                let Some(len) = rest.find(')') else {
                    return Err(self.err(open, "( is not closed"));
                };
                let key = &rest[..len];
                if key.is_empty() {
                    return Err(self.err(start, "expected a key"));
                }
                if key == "*" {
                    return Err(self.err(start, "wildcards are not allowed in storage paths"));
                }
                if let Some((i, c)) = key
                    .char_indices()
                    .find(|&(_, c)| !lexical::is_literal_char(c) || c == '(')
                {
                    return Err(self.err(
                        start + i,
                        format!("{c:?} is not allowed in an unquoted key"),
                    ));
                }
                self.pos = start + len + 1;
                Ok(Segment::Key(key.to_owned()))
            }
        }
    }

    fn field(&mut self) -> Result<Segment, KPathError> {
        let start = self.pos;
        match self.peek() {
            None => Err(self.err(start, "expected a field name")),
            Some('"' | '\'') => {
                let (s, end) = lexical::read_quoted(self.text, start)
                    .map_err(|e| self.err(e.offset, e.message))?;
                self.pos = end;
                Ok(Segment::Field(s))
            }
            Some(_) => {
                let rest = &self.text[start..];
                let len = rest.find(['.', '[', '{', '(']).unwrap_or(rest.len());
                let name = &rest[..len];
                if name.is_empty() {
                    return Err(self.err(start, "expected a field name"));
                }
                if name == "*" {
                    return Err(self.err(start, "wildcards are not allowed in storage paths"));
                }
                if let Some((i, c)) = name
                    .char_indices()
                    .find(|&(_, c)| !lexical::is_literal_char(c) || matches!(c, ']' | '}' | ')'))
                {
                    return Err(self.err(start + i, format!("{c:?} is not allowed in a field")));
                }
                self.pos += len;
                Ok(Segment::Field(name.to_owned()))
            }
        }
    }

    fn index(&mut self, open: char, close: char) -> Result<u32, KPathError> {
        let start = self.pos;
        self.pos += open.len_utf8();
        let rest = &self.text[self.pos..];
        let Some(len) = rest.find(close) else {
            return Err(self.err(start, format!("{open} is not closed")));
        };
        let digits = &rest[..len];
        if digits.is_empty() {
            return Err(self.err(self.pos, "expected an index"));
        }
        if digits == "*" {
            return Err(self.err(self.pos, "wildcards are not allowed in storage paths"));
        }
        if let Some(i) = digits.find(|c: char| !c.is_ascii_digit()) {
            return Err(self.err(self.pos + i, "an index is an unsigned decimal number"));
        }
        let value = digits
            .parse::<u32>()
            .map_err(|_| self.err(self.pos, "index out of range"))?;
        self.pos += len + close.len_utf8();
        Ok(value)
    }
}

impl FromStr for KPath {
    type Err = KPathError;
    fn from_str(s: &str) -> Result<KPath, KPathError> {
        KPath::parse(s)
    }
}

impl fmt::Display for KPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = String::new();
        for (i, seg) in self.segs.iter().enumerate() {
            match seg {
                Segment::Field(name) => {
                    if i > 0 {
                        out.push('.');
                    }
                    if lexical::can_be_path_field(name) {
                        out.push_str(name);
                    } else {
                        lexical::write_quoted(&mut out, name);
                    }
                }
                Segment::Index(n) => {
                    out.push('[');
                    out.push_str(&n.to_string());
                    out.push(']');
                }
                Segment::Sparse(n) => {
                    out.push('{');
                    out.push_str(&n.to_string());
                    out.push('}');
                }
                Segment::Key(k) => {
                    out.push('(');
                    if lexical::can_be_path_field(k) {
                        out.push_str(k);
                    } else {
                        lexical::write_quoted(&mut out, k);
                    }
                    out.push(')');
                }
            }
        }
        f.write_str(&out)
    }
}

impl Serialize for KPath {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// A path as stored (log records): [`KPath::parse`], except that a path
/// holding a keyed segment or starting with `$` is read with the grammar of
/// the paths stored before keyed segments existed, whose printer wrote a
/// field holding `(`/`)` or named `$` unquoted (`f(x)`, `$.a`): there it is
/// the field `f(x)` and the field `$`. Stored paths never hold keyed
/// segments (a merge refuses them), so nothing stored is misread; storing
/// keyed paths needs a log format version of its own.
fn parse_stored(text: &str) -> Result<KPath, KPathError> {
    let parsed = KPath::parse(text);
    let legacy = match &parsed {
        Ok(p) => p.segs.iter().any(|s| matches!(s, Segment::Key(_))),
        Err(_) => text.starts_with('$') || text.contains(['(', ')']),
    };
    if !legacy {
        return parsed;
    }
    let mut segs = Vec::new();
    let mut p = Parser { text, pos: 0 };
    if !matches!(p.peek(), Some('[' | '{')) {
        segs.push(p.legacy_field()?);
    }
    while let Some(c) = p.peek() {
        match c {
            '.' => {
                p.pos += 1;
                segs.push(p.legacy_field()?);
            }
            '[' => segs.push(Segment::Index(p.index('[', ']')?)),
            '{' => segs.push(Segment::Sparse(p.index('{', '}')?)),
            _ => return Err(p.err(p.pos, format!("unexpected {c:?}"))),
        }
    }
    Ok(KPath { segs })
}

impl Parser<'_> {
    /// A field of the pre-keyed grammar: quoted, or unquoted up to `.`, `[`
    /// or `{`, parentheses included.
    fn legacy_field(&mut self) -> Result<Segment, KPathError> {
        if matches!(self.peek(), Some('"' | '\'')) {
            return self.field();
        }
        let start = self.pos;
        let rest = &self.text[start..];
        let len = rest.find(['.', '[', '{']).unwrap_or(rest.len());
        let name = &rest[..len];
        if name.is_empty() || name == "*" {
            return Err(self.err(start, "expected a field name"));
        }
        if let Some((i, c)) = name
            .char_indices()
            .find(|&(_, c)| !lexical::is_literal_char(c) || matches!(c, ']' | '}'))
        {
            return Err(self.err(start + i, format!("{c:?} is not allowed in a field")));
        }
        self.pos += len;
        Ok(Segment::Field(name.to_owned()))
    }
}

impl<'de> Deserialize<'de> for KPath {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<KPath, D::Error> {
        let s = String::deserialize(d)?;
        parse_stored(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> KPath {
        KPath::parse(s).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn parse_and_print() {
        assert_eq!(p("a.b").to_string(), "a.b");
        assert_eq!(p("'a'.b").to_string(), "a.b");
        assert_eq!(p("a[007]").to_string(), "a[7]");
        assert_eq!(p("\"a b\".c").to_string(), "\"a b\".c");
        assert_eq!(p("a{3}.b").to_string(), "a{3}.b");
        assert_eq!(p("'1'").to_string(), "\"1\"");
        assert_eq!(p("[0].x").segments()[0], Segment::Index(0));
        assert_eq!(p("").to_string(), "");
        assert_eq!(p("users(jane).email").to_string(), "users(jane).email");
        assert_eq!(
            p("users('jane doe')").segments()[1],
            Segment::Key("jane doe".into())
        );
        assert_eq!(p("users('jane doe')").to_string(), "users(\"jane doe\")");
        assert_eq!(p("a(\"1\")").to_string(), "a(\"1\")");
        assert_eq!(p("\"$\".a").to_string(), "\"$\".a");
        assert_eq!(p("a.$").to_string(), "a.\"$\"");
        assert_eq!(p("$a").to_string(), "$a");
        assert_eq!(p("\"f(x)\"").segments(), &[Segment::Field("f(x)".into())]);
    }

    /// Log records written before keyed segments printed `f(x)` and `$`
    /// fields unquoted; they still read as those fields.
    #[test]
    fn stored_paths_keep_the_old_grammar() {
        for (text, want) in [
            (
                "f(x).a",
                vec![Segment::Field("f(x)".into()), Segment::Field("a".into())],
            ),
            (
                "$.a[1]",
                vec![
                    Segment::Field("$".into()),
                    Segment::Field("a".into()),
                    Segment::Index(1),
                ],
            ),
            ("a)b", vec![Segment::Field("a)b".into())]),
            (
                "a.b",
                vec![Segment::Field("a".into()), Segment::Field("b".into())],
            ),
        ] {
            assert_eq!(parse_stored(text), Ok(KPath::from_segments(want)), "{text}");
        }
        // What the printer writes now reads back the same through both.
        let p = KPath::from_segments(vec![
            Segment::Field("f(x)".into()),
            Segment::Field("$".into()),
        ]);
        assert_eq!(parse_stored(&p.to_string()), Ok(p));
        assert!(parse_stored("a..b").is_err());
    }

    /// Issue 18: `users(jane)` was read as one field named "users(jane)",
    /// and `$.a` as a field named `$`.
    #[test]
    fn keyed_and_dollar_paths_are_not_misread() {
        assert_eq!(
            p("users(jane)").segments(),
            &[Segment::Field("users".into()), Segment::Key("jane".into())]
        );
        for text in ["$", "$.f[3]", "$[0]", "$(k)"] {
            let e = KPath::parse(text).expect_err(text);
            assert!(e.message.contains('$'), "{text}: {e}");
        }
    }

    #[test]
    fn errors_name_the_offset() {
        for (text, offset) in [
            ("a.", 2),
            ("a..b", 2),
            ("a[", 1),
            ("a[]", 2),
            ("a[x]", 2),
            ("a[-1]", 2),
            ("a[99999999999]", 2),
            ("a b", 1),
            ("a.*", 2),
            ("a]", 1),
            ("a()", 2),
            ("a(", 1),
            ("a(*)", 2),
            ("a('x'y)", 5),
            ("a)", 1),
            ("a(b c)", 3),
        ] {
            let e = KPath::parse(text).expect_err(text);
            assert_eq!(e.offset, offset, "{text}: {e}");
        }
    }

    fn segment_strategy() -> impl proptest::strategy::Strategy<Value = Segment> {
        use proptest::prelude::*;
        let text = prop_oneof![
            3 => "[a-c]{1,3}",
            2 => "[a-c0-9 .()\\[\\]{}$*'\"<>|^`:#-]{0,6}",
            1 => any::<String>(),
        ];
        prop_oneof![
            text.clone().prop_map(Segment::Field),
            any::<u32>().prop_map(Segment::Index),
            any::<u32>().prop_map(Segment::Sparse),
            text.prop_map(Segment::Key),
        ]
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(512))]

        /// parse(print(p)) == p for every path, keyed segments included.
        #[test]
        fn every_path_round_trips(segs in proptest::collection::vec(segment_strategy(), 0..5)) {
            let path = KPath::from_segments(segs);
            let printed = path.to_string();
            proptest::prop_assert_eq!(KPath::parse(&printed), Ok(path), "printed {}", printed);
        }
    }

    #[test]
    fn order_and_ancestry() {
        let sorted: Vec<KPath> = [
            "", "a", "a.b", "a[0]", "a[2]", "a[10]", "a{0}", "a(a)", "a(b)", "a(b).c", "b",
        ]
        .iter()
        .map(|s| p(s))
        .collect();
        let mut shuffled = sorted.clone();
        shuffled.reverse();
        shuffled.sort();
        assert_eq!(shuffled, sorted);
        assert!(p("a").is_ancestor_of(&p("a.b")));
        assert!(!p("a").is_ancestor_of(&p("a")));
        assert!(p("a").is_prefix_of(&p("a")));
        assert!(KPath::root().is_ancestor_of(&p("x")));
        assert_eq!(p("a.b[1]").parent(), Some(p("a.b")));
        assert_eq!(p("a.b.c").strip_prefix(&p("a")), Some(p("b.c")));
    }
}
