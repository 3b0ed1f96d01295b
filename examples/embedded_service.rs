//! Embedding logd in an async service: a few handler tasks share one
//! [`Storage`], one request spans a multi-participant transaction (each
//! handler contributes its own patch and finds the transaction by id), and
//! reads look at old commits. Run with `cargo run --example embedded_service`.

use logd::{KPath, Node, Options, Outcome, Patch, PatchMeta, Storage};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A handler: contributes `data` at `path` to transaction `id`.
async fn handler(
    storage: Storage,
    id: logd::TxId,
    path: &'static str,
    data: &'static str,
) -> Result<Outcome, BoxError> {
    let tx = storage.get_tx(id).await?;
    let patch = Patch::new(KPath::parse(path)?, logd::text::parse(data)?);
    let mut patcher = tx.new_patcher(patch).await?;
    Ok(patcher.commit().await?)
}

/// The whole service run, in `dir`; returns the final commit.
pub async fn run(dir: &std::path::Path) -> Result<u64, BoxError> {
    let storage = Storage::open(dir, Options::default()).await?;

    // Independent requests from several tasks: one account each.
    let mut tasks = Vec::new();
    for i in 0..4 {
        let s = storage.clone();
        tasks.push(tokio::spawn(async move {
            let tx = s.new_tx(1, PatchMeta::default()).await?;
            let path = KPath::parse(&format!("accounts.a{i}"))?;
            let mut p = tx
                .new_patcher(Patch::new(
                    path,
                    Node::object([("balance", Node::int(100))]),
                ))
                .await?;
            Ok::<_, BoxError>(p.commit().await?)
        }));
    }
    for t in tasks {
        let outcome = t.await??;
        println!("open account: {outcome:?}");
    }
    let before_transfer = storage.current_commit();

    // One request handled by two handlers: a transfer is a 2-participant
    // transaction; each side only knows the transaction id.
    let tx = storage
        .new_tx(
            2,
            PatchMeta {
                label: Some("transfer a0->a1".into()),
                ..PatchMeta::default()
            },
        )
        .await?;
    let id = tx.id();
    let debit = tokio::spawn(handler(storage.clone(), id, "accounts.a0.balance", "70"));
    let credit = tokio::spawn(handler(storage.clone(), id, "accounts.a1.balance", "130"));
    let (d, c) = (debit.await??, credit.await??);
    assert_eq!(d, c, "every participant gets the same outcome");
    println!("transfer: {d:?}");

    // Reads at the current and at an old commit.
    let now = storage.current_commit();
    for commit in [before_transfer, now] {
        let a0 = storage.read_state_at("accounts.a0", commit).await?;
        let a1 = storage.read_state_at("accounts.a1", commit).await?;
        println!(
            "at commit {commit}: a0 = {}, a1 = {}",
            a0.map_or("absent".into(), |n| n.to_string()),
            a1.map_or("absent".into(), |n| n.to_string())
        );
    }
    for c in storage.history("accounts.a0", 0, now).await? {
        println!(
            "a0 changed at commit {} by {} ({:?})",
            c.commit, c.tx_id, c.label
        );
    }
    storage.close().await?;
    Ok(now)
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let dir = tempfile::tempdir()?;
    let last = run(dir.path()).await?;
    println!("done at commit {last}");
    Ok(())
}
