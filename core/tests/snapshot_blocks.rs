//! A sub-path read decodes only the blocks that hold the path.

use std::time::Instant;

use logd_core::snapshot::{EntryBody, SnapshotReader, SnapshotWriter, write_node};
use logd_core::{KPath, Key, Node, Segment};

fn field(s: &str) -> Segment {
    Segment::Field(s.to_owned())
}

/// 1,000 objects x 1,000 keys, streamed straight into the writer (the
/// document is never built in memory).
#[test]
fn sub_path_read_decodes_at_most_two_blocks() {
    let (objs, keys) = if std::env::var_os("LOGD_LONG_TESTS").is_some() {
        (1000, 1000)
    } else {
        (1000, 200)
    };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big.snap");
    let mut f = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
    let mut obj_names: Vec<String> = (0..objs).map(|i| format!("o{i}")).collect();
    let key_names: Vec<String> = (0..keys).map(|i| format!("k{i}")).collect();
    let start = Instant::now();
    let mut w = SnapshotWriter::new(&mut f, 42).unwrap();
    w.push(
        &KPath::root(),
        &EntryBody::Object {
            tag: None,
            keys: obj_names.iter().map(|n| Key::Field(n.clone())).collect(),
        },
    )
    .unwrap();
    obj_names.sort();
    let mut sorted_keys = key_names.clone();
    sorted_keys.sort();
    for o in &obj_names {
        let op = KPath::from_segments(vec![field(o)]);
        w.push(
            &op,
            &EntryBody::Object {
                tag: None,
                keys: key_names.iter().map(|n| Key::Field(n.clone())).collect(),
            },
        )
        .unwrap();
        for k in &sorted_keys {
            let kp = op.child(field(k));
            w.push(&kp, &EntryBody::Leaf(Node::string(format!("{o}/{k}"))))
                .unwrap();
        }
    }
    let meta = w.finish().unwrap();
    drop(f);
    let secs = start.elapsed().as_secs_f64();
    eprintln!(
        "wrote {} entries, {} blocks, {} bytes in {:.3}s ({:.1} MB/s)",
        meta.entries,
        meta.blocks,
        meta.bytes,
        secs,
        meta.bytes as f64 / secs / 1e6
    );
    assert!(meta.blocks > 50);

    let r = SnapshotReader::open_path(&path).unwrap();
    assert_eq!(r.commit(), 42);
    let probes = [
        ("o0", "k0"),
        ("o517", "k77"),
        ("o999", &*format!("k{}", keys - 1)),
    ];
    for (o, k) in probes {
        let p = KPath::from_segments(vec![field(o), field(k)]);
        let before = r.blocks_decoded();
        let got = r.read_path(&p).unwrap();
        assert_eq!(got, Some(Node::string(format!("{o}/{k}"))));
        let used = r.blocks_decoded() - before;
        assert!(used <= 2, "{p}: decoded {used} blocks");
        // Absent siblings are as cheap.
        let before = r.blocks_decoded();
        assert_eq!(r.read_path(&p.child(field("nope"))).unwrap(), None);
        assert!(r.blocks_decoded() - before <= 1);
        // A whole object: its run of entries only.
        let op = KPath::from_segments(vec![field(o)]);
        let before = r.blocks_decoded();
        let obj = r.read_path(&op).unwrap().unwrap();
        let used = r.blocks_decoded() - before;
        let Node {
            value: logd_core::Value::Object(kv),
            ..
        } = &obj
        else {
            panic!("not an object")
        };
        assert_eq!(kv.len(), keys);
        assert_eq!(kv[0].0, Key::Field("k0".into()), "insertion order kept");
        let budget = (keys as u64 * 20) / (32 * 1024) + 2;
        assert!(
            used <= budget,
            "{op}: decoded {used} blocks (budget {budget})"
        );
    }
    // Timing of a point read (informational).
    let p = KPath::from_segments(vec![field("o517"), field("k77")]);
    let n = 2000;
    let start = Instant::now();
    for _ in 0..n {
        r.read_path(&p).unwrap();
    }
    eprintln!(
        "read_path: {:.1} us per read",
        start.elapsed().as_secs_f64() * 1e6 / n as f64
    );
}

/// The 500-user document of the standard workloads.
#[test]
fn users_document_write_and_read() {
    let users = Node::object((0..500).map(|i| {
        (
            format!("u{i}"),
            Node::object([
                ("name", Node::string(format!("user-{i}"))),
                ("n", Node::int(i)),
                ("tags", Node::array([Node::string("a"), Node::string("b")])),
            ]),
        )
    }));
    let doc = Node::object([("users", users)]);
    let mut bytes = Vec::new();
    let n = 50;
    let start = Instant::now();
    for _ in 0..n {
        bytes.clear();
        write_node(&mut bytes, 1, &doc).unwrap();
    }
    let per = start.elapsed().as_secs_f64() / n as f64;
    eprintln!(
        "users doc: {} bytes written in {:.0} us ({:.1} MB/s)",
        bytes.len(),
        per * 1e6,
        bytes.len() as f64 / per / 1e6
    );
    let r = SnapshotReader::open(bytes).unwrap();
    assert_eq!(r.read_root().unwrap().as_ref(), Some(&doc));
    let p = KPath::parse("users.u417.name").unwrap();
    let before = r.blocks_decoded();
    assert_eq!(r.read_path(&p).unwrap(), Some(Node::string("user-417")));
    assert_eq!(r.blocks_decoded() - before, 1);
    let start = Instant::now();
    for _ in 0..n * 20 {
        r.read_path(&p).unwrap();
    }
    eprintln!(
        "users doc: read_path {:.1} us; read_root {} blocks",
        start.elapsed().as_secs_f64() * 1e6 / (n * 20) as f64,
        r.block_count()
    );
}
