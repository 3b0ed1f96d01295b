//! The `logd` binary end to end: each subcommand's output and exit code.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::{Command, Output};

fn logd(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_logd"))
        .arg("--dir")
        .arg(dir)
        .args(args)
        .env_remove("LOGD_DIR")
        .output()
        .unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8(o.stderr.clone()).unwrap()
}

/// Runs and expects success; returns stdout.
fn ok(dir: &Path, args: &[&str]) -> String {
    let o = logd(dir, args);
    assert!(
        o.status.success(),
        "logd {args:?} failed: {}{}",
        stdout(&o),
        stderr(&o)
    );
    stdout(&o)
}

#[test]
fn patch_get_at_two_commits_and_outcomes() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    assert_eq!(
        ok(d, &["patch", "a", "{x: 1, y: [1, 2]}", "--label", "first"]),
        "committed 1\n"
    );
    assert_eq!(ok(d, &["patch", "a.x", "2"]), "committed 2\n");
    // A match that does not hold, and a stale seq.
    assert_eq!(
        ok(d, &["patch", "a.x", "3", "--match", "a.x=5"]),
        "not matched\n"
    );
    assert_eq!(
        ok(d, &["patch", "a.x", "3", "--seq", "1"]),
        "stale (latest 2)\n"
    );
    // A match that holds (JSON pattern works too).
    assert_eq!(
        ok(d, &["patch", "a.x", "3", "--match", "a={\"x\": 2}"]),
        "committed 3\n"
    );

    assert_eq!(ok(d, &["get", "a", "--at", "1"]), "{x: 1, y: [1, 2]}\n");
    assert_eq!(ok(d, &["get", "a", "--at", "2"]), "{x: 2, y: [1, 2]}\n");
    assert_eq!(ok(d, &["get", "a.x"]), "3\n");
    assert_eq!(
        ok(d, &["get", "a", "--at", "1", "--json"]),
        "{\"x\":1,\"y\":[1,2]}\n"
    );
    assert_eq!(ok(d, &["get", "a", "--block"]), "x: 3\ny:\n- 1\n- 2\n");
    // Absent: nothing on stdout, a note on stderr, exit 0.
    let o = logd(d, &["get", "nope"]);
    assert!(o.status.success());
    assert_eq!(stdout(&o), "");
    assert!(stderr(&o).contains("absent at commit 3"), "{}", stderr(&o));
    // A future commit is an error.
    let o = logd(d, &["get", "a", "--at", "99"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("future"), "{}", stderr(&o));
}

#[test]
fn bad_data_and_bad_path_are_one_clear_line() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    let o = logd(d, &["patch", "a", "{x: 1,\n  y: }"]);
    assert!(!o.status.success());
    let err = stderr(&o);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("bad DATA") && err.contains("line 2, column"),
        "{err}"
    );

    let o = logd(d, &["patch", "a..b", "1"]);
    assert!(!o.status.success());
    let err = stderr(&o);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("bad path") && err.contains("offset 2"),
        "{err}"
    );

    let o = logd(d, &["patch", "a", "1", "--match", "a[x=1"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("bad --match path"), "{}", stderr(&o));

    let o = logd(d, &["patch", "a", "1", "--match", "a=[1,"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("bad --match PATTERN"), "{}", stderr(&o));
    // Nothing was committed by the failures.
    assert_eq!(ok(d, &["log"]), "");
}

#[test]
fn log_lists_commits_touching_a_path() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    ok(d, &["patch", "a", "1", "--label", "one"]);
    ok(d, &["patch", "b", "2"]);
    ok(d, &["patch", "a", "3", "--label", "three words"]);
    let all = ok(d, &["log"]);
    assert_eq!(all.lines().count(), 3, "{all}");
    let a = ok(d, &["log", "--path", "a"]);
    let lines: Vec<&str> = a.lines().collect();
    assert_eq!(lines.len(), 2, "{a}");
    let f: Vec<&str> = lines[0].splitn(4, ' ').collect();
    assert_eq!(f[0], "1");
    // RFC 3339 UTC with milliseconds.
    assert_eq!(f[1].len(), 24, "{}", f[1]);
    assert!(
        f[1].ends_with('Z') && f[1].as_bytes()[10] == b'T',
        "{}",
        f[1]
    );
    assert!(f[2].starts_with("tx-"), "{}", f[2]);
    assert_eq!(f[3], "one");
    assert!(
        lines[1].starts_with("3 ") && lines[1].ends_with(" three words"),
        "{a}"
    );
    let b = ok(d, &["log", "--path", "b"]);
    assert!(b.starts_with("2 ") && b.trim_end().ends_with(" -"), "{b}");
    assert_eq!(
        ok(d, &["log", "--path", "a", "--from", "1", "--to", "2"]),
        ""
    );
}

#[test]
fn check_good_store_then_flipped_byte() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    for i in 0..3 {
        ok(d, &["patch", "k", &i.to_string()]);
    }
    let out = ok(d, &["check"]);
    assert!(
        out.contains("3 records") && out.trim_end().ends_with(": ok"),
        "{out}"
    );
    let report = logd::inspect::check(d);
    assert!(
        report.is_ok() && report.records == 3 && report.meta,
        "{report:?}"
    );

    // Flip a byte inside the first record's payload.
    let seg = d.join("wal").join("00000000000000000001.seg");
    let mut bytes = std::fs::read(&seg).unwrap();
    let at = 24 + 12;
    bytes[at] ^= 0x5a;
    std::fs::write(&seg, &bytes).unwrap();
    let before = std::fs::read(&seg).unwrap();

    let o = logd(d, &["check"]);
    assert!(!o.status.success());
    let out = stdout(&o);
    let first = out.lines().next().unwrap();
    assert!(
        first.starts_with("wal/00000000000000000001.seg: 24: "),
        "{out}"
    );
    assert!(stderr(&o).contains("problems found"), "{}", stderr(&o));
    // Read-only: check changed nothing (recovery would have truncated).
    assert_eq!(std::fs::read(&seg).unwrap(), before);
}

#[test]
fn a_torn_tail_cut_at_open_is_reported() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    for i in 0..3 {
        ok(d, &["patch", "k", &i.to_string()]);
    }
    // Cut the last record in half, as a crash in the middle of its write would.
    let seg = d.join("wal").join("00000000000000000001.seg");
    let bytes = std::fs::read(&seg).unwrap();
    let scan = logd_core::wal::scan(&bytes).unwrap();
    let last = scan.records.last().unwrap().location;
    let cut = last.offset + u64::from(last.len) / 2;
    std::fs::write(&seg, &bytes[..cut as usize]).unwrap();
    let o = logd(d, &["get", "k"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o).trim(), "1");
    assert!(
        stderr(&o).contains(&format!("cut a torn tail off {}", seg.display()))
            && stderr(&o).contains(&format!("at offset {}", last.offset)),
        "{}",
        stderr(&o)
    );
    // Once cut, the next open finds nothing to repair.
    let o = logd(d, &["get", "k"]);
    assert_eq!(stderr(&o), "");
}

#[test]
fn check_reports_bad_meta() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    ok(d, &["patch", "k", "1"]);
    let meta = d.join("meta");
    let mut bytes = std::fs::read(&meta).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(&meta, &bytes).unwrap();
    let o = logd(d, &["check"]);
    assert!(!o.status.success());
    assert!(stdout(&o).starts_with("meta: "), "{}", stdout(&o));
}

#[test]
fn stats_reports_commits_segments_index() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    ok(d, &["patch", "a.b", "1"]);
    ok(d, &["patch", "a.c", "2"]);
    let out = ok(d, &["stats"]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "commit: 2", "{out}");
    assert!(lines[1].starts_with("segments: 1 ("), "{out}");
    assert!(
        lines[2].starts_with("  wal/00000000000000000001.seg "),
        "{out}"
    );
    assert!(out.contains("snapshots: 0 (0 bytes)"), "{out}");
    assert!(out.contains("index: 2 commits,"), "{out}");
}

#[test]
fn demo_runs_to_completion() {
    let t = tempfile::tempdir().unwrap();
    let out = ok(t.path(), &["demo"]);
    assert!(out.contains("-> not matched"), "{out}");
    assert!(out.contains("task 2: patch audit.o1"), "{out}");
    assert!(
        out.contains("shop.stock @ 2: {apples: 7, pears: 4}"),
        "{out}"
    );
    assert!(out.contains("reopened at commit 3"), "{out}");
    assert!(out.contains("== done"), "{out}");
    // It ran in a fresh directory under --dir; a second run uses another one.
    ok(t.path(), &["demo"]);
    let n = std::fs::read_dir(t.path()).unwrap().count();
    assert_eq!(n, 2);
}

/// Parses `ack <commit> <path> <value>` lines; checks every path's values
/// are 1, 2, 3, ... and the commits are exactly 1..=max.
fn check_acks(out: &str, participants: usize) -> usize {
    let mut per_path: BTreeMap<String, Vec<(u64, i64)>> = BTreeMap::new();
    let mut per_commit: BTreeMap<u64, usize> = BTreeMap::new();
    for line in out.lines() {
        let f: Vec<&str> = line.split(' ').collect();
        assert_eq!(f.len(), 4, "{line}");
        assert_eq!(f[0], "ack");
        let c: u64 = f[1].parse().unwrap();
        let v: i64 = f[3].parse().unwrap();
        per_path.entry(f[2].to_string()).or_default().push((c, v));
        *per_commit.entry(c).or_default() += 1;
    }
    for (path, acks) in &per_path {
        for (i, (c, v)) in acks.iter().enumerate() {
            assert_eq!(*v, i as i64 + 1, "{path}: gap at {c}");
            if i > 0 {
                assert!(*c > acks[i - 1].0, "{path}: commits not increasing");
            }
        }
    }
    let commits: BTreeSet<u64> = per_commit.keys().copied().collect();
    let max = commits.iter().next_back().copied().unwrap_or(0);
    assert_eq!(commits, (1..=max).collect(), "commit numbers have gaps");
    assert!(per_commit.values().all(|&n| n == participants));
    per_path.len()
}

#[test]
fn stress_prints_gap_free_acks() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path().join("s1");
    let out = ok(&d, &["stress", "--writers", "3", "--duration", "1"]);
    assert!(out.lines().count() > 10, "{out}");
    assert_eq!(check_acks(&out, 1), 3);
    // What was acknowledged is what is stored.
    let last = ok(&d, &["get", "stress"]);
    let max_w0 = out
        .lines()
        .filter(|l| l.split(' ').nth(2) == Some("stress.w0"))
        .count();
    assert!(last.contains(&format!("w0: {max_w0}")), "{last}");

    let d = t.path().join("s2");
    let out = ok(
        &d,
        &[
            "stress",
            "--writers",
            "2",
            "--duration",
            "0.5",
            "--txs-participants",
            "3",
        ],
    );
    assert_eq!(check_acks(&out, 3), 6);
}

#[test]
fn missing_dir_check_fails() {
    let t = tempfile::tempdir().unwrap();
    let o = logd(&t.path().join("nothing-here"), &["check"]);
    assert!(!o.status.success());
    assert!(stdout(&o).contains("not a directory"), "{}", stdout(&o));
}

#[allow(dead_code)]
#[path = "../examples/embedded_service.rs"]
mod embedded_service;

#[allow(dead_code)]
#[path = "../examples/mailbox_load.rs"]
mod mailbox_load;

#[tokio::test]
async fn example_embedded_service_runs() {
    let t = tempfile::tempdir().unwrap();
    // 4 accounts, then one transfer.
    assert_eq!(embedded_service::run(t.path()).await.unwrap(), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn example_mailbox_load_runs() {
    let t = tempfile::tempdir().unwrap();
    let (n, rate) = mailbox_load::run(t.path(), 4, 50).await.unwrap();
    assert_eq!(n, 200);
    assert!(rate > 0.0);
}

#[test]
fn store_dir_from_env_and_root_path() {
    let t = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_logd"))
            .env("LOGD_DIR", t.path())
            .args(args)
            .output()
            .unwrap()
    };
    let o = run(&["patch", "", "{a: 1}"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), "committed 1\n");
    assert_eq!(stdout(&run(&["get", ""])), "{a: 1}\n");
    assert!(t.path().join("wal").is_dir());
    // At commit 0 nothing exists.
    let o = run(&["get", "a", "--at", "0"]);
    assert!(o.status.success());
    assert_eq!(stdout(&o), "");
}
