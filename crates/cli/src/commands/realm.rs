//! `tessera realm …`: first-factor sources per realm.

use std::path::Path;

use anyhow::Context as _;
use tessera_core::CoreError;
use tessera_core::realm::{Directory as _, DirectoryVerdict, RealmSecrets, RealmSettings, secret_name};
use tessera_server::node::Node;
use zeroize::Zeroizing;

use super::actor;
use crate::UsageError;
use crate::args::RealmCmd;
use crate::output;

/// Keys of a `[[source]]` table that hold secrets: sealed, never stored in
/// the settings. `X_file` reads the secret from a file's first line.
const SECRET_KEYS: &[&str] = &["bind_password", "client_secret"];

/// Parses a realm file; returns the settings and the secrets taken out of it.
pub fn parse_realm_file(path: &Path) -> anyhow::Result<(RealmSettings, RealmSecrets)> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut doc: toml::Table =
        toml::from_str(&text).map_err(|e| UsageError(format!("{}: not valid TOML: {e}", path.display())))?;
    let mut secrets = RealmSecrets::new();
    if let Some(toml::Value::Array(sources)) = doc.get_mut("source") {
        for (i, source) in sources.iter_mut().enumerate() {
            let Some(table) = source.as_table_mut() else { continue };
            for key in SECRET_KEYS {
                let inline = table.remove(*key);
                let file = table.remove(&format!("{key}_file"));
                let value = match (inline, file) {
                    (Some(_), Some(_)) => {
                        return Err(UsageError(format!("source {}: set {key} or {key}_file, not both", i + 1)).into());
                    }
                    (Some(toml::Value::String(v)), None) => Zeroizing::new(v),
                    (None, Some(toml::Value::String(f))) => {
                        let t = Zeroizing::new(std::fs::read_to_string(&f).with_context(|| format!("reading {f}"))?);
                        Zeroizing::new(t.lines().next().unwrap_or("").to_string())
                    }
                    (None, None) => continue,
                    _ => return Err(UsageError(format!("source {}: {key} must be a string", i + 1)).into()),
                };
                if value.is_empty() {
                    return Err(UsageError(format!("source {}: {key} is empty", i + 1)).into());
                }
                secrets.insert(secret_name(i, key), value);
            }
        }
    }
    let settings: RealmSettings =
        toml::Value::Table(doc).try_into().map_err(|e| UsageError(format!("{}: {e}", path.display())))?;
    Ok((settings, secrets))
}

pub async fn run(node: &Node, cmd: RealmCmd) -> anyhow::Result<()> {
    let admin = &node.admin;
    match cmd {
        RealmCmd::Add { name, file } => {
            let (settings, secrets) = match &file {
                Some(path) => parse_realm_file(path)?,
                None => (RealmSettings::default(), RealmSecrets::new()),
            };
            // A file without secrets keeps the stored ones (settings can be
            // edited without handing the passwords around again).
            let secrets = (!secrets.is_empty()).then_some(secrets);
            let r = admin.put_realm(&actor(), &name, settings, secrets).await?;
            let kinds: Vec<&str> = r.settings.sources.iter().map(|s| s.kind()).collect();
            outln!(
                "realm {} saved ({}); running servers pick it up within seconds",
                r.name,
                if kinds.is_empty() { "local passwords only".to_string() } else { kinds.join(" → ") }
            );
        }
        RealmCmd::List { json } => {
            let realms = admin.realms().await?;
            let policy = admin.policy().await?;
            if json {
                let list: Vec<serde_json::Value> = realms
                    .iter()
                    .map(|r| {
                        serde_json::json!({
                            "name": r.name,
                            "default": r.name == policy.default_realm,
                            "sources": r.settings.sources.iter().map(|s| s.kind()).collect::<Vec<_>>(),
                            "cache_ttl_seconds": r.settings.cache_ttl_seconds,
                            "auto_provision": r.settings.auto_provision,
                        })
                    })
                    .collect();
                return output::json(&list);
            }
            let rows: Vec<Vec<String>> = realms
                .iter()
                .map(|r| {
                    let kinds: Vec<&str> = r.settings.sources.iter().map(|s| s.kind()).collect();
                    vec![
                        r.name.clone(),
                        if kinds.is_empty() { "local".into() } else { kinds.join(" → ") },
                        r.settings.cache_ttl_seconds.to_string(),
                        if r.settings.auto_provision { "yes".into() } else { "no".into() },
                        if r.name == policy.default_realm { "default".into() } else { String::new() },
                    ]
                })
                .collect();
            output::table(&["NAME", "SOURCES", "CACHE-TTL", "AUTO-PROVISION", ""], &rows);
            if !realms.iter().any(|r| r.name == policy.default_realm) {
                outln!("default realm: {} (local passwords only)", policy.default_realm);
            }
        }
        RealmCmd::Show { name, json } => {
            let r = admin.realm(&name).await?;
            let secrets: Vec<String> = admin.realm_secrets(&r)?.into_keys().collect();
            let doc = serde_json::json!({
                "name": r.name,
                "settings": r.settings,
                "secrets_set": secrets,
                "created_at": r.created_at.to_rfc3339(),
                "updated_at": r.updated_at.to_rfc3339(),
            });
            if json {
                return output::json(&doc);
            }
            outln!("{}", toml::to_string_pretty(&r.settings).unwrap_or_default());
            outln!("# secrets set: {}", if secrets.is_empty() { "none".into() } else { secrets.join(", ") });
        }
        RealmCmd::Delete { name } => {
            admin.delete_realm(&actor(), &name).await?;
            outln!("deleted realm {name}");
        }
        RealmCmd::Test { name, user } => {
            admin.realm(&name).await?;
            node.load_directory().await?;
            let checks = node.directory.test(&name).await.unwrap_or_default();
            let mut all_ok = true;
            if checks.is_empty() {
                outln!("{name}: no directory sources (local passwords only)");
            }
            for c in &checks {
                all_ok &= c.ok;
                outln!("{} {}", if c.ok { "ok  " } else { "FAIL" }, c.source);
                for line in &c.lines {
                    outln!("     {line}");
                }
            }
            if let Some(user) = user {
                let mut pw = Zeroizing::new(String::new());
                std::io::stdin().read_line(&mut pw).context("reading the password from standard input")?;
                let pw = Zeroizing::new(pw.trim_end_matches(['\r', '\n']).to_string());
                if pw.is_empty() {
                    return Err(UsageError("empty password".into()).into());
                }
                let verdict = node.directory.verify(&name, &user, &pw).await;
                match &verdict {
                    DirectoryVerdict::Accepted { source, groups } => {
                        outln!("password accepted by {source}; groups: {}", groups.join(", "))
                    }
                    DirectoryVerdict::WrongPassword { reason }
                    | DirectoryVerdict::UnknownUser { reason }
                    | DirectoryVerdict::Refused { reason }
                    | DirectoryVerdict::Unavailable { reason } => {
                        all_ok = false;
                        outln!("password not accepted: {reason}")
                    }
                }
            }
            if !all_ok {
                return Err(crate::Exit(1).into());
            }
        }
        RealmCmd::FlushCache => {
            let g = admin.flush_directory_cache(&actor()).await?;
            outln!("directory cache flushed (generation {g}); running servers drop it within seconds");
        }
        RealmCmd::Default { name } => {
            let mut p = admin.policy().await?;
            p.default_realm = name.clone();
            p.validate().map_err(|e| CoreError::invalid("default_realm", e))?;
            admin.set_policy(&actor(), &p).await?;
            outln!("default realm is now {name}");
        }
    }
    Ok(())
}
