//! The cluster side of an embedded node (issue 13): its own identity, the
//! enrolled nodes, join tokens, what it last heard from its peers, a
//! replica's login journal, and, on the primary, taking claims and
//! forwarded logins.
//!
//! Claims and forwarded logins run in the group-commit writer, in the same
//! serialised order as this node's own logins: a code claimed by a replica
//! and the same code submitted here are decided one after the other against
//! the latest state, so exactly one wins. Each rule (replay floor, lockout)
//! is core's; this file only reads and writes rows.

use std::sync::Arc;

use rusqlite::{Connection, OptionalExtension, params};
use tessera_core::audit::{AuditRecord, AuditResult};
use tessera_core::clock::Timestamp;
use tessera_core::lockout::LockState;
use tessera_core::policy::Policy;
use tessera_core::replication::window::check_step;
use tessera_core::replication::{
    ClaimItem, ClaimResult, ClusterNode, ForwardAnswer, ForwardedFactor, JoinTokenInfo, LoginEvent, NodeReport,
    PeerStatus,
};
use tessera_core::store::{AuthOutcome, Factor, StoreError, Verdict};
use tessera_otp::{OtpKind, Period};

use super::token_state::{Entry, TokenStates};
use super::{SqliteStore, insert_audit, map_err};

/// This node's identity as stored: its certificate and sealed private key.
#[derive(Clone, PartialEq, Eq)]
pub struct StoredIdentity {
    pub name: String,
    pub cert: Vec<u8>,
    pub key_sealed: Vec<u8>,
    pub created_at: i64,
}

impl std::fmt::Debug for StoredIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredIdentity").field("name", &self.name).finish_non_exhaustive()
    }
}

/// What a presented join token is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenCheck {
    Valid(i64),
    Unknown,
    Expired,
    Used,
    Revoked,
}

/// A claim or forwarded login that was refused, for the caller's log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub user: Option<i64>,
    pub reason: &'static str,
}

#[derive(Debug, Clone)]
pub struct Cluster {
    store: Arc<SqliteStore>,
}

fn node_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ClusterNode> {
    Ok(ClusterNode {
        name: r.get(0)?,
        cert_sha256: hex::encode(r.get::<_, Vec<u8>>(1)?),
        url: r.get(2)?,
        https_pin: r.get(3)?,
        enrolled_at: r.get(4)?,
        enrolled_by: r.get(5)?,
    })
}

const NODE_COLS: &str = "name, cert_sha256, url, https_pin, enrolled_at, enrolled_by";

impl Cluster {
    pub fn new(store: Arc<SqliteStore>) -> Self {
        Cluster { store }
    }

    // --- this node's identity

    pub fn identity(&self) -> Result<Option<StoredIdentity>, StoreError> {
        self.store.read(|c| {
            c.query_row("SELECT name, cert, key_sealed, created_at FROM repl_identity WHERE id = 1", [], |r| {
                Ok(StoredIdentity { name: r.get(0)?, cert: r.get(1)?, key_sealed: r.get(2)?, created_at: r.get(3)? })
            })
            .optional()
        })
    }

    /// Stores this node's identity unless it has one already (then the
    /// stored one is returned: two processes racing keep one identity).
    pub async fn ensure_identity(&self, id: StoredIdentity) -> Result<StoredIdentity, StoreError> {
        self.store
            .write(move |c| {
                c.execute(
                    "INSERT OR IGNORE INTO repl_identity (id, name, cert, key_sealed, created_at) VALUES (1, ?1, ?2, ?3, ?4)",
                    params![id.name, id.cert, id.key_sealed, id.created_at],
                )
                .map_err(map_err)?;
                c.query_row("SELECT name, cert, key_sealed, created_at FROM repl_identity WHERE id = 1", [], |r| {
                    Ok(StoredIdentity {
                        name: r.get(0)?,
                        cert: r.get(1)?,
                        key_sealed: r.get(2)?,
                        created_at: r.get(3)?,
                    })
                })
                .map_err(map_err)
            })
            .await
    }

    // --- enrolled nodes

    pub fn nodes(&self) -> Result<Vec<ClusterNode>, StoreError> {
        self.store.read(|c| {
            c.prepare_cached(&format!("SELECT {NODE_COLS} FROM repl_nodes ORDER BY name"))?
                .query_map([], node_row)?
                .collect()
        })
    }

    /// Enrols a node with a join token, atomically: the token is consumed
    /// only if it is still valid, and a name or certificate already
    /// enrolled is a conflict (nothing changes then).
    pub async fn enrol(
        &self,
        node: ClusterNode,
        cert_sha256: [u8; 32],
        token: i64,
        now_ms: i64,
        audit: AuditRecord,
    ) -> Result<(), StoreError> {
        self.store
            .write(move |c| {
                let taken = c
                    .execute(
                        "UPDATE repl_join_tokens SET used_at = ?1, used_by = ?2 \
                         WHERE id = ?3 AND used_at IS NULL AND revoked_at IS NULL AND expires_at > ?1",
                        params![now_ms, node.name, token],
                    )
                    .map_err(map_err)?;
                if taken != 1 {
                    return Err(StoreError::Conflict("join token (used, revoked or expired meanwhile)".into()));
                }
                let exists: Option<(String, Vec<u8>)> = c
                    .query_row(
                        "SELECT name, cert_sha256 FROM repl_nodes WHERE name = ?1 OR cert_sha256 = ?2",
                        params![node.name, &cert_sha256[..]],
                        |r| Ok((r.get(0)?, r.get(1)?)),
                    )
                    .optional()
                    .map_err(map_err)?;
                match exists {
                    // The same node joining again (a join whose snapshot
                    // failed, say): its enrolment stands, with a fresh address.
                    Some((name, cert)) if name == node.name && cert == cert_sha256 => {
                        c.execute(
                            "UPDATE repl_nodes SET url = COALESCE(?1, url), https_pin = COALESCE(?2, https_pin) \
                             WHERE name = ?3",
                            params![node.url, node.https_pin, node.name],
                        )
                        .map_err(map_err)?;
                        return insert_audit(c, &audit);
                    }
                    Some((name, _)) => {
                        return Err(StoreError::Conflict(format!(
                            "node `{name}` (remove it first with `tessera replica remove {name}`, or give this node \
                             another [server] node_name)"
                        )));
                    }
                    None => {}
                }
                c.execute(
                    &format!("INSERT INTO repl_nodes ({NODE_COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6)"),
                    params![node.name, &cert_sha256[..], node.url, node.https_pin, node.enrolled_at, node.enrolled_by],
                )
                .map_err(map_err)?;
                insert_audit(c, &audit)
            })
            .await
    }

    /// Records this node itself in the enrolled list (so peers can reach
    /// and authenticate it), or updates its address.
    pub async fn enrol_self(&self, node: ClusterNode, cert_sha256: [u8; 32]) -> Result<(), StoreError> {
        self.store
            .write(move |c| {
                let current: Option<(Vec<u8>, Option<String>, Option<String>)> = c
                    .query_row(
                        "SELECT cert_sha256, url, https_pin FROM repl_nodes WHERE name = ?1",
                        [&node.name],
                        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                    )
                    .optional()
                    .map_err(map_err)?;
                match current {
                    Some((cert, url, pin)) if cert == cert_sha256 => {
                        // Unknown values (a CLI process does not know the
                        // server's bound address) keep what is recorded.
                        let url = node.url.or(url.clone()).filter(|u| Some(u) != url.as_ref());
                        let pin = node.https_pin.or(pin.clone()).filter(|p| Some(p) != pin.as_ref());
                        if url.is_some() || pin.is_some() {
                            c.execute(
                                "UPDATE repl_nodes SET url = COALESCE(?1, url), https_pin = COALESCE(?2, https_pin) \
                                 WHERE name = ?3",
                                params![url, pin, node.name],
                            )
                            .map_err(map_err)?;
                        }
                        Ok(())
                    }
                    Some(_) => Err(StoreError::Conflict(format!(
                        "another node is enrolled as `{}`; give this node another [server] node_name",
                        node.name
                    ))),
                    None => c
                        .execute(
                            &format!("INSERT INTO repl_nodes ({NODE_COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6)"),
                            params![
                                node.name,
                                &cert_sha256[..],
                                node.url,
                                node.https_pin,
                                node.enrolled_at,
                                node.enrolled_by
                            ],
                        )
                        .map(|_| ())
                        .map_err(map_err),
                }
            })
            .await
    }

    /// Updates where an enrolled peer says it is (only when it changed).
    pub async fn update_address(&self, name: &str, url: Option<String>, pin: Option<String>) -> Result<(), StoreError> {
        let name = name.to_string();
        self.store
            .write(move |c| {
                c.execute(
                    "UPDATE repl_nodes SET url = COALESCE(?1, url), https_pin = COALESCE(?2, https_pin) \
                     WHERE name = ?3 AND (url IS NOT ?1 OR https_pin IS NOT ?2)",
                    params![url, pin, name],
                )
                .map(|_| ())
                .map_err(map_err)
            })
            .await
    }

    /// Revokes a node at once; `false` if no such node.
    pub async fn remove_node(&self, name: &str, audit: AuditRecord) -> Result<bool, StoreError> {
        let name = name.to_string();
        self.store
            .write(move |c| {
                let n = c.execute("DELETE FROM repl_nodes WHERE name = ?1", [&name]).map_err(map_err)?;
                c.execute("DELETE FROM repl_peers WHERE name = ?1", [&name]).map_err(map_err)?;
                if n == 0 {
                    return Ok(false);
                }
                insert_audit(c, &audit)?;
                Ok(true)
            })
            .await
    }

    // --- join tokens

    pub async fn mint_join_token(
        &self,
        digest: [u8; 32],
        id: i64,
        created_at: i64,
        expires_at: i64,
        created_by: &str,
        audit: AuditRecord,
    ) -> Result<(), StoreError> {
        let by = created_by.to_string();
        self.store
            .write(move |c| {
                c.execute(
                    "INSERT INTO repl_join_tokens (id, digest, created_at, expires_at, created_by) \
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![id, &digest[..], created_at, expires_at, by],
                )
                .map_err(map_err)?;
                insert_audit(c, &audit)
            })
            .await
    }

    pub fn join_tokens(&self) -> Result<Vec<JoinTokenInfo>, StoreError> {
        self.store.read(|c| {
            c.prepare_cached(
                "SELECT id, created_at, expires_at, created_by, used_at, used_by, revoked_at, failed_proofs \
                 FROM repl_join_tokens ORDER BY created_at",
            )?
            .query_map([], |r| {
                Ok(JoinTokenInfo {
                    id: r.get(0)?,
                    created_at: r.get(1)?,
                    expires_at: r.get(2)?,
                    created_by: r.get(3)?,
                    used_at: r.get(4)?,
                    used_by: r.get(5)?,
                    revoked_at: r.get(6)?,
                    failed_proofs: r.get(7)?,
                })
            })?
            .collect()
        })
    }

    /// Looks a presented token up by its digest (the digest is the primary
    /// key of an index: no timing difference worth having between tokens).
    pub fn check_join_token(&self, digest: &[u8; 32], now_ms: i64) -> Result<TokenCheck, StoreError> {
        let row: Option<(i64, i64, Option<i64>, Option<i64>)> = self.store.read(|c| {
            c.query_row(
                "SELECT id, expires_at, used_at, revoked_at FROM repl_join_tokens WHERE digest = ?1",
                [&digest[..]],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )
            .optional()
        })?;
        Ok(match row {
            None => TokenCheck::Unknown,
            Some((_, _, Some(_), _)) => TokenCheck::Used,
            Some((_, _, _, Some(_))) => TokenCheck::Revoked,
            Some((_, expires, _, _)) if expires <= now_ms => TokenCheck::Expired,
            Some((id, ..)) => TokenCheck::Valid(id),
        })
    }

    /// Revokes a token that was not used yet; `false` if there is none.
    pub async fn revoke_join_token(&self, id: i64, now_ms: i64, audit: AuditRecord) -> Result<bool, StoreError> {
        self.store
            .write(move |c| {
                let n = c
                    .execute(
                        "UPDATE repl_join_tokens SET revoked_at = ?1 WHERE id = ?2 AND used_at IS NULL AND revoked_at IS NULL",
                        params![now_ms, id],
                    )
                    .map_err(map_err)?;
                if n == 1 {
                    insert_audit(c, &audit)?;
                }
                Ok(n == 1)
            })
            .await
    }

    /// Counts a failed proof of the master key; the token is revoked at the
    /// limit. Returns whether it is now revoked.
    pub async fn failed_proof(&self, id: i64, now_ms: i64, limit: i64, audit: AuditRecord) -> Result<bool, StoreError> {
        self.store
            .write(move |c| {
                c.execute("UPDATE repl_join_tokens SET failed_proofs = failed_proofs + 1 WHERE id = ?1", [id])
                    .map_err(map_err)?;
                let revoked = c
                    .execute(
                        "UPDATE repl_join_tokens SET revoked_at = ?1 \
                         WHERE id = ?2 AND failed_proofs >= ?3 AND revoked_at IS NULL",
                        params![now_ms, id, limit],
                    )
                    .map_err(map_err)?
                    == 1;
                insert_audit(c, &audit)?;
                Ok(revoked)
            })
            .await
    }

    // --- peers

    pub fn peers(&self) -> Result<Vec<PeerStatus>, StoreError> {
        self.store.read(|c| {
            c.prepare_cached(
                "SELECT name, last_contact_at, address, role, epoch, position, lag_ms, key_id, version, following \
                 FROM repl_peers ORDER BY name",
            )?
            .query_map([], |r| {
                Ok(PeerStatus {
                    name: r.get(0)?,
                    last_contact_at: r.get(1)?,
                    address: r.get(2)?,
                    role: r.get(3)?,
                    epoch: r.get(4)?,
                    position: r.get(5)?,
                    lag_ms: r.get(6)?,
                    key_id: r.get(7)?,
                    version: r.get(8)?,
                    following: r.get(9)?,
                })
            })?
            .collect()
        })
    }

    pub async fn record_peer(
        &self,
        name: &str,
        report: &NodeReport,
        address: Option<String>,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let (name, r) = (name.to_string(), report.clone());
        self.store
            .write(move |c| {
                c.execute(
                    "INSERT INTO repl_peers (name, last_contact_at, address, role, epoch, position, lag_ms, key_id, \
                     version, following) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10) \
                     ON CONFLICT (name) DO UPDATE SET last_contact_at = ?2, address = ?3, role = ?4, epoch = ?5, \
                     position = ?6, lag_ms = ?7, key_id = ?8, version = ?9, following = ?10",
                    params![
                        name,
                        now_ms,
                        address,
                        r.role.as_str(),
                        r.epoch,
                        r.position,
                        r.lag_ms,
                        r.key_id,
                        r.version,
                        r.following
                    ],
                )
                .map(|_| ())
                .map_err(map_err)
            })
            .await
    }

    // --- a replica's login journal

    /// The oldest journalled logins, oldest first.
    pub fn outbox(&self, limit: u32) -> Result<Vec<LoginEvent>, StoreError> {
        self.store.read(|c| {
            c.prepare_cached(
                "SELECT id, user_id, at, result, token_id, step, drift, digest, nonce, expires_at \
                 FROM repl_outbox ORDER BY id LIMIT ?1",
            )?
            .query_map([limit], |r| {
                let result: String = r.get(3)?;
                let mut factors = Vec::new();
                if let (Some(token), Some(step)) = (r.get::<_, Option<i64>>(4)?, r.get::<_, Option<i64>>(5)?) {
                    factors.push(ForwardedFactor::Step {
                        token,
                        step,
                        drift: r.get::<_, Option<i32>>(6)?.unwrap_or(0),
                    });
                }
                if let Some(digest) = r.get::<_, Option<Vec<u8>>>(7)? {
                    factors.push(ForwardedFactor::BackupCode { digest });
                }
                if let Some(nonce) = r.get::<_, Option<Vec<u8>>>(8)? {
                    factors
                        .push(ForwardedFactor::State { nonce, expires_at: r.get::<_, Option<i64>>(9)?.unwrap_or(0) });
                }
                Ok(LoginEvent {
                    id: r.get(0)?,
                    user: r.get(1)?,
                    at: r.get(2)?,
                    accepted: result == "accepted",
                    counted: result != "none",
                    factors,
                })
            })?
            .collect()
        })
    }

    pub fn outbox_len(&self) -> Result<u64, StoreError> {
        self.store
            .read(|c| c.query_row("SELECT count(*) FROM repl_outbox", [], |r| r.get::<_, i64>(0)))
            .map(|n| n as u64)
    }

    /// Forgets journalled logins the primary has handled.
    pub async fn outbox_done(&self, through: i64) -> Result<(), StoreError> {
        self.store
            .write(move |c| c.execute("DELETE FROM repl_outbox WHERE id <= ?1", [through]).map(|_| ()).map_err(map_err))
            .await
    }

    // --- on the primary: claims and forwarded logins

    /// Takes each item if no node took it yet and the policy allows it (see
    /// `tessera_core::replication::window`). Refusals other than "used" are
    /// audited as `base` (actor: the node) with the reason.
    pub async fn claim(
        &self,
        items: Vec<ClaimItem>,
        now_ms: i64,
        base: AuditRecord,
    ) -> Result<Vec<ClaimResult>, StoreError> {
        self.store
            .write(move |c| {
                let policy = stored_policy(c)?;
                let mut out = Vec::with_capacity(items.len());
                for item in &items {
                    let r = claim_one(c, item, now_ms, &policy)?;
                    if let Some(reason) = r.reason.as_deref().filter(|r| *r != "used") {
                        let mut a = base.clone();
                        a.result = AuditResult::Reject;
                        a.reason = Some(format!("claim refused: {reason}"));
                        if let ClaimItem::Step { user, .. } | ClaimItem::BackupCode { user, .. } = item {
                            a.target = username(c, *user)?;
                        }
                        insert_audit(c, &a)?;
                    }
                    out.push(r);
                }
                Ok(out)
            })
            .await
    }

    /// Applies a replica's journalled logins, in order, once each: consumed
    /// factors stay consumed (refused, and audited, when outside what the
    /// policy allows), failures count toward the lock with this node's
    /// policy, a success clears them. One audit record for the batch.
    pub async fn apply_forwarded(
        &self,
        node: &str,
        events: Vec<LoginEvent>,
        now_ms: i64,
        base: AuditRecord,
    ) -> Result<ForwardAnswer, StoreError> {
        let node = node.to_string();
        self.store
            .write(move |c| {
                let policy = stored_policy(c)?;
                let through: i64 = c
                    .query_row("SELECT forwarded_through FROM repl_peers WHERE name = ?1", [&node], |r| r.get(0))
                    .optional()
                    .map_err(map_err)?
                    .unwrap_or(0);
                let mut answer = ForwardAnswer { through, ..Default::default() };
                let (mut accepted, mut failed) = (0u32, 0u32);
                for e in &events {
                    if e.id <= through {
                        answer.duplicates += 1;
                        continue;
                    }
                    answer.through = answer.through.max(e.id);
                    match apply_event(c, e, now_ms, &policy)? {
                        EventApplied::Applied => {
                            answer.applied += 1;
                            if e.counted {
                                if e.accepted { accepted += 1 } else { failed += 1 }
                            }
                        }
                        EventApplied::UnknownUser => answer.unknown_users += 1,
                        EventApplied::Refused(reason) => {
                            answer.refused += 1;
                            let mut a = base.clone();
                            a.result = AuditResult::Reject;
                            a.reason = Some(format!("forwarded login refused: {reason}"));
                            a.target = username(c, e.user)?;
                            insert_audit(c, &a)?;
                        }
                    }
                }
                c.execute(
                    "INSERT INTO repl_peers (name, forwarded_through) VALUES (?1, ?2) \
                     ON CONFLICT (name) DO UPDATE SET forwarded_through = MAX(forwarded_through, ?2)",
                    params![node, answer.through],
                )
                .map_err(map_err)?;
                let mut a = base;
                a.result = AuditResult::Ok;
                a.reason = Some(format!(
                    "{} logins forwarded ({accepted} accepted, {failed} failed, {} refused, {} duplicate, {} unknown user)",
                    events.len(),
                    answer.refused,
                    answer.duplicates,
                    answer.unknown_users
                ));
                insert_audit(c, &a)?;
                Ok(answer)
            })
            .await
    }
}

fn stored_policy(c: &Connection) -> Result<Policy, StoreError> {
    let text: Option<String> =
        c.query_row("SELECT value FROM meta WHERE key = 'policy'", [], |r| r.get(0)).optional().map_err(map_err)?;
    match text {
        Some(t) => serde_json::from_str(&t).map_err(|e| StoreError::Corrupt(format!("stored policy: {e}"))),
        None => Ok(Policy::default()),
    }
}

fn username(c: &Connection, user: i64) -> Result<Option<String>, StoreError> {
    c.query_row("SELECT username FROM users WHERE id = ?1", [user], |r| r.get(0)).optional().map_err(map_err)
}

/// A user's active token as the window check needs it: kind and stored floor.
fn token_kind(c: &Connection, user: i64, token: i64) -> Result<Option<(OtpKind, i64)>, StoreError> {
    let row: Option<(String, Option<u32>, i64)> = c
        .prepare_cached("SELECT kind, period, counter FROM tokens WHERE id = ?1 AND user_id = ?2 AND state = 'active'")
        .and_then(|mut s| s.query_row([token, user], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?))).optional())
        .map_err(map_err)?;
    Ok(row.and_then(|(kind, period, counter)| {
        let kind = match (kind.as_str(), period) {
            ("totp", Some(p)) => OtpKind::Totp { period: Period::new(p).ok()? },
            _ => OtpKind::Hotp,
        };
        Some((kind, counter))
    }))
}

fn read_states(c: &Connection, user: i64) -> Result<Option<TokenStates>, StoreError> {
    let blob: Option<Option<Vec<u8>>> = c
        .prepare_cached("SELECT token_state FROM users WHERE id = ?1")
        .and_then(|mut s| s.query_row([user], |r| r.get(0)).optional())
        .map_err(map_err)?;
    blob.map(|b| TokenStates::decode(b.as_deref()).map_err(|e| StoreError::Corrupt(format!("token state: {e}"))))
        .transpose()
}

fn write_states(c: &Connection, user: i64, states: &TokenStates) -> Result<(), StoreError> {
    c.prepare_cached("UPDATE users SET token_state = ?1 WHERE id = ?2")
        .and_then(|mut s| s.execute(params![states.encode(), user]))
        .map(|_| ())
        .map_err(map_err)
}

fn refused(reason: &str) -> ClaimResult {
    ClaimResult { claimed: false, reason: Some(reason.into()), token_state: None }
}

/// A user's lock state and whether they are disabled (`None`: no such user).
fn lock_state(c: &Connection, user: i64) -> Result<Option<(bool, LockState, Option<i64>)>, StoreError> {
    c.prepare_cached(
        "SELECT disabled, failures, locked_at, lock_until, throttle_until, last_success_at FROM users WHERE id = ?1",
    )
    .and_then(|mut s| {
        s.query_row([user], |r| {
            let lock = LockState {
                failures: r.get(1)?,
                locked_at: r.get::<_, Option<i64>>(2)?.map(Timestamp),
                lock_until: r.get::<_, Option<i64>>(3)?.map(Timestamp),
                throttle_until: r.get::<_, Option<i64>>(4)?.map(Timestamp),
            };
            Ok((r.get(0)?, lock, r.get(5)?))
        })
        .optional()
    })
    .map_err(map_err)
}

fn write_lock(c: &Connection, user: i64, lock: &LockState, last_success: Option<i64>) -> Result<(), StoreError> {
    c.prepare_cached(
        "UPDATE users SET failures = ?1, locked_at = ?2, lock_until = ?3, throttle_until = ?4, last_success_at = ?5 \
         WHERE id = ?6",
    )
    .and_then(|mut s| {
        s.execute(params![
            lock.failures,
            lock.locked_at.map(|t| t.0),
            lock.lock_until.map(|t| t.0),
            lock.throttle_until.map(|t| t.0),
            last_success,
            user
        ])
    })
    .map(|_| ())
    .map_err(map_err)
}

/// A claimed code or backup code is the login's success: the lock is
/// checked first (a user locked or disabled here is refused everywhere at
/// once), and the success clears the failures here, so the replica has
/// nothing left to forward for that login.
fn claim_one(c: &Connection, item: &ClaimItem, now_ms: i64, policy: &Policy) -> Result<ClaimResult, StoreError> {
    let user = match item {
        ClaimItem::Step { user, .. } | ClaimItem::BackupCode { user, .. } => Some(*user),
        ClaimItem::State { .. } => None,
    };
    let before = match user {
        Some(u) => match lock_state(c, u)? {
            None => return Ok(refused("unknown")),
            Some((disabled, lock, last)) => {
                if tessera_core::store::blocking_outcome(disabled, &lock, Timestamp(now_ms)).is_some() {
                    return Ok(refused("locked"));
                }
                Some((u, lock, last))
            }
        },
        None => None,
    };
    let result = claim_factor(c, item, now_ms, policy)?;
    if result.claimed
        && let Some((u, lock, last)) = before
    {
        write_lock(c, u, &lock.after_success(), Some(last.unwrap_or(0).max(now_ms)))?;
    }
    Ok(result)
}

fn claim_factor(c: &Connection, item: &ClaimItem, now_ms: i64, policy: &Policy) -> Result<ClaimResult, StoreError> {
    match item {
        ClaimItem::Step { user, token, step, drift } => {
            let (Some((kind, counter)), Some(mut states)) = (token_kind(c, *user, *token)?, read_states(c, *user)?)
            else {
                return Ok(refused("unknown"));
            };
            let floor = states.get(*token).map_or(counter, |e| e.counter.max(counter));
            if let Err(r) = check_step(kind, floor, *step, now_ms, policy) {
                return Ok(refused(r.as_str()));
            }
            if *step < floor {
                return Ok(ClaimResult {
                    claimed: false,
                    reason: Some("used".into()),
                    token_state: states.encode().map(hex::encode),
                });
            }
            states.set(Entry { token: *token, counter: step + 1, drift: *drift, last_used: now_ms });
            write_states(c, *user, &states)?;
            Ok(ClaimResult { claimed: true, reason: None, token_state: None })
        }
        ClaimItem::BackupCode { user, digest } => {
            let n = c
                .prepare_cached(
                    "UPDATE backup_codes SET used_at = ?1 WHERE user_id = ?2 AND digest = ?3 AND used_at IS NULL",
                )
                .and_then(|mut s| s.execute(params![now_ms, user, digest]))
                .map_err(map_err)?;
            if n == 1 {
                return Ok(ClaimResult { claimed: true, reason: None, token_state: None });
            }
            let exists = c
                .prepare_cached("SELECT 1 FROM backup_codes WHERE user_id = ?1 AND digest = ?2")
                .and_then(|mut s| s.exists(params![user, digest]))
                .map_err(map_err)?;
            Ok(if exists {
                ClaimResult { claimed: false, reason: Some("used".into()), token_state: None }
            } else {
                refused("unknown")
            })
        }
        ClaimItem::State { nonce, expires_at } => {
            if nonce.len() != 16 {
                return Ok(refused("unknown"));
            }
            // Kept no longer than a State can live, whatever is claimed.
            let expires = (*expires_at).min(now_ms + MAX_STATE_MS);
            let n = c
                .prepare_cached("INSERT OR IGNORE INTO used_states (nonce, expires_at) VALUES (?1, ?2)")
                .and_then(|mut s| s.execute(params![nonce, expires]))
                .map_err(map_err)?;
            Ok(ClaimResult { claimed: n == 1, reason: (n == 0).then(|| "used".into()), token_state: None })
        }
    }
}

/// Longest a challenge State can live (the policy's TTL is at most this).
const MAX_STATE_MS: i64 = 24 * 3600 * 1000;

enum EventApplied {
    Applied,
    UnknownUser,
    Refused(&'static str),
}

fn apply_event(c: &Connection, e: &LoginEvent, now_ms: i64, policy: &Policy) -> Result<EventApplied, StoreError> {
    let Some(mut states) = read_states(c, e.user)? else { return Ok(EventApplied::UnknownUser) };
    // Nothing a replica says happened later than now (its clock may run ahead).
    let at = e.at.min(now_ms);
    for f in &e.factors {
        if let ForwardedFactor::Step { token, step, .. } = f
            && let Some((kind, counter)) = token_kind(c, e.user, *token)?
        {
            let floor = states.get(*token).map_or(counter, |x| x.counter.max(counter));
            if let Err(r) = check_step(kind, floor, *step, at, policy) {
                return Ok(EventApplied::Refused(r.as_str()));
            }
        }
    }
    for f in &e.factors {
        match f {
            ForwardedFactor::Step { token, step, drift } => {
                let Some((_, counter)) = token_kind(c, e.user, *token)? else { continue };
                let floor = states.get(*token).map_or(counter, |x| x.counter.max(counter));
                if step + 1 > floor {
                    states.set(Entry { token: *token, counter: step + 1, drift: *drift, last_used: at });
                }
            }
            ForwardedFactor::BackupCode { digest } => {
                c.prepare_cached(
                    "UPDATE backup_codes SET used_at = ?1 WHERE user_id = ?2 AND digest = ?3 AND used_at IS NULL",
                )
                .and_then(|mut s| s.execute(params![at, e.user, digest]))
                .map_err(map_err)?;
            }
            ForwardedFactor::State { nonce, expires_at } => {
                if nonce.len() == 16 {
                    c.prepare_cached("INSERT OR IGNORE INTO used_states (nonce, expires_at) VALUES (?1, ?2)")
                        .and_then(|mut s| s.execute(params![nonce, (*expires_at).min(now_ms + MAX_STATE_MS)]))
                        .map_err(map_err)?;
                }
            }
        }
    }
    write_states(c, e.user, &states)?;
    if e.counted {
        merge_lock(c, e.user, e.accepted, at, policy)?;
    }
    Ok(EventApplied::Applied)
}

/// Counts a replica's failure toward the user's lock here, with this
/// node's policy, as if it had happened here; a success clears the count
/// (unless this node saw a later success already).
fn merge_lock(c: &Connection, user: i64, accepted: bool, at: i64, policy: &Policy) -> Result<(), StoreError> {
    let Some((_, mut lock, last_success)) = lock_state(c, user)? else { return Ok(()) };
    let mut success = last_success;
    if accepted {
        if last_success.is_none_or(|s| s < at) {
            lock = lock.after_success();
            success = Some(at);
        }
    } else {
        lock = lock.after_failure(policy, Timestamp(at));
    }
    write_lock(c, user, &lock, success)
}

/// Journals a decided login on a replica (inside the login's transaction).
pub(crate) fn journal_login(
    c: &Connection,
    user: i64,
    at: i64,
    verdict: &Verdict,
    outcome: &AuthOutcome,
) -> Result<(), StoreError> {
    let result = match outcome {
        AuthOutcome::Accepted => "accepted",
        AuthOutcome::Failed { .. } => "failed",
        _ => return Ok(()),
    };
    let (mut token, mut step, mut drift, mut digest) = (None, None, None, None);
    let factor = match verdict {
        Verdict::Verified(f) => Some(f.base()),
        _ => None,
    };
    match (outcome, factor) {
        (AuthOutcome::Accepted, Some(Factor::Token { token_id, matched, drift: d })) => {
            (token, step, drift) = (Some(token_id.0), Some(*matched), Some(*d));
        }
        (AuthOutcome::Accepted, Some(Factor::BackupCode { digest: d })) => digest = Some(&d[..]),
        _ => {}
    }
    c.prepare_cached(
        "INSERT INTO repl_outbox (user_id, at, result, token_id, step, drift, digest) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )
    .and_then(|mut s| s.execute(params![user, at, result, token, step, drift, digest]))
    .map(|_| ())
    .map_err(map_err)
}

/// Journals a challenge State a login on a replica consumed.
pub(crate) fn journal_state(
    c: &Connection,
    user: i64,
    at: i64,
    nonce: &[u8],
    expires_at: i64,
) -> Result<(), StoreError> {
    c.prepare_cached("INSERT INTO repl_outbox (user_id, at, result, nonce, expires_at) VALUES (?1, ?2, 'none', ?3, ?4)")
        .and_then(|mut s| s.execute(params![user, at, nonce, expires_at]))
        .map(|_| ())
        .map_err(map_err)
}
