//! One journal record: what a login decided, in a compact frame.
//!
//! Sans-IO: bytes in, records out. A frame is `len: u32 LE | crc32: u32 LE
//! | payload`; a reader stops at the first frame that is short or fails its
//! checksum (a write torn by a crash: never acknowledged, so never relied
//! on). States are absolute (not deltas), so folding the same record twice
//! cannot count a failure twice.

use tessera_core::audit::{AuditRecord, AuditResult};
use tessera_core::clock::Timestamp;
use tessera_core::lockout::LockState;
use tessera_core::model::AccessRecord;

use super::super::token_state::TokenStates;

const VERSION: u8 = 1;
/// No record is anywhere near this; a larger length is corruption.
const MAX_PAYLOAD: usize = 64 * 1024;
const HEADER: usize = 8;

/// A user's login state: what every login reads and writes. Everything
/// else about a user changes only by administrative transactions.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LoginState {
    pub lock: LockState,
    pub last_attempt: Option<AccessRecord>,
    pub last_success: Option<AccessRecord>,
    pub tokens: TokenStates,
}

/// What one decision changed for its user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginChange {
    pub user: i64,
    /// `external_rev` when this was decided: if another process has written
    /// to the database since, its change to the lock stands (see `fold.rs`).
    pub rev: i64,
    /// The lock state this decision started from. Folding applies the new
    /// lock only while the row still has this one, so an unlock or reset
    /// written meanwhile by another process stands.
    pub lock_before: LockState,
    pub state: LoginState,
    /// A challenge State consumed by this login, and when it expires.
    pub nonce: Option<([u8; 16], i64)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// `None` for an audit record alone (an unknown user, a malformed request).
    pub login: Option<LoginChange>,
    pub audit: AuditRecord,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("journal record is truncated")]
    Truncated,
    #[error("journal record fails its checksum")]
    Checksum,
    #[error("journal record is malformed: {0}")]
    Malformed(&'static str),
}

/// Appends `record` as one frame to `out`.
pub fn encode(record: &Record, out: &mut Vec<u8>) {
    let start = out.len();
    out.extend_from_slice(&[0u8; HEADER]);
    let mut w = Put(out);
    w.u8(VERSION);
    match &record.login {
        None => w.u8(0),
        Some(c) => {
            w.u8(1);
            w.i64(c.user);
            w.i64(c.rev);
            w.lock(&c.lock_before);
            w.lock(&c.state.lock);
            w.access(&c.state.last_attempt);
            w.access(&c.state.last_success);
            w.bytes(&c.state.tokens.encode().unwrap_or_default());
            match &c.nonce {
                None => w.u8(0),
                Some((n, exp)) => {
                    w.u8(1);
                    w.0.extend_from_slice(n);
                    w.i64(*exp);
                }
            }
        }
    }
    let a = &record.audit;
    w.i64(a.at.0);
    w.str(&a.node);
    w.str(&a.actor);
    w.str(&a.action);
    w.opt_str(&a.target);
    w.opt_str(&a.source);
    w.opt_str(&a.client);
    w.str(a.result.as_str());
    w.opt_str(&a.reason);
    let payload = &out[start + HEADER..];
    let len = u32::try_from(payload.len()).unwrap_or(u32::MAX);
    let crc = crc32fast::hash(payload);
    out[start..start + 4].copy_from_slice(&len.to_le_bytes());
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

/// Decodes the frame at the start of `buf`: the record and the frame's length.
pub fn decode(buf: &[u8]) -> Result<(Record, usize), DecodeError> {
    if buf.len() < HEADER {
        return Err(DecodeError::Truncated);
    }
    let len = u32::from_le_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
    let crc = u32::from_le_bytes([buf[4], buf[5], buf[6], buf[7]]);
    if len > MAX_PAYLOAD {
        return Err(DecodeError::Malformed("length"));
    }
    let Some(payload) = buf.get(HEADER..HEADER + len) else { return Err(DecodeError::Truncated) };
    if crc32fast::hash(payload) != crc {
        return Err(DecodeError::Checksum);
    }
    let mut r = Take(payload);
    if r.u8()? != VERSION {
        return Err(DecodeError::Malformed("version"));
    }
    let login = match r.u8()? {
        0 => None,
        1 => {
            let user = r.i64()?;
            let rev = r.i64()?;
            let lock_before = r.lock()?;
            let lock = r.lock()?;
            let last_attempt = r.access()?;
            let last_success = r.access()?;
            let blob = r.bytes()?;
            let tokens = TokenStates::decode(Some(blob)).map_err(|_| DecodeError::Malformed("token state"))?;
            let nonce = match r.u8()? {
                0 => None,
                1 => {
                    let n: [u8; 16] = r.take(16)?.try_into().map_err(|_| DecodeError::Truncated)?;
                    Some((n, r.i64()?))
                }
                _ => return Err(DecodeError::Malformed("nonce tag")),
            };
            Some(LoginChange {
                user,
                rev,
                lock_before,
                state: LoginState { lock, last_attempt, last_success, tokens },
                nonce,
            })
        }
        _ => return Err(DecodeError::Malformed("record tag")),
    };
    let at = Timestamp(r.i64()?);
    let node = r.str()?;
    let actor = r.str()?;
    let action = r.str()?;
    let target = r.opt_str()?;
    let source = r.opt_str()?;
    let client = r.opt_str()?;
    let result: AuditResult = r.str()?.parse().map_err(|_| DecodeError::Malformed("audit result"))?;
    let reason = r.opt_str()?;
    if !r.0.is_empty() {
        return Err(DecodeError::Malformed("trailing bytes"));
    }
    let audit = AuditRecord { id: 0, at, node, actor, action, target, source, client, result, reason };
    Ok((Record { login, audit }, HEADER + len))
}

/// Every whole, intact record in `buf`, and where the intact part ends
/// (anything after it is a torn tail).
pub fn decode_all(buf: &[u8]) -> (Vec<Record>, usize) {
    let mut out = Vec::new();
    let mut at = 0;
    while at < buf.len() {
        match decode(&buf[at..]) {
            Ok((r, n)) => {
                out.push(r);
                at += n;
            }
            Err(_) => break,
        }
    }
    (out, at)
}

struct Put<'a>(&'a mut Vec<u8>);

impl Put<'_> {
    fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    fn i64(&mut self, v: i64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn opt_i64(&mut self, v: Option<Timestamp>) {
        match v {
            None => self.u8(0),
            Some(t) => {
                self.u8(1);
                self.i64(t.0);
            }
        }
    }
    fn bytes(&mut self, b: &[u8]) {
        // Strings and blobs here are bounded by the request limits (names,
        // addresses, audit reasons); 16 bits is plenty and keeps frames small.
        let n = b.len().min(u16::MAX as usize);
        self.0.extend_from_slice(&(n as u16).to_le_bytes());
        self.0.extend_from_slice(&b[..n]);
    }
    fn str(&mut self, s: &str) {
        let mut end = s.len().min(u16::MAX as usize);
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        self.bytes(&s.as_bytes()[..end]);
    }
    fn opt_str(&mut self, s: &Option<String>) {
        match s {
            None => self.u8(0),
            Some(s) => {
                self.u8(1);
                self.str(s);
            }
        }
    }
    fn lock(&mut self, l: &LockState) {
        self.i64(i64::from(l.failures));
        self.opt_i64(l.locked_at);
        self.opt_i64(l.lock_until);
        self.opt_i64(l.throttle_until);
    }
    fn access(&mut self, a: &Option<AccessRecord>) {
        match a {
            None => self.u8(0),
            Some(a) => {
                self.u8(1);
                self.i64(a.at.0);
                self.opt_str(&a.address);
                self.opt_str(&a.client);
            }
        }
    }
}

struct Take<'a>(&'a [u8]);

impl<'a> Take<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if self.0.len() < n {
            return Err(DecodeError::Truncated);
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }
    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }
    fn i64(&mut self) -> Result<i64, DecodeError> {
        let b = self.take(8)?;
        Ok(i64::from_le_bytes(b.try_into().map_err(|_| DecodeError::Truncated)?))
    }
    fn opt_ts(&mut self) -> Result<Option<Timestamp>, DecodeError> {
        match self.u8()? {
            0 => Ok(None),
            1 => Ok(Some(Timestamp(self.i64()?))),
            _ => Err(DecodeError::Malformed("option tag")),
        }
    }
    fn bytes(&mut self) -> Result<&'a [u8], DecodeError> {
        let b = self.take(2)?;
        let n = u16::from_le_bytes([b[0], b[1]]) as usize;
        self.take(n)
    }
    fn str(&mut self) -> Result<String, DecodeError> {
        String::from_utf8(self.bytes()?.to_vec()).map_err(|_| DecodeError::Malformed("utf-8"))
    }
    fn opt_str(&mut self) -> Result<Option<String>, DecodeError> {
        match self.u8()? {
            0 => Ok(None),
            1 => Ok(Some(self.str()?)),
            _ => Err(DecodeError::Malformed("option tag")),
        }
    }
    fn lock(&mut self) -> Result<LockState, DecodeError> {
        let failures = u32::try_from(self.i64()?).map_err(|_| DecodeError::Malformed("failures"))?;
        Ok(LockState {
            failures,
            locked_at: self.opt_ts()?,
            lock_until: self.opt_ts()?,
            throttle_until: self.opt_ts()?,
        })
    }
    fn access(&mut self) -> Result<Option<AccessRecord>, DecodeError> {
        match self.u8()? {
            0 => Ok(None),
            1 => {
                Ok(Some(AccessRecord { at: Timestamp(self.i64()?), address: self.opt_str()?, client: self.opt_str()? }))
            }
            _ => Err(DecodeError::Malformed("option tag")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::super::token_state::Entry;
    use super::*;
    use tessera_core::audit::Actor;

    fn sample() -> Record {
        let mut tokens = TokenStates::default();
        tokens.set(Entry { token: 7, counter: 1_234_567, drift: -1, last_used: 99 });
        let access =
            AccessRecord { at: Timestamp(5_000), address: Some("10.0.0.1".into()), client: Some("vpn".into()) };
        Record {
            login: Some(LoginChange {
                user: 42,
                rev: 3,
                lock_before: LockState { failures: 2, ..LockState::default() },
                state: LoginState {
                    lock: LockState {
                        failures: 3,
                        locked_at: Some(Timestamp(5_000)),
                        lock_until: None,
                        throttle_until: None,
                    },
                    last_attempt: Some(access.clone()),
                    last_success: None,
                    tokens,
                },
                nonce: Some(([9u8; 16], 77)),
            }),
            audit: AuditRecord::new(Timestamp(5_000), "n1", &Actor::new("validate"), "validate")
                .target("default/älice")
                .result(AuditResult::Reject, Some("wrong_code; failure 3")),
        }
    }

    #[test]
    fn records_round_trip() {
        let mut buf = Vec::new();
        let a = sample();
        let b = Record { login: None, audit: a.audit.clone() };
        encode(&a, &mut buf);
        encode(&b, &mut buf);
        let (all, end) = decode_all(&buf);
        assert_eq!(end, buf.len());
        assert_eq!(all, vec![a, b]);
    }

    #[test]
    fn a_torn_or_flipped_frame_ends_the_log_there() {
        let mut buf = Vec::new();
        encode(&sample(), &mut buf);
        let first = buf.len();
        encode(&sample(), &mut buf);
        for cut in first..buf.len() {
            let (all, end) = decode_all(&buf[..cut]);
            assert_eq!((all.len(), end), (1, first), "cut at {cut}");
        }
        let mut flipped = buf.clone();
        flipped[first + 20] ^= 1;
        assert_eq!(decode_all(&flipped).0.len(), 1);
        assert_eq!(decode(&flipped[first..]).unwrap_err(), DecodeError::Checksum);
    }

    #[test]
    fn hostile_lengths_are_refused() {
        let mut buf = vec![0xff, 0xff, 0xff, 0x7f, 0, 0, 0, 0];
        buf.extend_from_slice(&[0; 32]);
        assert!(decode(&buf).is_err());
        assert_eq!(decode(&[1, 2, 3]).unwrap_err(), DecodeError::Truncated);
    }
}
