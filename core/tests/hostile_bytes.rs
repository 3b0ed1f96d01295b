//! Hostile bytes: arbitrary input never panics the text parser, the path
//! parser, the log frame decoder and scanner, the snapshot reader or the
//! MessagePack node decoder; length fields claiming gigabytes are errors,
//! not allocations; empty and blank inputs are clean errors.

use std::time::{Duration, Instant};

use logd_core::snapshot::SnapshotReader;
use logd_core::wal::{self, FRAME_HEADER_LEN, KIND_ENTRY};
use logd_core::{KPath, Node, text};
use proptest::prelude::*;

/// A frame with a correct length and CRC around `payload` (after the kind
/// byte), so the decoder behind the checksum is what gets exercised.
fn framed(payload: &[u8]) -> Vec<u8> {
    let mut body = vec![KIND_ENTRY];
    body.extend_from_slice(payload);
    let mut out = Vec::new();
    out.extend_from_slice(&u32::try_from(body.len()).unwrap().to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(&body).to_le_bytes());
    out.extend_from_slice(&body);
    out
}

fn segment(frames: &[u8]) -> Vec<u8> {
    let mut out = wal::encode_header(1).to_vec();
    out.extend_from_slice(frames);
    out
}

fn fuzz_all(bytes: &[u8]) {
    let s = String::from_utf8_lossy(bytes);
    let _ = text::parse(&s);
    let _ = text::parse_documents(&s);
    let _ = KPath::parse(&s);
    let _ = rmp_serde::from_slice::<Node>(bytes);
    let _ = wal::decode_frame(bytes, 0);
    let _ = wal::decode_frame(&framed(bytes), 0);
    let _ = wal::scan(bytes);
    let _ = wal::scan(&segment(bytes));
    let _ = wal::scan(&segment(&framed(bytes)));
    if let Ok(r) = SnapshotReader::open(bytes.to_vec()) {
        let _ = r.read_root();
        for e in r.entries() {
            let _ = e;
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..4096)) {
        fuzz_all(&bytes);
    }

    #[test]
    fn tony_like_text_never_panics(s in "[\\[\\]{}:,!#|\\- \n\t\"'a-c0-9.()\\\\]{0,400}") {
        let _ = text::parse(&s);
        let _ = text::parse_documents(&s);
        let _ = KPath::parse(&s);
    }

    #[test]
    fn path_like_text_never_panics(s in "[a-c0-9.\\[\\]{}()$\"'\\\\*]{0,200}") {
        if let Ok(p) = KPath::parse(&s) {
            // Whatever parses prints back to a path that parses to the same.
            prop_assert_eq!(KPath::parse(&p.to_string()).unwrap(), p);
        }
    }

    #[test]
    fn mutated_messagepack_never_panics(
        at in any::<prop::sample::Index>(),
        byte in any::<u8>(),
    ) {
        let doc: Node = text::parse(r#"{a: [1, 2.5, "x", !t {0: null}], b: {c: true}}"#).unwrap();
        let mut bytes = rmp_serde::to_vec(&doc).unwrap();
        let i = at.index(bytes.len());
        bytes[i] = byte;
        let _ = rmp_serde::from_slice::<Node>(&bytes);
        let _ = wal::scan(&segment(&framed(&bytes)));
    }
}

/// Runs `f` and asserts it returned an error quickly (no giant allocation).
fn fast_err<T, E>(what: &str, f: impl FnOnce() -> Result<T, E>) {
    let t = Instant::now();
    assert!(f().is_err(), "{what}: accepted");
    let took = t.elapsed();
    assert!(took < Duration::from_millis(500), "{what}: took {took:?}");
}

#[test]
fn huge_length_fields_are_errors_not_allocations() {
    let node_with = |value: &[u8]| {
        // Node { tag: nil, value: { <variant>: <value> } } in compact form.
        let mut b = vec![0x92, 0xc0, 0x81];
        b.extend_from_slice(value);
        b
    };
    let claims: Vec<(&str, Vec<u8>)> = vec![
        // str32 of 4 GiB
        (
            "str32",
            node_with(&[
                0xa6, b'S', b't', b'r', b'i', b'n', b'g', 0xdb, 0xff, 0xff, 0xff, 0xff, b'x',
            ]),
        ),
        // bin32 of 4 GiB as a string
        (
            "bin32",
            node_with(&[
                0xa6, b'S', b't', b'r', b'i', b'n', b'g', 0xc6, 0xff, 0xff, 0xff, 0xff,
            ]),
        ),
        // array32 of 4 G items
        (
            "array32",
            node_with(&[
                0xa5, b'A', b'r', b'r', b'a', b'y', 0xdd, 0xff, 0xff, 0xff, 0xff, 0x92, 0xc0, 0xa4,
                b'N', b'u', b'l', b'l',
            ]),
        ),
        // map32 object of 4 G entries
        (
            "object32",
            node_with(&[
                0xa6, b'O', b'b', b'j', b'e', b'c', b't', 0xdd, 0xff, 0xff, 0xff, 0xff,
            ]),
        ),
        // a tag string of 4 GiB
        ("tag", vec![0x92, 0xdb, 0xff, 0xff, 0xff, 0xff, b't']),
        // the node itself as a map32 of 4 G fields
        ("map32", vec![0xdf, 0xff, 0xff, 0xff, 0xff]),
    ];
    for (what, bytes) in &claims {
        fast_err(what, || rmp_serde::from_slice::<Node>(bytes));
        fast_err(what, || wal::decode_frame(&framed(bytes), 0));
        let scanned = wal::scan(&segment(&framed(bytes))).unwrap();
        assert!(scanned.records.is_empty(), "{what}");
    }
    // A frame header claiming 4 GiB (and 1 GiB, the maximum) of body over a
    // few bytes: an error, checked before any read or allocation.
    for len in [u32::MAX, wal::MAX_FRAME_LEN, wal::MAX_FRAME_LEN + 1] {
        let mut f = len.to_le_bytes().to_vec();
        f.extend_from_slice(&[0; 4]);
        f.extend_from_slice(&[KIND_ENTRY, 0x90]);
        assert!(f.len() > FRAME_HEADER_LEN);
        fast_err("frame length", || wal::decode_frame(&f, 0));
        let t = Instant::now();
        let scanned = wal::scan(&segment(&f)).unwrap();
        assert!(scanned.records.is_empty());
        assert!(t.elapsed() < Duration::from_millis(500));
    }
}

#[test]
fn empty_and_blank_inputs_are_clean_errors() {
    for input in [
        "",
        " ",
        "\n\n\n",
        "\t",
        " \t \n ",
        "# only a comment",
        "# one\n   # two\n",
        "\u{feff}",
        "\u{feff}\n",
        "---",
        "---\n# nothing\n",
    ] {
        let e = text::parse(input).unwrap_err();
        assert!(e.line >= 1 && e.column >= 1, "{input:?}: {e}");
        // A stream of such documents is simply empty, or an error for a BOM.
        match text::parse_documents(input) {
            Ok(docs) => assert!(docs.is_empty(), "{input:?}"),
            Err(_) => assert!(input.starts_with('\u{feff}'), "{input:?}"),
        }
        assert!(rmp_serde::from_slice::<Node>(input.as_bytes()).is_err());
        let _ = wal::scan(input.as_bytes()).unwrap_err();
        assert!(SnapshotReader::open(input.as_bytes().to_vec()).is_err());
    }
    // The empty path is the root (documented); blanks are not paths.
    assert_eq!(KPath::parse("").unwrap(), KPath::root());
    for input in [" ", "\n", "\t", "."] {
        assert!(KPath::parse(input).is_err(), "{input:?}");
    }
    // U+FEFF is an ordinary character in paths (a one-field path).
    assert_eq!(KPath::parse("\u{feff}").unwrap().segments().len(), 1);
    // The smallest frames: nothing, a header of zeros, a zero length.
    assert!(wal::decode_frame(&[], 0).is_err());
    assert!(wal::decode_frame(&[0; FRAME_HEADER_LEN], 0).is_err());
    assert!(wal::decode_frame(&framed(&[]), 0).is_err());
    // A header alone is an empty, clean segment.
    let s = wal::scan(&segment(&[])).unwrap();
    assert!(s.records.is_empty());
}
