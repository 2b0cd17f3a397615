//! The primary's replication endpoints. Every one needs a join token
//! (`Authorization: Bearer`), checked against the digests the primary keeps
//! (`tessera replica token`). A node answers snapshot and change requests
//! only while it is not itself a replica; the first replica to fetch a
//! snapshot from a standalone node makes it a primary.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Json, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use tessera_core::replication::{AuthStateForward, ChangePage, Claim, ClaimAnswer, Hello, Role, join_token_allowed};
use tessera_core::store::MetaKey;
use tessera_store::sqlite::replication::{ForwardedLogins, merge_token_state};

use super::Replication;
use super::client::now_ms;
use crate::http::AppState;
use crate::http::auth::Caller;
use crate::http::error::ApiError;

const MAX_PAGE: u32 = 5000;
const MAX_WAIT: Duration = Duration::from_secs(10);
const POLL: Duration = Duration::from_millis(50);

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/replication/hello", get(hello))
        .route("/api/v1/replication/snapshot", get(snapshot))
        .route("/api/v1/replication/changes", get(changes))
        .route("/api/v1/replication/auth-state", post(auth_state))
        .route("/api/v1/replication/claim", post(claim))
}

/// The replication of an embedded node that accepts this caller's token.
async fn authorized(state: &AppState, caller: &Caller) -> Result<Arc<Replication>, ApiError> {
    let Some(repl) = state.node.replication.clone() else {
        return Err(ApiError::new(StatusCode::NOT_FOUND, "not_found", "replication needs the embedded database"));
    };
    let Some(token) = &caller.bearer else { return Err(ApiError::unauthorized()) };
    let stored = state.node.ctx.store.meta_value(MetaKey::ReplicationTokens).await?;
    if !stored.is_some_and(|s| join_token_allowed(&s, token)) {
        tracing::warn!(
            address = caller.address.as_deref().unwrap_or("?"),
            "replication request with a wrong join token"
        );
        return Err(ApiError::unauthorized());
    }
    Ok(repl)
}

fn not_primary(primary: &str) -> ApiError {
    ApiError::new(StatusCode::CONFLICT, "not_primary", format!("this node is a replica; follow the primary {primary}"))
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, tessera_core::store::StoreError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f).await.map_err(|_| ApiError::unavailable())?.map_err(ApiError::from)
}

async fn hello(State(state): State<AppState>, caller: Caller) -> Result<Json<Hello>, ApiError> {
    let repl = authorized(&state, &caller).await?;
    let log = repl.log.clone();
    let (s, head) = blocking(move || Ok((log.state()?, log.head()?))).await?;
    Ok(Json(Hello {
        node: state.node.ctx.node.clone(),
        role: s.role,
        epoch: s.epoch,
        head,
        schema_version: tessera_store::sqlite::SCHEMA_VERSION,
        key_id: state.node.ctx.keys.key_id(),
        time_ms: now_ms(),
    }))
}

/// Bytes of NDJSON per chunk sent while the snapshot is read.
const SNAPSHOT_CHUNK: usize = 256 * 1024;

async fn snapshot(State(state): State<AppState>, caller: Caller) -> Result<Response, ApiError> {
    let repl = authorized(&state, &caller).await?;
    let log = repl.log.clone();
    let s = blocking(move || {
        let s = log.state()?;
        if s.role == Role::Standalone {
            let s = log.set_state(|s| {
                s.role = Role::Primary;
                s.epoch = s.epoch.max(1);
            })?;
            tracing::info!(epoch = s.epoch, "a replica joined: this node is now a primary");
            return Ok(s);
        }
        Ok(s)
    })
    .await?;
    if s.role == Role::Replica {
        return Err(not_primary(&super::primary_label(&s)));
    }
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

async fn changes(
    State(state): State<AppState>,
    caller: Caller,
    Query(q): Query<ChangesQuery>,
) -> Result<Json<ChangePage>, ApiError> {
    let repl = authorized(&state, &caller).await?;
    let limit = q.limit.unwrap_or(1000).clamp(1, MAX_PAGE);
    let wait = Duration::from_millis(q.wait_ms.unwrap_or(0)).min(MAX_WAIT);
    let started = Instant::now();
    loop {
        let log = repl.log.clone();
        let (s, page) = blocking(move || Ok((log.state()?, log.changes_after(q.after, limit)?))).await?;
        if s.role == Role::Replica {
            return Err(not_primary(&super::primary_label(&s)));
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

async fn auth_state(
    State(state): State<AppState>,
    caller: Caller,
    crate::http::error::ApiJson(forwards): crate::http::error::ApiJson<Vec<AuthStateForward>>,
) -> Result<StatusCode, ApiError> {
    let repl = authorized(&state, &caller).await?;
    if forwards.len() > 1000 {
        return Err(ApiError::invalid("at most 1000 users per request"));
    }
    // Checked whole before anything is merged: a bad entry refuses the
    // request and changes nothing.
    let mut parsed = Vec::with_capacity(forwards.len());
    for f in &forwards {
        if !f.token_state.is_empty() && merge_token_state(Some(&f.token_state), None).is_err() {
            return Err(ApiError::invalid("token_state: not a token state"));
        }
        let used = f
            .used_codes
            .iter()
            .map(|(d, at)| match hex::decode(d) {
                Ok(d) if d.len() == 32 => Ok((d, *at)),
                _ => Err(ApiError::invalid("used_codes: each digest is 64 hex digits")),
            })
            .collect::<Result<Vec<_>, _>>()?;
        parsed.push(used);
    }
    let log = repl.log.clone();
    blocking(move || {
        for (f, used) in forwards.iter().zip(parsed) {
            let ts = (!f.token_state.is_empty()).then_some(f.token_state.as_slice());
            let logins = ForwardedLogins { failures: f.failures, last_success_at: f.last_success_at, now: now_ms() };
            log.merge_auth_state(f.user, ts, &used, &logins)?;
        }
        Ok(())
    })
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn claim(
    State(state): State<AppState>,
    caller: Caller,
    crate::http::error::ApiJson(c): crate::http::error::ApiJson<Claim>,
) -> Result<Json<ClaimAnswer>, ApiError> {
    let repl = authorized(&state, &caller).await?;
    let log = repl.log.clone();
    let (claimed, token_state) = blocking(move || {
        if log.state()?.role == Role::Replica {
            return Ok((false, None));
        }
        log.claim(c.user, c.token, c.step, c.drift, now_ms())
    })
    .await?;
    Ok(Json(ClaimAnswer { claimed, token_state: token_state.map(hex::encode) }))
}
