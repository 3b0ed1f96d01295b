//! `logd-actors`: logd's concurrency and I/O scheduling, as kameo actors.
//!
//! One module per actor, its messages beside it. Actors own state and files;
//! the pure logic they run lives in `logd-core`.

#![warn(missing_docs)]

pub mod index;
