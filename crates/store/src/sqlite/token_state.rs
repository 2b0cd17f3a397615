//! Per-token login state (counter floor, drift, last use) kept in the
//! user's row.
//!
//! A login changes the user's row anyway (failures, last attempt/success);
//! keeping the token's moving parts there too means a login rewrites one
//! random database page instead of two. With a WAL every rewritten page is
//! copied on commit and again at checkpoint, and that copying was the
//! largest cost of a login (measured).
//!
//! The `tokens` row keeps the values as of the last administrative write
//! (creation, confirmation, resync). An entry here, when present, is newer
//! and wins; administrative writes to a token remove its entry, so there is
//! never a question which is current.

use tessera_core::clock::Timestamp;
use tessera_core::model::Token;

const VERSION: u8 = 1;
const ENTRY_LEN: usize = 8 + 8 + 4 + 8;
/// A user with more tokens than this is refused by the decoder rather than
/// letting a corrupt length run away.
const MAX_ENTRIES: usize = 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    pub token: i64,
    pub counter: i64,
    pub drift: i32,
    pub last_used: i64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TokenStates(Vec<Entry>);

impl TokenStates {
    pub fn decode(blob: Option<&[u8]>) -> Result<TokenStates, String> {
        let Some(b) = blob else { return Ok(TokenStates::default()) };
        if b.is_empty() {
            return Ok(TokenStates::default());
        }
        if b[0] != VERSION {
            return Err(format!("token state version {} is not supported", b[0]));
        }
        let body = &b[1..];
        if body.len() % ENTRY_LEN != 0 || body.len() / ENTRY_LEN > MAX_ENTRIES {
            return Err("token state has a bad length".into());
        }
        let word = |c: &[u8], at: usize| {
            let mut w = [0u8; 8];
            w.copy_from_slice(&c[at..at + 8]);
            i64::from_le_bytes(w)
        };
        let entries = body
            .chunks_exact(ENTRY_LEN)
            .map(|c| {
                let mut d = [0u8; 4];
                d.copy_from_slice(&c[16..20]);
                Entry { token: word(c, 0), counter: word(c, 8), drift: i32::from_le_bytes(d), last_used: word(c, 20) }
            })
            .collect();
        Ok(TokenStates(entries))
    }

    /// `None` when empty, so users without logins store NULL.
    pub fn encode(&self) -> Option<Vec<u8>> {
        if self.0.is_empty() {
            return None;
        }
        let mut out = Vec::with_capacity(1 + self.0.len() * ENTRY_LEN);
        out.push(VERSION);
        for e in &self.0 {
            out.extend_from_slice(&e.token.to_le_bytes());
            out.extend_from_slice(&e.counter.to_le_bytes());
            out.extend_from_slice(&e.drift.to_le_bytes());
            out.extend_from_slice(&e.last_used.to_le_bytes());
        }
        Some(out)
    }

    pub fn entries(&self) -> &[Entry] {
        &self.0
    }

    pub fn get(&self, token: i64) -> Option<&Entry> {
        self.0.iter().find(|e| e.token == token)
    }

    pub fn set(&mut self, e: Entry) {
        match self.0.iter_mut().find(|x| x.token == e.token) {
            Some(x) => *x = e,
            None => self.0.push(e),
        }
    }

    pub fn remove(&mut self, token: i64) -> bool {
        let before = self.0.len();
        self.0.retain(|e| e.token != token);
        before != self.0.len()
    }

    /// The token as it stands: its row, updated by a newer entry if any.
    pub fn overlay(&self, t: &mut Token) {
        if let Some(e) = self.get(t.id.0) {
            t.counter = t.counter.max(e.counter);
            t.drift = e.drift;
            t.last_used_at = Some(Timestamp(e.last_used));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_rejects() {
        let mut s = TokenStates::default();
        assert_eq!(s.encode(), None);
        s.set(Entry { token: 7, counter: 100, drift: -2, last_used: 123 });
        s.set(Entry { token: 9, counter: 5, drift: 0, last_used: 1 });
        s.set(Entry { token: 7, counter: 101, drift: -1, last_used: 124 });
        let b = s.encode().unwrap();
        assert_eq!(TokenStates::decode(Some(&b)).unwrap(), s);
        assert_eq!(s.get(7).unwrap().counter, 101);
        assert!(s.remove(9) && !s.remove(9));
        assert!(TokenStates::decode(Some(&[2])).is_err());
        assert!(TokenStates::decode(Some(&b[..10])).is_err());
        assert_eq!(TokenStates::decode(None).unwrap(), TokenStates::default());
    }
}
