//! Snapshot file format.
