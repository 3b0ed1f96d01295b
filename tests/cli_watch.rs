//! `logd watch` end to end (in the style of `tests/cli.rs`): the events of
//! a replay, one per line in text and JSON, then a clean exit on Ctrl-C
//! (SIGINT) and on a closed stdout; a start in the future is bad input.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

fn logd(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_logd"))
        .arg("--dir")
        .arg(dir)
        .args(args)
        .env_remove("LOGD_DIR")
        .output()
        .unwrap()
}

fn ok(dir: &Path, args: &[&str]) -> String {
    let o = logd(dir, args);
    assert!(
        o.status.success(),
        "logd {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout).unwrap()
}

/// Starts `logd watch ARGS` with stdout piped; its lines arrive on the
/// channel (read by a thread, which closes the pipe after a line
/// containing `close_after`).
fn spawn_watch(
    dir: &Path,
    args: &[&str],
    close_after: Option<&'static str>,
) -> (Child, mpsc::Receiver<String>) {
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
    let out = BufReader::new(child.stdout.take().unwrap());
    let (tx, rx) = mpsc::channel();
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
fn lines_until(rx: &mpsc::Receiver<String>, until: &str) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut out = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
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
fn wait(mut child: Child) -> (i32, String) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let mut err = String::new();
            if let Some(mut e) = child.stderr.take() {
                std::io::Read::read_to_string(&mut e, &mut err).unwrap();
            }
            return (status.code().unwrap_or(-1), err);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("logd watch did not exit");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

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
    std::thread::sleep(Duration::from_millis(100));
    let kill = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let (code, err) = wait(child);
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
    let (code, err) = wait(child);
    assert_eq!((code, err.as_str()), (0, ""));

    // A start in the future is bad input.
    let o = logd(d, &["watch", "a", "--from", "99"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("future"));
}
