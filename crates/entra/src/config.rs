//! The Entra source's settings, their defaults and their validation, the
//! token endpoint they name, and the username → UPN mapping. Pure: nothing
//! here reads files or the network.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use reqwest::Url;
use zeroize::Zeroizing;

use crate::EntraError;

/// The public Azure cloud. Sovereign clouds have their own authority (for
/// example `https://login.microsoftonline.us`), and a private forward proxy
/// may put a path prefix in front of it.
pub const DEFAULT_AUTHORITY: &str = "https://login.microsoftonline.com";

/// The OAuth2 scope requested by default: `openid`, the "Sign you in"
/// permission and nothing more.
///
/// Why this one: tessera only needs Entra's verdict on the password, never a
/// usable token. `openid` is the smallest documented scope the v2.0 token
/// endpoint accepts for a user sign-in; it grants no API permission of its
/// own, and without `offline_access` no refresh token is ever issued.
/// Broader scopes (`openid profile`, `https://graph.microsoft.com/.default`)
/// would only add claims or Graph permissions tessera throws away, and need
/// more consent. The tenant must still have consented to `openid` for the app
/// (admin consent), or every real user gets AADSTS65001, reported as a
/// configuration error.
pub const DEFAULT_SCOPE: &str = "openid";

/// Default bound of one whole password check (connect, TLS, request, answer).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// Upper bound of [`EntraConfig::timeout`]: a RADIUS client gives up long
/// before this, so a longer wait only holds resources.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(120);

/// Longest username (after the UPN domain is appended) sent to Entra. A UPN
/// is at most 113 characters in Entra ID; anything far longer is junk and is
/// refused without a request.
pub const MAX_USERNAME_BYTES: usize = 256;

/// Tenant values the ROPC grant does not support (`common`, `consumers`:
/// Microsoft's documentation) or that would let users of *any* tenant sign
/// in (`organizations`): a 2FA server pins one directory.
const MULTI_TENANT_ALIASES: [&str; 3] = ["common", "consumers", "organizations"];

/// Settings of one Entra ID first-factor source.
///
/// Build it with [`EntraConfig::new`] (which fills the defaults) and set the
/// optional fields; [`crate::EntraSource::new`] validates it. `Debug` shows
/// whether a client secret is set, never its value.
#[derive(Clone)]
pub struct EntraConfig {
    /// The sign-in service, default [`DEFAULT_AUTHORITY`]. Must be `https`,
    /// without query, fragment or credentials. The token endpoint is
    /// `{authority}/{tenant}/oauth2/v2.0/token`.
    pub authority: Url,
    /// The directory: its tenant ID (a GUID) or one of its domains
    /// (`contoso.onmicrosoft.com`). Letters, digits, `-` and `.` only; not
    /// `common`, `consumers` or `organizations`.
    pub tenant: String,
    /// The app registration's application (client) ID.
    pub client_id: String,
    /// The client secret of a *confidential* app registration. Leave it
    /// unset for a public client ("Allow public client flows" on), which is
    /// the usual set-up for ROPC.
    pub client_secret: Option<Zeroizing<String>>,
    /// Space-separated OAuth2 scopes, default [`DEFAULT_SCOPE`].
    pub scope: String,
    /// Appended to bare usernames: `alice` → `alice@corp.example.com`.
    /// Usernames that already contain `@` are sent as they are. Written
    /// with or without the leading `@`.
    pub upn_domain: Option<String>,
    /// Accept a password for an account without MFA (Entra issued a token).
    /// Default `false`: such an account is refused, since a token proves the
    /// account is not protected by MFA in Entra.
    pub allow_no_mfa: bool,
    /// Bound of one whole password check, default [`DEFAULT_TIMEOUT`]; when
    /// it runs out the answer is `Unavailable("timeout")`.
    pub timeout: Duration,
    /// Extra trusted CA certificates (PEM), on top of the operating system's
    /// roots: for tests and TLS-inspecting proxies. Certificates are always
    /// verified; there is no switch to turn that off.
    pub ca_file: Option<PathBuf>,
}

impl EntraConfig {
    /// Settings for `tenant` and `client_id` with every other field at its
    /// default.
    pub fn new(tenant: impl Into<String>, client_id: impl Into<String>) -> Self {
        EntraConfig {
            authority: default_authority(),
            tenant: tenant.into(),
            client_id: client_id.into(),
            client_secret: None,
            scope: DEFAULT_SCOPE.to_string(),
            upn_domain: None,
            allow_no_mfa: false,
            timeout: DEFAULT_TIMEOUT,
            ca_file: None,
        }
    }

    /// Checks every setting; the error names the first one that is wrong.
    pub fn validate(&self) -> Result<(), EntraError> {
        validate_authority(&self.authority)?;
        validate_tenant(&self.tenant)?;
        validate_token("client_id", &self.client_id, 256)?;
        if let Some(secret) = &self.client_secret {
            if secret.is_empty() {
                return Err(EntraError::invalid("client_secret", "is empty (leave it unset for a public client)"));
            }
            if secret.len() > 1024 || secret.chars().any(char::is_control) {
                return Err(EntraError::invalid(
                    "client_secret",
                    "must be at most 1024 bytes without control characters",
                ));
            }
        }
        validate_scope(&self.scope)?;
        if let Some(domain) = &self.upn_domain {
            validate_upn_domain(domain)?;
        }
        if self.timeout.is_zero() || self.timeout > MAX_TIMEOUT {
            return Err(EntraError::invalid(
                "timeout",
                format!("must be more than 0 and at most {} s", MAX_TIMEOUT.as_secs()),
            ));
        }
        Ok(())
    }

    /// `{authority}/{tenant}/oauth2/v2.0/token`.
    pub fn token_endpoint(&self) -> Result<Url, EntraError> {
        validate_authority(&self.authority)?;
        validate_tenant(&self.tenant)?;
        let base = self.authority.as_str().trim_end_matches('/');
        Url::parse(&format!("{base}/{}/oauth2/v2.0/token", self.tenant))
            .map_err(|e| EntraError::invalid("authority", e.to_string()))
    }

    /// The UPN sent to Entra for `username`: the configured domain appended
    /// to a bare name, anything with an `@` unchanged. `None` when the result
    /// is empty, longer than [`MAX_USERNAME_BYTES`], or contains whitespace
    /// or control characters (no UPN does): such names are refused without
    /// asking Entra.
    pub fn upn(&self, username: &str) -> Option<String> {
        if username.is_empty() || username.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return None;
        }
        let upn = match &self.upn_domain {
            Some(domain) if !username.contains('@') => {
                format!("{username}@{}", domain.trim_start_matches('@'))
            }
            _ => username.to_string(),
        };
        // A trailing '@' (`alice@`) is no UPN either.
        if upn.len() > MAX_USERNAME_BYTES || upn.ends_with('@') || upn.starts_with('@') {
            return None;
        }
        Some(upn)
    }
}

impl fmt::Debug for EntraConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EntraConfig")
            .field("authority", &self.authority.as_str())
            .field("tenant", &self.tenant)
            .field("client_id", &self.client_id)
            .field("client_secret", &self.client_secret.as_ref().map(|_| "<redacted>"))
            .field("scope", &self.scope)
            .field("upn_domain", &self.upn_domain)
            .field("allow_no_mfa", &self.allow_no_mfa)
            .field("timeout", &self.timeout)
            .field("ca_file", &self.ca_file)
            .finish()
    }
}

// Parsing a literal https URL cannot fail (the `defaults` test runs it).
#[allow(clippy::expect_used)]
fn default_authority() -> Url {
    Url::parse(DEFAULT_AUTHORITY).expect("DEFAULT_AUTHORITY is a valid URL")
}

fn validate_authority(url: &Url) -> Result<(), EntraError> {
    if url.scheme() != "https" {
        return Err(EntraError::invalid("authority", "must be an https:// URL (TLS is always used)"));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(EntraError::invalid("authority", "has no host"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(EntraError::invalid("authority", "must not have a query or fragment"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(EntraError::invalid("authority", "must not contain credentials"));
    }
    Ok(())
}

fn validate_tenant(tenant: &str) -> Result<(), EntraError> {
    if tenant.is_empty() || tenant.len() > 253 {
        return Err(EntraError::invalid(
            "tenant",
            "must be the tenant ID or a domain of the tenant (1-253 characters)",
        ));
    }
    if !tenant.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.') {
        return Err(EntraError::invalid(
            "tenant",
            "must be the tenant ID (a GUID) or a domain of the tenant: letters, digits, '-' and '.' only",
        ));
    }
    if tenant.starts_with('.') || tenant.ends_with('.') || tenant.contains("..") {
        return Err(EntraError::invalid("tenant", "is not a domain name"));
    }
    if MULTI_TENANT_ALIASES.iter().any(|a| a.eq_ignore_ascii_case(tenant)) {
        return Err(EntraError::invalid(
            "tenant",
            "must name one directory (its tenant ID or domain): 'common' and 'consumers' do not support the \
             password grant, and 'organizations' would accept users of any tenant",
        ));
    }
    Ok(())
}

/// A single token: non-empty, at most `max` bytes, no whitespace or control.
fn validate_token(field: &'static str, value: &str, max: usize) -> Result<(), EntraError> {
    if value.is_empty() {
        return Err(EntraError::invalid(field, "is empty"));
    }
    if value.len() > max || value.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(EntraError::invalid(field, format!("must be at most {max} bytes without spaces")));
    }
    Ok(())
}

fn validate_scope(scope: &str) -> Result<(), EntraError> {
    if scope.split(' ').all(str::is_empty) {
        return Err(EntraError::invalid("scope", "is empty (the default is \"openid\")"));
    }
    if scope.len() > 1024 || scope.chars().any(|c| c.is_control() || (c.is_whitespace() && c != ' ')) {
        return Err(EntraError::invalid("scope", "must be space-separated scopes, at most 1024 bytes"));
    }
    Ok(())
}

fn validate_upn_domain(domain: &str) -> Result<(), EntraError> {
    let d = domain.strip_prefix('@').unwrap_or(domain);
    if d.is_empty()
        || d.len() > 253
        || d.contains('@')
        || d.starts_with('.')
        || d.ends_with('.')
        || d.chars().any(|c| c.is_whitespace() || c.is_control() || c == '/')
    {
        return Err(EntraError::invalid("upn_domain", "must be a domain name such as corp.example.com"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> EntraConfig {
        EntraConfig::new("contoso.onmicrosoft.com", "00001111-aaaa-2222-bbbb-3333cccc4444")
    }

    #[test]
    fn defaults() {
        let c = cfg();
        assert_eq!(c.authority.as_str(), "https://login.microsoftonline.com/");
        assert_eq!(c.scope, "openid");
        assert_eq!(c.timeout, Duration::from_secs(10));
        assert!(!c.allow_no_mfa);
        c.validate().unwrap();
    }

    #[test]
    fn token_endpoint_joins_authority_and_tenant() {
        let mut c = cfg();
        assert_eq!(
            c.token_endpoint().unwrap().as_str(),
            "https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/token"
        );
        c.authority = Url::parse("https://proxy.example/entra/").unwrap();
        c.tenant = "aaaabbbb-0000-cccc-1111-dddd2222eeee".into();
        assert_eq!(
            c.token_endpoint().unwrap().as_str(),
            "https://proxy.example/entra/aaaabbbb-0000-cccc-1111-dddd2222eeee/oauth2/v2.0/token"
        );
    }

    #[test]
    fn tenant_rules() {
        for bad in [
            "",
            "a/b",
            "a?b",
            "a#b",
            "a b",
            "a\tb",
            "common",
            "Consumers",
            "organizations",
            "..",
            ".x",
            "x.",
            "%2f",
            "a\\b",
        ] {
            let mut c = cfg();
            c.tenant = bad.into();
            assert!(c.validate().is_err(), "{bad:?} accepted");
            assert!(c.token_endpoint().is_err(), "{bad:?} accepted as endpoint");
        }
        for good in ["contoso.onmicrosoft.com", "aaaabbbb-0000-cccc-1111-dddd2222eeee", "corp.example.com"] {
            let mut c = cfg();
            c.tenant = good.into();
            c.validate().unwrap();
        }
    }

    #[test]
    fn authority_rules() {
        for bad in [
            "http://login.microsoftonline.com",
            "https://u:p@login.example",
            "https://x.example/?a=b",
            "https://x.example/#f",
        ] {
            let mut c = cfg();
            c.authority = Url::parse(bad).unwrap();
            assert!(c.validate().is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn other_field_rules() {
        let mut c = cfg();
        c.client_id = String::new();
        assert!(c.validate().is_err());
        let mut c = cfg();
        c.client_secret = Some(Zeroizing::new(String::new()));
        assert!(c.validate().is_err());
        let mut c = cfg();
        c.scope = "  ".into();
        assert!(c.validate().is_err());
        let mut c = cfg();
        c.scope = "openid\nprofile".into();
        assert!(c.validate().is_err());
        let mut c = cfg();
        c.timeout = Duration::ZERO;
        assert!(c.validate().is_err());
        let mut c = cfg();
        c.timeout = Duration::from_secs(121);
        assert!(c.validate().is_err());
        for bad in ["", "@", "a@b.example", "a b.example", ".example"] {
            let mut c = cfg();
            c.upn_domain = Some(bad.into());
            assert!(c.validate().is_err(), "{bad:?} accepted");
        }
        let mut c = cfg();
        c.upn_domain = Some("@corp.example.com".into());
        c.validate().unwrap();
    }

    #[test]
    fn upn_domain_is_appended_to_bare_names_only() {
        let mut c = cfg();
        assert_eq!(c.upn("alice").as_deref(), Some("alice"));
        c.upn_domain = Some("corp.example.com".into());
        assert_eq!(c.upn("alice").as_deref(), Some("alice@corp.example.com"));
        assert_eq!(c.upn("bob@other.example").as_deref(), Some("bob@other.example"));
        c.upn_domain = Some("@corp.example.com".into());
        assert_eq!(c.upn("alice").as_deref(), Some("alice@corp.example.com"));
        for bad in ["", "a b", "a\u{0}b", "alice@", "@corp.example.com"] {
            assert_eq!(c.upn(bad), None, "{bad:?}");
        }
        assert_eq!(c.upn(&"x".repeat(300)), None);
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let mut c = cfg();
        c.client_secret = Some(Zeroizing::new("s3cr3t-value".into()));
        let d = format!("{c:?}");
        assert!(!d.contains("s3cr3t-value"), "{d}");
        assert!(d.contains("<redacted>"));
    }
}
