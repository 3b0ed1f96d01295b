//! The Tony text printers: the one-line wire form and the indented block
//! form, both appending to one `String` buffer. Both walk the tree with an
//! explicit stack, so they never recurse (a node built in code may be nested
//! far deeper than the parser accepts).

use std::fmt::Write as _;

use crate::lexical;
use crate::node::{Key, Node, Value};

/// A container being printed in wire form: the children not yet written.
enum WireFrame<'a> {
    Items(std::slice::Iter<'a, Node>, bool),
    Entries(std::slice::Iter<'a, (Key, Node)>, bool),
}

/// Appends the wire form of `node` to `out`. Iterative: nesting of any depth
/// prints without recursion.
pub(super) fn wire(node: &Node, out: &mut String) {
    wire_sep(node, out, ", ");
}

/// [`wire`] with `sep` between elements (`" "` for the Go server's form).
pub(super) fn wire_sep(node: &Node, out: &mut String, sep: &str) {
    let mut stack: Vec<WireFrame<'_>> = Vec::new();
    stack.extend(wire_open(node, out));
    while let Some(top) = stack.last_mut() {
        let next = match top {
            WireFrame::Items(iter, first) => match iter.next() {
                Some(item) => {
                    if !std::mem::replace(first, false) {
                        out.push_str(sep);
                    }
                    Some(item)
                }
                None => {
                    out.push(']');
                    None
                }
            },
            WireFrame::Entries(iter, first) => match iter.next() {
                Some((k, v)) => {
                    if !std::mem::replace(first, false) {
                        out.push_str(sep);
                    }
                    write_key(out, k);
                    out.push_str(": ");
                    Some(v)
                }
                None => {
                    out.push('}');
                    None
                }
            },
        };
        match next {
            Some(child) => stack.extend(wire_open(child, out)),
            None => {
                stack.pop();
            }
        }
    }
}

/// Writes the tag and, for a scalar or empty container, the whole value of
/// `node`; for a non-empty container writes its opening bracket and returns
/// the frame that prints the children.
fn wire_open<'a>(node: &'a Node, out: &mut String) -> Option<WireFrame<'a>> {
    if let Some(tag) = &node.tag {
        out.push('!');
        out.push_str(tag.as_str());
        out.push(' ');
    }
    match &node.value {
        Value::Null => out.push_str("null"),
        Value::Bool(true) => out.push_str("true"),
        Value::Bool(false) => out.push_str("false"),
        Value::Int(i) => write_int(out, *i),
        Value::Float(f) => write_float(out, *f),
        Value::String(s) => lexical::write_string(out, s),
        Value::Array(items) if items.is_empty() => out.push_str("[]"),
        Value::Object(entries) if entries.is_empty() => out.push_str("{}"),
        Value::Array(items) => {
            out.push('[');
            return Some(WireFrame::Items(items.iter(), true));
        }
        Value::Object(entries) => {
            out.push('{');
            return Some(WireFrame::Entries(entries.iter(), true));
        }
    }
    None
}

fn write_int(out: &mut String, i: i64) {
    // Writing to a String cannot fail.
    let _ = write!(out, "{i}");
}

/// Floats print so they read back as floats: `1.0`, `2.5`, `1e300`
/// (Rust's shortest round-trip `Debug` form); non-finite ones as `.nan`,
/// `.inf`, `-.inf`.
fn write_float(out: &mut String, f: f64) {
    if f.is_nan() {
        out.push_str(".nan");
    } else if f.is_infinite() {
        out.push_str(if f > 0.0 { ".inf" } else { "-.inf" });
    } else {
        let _ = write!(out, "{f:?}");
    }
}

fn write_key(out: &mut String, k: &Key) {
    match k {
        Key::Field(s) => lexical::write_string(out, s),
        Key::Index(i) => {
            let _ = write!(out, "{i}");
        }
    }
}

/// A block being printed: `key: value` lines (`Entries`) or `- item` lines
/// (`Seq`) at indentation `at`, with the children not yet written. The
/// first line's indentation is already written when `inline_first` (it
/// follows a `- `).
enum BlockFrame<'a> {
    Entries {
        iter: std::slice::Iter<'a, (Key, Node)>,
        at: usize,
        inline_first: bool,
    },
    Seq {
        iter: std::slice::Iter<'a, Node>,
        at: usize,
        inline_first: bool,
    },
}

/// Appends the block form of `node` to `out`. Iterative: nesting of any
/// depth prints without recursion.
pub(super) fn block(node: &Node, out: &mut String) {
    let first = match &node.value {
        Value::Object(entries) if !entries.is_empty() => {
            if let Some(tag) = &node.tag {
                let _ = writeln!(out, "{tag}");
            }
            BlockFrame::Entries {
                iter: entries.iter(),
                at: 0,
                inline_first: false,
            }
        }
        Value::Array(items) if !items.is_empty() => {
            if let Some(tag) = &node.tag {
                let _ = writeln!(out, "{tag}");
            }
            BlockFrame::Seq {
                iter: items.iter(),
                at: 0,
                inline_first: false,
            }
        }
        _ => {
            wire(node, out);
            out.push('\n');
            return;
        }
    };
    let mut stack = vec![first];
    while let Some(top) = stack.last_mut() {
        let next = match top {
            BlockFrame::Entries {
                iter,
                at,
                inline_first,
            } => iter.next().map(|(k, v)| {
                let inline = std::mem::replace(inline_first, false);
                if !inline {
                    indent(out, *at);
                }
                write_key(out, k);
                out.push(':');
                (v, *at, false, inline)
            }),
            BlockFrame::Seq {
                iter,
                at,
                inline_first,
            } => iter.next().map(|item| {
                let inline = std::mem::replace(inline_first, false);
                if !inline {
                    indent(out, *at);
                }
                out.push('-');
                (item, *at, true, inline)
            }),
        };
        match next {
            Some((v, owner, item, inline)) => {
                stack.extend(value_block(v, owner, item, inline, out));
            }
            None => {
                stack.pop();
            }
        }
    }
}

fn indent(out: &mut String, n: usize) {
    out.extend(std::iter::repeat_n(' ', n));
}

/// Writes what follows a non-empty container's key or `-`: its tag and a
/// line break, or (for an untagged sequence item) one space so the first
/// entry sits on the item's own line. Returns whether it does.
fn open_container(v: &Node, item: bool, out: &mut String) -> bool {
    match &v.tag {
        Some(tag) => {
            let _ = writeln!(out, " {tag}");
            false
        }
        None if item => {
            out.push(' ');
            true
        }
        None => {
            out.push('\n');
            false
        }
    }
}

/// The value after `key:` or `-` written at column `owner`: writes it
/// through the end of its last line, or, for a non-empty container, writes
/// what precedes its lines and returns the frame that prints them. `inline`:
/// the key or dash follows a `- ` on the same line, where go-tony indents a
/// `|` literal's content past the line's first dash and logd past the key,
/// so such a string is printed quoted instead.
fn value_block<'a>(
    v: &'a Node,
    owner: usize,
    item: bool,
    inline: bool,
    out: &mut String,
) -> Option<BlockFrame<'a>> {
    match &v.value {
        Value::Object(entries) if !entries.is_empty() => {
            let inline_first = open_container(v, item, out);
            return Some(BlockFrame::Entries {
                iter: entries.iter(),
                at: owner + 2,
                inline_first,
            });
        }
        Value::Array(items) if !items.is_empty() => {
            // Under a key, a sequence sits at the key's own indentation.
            let at = if item { owner + 2 } else { owner };
            let inline_first = open_container(v, item, out);
            return Some(BlockFrame::Seq {
                iter: items.iter(),
                at,
                inline_first,
            });
        }
        Value::String(s) if !inline && literal_block_ok(s) => {
            out.push(' ');
            if let Some(tag) = &v.tag {
                let _ = write!(out, "{tag} ");
            }
            let (body, header) = match s.strip_suffix('\n') {
                Some(body) => (body, "|\n"),
                None => (s.as_str(), "|-\n"),
            };
            out.push_str(header);
            for line in body.split('\n') {
                if !line.is_empty() {
                    indent(out, owner + 2);
                    out.push_str(line);
                }
                out.push('\n');
            }
        }
        _ => {
            out.push(' ');
            wire(v, out);
            out.push('\n');
        }
    }
    None
}

/// Whether `s` prints as a `|` / `|-` block literal and reads back exactly:
/// it has more than one line (or ends with one newline), its last line is not
/// empty, and it holds no control characters besides newline and tab.
fn literal_block_ok(s: &str) -> bool {
    let body = s.strip_suffix('\n').unwrap_or(s);
    s.contains('\n')
        && !body.is_empty()
        && !body.ends_with('\n')
        && s.chars().all(|c| c == '\n' || c == '\t' || !c.is_control())
}
