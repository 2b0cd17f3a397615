//! `tessera token import | inventory`: hardware token seeds.

use anyhow::Context as _;
use tessera_core::store::InventoryQuery;
use tessera_import::{ImportReport, Outcome};
use tessera_otp::{OtpKind, OtpParams};
use tessera_server::inventory_import::{self, SeedKey};
use tessera_server::node::Node;
use zeroize::Zeroizing;

use super::actor;
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
    let key = match (&a.psk_file, &a.passphrase_file) {
        (Some(f), _) => SeedKey::PreSharedHex(read_first_line(f, "pre-shared key")?),
        (None, Some(f)) => SeedKey::Passphrase(read_first_line(f, "passphrase")?),
        (None, None) => SeedKey::None,
    };
    inventory_import::parse(&a.format, &data, key).map_err(|e| UsageError(format!("{}: {e}", a.file.display())).into())
}

pub async fn import(node: &Node, a: ImportArgs) -> anyhow::Result<()> {
    let report = parse(&a)?;
    for r in &report.rows {
        let at = match r.serial.as_deref() {
            Some(serial) => format!("row {} (serial {serial})", r.line_or_index),
            None => format!("row {}", r.line_or_index),
        };
        match &r.outcome {
            Outcome::Ok => {}
            Outcome::Skipped(why) => outln!("{at}: skipped: {why}"),
            Outcome::Error(why) => outln!("{at}: error: {why}"),
            _ => {}
        }
    }
    let bad = report.errors().count();
    if bad > 0 && !a.skip_bad {
        let good = report.tokens.len();
        let rows = |n: usize| if n == 1 { "1 bad row".to_string() } else { format!("{n} bad rows") };
        if good == 0 {
            outln!("{}, no good one: nothing imported", rows(bad));
        } else {
            let tokens = if good == 1 { "the 1 good row".to_string() } else { format!("the {good} good rows") };
            outln!("{}: nothing imported (fix them, or add --skip-bad to import {tokens})", rows(bad));
        }
        return Err(Exit(1).into());
    }
    let (items, owners) = inventory_import::prepare(&report).map_err(|e| UsageError(e.to_string()))?;
    if a.dry_run {
        outln!(
            "dry run: {} tokens would be imported ({} assigned to users), {bad} bad rows skipped; nothing changed",
            items.len(),
            owners.len()
        );
        return Ok(());
    }
    let n = node.admin.import_inventory(&actor(), items).await?;
    let done = inventory_import::assign_owners(&node.admin, &actor(), a.realm.as_deref(), owners).await?;
    outln!(
        "imported {n} tokens into the inventory; assigned {} (created {} users); {bad} bad rows skipped",
        done.assigned,
        done.created
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
