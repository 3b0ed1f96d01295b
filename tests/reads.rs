//! `read_state_at` through the public API, against its oracle: folding
//! `patch::apply` over the committed patches. Every commit, every path that
//! ever existed (plus some that never did), before and after a reopen; the
//! long histories go through the materialized-state path as well.

mod common;

use std::collections::BTreeSet;

use common::commit_one;
use logd::{Error, KPath, Key, Node, Options, Outcome, Storage, Value, patch};
use proptest::prelude::*;

/// These tests are about read answers, not fsync; buffered keeps them fast.
fn options() -> Options {
    common::buffered()
}

/// All paths of a document (the root included).
fn all_paths(node: &Node, at: &KPath, out: &mut BTreeSet<KPath>) {
    out.insert(at.clone());
    match &node.value {
        Value::Object(kv) => {
            for (k, v) in kv {
                let seg = match k {
                    Key::Field(f) => logd::Segment::Field(f.clone()),
                    Key::Index(i) => logd::Segment::Sparse(*i),
                };
                all_paths(v, &at.child(seg), out);
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                all_paths(v, &at.child(logd::Segment::Index(i as u32)), out);
            }
        }
        _ => {}
    }
}

/// One step of a random history: a participant path and its data.
fn step() -> impl Strategy<Value = (String, Node)> {
    let user = 0..6u32;
    let leaf = prop_oneof![
        (0..100i64).prop_map(Node::int),
        "[a-z]{1,4}".prop_map(Node::string),
        Just(Node::null()),
    ];
    prop_oneof![
        (user.clone(), leaf.clone()).prop_map(|(u, v)| (format!("users.u{u}.n"), v)),
        (user.clone(), leaf.clone(), leaf.clone()).prop_map(|(u, a, b)| (
            format!("users.u{u}"),
            Node::object([("name", a), ("tags", Node::array([b]))])
        )),
        user.clone()
            .prop_map(|u| (format!("users.u{u}"), Node::tagged("delete", Value::Null))),
        (0..4u32, leaf.clone()).prop_map(|(i, v)| (format!("sparse{{{i}}}"), v)),
        (leaf.clone(), leaf.clone()).prop_map(|(a, b)| ("list".to_owned(), Node::array([a, b]))),
        leaf.prop_map(|v| ("list[0]".to_owned(), v)),
        (0..3i64).prop_map(|i| (
            "keyed".to_owned(),
            Node::tagged(
                "key(id)",
                Value::Array(vec![Node::object([
                    ("id", Node::int(i)),
                    ("v", Node::int(i))
                ])])
            )
        )),
    ]
}

/// Commits the history (steps that fail are refused and left out, as a real
/// store does), returns the folded states after each commit (index = commit).
async fn build(s: &Storage, steps: &[(String, Node)]) -> Vec<Option<Node>> {
    let mut states = vec![None];
    for (path, data) in steps {
        match commit_one(s, path, data.clone()).await {
            Ok(Outcome::Committed { commit }) => {
                assert_eq!(commit as usize, states.len(), "gap-free numbering");
                let root = patch::merge(&[(KPath::parse(path).unwrap(), data.clone())]).unwrap();
                let prev = states.last().cloned().flatten();
                states.push(patch::apply(prev.as_ref(), &root).unwrap());
            }
            Ok(other) => panic!("unconditional patch gave {other:?}"),
            Err(Error::Patch(_)) => {} // e.g. list[0] before the list exists
            Err(e) => panic!("commit failed: {e}"),
        }
    }
    states
}

async fn check_all(s: &Storage, states: &[Option<Node>]) {
    let mut paths = BTreeSet::new();
    for st in states.iter().flatten() {
        all_paths(st, &KPath::root(), &mut paths);
    }
    for extra in ["nope", "users.u9", "list[7]", "sparse{9}.x"] {
        paths.insert(KPath::parse(extra).unwrap());
    }
    for (c, st) in states.iter().enumerate() {
        let root = s.read_state_at("", c as u64).await.unwrap();
        assert_eq!(&root, st, "root at commit {c}");
        for p in &paths {
            let want = st.as_ref().and_then(|n| n.get_path(p)).cloned();
            let got = s.read_path_at(p, c as u64).await.unwrap();
            assert_eq!(got, want, "path {p} at commit {c}");
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("LOGD_PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(12),
        ..ProptestConfig::default()
    })]

    #[test]
    fn every_read_equals_the_fold_and_survives_reopen(steps in prop::collection::vec(step(), 1..40)) {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async {
            let dir = tempfile::tempdir().unwrap();
            let s = Storage::open(dir.path(), options()).await.unwrap();
            let states = build(&s, &steps).await;
            check_all(&s, &states).await;
            s.close().await.unwrap();
            let s = Storage::open(dir.path(), options()).await.unwrap();
            assert_eq!(s.current_commit() as usize, states.len() - 1);
            check_all(&s, &states).await;
            s.close().await.unwrap();
        });
    }
}

/// Long enough that root reads go through the materialized state and its
/// checkpoints, in both directions (forward, then back in time).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_history_materialized_reads_equal_the_fold() {
    let dir = tempfile::tempdir().unwrap();
    let s = Storage::open(dir.path(), options()).await.unwrap();
    let steps: Vec<(String, Node)> = (0..1300i64)
        .map(|i| {
            if i % 97 == 0 {
                (
                    format!("users.u{}", i % 50),
                    Node::tagged("delete", Value::Null),
                )
            } else {
                (
                    format!("users.u{}", i % 50),
                    Node::object([
                        ("n", Node::int(i)),
                        ("tags", Node::array([Node::string("a")])),
                    ]),
                )
            }
        })
        .collect();
    let states = build(&s, &steps).await;
    // Forward through the cache, then backwards (checkpoints), then random.
    for c in [
        1300u64, 1200, 1024, 700, 513, 512, 511, 100, 5, 0, 1299, 1025,
    ] {
        let want = &states[c as usize];
        assert_eq!(&s.read_state_at("", c).await.unwrap(), want, "root at {c}");
        let p = KPath::parse("users.u7").unwrap();
        let want_p = want.as_ref().and_then(|n| n.get_path(&p)).cloned();
        assert_eq!(
            s.read_path_at(&p, c).await.unwrap(),
            want_p,
            "users.u7 at {c}"
        );
        let users = KPath::parse("users").unwrap();
        let want_u = want.as_ref().and_then(|n| n.get_path(&users)).cloned();
        assert_eq!(
            s.read_path_at(&users, c).await.unwrap(),
            want_u,
            "users at {c}"
        );
    }
    s.close().await.unwrap();
}

#[tokio::test]
async fn future_commits_and_bad_paths_are_typed_errors() {
    let dir = tempfile::tempdir().unwrap();
    let s = Storage::open(dir.path(), options()).await.unwrap();
    commit_one(&s, "a", Node::int(1)).await.unwrap();
    assert!(matches!(
        s.read_state_at("a", 2).await,
        Err(Error::FutureCommit { commit: 2, .. })
    ));
    assert!(matches!(
        s.read_state_at("a..b", 1).await,
        Err(Error::InvalidPath { offset: 2, .. })
    ));
    assert_eq!(s.read_state_at("a", 0).await, Ok(None));
    s.close().await.unwrap();
    assert_eq!(s.read_state_at("a", 1).await, Err(Error::Closed));
}

/// A read issued after an acknowledgement sees the commit, while other
/// writers keep committing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_your_writes_under_concurrent_writers() {
    let dir = tempfile::tempdir().unwrap();
    let s = Storage::open(dir.path(), Options::default()).await.unwrap();
    let mut tasks = Vec::new();
    for w in 0..8 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..40i64 {
                let path = format!("w{w}.v");
                let out = commit_one(&s, &path, Node::int(i)).await.unwrap();
                let Outcome::Committed { commit } = out else {
                    panic!("{out:?}")
                };
                assert!(s.current_commit() >= commit);
                let got = s.read_state_at(&path, commit).await.unwrap();
                assert_eq!(got, Some(Node::int(i)));
                let now = s.read_state_at(&path, s.current_commit()).await.unwrap();
                assert_eq!(now, Some(Node::int(i)), "nobody else writes {path}");
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(s.current_commit(), 8 * 40);
    s.close().await.unwrap();
}
