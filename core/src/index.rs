//! The path index: which commits touch which paths.
//!
//! This module owns the pure rules and data structures that answer "which
//! commits in `(from, to]` can change the node at path `p`". It never reads
//! files and never applies patches.
//!
//! # Touched paths ("ends")
//!
//! A merged root patch is walked from the root. The walk goes *down* through
//! plain (untagged, or tagged with data tags only) non-empty objects — field
//! keys become `.field` segments, int keys `{i}` segments — and through the
//! entries of a non-empty `!arraydiff` that edits elements in place. It *ends*
//! (the path is recorded, and the whole subtree below it counts as changed) at
//! everything else: a scalar or `null`, a plain array, an empty object, a node
//! with an op anywhere in its tag chain (`!delete`, `!replace`, `!insert`,
//! `!key(..)`, `!all`, `!t.delete`, ...), an empty `!arraydiff {}`, and an
//! `!arraydiff` that inserts or deletes elements. Every node the walk passes
//! through therefore has at least one end below it.
//!
//! # The affects relation
//!
//! A commit whose patch ends at `e` can change the node at `p` when
//!
//! 1. `e` is `p` or an ancestor of `p` (the whole subtree at `e` was rewritten), or
//! 2. `e` is a descendant of `p` (something inside `p` changed), or
//! 3. `p` continues below some strict ancestor `a` with a dense index `a[i]..`,
//!    and `e` lies below `a` through a field or sparse segment: an object patch
//!    at `a` turns an array there into an object, which removes `a[i]`.
//!
//! Rule 3 is why the walk never needs to record the objects it passes through:
//! memory per commit grows with the number of ends, not with the depth of the
//! document.
//!
//! # The index
//!
//! [`PathIndex`] interns path segments into a trie (field names numbered once;
//! one hash map of `(parent, segment) → node`); each node keeps the ascending
//! commits whose walk ends exactly there, and the newest commit at or below it
//! (to skip quiet subtrees). Commit locations live in one vector indexed by
//! `commit - first`. [`PathIndex::affecting`] answers the three rules by
//! walking `p`'s ancestors (rule 1, and rule 3 at each dense-index step), then
//! `p`'s subtree (rule 2).
//!
//! # Read plans
//!
//! [`PathIndex::plan`] picks the read root `R` for a read of `p` at `c` from
//! base `b`: the shallowest strict ancestor `a` of `p` where a commit in
//! `(b, c]` ends, or (rule 3) below which one ends through a field or sparse
//! child while `p` continues with `[i]`; `p` itself if there is none. No
//! replayed commit then rewrites anything above `R`, so the node at `R` is the
//! fold of the commits ending at or below `R` ([`crate::read`] executes it).

pub mod checkpoint;

use std::collections::HashMap;

use crate::kpath::{KPath, Segment};
use crate::node::{Key, Node, Value};
use crate::wal::Location;

/// The first op name in a tag chain (`None` when every part is data).
///
/// Every part of the chain is looked at, not only the first: whichever part
/// `patch::apply` treats as the op, a chain that contains one is never walked
/// through as plain data (ending the walk early is always safe, walking
/// through an op is not).
fn chain_op(node: &Node) -> Option<&'static str> {
    let mut tag = node.tag.clone()?;
    loop {
        let (head, rest) = tag.split_first();
        if let Some(op) = crate::patch::op_name(head.name) {
            return Some(op);
        }
        tag = rest?;
    }
}

/// How the walk treats one patch node.
pub(crate) enum Shape<'a> {
    /// A plain (untagged or data-tagged) non-empty object: the walk goes down
    /// through its keys.
    Object(&'a [(Key, Node)]),
    /// An `!arraydiff` that keeps every element in place: the walk goes down
    /// through its `[i]` entries.
    InPlaceArrayDiff(&'a [(Key, Node)]),
    /// Anything else: the walk ends here.
    End,
}

/// Classifies a patch node for the walk (shared by [`touched_paths`] and the
/// read fold's sub-patch navigation, which must agree exactly).
pub(crate) fn shape(node: &Node) -> Shape<'_> {
    match (chain_op(node), &node.value) {
        (None, Value::Object(kv)) if !kv.is_empty() => Shape::Object(kv),
        (Some("arraydiff"), Value::Object(kv))
            if node.tag.as_ref().map(|t| t.as_str()) == Some("arraydiff")
                && in_place_arraydiff(kv) =>
        {
            Shape::InPlaceArrayDiff(kv)
        }
        _ => Shape::End,
    }
}

/// Whether an in-place `!arraydiff` entry replaces its element whole (the walk
/// ends at `[i]` rather than going into the entry).
pub(crate) fn is_replace_entry(entry: &Node) -> bool {
    chain_op(entry) == Some("replace")
}

/// The paths where the walk of `patch` ends (see the module docs), in walk order.
pub fn touched_paths(patch: &Node) -> Vec<KPath> {
    let mut out = Vec::new();
    let mut path = KPath::root();
    walk(patch, &mut path, &mut out);
    out
}

/// The walk, with an explicit stack: a patch of any depth is safe.
fn walk(root: &Node, path: &mut KPath, out: &mut Vec<KPath>) {
    enum Item<'a> {
        /// Visit `node` at `path[..depth] + seg`.
        Visit(&'a Node, usize, Option<Segment>),
        /// Record an end at `path[..depth] + seg`.
        End(usize, Segment),
    }
    let base = path.len();
    let mut stack = vec![Item::Visit(root, base, None)];
    while let Some(item) = stack.pop() {
        let (node, depth, seg) = match item {
            Item::Visit(node, depth, seg) => (Some(node), depth, Some(seg)),
            Item::End(depth, seg) => (None, depth, Some(Some(seg))),
        };
        while path.len() > depth {
            path.pop();
        }
        if let Some(Some(seg)) = seg {
            path.push(seg);
        }
        let Some(node) = node else {
            out.push(path.clone());
            continue;
        };
        let here = path.len();
        match shape(node) {
            Shape::Object(kv) => {
                for (k, child) in kv.iter().rev() {
                    let seg = match k {
                        Key::Field(f) => Segment::Field(f.clone()),
                        Key::Index(i) => Segment::Sparse(*i),
                    };
                    stack.push(Item::Visit(child, here, Some(seg)));
                }
            }
            Shape::InPlaceArrayDiff(kv) => {
                for (k, child) in kv.iter().rev() {
                    if let Key::Index(i) = k {
                        if is_replace_entry(child) {
                            stack.push(Item::End(here, Segment::Index(*i)));
                        } else {
                            stack.push(Item::Visit(child, here, Some(Segment::Index(*i))));
                        }
                    }
                }
            }
            Shape::End => out.push(path.clone()),
        }
    }
    while path.len() > base {
        path.pop();
    }
}

/// An `!arraydiff` that keeps every element in its place: all entries are
/// int-keyed and either plain (untagged or data-tagged: applying one never
/// removes the element) or `!replace`. Slot `i` is then doc element `i`, so
/// the walk can go down. Any other op (`!insert`, `!delete`, `!if` that may
/// delete, ...) can shift later elements and ends the walk at the array.
///
/// An empty `!arraydiff {}` is *not* walked through: the walk would record no
/// end at all, and a data-tagged object above it (`!t {a: !arraydiff {}}`),
/// which sets its tag, would then change without any end at or below it.
/// Ending there keeps the invariant that every node the walk passes through
/// has an end below it (so rule 2 sees every change to it).
fn in_place_arraydiff(kv: &[(Key, Node)]) -> bool {
    !kv.is_empty()
        && kv.iter().all(|(k, v)| {
            matches!(k, Key::Index(_)) && matches!(chain_op(v), None | Some("replace"))
        })
}

/// Whether a commit whose patch ends at `end` can change the node at `path`
/// (the three rules of the module docs).
pub fn affects(end: &KPath, path: &KPath) -> bool {
    if end.is_prefix_of(path) || path.is_prefix_of(end) {
        return true;
    }
    // Rule 3: the longest common prefix `a` of the two paths, where `path`
    // continues with a dense index and `end` with a field or sparse index.
    let common = end
        .segments()
        .iter()
        .zip(path.segments())
        .take_while(|(a, b)| a == b)
        .count();
    matches!(path.segments().get(common), Some(Segment::Index(_)))
        && matches!(
            end.segments().get(common),
            Some(Segment::Field(_) | Segment::Sparse(_))
        )
}

/// Errors of the path index.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum IndexError {
    /// A path holding a keyed segment `(k)`: the index holds positional
    /// paths only (resolve keyed paths with `Node::resolve_path` first).
    #[error("path {path} has a keyed segment: the index holds positional paths only")]
    KeyedPath {
        /// The path.
        path: KPath,
    },
    /// Commits must be indexed in order, without gaps.
    #[error("commit {commit} indexed out of order: expected commit {expected}")]
    OutOfOrder {
        /// The commit that was offered.
        commit: u64,
        /// The commit the index expected next.
        expected: u64,
    },
    /// A read asked for a commit the index has not seen yet.
    #[error("commit {commit} is in the future: the last indexed commit is {last}")]
    FutureCommit {
        /// The commit asked for.
        commit: u64,
        /// The last indexed commit (0 when none).
        last: u64,
    },
    /// A read needs commits the index has forgotten.
    #[error("commits before {oldest} were compacted: cannot replay from base {base}")]
    Compacted {
        /// The base commit the read would replay from.
        base: u64,
        /// The oldest commit the index still holds.
        oldest: u64,
    },
    /// A read's base commit lies after the commit to read.
    #[error("read base {base} is after the commit to read {commit}")]
    BaseAfterCommit {
        /// The base commit.
        base: u64,
        /// The commit to read.
        commit: u64,
    },
    /// More distinct path nodes or field names than the index can number.
    #[error("the path index is full (more than {limit} distinct path nodes or names)")]
    Full {
        /// The limit that was reached.
        limit: u64,
    },
}

/// One interned path segment: field names are numbered in a name table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Seg {
    Field(u32),
    Index(u32),
    Sparse(u32),
}

const ROOT: u32 = 0;
const NO_PARENT: u32 = u32::MAX;

/// One node of the path trie.
#[derive(Clone, Debug)]
struct PathNode {
    /// Parent node id (`NO_PARENT` for the root).
    parent: u32,
    /// The segment from the parent to this node (unused for the root).
    seg: Seg,
    /// Child node ids, in first-seen order.
    children: Vec<u32>,
    /// Commits whose walk ends exactly here, ascending, no duplicates.
    ends: Vec<u64>,
    /// The newest commit that ends at this node or below it (0: none). An
    /// upper bound after [`PathIndex::forget_before`]; used to skip subtrees.
    subtree_last: u64,
}

/// Approximate memory use of a [`PathIndex`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IndexStats {
    /// Commits held (with a location each).
    pub commits: u64,
    /// Path nodes in the trie (the root included).
    pub nodes: u64,
    /// Interned field names.
    pub names: u64,
    /// Recorded (commit, end node) pairs.
    pub ends: u64,
    /// Approximate heap bytes used by all of the above.
    pub approx_bytes: u64,
}

/// A read plan: what to replay to read path `path` as of commit `commit`.
///
/// The reader starts from the node at `root` in the base document (the empty
/// document when `base` is 0, later a snapshot at commit `base`), applies the
/// sub-patch at `root` of each record in `records` in order, and finally takes
/// the node at `path` relative to `root`. See [`crate::read`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReadPlan {
    /// The path asked for.
    pub path: KPath,
    /// The read root `R`: an ancestor-or-self of `path` such that no commit in
    /// the plan rewrites anything above `R` in a way that reaches `path`.
    pub root: KPath,
    /// The base commit: the state before the first record (0: empty document).
    pub base: u64,
    /// The commit read as of.
    pub commit: u64,
    /// The commits in `(base, commit]` that affect `root`, ascending, with
    /// their log locations.
    pub records: Vec<(u64, Location)>,
}

/// Which commits touch which paths, and where each commit's record lives.
///
/// A trie of interned path nodes; each node keeps the ascending list of
/// commits whose walk *ends* there (see the module docs), so memory per commit
/// grows with its number of ends, never with the depth of the document.
/// Commits are dense from [`PathIndex::first_commit`]: their log locations are
/// kept in one vector indexed by `commit - first`.
#[derive(Clone, Debug)]
pub struct PathIndex {
    nodes: Vec<PathNode>,
    edges: HashMap<(u32, Seg), u32>,
    names: Vec<Box<str>>,
    name_ids: HashMap<Box<str>, u32>,
    /// Whether any commit was ever inserted (fixes the numbering).
    started: bool,
    /// The commit of `locations[0]`; when `locations` is empty, the next
    /// expected commit (if `started`).
    base: u64,
    locations: Vec<Location>,
    ends_total: u64,
}

impl Default for PathIndex {
    fn default() -> Self {
        PathIndex::new()
    }
}

impl PathIndex {
    /// An empty index: the first inserted commit may have any number ≥ 1.
    pub fn new() -> PathIndex {
        PathIndex {
            nodes: vec![PathNode {
                parent: NO_PARENT,
                seg: Seg::Index(0),
                children: Vec::new(),
                ends: Vec::new(),
                subtree_last: 0,
            }],
            edges: HashMap::new(),
            names: Vec::new(),
            name_ids: HashMap::new(),
            started: false,
            base: 0,
            locations: Vec::new(),
            ends_total: 0,
        }
    }

    /// The oldest commit held, `None` when no commit is held.
    pub fn first_commit(&self) -> Option<u64> {
        (!self.locations.is_empty()).then_some(self.base)
    }

    /// The newest commit held, `None` when no commit is held.
    pub fn last_commit(&self) -> Option<u64> {
        let n = self.locations.len() as u64;
        (n > 0).then(|| self.base + n - 1)
    }

    /// The newest commit the index has numbered, held or already
    /// forgotten (`None` before the first): unlike
    /// [`PathIndex::last_commit`], compaction cannot empty it.
    pub fn newest_commit(&self) -> Option<u64> {
        self.next_commit()
            .and_then(|n| n.checked_sub(1))
            .filter(|&c| c > 0)
    }

    /// The commit the next [`PathIndex::insert`] must carry (`None` before
    /// the first insert, when any commit ≥ 1 is accepted).
    pub fn next_commit(&self) -> Option<u64> {
        self.started
            .then_some(self.base + self.locations.len() as u64)
    }

    /// Fixes the numbering of an index that holds no commit yet: the next
    /// insert must carry `next`, and plans know every commit before it
    /// (reads of those start from a snapshot). Recovery calls this when the
    /// retained log holds no record although commits were made (the newest
    /// segment is empty and compaction removed the older ones). Does nothing
    /// once the index has started.
    pub fn start_at(&mut self, next: u64) {
        if !self.started && next > 0 {
            self.started = true;
            self.base = next;
        }
    }

    /// The smallest `from` for which [`PathIndex::affecting`] over
    /// `(from, to]` is complete: the commit before the oldest one held (or,
    /// when none is held, the last one known). Earlier commits were forgotten
    /// (compacted) and can no longer be listed.
    pub fn complete_from(&self) -> u64 {
        self.base.saturating_sub(1)
    }

    /// Where the record of `commit` lives, `None` when the index does not hold it.
    pub fn location(&self, commit: u64) -> Option<Location> {
        let i = commit.checked_sub(self.base)?;
        self.locations.get(usize::try_from(i).ok()?).copied()
    }

    /// Indexes the merged root patch of `commit` (its ends are
    /// [`touched_paths`]).
    pub fn insert_patch(
        &mut self,
        commit: u64,
        patch: &Node,
        location: Location,
    ) -> Result<(), IndexError> {
        self.insert(commit, &touched_paths(patch), location)
    }

    /// Indexes `commit`, whose walk ends at `ends`, stored at `location`.
    ///
    /// Commits arrive in increasing order without gaps; anything else is
    /// [`IndexError::OutOfOrder`] and changes nothing.
    pub fn insert(
        &mut self,
        commit: u64,
        ends: &[KPath],
        location: Location,
    ) -> Result<(), IndexError> {
        let expected = self.next_commit().unwrap_or(commit.max(1));
        if commit != expected || commit == 0 {
            return Err(IndexError::OutOfOrder { commit, expected });
        }
        // Intern first so that a full index fails before changing anything.
        let mut ids = Vec::with_capacity(ends.len());
        for end in ends {
            ids.push(self.intern_path(end)?);
        }
        if !self.started {
            self.started = true;
            self.base = commit;
        }
        self.locations.push(location);
        for id in ids {
            let node = &mut self.nodes[id as usize];
            if node.ends.last() == Some(&commit) {
                continue;
            }
            node.ends.push(commit);
            self.ends_total += 1;
            let mut cur = id;
            while cur != NO_PARENT {
                let n = &mut self.nodes[cur as usize];
                if n.subtree_last >= commit {
                    break;
                }
                n.subtree_last = commit;
                cur = n.parent;
            }
        }
        Ok(())
    }

    /// The commits in `(from, to]` that can change the node at `path` (the
    /// three rules of the module docs), ascending, without duplicates.
    ///
    /// For the root path this is every held commit in the range, including
    /// commits whose patch touches nothing. Commits the index does not hold
    /// (forgotten, or not yet inserted) are simply not listed.
    pub fn affecting(&self, path: &KPath, from: u64, to: u64) -> Vec<u64> {
        let Some((lo, hi)) = self.clamp(from, to) else {
            return Vec::new();
        };
        if path.is_root() {
            return (lo..=hi).collect();
        }
        let mut out = Vec::new();
        let mut node = ROOT;
        push_range(&mut out, &self.nodes[ROOT as usize].ends, lo, hi);
        for seg in path.segments() {
            if let Segment::Index(_) = seg {
                // Rule 3: an object patch at this strict ancestor.
                for &c in &self.nodes[node as usize].children {
                    if !matches!(self.nodes[c as usize].seg, Seg::Index(_)) {
                        self.collect_subtree(c, lo, hi, &mut out);
                    }
                }
            }
            match self.child(node, seg) {
                Some(c) => {
                    node = c;
                    // Rule 1: ends at an ancestor-or-self.
                    push_range(&mut out, &self.nodes[c as usize].ends, lo, hi);
                }
                None => {
                    sort_dedup(&mut out, lo, hi);
                    return out;
                }
            }
        }
        // Rule 2: ends strictly below the path.
        for &c in &self.nodes[node as usize].children {
            self.collect_subtree(c, lo, hi, &mut out);
        }
        sort_dedup(&mut out, lo, hi);
        out
    }

    /// Plans a read of `path` as of `commit`, replaying from the state at
    /// `base` (0: the empty document; later, a snapshot's commit).
    ///
    /// The read root is the shallowest strict ancestor `a` of `path` at which
    /// a commit in `(base, commit]` ends, or below which one ends through a
    /// field or sparse child while `path` continues with a dense index (rule
    /// 3); `path` itself when there is none. The records are then every commit
    /// in range that ends at the read root or below it (for the root, every
    /// commit in range). Costs O(depth + size of the read root's subtree +
    /// records), independent of the total number of commits.
    pub fn plan(&self, path: &KPath, base: u64, commit: u64) -> Result<ReadPlan, IndexError> {
        // The newest commit ever indexed (still 'known' after forgetting).
        let last = self.next_commit().map_or(0, |n| n - 1);
        if commit > last {
            return Err(IndexError::FutureCommit { commit, last });
        }
        if base > commit {
            return Err(IndexError::BaseAfterCommit { base, commit });
        }
        // `self.base` is the oldest commit held (or the next one when none is).
        if base < commit && base + 1 < self.base {
            return Err(IndexError::Compacted {
                base,
                oldest: self.base,
            });
        }
        let mut plan = ReadPlan {
            path: path.clone(),
            root: path.clone(),
            base,
            commit,
            records: Vec::new(),
        };
        let Some((lo, hi)) = self.clamp(base, commit) else {
            return Ok(plan);
        };
        let segs = path.segments();
        let mut node = ROOT;
        let mut root_node = None;
        for (depth, seg) in segs.iter().enumerate() {
            let n = &self.nodes[node as usize];
            let ends_here = has_in_range(&n.ends, lo, hi);
            let rule3 = matches!(seg, Segment::Index(_))
                && n.children.iter().any(|&c| {
                    !matches!(self.nodes[c as usize].seg, Seg::Index(_))
                        && self.any_in_subtree(c, lo, hi)
                });
            if ends_here || rule3 {
                plan.root = KPath::from_segments(segs[..depth].to_vec());
                root_node = Some(node);
                break;
            }
            match self.child(node, seg) {
                Some(c) => node = c,
                // Nothing was ever recorded at or below `path`.
                None => return Ok(plan),
            }
        }
        let root_node = root_node.unwrap_or(node);
        let commits = if root_node == ROOT {
            (lo..=hi).collect()
        } else {
            let mut out = Vec::new();
            self.collect_subtree(root_node, lo, hi, &mut out);
            sort_dedup(&mut out, lo, hi);
            out
        };
        plan.records = commits
            .into_iter()
            .filter_map(|c| self.location(c).map(|l| (c, l)))
            .collect();
        Ok(plan)
    }

    /// Forgets every commit before `commit` (their locations and ends), for
    /// compaction once a snapshot covers them. Path nodes with nothing left at
    /// or below them are dropped. Forgetting past the last commit forgets
    /// everything but keeps the numbering (the next insert is still
    /// `last + 1`).
    pub fn forget_before(&mut self, commit: u64) {
        let Some(next) = self.next_commit() else {
            return;
        };
        let cut = commit.min(next);
        if cut <= self.base {
            return;
        }
        let drop = usize::try_from(cut - self.base).unwrap_or(usize::MAX);
        self.locations.drain(..drop.min(self.locations.len()));
        self.base = cut;
        // Rebuild the trie with only the nodes that still hold something.
        let mut old = std::mem::take(self);
        self.started = old.started;
        self.base = old.base;
        self.locations = std::mem::take(&mut old.locations);
        self.rebuild_from(&old, cut);
    }

    /// Copies the nodes of `old` that keep an end `>= cut` at or below them.
    /// Without recursion: a child's id is always greater than its parent's,
    /// so one backward pass finds what to keep and one forward pass copies it.
    fn rebuild_from(&mut self, old: &PathIndex, cut: u64) {
        let n = old.nodes.len();
        let mut last = vec![0u64; n];
        for id in (0..n).rev() {
            let node = &old.nodes[id];
            let own = node.ends.last().copied().filter(|&c| c >= cut).unwrap_or(0);
            let below = last[id].max(own);
            last[id] = below;
            if node.parent != NO_PARENT
                && let Some(p) = last.get_mut(node.parent as usize)
            {
                *p = (*p).max(below);
            }
        }
        let mut new_id = vec![NO_PARENT; n];
        new_id[ROOT as usize] = ROOT;
        for id in 0..n {
            if last[id] == 0 && id != ROOT as usize {
                continue;
            }
            let node = &old.nodes[id];
            let this = if id == ROOT as usize {
                ROOT
            } else {
                let Some(&parent) = new_id.get(node.parent as usize) else {
                    continue;
                };
                let seg = match node.seg {
                    Seg::Field(name) => match self.intern_name(&old.names[name as usize]) {
                        Ok(id) => Seg::Field(id),
                        // Fewer names than before: cannot overflow.
                        Err(_) => continue,
                    },
                    other => other,
                };
                match self.add_child(parent, seg) {
                    Ok(child) => child,
                    // Fewer nodes than before: cannot overflow.
                    Err(_) => continue,
                }
            };
            new_id[id] = this;
            let keep_from = node.ends.partition_point(|&c| c < cut);
            let ends = node.ends[keep_from..].to_vec();
            self.ends_total += ends.len() as u64;
            let fresh = &mut self.nodes[this as usize];
            fresh.ends = ends;
            fresh.subtree_last = last[id];
        }
    }

    /// Approximate memory use.
    pub fn stats(&self) -> IndexStats {
        let node_bytes: usize = self
            .nodes
            .iter()
            .map(|n| {
                std::mem::size_of::<PathNode>() + n.children.capacity() * 4 + n.ends.capacity() * 8
            })
            .sum();
        let edge_bytes = self.edges.capacity() * (std::mem::size_of::<((u32, Seg), u32)>() + 1);
        let name_bytes: usize = self
            .names
            .iter()
            .map(|n| 2 * (n.len() + 16) + 8)
            .sum::<usize>()
            + self.name_ids.capacity() * (std::mem::size_of::<(Box<str>, u32)>() + 1);
        let loc_bytes = self.locations.capacity() * std::mem::size_of::<Location>();
        IndexStats {
            commits: self.locations.len() as u64,
            nodes: self.nodes.len() as u64,
            names: self.names.len() as u64,
            ends: self.ends_total,
            approx_bytes: (node_bytes + edge_bytes + name_bytes + loc_bytes) as u64,
        }
    }

    /// The held commits in `(from, to]` as an inclusive range, if any.
    fn clamp(&self, from: u64, to: u64) -> Option<(u64, u64)> {
        let first = self.first_commit()?;
        let last = self.last_commit()?;
        let lo = from.saturating_add(1).max(first);
        let hi = to.min(last);
        (lo <= hi).then_some((lo, hi))
    }

    fn lookup_seg(&self, seg: &Segment) -> Option<Seg> {
        Some(match seg {
            Segment::Field(f) => Seg::Field(*self.name_ids.get(f.as_str())?),
            Segment::Index(i) => Seg::Index(*i),
            Segment::Sparse(i) => Seg::Sparse(*i),
            // Stored paths are positional; a keyed path is resolved against
            // the document (`Node::resolve_path`) before it reaches the index.
            Segment::Key(_) => return None,
        })
    }

    fn child(&self, node: u32, seg: &Segment) -> Option<u32> {
        let seg = self.lookup_seg(seg)?;
        self.edges.get(&(node, seg)).copied()
    }

    fn intern_name(&mut self, name: &str) -> Result<u32, IndexError> {
        if let Some(&id) = self.name_ids.get(name) {
            return Ok(id);
        }
        let id = u32::try_from(self.names.len()).map_err(|_| IndexError::Full {
            limit: u32::MAX.into(),
        })?;
        self.names.push(name.into());
        self.name_ids.insert(name.into(), id);
        Ok(id)
    }

    fn add_child(&mut self, parent: u32, seg: Seg) -> Result<u32, IndexError> {
        if let Some(&id) = self.edges.get(&(parent, seg)) {
            return Ok(id);
        }
        let id = u32::try_from(self.nodes.len())
            .ok()
            .filter(|&id| id != NO_PARENT)
            .ok_or(IndexError::Full {
                limit: u32::MAX.into(),
            })?;
        self.nodes.push(PathNode {
            parent,
            seg,
            children: Vec::new(),
            ends: Vec::new(),
            subtree_last: 0,
        });
        self.nodes[parent as usize].children.push(id);
        self.edges.insert((parent, seg), id);
        Ok(id)
    }

    fn intern_path(&mut self, path: &KPath) -> Result<u32, IndexError> {
        let mut node = ROOT;
        for seg in path.segments() {
            let seg = match seg {
                Segment::Field(f) => Seg::Field(self.intern_name(f)?),
                Segment::Index(i) => Seg::Index(*i),
                Segment::Sparse(i) => Seg::Sparse(*i),
                Segment::Key(_) => {
                    return Err(IndexError::KeyedPath { path: path.clone() });
                }
            };
            node = self.add_child(node, seg)?;
        }
        Ok(node)
    }

    /// Appends every commit in `[lo, hi]` ending at `node` or below it.
    fn collect_subtree(&self, node: u32, lo: u64, hi: u64, out: &mut Vec<u64>) {
        let mut stack = vec![node];
        while let Some(n) = stack.pop() {
            let n = &self.nodes[n as usize];
            if n.subtree_last < lo {
                continue;
            }
            push_range(out, &n.ends, lo, hi);
            stack.extend_from_slice(&n.children);
        }
    }

    /// Whether any commit in `[lo, hi]` ends at `node` or below it.
    fn any_in_subtree(&self, node: u32, lo: u64, hi: u64) -> bool {
        let mut stack = vec![node];
        while let Some(n) = stack.pop() {
            let n = &self.nodes[n as usize];
            if n.subtree_last < lo {
                continue;
            }
            if has_in_range(&n.ends, lo, hi) {
                return true;
            }
            stack.extend_from_slice(&n.children);
        }
        false
    }
}

/// Sorts and deduplicates commits that all lie in `[lo, hi]`. Many commits
/// over a short range (a wide subtree) go through a bitmap of the range
/// instead of a comparison sort.
fn sort_dedup(out: &mut Vec<u64>, lo: u64, hi: u64) {
    let span = hi.saturating_sub(lo).saturating_add(1);
    let dense = out.len() >= 256 && span <= 16 * out.len() as u64;
    let Ok(span) = usize::try_from(span) else {
        out.sort_unstable();
        out.dedup();
        return;
    };
    if !dense {
        out.sort_unstable();
        out.dedup();
        return;
    }
    let mut bits = vec![0u64; span.div_ceil(64)];
    for &c in out.iter() {
        let Some(i) = c.checked_sub(lo).and_then(|i| usize::try_from(i).ok()) else {
            continue;
        };
        if let Some(w) = bits.get_mut(i / 64) {
            *w |= 1 << (i % 64);
        }
    }
    out.clear();
    for (wi, &w) in bits.iter().enumerate() {
        let mut w = w;
        while w != 0 {
            let b = w.trailing_zeros() as u64;
            out.push(lo + wi as u64 * 64 + b);
            w &= w - 1;
        }
    }
}

/// The sub-slice of the ascending `commits` that lies in `[lo, hi]`.
fn range(commits: &[u64], lo: u64, hi: u64) -> &[u64] {
    let a = commits.partition_point(|&c| c < lo);
    let b = commits.partition_point(|&c| c <= hi);
    commits.get(a..b).unwrap_or(&[])
}

fn push_range(out: &mut Vec<u64>, commits: &[u64], lo: u64, hi: u64) {
    out.extend_from_slice(range(commits, lo, hi));
}

fn has_in_range(commits: &[u64], lo: u64, hi: u64) -> bool {
    !range(commits, lo, hi).is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::Tag;

    fn p(s: &str) -> KPath {
        KPath::parse(s).unwrap_or_else(|e| panic!("{e}"))
    }

    fn obj(pairs: Vec<(&str, Node)>) -> Node {
        Node::object(pairs)
    }

    #[test]
    fn start_at_fixes_numbering_of_an_empty_index() {
        let loc = Location {
            segment: 8,
            offset: 0,
            len: 1,
        };
        let mut idx = PathIndex::new();
        idx.start_at(8);
        assert_eq!(idx.next_commit(), Some(8));
        // Commits before 8 are known (read from a snapshot), 8 is not yet.
        assert!(idx.plan(&p("a"), 7, 7).is_ok());
        assert!(matches!(
            idx.plan(&p("a"), 7, 8),
            Err(IndexError::FutureCommit { commit: 8, last: 7 })
        ));
        assert!(matches!(
            idx.insert(9, &[p("a")], loc),
            Err(IndexError::OutOfOrder { expected: 8, .. })
        ));
        idx.insert(8, &[p("a")], loc).unwrap();
        // Once started, start_at changes nothing.
        idx.start_at(100);
        assert_eq!(idx.next_commit(), Some(9));
    }

    #[test]
    fn walk_ends_at_scalars_ops_and_arrays() {
        let patch = obj(vec![
            (
                "users",
                obj(vec![(
                    "u1",
                    obj(vec![
                        ("name", Node::string("x")),
                        ("tags", Node::array([Node::string("a")])),
                    ]),
                )]),
            ),
            ("gone", Node::tagged("delete", Value::Null)),
            ("mine", Node::tagged("mytag", Value::Object(vec![]))),
        ]);
        assert_eq!(
            touched_paths(&patch),
            vec![p("users.u1.name"), p("users.u1.tags"), p("gone"), p("mine")]
        );
    }

    #[test]
    fn arraydiff_in_place_goes_down_inserting_stops() {
        let in_place = Node {
            tag: Some(Tag::new("arraydiff")),
            value: Value::Object(vec![
                (Key::Index(0), Node::string("first")),
                (Key::Index(3), obj(vec![("a", Node::int(1))])),
            ]),
        };
        let root = obj(vec![("x", in_place)]);
        assert_eq!(touched_paths(&root), vec![p("x[0]"), p("x[3].a")]);
        let inserting = Node {
            tag: Some(Tag::new("arraydiff")),
            value: Value::Object(vec![(Key::Index(1), Node::tagged("insert", Value::Int(1)))]),
        };
        assert_eq!(touched_paths(&obj(vec![("x", inserting)])), vec![p("x")]);
        let sparse = Node::object([(Key::Index(7), Node::int(1))]);
        assert_eq!(touched_paths(&sparse), vec![p("{7}")]);
        assert_eq!(touched_paths(&Node::int(1)), vec![KPath::root()]);
    }

    #[test]
    fn affects_relation() {
        assert!(affects(&p("a"), &p("a.b")));
        assert!(affects(&p("a.b"), &p("a")));
        assert!(affects(&p("a.b"), &p("a.b")));
        assert!(affects(&KPath::root(), &p("z")));
        assert!(!affects(&p("a.b"), &p("a.c")));
        // Object patch over an array removes its elements.
        assert!(affects(&p("a.f"), &p("a[0].x")));
        assert!(affects(&p("a{2}"), &p("a[0]")));
        assert!(!affects(&p("a[1]"), &p("a[0]")));
        assert!(!affects(&p("a[0]"), &p("a.f")));
    }

    #[test]
    fn any_op_in_a_tag_chain_ends_the_walk() {
        let chained = Node::tagged(
            "mine.delete",
            Value::Object(vec![(Key::from("b"), Node::int(1))]),
        );
        assert_eq!(touched_paths(&obj(vec![("a", chained)])), vec![p("a")]);
        let data = Node::tagged(
            "mine.other",
            Value::Object(vec![(Key::from("b"), Node::int(1))]),
        );
        assert_eq!(touched_paths(&obj(vec![("a", data)])), vec![p("a.b")]);
        // An arraydiff with a chain or arguments is not walked through.
        let odd = Node {
            tag: Some(Tag::new("arraydiff.mine")),
            value: Value::Object(vec![(Key::Index(0), obj(vec![("a", Node::int(1))]))]),
        };
        assert_eq!(touched_paths(&obj(vec![("x", odd)])), vec![p("x")]);
        // An entry whose chain holds a delete can shift elements.
        let shifting = Node {
            tag: Some(Tag::new("arraydiff")),
            value: Value::Object(vec![(
                Key::Index(0),
                Node::tagged("mine.delete", Value::Null),
            )]),
        };
        assert_eq!(touched_paths(&obj(vec![("x", shifting)])), vec![p("x")]);
        // A replace entry ends at the element.
        let replacing = Node {
            tag: Some(Tag::new("arraydiff")),
            value: Value::Object(vec![(
                Key::Index(2),
                Node::tagged("replace", Value::Object(vec![])),
            )]),
        };
        assert_eq!(touched_paths(&obj(vec![("x", replacing)])), vec![p("x[2]")]);
    }

    #[test]
    fn very_deep_patches_do_not_overflow_the_walk() {
        let mut patch = Node::int(1);
        for _ in 0..200_000 {
            patch = obj(vec![("a", patch)]);
        }
        let ends = touched_paths(&patch);
        assert_eq!(ends.len(), 1);
        assert_eq!(ends[0].len(), 200_000);
        // Dropping a deep node recurses in the compiler's drop glue; leak it
        // in this test rather than depend on the drop's stack use.
        std::mem::forget(patch);
    }

    #[test]
    fn empty_arraydiff_ends_the_walk() {
        // `!t {a: !arraydiff {}}` sets the tag at the top: the walk must end
        // somewhere at or below it, or no read of that node would see it.
        let empty = Node::tagged("arraydiff", Value::Object(vec![]));
        let tagged = Node::tagged("t", Value::Object(vec![(Key::from("a"), empty)]));
        assert_eq!(touched_paths(&obj(vec![("c", tagged)])), vec![p("c.a")]);
    }
}
