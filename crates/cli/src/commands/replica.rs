//! `tessera replica …`: primary/replica replication on the embedded
//! database. `token` (on the primary) makes a join token; `join` makes this
//! node a replica of a primary (snapshot, then the running server follows
//! the change stream); `status`, `promote`, `demote`, `sync`.

use clap::Subcommand;
use tessera_core::audit::AuditRecord;
use tessera_core::random::{OsRandom, Random};
use tessera_core::replication::{Role, join_token_digest};
use tessera_core::store::MetaKey;
use tessera_server::node::Node;
use tessera_server::replication::client::PrimaryClient;
use tessera_server::replication::follower::{check_primary, resnapshot};
use tessera_server::replication::primary_label;

use crate::output;

#[derive(Debug, Subcommand)]
pub enum ReplicaCmd {
    /// Make a join token (on the primary). Printed once; only its digest is
    /// kept. Also prints the certificate fingerprint a replica can pin.
    Token {
        #[arg(long)]
        json: bool,
    },
    /// Make this node a replica of PRIMARY (https://host:8443): copies a
    /// snapshot now; `tessera serve` then follows the primary's changes.
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
    /// Role, epoch, primary, applied position, lag, last contact, clock offset.
    Status {
        #[arg(long)]
        json: bool,
    },
    /// Make this replica the primary (after the primary failed): it takes
    /// writes, with a new epoch that fences the old primary.
    Promote,
    /// Make a former primary a replica of the new one (re-copies everything;
    /// changes it took after it was replaced are discarded).
    Demote {
        #[arg(long)]
        primary: String,
        #[arg(long)]
        token: String,
        #[arg(long)]
        pin: Option<String>,
    },
    /// Copy a fresh snapshot from the primary now.
    Sync,
}

pub async fn run(node: &Node, cmd: ReplicaCmd) -> anyhow::Result<()> {
    let repl = node
        .replication
        .clone()
        .ok_or_else(|| anyhow::anyhow!("primary/replica replication needs the embedded database"))?;
    match cmd {
        ReplicaCmd::Token { json } => {
            let s = repl.state()?;
            if s.role == Role::Replica {
                anyhow::bail!("this node is a replica: make join tokens on the primary {}", primary_label(&s));
            }
            let mut raw = [0u8; 32];
            OsRandom.fill(&mut raw);
            let token = format!("tsj_{}", hex::encode(raw));
            let store = &node.ctx.store;
            let mut digests: Vec<String> = match store.meta_value(MetaKey::ReplicationTokens).await? {
                Some(v) => serde_json::from_slice(&v)?,
                None => Vec::new(),
            };
            digests.push(join_token_digest(&token));
            let audit = AuditRecord::new(node.ctx.clock.now(), &node.ctx.node, &super::actor(), "replica.token");
            store.set_meta_value(MetaKey::ReplicationTokens, Some(serde_json::to_vec(&digests)?), Some(audit)).await?;
            let pin = tessera_server::replication::certificate_pin(&node.config);
            if json {
                return output::json(&serde_json::json!({"token": token, "pin": pin}));
            }
            println!("{token}");
            let pin = pin.map(|p| format!(" --pin {p}")).unwrap_or_default();
            eprintln!(
                "join token created (shown once). On the replica: tessera replica join https://<this node>:8443 --token <token>{pin}"
            );
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
            join(node, &repl, &primary, &token, pin, "joined").await
        }
        ReplicaCmd::Demote { primary, token, pin } => {
            join(node, &repl, &primary, &token, pin, "demoted; now following").await
        }
        ReplicaCmd::Sync => {
            let s = repl.state()?;
            if s.role != Role::Replica {
                anyhow::bail!("this node is not a replica (role {})", s.role.as_str());
            }
            let token = repl.log.join_token()?.map(|t| String::from_utf8_lossy(&t).into_owned()).unwrap_or_default();
            let client =
                PrimaryClient::new(s.primary_url.as_deref().unwrap_or_default(), &token, s.pin.as_deref(), None)?;
            check_primary(node, &client, &s).await?;
            let position = resnapshot(&repl, &client).await?;
            println!("resynchronised from {} at position {position}", primary_label(&s));
            Ok(())
        }
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
            })?;
            repl.log.set_join_token(None)?;
            let mut audit = AuditRecord::new(node.ctx.clock.now(), &node.ctx.node, &super::actor(), "replica.promote");
            audit.reason = Some(format!("epoch {}", s.epoch));
            node.ctx.store.append_audit(audit).await?;
            println!(
                "promoted: {} is the primary now (epoch {}); point the other replicas at it",
                node.ctx.node, s.epoch
            );
            Ok(())
        }
        ReplicaCmd::Status { json } => {
            let s = repl.state()?;
            let head = repl.log.head()?;
            if json {
                return output::json(&serde_json::json!({
                    "node": node.ctx.node,
                    "role": s.role,
                    "epoch": s.epoch,
                    "primary": s.primary_url,
                    "primary_name": s.primary_name,
                    "position": if s.role == Role::Replica { s.position } else { head },
                    "lag_ms": s.lag_ms,
                    "last_contact_at": s.last_contact_at,
                    "clock_offset_ms": s.clock_offset_ms,
                    "pruned_through": s.pruned_through,
                }));
            }
            println!("node:          {}", node.ctx.node);
            println!("role:          {}", s.role.as_str());
            println!("epoch:         {}", s.epoch);
            if s.role == Role::Replica {
                println!("primary:       {}", primary_label(&s));
                println!("position:      {}", s.position);
                println!("lag:           {}", s.lag_ms.map_or("unknown".into(), |l| format!("{l} ms")));
                println!("last contact:  {}", s.last_contact_at.map_or("never".into(), |t| format!("{t} (Unix ms)")));
                println!("clock offset:  {}", s.clock_offset_ms.map_or("unknown".into(), |o| format!("{o} ms")));
            } else {
                println!("position:      {head}");
            }
            Ok(())
        }
    }
}

async fn join(
    node: &Node,
    repl: &tessera_server::replication::Replication,
    primary: &str,
    token: &str,
    pin: Option<String>,
    verb: &str,
) -> anyhow::Result<()> {
    let client = PrimaryClient::new(primary, token, pin.as_deref(), None)?;
    let mine = repl.state()?;
    // A demoted primary keeps its epoch: the new primary's must be newer.
    let (name, epoch, offset) = check_primary(node, &client, &mine).await?;
    if offset.abs() > tessera_server::replication::follower::OFFSET_WARN_MS {
        eprintln!("warning: this node's clock is {offset} ms off the primary's; TOTP codes may be refused (fix NTP)");
    }
    let position = resnapshot(repl, &client).await?;
    repl.log.set_join_token(Some(token.as_bytes()))?;
    let state = repl.log.set_state(|s| {
        s.role = Role::Replica;
        s.primary_url = Some(client.url().to_string());
        s.primary_name = Some(name.clone());
        s.pin = pin.clone();
        s.position = position;
        s.epoch = s.epoch.max(epoch);
        s.clock_offset_ms = Some(offset);
    })?;
    println!("{verb} {name} ({}) at position {position}, epoch {}", client.url(), state.epoch);
    Ok(())
}
