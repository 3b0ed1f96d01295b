//! The streaming rewrite gives the same document as folding the patches
//! over the whole document and writing it from scratch.

mod common_snapshot;

use common_snapshot::{absent_paths, all_paths, doc, scalar};
use logd_core::patch::apply;
use logd_core::snapshot::{
    SnapshotError, SnapshotReader, WriteOptions, rewrite, rewrite_with, write_node, write_node_with,
};
use logd_core::{KPath, Key, Node, Segment, Value};
use proptest::prelude::*;

/// What to put at a chosen path.
#[derive(Clone, Debug)]
enum Op {
    Set(Node),
    Delete,
    Merge(String, Node),
    Arraydiff(u32, Node),
    Root(Node),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => scalar().prop_map(|v| Op::Set(Node::new(v))),
        1 => doc().prop_map(Op::Set),
        2 => Just(Op::Delete),
        3 => ("[a-e]{1,2}", doc()).prop_map(|(k, v)| Op::Merge(k, v)),
        1 => (0u32..4, scalar()).prop_map(|(i, v)| Op::Arraydiff(i, Node::new(v))),
        1 => doc().prop_map(Op::Root),
    ]
}

/// A root patch that does `op` at `path` (objects along fields and sparse
/// keys, in-place `!arraydiff` along dense indexes).
fn patch_at(path: &KPath, op: &Op) -> Node {
    let mut node = match op {
        Op::Root(n) => return n.clone(),
        Op::Set(n) => n.clone(),
        Op::Delete => Node::tagged("delete", Value::Null),
        Op::Merge(k, v) => Node::object([(k.as_str(), v.clone())]),
        Op::Arraydiff(i, v) => Node::tagged(
            "arraydiff",
            Value::Object(vec![(Key::Index(*i), v.clone())]),
        ),
    };
    for seg in path.segments().iter().rev() {
        node = match seg {
            Segment::Field(f) => Node::object([(Key::Field(f.clone()), node)]),
            Segment::Sparse(i) => Node::object([(Key::Index(*i), node)]),
            Segment::Index(i) => {
                Node::tagged("arraydiff", Value::Object(vec![(Key::Index(*i), node)]))
            }
            Segment::Key(_) => unreachable!("the test's paths are positional"),
        };
    }
    node
}

fn opts_list() -> [WriteOptions; 4] {
    [
        WriteOptions {
            block_target_bytes: 4096,
            leaf_max_bytes: 0,
        },
        WriteOptions::default(),
        WriteOptions {
            block_target_bytes: 64,
            leaf_max_bytes: 0,
        },
        WriteOptions {
            block_target_bytes: 256,
            leaf_max_bytes: 40,
        },
    ]
}

fn check(doc: &Node, patches: &[Node]) {
    // The oracle: fold the patches over the whole document.
    let mut expect = Some(doc.clone());
    let mut failed = false;
    for p in patches {
        match apply(expect.as_ref(), p) {
            Ok(n) => expect = n,
            Err(_) => {
                failed = true;
                break;
            }
        }
    }
    for opts in opts_list() {
        let mut prev = Vec::new();
        write_node_with(&mut prev, 1, doc, opts).unwrap();
        let prev = SnapshotReader::open(prev).unwrap();
        let mut next = Vec::new();
        let r = rewrite_with(&prev, patches.iter(), &mut next, 2, opts);
        if failed {
            assert!(matches!(r, Err(SnapshotError::Patch { .. })), "{r:?}");
            continue;
        }
        let meta =
            r.unwrap_or_else(|e| panic!("{e:?}\nDOC {doc:?}\nPATCHES {patches:?}\nOPTS {opts:?}"));
        assert_eq!(meta.bytes, next.len() as u64);
        let next = SnapshotReader::open(next).unwrap();
        assert_eq!(next.commit(), 2);
        let got = next.read_root().unwrap();
        assert_eq!(got, expect, "patches {patches:?}");
        if let Some(e) = &expect {
            let paths = all_paths(e);
            for p in paths.iter().chain(absent_paths(&paths).iter()) {
                assert_eq!(next.read_path(p).unwrap().as_ref(), e.get_path(p), "{p}");
            }
        }
    }
}

fn scenario() -> impl Strategy<Value = (Node, Vec<Node>)> {
    doc()
        .prop_flat_map(|d| {
            let paths = all_paths(&d);
            let n = paths.len();
            let edits = prop::collection::vec((0..n, op()), 0..4);
            (Just(d), Just(paths), edits)
        })
        .prop_map(|(d, paths, edits)| {
            let patches = edits
                .into_iter()
                .map(|(i, op)| patch_at(&paths[i], &op))
                .collect();
            (d, patches)
        })
}

/// `(len, crc)` of every block frame of a snapshot file.
fn frames(bytes: &[u8]) -> Vec<(u32, u32)> {
    let footer = bytes.len() - 36;
    let index_offset = u64::from_le_bytes(bytes[footer..footer + 8].try_into().unwrap()) as usize;
    let mut out = Vec::new();
    let mut off = 28;
    while off < index_offset {
        let len = u32::from_le_bytes(bytes[off..off + 4].try_into().unwrap());
        let crc = u32::from_le_bytes(bytes[off + 4..off + 8].try_into().unwrap());
        out.push((len, crc));
        off += 8 + len as usize;
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]
    #[test]
    fn rewrite_equals_fold((doc, patches) in scenario()) {
        check(&doc, &patches);
    }
}

#[test]
fn rewrite_touches_only_what_it_changes() {
    let n_users = if std::env::var_os("LOGD_LONG_TESTS").is_some() {
        200_000
    } else {
        20_000
    };
    let users = Node::object((0..n_users).map(|i| {
        (
            format!("u{i}"),
            Node::object([
                ("name", Node::string(format!("user-{i}"))),
                ("n", Node::int(i)),
                ("tags", Node::array([Node::string("a"), Node::string("b")])),
            ]),
        )
    }));
    let doc = Node::object([
        ("users", users),
        ("meta", Node::object([("v", Node::int(1))])),
    ]);
    let mut prev_bytes = Vec::new();
    write_node(&mut prev_bytes, 1, &doc).unwrap();
    let prev = SnapshotReader::open(prev_bytes.clone()).unwrap();
    let obj = |k: &str, v: Node| Node::object([(k, v)]);
    let patches: Vec<Node> = vec![
        obj("users", obj("u5", obj("name", Node::string("x")))),
        obj(
            "users",
            Node::object([
                ("u1999", Node::tagged("delete", Value::Null)),
                ("u2000", obj("name", Node::string("new"))),
            ]),
        ),
        obj("meta", obj("v", Node::int(2))),
    ];
    let mut next = Vec::new();
    let start = std::time::Instant::now();
    rewrite(&prev, patches.iter(), &mut next, 4).unwrap();
    eprintln!(
        "rewrite of a {}-block snapshot: {:.2} ms, {} blocks read",
        prev.block_count(),
        start.elapsed().as_secs_f64() * 1e3,
        prev.blocks_decoded()
    );
    let mut expect = Some(doc);
    for p in &patches {
        expect = apply(expect.as_ref(), p).unwrap();
    }
    // Untouched blocks were copied verbatim.
    let before = frames(&prev_bytes);
    let after = frames(&next);
    let kept = before.iter().filter(|f| after.contains(f)).count();
    eprintln!("{kept} of {} blocks copied verbatim", before.len());
    assert!(
        kept + 6 >= before.len(),
        "only {kept} of {} blocks kept",
        before.len()
    );
    let next = SnapshotReader::open(next).unwrap();
    assert_eq!(next.read_root().unwrap(), expect);
    let p = KPath::parse("users.u5.name").unwrap();
    assert_eq!(next.read_path(&p).unwrap(), Some(Node::string("x")));
    // Many small rewrites in a row do not fragment the blocks.
    let mut cur = {
        let mut b = Vec::new();
        rewrite(&next, std::iter::empty(), &mut b, 4).unwrap();
        b
    };
    let base_blocks = SnapshotReader::open(cur.clone()).unwrap().block_count();
    for k in 0..30 {
        let r = SnapshotReader::open(cur.clone()).unwrap();
        let p = obj(
            "users",
            obj(&format!("u{}", k * 613 % 20_000), obj("n", Node::int(-1))),
        );
        let mut b = Vec::new();
        rewrite(&r, [&p], &mut b, 10 + k as u64).unwrap();
        expect = apply(expect.as_ref(), &p).unwrap();
        cur = b;
    }
    let r = SnapshotReader::open(cur).unwrap();
    assert_eq!(r.read_root().unwrap(), expect);
    eprintln!(
        "blocks after 30 rewrites: {} (from {base_blocks})",
        r.block_count()
    );
    assert!(r.block_count() <= base_blocks * 5 / 4 + 4);
    let next = r;
    // Touching nothing copies the snapshot as it is.
    let mut same = Vec::new();
    rewrite(&next, std::iter::empty(), &mut same, 5).unwrap();
    assert_eq!(
        SnapshotReader::open(same).unwrap().read_root().unwrap(),
        expect
    );
}

#[test]
fn rewrite_from_and_to_the_absent_document() {
    // From nothing.
    let mut empty = Vec::new();
    logd_core::snapshot::SnapshotWriter::new(&mut empty, 0)
        .unwrap()
        .finish()
        .unwrap();
    let prev = SnapshotReader::open(empty).unwrap();
    let p1 = Node::object([("a", Node::object([("b", Node::int(1))]))]);
    let p2 = Node::object([("a", Node::object([("c", Node::int(2))]))]);
    let mut next = Vec::new();
    rewrite(&prev, [&p1, &p2], &mut next, 2).unwrap();
    let next = SnapshotReader::open(next).unwrap();
    let want = Node::object([(
        "a",
        Node::object([("b", Node::int(1)), ("c", Node::int(2))]),
    )]);
    assert_eq!(next.read_root().unwrap(), Some(want));
    // To nothing: the root deleted.
    let del = Node::tagged("delete", Value::Null);
    let mut gone = Vec::new();
    let meta = rewrite(&next, [&del], &mut gone, 3).unwrap();
    assert_eq!(meta.entries, 0);
    assert_eq!(
        SnapshotReader::open(gone).unwrap().read_root().unwrap(),
        None
    );
    // A failing patch names its position.
    let bad = Node::object([(
        "a",
        Node::tagged(
            "arraydiff",
            Value::Object(vec![(Key::Index(0), Node::int(1))]),
        ),
    )]);
    let r = rewrite(&next, [&p1, &bad], Vec::new(), 4);
    assert!(
        matches!(r, Err(SnapshotError::Patch { index: 1, .. })),
        "{r:?}"
    );
}
