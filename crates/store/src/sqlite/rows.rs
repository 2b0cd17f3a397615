//! Row ⇄ record conversions for the SQLite backend. A row that does not
//! decode into a valid record is reported as corruption, never guessed at.

use rusqlite::Row;
use rusqlite::types::Type;
use tessera_core::audit::AuditRecord;
use tessera_core::clock::Timestamp;
use tessera_core::lockout::LockState;
use tessera_core::model::{
    AccessRecord, ApiKey, OobChannel, OobTarget, RadiusClient, ReplyRule, RuleScope, SecretRotation, Token, TokenId,
    TokenState, User, UserId,
};
use tessera_core::oob::OobCode;
use tessera_core::realm::Realm;
use tessera_otp::{Algorithm, Digits, OtpKind, OtpParams, Period};

use super::token_state::TokenStates;

pub const USER_COLS: &str = "id, realm, username, password_hash, disabled, registered, failures, \
    locked_at, lock_until, throttle_until, last_attempt_at, last_attempt_addr, last_attempt_client, \
    last_success_at, last_success_addr, last_success_client, created_at, grace_used, token_state";

/// Index of `token_state` in [`USER_COLS`].
pub const USER_TOKEN_STATE: usize = 18;

pub const TOKEN_COLS: &str = "id, user_id, serial, kind, algorithm, digits, period, secret, counter, drift, \
    state, description, created_at, last_used_at, address";

pub const OOB_CODE_COLS: &str = "id, user_id, token_id, digest, created_at, expires_at, attempts, used_at";

pub const AUDIT_COLS: &str = "id, at, node, actor, action, target, source, client, result, reason";

pub const API_KEY_COLS: &str = "id, name, prefix, digest, created_at, last_used_at";

fn bad(col: usize, msg: impl Into<String>) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(col, Type::Text, msg.into().into())
}

fn ts(v: Option<i64>) -> Option<Timestamp> {
    v.map(Timestamp)
}

fn access(at: Option<i64>, addr: Option<String>, client: Option<String>) -> Option<AccessRecord> {
    at.map(|at| AccessRecord { at: Timestamp(at), address: addr, client })
}

pub fn user(r: &Row<'_>) -> rusqlite::Result<User> {
    let failures: i64 = r.get(6)?;
    Ok(User {
        id: UserId(r.get(0)?),
        realm: r.get(1)?,
        username: r.get(2)?,
        password_hash: r.get(3)?,
        disabled: r.get(4)?,
        registered: r.get(5)?,
        lock: LockState {
            failures: u32::try_from(failures).map_err(|_| bad(6, "failure count out of range"))?,
            locked_at: ts(r.get(7)?),
            lock_until: ts(r.get(8)?),
            throttle_until: ts(r.get(9)?),
        },
        last_attempt: access(r.get(10)?, r.get(11)?, r.get(12)?),
        last_success: access(r.get(13)?, r.get(14)?, r.get(15)?),
        created_at: Timestamp(r.get(16)?),
        grace_used: u32::try_from(r.get::<_, i64>(17)?).map_err(|_| bad(17, "grace count out of range"))?,
    })
}

/// The user's token login state (the last column of [`USER_COLS`]).
pub fn token_states(r: &Row<'_>) -> rusqlite::Result<TokenStates> {
    let blob: Option<Vec<u8>> = r.get(USER_TOKEN_STATE)?;
    TokenStates::decode(blob.as_deref()).map_err(|m| bad(USER_TOKEN_STATE, m))
}

pub fn params_from(kind: &str, algorithm: &str, digits: i64, period: Option<i64>) -> Result<OtpParams, String> {
    let algorithm: Algorithm = algorithm.parse().map_err(|_| format!("unknown algorithm {algorithm}"))?;
    let digits = Digits::new(u8::try_from(digits).map_err(|_| "digits out of range")?).map_err(|e| e.to_string())?;
    let kind = match (kind, period) {
        ("totp", Some(p)) => OtpKind::Totp {
            period: Period::new(u32::try_from(p).map_err(|_| "period out of range")?).map_err(|e| e.to_string())?,
        },
        ("hotp", None) => OtpKind::Hotp,
        _ => return Err(format!("inconsistent token kind {kind}")),
    };
    Ok(OtpParams { kind, algorithm, digits })
}

pub fn token(r: &Row<'_>) -> rusqlite::Result<Token> {
    let o = 0;
    let kind: String = r.get(o + 3)?;
    let algorithm: String = r.get(o + 4)?;
    // Email and SMS tokens keep HOTP-shaped parameters (their digits are the
    // code length) and an address.
    let address: Option<String> = r.get(o + 14)?;
    let oob = match (kind.as_str(), address) {
        ("email", Some(address)) => Some(OobTarget { channel: OobChannel::Email, address }),
        ("sms", Some(address)) => Some(OobTarget { channel: OobChannel::Sms, address }),
        ("email" | "sms", None) => return Err(bad(o + 14, "email or SMS token without an address")),
        _ => None,
    };
    let otp_kind = if oob.is_some() { "hotp" } else { kind.as_str() };
    let params = params_from(otp_kind, &algorithm, r.get(o + 5)?, r.get(o + 6)?).map_err(|m| bad(o + 3, m))?;
    let state: String = r.get(o + 10)?;
    let state = match state.as_str() {
        "pending" => TokenState::Pending,
        "active" => TokenState::Active,
        _ => return Err(bad(o + 10, "unknown token state")),
    };
    let drift: i64 = r.get(o + 9)?;
    Ok(Token {
        id: TokenId(r.get(o)?),
        user_id: UserId(r.get(o + 1)?),
        serial: r.get(o + 2)?,
        params,
        sealed_secret: r.get(o + 7)?,
        counter: r.get(o + 8)?,
        drift: i32::try_from(drift).map_err(|_| bad(o + 9, "drift out of range"))?,
        state,
        description: r.get(o + 11)?,
        created_at: Timestamp(r.get(o + 12)?),
        last_used_at: ts(r.get(o + 13)?),
        oob,
    })
}

/// The `kind` column of a token: its OTP kind, or its channel.
pub fn token_kind(t: &Token) -> &'static str {
    match &t.oob {
        Some(o) => o.channel.as_str(),
        None => kind_cols(&t.params).0,
    }
}

pub fn oob_code(r: &Row<'_>) -> rusqlite::Result<OobCode> {
    let digest: Vec<u8> = r.get(3)?;
    Ok(OobCode {
        id: r.get(0)?,
        user_id: UserId(r.get(1)?),
        token_id: TokenId(r.get(2)?),
        digest: digest.try_into().map_err(|_| bad(3, "digest length"))?,
        created_at: Timestamp(r.get(4)?),
        expires_at: Timestamp(r.get(5)?),
        attempts: u32::try_from(r.get::<_, i64>(6)?).map_err(|_| bad(6, "attempts out of range"))?,
        used_at: ts(r.get(7)?),
    })
}

pub fn kind_cols(p: &OtpParams) -> (&'static str, i64) {
    match p.kind {
        OtpKind::Totp { period } => ("totp", period.get() as i64),
        OtpKind::Hotp => ("hotp", 0),
    }
}

pub fn audit(r: &Row<'_>) -> rusqlite::Result<AuditRecord> {
    let result: String = r.get(8)?;
    Ok(AuditRecord {
        id: r.get(0)?,
        at: Timestamp(r.get(1)?),
        node: r.get(2)?,
        actor: r.get(3)?,
        action: r.get(4)?,
        target: r.get(5)?,
        source: r.get(6)?,
        client: r.get(7)?,
        result: result.parse().map_err(|e: String| bad(8, e))?,
        reason: r.get(9)?,
    })
}

pub fn api_key(r: &Row<'_>) -> rusqlite::Result<ApiKey> {
    let digest: Vec<u8> = r.get(3)?;
    Ok(ApiKey {
        id: r.get(0)?,
        name: r.get(1)?,
        prefix: r.get(2)?,
        digest: digest.try_into().map_err(|_| bad(3, "digest length"))?,
        created_at: Timestamp(r.get(4)?),
        last_used_at: ts(r.get(5)?),
    })
}

pub fn radius_client(r: &Row<'_>) -> rusqlite::Result<RadiusClient> {
    let address: String = r.get(2)?;
    let mode: String = r.get(4)?;
    Ok(RadiusClient {
        id: r.get(0)?,
        name: r.get(1)?,
        address: tessera_core::cidr::Cidr::parse(&address).map_err(|m| bad(2, m))?,
        sealed_secret: r.get(3)?,
        message_authenticator: mode.parse().map_err(|m: String| bad(4, m))?,
        ma_seen: r.get(5)?,
        created_at: Timestamp(r.get(6)?),
        default_realm: r.get(7)?,
        rotation: SecretRotation {
            sealed_old_secret: r.get(8)?,
            old_expires_at: ts(r.get(9)?),
            old_last_used_at: ts(r.get(10)?),
            changed_at: ts(r.get(11)?),
            new_first_used_at: ts(r.get(12)?),
        },
    })
}

/// The columns [`radius_client`] reads, in order.
pub const RADIUS_CLIENT_COLS: &str = "id, name, address, secret, message_authenticator, ma_seen, created_at, \
     default_realm, old_secret, old_secret_expires_at, old_secret_last_used_at, secret_changed_at, \
     new_secret_first_used_at";

pub fn realm(r: &Row<'_>) -> rusqlite::Result<Realm> {
    let settings: String = r.get(1)?;
    Ok(Realm {
        name: r.get(0)?,
        settings: serde_json::from_str(&settings).map_err(|e| bad(1, format!("realm settings: {e}")))?,
        sealed_secrets: r.get(2)?,
        created_at: Timestamp(r.get(3)?),
        updated_at: Timestamp(r.get(4)?),
    })
}

pub fn reply_rule(r: &Row<'_>) -> rusqlite::Result<ReplyRule> {
    let scope: String = r.get(1)?;
    let subject: String = r.get(2)?;
    let scope = match scope.as_str() {
        "all" => RuleScope::All,
        "user" => RuleScope::User(subject),
        "group" => RuleScope::Group(subject),
        _ => return Err(bad(1, "unknown rule scope")),
    };
    Ok(ReplyRule { id: r.get(0)?, scope, attribute: r.get(3)?, value: r.get(4)?, created_at: Timestamp(r.get(5)?) })
}
