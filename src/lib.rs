//! logd: an embedded, versioned document store for Tony documents.
//!
//! Every change is a patch committed through a transaction; every commit gets a
//! number; the state at any path can be read as of any retained commit.

#![warn(missing_docs)]

mod storage;

pub use logd_actors::{Durability, Error, Options};
pub use logd_core::kpath::{KPath, KPathError, Segment};
pub use logd_core::node::{Key, Kind, Node, Tag, Value};
pub use storage::{Actors, Storage};
