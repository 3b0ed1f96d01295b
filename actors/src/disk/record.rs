//! The durable record as the layers above the disk pass it around: one
//! record with its commit and location, and a batch of them.

use std::sync::Arc;

use logd_core::wal::{Entry, Location};

/// One durable record, as handed to the commit observer and returned by
/// recovery.
#[derive(Clone, Debug, PartialEq)]
pub struct CommittedRecord {
    /// Its commit number.
    pub commit: u64,
    /// Where it is in the log.
    pub location: Location,
    /// The record itself.
    pub entry: Arc<Entry>,
}

/// A batch of durable records, in commit order, sent to the commit observer
/// (with `ask`) before any of them is acknowledged.
#[derive(Clone, Debug)]
pub struct Committed {
    /// The records.
    pub records: Vec<CommittedRecord>,
}

/// The observer of durable batches (the index actor implements
/// `Message<Committed, Reply = ()>`; get one with
/// `actor_ref.reply_recipient::<Committed>()`).
pub type CommitObserver = kameo::actor::ReplyRecipient<Committed, (), kameo::error::Infallible>;
