//! [`Client`]: an async (tokio) client of `logd serve`, over TCP or the
//! store's Unix socket.
//!
//! Every request carries an id (`c1`, `c2`, ...); one background task reads
//! the answers and hands each to the call waiting for that id, so calls
//! on one `Client` may run concurrently (pipelining): clone the client or
//! `join!` several calls, and a patch waiting for the other participants
//! of its transaction does not hold up the others.
//!
//! ```no_run
//! # async fn demo() -> Result<(), logd::client::ClientError> {
//! use logd::client::Client;
//! let c = Client::connect_tcp("127.0.0.1:9123").await?;
//! let commit = c.patch("users.ada", "{name: Ada}".parse().unwrap()).await?;
//! let (name, at) = c.get("users.ada.name").await?;
//! assert!(at >= commit);
//! // A transaction of two participants, joined from two connections:
//! let other = Client::connect_tcp("127.0.0.1:9123").await?;
//! let tx = c.new_tx(2).await?;
//! let (a, b) = tokio::join!(
//!     c.patch_tx(tx, "a", logd::Node::int(1), None),
//!     other.patch_tx(tx, "b", logd::Node::int(2), None),
//! );
//! assert_eq!(a?, b?); // one commit
//! # let _ = name; Ok(()) }
//! ```
//!
//! Reconnecting is the caller's choice: a `Client` whose connection ended
//! answers every call with [`ClientError::Closed`]; connect a new one. A
//! call cut off by the connection ending may or may not have been applied
//! (read to find out), as with any remote store.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use logd_core::node::{Node, Value};
use tokio::io::{AsyncBufReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::sync::oneshot;

use crate::server::Conn;
use crate::server::wire;

/// Why a call failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ClientError {
    /// The server answered with an error (§10 code and message).
    #[error("{code}: {message}")]
    Server {
        /// The error code, e.g. `tx_not_found`.
        code: String,
        /// The server's message.
        message: String,
    },
    /// Connecting or writing failed.
    #[error("i/o: {0}")]
    Io(String),
    /// The server sent something this client does not understand.
    #[error("protocol: {0}")]
    Protocol(String),
    /// The connection ended before the answer came.
    #[error("connection closed")]
    Closed,
}

type Pending = Arc<Mutex<Option<HashMap<String, oneshot::Sender<Result<Node, ClientError>>>>>>;

/// A connection to `logd serve`. Cheap to clone; clones share the
/// connection.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    write: tokio::sync::Mutex<Box<dyn AsyncWrite + Send + Unpin>>,
    pending: Pending,
    next: AtomicU64,
    reader: tokio::task::JoinHandle<()>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client").finish_non_exhaustive()
    }
}

fn io(e: std::io::Error) -> ClientError {
    ClientError::Io(e.to_string())
}

impl Client {
    /// Connects over TCP.
    pub async fn connect_tcp(addr: impl tokio::net::ToSocketAddrs) -> Result<Client, ClientError> {
        let s = tokio::net::TcpStream::connect(addr).await.map_err(io)?;
        let _ = s.set_nodelay(true);
        Ok(Client::over(Box::new(s)))
    }

    /// Connects to a Unix socket (`<store>/logd.sock` for `logd serve`).
    pub async fn connect_unix(path: impl AsRef<std::path::Path>) -> Result<Client, ClientError> {
        let s = tokio::net::UnixStream::connect(path).await.map_err(io)?;
        Ok(Client::over(Box::new(s)))
    }

    /// A client over any connected stream.
    pub fn over(conn: Box<dyn Conn>) -> Client {
        let (read, write) = tokio::io::split(conn);
        let pending: Pending = Arc::new(Mutex::new(Some(HashMap::new())));
        let reader = tokio::spawn(read_answers(BufReader::new(read), pending.clone()));
        Client {
            inner: Arc::new(Inner {
                write: tokio::sync::Mutex::new(Box::new(write)),
                pending,
                next: AtomicU64::new(1),
                reader,
            }),
        }
    }

    /// Sends `{id: .. <op>: <body>}` and returns the body of its result
    /// (`result.<op>`).
    pub async fn request(&self, op: &str, body: Node) -> Result<Node, ClientError> {
        let id = format!("c{}", self.inner.next.fetch_add(1, Ordering::Relaxed));
        let (tx, rx) = oneshot::channel();
        match self.inner.pending.lock() {
            Ok(mut p) => match p.as_mut() {
                Some(p) => {
                    p.insert(id.clone(), tx);
                }
                None => return Err(ClientError::Closed),
            },
            Err(_) => return Err(ClientError::Closed),
        }
        let mut line = String::new();
        wire::sorted(vec![("id", Node::string(id.clone())), (op, body)])
            .write_wire_spaced(&mut line);
        line.push('\n');
        let written = {
            let mut w = self.inner.write.lock().await;
            match w.write_all(line.as_bytes()).await {
                Ok(()) => w.flush().await,
                Err(e) => Err(e),
            }
        };
        if let Err(e) = written {
            if let Ok(mut p) = self.inner.pending.lock()
                && let Some(p) = p.as_mut()
            {
                p.remove(&id);
            }
            return Err(io(e));
        }
        let result = rx.await.map_err(|_| ClientError::Closed)??;
        field(&result, op)
            .cloned()
            .ok_or_else(|| ClientError::Protocol(format!("result without {op}: {result}")))
    }

    /// `hello`; returns the server's name for this connection (`tcp-N`).
    pub async fn hello(&self, client_id: &str) -> Result<String, ClientError> {
        let r = self
            .request(
                "hello",
                Node::object([("clientId", Node::string(client_id))]),
            )
            .await?;
        string(&r, "serverId")
    }

    /// The value at `path` and the commit it was read at (`match` without
    /// a filter). A path with nothing there is `Err(Server { code:
    /// "not_found", .. })`.
    pub async fn get(&self, path: &str) -> Result<(Node, u64), ClientError> {
        self.find(path, None).await
    }

    /// `match`: the value at `path`, filtered by `pattern` (§6), and the
    /// commit it was read at.
    pub async fn find(
        &self,
        path: &str,
        pattern: Option<Node>,
    ) -> Result<(Node, u64), ClientError> {
        let mut body = vec![("path", Node::string(path))];
        if let Some(p) = pattern {
            body.push(("data", p));
        }
        let r = self
            .request("match", Node::object([("body", Node::object(body))]))
            .await?;
        let value = field(&r, "body").cloned().unwrap_or_else(Node::null);
        Ok((value, int(&r, "commit")?))
    }

    /// Commits `data` at `path` (a transaction of its own); returns the commit.
    pub async fn patch(&self, path: &str, data: Node) -> Result<u64, ClientError> {
        let r = self
            .request(
                "patch",
                Node::object([("path", Node::string(path)), ("data", data)]),
            )
            .await?;
        int(&r, "commit")
    }

    /// Starts a transaction of `participants` patches; returns its id for
    /// the participants (on any connection) to pass to [`Client::patch_tx`].
    pub async fn new_tx(&self, participants: usize) -> Result<u64, ClientError> {
        let r = self
            .request(
                "newtx",
                Node::object([("participants", Node::int(participants as i64))]),
            )
            .await?;
        int(&r, "txId")
    }

    /// Joins transaction `tx` with `data` at `path` and waits for its one
    /// commit. `timeout`: give up (and withdraw the patch, which fails the
    /// transaction for everyone) after this long.
    pub async fn patch_tx(
        &self,
        tx: u64,
        path: &str,
        data: Node,
        timeout: Option<Duration>,
    ) -> Result<u64, ClientError> {
        let mut body = vec![
            ("path", Node::string(path)),
            ("data", data),
            ("txId", Node::int(tx as i64)),
        ];
        if let Some(t) = timeout {
            body.push(("timeout", Node::string(format!("{}ns", t.as_nanos()))));
        }
        let r = self.request("patch", Node::object(body)).await?;
        int(&r, "commit")
    }
}

fn field<'a>(n: &'a Node, name: &str) -> Option<&'a Node> {
    n.field(name)
}

fn int(n: &Node, name: &str) -> Result<u64, ClientError> {
    match field(n, name).map(|v| &v.value) {
        Some(Value::Int(i)) if *i >= 0 => Ok(*i as u64),
        _ => Err(ClientError::Protocol(format!(
            "expected a count in {name}: {n}"
        ))),
    }
}

fn string(n: &Node, name: &str) -> Result<String, ClientError> {
    match field(n, name).map(|v| &v.value) {
        Some(Value::String(s)) => Ok(s.clone()),
        _ => Err(ClientError::Protocol(format!(
            "expected a string in {name}: {n}"
        ))),
    }
}

/// Routes every answer to the call waiting for its id; on the end of the
/// connection fails every call still waiting.
async fn read_answers(mut read: BufReader<tokio::io::ReadHalf<Box<dyn Conn>>>, pending: Pending) {
    let mut line = String::new();
    loop {
        line.clear();
        match read.read_line(&mut line).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        let Ok(msg) = logd_core::text::parse(line.trim_end()) else {
            tracing::warn!(line = %line.trim_end(), "unreadable answer");
            continue;
        };
        let Some(Value::String(id)) = msg.field("id").map(|n| &n.value) else {
            // Events and id-less errors: no watch support in this client yet.
            continue;
        };
        let answer = if let Some(r) = msg.field("result") {
            Ok(r.clone())
        } else if let Some(e) = msg.field("error") {
            Err(ClientError::Server {
                code: string(e, "code").unwrap_or_default(),
                message: string(e, "message").unwrap_or_default(),
            })
        } else {
            Err(ClientError::Protocol(format!(
                "neither result nor error: {msg}"
            )))
        };
        let waiter = pending
            .lock()
            .ok()
            .and_then(|mut p| p.as_mut().and_then(|p| p.remove(id)));
        if let Some(w) = waiter {
            let _ = w.send(answer);
        }
    }
    if let Ok(mut p) = pending.lock() {
        // Dropping the senders fails the waiting calls with `Closed`.
        p.take();
    }
}
