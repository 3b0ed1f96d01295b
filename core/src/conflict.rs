//! Sequencing-time conflict checks.
//!
//! This module owns [`ConflictIndex`]: per path, enough of the commit history
//! to answer "did any commit after `r` affect path `p`" (the relation of
//! [`crate::index::affects`]) from memory in O(depth of `p`) hash lookups,
//! never by scanning commits and never by reading files. It stores, for
//! every prefix of every end path (see [`crate::index::touched_paths`]), the
//! last commit that ended there, ended at or below it, or ended below it
//! through a field or sparse segment. It never decides what a conflict means
//! for a transaction; the log writer does.

use std::collections::HashMap;

use crate::index::touched_paths;
use crate::kpath::{KPath, Segment};
use crate::node::Node;

/// Last commits per path prefix, for conflict checks at sequencing time.
#[derive(Clone, Debug, Default)]
pub struct ConflictIndex {
    /// End path → last commit whose patch ended exactly there (rule 1).
    exact: HashMap<Vec<Segment>, u64>,
    /// Prefix → last commit whose patch ended at or below it (rule 2).
    subtree: HashMap<Vec<Segment>, u64>,
    /// Prefix `a` → last commit whose patch ended below `a` through a field
    /// or sparse segment right after `a` (rule 3).
    below_keyed: HashMap<Vec<Segment>, u64>,
    /// Commits before this one are unknown (e.g. compacted away): a check
    /// reading before `floor - 1` conflicts conservatively.
    floor: u64,
    /// The last commit recorded.
    last: u64,
}

/// A failed check: the path checked and the latest commit after the read
/// commit that affected it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Conflict {
    /// The checked path.
    pub path: KPath,
    /// The latest commit that affected it.
    pub commit: u64,
}

fn bump(map: &mut HashMap<Vec<Segment>, u64>, key: &[Segment], commit: u64) {
    match map.get_mut(key) {
        Some(c) => *c = (*c).max(commit),
        None => {
            map.insert(key.to_vec(), commit);
        }
    }
}

impl ConflictIndex {
    /// An empty index whose history starts at commit 1.
    pub fn new() -> ConflictIndex {
        ConflictIndex::default()
    }

    /// An empty index whose history starts after `base`: commits `1..=base`
    /// are unknown, so any check reading before `base` conflicts.
    pub fn with_base(base: u64) -> ConflictIndex {
        ConflictIndex {
            floor: base,
            last: base,
            ..ConflictIndex::default()
        }
    }

    /// The last commit recorded (or the base).
    pub fn last_commit(&self) -> u64 {
        self.last
    }

    /// Records a commit whose patch ends at `ends`.
    pub fn record_ends<'a>(&mut self, commit: u64, ends: impl IntoIterator<Item = &'a KPath>) {
        for end in ends {
            let segs = end.segments();
            bump(&mut self.exact, segs, commit);
            for k in 0..=segs.len() {
                bump(&mut self.subtree, &segs[..k], commit);
                if k < segs.len() && matches!(segs[k], Segment::Field(_) | Segment::Sparse(_)) {
                    bump(&mut self.below_keyed, &segs[..k], commit);
                }
            }
        }
        self.last = self.last.max(commit);
    }

    /// Records a commit with its merged root patch.
    pub fn record(&mut self, commit: u64, patch: &Node) {
        let ends = touched_paths(patch);
        self.record_ends(commit, ends.iter());
    }

    /// How many path prefixes it holds (what its memory grows with).
    pub fn entries(&self) -> usize {
        self.exact.len() + self.subtree.len() + self.below_keyed.len()
    }

    /// Forgets commits up to `floor` (at most the last one recorded): the
    /// entries they left are dropped, and a check reading before `floor`
    /// conflicts conservatively at `floor`, as after [`ConflictIndex::with_base`].
    /// Answers for read commits at or after `floor` do not change: an entry
    /// at or before `floor` can never be after such a read.
    pub fn forget_through(&mut self, floor: u64) {
        let floor = floor.min(self.last);
        if floor <= self.floor {
            return;
        }
        self.floor = floor;
        for map in [&mut self.exact, &mut self.subtree, &mut self.below_keyed] {
            map.retain(|_, c| *c > floor);
            map.shrink_to_fit();
        }
    }

    /// The latest commit after `read_commit` that affects `path`, if any.
    pub fn last_affecting(&self, path: &KPath, read_commit: u64) -> Option<u64> {
        if read_commit < self.floor {
            return Some(self.floor);
        }
        let segs = path.segments();
        let mut best = 0u64;
        // Rule 2: an end at or below `path`.
        if let Some(&c) = self.subtree.get(segs) {
            best = best.max(c);
        }
        for k in 0..=segs.len() {
            // Rule 1: an end at an ancestor-or-self.
            if let Some(&c) = self.exact.get(&segs[..k]) {
                best = best.max(c);
            }
            // Rule 3: `path` continues with a dense index below `segs[..k]`.
            if k < segs.len() && matches!(segs[k], Segment::Index(_)) {
                if let Some(&c) = self.below_keyed.get(&segs[..k]) {
                    best = best.max(c);
                }
            }
        }
        (best > read_commit).then_some(best)
    }

    /// The first of `checks` affected by a commit after `read_commit`.
    pub fn check<'a>(
        &self,
        checks: impl IntoIterator<Item = &'a KPath>,
        read_commit: u64,
    ) -> Option<Conflict> {
        checks.into_iter().find_map(|p| {
            self.last_affecting(p, read_commit).map(|commit| Conflict {
                path: p.clone(),
                commit,
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::affects;
    use proptest::prelude::*;

    fn p(s: &str) -> KPath {
        KPath::parse(s).unwrap()
    }

    #[test]
    fn the_three_rules() {
        let mut ix = ConflictIndex::new();
        ix.record_ends(1, [&p("a.b")]);
        ix.record_ends(2, [&p("x.f")]);
        ix.record_ends(3, [&p("q")]);
        assert_eq!(ix.last_affecting(&p("a.b.c"), 0), Some(1)); // ancestor
        assert_eq!(ix.last_affecting(&p("a"), 0), Some(1)); // descendant
        assert_eq!(ix.last_affecting(&p(""), 0), Some(3));
        assert_eq!(ix.last_affecting(&p("a.c"), 0), None);
        assert_eq!(ix.last_affecting(&p("x[0].y"), 0), Some(2)); // rule 3
        assert_eq!(ix.last_affecting(&p("x[0].y"), 2), None);
        assert_eq!(ix.last_affecting(&p("a.b"), 1), None);
        let c = ix.check([&p("zz"), &p("q.r")], 0).unwrap();
        assert_eq!(
            c,
            Conflict {
                path: p("q.r"),
                commit: 3
            }
        );
        let based = ConflictIndex::with_base(10);
        assert_eq!(based.last_affecting(&p("a"), 9), Some(10));
        assert_eq!(based.last_affecting(&p("a"), 10), None);
    }

    fn seg() -> impl Strategy<Value = Segment> {
        prop_oneof![
            prop::sample::select(vec!["a", "b", "c"]).prop_map(|s| Segment::Field(s.to_string())),
            (0u32..3).prop_map(Segment::Index),
            (0u32..3).prop_map(Segment::Sparse),
        ]
    }

    fn path() -> impl Strategy<Value = KPath> {
        proptest::collection::vec(seg(), 0..4).prop_map(KPath::from_segments)
    }

    proptest! {
        #[test]
        fn agrees_with_brute_force(
            commits in proptest::collection::vec(proptest::collection::vec(path(), 1..3), 1..12),
            queries in proptest::collection::vec((path(), 0u64..13), 1..20),
        ) {
            let mut ix = ConflictIndex::new();
            for (i, ends) in commits.iter().enumerate() {
                ix.record_ends(i as u64 + 1, ends.iter());
            }
            for (q, r) in &queries {
                let brute = commits.iter().enumerate().rev()
                    .map(|(i, ends)| (i as u64 + 1, ends))
                    .find(|(c, ends)| *c > *r && ends.iter().any(|e| affects(e, q)))
                    .map(|(c, _)| c);
                prop_assert_eq!(ix.last_affecting(q, *r), brute, "query {} after {}", q, r);
            }
        }

        /// Forgetting the first commits changes no answer for a read at or
        /// after the floor, answers at the floor for one before it, and
        /// drops exactly the entries no later commit refreshed.
        #[test]
        fn forgetting_keeps_every_answer_after_the_floor(
            commits in proptest::collection::vec(proptest::collection::vec(path(), 1..3), 1..12),
            floor in 0u64..14,
            queries in proptest::collection::vec((path(), 0u64..13), 1..20),
        ) {
            let mut full = ConflictIndex::new();
            for (i, ends) in commits.iter().enumerate() {
                full.record_ends(i as u64 + 1, ends.iter());
            }
            let mut pruned = full.clone();
            pruned.forget_through(floor);
            let floor = floor.min(commits.len() as u64);
            let kept = [&full.exact, &full.subtree, &full.below_keyed]
                .iter()
                .map(|m| m.values().filter(|&&c| c > floor).count())
                .sum::<usize>();
            prop_assert_eq!(pruned.entries(), kept);
            for (q, r) in &queries {
                let want = if *r < floor { Some(floor) } else { full.last_affecting(q, *r) };
                prop_assert_eq!(pruned.last_affecting(q, *r), want, "query {} after {}", q, r);
            }
        }
    }
}
