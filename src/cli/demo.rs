//! `logd demo`: a scripted tour of the public API in a fresh directory
//! under `--dir` (`<dir>/demo-<unix-millis>`), kept afterwards so it can be
//! inspected with the other commands.

use std::path::Path;

use logd::{KPath, Node, Options, Patch, PatchMeta, Storage};

use super::commands::describe;

fn p(text: &str) -> Result<KPath, String> {
    KPath::parse(text).map_err(|e| e.to_string())
}

fn t(text: &str) -> Result<Node, String> {
    logd::text::parse(text).map_err(|e| e.to_string())
}

fn e(err: logd::Error) -> String {
    err.to_string()
}

async fn show(s: &Storage, path: &str, commit: u64) -> Result<(), String> {
    let node = s.read_state_at(path, commit).await.map_err(e)?;
    let text = node.map_or_else(|| "(absent)".to_string(), |n| n.to_string());
    let shown = if path.is_empty() { "(root)" } else { path };
    println!("    {shown} @ {commit}: {text}");
    Ok(())
}

async fn one(s: &Storage, patch: Patch, label: &str) -> Result<logd::Outcome, String> {
    let meta = PatchMeta {
        label: Some(label.to_string()),
        ..PatchMeta::default()
    };
    let tx = s.new_tx(1, meta).await.map_err(e)?;
    let mut patcher = tx.new_patcher(patch).await.map_err(e)?;
    patcher.commit().await.map_err(e)
}

/// Runs the tour.
pub async fn run(base: &Path) -> Result<(), String> {
    let millis = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    let dir = base.join(format!("demo-{millis}"));
    if dir.exists() {
        return Err(format!("{} already exists", dir.display()));
    }
    std::fs::create_dir_all(&dir)
        .map_err(|err| format!("cannot create {}: {err}", dir.display()))?;
    println!("== logd demo in a fresh store at {}", dir.display());
    let s = Storage::open(&dir, Options::default()).await.map_err(e)?;

    println!("\n1. seed the shop (one participant)");
    let o = one(
        &s,
        Patch::new(
            p("shop")?,
            t("{stock: {apples: 10, pears: 4}, orders: {}}")?,
        ),
        "seed",
    )
    .await?;
    println!(
        "    patch shop {{stock: {{apples: 10, pears: 4}}, orders: {{}}}} -> {}",
        describe(o)
    );
    let seeded = s.current_commit();

    println!("\n2. a 3-participant transaction from 3 tasks (they find it with get_tx)");
    let meta = PatchMeta {
        label: Some("order-1".into()),
        ..PatchMeta::default()
    };
    let tx = s.new_tx(3, meta).await.map_err(e)?;
    let id = tx.id();
    println!("    new_tx(3) -> {id}");
    let parts = [
        ("shop.stock.apples", "7"),
        ("shop.orders.o1", "{item: apples, qty: 3}"),
        ("audit.o1", "\"reserved 3 apples\""),
    ];
    let mut tasks = Vec::new();
    for (i, (path, data)) in parts.iter().enumerate() {
        let s = s.clone();
        let patch = Patch::new(p(path)?, t(data)?);
        let path = path.to_string();
        let data = data.to_string();
        tasks.push(tokio::spawn(async move {
            let tx = s.get_tx(id).await.map_err(e)?;
            let mut patcher = tx.new_patcher(patch).await.map_err(e)?;
            let o = patcher.commit().await.map_err(e)?;
            Ok::<_, String>(format!(
                "    task {i}: patch {path} {data} -> {}",
                describe(o)
            ))
        }));
    }
    for task in tasks {
        println!("{}", task.await.map_err(|err| err.to_string())??);
    }
    let ordered = s.current_commit();

    println!("\n3. a conditional patch whose match does not hold is refused");
    let o = one(
        &s,
        Patch::new(p("shop.stock.apples")?, t("0")?).with_match(p("shop.stock.apples")?, t("100")?),
        "sell-all",
    )
    .await?;
    println!(
        "    patch shop.stock.apples 0 --match shop.stock.apples=100 -> {}",
        describe(o)
    );
    let o = one(
        &s,
        Patch::new(p("shop.stock.pears")?, t("3")?).with_match(p("shop.stock.pears")?, t("4")?),
        "sell-pear",
    )
    .await?;
    println!(
        "    patch shop.stock.pears 3 --match shop.stock.pears=4 -> {}",
        describe(o)
    );
    let current = s.current_commit();

    println!("\n4. reads at several commits");
    for c in [seeded, ordered, current] {
        show(&s, "shop.stock", c).await?;
    }
    show(&s, "shop.orders", seeded).await?;
    show(&s, "shop.orders", current).await?;

    println!("\n5. the history of shop.stock");
    for c in s.history("shop.stock", 0, current).await.map_err(e)? {
        println!(
            "    commit {} {} {} {}",
            c.commit,
            super::util::rfc3339(c.when),
            c.tx_id,
            c.label.as_deref().unwrap_or("-")
        );
    }

    println!(
        "\n6. switch the log and snapshot; then compact (the default retention keeps every\n   commit readable, so it drops nothing; Options::compaction = Retention::Tiered\n   {{ keep_recent, .. }} would drop what only older commits need)"
    );
    match s.switch_and_snapshot().await.map_err(e)? {
        Some(info) => println!("    {}", super::commands::describe_snapshot(&info)),
        None => println!("    nothing to snapshot"),
    }
    let report = s.compact().await.map_err(e)?;
    println!("    {}", super::commands::describe_compaction(&report));
    show(&s, "shop.stock", seeded).await?;

    println!("\n7. close and reopen: everything is still there");
    s.close().await.map_err(e)?;
    let s = Storage::open(&dir, Options::default()).await.map_err(e)?;
    println!("    reopened at commit {}", s.current_commit());
    show(&s, "", s.current_commit()).await?;
    show(&s, "shop.stock", ordered).await?;
    s.close().await.map_err(e)?;
    println!(
        "\n== done; inspect it with `cargo run --release -- --dir {0} stats` (or `log`,\n   `get shop`); after `cargo install --path .` that is `logd --dir {0} stats`",
        dir.display()
    );
    Ok(())
}
