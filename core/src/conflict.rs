//! Sequencing-time conflict checks.
//!
//! This module owns [`ConflictIndex`]: per path, enough of the commit history
//! to answer "did any commit after `r` affect path `p`" (the relation of
//! [`crate::index::affects`]) from memory in O(depth of `p`) hash lookups,
//! never by scanning commits and never by reading files. It keeps a trie of
//! every prefix of every end path (see [`crate::index::touched_paths`]);
//! each node holds the last commit that ended there, ended at or below it,
//! or ended below it through a field or sparse segment. Recording or
//! checking a path walks it once, hashing each segment once (the log writer
//! does both for every commit). It never decides what a conflict means for
//! a transaction; the log writer does.

use std::collections::HashMap;

use crate::index::touched_paths;
use crate::kpath::{KPath, Segment};
use crate::node::Node;

/// Last commits per path prefix, for conflict checks at sequencing time.
#[derive(Clone, Debug, Default)]
pub struct ConflictIndex {
    /// The node of the empty prefix (the root path).
    root: Prefix,
    /// How many nodes below the root the trie holds.
    nodes: usize,
    /// Commits before this one are unknown (e.g. compacted away): a check
    /// reading before `floor - 1` conflicts conservatively.
    floor: u64,
    /// The last commit recorded.
    last: u64,
}

/// One path prefix of the trie; 0 means "no commit".
#[derive(Clone, Debug, Default)]
struct Prefix {
    /// The last commit whose patch ended exactly here (rule 1).
    exact: u64,
    /// The last commit whose patch ended at or below here (rule 2); never
    /// less than any commit held below.
    subtree: u64,
    /// The last commit whose patch ended below here through a field or
    /// sparse segment right after this prefix (rule 3).
    below_keyed: u64,
    children: HashMap<Segment, Prefix>,
}

impl Prefix {
    /// Drops every node below whose commits are all at or before `floor`
    /// (its `subtree` says so); returns how many nodes were dropped.
    fn forget_through(&mut self, floor: u64) -> usize {
        let mut dropped = 0;
        self.children.retain(|_, c| {
            if c.subtree <= floor {
                dropped += 1 + c.count();
                false
            } else {
                dropped += c.forget_through(floor);
                true
            }
        });
        self.children.shrink_to_fit();
        dropped
    }

    /// How many nodes are below this one.
    fn count(&self) -> usize {
        self.children.values().map(|c| 1 + c.count()).sum()
    }
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

fn keyed(seg: &Segment) -> bool {
    matches!(seg, Segment::Field(_) | Segment::Sparse(_))
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
            let mut node = &mut self.root;
            for seg in end.segments() {
                node.subtree = node.subtree.max(commit);
                if keyed(seg) {
                    node.below_keyed = node.below_keyed.max(commit);
                }
                // Look up before inserting: the key is cloned only for a
                // new prefix.
                if !node.children.contains_key(seg) {
                    node.children.insert(seg.clone(), Prefix::default());
                    self.nodes += 1;
                }
                let Some(next) = node.children.get_mut(seg) else {
                    break; // inserted just above
                };
                node = next;
            }
            node.subtree = node.subtree.max(commit);
            node.exact = node.exact.max(commit);
        }
        self.last = self.last.max(commit);
    }

    /// Records a commit with its merged root patch.
    pub fn record(&mut self, commit: u64, patch: &Node) {
        let ends = touched_paths(patch);
        self.record_ends(commit, ends.iter());
    }

    /// How many path prefixes it holds (what its memory grows with): the
    /// root once anything is recorded, and every prefix below it.
    pub fn entries(&self) -> usize {
        self.nodes + usize::from(self.root.subtree > self.floor)
    }

    /// Forgets commits up to `floor` (at most the last one recorded): the
    /// prefixes only they reached are dropped, and a check reading before
    /// `floor` conflicts conservatively at `floor`, as after
    /// [`ConflictIndex::with_base`]. Answers for read commits at or after
    /// `floor` do not change: a commit at or before `floor` can never be
    /// after such a read.
    pub fn forget_through(&mut self, floor: u64) {
        let floor = floor.min(self.last);
        if floor <= self.floor {
            return;
        }
        self.floor = floor;
        self.nodes -= self.root.forget_through(floor);
    }

    /// The latest commit after `read_commit` that affects `path`, if any.
    pub fn last_affecting(&self, path: &KPath, read_commit: u64) -> Option<u64> {
        if read_commit < self.floor {
            return Some(self.floor);
        }
        let mut best = 0u64;
        let mut node = &self.root;
        let mut reached = true;
        for seg in path.segments() {
            // Rule 1: an end at an ancestor.
            best = best.max(node.exact);
            // Rule 3: `path` continues with a dense index below this prefix.
            if matches!(seg, Segment::Index(_)) {
                best = best.max(node.below_keyed);
            }
            match node.children.get(seg) {
                Some(child) => node = child,
                None => {
                    reached = false;
                    break;
                }
            }
        }
        if reached {
            // Rules 1 and 2: an end at `path` itself, or below it.
            best = best.max(node.subtree);
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
            // Kept: every prefix of an end of a commit after the floor.
            let kept: std::collections::BTreeSet<Vec<Segment>> = commits
                .iter()
                .enumerate()
                .filter(|(i, _)| *i as u64 + 1 > floor)
                .flat_map(|(_, ends)| ends.iter())
                .flat_map(|e| (0..=e.segments().len()).map(|k| e.segments()[..k].to_vec()))
                .collect();
            prop_assert_eq!(pruned.entries(), kept.len());
            for (q, r) in &queries {
                let want = if *r < floor { Some(floor) } else { full.last_affecting(q, *r) };
                prop_assert_eq!(pruned.last_affecting(q, *r), want, "query {} after {}", q, r);
            }
        }
    }
}
