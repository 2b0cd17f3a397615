//! `tessera export users` / `tessera import users`: moving users between
//! installations as JSON lines. Secrets (OTP seeds, password hashes) are
//! only ever written into an age-encrypted file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use clap::{Args, Subcommand};
use serde::{Deserialize, Serialize};
use tessera_core::model::{TokenState, User};
use tessera_core::otp_match::open_secret;
use tessera_core::store::UserQuery;
use tessera_otp::{OtpKind, OtpParams, Secret};
use tessera_server::node::Node;

use super::actor;
use super::backup::{PassphraseInput, write_atomically};
use crate::{Exit, UsageError};

const FORMAT: &str = "tessera-users";
const VERSION: u32 = 1;
/// Largest export read back (decrypted), bytes.
const MAX_FILE: u64 = 2 * 1024 * 1024 * 1024;

#[derive(Debug, Subcommand)]
pub enum ExportCmd {
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
}

fn label(u: &User) -> String {
    if u.realm == tessera_core::names::DEFAULT_REALM {
        u.username.clone()
    } else {
        format!("{}@{}", u.username, u.realm)
    }
}

pub async fn export(node: &Node, env: &BTreeMap<String, String>, cmd: ExportCmd) -> anyhow::Result<()> {
    let ExportCmd::Users { out, secrets, passphrase } = cmd;
    if out.exists() {
        return Err(UsageError(format!("{} exists; not replacing it", out.display())).into());
    }
    let pass = if secrets {
        Some(passphrase.read(env, true)?)
    } else {
        if passphrase.passphrase_file.is_some() || passphrase.passphrase_env.is_some() {
            return Err(UsageError("a passphrase without --secrets: nothing would be secret".into()).into());
        }
        None
    };
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
                let (kind, period) = match t.params.kind {
                    OtpKind::Totp { period } => ("totp", Some(period.get())),
                    OtpKind::Hotp => ("hotp", None),
                };
                let secret = if secrets {
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
                });
                tokens += 1;
            }
            text.push_str(&serde_json::to_string(&line)?);
            text.push('\n');
            users += 1;
        }
    }
    match pass {
        Some(p) => write_atomically(&out, |f| tessera_backup::encrypt_bytes(f, p, text.as_bytes()).map(|_| ()))?,
        None => {
            std::fs::write(&out, text.as_bytes()).with_context(|| format!("writing {}", out.display()))?;
        }
    }
    println!(
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

pub async fn import(node: &Node, env: &BTreeMap<String, String>, cmd: ImportCmd) -> anyhow::Result<()> {
    let ImportCmd::Users(a) = cmd;
    let merge = match a.on_conflict.as_str() {
        "skip" => false,
        "merge" => true,
        other => return Err(UsageError(format!("--on-conflict `{other}`: expected skip or merge")).into()),
    };
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
    for u in users {
        let existing = admin.find_user(Some(&u.realm), &u.username).await.ok();
        if existing.is_some() && !merge {
            skipped += 1;
            println!("{}@{}: exists; skipped", u.username, u.realm);
            continue;
        }
        if a.dry_run {
            if existing.is_some() {
                merged += 1
            } else {
                created += 1
            }
            tokens += u.tokens.iter().filter(|t| t.secret.is_some()).count();
            tokens_without_secret += u.tokens.iter().filter(|t| t.secret.is_none()).count();
            continue;
        }
        let user = match existing {
            Some(e) => {
                merged += 1;
                e
            }
            None => {
                created += 1;
                admin.import_user(&actor(), &u.realm, &u.username, u.password_hash.clone()).await?
            }
        };
        let have: Vec<String> = admin.tokens(&user).await?.into_iter().map(|t| t.serial).collect();
        for t in &u.tokens {
            if have.contains(&t.serial) {
                continue;
            }
            let Some(b32) = &t.secret else {
                tokens_without_secret += 1;
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
            tokens += 1;
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
        let _ = label(&user);
    }
    println!(
        "{}{created} users created, {merged} merged, {skipped} skipped; {tokens} tokens added{}",
        if a.dry_run { "dry run (nothing changed): " } else { "" },
        if tokens_without_secret > 0 {
            format!(", {tokens_without_secret} tokens not re-created (no secret in the file)")
        } else {
            String::new()
        }
    );
    if skipped > 0 && !merge && created == 0 && merged == 0 {
        return Err(Exit(1).into());
    }
    Ok(())
}
