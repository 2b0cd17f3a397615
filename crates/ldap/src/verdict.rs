//! What a first-factor check answers ([`LdapVerdict`], [`DirectoryUser`],
//! [`LdapError`], [`ServerCheck`]), and the pure mapping from an LDAP bind
//! result (including Active Directory's diagnostic "data" codes) to a
//! verdict.

use std::time::Duration;

/// A user as the directory describes them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DirectoryUser {
    /// The entry's DN as the server returned it.
    pub dn: String,
    /// The canonical login name (the `username_attribute` value); the name
    /// as typed when the attribute cannot be read.
    pub username: String,
    /// `displayName`, else `cn`.
    pub display_name: Option<String>,
    /// `mail`.
    pub email: Option<String>,
    /// `mobile`, else `telephoneNumber`.
    pub phone: Option<String>,
    /// Group names (the `cn`, not the DN), sorted, without duplicates.
    pub groups: Vec<String>,
}

/// The answer to "is this the user's password?".
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LdapVerdict {
    Accepted(DirectoryUser),
    WrongPassword,
    UnknownUser,
    /// The account exists and the directory refused the bind for another
    /// reason: `account_disabled`, `account_locked`, `account_expired`,
    /// `password_expired`, `logon_hours`, `workstation_restricted`,
    /// `ambiguous` (the search matched several entries), `access_denied`,
    /// `unwilling_to_perform`, `refused`.
    Refused(&'static str),
}

/// Why no verdict could be given. Messages never contain a password.
#[derive(Debug, thiserror::Error)]
pub enum LdapError {
    /// No configured server gave an answer: each was unreachable, timed out,
    /// busy, or failed TLS verification (the message says which, per
    /// server). The caller may fall back to another first-factor source; it
    /// must not treat this as a correct password.
    #[error("no LDAP server answered: {0}")]
    Unavailable(String),
    /// The configuration is wrong (bad template or filter, unreadable CA
    /// file, service account refused, search base missing, the server
    /// demands TLS, …). Retrying will not help.
    #[error("LDAP configuration: {0}")]
    Config(String),
    /// The server answered something this client does not understand or
    /// does not expect.
    #[error("LDAP protocol: {0}")]
    Protocol(String),
}

/// A TLS client configuration that cannot be built is a configuration
/// error: a bad CA file or pin does not get better by retrying.
impl From<tessera_tls::TlsError> for LdapError {
    fn from(e: tessera_tls::TlsError) -> Self {
        match e {
            // Only the LDAP settings know what fixes an empty OS store.
            tessera_tls::TlsError::NoSystemRoots => LdapError::Config(format!("{e}; set ca_file or pinned_sha256")),
            e => LdapError::Config(e.to_string()),
        }
    }
}

/// The result of checking one server, for `tessera realm test`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerCheck {
    pub url: String,
    /// A TCP connection was made.
    pub reachable: bool,
    /// `None`: plain LDAP, no TLS. `Some(true)`: the certificate verified.
    /// `Some(false)`: the handshake or verification failed.
    pub tls: Option<bool>,
    /// `None`: not attempted (template bind mode has no service account, or
    /// the connection failed). `Some(ok)`: the service account bind.
    pub service_bind: Option<bool>,
    /// Colon-separated hex SHA-256 of the certificate the server presented
    /// (also when it did not verify, so it can be checked and pinned).
    pub peer_sha256: Option<String>,
    pub elapsed: Duration,
    /// What worked or what went wrong, for a human.
    pub message: String,
}

impl ServerCheck {
    /// Everything that was attempted worked.
    pub fn ok(&self) -> bool {
        self.reachable && self.tls != Some(false) && self.service_bind != Some(false)
    }
}

/// How a bind ended.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum BindOutcome {
    Success,
    /// A definite "no".
    Denied(LdapVerdict),
    /// The server cannot answer now (busy, unavailable): try another.
    Busy(String),
    /// The server insists on something the configuration does not do.
    Config(String),
    Unexpected(String),
}

/// Maps an LDAP bind result (RFC 4511 result code + diagnostic message) to an
/// outcome. Active Directory puts the real reason in the message as
/// `…AcceptSecurityContext error, data 52e, v4563`.
pub(crate) fn classify_bind(rc: u32, text: &str) -> BindOutcome {
    if rc == 0 {
        return BindOutcome::Success;
    }
    if let Some(code) = ad_data_code(text) {
        let verdict = match code {
            0x525 => LdapVerdict::UnknownUser,
            0x52e => LdapVerdict::WrongPassword,
            0x530 => LdapVerdict::Refused("logon_hours"),
            0x531 => LdapVerdict::Refused("workstation_restricted"),
            0x532 | 0x773 => LdapVerdict::Refused("password_expired"),
            0x533 => LdapVerdict::Refused("account_disabled"),
            0x701 => LdapVerdict::Refused("account_expired"),
            0x775 => LdapVerdict::Refused("account_locked"),
            _ if rc == 49 => LdapVerdict::WrongPassword,
            _ => LdapVerdict::Refused("refused"),
        };
        return BindOutcome::Denied(verdict);
    }
    match rc {
        49 => BindOutcome::Denied(LdapVerdict::WrongPassword),
        // A DN the template produced does not exist or does not parse.
        32 | 34 => BindOutcome::Denied(LdapVerdict::UnknownUser),
        48 => BindOutcome::Denied(LdapVerdict::Refused("inappropriate_authentication")),
        50 => BindOutcome::Denied(LdapVerdict::Refused("access_denied")),
        53 => BindOutcome::Denied(LdapVerdict::Refused("unwilling_to_perform")),
        51 | 52 => BindOutcome::Busy(format!("bind: result {rc} ({})", short(text))),
        8 | 13 => BindOutcome::Config(format!(
            "the server requires a protected connection (result {rc}); use ldaps:// or starttls"
        )),
        _ => BindOutcome::Unexpected(format!("bind: result {rc} ({})", short(text))),
    }
}

/// The hex code after `data ` in an AD diagnostic message.
fn ad_data_code(text: &str) -> Option<u32> {
    let lower = text.to_ascii_lowercase();
    let at = lower.find("data ")?;
    let digits: String = lower[at + 5..].chars().take_while(|c| c.is_ascii_hexdigit()).collect();
    if digits.is_empty() || digits.len() > 8 {
        return None;
    }
    u32::from_str_radix(&digits, 16).ok()
}

/// A server's diagnostic text, bounded for an error message.
pub(crate) fn short(text: &str) -> &str {
    const MAX: usize = 200;
    if text.len() <= MAX {
        return text;
    }
    let mut end = MAX;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ad(code: &str) -> String {
        format!("80090308: LdapErr: DSID-0C09042A, comment: AcceptSecurityContext error, data {code}, v3839\0")
    }

    #[test]
    fn active_directory_data_codes() {
        let d = |v| BindOutcome::Denied(v);
        assert_eq!(classify_bind(49, &ad("52e")), d(LdapVerdict::WrongPassword));
        assert_eq!(classify_bind(49, &ad("525")), d(LdapVerdict::UnknownUser));
        assert_eq!(classify_bind(49, &ad("533")), d(LdapVerdict::Refused("account_disabled")));
        assert_eq!(classify_bind(49, &ad("775")), d(LdapVerdict::Refused("account_locked")));
        assert_eq!(classify_bind(49, &ad("532")), d(LdapVerdict::Refused("password_expired")));
        assert_eq!(classify_bind(49, &ad("773")), d(LdapVerdict::Refused("password_expired")));
        assert_eq!(classify_bind(49, &ad("701")), d(LdapVerdict::Refused("account_expired")));
        assert_eq!(classify_bind(49, &ad("530")), d(LdapVerdict::Refused("logon_hours")));
        assert_eq!(classify_bind(49, &ad("531")), d(LdapVerdict::Refused("workstation_restricted")));
        assert_eq!(classify_bind(49, &ad("999")), d(LdapVerdict::WrongPassword));
        assert_eq!(classify_bind(49, &ad("52E").replace("data", "DATA")), d(LdapVerdict::WrongPassword));
    }

    #[test]
    fn plain_result_codes() {
        assert_eq!(classify_bind(0, ""), BindOutcome::Success);
        assert_eq!(classify_bind(49, ""), BindOutcome::Denied(LdapVerdict::WrongPassword));
        assert_eq!(classify_bind(34, "invalid DN"), BindOutcome::Denied(LdapVerdict::UnknownUser));
        assert!(matches!(classify_bind(52, "shutting down"), BindOutcome::Busy(_)));
        assert!(matches!(classify_bind(13, "confidentiality required"), BindOutcome::Config(_)));
        assert!(matches!(classify_bind(80, "other"), BindOutcome::Unexpected(_)));
    }

    #[test]
    fn short_keeps_char_boundaries() {
        let s = "é".repeat(150);
        assert!(short(&s).len() <= 200);
        assert!(s.starts_with(short(&s)));
    }
}
