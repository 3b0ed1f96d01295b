//! What the commands print and how they end: stdout lines that end quietly
//! on a broken pipe, the exit codes, and logd's JSON mapping of documents.
//!
//! # Exit codes
//!
//! | code | meaning |
//! |---|---|
//! | 0 | success |
//! | 1 | failure (I/O, a damaged store, a patch that does not apply, `check` found problems) |
//! | 2 | usage error or bad input (arguments, DATA, paths, a commit past the current one) |
//! | 3 | the condition did not hold: not matched (`--match`) or stale (`--seq`); nothing was written |
//! | 4 | absent: nothing at the path (at that commit) |
//! | 5 | the store is locked by another process |
//!
//! # JSON mapping
//!
//! Keys keep their stored order. What JSON cannot say is written as a
//! one-key (or, for a tag, two-key) object whose first key starts with `!`:
//!
//! | Tony | JSON |
//! |---|---|
//! | a tagged node `!t v` | `{"!tag": "t", "value": v}` |
//! | a NaN or infinite float | `{"!float": "NaN"}`, `{"!float": "Infinity"}`, `{"!float": "-Infinity"}` |
//! | a sparse array `{0: a, 7: b}` | `{"!sparse": {"0": a, "7": b}}` |
//! | an object that would read as one of these | `{"!object": {...}}` |
//!
//! Floats always print with a fraction or exponent (`1.0`), so they read
//! back as floats; integers as integers. Reading JSON (`--json` DATA,
//! `import --json`) undoes the mapping, so it round-trips.

use std::fmt::Write as _;
use std::io::Write as _;
use std::process::ExitCode;

use logd::{Key, Node, Tag, Value};

/// How a command ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Code {
    /// 0.
    Ok = 0,
    /// 1.
    Failure = 1,
    /// 2.
    Usage = 2,
    /// 3.
    NotMatched = 3,
    /// 4.
    Absent = 4,
    /// 5.
    Locked = 5,
}

impl From<Code> for ExitCode {
    fn from(c: Code) -> ExitCode {
        ExitCode::from(c as u8)
    }
}

/// A command's error: its exit code and one line for stderr (`None`: end
/// quietly, as on a broken pipe).
#[derive(Debug)]
pub struct CliError {
    /// The exit code.
    pub code: Code,
    /// The line printed after `logd: `.
    pub message: Option<String>,
}

impl CliError {
    /// Exit 1.
    pub fn failure(message: impl Into<String>) -> CliError {
        CliError {
            code: Code::Failure,
            message: Some(message.into()),
        }
    }

    /// Exit 2.
    pub fn usage(message: impl Into<String>) -> CliError {
        CliError {
            code: Code::Usage,
            message: Some(message.into()),
        }
    }

    /// The store error, with `context` in front, and its exit code.
    pub fn store(context: &str, e: logd::Error) -> CliError {
        let code = match &e {
            logd::Error::Locked { .. } => Code::Locked,
            logd::Error::FutureCommit { .. }
            | logd::Error::Parse { .. }
            | logd::Error::InvalidPath { .. } => Code::Usage,
            _ => Code::Failure,
        };
        let message = if context.is_empty() {
            e.to_string()
        } else {
            format!("{context}: {e}")
        };
        CliError {
            code,
            message: Some(message),
        }
    }
}

impl From<logd::Error> for CliError {
    fn from(e: logd::Error) -> CliError {
        CliError::store("", e)
    }
}

/// Writes one line to stdout; a closed pipe ends the command quietly.
pub fn line(text: &str) -> Result<(), CliError> {
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let mut buf = String::with_capacity(text.len() + 1);
    buf.push_str(text);
    buf.push('\n');
    out.write_all(buf.as_bytes())
        .and_then(|()| out.flush())
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                CliError {
                    code: Code::Ok,
                    message: None,
                }
            } else {
                CliError::failure(format!("cannot write to stdout: {e}"))
            }
        })
}

/// `line(format!(...))?`.
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::cli::out::line(&format!($($arg)*))
    };
}
pub(crate) use out;

/// How deep [`to_json`] goes before it gives up (parsed text stops earlier).
const MAX_JSON_DEPTH: usize = 1000;

/// The node as JSON text in logd's mapping (see the module docs).
pub fn to_json(node: &Node) -> Result<String, CliError> {
    let mut out = String::new();
    write_json(&mut out, node, 0).map_err(CliError::failure)?;
    Ok(out)
}

/// A JSON string literal.
pub fn json_str(s: &str) -> String {
    // Serialising a string cannot fail.
    serde_json::to_string(s).unwrap_or_default()
}

fn special_shape(kv: &[(Key, Node)]) -> bool {
    let names: Vec<&str> = kv
        .iter()
        .map(|(k, _)| match k {
            Key::Field(f) => f.as_str(),
            Key::Index(_) => "",
        })
        .collect();
    matches!(
        names.as_slice(),
        ["!tag", "value"] | ["!float"] | ["!sparse"] | ["!object"]
    )
}

fn write_json(out: &mut String, node: &Node, depth: usize) -> Result<(), String> {
    if depth > MAX_JSON_DEPTH {
        return Err(format!(
            "cannot print as JSON: nesting deeper than {MAX_JSON_DEPTH} levels"
        ));
    }
    if let Some(tag) = &node.tag {
        let _ = write!(out, "{{\"!tag\":{},\"value\":", json_str(tag.as_str()));
        write_value(out, &node.value, depth)?;
        out.push('}');
        return Ok(());
    }
    write_value(out, &node.value, depth)
}

fn write_value(out: &mut String, value: &Value, depth: usize) -> Result<(), String> {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Int(i) => {
            let _ = write!(out, "{i}");
        }
        Value::Float(f) => match serde_json::Number::from_f64(*f) {
            Some(n) => {
                let _ = write!(out, "{n}");
            }
            None => {
                let name = if f.is_nan() {
                    "NaN"
                } else if *f > 0.0 {
                    "Infinity"
                } else {
                    "-Infinity"
                };
                let _ = write!(out, "{{\"!float\":\"{name}\"}}");
            }
        },
        Value::String(s) => out.push_str(&json_str(s)),
        Value::Array(items) => {
            out.push('[');
            for (i, n) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_json(out, n, depth + 1)?;
            }
            out.push(']');
        }
        Value::Object(kv) => {
            let sparse = !kv.is_empty() && kv.iter().all(|(k, _)| matches!(k, Key::Index(_)));
            let wrap = if sparse {
                Some("!sparse")
            } else if special_shape(kv) {
                Some("!object")
            } else {
                None
            };
            if let Some(w) = wrap {
                let _ = write!(out, "{{\"{w}\":");
            }
            out.push('{');
            for (i, (k, n)) in kv.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&json_str(&k.to_string()));
                out.push(':');
                write_json(out, n, depth + 1)?;
            }
            out.push('}');
            if wrap.is_some() {
                out.push('}');
            }
        }
    }
    Ok(())
}

/// Parses JSON text strictly (object key order kept, duplicate keys
/// refused) and undoes logd's mapping.
pub fn from_json(text: &str) -> Result<Node, String> {
    let j: J = serde_json::from_str(text).map_err(|e| e.to_string())?;
    finish(j)
}

/// A node read from JSON; `raw` marks an object whose own level is not yet
/// mapped back (its parent decides: `!object` keeps it as it is).
struct J {
    node: Node,
    raw: bool,
}

fn finish(j: J) -> Result<Node, String> {
    if !j.raw {
        return Ok(j.node);
    }
    let (_, value) = j.node.into_parts();
    let Value::Object(mut kv) = value else {
        return Err("internal: raw JSON node is not an object".into());
    };
    let names: Vec<String> = kv.iter().map(|(k, _)| k.to_string()).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    match names.as_slice() {
        ["!tag", "value"] => {
            let inner = kv.pop().map(|(_, n)| n).unwrap_or_else(Node::null);
            let tag = kv.pop().map(|(_, n)| n).unwrap_or_else(Node::null);
            let Value::String(tag) = &tag.value else {
                return Err("\"!tag\" must be a string".into());
            };
            if inner.tag.is_some() {
                return Err("\"!tag\" value is tagged again: join the tags with '.'".into());
            }
            Ok(Node::new(inner.into_parts().1).with_tag(Some(Tag::new(tag.clone()))))
        }
        ["!float"] => match kv.pop().map(|(_, n)| n.into_parts().1) {
            Some(Value::String(s)) if s == "NaN" => Ok(Node::new(Value::Float(f64::NAN))),
            Some(Value::String(s)) if s == "Infinity" => Ok(Node::new(Value::Float(f64::INFINITY))),
            Some(Value::String(s)) if s == "-Infinity" => {
                Ok(Node::new(Value::Float(f64::NEG_INFINITY)))
            }
            _ => Err("\"!float\" must be \"NaN\", \"Infinity\" or \"-Infinity\"".into()),
        },
        ["!sparse"] | ["!object"] => Ok(kv.pop().map(|(_, n)| n).unwrap_or_else(Node::null)),
        _ => Ok(Node::new(Value::Object(kv))),
    }
}

impl<'de> serde::Deserialize<'de> for J {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<J, D::Error> {
        d.deserialize_any(Visit)
    }
}

struct Visit;

fn done(value: Value) -> J {
    J {
        node: Node::new(value),
        raw: false,
    }
}

impl<'de> serde::de::Visitor<'de> for Visit {
    type Value = J;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("JSON")
    }
    fn visit_unit<E>(self) -> Result<J, E> {
        Ok(done(Value::Null))
    }
    fn visit_bool<E>(self, v: bool) -> Result<J, E> {
        Ok(done(Value::Bool(v)))
    }
    fn visit_i64<E>(self, v: i64) -> Result<J, E> {
        Ok(done(Value::Int(v)))
    }
    fn visit_u64<E>(self, v: u64) -> Result<J, E> {
        Ok(done(match i64::try_from(v) {
            Ok(i) => Value::Int(i),
            Err(_) => Value::Float(v as f64),
        }))
    }
    fn visit_f64<E>(self, v: f64) -> Result<J, E> {
        Ok(done(Value::Float(v)))
    }
    fn visit_str<E>(self, v: &str) -> Result<J, E> {
        Ok(done(Value::String(v.to_owned())))
    }
    fn visit_string<E>(self, v: String) -> Result<J, E> {
        Ok(done(Value::String(v)))
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<J, A::Error> {
        let mut items = Vec::new();
        while let Some(j) = seq.next_element::<J>()? {
            items.push(finish(j).map_err(serde::de::Error::custom)?);
        }
        Ok(done(Value::Array(items)))
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<J, A::Error> {
        let mut kv: Vec<(Key, Node)> = Vec::new();
        let mut seen = std::collections::HashSet::new();
        while let Some(k) = map.next_key::<String>()? {
            if !seen.insert(k.clone()) {
                return Err(serde::de::Error::custom(format!("duplicate key {k:?}")));
            }
            let j: J = map.next_value()?;
            let special = matches!(k.as_str(), "!sparse" | "!object");
            let node = if special && j.raw {
                // Its level is kept as it is, keys as they are (below).
                let (_, v) = j.node.into_parts();
                let Value::Object(inner) = v else {
                    return Err(serde::de::Error::custom("internal: raw node"));
                };
                let inner = if k == "!sparse" {
                    inner
                        .into_iter()
                        .map(|(key, n)| {
                            let s = key.to_string();
                            s.parse::<u32>()
                                .map(|i| (Key::Index(i), n))
                                .map_err(|_| format!("\"!sparse\" key {s:?} is not an index"))
                        })
                        .collect::<Result<Vec<_>, _>>()
                        .map_err(serde::de::Error::custom)?
                } else {
                    inner
                };
                Node::new(Value::Object(inner))
            } else if special {
                return Err(serde::de::Error::custom(format!(
                    "\"{k}\" must hold an object"
                )));
            } else {
                finish(j).map_err(serde::de::Error::custom)?
            };
            kv.push((Key::Field(k), node));
        }
        Ok(J {
            node: Node::new(Value::Object(kv)),
            raw: true,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round(text: &str) {
        let node = logd::text::parse(text).unwrap();
        let json = to_json(&node).unwrap();
        let back = from_json(&json).unwrap();
        assert_eq!(back, node, "{text} -> {json}");
    }

    #[test]
    fn mapping_round_trips_tags_sparse_floats_and_order() {
        round("{z: 1, a: [1, 2.0, \"x\"], m: null}");
        round("{a: !foo {b: !bar 1}, c: !baz(x) [true]}");
        round("{s: {0: a, 7: b}}");
        round("{\"!float\": 1}");
        round("{\"!tag\": x, value: 1}");
        let nan = Node::new(Value::Float(f64::NAN));
        let json = to_json(&nan).unwrap();
        assert_eq!(json, "{\"!float\":\"NaN\"}");
        assert!(matches!(from_json(&json).unwrap().value, Value::Float(f) if f.is_nan()));
        let inf = Node::new(Value::Float(f64::NEG_INFINITY));
        assert_eq!(from_json(&to_json(&inf).unwrap()).unwrap(), inf);
    }

    #[test]
    fn strict_json_refuses_duplicates_and_tony() {
        assert!(from_json("{\"a\": 1, \"a\": 2}").is_err());
        assert!(from_json("{a: 1}").is_err());
        assert_eq!(
            to_json(&from_json("{\"b\": 1, \"a\": 2}").unwrap()).unwrap(),
            "{\"b\":1,\"a\":2}"
        );
    }
}
