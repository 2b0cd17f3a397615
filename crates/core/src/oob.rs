//! Out-of-band codes: a one-time code sent by email or SMS to the address
//! of a user's email or SMS token, after the first factor was right.
//!
//! What it does: draws the code, keys its digest, checks a submitted code
//! against the user's recent codes, limits sending (per process here; per
//! user in the store, so every node sharing the database agrees), and
//! names the port through which codes leave ([`OobSender`], implemented by
//! `tessera-server` over SMTP and an HTTP gateway).
//!
//! What it must not do: keep, log or audit a code. The store holds only
//! `HMAC-SHA256(token secret, id ‖ code)`: the key is the token's own random
//! secret, sealed under the master key like an OTP seed, so a stolen
//! database does not allow checking guesses, and the digest of one code
//! row cannot be moved to another. Pure: time and randomness are arguments.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::clock::Timestamp;
use crate::error::CoreError;
use crate::keys::Keyring;
use crate::model::{OobChannel, Token, TokenId, TokenState, UserId};
use crate::otp_match::open_secret;
use crate::random::Random;

/// Wrong codes submitted while a code is pending before it stops working
/// (besides the user's lockout, which counts them too).
pub const MAX_CODE_ATTEMPTS: u32 = 3;
/// Longest code lifetime: an hour. Longer and a code in a mailbox is a
/// password.
pub const MAX_TTL_SECONDS: u32 = 3600;
/// Longest per-user rate window: a day (older send records are pruned).
pub const MAX_WINDOW_SECONDS: u32 = 86_400;
/// Most codes per user per window; also bounds the rows read per login.
pub const MAX_USER_LIMIT: u32 = 100;
/// RFC 5321's limit on a forward path.
pub const MAX_EMAIL_LEN: usize = 254;
/// E.164: at most 15 digits.
const MAX_PHONE_DIGITS: usize = 15;
const MIN_PHONE_DIGITS: usize = 6;
/// Domain separation of the code digest.
const DIGEST_LABEL: &[u8] = b"tessera/oob-code/v1\0";

/// A code that was sent (or was about to be): one row in the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OobCode {
    /// Random 63-bit id; part of the digest.
    pub id: i64,
    pub user_id: UserId,
    /// The email or SMS token the code went to (its secret keys the digest).
    pub token_id: TokenId,
    pub digest: [u8; 32],
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
    /// Wrong codes submitted while this one was pending.
    pub attempts: u32,
    /// Set when the code was accepted (it then still counts for the rate limit).
    pub used_at: Option<Timestamp>,
}

/// `HMAC-SHA256(secret, label ‖ id ‖ code)`.
pub fn code_digest(secret: &[u8], id: i64, code: &str) -> [u8; 32] {
    let mut mac = <Hmac<Sha256> as hmac::KeyInit>::new_from_slice(secret)
        .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
    mac.update(DIGEST_LABEL);
    mac.update(&id.to_le_bytes());
    mac.update(code.as_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(&mac.finalize().into_bytes());
    out
}

/// A uniformly random code of `digits` decimal digits (rejection sampling,
/// so no digit is likelier than another).
pub fn generate_code(rng: &dyn Random, digits: u8) -> Zeroizing<String> {
    let mut out = Zeroizing::new(String::with_capacity(usize::from(digits)));
    let mut buf = Zeroizing::new([0u8; 32]);
    while out.len() < usize::from(digits) {
        rng.fill(&mut buf[..]);
        for b in buf.iter() {
            // 250 = 25 × 10: bytes above it would favour the low digits.
            if *b < 250 && out.len() < usize::from(digits) {
                out.push(char::from(b'0' + b % 10));
            }
        }
    }
    out
}

/// Checks and normalises an address for `channel`: an email address is kept
/// as given (trimmed); a phone number becomes `+` and digits (spaces,
/// dashes, dots and parentheses dropped), E.164 style.
pub fn normalize_address(channel: OobChannel, raw: &str) -> Result<String, CoreError> {
    let raw = raw.trim();
    match channel {
        OobChannel::Email => {
            let ok = raw.len() <= MAX_EMAIL_LEN
                && !raw
                    .chars()
                    .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '<' | '>' | ',' | ';' | '"'))
                && raw.split_once('@').is_some_and(|(local, domain)| {
                    !local.is_empty() && !domain.is_empty() && !domain.contains('@') && !domain.starts_with('.')
                });
            if ok {
                Ok(raw.to_string())
            } else {
                Err(CoreError::invalid("address", format!("`{raw}` is not an email address (name@domain)")))
            }
        }
        OobChannel::Sms => {
            let digits: String = raw.chars().filter(|c| !matches!(c, ' ' | '-' | '.' | '(' | ')')).collect();
            let ok = digits.strip_prefix('+').is_some_and(|d| {
                (MIN_PHONE_DIGITS..=MAX_PHONE_DIGITS).contains(&d.len())
                    && d.bytes().all(|b| b.is_ascii_digit())
                    && !d.starts_with('0')
            });
            if ok {
                Ok(digits)
            } else {
                Err(CoreError::invalid(
                    "phone",
                    format!(
                        "`{raw}` is not an international number (`+` and {MIN_PHONE_DIGITS}–{MAX_PHONE_DIGITS} digits)"
                    ),
                ))
            }
        }
    }
}

/// The address as shown to the person logging in: enough to recognise it,
/// not enough to learn it (`a•••@example.com`, `•••••••5678`).
pub fn mask_address(channel: OobChannel, address: &str) -> String {
    const DOT: char = '•';
    match channel {
        OobChannel::Email => match address.split_once('@') {
            Some((local, domain)) => {
                let first: String = local.chars().take(1).collect();
                format!("{first}{DOT}{DOT}{DOT}@{domain}")
            }
            None => "•••".into(),
        },
        OobChannel::Sms => {
            let n = address.chars().count();
            let keep = n.min(4);
            let tail: String = address.chars().skip(n - keep).collect();
            format!("{}{tail}", DOT.to_string().repeat(n.saturating_sub(keep).max(3)))
        }
    }
}

/// What a submitted code is, against the user's recent codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PendingMatch {
    /// A live code: accept (the store consumes it once).
    Live { id: i64, channel: OobChannel },
    /// A code that was already accepted once.
    Used,
    /// A code past its lifetime.
    Expired,
    /// A code that saw too many wrong attempts.
    Exhausted,
    /// No code of this user has this value.
    None,
    /// None matched, but the secret of a token a code went to did not open,
    /// so whether one would have is unknown (the login fails closed).
    Unreadable,
}

impl PendingMatch {
    /// The audit reason when this is not a live code.
    pub fn failure_reason(self) -> Option<&'static str> {
        match self {
            PendingMatch::Used => Some("replayed_code"),
            PendingMatch::Expired => Some("expired_code"),
            PendingMatch::Exhausted => Some("code_attempts_exceeded"),
            PendingMatch::Live { .. } | PendingMatch::None | PendingMatch::Unreadable => None,
        }
    }
}

/// The user's active email and SMS tokens.
pub fn oob_tokens(tokens: &[Token]) -> impl Iterator<Item = &Token> {
    tokens.iter().filter(|t| t.state == TokenState::Active && t.oob.is_some())
}

/// Checks `code` against `codes` (the user's recent codes, any state).
/// Each code is keyed by its token's secret; codes of tokens that are gone
/// or no longer active never match.
pub fn match_pending(keys: &Keyring, tokens: &[Token], codes: &[OobCode], code: &str, now: Timestamp) -> PendingMatch {
    if code.is_empty() || !code.bytes().all(|b| b.is_ascii_digit()) {
        return PendingMatch::None;
    }
    let mut found = PendingMatch::None;
    let mut unreadable = false;
    for row in codes {
        let Some(token) = oob_tokens(tokens).find(|t| t.id == row.token_id) else { continue };
        let Some(target) = &token.oob else { continue };
        if code.len() != usize::from(token.params.digits.get()) {
            continue;
        }
        let secret = match open_secret(keys, token) {
            Ok(s) => s,
            Err(e) => {
                tracing::debug!(token = %token.serial, error = %e, "token secret cannot be opened");
                unreadable = true;
                continue;
            }
        };
        if !bool::from(code_digest(secret.as_bytes(), row.id, code).ct_eq(&row.digest)) {
            continue;
        }
        let m = if row.used_at.is_some() {
            PendingMatch::Used
        } else if row.expires_at <= now {
            PendingMatch::Expired
        } else if row.attempts >= MAX_CODE_ATTEMPTS {
            PendingMatch::Exhausted
        } else {
            return PendingMatch::Live { id: row.id, channel: target.channel };
        };
        // Keep looking: a live row may share the value by chance.
        if found == PendingMatch::None {
            found = m;
        }
    }
    if found == PendingMatch::None && unreadable { PendingMatch::Unreadable } else { found }
}

/// A code about to leave. Its Debug output never shows the code.
pub struct OobMessage<'a> {
    pub channel: OobChannel,
    /// Email address or phone number (normalised).
    pub to: &'a str,
    pub code: &'a str,
    /// How long the code works, for the message text.
    pub ttl_seconds: u32,
    pub username: &'a str,
}

impl std::fmt::Debug for OobMessage<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OobMessage")
            .field("channel", &self.channel)
            .field("to", &mask_address(self.channel, self.to))
            .field("code", &"[REDACTED]")
            .finish_non_exhaustive()
    }
}

/// Why a code could not be delivered. The text names the channel and the
/// failure (`smtp: connection refused`, `gateway answered 500`), never the
/// code, the message text or a credential.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct DeliveryError(pub String);

/// The port through which codes leave (SMTP, an SMS gateway).
#[async_trait::async_trait]
pub trait OobSender: Send + Sync + std::fmt::Debug {
    /// Whether `channel` is configured on this node.
    fn available(&self, channel: OobChannel) -> bool;
    /// Delivers one code; bounded in time by the implementation.
    async fn send(&self, message: &OobMessage<'_>) -> Result<(), DeliveryError>;
}

/// No channel configured: nothing is ever sent.
#[derive(Debug, Default)]
pub struct NoOobSender;

#[async_trait::async_trait]
impl OobSender for NoOobSender {
    fn available(&self, _channel: OobChannel) -> bool {
        false
    }
    async fn send(&self, _message: &OobMessage<'_>) -> Result<(), DeliveryError> {
        Err(DeliveryError("no email or SMS channel is configured".into()))
    }
}

/// How codes are made and limited (`[oob]` in the configuration).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OobSettings {
    /// How long a code works, seconds.
    pub ttl_seconds: u32,
    /// Codes sent to one user per `user_window_seconds`, counted in the store.
    pub user_limit: u32,
    pub user_window_seconds: u32,
    /// Codes this process sends per minute, to all users together.
    pub global_per_minute: u32,
    /// The challenge prompt; `{address}` is the masked address.
    pub prompt: String,
    /// Sent with the reject when no code could be sent (delivery failed,
    /// too many codes).
    pub failure_message: String,
}

impl Default for OobSettings {
    fn default() -> Self {
        OobSettings {
            ttl_seconds: 300,
            user_limit: 3,
            user_window_seconds: 600,
            global_per_minute: 60,
            prompt: "Enter the code sent to {address}".into(),
            failure_message: "No code could be sent. Try again later or contact your administrator.".into(),
        }
    }
}

impl OobSettings {
    /// Checks every bound; the error names the first one broken.
    pub fn validate(&self) -> Result<(), String> {
        if !(1..=MAX_TTL_SECONDS).contains(&self.ttl_seconds) {
            return Err(format!("ttl_seconds must be 1–{MAX_TTL_SECONDS} (got {})", self.ttl_seconds));
        }
        if !(1..=MAX_USER_LIMIT).contains(&self.user_limit) {
            return Err(format!("user_limit must be 1–{MAX_USER_LIMIT} (got {})", self.user_limit));
        }
        if !(1..=MAX_WINDOW_SECONDS).contains(&self.user_window_seconds) {
            return Err(format!(
                "user_window_seconds must be 1–{MAX_WINDOW_SECONDS} (got {})",
                self.user_window_seconds
            ));
        }
        if !(1..=100_000).contains(&self.global_per_minute) {
            return Err(format!("global_per_minute must be 1–100000 (got {})", self.global_per_minute));
        }
        for (key, text) in [("prompt", &self.prompt), ("failure_message", &self.failure_message)] {
            if text.is_empty() || text.len() > 200 || text.chars().any(char::is_control) {
                return Err(format!("{key} must be 1–200 printable characters"));
            }
        }
        Ok(())
    }

    /// Rows older than this no longer matter (rate window and lifetime).
    pub fn lookback_seconds(&self) -> i64 {
        i64::from(self.ttl_seconds.max(self.user_window_seconds))
    }
}

/// A sliding-window limit on sends by this process (`global_per_minute`):
/// a bound on what one node can be made to send, whatever the users.
#[derive(Debug)]
pub struct SendLimiter {
    limit: usize,
    window_ms: i64,
    sent: Mutex<VecDeque<Timestamp>>,
}

impl SendLimiter {
    pub fn new(limit: u32, window_seconds: u32) -> Self {
        SendLimiter {
            limit: limit as usize,
            window_ms: i64::from(window_seconds) * 1000,
            sent: Mutex::new(VecDeque::with_capacity((limit as usize).min(1024))),
        }
    }

    /// Takes one send from the window if there is room.
    pub fn try_acquire(&self, now: Timestamp) -> bool {
        let mut sent = self.sent.lock().unwrap_or_else(|p| p.into_inner());
        while sent.front().is_some_and(|t| t.0 <= now.0 - self.window_ms) {
            sent.pop_front();
        }
        if sent.len() >= self.limit {
            return false;
        }
        sent.push_back(now);
        true
    }
}

/// What the engine needs to send codes: the port, the settings and this
/// process's limiter.
#[derive(Debug, Clone)]
pub struct OobService {
    pub sender: Arc<dyn OobSender>,
    pub settings: OobSettings,
    limiter: Arc<SendLimiter>,
}

impl OobService {
    pub fn new(sender: Arc<dyn OobSender>, settings: OobSettings) -> Self {
        let limiter = Arc::new(SendLimiter::new(settings.global_per_minute, 60));
        OobService { sender, settings, limiter }
    }

    /// Nothing configured: no code is ever sent.
    pub fn disabled() -> Self {
        Self::new(Arc::new(NoOobSender), OobSettings::default())
    }

    pub fn limiter(&self) -> &SendLimiter {
        &self.limiter
    }

    /// The prompt for a code sent to `address`.
    pub fn prompt(&self, channel: OobChannel, address: &str) -> String {
        self.settings.prompt.replace("{address}", &mask_address(channel, address))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::{MasterKey, Purpose};
    use crate::model::OobTarget;
    use crate::random::OsRandom;
    use tessera_otp::{Algorithm, Digits, OtpKind, OtpParams};

    #[derive(Debug)]
    struct Fixed(u8);
    impl Random for Fixed {
        fn fill(&self, buf: &mut [u8]) {
            buf.fill(self.0);
        }
    }

    #[test]
    fn codes_have_the_digits_asked_for_and_skip_biased_bytes() {
        for d in [6u8, 8] {
            let c = generate_code(&OsRandom, d);
            assert_eq!(c.len(), usize::from(d));
            assert!(c.bytes().all(|b| b.is_ascii_digit()));
        }
        assert_eq!(generate_code(&Fixed(7), 6).as_str(), "777777");
        assert_eq!(generate_code(&Fixed(249), 6).as_str(), "999999");
    }

    #[test]
    fn addresses_are_checked_and_normalised() {
        assert_eq!(normalize_address(OobChannel::Email, " alice@example.com ").unwrap(), "alice@example.com");
        for bad in ["alice", "@example.com", "alice@", "a b@example.com", "a@b@c", "<a@b.c>", "a@.b"] {
            assert!(normalize_address(OobChannel::Email, bad).is_err(), "{bad}");
        }
        assert_eq!(normalize_address(OobChannel::Sms, "+49 (151) 123-456.78").unwrap(), "+4915112345678");
        for bad in ["015112345678", "+0151123456", "+12345", "+1234567890123456", "+49 151 abc", ""] {
            assert!(normalize_address(OobChannel::Sms, bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn masking_keeps_little() {
        assert_eq!(mask_address(OobChannel::Email, "alice@example.com"), "a•••@example.com");
        assert_eq!(mask_address(OobChannel::Sms, "+4915112345678"), "••••••••••5678");
        assert_eq!(mask_address(OobChannel::Sms, "+12"), "•••+12");
    }

    #[test]
    fn global_limiter_slides() {
        let l = SendLimiter::new(2, 60);
        let t = Timestamp::from_unix_seconds(1000);
        assert!(l.try_acquire(t));
        assert!(l.try_acquire(t.plus_seconds(10)));
        assert!(!l.try_acquire(t.plus_seconds(59)), "third within the minute");
        assert!(l.try_acquire(t.plus_seconds(60)), "the first one left the window");
        assert!(!l.try_acquire(t.plus_seconds(61)));
        assert!(l.try_acquire(t.plus_seconds(71)));
    }

    #[test]
    fn settings_bounds() {
        OobSettings::default().validate().unwrap();
        let bad = |f: fn(&mut OobSettings)| {
            let mut s = OobSettings::default();
            f(&mut s);
            s.validate().unwrap_err()
        };
        assert!(bad(|s| s.ttl_seconds = 0).contains("ttl_seconds"));
        assert!(bad(|s| s.ttl_seconds = 3601).contains("ttl_seconds"));
        assert!(bad(|s| s.user_limit = 0).contains("user_limit"));
        assert!(bad(|s| s.global_per_minute = 0).contains("global_per_minute"));
        assert!(bad(|s| s.prompt = "a\nb".into()).contains("prompt"));
    }

    fn token(keys: &Keyring, channel: OobChannel, digits: u8) -> (Token, Vec<u8>) {
        let id = TokenId::new_random();
        let secret = vec![42u8; 20];
        let t = Token {
            id,
            user_id: UserId(1),
            serial: format!("OOB{}", id.0),
            params: OtpParams { kind: OtpKind::Hotp, algorithm: Algorithm::Sha1, digits: Digits::new(digits).unwrap() },
            sealed_secret: keys.seal(&OsRandom, Purpose::OtpSecret, &id.to_string(), &secret),
            counter: 0,
            drift: 0,
            state: TokenState::Active,
            description: String::new(),
            created_at: Timestamp(0),
            last_used_at: None,
            oob: Some(OobTarget { channel, address: "alice@example.com".into() }),
        };
        (t, secret)
    }

    #[test]
    fn pending_codes_match_by_keyed_digest_and_state() {
        let keys = Keyring::new(&MasterKey::generate(&OsRandom));
        let (t, secret) = token(&keys, OobChannel::Email, 6);
        let now = Timestamp::from_unix_seconds(10_000);
        let row = |id: i64, code: &str| OobCode {
            id,
            user_id: UserId(1),
            token_id: t.id,
            digest: code_digest(&secret, id, code),
            created_at: now,
            expires_at: now.plus_seconds(300),
            attempts: 0,
            used_at: None,
        };
        let tokens = vec![t.clone()];
        let live = row(7, "123456");
        assert_eq!(
            match_pending(&keys, &tokens, std::slice::from_ref(&live), "123456", now),
            PendingMatch::Live { id: 7, channel: OobChannel::Email }
        );
        assert_eq!(match_pending(&keys, &tokens, std::slice::from_ref(&live), "123457", now), PendingMatch::None);
        assert_eq!(match_pending(&keys, &tokens, std::slice::from_ref(&live), "12345", now), PendingMatch::None);
        // the digest is bound to its row id
        let moved = OobCode { id: 8, ..live.clone() };
        assert_eq!(match_pending(&keys, &tokens, &[moved], "123456", now), PendingMatch::None);
        let used = OobCode { used_at: Some(now), ..live.clone() };
        assert_eq!(match_pending(&keys, &tokens, std::slice::from_ref(&used), "123456", now), PendingMatch::Used);
        assert_eq!(
            match_pending(&keys, &tokens, std::slice::from_ref(&live), "123456", now.plus_seconds(300)),
            PendingMatch::Expired
        );
        let tired = OobCode { attempts: MAX_CODE_ATTEMPTS, ..live.clone() };
        assert_eq!(match_pending(&keys, &tokens, &[tired], "123456", now), PendingMatch::Exhausted);
        // a used copy does not hide a live code with the same value
        assert_eq!(
            match_pending(&keys, &tokens, &[used, row(9, "123456")], "123456", now),
            PendingMatch::Live { id: 9, channel: OobChannel::Email }
        );
        // codes of a token that is gone, or pending, never match
        assert_eq!(match_pending(&keys, &[], std::slice::from_ref(&live), "123456", now), PendingMatch::None);
        let mut pending = t;
        pending.state = TokenState::Pending;
        assert_eq!(match_pending(&keys, &[pending], &[live], "123456", now), PendingMatch::None);
    }

    #[test]
    fn message_debug_hides_the_code() {
        let m = OobMessage {
            channel: OobChannel::Sms,
            to: "+4915112345678",
            code: "987654",
            ttl_seconds: 300,
            username: "a",
        };
        let s = format!("{m:?}");
        assert!(!s.contains("987654") && !s.contains("4915112345678"), "{s}");
    }
}
