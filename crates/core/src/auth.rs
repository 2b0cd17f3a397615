//! The authentication decision, shared by every door (REST validate, RADIUS,
//! the portal, `tessera check`).
//!
//! Reads a snapshot, verifies factors without side effects, then asks the
//! store to apply the attempt atomically; the store's answer is the decision.
//! What the caller learns is only accept / reject / challenge; the reason
//! (which factor, lock, replay) goes to the audit log.
//!
//! Nor may the time an answer takes tell more. Outside directory realms the
//! argon2 work of a login follows from the shape of its input alone, never
//! from what the store knows: a code-shaped input ([`code_shaped`]) costs
//! none, for anyone; any longer input costs exactly one verification — the
//! user's own hash for a user with a local password, a dummy one for an
//! unknown, locked, disabled or code-only user (`dummy_hash`), and never a
//! second one (`Checked::hashed`). Which is why no password may be
//! code-shaped ([`crate::password::check_password_rules`]). Where argon2 is
//! not spent, the smaller costs are evened out too: a code-shaped input is
//! checked as a code against the user's tokens also when the user is
//! locked or disabled, and against a token of nobody's when there is no
//! such user. (What the store does for an unknown user, no user row to
//! update, is for the store to even out.)

use std::sync::Arc;

use tessera_otp::{BACKUP_CODE_DIGITS, normalize_backup_code};
use zeroize::Zeroizing;

use crate::audit::{Actor, AuditRecord, AuditResult};
use crate::clock::Timestamp;
use crate::context::Context;
use crate::error::CoreError;
use crate::keys::{KeyError, Keyring, Purpose};
use crate::model::{AccessRecord, OobChannel, Token, TokenState, User, UserId};
use crate::names::{self, DEFAULT_REALM};
use crate::oob::{OobCode, OobMessage, OobSender, OobService, PendingMatch};
use crate::otp_match::{match_code, open_secret};
use crate::password::{MAX_PASSWORD_LEN, PasswordError, code_shaped};
use crate::policy::Policy;
use crate::realm::DirectoryVerdict;
use crate::store::{
    AuthAttempt, AuthOutcome, AuthenticateRequest, Authentication, BackupCodeState, Evaluation, Evaluator, Factor,
    REPLAYED_BACKUP_CODE, REPLAYED_CODE, Snapshot, StateTicket, Verdict,
};

/// Inputs longer than this are refused before any work: a password plus the
/// longest code, with room to spare.
pub const MAX_CREDENTIAL_LEN: usize = MAX_PASSWORD_LEN + 16;

/// The audit reason of a login refused because the password threads were
/// saturated (see [`PasswordError::Busy`]): not counted, never an accept.
pub const PASSWORD_CHECK_BUSY: &str = "password_check_busy";

/// The audit reason of a login that could not be decided because a token
/// secret it might have been for did not open (see [`CoreError::SecretUnreadable`]).
pub const SECRET_UNREADABLE: &str = "secret_unreadable";

/// Tokens whose secret did not open, so that each is logged once and not
/// at every login (a broken token on a busy node would flood the log). A
/// token that opens again is forgotten, so a second breakage is logged too.
#[derive(Debug, Default)]
pub struct UnreadableSecrets {
    logged: std::sync::Mutex<std::collections::HashSet<i64>>,
    /// Whether `logged` may be non-empty: the common case (nothing broken)
    /// then costs one relaxed load per opened secret instead of a lock.
    any: std::sync::atomic::AtomicBool,
}

impl UnreadableSecrets {
    /// Logs `token`'s failure unless it was logged already; whether it logged.
    fn failed(&self, token: &Token, error: &KeyError) -> bool {
        let mut logged = self.logged.lock().unwrap_or_else(|e| e.into_inner());
        let first = logged.insert(token.id.0);
        if first {
            self.any.store(true, std::sync::atomic::Ordering::Relaxed);
            // The serial and the key ids only: never the sealed bytes.
            tracing::error!(
                token = %token.serial,
                user_id = %token.user_id,
                error = %error,
                "token secret cannot be opened with this node's master key: its user's logins are answered \
                 `unavailable` (not counted) until it opens (logged once per token)"
            );
        }
        first
    }

    fn opened(&self, token: &Token) {
        if self.any.load(std::sync::atomic::Ordering::Relaxed) {
            let mut logged = self.logged.lock().unwrap_or_else(|e| e.into_inner());
            if logged.remove(&token.id.0) {
                tracing::info!(token = %token.serial, "token secret opens again");
            }
            if logged.is_empty() {
                self.any.store(false, std::sync::atomic::Ordering::Relaxed);
            }
        }
    }
}

#[derive(Debug, Default)]
pub struct ValidateRequest {
    /// As typed; `user@realm` selects a realm that exists.
    pub username: String,
    /// An explicit realm (REST `realm`); wins over `user@realm`.
    pub realm: Option<String>,
    /// The realm when the user names none (a RADIUS client's default realm).
    pub default_realm: Option<String>,
    /// `password + code`, or the code alone for users without a password.
    pub password: Zeroizing<String>,
    /// Challenge state from an earlier `challenge` answer (two-step logins):
    /// the opaque bytes as they were handed out.
    pub state: Option<Vec<u8>>,
    pub address: Option<String>,
    /// The relaying client: RADIUS client name, `rest`, `cli`, a browser.
    pub client: Option<String>,
    /// The RADIUS client's name, for `single_factor_clients`.
    pub radius_client: Option<String>,
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
    /// The user and realm the login was decided for (`user@realm` split).
    pub username: String,
    pub realm: String,
    /// Directory groups learnt while checking the first factor (for reply
    /// rules); local groups are not included.
    pub directory_groups: Vec<String>,
    /// With a reject: a message for the person logging in, when there is one
    /// worth giving (an email or SMS code could not be sent). RADIUS sends it
    /// as Reply-Message, REST as `message`.
    pub message: Option<String>,
    /// This attempt locked the user (for the lockout counter in metrics).
    pub locked_now: bool,
    /// A token secret was opened and matched the code: this node's key
    /// opens secrets (health reporting clears a `secret_unreadable` state on it).
    pub opened_secret: bool,
}

/// What the first factor said.
#[derive(Debug, Clone, PartialEq, Eq)]
enum FirstFactor {
    /// Right (or the user has none); directory groups if a directory said so.
    Ok { groups: Vec<String>, source: Option<String> },
    /// Wrong: counts toward lockout.
    Wrong(&'static str),
    /// Not decidable or refused by the directory (down, account locked
    /// there): refused without counting.
    Refused(&'static str),
}

impl FirstFactor {
    fn is_ok(&self) -> bool {
        matches!(self, FirstFactor::Ok { .. })
    }
}

/// One login's view of its user: what first factor they have.
#[derive(Debug, Clone, Copy)]
struct Subject<'a> {
    realm: &'a str,
    /// The realm's directory checks the password (users without a local one).
    directory: bool,
}

#[derive(Debug, Clone)]
pub struct Authenticator {
    ctx: Arc<Context>,
    /// Email and SMS codes; nothing is sent unless configured.
    oob: OobService,
    /// Shared by the clones of this authenticator (one per node).
    unreadable: Arc<UnreadableSecrets>,
    /// What an unknown user's code is checked against (module doc).
    nobody: Arc<NobodysToken>,
}

/// A token of nobody's: an unknown user's code-shaped login is checked
/// against it, so that it costs the AEAD open and HMACs a code-only user's
/// costs. Sealed under the key in use when first needed, and again after a
/// rotation (a secret under an old key would fail without the work).
#[derive(Debug, Default)]
struct NobodysToken(std::sync::Mutex<Option<Arc<Token>>>);

impl NobodysToken {
    fn get(&self, keys: &Keyring, rng: &dyn crate::random::Random, now: Timestamp) -> Arc<Token> {
        let mut slot = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(t) = &*slot
            && keys.is_current(&t.sealed_secret)
        {
            return t.clone();
        }
        let mut secret = Zeroizing::new([0u8; 20]);
        rng.fill(&mut *secret);
        let id = crate::model::TokenId(0);
        let token = Arc::new(Token {
            id,
            user_id: UserId(0),
            serial: String::new(),
            params: tessera_otp::OtpParams::default(),
            sealed_secret: keys.seal(rng, Purpose::OtpSecret, &id.to_string(), &*secret),
            counter: 0,
            drift: 0,
            state: TokenState::Active,
            description: String::new(),
            created_at: now,
            last_used_at: None,
            oob: None,
        });
        *slot = Some(token.clone());
        token
    }
}

/// A code that went out in the first step of a login.
#[derive(Debug)]
struct Sent {
    channel: OobChannel,
    address: String,
    expires_at: Timestamp,
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
        Authenticator { ctx, oob: OobService::disabled(), unreadable: Arc::default(), nobody: Arc::default() }
    }

    /// Sends email and SMS codes through `oob` (see [`crate::oob`]).
    pub fn with_oob(mut self, oob: OobService) -> Self {
        self.oob = oob;
        self
    }

    pub fn context(&self) -> &Arc<Context> {
        &self.ctx
    }

    /// A challenge state for `user`, as a first step answered with a
    /// challenge would hand out, valid for `ttl_seconds`. For a caller that
    /// has checked the first factor itself (the self-service portal): the
    /// second step then sends only the code with this state, so nobody has
    /// to keep the password in between. The state is sealed, bound to the
    /// user's realm and name, and usable once (the store records its nonce).
    pub fn challenge_state(&self, user: &crate::model::User, ttl_seconds: u32) -> Vec<u8> {
        let expires_at = self.ctx.clock.now().plus_seconds(i64::from(ttl_seconds));
        seal_state(&self.ctx.keys, &*self.ctx.random, &user.realm, &user.username, user.id, expires_at)
    }

    /// Decides one login. `Err` only for infrastructure failures (the store
    /// is down); callers must treat that as a refusal.
    pub async fn validate(&self, mut req: ValidateRequest) -> Result<Validation, CoreError> {
        let policy = self.ctx.store.policy().await?;
        let realm = self.resolve_realm(&mut req, &policy);
        self.validate_in(req, realm, policy, true).await
    }

    /// The realm of a login: explicit, `user@realm` for a realm that exists,
    /// the client's default, or the policy's default. Strips `@realm`.
    fn resolve_realm(&self, req: &mut ValidateRequest, policy: &Policy) -> String {
        if let Some(r) = &req.realm {
            return r.clone();
        }
        if let Some((name, r)) = req.username.rsplit_once('@')
            && !name.is_empty()
            && self.ctx.directory.knows_realm(r)
        {
            let realm = r.to_string();
            req.username.truncate(name.len());
            return realm;
        }
        req.default_realm.clone().unwrap_or_else(|| policy.default_realm.clone())
    }

    async fn validate_in(
        &self,
        req: ValidateRequest,
        realm: String,
        policy: Policy,
        may_provision: bool,
    ) -> Result<Validation, CoreError> {
        let ctx = &self.ctx;
        let now = ctx.clock.now();
        let actor = Actor::new("validate").with_address(req.address.clone()).with_client(req.client.clone());
        let audit = AuditRecord::new(now, &ctx.node, &actor, "validate").target(audit_target(&realm, &req.username));

        if names::check_username(&req.username).is_err()
            || names::check_realm(&realm).is_err()
            || req.password.len() > MAX_CREDENTIAL_LEN
        {
            return self.reject_early(audit, &realm, "malformed_request").await;
        }
        let subject = Subject { realm: &realm, directory: ctx.directory.has_sources(&realm) };
        // The argon2 work this login owes, from the input's shape alone (see
        // the module doc); a directory realm's directory does its own work.
        let no_password = code_shaped(&req.password);
        let owes_hash = !subject.directory && !no_password;
        // Second step of a challenge: the state must be ours, for this user,
        // fresh, and unused; then only the code is checked.
        let ticket = match &req.state {
            None => None,
            Some(bytes) => match open_state(&ctx.keys, &realm, &req.username, bytes) {
                Some(st) if now < st.expires_at => Some(st),
                Some(_) => return self.reject_early(audit, &realm, "state_expired").await,
                None => return self.reject_early(audit, &realm, "bad_state").await,
            },
        };
        let access = AccessRecord { at: now, address: req.address.clone(), client: req.client.clone() };
        // Users without a first factor (and second steps) are decided
        // entirely inside the store's serialised step (one round trip);
        // users with one need argon2 or a directory, which must not run
        // there, so their evaluation is deferred to here. Except a user with
        // a local password whose input is code-shaped: it holds no password
        // (none may look like a code), so the answer is that of a wrong
        // password, found here without argon2 and in the same one round
        // trip as everyone else's code-shaped input.
        let evaluate: Evaluator = {
            let keys = ctx.keys.clone();
            let input = req.password.clone();
            let policy = policy.clone();
            let expected_user = ticket.map(|t| t.user_id);
            let directory = subject.directory;
            let oob_enabled = policy.oob_enabled(&realm, &req.username);
            let sender = self.oob.sender.clone();
            let lookback = self.oob.settings.lookback_seconds();
            let unreadable = self.unreadable.clone();
            Box::new(move |snap: &dyn Snapshot| -> Evaluation {
                let user = snap.user();
                // A code-shaped input is checked as a code for every user,
                // refused ones too, so that a refusal takes no less time
                // (module doc). Pure: nothing happens with the result here.
                let as_code =
                    no_password.then(|| match_codes(&keys, &unreadable, snap.tokens(), &input, &policy, now, false));
                if user.disabled {
                    return Evaluation::Decided(Verdict::Refused("disabled"));
                }
                if user.lock.block(now).is_some() {
                    return Evaluation::Decided(Verdict::Refused("locked"));
                }
                // Here only the code counts: a second step, or a user without
                // a first factor (`first` is then right by definition), or a
                // password user whose input holds no password: the whole
                // input is read as the code, and the password is missing
                // (wrong: the verdicts are those `evaluate` gives for a wrong
                // one, so a right code alone reads `wrong_password`).
                let ok = FirstFactor::Ok { groups: Vec::new(), source: None };
                let first = match expected_user {
                    Some(id) if id != user.id => return Evaluation::Decided(Verdict::Refused("state_user_mismatch")),
                    Some(_) => ok,
                    None if user.password_hash.is_some() && no_password => FirstFactor::Wrong("wrong_password"),
                    None if user.password_hash.is_some() || directory => return Evaluation::Deferred,
                    None => ok,
                };
                let mut codes = match as_code {
                    Some(codes) => codes,
                    None => match_codes(&keys, &unreadable, snap.tokens(), &input, &policy, now, false),
                };
                if let Some((factor, _)) = codes.matched {
                    return Evaluation::Decided(with_first_factor(&first, Verdict::Verified(factor)));
                }
                if let Some((digest, _)) = backup_candidate(&keys, user, &input, &policy, false) {
                    match snap.backup_code(&digest) {
                        Ok(Some(BackupCodeState::Unused)) if backup_codes_active(user) => {
                            let verified = Verdict::Verified(Factor::BackupCode { digest });
                            return Evaluation::Decided(with_first_factor(&first, verified));
                        }
                        Ok(Some(BackupCodeState::Unused)) if !first.is_ok() => {
                            return Evaluation::Decided(with_first_factor(&first, Verdict::Refused("no_active_token")));
                        }
                        // Not yet: ends below as `no_active_token` (not counted).
                        Ok(Some(BackupCodeState::Unused)) => {}
                        // Used, after a wrong password: no replay, just wrong.
                        Ok(Some(BackupCodeState::Used)) if !first.is_ok() => {}
                        Ok(Some(BackupCodeState::Used)) => codes.replayed = Some(REPLAYED_BACKUP_CODE),
                        Ok(None) => {}
                        // Let the engine retry outside, where the error can be reported.
                        Err(_) => return Evaluation::Deferred,
                    }
                }
                let usable = usable_oob(oob_enabled, &*sender, snap.tokens());
                if !usable.is_empty() {
                    codes.no_active_token = false;
                    let rows = match snap.oob_codes(now.plus_seconds(-lookback)) {
                        Ok(rows) => rows,
                        Err(_) => return Evaluation::Deferred,
                    };
                    let check = check_oob(&keys, snap.tokens(), &usable, &rows, &input, &policy, now, false);
                    if let Some((factor, _)) = check.matched {
                        return Evaluation::Decided(with_first_factor(&first, Verdict::Verified(factor)));
                    }
                    codes.absorb(check);
                }
                // Fail closed: the code may have been right for the token
                // that did not open. Not a counted failure.
                if codes.unreadable {
                    return Evaluation::Decided(Verdict::Refused(SECRET_UNREADABLE));
                }
                Evaluation::Decided(codes.failure(&first))
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
        let mut directory_groups = Vec::new();
        let mut sent_code: Option<Sent> = None;
        let (user_id, verdict, outcome) = match ctx.store.authenticate(request).await? {
            Authentication::UnknownUser => {
                if may_provision && subject.directory && ctx.directory.auto_provision(&realm) && ticket.is_none() {
                    return self.provision(req, realm, policy).await;
                }
                if !subject.directory && no_password {
                    let nobody = self.nobody.get(&ctx.keys, &*ctx.random, now);
                    // Never logged: this token is nobody's.
                    let quiet = UnreadableSecrets::default();
                    let _ = match_codes(
                        &ctx.keys,
                        &quiet,
                        std::slice::from_ref(&*nobody),
                        &req.password,
                        &policy,
                        now,
                        false,
                    );
                }
                self.dummy_hash(owes_hash, &req.password).await;
                return Ok(Validation {
                    decision: Decision::Reject,
                    reason: "unknown_user".into(),
                    user_id: None,
                    username: req.username,
                    realm,
                    directory_groups,
                    message: None,
                    locked_now: false,
                    opened_secret: false,
                });
            }
            Authentication::Decided { user_id, verdict, outcome } => {
                // Locked, disabled, code-only: decided without a password.
                self.dummy_hash(owes_hash, &req.password).await;
                (user_id, verdict, outcome)
            }
            Authentication::Deferred { user, tokens } => {
                let mut note = None;
                let mut checked = Checked::default();
                let (verdict, context) = if user.disabled {
                    (Verdict::Refused("disabled"), None)
                } else if user.lock.block(now).is_some() {
                    (Verdict::Refused("locked"), None)
                } else {
                    let login = Login {
                        user: &user,
                        subject,
                        tokens: &tokens,
                        input: &req.password,
                        policy: &policy,
                        now,
                        radius_client: req.radius_client.as_deref(),
                    };
                    let (mut verdict, first) = self.evaluate(&login, &mut checked).await?;
                    // First step with an email/SMS token: send the code now,
                    // before the challenge is recorded; if it cannot go out,
                    // the login is refused (not counted) and says so.
                    if verdict == Verdict::Challenge
                        && let Some(result) = self.send_code(&login).await?
                    {
                        match result {
                            Ok((sent, detail)) => {
                                note = Some(detail);
                                sent_code = Some(sent);
                            }
                            Err((reason, detail)) => {
                                verdict = Verdict::Refused(reason);
                                note = Some(detail);
                            }
                        }
                    }
                    match first {
                        Some(FirstFactor::Ok { groups, source }) => {
                            directory_groups = groups;
                            (verdict, source)
                        }
                        _ => (verdict, None),
                    }
                };
                // Refused before the password was looked at (locked meanwhile,
                // a secret that did not open): the work is owed all the same.
                self.dummy_hash(owes_hash && !checked.hashed, &req.password).await;
                let context = match (context, note) {
                    (Some(c), Some(n)) => Some(format!("{c}; {n}")),
                    (c, n) => c.or(n),
                };
                let mut audit = audit;
                audit.reason = context;
                let attempt =
                    AuthAttempt { user_id: user.id, access, verdict: verdict.clone(), policy: policy.clone(), audit };
                let outcome = ctx.store.commit_attempt(attempt).await?;
                (user.id, verdict, outcome)
            }
        };
        // Recorded (audited, not counted) by the store; the caller answers
        // `unavailable` so the client retries or fails over to a node
        // whose key opens the secret.
        if outcome == AuthOutcome::Refused && verdict == Verdict::Refused(SECRET_UNREADABLE) {
            return Err(CoreError::SecretUnreadable);
        }
        let opened_secret = matches!(&verdict, Verdict::Verified(f) if matches!(f.base(), Factor::Token { .. }));
        let mut finished = AuditRecord::new(now, "", &actor, "");
        crate::store::finish_attempt_audit(&mut finished, &verdict, &outcome);
        let mut message = None;
        let locked_now = matches!(outcome, AuthOutcome::Failed { locked: true, .. });
        let decision = match outcome {
            AuthOutcome::Accepted => Decision::Accept,
            AuthOutcome::Challenged => {
                let mut expires_at = now.plus_seconds(i64::from(policy.challenge_ttl_seconds));
                let mut prompt = policy.challenge_message.clone();
                if let Some(sent) = &sent_code {
                    // The state lives at least as long as the code it asks for.
                    expires_at = expires_at.max(sent.expires_at);
                    prompt = self.oob.prompt(sent.channel, &sent.address);
                }
                Decision::Challenge {
                    state: seal_state(&ctx.keys, &*ctx.random, &realm, &req.username, user_id, expires_at),
                    message: prompt,
                }
            }
            AuthOutcome::Refused => {
                if matches!(verdict, Verdict::Refused(r) if r.starts_with("oob_")) {
                    message = Some(self.oob.settings.failure_message.clone());
                }
                Decision::Reject
            }
            _ => Decision::Reject,
        };
        Ok(Validation {
            decision,
            reason: finished.reason.unwrap_or_default(),
            user_id: Some(user_id),
            username: req.username,
            realm,
            directory_groups,
            message,
            locked_now,
            opened_secret,
        })
    }

    /// One dummy argon2 verification when `owed` (see the module doc). Its
    /// answer is ignored, a refusal for overload too: the login is decided.
    async fn dummy_hash(&self, owed: bool, input: &Zeroizing<String>) {
        if owed {
            let _ = self.ctx.hasher.verify(None, input.clone()).await;
        }
    }

    async fn reject_early(
        &self,
        audit: AuditRecord,
        realm: &str,
        reason: &'static str,
    ) -> Result<Validation, CoreError> {
        let username = audit.target.clone().unwrap_or_default();
        self.ctx.store.append_audit(audit.result(AuditResult::Reject, Some(reason))).await?;
        Ok(Validation {
            decision: Decision::Reject,
            reason: reason.into(),
            user_id: None,
            username,
            realm: realm.to_string(),
            directory_groups: Vec::new(),
            message: None,
            locked_now: false,
            opened_secret: false,
        })
    }

    /// First directory login of a user tessera does not know yet: create
    /// them (unregistered) once the directory accepts the password, then
    /// decide the login as theirs (only a grace login or a single-factor
    /// exception can let a user without a token in). The whole input is the
    /// password: such a user has no code to append.
    async fn provision(&self, req: ValidateRequest, realm: String, policy: Policy) -> Result<Validation, CoreError> {
        let ctx = &self.ctx;
        let now = ctx.clock.now();
        let actor = Actor::new("validate").with_address(req.address.clone()).with_client(req.client.clone());
        let audit = AuditRecord::new(now, &ctx.node, &actor, "validate").target(audit_target(&realm, &req.username));
        if req.password.is_empty() {
            return self.reject_early(audit, &realm, "unknown_user").await;
        }
        match ctx.directory.verify(&realm, &req.username, &req.password).await {
            DirectoryVerdict::Accepted { source, .. } => {
                let user = User::new(&realm, &req.username, None, now);
                let created = AuditRecord::new(now, &ctx.node, &Actor::new("auto-provision"), "user.add")
                    .target(audit_target(&realm, &req.username))
                    .result(AuditResult::Ok, Some(&format!("first login through {source}")));
                match ctx.store.create_user(&user, created).await {
                    // A concurrent first login created them first: fine.
                    Ok(()) | Err(crate::store::StoreError::Conflict(_)) => {}
                    Err(e) => return Err(e.into()),
                }
                Box::pin(self.validate_in(req, realm, policy, false)).await
            }
            DirectoryVerdict::WrongPassword { reason }
            | DirectoryVerdict::UnknownUser { reason }
            | DirectoryVerdict::Refused { reason }
            | DirectoryVerdict::Unavailable { reason } => {
                self.reject_early(audit, &realm, if reason.is_empty() { "unknown_user" } else { reason }).await
            }
        }
    }

    /// Verifies the factors of a user with a first factor against the
    /// snapshot. No state changes here. Returns the verdict and the first
    /// factor's answer when one was obtained (for groups and the audit).
    ///
    /// Each distinct password candidate is checked at most once, and the
    /// likely one first (`password` + code), because with a directory every
    /// wrong candidate is a failed bind that counts toward the directory's
    /// own lockout.
    ///
    /// A local password is checked for one candidate only (`first_factor`
    /// answers later ones wrong unchecked), so that the argon2 work does not
    /// depend on the user (module doc). Hence the order: the password before
    /// a code that matched; else, for a single-factor exception, the whole
    /// input; else the password before something shaped like a code (digits
    /// of a token's length: a wrong or expired code then reads as
    /// `wrong_code`); else the whole input (a challenge's first step, a grace
    /// login). A password that itself ends in a code's length of digits is
    /// so read as password + code: alone it gets no challenge; sent with the
    /// code in one step it works.
    async fn evaluate(
        &self,
        login: &Login<'_>,
        checked: &mut Checked,
    ) -> Result<(Verdict, Option<FirstFactor>), CoreError> {
        let ctx = &self.ctx;
        let Login { user, tokens, input, policy, .. } = *login;
        let local = user.password_hash.is_some();
        let single_factor = self.single_factor_applies(login).await;
        // 0. A single-factor exception: the whole input is the password.
        // (With a local password only once no code matched, below.)
        if single_factor && !local {
            let ff = self.first_factor(login, input, checked).await;
            if ff.is_ok() {
                return Ok((Verdict::Verified(Factor::FirstFactorOnly), Some(ff)));
            }
        }
        // 1. Token codes: cheap, so try them first.
        let mut codes = match_codes(&ctx.keys, &self.unreadable, tokens, input, policy, login.now, true);
        if let Some((factor, password)) = &codes.matched {
            let ff = self.first_factor(login, password, checked).await;
            return Ok((with_first_factor(&ff, Verdict::Verified(factor.clone())), Some(ff)));
        }
        // 2. Backup codes: a keyed digest lookup, then the password.
        if let Some((digest, password)) = backup_candidate(&ctx.keys, user, input, policy, true) {
            match ctx.store.backup_code(&user.id, &digest).await? {
                Some(BackupCodeState::Unused) => {
                    let ff = self.first_factor(login, password, checked).await;
                    let verdict = if backup_codes_active(user) {
                        Verdict::Verified(Factor::BackupCode { digest })
                    } else {
                        Verdict::Refused("no_active_token")
                    };
                    return Ok((with_first_factor(&ff, verdict), Some(ff)));
                }
                // Used already: a replay if the password before it is right
                // (not counted); else on to the other readings below.
                Some(BackupCodeState::Used) => {
                    let ff = self.first_factor(login, password, checked).await;
                    if ff.is_ok() {
                        return Ok((Verdict::Replayed(REPLAYED_BACKUP_CODE), Some(ff)));
                    }
                }
                None => {}
            }
        }
        // 2b. A code sent by email or SMS: the user's recent codes, then the password.
        let usable = self.usable_oob(login);
        if !usable.is_empty() {
            codes.no_active_token = false;
            let since = login.now.plus_seconds(-self.oob.settings.lookback_seconds());
            let rows = ctx.store.oob_codes(&user.id, since).await?;
            let check = check_oob(&ctx.keys, tokens, &usable, &rows, input, policy, login.now, true);
            if let Some((factor, password)) = check.matched {
                let ff = self.first_factor(login, password, checked).await;
                return Ok((with_first_factor(&ff, Verdict::Verified(factor)), Some(ff)));
            }
            codes.absorb(check);
        }
        if single_factor && local {
            let ff = self.first_factor(login, input, checked).await;
            if ff.is_ok() {
                return Ok((Verdict::Verified(Factor::FirstFactorOnly), Some(ff)));
            }
        }
        // Fail closed before the password is looked at: the code may have
        // been right for the token that did not open, and telling a right
        // password from a wrong one here would make this an oracle.
        if codes.unreadable {
            return Ok((Verdict::Refused(SECRET_UNREADABLE), None));
        }
        // 3. No code matched. Was the password part right (then the code was
        //    wrong)? Then: is the whole input the password, for a second step
        //    or a grace login?
        if let Some(password) = codes.first_password {
            let ff = self.first_factor(login, password, checked).await;
            if ff.is_ok() || matches!(ff, FirstFactor::Refused(_)) {
                return Ok((codes.failure(&ff), Some(ff)));
            }
        }
        let grace = codes.no_active_token && grace_allows(user, policy, login.now);
        // A user who gets codes by email or SMS is asked for one even when
        // challenges are off: the first step is how the code is requested.
        let challenge = (policy.challenge_response || !usable.is_empty()) && !codes.no_active_token;
        let ff = if grace || challenge || codes.first_password.is_none() {
            self.first_factor(login, input, checked).await
        } else {
            checked.last.clone().unwrap_or(FirstFactor::Wrong("wrong_password"))
        };
        if ff.is_ok() {
            if grace {
                let limit = (policy.grace_logins > 0).then_some(policy.grace_logins);
                return Ok((Verdict::Verified(Factor::Grace { limit }), Some(ff)));
            }
            if challenge {
                return Ok((Verdict::Challenge, Some(ff)));
            }
        }
        // 4. Nothing matched. If every candidate was wrong, report the
        //    first (the password part, when the input had a code's shape).
        let ff = if ff.is_ok() { ff } else { checked.first.clone().unwrap_or(ff) };
        Ok((codes.failure(&ff), Some(ff)))
    }

    /// Checks `password` as the user's first factor: the local argon2 hash,
    /// else the realm's directory chain.
    async fn first_factor(&self, login: &Login<'_>, password: &str, checked: &mut Checked) -> FirstFactor {
        if let Some(ff) = checked.get(password) {
            return ff;
        }
        let ff = if login.user.password_hash.is_some() {
            // One candidate per login is hashed (see `evaluate`): a second
            // one is answered wrong unchecked, which can refuse a login but
            // never accept one.
            if password.is_empty() || checked.hashed {
                FirstFactor::Wrong("wrong_password")
            } else {
                checked.hashed = true;
                let pw = Zeroizing::new(password.to_string());
                match self.ctx.hasher.verify(login.user.password_hash.clone(), pw).await {
                    Ok(true) => FirstFactor::Ok { groups: Vec::new(), source: None },
                    Ok(false) => FirstFactor::Wrong("wrong_password"),
                    // Overload: neither right nor wrong, so not counted.
                    Err(PasswordError::Busy) => FirstFactor::Refused(PASSWORD_CHECK_BUSY),
                    Err(_) => FirstFactor::Wrong("wrong_password"),
                }
            }
        } else if login.subject.directory {
            // An empty password never reaches a directory (an empty LDAP
            // bind is an anonymous bind, which "succeeds").
            if password.is_empty() {
                FirstFactor::Wrong("wrong_password")
            } else {
                match self.ctx.directory.verify(login.subject.realm, &login.user.username, password).await {
                    DirectoryVerdict::Accepted { source, groups } => FirstFactor::Ok { groups, source: Some(source) },
                    DirectoryVerdict::WrongPassword { reason } | DirectoryVerdict::UnknownUser { reason } => {
                        FirstFactor::Wrong(reason)
                    }
                    DirectoryVerdict::Refused { reason } | DirectoryVerdict::Unavailable { reason } => {
                        FirstFactor::Refused(reason)
                    }
                }
            }
        } else {
            FirstFactor::Ok { groups: Vec::new(), source: None }
        };
        checked.put(password, ff.clone());
        ff
    }

    /// The user's email and SMS tokens that codes may be sent to now.
    fn usable_oob<'t>(&self, login: &Login<'t>) -> Vec<&'t Token> {
        let enabled = login.policy.oob_enabled(login.subject.realm, &login.user.username);
        usable_oob(enabled, &*self.oob.sender, login.tokens)
    }

    /// Sends a code to the user's first usable email or SMS token. `None`
    /// when they have none; else what went out (and a note for the audit
    /// record), or why nothing did (a `Refused` reason and the detail).
    /// The code itself goes only to the sender: never to a log or the audit.
    async fn send_code(
        &self,
        login: &Login<'_>,
    ) -> Result<Option<Result<(Sent, String), (&'static str, String)>>, CoreError> {
        let Some(token) = self.usable_oob(login).into_iter().next() else { return Ok(None) };
        let Some(target) = &token.oob else { return Ok(None) };
        let (channel, serial, now) = (target.channel.as_str(), &token.serial, login.now);
        let settings = &self.oob.settings;
        if !self.oob.limiter().try_acquire(now) {
            tracing::warn!(limit = settings.global_per_minute, "email/SMS codes: this node's per-minute limit reached");
            return Ok(Some(Err((
                "oob_global_rate_limited",
                format!("{channel} token {serial}: this node's limit of {} codes a minute", settings.global_per_minute),
            ))));
        }
        let secret = match open_secret(&self.ctx.keys, token) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(token = %serial, error = %e, "token secret cannot be opened; no code sent");
                return Ok(Some(Err(("oob_token_unusable", format!("{channel} token {serial}: {e}")))));
            }
        };
        let code = crate::oob::generate_code(&*self.ctx.random, token.params.digits.get());
        let id = crate::model::TokenId::new_random().0;
        let row = OobCode {
            id,
            user_id: login.user.id,
            token_id: token.id,
            digest: crate::oob::code_digest(secret.as_bytes(), id, &code),
            created_at: now,
            expires_at: now.plus_seconds(i64::from(settings.ttl_seconds)),
            attempts: 0,
            used_at: None,
        };
        let since = now.plus_seconds(-i64::from(settings.user_window_seconds));
        if !self.ctx.store.reserve_oob_code(&row, since, settings.user_limit).await? {
            return Ok(Some(Err((
                "oob_rate_limited",
                format!(
                    "{channel} token {serial}: {} codes in {} s already sent",
                    settings.user_limit, settings.user_window_seconds
                ),
            ))));
        }
        let message = OobMessage {
            channel: target.channel,
            to: &target.address,
            code: &code,
            ttl_seconds: settings.ttl_seconds,
            username: &login.user.username,
        };
        match self.oob.sender.send(&message).await {
            Ok(()) => Ok(Some(Ok((
                Sent { channel: target.channel, address: target.address.clone(), expires_at: row.expires_at },
                format!("{channel} code sent to token {serial}"),
            )))),
            Err(e) => {
                tracing::warn!(user = %login.user.username, token = %serial, error = %e, "email/SMS code could not be sent");
                Ok(Some(Err(("oob_delivery_failed", format!("{channel} token {serial}: {e}")))))
            }
        }
    }

    /// Whether policy lets this login through on the first factor alone.
    async fn single_factor_applies(&self, login: &Login<'_>) -> bool {
        let p = login.policy;
        if p.single_factor_user(login.subject.realm, &login.user.username) {
            return true;
        }
        if let Some(client) = login.radius_client
            && p.single_factor_clients.iter().any(|c| c == client)
        {
            return true;
        }
        if p.single_factor_groups.is_empty() {
            return false;
        }
        let mut groups = self.ctx.store.groups_of(login.user.id).await.unwrap_or_default();
        if login.subject.directory {
            groups.extend(self.ctx.directory.groups(login.subject.realm, &login.user.username).await);
        }
        groups.iter().any(|g| p.single_factor_groups.contains(g))
    }
}

/// Everything `evaluate` needs about one login.
#[derive(Clone, Copy)]
struct Login<'a> {
    user: &'a User,
    subject: Subject<'a>,
    tokens: &'a [Token],
    input: &'a Zeroizing<String>,
    policy: &'a Policy,
    now: Timestamp,
    radius_client: Option<&'a str>,
}

/// First-factor answers already obtained in this login, by candidate.
#[derive(Default)]
struct Checked {
    seen: Vec<(Zeroizing<String>, FirstFactor)>,
    first: Option<FirstFactor>,
    last: Option<FirstFactor>,
    /// A local password hash was verified (the one this login may cost).
    hashed: bool,
}

impl Checked {
    fn get(&self, password: &str) -> Option<FirstFactor> {
        self.seen.iter().find(|(p, _)| p.as_str() == password).map(|(_, f)| f.clone())
    }
    fn put(&mut self, password: &str, ff: FirstFactor) {
        self.first.get_or_insert_with(|| ff.clone());
        self.last = Some(ff.clone());
        self.seen.push((Zeroizing::new(password.to_string()), ff));
    }
}

fn with_first_factor(ff: &FirstFactor, verified: Verdict) -> Verdict {
    match ff {
        FirstFactor::Ok { .. } => verified,
        FirstFactor::Wrong(r) => Verdict::Failed(r),
        FirstFactor::Refused(r) => Verdict::Refused(r),
    }
}

/// Whether the grace policy still lets this user in without a token.
fn grace_allows(user: &User, policy: &Policy, now: Timestamp) -> bool {
    policy.grace_for(user.grace_used, user.created_at).is_some_and(|g| g.allows(now))
}

/// Whether the code part of a split could be a code at all (they are
/// digits): only then is the part before it a likely password. Else the
/// input is more likely a password alone (and with a directory, each
/// unlikely candidate would cost a failed bind).
fn looks_like_code(code: &str) -> bool {
    code.bytes().all(|b| b.is_ascii_digit())
}

/// The result of checking the submitted string against the user's tokens.
struct CodeCheck<'a> {
    /// The factor that matched, and the password part before its code.
    matched: Option<(Factor, &'a str)>,
    /// The password part of the first plausible split (one whose code part
    /// is digits), for the failure path.
    first_password: Option<&'a str>,
    no_active_token: bool,
    /// A code that was valid but is used already: the audit reason to give.
    replayed: Option<&'static str>,
    /// An email/SMS code that matched but no longer works (expired, worn out).
    stale: Option<&'static str>,
    /// A token the code could have been for has a secret that did not open.
    unreadable: bool,
}

impl<'a> CodeCheck<'a> {
    /// Takes in what the email/SMS codes said (when none matched).
    fn absorb(&mut self, oob: CodeCheck<'a>) {
        if let Some(p) = oob.first_password {
            self.first_password.get_or_insert(p);
        }
        self.replayed = self.replayed.or(oob.replayed);
        self.stale = self.stale.or(oob.stale);
        self.unreadable |= oob.unreadable;
    }

    /// The verdict when no code matched, given what the first factor said.
    fn failure(&self, first: &FirstFactor) -> Verdict {
        match first {
            FirstFactor::Refused(r) => Verdict::Refused(r),
            FirstFactor::Ok { .. } if self.no_active_token => Verdict::Refused("no_active_token"),
            FirstFactor::Ok { .. } if let Some(r) = self.replayed => Verdict::Replayed(r),
            FirstFactor::Ok { .. } if self.stale.is_some() => Verdict::Failed(self.stale.unwrap_or("wrong_code")),
            FirstFactor::Ok { .. } => Verdict::Failed("wrong_code"),
            FirstFactor::Wrong("wrong_password") if !self.no_active_token => Verdict::Failed("wrong_password_and_code"),
            FirstFactor::Wrong(r) => Verdict::Failed(r),
        }
    }
}

/// Checks every active token's code against the end of `input`. Pure and
/// quick (an AEAD open and a few HMACs per token).
fn match_codes<'a>(
    keys: &Keyring,
    unreadable: &UnreadableSecrets,
    tokens: &[Token],
    input: &'a str,
    policy: &Policy,
    now: crate::clock::Timestamp,
    has_password: bool,
) -> CodeCheck<'a> {
    let mut check = CodeCheck {
        matched: None,
        first_password: None,
        no_active_token: true,
        replayed: None,
        stale: None,
        unreadable: false,
    };
    // Email and SMS tokens have no codes of their own (see `check_oob`).
    for token in tokens.iter().filter(|t| t.state == TokenState::Active && t.oob.is_none()) {
        check.no_active_token = false;
        let Some(split) = split_code(input, token.params.digits.get() as usize, has_password, policy.code_first) else {
            continue;
        };
        if looks_like_code(split.code) {
            check.first_password.get_or_insert(split.password);
        }
        let secret = match open_secret(keys, token) {
            Ok(s) => {
                unreadable.opened(token);
                s
            }
            Err(e) => {
                unreadable.failed(token, &e);
                check.unreadable = true;
                continue;
            }
        };
        if let Some(m) = match_code(&secret, token, split.code, policy, now) {
            let factor = Factor::Token { token_id: token.id, matched: m.matched, drift: m.drift };
            check.matched = Some((factor, split.password));
            return check;
        }
        if is_replay(&secret, token, split.code, policy, now) {
            check.replayed = Some(REPLAYED_CODE);
        }
    }
    check
}

/// The email/SMS tokens of a user that codes go to: active, enabled for the
/// user by policy, and with a channel this node can send through.
fn usable_oob<'t>(enabled: bool, sender: &dyn OobSender, tokens: &'t [Token]) -> Vec<&'t Token> {
    if !enabled {
        return Vec::new();
    }
    crate::oob::oob_tokens(tokens).filter(|t| t.oob.as_ref().is_some_and(|o| sender.available(o.channel))).collect()
}

/// Checks the end of `input` (or all of it) against the user's recent
/// email/SMS codes (`rows`), for each code length of the `usable` tokens.
#[allow(clippy::too_many_arguments)]
fn check_oob<'a>(
    keys: &Keyring,
    tokens: &[Token],
    usable: &[&Token],
    rows: &[OobCode],
    input: &'a str,
    policy: &Policy,
    now: Timestamp,
    has_password: bool,
) -> CodeCheck<'a> {
    let mut check = CodeCheck {
        matched: None,
        first_password: None,
        no_active_token: false,
        replayed: None,
        stale: None,
        unreadable: false,
    };
    let mut lengths: Vec<usize> = usable.iter().map(|t| t.params.digits.get() as usize).collect();
    lengths.sort_unstable();
    lengths.dedup();
    for len in lengths {
        let Some(split) = split_code(input, len, has_password, policy.code_first) else { continue };
        if looks_like_code(split.code) {
            check.first_password.get_or_insert(split.password);
        }
        match crate::oob::match_pending(keys, tokens, rows, split.code, now) {
            PendingMatch::Live { id, channel } => {
                check.matched = Some((Factor::OobCode { id, channel }, split.password));
                return check;
            }
            PendingMatch::Used => check.replayed = Some(REPLAYED_CODE),
            PendingMatch::Unreadable => check.unreadable = true,
            m => check.stale = check.stale.or(m.failure_reason()),
        }
    }
    check
}

/// Whether the user's backup codes work now. They stand in for a confirmed
/// token's code: until the user has one (is registered) there is nothing to
/// stand in for, so codes issued at enrolment (the portal's, or
/// `backup-codes` before `token confirm`) work once a token is confirmed
/// (issue 15). Kept, not voided: the user was shown them once.
fn backup_codes_active(user: &User) -> bool {
    user.registered
}

/// The digest of the backup code `input` may end with (or be), and the
/// password part before it.
fn backup_candidate<'a>(
    keys: &Keyring,
    user: &User,
    input: &'a str,
    policy: &Policy,
    has_password: bool,
) -> Option<([u8; 32], &'a str)> {
    if !policy.backup_codes_enabled {
        return None;
    }
    let split = if has_password {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{TokenId, TokenState};

    fn token(id: i64) -> Token {
        Token {
            id: TokenId(id),
            user_id: UserId(1),
            serial: format!("T-{id}"),
            params: tessera_otp::OtpParams::default(),
            sealed_secret: vec![1, 2, 3],
            counter: 0,
            drift: 0,
            state: TokenState::Active,
            description: String::new(),
            created_at: Timestamp(0),
            last_used_at: None,
            oob: None,
        }
    }

    #[test]
    fn an_unreadable_secret_is_logged_once_per_token_until_it_opens_again() {
        let u = UnreadableSecrets::default();
        let (a, b) = (token(1), token(2));
        assert!(u.failed(&a, &KeyError::Corrupt));
        assert!(!u.failed(&a, &KeyError::Corrupt), "the second login is not logged");
        assert!(u.failed(&b, &KeyError::Corrupt), "another token is");
        u.opened(&a);
        assert!(u.failed(&a, &KeyError::Corrupt), "broken again after opening: logged again");
        u.opened(&a);
        u.opened(&b);
        assert!(!u.any.load(std::sync::atomic::Ordering::Relaxed), "nothing left: the cheap path again");
    }
}
