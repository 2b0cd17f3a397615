//! The HTTPS client nodes talk to each other with. The peer's certificate
//! is verified against the operating system's CAs, or, when pinned, must be
//! exactly the pinned certificate; this node presents its own client
//! certificate (mutual TLS), which is its only credential once enrolled.
//! A join token is sent only to the two join endpoints.

use std::time::{Duration, Instant};

use tessera_core::replication::join::{JoinAnswer, JoinChallenge, JoinChallengeRequest, JoinRequest};
use tessera_core::replication::{ChangePage, ClaimRequest, ClaimResult, ForwardAnswer, Hello, LoginEvent, NodeReport};
use tessera_store::sqlite::replication::SnapshotItem;
use tessera_tls::{ClientIdentity, ServerTrust};

use super::now_ms;

/// Why talking to a peer failed; messages never carry a token or key.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("{0}")]
    Config(String),
    #[error("cannot reach {url}: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("{url} refused this node's credentials ({message})")]
    Unauthorized { url: String, message: String },
    #[error("the primary has forgotten changes this node has not seen; a new snapshot is needed")]
    SnapshotRequired,
    #[error("{url} answered {status}: {message}")]
    Refused { url: String, status: u16, code: String, message: String },
    #[error("unreadable answer from {url}: {reason}")]
    Protocol { url: String, reason: String },
}

/// A client for one peer.
#[derive(Debug, Clone)]
pub struct PeerClient {
    base: String,
    http: reqwest::Client,
    /// The replication protocol agreed with this peer at the last check-in
    /// (0 before one), sent with every request so the peer answers in it.
    speak: std::sync::Arc<std::sync::atomic::AtomicU32>,
}

/// The header that carries the protocol a request is made in.
pub const PROTOCOL_HEADER: &str = "tessera-replication-protocol";

/// How a peer's certificate is checked: by pin when one is known.
pub fn trust_for(pin: Option<&str>) -> Result<ServerTrust, ClientError> {
    match pin {
        Some(p) => tessera_tls::parse_pin(p).map(ServerTrust::Pinned).map_err(|e| ClientError::Config(e.to_string())),
        None => Ok(ServerTrust::System),
    }
}

impl PeerClient {
    /// A client for the peer at `url` (https only), checking its
    /// certificate by `pin` when given (else the OS's CAs and the host
    /// name), presenting `identity` when given.
    pub fn new(url: &str, pin: Option<&str>, identity: Option<&ClientIdentity>) -> Result<Self, ClientError> {
        let base = url.trim_end_matches('/').to_string();
        if !base.starts_with("https://") {
            return Err(ClientError::Config(format!("a peer's URL must start with https:// (got {base})")));
        }
        let trust = trust_for(pin)?;
        let tls = tessera_tls::client_config(&trust, identity).map_err(|e| match e {
            tessera_tls::TlsError::NoSystemRoots => ClientError::Config(
                "no trust anchors in the operating system store; pin the peer's certificate (--pin)".into(),
            ),
            e => ClientError::Config(e.to_string()),
        })?;
        let http = reqwest::Client::builder()
            .tls_backend_preconfigured((*tls).clone())
            .https_only(true)
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(3))
            .timeout(Duration::from_secs(120))
            .pool_max_idle_per_host(64)
            .user_agent(concat!("tessera-node/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ClientError::Config(e.to_string()))?;
        Ok(PeerClient { base, http, speak: Default::default() })
    }

    pub fn url(&self) -> &str {
        &self.base
    }

    /// Records the protocol agreed with the peer.
    pub fn speak(&self, protocol: u32) {
        self.speak.store(protocol, std::sync::atomic::Ordering::Relaxed);
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

    fn proto(&self, e: impl std::fmt::Display) -> ClientError {
        ClientError::Protocol { url: self.base.clone(), reason: e.to_string() }
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> Result<reqwest::Response, ClientError> {
        let req = match self.speak.load(std::sync::atomic::Ordering::Relaxed) {
            0 => req,
            v => req.header(PROTOCOL_HEADER, v),
        };
        let r = req.send().await.map_err(|e| self.unreachable(&e))?;
        let status = r.status();
        if status.is_success() {
            return Ok(r);
        }
        let body: serde_json::Value = r.json().await.unwrap_or_default();
        let message: String = body["message"].as_str().unwrap_or("no message").chars().take(300).collect();
        let code = body["code"].as_str().unwrap_or_default().to_string();
        if status == reqwest::StatusCode::UNAUTHORIZED || status == reqwest::StatusCode::FORBIDDEN {
            return Err(ClientError::Unauthorized { url: self.base.clone(), message });
        }
        if code == "snapshot_required" {
            return Err(ClientError::SnapshotRequired);
        }
        Err(ClientError::Refused { url: self.base.clone(), status: status.as_u16(), code, message })
    }

    async fn json<T: serde::de::DeserializeOwned>(&self, req: reqwest::RequestBuilder) -> Result<T, ClientError> {
        self.send(req).await?.json().await.map_err(|e| self.proto(e))
    }

    fn path(&self, p: &str) -> String {
        format!("{}{p}", self.base)
    }

    /// The peer's hello, and this node's clock offset from it (ms,
    /// positive when the peer is ahead), measured at the round trip's middle.
    pub async fn hello(&self, timeout: Duration) -> Result<(Hello, i64), ClientError> {
        let sent = now_ms();
        let started = Instant::now();
        let hello: Hello = self.json(self.http.get(self.path("/api/v1/replication/hello")).timeout(timeout)).await?;
        let rtt = started.elapsed().as_millis() as i64;
        let offset = hello.time_ms - (sent + rtt / 2);
        Ok((hello, offset))
    }

    /// Step 1 of a join, with the join token.
    pub async fn join_challenge(&self, token: &str, req: &JoinChallengeRequest) -> Result<JoinChallenge, ClientError> {
        self.json(
            self.http
                .post(self.path("/api/v1/replication/join/challenge"))
                .bearer_auth(token)
                .json(req)
                .timeout(Duration::from_secs(10)),
        )
        .await
    }

    /// Step 2 of a join, with the join token.
    pub async fn join(&self, token: &str, req: &JoinRequest) -> Result<JoinAnswer, ClientError> {
        self.json(
            self.http
                .post(self.path("/api/v1/replication/join"))
                .bearer_auth(token)
                .json(req)
                .timeout(Duration::from_secs(10)),
        )
        .await
    }

    /// Tells the primary how this node is doing; answered with its hello.
    pub async fn checkin(&self, report: &NodeReport) -> Result<(Hello, i64), ClientError> {
        let sent = now_ms();
        let started = Instant::now();
        let hello: Hello = self
            .json(self.http.post(self.path("/api/v1/replication/checkin")).json(report).timeout(Duration::from_secs(5)))
            .await?;
        let rtt = started.elapsed().as_millis() as i64;
        let offset = hello.time_ms - (sent + rtt / 2);
        Ok((hello, offset))
    }

    /// Streams every replicated row into `sink` (NDJSON: one image per
    /// line, then a trailer with the position, epoch and row count), as it
    /// arrives; a body without the trailer ends the sink without `End`.
    pub async fn snapshot_into(&self, sink: std::sync::mpsc::SyncSender<SnapshotItem>) -> Result<(), ClientError> {
        let mut r = self.send(self.http.get(self.path("/api/v1/replication/snapshot"))).await?;
        let mut pending: Vec<u8> = Vec::new();
        let send = |item: SnapshotItem| {
            sink.send(item)
                .map_err(|_| ClientError::Protocol { url: self.base.clone(), reason: "the installer stopped".into() })
        };
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
                    let t: serde_json::Value = serde_json::from_slice(line).map_err(|e| self.proto(e))?;
                    let (Some(position), Some(epoch)) = (t["position"].as_i64(), t["epoch"].as_i64()) else {
                        return Err(self.proto("snapshot trailer"));
                    };
                    return send(SnapshotItem::End { position, epoch, rows: t["rows"].as_u64() });
                }
                send(SnapshotItem::Image(serde_json::from_slice(line).map_err(|e| self.proto(e))?))?;
            }
            pending.drain(..start);
        }
        Err(self.proto("the snapshot was cut short"))
    }

    /// Changes after `after`, waiting up to `wait` for one to happen.
    pub async fn changes(&self, after: i64, limit: u32, wait: Duration) -> Result<ChangePage, ClientError> {
        let path = format!("/api/v1/replication/changes?after={after}&limit={limit}&wait_ms={}", wait.as_millis());
        // A peer that stops answering (cut off, not closed) is noticed
        // shortly after the long poll should have returned.
        self.json(self.http.get(self.path(&path)).timeout(wait + Duration::from_secs(2))).await
    }

    /// Cluster-wide replay protection: asks the primary to take items.
    pub async fn claims(&self, req: &ClaimRequest, timeout: Duration) -> Result<Vec<ClaimResult>, ClientError> {
        self.json(self.http.post(self.path("/api/v1/replication/claims")).json(req).timeout(timeout)).await
    }

    /// Sends journalled logins to the primary.
    pub async fn forward(&self, events: &[LoginEvent]) -> Result<ForwardAnswer, ClientError> {
        self.json(self.http.post(self.path("/api/v1/replication/logins")).json(events).timeout(Duration::from_secs(10)))
            .await
    }
}
