//! Streaming rewrite: the next snapshot from the previous one plus the root
//! patches of the commits after it.
//!
//! Only what the patches touch is materialized. For every patch the ends of
//! its walk ([`crate::index::touched_paths`], plus every empty `!arraydiff`
//! on the way, which inspects its array without ending the walk) are read
//! whole from the previous snapshot. Every container on the way from the
//! root down to an end is read as a *skeleton*: its own entry (tag, kind, key
//! order), with each child that leads to no end replaced by a placeholder
//! node. The patches are applied in order to that skeleton with
//! [`crate::patch::apply_owned`]; a patch never looks inside a child it does
//! not name, so every placeholder comes out where it went in, unless its
//! container was replaced, in which case it is gone. The result is written
//! in path order, and each surviving placeholder is replaced by the previous
//! snapshot's run of entries for that path, copied through: a block that
//! lies wholly inside the run (and is at least half the target block size)
//! is copied verbatim, frame and CRC, without decoding its entries; the
//! entries at the run's ragged ends are copied one by one.
//!
//! From an empty previous snapshot (the first snapshot of a store) there is
//! nothing to copy: the patches are folded and the result written whole.
//!
//! Memory: the skeleton (the direct children of each rewritten container,
//! as placeholders) plus the touched subtrees, plus one block of the previous
//! snapshot and one of the new one. A patch that ends at the root (replaces
//! the whole document, or is an op at the root) materializes everything.
//!
//! The new file holds the same document as `write_node(fold of patches)`,
//! but not necessarily the same bytes: a rewritten container is always
//! written as a container entry, even where `write_node` would store it whole.

use std::io::Write;

use crate::index::touched_paths;
use crate::kpath::{KPath, Segment};
use crate::node::{Key, Node, Tag, Value};

use super::batch::apply_all;

use super::reader::{Entries, Lookup, ReadAt, SnapshotReader};
use super::tree::{BodyRef, KeysRef, flatten, key_segment};
use super::{Entry, EntryBody, SnapshotError, SnapshotMeta, SnapshotWriter, WriteOptions};

/// The tag of placeholder nodes. Reserved: a document holding a node with
/// this tag where a placeholder does not belong makes [`rewrite`] fail
/// rather than guess.
const PLACEHOLDER_TAG: &str = "\u{1}logd-snapshot-placeholder";

/// Writes to `out` the snapshot at `commit` of `prev`'s document after the
/// root patches `patches`, applied in order. Streams: see the module docs
/// for what is held in memory.
pub fn rewrite<'p, S: ReadAt, W: Write>(
    prev: &SnapshotReader<S>,
    patches: impl IntoIterator<Item = &'p Node>,
    out: W,
    commit: u64,
) -> Result<SnapshotMeta, SnapshotError> {
    rewrite_with(prev, patches, out, commit, WriteOptions::default())
}

/// [`rewrite`] with explicit writer tuning.
pub fn rewrite_with<'p, S: ReadAt, W: Write>(
    prev: &SnapshotReader<S>,
    patches: impl IntoIterator<Item = &'p Node>,
    out: W,
    commit: u64,
    opts: WriteOptions,
) -> Result<SnapshotMeta, SnapshotError> {
    let patches: Vec<&Node> = patches.into_iter().collect();
    if prev.entry_count() == 0 {
        // From the absent document every container is rewritten anyway:
        // fold and write, with no ends to find and nothing to copy.
        let doc = apply_all(None, &patches)
            .map_err(|(index, source)| SnapshotError::Patch { index, source })?;
        let mut w = SnapshotWriter::with_options(out, commit, opts)?;
        if let Some(doc) = &doc {
            w.push_node(&KPath::root(), doc)?;
        }
        return w.finish();
    }
    let ends = ends_of(&patches);
    let mut w = SnapshotWriter::with_options(out, commit, opts)?;
    let min_raw = opts.block_target_bytes / 2;
    if patches.is_empty() {
        // Nothing changes: copy the whole run of the root.
        if prev.entry_count() > 0 {
            let mut copier = Copier {
                entries: prev.entries(),
                peeked: None,
            };
            copier.copy_range(&KPath::root(), &KPath::root(), &mut w, min_raw)?;
        }
        return w.finish();
    }
    let mut ends = ends;
    if ends.is_empty() {
        // Cannot happen for a non-empty patch list (every walk ends somewhere
        // or passes an empty `!arraydiff`), but never emit a placeholder as data.
        ends.push(KPath::root());
    }
    let mut rw = Rewrite {
        prev,
        ends,
        placeholders: Vec::new(),
        min_raw,
    };
    let doc = rw.skeleton(&KPath::root())?;
    let doc = apply_all(doc, &patches)
        .map_err(|(index, source)| SnapshotError::Patch { index, source })?;
    if let Some(doc) = doc {
        let mut copier = Copier {
            entries: prev.entries(),
            peeked: None,
        };
        let mut path = KPath::root();
        rw.emit(&doc, &mut path, &mut w, &mut copier, opts.leaf_max_bytes)?;
    }
    w.finish()
}

/// Sorted ends of all patches, without those below another end. Empty
/// patches list gives an empty list; a patch that ends at the root gives `[root]`.
fn ends_of(patches: &[&Node]) -> Vec<KPath> {
    // Many patches end at the same few paths: deduplicate before sorting.
    let mut seen: std::collections::HashSet<KPath> = std::collections::HashSet::new();
    let mut more = Vec::new();
    for p in patches {
        seen.extend(touched_paths(p));
        let mut path = KPath::root();
        empty_arraydiffs(p, &mut path, &mut more);
        seen.extend(more.drain(..));
    }
    let mut ends: Vec<KPath> = seen.into_iter().collect();
    ends.sort();
    let mut kept: Vec<KPath> = Vec::with_capacity(ends.len());
    for e in ends {
        if kept.last().is_some_and(|k| k.is_prefix_of(&e)) {
            continue;
        }
        kept.push(e);
    }
    kept
}

/// Adds the path of every empty `!arraydiff` reachable by going down object
/// values and `!arraydiff` entries (a superset of the walk of
/// `touched_paths`; extra ends only make the rewrite materialize more).
fn empty_arraydiffs(node: &Node, path: &mut KPath, out: &mut Vec<KPath>) {
    let is_diff = node
        .tag
        .as_ref()
        .is_some_and(|t| t.first_name() == "arraydiff");
    let Value::Object(kv) = &node.value else {
        return;
    };
    if is_diff && kv.is_empty() {
        out.push(path.clone());
        return;
    }
    for (k, child) in kv {
        path.push(match (k, is_diff) {
            (Key::Index(i), true) => Segment::Index(*i),
            (k, _) => key_segment(k),
        });
        empty_arraydiffs(child, path, out);
        path.pop();
    }
}

struct Rewrite<'r, S> {
    prev: &'r SnapshotReader<S>,
    /// Sorted, none below another.
    ends: Vec<KPath>,
    /// Path of each placeholder, by id.
    placeholders: Vec<KPath>,
    /// Untouched blocks of at least this many payload bytes are copied
    /// verbatim; smaller ones are re-encoded (so blocks never fragment).
    min_raw: usize,
}

/// Where a path stands relative to the ends.
enum Place {
    End,
    Above,
    Outside,
}

impl<S: ReadAt> Rewrite<'_, S> {
    fn place(&self, p: &KPath) -> Place {
        let i = self.ends.partition_point(|e| e < p);
        if let Some(e) = self.ends.get(i) {
            if e == p {
                return Place::End;
            }
            if p.is_prefix_of(e) {
                return Place::Above;
            }
        }
        // An end that is an ancestor of p sorts before p.
        if i > 0 && self.ends[i - 1].is_prefix_of(p) {
            return Place::End;
        }
        Place::Outside
    }

    fn placeholder(&mut self, p: KPath) -> Node {
        let id = self.placeholders.len() as i64;
        self.placeholders.push(p);
        Node::tagged(PLACEHOLDER_TAG, Value::Int(id))
    }

    /// The node at `p` with untouched children of containers above ends as placeholders.
    fn skeleton(&mut self, p: &KPath) -> Result<Option<Node>, SnapshotError> {
        if matches!(self.place(p), Place::End) {
            return self.prev.read_path(p);
        }
        Ok(match self.prev.lookup(p)? {
            Lookup::Absent => None,
            Lookup::InLeaf(n) | Lookup::Entry(EntryBody::Leaf(n)) => Some(n),
            Lookup::Entry(EntryBody::Array { tag, len }) => {
                // Each element has an entry: a length beyond the entry count is corrupt
                // (and must not make us build that many placeholders).
                if u64::from(len) >= self.prev.entry_count() {
                    return Err(SnapshotError::corrupt(
                        0,
                        format!("array {p} claims {len} elements, more than the file's entries"),
                    ));
                }
                let mut items = Vec::with_capacity(len as usize);
                for i in 0..len {
                    let c = p.child(Segment::Index(i));
                    items.push(self.child(c)?);
                }
                Some(Node {
                    tag,
                    value: Value::Array(items),
                })
            }
            Lookup::Entry(EntryBody::Object { tag, keys }) => {
                let mut kv = Vec::with_capacity(keys.len());
                for k in keys {
                    let c = p.child(key_segment(&k));
                    kv.push((k, self.child(c)?));
                }
                Some(Node {
                    tag,
                    value: Value::Object(kv),
                })
            }
        })
    }

    fn child(&mut self, c: KPath) -> Result<Node, SnapshotError> {
        if matches!(self.place(&c), Place::Outside) {
            return Ok(self.placeholder(c));
        }
        self.skeleton(&c)?.ok_or_else(|| {
            SnapshotError::corrupt(0, format!("container names child {c} but it has no entry"))
        })
    }

    /// The placeholder id of `node` when it is one.
    fn placeholder_id(&self, node: &Node, path: &KPath) -> Result<Option<usize>, SnapshotError> {
        if node.tag.as_ref().map(Tag::as_str) != Some(PLACEHOLDER_TAG) {
            return Ok(None);
        }
        let id = match node.value {
            Value::Int(id) => usize::try_from(id).ok(),
            _ => None,
        };
        match id {
            Some(id) if self.placeholders.get(id) == Some(path) => Ok(Some(id)),
            _ => Err(SnapshotError::invalid(
                path,
                "a node carries the reserved placeholder tag where no placeholder belongs",
            )),
        }
    }

    fn emit<W: Write>(
        &self,
        node: &Node,
        path: &mut KPath,
        w: &mut SnapshotWriter<W>,
        copier: &mut Copier<'_, S>,
        leaf_max: usize,
    ) -> Result<(), SnapshotError> {
        if self.placeholder_id(node, path)?.is_some() {
            return copier.copy_range(path, path, w, self.min_raw);
        }
        if !matches!(self.place(path), Place::Above) {
            // A touched or new subtree: no placeholders inside.
            return flatten(node, path, leaf_max, &mut |p, b| w.push_ref(p, b));
        }
        match &node.value {
            Value::Array(items) => {
                let len = u32::try_from(items.len()).map_err(|_| SnapshotError::TooLarge {
                    path: path.to_string(),
                    reason: format!("array of {} elements", items.len()),
                })?;
                w.push_ref(
                    path,
                    BodyRef::Array {
                        tag: node.tag.as_ref(),
                        len,
                    },
                )?;
                let children = items
                    .iter()
                    .enumerate()
                    .map(|(i, item)| (Segment::Index(i as u32), item));
                self.emit_children(children, path, w, copier, leaf_max)
            }
            Value::Object(kv) => {
                w.push_ref(
                    path,
                    BodyRef::Object {
                        tag: node.tag.as_ref(),
                        keys: KeysRef::Pairs(kv),
                    },
                )?;
                let mut order: Vec<(Segment, usize)> = kv
                    .iter()
                    .enumerate()
                    .map(|(i, (k, _))| (key_segment(k), i))
                    .collect();
                order.sort_unstable_by(|a, b| a.0.cmp(&b.0));
                let children = order.into_iter().map(|(seg, i)| (seg, &kv[i].1));
                self.emit_children(children, path, w, copier, leaf_max)
            }
            _ => flatten(node, path, leaf_max, &mut |p, b| w.push_ref(p, b)),
        }
    }

    /// Emits the children of a rewritten container in path order; runs of
    /// consecutive placeholders with no end between them are copied from the
    /// previous snapshot as one range.
    fn emit_children<'n, W: Write>(
        &self,
        children: impl Iterator<Item = (Segment, &'n Node)>,
        path: &KPath,
        w: &mut SnapshotWriter<W>,
        copier: &mut Copier<'_, S>,
        leaf_max: usize,
    ) -> Result<(), SnapshotError> {
        let mut group: Option<(KPath, KPath)> = None;
        for (seg, child) in children {
            let mut cp = path.child(seg);
            if self.placeholder_id(child, &cp)?.is_some() {
                match &mut group {
                    Some((_, last)) if !self.end_between(last, &cp) => *last = cp,
                    _ => {
                        if let Some((a, b)) = group.take() {
                            copier.copy_range(&a, &b, w, self.min_raw)?;
                        }
                        group = Some((cp.clone(), cp));
                    }
                }
                continue;
            }
            if let Some((a, b)) = group.take() {
                copier.copy_range(&a, &b, w, self.min_raw)?;
            }
            self.emit(child, &mut cp, w, copier, leaf_max)?;
        }
        if let Some((a, b)) = group.take() {
            copier.copy_range(&a, &b, w, self.min_raw)?;
        }
        Ok(())
    }

    /// Whether some end lies strictly between `a` and `b`.
    fn end_between(&self, a: &KPath, b: &KPath) -> bool {
        let i = self.ends.partition_point(|e| e <= a);
        self.ends.get(i).is_some_and(|e| e < b)
    }
}

/// A forward-only cursor over the previous snapshot's entries.
struct Copier<'r, S> {
    entries: Entries<'r, S>,
    peeked: Option<Entry>,
}

impl<S: ReadAt> Copier<'_, S> {
    /// Copies the previous snapshot's entries from `first` through the end
    /// of `last`'s subtree (`first <= last` are siblings, or both the root),
    /// skipping everything before `first`. Whole blocks inside the range are
    /// copied verbatim when at least `min_raw` bytes.
    fn copy_range<W: Write>(
        &mut self,
        first: &KPath,
        last: &KPath,
        w: &mut SnapshotWriter<W>,
        min_raw: usize,
    ) -> Result<(), SnapshotError> {
        let in_range = |x: &KPath| x >= first && (x < last || last.is_prefix_of(x));
        if self.peeked.as_ref().is_none_or(|e| e.path < *first) {
            self.peeked = None;
            self.entries.skip_to(first);
        }
        let head = loop {
            let e = match self.peeked.take() {
                Some(e) => e,
                None => match self.entries.next() {
                    Some(r) => r?,
                    None => break None,
                },
            };
            if e.path >= *first {
                break Some(e);
            }
        };
        let head = match head {
            Some(e) if e.path == *first => e,
            other => {
                self.peeked = other;
                return Err(SnapshotError::corrupt(
                    0,
                    format!("no entry for {first}, which its container names"),
                ));
            }
        };
        let depth = first.len();
        w.push_opaque(&head.path, head.body.as_ref())?;
        loop {
            if let Some(i) = self.entries.whole_block_in(in_range, min_raw) {
                let (frame, n, bfirst, heads, blast) = self.entries.take_raw_block(i, depth)?;
                w.push_raw_block(&frame, n, &bfirst, &heads, &blast)?;
                continue;
            }
            let e = match self.entries.next() {
                Some(r) => r?,
                None => break,
            };
            if !in_range(&e.path) {
                self.peeked = Some(e);
                break;
            }
            if e.path.len() == depth {
                w.push_opaque(&e.path, e.body.as_ref())?;
            } else {
                w.push_ref(&e.path, e.body.as_ref())?;
            }
        }
        Ok(())
    }
}
