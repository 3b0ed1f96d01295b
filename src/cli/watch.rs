//! `logd watch PATH [--from N] [--no-init] [--json]`: prints the events of a
//! [`logd::Storage::watch`], one per line, until interrupted.
//!
//! Text lines are `KIND COMMIT TIME TX LABEL DATA` (`-` for what an event
//! does not have): `state` (the state at the start commit; DATA `absent`
//! when nothing is there), `patch` (the commit's patch as seen from the
//! path), `replace` (an ancestor was rewritten: the resulting state), and
//! `replay-complete COMMIT` once the replay reached the commit current at the
//! start. `--json` prints one object per line with `commit`, `path`,
//! `time`, `tx`, `label` and one of `state`, `patch`, `replace` (the node,
//! or `null` when absent) or `replayComplete: true`.
//!
//! It ends with exit 0 on Ctrl-C (SIGINT) and when the reader of stdout goes
//! away (a closed pipe is noticed within 200 ms, also while no event comes),
//! and closes the store either way. The command holds the store's lock like
//! any other: while it runs, other processes cannot open the store, so the
//! live part shows the commits made through this process (none, for now;
//! the server of the round-two plan will serve watches to other clients).

use std::time::Duration;

use futures::StreamExt;
use logd::{Change, Storage, WatchEvent, WatchOptions};
use serde_json::json;

use super::Ctx;
use super::out::{CliError, Code, out};
use super::util::{self, Format};

/// Arguments of `logd watch`.
#[derive(clap::Args, Debug)]
pub struct WatchArgs {
    /// The path to watch ("" = the whole document).
    pub path: String,
    /// Replay the commits after this one first (default: start at the
    /// current commit, no replay).
    #[arg(long)]
    pub from: Option<u64>,
    /// Do not print the state at the start commit first.
    #[arg(long)]
    pub no_init: bool,
}

/// Runs `logd watch`.
pub async fn run(args: &WatchArgs, ctx: &Ctx) -> Result<Code, CliError> {
    util::path("PATH", &args.path).map_err(CliError::usage)?;
    let store = super::commands::open(ctx).await?;
    let result = follow(&store, args, ctx).await;
    let closed = store.close().await;
    let code = result?;
    closed.map_err(|e| CliError::store("close failed", e))?;
    Ok(code)
}

async fn follow(store: &Storage, args: &WatchArgs, ctx: &Ctx) -> Result<Code, CliError> {
    let mut options = match args.from {
        Some(c) => WatchOptions::from_commit(c),
        None => WatchOptions::default(),
    };
    if args.no_init {
        options = options.no_init();
    }
    let mut watch = store
        .watch(&args.path, options)
        .await
        .map_err(|e| CliError::store("cannot watch", e))?;
    let format = if ctx.json { Format::Json } else { Format::Wire };
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    loop {
        tokio::select! {
            _ = &mut ctrl_c => return Ok(Code::Ok),
            _ = tick.tick() => {
                if stdout_closed() {
                    return Ok(Code::Ok);
                }
            }
            event = watch.next() => match event {
                None => return Ok(Code::Ok),
                Some(Err(e)) => return Err(CliError::store("watch ended", e)),
                Some(Ok(e)) => match print(&e, format) {
                    Ok(()) => {}
                    // A closed pipe: `out::line` says exit 0, quietly.
                    Err(e) if e.message.is_none() => return Ok(e.code),
                    Err(e) => return Err(e),
                },
            },
        }
    }
}

fn print(e: &WatchEvent, format: Format) -> Result<(), CliError> {
    let show = |n: Option<&logd::Node>| -> Result<Option<String>, CliError> {
        n.map(|n| util::show(n, format)).transpose()
    };
    let (kind, data) = match e.change() {
        Change::State(s) => ("state", show(s)?),
        Change::Patch(p) => ("patch", show(Some(p))?),
        Change::Replace(s) => ("replace", show(s)?),
        Change::ReplayComplete => ("replay-complete", None),
    };
    if format == Format::Json {
        let mut obj = json!({
            "commit": e.commit(),
            "path": e.path().to_string(),
            "time": e.when().map(util::rfc3339),
            "tx": e.tx_id().map(|t| t.to_string()),
            "label": e.label(),
        });
        let value = match data {
            Some(text) => serde_json::from_str(&text)
                .map_err(|err| CliError::failure(format!("cannot print as JSON: {err}")))?,
            None => serde_json::Value::Null,
        };
        let key = match kind {
            "replay-complete" => ("replayComplete", serde_json::Value::Bool(true)),
            "state" => ("state", value),
            "patch" => ("patch", value),
            _ => ("replace", value),
        };
        obj[key.0] = key.1;
        return out!("{obj}");
    }
    if e.is_replay_complete() {
        return out!("replay-complete {}", e.commit());
    }
    out!(
        "{kind} {} {} {} {} {}",
        e.commit(),
        e.when().map(util::rfc3339).as_deref().unwrap_or("-"),
        e.tx_id().map(|t| t.to_string()).as_deref().unwrap_or("-"),
        e.label().unwrap_or("-"),
        data.as_deref().unwrap_or("absent")
    )
}

/// Whether stdout is a pipe whose reader went away (`poll` reports an
/// error or a hang-up on its write end).
fn stdout_closed() -> bool {
    let mut fd = libc::pollfd {
        fd: libc::STDOUT_FILENO,
        events: 0,
        revents: 0,
    };
    // SAFETY: one valid pollfd, a zero timeout.
    let n = unsafe { libc::poll(&mut fd, 1, 0) };
    n > 0 && fd.revents & (libc::POLLERR | libc::POLLHUP) != 0
}
