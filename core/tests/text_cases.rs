//! Hand-written cases for Tony text: every `conformance/text.tony` vector,
//! flow and block syntax, printing, error positions and nesting limits.

use logd_core::text::{self, MAX_DEPTH, ParseError};
use logd_core::{Key, Node, Value};

fn p(s: &str) -> Node {
    match text::parse(s) {
        Ok(n) => n,
        Err(e) => panic!("parse {s:?}: {e}"),
    }
}

fn wire(s: &str) -> String {
    p(s).to_string()
}

fn err(s: &str) -> ParseError {
    match text::parse(s) {
        Ok(n) => panic!("parse {s:?} should fail, got {n}"),
        Err(e) => e,
    }
}

fn f(x: f64) -> Node {
    Node::new(Value::Float(x))
}

fn s(x: &str) -> Node {
    Node::string(x)
}

// ---- conformance/text.tony ------------------------------------------------

#[test]
fn conformance_vectors() {
    let cases: &[(&str, &str, &str)] = &[
        (
            "json",
            "{\"a\": 1, \"b\": [true, null, \"x y\"]}",
            "{a: 1, b: [true, null, \"x y\"]}",
        ),
        ("optional-commas", "[1 2, 3,]", "[1, 2, 3]"),
        ("tag", "{a: !delete null}", "{a: !delete null}"),
        ("sparse", "{0: a, 42: b}", "{0: a, 42: b}"),
        ("single-quotes", "'a\\'b'", "\"a'b\""),
        ("digit-string", "\"1\"", "\"1\""),
        ("bool-string", "\"true\"", "\"true\""),
        ("float-stays-float", "1.0", "1.0"),
        ("float", "2.5", "2.5"),
        ("block", "a: 1\nb:\n- x\n- y\n", "{a: 1, b: [x, y]}"),
        ("comments", "# c\n{a: 1} # d\n", "{a: 1}"),
        (
            "nested-block",
            "a:\n  b: 1\n  c: [1, 2]\n",
            "{a: {b: 1, c: [1, 2]}}",
        ),
        ("tag-args", "!key(id) [{id: 1}]", "!key(id) [{id: 1}]"),
    ];
    for (name, input, out) in cases {
        assert_eq!(wire(input), *out, "case {name}");
        // The printed form is itself valid and stable.
        assert_eq!(wire(out), *out, "case {name} (reprint)");
    }
}

#[test]
fn conformance_file_reads_as_tony() {
    // The conformance file itself is Tony flow syntax, one case per line.
    let Ok(file) = std::fs::read_to_string("/work/shared/conformance/text.tony") else {
        return; // not available outside the build machine
    };
    let mut n = 0;
    for line in file
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
    {
        let case = p(line);
        let input = match case.field("in").map(|n| &n.value) {
            Some(Value::String(s)) => s.clone(),
            other => panic!("no in: {other:?}"),
        };
        let out = match case.field("out").map(|n| &n.value) {
            Some(Value::String(s)) => s.clone(),
            other => panic!("no out: {other:?}"),
        };
        assert_eq!(
            wire(&input),
            out,
            "case {}",
            case.field("name")
                .map(|n| n.to_string())
                .unwrap_or_default()
        );
        n += 1;
    }
    assert!(n >= 13);
}

// ---- scalars ------------------------------------------------------------

#[test]
fn scalars() {
    assert_eq!(p("1"), Node::int(1));
    assert_eq!(p("-7"), Node::int(-7));
    assert_eq!(p("1.0"), f(1.0));
    assert_ne!(p("1"), p("1.0"));
    assert_eq!(p("1e3"), f(1000.0));
    assert_eq!(p("-2.5E-3"), f(-0.0025));
    assert_eq!(p("true"), Node::new(Value::Bool(true)));
    assert_eq!(p("false"), Node::new(Value::Bool(false)));
    assert_eq!(p("null"), Node::null());
    assert_eq!(p("hello"), s("hello"));
    assert_eq!(p("a:b"), s("a:b"));
    assert_eq!(p("+1"), s("+1"));
    assert_eq!(p(".5"), s(".5"));
    assert_eq!(p("\"x\\ny\""), s("x\ny"));
    assert_eq!(p("9223372036854775807"), Node::int(i64::MAX));
    assert_eq!(p("-9223372036854775808"), Node::int(i64::MIN));
    assert_eq!(p("héllo😀"), s("héllo😀"));
}

#[test]
fn integer_overflow_is_an_error() {
    let e = err("9223372036854775808");
    assert_eq!((e.line, e.column), (1, 1));
    assert!(e.message.contains("out of range"), "{e}");
    assert!(
        err("[1, 99999999999999999999999]")
            .message
            .contains("out of range")
    );
    assert!(err("1e400").message.contains("out of range"));
}

#[test]
fn non_finite_floats_round_trip() {
    for x in [f64::INFINITY, f64::NEG_INFINITY] {
        let n = f(x);
        assert_eq!(p(&n.to_string()), n);
    }
    assert_eq!(f(f64::NAN).to_string(), ".nan");
    assert!(matches!(p(".nan").value, Value::Float(x) if x.is_nan()));
    assert_eq!(s(".inf").to_string(), "\".inf\"");
    assert_eq!(p("[.inf, -.inf]").to_string(), "[.inf, -.inf]");
}

#[test]
fn floats_print_as_floats() {
    for (x, want) in [
        (1.0, "1.0"),
        (2.5, "2.5"),
        (1e300, "1e300"),
        (-0.5, "-0.5"),
        (1e-7, "1e-7"),
    ] {
        assert_eq!(f(x).to_string(), want);
        assert_eq!(p(want), f(x));
    }
}

#[test]
fn strings_that_look_like_other_things_are_quoted() {
    for x in [
        "1", "-1", "true", "null", "false", "1.5", "", "a b", "a:", "#x", "[a", "a]", "- x", "!t",
        "'", "\"", ",", "x,y", "|",
    ] {
        let printed = s(x).to_string();
        assert!(
            printed.starts_with(['"', '\'']),
            "{x:?} printed as {printed}"
        );
        assert_eq!(p(&printed), s(x));
    }
    for x in ["a", "a:b", "a/b", "f(x)", "a[1]", "x{y}", "é"] {
        assert_eq!(s(x).to_string(), x);
    }
}

// ---- flow ------------------------------------------------------------------

#[test]
fn flow_syntax() {
    assert_eq!(wire("[]"), "[]");
    assert_eq!(wire("{}"), "{}");
    assert_eq!(wire("[1,]"), "[1]");
    assert_eq!(wire("{a: 1,}"), "{a: 1}");
    assert_eq!(wire("{a: 1 b: 2}"), "{a: 1, b: 2}");
    assert_eq!(wire("[a b\n c # comment\n d]"), "[a, b, c, d]");
    assert_eq!(wire("{\"a\":1,\"b\":{}}"), "{a: 1, b: {}}");
    assert_eq!(
        wire("[a[1] b]"),
        "[a[1], b]",
        "brackets a literal opened stay in it"
    );
    assert_eq!(wire("{a:b}"), "{a:b: null}", "a:b is one literal");
    assert_eq!(wire("{a: b}"), "{a: b}");
    assert_eq!(wire("{a: [x]}"), "{a: [x]}");
    assert_eq!(wire("[x]"), "[x]", "a literal stops at a ] it did not open");
}

#[test]
fn tags() {
    assert_eq!(wire("!a.b x"), "!a.b x");
    assert_eq!(
        wire("!insert(foo(bar,baz)) {a: 1}"),
        "!insert(foo(bar,baz)) {a: 1}"
    );
    let n = p("!insert(foo(bar,baz)) 1");
    let tag = n.tag.clone().expect("tag");
    assert_eq!(tag.as_str(), "insert(foo(bar,baz))");
    assert_eq!(tag.split_first().0.args, vec!["foo(bar,baz)"]);
    assert_eq!(wire("[!t, !u]"), "[!t null, !u null]");
    assert_eq!(wire("{a: !t}"), "{a: !t null}");
    assert_eq!(
        wire("!field(a.b,A).field(d,D) {}"),
        "!field(a.b,A).field(d,D) {}"
    );
    assert!(err("!a !b x").message.contains("one tag"));
    assert!(err("! x").message.contains("tag name"));
    assert!(err("!a(b x").message.contains("unclosed"));
}

#[test]
fn tagged_sparse_patch() {
    let n = p("!arraydiff {1: !insert(foo(bar,baz)) c, 3: !delete b}");
    let want = Node::object([
        (
            Key::Index(1),
            Node::tagged("insert(foo(bar,baz))", Value::String("c".into())),
        ),
        (
            Key::Index(3),
            Node::tagged("delete", Value::String("b".into())),
        ),
    ])
    .with_tag(Some(logd_core::Tag::new("arraydiff")));
    assert_eq!(n, want);
}

#[test]
fn sparse_and_key_sets() {
    let n = p("{0: a, 42: b}");
    assert_eq!(
        n,
        Node::object([(Key::Index(0), s("a")), (Key::Index(42), s("b"))])
    );
    assert_eq!(wire("{a b}"), "{a: null, b: null}");
    assert_eq!(wire("{a !t b}"), "{a: !t null, b: null}");
    assert_eq!(wire("{a, b: 1, c}"), "{a: null, b: 1, c: null}");
    assert_eq!(wire("{1 2}"), "{1: null, 2: null}");
    assert_eq!(wire("{\"0\": x}"), "{\"0\": x}");
    assert_eq!(wire("{\"true\": x}"), "{\"true\": x}");
    assert!(err("{0: a, b: c}").message.contains("mix"));
    assert!(err("{b: c, 0: a}").message.contains("mix"));
    assert!(err("{a: 1, a: 2}").message.contains("duplicate"));
    assert!(err("{4294967296: a}").message.contains("out of range"));
    assert!(err("{-1: a}").message.contains("key"));
    let many: Vec<String> = (0..40).map(|i| format!("k{i}: {i}")).collect();
    let e = err(&format!("{{{}, k7: 0}}", many.join(", ")));
    assert!(e.message.contains("duplicate key \"k7\""), "{e}");
}

// ---- block ---------------------------------------------------------------------

#[test]
fn block_mappings_and_sequences() {
    assert_eq!(wire("a: 1\nb: two\n"), "{a: 1, b: two}");
    assert_eq!(
        wire("a:\n  b:\n    c: 1\n  d: 2\ne: 3"),
        "{a: {b: {c: 1}, d: 2}, e: 3}"
    );
    assert_eq!(wire("a:\n  - x\n  - y\nb: 1"), "{a: [x, y], b: 1}");
    assert_eq!(wire("a:\n- x\n- y\nb: 1"), "{a: [x, y], b: 1}");
    assert_eq!(wire("- a: 1\n  b: 2\n- c: 3"), "[{a: 1, b: 2}, {c: 3}]");
    assert_eq!(wire("- - x\n  - y\n- z"), "[[x, y], z]");
    assert_eq!(wire("-\n  a: 1\n-\n- 2"), "[{a: 1}, null, 2]");
    assert_eq!(wire("a:\nb: 1"), "{a: null, b: 1}");
    assert_eq!(
        wire("a: {x: 1,\n  y: 2}\nb: [1,\n 2]"),
        "{a: {x: 1, y: 2}, b: [1, 2]}"
    );
    assert_eq!(wire("0: a\n7: b"), "{0: a, 7: b}");
    assert_eq!(wire("\"a b\": 1\n'c': 2"), "{\"a b\": 1, c: 2}");
    assert_eq!(wire("url: http://x.y/z\n"), "{url: http://x.y/z}");
    assert_eq!(wire("a:b: 1"), "{a:b: 1}");
    assert_eq!(wire("a: 1 # one\n# two\n\nb: 2 # three"), "{a: 1, b: 2}");
    assert_eq!(wire("a: 1\r\nb:\r\n- x\r\n"), "{a: 1, b: [x]}");
    assert_eq!(wire("- a:\n  - x\n  b: 1"), "[{a: [x], b: 1}]");
    assert_eq!(wire("  a: 1\n  b: 2"), "{a: 1, b: 2}");
}

#[test]
fn block_tags() {
    assert_eq!(wire("a: !t x"), "{a: !t x}");
    assert_eq!(
        wire("items: !key(id)\n- id: 1\n- id: 2"),
        "{items: !key(id) [{id: 1}, {id: 2}]}"
    );
    assert_eq!(
        wire("items: !key(id)\n  - id: 1"),
        "{items: !key(id) [{id: 1}]}"
    );
    assert_eq!(wire("a: !t\n  b: 1"), "{a: !t {b: 1}}");
    assert_eq!(wire("a: !t\nb: 1"), "{a: !t null, b: 1}");
    assert_eq!(wire("- !t\n  a: 1\n- !u x"), "[!t {a: 1}, !u x]");
    assert_eq!(wire("!t\na: 1"), "!t {a: 1}");
    assert_eq!(wire("!t\n- 1"), "!t [1]");
    assert_eq!(wire("a: !t |\n  x\n"), "{a: !t \"x\\n\"}");
}

#[test]
fn block_literals() {
    assert_eq!(
        p("a: |\n  x\n  y\nb: 1"),
        Node::object([("a", s("x\ny\n")), ("b", Node::int(1))])
    );
    assert_eq!(p("a: |-\n  x\n  y\n"), Node::object([("a", s("x\ny"))]));
    assert_eq!(
        p("a: |\n  x\n\n   y\n\n\nb: 1"),
        Node::object([("a", s("x\n\n y\n")), ("b", Node::int(1))])
    );
    assert_eq!(
        p("- |\n  # not a comment\n- 2"),
        Node::array([s("# not a comment\n"), Node::int(2)])
    );
    assert_eq!(
        p("a:\n  b: |\n    deep\n  c: 1"),
        p("{a: {b: \"deep\\n\", c: 1}}")
    );
    assert_eq!(p("a: |\nb: 1"), p("{a: \"\", b: 1}"));
}

#[test]
fn documents() {
    let docs = text::parse_documents("a: 1\n---\n- x\n---\n# only a comment\n---\n{b: 2}\n")
        .expect("docs");
    assert_eq!(docs, vec![p("{a: 1}"), p("[x]"), p("{b: 2}")]);
    assert_eq!(text::parse_documents("").expect("empty"), vec![]);
    assert_eq!(p("---\na: 1\n"), p("{a: 1}"));
    let e = err("a: 1\n---\nb: 2\n");
    assert_eq!(e.line, 3);
    assert!(err("# nothing\n").message.contains("empty"));
    assert_eq!("[1]".parse::<Node>(), Ok(Node::array([Node::int(1)])));
}

// ---- errors -------------------------------------------------------------------

#[test]
fn error_positions() {
    let cases: &[(&str, usize, usize, &str)] = &[
        ("[,]", 1, 2, "expected a value"),
        ("[1,,2]", 1, 4, "expected a value"),
        ("{a 1}", 1, 4, "key"),
        ("{a: 1", 1, 6, "expected '}'"),
        ("[1, 2", 1, 6, "expected ']'"),
        ("a: 1\nb: [1,\n  2,, 3]", 3, 5, "expected a value"),
        ("a: 1\n  b: 2", 2, 3, "unexpected indentation"),
        ("a: 1\n- x", 2, 1, "expected a key"),
        ("\"abc", 1, 1, "unterminated"),
        ("x: \"a\\qb\"", 1, 6, "unknown escape"),
        ("a: 1 2", 1, 6, "expected end of line"),
        ("é: [1, 2x]", 1, 8, "invalid number"),
        ("a: 1\n\tb: 2", 2, 1, "tab"),
        ("[1] [2]", 1, 5, "expected end of line"),
        ("a\nb", 2, 1, "expected end of document"),
        ("1.", 1, 3, "digits"),
        ("[-]", 1, 2, "expected a value"),
        ("{a: }", 1, 5, "expected a value"),
    ];
    for (input, line, column, msg) in cases {
        let e = err(input);
        assert_eq!((e.line, e.column), (*line, *column), "{input:?}: {e}");
        assert!(e.message.contains(msg), "{input:?}: {e}");
    }
    let e = err("a:\n  b: [1,,2]");
    assert_eq!(
        e.to_string(),
        "line 2, column 9: expected a value or ']', found ','"
    );
}

#[test]
fn depth_is_bounded() {
    let ok = "[".repeat(MAX_DEPTH) + &"]".repeat(MAX_DEPTH);
    assert!(text::parse(&ok).is_ok());
    let too_deep = "[".repeat(MAX_DEPTH + 1) + &"]".repeat(MAX_DEPTH + 1);
    assert!(err(&too_deep).message.contains("nesting"));
    for input in [
        "[".repeat(10_000),
        "{a: ".repeat(10_000),
        "- ".repeat(10_000) + "x",
        "- ".repeat(5_000) + "a:\n" + &"  ".repeat(5_001) + "b: 1",
        (0..2_000)
            .map(|i| format!("{}a:\n", "  ".repeat(i)))
            .collect::<String>(),
        (0..2_000)
            .map(|i| format!("{}!t\n", "  ".repeat(i)))
            .collect::<String>(),
        "!t ".repeat(10_000),
    ] {
        assert!(text::parse(&input).is_err());
    }
    let deep_block: String = (0..MAX_DEPTH - 1)
        .map(|i| format!("{}a:\n", "  ".repeat(i)))
        .collect();
    assert!(text::parse(&deep_block).is_ok());
    let dashes = "- ".repeat(MAX_DEPTH) + "x";
    assert!(text::parse(&dashes).is_ok());
    let objects = "{a: ".repeat(MAX_DEPTH) + "1" + &"}".repeat(MAX_DEPTH);
    assert!(text::parse(&objects).is_ok());
    let tags: String = (0..2_000)
        .map(|i| format!("{}!t\n", "  ".repeat(i)))
        .collect();
    assert!(err(&tags).message.contains("nesting"));
}

// ---- printing -------------------------------------------------------------------

#[test]
fn wire_form() {
    let n = Node::object([
        ("a", Node::int(1)),
        ("b", Node::array([s("x"), s("y z")])),
        ("c", Node::tagged("delete", Value::Null)),
    ]);
    assert_eq!(n.to_string(), "{a: 1, b: [x, \"y z\"], c: !delete null}");
    let mut buf = String::from(">");
    n.write_wire(&mut buf);
    assert_eq!(buf, format!(">{n}"));
    assert_eq!(s("say \"hi\"").to_string(), "'say \"hi\"'");
}

#[test]
fn block_form() {
    let n = p(
        "{a: 1, b: {c: [1, {d: x, e: []}], f: {}}, g: !key(id) [{id: 1}], h: \"l1\\nl2\\n\", i: \"x\\ny\"}",
    );
    let b = n.to_block_string();
    assert_eq!(
        b,
        "a: 1\nb:\n  c:\n  - 1\n  - d: x\n    e: []\n  f: {}\ng: !key(id)\n- id: 1\nh: |\n  l1\n  l2\ni: |-\n  x\n  y\n"
    );
    assert_eq!(p(&b), n);
    assert_eq!(Node::int(3).to_block_string(), "3\n");
    let top = p("!t [[1, 2], [], !u {a: 1}]");
    let b = top.to_block_string();
    assert_eq!(b, "!t\n- - 1\n  - 2\n- []\n- !u\n  a: 1\n");
    assert_eq!(p(&b), top);
}

#[test]
fn every_conformance_file_parses() {
    let Ok(dir) = std::fs::read_dir("/work/shared/conformance") else {
        return; // not available outside the build machine
    };
    let mut lines = 0;
    for entry in dir.flatten() {
        let path = entry.path();
        if path.extension().is_none_or(|e| e != "tony") {
            continue;
        }
        let Ok(file) = std::fs::read_to_string(&path) else {
            continue;
        };
        for (i, line) in file.lines().enumerate() {
            if line.trim().is_empty() || line.starts_with('#') {
                continue;
            }
            let node = text::parse(line)
                .unwrap_or_else(|e| panic!("{}:{}: {e}\n{line}", path.display(), i + 1));
            // And what we print reads back the same.
            assert_eq!(text::parse(&node.to_string()), Ok(node.clone()), "{line}");
            assert_eq!(text::parse(&node.to_block_string()), Ok(node), "{line}");
            lines += 1;
        }
    }
    assert!(lines > 0);
}
