//! Hardware-token seed files into the inventory, shared by `tessera token
//! import` and the console's import form, so both accept and refuse the
//! same files and rows. Parsing is `tessera_import`'s (pure); this module
//! turns the report into inventory rows and assigns the tokens a file names
//! an owner for. It reads no files: the caller hands in the bytes.

use tessera_core::CoreError;
use tessera_core::admin::{Admin, NewInventoryToken};
use tessera_core::audit::Actor;
use tessera_import::pskc::PskcKey;
use tessera_import::{ImportReport, TokenKind};
use tessera_otp::{OtpKind, OtpParams, Secret};
use zeroize::Zeroizing;

/// Assignments (users created and tokens assigned) in flight at once.
const ASSIGN_PARALLELISM: usize = 64;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SeedFileError {
    #[error("format `{0}`: expected azure, csv or pskc")]
    UnknownFormat(String),
    #[error("a pre-shared key or passphrase is only used with PSKC files")]
    KeyNotUsed,
    #[error("the pre-shared key must be 16 bytes (32 hex digits)")]
    BadPreSharedKey,
    /// The file as a whole (messages never contain secret material).
    #[error(transparent)]
    File(#[from] tessera_import::ImportError),
    #[error("token {serial}: {message}")]
    Token { serial: String, message: String },
}

/// The key of an encrypted PSKC file, as an administrator gives it.
pub enum SeedKey {
    None,
    /// 32 hex digits.
    PreSharedHex(Zeroizing<String>),
    Passphrase(Zeroizing<String>),
}

/// Parses a seed file of `format` (`azure`, `azure-csv`, `csv`, `pskc`).
pub fn parse(format: &str, data: &[u8], key: SeedKey) -> Result<ImportReport, SeedFileError> {
    let report = match format {
        "azure" | "azure-csv" | "csv" if !matches!(key, SeedKey::None) => return Err(SeedFileError::KeyNotUsed),
        "azure" | "azure-csv" => tessera_import::azure::parse(data)?,
        "csv" => tessera_import::plain::parse(data)?,
        "pskc" => {
            let key = match key {
                SeedKey::None => None,
                SeedKey::PreSharedHex(hex_key) => {
                    let mut bytes = Zeroizing::new([0u8; 16]);
                    let text = hex_key.trim().as_bytes();
                    if text.len() != 32 {
                        return Err(SeedFileError::BadPreSharedKey);
                    }
                    for (i, pair) in text.chunks(2).enumerate() {
                        let digit = |c: u8| (c as char).to_digit(16).ok_or(SeedFileError::BadPreSharedKey);
                        bytes[i] = u8::try_from(digit(pair[0])? * 16 + digit(pair[1])?)
                            .map_err(|_| SeedFileError::BadPreSharedKey)?;
                    }
                    Some(PskcKey::PreShared(bytes))
                }
                SeedKey::Passphrase(p) => Some(PskcKey::Passphrase(p)),
            };
            tessera_import::pskc::parse(data, key)?
        }
        other => return Err(SeedFileError::UnknownFormat(other.chars().take(32).collect())),
    };
    Ok(report)
}

/// (serial, user name) of a row that names the token's owner.
pub type Owner = (String, String);

/// The good rows as inventory rows, and the owners of the rows that name one.
pub fn prepare(report: &ImportReport) -> Result<(Vec<NewInventoryToken>, Vec<Owner>), SeedFileError> {
    let mut items = Vec::with_capacity(report.tokens.len());
    let mut owners = Vec::new();
    for t in &report.tokens {
        let (kind, counter) = match t.kind {
            TokenKind::Totp { period } => (OtpKind::Totp { period }, 0),
            TokenKind::Hotp { counter } => (OtpKind::Hotp, counter),
        };
        let secret = Secret::from_bytes(t.secret.to_vec())
            .map_err(|e| SeedFileError::Token { serial: t.serial.clone(), message: e.to_string() })?;
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
    Ok((items, owners))
}

/// What [`assign_owners`] did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Assigned {
    pub assigned: usize,
    /// Users that did not exist and were created (without a password).
    pub created: usize,
}

/// Assigns each (serial, user) pair, creating missing users in `realm`
/// (none: the default realm). Many in flight: each is its own durable
/// write, and the store commits concurrent writes in groups. Stops at the
/// first error; what was assigned before it stays assigned.
pub async fn assign_owners(
    admin: &Admin,
    actor: &Actor,
    realm: Option<&str>,
    owners: Vec<Owner>,
) -> Result<Assigned, CoreError> {
    let mut done = Assigned::default();
    let mut tasks = tokio::task::JoinSet::new();
    let mut owners = owners.into_iter();
    loop {
        while tasks.len() < ASSIGN_PARALLELISM {
            let Some((serial, upn)) = owners.next() else { break };
            let (admin, actor, realm) = (admin.clone(), actor.clone(), realm.map(str::to_string));
            tasks.spawn(async move {
                let (user, new) = match admin.find_user(realm.as_deref(), &upn).await {
                    Ok(u) => (u, false),
                    Err(CoreError::NotFound(_)) => (admin.add_user(&actor, realm.as_deref(), &upn, None).await?, true),
                    Err(e) => return Err(e),
                };
                admin.assign_inventory(&actor, &serial, &user).await?;
                Ok::<bool, CoreError>(new)
            });
        }
        let Some(joined) = tasks.join_next().await else { break };
        let new = joined.map_err(|e| CoreError::Internal(format!("assignment task: {e}")))??;
        done.created += usize::from(new);
        done.assigned += 1;
    }
    Ok(done)
}
