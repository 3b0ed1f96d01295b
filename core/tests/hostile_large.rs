//! Hostile size: an object of 1,000,000 keys (16 MB of wire text) parses
//! from its wire text, prints, takes a one-key patch and drops in reasonable
//! time (under a second in the test profile). Timings are printed
//! (`--nocapture`).

use std::time::Instant;

use logd_core::patch::apply_owned;
use logd_core::{Key, Node, Value, text};

#[test]
fn object_with_many_keys() {
    let n: usize = 1_000_000;
    let mut wire = String::from("{");
    for i in 0..n {
        if i > 0 {
            wire.push_str(", ");
        }
        wire.push_str(&format!("k{i}: {i}"));
    }
    wire.push('}');

    let t = Instant::now();
    let doc = text::parse(&wire).unwrap();
    let parse = t.elapsed();
    let Value::Object(kv) = &doc.value else {
        panic!("not an object")
    };
    assert_eq!(kv.len(), n);

    let t = Instant::now();
    let printed = doc.to_string();
    let print = t.elapsed();
    assert_eq!(printed, wire);

    let t = Instant::now();
    let block = doc.to_block_string();
    let block_time = t.elapsed();
    assert_eq!(block.lines().count(), n);

    let last = format!("k{}", n - 1);
    let patch = Node::object([(last.as_str(), Node::string("changed"))]);
    let t = Instant::now();
    let patched = apply_owned(Some(doc), &patch).unwrap().unwrap();
    let apply = t.elapsed();
    assert_eq!(patched.field(&last), Some(&Node::string("changed")));
    assert_eq!(patched.get(&Key::Field("k0".into())), Some(&Node::int(0)));

    let t = Instant::now();
    drop(patched);
    let drop_time = t.elapsed();
    eprintln!(
        "{n} keys ({} bytes of wire text): parse {parse:?}, print {print:?}, block print {block_time:?}, \
         apply one-key patch {apply:?}, drop {drop_time:?}",
        wire.len()
    );
}

/// The same shape as a one-line JSON document: quoted keys and strings.
/// Each quoted string once rescanned its whole line (to see whether it
/// could start a folded string), which made 40,000 entries take 13 s.
#[test]
fn one_line_json_with_many_strings() {
    let n: usize = 200_000;
    let mut wire = String::from("{");
    for i in 0..n {
        if i > 0 {
            wire.push_str(", ");
        }
        wire.push_str(&format!("\"k{i}\": {{\"name\": \"user {i}\"}}"));
    }
    wire.push('}');
    let t = Instant::now();
    let doc = text::parse(&wire).unwrap();
    println!("parse of {n} quoted entries on one line: {:?}", t.elapsed());
    let Value::Object(kv) = &doc.value else {
        panic!("not an object")
    };
    assert_eq!(kv.len(), n);
    assert_eq!(kv[n - 1].0, Key::Field(format!("k{}", n - 1)));
}
