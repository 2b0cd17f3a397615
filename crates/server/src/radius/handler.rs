//! One RADIUS request in, at most one reply out: client check, BlastRADIUS
//! rules, duplicate detection, then the same decision as the REST validate.
//! No sockets here (they live in `udp.rs` and `radsec.rs`).
//!
//! Two steps, so a socket can reuse its receive buffer: [`RadiusService::admit`]
//! does everything that needs the raw bytes, without waiting (decode,
//! client, authenticators, the duplicate cache; Status-Server and
//! accounting are answered there), and hands back an owned [`Pending`]
//! for an Access-Request to decide, which [`RadiusService::decide`] does
//! with the store.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use arc_swap::ArcSwap;
use tessera_core::auth::{Decision, ValidateRequest, Validation};
use tessera_core::model::{MessageAuthenticatorMode, RuleScope, SecretSlot};
use tessera_radius::{Attribute, Code, Dictionary, MessageAuthenticator, Packet, attr, unhide_password};
use zeroize::Zeroizing;

use super::clients::{Client, ClientTable, ConfigClient};
use super::dedup::{DupCache, Key, Seen};
use super::secrets::{self, Verdict};
use crate::config::{Config, ReplyConfig};
use crate::metrics::{self, DropReason, Duplicate, Outcome, Protocol};
use crate::node::Node;

/// Shared secret of RADIUS over TLS (RFC 6614 §2.3): the TLS session, not
/// the secret, protects the packets.
const RADSEC_SECRET: &[u8] = b"radsec";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Udp,
    RadSec,
}

impl Transport {
    fn protocol(self) -> Protocol {
        match self {
            Transport::Udp => Protocol::Radius,
            Transport::RadSec => Protocol::Radsec,
        }
    }
}

/// Counters for the rate-limited drop logs (`/metrics` has its own, in
/// `crate::metrics`).
#[derive(Debug, Default)]
pub struct Stats {
    pub requests: AtomicU64,
    pub accepts: AtomicU64,
    pub rejects: AtomicU64,
    pub challenges: AtomicU64,
    pub duplicates: AtomicU64,
    pub status_server: AtomicU64,
    pub accounting: AtomicU64,
    pub dropped_malformed: AtomicU64,
    pub dropped_unknown_client: AtomicU64,
    pub dropped_bad_authenticator: AtomicU64,
    pub dropped_missing_message_authenticator: AtomicU64,
    pub dropped_proxy_state: AtomicU64,
    pub dropped_ambiguous_secret: AtomicU64,
    pub dropped_overload: AtomicU64,
    pub errors: AtomicU64,
}

fn bump(c: &AtomicU64) -> u64 {
    c.fetch_add(1, Ordering::Relaxed) + 1
}

/// Logs the first drop of a kind, then every 1000th, so a flood of bad
/// packets cannot flood the log; counts it for `/metrics`.
fn log_drop(
    counter: &AtomicU64,
    (transport, kind): (Transport, DropReason),
    reason: &str,
    src: SocketAddr,
    client: Option<&str>,
) {
    metrics::radius_dropped(transport.protocol(), kind);
    let n = bump(counter);
    if n == 1 || n.is_multiple_of(1000) {
        tracing::warn!(%src, client = client.unwrap_or("-"), reason, dropped_so_far = n, "RADIUS packet dropped");
    }
}

/// What [`RadiusService::admit`] made of a datagram.
#[derive(Debug)]
pub enum Admitted {
    /// Handled at once: the reply to send, or `None` (dropped, or a
    /// retransmission of a request still being decided).
    Done(Option<Vec<u8>>),
    /// An Access-Request to decide with [`RadiusService::decide`].
    Decide(Pending),
}

/// An admitted Access-Request: decoded, from a known client, authentic,
/// and recorded as in flight in the duplicate cache. Owns what deciding it
/// needs, so the receive buffer is free for the next datagram.
#[derive(Debug)]
pub struct Pending {
    packet: Packet,
    src: SocketAddr,
    client: Arc<Client>,
    key: Key,
    transport: Transport,
    started: Instant,
    /// The secret the request was made with (the reply is signed with it).
    slot: SecretSlot,
    /// `false`: unsigned, during a rotation's overlap, and the password
    /// reads under neither secret: rejected without being checked.
    readable: bool,
}

/// The secret to open and sign with: the one the request was made with.
fn secret_of(client: &Client, transport: Transport, slot: SecretSlot) -> &[u8] {
    match (transport, slot, &client.old) {
        (Transport::RadSec, _, _) => RADSEC_SECRET,
        (Transport::Udp, SecretSlot::Old, Some(old)) => &old.secret,
        (Transport::Udp, _, _) => &client.secret,
    }
}

/// A reply rule ready to use: its attribute already encoded.
#[derive(Debug, Clone)]
struct CompiledRule {
    scope: RuleScope,
    attribute: Attribute,
}

/// The parts of `[radius]` that change on SIGHUP, besides clients.
#[derive(Debug)]
struct RadiusConf {
    dict: Dictionary,
    /// `[[radius.reply]]`, compiled with the database rules at each reload.
    reply: Vec<ReplyConfig>,
}

/// A SIGHUP's `[radius]` settings, loaded and checked but not yet in use.
#[derive(Debug)]
pub struct PreparedConfig {
    conf: RadiusConf,
    clients: Vec<ConfigClient>,
}

#[derive(Debug)]
pub struct RadiusService {
    node: Arc<Node>,
    pub clients: ClientTable,
    // Swapped whole at reload and read without a lock (see `ClientTable`).
    conf: ArcSwap<RadiusConf>,
    rules: ArcSwap<Vec<CompiledRule>>,
    dedup: DupCache,
    pub stats: Stats,
}

impl RadiusService {
    pub fn new(node: Arc<Node>, cfg: &Config) -> anyhow::Result<Self> {
        Ok(RadiusService {
            node,
            clients: ClientTable::default(),
            conf: ArcSwap::from_pointee(RadiusConf {
                dict: super::dictionary::load(cfg)?,
                reply: cfg.radius.reply.clone(),
            }),
            rules: ArcSwap::from_pointee(Vec::new()),
            dedup: DupCache::new(std::time::Duration::from_secs(cfg.radius.duplicate_window_seconds)),
            stats: Stats::default(),
        })
    }

    /// Loads what `cfg` says about dictionaries, reply rules and
    /// `[[radius.client]]` (reading dictionary and secret files) without
    /// using it yet: a bad file fails here and changes nothing.
    pub fn prepare_config(cfg: &Config) -> anyhow::Result<PreparedConfig> {
        let dict = super::dictionary::load(cfg)?;
        let clients = ConfigClient::load_all(&cfg.radius.client).map_err(anyhow::Error::msg)?;
        Ok(PreparedConfig { conf: RadiusConf { dict, reply: cfg.radius.reply.clone() }, clients })
    }

    /// Puts prepared settings in use and re-reads clients and reply rules
    /// at once. Refused, changing nothing, when a config client's name is
    /// also a database client's.
    pub async fn install_config(&self, prepared: PreparedConfig) -> anyhow::Result<()> {
        self.clients.set_configured(&self.node.admin, prepared.clients).await?;
        self.conf.store(Arc::new(prepared.conf));
        self.reload().await?;
        Ok(())
    }

    /// Re-reads clients and reply rules (the CLI may change them while we run).
    pub async fn reload(&self) -> Result<(), tessera_core::CoreError> {
        self.clients.reload(&self.node.admin).await?;
        let conf = self.conf.load_full();
        let mut compiled = Vec::new();
        let mut texts: Vec<(RuleScope, String)> = Vec::new();
        for r in &conf.reply {
            let scope = match (&r.user, &r.group) {
                (Some(u), _) => RuleScope::User(u.clone()),
                (None, Some(g)) => RuleScope::Group(g.clone()),
                (None, None) => RuleScope::All,
            };
            texts.extend(r.attributes.iter().map(|a| (scope.clone(), a.clone())));
        }
        for r in self.node.admin.reply_rules().await? {
            texts.push((r.scope, format!("{}={}", r.attribute, r.value)));
        }
        for (scope, text) in texts {
            let Some((name, value)) = text.split_once('=') else {
                tracing::error!(rule = %text, "reply rule is not `Attribute = value`; ignored");
                continue;
            };
            match conf.dict.make_attribute(name.trim(), value.trim()) {
                Ok(attribute) => compiled.push(CompiledRule { scope, attribute }),
                Err(e) => tracing::error!(rule = %text, error = %e, "reply rule cannot be encoded; ignored"),
            }
        }
        self.rules.store(Arc::new(compiled));
        Ok(())
    }

    pub fn sweep(&self) {
        self.dedup.sweep(Instant::now());
    }

    /// Handles one datagram (or RadSec record); `None` means no reply.
    pub async fn handle(&self, raw: &[u8], src: SocketAddr, transport: Transport) -> Option<Vec<u8>> {
        match self.admit(raw, src, transport) {
            Admitted::Done(reply) => reply,
            Admitted::Decide(pending) => self.decide(pending).await,
        }
    }

    /// The part of handling one datagram that reads its bytes; never waits.
    pub fn admit(&self, raw: &[u8], src: SocketAddr, transport: Transport) -> Admitted {
        let started = Instant::now();
        bump(&self.stats.requests);
        let packet = match Packet::decode(raw) {
            Ok(p) => p,
            Err(_) => {
                log_drop(
                    &self.stats.dropped_malformed,
                    (transport, DropReason::Malformed),
                    "malformed packet",
                    src,
                    None,
                );
                return Admitted::Done(None);
            }
        };
        let Some(client) = self.clients.lookup(src.ip()) else {
            log_drop(
                &self.stats.dropped_unknown_client,
                (transport, DropReason::UnknownClient),
                "unknown client",
                src,
                None,
            );
            return Admitted::Done(None);
        };
        Admitted::Done(match packet.code {
            Code::AccessRequest => return self.access_request(raw, packet, src, client, (transport, started)),
            Code::StatusServer => self.status_server(raw, &packet, src, &client, transport),
            Code::AccountingRequest => self.accounting(raw, &packet, src, &client, transport),
            _ => {
                log_drop(
                    &self.stats.dropped_malformed,
                    (transport, DropReason::Malformed),
                    "unsupported packet code",
                    src,
                    Some(&client.name),
                );
                None
            }
        })
    }

    /// Decides an admitted Access-Request and records the reply in the
    /// duplicate cache (retransmissions meanwhile were ignored).
    pub async fn decide(&self, p: Pending) -> Option<Vec<u8>> {
        let secret = secret_of(&p.client, p.transport, p.slot);
        let reply = self
            .decide_request(&p.packet, p.src, &p.client, secret, p.readable, (p.transport.protocol(), p.started))
            .await;
        self.dedup.complete(&p.key, reply.as_deref(), Instant::now());
        reply
    }

    /// The secrets a request from `client` may be made with: the current
    /// one, and during a rotation's overlap the old one until the exact
    /// moment it expires (the clock is read only for such clients).
    fn secrets<'c>(&self, client: &'c Client, transport: Transport) -> (&'c [u8], Option<&'c [u8]>) {
        match transport {
            Transport::RadSec => (RADSEC_SECRET, None),
            Transport::Udp => (
                &client.secret,
                client.old.as_ref().filter(|o| self.node.ctx.clock.now() < o.expires_at).map(|o| o.secret.as_slice()),
            ),
        }
    }

    /// Notes which secret an authentic request of `client` used: the first
    /// use of each after a change, then the old one at most once a minute,
    /// go to the store (in the background); otherwise one atomic load.
    fn note_secret(&self, client: &Client, slot: SecretSlot, src: SocketAddr, transport: Transport) {
        // Over RadSec the TLS session, not the shared secret, is used.
        let (Some(id), Some(rotation), Transport::Udp) = (client.id, &client.rotation, transport) else { return };
        let record = match slot {
            SecretSlot::Current => rotation.record_new(),
            SecretSlot::Old => rotation.record_old(self.node.ctx.clock.now().0),
        };
        if !record {
            return;
        }
        let (node, name, changed) = (self.node.clone(), client.name.clone(), rotation.changed_at);
        let until = client.old.as_ref().map(|o| o.expires_at);
        tokio::spawn(async move {
            let r = node.admin.record_radius_secret_use((id, &name), changed, slot, Some(src.ip().to_string())).await;
            match (r, slot) {
                (Ok(true), SecretSlot::Old) => tracing::warn!(
                    client = %name, %src, old_secret_until = %until.map(|t| t.to_rfc3339()).unwrap_or_default(),
                    "RADIUS client still uses its old secret (accepted until the overlap ends)"
                ),
                (Ok(true), SecretSlot::Current) => {
                    tracing::info!(client = %name, %src, "RADIUS client uses its new secret")
                }
                (Ok(false), _) => {}
                (Err(e), _) => {
                    tracing::warn!(client = %name, error = %e, "could not record which secret a RADIUS client uses")
                }
            }
        });
    }

    /// RFC 3579 and the BlastRADIUS rules: is this Access-Request
    /// authentic enough to act on? `ma`: what the authenticator checks
    /// found with the secret the request was made with.
    fn admissible(
        &self,
        ma: MessageAuthenticator,
        packet: &Packet,
        src: SocketAddr,
        client: &Client,
        transport: Transport,
    ) -> bool {
        match ma {
            MessageAuthenticator::Invalid => {
                log_drop(
                    &self.stats.dropped_bad_authenticator,
                    (transport, DropReason::BadAuthenticator),
                    "bad Message-Authenticator",
                    src,
                    Some(&client.name),
                );
                false
            }
            MessageAuthenticator::Valid => {
                // Remembered in every mode, so `client show` can tell an
                // admin that a client in `off` mode could be set to `require`;
                // only `auto` changes what is required because of it.
                if client.mark_signed() {
                    if client.mode == MessageAuthenticatorMode::Auto {
                        tracing::info!(client = %client.name, "client signs its requests; Message-Authenticator now required");
                    }
                    let store = self.node.ctx.store.clone();
                    // A config-file client has no row: remembered in memory only.
                    let Some(id) = client.id else { return true };
                    tokio::spawn(async move {
                        if let Err(e) = store.mark_radius_client_signed(id).await {
                            tracing::warn!(error = %e, "could not record that a RADIUS client signs its requests");
                        }
                    });
                }
                true
            }
            MessageAuthenticator::Absent => {
                // Over TLS the record layer authenticates the packet.
                if transport == Transport::RadSec {
                    return true;
                }
                let required = match client.mode {
                    MessageAuthenticatorMode::Require => true,
                    MessageAuthenticatorMode::Auto => client.has_signed(),
                    MessageAuthenticatorMode::Off => false,
                };
                if required {
                    log_drop(
                        &self.stats.dropped_missing_message_authenticator,
                        (transport, DropReason::MissingMessageAuthenticator),
                        "Access-Request without Message-Authenticator",
                        src,
                        Some(&client.name),
                    );
                    return false;
                }
                // FreeRADIUS's limit_proxy_state: an unsigned request that
                // carries Proxy-State is how BlastRADIUS forgeries look.
                if packet.attr(attr::PROXY_STATE).is_some() {
                    log_drop(
                        &self.stats.dropped_proxy_state,
                        (transport, DropReason::ProxyState),
                        "Proxy-State without Message-Authenticator",
                        src,
                        Some(&client.name),
                    );
                    return false;
                }
                true
            }
        }
    }

    fn access_request(
        &self,
        raw: &[u8],
        packet: Packet,
        src: SocketAddr,
        client: Arc<Client>,
        (transport, started): (Transport, Instant),
    ) -> Admitted {
        let (current, old) = self.secrets(&client, transport);
        let verdict =
            secrets::access_request(raw, &packet.authenticator, packet.attr(attr::USER_PASSWORD), current, old);
        let (slot, ma, readable) = match verdict {
            Verdict::Use(slot, ma) => (slot, ma, true),
            Verdict::Unreadable => (SecretSlot::Current, MessageAuthenticator::Absent, false),
            Verdict::Ambiguous => {
                log_drop(
                    &self.stats.dropped_ambiguous_secret,
                    (transport, DropReason::AmbiguousSecret),
                    "unsigned request whose password reads under both the new and the old secret",
                    src,
                    Some(&client.name),
                );
                return Admitted::Done(None);
            }
        };
        if !self.admissible(ma, &packet, src, &client, transport) {
            return Admitted::Done(None);
        }
        if readable {
            self.note_secret(&client, slot, src, transport);
        }
        let key = Key { source: src, identifier: packet.identifier, authenticator: packet.authenticator };
        match self.dedup.check(key.clone(), started) {
            Seen::New => {}
            Seen::InFlight => {
                bump(&self.stats.duplicates);
                metrics::radius_duplicate(Duplicate::InFlight);
                return Admitted::Done(None);
            }
            Seen::Answered(reply) => {
                bump(&self.stats.duplicates);
                metrics::radius_duplicate(Duplicate::Cached);
                return Admitted::Done(Some(reply));
            }
        }
        Admitted::Decide(Pending { packet, src, client, key, transport, started, slot, readable })
    }

    async fn decide_request(
        &self,
        packet: &Packet,
        src: SocketAddr,
        client: &Client,
        secret: &[u8],
        readable: bool,
        (protocol, started): (Protocol, Instant),
    ) -> Option<Vec<u8>> {
        let text = |typ: u8| packet.attr(typ).map(|v| String::from_utf8_lossy(v).into_owned());
        let mut reply = Packet {
            code: Code::AccessReject,
            identifier: packet.identifier,
            authenticator: packet.authenticator,
            attributes: Vec::new(),
        };
        let username = packet.attr(attr::USER_NAME).and_then(|v| std::str::from_utf8(v).ok().map(str::to_string));
        let password = Some(packet)
            .filter(|_| readable)
            .and_then(|p| p.attr(attr::USER_PASSWORD))
            .and_then(|hidden| unhide_password(secret, &packet.authenticator, hidden).ok())
            .and_then(|p| String::from_utf8(p.to_vec()).ok().map(Zeroizing::new));
        let (Some(username), Some(password)) = (username, password) else {
            // Only PAP is supported (the OTP must be readable); CHAP, EAP and
            // a missing User-Name are refused. So is, during a secret
            // rotation's overlap, an unsigned password that reads under
            // neither secret (`secrets.rs`): not checked, so not counted.
            tracing::info!(%src, client = %client.name, "Access-Request without a readable User-Name and PAP User-Password; rejected");
            bump(&self.stats.rejects);
            metrics::request(protocol, Outcome::Reject, started.elapsed());
            return self.finish(reply, packet, secret);
        };
        let address = text(attr::CALLING_STATION_ID)
            .or_else(|| {
                packet
                    .attr(attr::NAS_IP_ADDRESS)
                    .and_then(|v| <[u8; 4]>::try_from(v).ok())
                    .map(|b| IpAddr::from(b).to_string())
            })
            .or_else(|| Some(src.ip().to_string()));
        let nas = text(attr::NAS_IDENTIFIER);
        let label = match &nas {
            Some(n) => format!(
                "radius:{} ({})",
                client.name,
                n.chars().filter(|c| !c.is_control()).take(64).collect::<String>()
            ),
            None => format!("radius:{}", client.name),
        };
        let req = ValidateRequest {
            username,
            realm: None,
            default_realm: client.default_realm.clone(),
            password,
            state: packet.attr(attr::STATE).map(<[u8]>::to_vec),
            address,
            client: Some(label),
            radius_client: Some(client.name.clone()),
        };
        let result = self.node.auth.validate(req).await;
        crate::health::observe_login(&result);
        let v = match result {
            Ok(v) => v,
            Err(e) => {
                // No answer: the NAS retries or fails over to another server,
                // which is better than a reject while our store is away (or
                // while a secret does not open with this node's key).
                bump(&self.stats.errors);
                metrics::request(protocol, Outcome::Error, started.elapsed());
                if !matches!(e, tessera_core::CoreError::SecretUnreadable) {
                    tracing::error!(error = %e, client = %client.name, "RADIUS request could not be decided");
                }
                return None;
            }
        };
        metrics::decided(protocol, &v, started.elapsed());
        match v.decision {
            Decision::Accept => {
                bump(&self.stats.accepts);
                reply.code = Code::AccessAccept;
                reply.attributes = self.reply_attributes(&v).await;
            }
            Decision::Reject => {
                bump(&self.stats.rejects);
                // Only when there is something to tell (no email/SMS code
                // could be sent); never which factor failed.
                if let Some(m) = v.message {
                    reply.attributes.push(Attribute { typ: attr::REPLY_MESSAGE, value: m.into_bytes() });
                }
            }
            Decision::Challenge { state, message } => {
                bump(&self.stats.challenges);
                reply.code = Code::AccessChallenge;
                reply.attributes.push(Attribute { typ: attr::STATE, value: state });
                reply.attributes.push(Attribute { typ: attr::REPLY_MESSAGE, value: message.into_bytes() });
            }
        }
        self.finish(reply, packet, secret)
    }

    /// Copies Proxy-State (RFC 2865 §5.33) and signs the reply
    /// (Message-Authenticator first).
    fn finish(&self, reply: Packet, request: &Packet, secret: &[u8]) -> Option<Vec<u8>> {
        self.encode(reply, request, secret, true)
    }

    fn encode(
        &self,
        mut reply: Packet,
        request: &Packet,
        secret: &[u8],
        message_authenticator: bool,
    ) -> Option<Vec<u8>> {
        for ps in request.attrs(attr::PROXY_STATE) {
            reply.attributes.push(Attribute { typ: attr::PROXY_STATE, value: ps.to_vec() });
        }
        match reply.encode_response(request, secret, message_authenticator) {
            Ok(bytes) => Some(bytes),
            Err(e) => {
                bump(&self.stats.errors);
                tracing::error!(error = %e, "RADIUS reply could not be encoded (too many reply attributes?)");
                None
            }
        }
    }

    /// Attributes of the rules that apply to the accepted user: by name
    /// (`user` or `user@realm`), by local or directory group, or to all.
    async fn reply_attributes(&self, v: &Validation) -> Vec<Attribute> {
        let rules = self.rules.load_full();
        if rules.is_empty() {
            return Vec::new();
        }
        let needs_groups = rules.iter().any(|r| matches!(r.scope, RuleScope::Group(_)));
        let mut groups = match (needs_groups, v.user_id) {
            (true, Some(id)) => self.node.ctx.store.groups_of(id).await.unwrap_or_else(|e| {
                tracing::warn!(error = %e, "groups for reply attributes unavailable");
                Vec::new()
            }),
            _ => Vec::new(),
        };
        groups.extend(v.directory_groups.iter().cloned());
        let username = v.username.as_str();
        let qualified = format!("{username}@{}", v.realm);
        // A bare name means the user in the default realm only: bob@corp
        // must not get bob's attributes (they may grant privileges).
        let default_realm = match self.node.ctx.store.policy().await {
            Ok(p) => p.default_realm == v.realm,
            Err(_) => false,
        };
        rules
            .iter()
            .filter(|r| match &r.scope {
                RuleScope::All => true,
                RuleScope::User(u) => *u == qualified || (default_realm && u == username),
                RuleScope::Group(g) => groups.contains(g),
            })
            .map(|r| r.attribute.clone())
            .collect()
    }

    fn status_server(
        &self,
        raw: &[u8],
        packet: &Packet,
        src: SocketAddr,
        client: &Client,
        transport: Transport,
    ) -> Option<Vec<u8>> {
        // RFC 5997 §3: Status-Server must carry a valid Message-Authenticator.
        let (current, old) = self.secrets(client, transport);
        let Some(slot) = secrets::signed(raw, current, old) else {
            log_drop(
                &self.stats.dropped_bad_authenticator,
                (transport, DropReason::BadAuthenticator),
                "Status-Server without a valid Message-Authenticator",
                src,
                Some(&client.name),
            );
            return None;
        };
        self.note_secret(client, slot, src, transport);
        let secret = secret_of(client, transport, slot);
        bump(&self.stats.status_server);
        metrics::radius_status_server();
        let reply = Packet {
            code: Code::AccessAccept,
            identifier: packet.identifier,
            authenticator: packet.authenticator,
            attributes: vec![Attribute { typ: attr::REPLY_MESSAGE, value: b"tessera is up".to_vec() }],
        };
        self.finish(reply, packet, secret)
    }

    fn accounting(
        &self,
        raw: &[u8],
        packet: &Packet,
        src: SocketAddr,
        client: &Client,
        transport: Transport,
    ) -> Option<Vec<u8>> {
        // The Request Authenticator of Accounting-Request is a keyed hash:
        // verify_request checks it (and any Message-Authenticator).
        let (current, old) = self.secrets(client, transport);
        let (slot, ma) = secrets::exact(raw, current, old);
        if ma == MessageAuthenticator::Invalid {
            log_drop(
                &self.stats.dropped_bad_authenticator,
                (transport, DropReason::BadAuthenticator),
                "Accounting-Request with a bad authenticator",
                src,
                Some(&client.name),
            );
            return None;
        }
        self.note_secret(client, slot, src, transport);
        let secret = secret_of(client, transport, slot);
        bump(&self.stats.accounting);
        metrics::radius_accounting();
        let reply = Packet {
            code: Code::AccountingResponse,
            identifier: packet.identifier,
            authenticator: packet.authenticator,
            attributes: Vec::new(),
        };
        self.encode(reply, packet, secret, false)
    }
}

pub fn count_oversized(svc: &RadiusService) {
    metrics::radius_dropped(Protocol::Radius, DropReason::Malformed);
    bump(&svc.stats.dropped_malformed);
}

pub fn count_overload(svc: &RadiusService, src: SocketAddr) {
    log_drop(
        &svc.stats.dropped_overload,
        (Transport::Udp, DropReason::Overload),
        "too many requests in flight",
        src,
        None,
    );
}
