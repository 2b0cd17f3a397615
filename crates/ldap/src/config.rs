//! What an LDAP first-factor source is configured with, and the checks run on
//! it before any connection is made ([`LdapConfig::validate`]).
//!
//! No I/O here: the CA file is loaded by tessera-tls when `LdapSource::new`
//! builds the client configuration from [`LdapConfig::server_trust`].

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tessera_tls::ServerTrust;
use zeroize::Zeroizing;

use crate::LdapError;

/// Default bound on TCP connect + TLS handshake (+ StartTLS) per server.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Default bound on one LDAP operation (bind, search, extended op).
pub const DEFAULT_OP_TIMEOUT: Duration = Duration::from_secs(5);
/// Default number of pooled connections (per kind, see `source.rs`).
pub const DEFAULT_POOL_SIZE: usize = 4;
/// More servers than this is a configuration mistake (each dead one costs a
/// connect timeout per login until another answers).
pub const MAX_URLS: usize = 16;
/// Upper bound on `pool_size`: a directory is a shared service; a login
/// burst must not open hundreds of connections to a domain controller.
pub const MAX_POOL_SIZE: usize = 64;

/// An LDAP / Active Directory first-factor source.
#[derive(Clone, Debug)]
pub struct LdapConfig {
    /// `ldap://host:port` or `ldaps://host:port`, tried in order (failover).
    pub urls: Vec<String>,
    /// Upgrade `ldap://` connections with StartTLS (ignored for `ldaps://`).
    pub starttls: bool,
    /// PEM file with the CA certificate(s) to trust for LDAPS/StartTLS;
    /// without it, the operating system's trust anchors.
    pub ca_file: Option<PathBuf>,
    /// Hex SHA-256 of the server's leaf certificate (DER); colons and spaces
    /// allowed. When set it replaces CA verification (and the host-name
    /// check): the server must present exactly this certificate and prove
    /// it holds its key.
    pub pinned_sha256: Option<String>,
    pub bind: BindMode,
    pub groups: GroupMode,
    /// Bound on TCP connect + TLS handshake (+ StartTLS), per server.
    pub connect_timeout: Duration,
    /// Bound on each LDAP operation.
    pub op_timeout: Duration,
    /// Pooled connections: up to this many service-account connections and
    /// as many user-bind connections (see `source.rs`).
    pub pool_size: usize,
    /// The attribute that holds the login name (`uid`, `sAMAccountName`); it
    /// is read back to give the canonical spelling of the name.
    pub username_attribute: String,
}

impl LdapConfig {
    /// A configuration with the defaults: no StartTLS, OS trust anchors, no
    /// groups, 3 s connect / 5 s operation timeouts, 4 pooled connections,
    /// `uid` as the username attribute.
    pub fn new(urls: Vec<String>, bind: BindMode) -> Self {
        LdapConfig {
            urls,
            starttls: false,
            ca_file: None,
            pinned_sha256: None,
            bind,
            groups: GroupMode::None,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            op_timeout: DEFAULT_OP_TIMEOUT,
            pool_size: DEFAULT_POOL_SIZE,
            username_attribute: "uid".to_string(),
        }
    }

    /// Checks everything that can be checked without the network. Called by
    /// `LdapSource::new`.
    pub fn validate(&self) -> Result<(), LdapError> {
        if self.urls.is_empty() {
            return Err(config("no LDAP server URL"));
        }
        if self.urls.len() > MAX_URLS {
            return Err(config(format!("{} LDAP URLs (at most {MAX_URLS})", self.urls.len())));
        }
        for url in &self.urls {
            parse_url(url)?;
        }
        if self.connect_timeout.is_zero() || self.op_timeout.is_zero() {
            return Err(config("connect_timeout and op_timeout must be above zero"));
        }
        if self.pool_size == 0 || self.pool_size > MAX_POOL_SIZE {
            return Err(config(format!("pool_size {} (1..={MAX_POOL_SIZE})", self.pool_size)));
        }
        check_attribute("username_attribute", &self.username_attribute)?;
        match &self.bind {
            BindMode::Template { template } => {
                if !template.contains(USER) {
                    return Err(config("the bind template has no {user} placeholder"));
                }
                if template.contains(DN) {
                    return Err(config("the bind template cannot use {dn}"));
                }
            }
            BindMode::Search { bind_dn, bind_password, base_dn, filter, .. } => {
                if bind_dn.trim().is_empty() {
                    return Err(config("the service account bind DN is empty"));
                }
                // An empty password would make an *unauthenticated* bind
                // (RFC 4513 §5.1.2), which some servers accept as anonymous.
                if bind_password.is_empty() || bind_password.contains('\0') {
                    return Err(config("the service account password is empty or contains NUL"));
                }
                if base_dn.trim().is_empty() {
                    return Err(config("the user search base DN is empty"));
                }
                check_filter("user search filter", filter, &[USER])?;
            }
        }
        match &self.groups {
            GroupMode::None => {}
            GroupMode::MemberOf { attribute } => check_attribute("group attribute", attribute)?,
            GroupMode::Search { base_dn, filter, name_attribute } => {
                if base_dn.trim().is_empty() {
                    return Err(config("the group search base DN is empty"));
                }
                check_filter("group search filter", filter, &[USER, DN])?;
                check_attribute("group name attribute", name_attribute)?;
            }
        }
        if let Some(pin) = &self.pinned_sha256 {
            parse_pin(pin)?;
        }
        Ok(())
    }

    /// Which server certificates to trust: the pin when set (it replaces CA
    /// verification), else the CA file, else the operating system's anchors.
    pub(crate) fn server_trust(&self) -> Result<ServerTrust, LdapError> {
        let pin = self.pinned_sha256.as_deref().map(parse_pin).transpose()?;
        Ok(server_trust(self.ca_file.as_deref(), pin))
    }

    /// Whether any connection uses TLS (so a TLS client configuration, and
    /// trust anchors, are needed).
    pub(crate) fn uses_tls(&self) -> bool {
        self.urls.iter().any(|u| u.to_ascii_lowercase().starts_with("ldaps://")) || self.starttls
    }
}

/// How the user's password is checked.
#[derive(Clone)]
pub enum BindMode {
    /// Bind directly as the user, with a DN or a UPN built from a template:
    /// `uid={user},ou=people,dc=example,dc=org` or `{user}@corp.example.com`
    /// or `CORP\{user}`. `{user}` is RFC 4514-escaped when the template is a
    /// DN (contains `=`). Needs no service account; the user's attributes
    /// and groups are read with the user's own rights. A directory that
    /// answers "invalid credentials" for an unknown DN (OpenLDAP, AD) makes
    /// an unknown user look like a wrong password in this mode.
    Template { template: String },
    /// Search for the user with a service account, then bind as the entry
    /// found.
    Search {
        bind_dn: String,
        bind_password: Zeroizing<String>,
        base_dn: String,
        /// `(sAMAccountName={user})`, `(&(objectClass=inetOrgPerson)(uid={user}))`;
        /// `{user}` is RFC 4515-escaped.
        filter: String,
        /// Subtree (true) or one-level (false) search under `base_dn`.
        scope_subtree: bool,
    },
}

impl fmt::Debug for BindMode {
    // Hand-written so the service password never reaches a log line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BindMode::Template { template } => f.debug_struct("Template").field("template", template).finish(),
            BindMode::Search { bind_dn, base_dn, filter, scope_subtree, .. } => f
                .debug_struct("Search")
                .field("bind_dn", bind_dn)
                .field("bind_password", &"<redacted>")
                .field("base_dn", base_dn)
                .field("filter", filter)
                .field("scope_subtree", scope_subtree)
                .finish(),
        }
    }
}

/// Where the user's group names come from.
#[derive(Clone, Debug)]
pub enum GroupMode {
    None,
    /// An attribute of the user entry that lists group DNs (`memberOf`, kept
    /// by AD and by OpenLDAP's memberof overlay). The group name is the
    /// value of each DN's first RDN. AD lists direct groups only.
    MemberOf {
        attribute: String,
    },
    /// A search for group entries: `(member={dn})` (groupOfNames),
    /// `(memberUid={user})` (posixGroup), or on AD with nested groups
    /// `(member:1.2.840.113556.1.4.1941:={dn})`. `{dn}` and `{user}` (the
    /// canonical username) are RFC 4515-escaped. The name is
    /// `name_attribute` (`cn`) of each entry found.
    Search {
        base_dn: String,
        filter: String,
        name_attribute: String,
    },
}

pub(crate) const USER: &str = "{user}";
pub(crate) const DN: &str = "{dn}";

/// Fills a filter template; every substituted value is filter-escaped.
pub(crate) fn render_filter(template: &str, user: &str, dn: &str) -> String {
    template.replace(USER, &crate::escape_filter_value(user)).replace(DN, &crate::escape_filter_value(dn))
}

/// Fills the bind template: DN-escaped when the template is a DN.
pub(crate) fn render_bind_name(template: &str, user: &str) -> String {
    if template_is_dn(template) {
        template.replace(USER, &crate::escape_dn_value(user))
    } else {
        template.replace(USER, user)
    }
}

pub(crate) fn template_is_dn(template: &str) -> bool {
    template.contains('=')
}

/// A server URL, split into what the connector needs.
#[derive(Clone, Debug)]
pub(crate) struct ServerUrl {
    /// As configured (for messages).
    pub url: String,
    pub ldaps: bool,
}

pub(crate) fn parse_url(url: &str) -> Result<ServerUrl, LdapError> {
    let lower = url.to_ascii_lowercase();
    let (ldaps, rest) = if let Some(rest) = lower.strip_prefix("ldaps://") {
        (true, rest)
    } else if let Some(rest) = lower.strip_prefix("ldap://") {
        (false, rest)
    } else {
        return Err(config(format!("{url:?}: the URL must start with ldap:// or ldaps://")));
    };
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    if authority.is_empty() || authority.contains('@') || authority.contains(char::is_whitespace) {
        return Err(config(format!("{url:?}: the URL needs a host (and optional :port), nothing else")));
    }
    if !path.is_empty() {
        return Err(config(format!("{url:?}: a path, DN or query in the URL is not supported")));
    }
    if let Some((_, port)) = authority.rsplit_once(':').filter(|_| !authority.ends_with(']'))
        && port.parse::<u16>().map_or(true, |p| p == 0)
    {
        return Err(config(format!("{url:?}: bad port")));
    }
    Ok(ServerUrl { url: url.to_string(), ldaps })
}

/// `ab:cd:…` / `ABCD…` → 32 bytes; the error names the setting.
pub(crate) fn parse_pin(pin: &str) -> Result<[u8; 32], LdapError> {
    tessera_tls::parse_pin(pin).map_err(|e| config(format!("pinned_sha256: {e}")))
}

/// The trust a CA file and a pin amount to; the pin wins, as documented on
/// [`LdapConfig::pinned_sha256`].
pub(crate) fn server_trust(ca_file: Option<&Path>, pin: Option<[u8; 32]>) -> ServerTrust {
    match (pin, ca_file) {
        (Some(pin), _) => ServerTrust::Pinned(pin),
        (None, Some(path)) => ServerTrust::CaFile(path.to_path_buf()),
        (None, None) => ServerTrust::System,
    }
}

fn check_attribute(what: &str, name: &str) -> Result<(), LdapError> {
    let descr = name.starts_with(|c: char| c.is_ascii_alphabetic())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
    let oid = !name.is_empty() && name.split('.').all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()));
    if descr || oid { Ok(()) } else { Err(config(format!("{what} {name:?} is not an attribute name"))) }
}

/// The filter must contain one of `placeholders`, and parse as a filter
/// with a value substituted.
fn check_filter(what: &str, filter: &str, placeholders: &[&str]) -> Result<(), LdapError> {
    if !placeholders.iter().any(|p| filter.contains(p)) {
        return Err(config(format!("the {what} must contain {}", placeholders.join(" or "))));
    }
    let sample = render_filter(filter, "x", "cn=x");
    if !sample.starts_with('(') || ldap3::parse_filter(&sample).is_err() {
        return Err(config(format!("the {what} {filter:?} is not a valid LDAP filter")));
    }
    Ok(())
}

fn config(msg: impl Into<String>) -> LdapError {
    LdapError::Config(msg.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn search() -> BindMode {
        BindMode::Search {
            bind_dn: "cn=svc,dc=x".into(),
            bind_password: Zeroizing::new("pw".into()),
            base_dn: "dc=x".into(),
            filter: "(uid={user})".into(),
            scope_subtree: true,
        }
    }

    #[test]
    fn defaults_validate() {
        LdapConfig::new(vec!["ldap://127.0.0.1:389".into(), "ldaps://dc1.corp".into()], search()).validate().unwrap();
        let t = BindMode::Template { template: "{user}@corp.example.com".into() };
        LdapConfig::new(vec!["ldaps://[::1]:636/".into()], t).validate().unwrap();
    }

    #[test]
    fn rejects_bad_settings() {
        let bad = |f: &dyn Fn(&mut LdapConfig)| {
            let mut c = LdapConfig::new(vec!["ldap://h".into()], search());
            f(&mut c);
            c.validate().unwrap_err()
        };
        bad(&|c| c.urls.clear());
        bad(&|c| c.urls = vec!["http://h".into()]);
        bad(&|c| c.urls = vec!["ldap://h:99999".into()]);
        bad(&|c| c.urls = vec!["ldap://h/dc=x?uid".into()]);
        bad(&|c| c.pool_size = 0);
        bad(&|c| c.op_timeout = Duration::ZERO);
        bad(&|c| c.username_attribute = "uid)(x".into());
        bad(&|c| c.pinned_sha256 = Some("abcd".into()));
        bad(&|c| c.bind = BindMode::Template { template: "cn=admin".into() });
        bad(&|c| {
            if let BindMode::Search { bind_password, .. } = &mut c.bind {
                *bind_password = Zeroizing::new(String::new());
            }
        });
        bad(&|c| {
            if let BindMode::Search { filter, .. } = &mut c.bind {
                *filter = "(uid={user}".into();
            }
        });
        bad(&|c| {
            c.groups =
                GroupMode::Search { base_dn: "dc=x".into(), filter: "(cn=x)".into(), name_attribute: "cn".into() }
        });
    }

    #[test]
    fn pin_accepts_colons_and_case() {
        let hex = "AB:".repeat(31) + "ab";
        assert_eq!(parse_pin(&hex).unwrap(), [0xab; 32]);
        let e = parse_pin("abcd").unwrap_err().to_string();
        assert!(e.contains("pinned_sha256") && e.contains("64 hex digits"), "{e}");
    }

    #[test]
    fn pin_replaces_the_ca_file() {
        let mut c = LdapConfig::new(vec!["ldaps://h".into()], search());
        assert_eq!(c.server_trust().unwrap(), ServerTrust::System);
        c.ca_file = Some("/etc/ca.pem".into());
        assert_eq!(c.server_trust().unwrap(), ServerTrust::CaFile("/etc/ca.pem".into()));
        c.pinned_sha256 = Some("ab".repeat(32));
        assert_eq!(c.server_trust().unwrap(), ServerTrust::Pinned([0xab; 32]));
    }

    #[test]
    fn debug_hides_the_service_password() {
        let s = format!("{:?}", LdapConfig::new(vec!["ldap://h".into()], search()));
        assert!(!s.contains("\"pw\""), "{s}");
        assert!(s.contains("<redacted>"));
    }

    #[test]
    fn templates_escape_input() {
        assert_eq!(render_bind_name("uid={user},ou=p,dc=x", "a,b=c"), r"uid=a\,b\=c,ou=p,dc=x");
        assert_eq!(render_bind_name("{user}@corp.example", "alice"), "alice@corp.example");
        assert_eq!(
            render_filter("(&(uid={user})(member={dn}))", "*)(uid=*", "cn=a(b)"),
            r"(&(uid=\2a\29\28uid=\2a)(member=cn=a\28b\29))"
        );
    }
}
