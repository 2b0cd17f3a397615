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

/// Sessions live this long without a request, then are forgotten.
pub const IDLE_TIMEOUT_SECONDS: i64 = 15 * 60;
/// Bound on sessions held in memory (anonymous ones included: every visit
/// to a sign-in page makes one). Past it the oldest idle session goes.
pub const MAX_SESSIONS: usize = 10_000;

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
    /// asked for a code (or a backup code).
    PortalCode { user: UserId, label: String, password: zeroize::Zeroizing<String> },
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

#[derive(Debug, Default)]
pub struct Sessions {
    inner: Mutex<HashMap<String, Session>>,
}

fn random_hex(rng: &dyn Random) -> String {
    let mut b = [0u8; 32];
    rng.fill(&mut b);
    data_encoding::HEXLOWER.encode(&b)
}

impl Sessions {
    /// The live session for `id`, touched (idle timer restarted); an expired
    /// one is removed and `None` returned.
    pub fn get(&self, id: &str, now: Timestamp) -> Option<Session> {
        let mut map = self.inner.lock();
        let s = map.get_mut(id)?;
        if now.0 - s.last_seen.0 > IDLE_TIMEOUT_SECONDS * 1000 {
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
        let mut map = self.inner.lock();
        if map.len() >= MAX_SESSIONS {
            map.retain(|_, s| now.0 - s.last_seen.0 <= IDLE_TIMEOUT_SECONDS * 1000);
            if map.len() >= MAX_SESSIONS
                && let Some(oldest) = map.iter().min_by_key(|(_, s)| s.last_seen.0).map(|(k, _)| k.clone())
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
        let s = Sessions::default();
        let (id, sess) = s.create(&OsRandom, Stage::Anonymous, Timestamp(0));
        assert_eq!(id.len(), 64);
        assert!(sess.csrf_ok(&sess.csrf));
        assert!(!sess.csrf_ok(""));
        assert!(!sess.csrf_ok("x"));
        let almost = Timestamp(IDLE_TIMEOUT_SECONDS * 1000);
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
