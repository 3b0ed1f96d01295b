//! Property tests of the patch engine: arbitrary documents × arbitrary
//! patches and patterns (random op tags with random bodies and arguments)
//! never panic; `apply` and `apply_owned` agree; self-patches, weakened
//! patterns, trim and participant merges behave as `docs/TONY.md` says.
//!
//! `LOGD_PROPTEST_CASES` raises the case count for long runs.

use std::collections::BTreeMap;

use logd_core::patch::{apply, apply_owned, glob_match, matches, merge, trim};
use logd_core::{KPath, Key, Node, Segment, Tag, Value};
use proptest::prelude::*;

fn cases() -> u32 {
    std::env::var("LOGD_PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256)
}

const FIELDS: &[&str] = &[
    "a", "b", "c", "id", "k", "from", "to", "if", "then", "else", "x-foo", "",
];

const TAGS: &[&str] = &[
    // data
    "mytag",
    "j",
    "a",
    "foo(bar,baz)",
    // patch ops, with and without (sometimes wrong) arguments
    "delete",
    "delete(j)",
    "insert",
    "insert(j)",
    "insert(a,b)",
    "replace",
    "replace(j)",
    "nullify",
    "pass",
    "arraydiff",
    "strdiff",
    "strdiff(true)",
    "strdiff(x)",
    "key(id)",
    "key(a)",
    "key",
    "all",
    "all.if",
    "all.delete",
    "if",
    "field(a,b)",
    "field(a,b).field(b,c)",
    "field(a)",
    "rename",
    "addtag(j)",
    "rmtag(j)",
    "retag(j,a)",
    "retag(a,j)",
    "addtag(j).all",
    "pipe",
    "embed",
    "eval",
    "let",
    "dive",
    "json-patch",
    "quote",
    "unquote",
    // match ops
    "and",
    "or",
    "not",
    "not.glob",
    "glob",
    "irtype",
    "has-path",
    "key(k)",
    "subtree",
    "subtree.field.glob",
    "field",
    "tag",
    "tag.glob",
    "all.has-path",
    // odd text
    "x((",
    "(",
    ".",
    "a..b",
    "delete.",
    "",
];

const STRINGS: &[&str] = &[
    "",
    "a",
    "b",
    "id",
    "a/b",
    "h*o",
    "[a-",
    "[!a]*",
    "a.b",
    "arr[0]",
    "a[",
    "x",
    "hello world",
    "é\nü\n",
    "\\",
    "*/*",
    "from",
    "j",
];

fn arb_string() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(STRINGS).prop_map(str::to_owned),
        "[a-c/*?\\\\\\[\\]!^.\n-]{0,6}",
    ]
}

fn arb_scalar() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        (-3i64..6).prop_map(Value::Int),
        prop_oneof![Just(0.0f64), Just(1.0), Just(-2.5), -1e6f64..1e6].prop_map(Value::Float),
        arb_string().prop_map(Value::String),
    ]
}

fn arb_key() -> impl Strategy<Value = Key> {
    prop::sample::select(FIELDS).prop_map(Key::from)
}

/// Any node: random tags from `TAGS` (or none), scalars, arrays, field
/// objects and sparse arrays.
fn arb_node(tagged: bool) -> impl Strategy<Value = Node> {
    let tag = move || -> BoxedStrategy<Option<Tag>> {
        if tagged {
            prop::option::weighted(0.4, prop::sample::select(TAGS).prop_map(Tag::new)).boxed()
        } else {
            Just(None).boxed()
        }
    };
    let leaf = (tag(), arb_scalar()).prop_map(|(tag, value)| Node { tag, value });
    leaf.prop_recursive(4, 40, 4, move |inner| {
        prop_oneof![
            (tag(), prop::collection::vec(inner.clone(), 0..4)).prop_map(|(tag, items)| Node {
                tag,
                value: Value::Array(items)
            }),
            (
                tag(),
                prop::collection::vec((arb_key(), inner.clone()), 0..4)
            )
                .prop_map(|(tag, kv)| Node {
                    tag,
                    value: Value::Object(kv)
                }),
            (tag(), prop::collection::vec((0u32..6, inner), 0..4)).prop_map(|(tag, kv)| Node {
                tag,
                value: Value::Object(kv.into_iter().map(|(k, v)| (Key::Index(k), v)).collect()),
            }),
        ]
    })
}

/// Tag-free documents whose object keys are unique (as parsed text gives).
fn arb_plain() -> impl Strategy<Value = Node> {
    arb_node(false).prop_map(dedup_keys)
}

fn dedup_keys(mut n: Node) -> Node {
    match &mut n.value {
        Value::Object(kv) => {
            let mut seen = std::collections::HashSet::new();
            let old = std::mem::take(kv);
            for (k, v) in old {
                if seen.insert(k.clone()) {
                    kv.push((k, dedup_keys(v)));
                }
            }
        }
        Value::Array(items) => {
            let old = std::mem::take(items);
            items.extend(old.into_iter().map(dedup_keys));
        }
        _ => {}
    }
    n
}

/// A pattern that `d` matches: keys dropped, subtrees replaced by `null`,
/// driven by `bits`.
fn weaken(d: &Node, bits: &mut impl Iterator<Item = u8>) -> Node {
    let b = bits.next().unwrap_or(0);
    if b.is_multiple_of(8) {
        return Node::null();
    }
    match &d.value {
        Value::Object(kv) => {
            let mut kept = Vec::new();
            for (k, v) in kv {
                if bits.next().unwrap_or(0).is_multiple_of(2) {
                    kept.push((k.clone(), weaken(v, bits)));
                }
            }
            Node::new(Value::Object(kept))
        }
        Value::Array(items) => Node::array(items.iter().map(|v| weaken(v, bits))),
        _ => Node::new(d.value.clone()),
    }
}

fn arb_segment() -> impl Strategy<Value = Segment> {
    prop_oneof![
        prop::sample::select(&FIELDS[..4]).prop_map(|f| Segment::Field(f.to_owned())),
        (0u32..3).prop_map(Segment::Index),
        (0u32..3).prop_map(Segment::Sparse),
    ]
}

fn arb_path() -> impl Strategy<Value = KPath> {
    prop::collection::vec(arb_segment(), 0..4).prop_map(KPath::from_segments)
}

/// One step of an edit script over document units (characters, lines or
/// array elements).
#[derive(Debug, Clone)]
enum Edit {
    Keep,
    /// Delete this many units (arrays: always one).
    Del(usize),
    /// Insert these units.
    Ins(Vec<String>),
    /// Replace this many units with these units.
    Rep(usize, Vec<String>),
}

fn arb_edits(unit: &'static str) -> impl Strategy<Value = Vec<Edit>> {
    let units = move || prop::collection::vec(unit, 1..3);
    prop::collection::vec(
        prop_oneof![
            3 => Just(Edit::Keep),
            1 => (1usize..3).prop_map(Edit::Del),
            1 => units().prop_map(Edit::Ins),
            1 => (1usize..3, units()).prop_map(|(n, u)| Edit::Rep(n, u)),
        ],
        0..12,
    )
}

/// Runs an edit script the way `docs/TONY.md` walks slots; returns the diff
/// entries and the expected output units. `multi` allows multi-unit
/// deletes/replaces (strings); arrays take one element per entry.
fn script(doc: &[String], edits: &[Edit], multi: bool) -> (Vec<(u32, Node)>, Vec<String>) {
    let (mut s, mut d) = (0usize, 0usize);
    let mut entries = Vec::new();
    let mut out: Vec<String> = Vec::new();
    let tagged = |t: &str, v: Node| v.with_tag(Some(Tag::new(t)));
    let text = |units: &[String]| Node::string(units.concat());
    for e in edits {
        let slot = u32::try_from(s).unwrap_or(u32::MAX);
        match e {
            Edit::Keep if d < doc.len() => {
                out.push(doc[d].clone());
                s += 1;
                d += 1;
            }
            Edit::Del(n) | Edit::Rep(n, _) if d < doc.len() => {
                let n = if multi { (*n).min(doc.len() - d) } else { 1 };
                let gone = &doc[d..d + n];
                match e {
                    Edit::Rep(_, to) => {
                        let (from, to_node) = if multi {
                            (text(gone), text(to))
                        } else {
                            (Node::string(gone[0].clone()), Node::string(to[0].clone()))
                        };
                        entries.push((
                            slot,
                            tagged("replace", Node::object([("from", from), ("to", to_node)])),
                        ));
                        if multi {
                            out.extend(to.iter().cloned());
                            s += to.len();
                        } else {
                            out.push(to[0].clone());
                            s += 1;
                        }
                    }
                    _ => {
                        let v = if multi {
                            text(gone)
                        } else {
                            Node::string(gone[0].clone())
                        };
                        entries.push((slot, tagged("delete", v)));
                        s += 1;
                    }
                }
                d += n;
            }
            Edit::Ins(units) => {
                if multi {
                    entries.push((slot, tagged("insert", text(units))));
                    out.extend(units.iter().cloned());
                    s += units.len();
                } else {
                    entries.push((slot, tagged("insert", Node::string(units[0].clone()))));
                    out.push(units[0].clone());
                    s += 1;
                }
            }
            _ => {}
        }
    }
    out.extend(doc[d..].iter().cloned());
    (entries, out)
}

fn diff_patch(op: &str, entries: Vec<(u32, Node)>) -> Node {
    Node {
        tag: Some(Tag::new(op)),
        value: Value::Object(
            entries
                .into_iter()
                .map(|(k, v)| (Key::Index(k), v))
                .collect(),
        ),
    }
}

#[derive(Debug, Clone)]
enum Mount {
    Leaf(Node),
    Sub(BTreeMap<String, Node>),
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn apply_never_panics_and_owned_agrees(doc in prop::option::of(arb_node(true)), patch in arb_node(true)) {
        let a = apply(doc.as_ref(), &patch);
        let b = apply_owned(doc, &patch);
        prop_assert_eq!(a, b);
    }

    #[test]
    fn match_and_trim_never_panic(doc in prop::option::of(arb_node(true)), pattern in arb_node(true)) {
        let m = matches(doc.as_ref(), &pattern);
        if let Some(d) = &doc {
            let t = trim(&pattern, d);
            // Trimming never invents nodes: a plain pattern's trim of a
            // matching document still matches.
            if m == Ok(true) && pattern.tag.is_none() {
                let _ = matches(Some(&t), &pattern);
            }
        }
    }

    #[test]
    fn plain_self_patch_is_identity(d in arb_plain()) {
        prop_assert_eq!(apply(Some(&d), &d), Ok(Some(d.clone())));
        prop_assert_eq!(apply(None, &d), Ok(Some(d.clone())));
        prop_assert_eq!(matches(Some(&d), &d), Ok(true));
        prop_assert_eq!(trim(&d, &d), d);
    }

    #[test]
    fn weakened_patterns_match_and_trim_keeps_a_match(d in arb_plain(), bits in prop::collection::vec(any::<u8>(), 0..64)) {
        let pattern = weaken(&d, &mut bits.into_iter());
        prop_assert_eq!(matches(Some(&d), &pattern), Ok(true));
        let t = trim(&pattern, &d);
        prop_assert_eq!(matches(Some(&t), &pattern), Ok(true));
        // Trim is idempotent.
        prop_assert_eq!(trim(&pattern, &t), t);
    }

    #[test]
    fn plain_object_patch_sets_every_patch_key(doc in arb_plain(), patch in arb_plain()) {
        let out = apply(Some(&doc), &patch);
        let Ok(Some(out)) = out else {
            return Err(TestCaseError::fail(format!("plain patch failed: {out:?}")));
        };
        // A plain patch always matches its own result where it is a subset:
        // objects keep doc keys, patch keys get the patch's (merged) value.
        if let (Value::Object(pkv), Value::Object(okv)) = (&patch.value, &out.value) {
            for (k, _) in pkv {
                prop_assert!(okv.iter().any(|(ok, _)| ok == k));
            }
            if let Value::Object(dkv) = &doc.value {
                for (k, _) in dkv {
                    prop_assert!(okv.iter().any(|(ok, _)| ok == k));
                }
            }
        }
    }

    #[test]
    fn merge_of_disjoint_fields_equals_applying_each(
        doc in prop::option::of(arb_node(true)),
        mounts in prop::collection::btree_map(
            prop::sample::select(&FIELDS[..6]).prop_map(str::to_owned),
            prop_oneof![
                arb_node(true).prop_map(Mount::Leaf),
                prop::collection::btree_map(
                    prop::sample::select(&FIELDS[..6]).prop_map(str::to_owned),
                    arb_node(true),
                    1..3,
                ).prop_map(Mount::Sub),
            ],
            1..4,
        ),
    ) {
        let mut parts = Vec::new();
        for (k1, m) in mounts {
            match m {
                Mount::Leaf(n) => parts.push((KPath::from_segments(vec![Segment::Field(k1)]), n)),
                Mount::Sub(sub) => {
                    for (k2, n) in sub {
                        parts.push((
                            KPath::from_segments(vec![Segment::Field(k1.clone()), Segment::Field(k2)]),
                            n,
                        ));
                    }
                }
            }
        }
        let merged = merge(&parts);
        prop_assert!(merged.is_ok(), "{:?}", merged);
        let Ok(merged) = merged else { unreachable!() };
        let at_once = apply(doc.as_ref(), &merged);
        let mut acc = Ok(doc);
        parts.sort_by(|a, b| a.0.cmp(&b.0));
        for part in &parts {
            acc = match acc {
                Ok(d) => {
                    let single = merge(std::slice::from_ref(part));
                    prop_assert!(single.is_ok());
                    let Ok(single) = single else { unreachable!() };
                    apply_owned(d, &single)
                }
                Err(e) => Err(e),
            };
        }
        prop_assert_eq!(at_once, acc);
    }

    #[test]
    fn merge_of_random_paths_never_panics(
        parts in prop::collection::vec((arb_path(), arb_node(true)), 0..5),
        doc in prop::option::of(arb_node(true)),
    ) {
        if let Ok(patch) = merge(&parts) {
            let a = apply(doc.as_ref(), &patch);
            prop_assert_eq!(a, apply_owned(doc, &patch));
        } else {
            // An error means two paths nest or one parent mixes accessors.
            let mut paths: Vec<&KPath> = parts.iter().map(|p| &p.0).collect();
            paths.sort();
            let nested = paths.windows(2).any(|w| w[0].is_prefix_of(w[1]));
            let mixed = paths.iter().any(|a| paths.iter().any(|b| {
                a.parent() == b.parent()
                    && a.last().map(std::mem::discriminant) != b.last().map(std::mem::discriminant)
            })) || paths.iter().any(|a| paths.iter().any(|b| {
                // Children of a common ancestor with different accessors.
                let n = a.segments().iter().zip(b.segments()).take_while(|(x, y)| x == y).count();
                matches!((a.segments().get(n), b.segments().get(n)), (Some(x), Some(y))
                    if std::mem::discriminant(x) != std::mem::discriminant(y))
            }));
            prop_assert!(nested || mixed, "unexpected merge error for {:?}", paths);
        }
    }

    #[test]
    fn strdiff_chars_follow_the_slot_walk(doc in prop::collection::vec("[a-cé]", 0..10), edits in arb_edits("[x-zü]")) {
        let (entries, want) = script(&doc, &edits, true);
        let patch = diff_patch("strdiff", entries);
        prop_assert_eq!(apply(Some(&Node::string(doc.concat())), &patch), Ok(Some(Node::string(want.concat()))));
    }

    #[test]
    fn strdiff_lines_follow_the_slot_walk(doc in prop::collection::vec("[a-c]{0,2}", 1..8), edits in arb_edits("[x-z]{0,2}")) {
        // A line is the text between newlines, without its `\n`, and every
        // op string is one line: the walk is the array walk over the lines.
        let (entries, want) = script(&doc, &edits, false);
        let patch = diff_patch("strdiff(true)", entries);
        prop_assert_eq!(apply(Some(&Node::string(doc.join("\n"))), &patch), Ok(Some(Node::string(want.join("\n")))));
    }

    #[test]
    fn arraydiff_follows_the_slot_walk(doc in prop::collection::vec("[a-c]", 0..10), edits in arb_edits("[x-z]")) {
        let (entries, want) = script(&doc, &edits, false);
        let patch = diff_patch("arraydiff", entries);
        let arr = |v: &[String]| Node::array(v.iter().map(|s| Node::string(s.clone())));
        prop_assert_eq!(apply(Some(&arr(&doc)), &patch), Ok(Some(arr(&want))));
    }

    #[test]
    fn glob_never_panics_and_literals_match_themselves(pat in "[a-c/*?\\\\\\[\\]!^-]{0,12}", text in "[a-c/-]{0,12}") {
        let _ = glob_match(&pat, &text);
        prop_assert_eq!(glob_match("*", &text), !text.contains('/'));
        let literal: String = text.chars().filter(|c| c.is_ascii_alphabetic() || *c == '/').collect();
        prop_assert!(glob_match(&literal, &literal));
    }
}
