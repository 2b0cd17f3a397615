//! Web-console administrators (issue 7): accounts and their two-factor
//! sign-in (password, then the admin's own TOTP, enrolled at first sign-in).
//!
//! Shared by `tessera admin …` and the web console so both apply the same
//! rules and write the same audit records. Lockout follows the users'
//! policy (`lockout_threshold`, `auto_unlock_seconds`, `lockout_mode`) and is
//! counted in the store's serialised step ([`AdminStore::commit_admin_attempt`](crate::store::AdminStore::commit_admin_attempt)).
//! Nothing here touches sessions or HTTP: that is `server/src/http/ui`.

use std::sync::Arc;

use tessera_otp::{Code, OtpKind, OtpParams, OtpauthUri, Secret, TotpWindow};
use zeroize::Zeroizing;

use crate::audit::{Actor, AuditRecord, AuditResult};
use crate::context::Context;
use crate::error::CoreError;
use crate::keys::Purpose;
use crate::lockout::LockState;
use crate::model::{AdminAccount, AdminId};
use crate::password::check_password_rules;
use crate::store::{AdminAttempt, AdminChange, AdminVerdict, AuthOutcome};

/// What one sign-in step came to. Deliberately coarse: the web page says
/// only "refused" for every failure; the reason is in the audit log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignInStep {
    /// The password is right; the TOTP (or its enrollment) comes next.
    PasswordOk { admin: AdminId, enrolled: bool },
    /// Signed in.
    Accepted { admin: AdminId },
    /// Wrong credentials, unknown admin, locked or throttled.
    Refused,
}

/// A TOTP secret offered at first sign-in, not yet stored.
#[derive(Debug)]
pub struct AdminEnrollment {
    pub secret: Secret,
    pub uri: String,
}

#[derive(Debug, Clone)]
pub struct AdminAccounts {
    ctx: Arc<Context>,
}

/// The admins' TOTP parameters: what every authenticator app supports.
pub fn admin_otp_params() -> OtpParams {
    OtpParams::default()
}

impl AdminAccounts {
    pub fn new(ctx: Arc<Context>) -> Self {
        AdminAccounts { ctx }
    }

    fn audit(&self, actor: &Actor, action: &str, target: &str) -> AuditRecord {
        AuditRecord::new(self.ctx.clock.now(), &self.ctx.node, actor, action).target(target)
    }

    async fn refused<T>(&self, base: AuditRecord, err: CoreError) -> Result<T, CoreError> {
        if err.is_client_error() {
            let rec = base.result(AuditResult::Error, Some(&err.to_string()));
            if let Err(e) = self.ctx.store.append_audit(rec).await {
                tracing::warn!(error = %e, "could not record a refused admin action");
            }
        }
        Err(err)
    }

    pub async fn add(&self, actor: &Actor, name: &str, password: Zeroizing<String>) -> Result<AdminAccount, CoreError> {
        let base = self.audit(actor, "admin.add", name);
        if let Err(e) = crate::names::check_key_name(name).and_then(|_| Ok(check_password_rules(&password)?)) {
            return self.refused(base, e).await;
        }
        let hash = self.ctx.hasher.hash(password).await?;
        let admin = AdminAccount {
            id: AdminId::new_random(),
            name: name.to_string(),
            password_hash: hash,
            totp_secret: None,
            totp_floor: 0,
            lock: LockState::default(),
            created_at: self.ctx.clock.now(),
            last_login_at: None,
            last_login_from: None,
        };
        match self.ctx.store.create_admin(&admin, base.clone()).await {
            Ok(()) => Ok(admin),
            Err(e) => self.refused(base, e.into()).await,
        }
    }

    pub async fn find(&self, name: &str) -> Result<AdminAccount, CoreError> {
        self.ctx.store.admin_by_name(name).await?.ok_or_else(|| CoreError::NotFound(format!("admin `{name}`")))
    }

    pub async fn by_id(&self, id: AdminId) -> Result<Option<AdminAccount>, CoreError> {
        Ok(self.ctx.store.admin_by_id(&id).await?)
    }

    pub async fn list(&self) -> Result<Vec<AdminAccount>, CoreError> {
        Ok(self.ctx.store.list_admins().await?)
    }

    /// Forgets the admin's TOTP (enrolled again at next sign-in), unlocks,
    /// and sets a new password if one is given.
    pub async fn reset(&self, actor: &Actor, name: &str, password: Option<Zeroizing<String>>) -> Result<(), CoreError> {
        let base = self.audit(actor, "admin.reset", name);
        let admin = match self.find(name).await {
            Ok(a) => a,
            Err(e) => return self.refused(base, e).await,
        };
        let password_hash = match password {
            Some(p) => {
                if let Err(e) = check_password_rules(&p) {
                    return self.refused(base, e.into()).await;
                }
                Some(self.ctx.hasher.hash(p).await?)
            }
            None => None,
        };
        match self.ctx.store.update_admin(&admin.id, AdminChange::Reset { password_hash }, base.clone()).await {
            Ok(()) => Ok(()),
            Err(e) => self.refused(base, e.into()).await,
        }
    }

    pub async fn delete(&self, actor: &Actor, name: &str) -> Result<(), CoreError> {
        let base = self.audit(actor, "admin.delete", name);
        let admin = match self.find(name).await {
            Ok(a) => a,
            Err(e) => return self.refused(base, e).await,
        };
        match self.ctx.store.update_admin(&admin.id, AdminChange::Delete, base.clone()).await {
            Ok(()) => Ok(()),
            Err(e) => self.refused(base, e.into()).await,
        }
    }

    async fn attempt(
        &self,
        admin: &AdminAccount,
        from: &Actor,
        verdict: AdminVerdict,
    ) -> Result<AuthOutcome, CoreError> {
        let attempt = AdminAttempt {
            admin: admin.id,
            verdict,
            policy: self.ctx.store.policy().await?,
            at: self.ctx.clock.now(),
            from: from.address.clone(),
            audit: self.audit(from, "admin.signin", &admin.name),
        };
        Ok(self.ctx.store.commit_admin_attempt(attempt).await?)
    }

    /// First step: the password. A wrong one counts toward the lock; argon2
    /// runs for unknown names too, so timing does not tell which it was.
    pub async fn check_password(
        &self,
        from: &Actor,
        name: &str,
        password: Zeroizing<String>,
    ) -> Result<SignInStep, CoreError> {
        let admin = self.ctx.store.admin_by_name(name).await?;
        let Some(admin) = admin else {
            // Overload or not, the answer is a refusal already.
            let _ = self.ctx.hasher.verify(None, password).await;
            let rec = self.audit(from, "admin.signin", name).result(AuditResult::Reject, Some("unknown_admin"));
            self.ctx.store.append_audit(rec).await?;
            return Ok(SignInStep::Refused);
        };
        let now = self.ctx.clock.now();
        if admin.lock.block(now).is_some() {
            // Overload or not, the answer is a refusal already.
            let _ = self.ctx.hasher.verify(None, password).await;
            let rec = self.audit(from, "admin.signin", name).result(AuditResult::Reject, Some("locked"));
            self.ctx.store.append_audit(rec).await?;
            return Ok(SignInStep::Refused);
        }
        // Overload (`Busy`) is an error for the caller: not a failed attempt.
        if self.ctx.hasher.verify(Some(admin.password_hash.clone()), password).await? {
            return Ok(SignInStep::PasswordOk { admin: admin.id, enrolled: admin.enrolled() });
        }
        self.attempt(&admin, from, AdminVerdict::Failed("wrong_password")).await?;
        Ok(SignInStep::Refused)
    }

    fn match_step(&self, secret: &Secret, code: &str, floor: i64) -> Result<Option<i64>, CoreError> {
        let params = admin_otp_params();
        let OtpKind::Totp { period } = params.kind else {
            return Err(CoreError::Internal("admin TOTP parameters are not TOTP".into()));
        };
        let Ok(code) = Code::parse(code.trim(), params.digits) else {
            return Ok(None);
        };
        let now = self.ctx.clock.now().unix_seconds();
        let window = TotpWindow { min_step: floor, ..TotpWindow::new(now, 1) };
        Ok(tessera_otp::verify_totp(secret, params.algorithm, params.digits, period, &code, &window).map(|m| m.step))
    }

    /// Second step for an enrolled admin (after [`Self::check_password`]
    /// said `PasswordOk`): the current code of the admin's own TOTP.
    pub async fn check_totp(&self, from: &Actor, id: AdminId, code: &str) -> Result<SignInStep, CoreError> {
        let Some(admin) = self.ctx.store.admin_by_id(&id).await? else {
            return Ok(SignInStep::Refused);
        };
        let Some(sealed) = admin.totp_secret.as_deref() else {
            return Ok(SignInStep::Refused);
        };
        let plain = self
            .ctx
            .keys
            .open(Purpose::AdminTotp, &admin.id.to_string(), sealed)
            .map_err(|e| CoreError::Key { token: format!("admin:{}", admin.name), source: e })?;
        let secret = Secret::from_bytes(plain.to_vec()).map_err(|e| CoreError::Internal(e.to_string()))?;
        let verdict = match self.match_step(&secret, code, admin.totp_floor)? {
            Some(step) => AdminVerdict::Verified { step },
            None => AdminVerdict::Failed("wrong_code"),
        };
        Ok(match self.attempt(&admin, from, verdict).await? {
            AuthOutcome::Accepted => SignInStep::Accepted { admin: admin.id },
            _ => SignInStep::Refused,
        })
    }

    /// A fresh TOTP secret for an admin's first sign-in; nothing is stored
    /// until [`Self::finish_enrollment`] sees a current code for it.
    pub fn start_enrollment(&self, admin: &AdminAccount) -> Result<AdminEnrollment, CoreError> {
        let rng = self.ctx.random.clone();
        let secret = Secret::generate(tessera_otp::GENERATED_SECRET_LEN, &mut |b| rng.fill(b))
            .map_err(|e| CoreError::invalid("secret", e.to_string()))?;
        let uri = OtpauthUri {
            params: admin_otp_params(),
            secret: secret.clone(),
            account: format!("admin:{}", admin.name),
            issuer: Some(self.ctx.issuer.clone()),
            counter: None,
        }
        .to_string();
        Ok(AdminEnrollment { secret, uri })
    }

    /// Stores the enrolled TOTP if `code` is current for it; this completes
    /// the first sign-in. A wrong code counts toward the lock.
    pub async fn finish_enrollment(
        &self,
        from: &Actor,
        id: AdminId,
        secret: &Secret,
        code: &str,
    ) -> Result<SignInStep, CoreError> {
        let Some(admin) = self.ctx.store.admin_by_id(&id).await? else {
            return Ok(SignInStep::Refused);
        };
        if admin.enrolled() || admin.lock.block(self.ctx.clock.now()).is_some() {
            return Ok(SignInStep::Refused);
        }
        let Some(step) = self.match_step(secret, code, 0)? else {
            self.attempt(&admin, from, AdminVerdict::Failed("wrong_enrollment_code")).await?;
            return Ok(SignInStep::Refused);
        };
        let sealed =
            self.ctx.keys.seal(&*self.ctx.random, Purpose::AdminTotp, &admin.id.to_string(), secret.as_bytes());
        let base = self.audit(from, "admin.totp_enroll", &admin.name);
        let change =
            AdminChange::EnrollTotp { sealed, floor: step + 1, at: self.ctx.clock.now(), from: from.address.clone() };
        match self.ctx.store.update_admin(&admin.id, change, base).await {
            Ok(()) => Ok(SignInStep::Accepted { admin: admin.id }),
            Err(crate::store::StoreError::Conflict(_)) => Ok(SignInStep::Refused),
            Err(e) => Err(e.into()),
        }
    }
}
