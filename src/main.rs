//! The `logd` command.
fn main() {}
