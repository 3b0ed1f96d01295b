//! Property tests of Tony text: every node reads back from its wire form and
//! from its block form, and the parser never panics on any input.
//!
//! Set `LOGD_PROPTEST_CASES` to run more cases than the fast default.

use logd_core::text;
use logd_core::{Key, Node, Tag, Value};
use proptest::prelude::*;

fn cases(default: u32) -> u32 {
    std::env::var("LOGD_PROPTEST_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

/// Strings chosen to look like other things: numbers, keywords, quotes,
/// colons, brackets, comments, separators, block markers, odd whitespace.
const ODD: &[&str] = &[
    "",
    " ",
    "1",
    "-1",
    "1.0",
    "1e5",
    "0x10",
    "01",
    "-",
    "- x",
    "-x",
    "true",
    "false",
    "null",
    ".inf",
    ".nan",
    "-.inf",
    "inf",
    "NaN",
    "a:",
    "a:b",
    "a: b",
    ":",
    "::",
    "a::b",
    "#",
    "a#b",
    "# c",
    "[",
    "]",
    "[a]",
    "a]",
    "{",
    "}",
    "{a}",
    "a{b}",
    "f(x)",
    "f(",
    ")",
    "!t",
    "a!",
    "'",
    "\"",
    "'\"",
    "a'b",
    "a\"b",
    "\\",
    "\\n",
    "|",
    "|-",
    "---",
    "a,b",
    ",",
    "a b",
    " a",
    "a ",
    "\t",
    "\n",
    "a\n",
    "a\nb",
    "a\n\n",
    "\na",
    " a\n b\n",
    "a\r\nb",
    "é",
    "日本",
    "😀",
    "\u{0}",
    "\u{7f}",
    "\u{85}",
    "\u{2028}",
    "\u{feff}x",
    "key: value",
    "- a: 1",
    "{a: 1}",
    "[1, 2]",
];

fn string_strategy() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => "[a-z][a-z0-9_]{0,6}",
        2 => prop::sample::select(ODD).prop_map(str::to_owned),
        2 => "\\PC{0,12}",
        1 => any::<String>(),
        1 => "[a-z:#\\[\\]{}()'\" ,!|<>^`$*-]{0,8}",
        2 => (prop::collection::vec("[ a-z|#:-]{0,6}", 1..4), 0usize..3)
            .prop_map(|(lines, nl)| lines.join("\n") + &"\n".repeat(nl)),
        // Multi-line strings the block form prints as `|` / `|-` literals.
        2 => (prop::collection::vec("[ a-z#:|-]{0,5}[a-z#]", 2..4), any::<bool>())
            .prop_map(|(lines, nl)| lines.join("\n") + if nl { "\n" } else { "" }),
    ]
}

fn tag_strategy() -> impl Strategy<Value = Tag> {
    let name = "[a-z][a-z0-9_-]{0,5}";
    let arg = prop_oneof![
        "[a-z0-9.]{0,4}",
        ("[a-z]{1,3}", prop::collection::vec("[a-z0-9]{1,3}", 0..3))
            .prop_map(|(f, a)| format!("{f}({})", a.join(","))),
    ];
    let part =
        (name, prop::option::of(prop::collection::vec(arg, 0..3))).prop_map(
            |(n, args)| match args {
                Some(a) => format!("{n}({})", a.join(",")),
                None => n,
            },
        );
    prop::collection::vec(part, 1..3).prop_map(|parts| Tag::new(parts.join(".")))
}

fn scalar_strategy() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::Int),
        prop_oneof![
            any::<f64>().prop_filter("finite", |f| f.is_finite()),
            prop::sample::select(&[0.0, -0.0, 1.0, 2.5, 1e300, 1e-7, 1e16, -1e-300][..]),
        ]
        .prop_map(Value::Float),
        string_strategy().prop_map(Value::String),
    ]
}

fn node_strategy() -> impl Strategy<Value = Node> {
    let leaf = (
        prop::option::weighted(0.2, tag_strategy()),
        scalar_strategy(),
    )
        .prop_map(|(tag, value)| Node { tag, value });
    leaf.prop_recursive(5, 64, 6, |inner| {
        let value = prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((string_strategy(), inner.clone()), 0..6).prop_map(|kv| {
                let mut seen = std::collections::HashSet::new();
                Value::Object(
                    kv.into_iter()
                        .filter(|(k, _)| seen.insert(k.clone()))
                        .map(|(k, v)| (Key::Field(k), v))
                        .collect(),
                )
            }),
            prop::collection::vec((any::<u32>(), inner), 1..5).prop_map(|kv| {
                let mut seen = std::collections::HashSet::new();
                Value::Object(
                    kv.into_iter()
                        .filter(|(k, _)| seen.insert(*k))
                        .map(|(k, v)| (Key::Index(k), v))
                        .collect(),
                )
            }),
        ];
        (prop::option::weighted(0.2, tag_strategy()), value)
            .prop_map(|(tag, value)| Node { tag, value })
    })
}

/// One edit of a printed document, at a character boundary.
#[derive(Debug, Clone)]
enum Edit {
    Delete(usize, usize),
    Insert(usize, char),
    Duplicate(usize, usize),
}

fn apply_edit(s: &str, e: &Edit) -> String {
    let bounds: Vec<usize> = s.char_indices().map(|(i, _)| i).chain([s.len()]).collect();
    let at = |i: usize| bounds[i % bounds.len()];
    match *e {
        Edit::Delete(a, n) => {
            let a = at(a);
            let b = bounds
                .iter()
                .copied()
                .find(|&b| b >= a + n % 8)
                .unwrap_or(s.len());
            format!("{}{}", &s[..a], &s[b..])
        }
        Edit::Insert(a, c) => {
            let a = at(a);
            format!("{}{c}{}", &s[..a], &s[a..])
        }
        Edit::Duplicate(a, b) => {
            let (a, b) = (at(a), at(b));
            let (a, b) = (a.min(b), a.max(b));
            format!("{}{}", &s[..b], &s[a..])
        }
    }
}

fn edit_strategy() -> impl Strategy<Value = Edit> {
    prop_oneof![
        (any::<usize>(), any::<usize>()).prop_map(|(a, n)| Edit::Delete(a, n)),
        (
            any::<usize>(),
            prop::sample::select(
                &[
                    '[', ']', '{', '}', ',', ':', ' ', '\n', '-', '!', '#', '"', '\'', '|', '\\',
                    '(', ')', '\t', '0', 'a', '.', 'é'
                ][..]
            )
        )
            .prop_map(|(a, c)| Edit::Insert(a, c)),
        (any::<usize>(), any::<usize>()).prop_map(|(a, b)| Edit::Duplicate(a, b)),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases(512)))]

    #[test]
    fn wire_form_round_trips(node in node_strategy()) {
        let printed = node.to_string();
        prop_assert!(!printed.contains('\n'), "wire form is one line: {printed}");
        let back = text::parse(&printed);
        prop_assert_eq!(back.as_ref(), Ok(&node), "printed: {}", printed);
    }

    #[test]
    fn block_form_round_trips(node in node_strategy()) {
        let printed = node.to_block_string();
        let back = text::parse(&printed);
        prop_assert_eq!(back.as_ref(), Ok(&node), "printed:\n{}", printed);
    }

    #[test]
    fn documents_round_trip(nodes in prop::collection::vec(node_strategy(), 0..4)) {
        let stream: String = nodes.iter().map(|n| format!("---\n{}", n.to_block_string())).collect();
        prop_assert_eq!(text::parse_documents(&stream), Ok(nodes));
    }

    #[test]
    fn parse_never_panics(input in any::<String>()) {
        let _ = text::parse(&input);
        let _ = text::parse_documents(&input);
    }

    #[test]
    fn parse_never_panics_on_tony_like_text(input in "[\\[\\]{}:, \n\t#!|'\"a-c0-9.(\\\\)-]{0,40}") {
        if let Ok(n) = text::parse(&input) {
            // Whatever parses prints to something that reads back the same.
            prop_assert_eq!(text::parse(&n.to_string()), Ok(n));
        }
    }

    #[test]
    fn parse_never_panics_on_mutated_documents(
        node in node_strategy(),
        edits in prop::collection::vec(edit_strategy(), 1..4),
        block in any::<bool>(),
    ) {
        let mut s = if block { node.to_block_string() } else { node.to_string() };
        for e in &edits {
            s = apply_edit(&s, e);
        }
        if let Ok(n) = text::parse(&s) {
            let reprinted = n.to_string();
            let again = text::parse(&reprinted);
            // Only objects that mix key kinds cannot be printed back.
            if let Err(e) = &again {
                prop_assert!(e.message.contains("mix"), "{s:?} -> {reprinted:?}: {e}");
            } else {
                prop_assert_eq!(again, Ok(n));
            }
        }
    }
}
