//! Command-line parsing and dispatch for the `logd` binary.
//!
//! Every command is built on the public `logd` API; this module only parses
//! arguments, prints results and turns an error into one line on stderr and
//! a non-zero exit code. It never touches store files itself (the read-only
//! `check` lives in [`logd::inspect`]).

pub mod bench;
mod commands;
mod demo;
mod stress;
mod util;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// logd: an embedded, versioned document store for Tony documents.
#[derive(Parser, Debug)]
#[command(name = "logd", version, about)]
pub struct Cli {
    /// The store directory.
    #[arg(long, env = "LOGD_DIR", default_value = "./logd-data", global = true)]
    pub dir: PathBuf,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the standard workloads W1–W9 and print a table.
    Bench(bench::BenchArgs),
    /// A scripted tour in a fresh directory under --dir.
    Demo,
    /// Commit one patch (one participant) and print the outcome.
    Patch(commands::PatchArgs),
    /// Print the state at a path (at the current commit or --at COMMIT).
    Get(commands::GetArgs),
    /// List the commits touching a path.
    Log(commands::LogArgs),
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
}

/// Parses the command line, runs the command, and turns an error into one
/// line on stderr and a non-zero exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("logd: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = rt.block_on(async {
        match &cli.command {
            Command::Bench(args) => bench::run(args, &cli.dir).await,
            Command::Demo => demo::run(&cli.dir).await,
            Command::Patch(args) => commands::patch(args, &cli.dir).await,
            Command::Get(args) => commands::get(args, &cli.dir).await,
            Command::Log(args) => commands::log(args, &cli.dir).await,
            Command::Check => commands::check(&cli.dir),
            Command::Snapshot => commands::snapshot(&cli.dir).await,
            Command::Compact => commands::compact(&cli.dir).await,
            Command::Stats => commands::stats(&cli.dir).await,
            Command::Stress(args) => stress::run(args, &cli.dir).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("logd: {e}");
            ExitCode::FAILURE
        }
    }
}
