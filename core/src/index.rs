//! The path index data structure.
