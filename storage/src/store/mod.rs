//! [`Store`]: the clinical database on SQLite (embedded) or MySQL/MariaDB, chosen by URL.
//!
//! Every query is written once and runs on both backends (`?` placeholders, portable SQL);
//! the few statements whose syntax differs (duplicate handling, bounded deletes) come from
//! [`Dialect`]. Writes are multi-row inserts in one transaction per batch and are idempotent
//! on each table's natural key, so a redelivered batch changes nothing.
//!
//! One module per concern: users and tokens, audit, writes, history, archive support,
//! retention; rows as written and read live in `rows`.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::str::FromStr;
use std::time::Duration;

use sqlx::migrate::{Migration, MigrationSource, MigrationType, Migrator};
use sqlx::mysql::{MySqlConnectOptions, MySqlPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions};
use sqlx::{MySqlPool, QueryBuilder, SqlitePool};
use uuid::Uuid;
use vigil_core::codec::{self, DecodeLimits};
use vigil_core::record::{
    AlertEvent, AlertEvidence, AlertKind, AlertTransition, DeadLetter, EegChunk, HrSource,
    ModelRef, RecordLimits, SeizureProbability,
};

use crate::auth;
use crate::civil::utc_day;
use crate::cursor::Cursor;
use crate::error::StorageError;
use crate::types::{
    AlertHistory, ArchiveKind, ArchivePart, AuditEntry, AuditRecord, HistoryQuery, HrSample, Page,
    PatientSummary, Role, User, WriteBatch, WriteSummary, MAX_PAGE_ITEMS,
};

/// How EEG sample blobs are stored: the core binary codec record, zstd-compressed.
pub const EEG_BLOB_FORMAT: &str = "vg1+zstd";
/// zstd level for EEG blobs: fast, and float noise barely compresses further at higher ones.
const ZSTD_LEVEL: i32 = 3;
/// Most blob bytes in one multi-row statement, well under MySQL's default 16 MiB packet.
const MAX_STATEMENT_BLOB_BYTES: usize = 4 * 1024 * 1024;
/// Most rows in one multi-row statement (SQLite allows 32,766 bound parameters).
const MAX_STATEMENT_ROWS: usize = 1000;
/// Rows deleted per retention statement, so no delete holds locks for long.
const DELETE_CHUNK: i64 = 10_000;

/// Which SQL dialect a pool speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// SQLite 3.
    Sqlite,
    /// MySQL 8 / MariaDB 10.5+.
    MySql,
}

impl Dialect {
    /// Suffix that turns an `INSERT` into a no-op for rows whose unique key exists.
    /// (MySQL's `INSERT IGNORE` would also silence truncation and NULL errors: not used.)
    fn ignore_duplicates(self, key_column: &str) -> String {
        match self {
            Dialect::Sqlite => " ON CONFLICT DO NOTHING".to_owned(),
            Dialect::MySql => format!(" ON DUPLICATE KEY UPDATE {key_column} = {key_column}"),
        }
    }

    /// Upsert of an alert's summary row: first/last transition time and the state of the
    /// latest transition. Idempotent and order-independent.
    fn alert_upsert_suffix(self) -> &'static str {
        match self {
            Dialect::Sqlite => {
                " ON CONFLICT (alert_id) DO UPDATE SET \
                 state = CASE WHEN excluded.last_at_ns >= alerts.last_at_ns \
                   THEN excluded.state ELSE alerts.state END, \
                 first_at_ns = MIN(alerts.first_at_ns, excluded.first_at_ns), \
                 last_at_ns = MAX(alerts.last_at_ns, excluded.last_at_ns)"
            }
            // MySQL evaluates assignments left to right: `state` must read the old
            // `last_at_ns`, so it comes first.
            Dialect::MySql => {
                " ON DUPLICATE KEY UPDATE \
                 state = IF(VALUES(last_at_ns) >= last_at_ns, VALUES(state), state), \
                 first_at_ns = LEAST(first_at_ns, VALUES(first_at_ns)), \
                 last_at_ns = GREATEST(last_at_ns, VALUES(last_at_ns))"
            }
        }
    }

    /// Deletes at most [`DELETE_CHUNK`] rows of `table` with `column < ?`.
    fn bounded_delete(self, table: &str, column: &str) -> String {
        match self {
            Dialect::Sqlite => format!(
                "DELETE FROM {table} WHERE id IN \
                 (SELECT id FROM {table} WHERE {column} < ? LIMIT {DELETE_CHUNK})"
            ),
            Dialect::MySql => {
                format!("DELETE FROM {table} WHERE {column} < ? LIMIT {DELETE_CHUNK}")
            }
        }
    }
}

#[derive(Debug, Clone)]
enum DbPool {
    Sqlite(SqlitePool),
    MySql(MySqlPool),
}

/// Runs the same code on whichever pool is configured; the body is compiled once per
/// backend, so one text serves both.
macro_rules! on_pool {
    ($pool:expr, |$p:ident| $body:expr) => {
        match $pool {
            DbPool::Sqlite($p) => $body,
            DbPool::MySql($p) => $body,
        }
    };
}

mod archive;
mod audit;
mod history;
mod retention;
mod rows;
mod users;
mod writes;

pub use history::regroup_probabilities;
use rows::*;
pub use rows::{HrArchiveRow, ProbRow};

/// The schema, embedded in the binary: `migrations/<dialect>/NNNN_name.sql`.
#[derive(Debug)]
struct EmbeddedSchema(Dialect);

/// `(version, description, SQLite text, MySQL text)` of every migration, oldest first.
const MIGRATIONS: &[(i64, &str, &str, &str)] = &[
    (
        1,
        "schema",
        include_str!("../../migrations/sqlite/0001_schema.sql"),
        include_str!("../../migrations/mysql/0001_schema.sql"),
    ),
    (
        2,
        "alert hr evidence",
        include_str!("../../migrations/sqlite/0002_alert_hr_evidence.sql"),
        include_str!("../../migrations/mysql/0002_alert_hr_evidence.sql"),
    ),
];

impl<'s> MigrationSource<'s> for EmbeddedSchema {
    fn resolve(
        self,
    ) -> futures_core_compat::BoxFuture<'s, Result<Vec<Migration>, sqlx::error::BoxDynError>> {
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

/// `futures_core::future::BoxFuture`, spelled out so the crate needs no futures dependency.
mod futures_core_compat {
    use std::future::Future;
    use std::pin::Pin;

    /// A boxed, sendable future.
    pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;
}

/// The clinical database. Cheap to clone (wraps the connection pool).
#[derive(Debug, Clone)]
pub struct Store {
    pool: DbPool,
}

impl Store {
    /// Connects to `sqlite://...` or `mysql://...` (`mariadb://` is accepted as an alias)
    /// and applies the schema.
    pub async fn connect(url: &str) -> Result<Store, StorageError> {
        let store = Self::connect_without_migrating(url).await?;
        store.migrate().await?;
        Ok(store)
    }

    /// Connects without touching the schema.
    pub async fn connect_without_migrating(url: &str) -> Result<Store, StorageError> {
        let pool = if url.starts_with("sqlite:") {
            let options = SqliteConnectOptions::from_str(url)?
                .journal_mode(SqliteJournalMode::Wal)
                .busy_timeout(Duration::from_secs(10))
                .foreign_keys(true);
            DbPool::Sqlite(
                SqlitePoolOptions::new()
                    .max_connections(4)
                    .acquire_timeout(Duration::from_secs(10))
                    .connect_with(options)
                    .await?,
            )
        } else if url.starts_with("mysql:") || url.starts_with("mariadb:") {
            let url = url.replacen("mariadb:", "mysql:", 1);
            let options = MySqlConnectOptions::from_str(&url)?;
            DbPool::MySql(
                MySqlPoolOptions::new()
                    .max_connections(8)
                    .acquire_timeout(Duration::from_secs(5))
                    .connect_with(options)
                    .await?,
            )
        } else {
            return Err(StorageError::BadUrl(url.to_owned()));
        };
        Ok(Store { pool })
    }

    /// The backend's dialect.
    pub fn dialect(&self) -> Dialect {
        match self.pool {
            DbPool::Sqlite(_) => Dialect::Sqlite,
            DbPool::MySql(_) => Dialect::MySql,
        }
    }

    /// Applies every migration not yet applied (idempotent; run at start and by
    /// `vigil migrate`).
    pub async fn migrate(&self) -> Result<(), StorageError> {
        let migrator = Migrator::new(EmbeddedSchema(self.dialect())).await?;
        on_pool!(&self.pool, |p| migrator.run(p).await)?;
        Ok(())
    }

    /// Checks the database answers (for `/readyz`).
    pub async fn ping(&self) -> Result<(), StorageError> {
        on_pool!(&self.pool, |p| sqlx::query("SELECT 1")
            .execute(p)
            .await
            .map(|r| r.rows_affected()))?;
        Ok(())
    }

    /// Closes the pool.
    pub async fn close(&self) {
        on_pool!(&self.pool, |p| p.close().await);
    }
}

/// Every table of the schema.
pub const TABLES: &[&str] = &[
    "patients",
    "devices",
    "users",
    "api_tokens",
    "patient_assignments",
    "eeg_chunks",
    "hr_points",
    "seizure_prob",
    "alerts",
    "alert_events",
    "dead_letters",
    "audit_log",
    "archive_parts",
];

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
}
