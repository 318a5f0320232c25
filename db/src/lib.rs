//! # vigil-db
//!
//! The clinical database's connection and schema, shared by every crate that talks to it
//! (`vigil-storage` for the pipeline's records, users and audit; `vigil-ingest` for devices):
//!
//! - [`DbPool`]: one pool over SQLite (embedded) or MySQL/MariaDB, chosen by URL, and
//!   [`on_pool!`], which runs one query text on either (both use `?` placeholders);
//! - [`migrate`]: the schema, embedded in the binary as sqlx migrations
//!   (`db/migrations/<dialect>/NNNN_name.sql`, one file per dialect and version, kept in step).
//!   Every table is defined there and only there.

use std::borrow::Cow;
use std::future::Future;
use std::pin::Pin;
use std::str::FromStr;
use std::time::Duration;

use sqlx::migrate::{Migration, MigrationSource, MigrationType, Migrator};
use sqlx::mysql::{MySqlConnectOptions, MySqlPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions};
use sqlx::{MySqlPool, SqlitePool};

/// Database failures while connecting or migrating.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// The URL is neither `sqlite:` nor `mysql:`/`mariadb:`.
    #[error("unsupported database URL {0:?}: use sqlite://path?mode=rwc or mysql://user:pass@host:3306/db")]
    BadUrl(String),
    /// A database call failed.
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    /// Applying the schema failed.
    #[error("schema migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

/// Which SQL dialect a pool speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// SQLite 3.
    Sqlite,
    /// MySQL 8 / MariaDB 10.5+.
    MySql,
}

/// A connection pool on either backend. Cheap to clone.
#[derive(Debug, Clone)]
pub enum DbPool {
    /// SQLite (embedded mode, tests).
    Sqlite(SqlitePool),
    /// MySQL or MariaDB.
    MySql(MySqlPool),
}

/// Runs the same code on whichever pool is configured; the body is compiled once per
/// backend, so one text serves both.
#[macro_export]
macro_rules! on_pool {
    ($pool:expr, |$p:ident| $body:expr) => {
        match $pool {
            $crate::DbPool::Sqlite($p) => $body,
            $crate::DbPool::MySql($p) => $body,
        }
    };
}

impl DbPool {
    /// Connects to `sqlite://...` or `mysql://...` (`mariadb://` is accepted as an alias)
    /// without touching the schema. SQLite runs in WAL mode with a 10 s busy timeout and
    /// foreign keys on.
    pub async fn connect(url: &str) -> Result<DbPool, DbError> {
        if url.starts_with("sqlite:") {
            let options = SqliteConnectOptions::from_str(url)?
                .journal_mode(SqliteJournalMode::Wal)
                .busy_timeout(Duration::from_secs(10))
                .foreign_keys(true);
            Ok(DbPool::Sqlite(
                SqlitePoolOptions::new()
                    .max_connections(4)
                    .acquire_timeout(Duration::from_secs(10))
                    .connect_with(options)
                    .await?,
            ))
        } else if url.starts_with("mysql:") || url.starts_with("mariadb:") {
            let url = url.replacen("mariadb:", "mysql:", 1);
            let options = MySqlConnectOptions::from_str(&url)?;
            Ok(DbPool::MySql(
                MySqlPoolOptions::new()
                    .max_connections(8)
                    .acquire_timeout(Duration::from_secs(5))
                    .connect_with(options)
                    .await?,
            ))
        } else {
            Err(DbError::BadUrl(url.to_owned()))
        }
    }

    /// The backend's dialect.
    pub fn dialect(&self) -> Dialect {
        match self {
            DbPool::Sqlite(_) => Dialect::Sqlite,
            DbPool::MySql(_) => Dialect::MySql,
        }
    }

    /// Applies every migration not yet applied (idempotent; sqlx holds a lock while it runs,
    /// so processes starting together do not race).
    pub async fn migrate(&self) -> Result<(), DbError> {
        let migrator = Migrator::new(EmbeddedSchema(self.dialect())).await?;
        on_pool!(self, |p| migrator.run(p).await)?;
        Ok(())
    }

    /// Checks the database answers (for `/readyz`).
    pub async fn ping(&self) -> Result<(), DbError> {
        on_pool!(self, |p| sqlx::query("SELECT 1")
            .execute(p)
            .await
            .map(|r| r.rows_affected()))?;
        Ok(())
    }

    /// Closes the pool.
    pub async fn close(&self) {
        on_pool!(self, |p| p.close().await);
    }
}

/// The schema, embedded in the binary: `migrations/<dialect>/NNNN_name.sql`.
#[derive(Debug)]
struct EmbeddedSchema(Dialect);

/// `(version, description, SQLite text, MySQL text)` of every migration, oldest first.
const MIGRATIONS: &[(i64, &str, &str, &str)] = &[
    (
        1,
        "schema",
        include_str!("../migrations/sqlite/0001_schema.sql"),
        include_str!("../migrations/mysql/0001_schema.sql"),
    ),
    (
        2,
        "alert hr evidence",
        include_str!("../migrations/sqlite/0002_alert_hr_evidence.sql"),
        include_str!("../migrations/mysql/0002_alert_hr_evidence.sql"),
    ),
    (
        3,
        "eeg trends",
        include_str!("../migrations/sqlite/0003_eeg_trends.sql"),
        include_str!("../migrations/mysql/0003_eeg_trends.sql"),
    ),
];

/// A boxed, sendable future (sqlx's `MigrationSource` signature; spelled out so the crate
/// needs no futures dependency).
type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

impl<'s> MigrationSource<'s> for EmbeddedSchema {
    fn resolve(self) -> BoxFuture<'s, Result<Vec<Migration>, sqlx::error::BoxDynError>> {
        let dialect = self.0;
        Box::pin(async move {
            Ok(MIGRATIONS
                .iter()
                .map(|(version, description, sqlite, mysql)| {
                    let sql = match dialect {
                        Dialect::Sqlite => *sqlite,
                        Dialect::MySql => *mysql,
                    };
                    Migration::new(
                        *version,
                        Cow::Borrowed(*description),
                        MigrationType::Simple,
                        Cow::Borrowed(sql),
                        false,
                    )
                })
                .collect())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_migration_file_is_embedded_in_order() {
        for dialect in ["sqlite", "mysql"] {
            let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("migrations")
                .join(dialect);
            let mut files: Vec<String> = std::fs::read_dir(&dir)
                .expect("migrations dir")
                .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
                .collect();
            files.sort();
            assert_eq!(files.len(), MIGRATIONS.len(), "{dialect}: {files:?}");
            for (file, (version, ..)) in files.iter().zip(MIGRATIONS) {
                assert!(
                    file.starts_with(&format!("{version:04}_")),
                    "{dialect}: {file} is not migration {version}"
                );
            }
        }
    }

    #[tokio::test]
    async fn urls_choose_the_backend_and_the_schema_applies_twice() {
        assert!(matches!(
            DbPool::connect("postgres://x/y").await,
            Err(DbError::BadUrl(u)) if u == "postgres://x/y"
        ));
        let dir = tempfile::tempdir().expect("tempdir");
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("v.db").display());
        let pool = DbPool::connect(&url).await.expect("connect");
        assert_eq!(pool.dialect(), Dialect::Sqlite);
        pool.migrate().await.expect("migrate");
        pool.migrate().await.expect("migrating again is a no-op");
        let devices: i64 = on_pool!(&pool, |p| sqlx::query_scalar(
            "SELECT COUNT(*) FROM devices"
        )
        .fetch_one(p)
        .await)
        .expect("the devices table exists");
        assert_eq!(devices, 0);
        pool.ping().await.expect("ping");
        pool.close().await;
    }
}
