//! Every vector of `shared/conformance/{patch,match,trim,merge}.tony`, built
//! in Rust (the text parser lands separately). Names match the files.

#![allow(clippy::type_complexity)]

use logd_core::patch::{PatchError, apply, apply_owned, matches, merge, trim};
use logd_core::{KPath, Key, Node, Value};
use serde_json::json;

fn j(v: serde_json::Value) -> Node {
    Node::from(v)
}
fn s(x: &str) -> Node {
    Node::string(x)
}
fn i(x: i64) -> Node {
    Node::int(x)
}
fn null() -> Node {
    Node::null()
}
fn t(tag: &str, n: Node) -> Node {
    n.with_tag(Some(logd_core::Tag::new(tag)))
}
fn obj(pairs: Vec<(&str, Node)>) -> Node {
    Node::object(pairs)
}
fn sparse(pairs: Vec<(u32, Node)>) -> Node {
    Node::object(pairs.into_iter().map(|(k, v)| (Key::Index(k), v)))
}
fn arr(items: Vec<Node>) -> Node {
    Node::array(items)
}

enum Want {
    Node(Node),
    Deleted,
    Error,
}

fn check_patch(name: &str, doc: Option<Node>, patch: Node, want: Want) {
    let borrowed = apply(doc.as_ref(), &patch);
    let owned = apply_owned(doc.clone(), &patch);
    assert_eq!(borrowed, owned, "{name}: apply and apply_owned differ");
    match want {
        Want::Node(w) => assert_eq!(borrowed, Ok(Some(w)), "{name}"),
        Want::Deleted => assert_eq!(borrowed, Ok(None), "{name}"),
        Want::Error => assert!(
            borrowed.is_err(),
            "{name}: expected an error, got {borrowed:?}"
        ),
    }
}

fn list3() -> Node {
    j(
        json!({"f1": [{"name": "a/b", "value": "x"}, {"name": "b/c", "value": "y"}, {"name": "a/c", "value": "z"}]}),
    )
}

#[test]
fn patch_vectors() {
    use Want::{Deleted, Error};
    #[allow(non_snake_case)]
    let Node = Want::Node;
    let cases: Vec<(&str, Option<logd_core::Node>, logd_core::Node, Want)> = vec![
        (
            "merge-adds-key",
            Some(j(json!({"a": 1}))),
            j(json!({"b": 1})),
            Node(j(json!({"a": 1, "b": 1}))),
        ),
        (
            "null-sets-null",
            Some(j(json!({"a": 1}))),
            j(json!({"a": null})),
            Node(j(json!({"a": null}))),
        ),
        (
            "delete-key",
            Some(j(json!({"a": 1}))),
            obj(vec![("a", t("delete", null()))]),
            Node(j(json!({}))),
        ),
        (
            "array-pairwise-delete",
            Some(j(json!([1, 2]))),
            arr(vec![t("delete", i(1)), i(2)]),
            Node(j(json!([2]))),
        ),
        (
            "array-pairwise-append",
            Some(j(json!([1, 2]))),
            arr(vec![t("delete", i(1)), i(2), i(3)]),
            Node(j(json!([2, 3]))),
        ),
        (
            "array-pairwise-replace",
            Some(j(json!([1, 2, 3]))),
            j(json!([1, 2, 4])),
            Node(j(json!([1, 2, 4]))),
        ),
        (
            "empty-object-patch",
            Some(j(json!({"f1": [1, 2]}))),
            j(json!({})),
            Node(j(json!({"f1": [1, 2]}))),
        ),
        (
            "scalar-replaces-object",
            Some(j(json!({"a": 1}))),
            s("string"),
            Node(s("string")),
        ),
        (
            "keyed-list-merge",
            Some(j(json!([{"key": 1, "value": 2}, {"key": 2, "value": 3}]))),
            t("key(key)", j(json!([{"key": 2, "value": 33}]))),
            Node(j(json!([{"key": 1, "value": 2}, {"key": 2, "value": 33}]))),
        ),
        (
            "keyed-list-nested",
            Some(j(
                json!({"x": [{"key": 1, "value": 2}, {"key": 2, "value": 3}]}),
            )),
            obj(vec![(
                "x",
                t("key(key)", j(json!([{"key": 2, "value": 33}]))),
            )]),
            Node(j(
                json!({"x": [{"key": 1, "value": 2}, {"key": 2, "value": 33}]}),
            )),
        ),
        (
            "arraydiff-delete",
            Some(j(json!(["a", "b"]))),
            t("arraydiff", sparse(vec![(1, t("delete", s("b")))])),
            Node(j(json!(["a"]))),
        ),
        (
            "arraydiff-insert-tagged",
            Some(j(json!(["a", "b"]))),
            t(
                "arraydiff",
                sparse(vec![(1, t("insert(foo(bar,baz))", s("c")))]),
            ),
            Node(arr(vec![s("a"), t("foo(bar,baz)", s("c")), s("b")])),
        ),
        (
            "insert-new-keys",
            Some(j(json!({"a": {"b": "c"}, "d": "e"}))),
            obj(vec![("z", t("insert", i(1))), ("zz", t("insert", i(2)))]),
            Node(j(json!({"a": {"b": "c"}, "d": "e", "z": 1, "zz": 2}))),
        ),
        (
            "field-rename-chain",
            Some(j(json!({"a": {"b": "c"}, "d": "e"}))),
            t("field(a,A).field(d,D)", null()),
            Node(j(json!({"A": {"b": "c"}, "D": "e"}))),
        ),
        (
            "strdiff",
            Some(s("hello world")),
            t(
                "strdiff(false)",
                sparse(vec![
                    (2, t("delete", s("l"))),
                    (4, t("replace", obj(vec![("from", s("o")), ("to", s("p"))]))),
                    (6, t("insert", s("the "))),
                ]),
            ),
            Node(s("help the world")),
        ),
        (
            "strdiff-append",
            Some(s("hello world")),
            t(
                "strdiff(false)",
                sparse(vec![
                    (2, t("delete", s("l"))),
                    (4, t("replace", obj(vec![("from", s("o")), ("to", s("p"))]))),
                    (6, t("insert", s("the "))),
                    (15, t("insert", s("!"))),
                ]),
            ),
            Node(s("help the world!")),
        ),
        (
            "all-elements",
            Some(list3()),
            obj(vec![("f1", t("all", j(json!({"value": true}))))]),
            Node(j(
                json!({"f1": [{"name": "a/b", "value": true}, {"name": "b/c", "value": true}, {"name": "a/c", "value": true}]}),
            )),
        ),
        (
            "all-if-glob",
            Some(list3()),
            obj(vec![(
                "f1",
                t(
                    "all.if",
                    obj(vec![
                        ("if", obj(vec![("name", t("glob", s("a/*")))])),
                        ("then", j(json!({"value": true}))),
                        ("else", t("pass", null())),
                    ]),
                ),
            )]),
            Node(j(
                json!({"f1": [{"name": "a/b", "value": true}, {"name": "b/c", "value": "y"}, {"name": "a/c", "value": true}]}),
            )),
        ),
        (
            "if-then",
            Some(j(json!({"f1": "a", "f2": "b"}))),
            t(
                "if",
                obj(vec![
                    ("if", j(json!({"f1": "a"}))),
                    ("then", j(json!({"f3": "c"}))),
                    ("else", t("pass", null())),
                ]),
            ),
            Node(j(json!({"f1": "a", "f2": "b", "f3": "c"}))),
        ),
        (
            "replace-ok",
            Some(j(json!({"a": 1}))),
            obj(vec![("a", t("replace", j(json!({"from": 1, "to": 2}))))]),
            Node(j(json!({"a": 2}))),
        ),
        (
            "replace-from-mismatch",
            Some(j(json!({"a": 1}))),
            obj(vec![("a", t("replace", j(json!({"from": 3, "to": 2}))))]),
            Error,
        ),
        (
            "rename-moves",
            Some(j(json!({"a": 1, "b": 2}))),
            t("rename", j(json!([{"from": "a", "to": "c"}]))),
            Node(j(json!({"b": 2, "c": 1}))),
        ),
        (
            "addtag",
            Some(j(json!({"f": 2}))),
            obj(vec![("f", t("addtag(j)", null()))]),
            Node(obj(vec![("f", t("j", i(2)))])),
        ),
        (
            "rmtag-removes",
            Some(obj(vec![("f", t("j", i(2)))])),
            obj(vec![("f", t("rmtag(j)", null()))]),
            Node(j(json!({"f": 2}))),
        ),
        (
            "retag",
            Some(t("a", s("hello"))),
            t("retag(a,b)", null()),
            Node(t("b", s("hello"))),
        ),
        (
            "keyed-list-delete-item",
            Some(j(json!([{"id": 1, "v": "a"}, {"id": 2, "v": "b"}]))),
            t("key(id)", arr(vec![t("delete", j(json!({"id": 1})))])),
            Node(j(json!([{"id": 2, "v": "b"}]))),
        ),
        (
            "keyed-list-append",
            Some(j(json!([{"id": 1, "v": "a"}]))),
            t("key(id)", j(json!([{"id": 3, "v": "c"}]))),
            Node(j(json!([{"id": 1, "v": "a"}, {"id": 3, "v": "c"}]))),
        ),
        (
            "sparse-keeps-int-keys",
            Some(sparse(vec![(0, s("a")), (5, s("b"))])),
            sparse(vec![(5, s("c")), (7, s("d"))]),
            Node(sparse(vec![(0, s("a")), (5, s("c")), (7, s("d"))])),
        ),
        (
            "absent-doc",
            None,
            j(json!({"a": 1})),
            Node(j(json!({"a": 1}))),
        ),
        (
            "delete-root",
            Some(j(json!({"a": 1}))),
            t("delete", null()),
            Deleted,
        ),
        (
            "nullify",
            Some(j(json!({"a": 1}))),
            obj(vec![("a", t("nullify", null()))]),
            Node(j(json!({"a": null}))),
        ),
        (
            "pipe-refused",
            Some(j(json!({"a": 1}))),
            obj(vec![("a", t("pipe", s("echo hi")))]),
            Error,
        ),
        (
            "arraydiff-index-patch",
            Some(j(json!([{"a": 1}, {"a": 2}]))),
            t("arraydiff", sparse(vec![(1, j(json!({"b": 3})))])),
            Node(j(json!([{"a": 1}, {"a": 2, "b": 3}]))),
        ),
        (
            "object-over-array",
            Some(j(json!([1, 2]))),
            j(json!({"a": 1})),
            Node(j(json!({"a": 1}))),
        ),
        (
            "array-over-object",
            Some(j(json!({"a": 1}))),
            j(json!([1])),
            Node(j(json!([1]))),
        ),
        (
            "unknown-tag-is-data",
            Some(j(json!({"a": 1}))),
            obj(vec![("a", t("mytag", i(2)))]),
            Node(obj(vec![("a", t("mytag", i(2)))])),
        ),
        (
            "insert-existing-merges",
            Some(j(json!({"a": {"x": 1}}))),
            obj(vec![("a", t("insert", j(json!({"y": 2}))))]),
            Node(j(json!({"a": {"x": 1, "y": 2}}))),
        ),
    ];
    assert_eq!(cases.len(), 37);
    for (name, doc, patch, want) in cases {
        check_patch(name, doc, patch, want);
    }
}

#[test]
fn pipe_refused_names_op_and_place() {
    let err = apply(
        Some(&j(json!({"a": 1}))),
        &obj(vec![("a", t("pipe", s("echo hi")))]),
    );
    assert_eq!(
        err,
        Err(PatchError::Refused {
            op: "pipe".into(),
            at: KPath::parse("a").unwrap()
        })
    );
}

#[test]
fn match_vectors() {
    let ab_cd = || j(json!({"a": "b", "c": "d"}));
    let cases: Vec<(&str, Option<Node>, Node, bool)> = vec![
        ("int-eq", Some(i(1)), i(1), true),
        ("int-ne", Some(i(0)), i(1), false),
        ("array-eq", Some(j(json!([1]))), j(json!([1])), true),
        ("empty-arrays", Some(j(json!([]))), j(json!([])), true),
        ("array-ne", Some(j(json!([1]))), j(json!([2])), false),
        ("type-mismatch", Some(j(json!([1]))), s("hello"), false),
        ("subset", Some(ab_cd()), j(json!({"a": "b"})), true),
        ("superset-fails", Some(j(json!({"a": "b"}))), ab_cd(), false),
        ("null-wildcard", Some(j(json!({"a": "b"}))), null(), true),
        ("glob", Some(s("hello")), t("glob", s("h*o")), true),
        ("not-glob", Some(s("hello")), t("not.glob", s("h*o")), false),
        (
            "and",
            Some(ab_cd()),
            t("and", j(json!([{"a": "b"}, {"c": "d"}]))),
            true,
        ),
        (
            "not-and",
            Some(ab_cd()),
            t("not.and", j(json!([{"a": "b"}, {"c": "d"}]))),
            false,
        ),
        (
            "and-glob",
            Some(ab_cd()),
            t(
                "and",
                arr(vec![
                    obj(vec![("a", t("glob", s("*")))]),
                    j(json!({"c": "d"})),
                ]),
            ),
            true,
        ),
        (
            "key-hit",
            Some(j(json!([{"a": "b"}, {"a": "c"}]))),
            t("key(a)", j(json!([{"a": "b"}]))),
            true,
        ),
        (
            "key-miss",
            Some(j(json!([{"a": "b"}, {"a": "c"}]))),
            t("key(a)", j(json!([{"a": "d"}]))),
            false,
        ),
        (
            "key-glob",
            Some(j(json!([{"a": "b", "b": "ccc"}, {"a": "c"}]))),
            t(
                "key(a)",
                arr(vec![obj(vec![("a", s("b")), ("b", t("glob", s("c*")))])]),
            ),
            true,
        ),
        (
            "subtree-field-glob",
            Some(j(json!({"a": "b", "c": [{"d": {"x-foo": 1}}]}))),
            t("subtree.field.glob", s("x-*")),
            true,
        ),
        (
            "subtree-value",
            Some(j(
                json!({"a": "b", "c": [{"d": {"x-foo": 1}}], "e": [1, true, 42]}),
            )),
            t("subtree", i(42)),
            true,
        ),
        ("has-path", Some(ab_cd()), t("has-path", s("a")), true),
        ("has-path-miss", Some(ab_cd()), t("has-path", s("x")), false),
        (
            "has-path-deep",
            Some(j(json!({"a": {"b": "c"}}))),
            t("has-path", s("a.b")),
            true,
        ),
        (
            "has-path-deep-miss",
            Some(j(json!({"a": {"b": "c"}}))),
            t("has-path", s("a.x")),
            false,
        ),
        (
            "has-path-index",
            Some(j(json!({"arr": [1, 2, 3]}))),
            t("has-path", s("arr[0]")),
            true,
        ),
        (
            "has-path-index-miss",
            Some(j(json!({"arr": [1, 2, 3]}))),
            t("has-path", s("arr[5]")),
            false,
        ),
        (
            "all-has-path",
            Some(j(json!([{"a": 1}, {"a": 2}, {"a": 3}]))),
            t("all.has-path", s("a")),
            true,
        ),
        (
            "all-has-path-miss",
            Some(j(json!([{"a": 1}, {"a": 2}, {"b": 3}]))),
            t("all.has-path", s("a")),
            false,
        ),
        (
            "not-has-path",
            Some(j(json!({"a": 1}))),
            t("not.has-path", s("x")),
            true,
        ),
        (
            "int-is-not-float",
            Some(i(1)),
            Node::new(Value::Float(1.0)),
            false,
        ),
        (
            "or",
            Some(j(json!({"a": 1}))),
            t("or", j(json!([{"a": 2}, {"a": 1}]))),
            true,
        ),
        (
            "irtype-object",
            Some(j(json!({"a": 1}))),
            t("irtype", j(json!({}))),
            true,
        ),
        (
            "irtype-mismatch",
            Some(j(json!([1]))),
            t("irtype", j(json!({}))),
            false,
        ),
        ("absent-vs-null", None, null(), true),
        ("absent-vs-object", None, j(json!({"a": 1})), false),
    ];
    assert_eq!(cases.len(), 34);
    for (name, doc, pattern, want) in cases {
        assert_eq!(matches(doc.as_ref(), &pattern), Ok(want), "{name}");
    }
}

#[test]
fn trim_vectors() {
    let cases: Vec<(&str, Node, Node, Node)> = vec![
        (
            "object",
            j(json!({"a": {"x": 1, "y": 2}, "b": 3})),
            j(json!({"a": {"x": 1}, "b": 3})),
            j(json!({"a": {"x": 1}, "b": 3})),
        ),
        (
            "array-filter",
            j(json!([{"a": 1}, {"b": 2}, {"c": 3}])),
            j(json!([{"a": 1}, {"c": 3}])),
            j(json!([{"a": 1}, {"c": 3}])),
        ),
        (
            "missing-key",
            j(json!({"a": "b"})),
            j(json!({"a": "b", "c": null})),
            j(json!({"a": "b"})),
        ),
    ];
    for (name, doc, pattern, want) in cases {
        assert_eq!(trim(&pattern, &doc), want, "{name}");
    }
}

fn p(x: &str) -> KPath {
    KPath::parse(x).unwrap()
}

#[test]
fn merge_vectors() {
    let ok: Vec<(&str, Vec<(KPath, Node)>, Node)> = vec![
        (
            "siblings",
            vec![(p("a.b"), s("v1")), (p("a.c"), s("v2"))],
            j(json!({"a": {"b": "v1", "c": "v2"}})),
        ),
        (
            "disjoint",
            vec![(p("a.b"), s("v1")), (p("x.y"), s("v2"))],
            j(json!({"a": {"b": "v1"}, "x": {"y": "v2"}})),
        ),
        (
            "dense-indexes",
            vec![(p("arr[0]"), s("first")), (p("arr[1]"), s("second"))],
            obj(vec![(
                "arr",
                t("arraydiff", sparse(vec![(0, s("first")), (1, s("second"))])),
            )]),
        ),
        (
            "sparse-indexes",
            vec![(p("arr{0}"), s("x")), (p("arr{42}"), s("y"))],
            obj(vec![("arr", sparse(vec![(0, s("x")), (42, s("y"))]))]),
        ),
        (
            "root-alone",
            vec![(p(""), j(json!({"a": 1})))],
            j(json!({"a": 1})),
        ),
    ];
    for (name, parts, want) in ok {
        assert_eq!(merge(&parts), Ok(want), "{name}");
    }
    let errs: Vec<(&str, Vec<(KPath, Node)>)> = vec![
        (
            "nested-conflict",
            vec![(p("a.b"), i(1)), (p("a.b.c"), i(2))],
        ),
        ("equal-conflict", vec![(p("a.b"), i(1)), (p("a.b"), i(2))]),
        (
            "mixed-field-index",
            vec![(p("a.b"), i(1)), (p("a[0]"), i(2))],
        ),
        (
            "mixed-index-sparse",
            vec![(p("a[0]"), i(1)), (p("a{0}"), i(2))],
        ),
        ("root-with-other", vec![(p(""), i(1)), (p("a"), i(2))]),
    ];
    for (name, parts) in errs {
        assert!(merge(&parts).is_err(), "{name}");
    }
    assert!(matches!(
        merge(&[(p("a.b"), i(1)), (p("a[0]"), i(2))]),
        Err(PatchError::MixedAccessors { parent }) if parent == p("a")
    ));
    assert!(matches!(
        merge(&[(p("a.b.c"), i(1)), (p("a.b"), i(2))]),
        Err(PatchError::Conflict { a, b }) if a == p("a.b") && b == p("a.b.c")
    ));
}
