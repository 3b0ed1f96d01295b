//! The record cache: recent durable records by commit, so that reads of
//! recent commits never touch the disk.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use logd_core::wal::Entry;

/// Recent durable records by commit, bounded by their encoded size.
#[derive(Debug)]
pub struct RecordCache {
    inner: Mutex<CacheInner>,
    budget: usize,
}

#[derive(Debug, Default)]
struct CacheInner {
    records: BTreeMap<u64, (Arc<Entry>, usize)>,
    bytes: usize,
}

impl RecordCache {
    /// A cache holding at most about `budget` bytes of encoded records.
    pub fn new(budget: usize) -> RecordCache {
        RecordCache {
            inner: Mutex::new(CacheInner::default()),
            budget,
        }
    }

    /// Adds a record; the oldest records go when over budget.
    pub fn insert(&self, commit: u64, entry: Arc<Entry>, bytes: usize) {
        let Ok(mut g) = self.inner.lock() else {
            return;
        };
        if let Some((_, old)) = g.records.insert(commit, (entry, bytes)) {
            g.bytes -= old;
        }
        g.bytes += bytes;
        while g.bytes > self.budget {
            let Some((_, (_, b))) = g.records.pop_first() else {
                break;
            };
            g.bytes -= b;
        }
    }

    /// The record of `commit`, if cached.
    pub fn get(&self, commit: u64) -> Option<Arc<Entry>> {
        self.inner
            .lock()
            .ok()
            .and_then(|g| g.records.get(&commit).map(|(e, _)| e.clone()))
    }

    /// Drops every record before `commit` (compaction).
    pub fn forget_before(&self, commit: u64) {
        if let Ok(mut g) = self.inner.lock() {
            let keep = g.records.split_off(&commit);
            let dropped: usize = g.records.values().map(|(_, b)| *b).sum();
            g.records = keep;
            g.bytes -= dropped;
        }
    }
}
