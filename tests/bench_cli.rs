//! `logd bench --quick --json` runs end to end and reports every workload as
//! a positive number (W3 only once the engine has `switch_and_snapshot`).
//! `LOGD_BENCH_TINY=1` shrinks the counts so this stays a short smoke test.

use std::process::Command;

#[test]
fn bench_quick_json_reports_positive_numbers() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_logd"))
        .args(["--dir"])
        .arg(dir.path())
        .args(["bench", "--quick", "--json", "--durability", "buffered"])
        .env("LOGD_BENCH_TINY", "1")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    let v: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    let obj = v.as_object().unwrap();
    for key in [
        "w1_commits_per_s",
        "w2_commits_per_s",
        "w4_read_root_us",
        "w5_read_leaf_us",
        "w6_read_old_us",
        "w7_reopen_ms",
        "w8_tx_per_s",
        "w9_commits_per_s",
        "peak_rss_mb",
    ] {
        let n = obj.get(key).and_then(|n| n.as_f64());
        assert!(
            n.is_some_and(|n| n > 0.0),
            "{key}: {:?} in {stdout}",
            obj.get(key)
        );
    }
    if let Some(w3) = obj.get("w3_snapshot_ms") {
        assert!(w3.as_f64().is_some_and(|n| n > 0.0), "w3: {w3}");
    }
    // The work directory was removed.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}
