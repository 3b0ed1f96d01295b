//! Property tests of `PathIndex`: `affecting` and `plan` against brute-force
//! filters with `affects` over random histories of touched paths.

use logd_core::index::{IndexError, PathIndex, affects};
use logd_core::kpath::{KPath, Segment};
use logd_core::wal::Location;
use proptest::prelude::*;

fn seg() -> impl Strategy<Value = Segment> {
    prop_oneof![
        3 => prop::sample::select(vec!["a", "b", "c"]).prop_map(|s| Segment::Field(s.to_owned())),
        2 => (0u32..3).prop_map(Segment::Index),
        1 => (0u32..2).prop_map(Segment::Sparse),
    ]
}

fn path() -> impl Strategy<Value = KPath> {
    prop::collection::vec(seg(), 0..5).prop_map(KPath::from_segments)
}

/// Probe paths: like `path()`, sometimes with a field no commit ever touches.
fn probe() -> impl Strategy<Value = KPath> {
    (path(), any::<bool>()).prop_map(|(p, extra)| {
        if extra {
            p.child(Segment::Field("zz".into()))
        } else {
            p
        }
    })
}

/// A history: per commit, its ends (possibly none).
fn history() -> impl Strategy<Value = Vec<Vec<KPath>>> {
    prop::collection::vec(prop::collection::vec(path(), 0..4), 1..40)
}

fn loc(c: u64) -> Location {
    Location {
        segment: 1,
        offset: c * 100,
        len: c as u32 + 7,
    }
}

fn build(first: u64, hist: &[Vec<KPath>]) -> PathIndex {
    let mut idx = PathIndex::new();
    for (i, ends) in hist.iter().enumerate() {
        idx.insert(first + i as u64, ends, loc(first + i as u64))
            .unwrap();
    }
    idx
}

fn brute_affecting(first: u64, hist: &[Vec<KPath>], p: &KPath, from: u64, to: u64) -> Vec<u64> {
    hist.iter()
        .enumerate()
        .map(|(i, ends)| (first + i as u64, ends))
        .filter(|(c, _)| *c > from && *c <= to)
        .filter(|(_, ends)| p.is_root() || ends.iter().any(|e| affects(e, p)))
        .map(|(c, _)| c)
        .collect()
}

/// The brute-force read root: the shallowest strict ancestor `a` of `p` where
/// a commit in range ends at `a`, or (rule 3) ends below `a` through a field or
/// sparse child while `p` continues below `a` with a dense index.
fn brute_root(first: u64, hist: &[Vec<KPath>], p: &KPath, from: u64, to: u64) -> KPath {
    let segs = p.segments();
    let in_range: Vec<&KPath> = hist
        .iter()
        .enumerate()
        .filter(|(i, _)| first + *i as u64 > from && first + *i as u64 <= to)
        .flat_map(|(_, ends)| ends.iter())
        .collect();
    for d in 0..segs.len() {
        let a = KPath::from_segments(segs[..d].to_vec());
        let hit = in_range.iter().any(|e| {
            **e == a
                || (matches!(segs[d], Segment::Index(_))
                    && a.is_ancestor_of(e)
                    && matches!(e.segments()[d], Segment::Field(_) | Segment::Sparse(_)))
        });
        if hit {
            return a;
        }
    }
    p.clone()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn affecting_equals_brute_force(
        first in 1u64..4,
        hist in history(),
        probes in prop::collection::vec(probe(), 1..12),
        cuts in prop::collection::vec((0u64..50, 0u64..50), 1..4),
    ) {
        let idx = build(first, &hist);
        let last = first + hist.len() as u64 - 1;
        for p in &probes {
            let mut ranges = vec![(0, last), (first - 1, last)];
            ranges.extend(cuts.iter().copied());
            for (from, to) in ranges {
                prop_assert_eq!(
                    idx.affecting(p, from, to),
                    brute_affecting(first, &hist, p, from, to),
                    "path {} range ({}, {}]", p, from, to
                );
            }
        }
    }

    #[test]
    fn affecting_equals_brute_force_on_long_histories(
        hist in prop::collection::vec(prop::collection::vec(path(), 1..5), 300..700),
        probes in prop::collection::vec(probe(), 1..6),
        from in 0u64..100,
    ) {
        // Long histories over few paths: wide subtrees collect many commits
        // over a short range (the bitmap path of the merge).
        let idx = build(1, &hist);
        let last = hist.len() as u64;
        for p in probes.iter().chain([&KPath::parse("a").unwrap(), &KPath::parse("b[0]").unwrap()]) {
            prop_assert_eq!(idx.affecting(p, from, last), brute_affecting(1, &hist, p, from, last));
            let plan = idx.plan(p, from, last).unwrap();
            let root = brute_root(1, &hist, p, from, last);
            let got: Vec<u64> = plan.records.iter().map(|(c, _)| *c).collect();
            prop_assert_eq!(got, brute_affecting(1, &hist, &root, from, last));
            prop_assert_eq!(plan.root, root);
        }
    }

    #[test]
    fn plan_equals_brute_force(
        hist in history(),
        probes in prop::collection::vec(probe(), 1..12),
        bases in prop::collection::vec(0u64..45, 1..4),
    ) {
        let idx = build(1, &hist);
        let last = hist.len() as u64;
        for p in &probes {
            for &base in &bases {
                for commit in [base, base + 1, (base + 7).min(last), last] {
                    if base > commit || commit > last {
                        continue;
                    }
                    let plan = idx.plan(p, base, commit).unwrap();
                    let root = brute_root(1, &hist, p, base, commit);
                    prop_assert_eq!(&plan.root, &root, "path {} ({}, {}]", p, base, commit);
                    prop_assert!(root.is_prefix_of(p));
                    // Records: everything at or below the read root in range; a
                    // superset of what affects `p`, and affecting the root.
                    let want = brute_affecting(1, &hist, &root, base, commit);
                    let got: Vec<u64> = plan.records.iter().map(|(c, _)| *c).collect();
                    prop_assert_eq!(&got, &want);
                    for (c, l) in &plan.records {
                        prop_assert_eq!(*l, loc(*c));
                    }
                    for c in brute_affecting(1, &hist, p, base, commit) {
                        prop_assert!(got.contains(&c), "commit {} affects {} but is not planned", c, p);
                    }
                }
            }
        }
    }

    #[test]
    fn forget_before_keeps_the_rest(
        hist in history(),
        more in history(),
        cut in 0u64..45,
        probes in prop::collection::vec(probe(), 1..8),
    ) {
        let mut idx = build(1, &hist);
        let last = hist.len() as u64;
        idx.forget_before(cut);
        let oldest = cut.clamp(1, last + 1);
        prop_assert_eq!(idx.first_commit(), (oldest <= last).then_some(oldest));
        prop_assert_eq!(idx.next_commit(), Some(last + 1));
        let kept: u64 = hist
            .iter()
            .enumerate()
            .filter(|(i, _)| *i as u64 + 1 >= oldest)
            .map(|(_, ends)| {
                let mut e = ends.clone();
                e.sort();
                e.dedup();
                e.len() as u64
            })
            .sum();
        prop_assert_eq!(idx.stats().ends, kept);
        if kept == 0 {
            prop_assert_eq!(idx.stats().nodes, 1);
        }
        for (i, ends) in more.iter().enumerate() {
            let c = last + 1 + i as u64;
            idx.insert(c, ends, loc(c)).unwrap();
        }
        let all: Vec<Vec<KPath>> = hist.iter().chain(more.iter()).cloned().collect();
        let new_last = all.len() as u64;
        prop_assert_eq!(idx.last_commit(), Some(new_last));
        for c in 1..=new_last {
            prop_assert_eq!(idx.location(c), (c >= oldest).then(|| loc(c)));
        }
        for p in &probes {
            let want: Vec<u64> = brute_affecting(1, &all, p, 0, new_last)
                .into_iter()
                .filter(|c| *c >= oldest)
                .collect();
            prop_assert_eq!(idx.affecting(p, 0, new_last), want);
            if oldest > 1 {
                let compacted = matches!(
                    idx.plan(p, 0, new_last),
                    Err(IndexError::Compacted { .. })
                );
                prop_assert!(compacted);
            }
            let plan = idx.plan(p, oldest - 1, new_last).unwrap();
            prop_assert_eq!(plan.root, brute_root(1, &all, p, oldest - 1, new_last));
        }
    }
}

#[test]
fn insert_rejects_gaps_and_zero() {
    let mut idx = PathIndex::new();
    let p = KPath::parse("a.b").unwrap();
    assert_eq!(
        idx.insert(0, std::slice::from_ref(&p), loc(0)),
        Err(IndexError::OutOfOrder {
            commit: 0,
            expected: 1
        })
    );
    idx.insert(5, std::slice::from_ref(&p), loc(5)).unwrap();
    assert_eq!(idx.first_commit(), Some(5));
    assert_eq!(
        idx.insert(7, std::slice::from_ref(&p), loc(7)),
        Err(IndexError::OutOfOrder {
            commit: 7,
            expected: 6
        })
    );
    assert_eq!(
        idx.insert(5, std::slice::from_ref(&p), loc(5)),
        Err(IndexError::OutOfOrder {
            commit: 5,
            expected: 6
        })
    );
    idx.insert(6, &[], loc(6)).unwrap();
    assert_eq!(idx.last_commit(), Some(6));
    assert_eq!(idx.location(6), Some(loc(6)));
    assert_eq!(idx.location(4), None);
    assert_eq!(idx.location(7), None);
    assert_eq!(
        idx.plan(&p, 4, 7),
        Err(IndexError::FutureCommit { commit: 7, last: 6 })
    );
    assert_eq!(
        idx.plan(&p, 3, 6),
        Err(IndexError::Compacted { base: 3, oldest: 5 })
    );
    assert_eq!(
        idx.plan(&p, 6, 5),
        Err(IndexError::BaseAfterCommit { base: 6, commit: 5 })
    );
    assert_eq!(idx.plan(&p, 4, 6).unwrap().records, vec![(5, loc(5))]);
}

#[test]
fn memory_per_commit_does_not_grow_with_depth() {
    let deep = |depth: usize, i: u64| {
        let mut p = KPath::root();
        for d in 0..depth {
            p.push(Segment::Field(format!("f{d}")));
        }
        p.push(Segment::Field(format!("leaf{}", i % 10)));
        p
    };
    let grow = |depth: usize| {
        let mut idx = PathIndex::new();
        for c in 1..=2000u64 {
            idx.insert(c, &[deep(depth, c)], loc(c)).unwrap();
        }
        idx.stats()
    };
    let shallow = grow(1);
    let deeper = grow(40);
    assert_eq!(shallow.ends, 2000);
    assert_eq!(deeper.ends, 2000);
    // Only the 39 extra path nodes differ, not anything per commit.
    assert!(deeper.approx_bytes < shallow.approx_bytes + 39 * 256);
}
