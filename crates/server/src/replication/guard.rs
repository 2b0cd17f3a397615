//! Cluster-wide replay protection on a replica: before a login consumes a
//! code, a backup code or a challenge State, the primary takes it.
//!
//! Claims from concurrent logins travel together: one request carries
//! every claim queued while the previous requests were in flight (at most
//! [`IN_FLIGHT`] at a time), and the primary applies a request in one step
//! of its group-commit writer. Under load that is one round trip and one
//! commit for many logins, the way the store's group commit amortises its
//! fsync; a lone login pays one round trip.
//!
//! A claim that gets no answer within `[replication] claim_timeout_ms`
//! leaves the decision to this replica (counted in
//! `tessera_replication_claims_total{outcome="no_answer"}`): logins keep
//! working while the primary is down, and what this node consumed meanwhile
//! reaches the primary from its journal when it is back.

use std::sync::Arc;
use std::time::Duration;

use tessera_core::guarded_store::{ClaimOutcome, ReplayGuard};
use tessera_core::replication::{ClaimItem, ClaimRequest, ClaimResult};
use tokio::sync::{Semaphore, mpsc, oneshot};

use super::link::PrimaryLink;
use super::{Replication, now_ms};
use crate::metrics::{self, ClaimMetric};

/// Requests to the primary in flight at once.
const IN_FLIGHT: usize = 4;
/// Most claims per request.
const MAX_BATCH: usize = 256;
/// Claims queued beyond this are decided locally at once (the primary is
/// not keeping up; a login must not wait for a queue).
const QUEUE: usize = 4096;

type Reply = oneshot::Sender<Option<ClaimResult>>;

/// The replica's [`ReplayGuard`]: queues claims for the batch sender.
pub struct ClaimBatcher {
    tx: mpsc::Sender<(ClaimItem, Reply)>,
    timeout: Duration,
    repl: Arc<Replication>,
}

impl ClaimBatcher {
    /// Starts the sender task (it ends when the batcher is dropped).
    pub fn start(repl: Arc<Replication>, link: Arc<PrimaryLink>, timeout: Duration) -> Arc<Self> {
        let (tx, rx) = mpsc::channel(QUEUE);
        tokio::spawn(send_batches(rx, repl.clone(), link, timeout));
        Arc::new(ClaimBatcher { tx, timeout, repl })
    }
}

#[async_trait::async_trait]
impl ReplayGuard for ClaimBatcher {
    async fn claim(&self, item: ClaimItem) -> ClaimOutcome {
        let (reply, rx) = oneshot::channel();
        let outcome = if self.tx.try_send((item.clone(), reply)).is_err() {
            None
        } else {
            tokio::time::timeout(self.timeout, rx).await.ok().and_then(Result::ok).flatten()
        };
        let Some(result) = outcome else {
            metrics::replication_claim(ClaimMetric::NoAnswer);
            return ClaimOutcome::NoAnswer;
        };
        if result.claimed {
            metrics::replication_claim(ClaimMetric::Claimed);
            return ClaimOutcome::Claimed;
        }
        if result.reason.as_deref() != Some("used") {
            metrics::replication_claim(ClaimMetric::Refused);
            tracing::warn!(reason = result.reason.as_deref().unwrap_or("?"), "the primary refused a claim");
            return ClaimOutcome::Refused;
        }
        metrics::replication_claim(ClaimMetric::Used);
        // Used on another node: bring the primary's state here, so the
        // local check refuses it as a replay (before the stream brings it).
        let merge = match &item {
            ClaimItem::Step { user, .. } => {
                let state = result.token_state.as_deref().and_then(|h| hex::decode(h).ok());
                Some((*user, state, Vec::new()))
            }
            ClaimItem::BackupCode { user, digest } => Some((*user, None, vec![(digest.clone(), now_ms())])),
            ClaimItem::State { .. } => None,
        };
        if let Some((user, state, used)) = merge {
            let log = self.repl.log.clone();
            let merged =
                tokio::task::spawn_blocking(move || log.merge_from_primary(user, state.as_deref(), &used)).await;
            if !matches!(merged, Ok(Ok(_))) {
                tracing::error!("cluster-wide replay protection: merging the primary's login state failed");
            }
        }
        ClaimOutcome::Used
    }
}

async fn send_batches(
    mut rx: mpsc::Receiver<(ClaimItem, Reply)>,
    repl: Arc<Replication>,
    link: Arc<PrimaryLink>,
    timeout: Duration,
) {
    let slots = Arc::new(Semaphore::new(IN_FLIGHT));
    while let Some(first) = rx.recv().await {
        let Ok(permit) = slots.clone().acquire_owned().await else { return };
        // Everything that queued while the slots were busy goes together.
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(c) => batch.push(c),
                Err(_) => break,
            }
        }
        let (repl, link) = (repl.clone(), link.clone());
        tokio::spawn(async move {
            let _permit = permit;
            let (items, replies): (Vec<ClaimItem>, Vec<Reply>) = batch.into_iter().unzip();
            let results = match link.client(&repl) {
                Ok(client) => {
                    let req = ClaimRequest { epoch: repl.epoch(), items };
                    match client.claims(&req, timeout).await {
                        Ok(r) if r.len() == replies.len() => Some(r),
                        Ok(_) => {
                            tracing::warn!("the primary answered a claim batch with the wrong number of results");
                            None
                        }
                        Err(e) => {
                            link.note_error(&e);
                            None
                        }
                    }
                }
                Err(e) => {
                    link.note_error(&e);
                    None
                }
            };
            match results {
                Some(results) => {
                    for (reply, r) in replies.into_iter().zip(results) {
                        let _ = reply.send(Some(r));
                    }
                }
                None => {
                    for reply in replies {
                        let _ = reply.send(None);
                    }
                }
            }
        });
    }
}
