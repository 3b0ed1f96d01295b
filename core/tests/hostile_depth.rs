//! Hostile depth: text nested 10,000 and 100,000 levels deep must be a clean
//! parse error, a path of 100,000 segments must parse, and a node nested
//! 100,000 levels deep (built in code) must survive every operation of the
//! crate on a 2 MiB thread stack (the size of a tokio worker's) — each one
//! either works or returns an error, none overflows the stack.

use std::time::Instant;

use logd_core::node::{JsonError, MAX_DEBUG_DEPTH, MAX_SERDE_DEPTH};
use logd_core::patch::{apply, matches, trim};
use logd_core::text::{self, MAX_DEPTH};
use logd_core::{KPath, Key, Node, Value, index};

const SMALL_STACK: usize = 2 << 20;

/// Runs `f` on a thread with a 2 MiB stack and propagates its panics (a stack
/// overflow aborts the whole test process, which fails the test too).
fn on_small_stack<F: FnOnce() + Send + 'static>(f: F) {
    on_stack(SMALL_STACK, f)
}

fn on_stack<F: FnOnce() + Send + 'static>(size: usize, f: F) {
    let handle = std::thread::Builder::new()
        .stack_size(size)
        .spawn(f)
        .unwrap();
    if let Err(e) = handle.join() {
        std::panic::resume_unwind(e);
    }
}

/// `{a: [!t {a: [ ... null ... ]}]}`: objects, arrays and tags alternate,
/// `depth` nodes deep in all.
fn deep(depth: usize) -> Node {
    let mut n = Node::int(7);
    for i in 0..depth {
        n = match i % 3 {
            0 => Node::object([("a", n)]),
            1 => Node::array([n]),
            _ => Node::tagged("t", Value::Object(vec![(Key::Index(0), n)])),
        };
    }
    n
}

fn assert_too_deep(input: &str) {
    match text::parse(input) {
        Ok(_) => panic!("input of {} bytes parsed", input.len()),
        Err(e) => assert!(
            e.message.contains("nesting deeper than"),
            "unexpected error: {e}"
        ),
    }
}

#[test]
fn deeply_nested_text_is_a_clean_error() {
    on_small_stack(|| {
        for n in [MAX_DEPTH + 1, 10_000, 100_000] {
            assert_too_deep(&"[".repeat(n));
            assert_too_deep(&format!("{}1{}", "[".repeat(n), "]".repeat(n)));
            assert_too_deep(&format!("{}1{}", "{a: ".repeat(n), "}".repeat(n)));
            assert_too_deep(&"{\"a\":".repeat(n));
            assert_too_deep(&format!("{}null", "!t [".repeat(n)));
            assert_too_deep(&format!("{}x\n", "- ".repeat(n)));
        }
        // Block indentation grows quadratically; 2,000 levels is 4 MB of text.
        let mut block = String::new();
        for i in 0..2_000 {
            block.push_str(&" ".repeat(2 * i));
            block.push_str("a:\n");
        }
        block.push_str(&" ".repeat(4_000));
        block.push_str("x\n");
        assert_too_deep(&block);
        // Exactly at the limit still parses.
        let ok = format!("{}1{}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
        assert!(text::parse(&ok).is_ok());
    });
}

#[test]
fn path_of_100k_segments_parses() {
    on_small_stack(|| {
        let n = 100_000;
        let mut s = String::from("a");
        for i in 0..n - 1 {
            match i % 3 {
                0 => s.push_str(".b"),
                1 => s.push_str("[3]"),
                _ => s.push_str("{4}"),
            }
        }
        let t = Instant::now();
        let p = KPath::parse(&s).unwrap();
        assert_eq!(p.segments().len(), n);
        assert_eq!(p.to_string(), s);
        // Broken at the very end: a clean error with the right offset.
        let bad = format!("{s}[");
        let e = KPath::parse(&bad).unwrap_err();
        assert!(e.offset >= s.len() - 1, "offset {}", e.offset);
        eprintln!(
            "kpath: 100k segments parsed and printed in {:?}",
            t.elapsed()
        );
    });
}

#[test]
fn node_100k_deep_survives_every_operation() {
    on_small_stack(|| {
        let n = 100_000;
        let t = Instant::now();
        let d = deep(n);
        let build = t.elapsed();

        let t = Instant::now();
        let c = d.clone();
        let clone = t.elapsed();
        let t = Instant::now();
        assert!(c == d);
        let eq = t.elapsed();
        // A difference at the very bottom is found.
        let mut other = deep(n - 1);
        other = Node::tagged("t", Value::Object(vec![(Key::Index(0), other)]));
        assert!(other != d);
        let mut bottom_differs = deep(0);
        bottom_differs.value = Value::Int(8);
        for i in 0..n {
            bottom_differs = match i % 3 {
                0 => Node::object([("a", bottom_differs)]),
                1 => Node::array([bottom_differs]),
                _ => Node::tagged("t", Value::Object(vec![(Key::Index(0), bottom_differs)])),
            };
        }
        assert!(bottom_differs != d);
        drop(bottom_differs);

        let t = Instant::now();
        let wire = d.to_string();
        let display = t.elapsed();
        assert!(wire.starts_with("{a: !t {0: [{a: "), "{}", &wire[..40]);
        assert!(wire.contains('7'));
        assert_eq!(wire.matches('[').count(), n / 3);
        assert_eq!(wire.matches("{a: ").count(), n.div_ceil(3));
        // Too deep to read back: a clean error.
        assert!(text::parse(&wire).is_err());

        // The block form indents every level, so its size grows with the
        // square of the depth: print a 3,000-deep node (about 9 MB).
        let b = deep(3_000);
        let t = Instant::now();
        let block = b.to_block_string();
        let block_time = t.elapsed();
        assert_eq!(block.matches("a:").count(), 1_000);
        assert!(text::parse(&block).is_err());
        drop(b);

        let dbg = format!("{d:?}");
        assert!(dbg.contains("Node { .. }"));
        assert_eq!(dbg.matches("Node {").count(), MAX_DEBUG_DEPTH + 1);
        let _pretty = format!("{d:#?}");

        let plain = (0..n).fold(Node::null(), |c, i| {
            if i % 2 == 0 {
                Node::object([("a", c)])
            } else {
                Node::array([c])
            }
        });
        assert_eq!(
            plain.to_json(),
            Err(JsonError::TooDeep {
                limit: MAX_SERDE_DEPTH
            })
        );
        let enc = rmp_serde::to_vec(&d).unwrap_err();
        assert!(enc.to_string().contains("deeper than"), "{enc}");
        let json = serde_json::to_string(&d).unwrap_err();
        assert!(json.to_string().contains("deeper than"), "{json}");

        // apply / matches / trim stop at their depth limit with an error.
        assert!(apply(None, &d).is_err());
        assert!(apply(Some(&d), &d).is_err());
        // A patch that replaces the deep document works.
        let shallow = Node::object([("b", Node::int(1))]);
        let t = Instant::now();
        let patched = apply(Some(&d), &Node::tagged("t", Value::Null)).unwrap();
        let apply_time = t.elapsed();
        assert!(patched.is_some());
        assert!(matches(Some(&d), &d).is_err());
        assert!(!matches(Some(&d), &shallow).unwrap());
        let _trimmed = trim(&d, &d);
        assert!(!index::touched_paths(&d).is_empty());
        let objects = (0..n).fold(Node::int(1), |c, _| Node::object([("a", c)]));
        let t = Instant::now();
        let touched = index::touched_paths(&objects);
        eprintln!(
            "touched_paths of a {n}-deep object chain: {:?}",
            t.elapsed()
        );
        assert_eq!(touched.len(), 1);
        assert_eq!(touched[0].segments().len(), n);
        drop(plain);

        let t = Instant::now();
        drop(c);
        let drop_time = t.elapsed();
        drop(d);
        eprintln!(
            "node {n} deep: build {build:?}, clone {clone:?}, eq {eq:?}, display {display:?} \
             ({} bytes), block (3,000 deep) {block_time:?} ({} bytes), apply(shallow) {apply_time:?}, drop {drop_time:?}",
            wire.len(),
            block.len()
        );
    });
}

#[test]
fn deep_messagepack_is_a_clean_decode_error() {
    on_small_stack(|| {
        // Hand-made MessagePack: 100,000 nested `Node { tag: nil, value: Array([..]) }`.
        let mut bytes = Vec::new();
        for _ in 0..100_000 {
            bytes.extend_from_slice(&[0x92, 0xc0, 0x81, 0xa5]);
            bytes.extend_from_slice(b"Array");
            bytes.push(0x91);
        }
        bytes.extend_from_slice(&[0x92, 0xc0, 0xa4]);
        bytes.extend_from_slice(b"Null");
        assert!(rmp_serde::from_slice::<Node>(&bytes).is_err());
        // JSON nested far deeper than serde_json's own limit is an error too.
        let json = format!(
            "{}null{}",
            "{\"tag\":null,\"value\":{\"Array\":[".repeat(10_000),
            "]}}".repeat(10_000)
        );
        assert!(serde_json::from_str::<Node>(&json).is_err());
    });
}

#[test]
fn serde_limit_is_exact_and_what_encodes_decodes() {
    on_small_stack(|| {
        for mk in [
            |d: usize| (0..d).fold(Node::null(), |n, _| Node::object([("a", n)])),
            |d: usize| (0..d).fold(Node::null(), |n, _| Node::array([n])),
            |d: usize| {
                (0..d).fold(Node::null(), |n, _| {
                    Node::tagged("t", Value::Object(vec![(Key::Index(1), n)]))
                })
            },
        ] {
            // `d` levels of containers hold `d + 1` nodes.
            let ok = mk(MAX_SERDE_DEPTH - 1);
            let bytes = rmp_serde::to_vec(&ok).unwrap();
            let back: Node = rmp_serde::from_slice(&bytes).unwrap();
            assert!(back == ok);
            let named = rmp_serde::to_vec_named(&ok).unwrap();
            let back: Node = rmp_serde::from_slice(&named).unwrap();
            assert!(back == ok);
            assert!(ok.to_json().is_ok() || ok.tag.is_some());
            let too_deep = mk(MAX_SERDE_DEPTH);
            assert!(rmp_serde::to_vec(&too_deep).is_err());
            // The encoder's counter is reset after an error.
            assert!(rmp_serde::to_vec(&ok).is_ok());
        }
    });
}

fn objects(depth: usize) -> Node {
    (0..depth).fold(Node::int(1), |c, _| Node::object([("a", c)]))
}

#[test]
fn log_records_encode_only_what_they_can_decode() {
    use logd_core::wal::{self, Entry, EntryMeta, ParticipantRecord};
    on_small_stack(|| {
        let entry = |depth: usize| Entry {
            commit: 1,
            tx_id: 1,
            timestamp: 0,
            patch: objects(depth),
            participants: vec![ParticipantRecord {
                path: KPath::root(),
                matches: Some((KPath::root(), objects(depth))),
            }],
            meta: EntryMeta::default(),
        };
        let ok = entry(MAX_SERDE_DEPTH - 1);
        let frame = wal::encode_entry(&ok).unwrap();
        let (back, len) = wal::decode_frame(&frame, 0).unwrap();
        assert_eq!(len, frame.len());
        assert!(back == ok);
        // One level more: refused when writing, so the log never holds a
        // record recovery could not read.
        assert!(wal::encode_entry(&entry(MAX_SERDE_DEPTH)).is_err());
        assert!(wal::encode_entry(&entry(100_000)).is_err());
    });
}

#[test]
fn snapshot_of_a_deep_document_is_written_or_refused_cleanly() {
    use logd_core::snapshot::{SnapshotReader, write_node};
    // A quarter of a tokio worker's stack: 2,000 levels of recursion would
    // not fit in it.
    on_stack(SMALL_STACK / 4, || {
        // Every entry of a snapshot names its whole path, so a deep chain
        // costs the square of its depth in bytes and time: 2,000 levels is
        // enough to show the walk does not recurse.
        for depth in [MAX_SERDE_DEPTH, 2_000] {
            let doc = objects(depth);
            let mut out = Vec::new();
            let t = Instant::now();
            let written = write_node(&mut out, 1, &doc);
            let write = t.elapsed();
            if written.is_ok() {
                let r = SnapshotReader::open(out.clone()).unwrap();
                let mut path = KPath::root();
                for _ in 0..depth {
                    path.push(logd_core::Segment::Field("a".into()));
                }
                let t = Instant::now();
                assert_eq!(r.read_path(&path).unwrap(), Some(Node::int(1)));
                let read = t.elapsed();
                let root = r.read_root().unwrap();
                assert!(root.as_ref() == Some(&doc));
                eprintln!(
                    "snapshot of a {depth}-deep document: {} bytes, write {write:?}, read deepest {read:?}",
                    out.len()
                );
            } else {
                eprintln!("snapshot of a {depth}-deep document refused: {written:?}");
            }
        }
    });
}

#[test]
fn deep_json_value_converts_and_merge_stays_bounded() {
    on_small_stack(|| {
        let n = 100_000;
        let mut j = serde_json::Value::from(1);
        for i in 0..n {
            // Built by hand: `json!` would serialize `j` recursively.
            j = if i % 2 == 0 {
                let mut map = serde_json::Map::new();
                map.insert("a".to_owned(), j);
                serde_json::Value::Object(map)
            } else {
                serde_json::Value::Array(vec![j, serde_json::Value::from("x")])
            };
        }
        let t = Instant::now();
        let node = Node::from(j);
        eprintln!("From<serde_json::Value> {n} deep: {:?}", t.elapsed());
        let mut cur = &node;
        let mut levels = 0;
        loop {
            cur = match &cur.value {
                Value::Object(kv) => &kv[0].1,
                Value::Array(items) => {
                    assert_eq!(items[1], Node::string("x"));
                    &items[0]
                }
                _ => break,
            };
            levels += 1;
        }
        assert_eq!(levels, n);
        assert_eq!(cur, &Node::int(1));
        eprintln!("converted and walked");
        // Merging a deep patch: an error or a result, never a crash.
        let _ = logd_core::patch::merge(&[(KPath::root(), node)]);
    });
}
