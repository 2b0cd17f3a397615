//! A replica's HTTPS client for its primary. The certificate is verified
//! against the operating system's CAs (or a CA file), or, when the
//! administrator pinned one, must be exactly the pinned certificate.

use std::path::Path;
use std::time::{Duration, Instant};

use tessera_core::replication::{AuthStateForward, ChangePage, Claim, ClaimAnswer, Hello};
use tessera_store::sqlite::replication::SnapshotItem;

/// Why talking to the primary failed; messages never carry the token.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("{0}")]
    Config(String),
    #[error("cannot reach the primary at {url}: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("the primary refused the join token")]
    Unauthorized,
    #[error("the primary has forgotten changes this node has not seen; a new snapshot is needed")]
    SnapshotRequired,
    #[error("the primary answered {status}: {message}")]
    Refused { status: u16, message: String },
    #[error("unreadable answer from the primary: {0}")]
    Protocol(String),
}

#[derive(Debug, Clone)]
pub struct PrimaryClient {
    base: String,
    token: String,
    http: reqwest::Client,
}

/// Parses `ab:cd:…` or plain hex into the 32 bytes of a SHA-256 pin.
pub fn parse_pin(pin: &str) -> Result<[u8; 32], ClientError> {
    let hex: String = pin.chars().filter(|c| *c != ':').collect();
    hex::decode(&hex)
        .ok()
        .and_then(|b| <[u8; 32]>::try_from(b).ok())
        .ok_or_else(|| ClientError::Config("the pin must be the certificate's SHA-256 (64 hex digits)".into()))
}

impl PrimaryClient {
    pub fn new(url: &str, token: &str, pin: Option<&str>, ca_file: Option<&Path>) -> Result<Self, ClientError> {
        let base = url.trim_end_matches('/').to_string();
        if !base.starts_with("https://") {
            return Err(ClientError::Config(format!("the primary's URL must start with https:// (got {base})")));
        }
        let pin = pin.map(parse_pin).transpose()?;
        let tls = tessera_ldap::tls_client_config(ca_file, pin).map_err(|e| ClientError::Config(e.to_string()))?;
        let http = reqwest::Client::builder()
            .tls_backend_preconfigured((*tls).clone())
            .https_only(true)
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(120))
            .user_agent(concat!("tessera-replica/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ClientError::Config(e.to_string()))?;
        Ok(PrimaryClient { base, token: token.to_string(), http })
    }

    pub fn url(&self) -> &str {
        &self.base
    }

    async fn get(&self, path: &str) -> Result<reqwest::Response, ClientError> {
        let r = self
            .http
            .get(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .send()
            .await
            .map_err(|e| self.unreachable(&e))?;
        check(r).await
    }

    fn unreachable(&self, e: &reqwest::Error) -> ClientError {
        let mut reason = e.to_string();
        let mut source = std::error::Error::source(e);
        while let Some(s) = source {
            reason = format!("{reason}: {s}");
            source = s.source();
        }
        ClientError::Unreachable { url: self.base.clone(), reason }
    }

    /// The primary's hello, and this node's clock offset from it (ms,
    /// positive when the primary is ahead), measured at the round trip's middle.
    pub async fn hello(&self) -> Result<(Hello, i64), ClientError> {
        let sent = now_ms();
        let started = Instant::now();
        let hello: Hello = self.get("/api/v1/replication/hello").await?.json().await.map_err(proto)?;
        let rtt = started.elapsed().as_millis() as i64;
        Ok((hello.clone(), hello.time_ms - (sent + rtt / 2)))
    }

    /// Streams every replicated row into `sink` (NDJSON: one image per
    /// line, then a trailer with the position, epoch and row count), as it
    /// arrives; a body without the trailer ends the sink without `End`.
    pub async fn snapshot_into(&self, sink: std::sync::mpsc::SyncSender<SnapshotItem>) -> Result<(), ClientError> {
        let mut r = self.get("/api/v1/replication/snapshot").await?;
        let mut pending: Vec<u8> = Vec::new();
        let send =
            |item: SnapshotItem| sink.send(item).map_err(|_| ClientError::Protocol("the installer stopped".into()));
        loop {
            let chunk = match r.chunk().await {
                Ok(Some(c)) => c,
                Ok(None) => break,
                Err(e) => return Err(self.unreachable(&e)),
            };
            pending.extend_from_slice(&chunk);
            let mut start = 0;
            while let Some(n) = pending[start..].iter().position(|b| *b == b'\n') {
                let line = &pending[start..start + n];
                start += n + 1;
                if line.is_empty() {
                    continue;
                }
                if line.starts_with(b"{\"end\"") {
                    let t: serde_json::Value = serde_json::from_slice(line).map_err(proto)?;
                    let (Some(position), Some(epoch)) = (t["position"].as_i64(), t["epoch"].as_i64()) else {
                        return Err(ClientError::Protocol("snapshot trailer".into()));
                    };
                    return send(SnapshotItem::End { position, epoch, rows: t["rows"].as_u64() });
                }
                send(SnapshotItem::Image(serde_json::from_slice(line).map_err(proto)?))?;
            }
            pending.drain(..start);
        }
        Err(ClientError::Protocol("the snapshot was cut short".into()))
    }

    /// Changes after `after`, waiting up to `wait` for one to happen.
    pub async fn changes(&self, after: i64, limit: u32, wait: Duration) -> Result<ChangePage, ClientError> {
        let path = format!("/api/v1/replication/changes?after={after}&limit={limit}&wait_ms={}", wait.as_millis());
        self.get(&path).await?.json().await.map_err(proto)
    }

    /// Strict replay guard: asks the primary to take a step, within `timeout`.
    pub async fn claim(&self, claim: &Claim, timeout: Duration) -> Result<ClaimAnswer, ClientError> {
        let r = self
            .http
            .post(format!("{}/api/v1/replication/claim", self.base))
            .bearer_auth(&self.token)
            .json(claim)
            .timeout(timeout)
            .send()
            .await
            .map_err(|e| self.unreachable(&e))?;
        check(r).await?.json().await.map_err(proto)
    }

    pub async fn forward(&self, state: &[AuthStateForward]) -> Result<(), ClientError> {
        let r = self
            .http
            .post(format!("{}/api/v1/replication/auth-state", self.base))
            .bearer_auth(&self.token)
            .json(state)
            .timeout(Duration::from_secs(5))
            .send()
            .await
            .map_err(|e| self.unreachable(&e))?;
        check(r).await.map(|_| ())
    }
}

fn proto(e: impl std::fmt::Display) -> ClientError {
    ClientError::Protocol(e.to_string())
}

async fn check(r: reqwest::Response) -> Result<reqwest::Response, ClientError> {
    let status = r.status();
    if status.is_success() {
        return Ok(r);
    }
    if status == reqwest::StatusCode::UNAUTHORIZED {
        return Err(ClientError::Unauthorized);
    }
    let body: serde_json::Value = r.json().await.unwrap_or_default();
    if body["code"] == "snapshot_required" {
        return Err(ClientError::SnapshotRequired);
    }
    let message = body["message"].as_str().unwrap_or("no message").chars().take(300).collect();
    Err(ClientError::Refused { status: status.as_u16(), message })
}

/// Wall-clock Unix ms (replication compares clocks across nodes, so this is
/// the system clock, not an injected one).
pub fn now_ms() -> i64 {
    use tessera_core::clock::Clock;
    tessera_core::clock::SystemClock.now().0
}
