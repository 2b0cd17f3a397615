//! `tessera token …` and `tessera backup-codes`.

use tessera_core::admin::{otp_params, parse_secret};
use tessera_core::model::OobChannel;
use tessera_core::views::TokenView;
use tessera_server::node::Node;

use super::actor;
use super::user::find;
use crate::UsageError;
use crate::args::{OobTokenArgs, TokenCmd, UserRef};
use crate::output;

pub async fn run(node: &Node, cmd: TokenCmd) -> anyhow::Result<()> {
    let admin = &node.admin;
    match cmd {
        TokenCmd::Enroll { user, params, no_qr, json } => {
            let p = otp_params(params.kind.as_deref(), params.algorithm.as_deref(), params.digits, params.period)?;
            let u = find(node, &user).await?;
            let e = admin.enroll_token(&actor(), &u, p, &params.description).await?;
            if json {
                return output::json(&serde_json::json!({
                    "token": TokenView::from(&e.token),
                    "secret": e.secret.to_base32(),
                    "otpauth_uri": e.uri,
                }));
            }
            outln!("enrolled token {} for {} (pending until confirmed)", e.token.serial, user.user);
            outln!("secret:      {}", e.secret.to_base32());
            outln!("otpauth URI: {}", e.uri);
            if !no_qr && let Some(qr) = tessera_server::qr::terminal(&e.uri) {
                outln!("{qr}");
            }
            outln!("confirm with: tessera token confirm {} <current code>", user.user);
        }
        TokenCmd::Add { user, secret, secret_hex, params, counter, serial, pending, json } => {
            let p = otp_params(params.kind.as_deref(), params.algorithm.as_deref(), params.digits, params.period)?;
            let s = parse_secret(secret.as_deref(), secret_hex.as_deref())?;
            let u = find(node, &user).await?;
            let t =
                admin.add_token(&actor(), &u, &s, p, counter, serial.as_deref(), &params.description, pending).await?;
            if json {
                return output::json(&TokenView::from(&t));
            }
            outln!("added token {} for {} ({})", t.serial, user.user, t.state.as_str());
        }
        TokenCmd::AddEmail { user, address, oob } => add_oob(node, user, OobChannel::Email, &address, oob).await?,
        TokenCmd::AddSms { user, phone, oob } => add_oob(node, user, OobChannel::Sms, &phone, oob).await?,
        TokenCmd::Confirm { user, code } => {
            let u = find(node, &user).await?;
            let t = admin.confirm_token(&actor(), &u, &code).await?;
            outln!("confirmed token {}: {} is now active", t.serial, user.user);
            // The confirming code counts as used (replay protection), so
            // logging in with it right away would be refused as a replay.
            outln!("that code is now used up: use the next code to log in");
        }
        TokenCmd::List { user, realm, limit, offset, json } => {
            let tokens = match user {
                Some(user) => admin.tokens(&find(node, &UserRef { user, realm }).await?).await?,
                None => admin.list_tokens(limit, offset).await?,
            };
            let tokens: Vec<TokenView> = tokens.iter().map(TokenView::from).collect();
            if json {
                return output::json(&tokens);
            }
            let rows: Vec<Vec<String>> = tokens
                .iter()
                .map(|t| {
                    vec![
                        t.serial.clone(),
                        t.kind.clone(),
                        t.address.clone().unwrap_or_else(|| t.algorithm.clone()),
                        t.digits.to_string(),
                        t.period.map(|p| p.to_string()).unwrap_or_else(|| "-".into()),
                        t.state.clone(),
                        t.last_used_at.clone().unwrap_or_else(|| "-".into()),
                        t.description.clone(),
                    ]
                })
                .collect();
            output::table(
                &["SERIAL", "TYPE", "ALGORITHM/ADDRESS", "DIGITS", "PERIOD", "STATE", "LAST USED", "DESCRIPTION"],
                &rows,
            );
        }
        TokenCmd::Show { serial, json } => {
            let t = TokenView::from(&admin.find_token(&serial).await?);
            if json {
                return output::json(&t);
            }
            for (k, v) in [
                ("serial", t.serial.clone()),
                ("id", t.id.clone()),
                ("user id", t.user_id.clone()),
                ("type", t.kind.clone()),
                ("algorithm", t.algorithm.clone()),
                ("digits", t.digits.to_string()),
                ("period", t.period.map(|p| format!("{p}s")).unwrap_or_else(|| "-".into())),
                ("state", t.state.clone()),
                ("counter", t.counter.to_string()),
                ("drift", format!("{} step(s)", t.drift)),
                ("address", t.address.clone().unwrap_or_else(|| "-".into())),
                ("created", t.created_at.clone()),
                ("last used", t.last_used_at.clone().unwrap_or_else(|| "never".into())),
                ("description", t.description.clone()),
            ] {
                outln!("{:<12} {v}", format!("{k}:"));
            }
        }
        TokenCmd::Resync { serial, first, second } => {
            let codes = match (first.as_deref(), second.as_deref()) {
                (Some(a), Some(b)) => Some((a, b)),
                (None, None) => None,
                _ => {
                    return Err(UsageError("give two consecutive codes, or none to only reset the drift".into()).into());
                }
            };
            let t = admin.find_token(&serial).await?;
            let t = admin.resync_token(&actor(), &t, codes).await?;
            if codes.is_some() {
                outln!("resynchronised {} (counter {}, drift {})", t.serial, t.counter, t.drift);
            } else {
                outln!("reset the learned drift of {}", t.serial);
            }
        }
        TokenCmd::Delete { serial } => {
            let t = admin.find_token(&serial).await?;
            admin.delete_token(&actor(), &t).await?;
            outln!("deleted token {}", t.serial);
        }
        TokenCmd::Import(a) => return super::inventory::import(node, a).await,
        TokenCmd::Inventory { assigned, unassigned, manufacturer, model, limit, offset, json } => {
            let assigned = match (assigned, unassigned) {
                (true, _) => Some(true),
                (_, true) => Some(false),
                _ => None,
            };
            let q = tessera_core::store::InventoryQuery { assigned, manufacturer, model, limit, offset };
            return super::inventory::list(node, &q, json).await;
        }
        TokenCmd::Assign { serial, user } => {
            let u = find(node, &user).await?;
            let t = admin.assign_inventory(&actor(), &serial, &u).await?;
            outln!("assigned hardware token {} to {}", t.serial, user.user);
        }
        TokenCmd::Unassign { serial } => {
            admin.unassign_inventory(&actor(), &serial).await?;
            outln!("hardware token {serial} is back in the inventory");
        }
    }
    Ok(())
}

/// `token add-email` / `add-sms`; says so when policy does not enable codes
/// for the user yet, or this node has no such channel configured.
async fn add_oob(node: &Node, r: UserRef, channel: OobChannel, address: &str, a: OobTokenArgs) -> anyhow::Result<()> {
    let u = find(node, &r).await?;
    let t =
        node.admin.add_oob_token(&actor(), &u, channel, address, a.digits, a.serial.as_deref(), &a.description).await?;
    if a.json {
        return output::json(&TokenView::from(&t));
    }
    let to = t.oob.as_ref().map(|o| o.address.as_str()).unwrap_or_default();
    outln!("added {} token {} for {}: codes go to {to}", channel.as_str(), t.serial, r.user);
    let policy = node.admin.policy().await?;
    if !policy.oob_enabled(&u.realm, &u.username) {
        outln!(
            "note: no codes are sent until the policy enables them, e.g. `tessera policy set oob_users={}` \
             or `oob_realms={}`",
            r.user,
            u.realm
        );
    }
    let configured = match channel {
        OobChannel::Email => node.config.email.enabled(),
        OobChannel::Sms => node.config.sms.enabled(),
    };
    if !configured {
        outln!(
            "note: this configuration has no {} set up ({})",
            channel.as_str(),
            if channel == OobChannel::Email { "[email] host" } else { "[sms] url" }
        );
    }
    Ok(())
}

pub async fn backup_codes(node: &Node, r: UserRef) -> anyhow::Result<()> {
    let u = find(node, &r).await?;
    let codes = node.admin.regenerate_backup_codes(&actor(), &u).await?;
    outln!("backup codes for {} (each works once; any earlier set is now void):", r.user);
    for c in &codes {
        outln!("  {}", c.display());
    }
    if !u.registered {
        // Backup codes stand in for a confirmed token's code (tessera_core::auth).
        let realm = r.realm.as_deref().map(|x| format!(" --realm {x}")).unwrap_or_default();
        outln!(
            "note: {} has no confirmed token yet; these codes work once a token is confirmed \
             (`tessera token confirm {}{realm} <current code>`)",
            r.user,
            r.user
        );
    }
    Ok(())
}
