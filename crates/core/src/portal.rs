//! The self-service portal's decisions (issue 7): sign-in with the first
//! factor of the user's realm, then either first registration (a server-made
//! secret, shown once, confirmed with a current code) or, for a registered
//! user, the code (or a backup code) through the normal [`Authenticator`]
//! path, so lockout, replay and the audit log work exactly as for RADIUS.
//!
//! Nothing here knows HTTP or sessions (`server/src/http/ui/portal.rs`).

use std::sync::Arc;

use tessera_otp::{BackupCode, OtpParams};
use zeroize::Zeroizing;

use crate::admin::{Admin, Enrollment};
use crate::audit::{Actor, AuditRecord, AuditResult};
use crate::auth::{Authenticator, Decision, ValidateRequest};
use crate::context::Context;
use crate::error::CoreError;
use crate::model::{AccessRecord, TokenState, User};
use crate::realm::DirectoryVerdict;
use crate::store::{AuthAttempt, Verdict};

/// How long a portal user has, after the password, to enter the code.
/// Longer than a RADIUS challenge's default: people open the app first.
pub const CODE_STEP_TTL_SECONDS: u32 = 300;

/// What the first factor came to.
#[derive(Debug)]
pub enum FirstFactorOutcome {
    /// Right, and the user has no active token: registration comes next.
    Unregistered(Box<User>),
    /// Right, and the user is registered: the code comes next.
    Registered(Box<User>),
    /// Wrong, unknown, locked, disabled, or no first factor to check.
    Refused,
}

/// What a portal user sees once, at registration.
#[derive(Debug)]
pub struct Registration {
    pub enrollment: Enrollment,
    /// Empty when the policy disables backup codes.
    pub backup_codes: Vec<BackupCode>,
}

#[derive(Debug, Clone)]
pub struct Portal {
    ctx: Arc<Context>,
    admin: Admin,
    auth: Authenticator,
}

impl Portal {
    pub fn new(ctx: Arc<Context>, auth: Authenticator) -> Self {
        Portal { admin: Admin::new(ctx.clone()), ctx, auth }
    }

    /// Checks the first factor of `username` in `realm`: the local password,
    /// or the realm's directory chain for users without one. Users with no
    /// first factor at all cannot use the portal (anyone could register
    /// them). A wrong password counts toward the user's lock.
    pub async fn first_factor(
        &self,
        actor: &Actor,
        realm: &str,
        username: &str,
        password: Zeroizing<String>,
    ) -> Result<FirstFactorOutcome, CoreError> {
        let now = self.ctx.clock.now();
        let audit = AuditRecord::new(now, &self.ctx.node, actor, "portal.signin").target(
            if realm == crate::names::DEFAULT_REALM { username.to_string() } else { format!("{username}@{realm}") },
        );
        let user = match self.ctx.store.user_by_name(realm, username).await? {
            Some(u) if !u.disabled && u.lock.block(now).is_none() => u,
            other => {
                // Overload or not, the answer is a refusal already.
                let _ = self.ctx.hasher.verify(None, password).await;
                let why = if other.is_some() { "disabled_or_locked" } else { "unknown_user" };
                self.ctx.store.append_audit(audit.result(AuditResult::Reject, Some(why))).await?;
                return Ok(FirstFactorOutcome::Refused);
            }
        };
        let ok = if let Some(hash) = &user.password_hash {
            // Overload (`Busy`) is an error for the caller: not a failed attempt.
            self.ctx.hasher.verify(Some(hash.clone()), password).await?
        } else if self.ctx.directory.has_sources(realm) && !password.is_empty() {
            match self.ctx.directory.verify(realm, username, &password).await {
                DirectoryVerdict::Accepted { .. } => true,
                DirectoryVerdict::WrongPassword { .. } => false,
                _ => {
                    let rec = audit.result(AuditResult::Reject, Some("directory_refused"));
                    self.ctx.store.append_audit(rec).await?;
                    return Ok(FirstFactorOutcome::Refused);
                }
            }
        } else {
            // Overload or not, the answer is a refusal already.
            let _ = self.ctx.hasher.verify(None, password).await;
            self.ctx.store.append_audit(audit.result(AuditResult::Reject, Some("no_first_factor"))).await?;
            return Ok(FirstFactorOutcome::Refused);
        };
        if !ok {
            let attempt = AuthAttempt {
                user_id: user.id,
                access: AccessRecord { at: now, address: actor.address.clone(), client: actor.client.clone() },
                verdict: Verdict::Failed("wrong_password"),
                policy: self.ctx.store.policy().await?,
                audit,
            };
            self.ctx.store.commit_attempt(attempt).await?;
            return Ok(FirstFactorOutcome::Refused);
        }
        self.ctx.store.append_audit(audit.result(AuditResult::Ok, Some("first_factor_ok"))).await?;
        let tokens = self.ctx.store.tokens_for_user(&user.id).await?;
        Ok(if tokens.iter().any(|t| t.state == TokenState::Active) {
            FirstFactorOutcome::Registered(Box::new(user))
        } else {
            FirstFactorOutcome::Unregistered(Box::new(user))
        })
    }

    /// A new pending TOTP for an unregistered user (older pending ones from
    /// abandoned visits are removed first) and, if enabled, backup codes.
    pub async fn register(&self, actor: &Actor, user: &User) -> Result<Registration, CoreError> {
        for t in self.ctx.store.tokens_for_user(&user.id).await? {
            if t.state == TokenState::Pending && t.oob.is_none() {
                self.admin.delete_token(actor, &t).await?;
            }
        }
        let enrollment = self.admin.enroll_token(actor, user, OtpParams::default(), "self-service").await?;
        let backup_codes = if self.ctx.store.policy().await?.backup_codes_enabled {
            self.admin.regenerate_backup_codes(actor, user).await?
        } else {
            Vec::new()
        };
        Ok(Registration { enrollment, backup_codes })
    }

    /// Confirms the registration with a current code; true when the token is active.
    pub async fn confirm(&self, actor: &Actor, user: &User, code: &str) -> Result<bool, CoreError> {
        match self.admin.confirm_token(actor, user, code.trim()).await {
            Ok(_) => Ok(true),
            Err(CoreError::CodeMismatch) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// The ticket for a registered user's second step, made after
    /// [`Portal::first_factor`] said `Registered`: a sealed single-use
    /// challenge state, so the password is not kept between the steps.
    pub fn code_ticket(&self, user: &User) -> Vec<u8> {
        self.auth.challenge_state(user, CODE_STEP_TTL_SECONDS)
    }

    /// A registered user's second step: the code (or a backup code) with
    /// the ticket, decided by [`Authenticator::validate`] as the second step
    /// of a RADIUS challenge is, so lockout, replay and the audit log are
    /// the same. True when accepted.
    pub async fn sign_in(&self, actor: &Actor, user: &User, ticket: &[u8], code: &str) -> Result<bool, CoreError> {
        let req = ValidateRequest {
            username: user.username.clone(),
            realm: Some(user.realm.clone()),
            password: Zeroizing::new(code.trim().to_string()),
            state: Some(ticket.to_vec()),
            address: actor.address.clone(),
            client: actor.client.clone(),
            ..ValidateRequest::default()
        };
        Ok(self.auth.validate(req).await?.decision == Decision::Accept)
    }

    /// New backup codes for a signed-in user (the old set is void).
    pub async fn regenerate_backup_codes(&self, actor: &Actor, user: &User) -> Result<Vec<BackupCode>, CoreError> {
        self.admin.regenerate_backup_codes(actor, user).await
    }
}
