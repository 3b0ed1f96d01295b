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
        };
    }
    node
}

fn opts_list() -> [WriteOptions; 3] {
    [
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
        let meta = r.unwrap();
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

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]
    #[test]
    fn rewrite_equals_fold((doc, patches) in scenario()) {
        check(&doc, &patches);
    }
}

#[test]
fn rewrite_touches_only_what_it_changes() {
    let users = Node::object((0..2000).map(|i| {
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
    let mut prev = Vec::new();
    write_node(&mut prev, 1, &doc).unwrap();
    let prev = SnapshotReader::open(prev).unwrap();
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
    let next = SnapshotReader::open(next).unwrap();
    assert_eq!(next.read_root().unwrap(), expect);
    let p = KPath::parse("users.u5.name").unwrap();
    assert_eq!(next.read_path(&p).unwrap(), Some(Node::string("x")));
    // Touching nothing copies the snapshot as it is.
    let mut same = Vec::new();
    rewrite(&next, std::iter::empty(), &mut same, 5).unwrap();
    assert_eq!(
        SnapshotReader::open(same).unwrap().read_root().unwrap(),
        expect
    );
}
