//! Between nodes and entries: flattening a document into its sorted entry
//! stream, checking a stream's invariants while it is written, and
//! assembling a node back from a run of entries. Assembly trusts nothing:
//! every structural rule of the module docs is re-checked and a violation is
//! [`SnapshotError::Corrupt`] at the offending entry.

use serde::{Serialize, Serializer};

use crate::kpath::{KPath, Segment};
use crate::node::{Key, Node, Tag, Value};

use super::{EntryBody, LEAF_MAX_DEPTH, SnapshotError};

/// A borrowed [`EntryBody`]; serializes to exactly the same bytes.
#[derive(Serialize)]
#[serde(rename = "EntryBody")]
pub(crate) enum BodyRef<'a> {
    Leaf(&'a Node),
    Array {
        tag: Option<&'a Tag>,
        len: u32,
    },
    Object {
        tag: Option<&'a Tag>,
        keys: KeysRef<'a>,
    },
}

/// The keys of an object body, borrowed from a node or from a body.
#[derive(Clone, Copy)]
pub(crate) enum KeysRef<'a> {
    Pairs(&'a [(Key, Node)]),
    Keys(&'a [Key]),
}

impl KeysRef<'_> {
    fn len(&self) -> usize {
        match self {
            KeysRef::Pairs(p) => p.len(),
            KeysRef::Keys(k) => k.len(),
        }
    }

    /// The child segments in path order; `Err(seg)` names a duplicate.
    fn sorted_segments(&self) -> Result<Vec<Segment>, Segment> {
        let mut segs: Vec<Segment> = match self {
            KeysRef::Pairs(p) => p.iter().map(|(k, _)| key_segment(k)).collect(),
            KeysRef::Keys(k) => k.iter().map(key_segment).collect(),
        };
        segs.sort_unstable();
        if let Some(w) = segs.windows(2).find(|w| w[0] == w[1]) {
            return Err(w[0].clone());
        }
        Ok(segs)
    }
}

impl Serialize for KeysRef<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            KeysRef::Pairs(p) => s.collect_seq(p.iter().map(|(k, _)| k)),
            KeysRef::Keys(k) => s.collect_seq(k.iter()),
        }
    }
}

impl EntryBody {
    pub(crate) fn as_ref(&self) -> BodyRef<'_> {
        match self {
            EntryBody::Leaf(n) => BodyRef::Leaf(n),
            EntryBody::Array { tag, len } => BodyRef::Array {
                tag: tag.as_ref(),
                len: *len,
            },
            EntryBody::Object { tag, keys } => BodyRef::Object {
                tag: tag.as_ref(),
                keys: KeysRef::Keys(keys),
            },
        }
    }
}

/// The path segment that reaches the child under an object key.
pub(crate) fn key_segment(k: &Key) -> Segment {
    match k {
        Key::Field(f) => Segment::Field(f.clone()),
        Key::Index(i) => Segment::Sparse(*i),
    }
}

/// Whether `node` fits in `budget` estimated bytes and `depth` levels.
fn fits(node: &Node, budget: &mut usize, depth: usize) -> bool {
    let own = 8
        + node.tag.as_ref().map_or(0, |t| t.as_str().len())
        + match &node.value {
            Value::String(s) => s.len(),
            _ => 0,
        };
    if own > *budget {
        return false;
    }
    *budget -= own;
    match &node.value {
        Value::Array(items) => depth > 0 && items.iter().all(|c| fits(c, budget, depth - 1)),
        Value::Object(kv) => {
            depth > 0
                && kv.iter().all(|(k, c)| {
                    let klen = 8 + match k {
                        Key::Field(f) => f.len(),
                        Key::Index(_) => 0,
                    };
                    if klen > *budget {
                        return false;
                    }
                    *budget -= klen;
                    fits(c, budget, depth - 1)
                })
        }
        _ => true,
    }
}

/// Whether a node's nesting is at most `depth` container levels.
pub(crate) fn depth_within(node: &Node, depth: usize) -> bool {
    match &node.value {
        Value::Array(items) => depth > 0 && items.iter().all(|c| depth_within(c, depth - 1)),
        Value::Object(kv) => depth > 0 && kv.iter().all(|(_, c)| depth_within(c, depth - 1)),
        _ => true,
    }
}

/// Emits the entries of `node` (at `path`) in path order. `path` is
/// restored before returning.
pub(crate) fn flatten<F>(
    node: &Node,
    path: &mut KPath,
    leaf_max: usize,
    sink: &mut F,
) -> Result<(), SnapshotError>
where
    F: FnMut(&KPath, BodyRef<'_>) -> Result<(), SnapshotError>,
{
    let mut budget = leaf_max;
    if fits(node, &mut budget, LEAF_MAX_DEPTH) {
        return sink(path, BodyRef::Leaf(node));
    }
    match &node.value {
        Value::Array(items) => {
            let len = u32::try_from(items.len()).map_err(|_| SnapshotError::TooLarge {
                path: path.to_string(),
                reason: format!("array of {} elements", items.len()),
            })?;
            sink(
                path,
                BodyRef::Array {
                    tag: node.tag.as_ref(),
                    len,
                },
            )?;
            for (i, item) in items.iter().enumerate() {
                path.push(Segment::Index(i as u32));
                let r = flatten(item, path, leaf_max, sink);
                path.pop();
                r?;
            }
            Ok(())
        }
        Value::Object(kv) => {
            let mut order: Vec<(Segment, usize)> = kv
                .iter()
                .enumerate()
                .map(|(i, (k, _))| (key_segment(k), i))
                .collect();
            order.sort_unstable_by(|a, b| a.0.cmp(&b.0));
            if order.windows(2).any(|w| w[0].0 == w[1].0) {
                // Duplicate keys cannot be split into child entries: store whole.
                if !depth_within(node, LEAF_MAX_DEPTH) {
                    return Err(SnapshotError::TooLarge {
                        path: path.to_string(),
                        reason: format!(
                            "an object with duplicate keys nested deeper than {LEAF_MAX_DEPTH} levels"
                        ),
                    });
                }
                return sink(path, BodyRef::Leaf(node));
            }
            sink(
                path,
                BodyRef::Object {
                    tag: node.tag.as_ref(),
                    keys: KeysRef::Pairs(kv),
                },
            )?;
            for (seg, i) in order {
                path.push(seg);
                let r = flatten(&kv[i].1, path, leaf_max, sink);
                path.pop();
                r?;
            }
            Ok(())
        }
        // Scalars always fit unless they are huge strings; a scalar is a leaf anyway.
        _ => sink(path, BodyRef::Leaf(node)),
    }
}

/// What the writer still expects below one open container.
enum Expect {
    Array { len: u32, next: u32 },
    Object { sorted: Vec<Segment>, next: usize },
}

struct VFrame {
    path: Vec<Segment>,
    expect: Expect,
}

/// Checks the entry-stream invariants (module docs) as entries are written.
/// Memory: the open containers on the current path and their key lists.
#[derive(Default)]
pub(crate) struct Validator {
    frames: Vec<VFrame>,
    /// The last entry's path (meaningful once `started`); reused buffer.
    prev: Vec<Segment>,
    started: bool,
    /// A run copied from a verified snapshot: entries below this path are
    /// only checked for order (their structure was checked when written).
    opaque: Option<KPath>,
}

impl Validator {
    /// Pops the top frame, checking that it got all its children.
    fn close_top(&mut self) -> Result<(), SnapshotError> {
        let Some(top) = self.frames.pop() else {
            return Ok(());
        };
        let missing = match &top.expect {
            Expect::Array { len, next } => (next < len).then_some(Segment::Index(*next)),
            Expect::Object { sorted, next } => sorted.get(*next).cloned(),
        };
        if let Some(missing) = missing {
            let mut p = KPath::from_segments(top.path);
            p.push(missing);
            return Err(SnapshotError::invalid(
                &p,
                "a container's child was never written",
            ));
        }
        Ok(())
    }

    /// Closes the open containers that `upto` is not inside.
    fn close(&mut self, upto: &[Segment]) -> Result<(), SnapshotError> {
        while let Some(top) = self.frames.last() {
            if upto.starts_with(&top.path) {
                break;
            }
            self.close_top()?;
        }
        Ok(())
    }

    /// Checks the order of an entry inside the current opaque run; `false`
    /// when `path` is not inside one (which ends it).
    fn push_in_opaque(&mut self, path: &KPath) -> Result<bool, SnapshotError> {
        let Some(o) = &self.opaque else {
            return Ok(false);
        };
        if !o.is_ancestor_of(path) {
            self.opaque = None;
            return Ok(false);
        }
        if self.started && path.segments() <= self.prev.as_slice() {
            return Err(SnapshotError::invalid(path, "entries out of order"));
        }
        self.set_prev(path);
        Ok(true)
    }

    /// Checks that `path` comes next: in order, and the next child of the
    /// innermost open container (or the root, first).
    fn check_position(&mut self, path: &KPath) -> Result<(), SnapshotError> {
        if !self.started && !path.is_root() {
            return Err(SnapshotError::invalid(
                path,
                "the first entry must be the root",
            ));
        }
        if self.started && path.segments() <= self.prev.as_slice() {
            return Err(SnapshotError::invalid(
                path,
                format!(
                    "entries out of order: comes after {}",
                    KPath::from_segments(self.prev.clone())
                ),
            ));
        }
        if self.started {
            self.close(path.segments())?;
            let Some(top) = self.frames.last_mut() else {
                return Err(SnapshotError::invalid(
                    path,
                    "entry lies outside every open container (below a leaf, or after the root is complete)",
                ));
            };
            let segs = path.segments();
            let ok = segs.len() == top.path.len() + 1
                && match (&mut top.expect, segs.last()) {
                    (Expect::Array { len, next }, Some(Segment::Index(i))) => {
                        let ok = *i == *next && *next < *len;
                        *next += u32::from(ok);
                        ok
                    }
                    (Expect::Object { sorted, next }, Some(seg)) => {
                        let ok = sorted.get(*next) == Some(seg);
                        *next += usize::from(ok);
                        ok
                    }
                    _ => false,
                };
            if !ok {
                return Err(SnapshotError::invalid(
                    path,
                    "not the next child of its parent container",
                ));
            }
        }
        self.set_prev(path);
        Ok(())
    }

    fn set_prev(&mut self, path: &KPath) {
        path.segments().clone_into(&mut self.prev);
        self.started = true;
    }

    /// The first entry of a run copied from a verified snapshot: checked
    /// like any entry, but the entries below it that follow are only checked
    /// for order (their structure was checked when they were first written).
    pub(crate) fn push_opaque(&mut self, path: &KPath) -> Result<(), SnapshotError> {
        if self.push_in_opaque(path)? {
            return Err(SnapshotError::invalid(path, "a copied run inside another"));
        }
        self.check_position(path)?;
        self.opaque = Some(path.clone());
        Ok(())
    }

    /// Accounts for a whole block copied from a verified snapshot: entries
    /// `first ..= last`, of which `heads` start copied runs (siblings, each
    /// the next child of the innermost open container); every other entry
    /// lies below the run before it.
    pub(crate) fn push_raw(
        &mut self,
        first: &KPath,
        heads: &[KPath],
        last: &KPath,
    ) -> Result<(), SnapshotError> {
        if heads.first() != Some(first) && !self.push_in_opaque(first)? {
            return Err(SnapshotError::invalid(
                first,
                "a copied block does not start inside a copied run",
            ));
        }
        for h in heads {
            self.push_opaque(h)?;
        }
        if self.prev.as_slice() != last.segments() && !self.push_in_opaque(last)? {
            return Err(SnapshotError::invalid(
                last,
                "a copied block does not end inside a copied run",
            ));
        }
        Ok(())
    }

    pub(crate) fn push(&mut self, path: &KPath, body: &BodyRef<'_>) -> Result<(), SnapshotError> {
        if self.push_in_opaque(path)? {
            return Ok(());
        }
        self.check_position(path)?;
        let expect = match body {
            BodyRef::Leaf(_) => None,
            BodyRef::Array { len, .. } => Some(Expect::Array { len: *len, next: 0 }),
            BodyRef::Object { keys, .. } => {
                let sorted = keys.sorted_segments().map_err(|dup| {
                    SnapshotError::invalid(path, format!("duplicate key {dup:?}"))
                })?;
                debug_assert_eq!(sorted.len(), keys.len());
                Some(Expect::Object { sorted, next: 0 })
            }
        };
        if let Some(expect) = expect {
            self.frames.push(VFrame {
                path: path.segments().to_vec(),
                expect,
            });
        }
        Ok(())
    }

    /// Checks that every open container got all its children.
    pub(crate) fn finish(&mut self) -> Result<(), SnapshotError> {
        while !self.frames.is_empty() {
            self.close_top()?;
        }
        Ok(())
    }
}

enum Slots {
    Array {
        len: u32,
        items: Vec<Node>,
    },
    Object {
        keys: Vec<Key>,
        order: Vec<(Segment, usize)>,
        next: usize,
        slots: Vec<Option<Node>>,
    },
}

struct Frame {
    path: Vec<Segment>,
    tag: Option<Tag>,
    slots: Slots,
}

/// Rebuilds the node at a base path from its run of entries (the first
/// entry must be the base itself).
pub(crate) struct Assembler {
    frames: Vec<Frame>,
    done: Option<Node>,
    started: bool,
}

impl Assembler {
    pub(crate) fn new() -> Assembler {
        Assembler {
            frames: Vec::new(),
            done: None,
            started: false,
        }
    }

    /// Finishes the top frame and hands its node to its parent (or to `done`).
    fn pop(&mut self, at: u64) -> Result<(), SnapshotError> {
        let Some(frame) = self.frames.pop() else {
            return Ok(());
        };
        let value = match frame.slots {
            Slots::Array { len, items } => {
                if items.len() as u64 != u64::from(len) {
                    return Err(SnapshotError::corrupt(
                        at,
                        format!(
                            "array {} has {} of its {len} elements",
                            KPath::from_segments(frame.path),
                            items.len()
                        ),
                    ));
                }
                Value::Array(items)
            }
            Slots::Object {
                keys,
                order,
                next,
                slots,
            } => {
                if next != order.len() {
                    return Err(SnapshotError::corrupt(
                        at,
                        format!(
                            "object {} is missing its child {:?}",
                            KPath::from_segments(frame.path),
                            order[next].0
                        ),
                    ));
                }
                let mut kv = Vec::with_capacity(keys.len());
                for (k, v) in keys.into_iter().zip(slots) {
                    let Some(v) = v else {
                        return Err(SnapshotError::corrupt(at, "object child slot left empty"));
                    };
                    kv.push((k, v));
                }
                Value::Object(kv)
            }
        };
        let node = Node {
            tag: frame.tag,
            value,
        };
        self.add_child(node, at)
    }

    /// Adds the next entry of the run. `path` is absolute; the caller stops
    /// feeding at the first entry not under the base.
    pub(crate) fn push(
        &mut self,
        path: &[Segment],
        body: EntryBody,
        at: u64,
    ) -> Result<(), SnapshotError> {
        if self.started {
            while let Some(top) = self.frames.last() {
                if path.starts_with(&top.path) {
                    break;
                }
                self.pop(at)?;
            }
            let Some(top) = self.frames.last_mut() else {
                return Err(SnapshotError::corrupt(
                    at,
                    "entry lies below a leaf or outside its parent container",
                ));
            };
            if path.len() != top.path.len() + 1 {
                return Err(SnapshotError::corrupt(
                    at,
                    "entry skips a level of its path",
                ));
            }
            let seg = &path[path.len() - 1];
            let ok = match &mut top.slots {
                Slots::Array { len, items } => {
                    matches!(seg, Segment::Index(i) if *i as usize == items.len() && *i < *len)
                }
                Slots::Object { order, next, .. } => order.get(*next).map(|o| &o.0) == Some(seg),
            };
            if !ok {
                return Err(SnapshotError::corrupt(
                    at,
                    format!("entry {seg:?} is not the next child of its container"),
                ));
            }
        } else {
            self.started = true;
        }
        match body {
            EntryBody::Leaf(node) => self.add_child(node, at),
            EntryBody::Array { tag, len } => {
                self.frames.push(Frame {
                    path: path.to_vec(),
                    tag,
                    slots: Slots::Array {
                        len,
                        items: Vec::with_capacity((len as usize).min(1024)),
                    },
                });
                Ok(())
            }
            EntryBody::Object { tag, keys } => {
                let mut order: Vec<(Segment, usize)> = keys
                    .iter()
                    .enumerate()
                    .map(|(i, k)| (key_segment(k), i))
                    .collect();
                order.sort_unstable_by(|a, b| a.0.cmp(&b.0));
                if order.windows(2).any(|w| w[0].0 == w[1].0) {
                    return Err(SnapshotError::corrupt(
                        at,
                        "object entry with duplicate keys",
                    ));
                }
                let slots = vec![None; keys.len()];
                self.frames.push(Frame {
                    path: path.to_vec(),
                    tag,
                    slots: Slots::Object {
                        keys,
                        order,
                        next: 0,
                        slots,
                    },
                });
                Ok(())
            }
        }
    }

    /// Stores a finished child node into the top frame (already checked to
    /// be its next child), or makes it the result.
    fn add_child(&mut self, node: Node, at: u64) -> Result<(), SnapshotError> {
        match self.frames.last_mut() {
            None => {
                if self.done.is_some() {
                    return Err(SnapshotError::corrupt(at, "entry after a complete node"));
                }
                self.done = Some(node);
            }
            Some(top) => match &mut top.slots {
                Slots::Array { items, .. } => items.push(node),
                Slots::Object {
                    order, next, slots, ..
                } => {
                    let idx = order.get(*next).map(|o| o.1);
                    match idx.and_then(|i| slots.get_mut(i)) {
                        Some(slot) => *slot = Some(node),
                        None => {
                            return Err(SnapshotError::corrupt(at, "object child out of range"));
                        }
                    }
                    *next += 1;
                }
            },
        }
        Ok(())
    }

    /// The assembled node; `end` is the offset used for errors about
    /// containers left incomplete.
    pub(crate) fn finish(mut self, end: u64) -> Result<Option<Node>, SnapshotError> {
        while !self.frames.is_empty() {
            self.pop(end)?;
        }
        Ok(self.done)
    }
}
