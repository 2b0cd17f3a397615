//! The authentication decision, shared by every door (REST validate, RADIUS,
//! the portal, `tessera check`).
//!
//! Reads a snapshot, verifies factors without side effects, then asks the
//! store to apply the attempt atomically; the store's answer is the decision.
//! What the caller learns is only accept / reject / challenge; the reason
//! (which factor, lock, replay) goes to the audit log.

use std::sync::Arc;

use tessera_otp::{BACKUP_CODE_DIGITS, normalize_backup_code};
use zeroize::Zeroizing;

use crate::audit::{Actor, AuditRecord, AuditResult};
use crate::clock::Timestamp;
use crate::context::Context;
use crate::error::CoreError;
use crate::keys::{Keyring, Purpose};
use crate::model::{AccessRecord, Token, TokenState, User, UserId};
use crate::names::{self, DEFAULT_REALM};
use crate::otp_match::{match_code, open_secret};
use crate::password::MAX_PASSWORD_LEN;
use crate::policy::Policy;
use crate::store::{
    AuthAttempt, AuthOutcome, AuthenticateRequest, Authentication, Evaluation, Evaluator, Factor, Snapshot,
    StateTicket, Verdict,
};

/// Inputs longer than this are refused before any work: a password plus the
/// longest code, with room to spare.
pub const MAX_CREDENTIAL_LEN: usize = MAX_PASSWORD_LEN + 16;

/// Submissions longer than any code probably carry a password; for unknown
/// users we then spend an argon2 verification so timing does not reveal
/// that the user does not exist.
const LONGEST_CODE: usize = BACKUP_CODE_DIGITS;

#[derive(Debug)]
pub struct ValidateRequest {
    pub username: String,
    pub realm: Option<String>,
    /// `password + code`, or the code alone for users without a password.
    pub password: Zeroizing<String>,
    /// Challenge state from an earlier `challenge` answer (two-step logins):
    /// the opaque bytes as they were handed out.
    pub state: Option<Vec<u8>>,
    pub address: Option<String>,
    /// The relaying client: RADIUS client name, `rest`, `cli`, a browser.
    pub client: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Accept,
    Reject,
    /// Ask for the code: send `state` back with it (RADIUS State attribute;
    /// base64url in REST).
    Challenge {
        state: Vec<u8>,
        message: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Validation {
    pub decision: Decision,
    /// Internal reason, as written to the audit log. Never sent to callers.
    pub reason: String,
    pub user_id: Option<UserId>,
}

#[derive(Debug, Clone)]
pub struct Authenticator {
    ctx: Arc<Context>,
}

/// A candidate reading of the submitted string: `password` then `code`.
struct Split<'a> {
    password: &'a str,
    code: &'a str,
}

/// Splits `input` into password and a code of `len` bytes, at the end or
/// the start as the policy says.
fn split_code(input: &str, len: usize, has_password: bool, code_first: bool) -> Option<Split<'_>> {
    if has_password {
        // A password must be present.
        if input.len() <= len {
            return None;
        }
        let at = if code_first { len } else { input.len() - len };
        if !input.is_char_boundary(at) {
            return None;
        }
        let (a, b) = input.split_at(at);
        Some(if code_first { Split { password: b, code: a } } else { Split { password: a, code: b } })
    } else if input.len() == len {
        Some(Split { password: "", code: input })
    } else {
        None
    }
}

impl Authenticator {
    pub fn new(ctx: Arc<Context>) -> Self {
        Authenticator { ctx }
    }

    pub fn context(&self) -> &Arc<Context> {
        &self.ctx
    }

    /// Decides one login. `Err` only for infrastructure failures (the store
    /// is down); callers must treat that as a refusal.
    pub async fn validate(&self, req: ValidateRequest) -> Result<Validation, CoreError> {
        let ctx = &self.ctx;
        let now = ctx.clock.now();
        let realm = req.realm.clone().unwrap_or_else(|| DEFAULT_REALM.to_string());
        let actor = Actor::new("validate").with_address(req.address.clone()).with_client(req.client.clone());
        let audit = AuditRecord::new(now, &ctx.node, &actor, "validate").target(audit_target(&realm, &req.username));

        if names::check_username(&req.username).is_err()
            || names::check_realm(&realm).is_err()
            || req.password.len() > MAX_CREDENTIAL_LEN
        {
            return self.reject_early(audit, "malformed_request").await;
        }

        let policy = ctx.store.policy().await?;
        // Second step of a challenge: the state must be ours, for this user,
        // fresh, and unused; then only the code is checked.
        let ticket = match &req.state {
            None => None,
            Some(bytes) => match open_state(&ctx.keys, &realm, &req.username, bytes) {
                Some(st) if now < st.expires_at => Some(st),
                Some(_) => return self.reject_early(audit, "state_expired").await,
                None => return self.reject_early(audit, "bad_state").await,
            },
        };
        let access = AccessRecord { at: now, address: req.address.clone(), client: req.client.clone() };
        // Users without a password (and second steps) are decided entirely
        // inside the store's serialised step (one round trip); password
        // users need argon2, which must not run there, so their evaluation
        // is deferred to here.
        let evaluate: Evaluator = {
            let keys = ctx.keys.clone();
            let input = req.password.clone();
            let policy = policy.clone();
            let expected_user = ticket.map(|t| t.user_id);
            Box::new(move |snap: &dyn Snapshot| -> Evaluation {
                let user = snap.user();
                if user.disabled {
                    return Evaluation::Decided(Verdict::Refused("disabled"));
                }
                if user.lock.block(now).is_some() {
                    return Evaluation::Decided(Verdict::Refused("locked"));
                }
                let code_only = match expected_user {
                    Some(id) if id != user.id => return Evaluation::Decided(Verdict::Refused("state_user_mismatch")),
                    Some(_) => true,
                    None if user.password_hash.is_some() => return Evaluation::Deferred,
                    None => true,
                };
                let codes = match_codes(&keys, user, snap.tokens(), &input, &policy, now, code_only);
                if let Some((factor, _)) = codes.matched {
                    return Evaluation::Decided(Verdict::Verified(factor));
                }
                if let Some((digest, _)) = backup_candidate(&keys, user, &input, &policy, code_only) {
                    match snap.backup_code_unused(&digest) {
                        Ok(true) => return Evaluation::Decided(Verdict::Verified(Factor::BackupCode { digest })),
                        Ok(false) => {}
                        // Let the engine retry outside, where the error can be reported.
                        Err(_) => return Evaluation::Deferred,
                    }
                }
                Evaluation::Decided(codes.failure(true))
            })
        };
        let request = AuthenticateRequest {
            realm: realm.clone(),
            username: req.username.clone(),
            access: access.clone(),
            policy: policy.clone(),
            audit: audit.clone(),
            state: ticket.map(|t| StateTicket { nonce: t.nonce, expires_at: t.expires_at }),
            evaluate,
        };
        let (user_id, verdict, outcome) = match ctx.store.authenticate(request).await? {
            Authentication::UnknownUser => {
                if req.password.len() > LONGEST_CODE {
                    ctx.hasher.verify(None, req.password.clone()).await;
                }
                return Ok(Validation { decision: Decision::Reject, reason: "unknown_user".into(), user_id: None });
            }
            Authentication::Decided { user_id, verdict, outcome } => (user_id, verdict, outcome),
            Authentication::Deferred { user, tokens } => {
                let verdict = if user.disabled {
                    Verdict::Refused("disabled")
                } else if user.lock.block(now).is_some() {
                    Verdict::Refused("locked")
                } else {
                    self.evaluate(&user, &tokens, &req.password, &policy, now).await?
                };
                let attempt =
                    AuthAttempt { user_id: user.id, access, verdict: verdict.clone(), policy: policy.clone(), audit };
                let outcome = ctx.store.commit_attempt(attempt).await?;
                (user.id, verdict, outcome)
            }
        };
        let mut finished = AuditRecord::new(now, "", &actor, "");
        crate::store::finish_attempt_audit(&mut finished, &verdict, &outcome);
        let decision = match outcome {
            AuthOutcome::Accepted => Decision::Accept,
            AuthOutcome::Challenged => Decision::Challenge {
                state: seal_state(
                    &ctx.keys,
                    &*ctx.random,
                    &realm,
                    &req.username,
                    user_id,
                    now.plus_seconds(i64::from(policy.challenge_ttl_seconds)),
                ),
                message: policy.challenge_message.clone(),
            },
            _ => Decision::Reject,
        };
        Ok(Validation { decision, reason: finished.reason.unwrap_or_default(), user_id: Some(user_id) })
    }

    async fn reject_early(&self, audit: AuditRecord, reason: &'static str) -> Result<Validation, CoreError> {
        self.ctx.store.append_audit(audit.result(AuditResult::Reject, Some(reason))).await?;
        Ok(Validation { decision: Decision::Reject, reason: reason.into(), user_id: None })
    }

    /// Verifies the factors of a password user against the snapshot. No
    /// state changes here.
    async fn evaluate(
        &self,
        user: &User,
        tokens: &[Token],
        input: &Zeroizing<String>,
        policy: &Policy,
        now: crate::clock::Timestamp,
    ) -> Result<Verdict, CoreError> {
        let ctx = &self.ctx;
        // 1. Token codes: cheap, so try them first.
        let codes = match_codes(&ctx.keys, user, tokens, input, policy, now, false);
        if let Some((factor, password)) = &codes.matched {
            return Ok(self.with_password(user, password, Verdict::Verified(factor.clone())).await);
        }
        // 2. Backup codes: a keyed digest lookup, then the password.
        if let Some((digest, password)) = backup_candidate(&ctx.keys, user, input, policy, false)
            && ctx.store.backup_code_unused(&user.id, &digest).await?
        {
            return Ok(self.with_password(user, password, Verdict::Verified(Factor::BackupCode { digest })).await);
        }
        // 3. The password alone: ask for the code in a second step.
        if policy.challenge_response && !codes.no_active_token && self.password_matches(user, input).await {
            return Ok(Verdict::Challenge);
        }
        // 4. Nothing matched. Still check the password, so a wrong code and a
        //    wrong password take the same time, and the audit log can say which.
        let password_ok = match user.password_hash {
            Some(_) => self.password_matches(user, codes.first_password.unwrap_or(input)).await,
            None => true,
        };
        Ok(codes.failure(password_ok))
    }

    async fn password_matches(&self, user: &User, password: &str) -> bool {
        if password.is_empty() {
            return false;
        }
        self.ctx.hasher.verify(user.password_hash.clone(), Zeroizing::new(password.to_string())).await
    }

    async fn with_password(&self, user: &User, password: &str, verified: Verdict) -> Verdict {
        if user.password_hash.is_none() || self.password_matches(user, password).await {
            verified
        } else {
            Verdict::Failed("wrong_password")
        }
    }
}

/// The result of checking the submitted string against the user's tokens.
struct CodeCheck<'a> {
    /// The factor that matched, and the password part before its code.
    matched: Option<(Factor, &'a str)>,
    /// The password part of the first plausible split, for the failure path.
    first_password: Option<&'a str>,
    no_active_token: bool,
    replayed: bool,
}

impl CodeCheck<'_> {
    /// The verdict when nothing matched, given whether the password (if
    /// any) was right.
    fn failure(&self, password_ok: bool) -> Verdict {
        match (self.no_active_token, password_ok, self.replayed) {
            (true, true, _) => Verdict::Refused("no_active_token"),
            (true, false, _) => Verdict::Failed("wrong_password"),
            (false, true, true) => Verdict::Failed("replayed_code"),
            (false, true, false) => Verdict::Failed("wrong_code"),
            (false, false, _) => Verdict::Failed("wrong_password_and_code"),
        }
    }
}

/// Checks every active token's code against the end of `input`. Pure and
/// quick (an AEAD open and a few HMACs per token).
fn match_codes<'a>(
    keys: &Keyring,
    user: &User,
    tokens: &[Token],
    input: &'a str,
    policy: &Policy,
    now: crate::clock::Timestamp,
    code_only: bool,
) -> CodeCheck<'a> {
    let has_password = user.password_hash.is_some() && !code_only;
    let mut check = CodeCheck { matched: None, first_password: None, no_active_token: true, replayed: false };
    for token in tokens.iter().filter(|t| t.state == TokenState::Active) {
        check.no_active_token = false;
        let Some(split) = split_code(input, token.params.digits.get() as usize, has_password, policy.code_first) else {
            continue;
        };
        check.first_password.get_or_insert(split.password);
        let secret = match open_secret(keys, token) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(token = %token.serial, error = %e, "token secret cannot be opened; token skipped");
                continue;
            }
        };
        if let Some(m) = match_code(&secret, token, split.code, policy, now) {
            let factor = Factor::Token { token_id: token.id, matched: m.matched, drift: m.drift };
            check.matched = Some((factor, split.password));
            return check;
        }
        check.replayed |= is_replay(&secret, token, split.code, policy, now);
    }
    check
}

/// The digest of the backup code `input` may end with (or be), and the
/// password part before it.
fn backup_candidate<'a>(
    keys: &Keyring,
    user: &User,
    input: &'a str,
    policy: &Policy,
    code_only: bool,
) -> Option<([u8; 32], &'a str)> {
    if !policy.backup_codes_enabled {
        return None;
    }
    let split = if user.password_hash.is_some() && !code_only {
        // The code as printed (`12345-67890`) or without the dash.
        let dashed = split_code(input, BACKUP_CODE_DIGITS + 1, true, policy.code_first)
            .filter(|s| s.code.as_bytes().get(BACKUP_CODE_DIGITS / 2) == Some(&b'-'));
        dashed.or_else(|| split_code(input, BACKUP_CODE_DIGITS, true, policy.code_first))?
    } else {
        Split { password: "", code: input }
    };
    let code = normalize_backup_code(split.code)?;
    Some((keys.backup_code_digest(&user.id.to_string(), &code), split.password))
}

/// What a challenge state carries (sealed, so only a node with the master
/// key can read or make one, and bound to realm and username by the AEAD's
/// associated data).
#[derive(Debug, Clone, Copy)]
struct OpenedState {
    user_id: UserId,
    nonce: [u8; 16],
    expires_at: Timestamp,
}

const STATE_VERSION: u8 = 1;

fn state_row(realm: &str, username: &str) -> String {
    format!("{realm}\0{username}")
}

fn seal_state(
    keys: &Keyring,
    rng: &dyn crate::random::Random,
    realm: &str,
    username: &str,
    user_id: UserId,
    expires_at: Timestamp,
) -> Vec<u8> {
    let mut nonce = [0u8; 16];
    rng.fill(&mut nonce);
    let mut plain = Vec::with_capacity(33);
    plain.push(STATE_VERSION);
    plain.extend_from_slice(&user_id.0.to_le_bytes());
    plain.extend_from_slice(&nonce);
    plain.extend_from_slice(&expires_at.0.to_le_bytes());
    keys.seal(rng, Purpose::ChallengeState, &state_row(realm, username), &plain)
}

fn open_state(keys: &Keyring, realm: &str, username: &str, sealed: &[u8]) -> Option<OpenedState> {
    // RADIUS State is at most 253 bytes; anything longer is not ours.
    if sealed.len() > 253 {
        return None;
    }
    let plain = keys.open(Purpose::ChallengeState, &state_row(realm, username), sealed).ok()?;
    if plain.len() != 33 || plain[0] != STATE_VERSION {
        return None;
    }
    let word = |at: usize| {
        let mut w = [0u8; 8];
        w.copy_from_slice(&plain[at..at + 8]);
        i64::from_le_bytes(w)
    };
    let mut nonce = [0u8; 16];
    nonce.copy_from_slice(&plain[9..25]);
    Some(OpenedState { user_id: UserId(word(1)), nonce, expires_at: Timestamp(word(25)) })
}

/// Whether `code` would have matched had the token's floor not moved past
/// it: a replayed (already used) code. Only for the audit reason.
fn is_replay(
    secret: &tessera_otp::Secret,
    token: &Token,
    code: &str,
    policy: &Policy,
    now: crate::clock::Timestamp,
) -> bool {
    let mut probe = token.clone();
    probe.counter = match token.params.kind {
        tessera_otp::OtpKind::Totp { .. } => i64::MIN,
        tessera_otp::OtpKind::Hotp => token.counter.saturating_sub(i64::from(policy.hotp_look_ahead) + 1).max(0),
    };
    match_code(secret, &probe, code, policy, now).is_some_and(|m| m.matched < token.counter)
}

fn audit_target(realm: &str, username: &str) -> String {
    // Bounded and printable even when the input is hostile.
    let clean =
        |s: &str, n: usize| -> String { s.chars().take(n).map(|c| if c.is_control() { '?' } else { c }).collect() };
    let name = clean(username, names::MAX_USERNAME_LEN);
    if realm == DEFAULT_REALM { name } else { format!("{name}@{}", clean(realm, names::MAX_REALM_LEN)) }
}
