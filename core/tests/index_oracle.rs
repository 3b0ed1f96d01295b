//! The read oracle: for random histories of merged root patches, a planned
//! read of any path at any commit (from the empty document, and from a base
//! document at an earlier commit, as a snapshot would give) equals extracting
//! that path from the fold of `patch::apply` over every commit.
//!
//! Patches are generated against the current document (so most of them
//! apply): objects, arrays, sparse arrays, `!delete`, `!key(id)` lists,
//! `!arraydiff` in place and inserting/deleting, `!replace`, scalars at every
//! depth, object patches over arrays (rule 3), data tags. A patch that fails
//! on the current document is skipped, as a transaction would reject it.
//!
//! `LOGD_ORACLE_CASES` raises the number of cases (default 48).

use std::convert::Infallible;

use logd_core::index::{PathIndex, touched_paths};
use logd_core::kpath::{KPath, Segment};
use logd_core::node::{Key, Node, Tag, Value};
use logd_core::patch;
use logd_core::read::{apply_in_place, execute, read_state_at};
use logd_core::wal::Location;
use proptest::prelude::*;

/// A small deterministic generator (splitmix64) driven by a proptest seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

const FIELDS: [&str; 4] = ["a", "b", "c", "id"];

fn field(rng: &mut Rng) -> String {
    FIELDS[rng.below(3) as usize].to_owned()
}

fn scalar(rng: &mut Rng) -> Node {
    match rng.below(6) {
        0 => Node::null(),
        1 => Node::new(Value::Bool(rng.chance(50))),
        2 => Node::new(Value::Float(rng.below(3) as f64 + 0.5)),
        3 => Node::string(["x", "y", "z"][rng.below(3) as usize]),
        _ => Node::int(rng.below(5) as i64),
    }
}

/// Fresh data (no op tags).
fn value(rng: &mut Rng, depth: u32) -> Node {
    if depth == 0 {
        return scalar(rng);
    }
    let mut n = match rng.below(7) {
        0 | 1 => scalar(rng),
        2 => Node::array((0..rng.below(4)).map(|_| value(rng, depth - 1))),
        3 => Node::array((0..rng.below(4)).map(|i| keyed_item(rng, i as i64, depth - 1))),
        4 => Node::new(Value::Object(
            (0..1 + rng.below(3))
                .map(|i| (Key::Index(i as u32 * 2), value(rng, depth - 1)))
                .collect(),
        )),
        _ => {
            let mut kv: Vec<(Key, Node)> = Vec::new();
            for _ in 0..rng.below(4) {
                let k = Key::Field(field(rng));
                if !kv.iter().any(|(x, _)| *x == k) {
                    kv.push((k, value(rng, depth - 1)));
                }
            }
            Node::new(Value::Object(kv))
        }
    };
    if rng.chance(8) {
        n.tag = Some(Tag::new("mine"));
    }
    n
}

fn keyed_item(rng: &mut Rng, id: i64, depth: u32) -> Node {
    let mut kv = vec![(Key::from("id"), Node::int(id))];
    if rng.chance(70) {
        kv.push((Key::Field(field(rng)), value(rng, depth.saturating_sub(1))));
    }
    Node::new(Value::Object(kv))
}

fn tagged(tag: &str, value: Value) -> Node {
    Node::tagged(tag, value)
}

fn replace(from: Node, to: Node) -> Node {
    tagged(
        "replace",
        Value::Object(vec![(Key::from("from"), from), (Key::from("to"), to)]),
    )
}

/// A patch for the node `doc` (absent: `None`), mostly one that applies.
fn patch_for(rng: &mut Rng, doc: Option<&Node>, depth: u32) -> Node {
    // Rewrites near the root are rarer, so that many reads plan a deep root.
    let kind_roll = if depth >= 3 {
        rng.below(100) * 3
    } else {
        rng.below(100)
    };
    // Ops that fit any document.
    if kind_roll < 6 {
        return tagged("delete", Value::Null);
    }
    if kind_roll < 14 || depth == 0 {
        return value(rng, depth.min(2));
    }
    if kind_roll < 18
        && let Some(d) = doc
    {
        return replace(d.clone(), value(rng, 1));
    }
    match doc.map(|d| &d.value) {
        Some(Value::Array(items)) => {
            let roll = rng.below(100);
            if roll < 35 && !items.is_empty() {
                // In place: patch or replace some existing elements.
                let mut kv = Vec::new();
                for (i, item) in items.iter().enumerate() {
                    if rng.chance(50) {
                        let entry = if rng.chance(20) {
                            replace(item.clone(), value(rng, 1))
                        } else {
                            patch_for_no_delete(rng, item, depth - 1)
                        };
                        kv.push((Key::Index(i as u32), entry));
                    }
                }
                tagged("arraydiff", Value::Object(kv))
            } else if roll < 55 {
                // Inserting / deleting.
                let mut kv = Vec::new();
                let mut slot = 0u32;
                for item in items {
                    match rng.below(4) {
                        0 => {
                            let tag = match &item.tag {
                                Some(t) => format!("delete({})", t.as_str()),
                                None => "delete".to_owned(),
                            };
                            kv.push((Key::Index(slot), tagged(&tag, item.value.clone())));
                        }
                        1 => {
                            kv.push((
                                Key::Index(slot),
                                tagged("insert", value(rng, 1).into_parts().1),
                            ));
                            slot += 1;
                            kv.push((Key::Index(slot), patch_for_no_delete(rng, item, depth - 1)));
                        }
                        _ => {}
                    }
                    slot += 1;
                }
                if rng.chance(40) {
                    kv.push((
                        Key::Index(slot),
                        tagged("insert", value(rng, 1).into_parts().1),
                    ));
                }
                tagged("arraydiff", Value::Object(kv))
            } else if roll < 65 {
                keyed_patch(rng, doc, depth)
            } else if roll < 80 {
                // Rule 3: an object patch over an array.
                object_patch(rng, None, depth)
            } else if roll < 88 {
                sparse_patch(rng, None, depth)
            } else {
                Node::array((0..rng.below(3)).map(|_| value(rng, depth - 1)))
            }
        }
        Some(Value::Object(kv)) if !kv.is_empty() && matches!(kv[0].0, Key::Index(_)) => {
            if rng.chance(80) {
                sparse_patch(rng, doc, depth)
            } else {
                object_patch(rng, doc, depth)
            }
        }
        _ => match rng.below(30) {
            0..=2 if doc.is_none() => keyed_patch(rng, doc, depth),
            3..=5 => sparse_patch(rng, doc, depth),
            // Wrong on purpose sometimes: arraydiff on a non-array.
            6 => tagged(
                "arraydiff",
                Value::Object(vec![(Key::Index(0), value(rng, 1))]),
            ),
            _ => object_patch(rng, doc, depth),
        },
    }
}

/// A patch that keeps the node present (for in-place arraydiff entries).
fn patch_for_no_delete(rng: &mut Rng, doc: &Node, depth: u32) -> Node {
    loop {
        let p = patch_for(rng, Some(doc), depth);
        let top_op = p
            .tag
            .as_ref()
            .map(|t| t.first_name().to_owned())
            .unwrap_or_default();
        if !matches!(top_op.as_str(), "delete" | "replace" | "key" | "arraydiff") {
            return p;
        }
    }
}

fn object_patch(rng: &mut Rng, doc: Option<&Node>, depth: u32) -> Node {
    let mut kv: Vec<(Key, Node)> = Vec::new();
    for _ in 0..1 + rng.below(3) {
        let k = Key::Field(field(rng));
        if kv.iter().any(|(x, _)| *x == k) {
            continue;
        }
        let child = doc.and_then(|d| d.get(&k));
        kv.push((k, patch_for(rng, child, depth - 1)));
    }
    let mut n = Node::new(Value::Object(kv));
    if rng.chance(5) {
        n.tag = Some(Tag::new("mine"));
    }
    n
}

fn sparse_patch(rng: &mut Rng, doc: Option<&Node>, depth: u32) -> Node {
    let mut kv: Vec<(Key, Node)> = Vec::new();
    for _ in 0..1 + rng.below(3) {
        let k = Key::Index(rng.below(5) as u32);
        if kv.iter().any(|(x, _)| *x == k) {
            continue;
        }
        let child = doc.and_then(|d| d.get(&k));
        kv.push((k, patch_for(rng, child, depth - 1)));
    }
    Node::new(Value::Object(kv))
}

fn keyed_patch(rng: &mut Rng, doc: Option<&Node>, depth: u32) -> Node {
    let known: Vec<i64> = match doc.map(|d| &d.value) {
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(|it| match it.field("id").map(|n| &n.value) {
                Some(Value::Int(i)) => Some(*i),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    };
    let mut items = Vec::new();
    for _ in 0..1 + rng.below(3) {
        let id = if !known.is_empty() && rng.chance(60) {
            known[rng.below(known.len() as u64) as usize]
        } else {
            rng.below(6) as i64
        };
        if rng.chance(25) {
            items.push(tagged(
                "delete",
                Value::Object(vec![(Key::from("id"), Node::int(id))]),
            ));
        } else {
            items.push(keyed_item(rng, id, depth.saturating_sub(1)));
        }
    }
    tagged("key(id)", Value::Array(items))
}

fn root_patch(rng: &mut Rng, doc: Option<&Node>) -> Node {
    match rng.below(40) {
        0 => value(rng, 3),
        1 => tagged("delete", Value::Null),
        _ => object_patch(rng, doc, 4),
    }
}

/// Every path in `node`, its own first.
fn all_paths(node: &Node, at: &mut KPath, out: &mut Vec<KPath>) {
    out.push(at.clone());
    match &node.value {
        Value::Array(items) => {
            for (i, it) in items.iter().enumerate() {
                at.push(Segment::Index(i as u32));
                all_paths(it, at, out);
                at.pop();
            }
        }
        Value::Object(kv) => {
            for (k, v) in kv {
                at.push(match k {
                    Key::Field(f) => Segment::Field(f.clone()),
                    Key::Index(i) => Segment::Sparse(*i),
                });
                all_paths(v, at, out);
                at.pop();
            }
        }
        _ => {}
    }
}

fn loc(c: u64) -> Location {
    Location {
        segment: 1,
        offset: c,
        len: 1,
    }
}

struct History {
    /// `records[c - 1]`: the root patch of commit `c`.
    records: Vec<Node>,
    /// `docs[c]`: the document after commit `c` (`docs[0]` = empty).
    docs: Vec<Option<Node>>,
    /// Every path of every document, plus a few that never exist.
    paths: Vec<KPath>,
    rejected: usize,
}

fn history(seed: u64, len: usize) -> History {
    let mut rng = Rng(seed);
    let mut docs: Vec<Option<Node>> = vec![None];
    let mut records = Vec::new();
    let mut rejected = 0;
    let mut attempts = 0;
    while records.len() < len && attempts < len * 4 {
        attempts += 1;
        let cur = docs.last().cloned().flatten();
        let p = root_patch(&mut rng, cur.as_ref());
        match patch::apply(cur.as_ref(), &p) {
            Ok(next) => {
                records.push(p);
                docs.push(next);
            }
            Err(_) => rejected += 1,
        }
    }
    let mut paths = Vec::new();
    for d in docs.iter().flatten() {
        all_paths(d, &mut KPath::root(), &mut paths);
    }
    for extra in [
        "zz", "a.zz", "a[7]", "a{9}", "[0]", "{0}", "a[0].b", "a{0}.b",
    ] {
        paths.push(KPath::parse(extra).unwrap());
    }
    paths.sort();
    paths.dedup();
    History {
        records,
        docs,
        paths,
        rejected,
    }
}

fn index_of(h: &History) -> PathIndex {
    let mut idx = PathIndex::new();
    for (i, r) in h.records.iter().enumerate() {
        let c = i as u64 + 1;
        idx.insert_patch(c, r, loc(c)).unwrap();
    }
    idx
}

fn cases() -> u32 {
    std::env::var("LOGD_ORACLE_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(48)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases()))]

    #[test]
    fn planned_reads_equal_the_root_fold(seed in any::<u64>(), len in 1usize..24) {
        let h = history(seed, len);
        let idx = index_of(&h);
        let fetch = |c: u64, l: Location| -> Result<&Node, Infallible> {
            assert_eq!(l, loc(c));
            Ok(&h.records[c as usize - 1])
        };
        for c in 0..=h.records.len() as u64 {
            let doc = h.docs[c as usize].as_ref();
            let root = read_state_at(&idx, &KPath::root(), c, fetch).unwrap();
            prop_assert_eq!(root.as_ref(), doc, "root at {}", c);
            for p in &h.paths {
                let got = read_state_at(&idx, p, c, fetch).unwrap();
                let want = doc.and_then(|d| d.get_path(p));
                prop_assert_eq!(got.as_ref(), want, "path {} at commit {}", p, c);
            }
        }
    }

    #[test]
    fn reads_from_a_base_document_equal_the_root_fold(
        seed in any::<u64>(),
        len in 1usize..24,
        base_pick in any::<u64>(),
    ) {
        let h = history(seed, len);
        let mut idx = index_of(&h);
        let n = h.records.len() as u64;
        let base = base_pick % (n + 1);
        // As after a snapshot at `base` and compaction.
        idx.forget_before(base + 1);
        let fetch = |c: u64, _l: Location| -> Result<&Node, Infallible> {
            assert!(c > base);
            Ok(&h.records[c as usize - 1])
        };
        let base_doc = h.docs[base as usize].as_ref();
        for c in base..=n {
            let doc = h.docs[c as usize].as_ref();
            for p in &h.paths {
                let plan = idx.plan(p, base, c).unwrap();
                let base_node = base_doc.and_then(|d| d.get_path(&plan.root)).cloned();
                let got = execute(&plan, base_node, fetch).unwrap();
                let want = doc.and_then(|d| d.get_path(p));
                prop_assert_eq!(got.as_ref(), want, "path {} at {} from base {}", p, c, base);
            }
        }
    }
}

/// `apply_in_place` on `cur` agrees with `patch::apply`: the same document,
/// or both fail. The new document when both succeed.
fn in_place_agrees(cur: Option<&Node>, p: &Node) -> Result<Option<Option<Node>>, TestCaseError> {
    let want = patch::apply(cur, p);
    let mut slot = cur.cloned();
    let got = apply_in_place(&mut slot, p);
    match want {
        Ok(next) => {
            prop_assert!(got.is_ok(), "in place failed: {:?}", got);
            prop_assert_eq!(&slot, &next);
            Ok(Some(next))
        }
        Err(_) => {
            prop_assert!(got.is_err(), "in place accepted a failing patch");
            Ok(None)
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases()))]

    /// The fold's in-place merge is `patch::apply`, errors included, also for
    /// patches that repeat a key.
    #[test]
    fn apply_in_place_equals_apply(seed in any::<u64>(), len in 1usize..16) {
        let mut rng = Rng(seed ^ 0x5EED);
        let mut cur: Option<Node> = None;
        for _ in 0..len {
            let mut p = root_patch(&mut rng, cur.as_ref());
            if rng.chance(25) {
                // Repeat a key: `{k: p1, k: p2}` at the top.
                let second = root_patch(&mut rng, cur.as_ref());
                if let (Value::Object(a), Value::Object(b)) = (&mut p.value, &second.value)
                    && let (Some((k, _)), Some((_, v))) = (a.first().cloned(), b.first())
                {
                    a.push((k, v.clone()));
                }
            }
            if let Some(next) = in_place_agrees(cur.as_ref(), &p)? {
                cur = next;
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases()))]

    /// Wide patches (more than 32 keys) take the in-place merge's hash-map
    /// path: still `patch::apply`, with keys updated, deleted (`!delete`, and a nested patch that empties),
    /// added in the patch's order, sparse-array keys, and a document that
    /// repeats a key (the first one is patched, as the scan does).
    #[test]
    fn wide_in_place_merge_equals_apply(seed in any::<u64>(), n in 0usize..120, m in 33usize..120) {
        let mut rng = Rng(seed ^ 0x1DE);
        let key = |rng: &mut Rng| -> Key {
            if rng.chance(20) {
                Key::Index(rng.below(200) as u32)
            } else {
                Key::Field(format!("k{}", rng.below(200)))
            }
        };
        let mut doc = Vec::new();
        for i in 0..n {
            let v = if rng.chance(30) {
                Node::new(Value::Object(vec![(Key::Field("x".into()), Node::new(Value::Int(i as i64)))]))
            } else {
                Node::new(Value::Int(i as i64))
            };
            doc.push((key(&mut rng), v));
        }
        let mut kv: Vec<(Key, Node)> = Vec::new();
        while kv.len() < m {
            let k = key(&mut rng);
            if kv.iter().any(|(x, _)| *x == k) {
                continue;
            }
            let v = match rng.below(4) {
                0 => Node::null().with_tag(Some(Tag::new("delete"))),
                1 => Node::new(Value::Object(vec![(
                    Key::Field("x".into()),
                    Node::null().with_tag(Some(Tag::new("delete"))),
                )])),
                2 => Node::new(Value::Object(vec![(Key::Field("y".into()), Node::new(Value::Int(7)))])),
                _ => Node::new(Value::Int(rng.below(1000) as i64)),
            };
            kv.push((k, v));
        }
        let cur = Some(Node::new(Value::Object(doc)));
        let p = Node::new(Value::Object(kv));
        in_place_agrees(cur.as_ref(), &p)?;
    }
}

/// A 100,000-key object merged into a 100,000-key document: the quadratic
/// scan made this (a wide import read back) take minutes; the map, a fraction
/// of a second. Not timed: a regression shows as a test that takes minutes.
#[test]
fn wide_in_place_merge_is_linear() {
    let n = 100_000;
    let obj = |off: usize| {
        Node::new(Value::Object(
            (0..n)
                .map(|i| {
                    (
                        Key::Field(format!("u{}", i + off)),
                        Node::new(Value::Int(i as i64)),
                    )
                })
                .collect(),
        ))
    };
    let mut slot = Some(obj(0));
    apply_in_place(&mut slot, &obj(n / 2)).unwrap();
    let Some(Node {
        value: Value::Object(kv),
        ..
    }) = &slot
    else {
        panic!("not an object")
    };
    assert_eq!(kv.len(), n + n / 2);
    assert_eq!(kv[n].0, Key::Field(format!("u{n}")));
}

/// The generator produces what the oracle is meant to cover.
#[test]
fn generator_covers_the_interesting_shapes() {
    let mut seen = std::collections::BTreeSet::new();
    let mut rejected = 0;
    let mut total = 0;
    let mut deep_reads = 0;
    for seed in 0..200u64 {
        let h = history(seed, 20);
        rejected += h.rejected;
        total += h.records.len();
        let idx = index_of(&h);
        for r in &h.records {
            note_shapes(r, &mut seen);
        }
        let last = h.records.len() as u64;
        for p in &h.paths {
            if let Ok(plan) = idx.plan(p, 0, last)
                && !plan.root.is_root()
                && plan.root.len() >= 2
            {
                deep_reads += 1;
            }
        }
        for r in &h.records {
            for t in touched_paths(r) {
                if t.segments().iter().any(|s| matches!(s, Segment::Index(_))) {
                    seen.insert("end-through-dense-index".to_owned());
                }
            }
        }
    }
    for want in [
        "delete",
        "replace",
        "arraydiff",
        "insert",
        "key(id)",
        "mine",
        "sparse",
        "array",
        "end-through-dense-index",
    ] {
        assert!(
            seen.contains(want),
            "generator never produced {want}: {seen:?}"
        );
    }
    assert!(total > 3000, "too few commits: {total}");
    assert!(rejected > 0, "no patch was ever rejected");
    eprintln!("{total} commits, {rejected} rejected, {deep_reads} reads planned at depth >= 2");
    assert!(
        deep_reads > 1000,
        "too few reads below the root: {deep_reads}"
    );
}

fn note_shapes(n: &Node, seen: &mut std::collections::BTreeSet<String>) {
    if let Some(t) = &n.tag {
        seen.insert(t.first_name().to_owned());
        if t.as_str() == "key(id)" {
            seen.insert("key(id)".to_owned());
        }
    }
    match &n.value {
        Value::Array(items) => {
            seen.insert("array".to_owned());
            items.iter().for_each(|i| note_shapes(i, seen));
        }
        Value::Object(kv) => {
            if kv.iter().any(|(k, _)| matches!(k, Key::Index(_))) && n.tag.is_none() {
                seen.insert("sparse".to_owned());
            }
            kv.iter().for_each(|(_, v)| note_shapes(v, seen));
        }
        _ => {}
    }
}

#[test]
#[ignore]
fn debug_seed() {
    let seed: u64 = std::env::var("SEED").unwrap().parse().unwrap();
    let len: usize = std::env::var("LEN").unwrap().parse().unwrap();
    let h = history(seed, len);
    for (i, r) in h.records.iter().enumerate() {
        let ends: Vec<String> = touched_paths(r).iter().map(|p| p.to_string()).collect();
        eprintln!(
            "commit {}: {:?}\n   ends {:?}\n   doc {:?}",
            i + 1,
            r,
            ends,
            h.docs[i + 1]
        );
    }
}
