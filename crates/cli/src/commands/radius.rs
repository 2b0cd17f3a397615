//! `tessera client …`, `tessera group …`, `tessera reply …`.

use anyhow::Context as _;
use tessera_core::admin::{MAX_SECRET_OVERLAP_SECONDS, RadiusClientEdit};
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

/// `--keep-old-for`: 90s, 30m, 24h, 7d or plain seconds; 0 to 30 days.
fn overlap_seconds(text: &str) -> Result<i64, UsageError> {
    tessera_core::clock::parse_age_seconds(text).filter(|s| (0..=MAX_SECRET_OVERLAP_SECONDS).contains(s)).ok_or_else(
        || UsageError(format!("--keep-old-for `{text}`: a duration up to 30d, e.g. 90s, 30m, 24h, 7d (0: no overlap)")),
    )
}

/// A `[[radius.client]]` of the config file is changed there, not here.
fn not_from_config(node: &Node, name: &str) -> anyhow::Result<()> {
    if node.config.radius.client.iter().any(|c| c.name == name) {
        anyhow::bail!(
            "RADIUS client `{name}` is declared in the config file ([[radius.client]]); change it there and reload \
             (SIGHUP)"
        );
    }
    Ok(())
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
            let now = node.ctx.clock.now();
            let mut list: Vec<RadiusClientView> =
                admin.radius_clients().await?.iter().map(|c| RadiusClientView::new(c, now)).collect();
            // `[[radius.client]]` entries of the config file are served too;
            // they have no creation time, so they say where they come from.
            list.extend(node.config.radius.client.iter().map(|c| RadiusClientView {
                name: c.name.clone(),
                address: c.address.clone(),
                message_authenticator: c.message_authenticator.clone(),
                signs_requests: false,
                created_at: "config file".into(),
                secret_change: None,
            }));
            if json {
                return output::json(&list);
            }
            let rows: Vec<Vec<String>> = list
                .iter()
                .map(|c| {
                    let secret = match &c.secret_change {
                        Some(s) if s.old_secret == "accepted" => format!(
                            "old also until {} ({})",
                            s.old_secret_until.as_deref().unwrap_or("-"),
                            match &s.old_secret_last_used_at {
                                Some(l) => format!("old last used {l}"),
                                None => "old not used since the change".into(),
                            }
                        ),
                        Some(s) => format!("changed {}", s.changed_at),
                        None => "-".into(),
                    };
                    vec![
                        c.name.clone(),
                        c.address.clone(),
                        c.message_authenticator.clone(),
                        c.created_at.clone(),
                        secret,
                    ]
                })
                .collect();
            output::table(&["NAME", "ADDRESS", "MESSAGE-AUTHENTICATOR", "CREATED", "SECRET"], &rows);
        }
        ClientCmd::Show { name, json } => {
            let c = admin
                .radius_clients()
                .await?
                .into_iter()
                .find(|c| c.name == name)
                .ok_or_else(|| tessera_core::CoreError::NotFound(format!("RADIUS client `{name}`")))?;
            let v = RadiusClientView::new(&c, node.ctx.clock.now());
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
            if let Some(s) = &v.secret_change {
                outln!("secret changed:        {}", s.changed_at);
                let old = match (s.old_secret.as_str(), &s.old_secret_until) {
                    ("accepted", Some(e)) => format!("accepted until {e}"),
                    ("expired", Some(e)) => format!("refused since {e} (overlap ended)"),
                    _ => "refused (changed without overlap)".into(),
                };
                outln!("old secret:            {old}");
                outln!(
                    "old secret last used:  {}",
                    s.old_secret_last_used_at.as_deref().unwrap_or("not since the change")
                );
                outln!("new secret first used: {}", s.new_secret_first_used_at.as_deref().unwrap_or("not yet"));
                outln!("secret in use:         {}", s.summary);
            }
        }
        ClientCmd::SetSecret { name, secret_file, secret_stdin: _, keep_old_for } => {
            let keep = overlap_seconds(&keep_old_for)?;
            not_from_config(node, &name)?;
            let secret = read_secret(secret_file.as_deref())?;
            let done = admin.set_radius_client_secret(&actor(), &name, &secret, keep).await?;
            match (&done.client.rotation.sealed_old_secret, done.client.rotation.old_expires_at) {
                (Some(_), Some(until)) => outln!(
                    "changed the secret of RADIUS client {name}; the old secret is accepted too until {until}, then \
                     refused (`tessera client show {name}` tells which one the client uses)"
                ),
                _ => outln!("changed the secret of RADIUS client {name}; the old secret is refused from now on"),
            }
            if let Some(until) = done.previous_overlap_ended {
                outln!("the secret before it (which was to be accepted until {until}) is refused from now on");
            }
        }
        ClientCmd::Edit { name, address, message_authenticator, default_realm, no_default_realm } => {
            let mode = match message_authenticator {
                Some(m) => Some(m.parse::<MessageAuthenticatorMode>().map_err(UsageError)?),
                None => None,
            };
            let edit = RadiusClientEdit {
                address,
                message_authenticator: mode,
                default_realm: if no_default_realm { Some(None) } else { default_realm.map(Some) },
            };
            if edit.address.is_none() && edit.message_authenticator.is_none() && edit.default_realm.is_none() {
                return Err(UsageError(
                    "give at least one of --address, --message-authenticator, --default-realm, --no-default-realm"
                        .into(),
                )
                .into());
            }
            not_from_config(node, &name)?;
            let c = admin.edit_radius_client(&actor(), &name, &edit).await?;
            outln!(
                "RADIUS client {} now: address {}, Message-Authenticator {}, default realm {}",
                c.name,
                c.address,
                c.message_authenticator.as_str(),
                c.default_realm.as_deref().unwrap_or("(policy default)")
            );
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
