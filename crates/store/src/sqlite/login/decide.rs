//! The login path on the engine: read the user (a reader connection, no
//! writer), overlay the in-memory login state, evaluate, apply core's
//! decision to memory, journal it, answer once durable.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use rusqlite::{Connection, OptionalExtension, params};
use tessera_core::audit::AuditResult;
use tessera_core::model::{AccessRecord, Token, TokenState, User};
use tessera_core::policy::Policy;
use tessera_core::store::{
    AuthAttempt, AuthOutcome, AuthenticateRequest, Authentication, Evaluation, Factor, StateTicket, StoreError,
    Verdict, blocking_outcome, finish_attempt_audit, settle,
};

use super::journal::{Durable, STATS};
use super::record::{LoginChange, LoginState, Record};
use super::{Entry, LoginEngine, Profile, external_rev, name_key};
use crate::sqlite::readers::Readers;
use crate::sqlite::token_state::{Entry as TokenEntry, TokenStates};
use crate::sqlite::{SqliteStore, WriterSnapshot, apply_attempt, backup_code, map_err, oob_codes, rows, sort_tokens};

/// Whether the engine decides `verdict` in memory. Everything else also
/// changes rows besides the login state (a backup code, an email/SMS code,
/// the grace count, a claim) and takes the exclusive path.
pub fn in_memory(verdict: &Verdict, tokens: &[Token]) -> bool {
    match verdict {
        Verdict::Verified(Factor::Token { .. } | Factor::FirstFactorOnly) => true,
        // A wrong code also wears out pending email/SMS codes.
        Verdict::Failed(_) => !tokens.iter().any(|t| t.oob.is_some()),
        Verdict::Replayed(_) | Verdict::Refused(_) | Verdict::Challenge => true,
        Verdict::Verified(_) => false,
    }
}

/// Applies core's decision for an in-memory verdict to `state`: the same
/// rule as every backend's (`blocking_outcome`, then consume the factor
/// conditionally, then `settle`), on the state in memory.
pub fn apply(
    state: &mut LoginState,
    disabled: bool,
    tokens: &[Token],
    verdict: &Verdict,
    policy: &Policy,
    access: &AccessRecord,
) -> AuthOutcome {
    let now = access.at;
    let (outcome, next) = match blocking_outcome(disabled, &state.lock, now) {
        Some(blocked) => (blocked, state.lock),
        None => {
            let consumed = match verdict {
                Verdict::Verified(Factor::Token { token_id, matched, drift }) => {
                    // The replay check: the floor must not have passed the
                    // matched counter (a concurrent login may have moved it).
                    let floor = tokens
                        .iter()
                        .find(|t| t.id == *token_id && t.state == TokenState::Active)
                        .map(|t| t.counter.max(state.tokens.get(token_id.0).map_or(i64::MIN, |e| e.counter)));
                    match floor {
                        Some(f) if f <= *matched => {
                            state.tokens.set(TokenEntry {
                                token: token_id.0,
                                counter: matched + 1,
                                drift: *drift,
                                last_used: now.0,
                            });
                            true
                        }
                        _ => false,
                    }
                }
                Verdict::Verified(Factor::FirstFactorOnly) => true,
                _ => false,
            };
            settle(verdict, consumed, &state.lock, policy, now)
        }
    };
    state.lock = next;
    state.last_attempt = Some(access.clone());
    if outcome == AuthOutcome::Accepted {
        state.last_success = Some(access.clone());
    }
    outcome
}

// `Exclusive` is the large variant; a `Step` lives only for one login's
// match, so boxing it would cost an allocation on the hot path for nothing.
#[allow(clippy::large_enum_variant)]
enum Step<R> {
    /// Another process wrote to the database: drop memory, then retry.
    Resync(R),
    Done(Authentication, Option<Durable>),
    Committed(AuthOutcome, Option<Durable>),
    /// Decided outside memory's reach: apply exclusively.
    Exclusive {
        attempt: AuthAttempt,
        ticket: Option<StateTicket>,
    },
}

/// A user row and the login state it carries, as a login's key query reads it.
type UserRow = Option<(User, TokenStates)>;

/// What a login read: the user, their tokens, and their state as the row has it.
fn read_user(
    c: &Connection,
    sql: &str,
    key: &dyn Fn(&mut rusqlite::Statement<'_>) -> rusqlite::Result<UserRow>,
    tokens_sql: &str,
) -> Result<Option<(User, TokenStates, Vec<Token>)>, StoreError> {
    let mut stmt = c.prepare_cached(sql).map_err(map_err)?;
    let Some((user, states)) = key(&mut stmt).map_err(map_err)? else { return Ok(None) };
    let mut tokens: Vec<Token> = c
        .prepare_cached(tokens_sql)
        .and_then(|mut s| s.query_map([&user.id.0], rows::token)?.collect())
        .map_err(map_err)?;
    tokens.iter_mut().for_each(|t| states.overlay(t));
    sort_tokens(&mut tokens);
    Ok(Some((user, states, tokens)))
}

/// The user's current login state: memory's if it has one, else the row's;
/// laid over `user` and `tokens` so the evaluator sees what is current.
fn current(entry: Option<&Entry>, user: &mut User, row: TokenStates, tokens: &mut [Token]) -> LoginState {
    let state = match entry {
        Some(e) => e.state.clone(),
        None => LoginState {
            lock: user.lock,
            last_attempt: user.last_attempt.clone(),
            last_success: user.last_success.clone(),
            tokens: row,
        },
    };
    user.lock = state.lock;
    user.last_attempt = state.last_attempt.clone();
    user.last_success = state.last_success.clone();
    tokens.iter_mut().for_each(|t| state.tokens.overlay(t));
    state
}

fn in_txn<T>(c: &Connection, f: impl FnOnce() -> Result<T, StoreError>) -> Result<T, StoreError> {
    c.prepare_cached("BEGIN").and_then(|mut s| s.execute([])).map_err(map_err)?;
    let r = f();
    let _ = c.prepare_cached("COMMIT").and_then(|mut s| s.execute([]));
    r
}

impl SqliteStore {
    pub(crate) async fn engine_authenticate(
        &self,
        engine: &Arc<LoginEngine>,
        mut req: AuthenticateRequest,
    ) -> Result<Authentication, StoreError> {
        engine.ensure_folder();
        for _ in 0..4 {
            // A replica decides the classic way (and must not pay for the
            // reset below on every login).
            if !engine.enabled() {
                return self.classic_authenticate(req).await;
            }
            if engine.reset.load(Ordering::Acquire) {
                engine.exclusive(|_| Ok(())).await?;
            }
            let gate = engine.gate.read().await;
            if !engine.enabled() {
                drop(gate);
                return self.classic_authenticate(req).await;
            }
            if engine.changed_elsewhere() {
                drop(gate);
                self.resync(engine).await?;
                continue;
            }
            let cached = match req.state {
                None => engine.lookup(&req.realm, &req.username),
                // A challenge's second step checks its State in the database.
                Some(_) => None,
            };
            let missed = match cached {
                Some(id) => self.cached_step(engine, id, req),
                None => Err(req),
            };
            let step = match missed {
                Ok(step) => {
                    STATS.memory_hits.fetch_add(1, Ordering::Relaxed);
                    step
                }
                Err(r) => {
                    STATS.memory_misses.fetch_add(1, Ordering::Relaxed);
                    self.readers.with(|c| in_txn(c, || self.authenticate_step(engine, c, r)))?
                }
            };
            drop(gate);
            match step {
                Step::Resync(r) => {
                    req = r;
                    self.resync(engine).await?;
                }
                Step::Done(a, durable) => {
                    wait(durable).await?;
                    return Ok(a);
                }
                Step::Committed(..) => unreachable!("authenticate answers Done"),
                Step::Exclusive { attempt, ticket } => {
                    let user_id = attempt.user_id;
                    let (verdict, outcome) = self.apply_exclusive(engine, attempt, ticket).await?;
                    return Ok(Authentication::Decided { user_id, verdict, outcome });
                }
            }
        }
        Err(StoreError::Unavailable("the database keeps being changed by another process; try again".into()))
    }

    /// A login of a user memory holds: no database read (unless the
    /// evaluator asks for a backup or email/SMS code). `Err` hands the
    /// request back when the entry has gone (the index is only a hint).
    // The request goes back to the caller's stack on a miss; boxing it
    // would cost an allocation on every login.
    #[allow(clippy::result_large_err)]
    fn cached_step(
        &self,
        engine: &LoginEngine,
        id: i64,
        req: AuthenticateRequest,
    ) -> Result<Step<AuthenticateRequest>, AuthenticateRequest> {
        let mut shard = engine.shard(id).lock();
        let Some(entry) = shard.get(&id) else { return Err(req) };
        if entry.profile.user.realm != req.realm || entry.profile.user.username != req.username {
            return Err(req);
        }
        let profile = entry.profile.clone();
        let mut user = profile.user.clone();
        let mut tokens = profile.tokens.clone();
        let mut state = current(Some(entry), &mut user, Default::default(), &mut tokens);
        let AuthenticateRequest { access, policy, audit, evaluate, .. } = req;
        let evaluation = evaluate(&CachedSnapshot { readers: &self.readers, user: &user, tokens: &tokens });
        let verdict = match evaluation {
            Evaluation::Deferred => {
                return Ok(Step::Done(Authentication::Deferred { user: Box::new(user), tokens }, None));
            }
            Evaluation::Decided(v) => v,
        };
        let attempt = AuthAttempt { user_id: user.id, access, verdict: verdict.clone(), policy, audit };
        if !in_memory(&verdict, &tokens) {
            return Ok(Step::Exclusive { attempt, ticket: None });
        }
        let (outcome, durable) =
            commit_in_memory(engine, &mut shard, &mut state, profile, &user, &tokens, attempt, None);
        Ok(Step::Done(Authentication::Decided { user_id: user.id, verdict, outcome }, Some(durable)))
    }

    fn authenticate_step(
        &self,
        engine: &LoginEngine,
        c: &Connection,
        req: AuthenticateRequest,
    ) -> Result<Step<AuthenticateRequest>, StoreError> {
        if external_rev(c).map_err(map_err)? != engine.known_rev.load(Ordering::Acquire) {
            return Ok(Step::Resync(req));
        }
        let AuthenticateRequest { realm, username, access, policy, mut audit, state: ticket, evaluate } = req;
        let found = read_user(
            c,
            &self.sql.user_by_name,
            &|s| s.query_row([&realm, &username], |r| Ok((rows::user(r)?, rows::token_states(r)?))).optional(),
            &self.sql.tokens_for_user,
        )?;
        let Some((mut user, row_states, mut tokens)) = found else {
            audit.result = AuditResult::Reject;
            audit.reason = Some("unknown_user".into());
            let (_, durable) = engine.append(Record { login: None, audit });
            return Ok(Step::Done(Authentication::UnknownUser, Some(durable)));
        };
        let used_before = match &ticket {
            Some(t) => c
                .prepare_cached("SELECT 1 FROM used_states WHERE nonce = ?1")
                .and_then(|mut s| s.exists([&t.nonce[..]]))
                .map_err(map_err)?,
            None => false,
        };
        let profile = Profile::of(&user, &tokens);
        let mut shard = engine.shard(user.id.0).lock();
        let mut state = current(shard.get(&user.id.0), &mut user, row_states, &mut tokens);
        let mut nonce = None;
        let evaluation = match &ticket {
            Some(t) => {
                let mut nonces = engine.nonces.lock();
                if used_before || nonces.contains_key(&t.nonce) {
                    Evaluation::Decided(Verdict::Refused("state_reused"))
                } else {
                    nonces.insert(t.nonce, t.expires_at.0);
                    nonce = Some((t.nonce, t.expires_at.0));
                    drop(nonces);
                    evaluate(&WriterSnapshot { conn: c, user: &user, tokens: &tokens })
                }
            }
            None => evaluate(&WriterSnapshot { conn: c, user: &user, tokens: &tokens }),
        };
        let verdict = match evaluation {
            Evaluation::Deferred => {
                // The evaluator never defers a second step (it has only the
                // code to check); if it did, the State stays usable.
                if let Some((n, _)) = nonce {
                    engine.nonces.lock().remove(&n);
                }
                return Ok(Step::Done(Authentication::Deferred { user: Box::new(user), tokens }, None));
            }
            Evaluation::Decided(v) => v,
        };
        let attempt = AuthAttempt { user_id: user.id, access, verdict: verdict.clone(), policy, audit };
        if !in_memory(&verdict, &tokens) {
            if let Some((n, _)) = nonce {
                engine.nonces.lock().remove(&n);
            }
            return Ok(Step::Exclusive { attempt, ticket });
        }
        let (outcome, durable) =
            commit_in_memory(engine, &mut shard, &mut state, profile, &user, &tokens, attempt, nonce);
        Ok(Step::Done(Authentication::Decided { user_id: user.id, verdict, outcome }, Some(durable)))
    }

    pub(crate) async fn engine_commit(
        &self,
        engine: &Arc<LoginEngine>,
        mut attempt: AuthAttempt,
    ) -> Result<AuthOutcome, StoreError> {
        engine.ensure_folder();
        for _ in 0..4 {
            if !engine.enabled() {
                return self.classic_commit(attempt).await;
            }
            if engine.reset.load(Ordering::Acquire) {
                engine.exclusive(|_| Ok(())).await?;
            }
            let gate = engine.gate.read().await;
            if !engine.enabled() {
                drop(gate);
                return self.classic_commit(attempt).await;
            }
            if engine.changed_elsewhere() {
                drop(gate);
                self.resync(engine).await?;
                continue;
            }
            let step = self.readers.with(|c| in_txn(c, || self.commit_step(engine, c, attempt)))?;
            drop(gate);
            match step {
                Step::Resync(a) => {
                    attempt = a;
                    self.resync(engine).await?;
                }
                Step::Committed(outcome, durable) => {
                    wait(durable).await?;
                    return Ok(outcome);
                }
                Step::Done(..) => unreachable!("commit answers Committed"),
                Step::Exclusive { attempt, ticket } => {
                    return Ok(self.apply_exclusive(engine, attempt, ticket).await?.1);
                }
            }
        }
        Err(StoreError::Unavailable("the database keeps being changed by another process; try again".into()))
    }

    fn commit_step(
        &self,
        engine: &LoginEngine,
        c: &Connection,
        attempt: AuthAttempt,
    ) -> Result<Step<AuthAttempt>, StoreError> {
        if external_rev(c).map_err(map_err)? != engine.known_rev.load(Ordering::Acquire) {
            return Ok(Step::Resync(attempt));
        }
        let id = attempt.user_id;
        let found = read_user(
            c,
            &self.sql.user_by_id,
            &|s| s.query_row([id.0], |r| Ok((rows::user(r)?, rows::token_states(r)?))).optional(),
            &self.sql.tokens_for_user,
        )?;
        let Some((mut user, row_states, mut tokens)) = found else {
            // Deleted between the engine's read and now.
            let mut audit = attempt.audit;
            finish_attempt_audit(&mut audit, &Verdict::Refused("user_deleted"), &AuthOutcome::Refused);
            let (_, durable) = engine.append(Record { login: None, audit });
            return Ok(Step::Committed(AuthOutcome::Refused, Some(durable)));
        };
        if !in_memory(&attempt.verdict, &tokens) {
            return Ok(Step::Exclusive { attempt, ticket: None });
        }
        let profile = Profile::of(&user, &tokens);
        let mut shard = engine.shard(id.0).lock();
        let mut state = current(shard.get(&id.0), &mut user, row_states, &mut tokens);
        let (outcome, durable) =
            commit_in_memory(engine, &mut shard, &mut state, profile, &user, &tokens, attempt, None);
        Ok(Step::Committed(outcome, Some(durable)))
    }

    /// Drops what memory holds (another process changed the database) and
    /// notes the revision it has now.
    async fn resync(&self, engine: &LoginEngine) -> Result<(), StoreError> {
        // Read before: a write whose hint comes later triggers another resync.
        let hint = engine.hint.read();
        engine.stale.store(false, Ordering::Release);
        let rev = engine.exclusive(|c| external_rev(c).map_err(map_err)).await?;
        engine.known_rev.store(rev, Ordering::Release);
        engine.hint.seen.store(hint.unwrap_or(0), Ordering::Release);
        STATS.resyncs.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// A login whose factor lives outside the login state: the old path's
    /// transaction, with logins held off and the journal folded first.
    async fn apply_exclusive(
        &self,
        engine: &LoginEngine,
        attempt: AuthAttempt,
        ticket: Option<StateTicket>,
    ) -> Result<(Verdict, AuthOutcome), StoreError> {
        engine
            .exclusive(move |c| {
                let mut attempt = attempt;
                if let Some(t) = ticket {
                    let fresh = c
                        .prepare_cached("INSERT OR IGNORE INTO used_states (nonce, expires_at) VALUES (?1, ?2)")
                        .and_then(|mut s| s.execute(params![&t.nonce[..], t.expires_at.0]))
                        .map_err(map_err)?;
                    if fresh == 0 {
                        attempt.verdict = Verdict::Refused("state_reused");
                    }
                }
                let verdict = attempt.verdict.clone();
                let outcome = apply_attempt(c, attempt, false)?;
                Ok((verdict, outcome))
            })
            .await
    }

    pub(crate) async fn engine_append_audit(
        &self,
        engine: &Arc<LoginEngine>,
        audit: tessera_core::audit::AuditRecord,
    ) -> Result<(), StoreError> {
        engine.ensure_folder();
        let durable = {
            let _gate = engine.gate.read().await;
            engine.append(Record { login: None, audit }).1
        };
        wait(Some(durable)).await
    }
}

/// Decides in memory, journals, and keeps the new state as the user's entry.
#[allow(clippy::too_many_arguments)]
fn commit_in_memory(
    engine: &LoginEngine,
    shard: &mut std::collections::HashMap<i64, Entry>,
    state: &mut LoginState,
    profile: Arc<Profile>,
    user: &User,
    tokens: &[Token],
    attempt: AuthAttempt,
    nonce: Option<([u8; 16], i64)>,
) -> (AuthOutcome, Durable) {
    let AuthAttempt { user_id, access, verdict, policy, mut audit } = attempt;
    let lock_before = state.lock;
    let outcome = apply(state, user.disabled, tokens, &verdict, &policy, &access);
    finish_attempt_audit(&mut audit, &verdict, &outcome);
    let rev = engine.known_rev.load(Ordering::Acquire);
    let change = LoginChange { user: user_id.0, rev, lock_before, state: state.clone(), nonce };
    let (seq, durable) = engine.append(Record { login: Some(change), audit });
    {
        let mut names = engine.names_shard(&profile.key).lock();
        if names.get(&profile.key) != Some(&user_id.0) {
            names.insert(profile.key.clone(), user_id.0);
        }
    }
    shard.insert(user_id.0, Entry { state: std::mem::take(state), seq, profile });
    (outcome, durable)
}

impl Profile {
    fn of(user: &User, tokens: &[Token]) -> Arc<Profile> {
        Arc::new(Profile {
            user: user.clone(),
            tokens: tokens.to_vec(),
            key: name_key(&user.realm, &user.username).into_boxed_str(),
        })
    }
}

/// The evaluator's view of a user memory holds: backup and email/SMS codes
/// (never in memory) are read when asked for.
struct CachedSnapshot<'a> {
    readers: &'a Readers,
    user: &'a User,
    tokens: &'a [Token],
}

impl tessera_core::store::Snapshot for CachedSnapshot<'_> {
    fn user(&self) -> &User {
        self.user
    }
    fn tokens(&self) -> &[Token] {
        self.tokens
    }
    fn backup_code(&self, digest: &[u8; 32]) -> Result<Option<tessera_core::store::BackupCodeState>, StoreError> {
        self.readers.with(|c| backup_code(c, &self.user.id, digest)).map_err(map_err)
    }
    fn oob_codes(&self, since: tessera_core::clock::Timestamp) -> Result<Vec<tessera_core::oob::OobCode>, StoreError> {
        self.readers.with(|c| oob_codes(c, self.user.id, since)).map_err(map_err)
    }
}

async fn wait(durable: Option<Durable>) -> Result<(), StoreError> {
    match durable {
        None => Ok(()),
        Some(rx) => rx.await.map_err(|_| StoreError::Unavailable("the login journal has stopped".into()))?,
    }
}
