//! Stored domain records: users, tokens, backup codes, API keys.
//!
//! These are the *stored* shapes. They carry sealed secrets and password
//! hashes, so they are deliberately not `Serialize`: every API or CLI view is
//! an explicit conversion (see `views`), and a secret cannot ride along.

use serde::{Deserialize, Serialize};
use tessera_otp::OtpParams;

use crate::clock::Timestamp;
use crate::lockout::LockState;

macro_rules! id_type {
    ($name:ident, $doc:literal) => {
        #[doc = $doc]
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub i64);

        impl $name {
            /// A random positive 63-bit id: no coordination needed between
            /// nodes, and an integer primary key in both databases.
            pub fn new_random() -> Self {
                let mut b = [0u8; 8];
                crate::random::Random::fill(&crate::random::OsRandom, &mut b);
                let v = (u64::from_le_bytes(b) >> 1) as i64;
                $name(v.max(1))
            }
            pub fn get(self) -> i64 {
                self.0
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, "{}", self.0)
            }
        }

        impl std::str::FromStr for $name {
            type Err = std::num::ParseIntError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                s.parse().map($name)
            }
        }
    };
}

id_type!(UserId, "Stable identifier of a user, independent of the renameable username.");
id_type!(TokenId, "Stable identifier of a token; part of the sealed secret's associated data.");

/// The status an administrator sees. `Locked` is derived from the lock
/// state and the clock; the others are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UserStatus {
    /// No confirmed token yet.
    Unregistered,
    Active,
    Locked,
    Disabled,
}

impl UserStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            UserStatus::Unregistered => "unregistered",
            UserStatus::Active => "active",
            UserStatus::Locked => "locked",
            UserStatus::Disabled => "disabled",
        }
    }
}

impl std::str::FromStr for UserStatus {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "unregistered" => Ok(UserStatus::Unregistered),
            "active" => Ok(UserStatus::Active),
            "locked" => Ok(UserStatus::Locked),
            "disabled" => Ok(UserStatus::Disabled),
            other => Err(format!("unknown status `{other}` (expected unregistered, active, locked or disabled)")),
        }
    }
}

/// Where an attempt came from: the caller's address and the client that
/// relayed it (a RADIUS NAS name, `rest`, a browser user agent, `cli`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessRecord {
    pub at: Timestamp,
    pub address: Option<String>,
    pub client: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub id: UserId,
    pub realm: String,
    pub username: String,
    /// argon2id PHC string; `None` means the user has no local password.
    pub password_hash: Option<String>,
    pub disabled: bool,
    /// True once a token has been confirmed; cleared by reset.
    pub registered: bool,
    pub lock: LockState,
    pub last_attempt: Option<AccessRecord>,
    pub last_success: Option<AccessRecord>,
    /// Logins granted by the grace policy so far (first factor alone, no token yet).
    pub grace_used: u32,
    pub created_at: Timestamp,
}

impl User {
    /// A new user: unregistered, no lock, no history, a fresh random id.
    pub fn new(realm: &str, username: &str, password_hash: Option<String>, created_at: Timestamp) -> User {
        User {
            id: UserId::new_random(),
            realm: realm.to_string(),
            username: username.to_string(),
            password_hash,
            disabled: false,
            registered: false,
            lock: LockState::default(),
            last_attempt: None,
            last_success: None,
            grace_used: 0,
            created_at,
        }
    }

    pub fn status(&self, now: Timestamp) -> UserStatus {
        if self.disabled {
            UserStatus::Disabled
        } else if self.lock.is_locked(now) {
            UserStatus::Locked
        } else if self.registered {
            UserStatus::Active
        } else {
            UserStatus::Unregistered
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenState {
    /// Enrolled but not yet confirmed with a code; never accepted for login.
    Pending,
    Active,
}

impl TokenState {
    pub fn as_str(self) -> &'static str {
        match self {
            TokenState::Pending => "pending",
            TokenState::Active => "active",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    pub id: TokenId,
    pub user_id: UserId,
    pub serial: String,
    pub params: OtpParams,
    /// The OTP seed sealed under the master key, bound to `id`.
    pub sealed_secret: Vec<u8>,
    /// Lowest counter (HOTP) or time step (TOTP) that may still be accepted.
    /// Advancing it is what makes a used code unusable.
    pub counter: i64,
    /// Learned clock drift of a TOTP token, in steps.
    pub drift: i32,
    pub state: TokenState,
    pub description: String,
    pub created_at: Timestamp,
    pub last_used_at: Option<Timestamp>,
    /// Email and SMS tokens: where codes are sent (see `oob`). Their
    /// `params.digits` is the length of the codes sent, and `sealed_secret`
    /// a random secret that keys the stored digests of those codes; they
    /// never produce HOTP/TOTP codes. `None` for OTP tokens.
    pub oob: Option<OobTarget>,
}

/// How an out-of-band code reaches its user.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OobChannel {
    Email,
    Sms,
}

impl OobChannel {
    pub fn as_str(self) -> &'static str {
        match self {
            OobChannel::Email => "email",
            OobChannel::Sms => "sms",
        }
    }
}

impl std::str::FromStr for OobChannel {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "email" => Ok(OobChannel::Email),
            "sms" => Ok(OobChannel::Sms),
            other => Err(format!("unknown channel `{other}` (expected email or sms)")),
        }
    }
}

/// The address of an email or SMS token. Not a secret (it is shown masked
/// to the person logging in), but the codes sent to it are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OobTarget {
    pub channel: OobChannel,
    /// An email address, or a phone number as `+` and digits.
    pub address: String,
}

/// A hardware token's seed in the inventory: imported unassigned, then
/// assigned to a user (a [`Token`] is made from it) and possibly returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InventoryToken {
    pub id: i64,
    pub serial: String,
    pub params: OtpParams,
    /// The seed sealed under the master key, bound to `inventory:<id>`.
    pub sealed_secret: Vec<u8>,
    /// The floor reached so far (kept across assignments).
    pub counter: i64,
    pub manufacturer: Option<String>,
    pub model: Option<String>,
    /// While assigned: the token made from this seed, and its user.
    pub token_id: Option<TokenId>,
    pub assigned_to: Option<UserId>,
    pub imported_at: Timestamp,
}

impl InventoryToken {
    /// The associated-data row its seed is sealed to.
    pub fn seal_row(id: i64) -> String {
        format!("inventory:{id}")
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKey {
    pub id: String,
    pub name: String,
    /// The first characters of the key, shown in listings so an admin can tell keys apart.
    pub prefix: String,
    pub digest: [u8; 32],
    pub created_at: Timestamp,
    pub last_used_at: Option<Timestamp>,
}

/// When a RADIUS client must sign its Access-Requests with
/// Message-Authenticator (RFC 3579; BlastRADIUS hardening).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum MessageAuthenticatorMode {
    /// Always required (default).
    #[default]
    Require,
    /// Required once the client has sent one (FreeRADIUS's behaviour).
    Auto,
    /// Not required, for old gear; Proxy-State without it is still dropped.
    Off,
}

impl MessageAuthenticatorMode {
    pub fn as_str(self) -> &'static str {
        match self {
            MessageAuthenticatorMode::Require => "require",
            MessageAuthenticatorMode::Auto => "auto",
            MessageAuthenticatorMode::Off => "off",
        }
    }
}

impl std::str::FromStr for MessageAuthenticatorMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "require" => Ok(MessageAuthenticatorMode::Require),
            "auto" => Ok(MessageAuthenticatorMode::Auto),
            "off" => Ok(MessageAuthenticatorMode::Off),
            other => Err(format!("`{other}`: expected require, auto or off")),
        }
    }
}

/// A RADIUS client (NAS) allowed to send requests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RadiusClient {
    pub id: i64,
    pub name: String,
    pub address: crate::cidr::Cidr,
    /// The shared secret, sealed under the master key (row = id).
    pub sealed_secret: Vec<u8>,
    pub message_authenticator: MessageAuthenticatorMode,
    /// `auto` mode: the client has sent a Message-Authenticator before.
    pub ma_seen: bool,
    /// Realm for users of this client who name none.
    pub default_realm: Option<String>,
    pub created_at: Timestamp,
    /// The secret rotation (`client set-secret`); all `None` for a client
    /// whose secret never changed.
    pub rotation: SecretRotation,
}

/// A RADIUS client's secret change and its overlap: the previous secret,
/// sealed (purpose [`crate::keys::Purpose::RadiusOldSecret`], row = client
/// id), is accepted until `old_expires_at`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SecretRotation {
    /// `None` once dropped (or when the change kept no overlap).
    pub sealed_old_secret: Option<Vec<u8>>,
    /// When the old secret stops (or stopped) being accepted; kept after
    /// the secret itself is dropped, as history.
    pub old_expires_at: Option<Timestamp>,
    /// Last request seen signed with the old secret (to the minute).
    pub old_last_used_at: Option<Timestamp>,
    /// When the current secret was set by a secret change.
    pub changed_at: Option<Timestamp>,
    /// First request seen signed with the current secret after the change.
    pub new_first_used_at: Option<Timestamp>,
}

impl SecretRotation {
    /// The old secret still accepted at `now`: present and not expired.
    /// Expiry is exact: from `old_expires_at` on it is refused, whether or
    /// not it has been removed from the database yet.
    pub fn old_active(&self, now: Timestamp) -> bool {
        self.sealed_old_secret.is_some() && self.old_expires_at.is_some_and(|e| now < e)
    }

    /// The old secret is expired but still stored (to be removed).
    pub fn old_expired_not_dropped(&self, now: Timestamp) -> bool {
        self.sealed_old_secret.is_some() && !self.old_active(now)
    }
}

/// Which of a RADIUS client's secrets a request was signed with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SecretSlot {
    /// The current secret.
    Current,
    /// The previous secret, during a rotation's overlap.
    Old,
}

/// Who a reply rule applies to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "scope", content = "subject", rename_all = "lowercase")]
pub enum RuleScope {
    All,
    /// `username` or `username@realm`.
    User(String),
    Group(String),
}

/// One attribute added to Access-Accept for matching users.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplyRule {
    pub id: i64,
    pub scope: RuleScope,
    /// Dictionary name, e.g. `Filter-Id`, `Fortinet-Group-Name`.
    pub attribute: String,
    pub value: String,
    pub created_at: Timestamp,
}

id_type!(
    AdminId,
    "Stable identifier of a web-console administrator; part of the sealed TOTP secret's associated data."
);

/// A web-console administrator (issue 7): signs in with a password and an
/// own TOTP, enrolled at first sign-in. Stored shape: carries the password
/// hash and the sealed secret, so it is not `Serialize` (see `views`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminAccount {
    pub id: AdminId,
    pub name: String,
    /// argon2id PHC string.
    pub password_hash: String,
    /// TOTP secret sealed with `Purpose::AdminTotp` (row = id); `None`
    /// until the admin enrolls at their first sign-in.
    pub totp_secret: Option<Vec<u8>>,
    /// The first TOTP step not yet used (replay floor).
    pub totp_floor: i64,
    pub lock: LockState,
    pub created_at: Timestamp,
    pub last_login_at: Option<Timestamp>,
    pub last_login_from: Option<String>,
}

impl AdminAccount {
    pub fn enrolled(&self) -> bool {
        self.totp_secret.is_some()
    }
}
