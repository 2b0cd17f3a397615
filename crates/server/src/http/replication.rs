//! The replication endpoints (`/api/v1/replication/…`).
//!
//! Two doors, as strong as the admin door:
//! - `join/challenge` and `join` take a single-use, expiring join token
//!   *and* a proof that the caller holds the master key; they enrol the
//!   caller's client certificate and send no data.
//! - Everything else answers only an enrolled node, recognised by the
//!   client certificate it presented in the TLS handshake (mutual TLS; see
//!   `serve.rs`), looked up in the enrolled list on every request, so a
//!   removed node is refused at once. Snapshot pulls, forwarded logins and
//!   refused claims are audited with the node's name.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{FromRequestParts, Query, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Json, Response};
use axum::routing::{get, post};
use parking_lot::Mutex;
use serde::Deserialize;
use tessera_core::audit::{Actor, AuditRecord, AuditResult};
use tessera_core::replication::join::{
    self, JoinAnswer, JoinChallenge, JoinChallengeRequest, JoinRequest, MAX_FAILED_PROOFS, NONCE_LEN,
};
use tessera_core::replication::{
    ChangePage, ClaimRequest, ClaimResult, ClusterNode, ForwardAnswer, Hello, LoginEvent, MIN_PROTOCOL, NodeReport,
    PROTOCOL, Role,
};
use tessera_store::sqlite::cluster::TokenCheck;

use super::AppState;
use super::auth::Caller;
use super::error::{ApiError, ApiJson};
use crate::replication::{Replication, now_ms};

const MAX_PAGE: u32 = 5000;
const MAX_WAIT: Duration = Duration::from_secs(10);
const POLL: Duration = Duration::from_millis(50);
/// Most items per claim or forward request.
const MAX_BATCH: usize = 1000;
/// How long a join challenge's nonce is good for.
const CHALLENGE_TTL: Duration = Duration::from_secs(60);
/// Most join challenges outstanding at once (each needs a valid token).
const MAX_CHALLENGES: usize = 256;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/replication/join/challenge", post(join_challenge))
        .route("/api/v1/replication/join", post(join))
        .route("/api/v1/replication/hello", get(hello))
        .route("/api/v1/replication/checkin", post(checkin))
        .route("/api/v1/replication/snapshot", get(snapshot))
        .route("/api/v1/replication/changes", get(changes))
        .route("/api/v1/replication/claims", post(claims))
        .route("/api/v1/replication/logins", post(logins))
}

/// The TLS client certificate of the connection (its SHA-256), inserted per
/// connection by the accept loop.
#[derive(Debug, Clone, Copy)]
pub struct PeerCert(pub Option<[u8; 32]>);

fn replication(state: &AppState) -> Result<Arc<Replication>, ApiError> {
    state
        .node
        .replication
        .clone()
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "not_found", "replication needs the embedded database"))
}

/// An enrolled node calling, recognised by its client certificate.
#[derive(Debug, Clone)]
pub struct NodeCaller {
    pub node: ClusterNode,
    pub address: Option<String>,
    pub repl: Arc<Replication>,
}

impl NodeCaller {
    fn actor(&self) -> Actor {
        Actor::new(format!("node:{}", self.node.name)).with_address(self.address.clone())
    }

    fn audit(&self, state: &AppState, action: &str) -> AuditRecord {
        AuditRecord::new(state.node.ctx.clock.now(), &state.node.ctx.node, &self.actor(), action)
    }
}

fn node_credentials_needed() -> ApiError {
    ApiError::new(
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        "replication needs an enrolled node's client certificate (join with `tessera replica join`)",
    )
}

impl FromRequestParts<AppState> for NodeCaller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let repl = replication(state)?;
        let Ok(caller) = Caller::from_request_parts(parts, state).await;
        let Some(PeerCert(Some(cert))) = parts.extensions.get::<PeerCert>().copied() else {
            tracing::warn!(
                peer = caller.address.as_deref().unwrap_or("?"),
                "replication request without a node certificate"
            );
            return Err(node_credentials_needed());
        };
        // A request made in a protocol this build does not speak is refused
        // before it is read (a peer two releases away).
        if let Some(v) = parts.headers.get(crate::replication::client::PROTOCOL_HEADER) {
            let v: Option<u32> = v.to_str().ok().and_then(|v| v.parse().ok());
            if !v.is_some_and(|v| tessera_core::replication::protocols().contains(v)) {
                return Err(ApiError::new(
                    StatusCode::CONFLICT,
                    "protocol_unsupported",
                    format!(
                        "this node speaks replication protocols {MIN_PROTOCOL}..={PROTOCOL}: upgrade one release at a time"
                    ),
                ));
            }
        }
        match repl.directory.node(&cert) {
            Some(node) => Ok(NodeCaller { node, address: caller.address, repl }),
            None => {
                tracing::warn!(
                    peer = caller.address.as_deref().unwrap_or("?"),
                    cert = %hex::encode(cert),
                    "replication request from a certificate that is not enrolled (never joined, or removed)"
                );
                Err(ApiError::new(
                    StatusCode::FORBIDDEN,
                    "forbidden",
                    "this node certificate is not enrolled in the cluster (removed, or never joined)",
                ))
            }
        }
    }
}

fn not_primary(message: String) -> ApiError {
    ApiError::new(StatusCode::CONFLICT, "not_primary", message)
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, tessera_core::store::StoreError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f).await.map_err(|_| ApiError::unavailable())?.map_err(ApiError::from)
}

/// This node's hello (what it is, which key, which epoch).
pub async fn own_hello(state: &AppState, repl: &Replication) -> Result<Hello, ApiError> {
    let log = repl.log.clone();
    let (s, head) = blocking(move || Ok((log.state()?, log.head()?))).await?;
    Ok(Hello {
        node: state.node.ctx.node.clone(),
        role: s.role,
        epoch: s.epoch,
        head,
        schema_version: tessera_store::sqlite::SCHEMA_VERSION,
        key_id: state.node.ctx.keys.key_id(),
        previous_key_ids: state.node.ctx.keys.previous_key_ids(),
        time_ms: now_ms(),
        primary_url: s.primary_url.clone().filter(|_| s.role == Role::Replica),
        primary_name: s.primary_name.clone().filter(|_| s.role == Role::Replica),
        fenced: s.fence.clone(),
        protocol: PROTOCOL,
        min_protocol: MIN_PROTOCOL,
        schema_compatible_from: tessera_store::sqlite::schema::build_window().compatible_from,
        version: crate::replication::build_version(),
    })
}

// --- joining

/// Outstanding join challenges: server nonce → (token id, node, expiry).
#[derive(Debug, Default)]
pub struct Challenges(Mutex<HashMap<[u8; NONCE_LEN], (i64, String, Instant)>>);

impl Challenges {
    fn insert(&self, nonce: [u8; NONCE_LEN], token: i64, node: String) -> Result<(), ApiError> {
        let mut map = self.0.lock();
        map.retain(|_, (_, _, at)| at.elapsed() < CHALLENGE_TTL);
        if map.len() >= MAX_CHALLENGES {
            return Err(ApiError::new(StatusCode::TOO_MANY_REQUESTS, "busy", "too many joins at once; retry shortly"));
        }
        map.insert(nonce, (token, node, Instant::now()));
        Ok(())
    }

    /// Takes a nonce (once), if it was issued for this token and node.
    fn take(&self, nonce: &[u8], token: i64, node: &str) -> bool {
        let Ok(nonce) = <[u8; NONCE_LEN]>::try_from(nonce) else { return false };
        let mut map = self.0.lock();
        match map.remove(&nonce) {
            Some((t, n, at)) => t == token && n == node && at.elapsed() < CHALLENGE_TTL,
            None => false,
        }
    }
}

/// The join token from `Authorization: Bearer`, checked (not consumed).
async fn valid_join_token(state: &AppState, repl: &Replication, caller: &Caller) -> Result<i64, ApiError> {
    let refused = |why: &str| {
        tracing::warn!(peer = caller.address.as_deref().unwrap_or("?"), "join refused: {why}");
        ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", format!("the join token was refused: {why}"))
    };
    let Some(token) = caller.bearer.as_deref() else { return Err(refused("none was sent")) };
    let digest = join::token_digest(token);
    let check = repl.cluster.check_join_token(&digest, now_ms())?;
    let why = match check {
        TokenCheck::Valid(id) => return Ok(id),
        TokenCheck::Unknown => return Err(refused("unknown token")),
        TokenCheck::Expired => "it has expired",
        TokenCheck::Used => "it was used already (join tokens work once)",
        TokenCheck::Revoked => "it was revoked",
    };
    // A known token presented again is worth an audit record: someone may
    // be replaying it.
    let actor = Actor::new("join-token").with_address(caller.address.clone());
    let audit = AuditRecord::new(state.node.ctx.clock.now(), &state.node.ctx.node, &actor, "replica.join")
        .result(AuditResult::Reject, Some(why));
    state.node.ctx.store.append_audit(audit).await?;
    Err(refused(why))
}

async fn join_challenge(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(req): ApiJson<JoinChallengeRequest>,
) -> Result<Json<JoinChallenge>, ApiError> {
    let repl = replication(&state)?;
    let s = repl.state()?;
    if s.role == Role::Replica {
        return Err(not_primary(format!(
            "this node is a replica; join the primary {}",
            crate::replication::primary_label(&s)
        )));
    }
    let token = valid_join_token(&state, &repl, &caller).await?;
    join::check_node_name(&req.node).map_err(ApiError::invalid)?;
    if req.nonce.len() != NONCE_LEN {
        return Err(ApiError::invalid(format!("nonce: {NONCE_LEN} bytes")));
    }
    let mut nonce = [0u8; NONCE_LEN];
    state.node.ctx.random.fill(&mut nonce);
    state.challenges.insert(nonce, token, req.node.clone())?;
    let me = state.node.ctx.node.clone();
    let proof = join::primary_proof(&state.node.ctx.keys, &*state.node.ctx.random, &req.nonce, &me);
    Ok(Json(JoinChallenge { nonce: nonce.to_vec(), hello: own_hello(&state, &repl).await?, proof }))
}

async fn join(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(req): ApiJson<JoinRequest>,
) -> Result<Json<JoinAnswer>, ApiError> {
    let repl = replication(&state)?;
    let token = valid_join_token(&state, &repl, &caller).await?;
    join::check_node_name(&req.node).map_err(ApiError::invalid)?;
    if !state.challenges.take(&req.nonce, token, &req.node) {
        return Err(ApiError::invalid("unknown or expired join challenge; start the join again"));
    }
    if req.cert.is_empty() || req.cert.len() > 16 * 1024 {
        return Err(ApiError::invalid("cert: a DER certificate of at most 16 KiB"));
    }
    if let Some(url) = &req.url
        && (!url.starts_with("https://") || url.len() > 512)
    {
        return Err(ApiError::invalid("url: an https:// URL"));
    }
    if let Some(pin) = &req.https_pin {
        tessera_tls::parse_pin(pin).map_err(|e| ApiError::invalid(format!("https_pin: {e}")))?;
    }
    let cert_sha256 = tessera_tls::cert_sha256(&req.cert);
    let now = state.node.ctx.clock.now();
    let actor = Actor::new(format!("node:{}", req.node)).with_address(caller.address.clone());
    let audit = AuditRecord::new(now, &state.node.ctx.node, &actor, "replica.join").target(&req.node);
    if !join::check_joiner_proof(&state.node.ctx.keys, &req.nonce, &req.node, &cert_sha256, &req.proof) {
        let revoked = repl
            .cluster
            .failed_proof(
                token,
                now_ms(),
                MAX_FAILED_PROOFS,
                audit.clone().result(AuditResult::Reject, Some("no proof of the master key")),
            )
            .await?;
        tracing::warn!(
            node = %req.node,
            peer = caller.address.as_deref().unwrap_or("?"),
            token_revoked = revoked,
            "join refused: the node did not prove it holds the master key"
        );
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "the joining node did not prove it holds this cluster's master key (every node needs the same key file)",
        ));
    }
    if req.node == state.node.ctx.node {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "conflict",
            format!("`{}` is this primary's own name; give the joining node another [server] node_name", req.node),
        ));
    }
    let node = ClusterNode {
        name: req.node.clone(),
        cert_sha256: hex::encode(cert_sha256),
        url: req.url.clone(),
        https_pin: req.https_pin.clone(),
        enrolled_at: now.0,
        enrolled_by: format!("join token from {}", caller.address.as_deref().unwrap_or("?")),
    };
    let ok = audit.result(AuditResult::Ok, Some("enrolled with a join token and a proof of the master key"));
    repl.cluster.enrol(node, cert_sha256, token, now.0, ok).await?;
    // The first node to join makes a standalone node a primary.
    let log = repl.log.clone();
    let s = blocking(move || {
        log.set_state(|s| {
            if s.role == Role::Standalone {
                s.role = Role::Primary;
                s.epoch = s.epoch.max(1);
            }
        })
    })
    .await?;
    repl.refresh_gate()?;
    repl.directory.refresh(&repl.cluster)?;
    tracing::info!(node = %req.node, peer = caller.address.as_deref().unwrap_or("?"), "a node joined the cluster");
    Ok(Json(JoinAnswer { primary: state.node.ctx.node.clone(), epoch: s.epoch }))
}

// --- enrolled nodes only

async fn hello(State(state): State<AppState>, caller: NodeCaller) -> Result<Json<Hello>, ApiError> {
    Ok(Json(own_hello(&state, &caller.repl).await?))
}

async fn checkin(
    State(state): State<AppState>,
    caller: NodeCaller,
    ApiJson(report): ApiJson<NodeReport>,
) -> Result<Json<Hello>, ApiError> {
    let repl = caller.repl.clone();
    let hello = own_hello(&state, &repl).await?;
    if report.epoch > hello.epoch {
        // A node knows a newer epoch than this one: this node may have
        // been replaced. Fencing checks at once.
        repl.fence_wake.notify_one();
    }
    state.peer_reports.record(&state, &caller, &report).await;
    Ok(Json(hello))
}

/// Bytes of NDJSON per chunk sent while the snapshot is read.
const SNAPSHOT_CHUNK: usize = 256 * 1024;

async fn snapshot(State(state): State<AppState>, caller: NodeCaller) -> Result<Response, ApiError> {
    let repl = caller.repl.clone();
    let s = repl.state()?;
    if s.role != Role::Primary {
        return Err(not_primary(format!("this node is not a primary (role {})", s.role.as_str())));
    }
    let audit = caller.audit(&state, "replication.snapshot").target(&caller.node.name).result(AuditResult::Ok, None);
    state.node.ctx.store.append_audit(audit).await?;
    tracing::info!(node = %caller.node.name, "a node is copying a snapshot");
    // Streamed: one image per line as the read transaction walks the
    // tables, then a trailer with the position and the row count (a body
    // cut short has no trailer and is refused by the replica).
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<bytes::Bytes, std::io::Error>>(8);
    let log = repl.log.clone();
    let epoch = s.epoch;
    tokio::task::spawn_blocking(move || {
        let gone = || tessera_core::store::StoreError::Unavailable("the replica went away".into());
        let mut buf = Vec::with_capacity(SNAPSHOT_CHUNK + 4096);
        let mut rows = 0u64;
        let result = log.snapshot(|image| {
            rows += 1;
            serde_json::to_writer(&mut buf, &image)
                .map_err(|e| tessera_core::store::StoreError::Backend(e.to_string()))?;
            buf.push(b'\n');
            if buf.len() >= SNAPSHOT_CHUNK {
                tx.blocking_send(Ok(bytes::Bytes::from(std::mem::take(&mut buf)))).map_err(|_| gone())?;
            }
            Ok(())
        });
        match result {
            Ok(position) => {
                let trailer = serde_json::json!({"end": true, "position": position, "epoch": epoch, "rows": rows});
                buf.extend_from_slice(trailer.to_string().as_bytes());
                buf.push(b'\n');
                let _ = tx.blocking_send(Ok(bytes::Bytes::from(buf)));
            }
            Err(e) => {
                tracing::error!(error = %e, "replication snapshot failed");
                let _ = tx.blocking_send(Err(std::io::Error::other("snapshot failed")));
            }
        }
    });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|item| (item, rx)) });
    Ok(([(axum::http::header::CONTENT_TYPE, "application/x-ndjson")], axum::body::Body::from_stream(stream))
        .into_response())
}

#[derive(Debug, Deserialize)]
struct ChangesQuery {
    after: i64,
    limit: Option<u32>,
    wait_ms: Option<u64>,
}

async fn changes(caller: NodeCaller, Query(q): Query<ChangesQuery>) -> Result<Json<ChangePage>, ApiError> {
    let repl = caller.repl;
    let limit = q.limit.unwrap_or(1000).clamp(1, MAX_PAGE);
    let wait = Duration::from_millis(q.wait_ms.unwrap_or(0)).min(MAX_WAIT);
    let started = Instant::now();
    loop {
        let log = repl.log.clone();
        let (s, page) = blocking(move || Ok((log.state()?, log.changes_after(q.after, limit)?))).await?;
        if s.role != Role::Primary {
            return Err(not_primary(format!("this node is not a primary (role {})", s.role.as_str())));
        }
        let Some((head, images)) = page else {
            return Err(ApiError::new(
                StatusCode::GONE,
                "snapshot_required",
                "changes after this position were pruned; take a new snapshot",
            ));
        };
        if !images.is_empty() || started.elapsed() >= wait {
            return Ok(Json(ChangePage { epoch: s.epoch, head, images, time_ms: now_ms() }));
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Claims and forwarded logins are taken only by a primary that is not
/// fenced: one that may have been replaced must not decide for the cluster.
fn deciding_primary(repl: &Replication, caller_epoch: Option<i64>) -> Result<(), ApiError> {
    let s = repl.state()?;
    if s.role != Role::Primary {
        return Err(not_primary(format!("this node is not a primary (role {})", s.role.as_str())));
    }
    if let Some(why) = s.fence {
        return Err(ApiError::new(StatusCode::CONFLICT, "fenced", format!("this primary is fenced: {why}")));
    }
    if caller_epoch.is_some_and(|e| e > s.epoch) {
        repl.fence_wake.notify_one();
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "stale_primary",
            format!("the caller knows epoch {} but this primary has {}", caller_epoch.unwrap_or_default(), s.epoch),
        ));
    }
    Ok(())
}

async fn claims(
    State(state): State<AppState>,
    caller: NodeCaller,
    ApiJson(req): ApiJson<ClaimRequest>,
) -> Result<Json<Vec<ClaimResult>>, ApiError> {
    deciding_primary(&caller.repl, Some(req.epoch))?;
    if req.items.len() > MAX_BATCH {
        return Err(ApiError::invalid(format!("at most {MAX_BATCH} items per request")));
    }
    let base = caller.audit(&state, "replication.claim");
    let results = caller.repl.cluster.claim(req.items, now_ms(), base).await?;
    Ok(Json(results))
}

async fn logins(
    State(state): State<AppState>,
    caller: NodeCaller,
    ApiJson(events): ApiJson<Vec<LoginEvent>>,
) -> Result<Json<ForwardAnswer>, ApiError> {
    deciding_primary(&caller.repl, None)?;
    if events.len() > MAX_BATCH {
        return Err(ApiError::invalid(format!("at most {MAX_BATCH} logins per request")));
    }
    if events.windows(2).any(|w| w[1].id <= w[0].id) {
        return Err(ApiError::invalid("logins must be in increasing id order"));
    }
    let base = caller.audit(&state, "replication.forward").target(&caller.node.name);
    let answer = caller.repl.cluster.apply_forwarded(&caller.node.name, events, now_ms(), base).await?;
    if answer.refused > 0 {
        tracing::warn!(node = %caller.node.name, refused = answer.refused, "forwarded logins refused (see the audit log)");
    }
    Ok(Json(answer))
}

/// Node reports, written to the database at most every few seconds per
/// node (they arrive with every follow round).
#[derive(Debug, Default)]
pub struct PeerReports(Mutex<HashMap<String, LastReport>>);

/// When a node's report was last written, what it said, and from where.
type LastReport = (Instant, NodeReport, Option<String>);

/// How often a peer's report is written even if nothing changed.
const REPORT_EVERY: Duration = Duration::from_secs(5);

impl PeerReports {
    async fn record(&self, state: &AppState, caller: &NodeCaller, report: &NodeReport) {
        let due = {
            let map = self.0.lock();
            match map.get(&caller.node.name) {
                Some((at, last, addr)) => at.elapsed() >= REPORT_EVERY || last != report || *addr != caller.address,
                None => true,
            }
        };
        if !due {
            return;
        }
        self.0.lock().insert(caller.node.name.clone(), (Instant::now(), report.clone(), caller.address.clone()));
        let cluster = &caller.repl.cluster;
        if let Err(e) = cluster.record_peer(&caller.node.name, report, caller.address.clone(), now_ms()).await {
            tracing::warn!(error = %e, node = %caller.node.name, "cannot record a node's report");
        }
        // A replica's key, where `tessera key rotate` on this primary looks
        // for every live node's (a replica's own report stays on the replica).
        let key = tessera_core::rotation::NodeKeyReport {
            key_id: report.key_id.clone(),
            previous: report.previous_key_ids.clone(),
            at: state.node.ctx.clock.now(),
            version: Some(report.version.clone()),
        };
        let bytes = serde_json::to_vec(&key).unwrap_or_default();
        let meta = tessera_core::store::MetaKey::NodeKey(&caller.node.name);
        if let Err(e) = state.node.ctx.store.set_meta_value(meta, Some(bytes), None).await {
            tracing::warn!(error = %e, node = %caller.node.name, "cannot record a node's master key");
        }
        if (report.url.is_some() && report.url != caller.node.url)
            || (report.https_pin.is_some() && report.https_pin != caller.node.https_pin)
        {
            if let Err(e) =
                cluster.update_address(&caller.node.name, report.url.clone(), report.https_pin.clone()).await
            {
                tracing::warn!(error = %e, node = %caller.node.name, "cannot record a node's address");
            }
            let _ = caller.repl.directory.refresh(cluster);
        }
    }
}
