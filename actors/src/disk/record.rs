//! The durable record as the layers above the disk pass it around: one
//! record with its commit and location, and a batch of them.

use std::sync::Arc;

use logd_core::wal::{Entry, Location};

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
