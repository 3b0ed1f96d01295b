//! `logd serve`: runs the session-protocol server ([`logd::server`]) on a
//! store until SIGTERM or SIGINT.
//!
//! It opens the store (taking its lock: a second `serve` on the same store
//! fails with the holder's pid, exit 5), listens on a loopback TCP address
//! and on `<store>/logd.sock`, prints one line `listening on ADDR and
//! SOCKET`, and on SIGTERM/SIGINT stops accepting, lets in-flight requests
//! answer, closes the store and exits 0.

use std::net::SocketAddr;
use std::time::Duration;

use logd::server::{Config, Server};

use super::Ctx;
use super::out::{CliError, Code, out};

/// Arguments of `logd serve`.
#[derive(clap::Args, Debug)]
pub struct ServeArgs {
    /// TCP address to listen on. Loopback only (there is no TLS or
    /// authentication yet); port 0 picks a free port.
    #[arg(long, default_value = "127.0.0.1:9123")]
    pub listen: String,
    /// Do not listen on the Unix socket `<store>/logd.sock`.
    #[arg(long)]
    pub no_socket: bool,
    /// Most connections at once.
    #[arg(long, default_value_t = 1024)]
    pub max_connections: usize,
    /// Largest request in bytes; a larger one is refused and its connection closed.
    #[arg(long, default_value_t = 16 << 20)]
    pub max_request_bytes: usize,
    /// Close a connection idle for this many seconds.
    #[arg(long, default_value_t = 300)]
    pub idle_timeout_secs: u64,
    /// A transaction's deadline from `newtx`, in milliseconds (default: the store's).
    #[arg(long)]
    pub tx_timeout_ms: Option<u64>,
}

/// The name of the Unix socket inside the store directory.
pub const SOCKET: &str = "logd.sock";

async fn resolve(listen: &str) -> Result<SocketAddr, CliError> {
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host(listen)
        .await
        .map_err(|e| CliError::usage(format!("bad --listen {listen:?}: {e}")))?
        .collect();
    let first = *addrs
        .first()
        .ok_or_else(|| CliError::usage(format!("bad --listen {listen:?}: no address")))?;
    for a in &addrs {
        logd::server::check_loopback(a).map_err(|e| CliError::usage(e.to_string()))?;
    }
    Ok(first)
}

/// Runs the server until a signal.
pub async fn run(args: &ServeArgs, ctx: &Ctx) -> Result<Code, CliError> {
    use tokio::signal::unix::{SignalKind, signal};
    let tcp = resolve(&args.listen).await?;
    let mut term = signal(SignalKind::terminate())
        .map_err(|e| CliError::failure(format!("cannot handle SIGTERM: {e}")))?;
    let mut int = signal(SignalKind::interrupt())
        .map_err(|e| CliError::failure(format!("cannot handle SIGINT: {e}")))?;
    let storage = super::commands::open(ctx).await?;
    let config = Config {
        tcp: Some(tcp),
        unix: (!args.no_socket).then(|| ctx.dir.join(SOCKET)),
        max_connections: args.max_connections,
        max_request_bytes: args.max_request_bytes,
        idle_timeout: Duration::from_secs(args.idle_timeout_secs),
        tx_timeout: args.tx_timeout_ms.map(Duration::from_millis),
        ..Config::default()
    };
    let server = match Server::start(storage.clone(), config).await {
        Ok(s) => s,
        Err(e) => {
            let _ = storage.close().await;
            return Err(CliError::failure(format!("cannot listen: {e}")));
        }
    };
    let addr = server
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    match server.unix_path() {
        Some(p) => out!("listening on {addr} and {}", p.display())?,
        None => out!("listening on {addr}")?,
    }
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    server.shutdown().await;
    storage
        .close()
        .await
        .map_err(|e| CliError::store("close failed", e))?;
    out!("stopped")?;
    Ok(Code::Ok)
}
