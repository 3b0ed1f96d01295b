//! Torn and corrupt files at the `Storage` level.
//!
//! Two golden stores are built (one keeping everything, one whose
//! compaction deleted the oldest segments and snapshot), each with several
//! segments, snapshots and a 2-participant transaction. Every case copies a
//! golden store, damages one file, and opens the copy. The case passes only
//! if the store either
//!
//! * refuses to open with `Error::Corrupt` naming an existing file of the
//!   store and an offset, or
//! * opens, and every commit it still has (`<= current_commit`) reads back
//!   exactly (each acked path at its commit, the root at sampled commits
//!   against the fold), below the horizon `Error::Compacted`; a read may also
//!   fail with `Error::Corrupt` (damage found when the block is read). Fewer
//!   commits than were acknowledged are accepted only when open reported a
//!   torn tail it cut off (`Recovered::truncated`) in the last segment.
//!
//! Cases: seeded random bit flips in every segment, snapshot, `meta` and
//! the index checkpoint (`ckpt/index.ckpt`, written after each snapshot);
//! the newest snapshot deleted, emptied, or cut in half; the oldest one
//! deleted; `meta` deleted (transaction ids must not repeat); the checkpoint
//! deleted or cut in half; the last segment truncated at every offset of
//! its last record; an earlier segment cut short. Damage confined to the
//! checkpoint must never stop the store from opening: it is only an
//! accelerator, ignored when it does not check out.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{Rng, seed_from_env};
use logd::{
    Cutoff, Error, KPath, Node, Options, Outcome, Patch, PatchMeta, Retention, Storage, patch,
};
use logd_actors::RealFs;

/// A golden store: its directory and what was acknowledged.
struct Golden {
    dir: tempfile::TempDir,
    /// The folded root after each commit (index = commit).
    states: Vec<Option<Node>>,
    /// The paths and values each commit wrote (index = commit).
    writes: Vec<Vec<(String, i64)>>,
    /// The largest transaction id handed out.
    max_tx_id: u64,
}

fn options(compaction: Retention) -> Options {
    let mut o = Options::default();
    o.compaction = compaction;
    o
}

async fn build(compaction: Retention) -> Golden {
    let dir = tempfile::tempdir().unwrap();
    let s = Storage::open(dir.path(), options(compaction))
        .await
        .unwrap();
    let mut states = vec![None];
    let mut writes = vec![vec![]];
    let mut n = 0i64;
    let mut max_tx_id = 0;
    for round in 0..4 {
        for i in 0..12 {
            n += 1;
            let parts: Vec<(String, i64)> = if i == 5 {
                vec![(format!("t{round}.a"), n), (format!("t{round}.b"), n)]
            } else {
                vec![(format!("users.u{}.n", (n * 7) % 5), n)]
            };
            let tx = s.new_tx(parts.len(), PatchMeta::default()).await.unwrap();
            max_tx_id = max_tx_id.max(tx.id().0);
            let mut tasks = Vec::new();
            for (path, v) in &parts {
                let mut p = tx
                    .new_patcher(Patch::new(common::kp(path), Node::int(*v)))
                    .await
                    .unwrap();
                tasks.push(tokio::spawn(async move { p.commit().await }));
            }
            let mut commit = 0;
            for t in tasks {
                match t.await.unwrap().unwrap() {
                    Outcome::Committed { commit: c } => commit = c,
                    other => panic!("{other:?}"),
                }
            }
            assert_eq!(commit as usize, states.len());
            let mounted: Vec<(KPath, Node)> = parts
                .iter()
                .map(|(p, v)| (common::kp(p), Node::int(*v)))
                .collect();
            let root = patch::merge(&mounted).unwrap();
            let prev = states.last().cloned().flatten();
            states.push(patch::apply(prev.as_ref(), &root).unwrap());
            writes.push(parts);
        }
        if round < 3 {
            let snap = s.switch_and_snapshot().await.unwrap().unwrap().commit;
            if round == 2 {
                // The checkpoint is written in the background after a
                // snapshot, and closing stops that: wait for it.
                let deadline = Instant::now() + Duration::from_secs(20);
                while logd_actors::checkpoint::read_checkpoint(dir.path())
                    .ok()
                    .flatten()
                    .is_none_or(|c| c.commit < snap)
                {
                    assert!(Instant::now() < deadline, "no checkpoint at {snap}");
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
        }
    }
    s.close().await.unwrap();
    Golden {
        dir,
        states,
        writes,
        max_tx_id,
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for ent in std::fs::read_dir(from).unwrap() {
        let ent = ent.unwrap();
        let dst = to.join(ent.file_name());
        if ent.file_type().unwrap().is_dir() {
            copy_dir(&ent.path(), &dst);
        } else {
            std::fs::copy(ent.path(), &dst).unwrap();
        }
    }
}

fn files(dir: &Path, sub: &str, ext: &str) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir.join(sub))
        .map(|rd| {
            rd.flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|e| e == ext))
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

/// How a case ended.
#[derive(Debug, Default)]
struct Tally {
    cases: usize,
    exact: usize,
    refused: usize,
    tail_cut: usize,
    read_detected: usize,
    compacted_reads: usize,
    reused_tx_ids: usize,
}

/// Opens the damaged copy at `dir` and checks it (see the module docs).
/// `cut_whole_records`: the damage removed this many whole records from the
/// end of the log, which no reader can tell from a log that never had them.
async fn judge(g: &Golden, dir: &Path, label: &str, t: &mut Tally, cut_whole_records: u64) {
    t.cases += 1;
    let opened = tokio::time::timeout(
        Duration::from_secs(20),
        Storage::open_with(dir, Options::default(), Arc::new(RealFs)),
    )
    .await
    .unwrap_or_else(|_| panic!("{label}: open hangs"));
    let (s, rec) = match opened {
        Ok(x) => x,
        Err(Error::Corrupt { file, offset, .. }) => {
            assert!(
                file.starts_with(dir) && file.exists(),
                "{label}: Corrupt names {} (offset {offset})",
                file.display()
            );
            t.refused += 1;
            return;
        }
        Err(e) => panic!("{label}: open failed with a non-Corrupt error: {e}"),
    };
    let acked = g.states.len() as u64 - 1 - cut_whole_records;
    let current = s.current_commit();
    if current < acked {
        let Some((file, _)) = &rec.truncated else {
            panic!("{label}: {acked} commits acked, {current} recovered, no torn tail reported");
        };
        let last_seg = files(dir, "wal", "seg").pop().unwrap();
        assert_eq!(file, &last_seg, "{label}: cut outside the last segment");
        t.tail_cut += 1;
    } else {
        assert_eq!(current, acked, "{label}: commits out of nowhere");
    }
    let h = common::horizon_or_corrupt(&s).await;
    let mut detected = false;
    for c in 1..=current {
        for (path, v) in &g.writes[c as usize] {
            match s.read_state_at(path, c).await {
                Ok(got) => {
                    assert!(c >= h, "{label}: read at {c} below horizon {h} answered");
                    assert_eq!(got, Some(Node::int(*v)), "{label}: {path} at {c}");
                }
                Err(Error::Compacted { .. }) => {
                    assert!(c < h, "{label}: {path} at {c} compacted (horizon {h})");
                    t.compacted_reads += 1;
                }
                Err(Error::Corrupt { .. }) => detected = true,
                Err(e) => panic!("{label}: {path} at {c}: {e}"),
            }
        }
    }
    for c in [h, (h + current) / 2, current] {
        match s.read_state_at("", c).await {
            Ok(root) => assert_eq!(root, g.states[c as usize], "{label}: root at {c}"),
            Err(Error::Corrupt { .. }) => detected = true,
            Err(e) => panic!("{label}: root at {c}: {e}"),
        }
    }
    if detected {
        t.read_detected += 1;
    } else if current == acked {
        t.exact += 1;
    }
    s.close().await.unwrap();
}

fn flip(path: &Path, rng: &mut Rng) -> (u64, u8) {
    let mut bytes = std::fs::read(path).unwrap();
    let at = rng.below(bytes.len() as u64);
    let bit = rng.below(8) as u8;
    bytes[at as usize] ^= 1 << bit;
    std::fs::write(path, bytes).unwrap();
    (at, bit)
}

/// A fresh copy of `gdir`, as the next numbered case under `work`.
fn fresh_copy(gdir: &Path, work: &Path, case: &mut usize) -> PathBuf {
    let copy = work.join(format!("c{case}"));
    *case += 1;
    copy_dir(gdir, &copy);
    copy
}

/// Deletes, empties or halves the file at `p` (`how` names which).
fn damage(p: &Path, how: &str) {
    match how {
        "deleted" => std::fs::remove_file(p).unwrap(),
        "emptied" => truncate(p, 0),
        "halved" => truncate(p, std::fs::metadata(p).unwrap().len() / 2),
        other => panic!("unknown damage {other}"),
    }
}

fn truncate(path: &Path, len: u64) {
    let f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    f.set_len(len).unwrap();
}

/// The offset where the last record of a segment starts, and the end of
/// its records (zero fill excluded).
fn last_record(path: &Path) -> (u64, u64) {
    let bytes = std::fs::read(path).unwrap();
    let scan = logd_core::wal::scan(&bytes).unwrap();
    let last = scan.records.last().expect("a record");
    (
        last.location.offset,
        last.location.offset + last.location.len as u64,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_files_recover_exactly_or_refuse_to_open() {
    let started = Instant::now();
    let seed = seed_from_env("LOGD_CORRUPTION_SEED", 0xc022);
    let flips: u64 = seed_from_env("LOGD_CORRUPTION_FLIPS", 24);
    let mut rng = Rng::new(seed);
    let keep_all = build(Retention::KeepAll).await;
    let compacted = build(Retention::Tiered {
        keep_recent: Cutoff::Commits(5),
        per_tier: 0,
        first_tier: 1,
        multiplier: 2,
    })
    .await;
    let work = tempfile::tempdir().unwrap();
    let mut tallies: BTreeMap<&str, Tally> = BTreeMap::new();
    let mut case = 0;
    for (name, g) in [("keep-all", &keep_all), ("compacted", &compacted)] {
        let gdir = g.dir.path();
        // Each golden store must itself be exact.
        let copy = fresh_copy(gdir, work.path(), &mut case);
        judge(
            g,
            &copy,
            &format!("{name} undamaged"),
            tallies.entry("undamaged").or_default(),
            0,
        )
        .await;

        // Bit flips in every file of every kind.
        let mut targets: Vec<(&str, PathBuf)> = Vec::new();
        for p in files(gdir, "wal", "seg") {
            targets.push(("segment bit flip", p));
        }
        for p in files(gdir, "snap", "snap") {
            targets.push(("snapshot bit flip", p));
        }
        targets.push(("meta bit flip", gdir.join("meta")));
        let checkpoints = files(gdir, "ckpt", "ckpt");
        assert_eq!(
            checkpoints.len(),
            1,
            "{name}: the golden store has a checkpoint"
        );
        for p in checkpoints {
            targets.push(("checkpoint bit flip", p));
        }
        for (kind, target) in &targets {
            let rel = target.strip_prefix(gdir).unwrap().to_path_buf();
            let n = if *kind == "meta bit flip" { 4 } else { flips };
            for _ in 0..n {
                let copy = fresh_copy(gdir, work.path(), &mut case);
                let (at, bit) = flip(&copy.join(&rel), &mut rng);
                let label = format!("{name}: {kind} in {} at {at} bit {bit}", rel.display());
                let t = tallies.entry(kind).or_default();
                let refused = t.refused;
                judge(g, &copy, &label, t, 0).await;
                if *kind == "checkpoint bit flip" {
                    assert_eq!(t.refused, refused, "{label}: must open");
                }
                std::fs::remove_dir_all(&copy).unwrap();
            }
        }

        // The newest snapshot deleted, emptied, cut in half.
        let newest = files(gdir, "snap", "snap").pop().unwrap();
        let rel = newest.strip_prefix(gdir).unwrap().to_path_buf();
        for how in ["deleted", "emptied", "halved"] {
            let copy = fresh_copy(gdir, work.path(), &mut case);
            damage(&copy.join(&rel), how);
            let label = format!("{name}: newest snapshot {how}");
            judge(
                g,
                &copy,
                &label,
                tallies.entry("newest snapshot").or_default(),
                0,
            )
            .await;
            std::fs::remove_dir_all(&copy).unwrap();
        }

        // The checkpoint deleted or cut in half: opens, reads exactly.
        let ckpt = logd_actors::checkpoint::checkpoint_path(gdir);
        let rel = ckpt.strip_prefix(gdir).unwrap().to_path_buf();
        for how in ["deleted", "halved"] {
            let copy = fresh_copy(gdir, work.path(), &mut case);
            damage(&copy.join(&rel), how);
            let label = format!("{name}: checkpoint {how}");
            let t = tallies.entry("checkpoint deleted or cut").or_default();
            let refused = t.refused;
            judge(g, &copy, &label, t, 0).await;
            assert_eq!(t.refused, refused, "{label}: must open");
            std::fs::remove_dir_all(&copy).unwrap();
        }

        // The oldest snapshot deleted (in the compacted store, the one the
        // log continues from): reads fall back to a newer base or refuse.
        let oldest = files(gdir, "snap", "snap").swap_remove(0);
        let rel = oldest.strip_prefix(gdir).unwrap().to_path_buf();
        {
            let copy = fresh_copy(gdir, work.path(), &mut case);
            std::fs::remove_file(copy.join(&rel)).unwrap();
            let label = format!("{name}: oldest snapshot deleted");
            judge(
                g,
                &copy,
                &label,
                tallies.entry("oldest snapshot deleted").or_default(),
                0,
            )
            .await;
            std::fs::remove_dir_all(&copy).unwrap();
        }

        // `meta` deleted: either refused, or reopened with transaction ids
        // that still never repeat one handed out before.
        {
            let copy = fresh_copy(gdir, work.path(), &mut case);
            std::fs::remove_file(copy.join("meta")).unwrap();
            let label = format!("{name}: meta deleted");
            let t = tallies.entry("meta deleted").or_default();
            judge(g, &copy, &label, t, 0).await;
            if let Ok(s) = Storage::open(&copy, Options::default()).await {
                let id = s.new_tx(1, PatchMeta::default()).await.unwrap().id().0;
                s.close().await.unwrap();
                if id <= g.max_tx_id {
                    t.reused_tx_ids += 1;
                    eprintln!(
                        "corruption: {label}: new transaction id {id} repeats one handed out \
                         before (max {}): meta is silently recreated",
                        g.max_tx_id
                    );
                }
            }
            std::fs::remove_dir_all(&copy).unwrap();
        }

        // The last segment cut at every offset of its last record.
        let segs = files(gdir, "wal", "seg");
        let last = segs.last().unwrap();
        let rel = last.strip_prefix(gdir).unwrap().to_path_buf();
        let (start, end) = last_record(last);
        for len in start..=end {
            let copy = fresh_copy(gdir, work.path(), &mut case);
            truncate(&copy.join(&rel), len);
            let label = format!("{name}: last segment cut at {len} (record {start}..{end})");
            let whole = u64::from(len == start);
            let t = tallies.entry("last record cut").or_default();
            judge(g, &copy, &label, t, whole).await;
            std::fs::remove_dir_all(&copy).unwrap();
        }

        // Bits flipped inside the last record: indistinguishable from a
        // torn write, so cut off as a torn tail (reported), never misread.
        for _ in 0..flips / 2 {
            let copy = fresh_copy(gdir, work.path(), &mut case);
            let p = copy.join(&rel);
            let mut bytes = std::fs::read(&p).unwrap();
            let at = rng.range(start, end - 1);
            let bit = rng.below(8) as u8;
            bytes[at as usize] ^= 1 << bit;
            std::fs::write(&p, bytes).unwrap();
            let label = format!("{name}: last record bit flip at {at} bit {bit}");
            let t = tallies.entry("last record bit flip").or_default();
            judge(g, &copy, &label, t, 0).await;
            std::fs::remove_dir_all(&copy).unwrap();
        }

        // An earlier segment cut short: never a torn tail.
        if segs.len() > 1 {
            let first = &segs[0];
            let rel = first.strip_prefix(gdir).unwrap().to_path_buf();
            let (start, end) = last_record(first);
            for len in [start + 1, (start + end) / 2, end - 1] {
                let copy = fresh_copy(gdir, work.path(), &mut case);
                truncate(&copy.join(&rel), len);
                let label = format!("{name}: first segment cut at {len}");
                let t = tallies.entry("earlier segment cut").or_default();
                let refused = t.refused;
                judge(g, &copy, &label, t, 0).await;
                assert_eq!(t.refused, refused + 1, "{label}: must refuse to open");
                std::fs::remove_dir_all(&copy).unwrap();
            }
        }
    }
    let mut total = 0;
    for (kind, t) in &tallies {
        total += t.cases;
        eprintln!(
            "corruption: {kind}: {} cases: {} exact, {} refused to open (Corrupt), \
             {} torn tail cut (reported), {} detected at read (Corrupt), {} compacted reads",
            t.cases, t.exact, t.refused, t.tail_cut, t.read_detected, t.compacted_reads
        );
    }
    eprintln!(
        "corruption: seed {seed:#x}: {total} cases in {:.1} s",
        started.elapsed().as_secs_f64()
    );
}
