//! Watch: an ordered, gap-free change feed of one path, from any retained
//! commit, fed by the log writer's durable batches.
//!
//! This module owns the [`WatchHub`] actor (which commits reach which
//! watchers), each watcher's bounded buffer ([`Slot`]), and the consumer
//! side, [`WatchStream`]: a `futures::Stream` of [`WatchEvent`]s that replays
//! history from the index and the log, then follows the hub. It never
//! writes anything and never blocks a writer.
//!
//! # Where the feed comes from
//!
//! The log writer hands every batch to the hub (a `tell` into the hub's
//! unbounded mailbox, which never waits) right after the batch became
//! visible — written and synced per `Options::durability`, put into the
//! index, and `last_acked` moved past it — and just before it acknowledges
//! the batch's callers (`WriterArgs::with_feed`). Flushes are serial, so
//! the hub sees batches in commit order, and it never sees a commit that is
//! not durable (a failed batch is never fed). A commit a watcher is told of
//! is therefore readable (`read_state_at(path, commit)`) at once.
//!
//! # Matching
//!
//! The hub keeps the watched paths in a trie. A commit's merged patch is
//! walked once ([`touched_paths`]: the same ends the index records), and for
//! each end `e` the hub visits only the trie nodes the "affects" relation of
//! [`logd_core::index`] can reach: the watchers at the ancestors of `e`
//! (something below them changed), the subtree at `e` (it was rewritten),
//! and, at each ancestor where `e` continues through a field or sparse
//! index, the subtrees of that node's dense-index children (an object patch
//! over an array removes `a[i]`). The cost is proportional to the paths the
//! commit touches and the watchers it reaches, not to the number of
//! watchers. A commit reaches a watcher once, however many ends match it.
//!
//! # Replay, live, lag
//!
//! A watcher registers with the hub first, at the hub's last commit `H`:
//! from then on the hub queues every matching commit after `H` into the
//! watcher's [`Slot`]. The stream then replays `(from, C]` (`C`, the commit
//! current at the start, is at least `H`) from the index (`Affecting`, the
//! relation `history` uses) and the log, and then drains the queue, skipping
//! what replay already covered: no gap and no duplicate across the switch.
//!
//! Writers never wait for watchers. A slot holds at most `buffer` events;
//! when a batch would overflow it, the hub fills it up with the batch's
//! first matching commits, takes the watcher off the live feed (out of the
//! trie) and marks the slot lagged "through" the commit before the first
//! one left out (everything up to it is in the queue). The
//! stream drains the queue, re-registers (getting a fresh `H'`), replays
//! `(through, H']` from the log, and goes on live — as etcd's unsynced
//! watchers do. The stream takes the whole queue in one go (one lock per
//! batch, not per event), so a slow consumer holds at most two buffers'
//! worth of events (queued, and taken but not yet read), whatever the
//! commit rate. The events share the commits' records (`Arc`s).
//!
//! Replay that meets compaction (the index forgot the range, the record's
//! segment is gone, a read below the horizon) ends the stream with
//! [`Error::Compacted`]: never a silent gap. [`CloseAll`] (the store's
//! `close()`) ends every stream with [`Error::Closed`].
//!
//! # What an event carries
//!
//! The first event (unless the watch was started without it) is the full
//! state at the path at the start commit. Each later event is either the
//! commit's patch *as seen from the path* — the part of the merged root
//! patch at the path ([`logd_core::read::sub_patches`], exactly the part
//! the read path folds), so `apply(previous, part) == next` — or, when the
//! commit rewrote an ancestor of the path (replaced or deleted it, turned an
//! array into an object, ...) and so has no part of its own at the path, a
//! *replacement*: the resulting state at the path, read at that commit.
//! Folding the events from the first state gives `read_state_at(path, c)`
//! at every event's commit ([`WatchEvent::apply_to`]).

use std::collections::{HashMap, VecDeque};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context as TaskContext, Poll};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::stream::{BoxStream, Stream, StreamExt};
use kameo::Actor;
use kameo::actor::ActorRef;
use kameo::message::{Context, Message};
use logd_core::index::touched_paths;
use logd_core::kpath::{KPath, Segment};
use logd_core::node::Node;
use logd_core::wal::Entry;
use tokio::sync::Notify;
use tracing::{debug, instrument, warn};

use crate::commit::transaction::TxId;
use crate::disk::record::DurableBatch;
use crate::error::{Error, from_send};
use crate::index::{Affecting, IndexActor};
use crate::read::Reader;

/// The default number of events a watcher's buffer holds.
pub const DEFAULT_BUFFER: usize = 1024;

/// Replay lists the affecting commits of at most this many commits at a
/// time, so a long catch-up holds a bounded list.
const REPLAY_PAGE: u64 = 4096;

/// One matched commit in a watcher's buffer.
type Item = (u64, Arc<Entry>);

/// A watcher's buffer, shared by the hub (which fills it) and the stream
/// (which drains it).
#[derive(Debug)]
pub struct Slot {
    state: Mutex<SlotState>,
    notify: Notify,
    capacity: usize,
    /// Set with `SlotState::ended`: lets the stream check without the lock.
    has_ended: AtomicBool,
}

#[derive(Debug, Default)]
struct SlotState {
    queue: VecDeque<Item>,
    /// Off the live feed: the queue holds every matching commit up to this one.
    lagged: Option<u64>,
    /// The stream ends with this error (at once; the queue is dropped).
    ended: Option<Error>,
}

/// What the stream finds in its slot.
enum Pop {
    Item(Item),
    Lagged(u64),
    Ended(Error),
    Empty,
}

impl Slot {
    /// A slot that holds up to `capacity` events (at least 1).
    pub fn new(capacity: usize) -> Slot {
        Slot {
            state: Mutex::new(SlotState::default()),
            notify: Notify::new(),
            capacity: capacity.max(1),
            has_ended: AtomicBool::new(false),
        }
    }

    fn lock(&self) -> MutexGuard<'_, SlotState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues one batch's items for this watcher (ascending commits; every
    /// earlier matching commit is queued already). `false` when they do not
    /// all fit: the slot then takes what fits and is lagged through the
    /// commit before the first item left out.
    fn offer(&self, items: &mut Vec<Item>) -> bool {
        let mut st = self.lock();
        if st.ended.is_some() || st.lagged.is_some() {
            items.clear();
            return true;
        }
        let room = self.capacity.saturating_sub(st.queue.len());
        let fits = items.len() <= room;
        if fits {
            st.queue.extend(items.drain(..));
        } else {
            let first_out = items[room].0;
            st.queue.extend(items.drain(..room));
            items.clear();
            st.lagged = Some(first_out - 1);
        }
        drop(st);
        self.notify.notify_one();
        fits
    }

    /// Takes the watcher off the live feed: everything up to `through` is queued.
    fn lag(&self, through: u64) {
        let mut st = self.lock();
        if st.lagged.is_none() {
            st.lagged = Some(through);
        }
        drop(st);
        self.notify.notify_one();
    }

    fn end(&self, e: Error) {
        let mut st = self.lock();
        if st.ended.is_none() {
            st.ended = Some(e);
        }
        self.has_ended.store(true, Ordering::Release);
        st.queue.clear();
        drop(st);
        self.notify.notify_one();
    }

    fn ended(&self) -> Option<Error> {
        if !self.has_ended.load(Ordering::Acquire) {
            return None;
        }
        self.lock().ended.clone()
    }

    /// Like [`Slot::pop`], but moves the whole queue into `local` (one
    /// lock per batch, not per event) and returns its first item.
    fn pop_all(&self, local: &mut VecDeque<Item>) -> Pop {
        let mut st = self.lock();
        if let Some(e) = &st.ended {
            return Pop::Ended(e.clone());
        }
        if !st.queue.is_empty() {
            std::mem::swap(&mut st.queue, local);
            drop(st);
            if let Some(item) = local.pop_front() {
                return Pop::Item(item);
            }
            return Pop::Empty;
        }
        match st.lagged.take() {
            Some(through) => Pop::Lagged(through),
            None => Pop::Empty,
        }
    }

    /// The next item; a lagged slot whose queue is drained is un-lagged
    /// here (the stream re-registers next).
    #[cfg(test)]
    fn pop(&self) -> Pop {
        let mut st = self.lock();
        if let Some(e) = &st.ended {
            return Pop::Ended(e.clone());
        }
        if let Some(item) = st.queue.pop_front() {
            return Pop::Item(item);
        }
        match st.lagged.take() {
            Some(through) => Pop::Lagged(through),
            None => Pop::Empty,
        }
    }

    /// How many events wait in the buffer.
    pub fn len(&self) -> usize {
        self.lock().queue.len()
    }

    /// Whether the buffer is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// One node of the trie of watched paths.
#[derive(Debug, Default)]
struct TrieNode {
    parent: usize,
    seg: Option<Segment>,
    children: HashMap<Segment, usize>,
    /// The children whose segment is a dense index `[i]` (rule 3).
    dense: Vec<usize>,
    /// The watchers of exactly this path.
    watchers: Vec<u64>,
    /// The watchers in this subtree (this node included).
    count: usize,
}

/// The watched paths, as a trie; node 0 is the root. Empty branches are
/// removed, so its size follows the paths watched now.
#[derive(Debug)]
struct Trie {
    nodes: Vec<TrieNode>,
    free: Vec<usize>,
}

impl Default for Trie {
    fn default() -> Trie {
        Trie {
            nodes: vec![TrieNode::default()],
            free: Vec::new(),
        }
    }
}

impl Trie {
    fn insert(&mut self, path: &KPath, id: u64) {
        let mut node = 0;
        self.nodes[0].count += 1;
        for seg in path.segments() {
            node = match self.nodes[node].children.get(seg) {
                Some(&c) => c,
                None => {
                    let fresh = TrieNode {
                        parent: node,
                        seg: Some(seg.clone()),
                        ..TrieNode::default()
                    };
                    let c = match self.free.pop() {
                        Some(c) => {
                            self.nodes[c] = fresh;
                            c
                        }
                        None => {
                            self.nodes.push(fresh);
                            self.nodes.len() - 1
                        }
                    };
                    self.nodes[node].children.insert(seg.clone(), c);
                    if matches!(seg, Segment::Index(_)) {
                        self.nodes[node].dense.push(c);
                    }
                    c
                }
            };
            self.nodes[node].count += 1;
        }
        self.nodes[node].watchers.push(id);
    }

    fn remove(&mut self, path: &KPath, id: u64) {
        let mut node = 0;
        for seg in path.segments() {
            match self.nodes[node].children.get(seg) {
                Some(&c) => node = c,
                None => return,
            }
        }
        let Some(i) = self.nodes[node].watchers.iter().position(|&w| w == id) else {
            return;
        };
        self.nodes[node].watchers.swap_remove(i);
        loop {
            self.nodes[node].count -= 1;
            if node == 0 {
                return;
            }
            let parent = self.nodes[node].parent;
            if self.nodes[node].count == 0 {
                if let Some(seg) = self.nodes[node].seg.take() {
                    self.nodes[parent].children.remove(&seg);
                }
                self.nodes[parent].dense.retain(|&c| c != node);
                self.nodes[node] = TrieNode::default();
                self.free.push(node);
            }
            node = parent;
        }
    }

    /// Calls `hit` for every watcher whose path a commit ending at `end`
    /// can change (the three rules of [`logd_core::index`]; a watcher may
    /// be hit more than once).
    fn matches(&self, end: &KPath, hit: &mut impl FnMut(u64)) {
        let mut node = 0;
        for seg in end.segments() {
            let n = &self.nodes[node];
            if n.count == 0 {
                return;
            }
            // Rule 2: something below this strict ancestor of `end` changed.
            n.watchers.iter().for_each(|&w| hit(w));
            // Rule 3: an object patch here removes the elements `[i]`.
            if matches!(seg, Segment::Field(_) | Segment::Sparse(_)) {
                for &c in &n.dense {
                    self.subtree(c, hit);
                }
            }
            match n.children.get(seg) {
                Some(&c) => node = c,
                None => return,
            }
        }
        // Rule 1: `end` itself and everything below it was rewritten.
        self.subtree(node, hit);
    }

    fn subtree(&self, from: usize, hit: &mut impl FnMut(u64)) {
        let mut stack = vec![from];
        while let Some(n) = stack.pop() {
            let node = &self.nodes[n];
            if node.count == 0 {
                continue;
            }
            node.watchers.iter().for_each(|&w| hit(w));
            stack.extend(node.children.values().copied());
        }
    }
}

/// One registered watcher, as the hub sees it.
#[derive(Debug)]
struct Watcher {
    path: KPath,
    slot: Arc<Slot>,
    /// In the trie (on the live feed).
    live: bool,
    /// The last commit matched to it (one event per commit).
    stamp: u64,
    /// This batch's items, delivered at the end of the batch.
    pending: Vec<Item>,
}

/// The watch hub: matches each durable batch to the watchers it affects
/// and queues it into their slots. Spawn it with
/// `WatchHub::spawn_with_mailbox(WatchHub::new(last_commit), kameo::mailbox::unbounded())`
/// and hand `recipient::<DurableBatch>()` to the log writer
/// (`WriterArgs::with_feed`).
#[derive(Debug)]
pub struct WatchHub {
    /// The last commit fed to the hub.
    commit: u64,
    trie: Trie,
    watchers: HashMap<u64, Watcher>,
    closed: bool,
    /// Watchers with items pending in the current batch.
    touched: Vec<u64>,
    /// How many times a watcher left the live feed (fell behind).
    lags: u64,
}

impl Actor for WatchHub {
    type Args = WatchHub;
    type Error = kameo::error::Infallible;

    async fn on_start(args: WatchHub, _: ActorRef<Self>) -> Result<Self, Self::Error> {
        Ok(args)
    }
}

impl WatchHub {
    /// A hub over a store whose last durable commit is `last_commit`.
    pub fn new(last_commit: u64) -> WatchHub {
        WatchHub {
            commit: last_commit,
            trie: Trie::default(),
            watchers: HashMap::new(),
            closed: false,
            touched: Vec::new(),
            lags: 0,
        }
    }

    /// Takes every live watcher off the feed, through `through`.
    fn lag_all(&mut self, through: u64) {
        for (&id, w) in self.watchers.iter_mut() {
            if w.live {
                w.live = false;
                w.pending.clear();
                self.trie.remove(&w.path, id);
                w.slot.lag(through);
            }
        }
    }
}

impl Message<DurableBatch> for WatchHub {
    type Reply = ();

    #[instrument(name = "watch.feed", level = "trace", skip_all, fields(records = msg.records.len()))]
    async fn handle(&mut self, msg: DurableBatch, _: &mut Context<Self, Self::Reply>) {
        let (Some(first), Some(last)) = (msg.records.first(), msg.records.last()) else {
            return;
        };
        let (first, last) = (first.commit, last.commit);
        if last <= self.commit {
            return; // shown again (a writer restart)
        }
        if first > self.commit + 1 {
            // Never expected: the writer feeds every acknowledged batch.
            // Whoever is live catches up from the log instead of missing it.
            warn!(
                expected = self.commit + 1,
                got = first,
                "watch feed skipped commits; watchers catch up from the log"
            );
            self.lag_all(self.commit);
        }
        let through = self.commit.max(first.saturating_sub(1));
        let Self {
            trie,
            watchers,
            touched,
            lags,
            ..
        } = self;
        for rec in &msg.records {
            let commit = rec.commit;
            if commit <= through {
                continue;
            }
            let mut hit = |id: u64| {
                if let Some(w) = watchers.get_mut(&id)
                    && w.stamp != commit
                {
                    w.stamp = commit;
                    if w.pending.is_empty() {
                        touched.push(id);
                    }
                    w.pending.push((commit, rec.entry.clone()));
                }
            };
            let ends = touched_paths(&rec.entry.patch);
            if ends.is_empty() {
                trie.nodes[0].watchers.iter().for_each(|&w| hit(w));
            }
            for end in &ends {
                trie.matches(end, &mut hit);
            }
        }
        for id in touched.drain(..) {
            let Some(w) = watchers.get_mut(&id) else {
                continue;
            };
            if !w.slot.offer(&mut w.pending) {
                debug!(
                    watcher = id,
                    "watcher fell behind; it catches up from the log"
                );
                w.live = false;
                trie.remove(&w.path, id);
                *lags += 1;
            }
        }
        self.commit = last;
    }
}

/// Register watcher `id` of `path`: the hub queues every matching commit
/// after the one it replies with into `slot`. [`Error::Closed`] once closed.
#[derive(Debug)]
pub struct Subscribe {
    /// The watcher's id, from [`next_watcher_id`] (chosen by the caller, so
    /// a registration whose reply was dropped can still be undone).
    pub id: u64,
    /// The watched path (positional segments only).
    pub path: KPath,
    /// Its buffer.
    pub slot: Arc<Slot>,
}

impl Message<Subscribe> for WatchHub {
    type Reply = Result<u64, Error>;

    #[instrument(name = "watch.subscribe", level = "debug", skip_all, fields(path = %msg.path))]
    async fn handle(&mut self, msg: Subscribe, _: &mut Context<Self, Self::Reply>) -> Self::Reply {
        if self.closed {
            return Err(Error::Closed);
        }
        let id = msg.id;
        if self.watchers.contains_key(&id) {
            return Err(Error::InvalidArgument {
                reason: format!("watcher {id} is already registered"),
            });
        }
        self.trie.insert(&msg.path, id);
        self.watchers.insert(
            id,
            Watcher {
                path: msg.path,
                slot: msg.slot,
                live: true,
                stamp: 0,
                pending: Vec::new(),
            },
        );
        Ok(self.commit)
    }
}

/// Put a lagged watcher back on the live feed; replies with the hub's last
/// commit (the watcher replays up to it from the log).
#[derive(Clone, Copy, Debug)]
pub struct Resubscribe {
    /// The watcher.
    pub id: u64,
}

impl Message<Resubscribe> for WatchHub {
    type Reply = Result<u64, Error>;

    #[instrument(name = "watch.resubscribe", level = "debug", skip_all, fields(id = msg.id))]
    async fn handle(
        &mut self,
        msg: Resubscribe,
        _: &mut Context<Self, Self::Reply>,
    ) -> Self::Reply {
        if self.closed {
            return Err(Error::Closed);
        }
        let Some(w) = self.watchers.get_mut(&msg.id) else {
            return Err(Error::Closed);
        };
        if !w.live {
            w.live = true;
            self.trie.insert(&w.path, msg.id);
        }
        Ok(self.commit)
    }
}

/// Forget a watcher (its stream was dropped or closed).
#[derive(Clone, Copy, Debug)]
pub struct Unsubscribe {
    /// The watcher.
    pub id: u64,
}

impl Message<Unsubscribe> for WatchHub {
    type Reply = ();

    #[instrument(name = "watch.unsubscribe", level = "debug", skip_all, fields(id = msg.id))]
    async fn handle(&mut self, msg: Unsubscribe, _: &mut Context<Self, Self::Reply>) {
        if let Some(w) = self.watchers.remove(&msg.id)
            && w.live
        {
            self.trie.remove(&w.path, msg.id);
        }
    }
}

/// End every watch with [`Error::Closed`] and refuse new ones (the store
/// is closing).
#[derive(Clone, Copy, Debug, Default)]
pub struct CloseAll;

impl Message<CloseAll> for WatchHub {
    type Reply = ();

    #[instrument(name = "watch.close_all", level = "debug", skip_all)]
    async fn handle(&mut self, _: CloseAll, _: &mut Context<Self, Self::Reply>) {
        self.closed = true;
        for (_, w) in self.watchers.drain() {
            w.slot.end(Error::Closed);
        }
        self.trie = Trie::default();
    }
}

/// Ask the hub for its [`HubFigures`].
#[derive(Clone, Copy, Debug, Default)]
pub struct HubStats;

/// What the hub holds and has done.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, kameo::Reply)]
pub struct HubFigures {
    /// Registered watchers.
    pub watchers: usize,
    /// Of them, those on the live feed (the others are catching up).
    pub live: usize,
    /// How many times a watcher fell behind and left the live feed.
    pub lags: u64,
    /// The last commit the hub was fed.
    pub commit: u64,
}

impl Message<HubStats> for WatchHub {
    type Reply = HubFigures;

    async fn handle(&mut self, _: HubStats, _: &mut Context<Self, Self::Reply>) -> Self::Reply {
        HubFigures {
            watchers: self.watchers.len(),
            live: self.watchers.values().filter(|w| w.live).count(),
            lags: self.lags,
            commit: self.commit,
        }
    }
}

/// What one [`WatchEvent`] says about the watched path.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Change<'a> {
    /// The full state at the path at the start commit (`None`: absent).
    /// Only the first event, and only when the watch asked for it.
    State(Option<&'a Node>),
    /// The commit's patch as seen from the path: the part of its merged
    /// root patch at the path. Applying it to the previous state gives the
    /// new one.
    Patch(&'a Node),
    /// The commit rewrote an ancestor of the path (replaced or deleted it,
    /// or made an array there an object), so no part of its patch lies at
    /// the path: this is the resulting state at the path (`None`: absent).
    Replace(Option<&'a Node>),
    /// Replay has caught up with the commit that was current when the
    /// watch started (the event's commit); what follows is live.
    ReplayComplete,
}

#[derive(Clone, Debug)]
enum Body {
    State(Option<Node>),
    /// The whole root patch (a watch of the root).
    WholePatch,
    Patch(Node),
    Replace(Option<Node>),
    ReplayComplete,
}

/// One event of a watch: a commit that affected the watched path, the
/// initial state, or the replay-complete marker. Cheap to clone: the
/// commit's record is shared, not copied, between the watchers it reaches.
#[derive(Clone, Debug)]
pub struct WatchEvent {
    commit: u64,
    path: Arc<KPath>,
    record: Option<Arc<Entry>>,
    body: Body,
}

impl WatchEvent {
    /// The commit: the one that made this change, the start commit (for the
    /// initial state), or the commit replay caught up with (for the marker).
    pub fn commit(&self) -> u64 {
        self.commit
    }

    /// The watched path (the same for every event of a watch).
    pub fn path(&self) -> &KPath {
        &self.path
    }

    /// When the commit was made (the transaction's `when`, else the time it
    /// was sequenced). `None` for the marker, and for an initial state at
    /// commit 0 or at a commit whose record was compacted away.
    pub fn when(&self) -> Option<SystemTime> {
        self.record
            .as_ref()
            .map(|r| UNIX_EPOCH + Duration::from_nanos(r.timestamp))
    }

    /// The transaction's label, if it had one (`None` where [`WatchEvent::when`] is).
    pub fn label(&self) -> Option<&str> {
        self.record.as_ref().and_then(|r| r.meta.label.as_deref())
    }

    /// The transaction that made the commit (`None` where [`WatchEvent::when`] is).
    pub fn tx_id(&self) -> Option<TxId> {
        self.record.as_ref().map(|r| TxId(r.tx_id))
    }

    /// The commit's whole merged root patch (all participants), when the
    /// event is about a commit.
    pub fn root_patch(&self) -> Option<&Node> {
        self.record.as_ref().map(|r| &r.patch)
    }

    /// What the event says about the path.
    pub fn change(&self) -> Change<'_> {
        match &self.body {
            Body::State(s) => Change::State(s.as_ref()),
            Body::WholePatch => match &self.record {
                Some(r) => Change::Patch(&r.patch),
                None => Change::Replace(None),
            },
            Body::Patch(p) => Change::Patch(p),
            Body::Replace(s) => Change::Replace(s.as_ref()),
            Body::ReplayComplete => Change::ReplayComplete,
        }
    }

    /// Whether this is the replay-complete marker.
    pub fn is_replay_complete(&self) -> bool {
        matches!(self.body, Body::ReplayComplete)
    }

    /// Folds this event into `state`, the state at the path before it:
    /// a state or a replacement is taken as is, a patch is applied, the
    /// marker changes nothing. Folding every event of a watch from `None`
    /// gives `read_state_at(path, event.commit())` after each event.
    pub fn apply_to(&self, state: Option<Node>) -> Result<Option<Node>, Error> {
        match self.change() {
            Change::State(s) | Change::Replace(s) => Ok(s.cloned()),
            Change::Patch(p) => {
                let mut slot = state;
                logd_core::read::apply_in_place(&mut slot, p)?;
                Ok(slot)
            }
            Change::ReplayComplete => Ok(state),
        }
    }
}

/// What a watch needs from the store.
#[derive(Clone, Debug)]
pub struct WatchDeps {
    /// The hub.
    pub hub: ActorRef<WatchHub>,
    /// The index (for `Affecting`).
    pub index: ActorRef<IndexActor>,
    /// The read path.
    pub reader: Arc<Reader>,
    /// The last acknowledged commit.
    pub last_acked: Arc<AtomicU64>,
}

/// What to watch and from where.
#[derive(Clone, Debug)]
pub struct WatchSpec {
    /// The path (positional segments only).
    pub path: KPath,
    /// Replay from this commit (events for the commits after it); `None`:
    /// from the current commit, no replay.
    pub from: Option<u64>,
    /// Whether the first event is the full state at the start commit.
    pub init: bool,
    /// How many events the watcher's buffer holds.
    pub buffer: usize,
}

/// A range still to replay from the log.
#[derive(Debug)]
struct Replay {
    next_from: u64,
    to: u64,
    /// Emit the replay-complete marker at its end (the first replay only).
    marker: bool,
}

/// The consumer's side of one watch, advanced by the stream.
struct Cursor {
    deps: WatchDeps,
    path: Arc<KPath>,
    slot: Arc<Slot>,
    id: u64,
    /// Every affecting commit up to here was emitted (or replaced by a state).
    pos: u64,
    /// The initial state to emit first, at this commit.
    init: Option<u64>,
    replay: Option<Replay>,
    /// Affecting commits listed by replay, not yet emitted.
    listed: VecDeque<u64>,
    /// Live items taken from the slot in one go, not yet emitted (at most
    /// one buffer's worth).
    local: VecDeque<Item>,
    finished: bool,
}

impl Cursor {
    /// The next event, or the error that ends the stream.
    async fn next_event(&mut self) -> Option<Result<WatchEvent, Error>> {
        if self.finished {
            return None;
        }
        let r = self.step().await;
        if let Err(e) = &r {
            self.finished = true;
            // An error while the store closes is the close.
            if let Some(closed) = self.slot.ended() {
                return Some(Err(closed));
            }
            debug!(path = %self.path, error = %e, "watch ends");
        }
        Some(r)
    }

    async fn step(&mut self) -> Result<WatchEvent, Error> {
        loop {
            if let Some(e) = self.slot.ended() {
                return Err(e);
            }
            if let Some(at) = self.init.take() {
                let state = self.deps.reader.read(&self.path, at).await?;
                let record = if at > 0 {
                    self.deps.reader.entry(at).await.ok()
                } else {
                    None
                };
                return Ok(self.event(at, record, Body::State(state)));
            }
            if let Some(c) = self.listed.pop_front() {
                let entry = self.deps.reader.entry(c).await?;
                return self.commit_event(c, entry).await;
            }
            if let Some(r) = &mut self.replay {
                if r.next_from < r.to {
                    let to = r.to.min(r.next_from.saturating_add(REPLAY_PAGE));
                    let from = r.next_from;
                    r.next_from = to;
                    let listed = self
                        .deps
                        .index
                        .ask(Affecting {
                            path: (*self.path).clone(),
                            from,
                            to,
                        })
                        .await
                        .map_err(from_send)?;
                    self.listed
                        .extend(listed.into_iter().filter(|&c| c > self.pos));
                    continue;
                }
                let (to, marker) = (r.to, r.marker);
                self.replay = None;
                self.pos = self.pos.max(to);
                if marker {
                    return Ok(self.event(to, None, Body::ReplayComplete));
                }
                continue;
            }
            let popped = match self.local.pop_front() {
                Some(item) => Pop::Item(item),
                None => self.slot.pop_all(&mut self.local),
            };
            match popped {
                Pop::Item((c, entry)) => {
                    if c > self.pos {
                        return self.commit_event(c, entry).await;
                    }
                }
                Pop::Lagged(through) => {
                    self.pos = self.pos.max(through);
                    let to = self
                        .deps
                        .hub
                        .ask(Resubscribe { id: self.id })
                        .await
                        .map_err(from_send)?;
                    self.replay = Some(Replay {
                        next_from: self.pos,
                        to,
                        marker: false,
                    });
                }
                Pop::Ended(e) => return Err(e),
                Pop::Empty => self.slot.notify.notified().await,
            }
        }
    }

    async fn commit_event(&mut self, c: u64, entry: Arc<Entry>) -> Result<WatchEvent, Error> {
        if self.path.is_root() {
            self.pos = c;
            return Ok(self.event(c, Some(entry), Body::WholePatch));
        }
        let body = match logd_core::read::sub_patches(&entry.patch, &self.path) {
            Ok(parts) if parts.len() == 1 => Body::Patch(parts[0].clone()),
            // An ancestor was rewritten (or, never for a committed record,
            // the path's key repeats): the resulting state.
            _ => Body::Replace(self.deps.reader.read(&self.path, c).await?),
        };
        self.pos = c;
        Ok(self.event(c, Some(entry), body))
    }

    fn event(&self, commit: u64, record: Option<Arc<Entry>>, body: Body) -> WatchEvent {
        WatchEvent {
            commit,
            path: self.path.clone(),
            record,
            body,
        }
    }
}

/// A fresh watcher id (unique in the process).
pub fn next_watcher_id() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// Unregisters a watcher when dropped (also when its registration's reply
/// never came back).
#[derive(Debug)]
struct Registration {
    hub: ActorRef<WatchHub>,
    id: u64,
    done: bool,
}

impl Registration {
    fn unsubscribe(&mut self) {
        if !self.done {
            self.done = true;
            let _ = self.hub.tell(Unsubscribe { id: self.id }).try_send();
        }
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.unsubscribe();
    }
}

/// One watch: a stream of its events, ending with an error (after which it
/// yields `None`) or when closed. Dropping it unsubscribes.
pub struct WatchStream {
    events: BoxStream<'static, Result<WatchEvent, Error>>,
    reg: Registration,
    path: Arc<KPath>,
    slot: Arc<Slot>,
    start: u64,
    current: u64,
    closed: bool,
}

impl std::fmt::Debug for WatchStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WatchStream")
            .field("id", &self.reg.id)
            .field("path", &self.path)
            .field("start", &self.start)
            .field("current", &self.current)
            .field("closed", &self.closed)
            .finish_non_exhaustive()
    }
}

impl WatchStream {
    /// Registers a watch of `spec.path` and returns its stream. A `from`
    /// after the current commit is [`Error::FutureCommit`]; one below the
    /// oldest readable commit is [`Error::Compacted`]; a path with a keyed
    /// segment `(k)` is [`Error::InvalidPath`] (the index, and so the
    /// watch, holds positional paths only).
    pub async fn start(deps: WatchDeps, spec: WatchSpec) -> Result<WatchStream, Error> {
        if spec
            .path
            .segments()
            .iter()
            .any(|s| matches!(s, Segment::Key(_)))
        {
            let text = spec.path.to_string();
            return Err(Error::InvalidPath {
                offset: text.find('(').unwrap_or(0),
                path: text,
                message: "a watched path has positional segments only (no keyed `(k)`)".into(),
            });
        }
        let current = deps.last_acked.load(Ordering::Acquire);
        if let Some(from) = spec.from {
            if from > current {
                return Err(Error::FutureCommit {
                    commit: from,
                    current,
                });
            }
            let oldest = deps.reader.horizon();
            if from < oldest {
                return Err(Error::Compacted {
                    commit: from,
                    oldest,
                });
            }
        }
        let slot = Arc::new(Slot::new(spec.buffer));
        let id = next_watcher_id();
        let reg = Registration {
            hub: deps.hub.clone(),
            id,
            done: false,
        };
        deps.hub
            .ask(Subscribe {
                id,
                path: spec.path.clone(),
                slot: slot.clone(),
            })
            .await
            .map_err(from_send)?;
        // At least the hub's commit: replay to here, then the queue follows.
        let now = deps.last_acked.load(Ordering::Acquire);
        let start = spec.from.unwrap_or(now);
        let path = Arc::new(spec.path);
        let cursor = Cursor {
            deps: deps.clone(),
            path: path.clone(),
            slot: slot.clone(),
            id,
            pos: start,
            init: spec.init.then_some(start),
            replay: Some(Replay {
                next_from: start,
                to: now,
                marker: true,
            }),
            listed: VecDeque::new(),
            local: VecDeque::new(),
            finished: false,
        };
        let events = futures::stream::unfold(cursor, |mut c| async move {
            let item = c.next_event().await?;
            Some((item, c))
        })
        .boxed();
        Ok(WatchStream {
            events,
            reg,
            path,
            slot,
            start,
            current: now,
            closed: false,
        })
    }

    /// The watched path.
    pub fn path(&self) -> &KPath {
        &self.path
    }

    /// The start commit (the initial state's commit; events follow it).
    pub fn start_commit(&self) -> u64 {
        self.start
    }

    /// The commit that was current when the watch started: the
    /// replay-complete marker comes once events reached it.
    pub fn replay_target(&self) -> u64 {
        self.current
    }

    /// How many events wait in the buffer now.
    pub fn queued(&self) -> usize {
        self.slot.len()
    }

    /// Ends the watch: the stream yields `None` from now on and the hub
    /// forgets it (at its next message). Idempotent.
    pub fn close(&mut self) {
        if !self.closed {
            self.closed = true;
            self.events = futures::stream::empty().boxed();
            self.reg.unsubscribe();
        }
    }
}

impl Stream for WatchStream {
    type Item = Result<WatchEvent, Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Option<Self::Item>> {
        self.events.poll_next_unpin(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> KPath {
        KPath::parse(s).unwrap_or_else(|e| panic!("{e}"))
    }

    const PATHS: &[&str] = &[
        "", "a", "a.b", "a.b.c", "a[0]", "a[1].x", "a{2}", "a.c", "b", "b[3]", "b.x", "c.d[0]",
        "c", "c.d", "c.d{1}",
    ];

    /// The trie's matching is exactly `logd_core::index::affects`.
    #[test]
    fn trie_matches_the_affects_relation() {
        let mut trie = Trie::default();
        for (i, path) in PATHS.iter().enumerate() {
            trie.insert(&p(path), i as u64);
        }
        for end in PATHS {
            let end = p(end);
            let mut got = std::collections::BTreeSet::new();
            trie.matches(&end, &mut |id| {
                got.insert(id);
            });
            let want: std::collections::BTreeSet<u64> = PATHS
                .iter()
                .enumerate()
                .filter(|(_, w)| logd_core::index::affects(&end, &p(w)))
                .map(|(i, _)| i as u64)
                .collect();
            assert_eq!(got, want, "end {end}");
        }
        // Removing prunes empty branches and keeps the others.
        for (i, path) in PATHS.iter().enumerate().skip(1) {
            trie.remove(&p(path), i as u64);
        }
        let mut got = Vec::new();
        trie.matches(&p("a.b"), &mut |id| got.push(id));
        assert_eq!(got, vec![0]);
        assert_eq!(trie.nodes.len() - trie.free.len(), 1);
    }

    #[test]
    fn a_full_slot_lags_and_keeps_what_it_had() {
        let slot = Slot::new(2);
        let e = Arc::new(Entry {
            commit: 1,
            tx_id: 1,
            timestamp: 0,
            patch: Node::null(),
            participants: vec![],
            meta: Default::default(),
        });
        assert!(slot.offer(&mut vec![(1, e.clone())]));
        assert!(!slot.offer(&mut vec![(2, e.clone()), (5, e.clone())]));
        assert!(matches!(slot.pop(), Pop::Item((1, _))));
        assert!(matches!(slot.pop(), Pop::Item((2, _))));
        assert!(matches!(slot.pop(), Pop::Lagged(4)));
        assert!(matches!(slot.pop(), Pop::Empty));
    }
}
