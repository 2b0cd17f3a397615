//! What the token endpoint's answer means for the password: the sans-IO
//! classifier. Input is the HTTP status and body, output an [`Outcome`].
//! No sockets, no clock, no logging, and nothing from the body is kept: a
//! successful answer's token is only checked for presence.
//!
//! Sources: Microsoft's "OAuth 2.0 Resource Owner Password Credentials"
//! (request, success and error shapes) and "Microsoft Entra authentication
//! and authorization error codes" (the AADSTS table). Microsoft says the
//! `error` string is what to react to and that AADSTS numbers may change;
//! here the numbers come first anyway, because only they tell "password
//! right, MFA required" from "account exists elsewhere" inside the same
//! `interaction_required`. The `error` string decides only when no number
//! is present. Unknown numbers never count as a right password.

use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};

/// What Entra's answer says about a username and password.
///
/// Only [`Outcome::PasswordOk`] (and [`Outcome::NoMfa`] when the policy
/// allows accounts without MFA) accepts the first factor; see
/// [`Outcome::password_ok`]. Every other outcome is a refusal; among them
/// only [`Outcome::Unavailable`] means "Entra could not be asked", which a
/// caller may answer by trying another source of a chain.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
#[must_use = "an Outcome is Entra's verdict on the password; dropping it loses the decision"]
pub enum Outcome {
    /// The password is right and Entra demands MFA, which the password grant
    /// cannot do (`interaction_required`; AADSTS 50076, 50079, 50074, 50072,
    /// 50158). tessera's OTP is the second factor.
    PasswordOk {
        /// The AADSTS code, when Entra sent one.
        code: Option<u32>,
    },
    /// Entra issued a token: the password is right and the account has no
    /// MFA. Refused unless the policy allows such accounts. The token itself
    /// is neither kept nor logged.
    NoMfa,
    /// The password is wrong (AADSTS 50126; also 50056: no password in the
    /// directory, 50064: credential validation failed; or `invalid_grant`
    /// without a code).
    WrongPassword {
        /// The AADSTS code, when Entra sent one.
        code: Option<u32>,
    },
    /// The account does not exist in the tenant (AADSTS 50034, 51004, 50020,
    /// 50014, 16000), or the username cannot be a UPN. A refusal like a wrong
    /// password, with its own audit reason.
    UnknownUser {
        /// The AADSTS code; `None` when the name was refused locally.
        code: Option<u32>,
    },
    /// The account is locked (AADSTS 50053: too many failed sign-ins, or a
    /// sign-in from an IP address with malicious activity).
    Locked,
    /// The account is disabled (AADSTS 50057).
    Disabled,
    /// The password has expired (AADSTS 50055; 50144 for an on-premises
    /// password). The user must change it elsewhere.
    PasswordExpired {
        /// The AADSTS code.
        code: u32,
    },
    /// A Conditional Access, security-defaults, risk or assignment policy
    /// blocked the sign-in (AADSTS 53003 and relatives). Nothing proves the
    /// password was right, so this is a refusal, not a "password ok".
    Blocked {
        /// The AADSTS code.
        code: u32,
    },
    /// Entra refused with an error this crate does not recognise (an unknown
    /// AADSTS code, or an unknown `error` without one). Fails closed.
    Refused {
        /// The first unrecognised AADSTS code, when there was one.
        code: Option<u32>,
    },
    /// The tenant, the app registration, its secret or the scope is wrong:
    /// an administrator must fix the settings. Never reported as a wrong
    /// password; [`crate::EntraSource::test`] and the log explain it.
    ConfigError {
        /// The AADSTS code, when Entra sent one.
        code: Option<u32>,
        /// What to fix, for an administrator.
        reason: &'static str,
    },
    /// Entra could not be asked or gave no usable answer: timeout, connection
    /// or TLS failure, HTTP 5xx or 429, a body that is not the documented
    /// JSON, or a transient AADSTS error. Fails closed. The reason is a short
    /// stable word (`timeout`, `connect`, `tls`, `server_error`, `throttled`,
    /// `transient_error`, `non_json_body`, `malformed_json`,
    /// `unexpected_shape`, `unexpected_status`, `body_too_large`, `request`,
    /// `busy`).
    Unavailable(&'static str),
}

impl Outcome {
    /// The audit log's reason for this outcome: short and stable.
    pub fn audit_reason(&self) -> &'static str {
        match self {
            Outcome::PasswordOk { .. } => "entra_mfa_required_password_ok",
            Outcome::NoMfa => "entra_no_mfa",
            Outcome::WrongPassword { .. } => "entra_wrong_password",
            Outcome::UnknownUser { .. } => "entra_unknown_user",
            Outcome::Locked => "entra_locked",
            Outcome::Disabled => "entra_disabled",
            Outcome::PasswordExpired { .. } => "entra_password_expired",
            Outcome::Blocked { .. } => "entra_blocked_by_policy",
            Outcome::Refused { .. } => "entra_refused",
            Outcome::ConfigError { .. } => "entra_config_error",
            Outcome::Unavailable(_) => "entra_unavailable",
        }
    }

    /// The AADSTS code behind the outcome, if any (for the log).
    pub fn code(&self) -> Option<u32> {
        match self {
            Outcome::PasswordOk { code }
            | Outcome::WrongPassword { code }
            | Outcome::UnknownUser { code }
            | Outcome::Refused { code }
            | Outcome::ConfigError { code, .. } => *code,
            Outcome::PasswordExpired { code } | Outcome::Blocked { code } => Some(*code),
            Outcome::Locked => Some(50053),
            Outcome::Disabled => Some(50057),
            Outcome::NoMfa | Outcome::Unavailable(_) => None,
        }
    }

    /// Whether the first factor is accepted: a right password of an MFA
    /// account, or of an account without MFA when `allow_no_mfa` is set.
    pub fn password_ok(&self, allow_no_mfa: bool) -> bool {
        match self {
            Outcome::PasswordOk { .. } => true,
            Outcome::NoMfa => allow_no_mfa,
            _ => false,
        }
    }

    /// Whether Entra could not be asked, so that another source of a chain
    /// may be tried. Every definitive answer (a refusal included) is `false`:
    /// falling back after a refusal would let a second directory overrule
    /// the first.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, Outcome::Unavailable(_))
    }
}

impl fmt::Display for Outcome {
    /// A one-line description for logs and the test report; no user data.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let code = |f: &mut fmt::Formatter<'_>, c: Option<u32>| match c {
            Some(c) => write!(f, " (AADSTS{c})"),
            None => Ok(()),
        };
        match self {
            Outcome::PasswordOk { code: c } => {
                f.write_str("password right, MFA required")?;
                code(f, *c)
            }
            Outcome::NoMfa => f.write_str("password right, but the account has no MFA (Entra issued a token)"),
            Outcome::WrongPassword { code: c } => {
                f.write_str("wrong username or password")?;
                code(f, *c)
            }
            Outcome::UnknownUser { code: c } => {
                f.write_str("no such user in the tenant")?;
                code(f, *c)
            }
            Outcome::Locked => f.write_str("account locked (AADSTS50053)"),
            Outcome::Disabled => f.write_str("account disabled (AADSTS50057)"),
            Outcome::PasswordExpired { code: c } => {
                f.write_str("password expired")?;
                code(f, Some(*c))
            }
            Outcome::Blocked { code: c } => {
                f.write_str("sign-in blocked by a tenant policy")?;
                code(f, Some(*c))
            }
            Outcome::Refused { code: c } => {
                f.write_str("refused with an unrecognised error")?;
                code(f, *c)
            }
            Outcome::ConfigError { code: c, reason } => {
                write!(f, "configuration error: {reason}")?;
                code(f, *c)
            }
            Outcome::Unavailable(reason) => write!(f, "token endpoint unavailable: {reason}"),
        }
    }
}

/// Maps the token endpoint's answer to an [`Outcome`].
///
/// * 200 with a non-empty `access_token` → [`Outcome::NoMfa`].
/// * 429 and 5xx → [`Outcome::Unavailable`], whatever the body.
/// * Other 4xx with the documented error JSON → by its AADSTS codes
///   (`error_codes`, or `AADSTSnnnn` found in `error_description` when that
///   array is absent), else by its `error` string.
/// * Anything else (1xx, 3xx, other 2xx, a body that is not that JSON) →
///   [`Outcome::Unavailable`].
pub fn classify(status: u16, body: &[u8]) -> Outcome {
    match status {
        200 => classify_success(body),
        429 => Outcome::Unavailable("throttled"),
        500..=599 => Outcome::Unavailable("server_error"),
        400..=499 => classify_error(body),
        _ => Outcome::Unavailable("unexpected_status"),
    }
}

fn classify_success(body: &[u8]) -> Outcome {
    match serde_json::from_slice::<TokenAnswer>(body) {
        Ok(TokenAnswer { access_token: true }) => Outcome::NoMfa,
        Ok(_) => Outcome::Unavailable("unexpected_shape"),
        Err(e) if e.is_data() => Outcome::Unavailable("unexpected_shape"),
        Err(_) => Outcome::Unavailable(not_json_reason(body)),
    }
}

/// The one field of a token answer that matters, read without copying the
/// token: `true` when `access_token` is a non-empty string.
#[derive(Deserialize)]
struct TokenAnswer {
    #[serde(default, deserialize_with = "non_empty_string")]
    access_token: bool,
}

fn non_empty_string<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    struct Presence;
    impl Visitor<'_> for Presence {
        type Value = bool;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a string")
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<bool, E> {
            Ok(!v.is_empty())
        }
        fn visit_unit<E: de::Error>(self) -> Result<bool, E> {
            Ok(false)
        }
    }
    d.deserialize_str(Presence)
}

fn not_json_reason(body: &[u8]) -> &'static str {
    match body.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'{') | Some(b'[') => "malformed_json",
        _ => "non_json_body",
    }
}

fn classify_error(body: &[u8]) -> Outcome {
    let value: serde_json::Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(_) => return Outcome::Unavailable(not_json_reason(body)),
    };
    let Some(obj) = value.as_object() else {
        return Outcome::Unavailable("unexpected_shape");
    };
    let error = obj.get("error").and_then(|v| v.as_str());
    let mut codes: Vec<u32> = match obj.get("error_codes").and_then(|v| v.as_array()) {
        Some(list) => list.iter().filter_map(|c| c.as_u64()).filter_map(|c| u32::try_from(c).ok()).collect(),
        None => Vec::new(),
    };
    if codes.is_empty()
        && let Some(text) = obj.get("error_description").and_then(|v| v.as_str())
    {
        codes = aadsts_codes(text);
    }
    if error.is_none() && codes.is_empty() {
        return Outcome::Unavailable("unexpected_shape");
    }
    if codes.is_empty() {
        return classify_error_string(error);
    }

    // The most severe known class wins; MFA only when every code says MFA.
    let mut best: Option<(Class, u32)> = None;
    let mut unknown: Option<u32> = None;
    for &code in &codes {
        match class_of(code) {
            Some(class) => {
                if best.is_none_or(|(b, _)| class.rank() > b.rank()) {
                    best = Some((class, code));
                }
            }
            None => {
                unknown.get_or_insert(code);
            }
        }
    }
    match (best, unknown) {
        (Some((Class::Mfa, _)), Some(u)) => Outcome::Refused { code: Some(u) },
        (Some((class, code)), _) => class.outcome(code),
        (None, Some(u)) => match error {
            // An unknown number with a transient `error` is still transient.
            Some("temporarily_unavailable") | Some("server_error") => Outcome::Unavailable("transient_error"),
            _ => Outcome::Refused { code: Some(u) },
        },
        (None, None) => Outcome::Unavailable("unexpected_shape"),
    }
}

/// The decision by the OAuth2 `error` string alone (no AADSTS number).
fn classify_error_string(error: Option<&str>) -> Outcome {
    match error {
        // The product's contract (and every ROPC proxy's): Entra answers a
        // right password of an MFA account with interaction_required.
        Some("interaction_required") => Outcome::PasswordOk { code: None },
        // RFC 6749 §5.2: the resource owner credentials are invalid.
        Some("invalid_grant") => Outcome::WrongPassword { code: None },
        Some("invalid_client") => Outcome::ConfigError { code: None, reason: CLIENT_AUTH },
        Some("unauthorized_client") => Outcome::ConfigError { code: None, reason: APP_NOT_FOUND },
        Some("invalid_scope") => Outcome::ConfigError { code: None, reason: SCOPE_INVALID },
        Some("consent_required") => Outcome::ConfigError { code: None, reason: CONSENT_MISSING },
        Some("unsupported_grant_type") => Outcome::ConfigError { code: None, reason: GRANT_UNSUPPORTED },
        Some("invalid_request") | Some("invalid_resource") => Outcome::ConfigError { code: None, reason: BAD_REQUEST },
        Some("temporarily_unavailable") | Some("server_error") => Outcome::Unavailable("transient_error"),
        _ => Outcome::Refused { code: None },
    }
}

/// Every `AADSTS<digits>` in `text`, in order, without repeats.
fn aadsts_codes(text: &str) -> Vec<u32> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find("AADSTS") {
        rest = &rest[at + "AADSTS".len()..];
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if (1..=9).contains(&digits)
            && let Ok(code) = rest[..digits].parse::<u32>()
            && !out.contains(&code)
        {
            out.push(code);
        }
    }
    out
}

/// What one AADSTS code means here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    Mfa,
    Transient,
    WrongPassword,
    UnknownUser,
    Blocked,
    Expired,
    Disabled,
    Locked,
    Config(&'static str),
}

impl Class {
    /// Higher wins when one answer carries several codes: configuration
    /// problems first (an administrator must see them), then the definitive
    /// refusals, then "unavailable", and "MFA required" last, so that it is
    /// only believed when nothing else was said.
    fn rank(self) -> u8 {
        match self {
            Class::Mfa => 0,
            Class::Transient => 1,
            Class::WrongPassword => 2,
            Class::UnknownUser => 3,
            Class::Blocked => 4,
            Class::Expired => 5,
            Class::Disabled => 6,
            Class::Locked => 7,
            Class::Config(_) => 8,
        }
    }

    fn outcome(self, code: u32) -> Outcome {
        match self {
            Class::Mfa => Outcome::PasswordOk { code: Some(code) },
            Class::Transient => Outcome::Unavailable("transient_error"),
            Class::WrongPassword => Outcome::WrongPassword { code: Some(code) },
            Class::UnknownUser => Outcome::UnknownUser { code: Some(code) },
            Class::Blocked => Outcome::Blocked { code },
            Class::Expired => Outcome::PasswordExpired { code },
            Class::Disabled => Outcome::Disabled,
            Class::Locked => Outcome::Locked,
            Class::Config(reason) => Outcome::ConfigError { code: Some(code), reason },
        }
    }
}

// What an administrator must fix, one message per kind of mistake.
const TENANT_NOT_FOUND: &str =
    "tenant not found: check the tenant ID or domain, and that the authority is the tenant's cloud";
const TENANT_ENDPOINT: &str = "the password grant needs a tenant-specific endpoint: set the tenant ID or domain";
const APP_NOT_FOUND: &str =
    "application (client) ID not found in this tenant: check client_id and that the app is registered in the tenant";
const APP_DISABLED: &str = "the app registration is disabled in the tenant";
const SECRET_REQUIRED: &str = "the app registration is a confidential client: turn on 'Allow public client flows' \
     in its Authentication settings, or configure client_secret";
const SECRET_NOT_ALLOWED: &str = "the app registration is a public client: remove client_secret";
const SECRET_INVALID: &str = "the client secret is wrong (use the secret's value, not its ID)";
const SECRET_EXPIRED: &str = "the client secret has expired: create a new one";
const CLIENT_AUTH: &str = "client authentication failed: check client_id and client_secret";
const SCOPE_INVALID: &str = "the scope is not valid for this tenant or app registration";
const CONSENT_MISSING: &str =
    "the app registration lacks consent for the requested scope: grant admin consent in the tenant";
const RESOURCE_MISSING: &str = "the resource named by the scope does not exist or is disabled in the tenant";
const GRANT_UNSUPPORTED: &str = "the token endpoint refused the password grant for this app registration";
const BAD_REQUEST: &str = "the token endpoint rejected the request as malformed (is a proxy rewriting it?)";

/// The AADSTS table, from Microsoft's error-code reference. Codes not listed
/// here are "unknown" (never a right password).
fn class_of(code: u32) -> Option<Class> {
    Some(match code {
        // --- The password was right; an MFA step is pending. Entra checks
        // the primary credential before it asks for (or for enrolment in) a
        // second factor, so these answers prove the password.
        // UserStrongAuthClientAuthNRequired: MFA required (CA, per-user MFA, new location).
        50076
        // UserStrongAuthEnrollmentRequired: MFA required, user must register security info.
        | 50079
        // UserStrongAuthClientAuthNRequiredInterrupt: strong authentication required.
        | 50074
        // UserStrongAuthEnrollmentRequiredInterrupt: the interrupt form of 50079.
        | 50072
        // ExternalSecurityChallenge: an external MFA provider's challenge is pending.
        | 50158 => Class::Mfa,

        // --- Wrong credentials.
        // InvalidUserNameOrPassword.
        50126
        // No password in the directory for this user (passwordless account).
        | 50056
        // CredentialAuthenticationError: validation of username or password failed.
        | 50064 => Class::WrongPassword,

        // --- No such account in this tenant.
        // UserAccountNotFound.
        50034
        // UserAccountNotInDirectory.
        | 51004
        // UserUnauthorized: account from another identity provider, not in the tenant.
        | 50020
        // GuestUserInPendingState: the account does not exist in the directory.
        | 50014
        // An external account that is not in the tenant (sent as interaction_required:
        // the reason numbers outrank the error string).
        | 16000 => Class::UnknownUser,

        // IdsLocked (or sign-in from a malicious IP address).
        50053 => Class::Locked,
        // UserDisabled.
        50057 => Class::Disabled,
        // InvalidPasswordExpiredPassword; InvalidPasswordExpiredOnPremPassword.
        // (50173 FreshTokenNeeded is about revoked refresh tokens, not an
        // expired password: it stays unknown.)
        50055 | 50144 => Class::Expired,

        // --- Blocked by a policy. Conditional Access is not documented to
        // run only after a right password, so none of these counts as one.
        // BlockedByConditionalAccess; device not compliant / not domain joined /
        // not an approved app.
        53003 | 53000 | 53001 | 53002
        // ProofUpBlockedDueToRisk; user blocked due to risk on the home tenant.
        | 53004 | 53011
        // Blocked by a security policy / by security defaults.
        | 530032 | 530035
        // DevicePolicyError; DeviceAuthenticationRequired; ConditionalAccessFailed.
        | 50005 | 50097 | 50131
        // EntitlementGrantsNotFound: the user is not assigned to the app.
        | 50105
        // PasswordChangeCompromisedPassword: password change required due to account risk.
        | 50135 => Class::Blocked,

        // --- Configuration: the administrator must fix a setting.
        // InvalidTenantName.
        90002 => Class::Config(TENANT_NOT_FOUND),
        // NationalCloudTenantRedirection: the tenant lives in another cloud.
        90038 => Class::Config(TENANT_NOT_FOUND),
        // No tenant in the request; password grant over /common or /consumers;
        // app not multi-tenant for /common.
        50059 | 50128 | 90019 | 9001023 | 90124 | 90130 | 50194 => Class::Config(TENANT_ENDPOINT),
        // UnauthorizedClient_DoesNotMatchRequest; app not found in the org tenant.
        700016 | 700011 => Class::Config(APP_NOT_FOUND),
        // UnauthorizedClient (application disabled); UnauthorizedClientApplicationDisabled.
        70001 | 7000112 => Class::Config(APP_DISABLED),
        // Body must contain client_assertion or client_secret.
        7000218 => Class::Config(SECRET_REQUIRED),
        // InvalidClientPublicClientWithCredential.
        700025 => Class::Config(SECRET_NOT_ALLOWED),
        // Invalid client secret; InvalidClient (secret mismatch).
        7000215 | 70002 => Class::Config(SECRET_INVALID),
        // InvalidClientSecretExpiredKeysProvided.
        7000222 => Class::Config(SECRET_EXPIRED),
        // InvalidScope; invalid scope for an access token; empty scope;
        // more than one resource; resourceless scope.
        70011 | 28002 | 28003 | 700022 | 700023 => Class::Config(SCOPE_INVALID),
        // DelegationDoesNotExist (consent); TokenForItselfRequiresGraphPermission;
        // AdminConsentRequired; MisconfiguredApplication (x3).
        65001 | 90008 | 90094 | 65005 | 650056 | 650057 => Class::Config(CONSENT_MISSING),
        // InvalidResource; resource principal not found in the tenant.
        50001 | 500011 => Class::Config(RESOURCE_MISSING),
        // UnsupportedGrantType.
        70003 => Class::Config(GRANT_UNSUPPORTED),
        // Missing parameter; malformed request; wrong HTTP verb.
        900144 | 90014 | 90004 | 90023 | 9002313 | 90100 | 900561 => Class::Config(BAD_REQUEST),

        // --- Transient: Entra could not decide now.
        // TokenIssuanceError; RetryableError; SasRetryableError; service
        // temporarily unavailable; RequestTimeout; RequestBudgetExceededError;
        // MSODS unavailable; TenantThrottlingError; Graph retryable / unreachable;
        // LoopDetected (throttling of repeated requests).
        50000 | 50033 | 50087 | 90006 | 90012 | 90024 | 90033 | 90055 | 90090 | 90091 | 50196
        // Pass-through authentication: the on-premises agent or AD could not
        // validate the password (unreachable, timed out, failed).
        | 80001 | 80002 | 80005 | 80007 | 80014 => Class::Transient,

        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An error body in the documented shape.
    fn err(error: &str, code: u32, text: &str) -> String {
        format!(
            r#"{{"error":"{error}","error_description":"AADSTS{code}: {text}\r\nTrace ID: 0000aaaa-11bb-cccc-dd22-eeeeee333333\r\nCorrelation ID: aaaa0000-bb11-2222-33cc-444444dddddd\r\nTimestamp: 2026-01-09 02:02:12Z","error_codes":[{code}],"timestamp":"2026-01-09 02:02:12Z","trace_id":"0000aaaa-11bb-cccc-dd22-eeeeee333333","correlation_id":"aaaa0000-bb11-2222-33cc-444444dddddd","error_uri":"https://login.microsoftonline.com/error?code={code}"}}"#
        )
    }

    #[test]
    fn mfa_required_codes_mean_password_ok() {
        let body = r#"{"error":"interaction_required","error_description":"AADSTS50076: Due to a configuration change made by your administrator, or because you moved to a new location, you must use multi-factor authentication to access '00000003-0000-0000-c000-000000000000'.\r\nTrace ID: 0000aaaa-11bb-cccc-dd22-eeeeee333333\r\nCorrelation ID: aaaa0000-bb11-2222-33cc-444444dddddd\r\nTimestamp: 2026-01-09 02:02:12Z","error_codes":[50076],"timestamp":"2026-01-09 02:02:12Z","trace_id":"0000aaaa-11bb-cccc-dd22-eeeeee333333","correlation_id":"aaaa0000-bb11-2222-33cc-444444dddddd","error_uri":"https://login.microsoftonline.com/error?code=50076","suberror":"basic_action"}"#;
        let o = classify(400, body.as_bytes());
        assert_eq!(o, Outcome::PasswordOk { code: Some(50076) });
        assert_eq!(o.audit_reason(), "entra_mfa_required_password_ok");
        assert!(o.password_ok(false));
        for code in [50079, 50074, 50072, 50158] {
            let o = classify(400, err("interaction_required", code, "MFA").as_bytes());
            assert_eq!(o, Outcome::PasswordOk { code: Some(code) }, "{code}");
        }
        // The codes decide, not the error string.
        assert_eq!(
            classify(400, err("invalid_grant", 50076, "x").as_bytes()),
            Outcome::PasswordOk { code: Some(50076) }
        );
    }

    #[test]
    fn interaction_required_without_codes_is_password_ok() {
        let o = classify(400, br#"{"error":"interaction_required","error_description":"MFA needed"}"#);
        assert_eq!(o, Outcome::PasswordOk { code: None });
    }

    #[test]
    fn interaction_required_with_a_non_mfa_code_is_not_password_ok() {
        // AADSTS16000: an external account that is not in the tenant.
        let o = classify(400, err("interaction_required", 16000, "User account does not exist").as_bytes());
        assert_eq!(o, Outcome::UnknownUser { code: Some(16000) });
        // An unknown number never proves the password.
        let o = classify(400, err("interaction_required", 50999, "something new").as_bytes());
        assert_eq!(o, Outcome::Refused { code: Some(50999) });
        assert!(!o.password_ok(true));
        // MFA plus an unknown number: not believed.
        let o = classify(400, br#"{"error":"interaction_required","error_codes":[50076,50999]}"#);
        assert_eq!(o, Outcome::Refused { code: Some(50999) });
        // MFA plus a known refusal: the refusal wins.
        let o = classify(400, br#"{"error":"interaction_required","error_codes":[50076,50053]}"#);
        assert_eq!(o, Outcome::Locked);
        // Conditional Access block: no proof of the password.
        let o = classify(
            400,
            err("invalid_grant", 53003, "Access has been blocked by Conditional Access policies.").as_bytes(),
        );
        assert_eq!(o, Outcome::Blocked { code: 53003 });
        assert_eq!(o.audit_reason(), "entra_blocked_by_policy");
    }

    #[test]
    fn credential_errors() {
        let o = classify(
            400,
            err("invalid_grant", 50126, "Error validating credentials due to invalid username or password.").as_bytes(),
        );
        assert_eq!(o, Outcome::WrongPassword { code: Some(50126) });
        assert_eq!(o.audit_reason(), "entra_wrong_password");
        assert!(!o.password_ok(true));
        let o =
            classify(400, err("invalid_grant", 50034, "The user account does not exist in the directory.").as_bytes());
        assert_eq!(o, Outcome::UnknownUser { code: Some(50034) });
        assert_eq!(o.audit_reason(), "entra_unknown_user");
        assert_eq!(classify(400, br#"{"error":"invalid_grant"}"#), Outcome::WrongPassword { code: None });
    }

    #[test]
    fn account_states() {
        let o = classify(400, err("invalid_grant", 50053, "The account is locked.").as_bytes());
        assert_eq!((o.clone(), o.audit_reason(), o.code()), (Outcome::Locked, "entra_locked", Some(50053)));
        let o = classify(400, err("invalid_grant", 50057, "The user account is disabled.").as_bytes());
        assert_eq!((o.clone(), o.audit_reason()), (Outcome::Disabled, "entra_disabled"));
        let o = classify(400, err("invalid_grant", 50055, "The password is expired.").as_bytes());
        assert_eq!((o.clone(), o.audit_reason()), (Outcome::PasswordExpired { code: 50055 }, "entra_password_expired"));
        let o = classify(400, err("invalid_grant", 50144, "On-premises password expired.").as_bytes());
        assert_eq!(o, Outcome::PasswordExpired { code: 50144 });
        // FreshTokenNeeded is not an expired password.
        assert_eq!(classify(400, err("invalid_grant", 50173, "x").as_bytes()), Outcome::Refused { code: Some(50173) });
    }

    #[test]
    fn configuration_errors_are_never_a_wrong_password() {
        for (error, code, status) in [
            ("invalid_request", 90002, 400),
            ("unauthorized_client", 700016, 400),
            ("invalid_client", 7000218, 400),
            ("invalid_client", 7000215, 401),
            ("invalid_client", 7000222, 401),
            ("invalid_scope", 70011, 400),
            ("invalid_grant", 65001, 400),
            ("invalid_request", 9001023, 400),
            ("invalid_client", 700025, 400),
            ("invalid_request", 900144, 400),
        ] {
            let o = classify(status, err(error, code, "x").as_bytes());
            match &o {
                Outcome::ConfigError { code: Some(c), reason } => {
                    assert_eq!(*c, code);
                    assert!(!reason.is_empty());
                }
                other => panic!("{code}: {other:?}"),
            }
            assert_eq!(o.audit_reason(), "entra_config_error");
            assert!(!o.password_ok(true));
            assert!(!o.is_unavailable());
        }
        let reason = |code| match classify(400, err("x", code, "x").as_bytes()) {
            Outcome::ConfigError { reason, .. } => reason,
            other => panic!("{other:?}"),
        };
        assert!(reason(90002).contains("tenant not found"));
        assert!(reason(700016).contains("client_id"));
        assert!(reason(7000218).contains("Allow public client flows"));
        // Without a number, by the error string.
        assert!(matches!(classify(401, br#"{"error":"invalid_client"}"#), Outcome::ConfigError { code: None, .. }));
        assert!(matches!(classify(400, br#"{"error":"invalid_scope"}"#), Outcome::ConfigError { code: None, .. }));
    }

    #[test]
    fn success_means_no_mfa_and_the_token_is_not_kept() {
        let body = br#"{"token_type":"Bearer","scope":"User.Read profile openid email","expires_in":3599,"access_token":"eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiIsIng1dCI6Ik5HVEZ2ZEstZnl0aEV1Q...","id_token":"eyJ0eXAiOiJKV1QiLCJhbGciOiJub25lIn0.eyJhdWQiOiIyZDRkMTFhMi1mODE0LTQ2YTctOD..."}"#;
        let o = classify(200, body);
        assert_eq!(o, Outcome::NoMfa);
        assert_eq!(o.audit_reason(), "entra_no_mfa");
        assert!(!o.password_ok(false));
        assert!(o.password_ok(true));
        assert!(!format!("{o:?} {o}").contains("eyJ"));
        // A token with escapes is still a token.
        assert_eq!(classify(200, br#"{"access_token":"a\/b"}"#), Outcome::NoMfa);
        // 200 without a token is not a success.
        assert_eq!(classify(200, br#"{"token_type":"Bearer"}"#), Outcome::Unavailable("unexpected_shape"));
        assert_eq!(classify(200, br#"{"access_token":""}"#), Outcome::Unavailable("unexpected_shape"));
        assert_eq!(classify(200, br#"{"access_token":null}"#), Outcome::Unavailable("unexpected_shape"));
        assert_eq!(classify(200, br#"{"access_token":42}"#), Outcome::Unavailable("unexpected_shape"));
        assert_eq!(
            classify(200, br#"{"error":"invalid_grant","error_codes":[50076]}"#),
            Outcome::Unavailable("unexpected_shape")
        );
        assert_eq!(classify(200, b"<html>ok</html>"), Outcome::Unavailable("non_json_body"));
        assert_eq!(classify(200, br#"{"access_token":"abc"#), Outcome::Unavailable("malformed_json"));
    }

    #[test]
    fn unavailable_answers() {
        let html = b"<html><body><h1>503 Service Unavailable</h1></body></html>";
        for (status, body, reason) in [
            (500, &html[..], "server_error"),
            (503, &html[..], "server_error"),
            // A 5xx never proves anything, whatever its body says.
            (503, br#"{"error":"interaction_required","error_codes":[50076]}"#, "server_error"),
            (429, br#"{"error":"temporarily_unavailable"}"#, "throttled"),
            (400, &html[..], "non_json_body"),
            (400, b"", "non_json_body"),
            (400, br#"{"error":"invalid_grant","error_codes":[50126"#, "malformed_json"),
            (400, br#"[50076]"#, "unexpected_shape"),
            (400, br#"{"message":"hello"}"#, "unexpected_shape"),
            (400, br#"{"error":"temporarily_unavailable"}"#, "transient_error"),
            (400, br#"{"error":"temporarily_unavailable","error_codes":[12345]}"#, "transient_error"),
            (400, br#"{"error":"invalid_grant","error_codes":[90033]}"#, "transient_error"),
            (400, br#"{"error":"invalid_grant","error_codes":[80002]}"#, "transient_error"),
            (302, b"", "unexpected_status"),
            (204, b"", "unexpected_status"),
        ] {
            let o = classify(status, body);
            assert_eq!(o, Outcome::Unavailable(reason), "{status} {}", String::from_utf8_lossy(body));
            assert_eq!(o.audit_reason(), "entra_unavailable");
            assert!(o.is_unavailable());
            assert!(!o.password_ok(true));
        }
    }

    #[test]
    fn codes_from_the_description_when_the_array_is_absent() {
        let body = br#"{"error":"invalid_grant","error_description":"AADSTS50126: Error validating credentials due to invalid username or password.\r\nTrace ID: x"}"#;
        assert_eq!(classify(400, body), Outcome::WrongPassword { code: Some(50126) });
        let body = br#"{"error":"invalid_grant","error_codes":[],"error_description":"AADSTS50053: locked"}"#;
        assert_eq!(classify(400, body), Outcome::Locked);
        let body = br#"{"error":"interaction_required","error_description":"AADSTS50079: enrol in MFA"}"#;
        assert_eq!(classify(400, body), Outcome::PasswordOk { code: Some(50079) });
        // The array wins over the description.
        let body = br#"{"error":"invalid_grant","error_codes":[50126],"error_description":"AADSTS50076: x"}"#;
        assert_eq!(classify(400, body), Outcome::WrongPassword { code: Some(50126) });
        // Junk numbers are ignored.
        let body = br#"{"error":"invalid_grant","error_codes":["50076", -1, 99999999999]}"#;
        assert_eq!(classify(400, body), Outcome::WrongPassword { code: None });
    }

    #[test]
    fn aadsts_scanner() {
        assert_eq!(aadsts_codes("AADSTS50076: x AADSTS50076 AADSTS7000218."), vec![50076, 7000218]);
        assert_eq!(aadsts_codes("AADSTS: AADSTSx AADSTS1234567890"), Vec::<u32>::new());
        assert_eq!(aadsts_codes(""), Vec::<u32>::new());
    }

    #[test]
    fn unknown_error_strings_are_refusals() {
        let o = classify(400, br#"{"error":"something_new"}"#);
        assert_eq!(o, Outcome::Refused { code: None });
        assert_eq!(o.audit_reason(), "entra_refused");
    }

    #[test]
    fn audit_reasons_are_distinct() {
        let all = [
            Outcome::PasswordOk { code: None },
            Outcome::NoMfa,
            Outcome::WrongPassword { code: None },
            Outcome::UnknownUser { code: None },
            Outcome::Locked,
            Outcome::Disabled,
            Outcome::PasswordExpired { code: 50055 },
            Outcome::Blocked { code: 53003 },
            Outcome::Refused { code: None },
            Outcome::ConfigError { code: None, reason: "x" },
            Outcome::Unavailable("timeout"),
        ];
        let mut reasons: Vec<_> = all.iter().map(Outcome::audit_reason).collect();
        assert!(reasons.iter().all(|r| r.starts_with("entra_") && r.len() <= 40));
        reasons.sort_unstable();
        reasons.dedup();
        assert_eq!(reasons.len(), all.len());
    }

    #[test]
    fn every_listed_code_is_classified_consistently() {
        // A code in the MFA class must never appear in another.
        for code in [50076, 50079, 50074, 50072, 50158] {
            assert_eq!(class_of(code), Some(Class::Mfa));
        }
        for code in [53003, 50173, 50078, 65001, 16000, 50034] {
            assert_ne!(class_of(code), Some(Class::Mfa), "{code}");
        }
    }
}
