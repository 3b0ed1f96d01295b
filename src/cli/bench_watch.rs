//! W10 of `logd bench`: W9's 64 writers while 10,000 watches follow one
//! user each and 10 follow the root (see [`super::bench`] for the table).
//!
//! Each watch runs in its own task. A writer stores, per commit, the time
//! its `commit()` returned (the acknowledgement); a watch task takes the
//! difference at each delivery. The hub is fed just before the
//! acknowledgement, so a delivery that comes first counts as 0.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;
use logd::{Storage, WatchOptions};

use super::bench::{commit_one, user};

/// Watches of one user each.
const USER_WATCHES: u64 = 10_000;
/// Watches of the root.
const ROOT_WATCHES: u64 = 10;
/// All watches.
pub const WATCHES: u64 = USER_WATCHES + ROOT_WATCHES;

/// What W10 measured.
#[derive(Debug)]
pub struct W10 {
    /// Commits per second.
    pub commits_per_s: f64,
    /// Watch events delivered per second.
    pub events_per_s: f64,
    /// Median ack-to-delivery latency.
    pub p50_ms: f64,
    /// 99th percentile ack-to-delivery latency.
    pub p99_ms: f64,
}

/// Runs W10: `n` commits (as W9: `users.u{i % 500}` from 64 tasks) while
/// the watches run.
pub async fn w10(s: &Storage, n: u64) -> Result<W10, String> {
    let first = s.current_commit() + 1;
    let last = first + n - 1;
    let acks: Arc<Vec<AtomicU64>> = Arc::new((0..n).map(|_| AtomicU64::new(0)).collect());
    let base = Instant::now();
    let delivered = Arc::new(AtomicU64::new(0));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut watchers = tokio::task::JoinSet::new();
    for k in 0..WATCHES {
        let path = if k < USER_WATCHES {
            format!("users.u{k}")
        } else {
            String::new()
        };
        let mut w = s
            .watch(&path, WatchOptions::default().no_init())
            .await
            .map_err(|e| format!("watch {path:?}: {e}"))?;
        let (acks, delivered, mut stop) = (acks.clone(), delivered.clone(), stop_rx.clone());
        watchers.spawn(async move {
            let mut latencies: Vec<u64> = Vec::new();
            loop {
                let e = tokio::select! {
                    e = w.next() => e,
                    _ = stop.changed() => break,
                };
                let Some(Ok(e)) = e else { break };
                if e.is_replay_complete() || e.commit() < first || e.commit() > last {
                    continue;
                }
                let now = base.elapsed().as_nanos() as u64;
                let acked = acks[(e.commit() - first) as usize].load(Ordering::Acquire);
                latencies.push(if acked == 0 {
                    0
                } else {
                    now.saturating_sub(acked)
                });
                delivered.fetch_add(1, Ordering::Relaxed);
            }
            latencies
        });
    }
    let start = Instant::now();
    let mut writers = tokio::task::JoinSet::new();
    for t in 0..64u64 {
        let (s, acks) = (s.clone(), acks.clone());
        writers.spawn(async move {
            let mut i = t;
            while i < n {
                let c = commit_one(&s, user(i)?).await?;
                if let Some(slot) = c.checked_sub(first).and_then(|j| acks.get(j as usize)) {
                    slot.store(base.elapsed().as_nanos() as u64, Ordering::Release);
                }
                i += 64;
            }
            Ok::<(), String>(())
        });
    }
    while let Some(r) = writers.join_next().await {
        r.map_err(|e| format!("writer task: {e}"))??;
    }
    let commit_secs = start.elapsed().as_secs_f64();
    // Every commit reaches the 10 root watches and the one of its user.
    let expected = n * (ROOT_WATCHES + 1);
    let deadline = Instant::now() + Duration::from_secs(60);
    while delivered.load(Ordering::Relaxed) < expected && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let deliver_secs = start.elapsed().as_secs_f64();
    let got = delivered.load(Ordering::Relaxed);
    let _ = stop_tx.send(true);
    let mut all = Vec::with_capacity(expected as usize);
    while let Some(r) = watchers.join_next().await {
        all.extend(r.map_err(|e| format!("watch task: {e}"))?);
    }
    if got < expected {
        return Err(format!(
            "W10: {got} of {expected} events delivered within 60 s"
        ));
    }
    all.sort_unstable();
    let pct = |p: f64| -> f64 {
        let i = ((all.len() as f64 - 1.0) * p).round() as usize;
        all.get(i).copied().unwrap_or(0) as f64 / 1e6
    };
    Ok(W10 {
        commits_per_s: n as f64 / commit_secs,
        events_per_s: got as f64 / deliver_secs,
        p50_ms: pct(0.50),
        p99_ms: pct(0.99),
    })
}
