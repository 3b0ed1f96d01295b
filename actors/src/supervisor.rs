//! The supervisor of the log writer: spawns it and restarts it after a panic.
//!
//! This module owns [`Supervisor`] (a kameo actor whose one child, the
//! [`LogWriter`], is restarted on abnormal exit) and [`start`], the one way
//! to bring up the durable write path over a locked, recovered directory.
//! The other actors (index, snapshotter, trigger, compactor) are spawned by
//! the store (`logd::Storage::open_with`) and are not supervised here. A
//! restarted [`LogWriter`] rebuilds its state from the files on disk; callers
//! whose requests were in flight get an error, never a hang. It never does
//! I/O itself and never holds engine state.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use kameo::Actor;
use kameo::actor::{ActorRef, Spawn};
use kameo::mailbox;
use kameo::message::{Context, Message};
use kameo::supervision::RestartPolicy;

use crate::commit::log_writer::{LogWriter, WriterArgs};
use crate::error::Error;

/// Mailbox capacity of the log writer.
pub const WRITER_MAILBOX: usize = 4096;

/// Supervises the engine's actors.
#[derive(Debug)]
pub struct Supervisor {
    writer: ActorRef<LogWriter>,
}

impl Actor for Supervisor {
    type Args = WriterArgs;
    type Error = Error;

    async fn on_start(args: WriterArgs, actor_ref: ActorRef<Self>) -> Result<Self, Error> {
        let writer = LogWriter::supervise(&actor_ref, args)
            .restart_policy(RestartPolicy::Transient)
            .restart_limit(5, Duration::from_secs(60))
            .spawn_with_mailbox(mailbox::bounded(WRITER_MAILBOX))
            .await;
        Ok(Supervisor { writer })
    }
}

/// Asks the supervisor for the log writer's ref.
#[derive(Clone, Copy, Debug, Default)]
pub struct GetWriter;

impl Message<GetWriter> for Supervisor {
    type Reply = ActorRef<LogWriter>;

    async fn handle(&mut self, _: GetWriter, _: &mut Context<Self, Self::Reply>) -> Self::Reply {
        self.writer.clone()
    }
}

/// The running write path.
#[derive(Clone, Debug)]
pub struct Started {
    /// The supervisor.
    pub supervisor: ActorRef<Supervisor>,
    /// The log writer (the same ref stays valid across restarts).
    pub writer: ActorRef<LogWriter>,
    /// The last acknowledged commit (durable and observed).
    pub last_acked: Arc<AtomicU64>,
}

/// Spawns the supervisor and, under it, the log writer built from `args`
/// (see [`WriterArgs::new`]); returns once the writer has started.
pub async fn start(args: WriterArgs) -> Result<Started, Error> {
    let last_acked = args.shared.last_acked.clone();
    let supervisor = Supervisor::spawn(args);
    supervisor
        .wait_for_startup_result()
        .await
        .map_err(|e| Error::WriterFailed {
            reason: format!("supervisor failed to start: {e:?}"),
        })?;
    let writer = supervisor
        .ask(GetWriter)
        .await
        .map_err(|e| Error::WriterFailed {
            reason: format!("supervisor unavailable: {e:?}"),
        })?;
    writer
        .wait_for_startup_result()
        .await
        .map_err(|e| match e {
            kameo::error::HookError::Error(e) => e,
            other => Error::WriterFailed {
                reason: format!("log writer failed to start: {other:?}"),
            },
        })?;
    Ok(Started {
        supervisor,
        writer,
        last_acked,
    })
}

impl Started {
    /// Makes everything durable and stops the writer, then the supervisor.
    pub async fn stop(&self) -> Result<(), Error> {
        let flushed = self.writer.ask(crate::commit::log_writer::Flush).await;
        let _ = self.writer.stop_gracefully().await;
        self.writer.wait_for_shutdown().await;
        let _ = self.supervisor.stop_gracefully().await;
        self.supervisor.wait_for_shutdown().await;
        match flushed {
            Ok(_) => Ok(()),
            Err(e) => match crate::error::from_send(e) {
                Error::Closed => Ok(()),
                e => Err(e),
            },
        }
    }
}
