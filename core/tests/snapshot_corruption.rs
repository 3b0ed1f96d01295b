//! Damaged snapshot files: every single-byte change is reported, every
//! truncation is an error, and arbitrary bytes never panic the decoder.

mod common_snapshot;

use common_snapshot::{all_paths, doc};
use logd_core::snapshot::{SnapshotError, SnapshotReader, WriteOptions, rewrite, write_node_with};
use logd_core::{KPath, Node, Value};
use proptest::prelude::*;

fn sample() -> Node {
    let text = r#"{"users": {"u2": {"name": "b", "tags": ["x", "y"]}, "u1": {"name": "a", "n": 1.5}},
                   "list": [1, [2, [3]], {}, []], "s": "ünïcödé"}"#;
    let mut n = Node::from(serde_json::from_str::<serde_json::Value>(text).unwrap());
    if let Value::Object(kv) = &mut n.value {
        kv.push((
            logd_core::Key::Field("sparse".into()),
            Node::tagged(
                "t",
                Value::Object(vec![(logd_core::Key::Index(9), Node::int(1))]),
            ),
        ));
    }
    n
}

fn small_opts() -> WriteOptions {
    WriteOptions {
        block_target_bytes: 48,
        leaf_max_bytes: 0,
    }
}

/// Reads everything a reader can give; Err on the first error.
fn read_all(
    bytes: Vec<u8>,
    paths: &[KPath],
) -> Result<(Option<Node>, Vec<Option<Node>>), SnapshotError> {
    let r = SnapshotReader::open(bytes)?;
    let root = r.read_root()?;
    let mut at = Vec::new();
    for p in paths {
        at.push(r.read_path(p)?);
    }
    for e in r.entries() {
        e?;
    }
    Ok((root, at))
}

fn check_offset(e: &SnapshotError, len: usize) {
    if let SnapshotError::Corrupt { offset, .. } = e {
        assert!(
            *offset <= len as u64,
            "offset {offset} beyond file of {len}"
        );
    }
}

#[test]
fn every_single_byte_flip_is_reported() {
    // Many small blocks, and one block with restart points.
    flips(small_opts(), 5);
    flips(
        WriteOptions {
            block_target_bytes: 1 << 20,
            leaf_max_bytes: 0,
        },
        1,
    );
}

fn flips(opts: WriteOptions, min_blocks: u64) {
    let doc = sample();
    let paths = all_paths(&doc);
    let mut bytes = Vec::new();
    let meta = write_node_with(&mut bytes, 5, &doc, opts).unwrap();
    assert!(
        meta.blocks >= min_blocks,
        "want several blocks, got {}",
        meta.blocks
    );
    assert!(meta.entries > 16);
    eprintln!(
        "{} bytes, {} blocks, {} paths",
        bytes.len(),
        meta.blocks,
        paths.len()
    );
    let expect: Vec<Option<Node>> = paths.iter().map(|p| doc.get_path(p).cloned()).collect();
    assert_eq!(
        read_all(bytes.clone(), &paths).unwrap(),
        (Some(doc.clone()), expect.clone())
    );
    for i in 0..bytes.len() {
        for flip in [0x01u8, 0x80, 0xff] {
            let mut bad = bytes.clone();
            bad[i] ^= flip;
            match read_all(bad, &paths) {
                Err(e) => check_offset(&e, bytes.len()),
                Ok(got) => panic!(
                    "flip {flip:#x} at byte {i} of {} went unnoticed (same doc: {})",
                    bytes.len(),
                    got == (Some(doc.clone()), expect.clone())
                ),
            }
        }
    }
}

#[test]
fn every_truncation_is_an_error() {
    let doc = sample();
    for opts in [small_opts(), WriteOptions::default()] {
        let mut bytes = Vec::new();
        write_node_with(&mut bytes, 5, &doc, opts).unwrap();
        for len in 0..bytes.len() {
            match SnapshotReader::open(bytes[..len].to_vec()) {
                Err(e) => check_offset(&e, len),
                Ok(_) => panic!("truncation to {len} of {} opened", bytes.len()),
            }
        }
    }
}

/// Walks a valid file's frames (blocks, then the index) and recomputes their
/// CRCs after `mutate` changed payload bytes, so the structural decoders
/// (not the checksums) see the damage.
fn forge(mut bytes: Vec<u8>, mutate: impl FnOnce(&mut [u8])) -> Vec<u8> {
    let footer = bytes.len() - 36;
    let index_offset = u64::from_le_bytes(bytes[footer..footer + 8].try_into().unwrap()) as usize;
    let mut frames = Vec::new();
    let mut off = 28;
    while off <= index_offset {
        let len = u32::from_le_bytes(bytes[off..off + 4].try_into().unwrap()) as usize;
        frames.push((off, len));
        off += 8 + len;
    }
    mutate(&mut bytes[28..footer]);
    for (off, len) in frames {
        // Keep the (possibly mutated) payload; restore a consistent len + crc.
        let len = len.min(footer - off - 8);
        let mut h = crc32fast::Hasher::new();
        h.update(&(len as u32).to_le_bytes());
        h.update(&bytes[off + 8..off + 8 + len]);
        let crc = h.finalize();
        bytes[off..off + 4].copy_from_slice(&(len as u32).to_le_bytes());
        bytes[off + 4..off + 8].copy_from_slice(&crc.to_le_bytes());
    }
    bytes
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
        let _ = read_all(bytes.clone(), &[KPath::root()]);
        // Also behind a valid header and footer shape.
        let mut framed = b"LOGDSNAP".to_vec();
        framed.extend_from_slice(&bytes);
        let _ = read_all(framed, &[KPath::root()]);
    }

    #[test]
    fn forged_checksums_never_panic(
        doc in doc(),
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
        big_blocks in any::<bool>(),
    ) {
        let opts = if big_blocks {
            WriteOptions { block_target_bytes: 1 << 20, leaf_max_bytes: 0 }
        } else {
            small_opts()
        };
        let mut bytes = Vec::new();
        write_node_with(&mut bytes, 1, &doc, opts).unwrap();
        let paths: Vec<KPath> = all_paths(&doc).into_iter().take(30).collect();
        let bad = forge(bytes, |b| {
            for (i, v) in &edits {
                let i = i.index(b.len());
                b[i] = *v;
            }
        });
        // Whatever comes back, it comes back without a panic or a huge allocation.
        let _ = read_all(bad.clone(), &paths);
        // The rewrite reads the damaged file too.
        if let Ok(r) = SnapshotReader::open(bad) {
            let patches = [
                Node::object([("a", Node::int(1))]),
                Node::object([("b", Node::object([("c", Node::null())]))]),
            ];
            let _ = rewrite(&r, patches.iter(), Vec::new(), 2);
            let _ = rewrite(&r, std::iter::empty(), Vec::new(), 2);
        }
    }
}
