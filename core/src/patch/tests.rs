//! Edge cases beyond the conformance vectors: error kinds and places, the
//! decisions listed in the module docs, and cost on large inputs.

use serde_json::json;

use super::*;

fn j(v: serde_json::Value) -> Node {
    Node::from(v)
}
fn s(x: &str) -> Node {
    Node::string(x)
}
fn i(x: i64) -> Node {
    Node::int(x)
}
fn t(tag: &str, n: Node) -> Node {
    n.with_tag(Some(Tag::new(tag)))
}
fn obj(pairs: Vec<(&str, Node)>) -> Node {
    Node::object(pairs)
}
fn sparse(pairs: Vec<(u32, Node)>) -> Node {
    Node::object(pairs.into_iter().map(|(k, v)| (Key::Index(k), v)))
}
fn p(x: &str) -> KPath {
    KPath::parse(x).unwrap_or_else(|e| panic!("{e}"))
}
fn ap(doc: Node, patch: Node) -> Result<Option<Node>, PatchError> {
    let a = apply(Some(&doc), &patch);
    assert_eq!(
        a,
        apply_owned(Some(doc), &patch),
        "apply and apply_owned differ"
    );
    a
}
fn ok(doc: Node, patch: Node) -> Node {
    match ap(doc, patch) {
        Ok(Some(n)) => n,
        other => panic!("expected a node, got {other:?}"),
    }
}
fn at(e: &PatchError) -> KPath {
    match e {
        PatchError::Refused { at, .. }
        | PatchError::TypeMismatch { at, .. }
        | PatchError::ReplaceMismatch { at, .. }
        | PatchError::BadArgument { at, .. }
        | PatchError::TagMismatch { at, .. }
        | PatchError::BadPath { at, .. }
        | PatchError::TooDeep { at, .. } => at.clone(),
        other => panic!("no place in {other:?}"),
    }
}
fn replace(from: Node, to: Node) -> Node {
    t("replace", obj(vec![("from", from), ("to", to)]))
}

#[test]
fn errors_name_the_place_in_the_document() {
    let doc = j(json!({"a": {"b": [1, 2]}}));
    let patch = obj(vec![(
        "a",
        obj(vec![(
            "b",
            t("arraydiff", sparse(vec![(1, replace(i(9), i(3)))])),
        )]),
    )]);
    let e = ap(doc, patch).unwrap_err();
    assert!(matches!(e, PatchError::ReplaceMismatch { .. }), "{e:?}");
    assert_eq!(at(&e), p("a.b[1]"));
    assert_eq!(
        e.to_string(),
        "at a.b[1]: !replace expected 9, found 2",
        "message"
    );
    let e = ap(j(json!({})), t("pipe", s("x"))).unwrap_err();
    assert_eq!(
        e.to_string(),
        "at the root: !pipe is refused: logd never runs programs or evaluates code"
    );
}

#[test]
fn every_refused_op_is_refused_even_when_chained() {
    for op in REFUSED_OPS {
        let e = ap(j(json!({"a": 1})), obj(vec![("a", t(op, s("x")))])).unwrap_err();
        assert_eq!(
            e,
            PatchError::Refused {
                op: (*op).to_owned(),
                at: p("a")
            }
        );
    }
    let e = ap(j(json!([1])), t("all.eval", s("x"))).unwrap_err();
    assert!(matches!(e, PatchError::Refused { ref op, .. } if op == "eval"));
    assert_eq!(at(&e), p("[0]"));
}

#[test]
fn untagged_containers_keep_the_doc_tag_data_tags_set_it() {
    let doc = t("keep", j(json!({"a": 1})));
    assert_eq!(
        ok(doc.clone(), j(json!({"b": 2}))),
        t("keep", j(json!({"a": 1, "b": 2})))
    );
    assert_eq!(
        ok(doc.clone(), t("new", j(json!({})))),
        t("new", j(json!({"a": 1})))
    );
    assert_eq!(ok(doc, i(3)), i(3));
    let arr = t("keep", j(json!([1, 2])));
    assert_eq!(ok(arr, j(json!([5]))), t("keep", j(json!([5]))));
}

#[test]
fn array_extras_are_applied_to_absent() {
    let doc = j(json!([1]));
    let patch = Node::array([i(1), t("delete", i(2)), t("insert(x)", i(3))]);
    assert_eq!(ok(doc, patch), Node::array([i(1), t("x", i(3))]));
    assert_eq!(
        ok(s("not an array"), Node::array([t("delete", i(1))])),
        j(json!([]))
    );
}

#[test]
fn duplicate_patch_keys_apply_in_order() {
    let patch = Node::object([("a", i(1)), ("a", t("delete", Node::null())), ("a", i(3))]);
    assert_eq!(
        ok(j(json!({"a": 0, "b": 0})), patch),
        j(json!({"a": 3, "b": 0}))
    );
}

#[test]
fn replace_compares_tags_and_needs_both_keys() {
    assert_eq!(ok(t("x", i(1)), replace(t("x", i(1)), i(2))), i(2));
    assert!(matches!(
        ap(i(1), replace(t("x", i(1)), i(2))),
        Err(PatchError::ReplaceMismatch { .. })
    ));
    assert!(matches!(
        apply(None, &replace(i(1), i(2))),
        Err(PatchError::ReplaceMismatch { ref found, .. }) if found == "absent"
    ));
    assert!(matches!(
        ap(i(1), t("replace", obj(vec![("from", i(1))]))),
        Err(PatchError::BadArgument { .. })
    ));
    assert!(matches!(
        ap(
            i(1),
            t("replace.x", obj(vec![("from", i(1)), ("to", i(2))]))
        ),
        Err(PatchError::BadArgument { .. })
    ));
    // !replace(t) puts the tag on the compared and the emitted value.
    let r = t("replace(q)", obj(vec![("from", i(1)), ("to", i(2))]));
    assert_eq!(ok(t("q", i(1)), r.clone()), t("q", i(2)));
    assert!(ap(i(1), r).is_err());
}

#[test]
fn arraydiff_walk() {
    let doc = j(json!(["a", "b", "c", "d"]));
    // slot 0 copy a; 1 delete b; 2 replace c->C; 3 insert X; 4 patch d -> D; rest none.
    let patch = t(
        "arraydiff",
        sparse(vec![
            (1, t("delete", s("b"))),
            (2, replace(s("c"), s("C"))),
            (3, t("insert", s("X"))),
            (4, s("D")),
        ]),
    );
    assert_eq!(ok(doc.clone(), patch), j(json!(["a", "C", "X", "D"])));
    // Tags on delete/replace entries.
    let tagged = Node::array([s("a"), t("k", s("b"))]);
    let del_t = t("arraydiff", sparse(vec![(1, t("delete(k)", s("b")))]));
    assert_eq!(ok(tagged.clone(), del_t), j(json!(["a"])));
    let del = t("arraydiff", sparse(vec![(1, t("delete", s("b")))]));
    let e = ap(tagged, del).unwrap_err();
    assert!(matches!(e, PatchError::ReplaceMismatch { ref op, .. } if op == "delete"));
    assert_eq!(at(&e), p("[1]"));
    // Empty body, and the doc's tag is kept.
    assert_eq!(
        ok(t("z", j(json!([1]))), t("arraydiff", j(json!({})))),
        t("z", j(json!([1])))
    );
    // Insert at the end; entries beyond the end are errors.
    assert_eq!(
        ok(
            doc.clone(),
            t("arraydiff", sparse(vec![(4, t("insert", s("e")))]))
        ),
        j(json!(["a", "b", "c", "d", "e"]))
    );
    for bad in [
        sparse(vec![(5, t("insert", s("e")))]),
        sparse(vec![(4, t("delete", s("e")))]),
        sparse(vec![(4, s("e"))]),
        sparse(vec![(u32::MAX, s("e"))]),
        j(json!({"x": 1})),
        j(json!([1])),
    ] {
        assert!(matches!(
            ap(doc.clone(), t("arraydiff", bad)),
            Err(PatchError::BadArgument { .. })
        ),);
    }
    assert!(matches!(
        ap(j(json!({})), t("arraydiff", j(json!({})))),
        Err(PatchError::TypeMismatch { ref found, .. }) if found == "object"
    ));
    // A patch entry whose result is absent drops the element.
    assert_eq!(
        ok(
            doc,
            t(
                "arraydiff",
                sparse(vec![(
                    0,
                    t(
                        "if",
                        obj(vec![
                            ("if", Node::null()),
                            ("then", t("delete", Node::null()))
                        ])
                    )
                )])
            )
        ),
        j(json!(["b", "c", "d"]))
    );
}

#[test]
fn strdiff_lines_and_errors() {
    // Issue 18: a line is its text without the `\n` (go-tony's unit), so
    // `!delete two` removes the line `two`; logd used to want "two\n".
    let doc = s("one\ntwo\nthree\n");
    let patch = t(
        "strdiff(true)",
        sparse(vec![
            (1, t("delete", s("two"))),
            (2, t("insert", s("2"))),
            (3, t("insert", s("2b"))),
        ]),
    );
    assert_eq!(ok(doc.clone(), patch), s("one\n2\n2b\nthree\n"));
    let rep = t(
        "strdiff(true)",
        sparse(vec![(0, replace(s("one"), s("1")))]),
    );
    assert_eq!(ok(doc.clone(), rep), s("1\ntwo\nthree\n"));
    let with_nl = t("strdiff(true)", sparse(vec![(1, t("delete", s("two\n")))]));
    assert!(apply(Some(&doc), &with_nl).is_err());
    // Characters are Unicode scalar values.
    let uni = t("strdiff", sparse(vec![(1, replace(s("é"), s("e")))]));
    assert_eq!(ok(s("héllo"), uni), s("hello"));
    for (bad, what) in [
        (
            t("strdiff", sparse(vec![(0, t("delete", s("x")))])),
            "mismatch",
        ),
        (
            t(
                "strdiff",
                sparse(vec![(0, t("insert", s("ab"))), (1, t("insert", s("c")))]),
            ),
            "overlap",
        ),
        (
            t("strdiff", sparse(vec![(99, t("insert", s("c")))])),
            "beyond",
        ),
        (
            t(
                "strdiff",
                sparse(vec![(0, t("delete", s("one\ntwo\nthree\n!")))]),
            ),
            "past end",
        ),
        (t("strdiff(maybe)", j(json!({}))), "arg"),
        (t("strdiff", sparse(vec![(0, s("x"))])), "plain entry"),
        (
            t("strdiff", sparse(vec![(0, t("insert", i(1)))])),
            "non-string",
        ),
    ] {
        assert!(ap(doc.clone(), bad).is_err(), "{what}");
    }
    assert!(matches!(
        ap(i(1), t("strdiff", j(json!({})))),
        Err(PatchError::TypeMismatch { .. })
    ));
}

#[test]
fn keyed_lists() {
    // Compound and float keys, first doc item wins, absent doc counts as [].
    let doc = j(json!([
        {"k": {"a": 1}, "v": 1},
        {"k": 2.5, "v": 2},
        {"k": 2.5, "v": 3},
        {"other": true}
    ]));
    let patch = t(
        "key(k)",
        j(
            json!([{"k": {"a": 1}, "v": 10}, {"k": 2.5, "v": 20}, {"k": "new", "v": 0}, {"k": "new", "w": 1}]),
        ),
    );
    assert_eq!(
        ok(doc, patch.clone()),
        j(json!([
            {"k": {"a": 1}, "v": 10},
            {"k": 2.5, "v": 20},
            {"k": 2.5, "v": 3},
            {"other": true},
            {"k": "new", "v": 0, "w": 1}
        ]))
    );
    assert_eq!(
        apply(None, &t("key(k)", j(json!([{"k": 1}])))),
        Ok(Some(j(json!([{"k": 1}]))))
    );
    // Delete then re-add appends.
    let re = t(
        "key(id)",
        Node::array([
            t("delete", j(json!({"id": 1}))),
            j(json!({"id": 1, "n": 2})),
        ]),
    );
    assert_eq!(
        ok(j(json!([{"id": 1}, {"id": 2}])), re),
        j(json!([{"id": 2}, {"id": 1, "n": 2}]))
    );
    assert!(matches!(
        ap(j(json!([1])), patch.clone()),
        Err(PatchError::TypeMismatch { .. })
    ));
    assert!(matches!(
        ap(j(json!({})), patch),
        Err(PatchError::TypeMismatch { .. })
    ));
    assert!(matches!(
        ap(j(json!([])), t("key(k)", j(json!([{"x": 1}])))),
        Err(PatchError::BadArgument { .. })
    ));
    assert!(matches!(
        ap(j(json!([])), t("key", j(json!([])))),
        Err(PatchError::BadArgument { .. })
    ));
    assert!(matches!(
        ap(j(json!([])), t("key(k)", j(json!({})))),
        Err(PatchError::BadArgument { .. })
    ));
}

#[test]
fn all_over_objects_scalars_and_absent() {
    assert_eq!(
        ok(j(json!({"a": 1, "b": 2})), t("all", i(0))),
        j(json!({"a": 0, "b": 0}))
    );
    assert_eq!(
        ok(j(json!({"a": 1, "b": 2})), t("all.delete", Node::null())),
        j(json!({}))
    );
    assert_eq!(ok(i(5), t("all", i(0))), i(0));
    assert_eq!(apply(None, &t("all", i(0))), Ok(None));
}

#[test]
fn if_branches() {
    let cond = |then: Option<Node>, els: Option<Node>| {
        let mut kv = vec![("if", j(json!({"a": 1})))];
        kv.extend(then.map(|n| ("then", n)));
        kv.extend(els.map(|n| ("else", n)));
        t("if", obj(kv))
    };
    assert_eq!(
        ok(j(json!({"a": 2})), cond(Some(i(1)), None)),
        j(json!({"a": 2}))
    );
    assert_eq!(ok(j(json!({"a": 2})), cond(None, Some(i(7)))), i(7));
    assert_eq!(ok(j(json!({"a": 1})), cond(Some(i(1)), None)), i(1));
    assert!(matches!(
        ap(i(1), t("if", j(json!({})))),
        Err(PatchError::BadArgument { .. })
    ));
    // A bad pattern is an error of the patch.
    assert!(matches!(
        ap(i(1), t("if", obj(vec![("if", t("has-path", s("a[")))]))),
        Err(PatchError::BadPath { .. })
    ));
}

#[test]
fn field_and_rename() {
    // !field keeps the position and overwrites an existing target.
    let doc = j(json!({"a": 1, "b": 2, "c": 3}));
    assert_eq!(
        ok(doc.clone(), t("field(c,a)", Node::null())),
        Node::object([("b", i(2)), ("a", i(3))])
    );
    assert_eq!(
        ok(doc.clone(), t("field(a,z)", Node::null())),
        Node::object([("z", i(1)), ("b", i(2)), ("c", i(3))])
    );
    assert_eq!(ok(doc.clone(), t("field(nope,z)", Node::null())), doc);
    // The child applies after the rename.
    assert_eq!(
        ok(doc.clone(), t("field(a,z)", j(json!({"z": 9})))),
        Node::object([("z", i(9)), ("b", i(2)), ("c", i(3))])
    );
    assert!(matches!(
        ap(i(1), t("field(a,b)", Node::null())),
        Err(PatchError::TypeMismatch { .. })
    ));
    assert!(matches!(
        ap(doc.clone(), t("field(a)", Node::null())),
        Err(PatchError::BadArgument { .. })
    ));
    // Sparse arrays: numeric arguments are int keys.
    assert_eq!(
        ok(sparse(vec![(1, s("x"))]), t("field(1,4)", Node::null())),
        sparse(vec![(4, s("x"))])
    );
    // !rename moves: the old key goes, an existing target is overwritten in place.
    assert_eq!(
        ok(
            doc.clone(),
            t(
                "rename",
                j(json!([{"from": "a", "to": "b"}, {"from": "x", "to": "y"}]))
            )
        ),
        Node::object([("b", i(1)), ("c", i(3))])
    );
    assert_eq!(
        ok(
            sparse(vec![(1, s("x"))]),
            t("rename", j(json!([{"from": 1, "to": 2}])))
        ),
        sparse(vec![(2, s("x"))])
    );
    assert!(matches!(
        ap(doc.clone(), t("rename", j(json!([{"from": "a"}])))),
        Err(PatchError::BadArgument { .. })
    ));
    assert!(matches!(
        ap(doc, t("rename", j(json!({})))),
        Err(PatchError::BadArgument { .. })
    ));
}

#[test]
fn tag_ops() {
    assert_eq!(
        ok(i(1), t("addtag(x).rmtag(x)", Node::null())),
        t("x", i(1))
    );
    assert_eq!(ok(t("y", i(1)), t("rmtag(x)", Node::null())), t("y", i(1)));
    // Tag ops act on the child's result.
    assert_eq!(ok(i(1), t("addtag(x)", i(2))), t("x", i(2)));
    let e = ap(t("c", i(1)), t("retag(a,b)", Node::null())).unwrap_err();
    assert_eq!(
        e,
        PatchError::TagMismatch {
            expected: "a".into(),
            found: "!c".into(),
            at: KPath::root()
        }
    );
    assert!(
        matches!(ap(i(1), t("retag(a,b)", Node::null())), Err(PatchError::TagMismatch { ref found, .. }) if found == "no tag")
    );
    assert!(matches!(
        apply(None, &t("addtag(x)", Node::null())),
        Err(PatchError::TypeMismatch { .. })
    ));
    assert!(matches!(
        ap(i(1), t("addtag", Node::null())),
        Err(PatchError::BadArgument { .. })
    ));
}

#[test]
fn insert_and_pass() {
    assert_eq!(apply(None, &t("insert(u)", i(1))), Ok(Some(t("u", i(1)))));
    assert_eq!(apply(None, &t("pass", i(1))), Ok(None));
    assert_eq!(ok(i(4), t("pass", i(1))), i(4));
    assert!(matches!(
        ap(i(1), t("insert(a,b)", i(1))),
        Err(PatchError::BadArgument { .. })
    ));
}

#[test]
fn large_object_merge_is_not_quadratic() {
    let n = 20_000;
    let doc = Node::object((0..n).map(|k| (format!("k{k}"), i(k))));
    let patch = Node::object((0..n).rev().map(|k| (format!("k{}", k * 2), i(-k))));
    let start = std::time::Instant::now();
    let out = ok(doc, patch);
    let elapsed = start.elapsed();
    let Value::Object(kv) = &out.value else {
        panic!("not an object")
    };
    assert_eq!(kv.len(), 30_000);
    assert_eq!(out.field("k0"), Some(&i(0)));
    assert_eq!(out.field("k2"), Some(&i(-1)));
    assert_eq!(out.field("k39998"), Some(&i(-19_999)));
    // Quadratic would be 4e8 key comparisons; linear is milliseconds.
    assert!(elapsed < std::time::Duration::from_secs(3), "{elapsed:?}");
}

#[test]
fn large_keyed_list_is_not_quadratic() {
    let n = 20_000;
    let doc = Node::array((0..n).map(|k| Node::object([("id", i(k)), ("v", i(0))])));
    let patch = t(
        "key(id)",
        Node::array(
            (0..n)
                .rev()
                .map(|k| Node::object([("id", i(k * 2)), ("v", i(1))])),
        ),
    );
    let start = std::time::Instant::now();
    let out = ok(doc, patch);
    let Value::Array(items) = &out.value else {
        panic!("not an array")
    };
    assert_eq!(items.len(), 30_000);
    assert!(start.elapsed() < std::time::Duration::from_secs(3));
}

#[test]
fn deep_patches_and_documents() {
    let depth = MAX_DEPTH - 1;
    let mut patch = i(1);
    let mut doc = i(0);
    for _ in 0..depth {
        patch = Node::object([("a", patch)]);
        doc = Node::object([("a", doc)]);
    }
    let out = ok(doc.clone(), patch.clone());
    assert!(matches(Some(&out), &patch).unwrap_or(false));
    assert_eq!(trim(&patch, &out), out);
    let deep_path = KPath::from_segments(vec![Segment::Field("a".into()); depth]);
    assert_eq!(out.get_path(&deep_path), Some(&i(1)));
    assert_eq!(matches(Some(&doc), &t("subtree", i(0))), Ok(true));
}

#[test]
fn match_ops_edge_cases() {
    let doc = j(json!({"a": [1, 2], "s": "x/y"}));
    assert_eq!(matches(Some(&doc), &t("field", s(""))), Ok(false));
    assert_eq!(matches(Some(&doc), &t("field", Node::null())), Ok(true));
    assert_eq!(
        matches(Some(&doc), &obj(vec![("s", t("field", s("s")))])),
        Ok(true)
    );
    // Issue 18: `!tag p` matches `p` against `{name, args}` (go-tony), not
    // against the tag text.
    assert_eq!(
        matches(Some(&doc), &t("tag", obj(vec![("name", s(""))]))),
        Ok(true)
    );
    assert_eq!(matches(Some(&doc), &t("tag", s(""))), Ok(false));
    let keyed = t("key(id)", i(1));
    assert_eq!(
        matches(
            Some(&keyed),
            &t(
                "tag",
                obj(vec![
                    ("name", t("glob", s("k*"))),
                    ("args", j(json!(["id"])))
                ])
            )
        ),
        Ok(true)
    );
    assert_eq!(
        matches(Some(&sparse(vec![(1, i(1))])), &t("irtype", j(json!({})))),
        Ok(true)
    );
    assert_eq!(
        matches(Some(&i(1)), &t("irtype", Node::new(Value::Float(0.0)))),
        Ok(false)
    );
    assert_eq!(matches(Some(&i(1)), &t("glob", s("*"))), Ok(false));
    assert_eq!(
        matches(Some(&doc), &t("all", t("irtype", j(json!([]))))),
        Ok(false)
    );
    assert_eq!(matches(Some(&j(json!([]))), &t("all", i(1))), Ok(true));
    assert_eq!(matches(Some(&i(1)), &t("all", i(1))), Ok(true));
    assert_eq!(matches(Some(&i(1)), &t("key(a)", j(json!([])))), Ok(false));
    assert_eq!(matches(Some(&i(1)), &t("pass", i(2))), Ok(true));
    assert_eq!(matches(None, &t("pass", i(2))), Ok(true));
    assert_eq!(matches(None, &t("not", i(2))), Ok(true));
    assert_eq!(
        matches(Some(&t("tagged", i(1))), &t("unknown", i(1))),
        Ok(true)
    );
    assert_eq!(
        matches(Some(&doc), &obj(vec![("s", t("glob", s("x/*")))])),
        Ok(true)
    );
    assert_eq!(
        matches(Some(&doc), &obj(vec![("s", t("glob", s("x*")))])),
        Ok(false)
    );
    let e = matches(Some(&doc), &obj(vec![("a", t("has-path", s("a..b")))])).unwrap_err();
    assert!(matches!(e, PatchError::BadPath { .. }));
    assert_eq!(at(&e), p("a"));
    assert!(matches!(
        matches(Some(&doc), &t("and", i(1))),
        Err(PatchError::BadArgument { .. })
    ));
    assert!(matches!(
        matches(Some(&doc), &t("glob", i(1))),
        Err(PatchError::BadArgument { .. })
    ));
    assert!(matches!(
        matches(Some(&doc), &t("has-path", i(1))),
        Err(PatchError::BadArgument { .. })
    ));
    assert!(matches!(
        matches(Some(&doc), &t("key(a)", j(json!([{"b": 1}])))),
        Ok(false)
    ));
    assert!(matches!(
        matches(
            Some(&j(json!([{"b": 1}]))),
            &t("key(a)", j(json!([{"b": 1}])))
        ),
        Err(PatchError::BadArgument { .. })
    ));
}

#[test]
fn trim_edges() {
    let doc = t("d", j(json!({"a": [1, 1, 2], "b": {"c": 1}})));
    assert_eq!(trim(&Node::null(), &doc), doc);
    assert_eq!(trim(&t("glob", s("*")), &doc), doc);
    assert_eq!(
        trim(&j(json!({"a": [1, 1, 3]})), &doc),
        t("d", j(json!({"a": [1, 1]})))
    );
    assert_eq!(
        trim(&j(json!({"b": {}})), &doc),
        t("d", j(json!({"b": {}})))
    );
    assert_eq!(
        trim(&j(json!({"a": {}})), &doc),
        t("d", j(json!({"a": [1, 1, 2]})))
    );
}

#[test]
fn merge_edges() {
    assert_eq!(merge(&[]), Ok(t("pass", Node::null())));
    let parts = vec![
        (p("x[2].b"), i(1)),
        (p("x[0]"), i(0)),
        (p("x[2].a"), i(2)),
        (p("y{3}.z"), i(3)),
    ];
    assert_eq!(
        merge(&parts),
        Ok(obj(vec![
            (
                "x",
                t(
                    "arraydiff",
                    sparse(vec![(0, i(0)), (2, obj(vec![("a", i(2)), ("b", i(1))]))])
                )
            ),
            ("y", sparse(vec![(3, obj(vec![("z", i(3))]))])),
        ]))
    );
    assert!(matches!(
        merge(&[(KPath::root(), i(1)), (p("a"), i(2))]),
        Err(PatchError::Conflict { a, .. }) if a.is_root()
    ));
    let e = merge(&[(p("a.b"), i(1)), (p("a[0]"), i(2))]).unwrap_err();
    assert_eq!(
        e.to_string(),
        "participants under a mix field, [i] and {i} accessors"
    );
}

#[test]
fn brief_cuts_long_values() {
    let long = Node::array((0..100).map(i));
    let b = brief(Some(&long));
    assert!(b.len() < 100 && b.ends_with('…'), "{b}");
    assert_eq!(
        brief(Some(&t("x", j(json!({"a": [1, "s"]}))))),
        "!x {a: [1, \"s\"]}"
    );
}

#[test]
fn too_deep_patches_and_patterns_stop_with_an_error() {
    let nest = |depth: usize, leaf: Node| {
        let mut n = leaf;
        for _ in 0..depth {
            n = Node::object([("a", n)]);
        }
        n
    };
    let deep = nest(10_000, i(1));
    let e = apply(None, &deep).unwrap_err();
    assert!(
        matches!(
            e,
            PatchError::TooDeep {
                limit: MAX_DEPTH,
                ..
            }
        ),
        "{e:?}"
    );
    assert_eq!(at(&e).len(), MAX_DEPTH + 1);
    let e = matches(Some(&deep), &deep).unwrap_err();
    assert!(matches!(e, PatchError::TooDeep { .. }));
    // A chain of !not is as deep as its length.
    let chain = t(&vec!["not"; 2000].join("."), i(1));
    assert!(matches!(
        matches(Some(&i(1)), &chain),
        Err(PatchError::TooDeep { .. })
    ));
    let shallow = nest(MAX_DEPTH - 1, i(1));
    assert!(apply(None, &shallow).is_ok());
    assert_eq!(trim(&deep, &i(3)), i(3));
    // Dropping 10,000 levels recursively is `Node`'s business; keep the test
    // independent of it.
    std::mem::forget(deep);
}

/// Issue 18: a participant at `users(jane).email` changes that element of the
/// keyed list, and merging participants at keyed paths against the document
/// gives the same result as applying them one by one.
#[test]
fn keyed_paths_patch_by_identity() {
    let doc: Node = "{users: !key(name) [{name: bob, email: b}, {name: jane, email: j}], n: 0}"
        .parse()
        .unwrap_or_else(|e| panic!("{e}"));
    let p = |s: &str| KPath::parse(s).unwrap_or_else(|e| panic!("{e}"));
    let parts = vec![
        (p("users(jane).email"), s("J")),
        (p("users(bob)"), obj(vec![("age", i(3))])),
        (p("n"), i(1)),
    ];
    let mut one_by_one = Some(doc.clone());
    for (path, data) in &parts {
        one_by_one = apply_at(one_by_one.as_ref(), path, data).unwrap_or_else(|e| panic!("{e}"));
    }
    let refs: Vec<(&KPath, &Node)> = parts.iter().map(|(a, b)| (a, b)).collect();
    let merged = merge_in(Some(&doc), &refs).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(apply(Some(&doc), &merged), Ok(one_by_one.clone()));
    let want: Node =
        "{users: !key(name) [{name: bob, email: b, age: 3}, {name: jane, email: J}], n: 1}"
            .parse()
            .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(one_by_one, Some(want));
    assert_eq!(
        doc.resolve_path(&p("users(jane).email")),
        Ok(p("users[1].email"))
    );
    assert_eq!(doc.resolve_path(&p("users(zed).email")), Err(1));
    assert!(matches!(merge(&parts), Err(PatchError::KeyedPath { .. })));
}
