//! Small helpers over a connection or a transaction: prepared (and cached)
//! statements, errors mapped to [`StoreError`], and pool construction.

use std::time::Duration;

use deadpool_postgres::{GenericClient, Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tessera_core::store::StoreError;
use tokio_postgres::config::SslMode;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;
use tokio_postgres::{NoTls, Row};

use super::tls::PgTls;

/// A positional parameter list.
pub type Params<'a> = &'a [&'a (dyn ToSql + Sync)];

/// Maps a driver error: connection trouble and transient conflicts are
/// `Unavailable` (the request fails closed; the caller may retry), unique
/// violations `Conflict`, data corruption `Corrupt`.
pub fn map_err(e: tokio_postgres::Error) -> StoreError {
    if let Some(db) = e.as_db_error() {
        let code = db.code();
        return if *code == SqlState::UNIQUE_VIOLATION {
            StoreError::Conflict(format!("record ({})", db.message()))
        } else if *code == SqlState::T_R_SERIALIZATION_FAILURE
            || *code == SqlState::T_R_DEADLOCK_DETECTED
            || *code == SqlState::LOCK_NOT_AVAILABLE
            || *code == SqlState::QUERY_CANCELED
            || *code == SqlState::ADMIN_SHUTDOWN
            || *code == SqlState::CRASH_SHUTDOWN
            || *code == SqlState::CANNOT_CONNECT_NOW
            || *code == SqlState::TOO_MANY_CONNECTIONS
            || *code == SqlState::READ_ONLY_SQL_TRANSACTION
            || code.code().starts_with("08")
            || code.code().starts_with("53")
        {
            StoreError::Unavailable(format!("{}: {}", code.code(), db.message()))
        } else if *code == SqlState::DATA_CORRUPTED || *code == SqlState::INDEX_CORRUPTED {
            StoreError::Corrupt(db.message().to_string())
        } else {
            StoreError::Backend(format!("{}: {}", code.code(), db.message()))
        };
    }
    // No server error: the connection broke, timed out or was closed.
    StoreError::Unavailable(format!("database connection: {e}"))
}

pub fn is_code(e: &tokio_postgres::Error, code: &SqlState) -> bool {
    e.code() == Some(code)
}

pub fn pool_err(e: deadpool_postgres::PoolError) -> StoreError {
    match e {
        deadpool_postgres::PoolError::Backend(e) => map_err(e),
        e => StoreError::Unavailable(format!("database pool: {e}")),
    }
}

pub fn build_pool(
    config: tokio_postgres::Config,
    tls: &PgTls,
    size: usize,
    timeout: Duration,
    post_create: Option<deadpool_postgres::Hook>,
) -> Result<Pool, StoreError> {
    let mut config = config;
    config.connect_timeout(timeout);
    config.keepalives(true);
    config.keepalives_idle(Duration::from_secs(10));
    let manager_config = ManagerConfig { recycling_method: RecyclingMethod::Fast };
    let mgr = match super::tls::client_config(tls)? {
        None => {
            config.ssl_mode(SslMode::Disable);
            Manager::from_config(config, NoTls, manager_config)
        }
        Some(client) => {
            // `Require`: the driver never falls back to plain TCP (its
            // default, `prefer`, would if the server has no TLS).
            config.ssl_mode(SslMode::Require);
            let client = std::sync::Arc::unwrap_or_clone(client);
            Manager::from_config(config, tokio_postgres_rustls::MakeRustlsConnect::new(client), manager_config)
        }
    };
    let mut builder = Pool::builder(mgr);
    if let Some(hook) = post_create {
        builder = builder.post_create(hook);
    }
    builder
        .max_size(size.max(1))
        .runtime(Runtime::Tokio1)
        .wait_timeout(Some(timeout))
        .create_timeout(Some(timeout))
        .recycle_timeout(Some(timeout))
        .build()
        .map_err(|e| StoreError::Backend(format!("database pool: {e}")))
}

pub async fn rows<C: GenericClient>(c: &C, sql: &str, p: Params<'_>) -> Result<Vec<Row>, StoreError> {
    let st = c.prepare_cached(sql).await.map_err(map_err)?;
    c.query(&st, p).await.map_err(map_err)
}

pub async fn opt<C: GenericClient>(c: &C, sql: &str, p: Params<'_>) -> Result<Option<Row>, StoreError> {
    let st = c.prepare_cached(sql).await.map_err(map_err)?;
    c.query_opt(&st, p).await.map_err(map_err)
}

pub async fn one<C: GenericClient>(c: &C, sql: &str, p: Params<'_>) -> Result<Row, StoreError> {
    let st = c.prepare_cached(sql).await.map_err(map_err)?;
    c.query_one(&st, p).await.map_err(map_err)
}

pub async fn exec<C: GenericClient>(c: &C, sql: &str, p: Params<'_>) -> Result<u64, StoreError> {
    let st = c.prepare_cached(sql).await.map_err(map_err)?;
    c.execute(&st, p).await.map_err(map_err)
}

/// Like [`exec`], but returns the driver error so the caller can tell
/// constraint violations apart.
pub async fn exec_raw<C: GenericClient>(c: &C, sql: &str, p: Params<'_>) -> Result<u64, tokio_postgres::Error> {
    let st = c.prepare_cached(sql).await?;
    c.execute(&st, p).await
}

/// Owned parameters for statements built at run time.
#[derive(Default)]
pub struct DynParams {
    values: Vec<Box<dyn ToSql + Sync + Send>>,
}

impl DynParams {
    /// Adds a value; returns its placeholder (`$n`).
    pub fn push(&mut self, v: impl ToSql + Sync + Send + 'static) -> String {
        self.values.push(Box::new(v));
        format!("${}", self.values.len())
    }

    pub fn refs(&self) -> Vec<&(dyn ToSql + Sync)> {
        self.values.iter().map(|v| v.as_ref() as &(dyn ToSql + Sync)).collect()
    }
}
