//! The replica's side: follow the primary's change stream, take a new
//! snapshot when needed (re-pointed, or away past the primary's log
//! retention), move to a newer primary by itself, and report truthfully how
//! far behind it is.
//!
//! Refusals are checked on every contact: another master key (the data
//! could not be opened), another schema or protocol version, a peer that is
//! not a primary, and a primary whose epoch is older than this node's (a
//! stale primary that was replaced must not overwrite what the new one
//! wrote).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tessera_core::audit::{Actor, AuditRecord, AuditResult};
use tessera_core::replication::fencing::{self, PeerAnswer, RoleDecision};
use tessera_core::replication::{Hello, NodeReport, ReplState, Role, protocols};
use tessera_core::store::StoreError;
use tokio::sync::watch;

use super::client::{ClientError, PeerClient};
use super::link::PrimaryLink;
use super::{Replication, now_ms};
use crate::node::Node;

/// How long one change request waits on the primary for something new.
pub const LONG_POLL: Duration = Duration::from_secs(5);
/// A contact older than this (ms) no longer counts as following: the long
/// poll should have returned well before.
pub const CONTACT_FRESH_MS: i64 = 7_000;
const PAGE: u32 = 1000;
/// Pause after a failed contact, and while this node is not a replica.
const IDLE: Duration = Duration::from_secs(1);
/// How often this replica reports to its primary.
const CHECKIN_EVERY: Duration = Duration::from_secs(2);
/// After this long without its primary, a replica asks the other enrolled
/// nodes whether a newer primary exists (and again as often).
const LOOK_AROUND_AFTER: Duration = Duration::from_secs(10);
/// Per-peer time limit when asking around.
pub const PEER_TIMEOUT: Duration = Duration::from_secs(2);
/// Clock offsets above this are warned about (TOTP steps are 30 s).
pub const OFFSET_WARN_MS: i64 = 2000;

/// Why a step of following failed.
#[derive(Debug, thiserror::Error)]
pub enum FollowError {
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Refused(String),
    /// The primary is a replica of another (newer) primary now.
    #[error("{from} now follows {name} ({url}); moving there")]
    Moved { from: String, name: String, url: String, epoch: i64 },
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(f).await.map_err(|e| StoreError::Unavailable(e.to_string()))?
}

/// Checks a peer is a primary this node may follow (`mine`: this node's state).
pub fn check_primary(node: &Node, hello: &Hello, mine: &ReplState) -> Result<(), FollowError> {
    let keys = &node.ctx.keys;
    if !hello.shares_key_with(&keys.key_id(), &keys.previous_key_ids()) {
        return Err(FollowError::Refused(format!(
            "{} uses master key {} but this node has {}: every node needs the same key file",
            hello.node,
            hello.key_id,
            keys.key_id()
        )));
    }
    // Versions: a cluster runs release N and N+1 side by side during a
    // rolling upgrade; the protocol is the highest both speak and each
    // schema must be inside the other's window.
    protocols().negotiate(hello.protocols()).map_err(|e| FollowError::Refused(format!("{}: {e}", hello.node)))?;
    hello
        .schema()
        .replicates_with(tessera_store::sqlite::schema::build_window())
        .map_err(|e| FollowError::Refused(format!("{} ({}): {e}", hello.node, hello.version)))?;
    if hello.role == Role::Replica {
        return match (&hello.primary_name, &hello.primary_url) {
            (Some(name), Some(url))
                if hello.epoch > mine.epoch || mine.primary_name.as_deref() == Some(&hello.node) =>
            {
                Err(FollowError::Moved {
                    from: hello.node.clone(),
                    name: name.clone(),
                    url: url.clone(),
                    epoch: hello.epoch,
                })
            }
            _ => Err(FollowError::Refused(format!("{} is a replica, not a primary", hello.node))),
        };
    }
    if hello.role != Role::Primary {
        return Err(FollowError::Refused(format!("{} is not a primary (role {})", hello.node, hello.role.as_str())));
    }
    if hello.epoch < mine.epoch {
        return Err(FollowError::Refused(format!(
            "{} is a stale primary (epoch {} < this node's {}): it was replaced",
            hello.node, hello.epoch, mine.epoch
        )));
    }
    Ok(())
}

/// Pulls a full snapshot and installs it (the replicated tables are
/// replaced in one transaction; this node's login state is merged back).
pub async fn resnapshot(repl: &Replication, client: &PeerClient) -> Result<i64, FollowError> {
    // The installer applies rows in its transaction while they download;
    // the bounded channel keeps memory flat whatever the snapshot's size.
    let (tx, rx) = std::sync::mpsc::sync_channel(1024);
    let log = repl.log.clone();
    let installer = tokio::task::spawn_blocking(move || log.install_snapshot_from(rx));
    let fetched = client.snapshot_into(tx).await;
    let installed = installer.await.map_err(|e| StoreError::Unavailable(e.to_string()))?;
    let (position, epoch, rows) = match (fetched, installed) {
        (Ok(()), Ok(done)) => done,
        // The installer failed first (the download then stopped): its error is the cause.
        (Err(ClientError::Protocol { .. }), Err(e)) => return Err(e.into()),
        (Err(e), _) => return Err(e.into()),
        (Ok(()), Err(e)) => return Err(e.into()),
    };
    repl.directory.refresh(&repl.cluster)?;
    tracing::info!(position, epoch, rows, "installed a snapshot from the primary");
    Ok(position)
}

/// What this node tells its primary about itself.
pub fn report(node: &Node, repl: &Replication, s: &ReplState) -> NodeReport {
    NodeReport {
        url: repl.advertise(),
        https_pin: super::certificate_pin(&node.config),
        role: s.role,
        epoch: s.epoch,
        position: s.position,
        lag_ms: repl.status.lag_ms(now_ms()),
        following: repl.status.following.load(Ordering::Relaxed),
        key_id: node.ctx.keys.key_id(),
        previous_key_ids: node.ctx.keys.previous_key_ids(),
        version: super::build_version(),
    }
}

/// One round: report (every few seconds), then apply what the primary
/// has after this node's position (waiting up to the long-poll time).
async fn follow_once(
    node: &Node,
    repl: &Replication,
    s: &ReplState,
    client: &PeerClient,
    last_checkin: &mut Option<Instant>,
) -> Result<(), FollowError> {
    if last_checkin.is_none_or(|t| t.elapsed() >= CHECKIN_EVERY) || s.position < 0 {
        let (hello, offset) = client.checkin(&report(node, repl, s)).await?;
        check_primary(node, &hello, s)?;
        client.speak(protocols().negotiate(hello.protocols()).unwrap_or(0));
        *last_checkin = Some(Instant::now());
        crate::metrics::set_replication_offset(offset);
        if offset.abs() > OFFSET_WARN_MS {
            tracing::warn!(primary = %hello.node, offset_ms = offset, "clock offset from the primary above 2 s: TOTP codes may be refused; fix NTP");
        }
        let (name, epoch, now) = (hello.node.clone(), hello.epoch, now_ms());
        let log = repl.log.clone();
        blocking(move || {
            log.set_state(|st| {
                st.primary_name = Some(name);
                st.clock_offset_ms = Some(offset);
                st.epoch = st.epoch.max(epoch);
                st.last_contact_at = Some(now);
            })
        })
        .await?;
    }
    if s.position < 0 {
        // Re-pointed: positions are the old primary's; start from a copy.
        tracing::info!(primary = %client.url(), "taking a snapshot from the new primary");
        resnapshot(repl, client).await?;
        repl.status.caught_up_at.store(now_ms(), Ordering::Relaxed);
        repl.status.contact_at.store(now_ms(), Ordering::Relaxed);
        return Ok(());
    }
    let page = match client.changes(s.position, PAGE, LONG_POLL).await {
        Err(ClientError::SnapshotRequired) => {
            tracing::warn!("this replica was away past the primary's log retention: taking a new snapshot");
            resnapshot(repl, client).await?;
            return Ok(());
        }
        r => r?,
    };
    if page.epoch < s.epoch {
        return Err(FollowError::Refused(format!("{} answered with a stale epoch {}", client.url(), page.epoch)));
    }
    let caught_up = page.images.last().is_none_or(|i| i.seq >= page.head);
    let position = page.images.last().map_or(s.position, |i| i.seq);
    let touches_nodes = page.images.iter().any(|i| i.table == "repl_nodes");
    let log = repl.log.clone();
    let now = now_ms();
    let lag = if caught_up { 0 } else { repl.status.lag_ms(now).unwrap_or(0) };
    blocking(move || {
        if !page.images.is_empty() {
            log.apply(&page, position)?;
        }
        log.set_state(|st| {
            st.last_contact_at = Some(now);
            st.lag_ms = Some(lag);
            st.epoch = st.epoch.max(page.epoch);
        })
        .map(|_| ())
    })
    .await?;
    if touches_nodes {
        repl.directory.refresh(&repl.cluster)?;
    }
    repl.status.contact_at.store(now, Ordering::Relaxed);
    if caught_up {
        repl.status.caught_up_at.store(now, Ordering::Relaxed);
    }
    Ok(())
}

/// Runs for the life of the server; idles while this node is not a replica.
pub async fn run(node: Arc<Node>, repl: Arc<Replication>, link: Arc<PrimaryLink>, mut stop: watch::Receiver<bool>) {
    let mut last_error: Option<String> = None;
    let mut last_checkin: Option<Instant> = None;
    // Since when this replica has not reached its primary, and when it last asked around.
    let mut lost_since: Option<Instant> = None;
    let mut asked_around: Option<Instant> = None;
    let retention = Duration::from_secs(node.config.replication.log_retention_seconds.max(1));
    // Often enough that nothing outlives the retention by much, at most hourly.
    let prune_every = (retention / 4).clamp(Duration::from_secs(1), Duration::from_secs(3600));
    let mut last_prune: Option<Instant> = None;
    // The master key this loop last saw: the identity is re-sealed when it changes.
    let mut key_id = String::new();
    while !*stop.borrow() {
        if node.ctx.keys.key_id() != key_id {
            key_id = node.ctx.keys.key_id();
            if let Err(e) = repl.reseal_identity(&node.ctx.keys, &*node.ctx.random).await {
                tracing::error!(error = %e, "cannot re-seal this node's cluster identity");
            }
        }
        let s = match repl.refresh_gate() {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "reading the replication state");
                pause(&mut stop, IDLE).await;
                continue;
            }
        };
        if s.role != Role::Replica {
            repl.status.following.store(false, Ordering::Relaxed);
            if s.role == Role::Primary && last_prune.is_none_or(|t| t.elapsed() >= prune_every) {
                last_prune = Some(Instant::now());
                let before = now_ms() / 1000 - retention.as_secs() as i64;
                let log = repl.log.clone();
                match blocking(move || log.prune_deletions(before)).await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(deletions = n, "replication log: forgot deletions past the retention time"),
                    Err(e) => tracing::error!(error = %e, "replication log: pruning failed"),
                }
            }
            pause(&mut stop, IDLE).await;
            continue;
        }
        if repl.identity().is_none() {
            let _ = repl.load_identity(&node.ctx.keys);
        }
        let client = match link.client(&repl) {
            Ok(c) => c,
            Err(e) => {
                fail(&repl, &mut last_error, e.to_string()).await;
                pause(&mut stop, IDLE).await;
                continue;
            }
        };
        let round = tokio::select! {
            r = follow_once(&node, &repl, &s, &client, &mut last_checkin) => r,
            _ = stop.changed() => break,
        };
        match round {
            Ok(()) => {
                repl.status.following.store(true, Ordering::Relaxed);
                *repl.status.error.write() = None;
                lost_since = None;
                if last_error.take().is_some() || s.follow_error.is_some() {
                    tracing::info!("following the primary again");
                    record_error(&repl, None).await;
                }
            }
            Err(FollowError::Moved { from, name, url, epoch }) => {
                tracing::warn!(%from, primary = %name, %url, epoch, "the primary was replaced: following the new one");
                last_checkin = None;
                if let Err(e) = repoint_to(&node, &repl, &name, Some(url), epoch, "its old primary follows it").await {
                    fail(&repl, &mut last_error, e.to_string()).await;
                    pause(&mut stop, IDLE).await;
                }
            }
            Err(e) => {
                fail(&repl, &mut last_error, e.to_string()).await;
                last_checkin = None;
                let since = *lost_since.get_or_insert_with(Instant::now);
                if since.elapsed() >= LOOK_AROUND_AFTER && asked_around.is_none_or(|t| t.elapsed() >= LOOK_AROUND_AFTER)
                {
                    asked_around = Some(Instant::now());
                    look_around(&node, &repl, &s).await;
                }
                pause(&mut stop, IDLE).await;
            }
        }
    }
}

async fn fail(repl: &Replication, last: &mut Option<String>, e: String) {
    repl.status.following.store(false, Ordering::Relaxed);
    *repl.status.error.write() = Some(e.clone());
    if last.as_deref() != Some(e.as_str()) {
        tracing::error!(error = %e, "replication: cannot follow the primary");
        *last = Some(e.clone());
        record_error(repl, Some(e)).await;
    }
}

/// Keeps the database's copy of why following fails (for `replica status`
/// in another process) in step, writing only when it changes.
async fn record_error(repl: &Replication, e: Option<String>) {
    let log = repl.log.clone();
    let _ = blocking(move || log.set_state(|s| s.follow_error = e)).await;
}

async fn pause(stop: &mut watch::Receiver<bool>, d: Duration) {
    let _ = tokio::time::timeout(d, stop.changed()).await;
}

/// Asks every enrolled node (concurrently, each within [`PEER_TIMEOUT`])
/// for its hello; this node left out.
pub async fn ask_peers(node: &Node, repl: &Replication) -> Vec<(String, Option<Hello>)> {
    let Some(identity) = repl.identity() else { return Vec::new() };
    let me = identity.name.clone();
    let asks = repl.directory.all().into_iter().filter(|n| n.name != me).map(|peer| {
        let identity = identity.clone();
        async move {
            let Some(url) = peer.url.clone() else { return (peer.name, None) };
            let hello = match PeerClient::new(&url, peer.https_pin.as_deref(), Some(&identity.tls)) {
                Ok(c) => c.hello(PEER_TIMEOUT).await.ok().map(|(h, _)| h),
                Err(_) => None,
            };
            (peer.name, hello)
        }
    });
    let _ = node;
    futures_util::future::join_all(asks).await
}

/// What `ask_peers` found, as the fencing decision reads it.
pub fn views(answers: &[(String, Option<Hello>)]) -> Vec<(String, PeerAnswer<'_>)> {
    answers.iter().map(|(n, h)| (n.clone(), h.as_ref().map_or(PeerAnswer::Unreachable, PeerAnswer::Hello))).collect()
}

/// Without its primary: is there a newer one among the enrolled nodes?
async fn look_around(node: &Node, repl: &Replication, s: &ReplState) {
    let answers = ask_peers(node, repl).await;
    let me = repl.identity().map(|i| i.name).unwrap_or_else(|| node.ctx.node.clone());
    if let RoleDecision::Follow(newer) = fencing::decide(&me, s.epoch, &views(&answers))
        && newer.epoch > s.epoch
    {
        tracing::warn!(primary = %newer.name, epoch = newer.epoch, "found a newer primary while the old one is away");
        if let Err(e) =
            repoint_to(node, repl, &newer.name, newer.url.clone(), newer.epoch, "found while the old primary was away")
                .await
        {
            tracing::error!(error = %e, "cannot move to the newer primary");
        }
    }
}

/// Points this node at the primary `name` (URL from the enrolled list
/// when not given), after checking it really is a primary at `epoch` or
/// newer; the follower then copies a snapshot from it. Audited.
pub async fn repoint_to(
    node: &Node,
    repl: &Replication,
    name: &str,
    url: Option<String>,
    epoch: i64,
    why: &str,
) -> Result<(), FollowError> {
    let known = repl.directory.by_name(name);
    let url = url
        .or_else(|| known.as_ref().and_then(|n| n.url.clone()))
        .ok_or_else(|| FollowError::Refused(format!("no address is known for the primary {name}")))?;
    let pin = known.as_ref().and_then(|n| n.https_pin.clone());
    let identity = repl
        .identity()
        .ok_or_else(|| FollowError::Refused("this node has no cluster identity; run `tessera replica join`".into()))?;
    let client = PeerClient::new(&url, pin.as_deref(), Some(&identity.tls))?;
    let (hello, _) = client.hello(PEER_TIMEOUT).await?;
    let mine = repl.state()?;
    if hello.role != Role::Primary || hello.epoch < epoch || hello.epoch < mine.epoch {
        return Err(FollowError::Refused(format!(
            "{} is not the primary it was said to be (role {}, epoch {})",
            hello.node,
            hello.role.as_str(),
            hello.epoch
        )));
    }
    check_primary(node, &hello, &mine)?;
    let (hname, hepoch, url2, pin2) = (hello.node.clone(), hello.epoch, url.clone(), pin.clone());
    let log = repl.log.clone();
    blocking(move || {
        log.set_state(|s| {
            s.role = Role::Replica;
            s.primary_url = Some(url2);
            s.primary_name = Some(hname);
            s.pin = pin2;
            s.epoch = s.epoch.max(hepoch);
            s.position = -1;
            s.fence = None;
            s.lag_ms = None;
        })
    })
    .await?;
    repl.refresh_gate()?;
    let actor = Actor::new("replication");
    let audit = AuditRecord::new(node.ctx.clock.now(), &node.ctx.node, &actor, "replica.repoint")
        .target(&hello.node)
        .result(AuditResult::Ok, Some(&format!("now follows {} ({url}) at epoch {}: {why}", hello.node, hello.epoch)));
    node.ctx.store.append_audit(audit).await?;
    Ok(())
}

/// Keeps `/metrics` and `/readyz` truthful about following: every second,
/// the lag (growing while this replica does not follow), whether it
/// follows, and how many logins wait for the primary.
pub async fn report_health(node: Arc<Node>, repl: Arc<Replication>, mut stop: watch::Receiver<bool>) {
    use crate::health::{self, Degradation};
    let max_lag_ms = i64::try_from(node.config.replication.max_lag_seconds.saturating_mul(1000)).unwrap_or(i64::MAX);
    loop {
        let replica = repl.gate.replica_of().is_some();
        let now = now_ms();
        if replica {
            let following = repl.status.following.load(Ordering::Relaxed);
            let lag = repl.status.lag_ms(now);
            crate::metrics::set_replication_following(Some(following));
            crate::metrics::set_replication_lag(Some(Duration::from_millis(lag.unwrap_or(0).max(0) as u64)));
            crate::metrics::set_replication_outbox(repl.cluster.outbox_len().ok());
            let error = repl.status.error.read().clone();
            health::set(
                Degradation::ReplicationNotFollowing,
                (!following).then(|| {
                    format!("replication: not following the primary: {}", error.unwrap_or_else(|| "starting".into()))
                }),
            );
            health::set(
                Degradation::ReplicationLag,
                lag.filter(|l| *l > max_lag_ms).map(|l| {
                    format!("replication: lag {:.1} s above the {} s limit", l as f64 / 1e3, max_lag_ms / 1000)
                }),
            );
        } else {
            crate::metrics::set_replication_following(None);
            crate::metrics::set_replication_lag(None);
            crate::metrics::set_replication_outbox(None);
            health::set(Degradation::ReplicationNotFollowing, None);
            health::set(Degradation::ReplicationLag, None);
        }
        health::set(Degradation::Fenced, repl.gate.fence().map(|why| format!("fenced: {why}")));
        if tokio::time::timeout(Duration::from_secs(1), stop.changed()).await.is_ok() {
            return;
        }
    }
}
