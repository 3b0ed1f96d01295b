//! One connection: the [`Session`] actor and its reader and writer tasks.
//!
//! ```text
//!  socket ──► reader task ──Incoming──► Session actor ──lines──► writer task ──► socket
//!             (lines, limits)           (one request at a       (bounded queue,
//!                                        time; tx waits in       write deadline)
//!                                        background tasks) ─────────┘
//! ```
//!
//! - The **reader** cuts the byte stream into lines (at most
//!   [`Config::max_request_bytes`](super::Config) per request: an oversized
//!   one is answered `invalid_message` and the connection closed), frames
//!   them ([`super::wire::Framer`]) and tells the session each document.
//!   The session's mailbox is bounded, so a client that pipelines faster
//!   than requests execute is slowed by TCP, never buffered without bound.
//!   No byte for [`Config::idle_timeout`](super::Config) closes the
//!   connection.
//! - The **session** executes requests one at a time in arrival order, so
//!   a pipelined `patch` then `match` reads its own write (as in the Go
//!   server). The one exception is a `patch` joining a multi-participant
//!   transaction: it enrols at once (so `tx_full` / `tx_not_found` keep
//!   their order) and then waits in a background task, and the session goes
//!   on with the next request (fixes D9). Its answer, carrying its `id`,
//!   may therefore come after later answers. A request **without** `id` is
//!   executed only after every earlier request has been answered, so
//!   id-less (synchronous) clients still get answers in request order.
//! - The **writer** drains a bounded queue of encoded lines
//!   ([`Config::output_queue`](super::Config)); each write must finish
//!   within [`Config::write_timeout`](super::Config), else the connection
//!   is closed: a client that stops reading is disconnected, and the
//!   session, blocked on the full queue meanwhile, stops reading its
//!   requests (so it cannot be made to buffer without bound).
//!
//! End of input (or a read error, the idle timeout, a server shutdown)
//! ends the session: participants still waiting in a transaction withdraw
//! their patch (the engine abandons that transaction for everyone), the
//! answers already queued are flushed, and the socket is closed.
//!
//! The watch hub (another round) fits here: a session will hold its
//! subscriptions and feed their events into the same bounded output queue
//! with `try_send`, dropping the watch (not the writers) on overflow.

use std::sync::Arc;
use std::time::Duration;

use kameo::Actor;
use kameo::actor::{ActorRef, WeakActorRef};
use kameo::error::ActorStopReason;
use kameo::message::{Context, Message};
use logd_actors::transaction::{Outcome, Patch, PatchMeta};
use logd_core::node::{Node, Value};
use logd_core::{KPath, patch as tony};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader, BufWriter};
use tokio::sync::{OwnedSemaphorePermit, mpsc, watch};
use tokio::task::JoinSet;

use super::Shared;
use super::txs::Slot;
use super::wire::{self, Frame, Op, Request, WireError};
use crate::{Error, Patcher};

/// A byte stream a session can serve: a TCP or Unix stream (or, in tests,
/// an in-memory duplex).
pub trait Conn: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Conn for T {}

/// What a session is started with.
pub(crate) struct SessionArgs {
    pub(crate) name: String,
    pub(crate) shared: Arc<Shared>,
    pub(crate) conn: Box<dyn Conn>,
    /// The connection's place under the connection limit, released when
    /// its writer has flushed and closed the socket.
    pub(crate) permit: OwnedSemaphorePermit,
}

/// One connection's session (see the module doc).
pub(crate) struct Session {
    name: String,
    shared: Arc<Shared>,
    out: mpsc::Sender<String>,
    /// Set when the connection is ending: waiting participants withdraw.
    closing: watch::Sender<bool>,
    /// Transaction participants waiting in the background.
    waits: JoinSet<()>,
    stopping: bool,
}

impl Actor for Session {
    type Args = SessionArgs;
    type Error = std::convert::Infallible;

    async fn on_start(args: SessionArgs, me: ActorRef<Self>) -> Result<Self, Self::Error> {
        let SessionArgs {
            name,
            shared,
            conn,
            permit,
        } = args;
        let (read, write) = tokio::io::split(conn);
        let (out, rx) = mpsc::channel(shared.config.output_queue.max(1));
        let (closing, _) = watch::channel(false);
        tokio::spawn(write_loop(
            write,
            rx,
            closing.clone(),
            shared.config.write_timeout,
            permit,
            name.clone(),
        ));
        // The reader holds the session's only strong ref: the session lives
        // as long as its input (kameo stops an actor nobody refers to).
        tokio::spawn(read_loop(read, me, shared.clone(), closing.clone()));
        tracing::debug!(session = %name, "session started");
        Ok(Session {
            name,
            shared,
            out,
            closing,
            waits: JoinSet::new(),
            stopping: false,
        })
    }

    async fn on_stop(
        &mut self,
        _: WeakActorRef<Self>,
        reason: ActorStopReason,
    ) -> Result<(), Self::Error> {
        self.closing.send_replace(true);
        // The waits answer (or fail to) quickly once `closing` is set.
        while self.waits.join_next().await.is_some() {}
        tracing::debug!(session = %self.name, ?reason, "session stopped");
        Ok(())
    }
}

/// A document (or an unframeable line) read from the connection.
pub(crate) struct Incoming(pub(crate) Frame);

impl Message<Incoming> for Session {
    type Reply = ();

    #[tracing::instrument(name = "session.request", skip_all, fields(session = %self.name))]
    async fn handle(&mut self, Incoming(frame): Incoming, ctx: &mut Context<Self, ()>) {
        if self.stopping {
            return;
        }
        let (id, answer) = match frame {
            Frame::Bad { text, message } => (
                wire::sniff_id(&text),
                Err(WireError::new(
                    "invalid_message",
                    format!("failed to parse request: {message}"),
                )),
            ),
            Frame::Doc(text) => match logd_core::text::parse(&text) {
                Err(e) => (
                    wire::sniff_id(&text),
                    Err(WireError::new(
                        "invalid_message",
                        format!("failed to parse request: {e}"),
                    )),
                ),
                Ok(doc) => match wire::decode(&doc) {
                    Err((id, e)) => (id, Err(e)),
                    Ok(req) => {
                        if req.id.is_none() {
                            self.barrier().await;
                        }
                        let id = req.id.clone();
                        match self.execute(req).await {
                            // Answered later, by a background wait.
                            Ok(None) => return,
                            Ok(Some(line)) => (id, Ok(line)),
                            Err(e) => (id, Err(e)),
                        }
                    }
                },
            },
        };
        if id.is_none() {
            self.barrier().await;
        }
        let line = match answer {
            Ok(line) => line,
            Err(e) => wire::error(id.as_deref(), &e),
        };
        if self.out.send(line).await.is_err() {
            self.stop(ctx);
        }
    }
}

/// The input has ended (EOF, read error, idle timeout, shutdown), or it
/// was oversized: `answer` is the last line to send.
pub(crate) struct Ended {
    pub(crate) answer: Option<String>,
}

impl Message<Ended> for Session {
    type Reply = ();

    async fn handle(&mut self, msg: Ended, ctx: &mut Context<Self, ()>) {
        if let Some(line) = msg.answer {
            let _ = self.out.send(line).await;
        }
        self.stop(ctx);
    }
}

impl Session {
    fn stop(&mut self, ctx: &mut Context<Self, ()>) {
        self.stopping = true;
        self.closing.send_replace(true);
        ctx.stop();
    }

    /// Waits until every background participant has answered.
    async fn barrier(&mut self) {
        while self.waits.join_next().await.is_some() {}
    }

    /// Runs one request. `Ok(None)`: a background task answers it.
    async fn execute(&mut self, req: Request) -> Result<Option<String>, WireError> {
        let id = req.id.as_deref();
        match req.op {
            Op::Hello {
                client_id,
                scope,
                use_pending,
            } => {
                if scope.is_some() {
                    return Err(not_supported("scopes (hello with `scope`) are"));
                }
                if use_pending {
                    return Err(not_supported("schema migrations (`usePending`) are"));
                }
                tracing::debug!(session = %self.name, client = %client_id, "hello");
                let body = wire::sorted(vec![("serverId", Node::string(self.name.clone()))]);
                Ok(Some(wire::result(id, "hello", body)))
            }
            Op::Match { path, data } => {
                let body = self.read(&path, data.as_ref()).await?;
                Ok(Some(wire::result(id, "match", body)))
            }
            Op::NewTx { participants } => {
                let tx_id = self.new_tx(participants).await?;
                let body = wire::sorted(vec![("txId", Node::int(tx_id as i64))]);
                Ok(Some(wire::result(id, "newtx", body)))
            }
            Op::Patch {
                path,
                data,
                tx_id,
                timeout,
                migration,
            } => {
                let kpath = parse_path(&path)?;
                let data =
                    data.ok_or_else(|| WireError::new("invalid_diff", "patch data is required"))?;
                if migration {
                    return Err(not_supported("migration patches are"));
                }
                let timeout = match &timeout {
                    None => None,
                    Some(t) => wire::go_duration(t).ok_or_else(|| {
                        WireError::new(
                            "invalid_tx",
                            format!("invalid timeout {t:?}: time: invalid duration {t:?}"),
                        )
                    })?,
                };
                match tx_id {
                    None => {
                        let outcome = self
                            .shared
                            .storage
                            .patch(&path, data.clone())
                            .await
                            .map_err(|e| store_error(&e))?;
                        Ok(Some(patch_result(id, outcome, data)?))
                    }
                    Some(tx) => {
                        self.join(req.id.clone(), tx, kpath, data, timeout).await?;
                        Ok(None)
                    }
                }
            }
            Op::Unsupported(op) => Err(WireError::new(
                wire::NOT_SUPPORTED,
                format!("{op} is not supported by this server yet"),
            )),
        }
    }

    /// `match`: the value at `path` at the current commit, filtered (§6).
    async fn read(&self, path: &str, filter: Option<&Node>) -> Result<Node, WireError> {
        let kpath = parse_path(path)?;
        let storage = &self.shared.storage;
        let commit = storage.current_commit();
        let value = storage
            .read_path_at(&kpath, commit)
            .await
            .map_err(|e| store_error(&e))?;
        let value = match value {
            Some(v) => v,
            // The root of an empty store is `null`, not absent.
            None if path.is_empty() => Node::null(),
            None => {
                return Err(WireError::new(
                    "not_found",
                    format!("path not found: {path:?}"),
                ));
            }
        };
        let body = match filter {
            None => value,
            Some(pattern) => filter_value(value, pattern)?,
        };
        Ok(wire::sorted(vec![
            ("body", body),
            ("commit", Node::int(commit as i64)),
        ]))
    }

    async fn new_tx(&self, participants: i64) -> Result<u64, WireError> {
        let cfg = &self.shared.config;
        if participants < 1 {
            return Err(WireError::new(
                "invalid_tx",
                "participants must be at least 1",
            ));
        }
        if participants as u64 > cfg.max_participants as u64 {
            return Err(WireError::new(
                "invalid_tx",
                format!("participants must be at most {}", cfg.max_participants),
            ));
        }
        if self.shared.txs.len() >= cfg.max_open_txs {
            return Err(WireError::new(
                "invalid_tx",
                format!("too many open transactions (at most {})", cfg.max_open_txs),
            ));
        }
        let timeout = self.shared.tx_timeout;
        // The server's deadline is taken before the engine's, so it never
        // fires after the engine has forgotten the transaction.
        let deadline = tokio::time::Instant::now() + timeout;
        let meta = PatchMeta {
            max_duration: Some(timeout),
            ..PatchMeta::default()
        };
        let tx = self
            .shared
            .storage
            .new_tx(participants as usize, meta)
            .await
            .map_err(|e| store_error(&e))?;
        let id = tx.id().0;
        self.shared.txs.open(id, participants as usize, deadline);
        Ok(id)
    }

    /// Enrols a participant of transaction `tx` and starts its wait.
    async fn join(
        &mut self,
        id: Option<String>,
        tx: i64,
        path: KPath,
        data: Node,
        timeout: Option<Duration>,
    ) -> Result<(), WireError> {
        let not_found = || WireError::new("tx_not_found", format!("transaction {tx} not found"));
        let tx_id = u64::try_from(tx).map_err(|_| not_found())?;
        let slot = self.shared.txs.get(tx_id).ok_or_else(not_found)?;
        let handle = self
            .shared
            .storage
            .get_tx(logd_actors::transaction::TxId(tx_id))
            .await
            .map_err(|e| store_error(&e))?;
        let patcher = handle
            .new_patcher(Patch::new(path, data.clone()))
            .await
            .map_err(|e| store_error(&e))?;
        slot.joined();
        let wait = Wait {
            id,
            tx_id,
            data,
            timeout,
            slot,
            closing: self.closing.subscribe(),
            out: self.out.clone(),
            shared: self.shared.clone(),
        };
        self.waits.spawn(wait.run(patcher));
        Ok(())
    }
}

/// A participant waiting for its transaction, in the background.
struct Wait {
    id: Option<String>,
    tx_id: u64,
    data: Node,
    timeout: Option<Duration>,
    slot: Arc<Slot>,
    closing: watch::Receiver<bool>,
    out: mpsc::Sender<String>,
    shared: Arc<Shared>,
}

impl Wait {
    async fn run(mut self, mut patcher: Patcher) {
        enum Why {
            Go,
            OwnTimeout(Duration),
            Closed,
        }
        let mut go = self.slot.subscribe();
        let own = async {
            match self.timeout {
                Some(t) => {
                    tokio::time::sleep(t).await;
                    t
                }
                None => std::future::pending().await,
            }
        };
        let why = tokio::select! {
            _ = go.wait_for(|g| *g) => Why::Go,
            // At the deadline the engine answers (`timeout`, or the commit
            // if the last participant just made it).
            _ = tokio::time::sleep_until(self.slot.deadline) => Why::Go,
            t = own => Why::OwnTimeout(t),
            _ = self.closing.wait_for(|c| *c) => Why::Closed,
        };
        let line = match why {
            Why::Go => {
                let outcome = patcher.commit().await;
                self.shared.txs.forget(self.tx_id);
                match outcome.map_err(|e| store_error(&e)) {
                    Ok(o) => patch_result(self.id.as_deref(), o, self.data),
                    Err(e) => Err(e),
                }
            }
            Why::OwnTimeout(t) => {
                drop(patcher);
                self.slot.release();
                Err(WireError::new(
                    "timeout",
                    format!(
                        "patch timed out after {t:?}: it was withdrawn, so transaction {} fails for every participant",
                        self.tx_id
                    ),
                ))
            }
            Why::Closed => {
                drop(patcher);
                self.slot.release();
                Err(WireError::new(
                    "session_closed",
                    format!(
                        "the connection is closing: the patch was withdrawn from transaction {}",
                        self.tx_id
                    ),
                ))
            }
        };
        let line = line.unwrap_or_else(|e| wire::error(self.id.as_deref(), &e));
        let _ = self.out.send(line).await;
    }
}

fn not_supported(what: &str) -> WireError {
    WireError::new(
        wire::NOT_SUPPORTED,
        format!("{what} not supported by this server yet"),
    )
}

fn parse_path(path: &str) -> Result<KPath, WireError> {
    KPath::parse(path).map_err(|e| WireError::new("invalid_path", e.to_string()))
}

/// `{commit: C data: <the participant's own data>}`.
fn patch_result(id: Option<&str>, outcome: Outcome, data: Node) -> Result<String, WireError> {
    match outcome {
        Outcome::Committed { commit } => Ok(wire::result(
            id,
            "patch",
            wire::sorted(vec![("commit", Node::int(commit as i64)), ("data", data)]),
        )),
        Outcome::NotMatched => Err(WireError::new(
            "match_failed",
            "transaction match condition failed",
        )),
        Outcome::Stale { latest } => Err(WireError::new(
            "storage_error",
            format!("stale: commit {latest} changed a patched path"),
        )),
    }
}

/// The §10 code of an engine error.
pub(crate) fn store_error(e: &Error) -> WireError {
    let code = match e {
        Error::InvalidPath { .. } => "invalid_path",
        Error::TxNotFound { .. } => "tx_not_found",
        Error::TxFull { .. } => "tx_full",
        Error::TxTimeout { .. } => "timeout",
        Error::TxAbandoned { .. } => "tx_abandoned",
        Error::TooDeep { .. } | Error::TooLarge { .. } | Error::Parse { .. } => "invalid_diff",
        Error::InvalidArgument { .. } => "invalid_tx",
        Error::Conflict { .. } | Error::Patch(_) => {
            return WireError::new("storage_error", format!("failed to commit: {e}"));
        }
        _ => "storage_error",
    };
    WireError::new(code, e.to_string())
}

/// §6 step 4: keep what matches `pattern` (elementwise for an array) and
/// trim it to the keys the pattern names.
fn filter_value(value: Node, pattern: &Node) -> Result<Node, WireError> {
    let failed = |e: tony::PatchError| {
        WireError::new("match_error", format!("failed to apply match filter: {e}"))
    };
    let (tag, value) = value.into_parts();
    match value {
        Value::Array(items) => {
            let mut kept = Vec::new();
            for item in items {
                if tony::matches(Some(&item), pattern).map_err(failed)? {
                    kept.push(sort_like(pattern, tony::trim(pattern, &item)));
                }
            }
            Ok(Node::new(Value::Array(kept)).with_tag(tag))
        }
        value => {
            let value = Node::new(value).with_tag(tag);
            if tony::matches(Some(&value), pattern).map_err(failed)? {
                Ok(sort_like(pattern, tony::trim(pattern, &value)))
            } else {
                Ok(Node::null())
            }
        }
    }
}

/// Objects rebuilt by trimming come out with sorted keys, as the Go server
/// rebuilds them (§6); only where the pattern is a plain object.
fn sort_like(pattern: &Node, mut node: Node) -> Node {
    if pattern.tag.is_some() {
        return node;
    }
    if let (Value::Object(pkv), Value::Object(kv)) = (&pattern.value, &mut node.value) {
        kv.sort_by_key(|a| key_text(&a.0));
        for (k, v) in kv.iter_mut() {
            if let Some(p) = pkv.iter().find(|(pk, _)| pk == k).map(|(_, p)| p) {
                *v = sort_like(p, std::mem::replace(v, Node::null()));
            }
        }
    }
    node
}

fn key_text(k: &logd_core::node::Key) -> String {
    match k {
        logd_core::node::Key::Field(s) => s.clone(),
        logd_core::node::Key::Index(i) => i.to_string(),
    }
}

/// Reads lines, frames documents and tells the session; see the module doc.
async fn read_loop(
    read: tokio::io::ReadHalf<Box<dyn Conn>>,
    session: ActorRef<Session>,
    shared: Arc<Shared>,
    closing_tx: watch::Sender<bool>,
) {
    let mut closing = closing_tx.subscribe();
    let cfg = &shared.config;
    let max = cfg.max_request_bytes;
    let mut reader = BufReader::with_capacity(64 << 10, read);
    let mut framer = wire::Framer::default();
    let mut line: Vec<u8> = Vec::new();
    let mut shutdown = shared.shutdown.subscribe();
    let mut answer = None;
    loop {
        let chunk = tokio::select! {
            r = tokio::time::timeout(cfg.idle_timeout, reader.fill_buf()) => r,
            _ = shutdown.wait_for(|s| *s) => break,
            _ = closing.wait_for(|c| *c) => break,
        };
        let buf = match chunk {
            Err(_) => {
                tracing::debug!("idle timeout");
                break;
            }
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "read failed");
                break;
            }
            Ok(Ok([])) => {
                if framer.is_open() || !line.is_empty() {
                    tracing::debug!("input ended inside a request");
                }
                break;
            }
            Ok(Ok(buf)) => buf,
        };
        let (take, complete) = match buf.iter().position(|&b| b == b'\n') {
            Some(i) => (i + 1, true),
            None => (buf.len(), false),
        };
        line.extend_from_slice(&buf[..take - usize::from(complete)]);
        reader.consume(take);
        if line.len() + framer.pending_len() > max {
            answer = Some(wire::error(
                None,
                &WireError::new(
                    "invalid_message",
                    format!("request exceeds the maximum of {max} bytes; closing the connection"),
                ),
            ));
            break;
        }
        if !complete {
            continue;
        }
        let frames = match std::str::from_utf8(&line) {
            Ok(text) => framer.push_line(text),
            Err(e) => vec![Frame::Bad {
                text: String::from_utf8_lossy(&line).into_owned(),
                message: format!("invalid UTF-8: {e}"),
            }],
        };
        line.clear();
        for frame in frames {
            if session.tell(Incoming(frame)).await.is_err() {
                return;
            }
        }
    }
    // Participants still waiting withdraw now (D9), not at their deadline.
    closing_tx.send_replace(true);
    let _ = session.tell(Ended { answer }).await;
}

/// Writes queued lines with a deadline per write; see the module doc.
async fn write_loop(
    write: tokio::io::WriteHalf<Box<dyn Conn>>,
    mut rx: mpsc::Receiver<String>,
    closing: watch::Sender<bool>,
    deadline: Duration,
    permit: OwnedSemaphorePermit,
    name: String,
) {
    let mut w = BufWriter::with_capacity(64 << 10, write);
    let mut ok = true;
    while let Some(line) = rx.recv().await {
        let step = async {
            w.write_all(line.as_bytes()).await?;
            if rx.is_empty() {
                w.flush().await?;
            }
            Ok::<(), std::io::Error>(())
        };
        match tokio::time::timeout(deadline, step).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::debug!(session = %name, error = %e, "write failed; closing");
                ok = false;
                break;
            }
            Err(_) => {
                tracing::warn!(session = %name, ?deadline, "client not reading (write deadline); closing");
                ok = false;
                break;
            }
        }
    }
    closing.send_replace(true);
    if ok {
        let _ = tokio::time::timeout(deadline, async {
            let _ = w.flush().await;
            let _ = w.shutdown().await;
        })
        .await;
    }
    drop(permit);
}
