//! Command-line parsing and dispatch for the `logd` binary.
//!
//! Every command is built on the public `logd` API; this module only parses
//! arguments, prints results and turns an error into one line on stderr and
//! an exit code (see [`out`] for the codes and the JSON mapping). It never
//! touches store files itself (the read-only `check` lives in
//! [`logd::inspect`]). Each command says whether it only reads
//! ([`Command::read_only`]); the store is opened with that flag.

pub mod bench;
mod bench_watch;
mod commands;
mod demo;
pub mod out;
mod serve;
mod session;
mod stress;
mod util;
mod watch;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};

use out::{CliError, Code};

const EXIT_CODES: &str = "\
Exit codes:
  0  success
  1  failure (I/O, a damaged store, a patch that does not apply, check found problems)
  2  usage error or bad input (arguments, DATA, paths, a commit past the current one)
  3  the condition did not hold: not matched (--match) or stale (--seq); nothing written
  4  absent: nothing at the path (at that commit)
  5  the store is locked by another process

DATA is Tony text; `-` reads it from stdin, `@FILE` from a file (`@@x` is the text `@x`).
--json reads DATA strictly as JSON and prints JSON (tags as {\"!tag\": t, \"value\": v},
NaN/infinities as {\"!float\": \"NaN\"}, sparse arrays as {\"!sparse\": {...}});
--string stores DATA as a string, verbatim.";

/// logd: an embedded, versioned document store for Tony documents.
#[derive(Parser, Debug)]
#[command(name = "logd", version, about, after_help = EXIT_CODES)]
pub struct Cli {
    /// The store directory.
    #[arg(long, env = "LOGD_DIR", default_value = "./logd-data", global = true)]
    pub dir: PathBuf,
    /// Print JSON (one object, or one object per line for log and stress),
    /// and read DATA strictly as JSON.
    #[arg(long, global = true)]
    pub json: bool,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Commit one patch at a path and print the outcome (exit 3 when a
    /// condition did not hold).
    Patch(commands::PatchArgs),
    /// Replace the value at a path with DATA (unlike patch, nothing of the
    /// old value is merged in).
    Put(commands::PatchArgs),
    /// Remove the value at a path (exit 4 when it is absent).
    Delete(commands::DeleteArgs),
    /// Print the state at a path (at the current commit or --at COMMIT);
    /// exit 4 when absent.
    Get(commands::GetArgs),
    /// List the keys (or indexes) under a path, one per line, in stored order.
    Ls(commands::GetArgs),
    /// Write the state at a path (a whole document with "") to stdout or a file.
    Export(commands::ExportArgs),
    /// Replace the state at a path with a document read from a file or stdin.
    Import(commands::ImportArgs),
    /// Print the patch that turns the state at --from into the state at --to.
    Diff(commands::DiffArgs),
    /// List the commits touching a path: commit, time, transaction, label.
    ///
    /// --from and --to are inclusive; either past the current commit is bad
    /// input (exit 2). Transaction ids are reserved in blocks of 65,536 by each
    /// process that writes to the store (one block per run), so ids jump between
    /// runs: tx-1, tx-65538, tx-131075, ...
    Log(commands::LogArgs),
    /// Print the changes of a path, one event per line, until interrupted
    /// (Ctrl-C, or the reader of stdout going away): the state at the
    /// start, the commits after --from (if given), then `replay-complete`,
    /// then live commits.
    Watch(watch::WatchArgs),
    /// Verify every checksum of every file, read-only.
    Check,
    /// Commits, segments, snapshots and index statistics.
    Stats,
    /// Seal the active log segment and write a snapshot at its last commit.
    Snapshot,
    /// Remove the snapshots and segments the retention policy no longer needs.
    Compact,
    /// A load generator: prints `ack <commit> <path> <value>` per acknowledged write.
    Stress(stress::StressArgs),
    /// Run the standard workloads W1–W10 and print a table.
    Bench(bench::BenchArgs),
    /// A scripted tour in a fresh directory under --dir.
    Demo,
    /// Serve the store over the logd session protocol (docs/PROTOCOL.md)
    /// on a loopback TCP address and `<store>/logd.sock`, until SIGTERM or
    /// SIGINT.
    Serve(serve::ServeArgs),
    /// Send requests (one per line) from stdin to a running `logd serve`
    /// at ADDR (HOST:PORT or its Unix socket) and print its answers.
    Session(session::SessionArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff) to stdout: `logd man > logd.1`.
    Man,
}

impl Command {
    /// Whether the command may create the store when `--dir` holds none:
    /// only the commands that add data. Every other one on a missing store
    /// fails with "no store at DIR" and writes nothing.
    pub fn creates(&self) -> bool {
        matches!(
            self,
            Command::Patch(_) | Command::Put(_) | Command::Import(_) | Command::Serve(_)
        )
    }

    /// Whether the command only reads the store (it may then be opened
    /// read-only); `check`, `completions` and `man` do not open it at all.
    pub fn read_only(&self) -> bool {
        match self {
            Command::Get(_)
            | Command::Ls(_)
            | Command::Export(_)
            | Command::Diff(_)
            | Command::Log(_)
            | Command::Watch(_)
            | Command::Check
            | Command::Stats
            | Command::Completions { .. }
            | Command::Session(_)
            | Command::Man => true,
            Command::Patch(_)
            | Command::Put(_)
            | Command::Delete(_)
            | Command::Import(_)
            | Command::Snapshot
            | Command::Compact
            | Command::Stress(_)
            | Command::Bench(_)
            | Command::Demo
            | Command::Serve(_) => false,
        }
    }
}

/// What every command gets: the store directory, whether it speaks JSON,
/// and whether it only reads.
#[derive(Debug)]
pub struct Ctx {
    /// `--dir`.
    pub dir: PathBuf,
    /// `--json`.
    pub json: bool,
    /// [`Command::read_only`].
    pub read_only: bool,
    /// [`Command::creates`].
    pub creates: bool,
}

fn man() -> Result<Code, CliError> {
    let mut buf = Vec::new();
    clap_mangen::Man::new(Cli::command())
        .render(&mut buf)
        .map_err(|e| CliError::failure(format!("cannot render the man page: {e}")))?;
    out::line(String::from_utf8_lossy(&buf).trim_end())?;
    Ok(Code::Ok)
}

fn completions(shell: clap_complete::Shell) -> Result<Code, CliError> {
    let mut buf = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "logd", &mut buf);
    out::line(String::from_utf8_lossy(&buf).trim_end())?;
    Ok(Code::Ok)
}

/// Parses the command line, runs the command, and turns an error into one
/// line on stderr and an exit code.
pub fn main() -> ExitCode {
    // Usage errors exit 2 (clap's own code).
    let cli = Cli::parse();
    let ctx = Ctx {
        dir: cli.dir.clone(),
        json: cli.json,
        read_only: cli.command.read_only(),
        creates: cli.command.creates(),
    };
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("logd: cannot start the runtime: {e}");
            return Code::Failure.into();
        }
    };
    let legacy = |r: Result<(), String>| r.map(|()| Code::Ok).map_err(CliError::failure);
    let result = rt.block_on(async {
        match &cli.command {
            Command::Patch(args) => commands::patch(args, &ctx, false).await,
            Command::Put(args) => commands::patch(args, &ctx, true).await,
            Command::Delete(args) => commands::delete(args, &ctx).await,
            Command::Get(args) => commands::get(args, &ctx).await,
            Command::Ls(args) => commands::ls(args, &ctx).await,
            Command::Export(args) => commands::export(args, &ctx).await,
            Command::Import(args) => commands::import(args, &ctx).await,
            Command::Diff(args) => commands::diff(args, &ctx).await,
            Command::Log(args) => commands::log(args, &ctx).await,
            Command::Watch(args) => watch::run(args, &ctx).await,
            Command::Check => commands::check(&ctx),
            Command::Snapshot => commands::snapshot(&ctx).await,
            Command::Compact => commands::compact(&ctx).await,
            Command::Stats => commands::stats(&ctx).await,
            Command::Stress(args) => stress::run(args, &ctx).await,
            Command::Bench(args) => legacy(bench::run(args, &cli.dir, cli.json).await),
            Command::Demo => legacy(demo::run(&cli.dir).await),
            Command::Serve(args) => serve::run(args, &ctx).await,
            Command::Session(args) => session::run(args).await,
            Command::Completions { shell } => completions(*shell),
            Command::Man => man(),
        }
    });
    // The runtime's tasks (a stress run cut short) must not outlive main.
    rt.shutdown_timeout(std::time::Duration::from_secs(1));
    match result {
        Ok(code) => code.into(),
        Err(e) => {
            if let Some(m) = &e.message {
                eprintln!("logd: {m}");
            }
            e.code.into()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }
}
