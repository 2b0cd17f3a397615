//! Upgrades (issue 19): every pending migration runs in one transaction, so
//! one that fails half-way leaves the database exactly as the previous
//! release left it, and usable by it; an expanding migration keeps the
//! database usable by the previous release, a contracting one does not.
//! Both backends.

mod common;
use common::{at, user};

use tessera_core::audit::{Actor, AuditRecord};
use tessera_core::keys::{Keyring, MasterKey};
use tessera_core::random::OsRandom;
use tessera_core::store::StoreError;
use tessera_core::store::prelude::*;
use tessera_store::postgres::schema as pg_schema;
use tessera_store::sqlite::schema::{self, Migration};
use tessera_store::{PgOptions, PgStore, SqliteOptions, SqliteStore};

fn audit(action: &str) -> AuditRecord {
    AuditRecord::new(at(0), "test-node", &Actor::new("test"), action)
}

/// The next release's migrations: this build's, then `extra`.
fn with(base: &[Migration], extra: &[Migration]) -> &'static [Migration] {
    Vec::leak(base.iter().chain(extra).copied().collect())
}

fn next() -> i64 {
    schema::SCHEMA_VERSION + 1
}

/// Creates a table, adds a column, then fails: a migration broken half-way.
const HALF_WAY_SQLITE: &str = "CREATE TABLE upgrade_probe (id INTEGER PRIMARY KEY);
     ALTER TABLE users ADD COLUMN upgrade_probe INTEGER;
     INSERT INTO no_such_table VALUES (1);";

/// Everything an upgrade could have touched, to compare before and after.
fn sqlite_schema_dump(path: &std::path::Path) -> Vec<String> {
    let c = rusqlite::Connection::open(path).unwrap();
    let mut out: Vec<String> = c
        .prepare("SELECT type || ' ' || name || ' ' || COALESCE(sql, '') FROM sqlite_master ORDER BY type, name")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let rows: Vec<String> = c
        .prepare("SELECT version || '/' || COALESCE(compatible_from, 'null') FROM schema_migrations ORDER BY version")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    out.extend(rows);
    out
}

fn sqlite_db() -> (tempfile::TempDir, std::path::PathBuf, Keyring) {
    let dir = tempfile::tempdir().unwrap();
    let keys = Keyring::new(&MasterKey::generate(&OsRandom));
    let path = dir.path().join("t.db");
    SqliteStore::create(&SqliteOptions::new(&path), &keys, &OsRandom, at(0)).unwrap();
    (dir, path, keys)
}

#[tokio::test]
async fn sqlite_a_migration_failing_half_way_changes_nothing() {
    let (_dir, path, keys) = sqlite_db();
    let u = user("before-upgrade");
    {
        let s = SqliteStore::open(&SqliteOptions::new(&path), &keys, at(1)).unwrap();
        s.create_user(&u, audit("user.add")).await.unwrap();
    }
    let before = sqlite_schema_dump(&path);
    // Two pending steps, the second broken: neither may stay.
    let good = Migration {
        version: next(),
        sql: "CREATE TABLE upgrade_ok (id INTEGER PRIMARY KEY);",
        compatible_from: next() - 1,
    };
    let bad = Migration { version: next() + 1, sql: HALF_WAY_SQLITE, compatible_from: next() };
    let conn = rusqlite::Connection::open(&path).unwrap();
    let err = schema::migrate_with(&conn, with(schema::MIGRATIONS, &[good, bad]), 5).unwrap_err();
    drop(conn);
    match &err {
        StoreError::MigrationFailed { from, to, step, .. } => {
            assert_eq!((*from, *to, *step), (next() - 1, next() + 1, next() + 1));
        }
        e => panic!("{e:?}"),
    }
    let message = err.to_string();
    assert!(message.contains("nothing was changed") && message.contains("no_such_table"), "{message}");
    assert_eq!(sqlite_schema_dump(&path), before, "the database is exactly as before the upgrade");
    // The previous release (this build) opens it and finds its data.
    let s = SqliteStore::open(&SqliteOptions::new(&path), &keys, at(2)).unwrap();
    assert_eq!(s.user_by_id(&u.id).await.unwrap().unwrap(), u);
    s.create_user(&user("after-failed-upgrade"), audit("user.add")).await.unwrap();
}

#[tokio::test]
async fn sqlite_an_expanding_migration_keeps_the_previous_release_working() {
    let (_dir, path, keys) = sqlite_db();
    let expand = Migration {
        version: next(),
        sql: "ALTER TABLE users ADD COLUMN upgrade_note TEXT; CREATE TABLE upgrade_new (id INTEGER PRIMARY KEY);",
        compatible_from: next() - 1,
    };
    let conn = rusqlite::Connection::open(&path).unwrap();
    schema::migrate_with(&conn, with(schema::MIGRATIONS, &[expand]), 5).unwrap();
    let window = schema::current_window(&conn).unwrap();
    drop(conn);
    assert_eq!((window.version, window.compatible_from), (next(), next() - 1));
    // This build is the previous release now: it opens the newer database
    // and writes to it (its statements name their columns).
    let s = SqliteStore::open(&SqliteOptions::new(&path), &keys, at(1)).unwrap();
    let u = user("written-by-the-previous-release");
    s.create_user(&u, audit("user.add")).await.unwrap();
    assert_eq!(s.user_by_id(&u.id).await.unwrap().unwrap(), u);
    drop(s);
    // Running this build's migrations again changes nothing (it is behind).
    let conn = rusqlite::Connection::open(&path).unwrap();
    schema::migrate(&conn, 6).unwrap();
    assert_eq!(schema::current_window(&conn).unwrap().version, next());
}

#[tokio::test]
async fn sqlite_a_contracting_migration_is_refused_by_the_previous_release() {
    let (_dir, path, keys) = sqlite_db();
    let contract = Migration { version: next(), sql: "CREATE TABLE upgrade_x (id INTEGER);", compatible_from: next() };
    let conn = rusqlite::Connection::open(&path).unwrap();
    schema::migrate_with(&conn, with(schema::MIGRATIONS, &[contract]), 5).unwrap();
    drop(conn);
    let err = SqliteStore::open(&SqliteOptions::new(&path), &keys, at(1)).unwrap_err();
    assert!(matches!(err, StoreError::SchemaTooNew { found, .. } if found == next()), "{err:?}");
    assert!(err.to_string().contains("not compatible"), "{err}");
}

/// The PostgreSQL cases share one private cluster (or `DATABASE_URL`).
async fn pg_db() -> Option<(tokio_postgres::Config, Keyring)> {
    let cluster = tessera_store::postgres::testing::shared()?;
    let config = cluster.fresh_database().await;
    let keys = Keyring::new(&MasterKey::generate(&OsRandom));
    PgStore::create(&PgOptions::new(config.clone()), &keys, &OsRandom, at(0)).await.unwrap();
    Some((config, keys))
}

async fn pg_connect(config: &tokio_postgres::Config) -> tokio_postgres::Client {
    let (client, conn) = config.connect(tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(conn);
    client
}

async fn pg_schema_dump(c: &tokio_postgres::Client) -> Vec<String> {
    let mut out: Vec<String> = c
        .query(
            "SELECT table_name || '.' || column_name || ' ' || data_type FROM information_schema.columns \
             WHERE table_schema = current_schema() ORDER BY table_name, column_name",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    for r in c.query("SELECT version, compatible_from FROM schema_migrations ORDER BY version", &[]).await.unwrap() {
        out.push(format!("{}/{:?}", r.get::<_, i64>(0), r.get::<_, Option<i64>>(1)));
    }
    out
}

fn pg_next() -> i64 {
    pg_schema::SCHEMA_VERSION + 1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_migration_failing_half_way_changes_nothing() {
    let Some((config, keys)) = pg_db().await else { return };
    let u = user("before-upgrade");
    PgStore::open(&PgOptions::new(config.clone()), &keys, at(1))
        .await
        .unwrap()
        .create_user(&u, audit("user.add"))
        .await
        .unwrap();
    let mut c = pg_connect(&config).await;
    let before = pg_schema_dump(&c).await;
    let good = Migration {
        version: pg_next(),
        sql: "CREATE TABLE upgrade_ok (id BIGINT PRIMARY KEY);",
        compatible_from: pg_next() - 1,
    };
    let bad = Migration {
        version: pg_next() + 1,
        sql: "CREATE TABLE upgrade_probe (id BIGINT PRIMARY KEY); \
              ALTER TABLE users ADD COLUMN upgrade_probe BIGINT; \
              INSERT INTO no_such_table VALUES (1);",
        compatible_from: pg_next(),
    };
    let err = pg_schema::migrate_with(&mut c, with(pg_schema::MIGRATIONS, &[good, bad]), 5).await.unwrap_err();
    assert!(
        matches!(err, StoreError::MigrationFailed { from, step, .. } if from == pg_next() - 1 && step == pg_next() + 1),
        "{err:?}"
    );
    assert_eq!(pg_schema_dump(&c).await, before, "the database is exactly as before the upgrade");
    let s = PgStore::open(&PgOptions::new(config.clone()), &keys, at(2)).await.unwrap();
    assert_eq!(s.user_by_id(&u.id).await.unwrap().unwrap(), u);
    s.create_user(&user("after-failed-upgrade"), audit("user.add")).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_an_expanding_migration_keeps_the_previous_release_working() {
    let Some((config, keys)) = pg_db().await else { return };
    let mut c = pg_connect(&config).await;
    let expand = Migration {
        version: pg_next(),
        sql: "ALTER TABLE users ADD COLUMN upgrade_note TEXT; CREATE TABLE upgrade_new (id BIGINT PRIMARY KEY);",
        compatible_from: pg_next() - 1,
    };
    pg_schema::migrate_with(&mut c, with(pg_schema::MIGRATIONS, &[expand]), 5).await.unwrap();
    let w = pg_schema::current_window(&c).await.unwrap();
    assert_eq!((w.version, w.compatible_from), (pg_next(), pg_next() - 1));
    // An old node (this build) starts on the upgraded database and works.
    let s = PgStore::open(&PgOptions::new(config.clone()), &keys, at(1)).await.unwrap();
    let u = user("written-by-the-previous-release");
    s.create_user(&u, audit("user.add")).await.unwrap();
    assert_eq!(s.user_by_id(&u.id).await.unwrap().unwrap(), u);
    let contract = Migration { version: pg_next() + 1, sql: "SELECT 1;", compatible_from: pg_next() + 1 };
    pg_schema::migrate_with(&mut c, with(pg_schema::MIGRATIONS, &[expand, contract]), 6).await.unwrap();
    let err = PgStore::open(&PgOptions::new(config), &keys, at(2)).await.err().unwrap();
    assert!(matches!(err, StoreError::SchemaTooNew { .. }), "{err:?}");
}
