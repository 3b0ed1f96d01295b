//! Command-line parsing and dispatch for the `logd` binary.

pub mod bench;

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
