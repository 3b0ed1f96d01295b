//! `logd-core`: logd's data layer.
//!
//! Pure and synchronous: no tokio, no actors, no threads. Everything here is a
//! function of its inputs (plus plain file reads and writes for the log and
//! snapshot formats), unit- and property-tested in this crate.
//!
//! | module | owns |
//! |---|---|
//! | [`node`] | the document model: [`Node`], [`Value`], [`Key`], [`Tag`] |
//! | [`lexical`] | literal and quoting rules shared by text and paths |
//! | [`text`] | Tony text: parse (JSON, flow, block) and print (wire, block) |
//! | [`kpath`] | kinded paths: parse, print, order, ancestry |
//! | [`patch`] | `apply`, `matches`, `trim`, `merge` |
//! | [`wal`] | log record and segment formats, CRCs, scan and recovery |
//! | [`snapshot`] | snapshot file format: streaming writer, sub-path reader |
//! | [`index`] | the path index: which commits touch which paths, read plans; its checkpoint format |
//! | [`read`] | executing a read plan: sub-patches folded from a base |
//! | [`retention`] | the compaction policy: which snapshots and segments to keep |
//! | [`conflict`] | sequencing-time checks: did a commit after `r` affect `p` |
//! | [`meta`] | the `<dir>/meta` file format |

#![warn(missing_docs)]

pub mod conflict;
pub mod index;
pub mod kpath;
pub mod lexical;
pub mod meta;
pub mod node;
pub mod patch;
pub mod read;
pub mod retention;
pub mod snapshot;
pub mod text;
pub mod wal;

pub use kpath::{KPath, KPathError, Segment};
pub use node::{Key, Kind, Node, Tag, TagHead, Value};
