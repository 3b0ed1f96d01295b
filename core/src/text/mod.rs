//! Tony text: parsing (JSON, flow and block style) and printing (the one-line
//! wire form and the block form).
//!
//! This module owns the grammar of Tony documents as text and the two
//! printed forms. It uses [`crate::lexical`] for every character-level
//! decision (what a literal may hold, how strings are quoted) so that text
//! and kinded paths never disagree. It never interprets tags (they are data
//! here) and never panics or recurses without bound on untrusted input.
//!
//! # Reading
//!
//! [`parse`] reads one document, [`parse_documents`] a stream of documents
//! separated by `---` lines; `Node: FromStr` is [`parse`]. Accepted:
//!
//! - JSON, and Tony flow syntax: literals (unquoted strings), `"…"` and `'…'`
//!   strings, optional commas (a trailing comma is allowed, `[,]` is not),
//!   `#` comments, tags `!name`, `!a.b`, `!key(id)`, `!insert(f(a,b))` before
//!   a value (a tag followed by `,`, `]` or `}` tags a `null`), int-keyed maps
//!   `{0: a, 42: b}` (sparse arrays), key sets `{a b}` = `{a: null, b: null}`
//!   and `{a !t b}` = `{a: !t null, b: null}`.
//! - Block style with indentation: `key: value` lines; a `key:` alone on its
//!   line followed by a deeper block (mapping, sequence or flow value) or by
//!   `- item` lines at the key's own indentation; `- item` sequences (items
//!   may start a mapping or a sequence on the dash line: `- a: 1` / `- - x`);
//!   `|` block literals (content indented two spaces past the owning key or
//!   dash, trailing newline kept, trailing blank lines dropped; `|-` chops the
//!   final newline; `|+` keeps every trailing newline); a tag alone after `key:` / `-` tags the block that
//!   follows (`items: !key(id)` then `- id: 1`); flow values (also spanning
//!   lines inside brackets) and comments anywhere outside strings. Tabs may
//!   not indent block content.
//!
//! Decisions:
//!
//! - Integers are `i64`; an integer literal outside `i64` is an error
//!   (never silently turned into a float). A number with `.` or an exponent
//!   is a float (`1` ≠ `1.0`); a float literal that overflows to infinity is
//!   an error.
//! - Non-finite floats print as `.nan`, `.inf` and `-.inf` and those three
//!   words read back as floats, so every node round-trips; the strings
//!   `".nan"`, `".inf"` are therefore always printed quoted.
//! - Keys are literals, quoted strings or unsigned integers (`u32`, giving
//!   [`Key::Index`]); `true`/`false`/`null` written as keys are field names.
//!   Mixing integer and string keys in one object, and duplicate keys, are
//!   errors.
//! - Tag names are ASCII letters, digits and `_-/+~$@%=*`; arguments are any
//!   text on one line with balanced parentheses. A tag is followed by a
//!   blank, a newline or `,` `]` `}`.
//! - A literal ends at `#` (a comment starts there even without a blank).
//!   Literals hold the ASCII symbols `^ < > | \`` as go-tony's do, but do
//!   not start with `< > | )`; `-x` (a dash and a non-digit) is read as a
//!   literal, as go-tony reads it, and printed quoted.
//! - Folded strings: a quoted string that starts its line and ends it is
//!   continued by quoted strings starting the following content lines at
//!   the same indentation; the parts are joined with nothing between them.
//!   In double quotes, `\` before a line break continues the string: the
//!   break and the next line's leading blanks are dropped.
//! - `<<` (go-tony's merge key) is read as the ordinary field key `<<`
//!   (printed `"<<"`); it is not a value, and there are no merge semantics.
//! - An empty document (only blanks and comments) is an error for [`parse`]
//!   and is skipped by [`parse_documents`].
//! - Nesting deeper than [`MAX_DEPTH`] is an error (no stack overflow).
//!
//! # Printing
//!
//! `Display` for [`Node`] is the wire form: one line, bracketed, `, `
//! between elements, `: ` after keys, `!tag ` before a value, strings and
//! field keys as literals whenever [`lexical::can_be_literal`] allows, else
//! quoted. [`Node::to_block_string`] is the block form for humans. Both read
//! back to the same node, for every node whose tags are well-formed tag text
//! and whose objects do not mix integer and string keys (the parser refuses
//! such objects).

mod parse;
mod print;

use std::fmt;
use std::str::FromStr;

#[cfg(doc)]
use crate::lexical;
#[cfg(doc)]
use crate::node::Key;
use crate::node::Node;

/// The deepest nesting [`parse`] accepts: arrays, objects and block
/// constructs inside each other (a tag alone on its line above a block counts
/// as one more level). Deeper input is a [`ParseError`].
///
/// The parser recurses once per level; in an unoptimised build a level of
/// block mappings costs about 4.6 KiB of stack, so 256 levels stay near
/// 1.2 MiB, inside the 2 MiB of a test or tokio worker thread (serde_json
/// stops at 128).
pub const MAX_DEPTH: usize = 256;

/// Tony text could not be read: where (1-based line and column, the column
/// counted in characters) and why.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("line {line}, column {column}: {message}")]
pub struct ParseError {
    /// 1-based line number.
    pub line: usize,
    /// 1-based column, in characters.
    pub column: usize,
    /// What was wrong, e.g. `expected ':'`.
    pub message: String,
}

/// Parses one Tony document (JSON, flow or block style). A leading `---` is
/// allowed; a second document is an error.
pub fn parse(input: &str) -> Result<Node, ParseError> {
    parse::parse_one(input)
}

/// Parses a stream of documents separated by `---` lines. Documents holding
/// only blanks and comments are skipped.
pub fn parse_documents(input: &str) -> Result<Vec<Node>, ParseError> {
    parse::parse_all(input)
}

impl FromStr for Node {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Node, ParseError> {
        parse(s)
    }
}

impl fmt::Display for Node {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = String::new();
        self.write_wire(&mut out);
        f.write_str(&out)
    }
}

impl Node {
    /// Appends the wire form (what `Display` prints) to `out`.
    pub fn write_wire(&self, out: &mut String) {
        print::wire(self, out);
    }

    /// Appends the wire form with one space, no comma, between elements:
    /// the form go-tony's encoder writes and the logd session protocol
    /// uses (`{a: 1 b: [x y]}`). It reads back to the same node.
    pub fn write_wire_spaced(&self, out: &mut String) {
        print::wire_sep(self, out, " ");
    }

    /// The block form for humans: nested objects and arrays on indented
    /// lines, scalars and empty containers inline, multi-line strings as `|`
    /// literals where that reads back exactly. Ends with a newline. Reads back
    /// to the same node.
    pub fn to_block_string(&self) -> String {
        let mut out = String::new();
        print::block(self, &mut out);
        out
    }
}
