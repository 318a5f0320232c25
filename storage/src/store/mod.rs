//! [`Store`]: the clinical database on SQLite (embedded) or MySQL/MariaDB, chosen by URL.
//!
//! Every query is written once and runs on both backends (`?` placeholders, portable SQL);
//! the few statements whose syntax differs (duplicate handling, bounded deletes) come from
//! [`Dialect`]. Writes are multi-row inserts in one transaction per batch and are idempotent
//! on each table's natural key, so a redelivered batch changes nothing.
//!
//! One module per concern: users and tokens, audit, writes, history, archive support,
//! retention; rows as written and read live in `rows`.

use std::collections::{BTreeMap, BTreeSet};
use std::str::FromStr;

use sqlx::QueryBuilder;
use uuid::Uuid;
use vigil_core::codec::{self, DecodeLimits};
use vigil_core::record::{
    AlertEvent, AlertEvidence, AlertKind, AlertTransition, DeadLetter, EegChunk, EegTrends,
    HrSource, ModelRef, RecordLimits, SeizureProbability,
};
use vigil_db::{on_pool, DbPool, Dialect};

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

/// The statements whose syntax differs between the backends.
trait DialectSql {
    fn ignore_duplicates(self, key_column: &str) -> String;
    fn alert_upsert_suffix(self) -> &'static str;
    fn alert_onset_refine(self) -> &'static str;
    fn bounded_delete(self, table: &str, column: &str) -> String;
}

impl DialectSql for Dialect {
    /// Suffix that turns an `INSERT` into a no-op for rows whose unique key exists.
    /// (MySQL's `INSERT IGNORE` would also silence truncation and NULL errors: not used.)
    fn ignore_duplicates(self, key_column: &str) -> String {
        match self {
            Dialect::Sqlite => " ON CONFLICT DO NOTHING".to_owned(),
            Dialect::MySql => format!(" ON DUPLICATE KEY UPDATE {key_column} = {key_column}"),
        }
    }

    /// Upsert of an alert's summary row: first/last transition time, the state of the
    /// latest transition and the earliest onset (events after an onset refinement carry the
    /// refined one). Idempotent and order-independent.
    fn alert_upsert_suffix(self) -> &'static str {
        match self {
            Dialect::Sqlite => {
                " ON CONFLICT (alert_id) DO UPDATE SET \
                 state = CASE WHEN excluded.last_at_ns >= alerts.last_at_ns \
                   THEN excluded.state ELSE alerts.state END, \
                 onset_ns = MIN(alerts.onset_ns, excluded.onset_ns), \
                 first_at_ns = MIN(alerts.first_at_ns, excluded.first_at_ns), \
                 last_at_ns = MAX(alerts.last_at_ns, excluded.last_at_ns)"
            }
            // MySQL evaluates assignments left to right: `state` must read the old
            // `last_at_ns`, so it comes first.
            Dialect::MySql => {
                " ON DUPLICATE KEY UPDATE \
                 state = IF(VALUES(last_at_ns) >= last_at_ns, VALUES(state), state), \
                 onset_ns = LEAST(onset_ns, VALUES(onset_ns)), \
                 first_at_ns = LEAST(first_at_ns, VALUES(first_at_ns)), \
                 last_at_ns = GREATEST(last_at_ns, VALUES(last_at_ns))"
            }
        }
    }

    /// Moves an alert's summary onset back to `?` (the refined onset) for alert id `?`.
    fn alert_onset_refine(self) -> &'static str {
        match self {
            Dialect::Sqlite => "UPDATE alerts SET onset_ns = MIN(onset_ns, ?) WHERE alert_id = ?",
            Dialect::MySql => "UPDATE alerts SET onset_ns = LEAST(onset_ns, ?) WHERE alert_id = ?",
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
        Ok(Store {
            pool: DbPool::connect(url).await?,
        })
    }

    /// The backend's dialect.
    pub fn dialect(&self) -> Dialect {
        self.pool.dialect()
    }

    /// Applies every migration not yet applied (idempotent; run at start and by
    /// `vigil migrate`).
    pub async fn migrate(&self) -> Result<(), StorageError> {
        Ok(self.pool.migrate().await?)
    }

    /// Checks the database answers (for `/readyz`).
    pub async fn ping(&self) -> Result<(), StorageError> {
        Ok(self.pool.ping().await?)
    }

    /// Closes the pool.
    pub async fn close(&self) {
        self.pool.close().await;
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
    "eeg_trends",
    "alerts",
    "alert_events",
    "dead_letters",
    "audit_log",
    "archive_parts",
];
