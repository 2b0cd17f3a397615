//! What leaves the process: API and CLI views of stored records.
//!
//! Each view is built by an explicit conversion that copies only public
//! fields. Sealed secrets, password hashes and key digests have no field
//! here, so they cannot be serialised by accident.

use serde::Serialize;

use crate::audit::AuditRecord;
use crate::clock::Timestamp;
use crate::model::{AccessRecord, ApiKey, RadiusClient, ReplyRule, RuleScope, SecretRotation, Token, User, UserStatus};
use tessera_otp::OtpKind;

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AccessView {
    /// RFC 3339 UTC time.
    pub at: String,
    /// Source address of the attempt.
    pub address: Option<String>,
    /// Client that relayed it: a RADIUS client name, `rest`, `cli`, a user agent.
    pub client: Option<String>,
}

impl From<&AccessRecord> for AccessView {
    fn from(a: &AccessRecord) -> Self {
        AccessView { at: a.at.to_rfc3339(), address: a.address.clone(), client: a.client.clone() }
    }
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UserView {
    pub id: String,
    pub realm: String,
    pub username: String,
    /// unregistered, active, locked or disabled.
    #[cfg_attr(feature = "openapi", schema(value_type = String, example = "active"))]
    pub status: UserStatus,
    /// Whether the user has a local password (the password itself is never shown).
    pub has_password: bool,
    /// Consecutive failures since the last success or unlock.
    pub failures: u32,
    /// When a current lock lifts by itself (absent: not locked, or admin unlock only).
    pub locked_until: Option<String>,
    pub last_attempt: Option<AccessView>,
    pub last_success: Option<AccessView>,
    pub created_at: String,
}

impl UserView {
    pub fn new(u: &User, now: Timestamp) -> Self {
        let status = u.status(now);
        UserView {
            id: u.id.to_string(),
            realm: u.realm.clone(),
            username: u.username.clone(),
            status,
            has_password: u.password_hash.is_some(),
            failures: u.lock.current(now).failures,
            locked_until: if status == UserStatus::Locked {
                u.lock.lock_until.map(Timestamp::to_rfc3339)
            } else {
                None
            },
            last_attempt: u.last_attempt.as_ref().map(AccessView::from),
            last_success: u.last_success.as_ref().map(AccessView::from),
            created_at: u.created_at.to_rfc3339(),
        }
    }
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TokenView {
    pub id: String,
    pub serial: String,
    pub user_id: String,
    /// `totp`, `hotp`, `email` or `sms`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The HMAC of an OTP token; `-` for email and SMS tokens.
    pub algorithm: String,
    /// Code length (of the codes sent, for email and SMS tokens).
    pub digits: u8,
    /// TOTP period in seconds.
    pub period: Option<u32>,
    /// `pending` until confirmed with a code, then `active`.
    pub state: String,
    /// HOTP: the next counter expected. TOTP: the lowest time step still accepted.
    pub counter: i64,
    /// Learned TOTP clock drift, in steps.
    pub drift: i32,
    pub description: String,
    pub created_at: String,
    pub last_used_at: Option<String>,
    /// Email and SMS tokens: where codes are sent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
}

impl From<&Token> for TokenView {
    fn from(t: &Token) -> Self {
        let (kind, period) = match (&t.oob, t.params.kind) {
            (Some(o), _) => (o.channel.as_str(), None),
            (None, OtpKind::Totp { period }) => ("totp", Some(period.get())),
            (None, OtpKind::Hotp) => ("hotp", None),
        };
        TokenView {
            id: t.id.to_string(),
            serial: t.serial.clone(),
            user_id: t.user_id.to_string(),
            kind: kind.into(),
            algorithm: if t.oob.is_some() { "-".into() } else { t.params.algorithm.to_string() },
            digits: t.params.digits.get(),
            period,
            state: t.state.as_str().into(),
            counter: t.counter,
            drift: t.drift,
            description: t.description.clone(),
            created_at: t.created_at.to_rfc3339(),
            last_used_at: t.last_used_at.map(Timestamp::to_rfc3339),
            address: t.oob.as_ref().map(|o| o.address.clone()),
        }
    }
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ApiKeyView {
    pub name: String,
    /// The key's first characters, to tell keys apart.
    pub prefix: String,
    pub created_at: String,
    pub last_used_at: Option<String>,
}

impl From<&ApiKey> for ApiKeyView {
    fn from(k: &ApiKey) -> Self {
        ApiKeyView {
            name: k.name.clone(),
            prefix: k.prefix.clone(),
            created_at: k.created_at.to_rfc3339(),
            last_used_at: k.last_used_at.map(Timestamp::to_rfc3339),
        }
    }
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AuditView {
    pub id: i64,
    pub at: String,
    pub node: String,
    pub actor: String,
    pub action: String,
    pub target: Option<String>,
    pub source: Option<String>,
    pub client: Option<String>,
    /// accept, reject, challenge, ok or error.
    pub result: String,
    pub reason: Option<String>,
}

impl From<&AuditRecord> for AuditView {
    fn from(a: &AuditRecord) -> Self {
        AuditView {
            id: a.id,
            at: a.at.to_rfc3339(),
            node: a.node.clone(),
            actor: a.actor.clone(),
            action: a.action.clone(),
            target: a.target.clone(),
            source: a.source.clone(),
            client: a.client.clone(),
            result: a.result.as_str().into(),
            reason: a.reason.clone(),
        }
    }
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RadiusClientView {
    pub name: String,
    /// Source address or prefix the client's packets come from.
    pub address: String,
    /// require, auto or off.
    pub message_authenticator: String,
    /// `auto` mode: whether the client has been seen signing its requests.
    pub signs_requests: bool,
    pub created_at: String,
    /// The last secret change (`client set-secret`); absent if the secret
    /// never changed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret_change: Option<SecretChangeView>,
}

/// A RADIUS client's last secret change and which secret it still uses.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SecretChangeView {
    pub changed_at: String,
    /// `accepted` (the overlap runs), `expired` (it ended) or `none` (the
    /// change kept no overlap).
    pub old_secret: String,
    /// When the old secret stops (stopped) being accepted.
    pub old_secret_until: Option<String>,
    /// Last request signed with the old secret since the change (recorded
    /// to the minute).
    pub old_secret_last_used_at: Option<String>,
    /// First request signed with the new secret.
    pub new_secret_first_used_at: Option<String>,
    /// One line for people: which secret the client uses.
    pub summary: String,
}

impl SecretChangeView {
    pub fn new(r: &SecretRotation, now: Timestamp) -> Option<SecretChangeView> {
        let changed = r.changed_at?;
        let overlap = r.old_expires_at.filter(|e| *e > changed);
        let old_secret = match overlap {
            None => "none",
            Some(_) if r.old_active(now) => "accepted",
            Some(_) => "expired",
        };
        let (old, new) = (r.old_last_used_at, r.new_first_used_at);
        let uses = match (old, new) {
            (None, None) => "no request seen since the change".to_string(),
            (None, Some(f)) => format!("all requests use the new secret since {f}"),
            (Some(l), None) => format!("still uses the old secret (last at {l}); the new one not seen yet"),
            (Some(l), Some(f)) if l < f => {
                format!("all requests use the new secret since {f} (old secret last at {l})")
            }
            (Some(l), Some(f)) => format!("uses both secrets: the new one since {f}, the old one last at {l}"),
        };
        let summary = match (old_secret, overlap) {
            ("accepted", Some(e)) => format!("{uses}; old secret accepted until {e}"),
            ("expired", Some(e)) => format!("{uses}; old secret refused since {e}"),
            _ => format!("{uses}; changed without overlap (old secret refused since {changed})"),
        };
        Some(SecretChangeView {
            changed_at: changed.to_rfc3339(),
            old_secret: old_secret.into(),
            old_secret_until: overlap.map(Timestamp::to_rfc3339),
            old_secret_last_used_at: old.map(Timestamp::to_rfc3339),
            new_secret_first_used_at: new.map(Timestamp::to_rfc3339),
            summary,
        })
    }
}

impl RadiusClientView {
    /// The client as of `now` (whether its old secret is still accepted).
    pub fn new(c: &RadiusClient, now: Timestamp) -> Self {
        RadiusClientView {
            name: c.name.clone(),
            address: c.address.to_string(),
            message_authenticator: c.message_authenticator.as_str().into(),
            signs_requests: c.ma_seen,
            created_at: c.created_at.to_rfc3339(),
            secret_change: SecretChangeView::new(&c.rotation, now),
        }
    }
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ReplyRuleView {
    pub id: String,
    /// all, user or group.
    pub scope: String,
    pub subject: Option<String>,
    pub attribute: String,
    pub value: String,
}

impl From<&ReplyRule> for ReplyRuleView {
    fn from(r: &ReplyRule) -> Self {
        let (scope, subject) = match &r.scope {
            RuleScope::All => ("all", None),
            RuleScope::User(u) => ("user", Some(u.clone())),
            RuleScope::Group(g) => ("group", Some(g.clone())),
        };
        ReplyRuleView {
            id: r.id.to_string(),
            scope: scope.into(),
            subject,
            attribute: r.attribute.clone(),
            value: r.value.clone(),
        }
    }
}

/// A web-console administrator as the CLI and console show it (no hash, no secret).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct AdminView {
    pub name: String,
    /// Whether the admin's own TOTP is enrolled (else at next sign-in).
    pub totp_enrolled: bool,
    pub failures: u32,
    pub locked: bool,
    pub created_at: String,
    pub last_login_at: Option<String>,
    pub last_login_from: Option<String>,
}

impl AdminView {
    pub fn new(a: &crate::model::AdminAccount, now: Timestamp) -> Self {
        AdminView {
            name: a.name.clone(),
            totp_enrolled: a.enrolled(),
            failures: a.lock.current(now).failures,
            locked: a.lock.block(now).is_some(),
            created_at: a.created_at.to_rfc3339(),
            last_login_at: a.last_login_at.map(Timestamp::to_rfc3339),
            last_login_from: a.last_login_from.clone(),
        }
    }
}
