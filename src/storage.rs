//! The public store handle (first cut: open, close, current commit, actors).
//!
//! This module owns [`Storage`]: it takes the directory lock, runs the one
//! recovery scan, starts the supervised write path and hands out the actor
//! refs. It never writes log records itself (the log writer does) and never
//! holds engine state beyond the handles.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use kameo::actor::ActorRef;
use logd_actors::fileops::{FileOps, RealFs};
use logd_actors::log_writer::{LogWriter, WriterArgs};
use logd_actors::recovery::{DirLock, Recovered, recover};
use logd_actors::supervisor::{Started, Supervisor, start};
use logd_actors::{Error, Options};

/// The engine's actors, for callers (load tests, tools) that drive the
/// mailboxes directly.
#[derive(Clone, Debug)]
pub struct Actors {
    /// The supervisor.
    pub supervisor: ActorRef<Supervisor>,
    /// The log writer: send it `Append`, `Seal`, `Flush`.
    pub log_writer: ActorRef<LogWriter>,
}

#[derive(Debug)]
struct Inner {
    dir: PathBuf,
    lock: Mutex<Option<DirLock>>,
    started: Started,
    last_acked: Arc<AtomicU64>,
    closed: AtomicBool,
}

/// An open store. Cheap to clone; every clone is the same store.
#[derive(Clone, Debug)]
pub struct Storage {
    inner: Arc<Inner>,
}

impl Storage {
    /// Opens (or creates) the store in `dir`: takes `<dir>/LOCK`
    /// ([`Error::Locked`] if another opener has it), recovers the log and
    /// starts the actors.
    pub async fn open(dir: impl AsRef<Path>, options: Options) -> Result<Storage, Error> {
        Storage::open_with(dir, options, Arc::new(RealFs))
            .await
            .map(|(s, _)| s)
    }

    /// [`Storage::open`] with explicit file operations (fault injection);
    /// also returns what recovery found.
    pub async fn open_with(
        dir: impl AsRef<Path>,
        options: Options,
        fs: Arc<dyn FileOps>,
    ) -> Result<(Storage, Recovered), Error> {
        let dir = dir.as_ref().to_path_buf();
        let lock = DirLock::acquire(&dir, &options)?;
        let (recovered, options, fs) = {
            let dir = dir.clone();
            tokio::task::spawn_blocking(move || {
                recover(&dir, &options, &*fs).map(|r| (r, options, fs))
            })
            .await
            .map_err(|e| Error::WriterFailed {
                reason: format!("recovery task failed: {e}"),
            })??
        };
        let args = WriterArgs::new(dir.clone(), options, fs, None, &recovered);
        let started = start(args).await?;
        let last_acked = started.last_acked.clone();
        let storage = Storage {
            inner: Arc::new(Inner {
                dir,
                lock: Mutex::new(Some(lock)),
                started,
                last_acked,
                closed: AtomicBool::new(false),
            }),
        };
        Ok((storage, recovered))
    }

    /// The store directory.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// The last durable, acknowledged commit (0 for an empty store).
    pub fn current_commit(&self) -> u64 {
        self.inner.last_acked.load(Ordering::SeqCst)
    }

    /// The actor refs.
    pub fn actors(&self) -> Actors {
        Actors {
            supervisor: self.inner.started.supervisor.clone(),
            log_writer: self.inner.started.writer.clone(),
        }
    }

    /// Makes everything durable, stops the actors and releases the lock.
    /// Later calls (on any clone) return `Ok(())`; other operations on a
    /// closed store fail with [`Error::Closed`].
    pub async fn close(&self) -> Result<(), Error> {
        if self.inner.closed.swap(true, Ordering::SeqCst) {
            return Ok(());
        }
        let result = self.inner.started.stop().await;
        if let Ok(mut g) = self.inner.lock.lock() {
            g.take();
        }
        result
    }

    /// Whether [`Storage::close`] was called.
    pub fn is_closed(&self) -> bool {
        self.inner.closed.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use logd_actors::log_writer::{Append, AppendOutcome};
    use logd_core::Node;
    use logd_core::wal::EntryMeta;

    fn rec(i: i64) -> Append {
        Append {
            patch: Node::object([("a", Node::int(i))]),
            tx_id: i as u64,
            participants: vec![],
            meta: EntryMeta::default(),
            checks: vec![],
            read_commit: 0,
        }
    }

    #[tokio::test]
    async fn open_append_close_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let s = Storage::open(dir.path(), Options::default()).await.unwrap();
        assert_eq!(s.current_commit(), 0);
        assert!(matches!(
            Storage::open(dir.path(), Options::default()).await,
            Err(Error::Locked { .. })
        ));
        let w = s.actors().log_writer;
        for i in 1..=3 {
            let out = w.ask(rec(i)).await.unwrap();
            assert!(matches!(out, AppendOutcome::Appended(a) if a.commit == i as u64));
            assert_eq!(s.current_commit(), i as u64);
        }
        s.clone().close().await.unwrap();
        assert!(s.is_closed());
        s.close().await.unwrap();
        let s = Storage::open(dir.path(), Options::default()).await.unwrap();
        assert_eq!(s.current_commit(), 3);
        s.close().await.unwrap();
    }
}
