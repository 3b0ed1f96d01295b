//! The store commands: `patch`, `put`, `delete`, `get`, `ls`, `export`,
//! `import`, `diff`, `log`, `check`, `stats`, `snapshot` and `compact`.
//!
//! Each prints text, or JSON with `--json` (see [`super::out`] for the
//! mapping and the exit codes), and returns the exit code of its outcome.

use std::io::Read as _;
use std::path::PathBuf;

use logd::{KPath, Kind, Node, Options, Outcome, Patch, PatchMeta, Segment, Storage, Value};
use serde_json::json;

use super::Ctx;
use super::out::{CliError, Code, out};
use super::util::{self, Format};

/// Options of `logd patch` and `logd put`.
#[derive(clap::Args, Debug)]
pub struct PatchArgs {
    /// Where DATA goes (a kinded path; `""` is the root).
    pub path: String,
    /// Tony text (JSON works too); `-` reads stdin, `@FILE` a file.
    pub data: String,
    /// Store DATA as a string, verbatim (after `-` / `@FILE`).
    #[arg(long)]
    pub string: bool,
    #[command(flatten)]
    pub cond: CondArgs,
}

/// The conditions and label of a write.
#[derive(clap::Args, Debug)]
pub struct CondArgs {
    /// A condition `PATH=PATTERN`: the state at PATH must match PATTERN.
    /// Repeatable: all must hold (else exit 3, nothing written).
    #[arg(long = "match", value_name = "PATH=PATTERN")]
    pub matches: Vec<String>,
    /// Refuse (stale, exit 3) when a commit after N affected the path.
    #[arg(long)]
    pub seq: Option<u64>,
    /// A label recorded with the commit.
    #[arg(long)]
    pub label: Option<String>,
}

/// Options of `logd delete`.
#[derive(clap::Args, Debug)]
pub struct DeleteArgs {
    /// The path to remove.
    pub path: String,
    #[command(flatten)]
    pub cond: CondArgs,
}

/// Options of `logd get` and `logd ls`.
#[derive(clap::Args, Debug)]
pub struct GetArgs {
    /// The path to read (`""` is the root).
    pub path: String,
    /// The commit to read at (default: the current commit).
    #[arg(long)]
    pub at: Option<u64>,
    /// Print in block form (get only).
    #[arg(long)]
    pub block: bool,
}

/// Options of `logd export`.
#[derive(clap::Args, Debug)]
pub struct ExportArgs {
    /// The path to export (`""`, the default, is the whole document).
    #[arg(default_value = "")]
    pub path: String,
    /// The commit to export (default: the current commit).
    #[arg(long)]
    pub at: Option<u64>,
    /// Write to this file instead of stdout.
    #[arg(long, short)]
    pub output: Option<PathBuf>,
    /// Tony block form instead of the one-line wire form.
    #[arg(long)]
    pub block: bool,
}

/// Options of `logd import`.
#[derive(clap::Args, Debug)]
pub struct ImportArgs {
    /// Where the document goes (`""` is the root).
    pub path: String,
    /// The file to read (`-`, the default, is stdin). Tony, or JSON with --json.
    #[arg(default_value = "-")]
    pub file: String,
    /// A label recorded with the commit.
    #[arg(long)]
    pub label: Option<String>,
}

/// Options of `logd diff`.
#[derive(clap::Args, Debug)]
pub struct DiffArgs {
    /// The path (`""` is the root).
    pub path: String,
    /// The older commit.
    #[arg(long)]
    pub from: u64,
    /// The newer commit (default: the current commit).
    #[arg(long)]
    pub to: Option<u64>,
}

/// Options of `logd log`.
#[derive(clap::Args, Debug)]
pub struct LogArgs {
    /// The path (default: the root, i.e. every commit).
    #[arg(long, default_value = "")]
    pub path: String,
    /// The first commit listed, inclusive (default: the oldest retained).
    #[arg(long)]
    pub from: Option<u64>,
    /// The last commit listed, inclusive (default: the current commit).
    #[arg(long)]
    pub to: Option<u64>,
}

/// The options a command opens the store with.
fn options(ctx: &Ctx) -> Options {
    // Only a command that adds data creates a store: on a mistyped `--dir`
    // every other one is `Error::NoStore` (exit 1), not a new empty store.
    // (`ctx.read_only` is for a read-only open that also skips the lock and
    // every write, not built yet.)
    let _ = ctx.read_only;
    let mut o = Options::default();
    o.create = ctx.creates;
    o
}

pub(super) async fn open(ctx: &Ctx) -> Result<Storage, CliError> {
    let storage = Storage::open(&ctx.dir, options(ctx))
        .await
        .map_err(|e| CliError::store(&format!("cannot open store {}", ctx.dir.display()), e))?;
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
    ctx: &Ctx,
    body: impl AsyncFnOnce(&Storage) -> Result<T, CliError>,
) -> Result<T, CliError> {
    let storage = open(ctx).await?;
    let result = body(&storage).await;
    let closed = storage.close().await;
    let value = result?;
    closed.map_err(|e| CliError::store("close failed", e))?;
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

/// All `--match` conditions as one: at their longest common path, an
/// `!and` of each pattern mounted below it (fields and `{i}` keys become
/// object patterns, which must have the key). A `null` pattern matches
/// anything and is left out.
fn combine_matches(args: &[String]) -> Result<Option<(KPath, Node)>, CliError> {
    let mut parsed = Vec::with_capacity(args.len());
    for m in args {
        let (p, pattern) = split_match(m).map_err(CliError::usage)?;
        let p = util::path("--match path", p).map_err(CliError::usage)?;
        let pattern = util::tony("--match PATTERN", pattern).map_err(CliError::usage)?;
        parsed.push((p, pattern));
    }
    if parsed.len() <= 1 {
        return Ok(parsed.pop());
    }
    let mut common: Vec<Segment> = parsed[0].0.segments().to_vec();
    for (p, _) in &parsed[1..] {
        let n = common
            .iter()
            .zip(p.segments())
            .take_while(|(a, b)| a == b)
            .count();
        common.truncate(n);
    }
    let n = common.len();
    let mut terms = Vec::with_capacity(parsed.len());
    for (p, pattern) in parsed {
        if pattern.tag.is_none() && pattern.is_null() {
            continue;
        }
        let mut node = pattern;
        for seg in p.segments()[n..].iter().rev() {
            node = match seg {
                Segment::Field(f) => Node::object([(f.as_str(), node)]),
                Segment::Sparse(i) => Node::new(Value::Object(vec![(logd::Key::Index(*i), node)])),
                Segment::Index(_) | Segment::Key(_) => {
                    return Err(CliError::usage(format!(
                        "--match {p}: several --match paths may differ only by fields and {{i}} \
                         keys below their common path, not by [i] or (key)"
                    )));
                }
            };
        }
        terms.push(node);
    }
    let pattern = if terms.is_empty() {
        Node::null()
    } else {
        Node::tagged("and", Value::Array(terms))
    };
    Ok(Some((KPath::from_segments(common), pattern)))
}

/// DATA's text: the argument, stdin (`-`) or a file (`@FILE`; `@@x` is `@x`).
fn data_text(arg: &str) -> Result<String, CliError> {
    if arg == "-" {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .map_err(|e| CliError::failure(format!("cannot read DATA from stdin: {e}")))?;
        Ok(s)
    } else if let Some(rest) = arg.strip_prefix("@@") {
        Ok(format!("@{rest}"))
    } else if let Some(file) = arg.strip_prefix('@') {
        std::fs::read_to_string(file)
            .map_err(|e| CliError::usage(format!("cannot read DATA from {file}: {e}")))
    } else {
        Ok(arg.to_owned())
    }
}

/// Parses DATA text as a string (`--string`), strict JSON (`--json`) or Tony.
fn data_node(ctx: &Ctx, text: String, string: bool) -> Result<Node, CliError> {
    if string {
        Ok(Node::string(text))
    } else if ctx.json {
        logd::json::from_str(&text).map_err(|e| CliError::usage(format!("bad DATA (JSON): {e}")))
    } else {
        util::tony("DATA", &text).map_err(CliError::usage)
    }
}

fn meta(cond: &CondArgs, label: Option<&String>) -> PatchMeta {
    PatchMeta {
        label: label.or(cond.label.as_ref()).cloned(),
        seq: cond.seq,
        ..PatchMeta::default()
    }
}

/// A patch error found at a participant's path names the path from the
/// root (the engine reports it relative to the participant).
fn full_path(at_path: &KPath, e: logd::Error) -> logd::Error {
    let logd::Error::Patch(mut pe) = e else {
        return e;
    };
    if let Some(at) = pe.at_mut()
        && !at_path.is_prefix_of(at)
    {
        let mut segs = at_path.segments().to_vec();
        segs.extend(std::mem::take(at).into_segments());
        *at = KPath::from_segments(segs);
    }
    logd::Error::Patch(pe)
}

/// Commits one participant: `data` at `path`, with the conditions.
async fn commit_one(
    s: &Storage,
    path: KPath,
    data: Node,
    matches: Option<(KPath, Node)>,
    meta: PatchMeta,
) -> Result<Outcome, CliError> {
    let mut patch = Patch::new(path.clone(), data);
    if let Some((p, pattern)) = matches {
        patch = patch.with_match(p, pattern);
    }
    let tx = s.new_tx(1, meta).await?;
    let mut p = tx.new_patcher(patch).await?;
    p.commit()
        .await
        .map_err(|e| CliError::store("", full_path(&path, e)))
}

/// Prints an outcome; exit 3 unless committed.
fn report(ctx: &Ctx, outcome: Outcome) -> Result<Code, CliError> {
    if ctx.json {
        let v = match outcome {
            Outcome::Committed { commit } => json!({"outcome": "committed", "commit": commit}),
            Outcome::NotMatched => json!({"outcome": "not_matched"}),
            Outcome::Stale { latest } => json!({"outcome": "stale", "latest": latest}),
        };
        out!("{v}")?;
    } else {
        out!("{}", describe(outcome))?;
    }
    Ok(match outcome {
        Outcome::Committed { .. } => Code::Ok,
        _ => Code::NotMatched,
    })
}

/// `logd patch` (merge DATA in) and `logd put` (replace with DATA).
pub async fn patch(args: &PatchArgs, ctx: &Ctx, replace: bool) -> Result<Code, CliError> {
    let path = util::path("path", &args.path).map_err(CliError::usage)?;
    let text = data_text(&args.data)?;
    let data = data_node(ctx, text, args.string)?;
    let matches = combine_matches(&args.cond.matches)?;
    let meta = meta(&args.cond, None);
    let outcome = with_store(ctx, async |s: &Storage| {
        if replace {
            put(s, path, data, matches, meta).await
        } else {
            commit_one(s, path, data, matches, meta).await
        }
    })
    .await?;
    report(ctx, outcome)
}

/// Replaces the value at `path` with `data`: commits the patch from the
/// current value to `data` ([`logd::diff::diff`]), stale (exit 3) if the
/// path changed after it was read (unless `--seq` says otherwise).
async fn put(
    s: &Storage,
    path: KPath,
    data: Node,
    matches: Option<(KPath, Node)>,
    mut meta: PatchMeta,
) -> Result<Outcome, CliError> {
    let read = s.current_commit();
    let current = s.read_path_at(&path, read).await?;
    let patch = logd::diff::diff(current.as_ref(), Some(&data))
        .map_err(|e| CliError::usage(format!("cannot put DATA: {e}")))?;
    meta.seq = meta.seq.or(Some(read));
    commit_one(s, path, patch, matches, meta).await
}

/// `logd delete`: exit 4 (nothing committed) when the path is absent.
pub async fn delete(args: &DeleteArgs, ctx: &Ctx) -> Result<Code, CliError> {
    let path = util::path("path", &args.path).map_err(CliError::usage)?;
    let matches = combine_matches(&args.cond.matches)?;
    let meta = meta(&args.cond, None);
    let outcome = with_store(ctx, async |s: &Storage| {
        let current = s.read_path_at(&path, s.current_commit()).await?;
        let Some(current) = current else {
            return Ok(None);
        };
        // An array element's `!delete` (an `!arraydiff` entry) names the
        // value it removes.
        let data = if matches!(path.last(), Some(Segment::Index(_))) {
            let (tag, value) = current.into_parts();
            let op = match tag {
                Some(t) => format!("delete({})", t.as_str()),
                None => "delete".into(),
            };
            Node::tagged(op, value)
        } else {
            Node::tagged("delete", Value::Null)
        };
        commit_one(s, path.clone(), data, matches, meta)
            .await
            .map(Some)
    })
    .await?;
    match outcome {
        Some(o) => report(ctx, o),
        None => absent(&args.path, None),
    }
}

/// The one-line form of an outcome.
pub fn describe(outcome: Outcome) -> String {
    match outcome {
        Outcome::Committed { commit } => format!("committed {commit}"),
        Outcome::NotMatched => "not matched".into(),
        Outcome::Stale { latest } => format!("stale (latest {latest})"),
    }
}

fn absent(path: &str, commit: Option<u64>) -> Result<Code, CliError> {
    match commit {
        Some(c) => eprintln!("logd: {path:?} is absent at commit {c}"),
        None => eprintln!("logd: {path:?} is absent"),
    }
    Ok(Code::Absent)
}

/// Reads the node at `path` at `at` (default: current); also returns the
/// commit it was read at (unknown only for a node found absent through a
/// server).
///
/// A store held by a running `logd serve` is read through the server's
/// Unix socket (`<dir>/logd.sock`) instead: the current state only (the
/// protocol's `match` has no commit to read at), so `--at` there is still
/// `Locked`.
async fn read(
    ctx: &Ctx,
    path: &str,
    at: Option<u64>,
) -> Result<(Option<Node>, Option<u64>), CliError> {
    let kpath = util::path("path", path).map_err(CliError::usage)?;
    let local = with_store(ctx, async |s: &Storage| {
        let commit = at.unwrap_or_else(|| s.current_commit());
        let node = s.read_path_at(&kpath, commit).await?;
        Ok((node, Some(commit)))
    })
    .await;
    match local {
        Err(locked) if locked.code == Code::Locked && at.is_none() => {
            read_through_server(ctx, path).await.ok_or(locked)?
        }
        other => other,
    }
}

/// The current node at `path` from the `logd serve` holding the store, if
/// one answers on its socket (`None`: no server there).
async fn read_through_server(
    ctx: &Ctx,
    path: &str,
) -> Option<Result<(Option<Node>, Option<u64>), CliError>> {
    let socket = ctx.dir.join(super::serve::SOCKET);
    let client = logd::client::Client::connect_unix(&socket).await.ok()?;
    Some(match client.get(path).await {
        Ok((node, commit)) => Ok((Some(node), Some(commit))),
        Err(logd::client::ClientError::Server { code, .. }) if code == "not_found" => {
            Ok((None, None))
        }
        Err(e) => Err(CliError::failure(format!(
            "reading through the server on {}: {e}",
            socket.display()
        ))),
    })
}

fn format(ctx: &Ctx, block: bool) -> Format {
    if ctx.json {
        Format::Json
    } else if block {
        Format::Block
    } else {
        Format::Wire
    }
}

/// `logd get`: prints the node; exit 4 (a note on stderr) when absent.
pub async fn get(args: &GetArgs, ctx: &Ctx) -> Result<Code, CliError> {
    let (node, commit) = read(ctx, &args.path, args.at).await?;
    match node {
        Some(node) => {
            out!("{}", util::show(&node, format(ctx, args.block))?)?;
            Ok(Code::Ok)
        }
        None => absent(&args.path, commit),
    }
}

/// `logd ls`: the keys of an object (indexes of an array), in stored order.
pub async fn ls(args: &GetArgs, ctx: &Ctx) -> Result<Code, CliError> {
    let (node, commit) = read(ctx, &args.path, args.at).await?;
    let Some(node) = node else {
        return absent(&args.path, commit);
    };
    let keys: Vec<serde_json::Value> = match &node.value {
        Value::Object(kv) => kv
            .iter()
            .map(|(k, _)| match k {
                logd::Key::Field(f) => json!(f),
                logd::Key::Index(i) => json!(i),
            })
            .collect(),
        Value::Array(items) => (0..items.len()).map(|i| json!(i)).collect(),
        _ => {
            return Err(CliError::failure(format!(
                "{:?} is {}, not an object or array",
                args.path,
                kind_name(node.kind())
            )));
        }
    };
    if ctx.json {
        out!("{}", serde_json::Value::Array(keys))?;
    } else {
        for k in keys {
            match k {
                serde_json::Value::String(s) => out!("{s}")?,
                other => out!("{other}")?,
            }
        }
    }
    Ok(Code::Ok)
}

fn kind_name(k: Kind) -> String {
    let s = k.to_string();
    let article = if s.starts_with(['a', 'e', 'i', 'o', 'u']) {
        "an"
    } else {
        "a"
    };
    format!("{article} {s}")
}

/// `logd export`: the state at a path as Tony (or JSON) text, to stdout or `--output`.
pub async fn export(args: &ExportArgs, ctx: &Ctx) -> Result<Code, CliError> {
    let (node, commit) = read(ctx, &args.path, args.at).await?;
    let Some(node) = node else {
        return absent(&args.path, commit);
    };
    let text = util::show(&node, format(ctx, args.block))?;
    match &args.output {
        Some(file) => std::fs::write(file, format!("{text}\n"))
            .map_err(|e| CliError::failure(format!("cannot write {}: {e}", file.display())))?,
        None => out!("{text}")?,
    }
    Ok(Code::Ok)
}

/// Inputs past this size show a progress bar while they are read (on a terminal).
const PROGRESS_BYTES: u64 = 1 << 20;

/// Reads `file` (`-`: stdin) with a progress bar for large input.
fn read_input(file: &str) -> Result<String, CliError> {
    let (mut reader, len): (Box<dyn std::io::Read>, Option<u64>) = if file == "-" {
        (Box::new(std::io::stdin()), None)
    } else {
        let f = std::fs::File::open(file)
            .map_err(|e| CliError::usage(format!("cannot open {file}: {e}")))?;
        let len = f.metadata().ok().map(|m| m.len());
        (Box::new(f), len)
    };
    let bar = match len {
        Some(n) if n >= PROGRESS_BYTES => {
            let b = indicatif::ProgressBar::new(n);
            if let Ok(style) = indicatif::ProgressStyle::with_template(
                "reading {bar:30} {bytes}/{total_bytes} {bytes_per_sec}",
            ) {
                b.set_style(style);
            }
            b
        }
        _ => indicatif::ProgressBar::hidden(),
    };
    let mut bytes = Vec::with_capacity(len.unwrap_or(0) as usize);
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = reader
            .read(&mut buf)
            .map_err(|e| CliError::failure(format!("cannot read {file}: {e}")))?;
        if n == 0 {
            break;
        }
        bytes.extend_from_slice(&buf[..n]);
        bar.inc(n as u64);
    }
    bar.finish_and_clear();
    String::from_utf8(bytes).map_err(|e| CliError::usage(format!("{file} is not UTF-8: {e}")))
}

/// `logd import`: replaces the state at a path with the document read.
pub async fn import(args: &ImportArgs, ctx: &Ctx) -> Result<Code, CliError> {
    let path = util::path("path", &args.path).map_err(CliError::usage)?;
    let text = read_input(&args.file)?;
    let data = data_node(ctx, text, false)?;
    let meta = PatchMeta {
        label: args.label.clone(),
        ..PatchMeta::default()
    };
    let outcome = with_store(ctx, async |s: &Storage| {
        put(s, path, data, None, meta).await
    })
    .await?;
    report(ctx, outcome)
}

/// `logd diff`: the patch from the state at `--from` to the state at `--to`.
pub async fn diff(args: &DiffArgs, ctx: &Ctx) -> Result<Code, CliError> {
    let path = util::path("path", &args.path).map_err(CliError::usage)?;
    let (a, b) = with_store(ctx, async |s: &Storage| {
        let to = args.to.unwrap_or_else(|| s.current_commit());
        let a = s.read_path_at(&path, args.from).await?;
        let b = s.read_path_at(&path, to).await?;
        Ok((a, b))
    })
    .await?;
    let patch = logd::diff::diff(a.as_ref(), b.as_ref())
        .map_err(|e| CliError::failure(format!("no patch: {e}")))?;
    out!("{}", util::show(&patch, format(ctx, false))?)?;
    Ok(Code::Ok)
}

/// `logd log`: one line per commit in `[--from, --to]`, `<commit> <time>
/// <tx> <label or ->`. Transaction ids are reserved in blocks of 65,536 by
/// each process that opens the store, so they jump between runs.
pub async fn log(args: &LogArgs, ctx: &Ctx) -> Result<Code, CliError> {
    util::path("--path", &args.path).map_err(CliError::usage)?;
    if let (Some(f), Some(t)) = (args.from, args.to)
        && f > t
    {
        return Err(CliError::usage(format!("--from {f} is after --to {t}")));
    }
    let commits = with_store(ctx, async |s: &Storage| {
        let current = s.current_commit();
        let to = args.to.unwrap_or(current);
        let from = args.from.unwrap_or(1);
        if from > current && from > 1 {
            return Err(CliError::usage(format!(
                "--from {from} is in the future (current is {current})"
            )));
        }
        // `history` lists (after, to].
        let r = match s.history(&args.path, from.saturating_sub(1), to).await {
            // Older commits were compacted away: list what is retained.
            Err(logd::Error::Compacted { oldest, .. }) if args.from.is_none() => {
                eprintln!("logd: commits up to {oldest} were compacted; listing the later ones");
                s.history(&args.path, oldest, to).await
            }
            other => other,
        };
        Ok(r?)
    })
    .await?;
    for c in commits {
        if ctx.json {
            let paths: Vec<String> = c.paths.iter().map(|p| p.to_string()).collect();
            out!(
                "{}",
                json!({
                    "commit": c.commit,
                    "time": util::rfc3339(c.when),
                    "tx": c.tx_id.to_string(),
                    "label": c.label,
                    "paths": paths,
                })
            )?;
        } else {
            out!(
                "{} {} {} {}",
                c.commit,
                util::rfc3339(c.when),
                c.tx_id,
                c.label.as_deref().unwrap_or("-")
            )?;
        }
    }
    Ok(Code::Ok)
}

/// `logd check`: read-only; prints each problem as `file: offset: reason`
/// and fails (exit 1) when there is any.
pub fn check(ctx: &Ctx) -> Result<Code, CliError> {
    let report = logd::inspect::check(&ctx.dir);
    if ctx.json {
        let problems: Vec<String> = report.problems.iter().map(|p| p.to_string()).collect();
        let checkpoint = match &report.checkpoint {
            Some(Ok(c)) => json!({"commit": c}),
            Some(Err(p)) => json!({"unusable": p.to_string()}),
            None => serde_json::Value::Null,
        };
        out!(
            "{}",
            json!({
                "ok": report.is_ok(),
                "segments": report.segments,
                "records": report.records,
                "snapshots": report.snapshots,
                "snapshot_entries": report.snapshot_entries,
                "meta": report.meta,
                "checkpoint": checkpoint,
                "problems": problems,
            })
        )?;
    } else {
        for p in &report.problems {
            out!("{p}")?;
        }
        out!(
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
        )?;
        match &report.checkpoint {
            Some(Ok(c)) => out!("index checkpoint at commit {c}")?,
            Some(Err(p)) => out!("index checkpoint unusable (open ignores it): {p}")?,
            None => {}
        }
    }
    if report.is_ok() {
        Ok(Code::Ok)
    } else {
        Err(CliError::failure(format!(
            "{} problems found",
            report.problems.len()
        )))
    }
}

/// `logd stats`.
pub async fn stats(ctx: &Ctx) -> Result<Code, CliError> {
    let r = with_store(ctx, async |s: &Storage| Ok(logd::inspect::stats(s).await?)).await?;
    let seg_total: u64 = r.segments.iter().map(|f| f.bytes).sum();
    let snap_total: u64 = r.snapshots.iter().map(|f| f.bytes).sum();
    if ctx.json {
        let files = |v: &[logd::inspect::FileSize]| -> Vec<serde_json::Value> {
            v.iter()
                .map(|f| json!({"name": f.name, "bytes": f.bytes}))
                .collect()
        };
        out!(
            "{}",
            json!({
                "commit": r.commit,
                "segments": files(&r.segments),
                "segment_bytes": seg_total,
                "snapshots": files(&r.snapshots),
                "snapshot_bytes": snap_total,
                "index": {
                    "commits": r.index.commits,
                    "nodes": r.index.nodes,
                    "names": r.index.names,
                    "ends": r.index.ends,
                    "approx_bytes": r.index.approx_bytes,
                },
                "checkpoint": format!("{:?}", r.checkpoint),
                "checkpoint_bytes": r.checkpoint_bytes,
            })
        )?;
        return Ok(Code::Ok);
    }
    out!("commit: {}", r.commit)?;
    out!("segments: {} ({} bytes)", r.segments.len(), seg_total)?;
    for f in &r.segments {
        out!("  wal/{} {}", f.name, f.bytes)?;
    }
    out!("snapshots: {} ({} bytes)", r.snapshots.len(), snap_total)?;
    for f in &r.snapshots {
        out!("  snap/{} {}", f.name, f.bytes)?;
    }
    out!(
        "index: {} commits, {} nodes, {} names, {} ends, ~{} bytes",
        r.index.commits,
        r.index.nodes,
        r.index.names,
        r.index.ends,
        r.index.approx_bytes
    )?;
    out!(
        "index checkpoint: {:?} ({} bytes)",
        r.checkpoint,
        r.checkpoint_bytes
    )?;
    Ok(Code::Ok)
}

/// `logd snapshot`: seals the active segment and writes a snapshot at the
/// current commit.
pub async fn snapshot(ctx: &Ctx) -> Result<Code, CliError> {
    let info = with_store(ctx, async |s: &Storage| Ok(s.switch_and_snapshot().await?)).await?;
    match (info, ctx.json) {
        (Some(i), true) => out!(
            "{}",
            json!({
                "commit": i.commit, "bytes": i.bytes, "entries": i.entries, "blocks": i.blocks,
                "path": i.path.display().to_string(), "from": i.from, "replayed": i.replayed,
                "millis": i.took.as_millis() as u64,
            })
        )?,
        (Some(i), false) => out!("{}", describe_snapshot(&i))?,
        (None, true) => out!("null")?,
        (None, false) => out!("nothing to snapshot: the store has no commit")?,
    }
    Ok(Code::Ok)
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
pub async fn compact(ctx: &Ctx) -> Result<Code, CliError> {
    let r = with_store(ctx, async |s: &Storage| Ok(s.compact().await?)).await?;
    if ctx.json {
        out!(
            "{}",
            json!({
                "dropped_snapshots": r.dropped_snapshots,
                "dropped_segments": r.dropped_segments,
                "bytes_freed": r.bytes_freed,
                "oldest_commit": r.oldest_commit,
            })
        )?;
    } else {
        out!("{}", describe_compaction(&r))?;
    }
    Ok(Code::Ok)
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
    use super::*;

    #[test]
    fn match_splits_outside_quotes() {
        assert_eq!(split_match("a.b=1").unwrap(), ("a.b", "1"));
        assert_eq!(
            split_match("\"x=y\".b=\"=\"").unwrap(),
            ("\"x=y\".b", "\"=\"")
        );
        assert!(split_match("a.b").is_err());
    }

    #[test]
    fn several_matches_mount_below_the_common_path() {
        let (p, pat) = combine_matches(&["a.x=1".into(), "a.y.z=2".into(), "a.w=null".into()])
            .unwrap()
            .unwrap();
        assert_eq!(p.to_string(), "a");
        assert_eq!(pat.to_string(), "!and [{x: 1}, {y: {z: 2}}]");
        assert!(combine_matches(&["a[0]=1".into(), "a[1]=2".into()]).is_err());
    }
}
