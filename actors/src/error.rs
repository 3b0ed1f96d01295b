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
    #[error("store {dir} is locked by another opener{}; one process opens a store at a time: stop that process or wait for it to close the store", holder.map(|p| format!(" (pid {p})")).unwrap_or_default())]
    Locked {
        /// The store directory.
        dir: PathBuf,
        /// The process id the holder wrote into `LOCK`, when it could be read.
        holder: Option<u32>,
    },
    /// No store exists at the directory, and [`crate::Options::create`] was
    /// not set (or the open is read-only).
    #[error("no store at {dir} (it has no `meta` file); open with `Options::create` to make one")]
    NoStore {
        /// The directory given.
        dir: PathBuf,
    },
    /// One of the store's own files or directories is a symbolic link. logd
    /// never follows a link inside a store (a link named like a segment would
    /// make appends and truncations hit a file outside it).
    #[error("{path} is a symbolic link; logd does not follow links inside a store")]
    Symlink {
        /// The link.
        path: PathBuf,
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
    /// The transaction could not commit as one: participant paths collide
    /// (equal, nested, or mixed accessors under one parent), or a checked path
    /// kept changing under it. Nothing was written.
    #[error("conflict at {path}: {reason}")]
    Conflict {
        /// The path in conflict (empty when it concerns the whole transaction).
        path: String,
        /// The commit that changed it, when one did (0 otherwise).
        commit: u64,
        /// What collided.
        reason: String,
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
    /// Malformed Tony text.
    #[error("parse error at line {line}, column {column}: {message}")]
    Parse {
        /// 1-based line.
        line: usize,
        /// 1-based column, in characters.
        column: usize,
        /// What was wrong.
        message: String,
    },
    /// A malformed kinded path.
    #[error("invalid path {path:?} at offset {offset}: {message}")]
    InvalidPath {
        /// The text given.
        path: String,
        /// Byte offset of the problem.
        offset: usize,
        /// What was wrong.
        message: String,
    },
    /// A patch failed or was refused (e.g. a `!replace` whose `from` differs,
    /// `!pipe`). Nothing was committed.
    #[error("patch failed: {0}")]
    Patch(#[from] logd_core::patch::PatchError),
    /// More patchers than the transaction has participants.
    #[error("transaction {id} is full: it has {participants} participants")]
    TxFull {
        /// The transaction id.
        id: u64,
        /// Its number of participants.
        participants: usize,
    },
    /// No live transaction has this id (unknown, or already finished).
    #[error("transaction {id} not found (unknown or finished)")]
    TxNotFound {
        /// The transaction id.
        id: u64,
    },
    /// The transaction did not complete within its `max_duration`; nothing was written.
    #[error("transaction {id} timed out after {after:?} waiting for its participants")]
    TxTimeout {
        /// The transaction id.
        id: u64,
        /// Its deadline.
        after: std::time::Duration,
    },
    /// A participant dropped its `Patcher` without committing, so the
    /// transaction can never complete: the others get this at once instead
    /// of waiting out its `max_duration`. Nothing was written.
    #[error("transaction {id} abandoned: a participant dropped its patcher without committing")]
    TxAbandoned {
        /// The transaction id.
        id: u64,
    },
    /// A participant's patch (its path plus its data, or its match path
    /// plus its pattern) nests deeper than the one limit
    /// (`logd_core::node::MAX_NESTING`), past which stored data could not
    /// be printed as text that parses back. Nothing was written.
    #[error("nesting of {depth} levels exceeds the maximum of {max}")]
    TooDeep {
        /// The nesting of the patch (path segments plus data levels).
        depth: usize,
        /// The limit.
        max: usize,
    },
    /// An argument is out of range (e.g. a transaction with 0 participants).
    #[error("invalid argument: {reason}")]
    InvalidArgument {
        /// What is wrong.
        reason: String,
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
    /// An `ELOOP` (what `O_NOFOLLOW` gives for a link) is [`Error::Symlink`].
    pub fn io(op: &'static str, path: impl AsRef<Path>, err: &io::Error) -> Error {
        if err.raw_os_error() == Some(libc::ELOOP) {
            return Error::Symlink {
                path: path.as_ref().to_path_buf(),
            };
        }
        Error::Io {
            op,
            path: path.as_ref().to_path_buf(),
            kind: err.kind(),
            message: err.to_string(),
        }
    }

    /// The one mapping of a path-index error met while reading `commit`:
    /// a future commit is [`Error::FutureCommit`], forgotten commits are
    /// [`Error::Compacted`], anything else means the index and the log
    /// disagree ([`Error::Corrupt`] naming `<index>`).
    pub fn from_index(e: logd_core::index::IndexError, commit: u64) -> Error {
        use logd_core::index::IndexError as I;
        match e {
            I::FutureCommit { commit, last } => Error::FutureCommit {
                commit,
                current: last,
            },
            I::Compacted { oldest, .. } => Error::Compacted { commit, oldest },
            other => Error::Corrupt {
                file: PathBuf::from("<index>"),
                offset: 0,
                reason: other.to_string(),
            },
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

impl From<logd_core::text::ParseError> for Error {
    fn from(e: logd_core::text::ParseError) -> Error {
        Error::Parse {
            line: e.line,
            column: e.column,
            message: e.message,
        }
    }
}

impl From<logd_core::KPathError> for Error {
    fn from(e: logd_core::KPathError) -> Error {
        Error::InvalidPath {
            path: e.path,
            offset: e.offset,
            message: e.message,
        }
    }
}
