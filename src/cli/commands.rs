//! `patch`, `get`, `log`, `check` and `stats`.

use std::path::Path;

use logd::{Options, Outcome, Patch, PatchMeta, Storage};

use super::util::{self, Format};

/// Options of `logd patch`.
#[derive(clap::Args, Debug)]
pub struct PatchArgs {
    /// Where the patch is applied (a kinded path; `""` is the root).
    pub path: String,
    /// The patch, as Tony text (JSON works too).
    pub data: String,
    /// A condition `PATH=PATTERN`: the state at PATH must match PATTERN (repeatable).
    #[arg(long = "match", value_name = "PATH=PATTERN")]
    pub matches: Vec<String>,
    /// Refuse (stale) when a commit after N affected the path.
    #[arg(long)]
    pub seq: Option<u64>,
    /// A label recorded with the commit.
    #[arg(long)]
    pub label: Option<String>,
}

/// Options of `logd get`.
#[derive(clap::Args, Debug)]
pub struct GetArgs {
    /// The path to read (`""` is the root).
    pub path: String,
    /// The commit to read at (default: the current commit).
    #[arg(long)]
    pub at: Option<u64>,
    /// Print in block form.
    #[arg(long, conflicts_with = "json")]
    pub block: bool,
    /// Print as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Options of `logd log`.
#[derive(clap::Args, Debug)]
pub struct LogArgs {
    /// The path (default: the root, i.e. every commit).
    #[arg(long, default_value = "")]
    pub path: String,
    /// Commits after this one (default 0).
    #[arg(long, default_value_t = 0)]
    pub from: u64,
    /// Up to and including this commit (default: the current commit).
    #[arg(long)]
    pub to: Option<u64>,
}

async fn open(dir: &Path) -> Result<Storage, String> {
    let storage = Storage::open(dir, Options::default())
        .await
        .map_err(|e| format!("cannot open store {}: {e}", dir.display()))?;
    if let Some((file, offset)) = storage.truncated_tail() {
        eprintln!(
            "logd: warning: cut a torn tail off {} at offset {offset} (an unfinished write)",
            file.display()
        );
    }
    Ok(storage)
}

/// Runs `body` on an open store and closes it, whatever `body` returned.
async fn with_store<T>(
    dir: &Path,
    body: impl AsyncFnOnce(&Storage) -> Result<T, String>,
) -> Result<T, String> {
    let storage = open(dir).await?;
    let result = body(&storage).await;
    let closed = storage.close().await;
    let value = result?;
    closed.map_err(|e| format!("close failed: {e}"))?;
    Ok(value)
}

/// The `--match` argument split at the first `=` that is outside quotes.
fn split_match(arg: &str) -> Result<(&str, &str), String> {
    let mut quote = false;
    let mut escaped = false;
    for (i, c) in arg.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quote => escaped = true,
            '"' => quote = !quote,
            '=' if !quote => return Ok((&arg[..i], &arg[i + 1..])),
            _ => {}
        }
    }
    Err(format!("bad --match {arg:?}: expected PATH=PATTERN"))
}

/// `logd patch`: prints `committed N`, `not matched` or `stale (latest N)`.
pub async fn patch(args: &PatchArgs, dir: &Path) -> Result<(), String> {
    let path = util::path("path", &args.path)?;
    let data = util::tony("DATA", &args.data)?;
    if args.matches.len() > 1 {
        return Err("only one --match per participant is supported".into());
    }
    let mut patch = Patch::new(path, data);
    for m in &args.matches {
        let (p, pattern) = split_match(m)?;
        let p = util::path("--match path", p)?;
        let pattern = util::tony("--match PATTERN", pattern)?;
        patch = patch.with_match(p, pattern);
    }
    let meta = PatchMeta {
        label: args.label.clone(),
        seq: args.seq,
        ..PatchMeta::default()
    };
    let outcome = with_store(dir, async |s: &Storage| {
        let tx = s.new_tx(1, meta).await.map_err(|e| e.to_string())?;
        let mut p = tx.new_patcher(patch).await.map_err(|e| e.to_string())?;
        p.commit().await.map_err(|e| e.to_string())
    })
    .await?;
    println!("{}", describe(outcome));
    Ok(())
}

/// The one-line form of an outcome.
pub fn describe(outcome: Outcome) -> String {
    match outcome {
        Outcome::Committed { commit } => format!("committed {commit}"),
        Outcome::NotMatched => "not matched".into(),
        Outcome::Stale { latest } => format!("stale (latest {latest})"),
    }
}

/// `logd get`: prints the node, or nothing (and a note on stderr) when the
/// path is absent at that commit; exit 0 either way.
pub async fn get(args: &GetArgs, dir: &Path) -> Result<(), String> {
    let path = util::path("path", &args.path)?;
    let format = if args.block {
        Format::Block
    } else if args.json {
        Format::Json
    } else {
        Format::Wire
    };
    let at = args.at;
    let (node, commit) = with_store(dir, async |s: &Storage| {
        let commit = at.unwrap_or_else(|| s.current_commit());
        let node = s
            .read_path_at(&path, commit)
            .await
            .map_err(|e| e.to_string())?;
        Ok((node, commit))
    })
    .await?;
    match node {
        Some(node) => println!("{}", util::show(&node, format)?),
        None => eprintln!("logd: {:?} is absent at commit {commit}", args.path),
    }
    Ok(())
}

/// `logd log`: one line per commit, `<commit> <time> <tx> <label or ->`.
pub async fn log(args: &LogArgs, dir: &Path) -> Result<(), String> {
    util::path("--path", &args.path)?;
    let commits = with_store(dir, async |s: &Storage| {
        let to = args.to.unwrap_or_else(|| s.current_commit());
        match s.history(&args.path, args.from, to).await {
            // Older commits were compacted away: list what is retained.
            Err(logd::Error::Compacted { oldest, .. }) if args.from == 0 => {
                eprintln!("logd: commits up to {oldest} were compacted; listing the later ones");
                s.history(&args.path, oldest, to).await
            }
            other => other,
        }
        .map_err(|e| e.to_string())
    })
    .await?;
    for c in commits {
        println!(
            "{} {} {} {}",
            c.commit,
            util::rfc3339(c.when),
            c.tx_id,
            c.label.as_deref().unwrap_or("-")
        );
    }
    Ok(())
}

/// `logd check`: read-only; prints each problem as `file: offset: reason`
/// and fails when there is any.
pub fn check(dir: &Path) -> Result<(), String> {
    let report = logd::inspect::check(dir);
    for p in &report.problems {
        println!("{p}");
    }
    println!(
        "checked {} segments ({} records), {} snapshots ({} entries), meta {}: {}",
        report.segments,
        report.records,
        report.snapshots,
        report.snapshot_entries,
        if report.meta { "present" } else { "absent" },
        if report.is_ok() {
            "ok".to_string()
        } else {
            format!("{} problems", report.problems.len())
        }
    );
    match &report.checkpoint {
        Some(Ok(c)) => println!("index checkpoint at commit {c}"),
        Some(Err(p)) => println!("index checkpoint unusable (open ignores it): {p}"),
        None => {}
    }
    if report.is_ok() {
        Ok(())
    } else {
        Err(format!("{} problems found", report.problems.len()))
    }
}

/// `logd stats`.
pub async fn stats(dir: &Path) -> Result<(), String> {
    let r = with_store(dir, async |s: &Storage| {
        logd::inspect::stats(s).await.map_err(|e| e.to_string())
    })
    .await?;
    println!("commit: {}", r.commit);
    let seg_total: u64 = r.segments.iter().map(|f| f.bytes).sum();
    println!("segments: {} ({} bytes)", r.segments.len(), seg_total);
    for f in &r.segments {
        println!("  wal/{} {}", f.name, f.bytes);
    }
    let snap_total: u64 = r.snapshots.iter().map(|f| f.bytes).sum();
    println!("snapshots: {} ({} bytes)", r.snapshots.len(), snap_total);
    for f in &r.snapshots {
        println!("  snap/{} {}", f.name, f.bytes);
    }
    println!(
        "index: {} commits, {} nodes, {} names, {} ends, ~{} bytes",
        r.index.commits, r.index.nodes, r.index.names, r.index.ends, r.index.approx_bytes
    );
    println!(
        "index checkpoint: {:?} ({} bytes)",
        r.checkpoint, r.checkpoint_bytes
    );
    Ok(())
}

/// `logd snapshot`: seals the active segment and writes a snapshot at the
/// current commit.
pub async fn snapshot(dir: &Path) -> Result<(), String> {
    let info = with_store(dir, async |s: &Storage| {
        s.switch_and_snapshot().await.map_err(|e| e.to_string())
    })
    .await?;
    match info {
        Some(info) => println!("{}", describe_snapshot(&info)),
        None => println!("nothing to snapshot: the store has no commit"),
    }
    Ok(())
}

/// The one-line form of a snapshot.
pub fn describe_snapshot(info: &logd::SnapshotInfo) -> String {
    format!(
        "snapshot at commit {}: {} bytes, {} entries, {} blocks ({}), from {} + {} commits, {} ms",
        info.commit,
        info.bytes,
        info.entries,
        info.blocks,
        info.path.display(),
        info.from,
        info.replayed,
        info.took.as_millis()
    )
}

/// `logd compact`: applies the retention policy.
pub async fn compact(dir: &Path) -> Result<(), String> {
    let r = with_store(dir, async |s: &Storage| {
        s.compact().await.map_err(|e| e.to_string())
    })
    .await?;
    println!("{}", describe_compaction(&r));
    Ok(())
}

/// The one-line form of a compaction.
pub fn describe_compaction(r: &logd::CompactionReport) -> String {
    format!(
        "compacted: dropped {} snapshots, {} segments, freed {} bytes; oldest readable commit {}",
        r.dropped_snapshots.len(),
        r.dropped_segments.len(),
        r.bytes_freed,
        r.oldest_commit
    )
}

#[cfg(test)]
mod tests {
    use super::split_match;

    #[test]
    fn match_splits_outside_quotes() {
        assert_eq!(split_match("a.b=1").unwrap(), ("a.b", "1"));
        assert_eq!(
            split_match("\"x=y\".b=\"=\"").unwrap(),
            ("\"x=y\".b", "\"=\"")
        );
        assert!(split_match("a.b").is_err());
    }
}
