//! Round trip of random documents through the snapshot format.

mod common_snapshot;

use common_snapshot::{absent_paths, all_paths, doc};
use logd_core::snapshot::{
    EntryBody, SeekSource, SnapshotError, SnapshotReader, SnapshotWriter, WriteOptions, write_node,
    write_node_with,
};
use logd_core::{KPath, Key, Node, Segment, Value};
use proptest::prelude::*;

fn layouts() -> [WriteOptions; 4] {
    [
        // Many entries per block: exercises the restart points.
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
            block_target_bytes: 300,
            leaf_max_bytes: 60,
        },
    ]
}

fn check(doc: &Node, opts: WriteOptions) {
    let mut bytes = Vec::new();
    let meta = write_node_with(&mut bytes, 7, doc, opts).unwrap();
    assert_eq!(meta.bytes, bytes.len() as u64);
    let r = SnapshotReader::open(bytes.clone()).unwrap();
    assert_eq!(r.commit(), 7);
    assert_eq!(r.block_count() as u64, meta.blocks);
    assert_eq!(r.entry_count(), meta.entries);
    assert_eq!(r.read_root().unwrap().as_ref(), Some(doc));
    let paths = all_paths(doc);
    for p in &paths {
        assert_eq!(
            r.read_path(p).unwrap().as_ref(),
            doc.get_path(p),
            "path {p}"
        );
    }
    for p in absent_paths(&paths) {
        assert_eq!(
            r.read_path(&p).unwrap().as_ref(),
            doc.get_path(&p),
            "absent {p}"
        );
    }
    // The entry stream is sorted and complete.
    let entries: Vec<_> = r.entries().collect::<Result<_, _>>().unwrap();
    assert_eq!(entries.len() as u64, meta.entries);
    assert!(entries.windows(2).all(|w| w[0].path < w[1].path));
    // Re-writing the entries verbatim gives the same bytes.
    let mut again = Vec::new();
    let mut w = SnapshotWriter::with_options(&mut again, 7, opts).unwrap();
    for e in &entries {
        w.push(&e.path, &e.body).unwrap();
    }
    w.finish().unwrap();
    assert_eq!(again, bytes);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]
    #[test]
    fn random_documents_round_trip(doc in doc()) {
        for opts in layouts() {
            check(&doc, opts);
        }
    }
}

#[test]
fn empty_and_scalar_documents() {
    // The absent document: a writer with no entries.
    let mut bytes = Vec::new();
    let meta = SnapshotWriter::new(&mut bytes, 3)
        .unwrap()
        .finish()
        .unwrap();
    assert_eq!((meta.blocks, meta.entries), (0, 0));
    let r = SnapshotReader::open(bytes).unwrap();
    assert_eq!(r.read_root().unwrap(), None);
    assert_eq!(r.read_path(&KPath::parse("a").unwrap()).unwrap(), None);
    assert_eq!(r.entries().count(), 0);
    for doc in [
        Node::null(),
        Node::int(1),
        Node::object(Vec::<(Key, Node)>::new()),
        Node::array([]),
        Node::tagged("t", Value::Array(vec![])),
    ] {
        for opts in layouts() {
            check(&doc, opts);
        }
    }
}

#[test]
fn duplicate_keys_are_stored_whole() {
    let doc = Node::object([
        ("b", Node::int(1)),
        (
            "a",
            Node::object([("x", Node::int(2)), ("x", Node::int(3))]),
        ),
    ]);
    for opts in layouts() {
        let mut bytes = Vec::new();
        write_node_with(&mut bytes, 1, &doc, opts).unwrap();
        let r = SnapshotReader::open(bytes).unwrap();
        assert_eq!(r.read_root().unwrap().as_ref(), Some(&doc));
        assert_eq!(
            r.read_path(&KPath::parse("a.x").unwrap()).unwrap(),
            Some(Node::int(2))
        );
    }
}

#[test]
fn file_and_seek_sources() {
    let doc = Node::object((0..300).map(|i| (format!("k{i}"), Node::int(i))));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("1.snap");
    let mut f = std::fs::File::create(&path).unwrap();
    write_node(&mut f, 9, &doc).unwrap();
    f.sync_all().unwrap();
    let r = SnapshotReader::open_path(&path).unwrap();
    assert_eq!(r.commit(), 9);
    assert_eq!(r.read_root().unwrap().as_ref(), Some(&doc));
    let bytes = std::fs::read(&path).unwrap();
    let r = SnapshotReader::open(SeekSource::new(std::io::Cursor::new(bytes))).unwrap();
    assert_eq!(
        r.read_path(&KPath::parse("k299").unwrap()).unwrap(),
        Some(Node::int(299))
    );
}

fn invalid(r: Result<(), SnapshotError>) -> bool {
    matches!(r, Err(SnapshotError::InvalidEntry { .. }))
}

#[test]
fn writer_refuses_invalid_streams() {
    let p = |s: &str| KPath::parse(s).unwrap();
    let obj = |keys: &[&str]| EntryBody::Object {
        tag: None,
        keys: keys.iter().map(|k| Key::Field((*k).to_owned())).collect(),
    };
    let leaf = EntryBody::Leaf(Node::int(1));
    // First entry must be the root.
    let mut w = SnapshotWriter::new(Vec::new(), 1).unwrap();
    assert!(invalid(w.push(&p("a"), &leaf)));
    // Out of order.
    let mut w = SnapshotWriter::new(Vec::new(), 1).unwrap();
    w.push(&KPath::root(), &obj(&["b", "a"])).unwrap();
    w.push(&p("a"), &leaf).unwrap();
    w.push(&p("b"), &leaf).unwrap();
    assert!(invalid(w.push(&p("a"), &leaf)));
    // A child the container does not name.
    let mut w = SnapshotWriter::new(Vec::new(), 1).unwrap();
    w.push(&KPath::root(), &obj(&["a"])).unwrap();
    assert!(invalid(w.push(&p("c"), &leaf)));
    // Below a leaf.
    let mut w = SnapshotWriter::new(Vec::new(), 1).unwrap();
    w.push(&KPath::root(), &obj(&["a"])).unwrap();
    w.push(&p("a"), &leaf).unwrap();
    assert!(invalid(w.push(&p("a.b"), &leaf)));
    // Missing child at finish.
    let mut w = SnapshotWriter::new(Vec::new(), 1).unwrap();
    w.push(&KPath::root(), &obj(&["a", "b"])).unwrap();
    w.push(&p("a"), &leaf).unwrap();
    assert!(matches!(
        w.finish(),
        Err(SnapshotError::InvalidEntry { .. })
    ));
    // Array elements in order, no gaps, none extra.
    let mut w = SnapshotWriter::new(Vec::new(), 1).unwrap();
    w.push(&KPath::root(), &EntryBody::Array { tag: None, len: 2 })
        .unwrap();
    assert!(invalid(
        w.push(&KPath::from_segments(vec![Segment::Index(1)]), &leaf)
    ));
    // Duplicate keys in a container entry.
    let mut w = SnapshotWriter::new(Vec::new(), 1).unwrap();
    assert!(invalid(w.push(&KPath::root(), &obj(&["a", "a"]))));
    // A deep leaf.
    let mut deep = Node::int(0);
    for _ in 0..40 {
        deep = Node::array([deep]);
    }
    let mut w = SnapshotWriter::new(Vec::new(), 1).unwrap();
    assert!(matches!(
        w.push(&KPath::root(), &EntryBody::Leaf(deep.clone())),
        Err(SnapshotError::TooLarge { .. })
    ));
    // ...which write_node splits instead.
    let mut bytes = Vec::new();
    write_node(&mut bytes, 1, &deep).unwrap();
    let r = SnapshotReader::open(bytes).unwrap();
    assert_eq!(r.read_root().unwrap(), Some(deep));
}

#[test]
fn deepest_leaves_decode() {
    // Nested as deep as a leaf may be, in objects, arrays and sparse arrays,
    // and deeper (split into container entries).
    for depth in [31, 32, 33, 100] {
        let mut obj = Node::int(1);
        let mut arr = Node::int(1);
        let mut sparse = Node::int(1);
        for i in 0..depth {
            obj = Node::tagged("t", Value::Object(vec![(Key::Field(format!("k{i}")), obj)]));
            arr = Node::array([arr]);
            sparse = Node::object([(Key::Index(i), sparse)]);
        }
        for doc in [obj, arr, sparse] {
            let mut bytes = Vec::new();
            write_node(&mut bytes, 1, &doc).unwrap();
            let r = SnapshotReader::open(bytes).unwrap();
            assert_eq!(r.read_root().unwrap().as_ref(), Some(&doc), "depth {depth}");
            let paths = common_snapshot::all_paths(&doc);
            let deepest = paths.last().unwrap();
            assert_eq!(r.read_path(deepest).unwrap(), Some(Node::int(1)));
        }
    }
}
