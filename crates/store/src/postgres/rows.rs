//! Row ⇄ record conversions for the PostgreSQL backend. The column lists
//! are the SQLite backend's (the schemas match column for column); a row
//! that does not decode into a valid record is reported as corruption.

use tessera_core::audit::AuditRecord;
use tessera_core::clock::Timestamp;
use tessera_core::lockout::LockState;
use tessera_core::model::{
    AccessRecord, ApiKey, InventoryToken, OobChannel, OobTarget, RadiusClient, ReplyRule, RuleScope, SecretRotation,
    Token, TokenId, TokenState, User, UserId,
};
use tessera_core::oob::OobCode;
use tessera_core::realm::Realm;
use tessera_core::store::StoreError;
use tokio_postgres::Row;
use tokio_postgres::types::FromSql;

use crate::sqlite::rows::params_from;

fn bad(col: &str, msg: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("unreadable record ({col}: {msg})"))
}

/// One column, or corruption.
pub fn get<'a, T: FromSql<'a>>(r: &'a Row, i: usize) -> Result<T, StoreError> {
    r.try_get(i).map_err(|e| bad(r.columns().get(i).map_or("?", |c| c.name()), e))
}

fn ts(v: Option<i64>) -> Option<Timestamp> {
    v.map(Timestamp)
}

fn access(at: Option<i64>, addr: Option<String>, client: Option<String>) -> Option<AccessRecord> {
    at.map(|at| AccessRecord { at: Timestamp(at), address: addr, client })
}

fn u32_of(v: i64, col: &str) -> Result<u32, StoreError> {
    u32::try_from(v).map_err(|_| bad(col, "out of range"))
}

pub fn digest32(v: Vec<u8>, col: &str) -> Result<[u8; 32], StoreError> {
    v.try_into().map_err(|_| bad(col, "digest length"))
}

/// A user from the columns of `USER_COLS`.
pub fn user(r: &Row) -> Result<User, StoreError> {
    Ok(User {
        id: UserId(get(r, 0)?),
        realm: get(r, 1)?,
        username: get(r, 2)?,
        password_hash: get(r, 3)?,
        disabled: get(r, 4)?,
        registered: get(r, 5)?,
        lock: LockState {
            failures: u32_of(get(r, 6)?, "failures")?,
            locked_at: ts(get(r, 7)?),
            lock_until: ts(get(r, 8)?),
            throttle_until: ts(get(r, 9)?),
        },
        last_attempt: access(get(r, 10)?, get(r, 11)?, get(r, 12)?),
        last_success: access(get(r, 13)?, get(r, 14)?, get(r, 15)?),
        created_at: Timestamp(get(r, 16)?),
        grace_used: u32_of(get(r, 17)?, "grace_used")?,
    })
}

/// A token from the columns of `TOKEN_COLS`.
pub fn token(r: &Row) -> Result<Token, StoreError> {
    let kind: String = get(r, 3)?;
    let algorithm: String = get(r, 4)?;
    let address: Option<String> = get(r, 14)?;
    let oob = match (kind.as_str(), address) {
        ("email", Some(address)) => Some(OobTarget { channel: OobChannel::Email, address }),
        ("sms", Some(address)) => Some(OobTarget { channel: OobChannel::Sms, address }),
        ("email" | "sms", None) => return Err(bad("address", "email or SMS token without an address")),
        _ => None,
    };
    let otp_kind = if oob.is_some() { "hotp" } else { kind.as_str() };
    let params = params_from(otp_kind, &algorithm, get(r, 5)?, get(r, 6)?).map_err(|m| bad("kind", m))?;
    let state: String = get(r, 10)?;
    let state = match state.as_str() {
        "pending" => TokenState::Pending,
        "active" => TokenState::Active,
        _ => return Err(bad("state", "unknown token state")),
    };
    let drift: i64 = get(r, 9)?;
    Ok(Token {
        id: TokenId(get(r, 0)?),
        user_id: UserId(get(r, 1)?),
        serial: get(r, 2)?,
        params,
        sealed_secret: get(r, 7)?,
        counter: get(r, 8)?,
        drift: i32::try_from(drift).map_err(|_| bad("drift", "out of range"))?,
        state,
        description: get(r, 11)?,
        created_at: Timestamp(get(r, 12)?),
        last_used_at: ts(get(r, 13)?),
        oob,
    })
}

/// An email/SMS code from the columns of `OOB_CODE_COLS`.
pub fn oob_code(r: &Row) -> Result<OobCode, StoreError> {
    Ok(OobCode {
        id: get(r, 0)?,
        user_id: UserId(get(r, 1)?),
        token_id: TokenId(get(r, 2)?),
        digest: digest32(get(r, 3)?, "digest")?,
        created_at: Timestamp(get(r, 4)?),
        expires_at: Timestamp(get(r, 5)?),
        attempts: u32_of(get(r, 6)?, "attempts")?,
        used_at: ts(get(r, 7)?),
    })
}

/// An audit record from the columns of `AUDIT_COLS`.
pub fn audit(r: &Row) -> Result<AuditRecord, StoreError> {
    let result: String = get(r, 8)?;
    Ok(AuditRecord {
        id: get(r, 0)?,
        at: Timestamp(get(r, 1)?),
        node: get(r, 2)?,
        actor: get(r, 3)?,
        action: get(r, 4)?,
        target: get(r, 5)?,
        source: get(r, 6)?,
        client: get(r, 7)?,
        result: result.parse().map_err(|e: String| bad("result", e))?,
        reason: get(r, 9)?,
    })
}

pub fn api_key(r: &Row) -> Result<ApiKey, StoreError> {
    Ok(ApiKey {
        id: get(r, 0)?,
        name: get(r, 1)?,
        prefix: get(r, 2)?,
        digest: digest32(get(r, 3)?, "digest")?,
        created_at: Timestamp(get(r, 4)?),
        last_used_at: ts(get(r, 5)?),
    })
}

pub fn radius_client(r: &Row) -> Result<RadiusClient, StoreError> {
    let address: String = get(r, 2)?;
    let mode: String = get(r, 4)?;
    Ok(RadiusClient {
        id: get(r, 0)?,
        name: get(r, 1)?,
        address: tessera_core::cidr::Cidr::parse(&address).map_err(|m| bad("address", m))?,
        sealed_secret: get(r, 3)?,
        message_authenticator: mode.parse().map_err(|m: String| bad("message_authenticator", m))?,
        ma_seen: get(r, 5)?,
        created_at: Timestamp(get(r, 6)?),
        default_realm: get(r, 7)?,
        rotation: SecretRotation {
            sealed_old_secret: get(r, 8)?,
            old_expires_at: ts(get(r, 9)?),
            old_last_used_at: ts(get(r, 10)?),
            changed_at: ts(get(r, 11)?),
            new_first_used_at: ts(get(r, 12)?),
        },
    })
}

/// The columns [`radius_client`] reads, in order.
pub const RADIUS_CLIENT_COLS: &str = "id, name, address, secret, message_authenticator, ma_seen, created_at, \
     default_realm, old_secret, old_secret_expires_at, old_secret_last_used_at, secret_changed_at, \
     new_secret_first_used_at";

pub fn realm(r: &Row) -> Result<Realm, StoreError> {
    let settings: String = get(r, 1)?;
    Ok(Realm {
        name: get(r, 0)?,
        settings: serde_json::from_str(&settings).map_err(|e| bad("settings", e))?,
        sealed_secrets: get(r, 2)?,
        created_at: Timestamp(get(r, 3)?),
        updated_at: Timestamp(get(r, 4)?),
    })
}

pub fn reply_rule(r: &Row) -> Result<ReplyRule, StoreError> {
    let scope: String = get(r, 1)?;
    let subject: String = get(r, 2)?;
    let scope = match scope.as_str() {
        "all" => RuleScope::All,
        "user" => RuleScope::User(subject),
        "group" => RuleScope::Group(subject),
        _ => return Err(bad("scope", "unknown rule scope")),
    };
    Ok(ReplyRule { id: get(r, 0)?, scope, attribute: get(r, 3)?, value: get(r, 4)?, created_at: Timestamp(get(r, 5)?) })
}

/// `inventory i LEFT JOIN tokens t`, columns as in `INVENTORY_COLS`.
pub fn inventory_item(r: &Row) -> Result<InventoryToken, StoreError> {
    let kind: String = get(r, 2)?;
    let algorithm: String = get(r, 3)?;
    let params = params_from(&kind, &algorithm, get(r, 4)?, get(r, 5)?).map_err(|m| bad("kind", m))?;
    Ok(InventoryToken {
        id: get(r, 0)?,
        serial: get(r, 1)?,
        params,
        sealed_secret: get(r, 6)?,
        counter: get(r, 7)?,
        manufacturer: get(r, 8)?,
        model: get(r, 9)?,
        token_id: get::<Option<i64>>(r, 10)?.map(TokenId),
        assigned_to: get::<Option<i64>>(r, 11)?.map(UserId),
        imported_at: Timestamp(get(r, 12)?),
    })
}

pub const INVENTORY_COLS: &str = "i.id, i.serial, i.kind, i.algorithm, i.digits, i.period, i.secret, i.counter, \
    i.manufacturer, i.model, t.id, t.user_id, i.imported_at";
pub const INVENTORY_FROM: &str = "inventory i LEFT JOIN tokens t ON t.id = i.token_id";
