//! Property tests of the retention policy (`logd_core::retention`).

use std::time::{Duration, SystemTime};

use logd_core::retention::{Cutoff, Retention, plan_compaction};
use proptest::prelude::*;

fn at(s: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(s)
}

fn policy() -> impl Strategy<Value = Retention> {
    (
        prop_oneof![
            (0u64..200).prop_map(Cutoff::Commits),
            (0u64..200).prop_map(|s| Cutoff::Age(Duration::from_secs(s))),
        ],
        0usize..4,
        0u64..40,
        0u64..4,
    )
        .prop_map(
            |(keep_recent, per_tier, first_tier, multiplier)| Retention::Tiered {
                keep_recent,
                per_tier,
                first_tier,
                multiplier,
            },
        )
}

/// Ascending distinct snapshot commits in 1..=last, the time of a snapshot
/// growing with its commit; segments of random lengths covering 1..=last.
fn history() -> impl Strategy<Value = (u64, Vec<u64>, Vec<(u64, u64)>)> {
    (20u64..400).prop_flat_map(|last| {
        (
            Just(last),
            proptest::collection::btree_set(1..=last, 0..30),
            proptest::collection::vec(1u64..40, 1..30),
        )
            .prop_map(|(last, snaps, lens)| {
                let mut segs = Vec::new();
                let mut first = 1;
                for len in lens {
                    if first > last {
                        break;
                    }
                    let end = (first + len - 1).min(last);
                    segs.push((first, end));
                    first = end + 1;
                }
                if first <= last {
                    segs.push((first, last));
                }
                (last, snaps.into_iter().collect(), segs)
            })
    })
}

proptest! {
    #[test]
    fn plan_is_safe((last, snaps, segs) in history(), policy in policy()) {
        let with_time: Vec<(u64, SystemTime)> = snaps.iter().map(|&c| (c, at(c))).collect();
        let now = at(last);
        let plan = plan_compaction(&policy, &with_time, &segs, now, last);
        // Deterministic, and independent of the input order.
        let mut rev = with_time.clone();
        rev.reverse();
        prop_assert_eq!(&plan, &plan_compaction(&policy, &rev, &segs, now, last));

        let kept: Vec<u64> = snaps.iter().copied().filter(|c| !plan.drop_snapshots.contains(c)).collect();
        // Drops only what exists; the newest snapshot is always kept.
        for c in &plan.drop_snapshots {
            prop_assert!(snaps.contains(c));
        }
        if let Some(newest) = snaps.last() {
            prop_assert!(kept.contains(newest));
        }
        // Segments: a sealed prefix, each wholly covered by the oldest kept snapshot.
        prop_assert!(plan.drop_segments.len() < segs.len().max(1));
        prop_assert_eq!(&plan.drop_segments[..], &segs[..plan.drop_segments.len()]);
        if !plan.drop_segments.is_empty() {
            let h = kept[0];
            for &(_, l) in &plan.drop_segments {
                prop_assert!(l <= h);
            }
            prop_assert_eq!(plan.oldest_reconstructible, h);
        } else {
            prop_assert_eq!(plan.oldest_reconstructible, 0);
        }
        // Every commit >= oldest_reconstructible is readable: a kept snapshot
        // <= c with the log retained after it (or the log from commit 1).
        let log_first = segs.get(plan.drop_segments.len()).map_or(last + 1, |s| s.0);
        for c in plan.oldest_reconstructible.max(1)..=last {
            let ok = log_first == 1
                || kept.iter().any(|&s| s <= c && s + 1 >= log_first);
            prop_assert!(ok, "commit {} unreadable", c);
        }
        if let Retention::Tiered { keep_recent, per_tier, first_tier, multiplier } = policy {
            // Everything newer than the cutoff stays readable.
            let boundary = match keep_recent {
                Cutoff::Commits(n) => (last + 1).saturating_sub(n),
                Cutoff::Age(d) => {
                    let since = now.checked_sub(d);
                    snaps.iter().copied()
                        .find(|&c| since.is_none_or(|s| at(c) >= s))
                        .unwrap_or(last + 1)
                }
            };
            prop_assert!(plan.oldest_reconstructible <= boundary.max(1));
            for &c in &snaps {
                if c >= boundary {
                    prop_assert!(kept.contains(&c), "recent snapshot {} dropped", c);
                }
            }
            // At most per_tier per tier, besides the newest and the anchor.
            let anchor = snaps.iter().copied().rfind(|&c| c <= boundary);
            let (mut start, mut width) = (0u64, first_tier.max(1));
            for _ in 0..64 {
                let end = start.saturating_add(width);
                let in_tier = kept.iter().filter(|&&c| {
                    c < boundary && Some(c) != anchor && Some(c) != snaps.last().copied()
                        && boundary - c > start && boundary - c <= end
                }).count();
                prop_assert!(in_tier <= per_tier);
                if end == u64::MAX { break; }
                start = end;
                width = width.saturating_mul(multiplier.max(1));
            }
        }
    }

    #[test]
    fn keep_all_keeps_all((last, snaps, segs) in history()) {
        let with_time: Vec<(u64, SystemTime)> = snaps.iter().map(|&c| (c, at(c))).collect();
        let plan = plan_compaction(&Retention::KeepAll, &with_time, &segs, at(last), last);
        prop_assert!(plan.is_empty());
        prop_assert_eq!(plan.oldest_reconstructible, 0);
    }
}
