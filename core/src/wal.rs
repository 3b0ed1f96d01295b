//! Log record and segment formats.
//!
//! This module owns the on-disk shape of the write-ahead log: the segment
//! header, the record frame `[len u32][crc32 u32][kind u8][rmp payload]`, the
//! [`Entry`] a commit record carries, and the pure functions that encode a
//! frame, decode one, [`scan`] a whole segment and [`read_at`] one record by
//! its [`Location`]. It never decides policy (what to truncate, when to
//! fsync): callers get typed [`WalError`]s and a [`TailStatus`] and act on them.
//! It never allocates from an untrusted length field: a length beyond the
//! remaining bytes or [`MAX_FRAME_LEN`] is an error, not an allocation.
//!
//! Integers are little-endian. `len` counts the bytes after the CRC (kind +
//! payload); the CRC (crc32fast) covers the same bytes.

use std::fs::File;
use std::os::unix::fs::FileExt;

use serde::{Deserialize, Serialize};

use crate::kpath::KPath;
use crate::node::Node;

/// Where a record lives: the segment (named by its first commit), the byte
/// offset of the record's frame in that file, and the frame's length.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Location {
    /// The segment's first commit number (its file name is `wal/<segment>.seg`, zero-padded).
    pub segment: u64,
    /// Byte offset of the record frame within the segment file.
    pub offset: u64,
    /// Length in bytes of the whole frame (header + payload).
    pub len: u32,
}

/// Magic bytes at the start of every segment file.
pub const SEGMENT_MAGIC: [u8; 8] = *b"LOGDWAL\0";
/// The segment format version this build writes and reads.
pub const FORMAT_VERSION: u32 = 1;
/// Bytes of the segment header: magic, version u32, first commit u64, CRC u32.
pub const HEADER_LEN: u64 = 24;
/// Bytes of a frame header: `len u32` + `crc32 u32`.
pub const FRAME_HEADER_LEN: usize = 8;
/// Hard upper bound of a frame's `len` field (kind + payload), whatever the
/// options say: anything larger is corruption.
pub const MAX_FRAME_LEN: u32 = 1 << 30;
/// Record kind of a commit [`Entry`].
pub const KIND_ENTRY: u8 = 1;

/// One participant of a committed transaction: where it patched and the
/// match it required (path and pattern), if any.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ParticipantRecord {
    /// The participant's patch path.
    pub path: KPath,
    /// The participant's match condition, if it had one.
    pub matches: Option<(KPath, Node)>,
}

/// Transaction metadata kept with a commit.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct EntryMeta {
    /// Free-form label given by the application.
    pub label: Option<String>,
    /// The commit the transaction's `seq` check was made against, if any.
    pub seq: Option<u64>,
}

/// The payload of a commit record.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    /// The commit number (from 1, gap-free, in log order).
    pub commit: u64,
    /// The transaction id.
    pub tx_id: u64,
    /// When the commit was sequenced, in nanoseconds since the Unix epoch.
    pub timestamp: u64,
    /// The merged root patch.
    pub patch: Node,
    /// Every participant's path and match.
    pub participants: Vec<ParticipantRecord>,
    /// The transaction's metadata.
    pub meta: EntryMeta,
}

/// What went wrong reading log bytes. `offset` is the byte offset in the
/// segment file of the frame (or header) that failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("log error at offset {offset}: {kind}")]
pub struct WalError {
    /// Byte offset of the failing frame or header.
    pub offset: u64,
    /// What failed.
    pub kind: WalErrorKind,
}

/// The kinds of [`WalError`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum WalErrorKind {
    /// The bytes end inside a frame or header (a torn write, or a cut file).
    #[error("truncated: need {needed} bytes, {available} available")]
    Truncated {
        /// Bytes the frame or header claims.
        needed: u64,
        /// Bytes that are there.
        available: u64,
    },
    /// A frame length of zero or above [`MAX_FRAME_LEN`].
    #[error("implausible frame length {len}")]
    BadLength {
        /// The length field read.
        len: u32,
    },
    /// The CRC does not match the bytes.
    #[error("checksum mismatch (stored {stored:#010x}, computed {computed:#010x})")]
    BadCrc {
        /// The stored CRC.
        stored: u32,
        /// The CRC of the bytes read.
        computed: u32,
    },
    /// A record kind this build does not know.
    #[error("unknown record kind {kind}")]
    UnknownKind {
        /// The kind byte.
        kind: u8,
    },
    /// The payload passed its CRC but does not decode.
    #[error("undecodable payload: {message}")]
    Decode {
        /// The decoder's message.
        message: String,
    },
    /// The segment header is not a logd segment header of this version.
    #[error("bad segment header: {reason}")]
    BadHeader {
        /// What is wrong.
        reason: String,
    },
    /// A read from the file failed.
    #[error("read failed: {message}")]
    Io {
        /// The I/O error's message.
        message: String,
    },
}

impl WalError {
    fn new(offset: u64, kind: WalErrorKind) -> WalError {
        WalError { offset, kind }
    }
}

/// File name of the segment whose first commit is `first`: 20 zero-padded digits + `.seg`.
pub fn segment_file_name(first: u64) -> String {
    format!("{first:020}.seg")
}

/// The first commit of a segment file name produced by [`segment_file_name`],
/// or `None` for any other name.
pub fn parse_segment_file_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(".seg")?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The segment header for a segment whose first commit is `first`.
pub fn encode_header(first: u64) -> [u8; HEADER_LEN as usize] {
    let mut h = [0u8; HEADER_LEN as usize];
    h[..8].copy_from_slice(&SEGMENT_MAGIC);
    h[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    h[12..20].copy_from_slice(&first.to_le_bytes());
    let crc = crc32fast::hash(&h[..20]);
    h[20..24].copy_from_slice(&crc.to_le_bytes());
    h
}

/// Decodes a segment header, returning its first commit.
pub fn decode_header(bytes: &[u8]) -> Result<u64, WalError> {
    let bad = |reason: &str| {
        WalError::new(
            0,
            WalErrorKind::BadHeader {
                reason: reason.to_string(),
            },
        )
    };
    if bytes.len() < HEADER_LEN as usize {
        return Err(WalError::new(
            0,
            WalErrorKind::Truncated {
                needed: HEADER_LEN,
                available: bytes.len() as u64,
            },
        ));
    }
    let stored = u32::from_le_bytes([bytes[20], bytes[21], bytes[22], bytes[23]]);
    let computed = crc32fast::hash(&bytes[..20]);
    if stored != computed {
        return Err(WalError::new(0, WalErrorKind::BadCrc { stored, computed }));
    }
    if bytes[..8] != SEGMENT_MAGIC {
        return Err(bad("wrong magic"));
    }
    let version = u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]);
    if version != FORMAT_VERSION {
        return Err(bad(&format!("unsupported format version {version}")));
    }
    let mut first = [0u8; 8];
    first.copy_from_slice(&bytes[12..20]);
    Ok(u64::from_le_bytes(first))
}

/// Appends the frame of `entry` to `buf` and returns the frame's length in
/// bytes. On error nothing is left appended.
pub fn encode_entry_into(buf: &mut Vec<u8>, entry: &Entry) -> Result<usize, WalError> {
    let start = buf.len();
    buf.extend_from_slice(&[0u8; FRAME_HEADER_LEN]);
    buf.push(KIND_ENTRY);
    if let Err(e) = rmp_serde::encode::write(buf, entry) {
        buf.truncate(start);
        return Err(WalError::new(
            0,
            WalErrorKind::Decode {
                message: format!("encode: {e}"),
            },
        ));
    }
    let body_len = buf.len() - start - FRAME_HEADER_LEN;
    let len = match u32::try_from(body_len) {
        Ok(l) if l <= MAX_FRAME_LEN => l,
        _ => {
            buf.truncate(start);
            return Err(WalError::new(0, WalErrorKind::BadLength { len: u32::MAX }));
        }
    };
    let crc = crc32fast::hash(&buf[start + FRAME_HEADER_LEN..]);
    buf[start..start + 4].copy_from_slice(&len.to_le_bytes());
    buf[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
    Ok(buf.len() - start)
}

/// The frame of `entry` as a new buffer.
pub fn encode_entry(entry: &Entry) -> Result<Vec<u8>, WalError> {
    let mut buf = Vec::new();
    encode_entry_into(&mut buf, entry)?;
    Ok(buf)
}

/// Decodes the frame at the start of `bytes`, which sit at file offset
/// `offset`. Returns the entry and the frame's total length.
pub fn decode_frame(bytes: &[u8], offset: u64) -> Result<(Entry, usize), WalError> {
    let body = frame_body(bytes, offset)?;
    let entry = decode_body(body, offset)?;
    Ok((entry, FRAME_HEADER_LEN + body.len()))
}

/// Checks a frame's length and CRC and returns its body (kind + payload).
fn frame_body(bytes: &[u8], offset: u64) -> Result<&[u8], WalError> {
    if bytes.len() < FRAME_HEADER_LEN {
        return Err(WalError::new(
            offset,
            WalErrorKind::Truncated {
                needed: FRAME_HEADER_LEN as u64,
                available: bytes.len() as u64,
            },
        ));
    }
    let len = u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
    if len == 0 || len > MAX_FRAME_LEN {
        return Err(WalError::new(offset, WalErrorKind::BadLength { len }));
    }
    let rest = &bytes[FRAME_HEADER_LEN..];
    if (len as usize) > rest.len() {
        return Err(WalError::new(
            offset,
            WalErrorKind::Truncated {
                needed: FRAME_HEADER_LEN as u64 + u64::from(len),
                available: bytes.len() as u64,
            },
        ));
    }
    let body = &rest[..len as usize];
    let stored = u32::from_le_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]);
    let computed = crc32fast::hash(body);
    if stored != computed {
        return Err(WalError::new(
            offset,
            WalErrorKind::BadCrc { stored, computed },
        ));
    }
    Ok(body)
}

fn decode_body(body: &[u8], offset: u64) -> Result<Entry, WalError> {
    match body.first() {
        Some(&KIND_ENTRY) => rmp_serde::from_slice(&body[1..]).map_err(|e| {
            WalError::new(
                offset,
                WalErrorKind::Decode {
                    message: e.to_string(),
                },
            )
        }),
        Some(&kind) => Err(WalError::new(offset, WalErrorKind::UnknownKind { kind })),
        None => Err(WalError::new(offset, WalErrorKind::BadLength { len: 0 })),
    }
}

/// How a scanned segment ends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TailStatus {
    /// Every byte after the header belongs to a good record.
    Clean,
    /// The bytes from `offset` on are a torn or corrupt tail: no good record
    /// follows the failure, so truncating at `offset` loses only what was
    /// never completely written.
    Torn {
        /// Where the good records end.
        offset: u64,
        /// Why the frame at `offset` is bad.
        error: WalError,
    },
    /// From `offset` on there are only zero bytes: space the writer filled
    /// ahead of its records. Nothing was lost; appends continue at `offset`.
    Zeroed {
        /// Where the records end.
        offset: u64,
    },
    /// A bad frame at `error.offset` is followed by at least one good record
    /// (found at `next_good`): this is corruption inside the segment, never
    /// a torn tail.
    Corrupt {
        /// The failure.
        error: WalError,
        /// Offset of a good frame found after the failure.
        next_good: u64,
    },
}

/// One good record found by [`scan`].
#[derive(Clone, Debug, PartialEq)]
pub struct ScannedRecord {
    /// Where the record is.
    pub location: Location,
    /// The decoded entry.
    pub entry: Entry,
}

/// The result of scanning one segment.
#[derive(Clone, Debug, PartialEq)]
pub struct Scan {
    /// The first commit named by the header.
    pub first_commit: u64,
    /// The good records, in file order (with [`scan_decoding_after`],
    /// only those after the given commit).
    pub records: Vec<ScannedRecord>,
    /// Good frames that [`scan_decoding_after`] checked (length and CRC)
    /// but did not decode: the first ones of the segment, commits
    /// `first_commit ..`, in file order. Empty for [`scan`].
    pub skipped: Vec<Location>,
    /// Where the good records end (the header length for an empty segment).
    pub good_len: u64,
    /// How the segment ends.
    pub tail: TailStatus,
}

/// Scans a whole segment's bytes: checks the header, then every frame's
/// length and CRC, and decodes every entry. A header error is returned as
/// `Err`; a bad frame ends the scan with a [`TailStatus`] that says whether
/// any good frame follows it.
pub fn scan(bytes: &[u8]) -> Result<Scan, WalError> {
    scan_decoding_after(bytes, 0)
}

/// [`scan`], except that the frames of commits up to `after` (numbered from
/// the header's first commit, one per frame) get their length and CRC
/// checked but are not decoded: they are listed in [`Scan::skipped`], and
/// their payload's commit number is not compared with the frame's place.
/// Recovery uses this to skip the records an index checkpoint covers.
pub fn scan_decoding_after(bytes: &[u8], after: u64) -> Result<Scan, WalError> {
    let first_commit = decode_header(bytes)?;
    let mut records = Vec::new();
    let mut skipped = Vec::new();
    let mut pos = HEADER_LEN as usize;
    let tail = loop {
        if pos == bytes.len() {
            break TailStatus::Clean;
        }
        let commit = first_commit.saturating_add(skipped.len() as u64);
        if records.is_empty()
            && commit <= after
            && let Ok(body) = frame_body(&bytes[pos..], pos as u64)
            && body.first() == Some(&KIND_ENTRY)
        {
            let n = FRAME_HEADER_LEN + body.len();
            skipped.push(Location {
                segment: first_commit,
                offset: pos as u64,
                len: n as u32,
            });
            pos += n;
            continue;
        }
        match decode_frame(&bytes[pos..], pos as u64) {
            Ok((entry, n)) => {
                records.push(ScannedRecord {
                    location: Location {
                        segment: first_commit,
                        offset: pos as u64,
                        len: n as u32,
                    },
                    entry,
                });
                pos += n;
            }
            Err(_) if bytes[pos..].iter().all(|&b| b == 0) => {
                break TailStatus::Zeroed { offset: pos as u64 };
            }
            Err(error) => match find_good_frame(bytes, pos + 1) {
                Some(next_good) => break TailStatus::Corrupt { error, next_good },
                None => {
                    break TailStatus::Torn {
                        offset: pos as u64,
                        error,
                    };
                }
            },
        }
    };
    Ok(Scan {
        first_commit,
        records,
        skipped,
        good_len: pos as u64,
        tail,
    })
}

/// The first offset at or after `from` where a whole frame with a good CRC
/// and a decodable entry starts. Used only after a failure, to tell a torn
/// tail (nothing good after it) from corruption inside a segment.
fn find_good_frame(bytes: &[u8], from: usize) -> Option<u64> {
    let mut pos = from;
    while pos + FRAME_HEADER_LEN < bytes.len() {
        let len = u32::from_le_bytes([bytes[pos], bytes[pos + 1], bytes[pos + 2], bytes[pos + 3]]);
        let fits = len != 0
            && len <= MAX_FRAME_LEN
            && (len as usize) <= bytes.len() - pos - FRAME_HEADER_LEN;
        if fits
            && bytes[pos + FRAME_HEADER_LEN] == KIND_ENTRY
            && let Ok(body) = frame_body(&bytes[pos..], pos as u64)
            && decode_body(body, pos as u64).is_ok()
        {
            return Some(pos as u64);
        }
        pos += 1;
    }
    None
}

/// Reads and checks one record at `loc` with positional reads (safe while a
/// writer appends to the same file).
pub fn read_at(file: &File, loc: Location) -> Result<Entry, WalError> {
    if loc.len as usize <= FRAME_HEADER_LEN || loc.len > MAX_FRAME_LEN + FRAME_HEADER_LEN as u32 {
        return Err(WalError::new(
            loc.offset,
            WalErrorKind::BadLength { len: loc.len },
        ));
    }
    let mut buf = vec![0u8; loc.len as usize];
    let mut done = 0usize;
    while done < buf.len() {
        match file.read_at(&mut buf[done..], loc.offset + done as u64) {
            Ok(0) => {
                return Err(WalError::new(
                    loc.offset,
                    WalErrorKind::Truncated {
                        needed: u64::from(loc.len),
                        available: done as u64,
                    },
                ));
            }
            Ok(n) => done += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => {
                return Err(WalError::new(
                    loc.offset,
                    WalErrorKind::Io {
                        message: e.to_string(),
                    },
                ));
            }
        }
    }
    let (entry, n) = decode_frame(&buf, loc.offset)?;
    if n != buf.len() {
        return Err(WalError::new(
            loc.offset,
            WalErrorKind::BadLength { len: loc.len },
        ));
    }
    Ok(entry)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::Value;
    use proptest::prelude::*;

    fn entry(commit: u64, s: &str) -> Entry {
        Entry {
            commit,
            tx_id: commit.wrapping_mul(7),
            timestamp: commit,
            patch: Node::object([("a", Node::string(s)), ("n", Node::int(commit as i64))]),
            participants: vec![ParticipantRecord {
                path: KPath::parse("a").unwrap(),
                matches: Some((KPath::parse("a.b").unwrap(), Node::new(Value::Null))),
            }],
            meta: EntryMeta {
                label: Some("l".into()),
                seq: None,
            },
        }
    }

    fn segment(first: u64, n: u64) -> Vec<u8> {
        let mut b = encode_header(first).to_vec();
        for c in first..first + n {
            encode_entry_into(&mut b, &entry(c, &"x".repeat(c as usize % 13))).unwrap();
        }
        b
    }

    #[test]
    fn names_round_trip() {
        assert_eq!(segment_file_name(42), "00000000000000000042.seg");
        assert_eq!(parse_segment_file_name(&segment_file_name(42)), Some(42));
        assert_eq!(parse_segment_file_name("42.seg"), None);
        assert_eq!(parse_segment_file_name("0000000000000000004x.seg"), None);
    }

    #[test]
    fn header_checks() {
        let h = encode_header(9);
        assert_eq!(decode_header(&h), Ok(9));
        let mut bad = h;
        bad[13] ^= 1;
        assert!(matches!(
            decode_header(&bad).unwrap_err().kind,
            WalErrorKind::BadCrc { .. }
        ));
        assert!(matches!(
            decode_header(&h[..10]).unwrap_err().kind,
            WalErrorKind::Truncated { .. }
        ));
    }

    #[test]
    fn scan_clean_and_read_at() {
        let bytes = segment(5, 10);
        let s = scan(&bytes).unwrap();
        assert_eq!(s.tail, TailStatus::Clean);
        assert_eq!(s.records.len(), 10);
        assert_eq!(s.good_len, bytes.len() as u64);
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s");
        std::fs::write(&p, &bytes).unwrap();
        let f = File::open(&p).unwrap();
        for (i, r) in s.records.iter().enumerate() {
            assert_eq!(r.entry.commit, 5 + i as u64);
            assert_eq!(read_at(&f, r.location).unwrap(), r.entry);
        }
        let mut loc = s.records[3].location;
        loc.len -= 1;
        assert!(read_at(&f, loc).is_err());
    }

    #[test]
    fn scan_decoding_after_skips_only_the_first_commits() {
        let bytes = segment(5, 10);
        let full = scan(&bytes).unwrap();
        for after in [0, 4, 5, 9, 14, 20] {
            let s = scan_decoding_after(&bytes, after).unwrap();
            let n_skipped = after.saturating_sub(4).min(10) as usize;
            assert_eq!(s.skipped.len(), n_skipped, "after {after}");
            let locs: Vec<Location> = full.records.iter().map(|r| r.location).collect();
            assert_eq!(s.skipped, locs[..n_skipped]);
            assert_eq!(s.records, full.records[n_skipped..]);
            assert_eq!((s.good_len, &s.tail), (full.good_len, &full.tail));
        }
        // A bad CRC in a skipped frame is still found.
        let victim = full.records[2].location;
        let mut bad = bytes.clone();
        bad[victim.offset as usize + 12] ^= 0x10;
        let s = scan_decoding_after(&bad, 100).unwrap();
        assert_eq!(s.skipped.len(), 2);
        assert!(
            matches!(s.tail, TailStatus::Corrupt { error, .. } if error.offset == victim.offset)
        );
    }

    #[test]
    fn huge_length_is_an_error_not_an_allocation() {
        let mut bytes = segment(1, 1);
        let at = HEADER_LEN as usize;
        bytes[at..at + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        let s = scan(&bytes).unwrap();
        assert!(matches!(s.tail, TailStatus::Torn { offset, .. } if offset == HEADER_LEN));
        let e = decode_frame(&bytes[at..], at as u64).unwrap_err();
        assert_eq!(e.kind, WalErrorKind::BadLength { len: u32::MAX });
    }

    #[test]
    fn zero_fill_after_records_is_not_damage() {
        let mut bytes = segment(1, 3);
        let end = bytes.len() as u64;
        bytes.extend_from_slice(&[0u8; 4096]);
        let s = scan(&bytes).unwrap();
        assert_eq!(s.records.len(), 3);
        assert_eq!(s.good_len, end);
        assert_eq!(s.tail, TailStatus::Zeroed { offset: end });
        // A torn record followed by zeros is still a torn tail.
        bytes[end as usize] = 7;
        assert!(
            matches!(scan(&bytes).unwrap().tail, TailStatus::Torn { offset, .. } if offset == end)
        );
    }

    #[test]
    fn mid_segment_flip_is_corrupt() {
        let bytes = segment(1, 6);
        let s = scan(&bytes).unwrap();
        let victim = s.records[2].location;
        let mut bad = bytes.clone();
        bad[victim.offset as usize + 12] ^= 0x10;
        match scan(&bad).unwrap().tail {
            TailStatus::Corrupt { error, next_good } => {
                assert_eq!(error.offset, victim.offset);
                assert_eq!(next_good, s.records[3].location.offset);
            }
            t => panic!("expected corrupt, got {t:?}"),
        }
    }

    proptest! {
        #[test]
        fn entries_round_trip(s in ".{0,40}", commit in 1u64..u64::MAX, tx in any::<u64>()) {
            let mut e = entry(commit, &s);
            e.tx_id = tx;
            let f = encode_entry(&e).unwrap();
            let (d, n) = decode_frame(&f, 0).unwrap();
            prop_assert_eq!(n, f.len());
            prop_assert_eq!(d, e);
        }

        #[test]
        fn every_cut_of_the_last_record_is_a_torn_tail(n in 1u64..5, cut in 0usize..1000) {
            let bytes = segment(1, n);
            let s = scan(&bytes).unwrap();
            let last = s.records.last().unwrap().location;
            let cut = last.offset as usize + cut % (last.len as usize);
            let r = scan(&bytes[..cut]).unwrap();
            prop_assert_eq!(r.records.len() as u64, n - 1);
            prop_assert_eq!(r.good_len, last.offset);
            if cut == last.offset as usize {
                prop_assert_eq!(r.tail, TailStatus::Clean);
            } else {
                let torn = matches!(r.tail, TailStatus::Torn { offset, .. } if offset == last.offset);
                prop_assert!(torn);
            }
        }

        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let mut b = encode_header(1).to_vec();
            b.extend_from_slice(&bytes);
            let _ = scan(&b);
            let _ = decode_frame(&bytes, 0);
        }
    }
}
