//! The client this node uses for its primary, made once per (URL, pin,
//! identity) and reused (its connections are kept alive), shared by the
//! follower, the forwarder and the claim batcher.

use std::time::{Duration, Instant};

use parking_lot::Mutex;

use super::Replication;
use super::client::{ClientError, PeerClient};

type Key = (String, Option<String>, [u8; 32]);

#[derive(Debug, Default)]
pub struct PrimaryLink {
    cached: Mutex<Option<(Key, PeerClient)>>,
    /// The last error logged and when, so a dead primary is not logged per login.
    last_error: Mutex<Option<(String, Instant)>>,
}

/// A repeated error is logged again after this long.
const LOG_AGAIN: Duration = Duration::from_secs(30);

impl PrimaryLink {
    /// A client for this replica's current primary.
    pub fn client(&self, repl: &Replication) -> Result<PeerClient, ClientError> {
        let Some((url, pin)) = repl.primary() else {
            return Err(ClientError::Config("this node has no primary configured".into()));
        };
        let identity = repl.identity().ok_or_else(|| {
            ClientError::Config("this node has no cluster identity; run `tessera replica join`".into())
        })?;
        let key = (url.clone(), pin.clone(), identity.cert_sha256);
        let mut cached = self.cached.lock();
        if let Some((k, c)) = &*cached
            && *k == key
        {
            return Ok(c.clone());
        }
        let client = PeerClient::new(&url, pin.as_deref(), Some(&identity.tls))?;
        *cached = Some((key, client.clone()));
        Ok(client)
    }

    /// Logs an error talking to the primary, once per distinct error per
    /// [`LOG_AGAIN`].
    pub fn note_error(&self, e: &ClientError) {
        let text = e.to_string();
        let mut last = self.last_error.lock();
        if last.as_ref().is_some_and(|(t, at)| *t == text && at.elapsed() < LOG_AGAIN) {
            return;
        }
        tracing::warn!(error = %text, "replication: the primary did not answer");
        *last = Some((text, Instant::now()));
    }
}
