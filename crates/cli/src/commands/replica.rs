//! `tessera replica …`: primary/replica replication on the embedded
//! database. On the primary: `token` (single-use, expiring join tokens;
//! `token list`, `token revoke`), `nodes`, `remove`, `pin`. On a replica:
//! `join` (enrol with a token and a proof of the master key, then copy a
//! snapshot; the running server follows the change stream), `repoint`,
//! `sync`, `promote`. On a former primary: `demote`; on a fenced one,
//! `confirm-primary`. `status` everywhere.

use clap::{Args, Subcommand};
use tessera_core::audit::{AuditRecord, AuditResult};
use tessera_core::clock::Timestamp;
use tessera_core::random::{OsRandom, Random};
use tessera_core::replication::join::{self, JoinChallengeRequest, JoinRequest, MAX_TOKEN_TTL_SECONDS, NONCE_LEN};
use tessera_core::replication::{ReplState, Role};
use tessera_server::node::Node;
use tessera_server::replication::client::PeerClient;
use tessera_server::replication::follower::{
    CONTACT_FRESH_MS, OFFSET_WARN_MS, PEER_TIMEOUT, check_primary, resnapshot,
};
use tessera_server::replication::{Replication, identity, now_ms, primary_label};

use crate::{UsageError, output};

#[derive(Debug, Subcommand)]
pub enum ReplicaCmd {
    /// Make a join token (on the primary): printed once, single-use,
    /// expiring; only its digest is kept. `token list`, `token revoke ID`.
    Token(TokenArgs),
    /// This node's HTTPS certificate fingerprint, for a replica's `--pin`.
    Pin {
        #[arg(long)]
        json: bool,
    },
    /// Make this node a replica of PRIMARY (https://host:8443): enrols it
    /// with the join token and a proof that it holds the master key, then
    /// copies a snapshot; `tessera serve` follows the primary's changes.
    /// Replaces this node's users, tokens, clients, realms, policy and admins.
    Join {
        primary: String,
        #[arg(long)]
        token: String,
        /// SHA-256 fingerprint of the primary's certificate (`ab:cd:…`),
        /// instead of verifying it against the system's CAs.
        #[arg(long)]
        pin: Option<String>,
        /// Join even though this node has users of its own (they are replaced).
        #[arg(long)]
        force: bool,
    },
    /// The enrolled nodes: name, address, role, epoch, last contact, lag.
    Nodes {
        #[arg(long)]
        json: bool,
    },
    /// Revoke an enrolled node at once (on the primary): its requests are
    /// refused within a second. It must join again with a new token.
    Remove { node: String },
    /// Role, epoch, primary, following, applied position, lag, last contact,
    /// clock offset, fence.
    Status {
        #[arg(long)]
        json: bool,
    },
    /// Make this replica the primary (after the primary failed): it takes
    /// writes, with a new epoch that fences the old primary.
    Promote,
    /// Make a former primary a replica of PRIMARY (re-copies everything;
    /// changes it took after it was replaced are discarded). Uses this
    /// node's enrolment; `--token` enrols it again instead.
    Demote {
        #[arg(long)]
        primary: String,
        #[arg(long)]
        pin: Option<String>,
        #[arg(long)]
        token: Option<String>,
    },
    /// Point this replica at another primary (after a promotion elsewhere):
    /// it copies a snapshot from it and follows it.
    Repoint {
        primary: String,
        #[arg(long)]
        pin: Option<String>,
    },
    /// Confirm that this fenced node is the primary (its peers are gone for
    /// good, or it was restored from a backup as the cluster's primary).
    ConfirmPrimary,
    /// Copy a fresh snapshot from the primary now.
    Sync,
}

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct TokenArgs {
    #[command(subcommand)]
    action: Option<TokenAction>,
    /// How long the token stays valid: 90s, 15m, 1h (default), up to 7d.
    #[arg(long, default_value = "1h")]
    ttl: String,
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Subcommand)]
pub enum TokenAction {
    /// Join tokens made here: status (valid, used, expired, revoked), by whom.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Revoke a join token that was not used yet.
    Revoke { id: i64 },
}

fn audit(node: &Node, action: &str) -> AuditRecord {
    AuditRecord::new(node.ctx.clock.now(), &node.ctx.node, &super::actor(), action)
}

/// A time for people: RFC 3339 and how long ago.
fn when(ms: Option<i64>, now: i64) -> String {
    let Some(ms) = ms else { return "never".into() };
    let ago = (now - ms) / 1000;
    let rel = match ago {
        i64::MIN..=-1 => "in the future".to_string(),
        0..=119 => format!("{ago} s ago"),
        120..=7199 => format!("{} min ago", ago / 60),
        7200..=172_799 => format!("{} h ago", ago / 3600),
        _ => format!("{} days ago", ago / 86_400),
    };
    format!("{} ({rel})", Timestamp(ms).to_rfc3339())
}

fn duration_ms(ms: i64) -> String {
    if ms.abs() < 1000 { format!("{ms} ms") } else { format!("{:.1} s", ms as f64 / 1e3) }
}

pub async fn run(node: &Node, cmd: ReplicaCmd) -> anyhow::Result<()> {
    let repl = node
        .replication
        .clone()
        .ok_or_else(|| anyhow::anyhow!("primary/replica replication needs the embedded database"))?;
    repl.load_identity(&node.ctx.keys)?;
    match cmd {
        ReplicaCmd::Token(TokenArgs { action: None, ttl, json }) => mint_token(node, &repl, &ttl, json).await,
        ReplicaCmd::Token(TokenArgs { action: Some(TokenAction::List { json }), .. }) => {
            let now = now_ms();
            let tokens = repl.cluster.join_tokens()?;
            if json {
                let v: Vec<_> = tokens
                    .iter()
                    .map(|t| serde_json::json!({"id": t.id, "status": t.status(now), "token": t}))
                    .collect();
                return output::json(&v);
            }
            let rows: Vec<Vec<String>> = tokens
                .iter()
                .map(|t| {
                    vec![
                        t.id.to_string(),
                        t.status(now).into(),
                        when(Some(t.created_at), now),
                        Timestamp(t.expires_at).to_rfc3339(),
                        t.created_by.clone(),
                        t.used_by.clone().unwrap_or_default(),
                    ]
                })
                .collect();
            output::table(&["ID", "STATUS", "CREATED", "EXPIRES", "BY", "USED BY"], &rows);
            Ok(())
        }
        ReplicaCmd::Token(TokenArgs { action: Some(TokenAction::Revoke { id }), .. }) => {
            let a = audit(node, "replica.token.revoke").target(id.to_string()).result(AuditResult::Ok, None);
            if repl.cluster.revoke_join_token(id, now_ms(), a).await? {
                outln!("revoked join token {id}");
                Ok(())
            } else {
                anyhow::bail!(UsageError(format!("no unused join token {id} (see `tessera replica token list`)")))
            }
        }
        ReplicaCmd::Pin { json } => {
            let pin = tessera_server::replication::certificate_pin(&node.config)
                .ok_or_else(|| anyhow::anyhow!("no HTTPS certificate yet: start `tessera serve` once"))?;
            if json {
                return output::json(&serde_json::json!({"pin": pin}));
            }
            outln!("{pin}");
            Ok(())
        }
        ReplicaCmd::Join { primary, token, pin, force } => {
            let s = repl.state()?;
            if s.role == Role::Primary {
                anyhow::bail!("this node is a primary; use `tessera replica demote` to make it follow another primary");
            }
            if s.role != Role::Replica && !force && node.ctx.store.count_users().await? > 0 {
                anyhow::bail!(
                    "this node has users of its own, which joining replaces with the primary's; add --force to go on"
                );
            }
            let done = join(node, &repl, &primary, &token, pin).await?;
            outln!("joined {done}");
            Ok(())
        }
        ReplicaCmd::Nodes { json } => nodes(node, &repl, json),
        ReplicaCmd::Remove { node: name } => {
            let s = repl.state()?;
            if s.role == Role::Replica {
                anyhow::bail!("this node is a replica: remove nodes on the primary {}", primary_label(&s));
            }
            let me = repl.identity().map(|i| i.name);
            if me.as_deref() == Some(name.as_str()) {
                anyhow::bail!(UsageError("that is this node; remove it from another primary".into()));
            }
            let a = audit(node, "replica.remove").target(&name).result(AuditResult::Ok, Some("credential revoked"));
            if repl.cluster.remove_node(&name, a).await? {
                outln!("removed {name}: its requests are refused from now on (it must join again with a new token)");
                Ok(())
            } else {
                anyhow::bail!(UsageError(format!("no enrolled node `{name}` (see `tessera replica nodes`)")))
            }
        }
        ReplicaCmd::Status { json } => status(node, &repl, json),
        ReplicaCmd::Promote => {
            let s = repl.state()?;
            if s.role != Role::Replica {
                anyhow::bail!("this node is not a replica (role {})", s.role.as_str());
            }
            let s = repl.log.set_state(|s| {
                s.role = Role::Primary;
                s.epoch += 1;
                s.primary_url = None;
                s.primary_name = None;
                s.lag_ms = None;
                s.fence = None;
            })?;
            let reason = format!("epoch {}", s.epoch);
            node.ctx.store.append_audit(audit(node, "replica.promote").result(AuditResult::Ok, Some(&reason))).await?;
            outln!(
                "promoted: {} is the primary now (epoch {}); the other replicas and the old primary move to it by \
                 themselves when they reach it",
                node.ctx.node,
                s.epoch
            );
            Ok(())
        }
        ReplicaCmd::Demote { primary, pin, token } => {
            let s = repl.state()?;
            if s.role == Role::Replica {
                anyhow::bail!(
                    "this node is already a replica; use `tessera replica repoint` to follow another primary"
                );
            }
            let done = match token {
                Some(t) => join(node, &repl, &primary, &t, pin).await?,
                None => repoint(node, &repl, &primary, pin).await?,
            };
            outln!("demoted; now following {done}");
            Ok(())
        }
        ReplicaCmd::Repoint { primary, pin } => {
            let s = repl.state()?;
            if s.role == Role::Primary && s.fence.is_none() {
                anyhow::bail!("this node is a primary; use `tessera replica demote` to make it follow another primary");
            }
            let done = repoint(node, &repl, &primary, pin).await?;
            outln!("re-pointed; now following {done}");
            Ok(())
        }
        ReplicaCmd::ConfirmPrimary => {
            let s = repl.state()?;
            let Some(why) = s.fence.clone() else {
                anyhow::bail!("this node is not fenced (role {})", s.role.as_str());
            };
            let s = repl.log.set_state(|s| {
                s.role = Role::Primary;
                s.epoch = s.epoch.max(1);
                s.primary_url = None;
                s.primary_name = None;
                s.fence = None;
            })?;
            let reason = format!("fence lifted by an administrator at epoch {} (was: {why})", s.epoch);
            node.ctx.store.append_audit(audit(node, "replica.confirm").result(AuditResult::Ok, Some(&reason))).await?;
            outln!("confirmed: {} is the primary (epoch {}) and takes changes again", node.ctx.node, s.epoch);
            Ok(())
        }
        ReplicaCmd::Sync => {
            let s = repl.state()?;
            if s.role != Role::Replica {
                anyhow::bail!("this node is not a replica (role {})", s.role.as_str());
            }
            let client = peer(node, &repl, s.primary_url.as_deref().unwrap_or_default(), s.pin.as_deref())?;
            let (hello, _) = client.hello(PEER_TIMEOUT).await?;
            check_primary(node, &hello, &s)?;
            let position = resnapshot(&repl, &client).await?;
            outln!("resynchronised from {} at position {position}", primary_label(&s));
            Ok(())
        }
    }
}

async fn mint_token(node: &Node, repl: &Replication, ttl: &str, json: bool) -> anyhow::Result<()> {
    let s = repl.state()?;
    if s.role == Role::Replica {
        anyhow::bail!("this node is a replica: make join tokens on the primary {}", primary_label(&s));
    }
    let ttl = tessera_core::clock::parse_age_seconds(ttl)
        .filter(|t| (1..=MAX_TOKEN_TTL_SECONDS).contains(t))
        .ok_or_else(|| UsageError(format!("--ttl `{ttl}`: up to 7d, e.g. 15m, 1h, 2d")))?;
    // The primary needs its own identity for the cluster to know it.
    tessera_server::replication::enrol_self(node, repl).await?;
    let token = join::new_token(&OsRandom);
    let now = now_ms();
    let expires = now + ttl * 1000;
    let mut raw = [0u8; 8];
    OsRandom.fill(&mut raw);
    // Short, positive ids: they are typed by people (`token revoke ID`).
    let id = i64::from(u32::from_be_bytes([raw[0], raw[1], raw[2], raw[3]]) >> 1);
    let a = audit(node, "replica.token")
        .target(id.to_string())
        .result(AuditResult::Ok, Some(&format!("expires {}", Timestamp(expires).to_rfc3339())));
    repl.cluster.mint_join_token(join::token_digest(&token), id, now, expires, &super::actor().name, a).await?;
    let pin = tessera_server::replication::certificate_pin(&node.config);
    if json {
        return output::json(&serde_json::json!({"token": token, "id": id, "pin": pin, "expires_at": expires}));
    }
    outln!("{token}");
    let pin = pin.map(|p| format!(" --pin {p}")).unwrap_or_default();
    eprintln!(
        "join token {id} created (shown once; works once; expires {}). On the new replica:\n  tessera replica join \
         https://<this node>:8443 --token <token>{pin}",
        Timestamp(expires).to_rfc3339()
    );
    Ok(())
}

fn peer(node: &Node, repl: &Replication, url: &str, pin: Option<&str>) -> anyhow::Result<PeerClient> {
    let _ = node;
    let id = repl.identity().ok_or_else(|| {
        anyhow::anyhow!("this node has no cluster identity: it never joined a cluster (`tessera replica join`)")
    })?;
    Ok(PeerClient::new(url, pin, Some(&id.tls))?)
}

/// Enrols this node with `token` at `primary` and copies a snapshot.
async fn join(
    node: &Node,
    repl: &Replication,
    primary: &str,
    token: &str,
    pin: Option<String>,
) -> anyhow::Result<String> {
    let cfg = &node.config;
    let id = identity::ensure(&node.ctx.keys, &OsRandom, &repl.cluster, &node.ctx.node, now_ms()).await?;
    join::check_node_name(&id.name).map_err(UsageError)?;
    let client = PeerClient::new(primary, pin.as_deref(), Some(&id.tls))?;
    let mut nonce = [0u8; NONCE_LEN];
    OsRandom.fill(&mut nonce);
    let challenge =
        client.join_challenge(token, &JoinChallengeRequest { node: id.name.clone(), nonce: nonce.to_vec() }).await?;
    let hello = &challenge.hello;
    let keys = &node.ctx.keys;
    if !hello.shares_key_with(&keys.key_id(), &keys.previous_key_ids()) {
        anyhow::bail!(
            "the primary {} uses master key {} but this node has {}: every node needs the same key file; nothing was \
             copied",
            hello.node,
            hello.key_id,
            keys.key_id()
        );
    }
    if !join::check_primary_proof(keys, &nonce, &hello.node, &challenge.proof) {
        anyhow::bail!("{} did not prove it holds the master key; not joining it", hello.node);
    }
    let mine = repl.state()?;
    if hello.epoch < mine.epoch {
        anyhow::bail!(
            "{} is a stale primary (epoch {} < this node's {}): it was replaced",
            hello.node,
            hello.epoch,
            mine.epoch
        );
    }
    let mut as_primary = hello.clone();
    as_primary.role = Role::Primary;
    check_primary(node, &as_primary, &mine)?;
    let offset = hello.time_ms - now_ms();
    if offset.abs() > OFFSET_WARN_MS {
        eprintln!(
            "warning: this node's clock is about {offset} ms off the primary's; TOTP codes may be refused (fix NTP)"
        );
    }
    let _ = tessera_server::node::ensure_tls_files(cfg);
    let proof = join::joiner_proof(keys, &OsRandom, &challenge.nonce, &id.name, &id.cert_sha256);
    let request = JoinRequest {
        node: id.name.clone(),
        nonce: challenge.nonce.clone(),
        cert: id.tls.cert_der.clone(),
        url: tessera_server::replication::advertise_url(cfg, None),
        https_pin: tessera_server::replication::certificate_pin(cfg),
        proof,
    };
    let answer = client.join(token, &request).await?;
    let position = resnapshot(repl, &client).await?;
    let state = follow(repl, &client, &hello.node, pin, position, answer.epoch)?;
    let reason = format!("joined {} ({}) at epoch {}", hello.node, client.url(), state.epoch);
    node.ctx.store.append_audit(audit(node, "replica.join").result(AuditResult::Ok, Some(&reason))).await?;
    Ok(format!("{} ({}) at position {position}, epoch {}, as node {}", hello.node, client.url(), state.epoch, id.name))
}

/// Follows another primary with this node's existing enrolment.
async fn repoint(node: &Node, repl: &Replication, primary: &str, pin: Option<String>) -> anyhow::Result<String> {
    let client = peer(node, repl, primary, pin.as_deref())?;
    let (hello, _) = client.hello(PEER_TIMEOUT).await.map_err(|e| match e {
        tessera_server::replication::client::ClientError::Unauthorized { .. } => anyhow::anyhow!(
            "{primary} does not know this node (removed, or another cluster): join it with a token instead"
        ),
        e => e.into(),
    })?;
    let mine = repl.state()?;
    // An administrator demoting one of two primaries of one epoch settles a
    // split brain: equal epochs are allowed here.
    let mut check = mine.clone();
    check.epoch = check.epoch.min(hello.epoch);
    check_primary(node, &hello, &check)?;
    let position = resnapshot(repl, &client).await?;
    let state = follow(repl, &client, &hello.node, pin, position, hello.epoch)?;
    let reason = format!("now follows {} ({}) at epoch {}", hello.node, client.url(), state.epoch);
    node.ctx.store.append_audit(audit(node, "replica.repoint").result(AuditResult::Ok, Some(&reason))).await?;
    Ok(format!("{} ({}) at position {position}, epoch {}", hello.node, client.url(), state.epoch))
}

fn follow(
    repl: &Replication,
    client: &PeerClient,
    name: &str,
    pin: Option<String>,
    position: i64,
    epoch: i64,
) -> anyhow::Result<ReplState> {
    let state = repl.log.set_state(|s| {
        s.role = Role::Replica;
        s.primary_url = Some(client.url().to_string());
        s.primary_name = Some(name.to_string());
        s.pin = pin;
        s.position = position;
        s.epoch = s.epoch.max(epoch);
        s.fence = None;
    })?;
    Ok(state)
}

fn status(node: &Node, repl: &Replication, json: bool) -> anyhow::Result<()> {
    let s = repl.state()?;
    let head = repl.log.head()?;
    let now = now_ms();
    // The server records its last contact; an old one means it is not
    // following now (stopped, or the primary is away).
    let following = s.role == Role::Replica
        && s.follow_error.is_none()
        && s.last_contact_at.is_some_and(|t| now - t <= CONTACT_FRESH_MS);
    let pending = repl.cluster.outbox_len()?;
    if json {
        return output::json(&serde_json::json!({
            "node": node.ctx.node,
            "role": s.role,
            "epoch": s.epoch,
            "primary": s.primary_url,
            "primary_name": s.primary_name,
            "position": if s.role == Role::Replica { s.position } else { head },
            "following": following,
            "lag_ms": s.lag_ms.map(|l| if following { l } else { l.max(now - s.last_contact_at.unwrap_or(now)) }),
            "last_contact_at": s.last_contact_at,
            "clock_offset_ms": s.clock_offset_ms,
            "pruned_through": s.pruned_through,
            "fence": s.fence,
            "follow_error": s.follow_error,
            "journalled_logins": pending,
        }));
    }
    outln!("node:          {}", node.ctx.node);
    outln!("role:          {}", s.role.as_str());
    outln!("epoch:         {}", s.epoch);
    if let Some(why) = &s.fence {
        outln!("FENCED:        {why}");
    }
    if s.role == Role::Replica {
        outln!("primary:       {}", primary_label(&s));
        outln!(
            "following:     {}",
            match (following, &s.follow_error) {
                (true, _) => "yes".to_string(),
                (false, Some(e)) => format!("NO: {e}"),
                (false, None) => "NO (no contact with the primary lately; is `tessera serve` running?)".into(),
            }
        );
        outln!("position:      {}", s.position);
        let lag = match (following, s.lag_ms, s.last_contact_at) {
            (true, Some(l), _) => duration_ms(l),
            (false, _, Some(t)) => format!("at least {} (not following)", duration_ms(now - t)),
            _ => "unknown".into(),
        };
        outln!("lag:           {lag}");
        outln!("last contact:  {}", when(s.last_contact_at, now));
        outln!("clock offset:  {}", s.clock_offset_ms.map_or("unknown".into(), |o| format!("{o:+} ms")));
        outln!("journalled:    {pending} login(s) not yet taken by the primary");
    } else {
        outln!("position:      {head}");
    }
    Ok(())
}

fn nodes(node: &Node, repl: &Replication, json: bool) -> anyhow::Result<()> {
    let now = now_ms();
    let nodes = repl.cluster.nodes()?;
    let peers = repl.cluster.peers()?;
    let me = repl.identity().map(|i| i.name).unwrap_or_else(|| node.ctx.node.clone());
    let s = repl.state()?;
    if json {
        let v: Vec<_> = nodes
            .iter()
            .map(|n| {
                let p = peers.iter().find(|p| p.name == n.name);
                serde_json::json!({
                    "name": n.name,
                    "url": n.url,
                    "this_node": n.name == me,
                    "role": if n.name == me { Some(s.role.as_str().to_string()) } else { p.and_then(|p| p.role.clone()) },
                    "epoch": if n.name == me { Some(s.epoch) } else { p.and_then(|p| p.epoch) },
                    "last_contact_at": p.and_then(|p| p.last_contact_at),
                    "lag_ms": p.and_then(|p| p.lag_ms),
                    "following": p.and_then(|p| p.following),
                    "key_id": p.and_then(|p| p.key_id.clone()),
                    "version": if n.name == me { Some(tessera_server::replication::build_version()) } else { p.and_then(|p| p.version.clone()) },
                    "enrolled_at": n.enrolled_at,
                    "cert_sha256": n.cert_sha256,
                })
            })
            .collect();
        return output::json(&v);
    }
    let rows: Vec<Vec<String>> = nodes
        .iter()
        .map(|n| {
            let p = peers.iter().find(|p| p.name == n.name);
            if n.name == me {
                return vec![
                    format!("{} (this node)", n.name),
                    n.url.clone().unwrap_or_default(),
                    s.role.as_str().into(),
                    s.epoch.to_string(),
                    "-".into(),
                    "-".into(),
                    tessera_server::replication::build_version(),
                ];
            }
            vec![
                n.name.clone(),
                n.url.clone().or_else(|| p.and_then(|p| p.address.clone())).unwrap_or_default(),
                p.and_then(|p| p.role.clone()).unwrap_or_else(|| "?".into()),
                p.and_then(|p| p.epoch).map_or("?".into(), |e| e.to_string()),
                when(p.and_then(|p| p.last_contact_at), now),
                p.and_then(|p| p.lag_ms).map_or("?".into(), duration_ms),
                p.and_then(|p| p.version.clone()).unwrap_or_else(|| "?".into()),
            ]
        })
        .collect();
    output::table(&["NODE", "ADDRESS", "ROLE", "EPOCH", "LAST CONTACT", "LAG", "VERSION"], &rows);
    Ok(())
}
