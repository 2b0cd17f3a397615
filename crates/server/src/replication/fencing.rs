//! A primary confirms its role with the other enrolled nodes before it
//! takes an administrative write, and keeps checking while it runs.
//!
//! At start (before any listener is up) a node that believes it is the
//! primary is fenced ("confirming") and asks every enrolled node for its
//! hello; `tessera_core::replication::fencing::decide` turns the answers
//! into a decision:
//! - nobody knows a newer epoch: the fence is lifted;
//! - a newer primary exists: this node was replaced while it was away. It
//!   follows the new primary by itself (`[replication] follow_newer_primary`,
//!   the default; a snapshot from it merges this node's login state, so
//!   nothing used on either side becomes usable again), or stays fenced;
//! - nobody answers: it stays fenced (logins are answered, administrative
//!   writes are not) until a peer answers or an administrator runs
//!   `tessera replica confirm-primary`;
//! - another primary holds the same epoch: it stays fenced (split brain).
//!
//! The fence is kept in the database, so CLI commands run against the data
//! directory are refused too.

use std::sync::Arc;
use std::time::Duration;

use tessera_core::audit::{Actor, AuditRecord, AuditResult};
use tessera_core::replication::Role;
use tessera_core::replication::fencing::{RoleDecision, decide};
use tokio::sync::watch;

use super::Replication;
use super::follower::{ask_peers, repoint_to, views};
use crate::node::Node;

/// How often a running primary asks its peers.
const CHECK_EVERY: Duration = Duration::from_secs(10);
/// How often a fenced primary asks again.
const RETRY_FENCED: Duration = Duration::from_secs(3);

pub const CONFIRMING: &str = "confirming its role with the other nodes after a restart";

/// Whether this node is a primary with peers to ask.
fn has_peers(repl: &Replication) -> bool {
    let me = repl.identity().map(|i| i.name);
    repl.directory.all().iter().any(|n| Some(&n.name) != me.as_ref())
}

async fn set_fence(repl: &Replication, why: Option<String>) -> Result<(), tessera_core::store::StoreError> {
    let log = repl.log.clone();
    tokio::task::spawn_blocking(move || log.set_state(|s| s.fence = why))
        .await
        .map_err(|e| tessera_core::store::StoreError::Unavailable(e.to_string()))??;
    repl.refresh_gate().map(|_| ())
}

/// At start: a primary is fenced until its peers have answered (or it has
/// none). Returns once the first round of questions is decided.
pub async fn confirm_at_start(node: &Node, repl: &Replication) {
    let Ok(s) = repl.state() else { return };
    if s.role != Role::Primary {
        return;
    }
    if !has_peers(repl) {
        if s.fence.as_deref() == Some(CONFIRMING) {
            let _ = set_fence(repl, None).await;
        }
        return;
    }
    if s.fence.is_none() {
        let _ = set_fence(repl, Some(CONFIRMING.into())).await;
    }
    check(node, repl).await;
}

/// Runs for the life of the server.
pub async fn watch(node: Arc<Node>, repl: Arc<Replication>, mut stop: watch::Receiver<bool>) {
    loop {
        let fenced = repl.gate.fence().is_some();
        let wait = if fenced { RETRY_FENCED } else { CHECK_EVERY };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = repl.fence_wake.notified() => {}
            _ = stop.changed() => return,
        }
        if repl.state().is_ok_and(|s| s.role == Role::Primary) && (has_peers(&repl) || fenced) {
            check(&node, &repl).await;
        }
    }
}

/// Asks the peers and acts on the decision.
async fn check(node: &Node, repl: &Replication) {
    let Ok(s) = repl.state() else { return };
    // Only a primary that has not confirmed its role since it started is
    // fenced for reaching nobody: a running primary whose replicas are down
    // (maintenance) keeps taking changes; a newer epoch still fences it.
    let confirming = s.fence.is_some();
    // A fence an administrator must lift (restored from a backup) is not
    // lifted by peers answering.
    if s.fence.as_deref().is_some_and(|f| f.starts_with(RESTORED)) {
        return;
    }
    let answers = ask_peers(node, repl).await;
    let me = repl.identity().map(|i| i.name).unwrap_or_else(|| node.ctx.node.clone());
    let decision = decide(&me, s.epoch, &views(&answers));
    match decision {
        RoleDecision::Confirmed => {
            if s.fence.is_some() {
                tracing::info!(epoch = s.epoch, "the other nodes confirm this node is the primary: taking writes");
                let _ = set_fence(repl, None).await;
                audit(node, "confirmed as primary by the other nodes").await;
            }
        }
        RoleDecision::Isolated if !confirming => {}
        RoleDecision::Isolated => {
            let why = "no other enrolled node answers, so this node cannot know whether it was replaced; it answers \
                       logins but takes no change until a node answers or an administrator runs `tessera replica \
                       confirm-primary`";
            if s.fence.as_deref() != Some(why) {
                tracing::warn!("{why}");
                let _ = set_fence(repl, Some(why.into())).await;
            }
        }
        RoleDecision::Conflict { name, epoch } => {
            let why = format!(
                "{name} is also primary at epoch {epoch} (two nodes were promoted); run `tessera replica \
                 confirm-primary` on the one to keep and `tessera replica demote` on the other"
            );
            if s.fence.as_deref() != Some(why.as_str()) {
                tracing::error!("{why}");
                let _ = set_fence(repl, Some(why)).await;
                audit(node, "fenced: another primary at the same epoch").await;
            }
        }
        RoleDecision::Follow(newer) => {
            let why = format!(
                "replaced by {} (epoch {} > {}); run `tessera replica demote --primary <its URL>`",
                newer.name, newer.epoch, s.epoch
            );
            if s.fence.as_deref() != Some(why.as_str()) {
                tracing::warn!(primary = %newer.name, epoch = newer.epoch, "this node was replaced as primary");
                let _ = set_fence(repl, Some(why)).await;
                audit(node, &format!("fenced: replaced by {} at epoch {}", newer.name, newer.epoch)).await;
            }
            if node.config.replication.follow_newer_primary {
                match repoint_to(
                    node,
                    repl,
                    &newer.name,
                    newer.url.clone(),
                    newer.epoch,
                    "this node was replaced as primary",
                )
                .await
                {
                    Ok(()) => tracing::warn!(primary = %newer.name, "now a replica of the new primary"),
                    Err(e) => tracing::error!(error = %e, "cannot follow the new primary; staying fenced"),
                }
            }
        }
    }
}

/// The fence of a node restored from a backup (lifted only by an administrator).
pub const RESTORED: &str = "restored from a backup";

async fn audit(node: &Node, what: &str) {
    let actor = Actor::new("replication");
    let a = AuditRecord::new(node.ctx.clock.now(), &node.ctx.node, &actor, "replica.fence")
        .result(AuditResult::Ok, Some(what));
    if let Err(e) = node.ctx.store.append_audit(a).await {
        tracing::warn!(error = %e, "cannot audit a fencing decision");
    }
}
