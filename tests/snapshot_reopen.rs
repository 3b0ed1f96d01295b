//! Reopen after snapshots, property-tested: random runs of commits (sets,
//! nested merges, deletes), explicit snapshots, automatic snapshots,
//! compaction and reopens; after every step that changes what is on disk,
//! reads at every commit equal the fold of the patches (or are
//! `Error::Compacted`, and only below the retained range).

mod common;
use common::{Fold, runtime, small_segments};

use logd::{Cutoff, Error, KPath, Node, Retention, Storage};
use proptest::prelude::*;

#[derive(Clone, Debug)]
enum Op {
    /// Commit `data` at `users.u{n}` (or `users.u{n}.sub` when `nested`).
    Commit { n: u8, nested: bool, data: i8 },
    /// Delete `users.u{n}`.
    Delete { n: u8 },
    /// `switch_and_snapshot`.
    Snapshot,
    /// Close and reopen.
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => (0u8..6, any::<bool>(), any::<i8>()).prop_map(|(n, nested, data)| Op::Commit { n, nested, data }),
        1 => (0u8..6).prop_map(|n| Op::Delete { n }),
        1 => Just(Op::Snapshot),
        1 => Just(Op::Reopen),
    ]
}

/// The retention of the compacting runs keeps at least this many commits.
const KEEP_RECENT: u64 = 10;

/// Every commit reads as the fold, or (when `compacting`) as compacted
/// below the range the policy must keep. (Compaction may run in the
/// background meanwhile, so the readable range can shrink during a check.)
async fn check(
    s: &Storage,
    states: &[Option<Node>],
    compacting: bool,
) -> Result<(), TestCaseError> {
    let leaf = KPath::parse("users.u2").unwrap();
    let last = states.len() as u64 - 1;
    let mut exact = false;
    for (c, st) in states.iter().enumerate().skip(1) {
        let want_leaf = st.as_ref().and_then(|n| n.get_path(&leaf)).cloned();
        let both = match s.read_state_at("", c as u64).await {
            Ok(root) => s.read_path_at(&leaf, c as u64).await.map(|l| (root, l)),
            Err(e) => Err(e),
        };
        match both {
            Ok((root, got_leaf)) => {
                prop_assert_eq!(&root, st, "root at {}", c);
                prop_assert_eq!(got_leaf, want_leaf, "users.u2 at {}", c);
                exact = true;
            }
            Err(Error::Compacted { .. }) => prop_assert!(
                compacting && (c as u64) + KEEP_RECENT <= last,
                "commit {} of {} compacted",
                c,
                last
            ),
            Err(e) => return Err(TestCaseError::fail(format!("read at {c}: {e}"))),
        }
    }
    if states.len() > 1 {
        prop_assert!(exact, "the newest commit is readable");
    }
    Ok(())
}

async fn run(ops: Vec<Op>, auto: bool, retention: Retention) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().unwrap();
    let o = small_segments(auto, retention);
    let mut s = Storage::open(dir.path(), o.clone()).await.unwrap();
    let mut m = Fold::new();
    for op in ops {
        match op {
            Op::Commit { n, nested, data } => m.commit_user(&s, n, nested, data).await,
            Op::Delete { n } => m.delete_user(&s, n).await,
            Op::Snapshot => {
                let info = s.switch_and_snapshot().await.unwrap();
                prop_assert_eq!(info.map(|i| i.commit), (m.last() > 0).then(|| m.last()));
                check(&s, &m.states, auto).await?;
            }
            Op::Reopen => {
                s.close().await.unwrap();
                s = Storage::open(dir.path(), o.clone()).await.unwrap();
                prop_assert_eq!(s.current_commit(), m.last());
                check(&s, &m.states, auto).await?;
            }
        }
    }
    check(&s, &m.states, auto).await?;
    s.close().await.unwrap();
    let s = Storage::open(dir.path(), o).await.unwrap();
    check(&s, &m.states, auto).await?;
    s.close().await.unwrap();
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

    #[test]
    fn reads_stay_exact_across_snapshots_and_reopens(ops in prop::collection::vec(op(), 1..60)) {
        runtime().block_on(run(ops, false, Retention::KeepAll))?;
    }

    #[test]
    fn reads_stay_exact_with_automatic_snapshots_and_compaction(
        ops in prop::collection::vec(op(), 1..60),
    ) {
        let retention = Retention::Tiered {
            keep_recent: Cutoff::Commits(KEEP_RECENT),
            per_tier: 1,
            first_tier: 8,
            multiplier: 2,
        };
        runtime().block_on(run(ops, true, retention))?;
    }
}
