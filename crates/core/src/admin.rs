//! Administrative operations, shared by the CLI and the REST API so both
//! enforce the same rules and write the same audit records.

use std::collections::BTreeMap;
use std::sync::Arc;

use sha2::{Digest, Sha256};
use tessera_otp::{Algorithm, BackupCode, OtpKind, OtpParams, OtpauthUri, Secret};
use zeroize::Zeroizing;

use crate::audit::{Actor, AuditQuery, AuditRecord, AuditResult};
use crate::cidr::Cidr;
use crate::clock::Timestamp;
use crate::context::Context;
use crate::error::CoreError;
use crate::keys::Purpose;
use crate::model::{
    ApiKey, InventoryToken, MessageAuthenticatorMode, RadiusClient, ReplyRule, RuleScope, SecretRotation, SecretSlot,
    Token, TokenId, TokenState, User, UserId,
};
use crate::names::{self, DEFAULT_REALM};
use crate::otp_match::{ResyncRefusal, match_code, open_secret, resync_match};
use crate::password::check_password_rules;
use crate::policy::Policy;
use crate::realm::{Realm, RealmSecrets, RealmSettings};
use crate::store::{InventoryQuery, UserChange, UserQuery};

/// Largest page an admin listing returns.
pub const MAX_LIST_LIMIT: u32 = 10_000;
pub const DEFAULT_LIST_LIMIT: u32 = 100;
const API_KEY_PREFIX: &str = "tsk_";
/// RFC 2865 asks for secrets "at least 16 octets"; we accept 8 for old gear
/// that cannot take more, and refuse shorter ones outright.
pub const MIN_RADIUS_SECRET_LEN: usize = 8;
pub const MAX_RADIUS_SECRET_LEN: usize = 128;
/// The longest overlap of a RADIUS secret rotation (`--keep-old-for`):
/// the old secret is a second key to the same door; it must not stay one.
pub const MAX_SECRET_OVERLAP_SECONDS: i64 = 30 * 86_400;

/// A freshly enrolled token and what to show the user once.
#[derive(Debug)]
pub struct Enrollment {
    pub token: Token,
    pub secret: Secret,
    pub uri: String,
}

/// What `set_radius_client_secret` did.
#[derive(Debug)]
pub struct SecretChange {
    /// The client as stored now.
    pub client: RadiusClient,
    /// A previous change's overlap that was still running and ended now:
    /// when it would have ended.
    pub previous_overlap_ended: Option<Timestamp>,
}

/// The fields `edit_radius_client` changes; `None` leaves one as it is.
#[derive(Debug, Clone, Default)]
pub struct RadiusClientEdit {
    pub address: Option<String>,
    pub message_authenticator: Option<MessageAuthenticatorMode>,
    /// `Some(None)` clears it (the policy's default realm applies).
    pub default_realm: Option<Option<String>>,
}

/// A seed to put into the inventory (from an importer).
#[derive(Debug)]
pub struct NewInventoryToken {
    pub serial: String,
    pub secret: Secret,
    pub params: OtpParams,
    /// HOTP: the next counter; TOTP: 0.
    pub counter: u64,
    pub manufacturer: Option<String>,
    pub model: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Admin {
    ctx: Arc<Context>,
}

impl Admin {
    pub fn new(ctx: Arc<Context>) -> Self {
        Admin { ctx }
    }

    pub fn context(&self) -> &Arc<Context> {
        &self.ctx
    }

    fn audit(&self, actor: &Actor, action: &str, target: impl Into<String>) -> AuditRecord {
        AuditRecord::new(self.ctx.clock.now(), &self.ctx.node, actor, action).target(target)
    }

    /// Records a refused admin action (bad input, missing record) so the
    /// audit log shows attempts as well as changes.
    async fn refused<T>(&self, base: AuditRecord, err: CoreError) -> Result<T, CoreError> {
        if err.is_client_error() {
            let rec = base.result(AuditResult::Error, Some(&err.to_string()));
            if let Err(e) = self.ctx.store.append_audit(rec).await {
                tracing::warn!(error = %e, "could not record a refused admin action");
            }
        }
        Err(err)
    }

    fn user_label(user: &User) -> String {
        if user.realm == DEFAULT_REALM { user.username.clone() } else { format!("{}@{}", user.username, user.realm) }
    }

    // ---------------------------------------------------------------- users

    pub async fn add_user(
        &self,
        actor: &Actor,
        realm: Option<&str>,
        username: &str,
        password: Option<Zeroizing<String>>,
    ) -> Result<User, CoreError> {
        let realm = realm.unwrap_or(DEFAULT_REALM);
        let base = self.audit(actor, "user.add", username);
        if let Err(e) = names::check_username(username).and_then(|_| names::check_realm(realm)) {
            return self.refused(base, e).await;
        }
        let password_hash = match password {
            Some(p) => {
                if let Err(e) = check_password_rules(&p) {
                    return self.refused(base, e.into()).await;
                }
                Some(self.ctx.hasher.hash(p).await?)
            }
            None => None,
        };
        let user = User::new(realm, username, password_hash, self.ctx.clock.now());
        let base = base.target(Self::user_label(&user));
        match self.ctx.store.create_user(&user, base.clone()).await {
            Ok(()) => Ok(user),
            Err(e) => self.refused(base, e.into()).await,
        }
    }

    /// Creates a user from an export: the password comes as its argon2id
    /// PHC string (never re-hashed, never seen in clear).
    pub async fn import_user(
        &self,
        actor: &Actor,
        realm: &str,
        username: &str,
        password_hash: Option<String>,
    ) -> Result<User, CoreError> {
        let base = self.audit(actor, "user.import", username);
        let checked =
            names::check_username(username).and_then(|_| names::check_realm(realm)).and_then(
                |_| match &password_hash {
                    Some(h) if !h.starts_with("$argon2id$") || h.len() > 512 => {
                        Err(CoreError::invalid("password_hash", "must be an argon2id PHC string"))
                    }
                    _ => Ok(()),
                },
            );
        if let Err(e) = checked {
            return self.refused(base, e).await;
        }
        let user = User::new(realm, username, password_hash, self.ctx.clock.now());
        let base = base.target(Self::user_label(&user));
        match self.ctx.store.create_user(&user, base.clone()).await {
            Ok(()) => Ok(user),
            Err(e) => self.refused(base, e.into()).await,
        }
    }

    pub async fn find_user(&self, realm: Option<&str>, username: &str) -> Result<User, CoreError> {
        let realm = realm.unwrap_or(DEFAULT_REALM);
        names::check_username(username)?;
        names::check_realm(realm)?;
        self.ctx.store.user_by_name(realm, username).await?.ok_or_else(|| {
            CoreError::NotFound(if realm == DEFAULT_REALM {
                format!("user `{username}`")
            } else {
                format!("user `{username}` in realm `{realm}`")
            })
        })
    }

    pub async fn list_users(&self, mut query: UserQuery) -> Result<Vec<User>, CoreError> {
        if query.limit == 0 {
            query.limit = DEFAULT_LIST_LIMIT;
        }
        if query.limit > MAX_LIST_LIMIT {
            return Err(CoreError::invalid("limit", format!("must be 1–{MAX_LIST_LIMIT}")));
        }
        if let Some(r) = &query.realm {
            names::check_realm(r)?;
        }
        Ok(self.ctx.store.list_users(&query, self.ctx.clock.now()).await?)
    }

    pub async fn count_users(&self) -> Result<u64, CoreError> {
        Ok(self.ctx.store.count_users().await?)
    }

    async fn change_user(&self, actor: &Actor, user: &User, action: &str, change: UserChange) -> Result<(), CoreError> {
        let base = self.audit(actor, action, Self::user_label(user));
        match self.ctx.store.update_user(&user.id, change, base.clone()).await {
            Ok(()) => Ok(()),
            Err(e) => self.refused(base, e.into()).await,
        }
    }

    pub async fn set_password(
        &self,
        actor: &Actor,
        user: &User,
        password: Option<Zeroizing<String>>,
    ) -> Result<(), CoreError> {
        let hash = match password {
            Some(p) => {
                if let Err(e) = check_password_rules(&p) {
                    return self.refused(self.audit(actor, "user.password", Self::user_label(user)), e.into()).await;
                }
                Some(self.ctx.hasher.hash(p).await?)
            }
            None => None,
        };
        self.change_user(actor, user, "user.password", UserChange::SetPassword(hash)).await
    }

    pub async fn set_disabled(&self, actor: &Actor, user: &User, disabled: bool) -> Result<(), CoreError> {
        let action = if disabled { "user.disable" } else { "user.enable" };
        self.change_user(actor, user, action, UserChange::SetDisabled(disabled)).await
    }

    pub async fn unlock(&self, actor: &Actor, user: &User) -> Result<(), CoreError> {
        self.change_user(actor, user, "user.unlock", UserChange::Unlock).await
    }

    pub async fn reset(&self, actor: &Actor, user: &User) -> Result<(), CoreError> {
        self.change_user(actor, user, "user.reset", UserChange::Reset).await
    }

    pub async fn delete_user(&self, actor: &Actor, user: &User) -> Result<(), CoreError> {
        self.change_user(actor, user, "user.delete", UserChange::Delete).await
    }

    // --------------------------------------------------------------- tokens

    fn new_serial(&self, params: &OtpParams) -> String {
        let mut b = [0u8; 4];
        self.ctx.random.fill(&mut b);
        let prefix = match params.kind {
            OtpKind::Totp { .. } => "TOTP",
            OtpKind::Hotp => "HOTP",
        };
        format!("{prefix}{}", hex::encode_upper(b))
    }

    fn account_label(user: &User) -> String {
        Self::user_label(user)
    }

    /// Generates a secret server-side and stores a *pending* token; the user
    /// must confirm it with one code before it counts.
    pub async fn enroll_token(
        &self,
        actor: &Actor,
        user: &User,
        params: OtpParams,
        description: &str,
    ) -> Result<Enrollment, CoreError> {
        names::check_description(description)?;
        // RFC 4226 asks for at least 160 bits; for SHA-256/512 use the hash length.
        let len = match params.algorithm {
            Algorithm::Sha1 => tessera_otp::GENERATED_SECRET_LEN,
            Algorithm::Sha256 => 32,
            Algorithm::Sha512 => 64,
        };
        let rng = self.ctx.random.clone();
        let secret =
            Secret::generate(len, &mut |b| rng.fill(b)).map_err(|e| CoreError::invalid("secret", e.to_string()))?;
        let token = self
            .insert_token(actor, user, &secret, params, 0, None, description, TokenState::Pending, "token.enroll")
            .await?;
        let uri = OtpauthUri {
            params,
            secret: secret.clone(),
            account: Self::account_label(user),
            issuer: Some(self.ctx.issuer.clone()),
            counter: matches!(params.kind, OtpKind::Hotp).then_some(0),
        }
        .to_string();
        Ok(Enrollment { token, secret, uri })
    }

    /// Stores a token with a known secret (a hardware token, a migration).
    /// Active immediately unless `pending`.
    #[allow(clippy::too_many_arguments)]
    pub async fn add_token(
        &self,
        actor: &Actor,
        user: &User,
        secret: &Secret,
        params: OtpParams,
        counter: u64,
        serial: Option<&str>,
        description: &str,
        pending: bool,
    ) -> Result<Token, CoreError> {
        names::check_description(description)?;
        if let Some(s) = serial {
            names::check_serial(s)?;
        }
        let counter = i64::try_from(counter).map_err(|_| CoreError::invalid("counter", "must be below 2^63"))?;
        let state = if pending { TokenState::Pending } else { TokenState::Active };
        self.insert_token(actor, user, secret, params, counter, serial, description, state, "token.add").await
    }

    #[allow(clippy::too_many_arguments)]
    async fn insert_token(
        &self,
        actor: &Actor,
        user: &User,
        secret: &Secret,
        params: OtpParams,
        counter: i64,
        serial: Option<&str>,
        description: &str,
        state: TokenState,
        action: &str,
    ) -> Result<Token, CoreError> {
        let id = TokenId::new_random();
        let sealed = self.ctx.keys.seal(&*self.ctx.random, Purpose::OtpSecret, &id.to_string(), secret.as_bytes());
        let token = Token {
            id,
            user_id: user.id,
            serial: serial.map(str::to_string).unwrap_or_else(|| self.new_serial(&params)),
            params,
            sealed_secret: sealed,
            counter,
            drift: 0,
            state,
            description: description.to_string(),
            created_at: self.ctx.clock.now(),
            last_used_at: None,
            oob: None,
        };
        let base = self.audit(actor, action, format!("{} {}", Self::user_label(user), token.serial));
        match self.ctx.store.create_token(&token, base.clone()).await {
            Ok(()) => Ok(token),
            Err(e) => self.refused(base, e.into()).await,
        }
    }

    /// Adds an email or SMS token: codes are sent to `address` after the
    /// user's first factor, where policy enables it (`oob_realms`,
    /// `oob_users`). Active at once: the administrator vouches for the
    /// address. `digits` (6 or 8, default 6) is the length of the codes.
    #[allow(clippy::too_many_arguments)]
    pub async fn add_oob_token(
        &self,
        actor: &Actor,
        user: &User,
        channel: crate::model::OobChannel,
        address: &str,
        digits: Option<u8>,
        serial: Option<&str>,
        description: &str,
    ) -> Result<Token, CoreError> {
        let action = format!("token.add_{}", channel.as_str());
        let base = self.audit(actor, &action, Self::user_label(user));
        let checked = (|| {
            names::check_description(description)?;
            if let Some(s) = serial {
                names::check_serial(s)?;
            }
            let address = crate::oob::normalize_address(channel, address)?;
            let params = otp_params(Some("hotp"), None, digits, None)?;
            Ok::<_, CoreError>((address, params))
        })();
        let (address, params) = match checked {
            Ok(v) => v,
            Err(e) => return self.refused(base, e).await,
        };
        let id = TokenId::new_random();
        // Never used for codes of its own: it keys the digests of the codes
        // sent (see `oob`), and is sealed like any token secret.
        let secret = crate::random::random_bytes(&*self.ctx.random, 20);
        let serial = serial.map(str::to_string).unwrap_or_else(|| {
            let mut b = [0u8; 4];
            self.ctx.random.fill(&mut b);
            let prefix = match channel {
                crate::model::OobChannel::Email => "MAIL",
                crate::model::OobChannel::Sms => "SMS",
            };
            format!("{prefix}{}", hex::encode_upper(b))
        });
        let token = Token {
            id,
            user_id: user.id,
            serial,
            params,
            sealed_secret: self.ctx.keys.seal(&*self.ctx.random, Purpose::OtpSecret, &id.to_string(), &secret),
            counter: 0,
            drift: 0,
            state: TokenState::Active,
            description: description.to_string(),
            created_at: self.ctx.clock.now(),
            last_used_at: None,
            oob: Some(crate::model::OobTarget { channel, address }),
        };
        let base = base.target(format!("{} {}", Self::user_label(user), token.serial));
        match self.ctx.store.create_token(&token, base.clone()).await {
            Ok(()) => Ok(token),
            Err(e) => self.refused(base, e.into()).await,
        }
    }

    /// Confirms one of the user's pending tokens with a current code.
    pub async fn confirm_token(&self, actor: &Actor, user: &User, code: &str) -> Result<Token, CoreError> {
        let policy = self.ctx.store.policy().await?;
        let now = self.ctx.clock.now();
        let tokens = self.ctx.store.tokens_for_user(&user.id).await?;
        let base = self.audit(actor, "token.confirm", Self::user_label(user));
        let pending: Vec<&Token> =
            tokens.iter().filter(|t| t.state == TokenState::Pending && t.oob.is_none()).collect();
        if pending.is_empty() {
            return self
                .refused(base, CoreError::NotFound(format!("pending token of `{}`", Self::user_label(user))))
                .await;
        }
        for token in pending {
            let secret = open_secret(&self.ctx.keys, token)
                .map_err(|e| CoreError::Key { token: token.serial.clone(), source: e })?;
            if let Some(m) = match_code(&secret, token, code, &policy, now) {
                let rec = base.clone().target(format!("{} {}", Self::user_label(user), token.serial));
                if self.ctx.store.activate_token(&token.id, m.matched, m.drift, rec).await? {
                    let mut t = token.clone();
                    t.state = TokenState::Active;
                    t.counter = m.matched + 1;
                    t.drift = m.drift;
                    return Ok(t);
                }
            }
        }
        self.refused(base, CoreError::CodeMismatch).await
    }

    pub async fn tokens(&self, user: &User) -> Result<Vec<Token>, CoreError> {
        Ok(self.ctx.store.tokens_for_user(&user.id).await?)
    }

    pub async fn list_tokens(&self, limit: u32, offset: u32) -> Result<Vec<Token>, CoreError> {
        if limit == 0 || limit > MAX_LIST_LIMIT {
            return Err(CoreError::invalid("limit", format!("must be 1–{MAX_LIST_LIMIT}")));
        }
        Ok(self.ctx.store.list_tokens(limit, offset).await?)
    }

    /// Finds a token by serial, or by id.
    pub async fn find_token(&self, serial_or_id: &str) -> Result<Token, CoreError> {
        if let Some(t) = self.ctx.store.token_by_serial(serial_or_id).await? {
            return Ok(t);
        }
        if let Ok(id) = serial_or_id.parse::<i64>()
            && let Some(t) = self.ctx.store.token_by_id(&TokenId(id)).await?
        {
            return Ok(t);
        }
        Err(CoreError::NotFound(format!("token `{serial_or_id}`")))
    }

    pub async fn delete_token(&self, actor: &Actor, token: &Token) -> Result<(), CoreError> {
        let base = self.audit(actor, "token.delete", token.serial.clone());
        match self.ctx.store.delete_token(&token.id, base.clone()).await {
            Ok(()) => Ok(()),
            Err(e) => self.refused(base, e.into()).await,
        }
    }

    /// Without codes: forget the learned drift. With two consecutive codes:
    /// find them within ±100 steps/counters and move the token there.
    pub async fn resync_token(
        &self,
        actor: &Actor,
        token: &Token,
        codes: Option<(&str, &str)>,
    ) -> Result<Token, CoreError> {
        let base = self.audit(actor, "token.resync", token.serial.clone());
        if token.oob.is_some() {
            return self
                .refused(base, CoreError::invalid("serial", "email and SMS tokens have no counter or clock to resync"))
                .await;
        }
        let (floor, drift) = match codes {
            None => (token.counter, 0),
            Some((a, b)) => {
                let policy = self.ctx.store.policy().await?;
                let secret = open_secret(&self.ctx.keys, token)
                    .map_err(|e| CoreError::Key { token: token.serial.clone(), source: e })?;
                match resync_match(&secret, token, a, b, self.ctx.clock.now(), policy.max_drift_steps) {
                    Ok(m) => (m.matched + 1, m.drift),
                    Err(ResyncRefusal::NoMatch) => return self.refused(base, CoreError::CodeMismatch).await,
                    Err(ResyncRefusal::DriftBeyondPolicy { drift, max }) => {
                        let period = match token.params.kind {
                            tessera_otp::OtpKind::Totp { period } => period.get(),
                            tessera_otp::OtpKind::Hotp => 0,
                        };
                        let e = CoreError::drift_beyond_policy(&token.serial, drift, period, max);
                        return self.refused(base, e).await;
                    }
                }
            }
        };
        match self.ctx.store.resync_token(&token.id, floor, drift, base.clone()).await {
            Ok(()) => {
                let mut t = token.clone();
                t.counter = t.counter.max(floor);
                t.drift = drift;
                Ok(t)
            }
            Err(e) => self.refused(base, e.into()).await,
        }
    }

    // --------------------------------------------------------- backup codes

    /// Issues a fresh set of backup codes (the old set is void) and returns
    /// them; they are shown once and stored only as keyed digests.
    pub async fn regenerate_backup_codes(&self, actor: &Actor, user: &User) -> Result<Vec<BackupCode>, CoreError> {
        let base = self.audit(actor, "backup_codes.generate", Self::user_label(user));
        let policy = self.ctx.store.policy().await?;
        if !policy.backup_codes_enabled {
            return self
                .refused(base, CoreError::invalid("policy", "backup codes are disabled (policy backup_codes_enabled)"))
                .await;
        }
        let rng = self.ctx.random.clone();
        let codes = tessera_otp::generate_backup_codes(tessera_otp::BACKUP_CODE_COUNT, &mut |b| rng.fill(b));
        let digests: Vec<[u8; 32]> =
            codes.iter().map(|c| self.ctx.keys.backup_code_digest(&user.id.to_string(), c.as_str())).collect();
        match self.ctx.store.replace_backup_codes(&user.id, &digests, self.ctx.clock.now(), base.clone()).await {
            Ok(()) => Ok(codes),
            Err(e) => self.refused(base, e.into()).await,
        }
    }

    pub async fn backup_codes_left(&self, user: &User) -> Result<u32, CoreError> {
        Ok(self.ctx.store.backup_codes_left(&user.id).await?)
    }

    // -------------------------------------------------------------- API keys

    /// Creates an API key; the plaintext is returned once and only its
    /// SHA-256 digest is stored (the key has 256 bits of entropy, so a
    /// plain hash is not guessable).
    pub async fn create_api_key(&self, actor: &Actor, name: &str) -> Result<(ApiKey, Zeroizing<String>), CoreError> {
        let base = self.audit(actor, "api_key.create", name);
        if let Err(e) = names::check_key_name(name) {
            return self.refused(base, e).await;
        }
        let mut raw = Zeroizing::new([0u8; 32]);
        self.ctx.random.fill(&mut raw[..]);
        let plaintext = Zeroizing::new(format!("{API_KEY_PREFIX}{}", hex::encode(&raw[..])));
        let key = ApiKey {
            id: uuid::Uuid::new_v4().to_string(),
            name: name.to_string(),
            prefix: plaintext[..API_KEY_PREFIX.len() + 8].to_string(),
            digest: api_key_digest(&plaintext),
            created_at: self.ctx.clock.now(),
            last_used_at: None,
        };
        match self.ctx.store.create_api_key(&key, base.clone()).await {
            Ok(()) => Ok((key, plaintext)),
            Err(e) => self.refused(base, e.into()).await,
        }
    }

    pub async fn list_api_keys(&self) -> Result<Vec<ApiKey>, CoreError> {
        Ok(self.ctx.store.list_api_keys().await?)
    }

    pub async fn delete_api_key(&self, actor: &Actor, name: &str) -> Result<(), CoreError> {
        let base = self.audit(actor, "api_key.delete", name);
        match self.ctx.store.delete_api_key(name, base.clone()).await {
            Ok(()) => Ok(()),
            Err(e) => self.refused(base, e.into()).await,
        }
    }

    /// The key a presented bearer string belongs to, if any. Lookup is by
    /// digest, so no stored key is compared byte by byte with the input.
    pub async fn authenticate_api_key(&self, presented: &str) -> Result<Option<ApiKey>, CoreError> {
        if !presented.starts_with(API_KEY_PREFIX) || presented.len() > 128 {
            return Ok(None);
        }
        Ok(self.ctx.store.api_key_by_digest(&api_key_digest(presented)).await?)
    }

    // ---------------------------------------------------------- RADIUS clients

    /// Adds a RADIUS client. The secret is sealed under the master key; the
    /// address (a prefix) must not be exactly another client's.
    pub async fn add_radius_client(
        &self,
        actor: &Actor,
        name: &str,
        address: &str,
        secret: &[u8],
        mode: MessageAuthenticatorMode,
        default_realm: Option<&str>,
    ) -> Result<RadiusClient, CoreError> {
        let base = self.audit(actor, "radius_client.add", name);
        let checked = names::check_key_name(name)
            .and_then(|_| default_realm.map_or(Ok(()), names::check_realm))
            .and_then(|_| Cidr::parse(address).map_err(|m| CoreError::invalid("address", m)))
            .and_then(|cidr| {
                if !(MIN_RADIUS_SECRET_LEN..=MAX_RADIUS_SECRET_LEN).contains(&secret.len()) {
                    return Err(CoreError::invalid(
                        "secret",
                        format!("must be {MIN_RADIUS_SECRET_LEN}–{MAX_RADIUS_SECRET_LEN} bytes"),
                    ));
                }
                Ok(cidr)
            });
        let cidr = match checked {
            Ok(c) => c,
            Err(e) => return self.refused(base, e).await,
        };
        if let Some(other) = self.ctx.store.radius_clients().await?.into_iter().find(|c| c.address == cidr) {
            let e = CoreError::Conflict(format!("a RADIUS client for {cidr} (`{}`)", other.name));
            return self.refused(base, e).await;
        }
        let id = TokenId::new_random().0;
        let client = RadiusClient {
            id,
            name: name.to_string(),
            address: cidr,
            sealed_secret: self.ctx.keys.seal(&*self.ctx.random, Purpose::RadiusSecret, &id.to_string(), secret),
            message_authenticator: mode,
            ma_seen: false,
            default_realm: default_realm.map(str::to_string),
            created_at: self.ctx.clock.now(),
            rotation: SecretRotation::default(),
        };
        match self.ctx.store.create_radius_client(&client, base.clone()).await {
            Ok(()) => Ok(client),
            Err(e) => self.refused(base, e.into()).await,
        }
    }

    pub async fn radius_clients(&self) -> Result<Vec<RadiusClient>, CoreError> {
        Ok(self.ctx.store.radius_clients().await?)
    }

    pub async fn delete_radius_client(&self, actor: &Actor, name: &str) -> Result<(), CoreError> {
        let base = self.audit(actor, "radius_client.delete", name);
        match self.ctx.store.delete_radius_client(name, base.clone()).await {
            Ok(()) => Ok(()),
            Err(e) => self.refused(base, e.into()).await,
        }
    }

    /// The client's shared secret, for the RADIUS listener only.
    pub fn radius_secret(&self, client: &RadiusClient) -> Result<Zeroizing<Vec<u8>>, CoreError> {
        self.ctx
            .keys
            .open(Purpose::RadiusSecret, &client.id.to_string(), &client.sealed_secret)
            .map_err(|e| CoreError::Key { token: format!("radius client {}", client.name), source: e })
    }

    /// The client's previous secret while it is still accepted at `now`
    /// (a rotation's overlap), for the RADIUS listener only.
    pub fn radius_old_secret(
        &self,
        client: &RadiusClient,
        now: Timestamp,
    ) -> Result<Option<Zeroizing<Vec<u8>>>, CoreError> {
        let Some(sealed) = client.rotation.sealed_old_secret.as_deref().filter(|_| client.rotation.old_active(now))
        else {
            return Ok(None);
        };
        self.ctx
            .keys
            .open(Purpose::RadiusOldSecret, &client.id.to_string(), sealed)
            .map(Some)
            .map_err(|e| CoreError::Key { token: format!("radius client {} (old secret)", client.name), source: e })
    }

    async fn radius_client_named(&self, name: &str) -> Result<RadiusClient, CoreError> {
        self.ctx
            .store
            .radius_clients()
            .await?
            .into_iter()
            .find(|c| c.name == name)
            .ok_or_else(|| CoreError::NotFound(format!("RADIUS client `{name}`")))
    }

    /// Replaces a RADIUS client's shared secret. With a positive
    /// `keep_old_for_seconds` (at most [`MAX_SECRET_OVERLAP_SECONDS`]) the current secret stays
    /// accepted that long beside the new one (re-sealed as the *old*
    /// secret), so the NAS can be switched over without a dropped request;
    /// with 0 it is refused from now on. A previous overlap still running
    /// ends now (one old secret at a time). Refused, changing nothing: an
    /// unknown client, a secret of the wrong length or equal to the current
    /// one, an overlap out of range.
    pub async fn set_radius_client_secret(
        &self,
        actor: &Actor,
        name: &str,
        secret: &[u8],
        keep_old_for_seconds: i64,
    ) -> Result<SecretChange, CoreError> {
        let base = self.audit(actor, "radius_client.set_secret", name);
        let checked = if !(MIN_RADIUS_SECRET_LEN..=MAX_RADIUS_SECRET_LEN).contains(&secret.len()) {
            Err(CoreError::invalid("secret", format!("must be {MIN_RADIUS_SECRET_LEN}–{MAX_RADIUS_SECRET_LEN} bytes")))
        } else if !(0..=MAX_SECRET_OVERLAP_SECONDS).contains(&keep_old_for_seconds) {
            Err(CoreError::invalid("keep_old_for", "must be between 0 and 30 days"))
        } else {
            Ok(())
        };
        if let Err(e) = checked {
            return self.refused(base, e).await;
        }
        let client = match self.radius_client_named(name).await {
            Ok(c) => c,
            Err(e) => return self.refused(base, e).await,
        };
        let now = self.ctx.clock.now();
        let row = client.id.to_string();
        // The current secret is needed to compare (and to keep it as the
        // old one); one that does not open may still be replaced outright.
        let current = self.ctx.keys.open(Purpose::RadiusSecret, &row, &client.sealed_secret);
        match (&current, keep_old_for_seconds) {
            (Ok(c), _) if bool::from(subtle::ConstantTimeEq::ct_eq(c.as_slice(), secret)) => {
                let e = CoreError::invalid("secret", "it is the client's current secret");
                return self.refused(base, e).await;
            }
            (Err(_), 1..) => {
                let e = CoreError::invalid(
                    "keep_old_for",
                    "the current secret cannot be opened with this node's master key, so it cannot be kept; \
                     change the secret without an overlap",
                );
                return self.refused(base, e).await;
            }
            _ => {}
        }
        let previous_overlap = client.rotation.old_active(now).then_some(client.rotation.old_expires_at).flatten();
        let rotation = match (&current, keep_old_for_seconds) {
            (Ok(c), 1..) => {
                let expires = now.plus_seconds(keep_old_for_seconds);
                SecretRotation {
                    sealed_old_secret: Some(self.ctx.keys.seal(&*self.ctx.random, Purpose::RadiusOldSecret, &row, c)),
                    old_expires_at: Some(expires),
                    old_last_used_at: None,
                    changed_at: Some(now),
                    new_first_used_at: None,
                }
            }
            _ => SecretRotation { old_expires_at: Some(now), changed_at: Some(now), ..SecretRotation::default() },
        };
        let mut reason = match rotation.sealed_old_secret {
            Some(_) => format!(
                "old secret accepted until {}",
                rotation.old_expires_at.map(Timestamp::to_rfc3339).unwrap_or_default()
            ),
            None => "no overlap: the old secret is refused from now on".to_string(),
        };
        if let Some(until) = previous_overlap {
            reason.push_str(&format!("; the overlap of the previous change (until {until}) ends now"));
        }
        let sealed = self.ctx.keys.seal(&*self.ctx.random, Purpose::RadiusSecret, &row, secret);
        let rec = base.clone().result(AuditResult::Ok, Some(&reason));
        match self.ctx.store.set_radius_client_secret(client.id, &client.sealed_secret, &sealed, &rotation, rec).await {
            Ok(()) => Ok(SecretChange {
                client: RadiusClient { sealed_secret: sealed, rotation, ..client },
                previous_overlap_ended: previous_overlap,
            }),
            Err(e) => self.refused(base, e.into()).await,
        }
    }

    /// Changes the given fields of a RADIUS client (address, mode, default
    /// realm); the secret and everything else stay. Checked like
    /// [`Admin::add_radius_client`]; nothing changes on bad input.
    pub async fn edit_radius_client(
        &self,
        actor: &Actor,
        name: &str,
        edit: &RadiusClientEdit,
    ) -> Result<RadiusClient, CoreError> {
        let base = self.audit(actor, "radius_client.edit", name);
        if edit.address.is_none() && edit.message_authenticator.is_none() && edit.default_realm.is_none() {
            return self.refused(base, CoreError::invalid("edit", "nothing to change")).await;
        }
        let cidr = match edit.address.as_deref().map(|a| Cidr::parse(a).map_err(|m| CoreError::invalid("address", m))) {
            Some(Err(e)) => return self.refused(base, e).await,
            Some(Ok(c)) => Some(c),
            None => None,
        };
        if let Some(Some(realm)) = &edit.default_realm
            && let Err(e) = names::check_realm(realm)
        {
            return self.refused(base, e).await;
        }
        let all = self.ctx.store.radius_clients().await?;
        let Some(mut client) = all.iter().find(|c| c.name == name).cloned() else {
            return self.refused(base, CoreError::NotFound(format!("RADIUS client `{name}`"))).await;
        };
        let mut changes = Vec::new();
        if let Some(cidr) = cidr {
            if let Some(other) = all.iter().find(|c| c.address == cidr && c.id != client.id) {
                let e = CoreError::Conflict(format!("a RADIUS client for {cidr} (`{}`)", other.name));
                return self.refused(base, e).await;
            }
            if cidr != client.address {
                changes.push(format!("address {} → {cidr}", client.address));
                client.address = cidr;
            }
        }
        if let Some(mode) = edit.message_authenticator
            && mode != client.message_authenticator
        {
            changes.push(format!(
                "message-authenticator {} → {}",
                client.message_authenticator.as_str(),
                mode.as_str()
            ));
            client.message_authenticator = mode;
        }
        if let Some(realm) = &edit.default_realm
            && *realm != client.default_realm
        {
            let show = |r: &Option<String>| r.clone().unwrap_or_else(|| "(policy default)".into());
            changes.push(format!("default realm {} → {}", show(&client.default_realm), show(realm)));
            client.default_realm = realm.clone();
        }
        if changes.is_empty() {
            return Ok(client);
        }
        let rec = base.clone().result(AuditResult::Ok, Some(&changes.join(", ")));
        match self.ctx.store.update_radius_client(&client, rec).await {
            Ok(()) => Ok(client),
            Err(e) => self.refused(base, e.into()).await,
        }
    }

    /// The RADIUS listener saw a request of client `id` signed with `slot`
    /// of the rotation made at `changed_at`. Persisted (the caller limits
    /// how often); audited the first time each secret is seen after the
    /// change. Returns whether this was that first time.
    pub async fn record_radius_secret_use(
        &self,
        client: (i64, &str),
        changed_at: Timestamp,
        slot: SecretSlot,
        source: Option<String>,
    ) -> Result<bool, CoreError> {
        let now = self.ctx.clock.now();
        let (action, reason) = match slot {
            SecretSlot::Old => (
                "radius_client.old_secret_used",
                "a request signed with the old secret (the client has not switched yet)",
            ),
            SecretSlot::Current => ("radius_client.new_secret_used", "first request signed with the new secret"),
        };
        let rec = AuditRecord::new(now, &self.ctx.node, &Actor::new("radius").with_address(source), action)
            .target(client.1)
            .result(AuditResult::Ok, Some(reason));
        Ok(self.ctx.store.record_radius_secret_use(client.0, changed_at, slot, now, rec).await?)
    }

    /// Removes the old secrets whose overlap has ended (they are refused
    /// from the exact expiry on anyway; this only takes them out of the
    /// database), audited once each. Returns how many were removed.
    pub async fn drop_expired_radius_secrets(&self, clients: &[RadiusClient]) -> Result<usize, CoreError> {
        let now = self.ctx.clock.now();
        let mut n = 0;
        for c in clients.iter().filter(|c| c.rotation.old_expired_not_dropped(now)) {
            let used = match c.rotation.old_last_used_at {
                Some(t) => format!("last used {t}"),
                None => "not used since the change".to_string(),
            };
            let reason = format!("old secret expired and removed ({used})");
            let rec = AuditRecord::new(now, &self.ctx.node, &Actor::new("radius"), "radius_client.old_secret_expired")
                .target(c.name.clone())
                .result(AuditResult::Ok, Some(&reason));
            if self.ctx.store.drop_expired_radius_secret(c.id, now, rec).await? {
                n += 1;
            }
        }
        Ok(n)
    }

    // ------------------------------------------------------------ token inventory

    /// Adds hardware token seeds to the inventory, unassigned; all or none.
    pub async fn import_inventory(&self, actor: &Actor, items: Vec<NewInventoryToken>) -> Result<usize, CoreError> {
        let base = self.audit(actor, "inventory.import", format!("{} tokens", items.len()));
        let now = self.ctx.clock.now();
        let mut rows = Vec::with_capacity(items.len());
        for it in items {
            if let Err(e) = names::check_serial(&it.serial).and_then(|_| {
                [&it.manufacturer, &it.model].into_iter().flatten().try_for_each(|t| names::check_description(t))
            }) {
                return self.refused(base, e).await;
            }
            let id = TokenId::new_random().0;
            rows.push(InventoryToken {
                id,
                serial: it.serial,
                params: it.params,
                sealed_secret: self.ctx.keys.seal(
                    &*self.ctx.random,
                    Purpose::OtpSecret,
                    &InventoryToken::seal_row(id),
                    it.secret.as_bytes(),
                ),
                counter: i64::try_from(it.counter).map_err(|_| CoreError::invalid("counter", "must be below 2^63"))?,
                manufacturer: it.manufacturer,
                model: it.model,
                token_id: None,
                assigned_to: None,
                imported_at: now,
            });
        }
        let n = rows.len();
        match self.ctx.store.add_inventory(&rows, base.clone()).await {
            Ok(()) => Ok(n),
            Err(e) => self.refused(base, e.into()).await,
        }
    }

    pub async fn inventory(&self, query: &InventoryQuery) -> Result<Vec<InventoryToken>, CoreError> {
        Ok(self.ctx.store.inventory(query).await?)
    }

    async fn inventory_item(&self, serial: &str) -> Result<InventoryToken, CoreError> {
        names::check_serial(serial)?;
        self.ctx
            .store
            .inventory_item(serial)
            .await?
            .ok_or_else(|| CoreError::NotFound(format!("hardware token `{serial}` in the inventory")))
    }

    /// Gives the user a token made from the seed (same serial and
    /// parameters, the floor the seed has reached), active at once.
    pub async fn assign_inventory(&self, actor: &Actor, serial: &str, user: &User) -> Result<Token, CoreError> {
        let base = self.audit(actor, "inventory.assign", format!("{serial} {}", Self::user_label(user)));
        let item = match self.inventory_item(serial).await {
            Ok(i) => i,
            Err(e) => return self.refused(base, e).await,
        };
        let plain = self
            .ctx
            .keys
            .open(Purpose::OtpSecret, &InventoryToken::seal_row(item.id), &item.sealed_secret)
            .map_err(|e| CoreError::Key { token: item.serial.clone(), source: e })?;
        let id = TokenId::new_random();
        let token = Token {
            id,
            user_id: user.id,
            serial: item.serial.clone(),
            params: item.params,
            sealed_secret: self.ctx.keys.seal(&*self.ctx.random, Purpose::OtpSecret, &id.to_string(), &plain),
            counter: item.counter,
            drift: 0,
            state: TokenState::Active,
            description: [item.manufacturer.as_deref(), item.model.as_deref()]
                .into_iter()
                .flatten()
                .collect::<Vec<_>>()
                .join(" "),
            created_at: self.ctx.clock.now(),
            last_used_at: None,
            oob: None,
        };
        match self.ctx.store.assign_inventory(item.id, &token, base.clone()).await {
            Ok(()) => Ok(token),
            Err(e) => self.refused(base, e.into()).await,
        }
    }

    /// Takes the token made from the seed away from its user; the seed
    /// (with the floor it reached) is free again.
    pub async fn unassign_inventory(&self, actor: &Actor, serial: &str) -> Result<(), CoreError> {
        let base = self.audit(actor, "inventory.unassign", serial);
        let item = match self.inventory_item(serial).await {
            Ok(i) => i,
            Err(e) => return self.refused(base, e).await,
        };
        match self.ctx.store.unassign_inventory(item.id, base.clone()).await {
            Ok(()) => Ok(()),
            Err(e) => self.refused(base, e.into()).await,
        }
    }

    // ------------------------------------------------------------ realms

    /// Creates or replaces a realm. `secrets` replaces the stored secrets
    /// only when given (so settings can change without re-entering them).
    pub async fn put_realm(
        &self,
        actor: &Actor,
        name: &str,
        settings: RealmSettings,
        secrets: Option<RealmSecrets>,
    ) -> Result<Realm, CoreError> {
        let base = self.audit(actor, "realm.put", name);
        if let Err(e) = names::check_realm(name).and_then(|_| settings.validate()) {
            return self.refused(base, e).await;
        }
        let now = self.ctx.clock.now();
        let existing = self.ctx.store.realms().await?.into_iter().find(|r| r.name == name);
        let sealed_secrets = match (secrets, &existing) {
            (Some(s), _) => {
                let plain: BTreeMap<&String, &str> = s.iter().map(|(k, v)| (k, v.as_str())).collect();
                let json = Zeroizing::new(serde_json::to_vec(&plain).map_err(|e| CoreError::Internal(e.to_string()))?);
                self.ctx.keys.seal(&*self.ctx.random, Purpose::RealmSecret, name, &json)
            }
            (None, Some(r)) => r.sealed_secrets.clone(),
            (None, None) => self.ctx.keys.seal(&*self.ctx.random, Purpose::RealmSecret, name, b"{}"),
        };
        let realm = Realm {
            name: name.to_string(),
            settings,
            sealed_secrets,
            created_at: existing.as_ref().map_or(now, |r| r.created_at),
            updated_at: now,
        };
        match self.ctx.store.put_realm(&realm, base.clone()).await {
            Ok(()) => Ok(realm),
            Err(e) => self.refused(base, e.into()).await,
        }
    }

    pub async fn realms(&self) -> Result<Vec<Realm>, CoreError> {
        Ok(self.ctx.store.realms().await?)
    }

    pub async fn realm(&self, name: &str) -> Result<Realm, CoreError> {
        self.realms()
            .await?
            .into_iter()
            .find(|r| r.name == name)
            .ok_or_else(|| CoreError::NotFound(format!("realm `{name}`")))
    }

    /// Deletes a realm that has no users: its users would silently lose
    /// their first factor (and log in with the code alone).
    pub async fn delete_realm(&self, actor: &Actor, name: &str) -> Result<(), CoreError> {
        let base = self.audit(actor, "realm.delete", name);
        let members = self
            .ctx
            .store
            .list_users(
                &UserQuery { realm: Some(name.to_string()), limit: 1, ..UserQuery::default() },
                self.ctx.clock.now(),
            )
            .await?;
        if !members.is_empty() {
            let e = CoreError::Conflict(format!(
                "realm `{name}` still has users (they would lose their first factor); delete or move them first"
            ));
            return self.refused(base, e).await;
        }
        match self.ctx.store.delete_realm(name, base.clone()).await {
            Ok(()) => Ok(()),
            Err(e) => self.refused(base, e.into()).await,
        }
    }

    /// A realm's secrets in the clear, for building its directory clients.
    pub fn realm_secrets(&self, realm: &Realm) -> Result<RealmSecrets, CoreError> {
        let plain = self
            .ctx
            .keys
            .open(Purpose::RealmSecret, &realm.name, &realm.sealed_secrets)
            .map_err(|e| CoreError::Key { token: format!("realm {}", realm.name), source: e })?;
        let map: BTreeMap<String, String> = serde_json::from_slice(&plain)
            .map_err(|_| CoreError::Internal(format!("realm {}: stored secrets are not readable", realm.name)))?;
        Ok(map.into_iter().map(|(k, v)| (k, Zeroizing::new(v))).collect())
    }

    pub async fn directory_cache_generation(&self) -> Result<i64, CoreError> {
        Ok(self.ctx.store.directory_cache_generation().await?)
    }

    /// Makes every node drop its directory cache (users' sources, attributes, groups).
    pub async fn flush_directory_cache(&self, actor: &Actor) -> Result<i64, CoreError> {
        let base = self.audit(actor, "directory.flush_cache", "");
        match self.ctx.store.bump_directory_cache_generation(base.clone()).await {
            Ok(g) => Ok(g),
            Err(e) => self.refused(base, e.into()).await,
        }
    }

    // ------------------------------------------------------------ local groups

    pub async fn add_to_group(&self, actor: &Actor, group: &str, user: &User) -> Result<(), CoreError> {
        let base = self.audit(actor, "group.add", format!("{group} {}", Self::user_label(user)));
        if let Err(e) = names::check_group(group) {
            return self.refused(base, e).await;
        }
        match self.ctx.store.add_group_member(group, user.id, base.clone()).await {
            Ok(()) => Ok(()),
            Err(e) => self.refused(base, e.into()).await,
        }
    }

    pub async fn remove_from_group(&self, actor: &Actor, group: &str, user: &User) -> Result<(), CoreError> {
        let base = self.audit(actor, "group.remove", format!("{group} {}", Self::user_label(user)));
        match self.ctx.store.remove_group_member(group, user.id, base.clone()).await {
            Ok(()) => Ok(()),
            Err(e) => self.refused(base, e.into()).await,
        }
    }

    pub async fn groups_of(&self, user: &User) -> Result<Vec<String>, CoreError> {
        Ok(self.ctx.store.groups_of(user.id).await?)
    }

    pub async fn groups(&self) -> Result<Vec<(String, Vec<UserId>)>, CoreError> {
        Ok(self.ctx.store.groups().await?)
    }

    // ------------------------------------------------------ RADIUS reply rules

    /// Adds a reply rule. The attribute and value must already have been
    /// checked against the RADIUS dictionary by the caller.
    pub async fn add_reply_rule(
        &self,
        actor: &Actor,
        scope: RuleScope,
        attribute: &str,
        value: &str,
    ) -> Result<ReplyRule, CoreError> {
        let subject = match &scope {
            RuleScope::All => "*".to_string(),
            RuleScope::User(u) => format!("user {u}"),
            RuleScope::Group(g) => format!("group {g}"),
        };
        let base = self.audit(actor, "reply_rule.add", format!("{subject}: {attribute}"));
        let check = match &scope {
            RuleScope::Group(g) => names::check_group(g),
            RuleScope::User(u) => names::check_username(u),
            RuleScope::All => Ok(()),
        }
        .and_then(|_| {
            if value.len() > 253 || value.chars().any(char::is_control) {
                Err(CoreError::invalid("value", "must be at most 253 bytes without control characters"))
            } else {
                Ok(())
            }
        });
        if let Err(e) = check {
            return self.refused(base, e).await;
        }
        let rule = ReplyRule {
            id: TokenId::new_random().0,
            scope,
            attribute: attribute.to_string(),
            value: value.to_string(),
            created_at: self.ctx.clock.now(),
        };
        match self.ctx.store.create_reply_rule(&rule, base.clone()).await {
            Ok(()) => Ok(rule),
            Err(e) => self.refused(base, e.into()).await,
        }
    }

    pub async fn reply_rules(&self) -> Result<Vec<ReplyRule>, CoreError> {
        Ok(self.ctx.store.reply_rules().await?)
    }

    pub async fn delete_reply_rule(&self, actor: &Actor, id: i64) -> Result<(), CoreError> {
        let base = self.audit(actor, "reply_rule.delete", id.to_string());
        match self.ctx.store.delete_reply_rule(id, base.clone()).await {
            Ok(()) => Ok(()),
            Err(e) => self.refused(base, e.into()).await,
        }
    }

    // ---------------------------------------------------------------- policy

    pub async fn policy(&self) -> Result<Policy, CoreError> {
        Ok(self.ctx.store.policy().await?)
    }

    pub async fn set_policy(&self, actor: &Actor, policy: &Policy) -> Result<(), CoreError> {
        let base = self.audit(actor, "policy.set", "policy");
        if let Err(msg) = policy.validate() {
            return self.refused(base, CoreError::invalid("policy", msg)).await;
        }
        match self.ctx.store.set_policy(policy, base.clone()).await {
            Ok(()) => Ok(()),
            Err(e) => self.refused(base, e.into()).await,
        }
    }

    // ----------------------------------------------------------------- audit

    pub async fn audit_log(&self, mut query: AuditQuery) -> Result<Vec<AuditRecord>, CoreError> {
        if query.limit == 0 {
            query.limit = DEFAULT_LIST_LIMIT;
        }
        if query.limit > MAX_LIST_LIMIT {
            return Err(CoreError::invalid("limit", format!("must be 1–{MAX_LIST_LIMIT}")));
        }
        Ok(self.ctx.store.audit_log(&query).await?)
    }
}

pub fn api_key_digest(presented: &str) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(&Sha256::digest(presented.as_bytes()));
    out
}

/// Token parameters from loosely typed input (CLI flags, API fields), with
/// the defaults authenticator apps assume: TOTP, SHA1, 6 digits, 30 s.
pub fn otp_params(
    kind: Option<&str>,
    algorithm: Option<&str>,
    digits: Option<u8>,
    period: Option<u32>,
) -> Result<OtpParams, CoreError> {
    let algorithm = match algorithm {
        Some(a) => {
            a.parse::<Algorithm>().map_err(|_| CoreError::invalid("algorithm", "must be SHA1, SHA256 or SHA512"))?
        }
        None => Algorithm::Sha1,
    };
    let digits =
        tessera_otp::Digits::new(digits.unwrap_or(6)).map_err(|_| CoreError::invalid("digits", "must be 6 or 8"))?;
    let kind = match kind.unwrap_or("totp").to_ascii_lowercase().as_str() {
        "totp" => OtpKind::Totp {
            period: tessera_otp::Period::new(period.unwrap_or(30))
                .map_err(|_| CoreError::invalid("period", "must be 30 or 60 seconds"))?,
        },
        "hotp" => {
            if period.is_some() {
                return Err(CoreError::invalid("period", "only TOTP tokens have a period"));
            }
            OtpKind::Hotp
        }
        _ => return Err(CoreError::invalid("type", "must be totp or hotp")),
    };
    Ok(OtpParams { kind, algorithm, digits })
}

/// A secret from base32 or hex text, with an error that names the field
/// and never echoes the input.
pub fn parse_secret(base32: Option<&str>, hex: Option<&str>) -> Result<Secret, CoreError> {
    match (base32, hex) {
        (Some(b), None) => Secret::from_base32(b).map_err(|e| CoreError::invalid("secret", e.to_string())),
        (None, Some(h)) => Secret::from_hex(h).map_err(|e| CoreError::invalid("secret", e.to_string())),
        (Some(_), Some(_)) => Err(CoreError::invalid("secret", "give the secret either as base32 or as hex, not both")),
        (None, None) => Err(CoreError::invalid("secret", "missing")),
    }
}
