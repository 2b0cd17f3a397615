//! Authentication policy: windows, lockout, backup codes.
//!
//! Stored in the database (so every node and replica applies the same rules)
//! as a versioned JSON document; unknown keys are refused rather than ignored
//! so a typo in `policy set` is an error, not a silent no-op.

use serde::{Deserialize, Serialize};

use crate::clock::Timestamp;

pub const MIN_LOCKOUT_THRESHOLD: u32 = 1;
pub const MAX_LOCKOUT_THRESHOLD: u32 = 10;
/// Auto-unlock bounds from the product brief: 10 minutes to 90 days (0 = admin only).
pub const MIN_AUTO_UNLOCK_SECONDS: u64 = 600;
pub const MAX_AUTO_UNLOCK_SECONDS: u64 = 90 * 24 * 3600;
/// A learned drift beyond this many steps is more likely an attacker walking
/// the window than a slow phone clock.
pub const MAX_DRIFT_STEPS_LIMIT: u32 = 100;
pub const MAX_HOTP_LOOK_AHEAD: u32 = 100;

/// What the grace policy still allows one user (see [`Policy::grace_for`]):
/// logins with the first factor alone while they have no active token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grace {
    /// Grace logins left; `None` when the policy sets no count.
    pub logins_left: Option<u32>,
    /// When grace ends; `None` when the policy sets no time limit.
    pub until: Option<Timestamp>,
}

impl Grace {
    /// Whether a grace login at `now` is still allowed (both limits hold).
    pub fn allows(&self, now: Timestamp) -> bool {
        self.logins_left != Some(0) && self.until.is_none_or(|u| now < u)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum LockoutMode {
    /// Refuse every attempt after the threshold until unlocked.
    #[default]
    Lock,
    /// After the threshold, make each further attempt wait a doubling delay.
    /// An attacker can then no longer lock a victim out, only slow them down.
    Throttle,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(default, deny_unknown_fields)]
pub struct Policy {
    /// Accepted clock difference each side of now, in seconds (0–300);
    /// rounded up to whole steps of each token's period.
    pub skew_seconds: u32,
    /// Largest learned TOTP drift kept per token, in steps.
    pub max_drift_steps: u32,
    /// How many HOTP counters ahead of the expected one are accepted.
    pub hotp_look_ahead: u32,
    pub lockout_mode: LockoutMode,
    /// Consecutive failures that lock (or start throttling) a user (1–10).
    pub lockout_threshold: u32,
    /// Seconds after which a lock lifts by itself; 0 = only an admin unlocks.
    pub auto_unlock_seconds: u64,
    /// Throttle mode: the first delay, doubled for each further failure.
    pub throttle_base_seconds: u64,
    /// Throttle mode: the longest delay.
    pub throttle_max_seconds: u64,
    /// Whether users get 10 single-use backup codes.
    pub backup_codes_enabled: bool,
    /// A user with a password who sends the password alone is asked for the
    /// code in a second step (RADIUS Access-Challenge, REST `challenge`).
    pub challenge_response: bool,
    /// How long a challenge stays answerable, seconds (10–600).
    pub challenge_ttl_seconds: u32,
    /// The prompt sent with a challenge.
    pub challenge_message: String,
    /// Whether the code comes before the password (`123456secret`) rather
    /// than after it (`secret123456`, the default).
    pub code_first: bool,
    /// Realm of users who name none (no `user@realm`, no RADIUS client default).
    pub default_realm: String,
    /// Users (`name` or `name@realm`) who may log in with the first factor
    /// alone (no code). For service accounts and break-glass cases.
    pub single_factor_users: Vec<String>,
    /// Members of these groups (local or directory) may log in with the
    /// first factor alone.
    pub single_factor_groups: Vec<String>,
    /// RADIUS clients (by name) whose users may log in with the first factor alone.
    pub single_factor_clients: Vec<String>,
    /// Grace for new users: a user with a first factor but no active token
    /// may log in with the first factor alone this many times (0 = no
    /// grace by count) …
    pub grace_logins: u32,
    /// … or within this many days of being created (0 = no grace by time).
    pub grace_days: u32,
    /// Realms (`*` = every realm) whose users with an email or SMS token get
    /// a code sent after their first factor. Off (empty) by default.
    pub oob_realms: Vec<String>,
    /// Users (`name` or `name@realm`) who get codes sent to their email or
    /// SMS token, whatever their realm.
    pub oob_users: Vec<String>,
    /// Shown on the self-service registration page above the new secret
    /// (empty: none). Plain text, at most 1000 characters.
    pub registration_message: String,
    /// Whether the self-service registration page shows the secret as a QR
    /// code too (it always shows it as text).
    pub registration_qr: bool,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            skew_seconds: 30,
            max_drift_steps: 10,
            hotp_look_ahead: tessera_otp::DEFAULT_HOTP_LOOK_AHEAD,
            lockout_mode: LockoutMode::Lock,
            lockout_threshold: 5,
            auto_unlock_seconds: 30 * 60,
            throttle_base_seconds: 2,
            throttle_max_seconds: 15 * 60,
            backup_codes_enabled: true,
            challenge_response: true,
            challenge_ttl_seconds: 120,
            challenge_message: "Enter your one-time code".into(),
            code_first: false,
            default_realm: crate::names::DEFAULT_REALM.into(),
            single_factor_users: Vec::new(),
            single_factor_groups: Vec::new(),
            single_factor_clients: Vec::new(),
            grace_logins: 0,
            grace_days: 0,
            oob_realms: Vec::new(),
            oob_users: Vec::new(),
            registration_message: String::new(),
            registration_qr: true,
        }
    }
}

impl Policy {
    /// Checks every bound; the error lists all violations at once.
    pub fn validate(&self) -> Result<(), String> {
        let mut errs = Vec::new();
        if self.skew_seconds > tessera_otp::MAX_SKEW_SECONDS {
            errs.push(format!("skew_seconds must be 0–{} (got {})", tessera_otp::MAX_SKEW_SECONDS, self.skew_seconds));
        }
        if self.max_drift_steps > MAX_DRIFT_STEPS_LIMIT {
            errs.push(format!("max_drift_steps must be 0–{MAX_DRIFT_STEPS_LIMIT} (got {})", self.max_drift_steps));
        }
        if self.hotp_look_ahead > MAX_HOTP_LOOK_AHEAD {
            errs.push(format!("hotp_look_ahead must be 0–{MAX_HOTP_LOOK_AHEAD} (got {})", self.hotp_look_ahead));
        }
        if !(MIN_LOCKOUT_THRESHOLD..=MAX_LOCKOUT_THRESHOLD).contains(&self.lockout_threshold) {
            errs.push(format!(
                "lockout_threshold must be {MIN_LOCKOUT_THRESHOLD}–{MAX_LOCKOUT_THRESHOLD} (got {})",
                self.lockout_threshold
            ));
        }
        if self.auto_unlock_seconds != 0
            && !(MIN_AUTO_UNLOCK_SECONDS..=MAX_AUTO_UNLOCK_SECONDS).contains(&self.auto_unlock_seconds)
        {
            errs.push(format!(
                "auto_unlock_seconds must be 0 (admin unlock only) or {MIN_AUTO_UNLOCK_SECONDS}–{MAX_AUTO_UNLOCK_SECONDS} (got {})",
                self.auto_unlock_seconds
            ));
        }
        if self.throttle_base_seconds == 0 || self.throttle_base_seconds > 3600 {
            errs.push(format!("throttle_base_seconds must be 1–3600 (got {})", self.throttle_base_seconds));
        }
        if self.throttle_max_seconds < self.throttle_base_seconds || self.throttle_max_seconds > 86_400 {
            errs.push(format!(
                "throttle_max_seconds must be between throttle_base_seconds and 86400 (got {})",
                self.throttle_max_seconds
            ));
        }
        if !(10..=600).contains(&self.challenge_ttl_seconds) {
            errs.push(format!("challenge_ttl_seconds must be 10–600 (got {})", self.challenge_ttl_seconds));
        }
        if self.challenge_message.is_empty()
            || self.challenge_message.len() > 200
            || self.challenge_message.chars().any(char::is_control)
        {
            errs.push("challenge_message must be 1–200 printable characters".into());
        }
        if crate::names::check_realm(&self.default_realm).is_err() {
            errs.push(format!("default_realm `{}` is not a valid realm name", self.default_realm));
        }
        for (key, list) in [
            ("single_factor_users", &self.single_factor_users),
            ("single_factor_groups", &self.single_factor_groups),
            ("single_factor_clients", &self.single_factor_clients),
            ("oob_realms", &self.oob_realms),
            ("oob_users", &self.oob_users),
        ] {
            if list.len() > 1000
                || list.iter().any(|v| v.is_empty() || v.len() > 256 || v.chars().any(char::is_control))
            {
                errs.push(format!("{key}: at most 1000 non-empty printable names"));
            }
        }
        if self.registration_message.chars().count() > 1000
            || self.registration_message.chars().any(|c| c.is_control() && c != '\n')
        {
            errs.push("registration_message must be at most 1000 printable characters".into());
        }
        if self.grace_logins > 1000 {
            errs.push(format!("grace_logins must be 0–1000 (got {})", self.grace_logins));
        }
        if self.grace_days > 365 {
            errs.push(format!("grace_days must be 0–365 (got {})", self.grace_days));
        }
        if errs.is_empty() { Ok(()) } else { Err(errs.join("; ")) }
    }

    /// Whether the grace policy is on at all.
    pub fn grace_enabled(&self) -> bool {
        self.grace_logins > 0 || self.grace_days > 0
    }

    /// What the grace policy still allows a user created at `created_at`
    /// who has had `used` grace logins; `None` when the policy grants no
    /// grace. The one place the rule lives: logins (`auth`) and what
    /// `user show` reports both ask here.
    pub fn grace_for(&self, used: u32, created_at: Timestamp) -> Option<Grace> {
        if !self.grace_enabled() {
            return None;
        }
        Some(Grace {
            logins_left: (self.grace_logins > 0).then(|| self.grace_logins.saturating_sub(used)),
            until: (self.grace_days > 0).then(|| created_at.plus_seconds(i64::from(self.grace_days) * 86_400)),
        })
    }

    /// Whether `username` in `realm` is named in `single_factor_users`.
    pub fn single_factor_user(&self, realm: &str, username: &str) -> bool {
        self.names_user(&self.single_factor_users, realm, username)
    }

    /// Whether codes may be sent to the email or SMS tokens of `username`
    /// in `realm` (`oob_realms`, `oob_users`).
    pub fn oob_enabled(&self, realm: &str, username: &str) -> bool {
        self.oob_realms.iter().any(|r| r == "*" || r == realm) || self.names_user(&self.oob_users, realm, username)
    }

    /// Whether `list` names the user: `name@realm`, or `name` in the default realm.
    fn names_user(&self, list: &[String], realm: &str, username: &str) -> bool {
        list.iter().any(|u| match u.rsplit_once('@') {
            Some((name, r)) if r == realm && name == username => true,
            _ => u == username && realm == self.default_realm,
        })
    }

    /// Returns a copy with `key` set to `value` (TOML/JSON-like literal or a
    /// bare word), validated. Used by `tessera policy set key=value`.
    pub fn with_setting(&self, key: &str, value: &str) -> Result<Policy, String> {
        let mut doc = serde_json::to_value(self).map_err(|e| e.to_string())?;
        let obj = doc.as_object_mut().ok_or("policy is not an object")?;
        if !obj.contains_key(key) {
            let known: Vec<&String> = obj.keys().collect();
            return Err(format!(
                "unknown policy key `{key}` (known: {})",
                known.iter().map(|k| k.as_str()).collect::<Vec<_>>().join(", ")
            ));
        }
        let mut parsed = serde_json::from_str::<serde_json::Value>(value)
            .unwrap_or_else(|_| serde_json::Value::String(value.to_string()));
        // Lists may be given as `a,b,c` (or empty for none).
        if obj.get(key).is_some_and(serde_json::Value::is_array)
            && let serde_json::Value::String(text) = &parsed
        {
            parsed = serde_json::Value::Array(
                text.split(',')
                    .map(str::trim)
                    .filter(|t| !t.is_empty())
                    .map(|t| serde_json::Value::String(t.into()))
                    .collect(),
            );
        }
        obj.insert(key.to_string(), parsed);
        let p: Policy = serde_json::from_value(doc).map_err(|e| format!("invalid value for `{key}`: {e}"))?;
        p.validate()?;
        Ok(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_as_documented() {
        let p = Policy::default();
        p.validate().unwrap();
        assert_eq!(p.lockout_threshold, 5);
        assert_eq!(p.auto_unlock_seconds, 1800);
        assert_eq!(p.skew_seconds, 30);
    }

    #[test]
    fn with_setting_validates() {
        let p = Policy::default();
        assert_eq!(p.with_setting("lockout_threshold", "3").unwrap().lockout_threshold, 3);
        assert!(p.with_setting("lockout_threshold", "11").is_err());
        assert!(p.with_setting("lockout_threshold", "many").is_err());
        assert!(p.with_setting("auto_unlock_seconds", "60").is_err());
        assert_eq!(p.with_setting("auto_unlock_seconds", "0").unwrap().auto_unlock_seconds, 0);
        assert_eq!(p.with_setting("lockout_mode", "throttle").unwrap().lockout_mode, LockoutMode::Throttle);
        assert!(p.with_setting("no_such_key", "1").unwrap_err().contains("unknown policy key"));
        assert!(p.with_setting("skew_seconds", "301").is_err());
    }

    #[test]
    fn lists_and_exceptions() {
        let p = Policy::default().with_setting("single_factor_users", "svc-backup, bob@corp").unwrap();
        assert_eq!(p.single_factor_users, vec!["svc-backup".to_string(), "bob@corp".to_string()]);
        assert!(p.single_factor_user("default", "svc-backup"));
        assert!(!p.single_factor_user("corp", "svc-backup"));
        assert!(p.single_factor_user("corp", "bob"));
        assert!(!p.single_factor_user("default", "bob"));
        assert!(!p.single_factor_user("default", "alice"));
        let p = p.with_setting("single_factor_users", "").unwrap();
        assert!(p.single_factor_users.is_empty());
        assert!(!p.oob_enabled("default", "alice"), "off by default");
        let p = p.with_setting("oob_users", "alice,bob@corp").unwrap();
        assert!(p.oob_enabled("default", "alice") && p.oob_enabled("corp", "bob"));
        assert!(!p.oob_enabled("corp", "alice") && !p.oob_enabled("default", "bob"));
        let p = p.with_setting("oob_realms", "corp").unwrap();
        assert!(p.oob_enabled("corp", "carol") && !p.oob_enabled("default", "carol"));
        assert!(p.with_setting("oob_realms", "*").unwrap().oob_enabled("anything", "dave"));
        assert!(Policy::default().with_setting("default_realm", "no spaces").is_err());
    }
}
