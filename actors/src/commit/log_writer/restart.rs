//! Restart: the starting point of a new incarnation of the writer, from a
//! recovery, and the rescan a restarted one does before it takes appends.

#[allow(clippy::wildcard_imports)]
use super::*;

impl Init {
    /// The conflict index starts empty with its floor at the last durable
    /// commit: no record is replayed (opening a store does not pay for it).
    /// Every check made after a (re)start carries a read commit at or after
    /// that floor (transactions read at an acknowledged commit); an older
    /// one — a transaction that read before a supervised restart — is
    /// answered conservatively with a conflict at the floor, so it re-reads
    /// and retries instead of missing a change it cannot see.
    pub(super) fn from_recovered(r: &Recovered) -> Init {
        Init {
            conflicts: ConflictIndex::with_base(r.last_commit),
            next_commit: r.last_commit + 1,
            // Appends never go into a sealed segment: the next one starts a
            // new segment (a seal is kept across a reopen).
            active: r.segments.last().filter(|s| !s.sealed).map(|s| ActiveSeg {
                first: s.first_commit,
                len: s.bytes,
                last: s.last_commit,
            }),
            sealed_tail: r.segments.last().filter(|s| s.sealed).cloned(),
        }
    }
}

/// Recovery for a restarted incarnation: waits for any flush of the old one,
/// rescans the files (every frame's CRC; only the records after the last
/// acknowledged commit are decoded), and hands durable records nobody has
/// seen (written by a batch that never got acknowledged) to the index, the
/// observer and the follower.
pub(super) async fn restart_recovery(args: &WriterArgs) -> Result<Init, Error> {
    let _gate = args.shared.gate.lock().await;
    let dir = args.dir.clone();
    let options = args.options.clone();
    let fs = args.fs.clone();
    // No flush runs (the gate is held): nothing is acknowledged meanwhile.
    let acked = args.shared.last_acked.load(Ordering::SeqCst);
    let recovered =
        tokio::task::spawn_blocking(move || recovery::recover_after(&dir, &options, &*fs, acked))
            .await
            .map_err(|e| failed_err(&format!("recovery task failed: {e}")))??;
    let unseen: Vec<DurableRecord> = recovered
        .records
        .iter()
        .filter(|r| r.commit > acked)
        .cloned()
        .collect();
    if !unseen.is_empty() {
        tracing::warn!(
            from = unseen[0].commit,
            to = recovered.last_commit,
            "restart found durable records that were never acknowledged"
        );
        if let Some(index) = &args.index {
            index
                .absorb(&unseen)
                .map_err(|e| failed_err(&format!("cannot index a durable batch: {e}")))?;
        }
        if let Some(obs) = &args.observer {
            obs.ask(DurableBatch {
                records: unseen.clone(),
            })
            .await
            .map_err(|e| failed_err(&format!("commit observer failed: {e:?}")))?;
        }
        if let Some(feed) = &args.feed {
            let _ = feed
                .tell(DurableBatch {
                    records: unseen.clone(),
                })
                .try_send();
        }
        if let Some(f) = &args.follower {
            let _ = f.tell(DurableBatch { records: unseen }).await;
        }
    }
    args.shared
        .last_acked
        .fetch_max(recovered.last_commit, Ordering::SeqCst);
    tracing::info!(last_commit = recovered.last_commit, "log writer restarted");
    Ok(Init::from_recovered(&recovered))
}
