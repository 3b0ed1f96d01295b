//! Watching a path: [`Storage::watch`] and the [`Watch`] stream.
//!
//! A watch is an ordered, gap-free change feed of one path: every commit
//! that affects the path (the same relation as [`Storage::history`]), in
//! commit order, each exactly once, replayed from any retained commit and
//! then followed live. It is a [`futures::Stream`] of
//! `Result<WatchEvent, Error>`:
//!
//! ```
//! use futures::StreamExt;
//! use logd::{Change, Node, Options, Storage, WatchOptions};
//!
//! # #[tokio::main(flavor = "multi_thread", worker_threads = 2)]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let dir = tempfile::tempdir()?;
//! let store = Storage::open(dir.path(), Options::default()).await?;
//! store.patch("users.ada", "{name: Ada}".parse()?).await?; // commit 1
//!
//! // Replay from commit 0, then follow live; the first event is the state at 0.
//! let mut watch = store.watch("users.ada", WatchOptions::from_commit(0)).await?;
//! store.patch("users.ada.born", Node::int(1815)).await?; // commit 2, live
//!
//! let mut state = None;
//! for _ in 0..4 {
//!     let event = watch.next().await.expect("the watch is open")?;
//!     state = event.apply_to(state)?; // the fold: state at event.commit()
//!     match event.change() {
//!         Change::State(s) => assert_eq!(s, None), // nothing at commit 0
//!         Change::Patch(p) => println!("commit {}: {p}", event.commit()),
//!         Change::Replace(s) => println!("commit {}: now {s:?}", event.commit()),
//!         Change::ReplayComplete => assert_eq!(event.commit(), 1), // live from here
//!     }
//! }
//! assert_eq!(state, store.read_state_at("users.ada", 2).await?);
//! watch.close(); // or drop it
//! store.close().await?;
//! # Ok(())
//! # }
//! ```
//!
//! # The events
//!
//! 1. Unless [`WatchOptions::no_init`]: the full state at the path at the
//!    start commit ([`Change::State`]).
//! 2. One event per commit in `(start, current]` that affects the path,
//!    read from the index and the log (snapshots included), then
//!    [`Change::ReplayComplete`] at `current`, the commit that was current
//!    when `watch` was called (always sent, also when nothing was replayed).
//! 3. Live: every later commit that affects the path.
//!
//! A commit event is [`Change::Patch`] — the part of the commit's merged
//! patch at the path, which applied to the previous state gives the new
//! one — or, when the commit rewrote an *ancestor* of the path (deleted or
//! replaced it, or patched an array there as an object) so that no part of
//! its patch lies at the path, [`Change::Replace`]: the resulting state at
//! the path (a replacement rather than a diff: it is exact whatever the
//! ancestor's op was, and costs one read at that commit). Each event also
//! has the commit's time, label and transaction id. Folding the events with
//! [`WatchEvent::apply_to`] from the first state gives
//! `read_state_at(path, event.commit())` after every event.
//!
//! # Guarantees
//!
//! * A watcher sees only durable commits (per `Options::durability`, as an
//!   acknowledgement does); a commit it is told of reads back at once.
//! * Writers never wait for watchers. Each watch queues at most
//!   [`WatchOptions::buffer`] events (and its stream holds at most as many
//!   more, taken from the queue in one go); a consumer that falls further
//!   behind is moved off the live feed and catches up from the log when it
//!   reads again, without losing an event.
//! * A start below the oldest readable commit is [`Error::Compacted`] at
//!   once; if compaction removes what a lagging watch still has to replay,
//!   the stream ends with [`Error::Compacted`] — never with a silent gap.
//! * [`Storage::close`] ends every watch with [`Error::Closed`]. After an
//!   error the stream yields `None`. Dropping a [`Watch`] (or
//!   [`Watch::close`]) unsubscribes it.

use std::pin::Pin;
use std::task::{Context, Poll};

use futures::Stream;
use logd_actors::watch::{DEFAULT_BUFFER, WatchDeps, WatchSpec, WatchStream};
use logd_core::KPath;

pub use logd_actors::watch::{Change, WatchEvent};

use crate::{Error, Storage};

/// Where a watch starts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum WatchFrom {
    /// At the current commit: no replay (the default).
    #[default]
    Now,
    /// At this commit: the commits after it are replayed first.
    Commit(u64),
}

/// How to watch: where to start, whether the first event is the full
/// state, and how many events to buffer. Start from
/// `WatchOptions::default()` (now, with the initial state) or
/// [`WatchOptions::from_commit`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct WatchOptions {
    /// Where to start.
    pub from: WatchFrom,
    /// Whether the first event is the full state at the start commit
    /// (default `true`; the Go protocol's `noInit: false`).
    pub init: bool,
    /// How many events the watch buffers before it leaves the live feed
    /// and catches up from the log (default 1,024).
    pub buffer: usize,
}

impl Default for WatchOptions {
    fn default() -> WatchOptions {
        WatchOptions {
            from: WatchFrom::Now,
            init: true,
            buffer: DEFAULT_BUFFER,
        }
    }
}

impl WatchOptions {
    /// Replay the commits after `commit`, then follow live.
    pub fn from_commit(commit: u64) -> WatchOptions {
        WatchFrom::Commit(commit).into()
    }

    /// Without the initial state event.
    pub fn no_init(mut self) -> WatchOptions {
        self.init = false;
        self
    }

    /// With a buffer of `events` (at least 1).
    pub fn buffer(mut self, events: usize) -> WatchOptions {
        self.buffer = events.max(1);
        self
    }
}

impl From<WatchFrom> for WatchOptions {
    fn from(from: WatchFrom) -> WatchOptions {
        WatchOptions {
            from,
            ..WatchOptions::default()
        }
    }
}

/// A running watch: a [`Stream`] of `Result<WatchEvent, Error>` (use
/// `futures::StreamExt::next`). It ends with an error (then yields `None`)
/// or when closed; dropping it unsubscribes. See the [module docs](self).
#[derive(Debug)]
pub struct Watch {
    inner: WatchStream,
}

impl Watch {
    /// The watched path.
    pub fn path(&self) -> &KPath {
        self.inner.path()
    }

    /// The start commit: the commit of the initial state; events follow it.
    pub fn start_commit(&self) -> u64 {
        self.inner.start_commit()
    }

    /// The commit that was current when the watch started; the
    /// [`Change::ReplayComplete`] marker carries it.
    pub fn replay_target(&self) -> u64 {
        self.inner.replay_target()
    }

    /// How many live events wait in the buffer now (at most
    /// [`WatchOptions::buffer`]).
    pub fn queued(&self) -> usize {
        self.inner.queued()
    }

    /// Ends the watch now: the stream yields `None` from here on and the
    /// store forgets it. Idempotent; dropping the `Watch` does the same.
    pub fn close(&mut self) {
        self.inner.close();
    }
}

impl Stream for Watch {
    type Item = Result<WatchEvent, Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        Pin::new(&mut self.inner).poll_next(cx)
    }
}

impl Storage {
    /// Watches `path`: see the [`watch` module](crate::watch) for the
    /// events and guarantees. `options` is a [`WatchOptions`] or a
    /// [`WatchFrom`].
    ///
    /// Errors at once: a malformed path or one with a keyed segment `(k)`
    /// ([`Error::InvalidPath`]), a start after the current commit
    /// ([`Error::FutureCommit`]) or below the oldest readable one
    /// ([`Error::Compacted`]), a closed store ([`Error::Closed`]).
    /// Every commit acknowledged before `watch` returns is in the events
    /// (in the state, the replay, or live); so is every later one.
    ///
    /// # Cancellation safety
    ///
    /// Cancel-safe: a dropped call registers nothing that outlives it (a
    /// registration made just before is dropped with the stream it was for).
    pub async fn watch(
        &self,
        path: &str,
        options: impl Into<WatchOptions>,
    ) -> Result<Watch, Error> {
        self.check_open()?;
        let options = options.into();
        let path = KPath::parse(path)?;
        let deps = WatchDeps {
            hub: self.inner.watch_hub.clone(),
            index: self.inner.index.clone(),
            reader: self.inner.engine.reader.clone(),
            last_acked: self.inner.last_acked.clone(),
        };
        let spec = WatchSpec {
            path,
            from: match options.from {
                WatchFrom::Now => None,
                WatchFrom::Commit(c) => Some(c),
            },
            init: options.init,
            buffer: options.buffer,
        };
        Ok(Watch {
            inner: WatchStream::start(deps, spec).await?,
        })
    }
}
