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
use crate::context::Context;
use crate::error::CoreError;
use crate::model::{AccessRecord, Token, TokenState, User, UserId};
use crate::names::{self, DEFAULT_REALM};
use crate::otp_match::{match_code, open_secret};
use crate::password::MAX_PASSWORD_LEN;
use crate::policy::Policy;
use crate::store::{AuthAttempt, AuthOutcome, Factor, Verdict};

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
    /// Challenge state from an earlier `challenge` answer (two-step logins).
    pub state: Option<String>,
    pub address: Option<String>,
    /// The relaying client: RADIUS client name, `rest`, `cli`, a browser.
    pub client: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Accept,
    Reject,
    Challenge { state: String, message: String },
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

fn split_suffix(input: &str, len: usize, has_password: bool) -> Option<Split<'_>> {
    if has_password {
        // A password must be present; the code is the last `len` bytes.
        if input.len() <= len || !input.is_char_boundary(input.len() - len) {
            return None;
        }
        let (p, c) = input.split_at(input.len() - len);
        Some(Split { password: p, code: c })
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
            return self.reject_without_user(audit, "malformed_request").await;
        }

        let Some((user, tokens)) = ctx.store.auth_subject(&realm, &req.username).await? else {
            if req.password.len() > LONGEST_CODE {
                ctx.hasher.verify(None, req.password.clone()).await;
            }
            return self.reject_without_user(audit, "unknown_user").await;
        };
        let policy = ctx.store.policy().await?;
        let access = AccessRecord { at: now, address: req.address.clone(), client: req.client.clone() };

        let verdict = if user.disabled {
            Verdict::Refused("disabled")
        } else if user.lock.block(now).is_some() {
            Verdict::Refused("locked")
        } else {
            self.evaluate(&user, &tokens, &req.password, &policy, now).await?
        };
        let attempt = AuthAttempt { user_id: user.id.clone(), access, verdict: verdict.clone(), policy, audit };
        let outcome = ctx.store.commit_attempt(attempt).await?;
        let mut finished = AuditRecord::new(now, "", &actor, "");
        crate::store::finish_attempt_audit(&mut finished, &verdict, &outcome);
        let decision = if outcome == AuthOutcome::Accepted { Decision::Accept } else { Decision::Reject };
        Ok(Validation { decision, reason: finished.reason.unwrap_or_default(), user_id: Some(user.id) })
    }

    async fn reject_without_user(&self, audit: AuditRecord, reason: &'static str) -> Result<Validation, CoreError> {
        self.ctx.store.append_audit(audit.result(AuditResult::Reject, Some(reason))).await?;
        Ok(Validation { decision: Decision::Reject, reason: reason.into(), user_id: None })
    }

    /// Verifies the factors against the snapshot. No state changes here.
    async fn evaluate(
        &self,
        user: &User,
        tokens: &[Token],
        input: &Zeroizing<String>,
        policy: &Policy,
        now: crate::clock::Timestamp,
    ) -> Result<Verdict, CoreError> {
        let ctx = &self.ctx;
        let has_password = user.password_hash.is_some();
        let active: Vec<&Token> = tokens.iter().filter(|t| t.state == TokenState::Active).collect();

        // 1. Token codes: cheap, so try them first.
        let mut first_split: Option<&str> = None;
        let mut misses: Vec<(&Token, tessera_otp::Secret, &str)> = Vec::new();
        for token in &active {
            let Some(split) = split_suffix(input, token.params.digits.get() as usize, has_password) else {
                continue;
            };
            first_split.get_or_insert(split.password);
            let secret = match open_secret(&ctx.keys, token) {
                Ok(s) => s,
                Err(e) => {
                    tracing::error!(token = %token.serial, error = %e, "token secret cannot be opened; token skipped");
                    continue;
                }
            };
            if let Some(m) = match_code(&secret, token, split.code, policy, now) {
                let factor = Factor::Token { token_id: token.id.clone(), matched: m.matched, drift: m.drift };
                return Ok(self.with_password(user, split.password, Verdict::Verified(factor)).await);
            }
            misses.push((token, secret, split.code));
        }

        // 2. Backup codes: a keyed digest lookup, then the password.
        if policy.backup_codes_enabled {
            let candidate = if has_password {
                split_suffix(input, BACKUP_CODE_DIGITS, true)
            } else {
                Some(Split { password: "", code: input.as_str() })
            };
            if let Some(split) = candidate
                && let Some(code) = normalize_backup_code(split.code)
            {
                let digest = ctx.keys.backup_code_digest(user.id.as_str(), &code);
                if ctx.store.backup_code_unused(&user.id, &digest).await? {
                    let verdict = Verdict::Verified(Factor::BackupCode { digest });
                    return Ok(self.with_password(user, split.password, verdict).await);
                }
            }
        }

        // 3. Nothing matched. Still check the password, so a wrong code and a
        //    wrong password take the same time, and the audit log can say which.
        let password_ok = if has_password {
            match first_split {
                Some(p) => self.password_matches(user, p).await,
                None => self.password_matches(user, input).await,
            }
        } else {
            true
        };
        let replayed = misses.iter().any(|(t, secret, code)| is_replay(secret, t, code, policy, now));
        Ok(match (active.is_empty(), password_ok, replayed) {
            (true, true, _) => Verdict::Refused("no_active_token"),
            (true, false, _) => Verdict::Failed("wrong_password"),
            (false, true, true) => Verdict::Failed("replayed_code"),
            (false, true, false) => Verdict::Failed("wrong_code"),
            (false, false, _) => Verdict::Failed("wrong_password_and_code"),
        })
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
