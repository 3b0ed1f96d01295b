//! Layer 5, the commit path: transactions, the log writer (the sequencer)
//! and the engine that wires a transaction to the log writer and the reader.

pub mod engine;
pub mod log_writer;
pub mod transaction;
