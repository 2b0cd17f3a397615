//! `tessera token import | inventory`: hardware token seeds.

use anyhow::Context as _;
use tessera_core::admin::NewInventoryToken;
use tessera_core::store::InventoryQuery;
use tessera_import::{ImportReport, Outcome, TokenKind, pskc::PskcKey};
use tessera_otp::{OtpKind, OtpParams, Secret};
use tessera_server::node::Node;
use zeroize::Zeroizing;

use super::actor;

/// Users created and tokens assigned at once by an import.
const ASSIGN_PARALLELISM: usize = 64;
use crate::args::ImportArgs;
use crate::{Exit, UsageError, output};

fn read_first_line(path: &std::path::Path, what: &str) -> anyhow::Result<Zeroizing<String>> {
    let text = Zeroizing::new(std::fs::read_to_string(path).with_context(|| format!("reading the {what}"))?);
    let line = Zeroizing::new(text.lines().next().unwrap_or("").trim().to_string());
    if line.is_empty() {
        return Err(UsageError(format!("the {what} file is empty")).into());
    }
    Ok(line)
}

fn parse(a: &ImportArgs) -> anyhow::Result<ImportReport> {
    let data = Zeroizing::new(std::fs::read(&a.file).with_context(|| format!("reading {}", a.file.display()))?);
    let report = match a.format.as_str() {
        "azure" | "azure-csv" => tessera_import::azure::parse(&data),
        "csv" => tessera_import::plain::parse(&data),
        "pskc" => {
            let key = match (&a.psk_file, &a.passphrase_file) {
                (Some(f), _) => {
                    let hex_key = read_first_line(f, "pre-shared key")?;
                    let bytes = Zeroizing::new(
                        hex::decode(hex_key.as_str())
                            .map_err(|_| UsageError("the pre-shared key must be 32 hex digits".into()))?,
                    );
                    let key: [u8; 16] = bytes
                        .as_slice()
                        .try_into()
                        .map_err(|_| UsageError("the pre-shared key must be 16 bytes (32 hex digits)".into()))?;
                    Some(PskcKey::PreShared(Zeroizing::new(key)))
                }
                (None, Some(f)) => Some(PskcKey::Passphrase(read_first_line(f, "passphrase")?)),
                (None, None) => None,
            };
            tessera_import::pskc::parse(&data, key)
        }
        other => return Err(UsageError(format!("--format `{other}`: expected azure, csv or pskc")).into()),
    };
    report.map_err(|e| UsageError(format!("{}: {e}", a.file.display())).into())
}

pub async fn import(node: &Node, a: ImportArgs) -> anyhow::Result<()> {
    let report = parse(&a)?;
    for r in &report.rows {
        let serial = r.serial.as_deref().unwrap_or("-");
        match &r.outcome {
            Outcome::Ok => {}
            Outcome::Skipped(why) => println!("row {}: {serial}: skipped ({why})", r.line_or_index),
            Outcome::Error(why) => println!("row {}: {serial}: ERROR {why}", r.line_or_index),
            _ => {}
        }
    }
    let bad = report.errors().count();
    if bad > 0 && !a.skip_bad {
        println!(
            "{bad} bad rows: nothing imported (fix them, or --skip-bad to import the {} good ones)",
            report.tokens.len()
        );
        return Err(Exit(1).into());
    }
    let mut items = Vec::with_capacity(report.tokens.len());
    let mut owners = Vec::new();
    for t in &report.tokens {
        let (kind, counter) = match t.kind {
            TokenKind::Totp { period } => (OtpKind::Totp { period }, 0),
            TokenKind::Hotp { counter } => (OtpKind::Hotp, counter),
        };
        let secret =
            Secret::from_bytes(t.secret.to_vec()).map_err(|e| UsageError(format!("token {}: {e}", t.serial)))?;
        items.push(NewInventoryToken {
            serial: t.serial.clone(),
            secret,
            params: OtpParams { kind, algorithm: t.algorithm, digits: t.digits },
            counter,
            manufacturer: t.manufacturer.clone(),
            model: t.model.clone(),
        });
        if let Some(u) = &t.user {
            owners.push((t.serial.clone(), u.clone()));
        }
    }
    if a.dry_run {
        println!(
            "dry run: {} tokens would be imported ({} assigned to users), {bad} bad rows skipped; nothing changed",
            items.len(),
            owners.len()
        );
        return Ok(());
    }
    let n = node.admin.import_inventory(&actor(), items).await?;
    // Users and assignments, many in flight: each is its own durable write,
    // and the store commits concurrent writes in groups.
    let (mut created, mut assigned) = (0, 0);
    let mut tasks = tokio::task::JoinSet::new();
    let mut owners = owners.into_iter();
    loop {
        while tasks.len() < ASSIGN_PARALLELISM {
            let Some((serial, upn)) = owners.next() else { break };
            let admin = node.admin.clone();
            let realm = a.realm.clone();
            tasks.spawn(async move {
                let (user, new) = match admin.find_user(realm.as_deref(), &upn).await {
                    Ok(u) => (u, false),
                    Err(tessera_core::CoreError::NotFound(_)) => {
                        (admin.add_user(&actor(), realm.as_deref(), &upn, None).await?, true)
                    }
                    Err(e) => return Err(e),
                };
                admin.assign_inventory(&actor(), &serial, &user).await?;
                Ok::<bool, tessera_core::CoreError>(new)
            });
        }
        let Some(done) = tasks.join_next().await else { break };
        created += usize::from(done.context("assignment task")??);
        assigned += 1;
    }
    println!(
        "imported {n} tokens into the inventory; assigned {assigned} (created {created} users); {bad} bad rows skipped"
    );
    Ok(())
}

pub async fn list(node: &Node, q: &InventoryQuery, json: bool) -> anyhow::Result<()> {
    let items = node.admin.inventory(q).await?;
    let mut names = std::collections::HashMap::new();
    for id in items.iter().filter_map(|i| i.assigned_to) {
        if let std::collections::hash_map::Entry::Vacant(e) = names.entry(id)
            && let Some(u) = node.ctx.store.user_by_id(&id).await?
        {
            e.insert(super::user::label(&u));
        }
    }
    let kind = |p: &OtpParams| match p.kind {
        OtpKind::Totp { period } => format!("totp/{}s", period.get()),
        OtpKind::Hotp => "hotp".to_string(),
    };
    if json {
        let list: Vec<serde_json::Value> = items
            .iter()
            .map(|i| {
                serde_json::json!({
                    "serial": i.serial,
                    "type": kind(&i.params),
                    "algorithm": i.params.algorithm.to_string(),
                    "digits": i.params.digits.get(),
                    "manufacturer": i.manufacturer,
                    "model": i.model,
                    "assigned_to": i.assigned_to.and_then(|id| names.get(&id).cloned()),
                    "imported_at": i.imported_at.to_rfc3339(),
                })
            })
            .collect();
        return output::json(&list);
    }
    let rows: Vec<Vec<String>> = items
        .iter()
        .map(|i| {
            vec![
                i.serial.clone(),
                kind(&i.params),
                i.manufacturer.clone().unwrap_or_default(),
                i.model.clone().unwrap_or_default(),
                i.assigned_to.and_then(|id| names.get(&id).cloned()).unwrap_or_else(|| "-".into()),
            ]
        })
        .collect();
    output::table(&["SERIAL", "TYPE", "MANUFACTURER", "MODEL", "ASSIGNED TO"], &rows);
    Ok(())
}
