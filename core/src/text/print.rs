//! The Tony text printers: the one-line wire form and the indented block
//! form, both appending to one `String` buffer.

use std::fmt::Write as _;

use crate::lexical;
use crate::node::{Key, Node, Value};

/// Appends the wire form of `node` to `out`.
pub(super) fn wire(node: &Node, out: &mut String) {
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
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                wire(item, out);
            }
            out.push(']');
        }
        Value::Object(entries) => {
            out.push('{');
            for (i, (k, v)) in entries.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_key(out, k);
                out.push_str(": ");
                wire(v, out);
            }
            out.push('}');
        }
    }
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

/// Appends the block form of `node` to `out`.
pub(super) fn block(node: &Node, out: &mut String) {
    match &node.value {
        Value::Object(entries) if !entries.is_empty() => {
            if let Some(tag) = &node.tag {
                let _ = writeln!(out, "{tag}");
            }
            entries_block(entries, 0, false, out);
        }
        Value::Array(items) if !items.is_empty() => {
            if let Some(tag) = &node.tag {
                let _ = writeln!(out, "{tag}");
            }
            seq_block(items, 0, false, out);
        }
        _ => {
            wire(node, out);
            out.push('\n');
        }
    }
}

fn indent(out: &mut String, n: usize) {
    out.extend(std::iter::repeat_n(' ', n));
}

/// `key: value` lines at indentation `at`; the first line's indentation is
/// already written when `inline_first` (it follows a `- `).
fn entries_block(entries: &[(Key, Node)], at: usize, inline_first: bool, out: &mut String) {
    for (i, (k, v)) in entries.iter().enumerate() {
        if i > 0 || !inline_first {
            indent(out, at);
        }
        write_key(out, k);
        out.push(':');
        value_block(v, at, false, out);
    }
}

/// `- item` lines at indentation `at`; see [`entries_block`] for `inline_first`.
fn seq_block(items: &[Node], at: usize, inline_first: bool, out: &mut String) {
    for (i, item) in items.iter().enumerate() {
        if i > 0 || !inline_first {
            indent(out, at);
        }
        out.push('-');
        value_block(item, at, true, out);
    }
}

/// The value after `key:` or `-` written at column `owner`, through the end
/// of its last line.
fn value_block(v: &Node, owner: usize, item: bool, out: &mut String) {
    match &v.value {
        Value::Object(entries) if !entries.is_empty() => match &v.tag {
            Some(tag) => {
                let _ = writeln!(out, " {tag}");
                entries_block(entries, owner + 2, false, out);
            }
            None if item => {
                out.push(' ');
                entries_block(entries, owner + 2, true, out);
            }
            None => {
                out.push('\n');
                entries_block(entries, owner + 2, false, out);
            }
        },
        Value::Array(items) if !items.is_empty() => {
            // Under a key, a sequence sits at the key's own indentation.
            let at = if item { owner + 2 } else { owner };
            match &v.tag {
                Some(tag) => {
                    let _ = writeln!(out, " {tag}");
                    seq_block(items, at, false, out);
                }
                None if item => {
                    out.push(' ');
                    seq_block(items, at, true, out);
                }
                None => {
                    out.push('\n');
                    seq_block(items, at, false, out);
                }
            }
        }
        Value::String(s) if literal_block_ok(s) => {
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
