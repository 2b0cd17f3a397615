//! Sends the logins this replica decided to its primary, from the durable
//! journal the store writes in each login's own transaction
//! (`repl_outbox`): the primary counts failures toward the lock with its
//! policy (so failures on replicas while the primary was down combine into
//! a lock when it returns), clears them on a success, and keeps what was
//! consumed consumed. Nothing is lost across a restart of this node: what
//! the primary has not acknowledged stays journalled.

use std::sync::Arc;
use std::time::Duration;

use tessera_core::replication::Role;
use tokio::sync::watch;

use super::Replication;
use super::link::PrimaryLink;

/// Journalled logins per request.
const BATCH: u32 = 500;
/// Pause after a failed send, and the longest wait between looks.
const IDLE: Duration = Duration::from_secs(1);

pub async fn run(repl: Arc<Replication>, link: Arc<PrimaryLink>, mut stop: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = repl.forward_wake.notified() => {}
            _ = tokio::time::sleep(IDLE) => {}
            _ = stop.changed() => return,
        }
        if repl.primary().is_none() || repl.state().is_ok_and(|s| s.role != Role::Replica || s.position < 0) {
            continue;
        }
        // Everything journalled, in batches, until empty or the primary fails.
        loop {
            let events = match repl.cluster.outbox(BATCH) {
                Ok(e) if e.is_empty() => break,
                Ok(e) => e,
                Err(e) => {
                    tracing::error!(error = %e, "reading the login journal");
                    break;
                }
            };
            let sent = match link.client(&repl) {
                Ok(c) => c.forward(&events).await,
                Err(e) => Err(e),
            };
            match sent {
                Ok(answer) => {
                    tracing::debug!(
                        logins = events.len(),
                        applied = answer.applied,
                        refused = answer.refused,
                        "forwarded journalled logins to the primary"
                    );
                    let through = events.last().map_or(answer.through, |e| e.id).min(answer.through.max(0));
                    if let Err(e) = repl.cluster.outbox_done(through).await {
                        tracing::error!(error = %e, "cannot clear forwarded logins from the journal");
                        break;
                    }
                    if through < events.last().map_or(0, |e| e.id) {
                        break;
                    }
                }
                Err(e) => {
                    link.note_error(&e);
                    break;
                }
            }
        }
    }
}
