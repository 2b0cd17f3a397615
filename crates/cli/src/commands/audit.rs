//! `tessera audit verify`: walks every node's audit hash chain in the
//! database file (or, in shared database mode, one read-only snapshot of
//! the PostgreSQL database), without the master key (an auditor can check
//! a copy), and names each record that was changed, deleted or reordered.
//! Exit 1 when anything is wrong.

use anyhow::Context as _;
use serde_json::{Value, json};
use tessera_core::audit::chain::{ChainPoint, Problem, Report};
use tessera_server::config::Config;

use crate::{Exit, output};

pub async fn verify(cfg: &Config, as_json: bool) -> anyhow::Result<()> {
    let report = match cfg.postgres_options()? {
        None => {
            let db = cfg.database_path();
            // Login records a running server has not folded yet are only in
            // its journal: have it fold them first.
            if let Err(e) = tessera_store::sqlite::login::request_fold_blocking(&db) {
                outln!("warning: the running server's login journal could not be folded first ({e})");
            }
            tessera_store::sqlite::audit_chain::verify_file(&db)
                .with_context(|| format!("cannot verify the audit log in {}", db.display()))?
        }
        Some(opts) => tessera_store::PgStore::verify_audit_chain_readonly(&opts)
            .await
            .with_context(|| format!("cannot verify the audit log in {}", cfg.database_display()))?
            .ok_or_else(|| anyhow::anyhow!("the database {} is not initialised", cfg.database_display()))
            .map(Some)?,
    };
    let Some(report) = report else {
        let why = "the database predates the audit chain; it starts when this version of tessera first opens it";
        if as_json {
            return output::json(&json!({"ok": true, "chained": 0, "note": why}));
        }
        outln!("audit chain: none yet ({why})");
        return Ok(());
    };
    if as_json {
        output::json(&to_json(&report))?;
    } else {
        print_text(&report);
    }
    if report.ok() { Ok(()) } else { Err(Exit(1).into()) }
}

fn short(hash: &[u8; 32]) -> String {
    hex::encode(&hash[..8])
}

fn problem_line(p: &Problem) -> String {
    let record = match p.id {
        Some(id) => format!("record {id}"),
        None => "chain".to_string(),
    };
    let at = p.at.map(|t| format!(", {}", t.to_rfc3339())).unwrap_or_default();
    format!("{record} (node {}{at}): {} — {}", p.node, p.kind.as_str(), p.detail)
}

fn print_text(r: &Report) {
    if r.ok() {
        outln!(
            "audit chain: OK — {} record(s) chained on {} node(s), {} unchained (before the migration)",
            r.chained(),
            r.nodes.len(),
            r.unchained
        );
    } else {
        let n = r.problems.len() as u64 + r.more_problems;
        outln!("audit chain: BROKEN — {n} problem(s)");
        for p in &r.problems {
            outln!("  {}", problem_line(p));
        }
        if r.more_problems > 0 {
            outln!("  … and {} more", r.more_problems);
        }
        outln!(
            "{} record(s) chained on {} node(s), {} unchained (before the migration)",
            r.chained(),
            r.nodes.len(),
            r.unchained
        );
    }
    for n in &r.nodes {
        let pruned = if n.anchor.seq > 0 {
            format!(", pruned up to id {} (position {})", n.anchor.id, n.anchor.seq)
        } else {
            String::new()
        };
        let head = match &n.head {
            Some(h) => format!("head id {} position {} hash {}…", h.id, h.seq, short(&h.hash)),
            None => "no head recorded".to_string(),
        };
        outln!("  {}: {} record(s){pruned}, {head}", n.node, n.records);
    }
}

fn point(p: &ChainPoint) -> Value {
    json!({"seq": p.seq, "id": p.id, "hash": hex::encode(p.hash)})
}

fn to_json(r: &Report) -> Value {
    json!({
        "ok": r.ok(),
        "chained": r.chained(),
        "unchained": r.unchained,
        "chain_start": r.chain_start,
        "nodes": r.nodes.iter().map(|n| json!({
            "node": n.node,
            "records": n.records,
            "anchor": point(&n.anchor),
            "head": n.head.as_ref().map(point),
        })).collect::<Vec<_>>(),
        "problems": r.problems.iter().map(|p| json!({
            "kind": p.kind.as_str(),
            "id": p.id,
            "node": p.node,
            "at": p.at.map(|t| t.to_rfc3339()),
            "detail": p.detail,
        })).collect::<Vec<_>>(),
        "more_problems": r.more_problems,
    })
}
