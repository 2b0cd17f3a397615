//! `tessera client …`, `tessera group …`, `tessera reply …`.

use anyhow::Context as _;
use tessera_core::model::{MessageAuthenticatorMode, RuleScope};
use tessera_core::views::{RadiusClientView, ReplyRuleView};
use tessera_server::config::Config;
use tessera_server::node::Node;
use zeroize::Zeroizing;

use super::actor;
use super::user::find;
use crate::UsageError;
use crate::args::{ClientCmd, GroupCmd, ReplyCmd, UserRef};
use crate::output;

fn read_secret(file: Option<&std::path::Path>) -> anyhow::Result<Zeroizing<Vec<u8>>> {
    let text = match file {
        Some(f) => Zeroizing::new(std::fs::read_to_string(f).with_context(|| format!("reading {}", f.display()))?),
        None => {
            let mut s = Zeroizing::new(String::new());
            std::io::stdin().read_line(&mut s).context("reading the secret from standard input")?;
            s
        }
    };
    let line = text.lines().next().unwrap_or("");
    if line.is_empty() {
        return Err(UsageError("the secret is empty".into()).into());
    }
    Ok(Zeroizing::new(line.as_bytes().to_vec()))
}

pub async fn client(node: &Node, cmd: ClientCmd) -> anyhow::Result<()> {
    let admin = &node.admin;
    match cmd {
        ClientCmd::Add { name, address, secret_file, secret_stdin: _, message_authenticator, default_realm } => {
            let mode: MessageAuthenticatorMode = message_authenticator.parse().map_err(UsageError)?;
            if node.config.radius.client.iter().any(|c| c.name == name) {
                anyhow::bail!(
                    "RADIUS client `{name}` is declared in the config file ([[radius.client]]); \
                     change it there and reload (SIGHUP), or pick another name"
                );
            }
            let secret = read_secret(secret_file.as_deref())?;
            let c = admin.add_radius_client(&actor(), &name, &address, &secret, mode, default_realm.as_deref()).await?;
            outln!(
                "added RADIUS client {} for {} (Message-Authenticator: {})",
                c.name,
                c.address,
                c.message_authenticator.as_str()
            );
        }
        ClientCmd::List { json } => {
            let mut list: Vec<RadiusClientView> =
                admin.radius_clients().await?.iter().map(RadiusClientView::from).collect();
            // `[[radius.client]]` entries of the config file are served too;
            // they have no creation time, so they say where they come from.
            list.extend(node.config.radius.client.iter().map(|c| RadiusClientView {
                name: c.name.clone(),
                address: c.address.clone(),
                message_authenticator: c.message_authenticator.clone(),
                signs_requests: false,
                created_at: "config file".into(),
            }));
            if json {
                return output::json(&list);
            }
            let rows: Vec<Vec<String>> = list
                .iter()
                .map(|c| vec![c.name.clone(), c.address.clone(), c.message_authenticator.clone(), c.created_at.clone()])
                .collect();
            output::table(&["NAME", "ADDRESS", "MESSAGE-AUTHENTICATOR", "CREATED"], &rows);
        }
        ClientCmd::Show { name, json } => {
            let c = admin
                .radius_clients()
                .await?
                .into_iter()
                .find(|c| c.name == name)
                .ok_or_else(|| tessera_core::CoreError::NotFound(format!("RADIUS client `{name}`")))?;
            let v = RadiusClientView::from(&c);
            if json {
                return output::json(&v);
            }
            outln!("name:                  {}", v.name);
            outln!("address:               {}", v.address);
            outln!("message-authenticator: {}", v.message_authenticator);
            let signs = match (v.signs_requests, v.message_authenticator.as_str()) {
                (false, _) => "not seen yet",
                (true, "off") => {
                    "yes (seen); in mode `off` unsigned requests are accepted too (`require` would refuse them)"
                }
                (true, _) => "yes (seen)",
            };
            outln!("signs its requests:    {signs}");
            outln!("default realm:         {}", c.default_realm.as_deref().unwrap_or("(policy default)"));
            outln!("created:               {}", v.created_at);
        }
        ClientCmd::Delete { name } => {
            admin.delete_radius_client(&actor(), &name).await?;
            outln!("deleted RADIUS client {name}");
        }
    }
    Ok(())
}

pub async fn group(node: &Node, cmd: GroupCmd) -> anyhow::Result<()> {
    let admin = &node.admin;
    match cmd {
        GroupCmd::Add { group, user, realm } => {
            let u = find(node, &UserRef { user, realm }).await?;
            admin.add_to_group(&actor(), &group, &u).await?;
            outln!("added {} to group {group}", u.username);
        }
        GroupCmd::Remove { group, user, realm } => {
            let u = find(node, &UserRef { user, realm }).await?;
            admin.remove_from_group(&actor(), &group, &u).await?;
            outln!("removed {} from group {group}", u.username);
        }
        GroupCmd::List { json } => {
            let mut out = Vec::new();
            for (g, ids) in admin.groups().await? {
                let mut names = Vec::new();
                for id in ids {
                    if let Some(u) = node.ctx.store.user_by_id(&id).await? {
                        names.push(if u.realm == tessera_core::names::DEFAULT_REALM {
                            u.username
                        } else {
                            format!("{}@{}", u.username, u.realm)
                        });
                    }
                }
                out.push((g, names));
            }
            if json {
                let v: Vec<_> = out.iter().map(|(g, m)| serde_json::json!({"group": g, "members": m})).collect();
                return output::json(&v);
            }
            let rows: Vec<Vec<String>> = out.iter().map(|(g, m)| vec![g.clone(), m.join(", ")]).collect();
            output::table(&["GROUP", "MEMBERS"], &rows);
        }
    }
    Ok(())
}

pub async fn reply(node: &Node, cfg: &Config, cmd: ReplyCmd) -> anyhow::Result<()> {
    let admin = &node.admin;
    match cmd {
        ReplyCmd::Add { user, group, all, attributes } => {
            let scope = match (user, group, all) {
                (Some(u), None, false) => RuleScope::User(u),
                (None, Some(g), false) => RuleScope::Group(g),
                (None, None, true) => RuleScope::All,
                _ => return Err(UsageError("give one of --user NAME, --group NAME or --all".into()).into()),
            };
            let dict = tessera_server::radius::dictionary::load(cfg)?;
            let mut checked = Vec::new();
            for a in &attributes {
                let (name, value) = a
                    .split_once('=')
                    .map(|(n, v)| (n.trim(), v.trim()))
                    .ok_or_else(|| UsageError(format!("`{a}`: expected Attribute-Name=value")))?;
                dict.make_attribute(name, value).map_err(|e| UsageError(format!("`{a}`: {e}")))?;
                checked.push((name.to_string(), value.to_string()));
            }
            for (name, value) in checked {
                let r = admin.add_reply_rule(&actor(), scope.clone(), &name, &value).await?;
                outln!("added reply rule {}: {} = {}", r.id, r.attribute, r.value);
            }
        }
        ReplyCmd::List { json } => {
            let list: Vec<ReplyRuleView> = admin.reply_rules().await?.iter().map(ReplyRuleView::from).collect();
            if json {
                return output::json(&list);
            }
            let rows: Vec<Vec<String>> = list
                .iter()
                .map(|r| {
                    vec![
                        r.id.clone(),
                        match &r.subject {
                            Some(s) => format!("{} {s}", r.scope),
                            None => r.scope.clone(),
                        },
                        format!("{} = {}", r.attribute, r.value),
                    ]
                })
                .collect();
            output::table(&["ID", "FOR", "ATTRIBUTE"], &rows);
            if !cfg.radius.reply.is_empty() {
                eprintln!("(plus {} rule(s) from [[radius.reply]] in the configuration)", cfg.radius.reply.len());
            }
        }
        ReplyCmd::Delete { id } => {
            let id: i64 = id.parse().map_err(|_| UsageError(format!("`{id}` is not a rule id")))?;
            admin.delete_reply_rule(&actor(), id).await?;
            outln!("deleted reply rule {id}");
        }
    }
    Ok(())
}
