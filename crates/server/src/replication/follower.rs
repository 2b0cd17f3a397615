//! The replica's side: follow the primary's change stream, take a new
//! snapshot when the primary has pruned what this node has not seen, and
//! forward the login state of this node's own logins to the primary.
//!
//! Refusals are checked on every contact: another master key (the data
//! could not be opened), another schema version (images would not fit), and
//! a primary whose epoch is older than this node's (a stale primary that
//! was replaced by a promotion must not overwrite what the new one wrote).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tessera_core::replication::{AuthStateForward, ReplState, Role};
use tessera_core::store::StoreError;
use tokio::sync::{mpsc, watch};

use super::Replication;
use super::client::{ClientError, PrimaryClient, now_ms};
use crate::node::Node;

/// How long one change request waits on the primary for something new.
const LONG_POLL: Duration = Duration::from_secs(5);
const PAGE: u32 = 1000;
/// Pause after a failed contact, and while this node is not a replica.
const IDLE: Duration = Duration::from_secs(1);
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
}

pub fn client_for(s: &ReplState, token: &str) -> Result<PrimaryClient, ClientError> {
    let url = s.primary_url.as_deref().ok_or_else(|| ClientError::Config("no primary URL configured".into()))?;
    PrimaryClient::new(url, token, s.pin.as_deref(), None)
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(f).await.map_err(|e| StoreError::Unavailable(e.to_string()))?
}

/// Checks the primary is one this node may follow; returns its name and
/// this node's clock offset from it.
pub async fn check_primary(
    node: &Node,
    client: &PrimaryClient,
    mine: &ReplState,
) -> Result<(String, i64, i64), FollowError> {
    let (hello, offset) = client.hello().await?;
    let key_id = node.ctx.keys.key_id();
    if hello.key_id != key_id {
        return Err(FollowError::Refused(format!(
            "the primary {} uses master key {} but this node has {key_id}: every node needs the same key file",
            hello.node, hello.key_id
        )));
    }
    if hello.schema_version != tessera_store::sqlite::SCHEMA_VERSION {
        return Err(FollowError::Refused(format!(
            "the primary {} has database schema {} and this node {}: run the same tessera version on both",
            hello.node,
            hello.schema_version,
            tessera_store::sqlite::SCHEMA_VERSION
        )));
    }
    if hello.role == Role::Replica {
        return Err(FollowError::Refused(format!("{} is a replica, not a primary", hello.node)));
    }
    if hello.epoch < mine.epoch {
        return Err(FollowError::Refused(format!(
            "{} is a stale primary (epoch {} < this node's {}): it was replaced; demote it",
            hello.node, hello.epoch, mine.epoch
        )));
    }
    if offset.abs() > OFFSET_WARN_MS {
        tracing::warn!(primary = %hello.node, offset_ms = offset, "clock offset from the primary above 2 s: TOTP codes may be refused; fix NTP");
    }
    Ok((hello.node, hello.epoch, offset))
}

/// Pulls a full snapshot and installs it (the replicated tables are
/// replaced in one transaction).
pub async fn resnapshot(repl: &Replication, client: &PrimaryClient) -> Result<i64, FollowError> {
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
        (Err(ClientError::Protocol(_)), Err(e)) => return Err(e.into()),
        (Err(e), _) => return Err(e.into()),
        (Ok(()), Err(e)) => return Err(e.into()),
    };
    tracing::info!(position, epoch, rows, "installed a snapshot from the primary");
    Ok(position)
}

/// One round: check the primary, then apply what it has after this
/// node's position (waiting up to the long-poll time for news).
async fn follow_once(
    node: &Node,
    repl: &Replication,
    s: &ReplState,
    client: &PrimaryClient,
) -> Result<(), FollowError> {
    let (name, _epoch, offset) = check_primary(node, client, s).await?;
    crate::metrics::set_replication_offset(offset);
    let page = match client.changes(s.position, PAGE, LONG_POLL).await {
        Err(ClientError::SnapshotRequired) => {
            tracing::warn!("this replica was away past the primary's log retention: taking a new snapshot");
            resnapshot(repl, client).await?;
            return Ok(());
        }
        r => r?,
    };
    if page.epoch < s.epoch {
        return Err(FollowError::Refused(format!("{name} answered with a stale epoch {}", page.epoch)));
    }
    let caught_up = page.images.last().is_none_or(|i| i.seq >= page.head);
    let position = page.images.last().map_or(s.position, |i| i.seq);
    let log = repl.log.clone();
    let now = now_ms();
    let lag = if caught_up { 0 } else { now - s.last_contact_at.unwrap_or(now) };
    crate::metrics::set_replication_lag(Some(Duration::from_millis(lag.max(0) as u64)));
    blocking(move || {
        if !page.images.is_empty() {
            log.apply(&page, position)?;
        }
        log.set_state(|st| {
            st.primary_name = Some(name);
            st.last_contact_at = Some(now);
            st.clock_offset_ms = Some(offset);
            st.lag_ms = Some(lag);
            st.epoch = st.epoch.max(page.epoch);
        })
        .map(|_| ())
    })
    .await?;
    Ok(())
}

/// What a cached client was made for: the primary's URL, pin and token.
type ClientId = (Option<String>, Option<String>, String);

/// The strict replay guard: claims each step at the primary before this
/// replica accepts it; on "already used" merges the primary's token state
/// so the local check refuses the code as a replay.
struct StrictGuard {
    repl: Arc<Replication>,
    timeout: Duration,
    /// The client of the last claim, reused while the primary stays the same.
    client: tokio::sync::Mutex<Option<(ClientId, PrimaryClient)>>,
}

#[async_trait::async_trait]
impl tessera_core::guarded_store::ReplayGuard for StrictGuard {
    async fn claim(&self, user: i64, token: i64, step: i64, drift: i32) -> Option<bool> {
        let log = self.repl.log.clone();
        let (s, t) = blocking(move || Ok((log.state()?, log.join_token()?))).await.ok()?;
        let t = String::from_utf8_lossy(&t?).into_owned();
        let id = (s.primary_url.clone(), s.pin.clone(), t.clone());
        let client = {
            let mut cached = self.client.lock().await;
            if cached.as_ref().is_none_or(|(k, _)| *k != id) {
                *cached = Some((id, client_for(&s, &t).ok()?));
            }
            cached.as_ref()?.1.clone()
        };
        let claim = tessera_core::replication::Claim { user, token, step, drift };
        match tokio::time::timeout(self.timeout, client.claim(&claim, self.timeout)).await {
            Ok(Ok(answer)) if answer.claimed => Some(true),
            Ok(Ok(answer)) => {
                let state = answer.token_state.and_then(|h| hex::decode(h).ok());
                let log = self.repl.log.clone();
                let merged =
                    blocking(move || log.merge_auth_state(user, state.as_deref(), &[], &Default::default())).await;
                if let Err(e) = merged {
                    tracing::error!(error = %e, "strict replay guard: merging the primary's state failed");
                }
                Some(false)
            }
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "strict replay guard: the primary did not answer; deciding locally");
                None
            }
            Err(_) => {
                tracing::warn!(
                    timeout_ms = self.timeout.as_millis() as u64,
                    "strict replay guard: the primary did not answer in time; deciding locally"
                );
                None
            }
        }
    }
}

/// Runs for the life of the server; idles while this node is not a replica.
pub async fn run(node: Arc<Node>, repl: Arc<Replication>, mut stop: watch::Receiver<bool>) {
    let mut last_error: Option<String> = None;
    // Kept across rounds (its connection is reused) while the primary's
    // URL, pin and token stay the same.
    let mut client: Option<(ClientId, PrimaryClient)> = None;
    let mut forwarder: Option<tokio::task::JoinHandle<()>> = None;
    let retention = Duration::from_secs(node.config.replication.log_retention_seconds.max(1));
    // Often enough that nothing outlives the retention by much, at most hourly.
    let prune_every = (retention / 4).clamp(Duration::from_secs(1), Duration::from_secs(3600));
    let mut last_prune: Option<std::time::Instant> = None;
    if node.config.replication.replay_guard == "strict" {
        let timeout = Duration::from_millis(node.config.replication.strict_timeout_ms);
        repl.gate.set_replay_guard(Arc::new(StrictGuard { repl: repl.clone(), timeout, client: Default::default() }));
    }
    if let Some(rx) = repl.take_forward_rx().await {
        let (n, r) = (node.clone(), repl.clone());
        let hook_tx = repl.forward_tx.clone();
        repl.gate.on_login(move |user, accepted| {
            // Full queue: the state still reaches the primary with this
            // user's next forwarded login; never block a login on it.
            let _ = hook_tx.try_send((user, accepted));
        });
        forwarder = Some(tokio::spawn(forward(n, r, rx, stop.clone())));
    }
    while !*stop.borrow() {
        let s = match repl.refresh_gate() {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "reading the replication state");
                pause(&mut stop, IDLE).await;
                continue;
            }
        };
        if s.role != Role::Replica {
            if s.role == Role::Primary && last_prune.is_none_or(|t| t.elapsed() >= prune_every) {
                last_prune = Some(std::time::Instant::now());
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
        let token = match repl.log.join_token() {
            Ok(Some(t)) => String::from_utf8_lossy(&t).into_owned(),
            _ => {
                report(&mut last_error, "this replica has no join token; run `tessera replica join` again".into());
                pause(&mut stop, IDLE).await;
                continue;
            }
        };
        let id = (s.primary_url.clone(), s.pin.clone(), token.clone());
        if client.as_ref().is_none_or(|(k, _)| *k != id) {
            client = match client_for(&s, &token) {
                Ok(c) => Some((id, c)),
                Err(e) => {
                    report(&mut last_error, e.to_string());
                    pause(&mut stop, IDLE).await;
                    continue;
                }
            };
        }
        let Some((_, c)) = &client else { continue };
        let round = tokio::select! {
            r = follow_once(&node, &repl, &s, c) => r,
            _ = stop.changed() => break,
        };
        match round {
            Ok(()) => {
                if last_error.take().is_some() {
                    tracing::info!("following the primary again");
                }
            }
            Err(e) => {
                report(&mut last_error, e.to_string());
                pause(&mut stop, IDLE).await;
            }
        }
    }
    if let Some(f) = forwarder {
        let _ = f.await;
    }
}

fn report(last: &mut Option<String>, e: String) {
    if last.as_deref() != Some(e.as_str()) {
        tracing::error!(error = %e, "replication: cannot follow the primary");
        *last = Some(e);
    }
}

async fn pause(stop: &mut watch::Receiver<bool>, d: Duration) {
    let _ = tokio::time::timeout(d, stop.changed()).await;
}

/// What is waiting to be forwarded for one user.
#[derive(Debug, Clone, Copy, Default)]
struct Pending {
    /// Failures since the last success below.
    failures: u32,
    last_success_at: Option<i64>,
}

impl Pending {
    fn add(&mut self, accepted: bool) {
        if accepted {
            self.failures = 0;
            self.last_success_at = Some(now_ms());
        } else {
            self.failures = self.failures.saturating_add(1);
        }
    }
}

/// Most users remembered for forwarding while the primary is away.
const MAX_PENDING: usize = 10_000;

/// Sends the login state of users who logged in here to the primary,
/// batching what queued meanwhile; keeps what failed for the next round.
async fn forward(
    node: Arc<Node>,
    repl: Arc<Replication>,
    mut rx: mpsc::Receiver<(i64, bool)>,
    mut stop: watch::Receiver<bool>,
) {
    let _ = node;
    let mut pending: BTreeMap<i64, Pending> = BTreeMap::new();
    let note = |pending: &mut BTreeMap<i64, Pending>, (user, accepted): (i64, bool)| {
        if pending.len() < MAX_PENDING || pending.contains_key(&user) {
            pending.entry(user).or_default().add(accepted);
        }
    };
    loop {
        if pending.is_empty() {
            tokio::select! {
                e = rx.recv() => match e { Some(e) => note(&mut pending, e), None => return },
                _ = stop.changed() => return,
            }
        }
        while let Ok(e) = rx.try_recv() {
            note(&mut pending, e);
        }
        let batch: Vec<(i64, Pending)> = pending.iter().map(|(u, p)| (*u, *p)).take(1000).collect();
        let log = repl.log.clone();
        let users = batch.clone();
        let states = blocking(move || {
            let mut out = Vec::new();
            for (u, p) in users {
                if let Some((ts, used)) = log.auth_state(u)? {
                    out.push(AuthStateForward {
                        user: u,
                        token_state: ts.unwrap_or_default(),
                        used_codes: used.into_iter().map(|(d, at)| (hex::encode(d), at)).collect(),
                        failures: p.failures,
                        last_success_at: p.last_success_at,
                    });
                }
            }
            Ok(out)
        })
        .await;
        let sent = match (states, repl.log.state(), repl.log.join_token()) {
            (Ok(states), Ok(s), Ok(Some(t))) if s.role == Role::Replica => {
                match client_for(&s, &String::from_utf8_lossy(&t)) {
                    Ok(c) => c.forward(&states).await.map_err(|e| e.to_string()),
                    Err(e) => Err(e.to_string()),
                }
            }
            (Ok(_), Ok(s), _) if s.role != Role::Replica => Ok(()),
            _ => Err("cannot read the local login state".into()),
        };
        match sent {
            Ok(()) => {
                tracing::debug!(users = batch.len(), "forwarded login state to the primary");
                // Only what was sent; logins that arrived meanwhile stay.
                for (u, sent) in batch {
                    if let Some(p) = pending.get_mut(&u) {
                        p.failures = p.failures.saturating_sub(sent.failures);
                        if p.last_success_at == sent.last_success_at {
                            p.last_success_at = None;
                        }
                        if p.failures == 0 && p.last_success_at.is_none() {
                            pending.remove(&u);
                        }
                    }
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, users = batch.len(), "forwarding login state to the primary failed; retrying");
                pause(&mut stop, IDLE).await;
                if *stop.borrow() {
                    return;
                }
            }
        }
    }
}
