//! The durable record as the layers above the disk pass it around: one
//! record with its commit and location, and a batch of them; and
//! `read_record`, the one reader of a single record from a segment file.

use std::fs::File;
use std::path::Path;
use std::sync::Arc;

use logd_core::wal::{self, Entry, Location};

use crate::disk::layout::segment_path;
use crate::error::Error;

/// One durable record with its commit and location, as handed to the
/// commit observer and returned by recovery.
#[derive(Clone, Debug, PartialEq)]
pub struct DurableRecord {
    /// Its commit number.
    pub commit: u64,
    /// Where it is in the log.
    pub location: Location,
    /// The record itself.
    pub entry: Arc<Entry>,
}

/// A batch of durable records in commit order: the message the commit
/// observer is asked with before any of them is acknowledged, and the one
/// a follower is told after.
#[derive(Clone, Debug)]
pub struct DurableBatch {
    /// The records.
    pub records: Vec<DurableRecord>,
}

/// The observer of durable batches (the index actor implements
/// `Message<DurableBatch, Reply = ()>`; get one with
/// `actor_ref.reply_recipient::<DurableBatch>()`).
pub type CommitObserver = kameo::actor::ReplyRecipient<DurableBatch, (), kameo::error::Infallible>;

/// The name [`DurableBatch`] had before the restructuring, kept so that code
/// written against it still compiles.
pub type Committed = DurableBatch;

/// The name [`DurableRecord`] had before the restructuring, kept so that
/// code written against it still compiles.
pub type CommittedRecord = DurableRecord;

/// Reads the record of `commit` at `loc` in `file` (a segment of the store
/// at `dir`): checks the frame's length and CRC (`wal::read_at`) and that it
/// holds `commit`. Every failure is [`Error::Corrupt`] naming the segment
/// file and the offset. The one way a single record is read: the reader,
/// pinned read plans and the snapshotter all come here.
pub(crate) fn read_record(
    dir: &Path,
    file: &File,
    commit: u64,
    loc: Location,
) -> Result<Entry, Error> {
    let entry = wal::read_at(file, loc).map_err(|e| {
        Error::corrupt(segment_path(dir, loc.segment), e.offset, e.kind.to_string())
    })?;
    if entry.commit != commit {
        return Err(Error::corrupt(
            segment_path(dir, loc.segment),
            loc.offset,
            format!("record holds commit {}, expected {commit}", entry.commit),
        ));
    }
    Ok(entry)
}
