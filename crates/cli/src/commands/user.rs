//! `tessera user …`

use tessera_core::model::{User, UserStatus};
use tessera_core::store::UserQuery;
use tessera_core::views::{TokenView, UserView};
use tessera_core::wildcard::Wildcard;
use tessera_server::node::Node;

use super::{actor, read_password};
use crate::UsageError;
use crate::args::{UserCmd, UserRef};
use crate::output::{self, opt};

pub async fn find(node: &Node, u: &UserRef) -> anyhow::Result<User> {
    Ok(node.admin.find_user(u.realm.as_deref(), &u.user).await?)
}

pub(crate) fn label(u: &User) -> String {
    if u.realm == tessera_core::names::DEFAULT_REALM {
        u.username.clone()
    } else {
        format!("{}@{}", u.username, u.realm)
    }
}

pub async fn run(node: &Node, cmd: UserCmd) -> anyhow::Result<()> {
    let admin = &node.admin;
    let now = node.ctx.clock.now();
    match cmd {
        UserCmd::Add { user, password } => {
            let pw = read_password(&password)?;
            let has_pw = pw.is_some();
            let u = admin.add_user(&actor(), user.realm.as_deref(), &user.user, pw).await?;
            outln!(
                "added user {} ({}, {})",
                label(&u),
                u.status(now).as_str(),
                if has_pw { "local password set" } else { "no local password: the code alone logs in" }
            );
        }
        UserCmd::List { search, status, realm, limit, offset, json } => {
            let pattern = search.as_deref().map(Wildcard::parse).transpose().map_err(UsageError)?;
            let status = status.as_deref().map(str::parse::<UserStatus>).transpose().map_err(UsageError)?;
            if limit == 0 || limit > tessera_core::admin::MAX_LIST_LIMIT {
                return Err(UsageError(format!("--limit must be 1–{}", tessera_core::admin::MAX_LIST_LIMIT)).into());
            }
            let users = admin.list_users(UserQuery { realm, pattern, status, limit, offset }).await?;
            let views: Vec<UserView> = users.iter().map(|u| UserView::new(u, now)).collect();
            if json {
                return output::json(&views);
            }
            let rows: Vec<Vec<String>> = views
                .iter()
                .map(|v| {
                    vec![
                        v.username.clone(),
                        v.realm.clone(),
                        v.status.as_str().to_string(),
                        v.failures.to_string(),
                        v.last_attempt.as_ref().map(|a| a.at.clone()).unwrap_or_else(|| "-".into()),
                        v.last_success
                            .as_ref()
                            .map(|a| format!("{} {} {}", a.at, opt(&a.address), opt(&a.client)))
                            .unwrap_or_else(|| "-".into()),
                    ]
                })
                .collect();
            output::table(&["USER", "REALM", "STATUS", "FAILURES", "LAST ATTEMPT", "LAST SUCCESS"], &rows);
            eprintln!("{} user(s)", views.len());
        }
        UserCmd::Show { user, json } => {
            let u = find(node, &user).await?;
            let tokens: Vec<TokenView> = admin.tokens(&u).await?.iter().map(TokenView::from).collect();
            let left = admin.backup_codes_left(&u).await?;
            let groups = admin.groups_of(&u).await?;
            let view = UserView::new(&u, now);
            // Grace (first factor alone) only matters while the policy grants
            // it and the user has no confirmed token.
            let grace = admin.policy().await?.grace_for(u.grace_used, u.created_at).filter(|_| !u.registered);
            if json {
                let grace = grace.map(|g| {
                    serde_json::json!({
                        "logins_left": g.logins_left,
                        "until": g.until.map(|t| t.to_rfc3339()),
                        "allowed_now": g.allows(now),
                    })
                });
                return output::json(&serde_json::json!({
                    "user": view, "tokens": tokens, "backup_codes_left": left, "groups": groups, "grace": grace,
                }));
            }
            outln!("user:          {}", view.username);
            outln!("realm:         {}", view.realm);
            outln!("id:            {}", view.id);
            outln!("status:        {}", view.status.as_str());
            outln!("password:      {}", if view.has_password { "set" } else { "none" });
            outln!("failures:      {}", view.failures);
            if let Some(t) = &view.locked_until {
                outln!("locked until:  {t}");
            }
            for (name, a) in [("last attempt:", &view.last_attempt), ("last success:", &view.last_success)] {
                match a {
                    Some(a) => outln!("{name:<14} {} from {} via {}", a.at, opt(&a.address), opt(&a.client)),
                    None => outln!("{name:<14} never"),
                }
            }
            outln!("backup codes:  {left} unused");
            if let Some(g) = grace {
                let mut limits = Vec::new();
                if let Some(n) = g.logins_left {
                    limits.push(format!("{n} login(s) left"));
                }
                if let Some(t) = g.until {
                    limits.push(format!("until {}", t.to_rfc3339()));
                }
                let state = if g.allows(now) { "" } else { " (used up: a token is needed now)" };
                outln!("grace:         {}{state}", limits.join(", "));
            }
            outln!("groups:        {}", if groups.is_empty() { "-".to_string() } else { groups.join(", ") });
            outln!("created:       {}", view.created_at);
            outln!("tokens:        {}", tokens.len());
            for t in &tokens {
                outln!(
                    "  {} {} {} {} digits{} ({}){}",
                    t.serial,
                    t.kind,
                    t.address.as_deref().unwrap_or(&t.algorithm),
                    t.digits,
                    t.period.map(|p| format!(" {p}s")).unwrap_or_default(),
                    t.state,
                    if t.description.is_empty() { String::new() } else { format!(" — {}", t.description) }
                );
            }
        }
        UserCmd::Unlock(r) => {
            let u = find(node, &r).await?;
            admin.unlock(&actor(), &u).await?;
            outln!("unlocked {}", label(&u));
        }
        UserCmd::Reset(r) => {
            let u = find(node, &r).await?;
            admin.reset(&actor(), &u).await?;
            outln!("reset {}: tokens, backup codes and lock state removed; the user is unregistered", label(&u));
        }
        UserCmd::Disable(r) => {
            let u = find(node, &r).await?;
            admin.set_disabled(&actor(), &u, true).await?;
            outln!("disabled {}", label(&u));
        }
        UserCmd::Enable(r) => {
            let u = find(node, &r).await?;
            admin.set_disabled(&actor(), &u, false).await?;
            outln!("enabled {}", label(&u));
        }
        UserCmd::Delete(r) => {
            let u = find(node, &r).await?;
            admin.delete_user(&actor(), &u).await?;
            outln!("deleted {}", label(&u));
        }
        UserCmd::Passwd { user, password, remove } => {
            let u = find(node, &user).await?;
            let pw = if remove {
                None
            } else {
                Some(
                    read_password(&password)?
                        .ok_or_else(|| UsageError("give --password-stdin, --password-file FILE or --remove".into()))?,
                )
            };
            let removing = pw.is_none();
            admin.set_password(&actor(), &u, pw).await?;
            outln!("{} the local password of {}", if removing { "removed" } else { "set" }, label(&u));
        }
    }
    Ok(())
}
