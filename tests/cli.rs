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

fn code(o: &Output) -> i32 {
    o.status.code().unwrap_or(-1)
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
    // A match that does not hold, and a stale seq: exit 3.
    let o = logd(d, &["patch", "a.x", "3", "--match", "a.x=5"]);
    assert_eq!((code(&o), stdout(&o).as_str()), (3, "not matched\n"));
    let o = logd(d, &["patch", "a.x", "3", "--seq", "1"]);
    assert_eq!((code(&o), stdout(&o).as_str()), (3, "stale (latest 2)\n"));
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
    // Absent: nothing on stdout, a note on stderr, exit 4.
    let o = logd(d, &["get", "nope"]);
    assert_eq!(code(&o), 4);
    assert_eq!(stdout(&o), "");
    assert!(stderr(&o).contains("absent at commit 3"), "{}", stderr(&o));
    // A future commit is bad input (exit 2).
    let o = logd(d, &["get", "a", "--at", "99"]);
    assert_eq!(code(&o), 2);
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
    // Nothing was committed by the failures: not even a store was made.
    assert!(!d.join("meta").exists(), "a refused patch created a store");
    let o = logd(d, &["log"]);
    assert!(stderr(&o).contains("no store at"), "{}", stderr(&o));
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
    // The range is inclusive at both ends.
    assert_eq!(
        ok(d, &["log", "--path", "a", "--from", "2", "--to", "2"]),
        ""
    );
    let one = ok(d, &["log", "--path", "a", "--from", "1", "--to", "2"]);
    assert!(one.starts_with("1 ") && one.lines().count() == 1, "{one}");
    let three = ok(d, &["log", "--from", "3"]);
    assert!(
        three.starts_with("3 ") && three.lines().count() == 1,
        "{three}"
    );
}

/// Regression (issue 21): `--from 9999` was silently empty while `--to
/// 9999` failed; both are now bad input (exit 2), as is `--from` after `--to`.
#[test]
fn log_range_past_the_current_commit_is_bad_input_at_both_ends() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    ok(d, &["patch", "a", "1"]);
    for args in [
        &["log", "--from", "9999"][..],
        &["log", "--to", "9999"],
        &["log", "--from", "2", "--to", "1"],
    ] {
        let o = logd(d, args);
        assert_eq!(code(&o), 2, "{args:?}: {}", stderr(&o));
        assert!(stderr(&o).contains("9999") || stderr(&o).contains("after --to"));
    }
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
    assert_eq!(o.status.code(), Some(4));
    assert_eq!(stdout(&o), "");
}

/// Runs with `input` on stdin.
fn logd_in(dir: &Path, args: &[&str], input: &[u8]) -> Output {
    use std::io::Write;
    use std::process::Stdio;
    let mut child = Command::new(env!("CARGO_BIN_EXE_logd"))
        .arg("--dir")
        .arg(dir)
        .args(args)
        .env_remove("LOGD_DIR")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(input).unwrap();
    drop(stdin);
    child.wait_with_output().unwrap()
}

/// Issue 21, item 4: DATA from stdin (`-`, past the 128 KiB argument cap),
/// from a file (`@FILE`, `@@` for a literal `@`), strictly as JSON
/// (`--json`) and verbatim as a string (`--string`). Before, `-` stored
/// `[null]` and `@file` the string "@file".
#[test]
fn data_from_stdin_file_json_and_string() {
    let t = tempfile::tempdir().unwrap();
    let d = &t.path().join("s");
    // 300 KiB through stdin.
    let big = format!("{{blob: \"{}\"}}", "x".repeat(300 << 10));
    let o = logd_in(d, &["patch", "big", "-"], big.as_bytes());
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(ok(d, &["get", "big.blob"]).len(), (300 << 10) + 1);
    // From a file, and `@@` for a literal leading `@`.
    let file = t.path().join("data.tony");
    std::fs::write(&file, "{n: 1, m: [a, b]}").unwrap();
    ok(d, &["patch", "f", &format!("@{}", file.display())]);
    assert_eq!(ok(d, &["get", "f"]), "{n: 1, m: [a, b]}\n");
    ok(d, &["patch", "at", "@@home"]);
    assert_eq!(ok(d, &["get", "at", "--json"]), "\"@home\"\n");
    let o = logd(d, &["patch", "f", "@/no/such/file"]);
    assert_eq!(code(&o), 2);
    assert!(stderr(&o).contains("cannot read DATA from /no/such/file"));
    // --string keeps shell text as it is.
    ok(d, &["put", "lang", "--string", "C#"]);
    ok(d, &["put", "who", "--string", "{name: Ada Lovelace}"]);
    assert_eq!(ok(d, &["get", "lang", "--json"]), "\"C#\"\n");
    assert_eq!(
        ok(d, &["get", "who", "--json"]),
        "\"{name: Ada Lovelace}\"\n"
    );
    let o = logd_in(d, &["put", "s", "--string", "-"], b"two\nlines\n");
    assert_eq!(code(&o), 0);
    assert_eq!(ok(d, &["get", "s", "--json"]), "\"two\\nlines\\n\"\n");
    // --json is strict: Tony is refused (exit 2), key order is kept.
    let o = logd(d, &["patch", "j", "--json", "{a: 1}"]);
    assert_eq!(code(&o), 2);
    assert!(stderr(&o).contains("bad DATA (JSON)"), "{}", stderr(&o));
    ok(
        d,
        &[
            "patch",
            "j",
            "--json",
            r#"{"name": "Ada Lovelace", "b": 1, "a": 2.0}"#,
        ],
    );
    assert_eq!(
        ok(d, &["get", "j"]),
        "{name: \"Ada Lovelace\", b: 1, a: 2.0}\n"
    );
}

/// Issue 21, item 5: `get --json` keeps stored key order and maps tags,
/// sparse arrays and non-finite floats losslessly (it used to sort keys
/// and fail on them); the mapping reads back through `--json` DATA.
#[test]
fn json_output_is_lossless_and_in_stored_order() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    ok(
        d,
        &["patch", "", "{z: !point {x: 1}, a: {3: c, 1: d}, f: 1.0}"],
    );
    ok(d, &["patch", "n", "--json", r#"{"!float": "NaN"}"#]);
    let json = ok(d, &["get", "", "--json"]);
    assert_eq!(
        json.trim(),
        r#"{"z":{"!tag":"point","value":{"x":1}},"a":{"!sparse":{"3":"c","1":"d"}},"f":1.0,"n":{"!float":"NaN"}}"#
    );
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert!(v.is_object());
    // Read back: the same document.
    let t2 = tempfile::tempdir().unwrap();
    ok(t2.path(), &["put", "", "--json", json.trim()]);
    assert_eq!(ok(t2.path(), &["get", "", "--json"]), json);
    assert_eq!(
        ok(t2.path(), &["get", "z"]),
        "!point {x: 1}\n",
        "tag survives the round trip"
    );
}

/// Every command speaks JSON with `--json`.
#[test]
fn json_on_write_log_check_stats_snapshot_compact() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    let parse = |s: &str| -> serde_json::Value { serde_json::from_str(s.trim()).unwrap() };
    let v = parse(&ok(d, &["patch", "a", "--json", "1", "--label", "one"]));
    assert_eq!(
        (v["outcome"].as_str(), v["commit"].as_u64()),
        (Some("committed"), Some(1))
    );
    let o = logd(d, &["--json", "patch", "a", "2", "--match", "a=5"]);
    assert_eq!(code(&o), 3);
    assert_eq!(parse(&stdout(&o))["outcome"], "not_matched");
    let o = logd(d, &["patch", "a", "2", "--seq", "0", "--json"]);
    assert_eq!(parse(&stdout(&o))["latest"], 1);
    let log = ok(d, &["log", "--json"]);
    let first = parse(log.lines().next().unwrap());
    assert_eq!(first["commit"], 1);
    assert_eq!(first["label"], "one");
    assert_eq!(first["paths"][0], "a");
    assert!(first["tx"].as_str().unwrap().starts_with("tx-"));
    let v = parse(&ok(d, &["check", "--json"]));
    assert_eq!(
        (v["ok"].as_bool(), v["records"].as_u64()),
        (Some(true), Some(1))
    );
    let v = parse(&ok(d, &["stats", "--json"]));
    assert_eq!(v["commit"], 1);
    assert_eq!(v["segments"].as_array().unwrap().len(), 1);
    let v = parse(&ok(d, &["snapshot", "--json"]));
    assert_eq!(v["commit"], 1);
    let v = parse(&ok(d, &["compact", "--json"]));
    assert!(v["oldest_commit"].is_u64());
    assert_eq!(ok(d, &["ls", "", "--json"]), "[\"a\"]\n");
}

/// `put` replaces (no merge of the old value), `delete` removes (exit 4
/// when already absent), `ls` lists keys in stored order.
#[test]
fn put_delete_and_ls() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    ok(d, &["patch", "u", "{b: {x: 1, y: 2}, a: [1, 2, 3]}"]);
    assert_eq!(ok(d, &["ls", "u"]), "b\na\n");
    assert_eq!(ok(d, &["ls", "u.a"]), "0\n1\n2\n");
    ok(d, &["put", "u.b", "{z: 3}"]);
    assert_eq!(ok(d, &["get", "u.b"]), "{z: 3}\n");
    ok(d, &["put", "u.a", "[9]"]);
    assert_eq!(ok(d, &["get", "u.a"]), "[9]\n");
    ok(d, &["put", "u.a[0]", "{k: v}"]);
    ok(d, &["put", "", "{u: {a: [1, 2, 3]}, v: 1}"]);
    assert_eq!(ok(d, &["get", ""]), "{u: {a: [1, 2, 3]}, v: 1}\n");
    assert_eq!(ok(d, &["delete", "u.a[1]"]), format!("committed {}\n", 6));
    assert_eq!(ok(d, &["get", "u.a"]), "[1, 3]\n");
    ok(d, &["delete", "v"]);
    let o = logd(d, &["delete", "v"]);
    assert_eq!(code(&o), 4);
    assert!(stderr(&o).contains("absent"), "{}", stderr(&o));
    let o = logd(d, &["ls", "u.a[0]"]);
    assert_eq!(code(&o), 1);
    assert!(
        stderr(&o).contains("not an object or array"),
        "{}",
        stderr(&o)
    );
    let o = logd(d, &["ls", "nope"]);
    assert_eq!(code(&o), 4);
    // A conditional put that does not hold writes nothing.
    let o = logd(d, &["put", "u", "1", "--match", "u.a=[]"]);
    assert_eq!(code(&o), 3);
    assert_eq!(ok(d, &["get", "u"]), "{a: [1, 3]}\n");
}

/// Regression (issue 21): `--match` said "(repeatable)" but refused a
/// second one. All must hold.
#[test]
fn several_matches_must_all_hold() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    ok(d, &["patch", "", "{a: {x: 1, y: {z: 2}}, b: 3}"]);
    let both = ["patch", "c", "1", "--match", "a.x=1", "--match", "a.y.z=2"];
    assert_eq!(ok(d, &both), "committed 2\n");
    let o = logd(
        d,
        &["patch", "c", "2", "--match", "a.x=1", "--match", "b=4"],
    );
    assert_eq!((code(&o), stdout(&o).as_str()), (3, "not matched\n"));
    let o = logd(
        d,
        &["patch", "c", "2", "--match", "b=4", "--match", "a.x=1"],
    );
    assert_eq!(code(&o), 3);
    assert_eq!(ok(d, &["get", "c"]), "1\n");
}

/// Regression (issue 21): a `!replace` failure at `users.grace` said "at
/// the root"; the error names the full path, exit 1.
#[test]
fn patch_errors_name_the_full_path() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    ok(d, &["patch", "users.grace", "{name: Grace}"]);
    let o = logd(d, &["patch", "users.grace", "!replace {from: 1, to: 2}"]);
    assert_eq!(code(&o), 1);
    let err = stderr(&o);
    assert!(err.contains("at users.grace:"), "{err}");
    assert!(!err.contains("root"), "{err}");
    let o = logd(
        d,
        &[
            "patch",
            "users",
            "{grace: {name: !replace {from: x, to: y}}}",
        ],
    );
    assert!(
        stderr(&o).contains("at users.grace.name:"),
        "{}",
        stderr(&o)
    );
}

/// Exit codes tell usage errors (2) and a locked store (5) apart from
/// failures (1).
#[tokio::test]
async fn exit_codes_for_usage_and_lock() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    assert_eq!(code(&logd(d, &["patch", "a", "{x: "])), 2);
    assert_eq!(code(&logd(d, &["patch", "a..b", "1"])), 2);
    assert_eq!(code(&logd(d, &["patch"])), 2);
    assert_eq!(code(&logd(d, &["frobnicate"])), 2);
    let s = logd::Storage::open(d, logd::Options::default())
        .await
        .unwrap();
    let o = logd(d, &["get", "a"]);
    assert_eq!(code(&o), 5, "{}", stderr(&o));
    assert!(stderr(&o).contains("locked"), "{}", stderr(&o));
    s.close().await.unwrap();
    let help = ok(d, &["--help"]);
    assert!(help.contains("Exit codes:") && help.contains("5  the store is locked"));
}

/// `diff --from A --to B` prints a patch that turns the state at A into
/// the state at B; applied to a copy of A it gives B.
#[test]
fn diff_applies_to_give_the_later_state() {
    let t = tempfile::tempdir().unwrap();
    let d = &t.path().join("d");
    ok(
        d,
        &["patch", "", "{u: {a: 1, b: [1, 2, 3], c: !t x}, v: keep}"],
    );
    ok(
        d,
        &[
            "patch",
            "u",
            "{a: !delete null, b: !arraydiff {1: !delete 2}, d: new}",
        ],
    );
    ok(d, &["patch", "u.c", "!u y"]);
    let patch = ok(d, &["diff", "u", "--from", "1", "--to", "3"]);
    // A second store holding the state at commit 1 gets the patch.
    let copy = &t.path().join("copy");
    let at1 = ok(d, &["export", "", "--at", "1"]);
    let o = logd_in(copy, &["import", ""], at1.as_bytes());
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    ok(copy, &["patch", "u", patch.trim()]);
    assert_eq!(ok(copy, &["get", ""]), ok(d, &["get", "", "--at", "3"]));
    // Nothing changed: the identity patch; --to defaults to the current commit.
    assert_eq!(ok(d, &["diff", "v", "--from", "1"]), "!pass null\n");
    assert_eq!(
        ok(d, &["diff", "u.a", "--from", "1", "--json"]),
        "{\"!tag\":\"delete\",\"value\":null}\n"
    );
    assert_eq!(code(&logd(d, &["diff", "u", "--from", "9"])), 2);
}

/// `export` / `import` of a subtree, as Tony and as JSON, to a file.
#[test]
fn export_import_round_trip() {
    let t = tempfile::tempdir().unwrap();
    let d = &t.path().join("d");
    ok(
        d,
        &[
            "patch",
            "cfg",
            "{b: !x 1, a: {0: p, 5: q}, s: \"two words\"}",
        ],
    );
    for json in [false, true] {
        let file = t.path().join(format!("cfg-{json}"));
        let f = file.to_str().unwrap();
        let mut args = vec!["export", "cfg", "--output", f];
        if json {
            args.push("--json");
        }
        assert_eq!(ok(d, &args), "");
        let mut args = vec!["import", "copy", f];
        if json {
            args.push("--json");
        }
        ok(d, &args);
        assert_eq!(
            ok(d, &["get", "copy"]),
            ok(d, &["get", "cfg"]),
            "json {json}"
        );
    }
    let o = logd(d, &["export", "nope"]);
    assert_eq!(code(&o), 4);
    let o = logd(d, &["import", "x", "/no/such/file"]);
    assert_eq!(code(&o), 2);
}

/// Regression (issue 21): `logd log | head -1` panicked on the broken pipe
/// (exit 101). It now ends quietly.
#[test]
fn a_closed_stdout_ends_quietly() {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    // A long-running writer of lines: the reader goes away after one.
    let mut child = Command::new(env!("CARGO_BIN_EXE_logd"))
        .arg("--dir")
        .arg(d)
        .args(["stress", "--writers", "2", "--duration", "20"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    out.read_line(&mut first).unwrap();
    assert!(first.starts_with("ack "), "{first}");
    drop(out);
    let started = std::time::Instant::now();
    let o = child.wait_with_output().unwrap();
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(stderr(&o), "");
    assert!(started.elapsed().as_secs() < 15, "it ran on");
    // `log` printing more than a pipe holds (64 KiB): over 2,000 commits.
    for base in 1..=10 {
        let stats = ok(d, &["stats", "--json"]);
        let v: serde_json::Value = serde_json::from_str(stats.trim()).unwrap();
        if v["commit"].as_u64().unwrap() > 2_000 {
            break;
        }
        let base = (base * 1_000_000).to_string();
        let args = ["stress", "--writers", "4", "--duration", "1", "--quiet"];
        ok(
            d,
            &[
                &args[..],
                &["--durability", "buffered", "--value-base", &base],
            ]
            .concat(),
        );
    }
    let mut child = Command::new(env!("CARGO_BIN_EXE_logd"))
        .arg("--dir")
        .arg(d)
        .arg("log")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    out.read_line(&mut first).unwrap();
    drop(out);
    let o = child.wait_with_output().unwrap();
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(!stderr(&o).contains("panicked"), "{}", stderr(&o));
}

/// `stress --quiet` prints only a summary; Ctrl-C (SIGINT) stops it with
/// the summary too.
#[test]
fn stress_quiet_summary_and_ctrl_c() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    let out = ok(
        d,
        &["stress", "--writers", "2", "--duration", "0.3", "--quiet"],
    );
    assert_eq!(out.lines().count(), 1, "{out}");
    assert!(
        out.starts_with("stress: ") && out.contains("commits by 2 writers"),
        "{out}"
    );
    let out = ok(
        d,
        &[
            "stress",
            "--writers",
            "1",
            "--duration",
            "0.2",
            "--json",
            "--value-base",
            "1000000",
        ],
    );
    let last: serde_json::Value = serde_json::from_str(out.lines().last().unwrap()).unwrap();
    let n = last["summary"]["commits"].as_u64().unwrap();
    assert_eq!(out.lines().count() as u64, n + 1);

    let child = Command::new(env!("CARGO_BIN_EXE_logd"))
        .arg("--dir")
        .arg(d)
        .args([
            "stress",
            "--writers",
            "2",
            "--duration",
            "60",
            "--quiet",
            "--value-base",
            "2000000",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(800));
    let kill = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let o = child.wait_with_output().unwrap();
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(stdout(&o).contains(", interrupted"), "{}", stdout(&o));
    // The store was closed cleanly.
    let check = ok(d, &["check"]);
    assert!(check.contains("meta present: ok"), "{check}");
}

/// Shell completions and a man page come from the clap definitions.
#[test]
fn completions_and_man_page() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    let bash = ok(d, &["completions", "bash"]);
    assert!(bash.contains("_logd") && bash.contains("export"), "bash");
    assert!(ok(d, &["completions", "zsh"]).contains("#compdef logd"));
    let man = ok(d, &["man"]);
    assert!(man.contains(".TH logd") && man.contains("diff"), "{man}");
    assert_eq!(code(&logd(d, &["completions", "tcsh"])), 2);
    // Neither opened a store.
    assert_eq!(std::fs::read_dir(d).unwrap().count(), 0);
}

/// Power-loss issue item 4 / new-user issue: read commands on a mistyped
/// directory created an empty store. Now only the commands that add data
/// create one; every other one names the path and writes nothing.
#[test]
fn read_commands_never_create_a_store() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("mistyped");
    for args in [
        &["get", "a"][..],
        &["log"],
        &["stats"],
        &["snapshot"],
        &["compact"],
        &["ls", ""],
    ] {
        let o = logd(&dir, args);
        assert_eq!(code(&o), 1, "{args:?}: {}", stderr(&o));
        assert!(
            stderr(&o).contains("no store at"),
            "{args:?}: {}",
            stderr(&o)
        );
        assert!(!dir.exists(), "{args:?} created the directory");
    }
    ok(&dir, &["patch", "a", "1"]);
    assert_eq!(ok(&dir, &["get", "a"]).trim(), "1");
}

/// Starts `logd watch ARGS` with stdout piped; its lines arrive on the
/// channel (read by a thread, which closes the pipe after a line
/// containing `close_after`).
fn spawn_watch(
    dir: &Path,
    args: &[&str],
    close_after: Option<&'static str>,
) -> (std::process::Child, std::sync::mpsc::Receiver<String>) {
    use std::io::BufRead;
    use std::process::Stdio;
    let mut child = Command::new(env!("CARGO_BIN_EXE_logd"))
        .arg("--dir")
        .arg(dir)
        .arg("watch")
        .args(args)
        .env_remove("LOGD_DIR")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = std::io::BufReader::new(child.stdout.take().unwrap());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in out.lines() {
            let Ok(line) = line else { return };
            let last = close_after.is_some_and(|c| line.contains(c));
            if tx.send(line).is_err() || last {
                return; // dropping `out` closes the pipe
            }
        }
    });
    (child, rx)
}

/// Lines until one containing `until` (at most 10 s).
fn lines_until(rx: &std::sync::mpsc::Receiver<String>, until: &str) -> Vec<String> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let mut out = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let line = rx
            .recv_timeout(left)
            .unwrap_or_else(|e| panic!("no {until:?} line ({e}) after {out:?}"));
        let done = line.contains(until);
        out.push(line);
        if done {
            return out;
        }
    }
}

/// Waits (at most 10 s) for the child to exit; its exit code and stderr.
fn wait_exit(mut child: std::process::Child) -> (i32, String) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let mut err = String::new();
            if let Some(mut e) = child.stderr.take() {
                std::io::Read::read_to_string(&mut e, &mut err).unwrap();
            }
            return (status.code().unwrap_or(-1), err);
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("logd watch did not exit");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// `logd watch` (issue 16): the events of a replay, one per line in text
/// and JSON, then a clean exit on Ctrl-C (SIGINT) and on a closed stdout; a
/// start in the future is bad input.
#[test]
fn watch_prints_the_replay_and_exits_cleanly() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    ok(d, &["patch", "a", "{x: 1}", "--label", "first"]); // 1
    ok(d, &["patch", "a.x", "2"]); // 2
    ok(d, &["patch", "b", "1"]); // 3: not under `a`
    ok(d, &["delete", "a"]); // 4

    let (child, rx) = spawn_watch(d, &["a", "--from", "0"], None);
    let lines = lines_until(&rx, "replay-complete");
    let kinds: Vec<(&str, &str)> = lines
        .iter()
        .map(|l| {
            let mut f = l.split(' ');
            (f.next().unwrap(), f.next().unwrap())
        })
        .collect();
    assert_eq!(
        kinds,
        [
            ("state", "0"),
            ("patch", "1"),
            ("patch", "2"),
            ("patch", "4"),
            ("replay-complete", "4")
        ],
        "{lines:#?}"
    );
    assert!(lines[0].ends_with(" absent"), "{}", lines[0]);
    assert!(lines[1].contains(" first {x: 1}"), "{}", lines[1]);
    assert!(lines[2].ends_with(" {x: 2}"), "{}", lines[2]);
    // Ctrl-C: exit 0, nothing on stderr, the store closed cleanly.
    std::thread::sleep(std::time::Duration::from_millis(100));
    let kill = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let (code, err) = wait_exit(child);
    assert_eq!((code, err.as_str()), (0, ""));
    assert!(ok(d, &["check"]).contains("meta present: ok"));

    // JSON, without the initial state; then the reader goes away.
    let args = ["", "--from", "2", "--no-init", "--json"];
    let (child, rx) = spawn_watch(d, &args, Some("replayComplete"));
    let lines = lines_until(&rx, "replayComplete");
    assert_eq!(lines.len(), 3, "{lines:#?}");
    let first: serde_json::Value = serde_json::from_str(&lines[0]).unwrap();
    assert_eq!(first["commit"], 3);
    assert_eq!(first["path"], "");
    assert_eq!(first["patch"], serde_json::json!({"b": 1}));
    assert!(first["time"].as_str().unwrap().ends_with('Z'));
    let marker: serde_json::Value = serde_json::from_str(&lines[2]).unwrap();
    assert_eq!(
        (marker["commit"].as_u64(), &marker["replayComplete"]),
        (Some(4), &serde_json::json!(true))
    );
    // The reading thread closed the pipe after the marker: logd notices
    // while idle and exits.
    let (code, err) = wait_exit(child);
    assert_eq!((code, err.as_str()), (0, ""));

    // A start in the future is bad input.
    let o = logd(d, &["watch", "a", "--from", "99"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("future"));
}
