//! `logd session ADDR`: the scripted mode of a session client. Copies
//! requests (one Tony document per line) from stdin to a running
//! `logd serve` and its answers to stdout, one per line.
//!
//! ADDR is `HOST:PORT`, or the path of a Unix socket (anything with a `/`,
//! e.g. `d/logd.sock`). At the end of stdin the connection's sending half
//! is closed: the server answers what it read and then closes (a patch
//! still waiting for the other participants of its transaction is then
//! withdrawn and answered `session_closed`). The interactive line mode
//! (history, editing) is not built yet.

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

use super::out::{CliError, Code};

/// Arguments of `logd session`.
#[derive(clap::Args, Debug)]
pub struct SessionArgs {
    /// `HOST:PORT` of a running `logd serve`, or the path of its Unix
    /// socket (`DIR/logd.sock`).
    pub addr: String,
}

async fn pump<S: AsyncRead + AsyncWrite>(conn: S) -> std::io::Result<()> {
    let (mut r, mut w) = tokio::io::split(conn);
    let send = async {
        tokio::io::copy(&mut tokio::io::stdin(), &mut w).await?;
        w.shutdown().await
    };
    let receive = async {
        let mut stdout = tokio::io::stdout();
        tokio::io::copy(&mut r, &mut stdout).await?;
        stdout.flush().await
    };
    let (a, b) = tokio::join!(send, receive);
    a.and(b)
}

/// Runs the scripted session.
pub async fn run(args: &SessionArgs) -> Result<Code, CliError> {
    let failed = |e: std::io::Error| CliError::failure(format!("session with {}: {e}", args.addr));
    if args.addr.contains('/') {
        let s = tokio::net::UnixStream::connect(&args.addr)
            .await
            .map_err(failed)?;
        pump(s).await.map_err(failed)?;
    } else {
        let s = tokio::net::TcpStream::connect(&args.addr)
            .await
            .map_err(failed)?;
        pump(s).await.map_err(failed)?;
    }
    Ok(Code::Ok)
}
