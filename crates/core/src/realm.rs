//! Realms: which first-factor sources check a user's password.
//!
//! A realm names an ordered chain of directory sources (LDAP/AD, Microsoft
//! Entra ID). Users with a local password are checked locally whatever their
//! realm; users without one are checked against the realm's chain, or have
//! no first factor at all (OTP only) when the chain is empty.
//!
//! The settings are plain data here; `tessera-server` turns them into live
//! LDAP and Entra clients. Secrets (a service account's bind password, an
//! Entra client secret) are kept apart from the settings and sealed under
//! the master key, so `realm show` and the database never reveal them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::clock::Timestamp;
use crate::error::CoreError;

/// Longest accepted cache lifetime: a day. Longer would keep a removed
/// group membership alive for too long.
pub const MAX_CACHE_TTL_SECONDS: u32 = 86_400;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Realm {
    pub name: String,
    pub settings: RealmSettings,
    /// Sealed JSON map of secret name → value (see [`RealmSecrets`]).
    pub sealed_secrets: Vec<u8>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// A realm as an administrator writes it (`tessera realm add NAME --config realm.toml`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct RealmSettings {
    /// First-factor sources, tried in order. The next source is asked only
    /// when the previous one is unreachable or does not know the user, never
    /// when it said "wrong password".
    #[serde(rename = "source")]
    pub sources: Vec<SourceSettings>,
    /// Seconds to remember which source a user belongs to and their
    /// directory attributes and groups (0 = off). Password verdicts are never
    /// cached.
    pub cache_ttl_seconds: u32,
    /// Create the user in tessera on their first successful directory login
    /// (unregistered, so only the grace policy or a single-factor exception
    /// lets them in until they enroll a token).
    pub auto_provision: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum SourceSettings {
    Ldap(LdapSettings),
    Entra(EntraSettings),
}

impl SourceSettings {
    pub fn kind(&self) -> &'static str {
        match self {
            SourceSettings::Ldap(_) => "ldap",
            SourceSettings::Entra(_) => "entra",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LdapSettings {
    /// `ldap://` or `ldaps://` URLs, tried in order.
    pub urls: Vec<String>,
    #[serde(default)]
    pub starttls: bool,
    /// PEM file of the CA(s) that sign the directory's certificates.
    #[serde(default)]
    pub ca_file: Option<String>,
    /// SHA-256 of the server certificate (hex); replaces CA verification.
    #[serde(default)]
    pub pinned_sha256: Option<String>,
    /// Bind as the user with this DN or UPN template (`{user}` is replaced),
    /// e.g. `uid={user},ou=people,dc=example,dc=org` or `{user}@corp.example.com`.
    #[serde(default)]
    pub bind_template: Option<String>,
    /// Search-then-bind: the service account (its password is a realm secret).
    #[serde(default)]
    pub bind_dn: Option<String>,
    #[serde(default)]
    pub base_dn: Option<String>,
    /// e.g. `(sAMAccountName={user})`; `{user}` is escaped (RFC 4515).
    #[serde(default)]
    pub filter: Option<String>,
    /// `memberof` (the attribute on the user), `search` (groups whose
    /// `group_filter` matches) or `none`.
    #[serde(default = "default_group_mode")]
    pub group_mode: String,
    #[serde(default = "default_member_of")]
    pub member_of_attribute: String,
    #[serde(default)]
    pub group_base_dn: Option<String>,
    /// e.g. `(member={dn})` or `(memberUid={user})`.
    #[serde(default)]
    pub group_filter: Option<String>,
    #[serde(default = "default_cn")]
    pub group_name_attribute: String,
    #[serde(default = "default_uid")]
    pub username_attribute: String,
    #[serde(default = "default_connect_timeout_ms")]
    pub connect_timeout_ms: u64,
    #[serde(default = "default_op_timeout_ms")]
    pub timeout_ms: u64,
    #[serde(default = "default_pool")]
    pub pool_size: usize,
}

fn default_group_mode() -> String {
    "none".into()
}
fn default_member_of() -> String {
    "memberOf".into()
}
fn default_cn() -> String {
    "cn".into()
}
fn default_uid() -> String {
    "uid".into()
}
fn default_connect_timeout_ms() -> u64 {
    3000
}
fn default_op_timeout_ms() -> u64 {
    5000
}
fn default_pool() -> usize {
    4
}
fn default_authority() -> String {
    "https://login.microsoftonline.com".into()
}
fn default_scope() -> String {
    "openid".into()
}
fn default_entra_timeout_ms() -> u64 {
    10_000
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EntraSettings {
    #[serde(default = "default_authority")]
    pub authority: String,
    pub tenant: String,
    pub client_id: String,
    #[serde(default = "default_scope")]
    pub scope: String,
    /// Appended to bare usernames: `alice` → `alice@corp.example.com`.
    #[serde(default)]
    pub upn_domain: Option<String>,
    /// Accept accounts without MFA (a successful token answer); refused by default.
    #[serde(default)]
    pub allow_no_mfa: bool,
    #[serde(default = "default_entra_timeout_ms")]
    pub timeout_ms: u64,
    /// Extra CA (PEM) to trust, e.g. for a TLS-inspecting proxy.
    #[serde(default)]
    pub ca_file: Option<String>,
}

/// Secret values of a realm, by name: `source.N.bind_password`,
/// `source.N.client_secret`.
pub type RealmSecrets = BTreeMap<String, Zeroizing<String>>;

pub fn secret_name(source: usize, what: &str) -> String {
    format!("source.{source}.{what}")
}

impl RealmSettings {
    /// Checks what can be checked without the network.
    pub fn validate(&self) -> Result<(), CoreError> {
        if self.cache_ttl_seconds > MAX_CACHE_TTL_SECONDS {
            return Err(CoreError::invalid("cache_ttl_seconds", format!("at most {MAX_CACHE_TTL_SECONDS}")));
        }
        for (i, s) in self.sources.iter().enumerate() {
            let field = |f: &str, m: &str| CoreError::invalid("source", format!("source {}: {f}: {m}", i + 1));
            match s {
                SourceSettings::Ldap(l) => {
                    if l.urls.is_empty() {
                        return Err(field("urls", "at least one ldap:// or ldaps:// URL"));
                    }
                    for u in &l.urls {
                        if !(u.starts_with("ldap://") || u.starts_with("ldaps://")) {
                            return Err(field("urls", &format!("`{u}` is not ldap:// or ldaps://")));
                        }
                    }
                    match (&l.bind_template, &l.bind_dn) {
                        (Some(t), None) if t.contains("{user}") => {}
                        (Some(_), None) => {
                            return Err(field("bind_template", "must contain {user}"));
                        }
                        (None, Some(_)) => {
                            if l.base_dn.is_none() {
                                return Err(field("base_dn", "needed with bind_dn"));
                            }
                            if !l.filter.as_deref().is_some_and(|f| f.contains("{user}")) {
                                return Err(field("filter", "needed with bind_dn; contains {user}"));
                            }
                        }
                        _ => {
                            return Err(field(
                                "bind_template",
                                "set either bind_template (bind as the user) or bind_dn + base_dn + filter (search, then bind)",
                            ));
                        }
                    }
                    match l.group_mode.as_str() {
                        "none" | "memberof" => {}
                        "search" => {
                            if l.group_base_dn.is_none() || l.group_filter.is_none() {
                                return Err(field("group_mode", "`search` needs group_base_dn and group_filter"));
                            }
                        }
                        other => {
                            return Err(field("group_mode", &format!("`{other}`: expected none, memberof or search")));
                        }
                    }
                    if l.connect_timeout_ms == 0
                        || l.timeout_ms == 0
                        || l.connect_timeout_ms > 60_000
                        || l.timeout_ms > 60_000
                    {
                        return Err(field("timeout_ms", "between 1 and 60000 ms"));
                    }
                }
                SourceSettings::Entra(e) => {
                    if e.tenant.is_empty()
                        || e.tenant.chars().any(|c| c.is_whitespace() || matches!(c, '/' | '?' | '#' | '%'))
                    {
                        return Err(field("tenant", "a tenant id or domain"));
                    }
                    if e.client_id.is_empty() {
                        return Err(field("client_id", "must not be empty"));
                    }
                    if !e.authority.starts_with("https://") {
                        return Err(field("authority", "must be an https:// URL"));
                    }
                    if e.timeout_ms == 0 || e.timeout_ms > 60_000 {
                        return Err(field("timeout_ms", "between 1 and 60000 ms"));
                    }
                }
            }
        }
        Ok(())
    }
}

/// What a directory said about a password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DirectoryVerdict {
    /// The password is right. `source` names the source for the audit log;
    /// `groups` are the user's directory groups (possibly from the cache).
    Accepted { source: String, groups: Vec<String> },
    /// Wrong password (or, where the directory cannot tell, unknown user).
    WrongPassword { reason: &'static str },
    /// The user is not in any source of the chain.
    UnknownUser { reason: &'static str },
    /// The directory refuses the account (locked, disabled, expired, no MFA).
    Refused { reason: &'static str },
    /// No source could answer (down, timed out, misconfigured): fail closed.
    Unavailable { reason: &'static str },
}

/// The port to the directories, implemented by `tessera-server`.
#[async_trait::async_trait]
pub trait Directory: Send + Sync + std::fmt::Debug {
    /// Whether `realm` exists (for `user@realm` parsing).
    fn knows_realm(&self, realm: &str) -> bool;
    /// Whether users of `realm` without a local password have a first factor.
    fn has_sources(&self, realm: &str) -> bool;
    /// Whether unknown users are created on their first directory login.
    fn auto_provision(&self, realm: &str) -> bool;
    /// Checks a password. Never called with an empty password.
    async fn verify(&self, realm: &str, username: &str, password: &str) -> DirectoryVerdict;
    /// The user's directory groups (from the cache when fresh), for policy
    /// exceptions and reply rules; empty when unknown or unavailable.
    async fn groups(&self, realm: &str, username: &str) -> Vec<String>;
}

/// No directories: every realm is local.
#[derive(Debug, Default)]
pub struct NoDirectory;

#[async_trait::async_trait]
impl Directory for NoDirectory {
    fn knows_realm(&self, _realm: &str) -> bool {
        false
    }
    fn has_sources(&self, _realm: &str) -> bool {
        false
    }
    fn auto_provision(&self, _realm: &str) -> bool {
        false
    }
    async fn verify(&self, _realm: &str, _username: &str, _password: &str) -> DirectoryVerdict {
        DirectoryVerdict::Unavailable { reason: "no_directory" }
    }
    async fn groups(&self, _realm: &str, _username: &str) -> Vec<String> {
        Vec::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<RealmSettings, String> {
        let v: serde_json::Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
        serde_json::from_value(v).map_err(|e| e.to_string())
    }

    #[test]
    fn ldap_needs_a_bind_method() {
        let s = parse(r#"{"source":[{"type":"ldap","urls":["ldap://127.0.0.1:389"]}]}"#).unwrap();
        assert!(s.validate().is_err());
        let s = parse(r#"{"source":[{"type":"ldap","urls":["ldap://h"],"bind_template":"uid={user},dc=x"}]}"#).unwrap();
        s.validate().unwrap();
        let s =
            parse(r#"{"source":[{"type":"ldap","urls":["ldap://h"],"bind_dn":"cn=svc","base_dn":"dc=x"}]}"#).unwrap();
        assert!(s.validate().is_err(), "search mode needs a filter");
        let s = parse(r#"{"source":[{"type":"ldap","urls":["http://h"],"bind_template":"{user}"}]}"#).unwrap();
        assert!(s.validate().is_err());
    }

    #[test]
    fn unknown_keys_are_errors() {
        assert!(parse(r#"{"source":[{"type":"ldap","urls":["ldap://h"],"bind_templ":"x"}]}"#).is_err());
        assert!(parse(r#"{"cache_ttl":5}"#).is_err());
    }

    #[test]
    fn entra_tenant_is_checked() {
        let s = parse(r#"{"source":[{"type":"entra","tenant":"a/b","client_id":"c"}]}"#).unwrap();
        assert!(s.validate().is_err());
        let s = parse(r#"{"source":[{"type":"entra","tenant":"contoso.onmicrosoft.com","client_id":"c"}]}"#).unwrap();
        s.validate().unwrap();
    }
}
