//! Which of a client's secrets a request was made with, during a secret
//! rotation's overlap (`tessera client set-secret --keep-old-for`). Sans-IO:
//! bytes and secrets in, a verdict out.
//!
//! The choice is made before anything is decided, so a request is never
//! judged with the wrong secret:
//!
//! * With a Message-Authenticator (HMAC-MD5 over the packet with the
//!   secret), with the computed Request Authenticator of an
//!   Accounting-Request, and for Status-Server (which must be signed), the
//!   check is exact: the current secret is tried first, then the old one.
//!   A collision would need an HMAC-MD5/MD5 forgery under a secret.
//! * An Access-Request *without* Message-Authenticator (clients in mode
//!   `off`, or `auto` not yet seen signing) carries nothing keyed but the
//!   hidden User-Password, which "opens" under any secret: the wrong one
//!   yields 16·k pseudo-random bytes. Checking the password with them would
//!   count a wrong password against the user (and could lock them out) for
//!   what is really the NAS's old secret. So the hidden password is opened
//!   with both secrets and judged *plausible* (see [`plausible_password`]):
//!   valid UTF-8 without control characters (RFC 2865 §5.2 pads with NULs
//!   only after the password, so a NUL followed by anything else is not a
//!   password). Random bytes pass that with a probability below 10⁻⁶ per
//!   16-byte block (printable ASCII is 95 of 256 values: (95/256)^16 ≈
//!   1.3·10⁻⁷, multi-byte UTF-8 adds little). Exactly one plausible: that
//!   secret. Both plausible (about one request in ten million): which secret
//!   the NAS used cannot be told, and guessing could count a failure the
//!   user did not make, so the request is dropped ([`Verdict::Ambiguous`]:
//!   no answer, nothing counted; the user's next attempt has a new Request
//!   Authenticator and so a new draw). Neither plausible: the password is
//!   unreadable under either secret, and the request is rejected without
//!   being checked ([`Verdict::Unreadable`], nothing counted).
//!
//! Outside an overlap (no old secret) none of this runs: one secret, one
//! Message-Authenticator check, as before.

use tessera_core::model::SecretSlot;
use tessera_radius::{MessageAuthenticator, unhide_password, verify_request};

/// What the secrets make of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Decide the request with this secret; `ma` is the result of the
    /// authenticator checks with it (`Invalid` under every secret: drop).
    Use(SecretSlot, MessageAuthenticator),
    /// Unsigned, and the password reads plausibly under both secrets.
    Ambiguous,
    /// Unsigned, and the password reads plausibly under neither secret:
    /// reject without checking it (it cannot be the user's).
    Unreadable,
}

fn check(raw: &[u8], secret: &[u8]) -> MessageAuthenticator {
    verify_request(raw, secret).unwrap_or(MessageAuthenticator::Invalid)
}

/// A request whose authenticity is checked exactly (Status-Server,
/// Accounting-Request, or anything carrying a Message-Authenticator):
/// the current secret, else the old one, else `Invalid`.
pub fn exact(raw: &[u8], current: &[u8], old: Option<&[u8]>) -> (SecretSlot, MessageAuthenticator) {
    let ma = check(raw, current);
    if ma != MessageAuthenticator::Invalid {
        return (SecretSlot::Current, ma);
    }
    match old.map(|o| check(raw, o)) {
        Some(m) if m != MessageAuthenticator::Invalid => (SecretSlot::Old, m),
        _ => (SecretSlot::Current, MessageAuthenticator::Invalid),
    }
}

/// Status-Server must be signed (RFC 5997 §3): `Valid` with either secret.
pub fn signed(raw: &[u8], current: &[u8], old: Option<&[u8]>) -> Option<SecretSlot> {
    if check(raw, current) == MessageAuthenticator::Valid {
        return Some(SecretSlot::Current);
    }
    old.filter(|o| check(raw, o) == MessageAuthenticator::Valid).map(|_| SecretSlot::Old)
}

/// An Access-Request (see the module's comment). `hidden` is the
/// User-Password attribute, if any.
pub fn access_request(
    raw: &[u8],
    authenticator: &[u8; 16],
    hidden: Option<&[u8]>,
    current: &[u8],
    old: Option<&[u8]>,
) -> Verdict {
    let Some(old) = old else {
        return Verdict::Use(SecretSlot::Current, check(raw, current));
    };
    match exact(raw, current, Some(old)) {
        (slot, MessageAuthenticator::Valid) => Verdict::Use(slot, MessageAuthenticator::Valid),
        (_, MessageAuthenticator::Invalid) => Verdict::Use(SecretSlot::Current, MessageAuthenticator::Invalid),
        // Absent (under the current secret; an Access-Request has no other
        // keyed field, so under the old one too).
        (_, MessageAuthenticator::Absent) => {
            let Some(hidden) = hidden else {
                // CHAP, EAP without Message-Authenticator (already Invalid),
                // no password: rejected whatever the secret.
                return Verdict::Use(SecretSlot::Current, MessageAuthenticator::Absent);
            };
            let readable = |secret: &[u8]| {
                unhide_password(secret, authenticator, hidden).map(|p| plausible_password(&p)).unwrap_or(false)
            };
            match (readable(current), readable(old)) {
                (true, false) => Verdict::Use(SecretSlot::Current, MessageAuthenticator::Absent),
                (false, true) => Verdict::Use(SecretSlot::Old, MessageAuthenticator::Absent),
                (true, true) => Verdict::Ambiguous,
                (false, false) => Verdict::Unreadable,
            }
        }
    }
}

/// A User-Password as it opened (trailing NUL padding removed) that a
/// person could have typed: UTF-8 without control characters (which also
/// excludes a NUL inside, i.e. padding followed by more bytes).
pub fn plausible_password(p: &[u8]) -> bool {
    std::str::from_utf8(p).is_ok_and(|s| !s.chars().any(char::is_control))
}

#[cfg(test)]
mod tests {
    use tessera_radius::{Attribute, Code, Packet, attr, hide_password};

    use super::*;

    const NEW: &[u8] = b"the-new-secret";
    const OLD: &[u8] = b"the-old-secret";
    const THIRD: &[u8] = b"a-third-secret";

    /// An Access-Request made with `secret`, signed or not; returns the raw
    /// bytes, the authenticator and the hidden password.
    fn request(secret: &[u8], password: &[u8], signed: bool, seed: u8) -> (Vec<u8>, [u8; 16], Vec<u8>) {
        let mut authenticator = [0u8; 16];
        for (i, b) in authenticator.iter_mut().enumerate() {
            *b = seed.wrapping_mul(31).wrapping_add(i as u8).wrapping_mul(17);
        }
        let hidden = hide_password(secret, &authenticator, password).unwrap();
        let p = Packet {
            code: Code::AccessRequest,
            identifier: seed,
            authenticator,
            attributes: vec![
                Attribute { typ: attr::USER_NAME, value: b"alice".to_vec() },
                Attribute { typ: attr::USER_PASSWORD, value: hidden.clone() },
            ],
        };
        let raw = p.encode_request(secret, signed).unwrap();
        (raw, authenticator, hidden)
    }

    #[test]
    fn outside_an_overlap_only_the_current_secret_counts() {
        let (raw, a, h) = request(NEW, b"pass123456", true, 1);
        assert_eq!(
            access_request(&raw, &a, Some(&h), NEW, None),
            Verdict::Use(SecretSlot::Current, MessageAuthenticator::Valid)
        );
        let (raw, a, h) = request(OLD, b"pass123456", true, 1);
        assert_eq!(
            access_request(&raw, &a, Some(&h), NEW, None),
            Verdict::Use(SecretSlot::Current, MessageAuthenticator::Invalid)
        );
    }

    #[test]
    fn signed_requests_are_exact() {
        for seed in 0..50 {
            let (raw, a, h) = request(NEW, b"123456", true, seed);
            assert_eq!(
                access_request(&raw, &a, Some(&h), NEW, Some(OLD)),
                Verdict::Use(SecretSlot::Current, MessageAuthenticator::Valid)
            );
            let (raw, a, h) = request(OLD, b"123456", true, seed);
            assert_eq!(
                access_request(&raw, &a, Some(&h), NEW, Some(OLD)),
                Verdict::Use(SecretSlot::Old, MessageAuthenticator::Valid)
            );
            // the attacker's request: a third secret is refused (dropped)
            let (raw, a, h) = request(THIRD, b"123456", true, seed);
            assert_eq!(
                access_request(&raw, &a, Some(&h), NEW, Some(OLD)),
                Verdict::Use(SecretSlot::Current, MessageAuthenticator::Invalid)
            );
        }
    }

    #[test]
    fn unsigned_requests_go_by_the_password_that_reads() {
        let passwords: [&[u8]; 5] =
            [b"123456", b"alice-pass123456", b"exactly-16-bytes", b"p\xc3\xa4ssw\xc3\xb6rd 654321", &[b'x'; 40]];
        for seed in 0..200u8 {
            let pw = passwords[seed as usize % passwords.len()];
            let (raw, a, h) = request(NEW, pw, false, seed);
            assert_eq!(
                access_request(&raw, &a, Some(&h), NEW, Some(OLD)),
                Verdict::Use(SecretSlot::Current, MessageAuthenticator::Absent),
                "seed {seed}"
            );
            let (raw, a, h) = request(OLD, pw, false, seed);
            assert_eq!(
                access_request(&raw, &a, Some(&h), NEW, Some(OLD)),
                Verdict::Use(SecretSlot::Old, MessageAuthenticator::Absent),
                "seed {seed}"
            );
            // a third secret reads under neither: rejected unchecked, so
            // nothing is counted against the user
            let (raw, a, h) = request(THIRD, pw, false, seed);
            assert_eq!(access_request(&raw, &a, Some(&h), NEW, Some(OLD)), Verdict::Unreadable, "seed {seed}");
        }
    }

    #[test]
    fn a_password_readable_under_both_secrets_is_not_guessed() {
        // Contrive it: the same secret twice makes both readings plausible.
        let (raw, a, h) = request(NEW, b"123456", false, 9);
        assert_eq!(access_request(&raw, &a, Some(&h), NEW, Some(NEW)), Verdict::Ambiguous);
    }

    #[test]
    fn unsigned_without_a_password_uses_the_current_secret() {
        let p = Packet {
            code: Code::AccessRequest,
            identifier: 3,
            authenticator: [7; 16],
            attributes: vec![Attribute { typ: attr::USER_NAME, value: b"alice".to_vec() }],
        };
        let raw = p.encode_request(OLD, false).unwrap();
        assert_eq!(
            access_request(&raw, &[7; 16], None, NEW, Some(OLD)),
            Verdict::Use(SecretSlot::Current, MessageAuthenticator::Absent)
        );
    }

    #[test]
    fn plausibility() {
        assert!(plausible_password(b"alice-pass123456"));
        assert!(plausible_password("pässwörd".as_bytes()));
        assert!(plausible_password(b""));
        assert!(!plausible_password(b"abc\0def"), "padding followed by more bytes");
        assert!(!plausible_password(b"abc\x07"));
        assert!(!plausible_password(b"\xff\xfe"));
    }

    #[test]
    fn wrong_secret_readings_are_rarely_plausible() {
        // 20,000 requests made with the old secret, read with the new one:
        // each reading is random bytes; none should look like a password.
        let mut plausible = 0;
        for i in 0..20_000u32 {
            let mut authenticator = [0u8; 16];
            authenticator[..4].copy_from_slice(&i.to_be_bytes());
            let hidden = hide_password(OLD, &authenticator, b"123456").unwrap();
            let read = unhide_password(NEW, &authenticator, &hidden).unwrap();
            plausible += usize::from(plausible_password(&read));
        }
        assert_eq!(plausible, 0);
    }

    #[test]
    fn exact_and_signed_for_accounting_and_status_server() {
        let acct = Packet {
            code: Code::AccountingRequest,
            identifier: 4,
            authenticator: [0; 16],
            attributes: vec![Attribute { typ: attr::USER_NAME, value: b"alice".to_vec() }],
        };
        let with_old = acct.encode_request(OLD, false).unwrap();
        assert_eq!(exact(&with_old, NEW, Some(OLD)), (SecretSlot::Old, MessageAuthenticator::Absent));
        assert_eq!(exact(&with_old, NEW, None).1, MessageAuthenticator::Invalid);
        let with_new = acct.encode_request(NEW, false).unwrap();
        assert_eq!(exact(&with_new, NEW, Some(OLD)), (SecretSlot::Current, MessageAuthenticator::Absent));
        let status = Packet { code: Code::StatusServer, identifier: 5, authenticator: [1; 16], attributes: vec![] };
        let raw = status.encode_request(OLD, true).unwrap();
        assert_eq!(signed(&raw, NEW, Some(OLD)), Some(SecretSlot::Old));
        assert_eq!(signed(&raw, NEW, None), None);
        assert_eq!(signed(&raw, NEW, Some(THIRD)), None);
    }
}
