//! `tessera export users` / `tessera import users`: moving users between
//! installations as JSON lines. Secrets (OTP seeds, password hashes) are
//! only ever written into an age-encrypted file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use clap::{Args, Subcommand};
use serde::{Deserialize, Serialize};
use tessera_core::model::{OobChannel, TokenState};
use tessera_core::otp_match::open_secret;
use tessera_core::store::UserQuery;
use tessera_otp::{OtpKind, OtpParams, Secret};
use tessera_server::node::Node;

use super::actor;
use super::backup::{PassphraseInput, write_atomically};
use crate::UsageError;

const FORMAT: &str = "tessera-users";
const VERSION: u32 = 1;
/// Largest export read back (decrypted), bytes.
const MAX_FILE: u64 = 2 * 1024 * 1024 * 1024;

#[derive(Debug, Subcommand)]
pub enum ExportCmd {
    /// Configuration kept in the database: policy, RADIUS clients, realms,
    /// reply rules (one JSON document).
    Config {
        #[arg(long)]
        out: PathBuf,
        /// Include RADIUS shared secrets and realm secrets; the file is then
        /// encrypted. Without it, clients and realm secrets must be re-entered.
        #[arg(long)]
        secrets: bool,
        #[command(flatten)]
        passphrase: PassphraseInput,
    },
    /// Users with their tokens, statuses and groups, one JSON object per line.
    Users {
        #[arg(long)]
        out: PathBuf,
        /// Include OTP seeds and password hashes; the file is then encrypted
        /// (age, scrypt passphrase). Without it, no secret is written.
        #[arg(long)]
        secrets: bool,
        #[command(flatten)]
        passphrase: PassphraseInput,
    },
}

#[derive(Debug, Subcommand)]
pub enum ImportCmd {
    /// Configuration from `tessera export config`.
    Config(ImportUsersArgs),
    /// Users from `tessera export users` (encrypted or not).
    Users(ImportUsersArgs),
}

#[derive(Debug, Args)]
pub struct ImportUsersArgs {
    pub file: PathBuf,
    /// Report what would change; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// For users that exist already: `skip` them (default) or `merge`
    /// (add their missing tokens and groups, take the disabled flag).
    #[arg(long, default_value = "skip")]
    pub on_conflict: String,
    #[command(flatten)]
    pub passphrase: PassphraseInput,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Header {
    format: String,
    version: u32,
    secrets: bool,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct UserLine {
    realm: String,
    username: String,
    disabled: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    password_hash: Option<String>,
    groups: Vec<String>,
    tokens: Vec<TokenLine>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenLine {
    serial: String,
    #[serde(rename = "type")]
    kind: String,
    algorithm: String,
    digits: u8,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    period: Option<u32>,
    /// HOTP: next counter; TOTP: lowest step still accepted (replay state).
    counter: i64,
    state: String,
    description: String,
    /// Base32; only in encrypted exports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    secret: Option<String>,
    /// Email and SMS tokens (`type` `email` / `sms`): where codes go. Not a
    /// secret, so in every export; such a token is re-created from it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    address: Option<String>,
}

/// Writes `text` to `out`: encrypted when `pass` is given, else plain (0600).
fn write_out(out: &Path, pass: Option<tessera_backup::SecretString>, text: &[u8]) -> anyhow::Result<()> {
    match pass {
        Some(p) => write_atomically(out, |f| tessera_backup::encrypt_bytes(f, p, text).map(|_| ())),
        None => write_atomically(out, |f| {
            use std::io::Write as _;
            f.write_all(text).map_err(tessera_backup::Error::from)
        }),
    }
}

/// The passphrase for an export, checked against `--secrets`.
fn export_passphrase(
    out: &Path,
    secrets: bool,
    passphrase: &PassphraseInput,
    env: &BTreeMap<String, String>,
) -> anyhow::Result<Option<tessera_backup::SecretString>> {
    if out.exists() {
        return Err(UsageError(format!("{} exists; not replacing it", out.display())).into());
    }
    if secrets {
        return Ok(Some(passphrase.read(env, true)?));
    }
    if passphrase.passphrase_file.is_some() || passphrase.passphrase_env.is_some() {
        return Err(UsageError("a passphrase without --secrets: nothing would be secret".into()).into());
    }
    Ok(None)
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigDoc {
    format: String,
    version: u32,
    secrets: bool,
    policy: tessera_core::policy::Policy,
    radius_clients: Vec<ClientDoc>,
    realms: Vec<RealmDoc>,
    reply_rules: Vec<RuleDoc>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ClientDoc {
    name: String,
    address: String,
    message_authenticator: String,
    default_realm: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    secret: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RealmDoc {
    name: String,
    settings: tessera_core::realm::RealmSettings,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    secrets: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleDoc {
    scope: tessera_core::model::RuleScope,
    attribute: String,
    value: String,
}

const CONFIG_FORMAT: &str = "tessera-config";

/// `--on-conflict`: whether existing records are merged (else skipped).
fn merge_on_conflict(mode: &str) -> anyhow::Result<bool> {
    match mode {
        "skip" => Ok(false),
        "merge" => Ok(true),
        other => Err(UsageError(format!("--on-conflict `{other}`: expected skip or merge")).into()),
    }
}

pub async fn export(node: &Node, env: &BTreeMap<String, String>, cmd: ExportCmd) -> anyhow::Result<()> {
    let (out, secrets, passphrase) = match cmd {
        ExportCmd::Config { out, secrets, passphrase } => {
            let pass = export_passphrase(&out, secrets, &passphrase, env)?;
            return export_config(node, &out, pass).await;
        }
        ExportCmd::Users { out, secrets, passphrase } => (out, secrets, passphrase),
    };
    let pass = export_passphrase(&out, secrets, &passphrase, env)?;
    let admin = &node.admin;
    let mut groups_of: BTreeMap<i64, Vec<String>> = BTreeMap::new();
    for (g, members) in admin.groups().await? {
        for m in members {
            groups_of.entry(m.0).or_default().push(g.clone());
        }
    }
    let mut text = zeroize::Zeroizing::new(String::new());
    text.push_str(&serde_json::to_string(&Header { format: FORMAT.into(), version: VERSION, secrets })?);
    text.push('\n');
    let (mut users, mut tokens, mut offset) = (0usize, 0usize, 0u32);
    loop {
        let page = admin.list_users(UserQuery { limit: 10_000, offset, ..UserQuery::default() }).await?;
        if page.is_empty() {
            break;
        }
        offset += page.len() as u32;
        for u in &page {
            let mut line = UserLine {
                realm: u.realm.clone(),
                username: u.username.clone(),
                disabled: u.disabled,
                password_hash: if secrets { u.password_hash.clone() } else { None },
                groups: groups_of.get(&u.id.0).cloned().unwrap_or_default(),
                tokens: Vec::new(),
            };
            for t in admin.tokens(u).await? {
                let (kind, period) = match (&t.oob, t.params.kind) {
                    (Some(o), _) => (o.channel.as_str(), None),
                    (None, OtpKind::Totp { period }) => ("totp", Some(period.get())),
                    (None, OtpKind::Hotp) => ("hotp", None),
                };
                // An email/SMS token's secret only keys its codes' digests:
                // a new one is made on import.
                let secret = if secrets && t.oob.is_none() {
                    let s = open_secret(&node.ctx.keys, &t)
                        .map_err(|e| anyhow::anyhow!("token {}: secret cannot be opened: {e}", t.serial))?;
                    Some(s.to_base32())
                } else {
                    None
                };
                line.tokens.push(TokenLine {
                    serial: t.serial.clone(),
                    kind: kind.into(),
                    algorithm: t.params.algorithm.to_string(),
                    digits: t.params.digits.get(),
                    period,
                    counter: t.counter,
                    state: t.state.as_str().into(),
                    description: t.description.clone(),
                    secret,
                    address: t.oob.as_ref().map(|o| o.address.clone()),
                });
                tokens += 1;
            }
            text.push_str(&serde_json::to_string(&line)?);
            text.push('\n');
            users += 1;
        }
    }
    write_out(&out, pass, text.as_bytes())?;
    outln!(
        "exported {users} users and {tokens} tokens to {}{}",
        out.display(),
        if secrets { " (encrypted, with secrets)" } else { " (no secrets: tokens cannot be re-created from it)" }
    );
    Ok(())
}

fn read_export(path: &Path, env: &BTreeMap<String, String>, pass: &PassphraseInput) -> anyhow::Result<String> {
    let raw = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let plain = if raw.starts_with(b"age-encryption.org/") {
        let p = pass.read(env, false)?;
        tessera_backup::decrypt_bytes(raw.as_slice(), p, MAX_FILE)
            .map_err(|e| UsageError(format!("{}: {e}", path.display())))?
    } else {
        raw
    };
    String::from_utf8(plain).map_err(|_| UsageError(format!("{}: not UTF-8 JSON lines", path.display())).into())
}

async fn export_config(node: &Node, out: &Path, pass: Option<tessera_backup::SecretString>) -> anyhow::Result<()> {
    let admin = &node.admin;
    let secrets = pass.is_some();
    let mut clients = Vec::new();
    for c in admin.radius_clients().await? {
        let secret = if secrets {
            Some(String::from_utf8(admin.radius_secret(&c)?.to_vec()).context("a RADIUS secret is not UTF-8")?)
        } else {
            None
        };
        clients.push(ClientDoc {
            name: c.name.clone(),
            address: c.address.to_string(),
            message_authenticator: c.message_authenticator.as_str().into(),
            default_realm: c.default_realm.clone(),
            secret,
        });
    }
    let mut realms = Vec::new();
    for r in admin.realms().await? {
        let s = if secrets {
            Some(admin.realm_secrets(&r)?.into_iter().map(|(k, v)| (k, v.to_string())).collect())
        } else {
            None
        };
        realms.push(RealmDoc { name: r.name.clone(), settings: r.settings.clone(), secrets: s });
    }
    let reply_rules = admin
        .reply_rules()
        .await?
        .into_iter()
        .map(|r| RuleDoc { scope: r.scope, attribute: r.attribute, value: r.value })
        .collect();
    let doc = ConfigDoc {
        format: CONFIG_FORMAT.into(),
        version: VERSION,
        secrets,
        policy: admin.policy().await?,
        radius_clients: clients,
        realms,
        reply_rules,
    };
    let text = zeroize::Zeroizing::new(serde_json::to_string_pretty(&doc)? + "\n");
    write_out(out, pass, text.as_bytes())?;
    outln!(
        "exported the policy, {} RADIUS clients, {} realms and {} reply rules to {}{}",
        doc.radius_clients.len(),
        doc.realms.len(),
        doc.reply_rules.len(),
        out.display(),
        if secrets { " (encrypted, with secrets)" } else { " (no secrets)" }
    );
    Ok(())
}

async fn import_config(node: &Node, env: &BTreeMap<String, String>, a: ImportUsersArgs) -> anyhow::Result<()> {
    let merge = merge_on_conflict(&a.on_conflict)?;
    let text = zeroize::Zeroizing::new(read_export(&a.file, env, &a.passphrase)?);
    let doc: ConfigDoc = serde_json::from_str(&text)
        .map_err(|e| UsageError(format!("{}: not a config export: {e}", a.file.display())))?;
    if doc.format != CONFIG_FORMAT || doc.version > VERSION {
        return Err(UsageError(format!("not a `{CONFIG_FORMAT}` version ≤ {VERSION} file")).into());
    }
    doc.policy.validate().map_err(|e| UsageError(format!("policy: {e}")))?;
    for r in &doc.realms {
        r.settings.validate()?;
    }
    let admin = &node.admin;
    let mut notes = Vec::new();
    let have_clients: Vec<String> = admin.radius_clients().await?.into_iter().map(|c| c.name).collect();
    let have_realms: Vec<String> = admin.realms().await?.into_iter().map(|r| r.name).collect();
    let have_rules: Vec<(String, String, String)> =
        admin.reply_rules().await?.into_iter().map(|r| (format!("{:?}", r.scope), r.attribute, r.value)).collect();
    if a.dry_run {
        let new_clients = doc.radius_clients.iter().filter(|c| !have_clients.contains(&c.name)).count();
        let new_realms = doc.realms.iter().filter(|r| !have_realms.contains(&r.name)).count();
        outln!(
            "dry run (nothing changed): policy would be replaced; {new_clients} new RADIUS clients, {new_realms} new realms"
        );
        return Ok(());
    }
    admin.set_policy(&actor(), &doc.policy).await?;
    let (mut clients, mut realms, mut rules) = (0, 0, 0);
    for c in &doc.radius_clients {
        if have_clients.contains(&c.name) {
            if merge {
                admin.delete_radius_client(&actor(), &c.name).await?;
            } else {
                notes.push(format!("RADIUS client {}: exists; skipped", c.name));
                continue;
            }
        }
        let Some(secret) = &c.secret else {
            notes.push(format!("RADIUS client {}: no secret in the file; add it with `tessera client add`", c.name));
            continue;
        };
        let mode = c.message_authenticator.parse().map_err(UsageError)?;
        admin
            .add_radius_client(&actor(), &c.name, &c.address, secret.as_bytes(), mode, c.default_realm.as_deref())
            .await?;
        clients += 1;
    }
    for r in doc.realms {
        if have_realms.contains(&r.name) && !merge {
            notes.push(format!("realm {}: exists; skipped", r.name));
            continue;
        }
        let secrets = r.secrets.map(|m| m.into_iter().map(|(k, v)| (k, zeroize::Zeroizing::new(v))).collect());
        if secrets.is_none()
            && r.settings
                .sources
                .iter()
                .any(|s| matches!(s, tessera_core::realm::SourceSettings::Ldap(l) if l.bind_dn.is_some()))
        {
            notes
                .push(format!("realm {}: its secrets were not exported; re-add them with `tessera realm add`", r.name));
        }
        admin.put_realm(&actor(), &r.name, r.settings, secrets).await?;
        realms += 1;
    }
    for r in doc.reply_rules {
        if have_rules.contains(&(format!("{:?}", r.scope), r.attribute.clone(), r.value.clone())) {
            continue;
        }
        admin.add_reply_rule(&actor(), r.scope, &r.attribute, &r.value).await?;
        rules += 1;
    }
    for n in &notes {
        outln!("{n}");
    }
    outln!("policy replaced; {clients} RADIUS clients, {realms} realms and {rules} reply rules added");
    Ok(())
}

pub async fn import(node: &Node, env: &BTreeMap<String, String>, cmd: ImportCmd) -> anyhow::Result<()> {
    let a = match cmd {
        ImportCmd::Config(a) => return import_config(node, env, a).await,
        ImportCmd::Users(a) => a,
    };
    let merge = merge_on_conflict(&a.on_conflict)?;
    let text = zeroize::Zeroizing::new(read_export(&a.file, env, &a.passphrase)?);
    let mut lines = text.lines().enumerate();
    let header: Header = match lines.next() {
        Some((_, l)) => {
            serde_json::from_str(l).map_err(|e| UsageError(format!("line 1: not an export header: {e}")))?
        }
        None => return Err(UsageError("the file is empty".into()).into()),
    };
    if header.format != FORMAT || header.version > VERSION {
        return Err(UsageError(format!("not a `{FORMAT}` version ≤ {VERSION} file")).into());
    }
    // Parse everything first: a bad line changes nothing.
    let mut users = Vec::new();
    for (i, l) in lines {
        if l.trim().is_empty() {
            continue;
        }
        let u: UserLine = serde_json::from_str(l).map_err(|e| UsageError(format!("line {}: {e}", i + 1)))?;
        for t in &u.tokens {
            if t.secret.is_some() && !header.secrets {
                return Err(UsageError(format!("line {}: a secret in a file that declares none", i + 1)).into());
            }
        }
        users.push(u);
    }
    let admin = &node.admin;
    let (mut created, mut merged, mut skipped, mut tokens, mut tokens_without_secret) = (0, 0, 0, 0, 0);
    // One line per user (what exists, what was added), then the totals.
    let label = |u: &UserLine| {
        if u.realm == tessera_core::names::DEFAULT_REALM {
            u.username.clone()
        } else {
            format!("{}@{}", u.username, u.realm)
        }
    };
    let would = if a.dry_run { "would be " } else { "" };
    for u in users {
        let existing = admin.find_user(Some(&u.realm), &u.username).await.ok();
        if existing.is_some() && !merge {
            skipped += 1;
            outln!("{}: exists; skipped (--on-conflict merge adds its missing tokens and groups)", label(&u));
            continue;
        }
        if a.dry_run {
            let n = u.tokens.iter().filter(|t| t.secret.is_some() || t.address.is_some()).count();
            let without = u.tokens.len() - n;
            if existing.is_some() {
                merged += 1;
                outln!("{}: exists; {would}merged ({})", label(&u), token_note(n, without));
            } else {
                created += 1;
                outln!("{}: {would}created ({})", label(&u), token_note(n, without));
            }
            tokens += n;
            tokens_without_secret += without;
            continue;
        }
        let (user, what) = match existing {
            Some(e) => {
                merged += 1;
                (e, "exists; merged")
            }
            None => {
                created += 1;
                (admin.import_user(&actor(), &u.realm, &u.username, u.password_hash.clone()).await?, "created")
            }
        };
        let (mut added, mut without) = (0, 0);
        let have: Vec<String> = admin.tokens(&user).await?.into_iter().map(|t| t.serial).collect();
        for t in &u.tokens {
            if have.contains(&t.serial) {
                continue;
            }
            if let (Ok(channel), Some(address)) = (t.kind.parse::<OobChannel>(), &t.address) {
                admin
                    .add_oob_token(&actor(), &user, channel, address, Some(t.digits), Some(&t.serial), &t.description)
                    .await?;
                added += 1;
                continue;
            }
            let Some(b32) = &t.secret else {
                without += 1;
                continue;
            };
            let secret = Secret::from_base32(b32).map_err(|e| UsageError(format!("token {}: {e}", t.serial)))?;
            let params: OtpParams =
                tessera_core::admin::otp_params(Some(&t.kind), Some(&t.algorithm), Some(t.digits), t.period)?;
            let counter = u64::try_from(t.counter.max(0)).unwrap_or(0);
            let pending = t.state == TokenState::Pending.as_str();
            admin
                .add_token(&actor(), &user, &secret, params, counter, Some(&t.serial), &t.description, pending)
                .await?;
            added += 1;
        }
        for g in &u.groups {
            if let Err(e) = admin.add_to_group(&actor(), g, &user).await
                && !matches!(e, tessera_core::CoreError::Conflict(_))
            {
                return Err(e.into());
            }
        }
        if u.disabled != user.disabled {
            admin.set_disabled(&actor(), &user, u.disabled).await?;
        }
        outln!("{}: {what} ({})", label(&u), token_note(added, without));
        tokens += added;
        tokens_without_secret += without;
    }
    outln!(
        "{}{created} users created, {merged} merged, {skipped} skipped (already there); {tokens} tokens added{}",
        if a.dry_run { "dry run (nothing changed): " } else { "" },
        if tokens_without_secret > 0 {
            format!(", {tokens_without_secret} tokens not re-created (no secret in the file)")
        } else {
            String::new()
        }
    );
    // Users that exist already are not a failure: an import can be run
    // again (after a partial run, or to top up) and says what it skipped.
    // Anything that did fail has returned an error above (exit 1).
    Ok(())
}

/// "1 token added", "no tokens", "2 tokens added, 1 not re-created (no secret in the file)".
fn token_note(added: usize, without_secret: usize) -> String {
    let mut note = match added {
        0 => "no tokens added".to_string(),
        1 => "1 token added".to_string(),
        n => format!("{n} tokens added"),
    };
    if without_secret > 0 {
        note.push_str(&format!(", {without_secret} not re-created (no secret in the file)"));
    }
    note
}
