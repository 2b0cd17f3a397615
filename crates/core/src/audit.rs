//! The audit trail: one record per authentication and per admin action.
//!
//! Records name who did what to which target from where, the result, and the
//! internal reason (which factor failed, which bound was hit). They never
//! carry secrets, codes or passwords: callers only put identifiers here.

use serde::{Deserialize, Serialize};

use crate::clock::Timestamp;

pub mod chain;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuditResult {
    Accept,
    Reject,
    Challenge,
    /// An admin action that took effect.
    Ok,
    /// An admin action that was refused or failed; nothing changed.
    Error,
}

impl AuditResult {
    pub fn as_str(self) -> &'static str {
        match self {
            AuditResult::Accept => "accept",
            AuditResult::Reject => "reject",
            AuditResult::Challenge => "challenge",
            AuditResult::Ok => "ok",
            AuditResult::Error => "error",
        }
    }
}

impl std::str::FromStr for AuditResult {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "accept" => AuditResult::Accept,
            "reject" => AuditResult::Reject,
            "challenge" => AuditResult::Challenge,
            "ok" => AuditResult::Ok,
            "error" => AuditResult::Error,
            other => return Err(format!("unknown audit result `{other}`")),
        })
    }
}

/// Who is acting, and from where. Recorded on every audit line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    /// `cli:<os user>`, `api-key:<name>`, `admin:<name>`, `validate`, …
    pub name: String,
    pub address: Option<String>,
    pub client: Option<String>,
}

impl Actor {
    pub fn new(name: impl Into<String>) -> Self {
        Actor { name: name.into(), address: None, client: None }
    }
    pub fn with_address(mut self, address: Option<String>) -> Self {
        self.address = address;
        self
    }
    pub fn with_client(mut self, client: Option<String>) -> Self {
        self.client = client;
        self
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// Assigned by the store; 0 before the record is written.
    pub id: i64,
    pub at: Timestamp,
    pub node: String,
    pub actor: String,
    pub action: String,
    pub target: Option<String>,
    pub source: Option<String>,
    pub client: Option<String>,
    pub result: AuditResult,
    pub reason: Option<String>,
}

impl AuditRecord {
    pub fn new(at: Timestamp, node: &str, actor: &Actor, action: &str) -> Self {
        AuditRecord {
            id: 0,
            at,
            node: node.to_string(),
            actor: actor.name.clone(),
            action: action.to_string(),
            target: None,
            source: actor.address.clone(),
            client: actor.client.clone(),
            result: AuditResult::Ok,
            reason: None,
        }
    }
    pub fn target(mut self, t: impl Into<String>) -> Self {
        self.target = Some(t.into());
        self
    }
    pub fn result(mut self, r: AuditResult, reason: Option<&str>) -> Self {
        self.result = r;
        self.reason = reason.map(str::to_string);
        self
    }
}

/// Filters for reading the audit log, newest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditQuery {
    pub since: Option<Timestamp>,
    pub until: Option<Timestamp>,
    pub actor: Option<String>,
    pub action: Option<String>,
    /// Matches the target itself and, as `target_match` says, what is
    /// named after it (see [`target_prefixes`]).
    pub target: Option<String>,
    pub target_match: TargetMatch,
    pub result: Option<AuditResult>,
    /// Only records with an id below this (paging backwards).
    pub before_id: Option<i64>,
    pub limit: u32,
}

/// How an [`AuditQuery`] target matches a record's target.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum TargetMatch {
    /// What an administrator typing a name means: the target itself, a user
    /// of that name in any realm (`NAME@realm`: logins and admin actions name
    /// realm users so), or a token action on that user (`NAME SERIAL`).
    #[default]
    Name,
    /// One user's records (the target is their label, `name` or
    /// `name@realm`): the target itself or its token actions, not namesakes
    /// in other realms.
    User,
}

/// The prefixes a target filter matches besides the target itself (see
/// [`TargetMatch`]); all of the same length. Shared by the backends, which
/// compare prefixes (not LIKE, whose wildcards and case rules differ
/// between SQLite and PostgreSQL).
pub fn target_prefixes(target: &str, how: TargetMatch) -> Vec<String> {
    match how {
        TargetMatch::Name => vec![format!("{target}@"), format!("{target} ")],
        TargetMatch::User => vec![format!("{target} ")],
    }
}
