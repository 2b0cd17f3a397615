//! Server-side web sessions for the admin console and the self-service
//! portal: a 256-bit random id in a `__Host-` cookie (Secure, HttpOnly,
//! SameSite=Strict, Path=/), the state in this process's memory, an idle
//! timeout, and one CSRF token per session checked on every POST.
//!
//! In memory on purpose for now: a restart signs everyone out, and with
//! several nodes a browser must stick to one. Moving sessions into the
//! store (for HA) only replaces [`Sessions`]; the handlers keep their shape.
//! Nothing here decides who may sign in: that is `tessera_core::admins`.

use std::collections::HashMap;

use axum::http::HeaderMap;
use axum::http::header::COOKIE;
use parking_lot::Mutex;
use subtle::ConstantTimeEq;
use tessera_core::clock::Timestamp;
use tessera_core::model::{AdminId, UserId};
use tessera_core::random::Random;
use tessera_otp::Secret;

/// The default idle timeout (`[ui] idle_timeout_seconds`).
pub const DEFAULT_IDLE_TIMEOUT_SECONDS: u64 = 15 * 60;
/// Bound on anonymous sessions (a sign-in form's CSRF token and nothing
/// else): every view of a sign-in page makes one, so anyone can make many.
/// Past it the oldest anonymous session goes, never a signed-in one.
pub const MAX_ANONYMOUS_SESSIONS: usize = 5_000;
/// Bound on sessions past a first factor (signing in, enrolling, signed
/// in). Each costs a password check to make, so a flood is slow; past it
/// the oldest such session goes.
pub const MAX_SIGNED_IN_SESSIONS: usize = 10_000;

/// The refusal shown for a POST without a live session and its CSRF token.
pub const STALE: &str = "This form has expired or your session ended. Sign in again.";

pub const ADMIN_COOKIE: &str = "__Host-tessera_admin";
pub const PORTAL_COOKIE: &str = "__Host-tessera_portal";

/// Where a browser is in a sign-in flow.
#[derive(Debug, Clone)]
pub enum Stage {
    /// Has a CSRF token for the sign-in form, nothing else.
    Anonymous,
    /// Admin: the password was right; the TOTP code is asked next.
    AdminPassword { admin: AdminId },
    /// Admin without a TOTP yet: this secret is shown until confirmed.
    AdminEnrolling { admin: AdminId, secret: Secret, uri: String },
    /// Admin: signed in.
    Admin { admin: AdminId, name: String },
    /// Portal: the first factor was right; the user is not registered and
    /// sees this secret until confirmed with a code.
    PortalEnrolling { user: UserId, label: String, secret_b32: String, uri: String, backup_codes: Vec<String> },
    /// Portal: the first factor was right; the user is registered and is
    /// asked for a code (or a backup code). `state` is a sealed, single-use
    /// challenge ticket (as a RADIUS Access-Challenge hands out), so the
    /// password is not kept anywhere between the two steps.
    PortalCode { user: UserId, label: String, state: Vec<u8> },
    /// Portal: signed in with both factors.
    Portal { user: UserId, label: String },
}

#[derive(Debug, Clone)]
pub struct Session {
    pub csrf: String,
    pub stage: Stage,
    last_seen: Timestamp,
}

impl Session {
    /// Constant-time comparison of a submitted CSRF token.
    pub fn csrf_ok(&self, submitted: &str) -> bool {
        !submitted.is_empty() && bool::from(self.csrf.as_bytes().ct_eq(submitted.as_bytes()))
    }
}

impl Stage {
    /// Whether this session is past a first factor (counted against
    /// [`MAX_SIGNED_IN_SESSIONS`] rather than [`MAX_ANONYMOUS_SESSIONS`]).
    fn signed_in(&self) -> bool {
        !matches!(self, Stage::Anonymous)
    }
}

#[derive(Debug)]
pub struct Sessions {
    inner: Mutex<HashMap<String, Session>>,
    idle_ms: i64,
    max_anonymous: usize,
    max_signed_in: usize,
}

impl Default for Sessions {
    fn default() -> Self {
        Sessions::new(DEFAULT_IDLE_TIMEOUT_SECONDS)
    }
}

fn random_hex(rng: &dyn Random) -> String {
    let mut b = [0u8; 32];
    rng.fill(&mut b);
    data_encoding::HEXLOWER.encode(&b)
}

impl Sessions {
    /// Sessions ended after `idle_seconds` without a request.
    pub fn new(idle_seconds: u64) -> Self {
        Sessions {
            inner: Mutex::default(),
            idle_ms: i64::try_from(idle_seconds.saturating_mul(1000)).unwrap_or(i64::MAX),
            max_anonymous: MAX_ANONYMOUS_SESSIONS,
            max_signed_in: MAX_SIGNED_IN_SESSIONS,
        }
    }

    #[cfg(test)]
    fn with_caps(mut self, anonymous: usize, signed_in: usize) -> Self {
        self.max_anonymous = anonymous;
        self.max_signed_in = signed_in;
        self
    }

    /// The idle timeout, seconds.
    pub fn idle_seconds(&self) -> i64 {
        self.idle_ms / 1000
    }

    /// The live session for `id`, touched (idle timer restarted); an expired
    /// one is removed and `None` returned.
    pub fn get(&self, id: &str, now: Timestamp) -> Option<Session> {
        let mut map = self.inner.lock();
        let s = map.get_mut(id)?;
        if now.0 - s.last_seen.0 > self.idle_ms {
            map.remove(id);
            return None;
        }
        s.last_seen = now;
        Some(s.clone())
    }

    /// A new session with a fresh id and CSRF token; returns the id.
    pub fn create(&self, rng: &dyn Random, stage: Stage, now: Timestamp) -> (String, Session) {
        let id = random_hex(rng);
        let session = Session { csrf: random_hex(rng), stage, last_seen: now };
        let class = session.stage.signed_in();
        let cap = if class { self.max_signed_in } else { self.max_anonymous };
        let mut map = self.inner.lock();
        let in_class = |map: &HashMap<String, Session>| map.values().filter(|s| s.stage.signed_in() == class).count();
        // Counting the class is O(n), so only when the map could be full.
        if map.len() >= cap && in_class(&map) >= cap {
            let idle = self.idle_ms;
            map.retain(|_, s| now.0 - s.last_seen.0 <= idle);
            if in_class(&map) >= cap
                && let Some(oldest) = map
                    .iter()
                    .filter(|(_, s)| s.stage.signed_in() == class)
                    .min_by_key(|(_, s)| s.last_seen.0)
                    .map(|(k, _)| k.clone())
            {
                map.remove(&oldest);
            }
        }
        map.insert(id.clone(), session.clone());
        (id, session)
    }

    /// Replaces the session under a *new* id (after every privilege change,
    /// so an id seen before sign-in is worthless after it).
    pub fn rotate(&self, rng: &dyn Random, old_id: &str, stage: Stage, now: Timestamp) -> (String, Session) {
        self.inner.lock().remove(old_id);
        self.create(rng, stage, now)
    }

    pub fn remove(&self, id: &str) {
        self.inner.lock().remove(id);
    }

    /// Forgets every session of an admin (after reset or delete).
    pub fn remove_admin(&self, admin: AdminId) {
        self.inner.lock().retain(|_, s| match &s.stage {
            Stage::AdminPassword { admin: a }
            | Stage::AdminEnrolling { admin: a, .. }
            | Stage::Admin { admin: a, .. } => *a != admin,
            _ => true,
        });
    }

    /// How many sessions are held (expired ones included until touched).
    pub fn count(&self) -> usize {
        self.inner.lock().len()
    }
}

/// Registration starts (a new pending secret and backup-code set) allowed
/// per user in one window: each start replaces the previous pending token,
/// so a script holding a user's password could otherwise churn them.
pub const REGISTRATION_STARTS_PER_WINDOW: u32 = 5;
pub const REGISTRATION_WINDOW_SECONDS: i64 = 15 * 60;
/// Users tracked at once; past it, windows that have ended are dropped
/// first, then the whole table (a fresh start for everyone beats growing).
const MAX_TRACKED_REGISTRATIONS: usize = 100_000;

/// A fixed-window counter of registration starts per user, on this node.
#[derive(Debug, Default)]
pub struct RegistrationLimit {
    inner: Mutex<HashMap<UserId, (Timestamp, u32)>>,
}

impl RegistrationLimit {
    /// Counts one start for `user`; `Err(seconds)` (until the window ends)
    /// when the user is over the limit, and then nothing is counted.
    pub fn start(&self, user: UserId, now: Timestamp) -> Result<(), i64> {
        let window = REGISTRATION_WINDOW_SECONDS * 1000;
        let mut map = self.inner.lock();
        if map.len() >= MAX_TRACKED_REGISTRATIONS {
            map.retain(|_, (since, _)| now.0 - since.0 < window);
            if map.len() >= MAX_TRACKED_REGISTRATIONS {
                map.clear();
            }
        }
        let entry = map.entry(user).or_insert((now, 0));
        if now.0 - entry.0.0 >= window {
            *entry = (now, 0);
        }
        if entry.1 >= REGISTRATION_STARTS_PER_WINDOW {
            return Err((entry.0.0 + window - now.0).div_euclid(1000).max(1));
        }
        entry.1 += 1;
        Ok(())
    }
}

/// The value of cookie `name` in the request, if any.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
        .filter(|v| v.len() == 64 && v.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// `Set-Cookie` value for a session id (session cookie: no Max-Age, the
/// server's idle timeout decides).
pub fn set_cookie(name: &str, id: &str) -> String {
    format!("{name}={id}; Path=/; Secure; HttpOnly; SameSite=Strict")
}

pub fn clear_cookie(name: &str) -> String {
    format!("{name}=; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age=0")
}

#[cfg(test)]
mod tests {
    use super::*;
    use tessera_core::random::OsRandom;

    #[test]
    fn idle_sessions_expire_and_touch_extends() {
        let s = Sessions::new(DEFAULT_IDLE_TIMEOUT_SECONDS);
        let (id, sess) = s.create(&OsRandom, Stage::Anonymous, Timestamp(0));
        assert_eq!(id.len(), 64);
        assert!(sess.csrf_ok(&sess.csrf));
        assert!(!sess.csrf_ok(""));
        assert!(!sess.csrf_ok("x"));
        let almost = Timestamp(s.idle_seconds() * 1000);
        assert!(s.get(&id, almost).is_some());
        assert!(s.get(&id, Timestamp(almost.0 * 2)).is_some(), "touched at `almost`");
        assert!(s.get(&id, Timestamp(almost.0 * 3 + 1)).is_none());
        assert_eq!(s.count(), 0);
    }

    #[test]
    fn rotate_invalidates_the_old_id() {
        let s = Sessions::default();
        let (old, _) = s.create(&OsRandom, Stage::Anonymous, Timestamp(0));
        let (new, _) = s.rotate(&OsRandom, &old, Stage::Admin { admin: AdminId(7), name: "root".into() }, Timestamp(1));
        assert!(s.get(&old, Timestamp(2)).is_none());
        assert!(matches!(s.get(&new, Timestamp(2)).unwrap().stage, Stage::Admin { .. }));
        s.remove_admin(AdminId(7));
        assert!(s.get(&new, Timestamp(3)).is_none());
    }

    #[test]
    fn anonymous_floods_never_evict_signed_in_sessions() {
        let s = Sessions::new(60).with_caps(3, 2);
        let signed = |n: i64| Stage::Portal { user: UserId(n), label: format!("u{n}") };
        let (a, _) = s.create(&OsRandom, signed(1), Timestamp(0));
        let (b, _) = s.create(&OsRandom, signed(2), Timestamp(1));
        for t in 0..50 {
            s.create(&OsRandom, Stage::Anonymous, Timestamp(10 + t));
        }
        assert_eq!(s.count(), 5, "3 anonymous + 2 signed in");
        assert!(s.get(&a, Timestamp(99)).is_some() && s.get(&b, Timestamp(100)).is_some());
        // A third signed-in session evicts the least recently used signed-in one.
        let (c, _) = s.create(&OsRandom, signed(3), Timestamp(101));
        assert!(s.get(&a, Timestamp(102)).is_none() && s.get(&c, Timestamp(102)).is_some());
    }

    #[test]
    fn registration_starts_are_limited_per_user_and_window() {
        let l = RegistrationLimit::default();
        for _ in 0..REGISTRATION_STARTS_PER_WINDOW {
            assert!(l.start(UserId(1), Timestamp(0)).is_ok());
        }
        assert_eq!(l.start(UserId(1), Timestamp(1000)), Err(REGISTRATION_WINDOW_SECONDS - 1));
        assert!(l.start(UserId(2), Timestamp(1000)).is_ok(), "per user");
        assert!(l.start(UserId(1), Timestamp(REGISTRATION_WINDOW_SECONDS * 1000)).is_ok(), "a new window");
    }

    #[test]
    fn cookie_parsing_takes_only_well_formed_ids() {
        let mut h = HeaderMap::new();
        let id = "ab".repeat(32);
        h.insert(COOKIE, format!("a=b; {ADMIN_COOKIE}={id}; c=d").parse().unwrap());
        assert_eq!(cookie(&h, ADMIN_COOKIE), Some(id.as_str()));
        assert_eq!(cookie(&h, PORTAL_COOKIE), None);
        h.insert(COOKIE, format!("{ADMIN_COOKIE}=short").parse().unwrap());
        assert_eq!(cookie(&h, ADMIN_COOKIE), None);
    }
}
