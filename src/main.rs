//! The `logd` command: a thin shell over the public `logd` API.

mod cli;

fn main() -> std::process::ExitCode {
    cli::main()
}
