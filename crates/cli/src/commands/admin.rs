//! `tessera api-key …`, `tessera policy …`, `tessera audit …`.

use tessera_core::audit::{AuditQuery, AuditResult, TargetMatch};
use tessera_core::clock::Timestamp;
use tessera_core::views::{ApiKeyView, AuditView};
use tessera_server::node::Node;

use super::actor;
use crate::UsageError;
use crate::args::{ApiKeyCmd, AuditCmd, PolicyCmd};
use crate::output::{self, opt};

pub async fn api_key(node: &Node, cmd: ApiKeyCmd) -> anyhow::Result<()> {
    match cmd {
        ApiKeyCmd::Create { name } => {
            let (key, plaintext) = node.admin.create_api_key(&actor(), &name).await?;
            eprintln!("created API key `{}`; it is shown only once:", key.name);
            outln!("{}", plaintext.as_str());
        }
        ApiKeyCmd::List { json } => {
            let keys: Vec<ApiKeyView> = node.admin.list_api_keys().await?.iter().map(ApiKeyView::from).collect();
            if json {
                return output::json(&keys);
            }
            let rows: Vec<Vec<String>> =
                keys.iter().map(|k| vec![k.name.clone(), format!("{}…", k.prefix), k.created_at.clone()]).collect();
            output::table(&["NAME", "KEY", "CREATED"], &rows);
        }
        ApiKeyCmd::Delete { name } => {
            node.admin.delete_api_key(&actor(), &name).await?;
            outln!("deleted API key `{name}`");
        }
    }
    Ok(())
}

pub async fn policy(node: &Node, cmd: PolicyCmd) -> anyhow::Result<()> {
    match cmd {
        PolicyCmd::Show { json } => {
            let p = node.admin.policy().await?;
            if json {
                return output::json(&p);
            }
            let v = serde_json::to_value(&p)?;
            if let Some(obj) = v.as_object() {
                for (k, v) in obj {
                    outln!("{k} = {v}");
                }
            }
        }
        PolicyCmd::Set { settings } => {
            let mut p = node.admin.policy().await?;
            for s in &settings {
                let (k, v) = s.split_once('=').ok_or_else(|| UsageError(format!("`{s}`: expected KEY=VALUE")))?;
                p = p.with_setting(k.trim(), v.trim()).map_err(UsageError)?;
            }
            node.admin.set_policy(&actor(), &p).await?;
            for s in &settings {
                outln!("set {}", s.trim());
            }
        }
    }
    Ok(())
}

/// RFC 3339 time, a date, or an age like `90s`, `15m`, `2h`, `7d`.
fn parse_time(s: &str, now: Timestamp) -> Result<Timestamp, UsageError> {
    if let Some(t) = Timestamp::parse_rfc3339(s) {
        return Ok(t);
    }
    match tessera_core::clock::parse_age_seconds(s) {
        Some(n) => Ok(now.plus_seconds(-n)),
        _ => Err(UsageError(format!("`{s}`: expected an RFC 3339 time, a date, or an age such as 15m, 2h, 7d"))),
    }
}

pub async fn audit(node: &Node, cmd: AuditCmd) -> anyhow::Result<()> {
    let AuditCmd::List { since, until, actor, action, target, result, limit, json } = cmd else {
        anyhow::bail!("`audit verify` is not a listing");
    };
    let now = node.ctx.clock.now();
    let q = AuditQuery {
        since: since.as_deref().map(|s| parse_time(s, now)).transpose()?,
        until: until.as_deref().map(|s| parse_time(s, now)).transpose()?,
        actor,
        action,
        target,
        result: result.as_deref().map(str::parse::<AuditResult>).transpose().map_err(UsageError)?,
        target_match: TargetMatch::Name,
        before_id: None,
        limit,
    };
    let records: Vec<AuditView> = node.admin.audit_log(q).await?.iter().map(AuditView::from).collect();
    if json {
        return output::json(&records);
    }
    let rows: Vec<Vec<String>> = records
        .iter()
        .map(|a| {
            vec![
                a.at.clone(),
                a.node.clone(),
                a.actor.clone(),
                a.action.clone(),
                opt(&a.target),
                opt(&a.source),
                a.result.clone(),
                opt(&a.reason),
            ]
        })
        .collect();
    output::table(&["TIME", "NODE", "ACTOR", "ACTION", "TARGET", "SOURCE", "RESULT", "REASON"], &rows);
    Ok(())
}
