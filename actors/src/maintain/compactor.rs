//! The compactor actor: applies the retention policy.
//!
//! This module owns [`Compactor`] and its messages [`Compact`] and
//! [`CompactAt`]. A compaction lists the snapshots (from the [`Catalog`])
//! and the log segments (from `wal/`), asks
//! [`logd_core::retention::plan_compaction`] what to drop, and carries the
//! plan out in a crash-safe order:
//!
//! 1. the new horizon is set and the dropped snapshots leave the catalogue
//!    (new reads of older commits get [`Error::Compacted`]);
//! 2. the index forgets every commit up to the horizon ([`ForgetBefore`]),
//!    so no plan made afterwards names a dropped file (plans made before
//!    hold their files open through `Arc<File>`s and finish correctly);
//! 3. the dropped segments are deleted, oldest first (the log stays
//!    contiguous at every instant), then the dropped snapshots; then each
//!    directory is fsynced.
//!
//! Snapshot files older than the horizon that the catalogue does not hold
//! (an interrupted compaction's leftovers, or files skipped as corrupt) are
//! deleted too, and so are the snapshots a failed compaction took out of the
//! catalogue but could not delete (remembered in memory until it succeeds).
//!
//! A crash anywhere leaves a store that opens: every file still present is
//! whole, the retained snapshot covering the deleted segments was written
//! durably before (by the snapshotter), and leftovers are only extra files.
//! It never deletes the active segment or a segment holding a commit after
//! the oldest kept snapshot, and never writes a file.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::SystemTime;

use kameo::Actor;
use kameo::actor::ActorRef;
use kameo::message::{Context, Message};
use logd_core::retention::{CompactionPlan, Retention, plan_compaction};
use tracing::{info, instrument, warn};

use crate::disk::fileops::FileOps;
use crate::disk::layout::{list_wal, segment_path, wal_dir};
use crate::error::Error;
use crate::index::catalog::{Catalog, parse_snapshot_file_name, snap_dir, snapshot_path};
use crate::index::{ForgetBefore, IndexActor, LastCommit};

/// What the compactor is started with.
#[derive(Clone, Debug)]
pub struct CompactorArgs {
    /// The store directory.
    pub dir: PathBuf,
    /// File operations (removals go through them).
    pub fs: Arc<dyn FileOps>,
    /// The catalogue.
    pub catalog: Catalog,
    /// The index, told to forget.
    pub index: ActorRef<IndexActor>,
    /// The policy.
    pub policy: Retention,
}

/// The compactor actor (see the module docs). Spawn with
/// `Compactor::spawn(args)`.
#[derive(Actor, Debug)]
pub struct Compactor {
    args: CompactorArgs,
    /// Snapshots already out of the catalogue whose files a failed
    /// compaction may not have deleted; retried by the next one.
    pending: std::collections::BTreeSet<u64>,
}

impl Compactor {
    /// A compactor with `args`.
    pub fn new(args: CompactorArgs) -> Compactor {
        Compactor {
            args,
            pending: std::collections::BTreeSet::new(),
        }
    }
}

/// What a compaction removed.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct CompactionReport {
    /// Commits of the deleted snapshots, ascending.
    pub dropped_snapshots: Vec<u64>,
    /// `(first, last)` of the deleted segments, ascending.
    pub dropped_segments: Vec<(u64, u64)>,
    /// The oldest commit still readable (0: every commit).
    pub oldest_commit: u64,
    /// Bytes of the deleted files.
    pub bytes_freed: u64,
}

/// Compact now (the policy's age cutoff measured from the system clock).
#[derive(Clone, Copy, Debug, Default)]
pub struct Compact;

impl Message<Compact> for Compactor {
    type Reply = Result<CompactionReport, Error>;

    async fn handle(&mut self, _: Compact, _ctx: &mut Context<Self, Self::Reply>) -> Self::Reply {
        self.compact(SystemTime::now()).await
    }
}

/// Compact as if the time were `now` (tests; tools).
#[derive(Clone, Copy, Debug)]
pub struct CompactAt {
    /// The time the age cutoff is measured from.
    pub now: SystemTime,
}

impl Message<CompactAt> for Compactor {
    type Reply = Result<CompactionReport, Error>;

    async fn handle(
        &mut self,
        msg: CompactAt,
        _ctx: &mut Context<Self, Self::Reply>,
    ) -> Self::Reply {
        self.compact(msg.now).await
    }
}

/// The segments in `wal/` as `(first, last)`, oldest first: each sealed
/// one ends where the next begins; the last (active) one ends at `last`.
fn list_segments(dir: &std::path::Path, last: u64) -> Result<Vec<(u64, u64)>, Error> {
    let firsts = list_wal(dir)?.segments;
    let mut out = Vec::with_capacity(firsts.len());
    for (i, &first) in firsts.iter().enumerate() {
        let end = match firsts.get(i + 1) {
            Some(&next) => next.saturating_sub(1),
            None => last,
        };
        out.push((first, end));
    }
    Ok(out)
}

impl Compactor {
    /// Snapshot files older than `horizon` that the catalogue does not hold
    /// (left by an interrupted compaction, or skipped as corrupt at open):
    /// nothing can read them any more.
    async fn leftovers(&self, horizon: u64) -> Result<Vec<u64>, Error> {
        if horizon == 0 {
            return Ok(Vec::new());
        }
        let held: std::collections::BTreeSet<u64> =
            self.args.catalog.list().iter().map(|s| s.commit).collect();
        let sdir = snap_dir(&self.args.dir);
        tokio::task::spawn_blocking(move || {
            let mut out = Vec::new();
            let rd = match std::fs::read_dir(&sdir) {
                Ok(rd) => rd,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
                Err(e) => return Err(Error::io("read dir", &sdir, &e)),
            };
            for ent in rd {
                let ent = ent.map_err(|e| Error::io("read dir", &sdir, &e))?;
                if let Some(c) = ent.file_name().to_str().and_then(parse_snapshot_file_name)
                    && c < horizon
                    && !held.contains(&c)
                {
                    out.push(c);
                }
            }
            out.sort_unstable();
            Ok(out)
        })
        .await
        .map_err(|e| Error::WriterFailed {
            reason: format!("compaction task failed: {e}"),
        })?
    }

    #[instrument(name = "compactor.compact", skip_all)]
    async fn compact(&mut self, now: SystemTime) -> Result<CompactionReport, Error> {
        let args = &self.args;
        let last = args
            .index
            .ask(LastCommit)
            .await
            .map_err(|_| Error::Closed)?
            .unwrap_or(0);
        let dir = args.dir.clone();
        let segments = tokio::task::spawn_blocking(move || list_segments(&dir, last))
            .await
            .map_err(|e| Error::WriterFailed {
                reason: format!("compaction task failed: {e}"),
            })??;
        let snaps: Vec<(u64, SystemTime)> = args
            .catalog
            .list()
            .iter()
            .map(|s| (s.commit, s.taken))
            .collect();
        let plan: CompactionPlan = plan_compaction(&args.policy, &snaps, &segments, now, last);
        let oldest = plan.oldest_reconstructible.max(args.catalog.horizon());
        let mut leftovers = self.leftovers(oldest).await?;
        leftovers.extend(self.pending.iter().copied());
        leftovers.sort_unstable();
        leftovers.dedup();
        let args = &self.args;
        if plan.is_empty() && leftovers.is_empty() {
            return Ok(CompactionReport {
                oldest_commit: oldest,
                ..CompactionReport::default()
            });
        }
        // 1. Horizon and catalogue.
        args.catalog.set_horizon(oldest);
        let mut bytes_freed = 0;
        let mut dropped = Vec::new();
        for &c in &plan.drop_snapshots {
            if let Some(e) = args.catalog.remove(c) {
                dropped.push(e);
            }
        }
        // 2. The index forgets everything the dropped files held.
        if oldest > 0 {
            args.index
                .ask(ForgetBefore { commit: oldest + 1 })
                .await
                .map_err(|_| Error::Closed)?;
        }
        for &(first, _) in &plan.drop_segments {
            args.catalog.forget_segment(first);
        }
        // 3. Files.
        let fs = args.fs.clone();
        let dir = args.dir.clone();
        let drop_segments = plan.drop_segments.clone();
        let mut snap_commits: Vec<u64> = dropped.iter().map(|e| e.commit).collect();
        snap_commits.extend(&leftovers);
        self.pending.extend(snap_commits.iter().copied());
        bytes_freed += dropped.iter().map(|e| e.bytes).sum::<u64>();
        drop(dropped);
        let seg_bytes = tokio::task::spawn_blocking(move || -> Result<u64, Error> {
            let mut freed = 0;
            for &(first, _) in &drop_segments {
                let p = segment_path(&dir, first);
                freed += std::fs::metadata(&p).map(|m| m.len()).unwrap_or(0);
                fs.remove(&p).map_err(|e| Error::io("remove", &p, &e))?;
            }
            if !drop_segments.is_empty() {
                let w = wal_dir(&dir);
                fs.sync_dir(&w).map_err(|e| Error::io("sync dir", &w, &e))?;
            }
            for &c in &snap_commits {
                let p = snapshot_path(&dir, c);
                if let Err(e) = fs.remove(&p) {
                    if e.kind() != std::io::ErrorKind::NotFound {
                        return Err(Error::io("remove", &p, &e));
                    }
                    warn!(file = %p.display(), "snapshot to drop was already gone");
                }
            }
            if !snap_commits.is_empty() {
                let s = snap_dir(&dir);
                fs.sync_dir(&s).map_err(|e| Error::io("sync dir", &s, &e))?;
            }
            Ok(freed)
        })
        .await
        .map_err(|e| Error::WriterFailed {
            reason: format!("compaction task failed: {e}"),
        })??;
        bytes_freed += seg_bytes;
        self.pending.clear();
        let mut dropped_snapshots = plan.drop_snapshots;
        dropped_snapshots.extend(leftovers);
        dropped_snapshots.sort_unstable();
        dropped_snapshots.dedup();
        let report = CompactionReport {
            dropped_snapshots,
            dropped_segments: plan.drop_segments,
            oldest_commit: oldest,
            bytes_freed,
        };
        info!(
            snapshots = report.dropped_snapshots.len(),
            segments = report.dropped_segments.len(),
            oldest = report.oldest_commit,
            bytes_freed,
            "compacted"
        );
        Ok(report)
    }
}
