//! Reads as of a commit: executing a [`ReadPlan`] by folding sub-patches.
//!
//! This module owns the second half of `read_state_at(p, c)`: given a plan
//! from [`PathIndex::plan`] (read root `R`, the records to replay), it fetches
//! each record through a caller-supplied closure, cuts the part of the merged
//! root patch that lies at `R` ([`sub_patches`]), applies it to the state at
//! `R` ([`apply_in_place`]: `patch::apply_owned` semantics, merging plain
//! objects in place), and finally
//! takes the node at `p` below `R`. It never reads files itself (the closure
//! does), never decides which commits matter (the index does), and never
//! panics on any record.
//!
//! # Why this equals the root read
//!
//! The plan guarantees that no replayed commit's walk ends at a strict
//! ancestor of `R`, and that none rewrites an array above `R` into an object
//! (rule 3 of [`crate::index`]). Every replayed root patch therefore reaches
//! `R` only through plain objects (a non-object document there counts as
//! `{}`, which agrees with "absent below a non-object") and through in-place
//! `!arraydiff` entries (slot `i` is element `i`: an entry past the end is a
//! patch error, so a committed record never shifts elements). So the node at
//! `R` after the patch is `apply(node at R before, part of the patch at R)`,
//! and folding from the base node at `R` gives the node at `R` as of the
//! commit. Commits the plan leaves out end neither at, above nor below `R`,
//! so they cannot change it.

use std::borrow::Borrow;

use crate::index::{IndexError, PathIndex, ReadPlan, Shape, is_replace_entry, shape};
use crate::kpath::{KPath, Segment};
use crate::node::{Key, Node, Value};
use crate::patch::{self, PatchError};
use crate::wal::Location;

/// Why a planned read failed.
#[derive(Debug, thiserror::Error)]
pub enum ReadError<E: std::error::Error + 'static> {
    /// The index refused the plan (future or compacted commit, ...).
    #[error(transparent)]
    Index(#[from] IndexError),
    /// The record of a commit could not be fetched.
    #[error("reading the record of commit {commit}: {source}")]
    Fetch {
        /// The commit whose record was asked for.
        commit: u64,
        /// The fetcher's error.
        #[source]
        source: E,
    },
    /// Replaying the record of a commit failed. A committed record applied
    /// without error when it was committed, so this means the log and the
    /// replay disagree.
    #[error("replaying commit {commit}: {source}")]
    Patch {
        /// The commit replayed.
        commit: u64,
        /// The patch error.
        #[source]
        source: PatchError,
    },
    /// The record's patch ends above the read root (at `at`), which the index
    /// said it does not: the index and the log disagree.
    #[error(
        "commit {commit} rewrites {at}, above the read root {root}: the index disagrees with the log"
    )]
    PlanMismatch {
        /// The commit replayed.
        commit: u64,
        /// Where the patch's walk ended.
        at: KPath,
        /// The plan's read root.
        root: KPath,
    },
    /// The plan's read root is not an ancestor-or-self of its path.
    #[error("read root {root} is not an ancestor of {path}")]
    BadPlan {
        /// The read root.
        root: KPath,
        /// The path.
        path: KPath,
    },
}

/// The parts of the merged root `patch` that lie at `at`, in the order
/// `patch::apply` would apply them (more than one only when an object patch
/// repeats a key); empty when the patch does not change `at`.
///
/// Navigation goes through plain objects (`.f` and `{i}` keys) and in-place
/// `!arraydiff` entries (`[i]`), exactly where [`crate::index::touched_paths`]
/// walks. `Err(p)` names the path `p`, a strict ancestor of `at`, where the
/// patch rewrites more than its children: the part at `at` does not exist on
/// its own, and a read must start at `p` or above.
pub fn sub_patches<'a>(patch: &'a Node, at: &KPath) -> Result<Vec<&'a Node>, KPath> {
    let mut out = Vec::new();
    collect(patch, at.segments(), 0, &mut out)
        .map_err(|depth| KPath::from_segments(at.segments()[..depth].to_vec()))?;
    Ok(out)
}

fn collect<'a>(
    node: &'a Node,
    segs: &[Segment],
    depth: usize,
    out: &mut Vec<&'a Node>,
) -> Result<(), usize> {
    let Some(seg) = segs.get(depth) else {
        out.push(node);
        return Ok(());
    };
    match (shape(node), seg) {
        (Shape::Object(kv), Segment::Field(f)) => {
            for (k, v) in kv {
                if matches!(k, Key::Field(name) if name == f) {
                    collect(v, segs, depth + 1, out)?;
                }
            }
            Ok(())
        }
        (Shape::Object(kv), Segment::Sparse(i)) => {
            for (k, v) in kv {
                if *k == Key::Index(*i) {
                    collect(v, segs, depth + 1, out)?;
                }
            }
            Ok(())
        }
        // An object patch over an array removes `[i]` (rule 3).
        (Shape::Object(_), Segment::Index(_)) => Err(depth),
        (Shape::InPlaceArrayDiff(kv), Segment::Index(i)) => {
            for (k, v) in kv {
                if *k == Key::Index(*i) {
                    if is_replace_entry(v) && depth + 1 < segs.len() {
                        return Err(depth + 1);
                    }
                    collect(v, segs, depth + 1, out)?;
                }
            }
            Ok(())
        }
        // An `!arraydiff` needs an array, which has no `.f` or `{i}` child
        // before or after it.
        (Shape::InPlaceArrayDiff(_), Segment::Field(_) | Segment::Sparse(_)) => Ok(()),
        // Which element a keyed segment names depends on the document, not
        // on the patch: the patch decides the node from here on.
        (Shape::Object(_) | Shape::InPlaceArrayDiff(_), Segment::Key(_)) => Err(depth),
        (Shape::End, _) => Err(depth),
    }
}

/// `*slot = patch::apply_owned(slot, patch)`, without rebuilding the objects
/// the patch passes through.
///
/// Plain object patches (the walk's `Shape::Object` with no repeated key)
/// are merged in place, exactly as `patch::apply` merges them: a non-object
/// document counts as an untagged `{}`, the patch's data tag (if any)
/// replaces the document's, an existing key is patched where it stands and
/// removed when the result is absent, a new key is appended when its result
/// is present. Everything else is handed to `patch::apply_owned`. On error
/// the slot may be partly updated (the read fails as a whole). The oracle
/// test checks this against `patch::apply`.
pub fn apply_in_place(slot: &mut Option<Node>, patch: &Node) -> Result<(), PatchError> {
    merge_in_place(slot, patch, 0)
}

/// Levels merged in place before handing the rest to `patch::apply_owned`
/// (which guards its own depth): keeps this recursion shallow.
const IN_PLACE_DEPTH: usize = 32;

fn merge_in_place(slot: &mut Option<Node>, patch: &Node, depth: usize) -> Result<(), PatchError> {
    let kv = match shape(patch) {
        Shape::Object(kv) if depth < IN_PLACE_DEPTH && !repeats_a_key(kv) => kv,
        _ => {
            *slot = patch::apply_owned(slot.take(), patch)?;
            return Ok(());
        }
    };
    if !matches!(
        slot,
        Some(Node {
            value: Value::Object(_),
            ..
        })
    ) {
        *slot = Some(Node::new(Value::Object(Vec::new())));
    }
    let Some(node) = slot.as_mut() else {
        return Ok(());
    };
    if let Some(tag) = &patch.tag {
        node.tag = Some(tag.clone());
    }
    let Value::Object(entries) = &mut node.value else {
        return Ok(());
    };
    // Wide patches find keys through a map built once (the first of equal
    // keys, as the scan finds it); narrow ones scan.
    let mut index = (kv.len() > WIDE_MERGE).then(|| {
        let mut at = std::collections::HashMap::with_capacity(entries.len() + kv.len());
        for (i, (k, _)) in entries.iter().enumerate() {
            at.entry(k.clone()).or_insert(i);
        }
        at
    });
    // Entries whose result is absent, dropped in one pass at the end so
    // that positions (and the map) stay valid meanwhile: the patch repeats
    // no key, so nothing looks a removed entry up again.
    let mut removed = Vec::new();
    for (k, pv) in kv {
        let found = match &index {
            Some(at) => at.get(k).copied(),
            None => entries.iter().position(|(dk, _)| same_key(dk, k)),
        };
        let mut child = found.map(|i| std::mem::replace(&mut entries[i].1, Node::null()));
        merge_in_place(&mut child, pv, depth + 1)?;
        match (found, child) {
            (Some(i), Some(c)) => entries[i].1 = c,
            (Some(i), None) => removed.push(i),
            (None, Some(c)) => {
                if let Some(at) = &mut index {
                    at.insert(k.clone(), entries.len());
                }
                entries.push((k.clone(), c));
            }
            (None, None) => {}
        }
    }
    if !removed.is_empty() {
        removed.sort_unstable();
        let mut i = 0;
        entries.retain(|_| {
            let keep = removed.binary_search(&i).is_err();
            i += 1;
            keep
        });
    }
    Ok(())
}

/// Above this many keys in the patch, a merge finds keys through a hash map
/// instead of scanning: the scan costs `patch keys × document keys` (also
/// when the document starts empty and grows with the patch's new keys), the
/// map a pass over each.
const WIDE_MERGE: usize = 32;

/// `a == b`, cheaper on the long scans of large objects (a replayed record
/// looks its key up among every key of, say, 500 users): field names of
/// equal length are told apart by their last byte before a full compare,
/// which spares most calls to `memcmp` (11% of a read-heavy profile).
#[inline]
fn same_key(a: &Key, b: &Key) -> bool {
    match (a, b) {
        (Key::Field(x), Key::Field(y)) => {
            let (x, y) = (x.as_bytes(), y.as_bytes());
            x.len() == y.len() && x.last() == y.last() && x == y
        }
        (Key::Index(x), Key::Index(y)) => x == y,
        _ => false,
    }
}

fn repeats_a_key(kv: &[(Key, Node)]) -> bool {
    if kv.len() <= 16 {
        kv.iter()
            .enumerate()
            .any(|(i, (k, _))| kv[..i].iter().any(|(x, _)| x == k))
    } else {
        let mut seen = std::collections::HashSet::with_capacity(kv.len());
        kv.iter().any(|(k, _)| !seen.insert(k))
    }
}

/// Takes the node at `rel` below `node`, consuming it (no clone).
pub fn take_path(node: Node, rel: &KPath) -> Option<Node> {
    let mut cur = node;
    for seg in rel.segments() {
        cur = match (seg, cur.into_parts().1) {
            (Segment::Field(f), Value::Object(kv)) => kv
                .into_iter()
                .find(|(k, _)| matches!(k, Key::Field(name) if name == f))
                .map(|(_, v)| v)?,
            (Segment::Sparse(i), Value::Object(kv)) => kv
                .into_iter()
                .find(|(k, _)| *k == Key::Index(*i))
                .map(|(_, v)| v)?,
            (Segment::Index(i), Value::Array(items)) => {
                items.into_iter().nth(usize::try_from(*i).ok()?)?
            }
            _ => return None,
        };
    }
    Some(cur)
}

/// Executes `plan`: starting from `base` (the node at `plan.root` in the
/// document at `plan.base`; `None` for the empty document or where that node
/// is absent), applies the part at `plan.root` of every record in order, and
/// returns the node at `plan.path` (`None` where it does not exist).
///
/// `fetch(commit, location)` returns the merged root patch of a commit (an
/// owned `Node`, an `Arc<Node>`, ...).
pub fn execute<N, E, F>(
    plan: &ReadPlan,
    base: Option<Node>,
    mut fetch: F,
) -> Result<Option<Node>, ReadError<E>>
where
    N: Borrow<Node>,
    E: std::error::Error + 'static,
    F: FnMut(u64, Location) -> Result<N, E>,
{
    let Some(rel) = plan.path.strip_prefix(&plan.root) else {
        return Err(ReadError::BadPlan {
            root: plan.root.clone(),
            path: plan.path.clone(),
        });
    };
    let mut state = base;
    for &(commit, location) in &plan.records {
        let record =
            fetch(commit, location).map_err(|source| ReadError::Fetch { commit, source })?;
        let parts =
            sub_patches(record.borrow(), &plan.root).map_err(|at| ReadError::PlanMismatch {
                commit,
                at,
                root: plan.root.clone(),
            })?;
        for part in parts {
            apply_in_place(&mut state, part)
                .map_err(|source| ReadError::Patch { commit, source })?;
        }
    }
    Ok(state.and_then(|s| take_path(s, &rel)))
}

/// `read_state_at(path, commit)` over the whole retained history from the
/// empty document: plans with `index` and executes with `fetch`.
pub fn read_state_at<N, E, F>(
    index: &PathIndex,
    path: &KPath,
    commit: u64,
    fetch: F,
) -> Result<Option<Node>, ReadError<E>>
where
    N: Borrow<Node>,
    E: std::error::Error + 'static,
    F: FnMut(u64, Location) -> Result<N, E>,
{
    let plan = index.plan(path, 0, commit)?;
    execute(&plan, None, fetch)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::Tag;

    fn p(s: &str) -> KPath {
        KPath::parse(s).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn sub_patches_navigate_objects_and_in_place_arraydiffs() {
        let leaf = Node::int(1);
        let diff = Node {
            tag: Some(Tag::new("arraydiff")),
            value: Value::Object(vec![
                (Key::Index(1), Node::object([("x", leaf.clone())])),
                (
                    Key::Index(2),
                    Node::tagged(
                        "replace",
                        Value::Object(vec![
                            (Key::from("from"), Node::int(0)),
                            (Key::from("to"), Node::int(1)),
                        ]),
                    ),
                ),
            ]),
        };
        let patch = Node::object([
            ("a", Node::object([("b", leaf.clone())])),
            ("s", Node::object([(Key::Index(4), leaf.clone())])),
            ("l", diff),
        ]);
        assert_eq!(sub_patches(&patch, &p("a.b")), Ok(vec![&leaf]));
        assert_eq!(sub_patches(&patch, &p("a.c")), Ok(vec![]));
        assert_eq!(sub_patches(&patch, &p("s{4}")), Ok(vec![&leaf]));
        assert_eq!(sub_patches(&patch, &p("l[1].x")), Ok(vec![&leaf]));
        assert_eq!(sub_patches(&patch, &p("l[0]")), Ok(vec![]));
        assert_eq!(sub_patches(&patch, &p("l.f")), Ok(vec![]));
        // Below a scalar, under a replaced element, and `[i]` under an object.
        assert_eq!(sub_patches(&patch, &p("a.b.c")), Err(p("a.b")));
        assert_eq!(sub_patches(&patch, &p("l[2].x")), Err(p("l[2]")));
        assert_eq!(sub_patches(&patch, &p("a[0]")), Err(p("a")));
        assert_eq!(sub_patches(&patch, &KPath::root()), Ok(vec![&patch]));
        // A repeated key gives every part, in order.
        let twice = Node::object([("a", Node::int(1)), ("a", Node::int(2))]);
        assert_eq!(
            sub_patches(&twice, &p("a")),
            Ok(vec![&Node::int(1), &Node::int(2)])
        );
    }

    proptest::proptest! {
        #[test]
        fn same_key_is_key_equality(
            a in "[a-c]{0,3}", b in "[a-c]{0,3}", i in 0u32..3, j in 0u32..3, pick in 0u8..4
        ) {
            let (x, y) = match pick {
                0 => (Key::Field(a), Key::Field(b)),
                1 => (Key::Index(i), Key::Index(j)),
                2 => (Key::Field(a), Key::Index(j)),
                _ => (Key::Index(i), Key::Field(b)),
            };
            proptest::prop_assert_eq!(same_key(&x, &y), x == y);
        }
    }

    #[test]
    fn take_path_moves_the_node_out() {
        let doc = Node::object([(
            "a",
            Node::array([Node::int(0), Node::object([(Key::Index(3), Node::int(7))])]),
        )]);
        assert_eq!(take_path(doc.clone(), &p("a[1]{3}")), Some(Node::int(7)));
        assert_eq!(take_path(doc.clone(), &p("a[2]")), None);
        assert_eq!(take_path(doc.clone(), &p("a.b")), None);
        assert_eq!(take_path(doc.clone(), &KPath::root()), Some(doc));
    }
}
