//! `logd bench`: the standard workloads W1–W9 of DESIGN §7.

use std::path::Path;

/// Options of `logd bench`.
#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    /// A shorter run (within 60 s).
    #[arg(long)]
    pub quick: bool,
    /// `immediate` (fsync before ack) or `buffered`.
    #[arg(long, default_value = "immediate")]
    pub durability: String,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Runs the benchmark in a fresh directory under `dir`.
pub async fn run(args: &BenchArgs, dir: &Path) -> Result<(), String> {
    Err(format!(
        "bench is being written (quick={}, durability={}, json={}, dir={})",
        args.quick,
        args.durability,
        args.json,
        dir.display()
    ))
}
