//! The one error type of logd.
//!
//! This module owns [`Error`]: a single flat enum, `Debug + Clone + PartialEq`,
//! whose every variant carries enough to act on (paths, offsets, commits).
//! I/O errors are kept as kind + message + path, never as a raw
//! `std::io::Error` (which is neither `Clone` nor `PartialEq`). It never
//! logs and never decides policy; callers match on the variants.

use std::io;
use std::path::{Path, PathBuf};

/// Everything that can go wrong in logd. More variants are added by other
/// parts of the engine; match with a wildcard arm.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Another handle (this process or another) holds the store's `LOCK`.
    #[error("store {dir} is locked by another opener")]
    Locked {
        /// The store directory.
        dir: PathBuf,
    },
    /// A file failed its checks somewhere a torn tail cannot explain.
    #[error("corrupt file {file} at offset {offset}: {reason}")]
    Corrupt {
        /// The damaged file.
        file: PathBuf,
        /// Byte offset of the damage.
        offset: u64,
        /// What failed.
        reason: String,
    },
    /// A file-system operation failed.
    #[error("{op} {path}: {message} ({kind:?})")]
    Io {
        /// The operation (`"open"`, `"write"`, `"sync"`, ...).
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The I/O error kind.
        kind: io::ErrorKind,
        /// The I/O error's message.
        message: String,
    },
    /// A record is larger than `Options::max_record_bytes`.
    #[error("record of {bytes} bytes exceeds the maximum of {max}")]
    TooLarge {
        /// The encoded record size.
        bytes: u64,
        /// The configured maximum.
        max: u64,
    },
    /// A check failed: `commit`, sequenced after the caller's read commit,
    /// affected `path`.
    #[error("conflict at {path}: changed by commit {commit}")]
    Conflict {
        /// The checked path (kinded-path text).
        path: String,
        /// The latest commit that affected it.
        commit: u64,
    },
    /// The log writer stopped accepting writes after a failure (fail-stop);
    /// reopen the store.
    #[error("log writer failed: {reason}")]
    WriterFailed {
        /// The failure that stopped it.
        reason: String,
    },
    /// The store (or the actor asked) is closed.
    #[error("store is closed")]
    Closed,
    /// The commit asked for is older than the oldest commit the store can
    /// still rebuild (compaction removed what it needs).
    #[error("commit {commit} was compacted: the oldest readable commit is {oldest}")]
    Compacted {
        /// The commit asked for.
        commit: u64,
        /// The oldest commit still readable.
        oldest: u64,
    },
    /// A snapshot is already being taken; try again after it finishes.
    #[error("a snapshot is already being taken")]
    SnapshotBusy,
    /// Writing a snapshot failed for a reason other than I/O or corruption
    /// (e.g. the log and the snapshot disagree while rewriting).
    #[error("snapshot {file}: {reason}")]
    Snapshot {
        /// The snapshot file.
        file: PathBuf,
        /// What failed.
        reason: String,
    },
    /// A commit number after the current one was named.
    #[error("commit {commit} is in the future (current is {current})")]
    FutureCommit {
        /// The commit asked for.
        commit: u64,
        /// The current commit.
        current: u64,
    },
}

/// Extra variants for snapshots and compaction.
impl Error {
    /// An [`Error::Corrupt`] from a snapshot error at `file`.
    pub fn from_snapshot(file: impl AsRef<Path>, e: &logd_core::snapshot::SnapshotError) -> Error {
        use logd_core::snapshot::SnapshotError as S;
        match e {
            S::Corrupt { offset, reason } => Error::corrupt(file, *offset, reason.clone()),
            S::Version { found } => {
                Error::corrupt(file, 8, format!("unsupported snapshot format {found}"))
            }
            S::Io { source, .. } => Error::io("snapshot io", file, source),
            other => Error::Snapshot {
                file: file.as_ref().to_path_buf(),
                reason: other.to_string(),
            },
        }
    }
}

impl Error {
    /// An [`Error::Io`] from an I/O error.
    pub fn io(op: &'static str, path: impl AsRef<Path>, err: &io::Error) -> Error {
        Error::Io {
            op,
            path: path.as_ref().to_path_buf(),
            kind: err.kind(),
            message: err.to_string(),
        }
    }

    /// An [`Error::Corrupt`].
    pub fn corrupt(file: impl AsRef<Path>, offset: u64, reason: impl Into<String>) -> Error {
        Error::Corrupt {
            file: file.as_ref().to_path_buf(),
            offset,
            reason: reason.into(),
        }
    }
}

/// Maps a kameo send error to an [`Error`]: a handler error is passed on;
/// an actor that stopped or is restarting mid-request means the request was
/// lost (`WriterFailed`); an actor that is gone means `Closed`.
pub fn from_send<M>(e: kameo::error::SendError<M, Error>) -> Error {
    use kameo::error::SendError;
    match e {
        SendError::HandlerError(e) => e,
        SendError::ActorNotRunning(_) => Error::Closed,
        SendError::ActorStopped | SendError::ActorRestarting(_) => Error::WriterFailed {
            reason: "the actor stopped before replying (it is being restarted)".into(),
        },
        SendError::MailboxFull(_) => Error::WriterFailed {
            reason: "mailbox full".into(),
        },
        SendError::Timeout(_) => Error::WriterFailed {
            reason: "timed out waiting for a reply".into(),
        },
    }
}
