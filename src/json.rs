//! logd's JSON mapping of documents: [`to_string`] and [`from_str`].
//!
//! Object keys keep their stored order (both ways; duplicate keys in JSON
//! input are refused). What JSON cannot say is written as a one-key (for a
//! tag, two-key) object whose first key starts with `!`:
//!
//! | Tony | JSON |
//! |---|---|
//! | a tagged node `!t v` | `{"!tag": "t", "value": v}` |
//! | a NaN or infinite float | `{"!float": "NaN"}`, `{"!float": "Infinity"}`, `{"!float": "-Infinity"}` |
//! | a sparse array `{0: a, 7: b}` | `{"!sparse": {"0": a, "7": b}}` |
//! | an object that would read as one of these | `{"!object": {...}}` |
//!
//! Floats always print with a fraction or exponent (`1.0`), so they read
//! back as floats; integers as integers. [`from_str`] undoes the mapping,
//! so `from_str(&to_string(n)?)? == n` (NaN aside, which equals nothing).
//! This module only converts text; it never touches the store.

use std::fmt::Write as _;

use logd_core::node::{Key, Node, Tag, Value};

/// Why a node could not be written as JSON, or JSON text read as a node.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct JsonError(String);

/// How deep [`to_string`] goes before it gives up (parsed text stops earlier).
const MAX_JSON_DEPTH: usize = 1000;

/// The node as JSON text in logd's mapping (see the module docs); nodes
/// nested deeper than 1,000 levels are an error.
pub fn to_string(node: &Node) -> Result<String, JsonError> {
    let mut out = String::new();
    write_json(&mut out, node, 0).map_err(JsonError)?;
    Ok(out)
}

/// A JSON string literal.
fn json_str(s: &str) -> String {
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
pub fn from_str(text: &str) -> Result<Node, JsonError> {
    let j: J = serde_json::from_str(text).map_err(|e| JsonError(e.to_string()))?;
    finish(j).map_err(JsonError)
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
        let node = logd_core::text::parse(text).unwrap();
        let json = to_string(&node).unwrap();
        let back = from_str(&json).unwrap();
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
        let json = to_string(&nan).unwrap();
        assert_eq!(json, "{\"!float\":\"NaN\"}");
        assert!(matches!(from_str(&json).unwrap().value, Value::Float(f) if f.is_nan()));
        let inf = Node::new(Value::Float(f64::NEG_INFINITY));
        assert_eq!(from_str(&to_string(&inf).unwrap()).unwrap(), inf);
    }

    #[test]
    fn strict_json_refuses_duplicates_and_tony() {
        assert!(from_str("{\"a\": 1, \"a\": 2}").is_err());
        assert!(from_str("{a: 1}").is_err());
        assert_eq!(
            to_string(&from_str("{\"b\": 1, \"a\": 2}").unwrap()).unwrap(),
            "{\"b\":1,\"a\":2}"
        );
    }
}
