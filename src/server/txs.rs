//! The server's table of open multi-participant transactions (§7.2).
//!
//! The engine decides every transaction ([`crate::Tx`], [`crate::Patcher`]);
//! this table only adds what the wire needs on top: how many participants
//! have joined, one deadline measured from `newtx` (D11), and a `go` signal.
//!
//! Why a signal: a participant's patch is handed to the engine only once
//! every participant has joined (or the transaction is over), so that a
//! participant whose own `timeout` fires, or whose connection closes, can
//! still *withdraw* its patch (drop its `Patcher` before `commit`) instead
//! of leaving it enrolled as the Go server does (D10). Withdrawing makes
//! the engine abandon the transaction, and `go` wakes the others so they
//! hear that at once instead of at the deadline. All participants join
//! through this server (it holds the store's lock), so it knows when the
//! last one has joined.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::time::Instant;

/// One open transaction as the server sees it.
#[derive(Debug)]
pub(crate) struct Slot {
    participants: usize,
    joined: AtomicUsize,
    go: tokio::sync::watch::Sender<bool>,
    /// When the engine times the transaction out (from `newtx`).
    pub(crate) deadline: Instant,
}

impl Slot {
    /// Counts one more participant; the last one releases everyone.
    pub(crate) fn joined(&self) {
        let n = self.joined.fetch_add(1, Ordering::AcqRel) + 1;
        if n >= self.participants {
            self.release();
        }
    }

    /// Wakes every waiting participant: hand your patch over now.
    pub(crate) fn release(&self) {
        self.go.send_replace(true);
    }

    /// A receiver of the `go` signal.
    pub(crate) fn subscribe(&self) -> tokio::sync::watch::Receiver<bool> {
        self.go.subscribe()
    }
}

/// The open transactions, by id.
#[derive(Debug, Default)]
pub(crate) struct Txs {
    map: Mutex<HashMap<u64, Arc<Slot>>>,
}

impl Txs {
    /// How many transactions are open.
    pub(crate) fn len(&self) -> usize {
        self.map.lock().map(|m| m.len()).unwrap_or(0)
    }

    /// Registers transaction `id`; it leaves the table a moment after its
    /// deadline (by then the engine has decided it).
    pub(crate) fn open(self: &Arc<Self>, id: u64, participants: usize, deadline: Instant) {
        let (go, _) = tokio::sync::watch::channel(false);
        let slot = Arc::new(Slot {
            participants,
            joined: AtomicUsize::new(0),
            go,
            deadline,
        });
        if let Ok(mut m) = self.map.lock() {
            m.insert(id, slot);
        }
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            tokio::time::sleep_until(deadline + std::time::Duration::from_secs(1)).await;
            if let Some(txs) = weak.upgrade() {
                txs.forget(id);
            }
        });
    }

    /// The slot of transaction `id`, if open.
    pub(crate) fn get(&self, id: u64) -> Option<Arc<Slot>> {
        self.map.lock().ok().and_then(|m| m.get(&id).cloned())
    }

    /// Removes transaction `id` (decided).
    pub(crate) fn forget(&self, id: u64) {
        if let Ok(mut m) = self.map.lock() {
            m.remove(&id);
        }
    }
}
