//! Benchmarks of the data layer (parse, print, apply on a 1 MB document).
fn main() {}
