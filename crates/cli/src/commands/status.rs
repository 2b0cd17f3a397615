//! `tessera status`: what this node is and how it is doing.

use tessera_core::rotation::{self, NodeKeyReport};
use tessera_server::config::Config;
use tessera_server::node::Node;
use tessera_server::scheduled_backup;

use crate::output;

pub async fn run(node: &Node, cfg: &Config, json: bool) -> anyhow::Result<()> {
    let admin = &node.admin;
    let users = node.ctx.store.count_users().await?;
    let clients = admin.radius_clients().await?.len();
    let realms = admin.realms().await?.len();
    let b = &cfg.backup;
    let backup =
        if b.interval_seconds > 0 { scheduled_backup::read_status(std::path::Path::new(&b.dir)) } else { None };
    let version = tessera_server::node::build_version(cfg);
    let now = node.ctx.clock.now();
    // Every node that reported lately (shared database: all of them; a
    // primary: itself and its replicas), with its release, so a rolling
    // upgrade can be followed from any node.
    let nodes: Vec<(String, NodeKeyReport)> = rotation::node_reports(node.ctx.store.as_ref(), &node.ctx.node)
        .await
        .unwrap_or_default()
        .into_iter()
        .filter(|(_, r)| r.at > now.plus_seconds(-rotation::NODE_ALIVE_SECONDS))
        .collect();
    if json {
        return output::json(&serde_json::json!({
            "node": node.ctx.node,
            "version": version,
            "nodes": nodes.iter().map(|(name, r)| serde_json::json!({
                "name": name,
                "version": r.version,
                "key_id": r.key_id,
                "reported_at": r.at.0,
            })).collect::<Vec<_>>(),
            "data_dir": cfg.server.data_dir,
            "database": cfg.database_display(),
            "master_key": {"id": node.ctx.keys.key_id(), "source": node.key_source.to_string()},
            "users": users,
            "radius_clients": clients,
            "realms": realms,
            "scheduled_backups": {
                "interval_seconds": b.interval_seconds,
                "dir": b.dir,
                "keep": b.keep,
                "last": backup,
            },
        }));
    }
    outln!("node:            {}", node.ctx.node);
    outln!("version:         {version}");
    outln!("data dir:        {}", cfg.server.data_dir.display());
    outln!("database:        {}", cfg.database_display());
    outln!("master key:      {} (from {})", node.ctx.keys.key_id(), node.key_source);
    outln!("users:           {users}");
    outln!("RADIUS clients:  {clients}");
    outln!("realms:          {realms}");
    if b.interval_seconds == 0 {
        outln!("backups:         no schedule ([backup] interval_seconds = 0)");
    } else {
        outln!("backups:         every {} s into {}, keeping {}", b.interval_seconds, b.dir, b.keep);
        match backup {
            Some(s) if s.ok => outln!(
                "last backup:     ok at {} ({}, {} bytes, {:.1} s; {} kept)",
                s.last_run_at,
                s.file.unwrap_or_default(),
                s.bytes.unwrap_or(0),
                s.seconds,
                s.kept
            ),
            Some(s) => outln!("last backup:     FAILED at {}: {}", s.last_run_at, s.error.unwrap_or_default()),
            None => outln!("last backup:     none yet"),
        }
    }
    if !nodes.is_empty() {
        outln!("nodes (reported within {} s):", rotation::NODE_ALIVE_SECONDS);
        for (name, r) in &nodes {
            outln!(
                "  {name:<20} {}  key {}  {} s ago",
                r.version.as_deref().unwrap_or("(a release that does not say)"),
                r.key_id,
                (now.0 - r.at.0).max(0) / 1000
            );
        }
    }
    Ok(())
}
