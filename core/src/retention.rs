//! Retention policy: which snapshots and log segments compaction may drop.
//!
//! This module owns [`Retention`] and the pure [`plan_compaction`]. It is a
//! function of its inputs (no clock, no files): the compactor actor lists
//! what is on disk, passes the current time, and carries the plan out. It
//! never deletes anything itself and never decides *when* compaction runs.
//!
//! # Semantics of [`Retention::Tiered`]
//!
//! Let `last` be the newest commit. The *boundary* `B` is the first commit
//! that is "recent":
//!
//! * [`Cutoff::Commits(n)`](Cutoff::Commits): `B = last - n + 1` (saturating;
//!   `n = 0` makes `B = last + 1`, nothing is recent). Every commit `>= B`
//!   stays readable.
//! * [`Cutoff::Age(d)`](Cutoff::Age): a snapshot taken at or after `now - d`
//!   is recent; `B` is the commit of the oldest recent snapshot (`last + 1`
//!   when there is none). Every commit `>= B` stays readable.
//!
//! Every snapshot with commit `>= B` is kept. An older snapshot at commit `s`
//! has *distance* `B - s >= 1` and falls in tier `k`, which covers distances
//! `(start_k, start_k + width_k]` with `start_0 = 0`, `width_0 = first_tier`,
//! `width_{k+1} = width_k * multiplier`, `start_{k+1} = start_k + width_k`
//! (`first_tier` and `multiplier` below 1 count as 1; widths saturate). In
//! each tier the `per_tier` newest snapshots (largest commits) are kept.
//! Two snapshots are always kept whatever the tiers say: the newest one,
//! and the *anchor*, the newest snapshot with commit `<= B` (without it the
//! commits in `[B, next kept snapshot)` could not be rebuilt).
//!
//! # Segments
//!
//! Let `H` be the commit of the oldest kept snapshot. A sealed segment is
//! dropped when all of its commits are `<= H` — but only if the anchor exists
//! (otherwise recent commits before the oldest snapshot still need the log
//! from its start). The last segment (the active one) is never dropped.
//! Because segments are given oldest first and contiguous, the dropped
//! segments are always a prefix, so the log stays contiguous.
//!
//! After the plan, a commit `c` is reconstructible iff
//! `c >= oldest_reconstructible`: the oldest kept snapshot plus the retained
//! log, or the whole log from commit 1 (`oldest_reconstructible = 0`, the
//! empty document) while the first retained segment starts at commit 1.

use std::time::{Duration, SystemTime};

/// Where "recent" ends (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cutoff {
    /// The newest `n` commits are recent.
    Commits(u64),
    /// Snapshots taken within this long before `now` are recent.
    Age(Duration),
}

/// A retention policy for snapshots and sealed log segments.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Retention {
    /// Keep every snapshot and every segment (no compaction).
    #[default]
    KeepAll,
    /// Keep everything recent, and beyond it a few snapshots per tier of
    /// growing width (see the module docs for the exact rules).
    Tiered {
        /// What counts as recent.
        keep_recent: Cutoff,
        /// Snapshots kept per tier (the newest in the tier).
        per_tier: usize,
        /// Width of the first tier, in commits (`0` counts as 1).
        first_tier: u64,
        /// Each tier is this many times wider than the previous (`0` counts as 1).
        multiplier: u64,
    },
}

/// What a compaction should remove. Lists are ascending by commit.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct CompactionPlan {
    /// Commits of the snapshots to delete.
    pub drop_snapshots: Vec<u64>,
    /// `(first, last)` of the sealed segments to delete (a prefix of the log).
    pub drop_segments: Vec<(u64, u64)>,
    /// The oldest commit readable after the plan is carried out (`0`: every
    /// commit, from the empty document).
    pub oldest_reconstructible: u64,
}

impl CompactionPlan {
    /// Whether the plan removes nothing.
    pub fn is_empty(&self) -> bool {
        self.drop_snapshots.is_empty() && self.drop_segments.is_empty()
    }
}

/// Plans a compaction under `policy`.
///
/// `snapshots` are `(commit, taken at)` in any order (duplicates by commit
/// count once); `segments` are `(first, last)` oldest first, contiguous, the
/// last one being the active segment; `last_commit` is the newest commit.
/// Deterministic: the same inputs always give the same plan.
pub fn plan_compaction(
    policy: &Retention,
    snapshots: &[(u64, SystemTime)],
    segments: &[(u64, u64)],
    now: SystemTime,
    last_commit: u64,
) -> CompactionPlan {
    let mut snaps: Vec<(u64, SystemTime)> = snapshots.to_vec();
    snaps.sort_by_key(|&(c, _)| c);
    snaps.dedup_by_key(|&mut (c, _)| c);
    let log_from_one = segments.first().is_some_and(|&(first, _)| first <= 1);
    let current_oldest = |kept: &[u64]| -> u64 {
        if log_from_one {
            0
        } else {
            kept.first().copied().unwrap_or(0)
        }
    };
    let Retention::Tiered {
        keep_recent,
        per_tier,
        first_tier,
        multiplier,
    } = *policy
    else {
        let kept: Vec<u64> = snaps.iter().map(|&(c, _)| c).collect();
        return CompactionPlan {
            drop_snapshots: Vec::new(),
            drop_segments: Vec::new(),
            oldest_reconstructible: current_oldest(&kept),
        };
    };
    let boundary = match keep_recent {
        Cutoff::Commits(n) => (last_commit + 1).saturating_sub(n),
        Cutoff::Age(d) => {
            let since = now.checked_sub(d);
            snaps
                .iter()
                .find(|&&(_, t)| since.is_none_or(|s| t >= s))
                .map_or(last_commit + 1, |&(c, _)| c)
        }
    };
    let mut keep = vec![false; snaps.len()];
    let width0 = first_tier.max(1);
    let mult = multiplier.max(1);
    // Walk from the newest old snapshot backwards, counting per tier.
    let mut tier_start = 0u64;
    let mut tier_width = width0;
    let mut in_tier = 0usize;
    for i in (0..snaps.len()).rev() {
        let c = snaps[i].0;
        if c >= boundary {
            keep[i] = true;
            continue;
        }
        let dist = boundary - c;
        while dist > tier_start.saturating_add(tier_width) {
            tier_start = tier_start.saturating_add(tier_width);
            tier_width = tier_width.saturating_mul(mult);
            in_tier = 0;
        }
        if in_tier < per_tier {
            keep[i] = true;
            in_tier += 1;
        }
    }
    // The newest snapshot and the anchor are always kept.
    if let Some(k) = keep.last_mut() {
        *k = true;
    }
    let anchor = snaps.iter().rposition(|&(c, _)| c <= boundary);
    if let Some(a) = anchor {
        keep[a] = true;
    }
    let kept: Vec<u64> = snaps
        .iter()
        .zip(&keep)
        .filter(|(_, k)| **k)
        .map(|(s, _)| s.0)
        .collect();
    let drop_snapshots: Vec<u64> = snaps
        .iter()
        .zip(&keep)
        .filter(|(_, k)| !**k)
        .map(|(s, _)| s.0)
        .collect();
    let mut drop_segments = Vec::new();
    if anchor.is_some()
        && let Some(&h) = kept.first()
    {
        let sealed = segments.len().saturating_sub(1);
        for &(first, last) in &segments[..sealed] {
            if last <= h && last >= first {
                drop_segments.push((first, last));
            } else {
                break;
            }
        }
    }
    let log_from_one = log_from_one && drop_segments.is_empty();
    let oldest_reconstructible = if log_from_one {
        0
    } else {
        kept.first().copied().unwrap_or(0)
    };
    CompactionPlan {
        drop_snapshots,
        drop_segments,
        oldest_reconstructible,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(s)
    }

    #[test]
    fn keep_all_drops_nothing() {
        let snaps = [(10, t(1)), (20, t(2))];
        let plan = plan_compaction(&Retention::KeepAll, &snaps, &[(1, 10), (11, 25)], t(3), 25);
        assert!(plan.is_empty());
        assert_eq!(plan.oldest_reconstructible, 0);
    }

    #[test]
    fn tiers_thin_out_old_snapshots() {
        let policy = Retention::Tiered {
            keep_recent: Cutoff::Commits(10),
            per_tier: 1,
            first_tier: 10,
            multiplier: 2,
        };
        // last = 100, B = 91. Snapshots every 10 commits.
        let snaps: Vec<(u64, SystemTime)> = (1..=10).map(|i| (i * 10, t(i))).collect();
        let segs: Vec<(u64, u64)> = (0..10).map(|i| (i * 10 + 1, i * 10 + 10)).collect();
        let plan = plan_compaction(&policy, &snaps, &segs, t(100), 100);
        // 100 recent; 90 (dist 1, tier 0, anchor); tier 1 (dist 11..=30): 80;
        // tier 2 (31..=70): 60; tier 3 (71..=150): 20.
        assert_eq!(plan.drop_snapshots, vec![10, 30, 40, 50, 70]);
        assert_eq!(plan.oldest_reconstructible, 20);
        assert_eq!(plan.drop_segments, vec![(1, 10), (11, 20)]);
    }

    #[test]
    fn no_anchor_keeps_the_log() {
        let policy = Retention::Tiered {
            keep_recent: Cutoff::Commits(50),
            per_tier: 0,
            first_tier: 1,
            multiplier: 1,
        };
        let plan = plan_compaction(&policy, &[(80, t(1))], &[(1, 80), (81, 90)], t(2), 90);
        assert!(plan.is_empty());
        assert_eq!(plan.oldest_reconstructible, 0);
    }

    #[test]
    fn age_cutoff() {
        let policy = Retention::Tiered {
            keep_recent: Cutoff::Age(Duration::from_secs(10)),
            per_tier: 0,
            first_tier: 1,
            multiplier: 1,
        };
        let snaps = [(10, t(0)), (20, t(5)), (30, t(95))];
        let plan = plan_compaction(&policy, &snaps, &[(1, 20), (21, 40)], t(100), 40);
        // B = 30 (the oldest recent); anchor 30; 10 and 20 go.
        assert_eq!(plan.drop_snapshots, vec![10, 20]);
        assert_eq!(plan.drop_segments, vec![(1, 20)]);
        assert_eq!(plan.oldest_reconstructible, 30);
    }
}
