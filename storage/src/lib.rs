//! # vigil-storage: durable clinical data, research archive, history and FHIR API
//!
//! `vigil store` consumes `vigil.eeg.raw`, `vigil.hr.raw`, `vigil.eeg.prob`, `vigil.alerts`
//! and `vigil.dlq` and makes every record durable, exactly once:
//!
//! - [`store`]: the [`Store`] over SQLite (embedded) or MySQL/MariaDB, chosen by URL, with the
//!   schema as sqlx migrations (`db/migrations/<dialect>/`, in `vigil-db`). Batches are multi-row inserts in one
//!   transaction, idempotent on each record's natural key.
//! - [`consumer`]: the consumer-group stage. A record is acknowledged (its offset committed)
//!   only after its transaction committed and its archive file is on disk; while the database
//!   is down the stage stops consuming, retries with backoff and reports not ready; poison
//!   records go to `vigil.dlq` with the reason.
//! - [`archive`]: Parquet files per kind, patient and UTC day (hive-style directories) for
//!   researchers, planned in the same transaction as their rows so each row lands in exactly
//!   one file even across crashes.
//! - [`api`]: the history API (axum, JSON, cursor pages) with bearer-token users, per-patient
//!   access rules and an audit row for every read; [`fhir`] exports heart rate and seizure
//!   alerts as an R4 `Bundle`.
//! - [`retention`]: the periodic job deleting rows older than each table's configured age.
//!
//! See `docs/STORAGE.md` for the schema, the archive layout and the endpoints.

pub mod api;
pub mod archive;
pub mod auth;
pub mod civil;
pub mod consumer;
pub mod cursor;
pub mod error;
pub mod events;
pub mod fhir;
pub mod retention;
pub mod server;
pub mod store;
pub mod types;

pub use error::StorageError;
pub use server::{serve, ServeError};
pub use store::Store;
pub use types::{
    AlertHistory, ArchiveKind, ArchivePart, AuditEntry, AuditRecord, HistoryQuery, HrSample, Page,
    PatientSummary, Role, StoredDeadLetter, User, WriteBatch, WriteSummary, MAX_PAGE_ITEMS,
};
pub use vigil_db::Dialect;
