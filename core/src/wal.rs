//! Log record and segment formats.
