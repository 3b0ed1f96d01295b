//! `logd serve`: the logd session protocol (docs/PROTOCOL.md) over TCP and a
//! Unix socket, one kameo actor per connection.
//!
//! # Shape
//!
//! ```text
//!            ┌──────────── Server (this module) ─────────────┐
//!  TCP  ──►  accept task ─┐                                   │
//!  Unix ──►  accept task ─┴─► Acceptor actor ──spawn_link──► Session actors (session.rs)
//!            connection limit   logs a session that dies,      │   each: reader task,
//!            (a semaphore)      never dies with it             │   writer task
//!            └─────────────────────────────────────────────────┘
//!                         all share: Storage, the open-transaction table (txs.rs)
//! ```
//!
//! - [`Server::start`] binds the listeners (TCP on a **loopback** address
//!   only: there is no TLS or authentication yet, so a non-loopback address
//!   is refused), spawns the `Acceptor` and one accept task per listener.
//!   The store must already be open: opening takes its lock, so a second
//!   server on the same store fails there, naming the holder's pid.
//! - Each accepted connection takes a permit of the connection limit (over
//!   the limit it is answered `{error: {code: too_many_connections ...}}` and
//!   closed) and becomes a `session::Session` actor linked to the
//!   acceptor: a session that panics is stopped and logged by the acceptor;
//!   the server and the other sessions go on.
//! - [`Server::shutdown`] stops accepting, ends every session's input (each
//!   finishes the request it is running, including a commit in flight, and
//!   flushes its answers), waits for the connections to close (bounded by
//!   [`Config::drain_timeout`]) and removes the Unix socket. Closing the
//!   store is the caller's (the CLI closes it right after).
//!
//! # What is served
//!
//! `hello`, `match` (with the `data` filter), `patch` (alone, or joining a
//! transaction with `txId`, with or without a per-participant `timeout`),
//! `newtx`. `watch`, `unwatch`, scopes (`hello` with `scope`,
//! `deleteScope`), `schema`, `migration` and `patch` with `migration: true`
//! are answered with the error code `not_supported`, never misapplied.
//! Where this server deliberately differs from the Go server is written
//! in docs/PROTOCOL.md as `logd:` notes.
//!
//! # Ordering
//!
//! Requests of one connection run one at a time in arrival order, except
//! that a patch waiting for the other participants of its transaction
//! waits in the background: later requests with an `id` are answered
//! meanwhile (so responses may come out of order, by id), and a request
//! without `id` is answered only after every earlier one (see
//! `session`).

pub(crate) mod session;
mod txs;
pub(crate) mod wire;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use kameo::Actor;
use kameo::actor::{ActorId, ActorRef, Spawn, WeakActorRef};
use kameo::error::ActorStopReason;
use kameo::message::{Context, Message};
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinHandle;

pub use session::Conn;
use session::{Session, SessionArgs};

use crate::Storage;

/// The server's limits and timeouts. [`Config::default`] is what
/// `logd serve` uses.
#[derive(Clone, Debug)]
pub struct Config {
    /// TCP address to listen on (loopback only); `None`: no TCP.
    pub tcp: Option<SocketAddr>,
    /// Unix socket path; `None`: no Unix socket. `logd serve` uses
    /// `<store>/logd.sock`.
    pub unix: Option<PathBuf>,
    /// Largest request, in bytes (default 16 MiB). A larger one is
    /// answered `invalid_message` and the connection closed.
    pub max_request_bytes: usize,
    /// Most connections at once (default 1024).
    pub max_connections: usize,
    /// A connection that sends nothing for this long is closed (default 5 min).
    pub idle_timeout: Duration,
    /// A write to a client that takes longer than this closes the
    /// connection (default 10 s): a client that stops reading is dropped.
    pub write_timeout: Duration,
    /// Answers queued per connection before its requests stop being read
    /// (default 256).
    pub output_queue: usize,
    /// A transaction's deadline from `newtx` (default: the store's
    /// `Options::tx_timeout`). Always finite (D9).
    pub tx_timeout: Option<Duration>,
    /// Most participants of one transaction (default 1024).
    pub max_participants: usize,
    /// Most transactions open at once (default 4096).
    pub max_open_txs: usize,
    /// How long [`Server::shutdown`] waits for connections to finish
    /// (default 30 s).
    pub drain_timeout: Duration,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            tcp: None,
            unix: None,
            max_request_bytes: 16 << 20,
            max_connections: 1024,
            idle_timeout: Duration::from_secs(300),
            write_timeout: Duration::from_secs(10),
            output_queue: 256,
            tx_timeout: None,
            max_participants: 1024,
            max_open_txs: 4096,
            drain_timeout: Duration::from_secs(30),
        }
    }
}

/// What every session shares.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) storage: Storage,
    pub(crate) config: Config,
    pub(crate) tx_timeout: Duration,
    pub(crate) txs: Arc<txs::Txs>,
    /// Set by [`Server::shutdown`]: sessions stop reading.
    pub(crate) shutdown: watch::Sender<bool>,
}

/// The address is not a loopback one: refused until TLS and client
/// authentication exist.
pub fn check_loopback(addr: &SocketAddr) -> std::io::Result<()> {
    if addr.ip().is_loopback() {
        Ok(())
    } else {
        Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!(
                "refusing to listen on {addr}: not a loopback address, and logd serve has no TLS or \
                 client authentication yet; listen on 127.0.0.1 or [::1] (reach it remotely \
                 through an SSH tunnel)"
            ),
        ))
    }
}

/// A running server. Dropping it without [`Server::shutdown`] stops
/// accepting but leaves open connections to end by themselves.
#[derive(Debug)]
pub struct Server {
    shared: Arc<Shared>,
    tcp: Option<SocketAddr>,
    unix: Option<PathBuf>,
    accept: Vec<JoinHandle<()>>,
    acceptor: ActorRef<Acceptor>,
    connections: Arc<Semaphore>,
}

impl Server {
    /// Binds the listeners of `config` and starts serving `storage`.
    /// A Unix socket path that exists is replaced (the caller holds the
    /// store's lock, so no other server uses it); the socket's mode is
    /// `0o777` less the store's umask.
    pub async fn start(storage: Storage, config: Config) -> std::io::Result<Server> {
        let tcp = match config.tcp {
            Some(addr) => {
                check_loopback(&addr)?;
                Some(TcpListener::bind(addr).await?)
            }
            None => None,
        };
        let unix = match &config.unix {
            Some(path) => Some(bind_unix(path, storage.options().umask)?),
            None => None,
        };
        let tx_timeout = config.tx_timeout.unwrap_or(storage.options().tx_timeout);
        let connections = Arc::new(Semaphore::new(config.max_connections));
        let shared = Arc::new(Shared {
            storage,
            config: config.clone(),
            tx_timeout,
            txs: Arc::default(),
            shutdown: watch::channel(false).0,
        });
        let acceptor = Acceptor::spawn(Acceptor {
            shared: shared.clone(),
        });
        let mut accept = Vec::new();
        let mut tcp_addr = None;
        if let Some(l) = tcp {
            let addr = l.local_addr()?;
            tracing::info!(%addr, "listening (tcp)");
            tcp_addr = Some(addr);
            let (acc, sem) = (acceptor.clone(), connections.clone());
            accept.push(tokio::spawn(accept_loop(Listener::Tcp(l), acc, sem)));
        }
        if let Some(l) = unix {
            tracing::info!(path = ?config.unix, "listening (unix)");
            let (acc, sem) = (acceptor.clone(), connections.clone());
            accept.push(tokio::spawn(accept_loop(Listener::Unix(l), acc, sem)));
        }
        Ok(Server {
            shared,
            tcp: tcp_addr,
            unix: config.unix,
            accept,
            acceptor,
            connections,
        })
    }

    /// The bound TCP address (with the real port when 0 was asked).
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.tcp
    }

    /// The Unix socket's path.
    pub fn unix_path(&self) -> Option<&Path> {
        self.unix.as_deref()
    }

    /// Serves one already-connected stream (tests, or an embedder with its
    /// own listener), under the same limits.
    pub async fn serve_conn(&self, conn: Box<dyn Conn>) {
        if let Ok(permit) = self.connections.clone().try_acquire_owned() {
            let _ = self
                .acceptor
                .tell(Accepted {
                    name: "conn".into(),
                    conn,
                    permit,
                })
                .await;
        }
    }

    /// Stops accepting, lets every session finish what it is running and
    /// flush its answers, waits (up to [`Config::drain_timeout`]) for the
    /// connections to close, removes the Unix socket.
    pub async fn shutdown(self) {
        for task in &self.accept {
            task.abort();
        }
        self.shared.shutdown.send_replace(true);
        let all = u32::try_from(self.shared.config.max_connections).unwrap_or(u32::MAX);
        let drained = tokio::time::timeout(
            self.shared.config.drain_timeout,
            self.connections.acquire_many(all),
        )
        .await;
        if drained.is_err() {
            tracing::warn!("connections still open after the drain timeout");
        }
        let _ = self.acceptor.stop_gracefully().await;
        self.acceptor.wait_for_shutdown().await;
        if let Some(path) = &self.unix {
            let _ = std::fs::remove_file(path);
        }
        tracing::info!("server stopped");
    }
}

/// A bound listener.
enum Listener {
    Tcp(TcpListener),
    Unix(UnixListener),
}

fn bind_unix(path: &Path, umask: u32) -> std::io::Result<UnixListener> {
    use std::os::unix::fs::PermissionsExt;
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let listener = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o777 & !umask))?;
    Ok(listener)
}

/// Accepts connections until aborted; a failing `accept` (e.g. out of file
/// descriptors) is logged and retried after a pause, never spun on (D13).
async fn accept_loop(
    listener: Listener,
    acceptor: ActorRef<Acceptor>,
    connections: Arc<Semaphore>,
) {
    let kind = match listener {
        Listener::Tcp(_) => "tcp",
        Listener::Unix(_) => "unix",
    };
    let mut n = 0u64;
    loop {
        let accepted = match &listener {
            Listener::Tcp(l) => l.accept().await.map(|(s, _)| {
                let _ = s.set_nodelay(true);
                Box::new(s) as Box<dyn Conn>
            }),
            Listener::Unix(l) => l.accept().await.map(|(s, _)| Box::new(s) as Box<dyn Conn>),
        };
        let conn = match accepted {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(permit) = connections.clone().try_acquire_owned() else {
            tracing::warn!("connection refused: too many connections");
            tokio::spawn(refuse(conn));
            continue;
        };
        n += 1;
        let name = format!("{kind}-{n}");
        if acceptor
            .tell(Accepted { name, conn, permit })
            .await
            .is_err()
        {
            return;
        }
    }
}

/// Tells a connection over the limit why, then closes it.
async fn refuse(mut conn: Box<dyn Conn>) {
    use tokio::io::AsyncWriteExt;
    let line = wire::error(
        None,
        &wire::WireError::new(
            "too_many_connections",
            "the server has too many connections; try again later",
        ),
    );
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        let _ = conn.write_all(line.as_bytes()).await;
        let _ = conn.shutdown().await;
    })
    .await;
}

/// Spawns a session per connection, linked to itself: it is told when one
/// dies and logs it; it never stops because a session failed.
#[derive(Debug)]
pub(crate) struct Acceptor {
    shared: Arc<Shared>,
}

impl Actor for Acceptor {
    type Args = Self;
    type Error = std::convert::Infallible;

    async fn on_start(state: Self, _: ActorRef<Self>) -> Result<Self, Self::Error> {
        Ok(state)
    }

    async fn on_link_died(
        &mut self,
        _: WeakActorRef<Self>,
        id: ActorId,
        reason: ActorStopReason,
    ) -> Result<std::ops::ControlFlow<ActorStopReason>, Self::Error> {
        match reason {
            ActorStopReason::Normal => {}
            other => tracing::error!(session = %id, reason = ?other, "session failed; stopped it"),
        }
        Ok(std::ops::ControlFlow::Continue(()))
    }
}

/// A connection to serve.
pub(crate) struct Accepted {
    name: String,
    conn: Box<dyn Conn>,
    permit: tokio::sync::OwnedSemaphorePermit,
}

impl Message<Accepted> for Acceptor {
    type Reply = ();

    async fn handle(&mut self, msg: Accepted, ctx: &mut Context<Self, ()>) {
        let args = SessionArgs {
            name: msg.name,
            shared: self.shared.clone(),
            conn: msg.conn,
            permit: msg.permit,
        };
        Session::spawn_link(ctx.actor_ref(), args).await;
    }
}
