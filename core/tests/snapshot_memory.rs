//! Snapshot building streams: a document of many small keys spread over
//! many objects is snapshotted round by round, each snapshot rewritten from
//! the previous one plus the new commits' patches, while the peak resident
//! memory stays far below what the same document takes as a `Node`.
//!
//! The work runs in child processes (this test binary, re-run with
//! `LOGD_SNAPMEM_CHILD` set) so each peak (`VmHWM` in `/proc/self/status`)
//! belongs to one job: `doc` builds the whole document as a `Node`, `snap`
//! builds the same document as snapshots, `base` does nothing (the test
//! binary's own footprint). Default: the full 1,000,000 keys (1,000
//! objects × 1,000; a few seconds); `LOGD_SNAPSHOT_1M=0` runs 100,000 (100
//! objects) instead. Run with `--nocapture` to see the figures.

use std::io::BufWriter;
use std::path::Path;
use std::process::Command;

use logd_core::kpath::KPath;
use logd_core::node::Node;
use logd_core::snapshot::{SnapshotReader, SnapshotWriter, rewrite};

const KEYS_PER_OBJECT: usize = 1_000;
/// Snapshot rounds; each adds `objects / ROUNDS` objects (one commit each).
const ROUNDS: usize = 20;
const CHILD: &str = "LOGD_SNAPMEM_CHILD";
const TEST: &str = "snapshot_of_many_keys_streams_in_bounded_memory";

fn objects() -> usize {
    if std::env::var("LOGD_SNAPSHOT_1M").is_ok_and(|v| v == "0") {
        100
    } else {
        1_000
    }
}

fn object_name(o: usize) -> String {
    format!("o{o:04}")
}

/// The object `o`: `{k0000: o*1000+0, ..., k0999: ...}`.
fn object(o: usize) -> Node {
    Node::object((0..KEYS_PER_OBJECT).map(|k| {
        (
            format!("k{k:04}"),
            Node::int((o * KEYS_PER_OBJECT + k) as i64),
        )
    }))
}

/// The commit that adds object `o`: a root patch `{o: {...}}`.
fn commit_patch(o: usize) -> Node {
    Node::object([(object_name(o), object(o))])
}

fn vm_hwm_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/self/status")
}

/// Child `doc`: the whole document as one `Node`.
fn child_doc(n: usize) {
    let doc = Node::object((0..n).map(|o| (object_name(o), object(o))));
    std::hint::black_box(&doc);
    println!("RESULT hwm_kib={}", vm_hwm_kib());
    drop(doc);
}

/// Child `snap`: [`ROUNDS`] rounds; each round's commits add `n / ROUNDS`
/// objects, and the round ends with a snapshot rewritten from the previous
/// one (so the replayed patches are one round's, as when a store snapshots
/// every so many commits). Then checks the last snapshot.
fn child_snap(n: usize, dir: &Path) {
    let mut prev = dir.join("0.snap");
    {
        let f = std::fs::File::create(&prev).unwrap();
        SnapshotWriter::new(BufWriter::new(f), 0)
            .and_then(SnapshotWriter::finish)
            .unwrap();
    }
    let mut commit = 0u64;
    let per_round = n.div_ceil(ROUNDS);
    for round in 0..ROUNDS {
        let first = round * per_round;
        let patches: Vec<Node> = (first.min(n)..(first + per_round).min(n))
            .map(commit_patch)
            .collect();
        commit += patches.len() as u64;
        let next = dir.join(format!("{commit}.snap"));
        let reader = SnapshotReader::open_path(&prev).unwrap();
        let out = BufWriter::with_capacity(256 << 10, std::fs::File::create(&next).unwrap());
        let meta = rewrite(&reader, &patches, out, commit).unwrap();
        assert_eq!(meta.commit, commit);
        drop(patches);
        drop(reader);
        std::fs::remove_file(&prev).unwrap();
        prev = next;
    }
    let hwm = vm_hwm_kib();
    let last = SnapshotReader::open_path(&prev).unwrap();
    // The root, one entry per object, one per key.
    assert_eq!(last.entry_count(), (1 + n + n * KEYS_PER_OBJECT) as u64);
    for o in [0, n / 2, n - 1] {
        let p = KPath::parse(&format!("{}.k0007", object_name(o))).unwrap();
        assert_eq!(
            last.read_path(&p).unwrap(),
            Some(Node::int((o * KEYS_PER_OBJECT + 7) as i64))
        );
    }
    let whole = KPath::parse(&object_name(n - 1)).unwrap();
    assert_eq!(last.read_path(&whole).unwrap(), Some(object(n - 1)));
    println!(
        "RESULT hwm_kib={hwm} file_bytes={}",
        std::fs::metadata(&prev).unwrap().len()
    );
}

/// Runs this test in a child with `LOGD_SNAPMEM_CHILD=job`; returns its
/// `RESULT` line's fields.
fn run_child(job: &str) -> Vec<(String, u64)> {
    let exe = std::env::current_exe().unwrap();
    let out = Command::new(exe)
        .args(["--exact", TEST, "--nocapture", "--test-threads=1"])
        .env(CHILD, job)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "child {job} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = stdout
        .lines()
        .find_map(|l| l.split_once("RESULT ").map(|(_, r)| r))
        .unwrap_or_else(|| panic!("child {job} printed no RESULT:\n{stdout}"));
    line.split_whitespace()
        .filter_map(|kv| {
            let (k, v) = kv.split_once('=')?;
            Some((k.to_string(), v.parse().ok()?))
        })
        .collect()
}

fn field(fields: &[(String, u64)], name: &str) -> u64 {
    fields
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| *v)
        .unwrap_or_else(|| panic!("no {name} in {fields:?}"))
}

#[test]
fn snapshot_of_many_keys_streams_in_bounded_memory() {
    let n = objects();
    match std::env::var(CHILD).as_deref() {
        Ok("base") => {
            println!("RESULT hwm_kib={}", vm_hwm_kib());
            return;
        }
        Ok("doc") => return child_doc(n),
        Ok("snap") => {
            let dir = tempfile::tempdir().unwrap();
            return child_snap(n, dir.path());
        }
        _ => {}
    }
    let base = field(&run_child("base"), "hwm_kib");
    let doc = field(&run_child("doc"), "hwm_kib");
    let snap_fields = run_child("snap");
    let snap = field(&snap_fields, "hwm_kib");
    let file = field(&snap_fields, "file_bytes");
    let keys = n * KEYS_PER_OBJECT;
    let doc_mib = doc.saturating_sub(base) as f64 / 1024.0;
    let snap_mib = snap.saturating_sub(base) as f64 / 1024.0;
    eprintln!(
        "snapshot memory: {keys} keys over {n} objects; document as a Node: {doc_mib:.1} MiB \
         (peak {:.1} MiB); building it as {ROUNDS} snapshots, each rewritten from the previous one: \
         peak {:.1} MiB, {snap_mib:.1} MiB above the test binary's own {:.1} MiB; \
         snapshot file {:.1} MiB",
        doc as f64 / 1024.0,
        snap as f64 / 1024.0,
        base as f64 / 1024.0,
        file as f64 / (1024.0 * 1024.0),
    );
    assert!(
        snap_mib * 3.0 < doc_mib,
        "building snapshots took {snap_mib:.1} MiB, not far below the document's {doc_mib:.1} MiB"
    );
}
