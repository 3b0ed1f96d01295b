//! The wiring between transactions and the rest of the engine.
//!
//! This module owns [`Engine`], the [`TxBackend`] the `Transaction` actors
//! use in a real store: reads and `seq` checks go through the [`Reader`]
//! (which plans over the index the [`IndexActor`] shares), appends to the
//! [`LogWriter`]. It also owns [`TxIds`],
//! which hands out transaction ids that stay unique across restarts. It never
//! decides anything a transaction decides (that is `transaction`), and never
//! writes log records itself.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::UNIX_EPOCH;

use kameo::actor::ActorRef;
use logd_core::meta::Meta;
use logd_core::wal::{EntryMeta, ParticipantRecord};
use logd_core::{KPath, Node};

use crate::commit::log_writer::{Append, AppendOutcome, Appender, LogWriter, WaitAcked};
use crate::commit::transaction::{AppendAnswer, AppendRequest, TxBackend, TxId};
use crate::disk::fileops::FileOps;
use crate::error::{Error, from_send};
use crate::index::IndexActor;
use crate::open::recovery;
use crate::read::Reader;

/// The store's actors, seen by a transaction.
#[derive(Debug)]
pub struct Engine {
    /// The sequencer.
    pub writer: ActorRef<LogWriter>,
    /// The commit path into the sequencer.
    pub appender: Appender,
    /// The path index.
    pub index: ActorRef<IndexActor>,
    /// The read path.
    pub reader: Arc<Reader>,
    /// The last acknowledged commit.
    pub last_acked: Arc<AtomicU64>,
}

impl TxBackend for Engine {
    fn current_commit(&self) -> u64 {
        self.last_acked.load(Ordering::Acquire)
    }

    async fn read(&self, path: &KPath, commit: u64) -> Result<Option<Node>, Error> {
        self.reader.read(path, commit).await
    }

    async fn latest_affecting(
        &self,
        paths: &[KPath],
        from: u64,
        to: u64,
    ) -> Result<Option<u64>, Error> {
        self.reader.latest_affecting(paths, from, to).await
    }

    async fn wait_for(&self, commit: u64) -> Result<(), Error> {
        // The conflicting commit was sequenced before our append and is in a
        // batch being made durable: the writer answers when the flush that
        // covers it is done (no polling), or fails if the writer failed.
        if self.last_acked.load(Ordering::Acquire) >= commit {
            return Ok(());
        }
        match tokio::time::timeout(WAIT_FOR_ACK, self.writer.ask(WaitAcked { commit })).await {
            Ok(answer) => answer.map(|_| ()).map_err(from_send),
            Err(_) => Err(Error::WriterFailed {
                reason: format!("commit {commit} was not acknowledged within {WAIT_FOR_ACK:?}"),
            }),
        }
    }

    async fn append(&self, req: AppendRequest) -> Result<AppendAnswer, Error> {
        let when = req
            .when
            .duration_since(UNIX_EPOCH)
            .ok()
            .and_then(|d| u64::try_from(d.as_nanos()).ok());
        let outcome = self
            .appender
            .append(Append {
                patch: req.patch,
                tx_id: req.tx_id.0,
                participants: req
                    .participants
                    .into_iter()
                    .map(|(path, matches)| ParticipantRecord { path, matches })
                    .collect(),
                meta: EntryMeta {
                    label: req.label,
                    seq: req.seq,
                },
                checks: req.checks,
                read_commit: req.read_commit,
                when,
            })
            .await?;
        Ok(match outcome {
            AppendOutcome::Appended(a) => AppendAnswer::Appended { commit: a.commit },
            AppendOutcome::Conflict { commit, .. } => AppendAnswer::Conflict { commit },
        })
    }
}

/// How long a transaction waits for a conflicting commit to be acknowledged.
const WAIT_FOR_ACK: std::time::Duration = std::time::Duration::from_secs(30);

/// How many ids one `meta` write reserves.
const ID_BLOCK: u64 = 1 << 16;

/// Transaction ids, unique across restarts: ids are reserved in blocks whose
/// upper end is written (durably) to `<dir>/meta` before any id of the block
/// is handed out, and a reopened store starts above the recorded high-water
/// mark and above every id found in the log.
#[derive(Debug)]
pub struct TxIds {
    next: AtomicU64,
    reserved: std::sync::Mutex<u64>,
    dir: PathBuf,
    meta: std::sync::Mutex<Meta>,
    fs: Arc<dyn FileOps>,
    umask: u32,
}

impl TxIds {
    /// Starts above `max(meta.tx_id_high_water, max_tx_id)` and reserves
    /// nothing yet, so opening a store does not wait for a `meta` rewrite:
    /// the first [`TxIds::next`] reserves.
    pub fn open_deferred(
        dir: PathBuf,
        meta: Meta,
        max_tx_id: u64,
        fs: Arc<dyn FileOps>,
        umask: u32,
    ) -> TxIds {
        let start = meta.tx_id_high_water.max(max_tx_id) + 1;
        TxIds {
            next: AtomicU64::new(start),
            reserved: std::sync::Mutex::new(start - 1),
            dir,
            meta: std::sync::Mutex::new(meta),
            fs,
            umask,
        }
    }

    /// The next id.
    pub fn next(&self) -> Result<TxId, Error> {
        let id = self.next.fetch_add(1, Ordering::AcqRel);
        self.reserve_through(id)?;
        Ok(TxId(id))
    }

    fn reserve_through(&self, id: u64) -> Result<(), Error> {
        let mut reserved = self.reserved.lock().map_err(|_| Error::Closed)?;
        if id <= *reserved {
            return Ok(());
        }
        let mut meta = self.meta.lock().map_err(|_| Error::Closed)?;
        let high = id.saturating_add(ID_BLOCK);
        meta.tx_id_high_water = high;
        recovery::write_meta(&*self.fs, &self.dir, &meta, self.umask)?;
        *reserved = high;
        Ok(())
    }
}
