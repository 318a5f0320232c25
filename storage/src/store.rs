//! [`Store`]: the clinical database on SQLite (embedded) or MySQL/MariaDB, chosen by URL.
//!
//! Every query is written once and runs on both backends (`?` placeholders, portable SQL);
//! the few statements whose syntax differs (duplicate handling, bounded deletes) come from
//! [`Dialect`]. Writes are multi-row inserts in one transaction per batch and are idempotent
//! on each table's natural key, so a redelivered batch changes nothing.

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

/// Appends multi-row `INSERT`s of `rows` (split by [`MAX_STATEMENT_ROWS`] and blob bytes) to
/// the transaction `tx`.
macro_rules! insert_rows {
    ($tx:expr, $head:expr, $rows:expr, $bytes:expr, $suffix:expr, |$b:ident, $r:ident| $push:expr) => {
        for group in statement_groups($rows, $bytes) {
            let mut qb = QueryBuilder::new($head);
            qb.push_values(group, |mut $b, $r| {
                $push;
            });
            qb.push($suffix);
            qb.build().execute(&mut *$tx).await?;
        }
    };
}

/// Splits rows into statement-sized groups.
fn statement_groups<T>(rows: &[T], bytes: impl Fn(&T) -> usize) -> Vec<&[T]> {
    let mut groups = Vec::new();
    let mut start = 0;
    let mut size = 0;
    for (i, row) in rows.iter().enumerate() {
        let b = bytes(row);
        if i > start && (i - start >= MAX_STATEMENT_ROWS || size + b > MAX_STATEMENT_BLOB_BYTES) {
            groups.push(&rows[start..i]);
            start = i;
            size = 0;
        }
        size += b;
    }
    if start < rows.len() {
        groups.push(&rows[start..]);
    }
    groups
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

// ---- rows as prepared for insertion ---------------------------------------------------

struct EegRowIn {
    patient_id: String,
    device_id: String,
    stream_id: String,
    seq: i64,
    start_ns: i64,
    end_ns: i64,
    received_ns: i64,
    sample_rate_hz: f64,
    channels: String,
    n_samples: i64,
    blob: Vec<u8>,
    raw_len: usize,
    archive_part: Option<String>,
}

struct HrRowIn {
    patient_id: String,
    device_id: String,
    stream_id: String,
    seq: i64,
    idx: i64,
    t_ns: i64,
    bpm: f32,
    rr_ms: Option<f32>,
    source: &'static str,
    archive_part: Option<String>,
}

struct ProbRowIn {
    patient_id: String,
    t_ns: i64,
    step_ns: i64,
    p: Option<f32>,
    channels: String,
    channel_p: String,
    model_id: String,
    model_sha256: String,
    emitted_ns: i64,
    archive_part: Option<String>,
}

/// Everything a batch inserts, computed before the transaction opens.
#[derive(Default)]
struct PreparedBatch {
    patients: Vec<String>,
    eeg: Vec<EegRowIn>,
    hr: Vec<HrRowIn>,
    prob: Vec<ProbRowIn>,
    parts: Vec<ArchivePart>,
}

/// Assigns archive part ids per (kind, patient, UTC day).
#[derive(Default)]
struct PartPlanner {
    enabled: bool,
    parts: BTreeMap<(ArchiveKind, String, String), String>,
}

impl PartPlanner {
    fn part(&mut self, kind: ArchiveKind, patient_id: &str, t_ns: i64) -> Option<String> {
        if !self.enabled {
            return None;
        }
        let key = (kind, patient_id.to_owned(), utc_day(t_ns));
        Some(
            self.parts
                .entry(key)
                .or_insert_with(|| Uuid::new_v4().to_string())
                .clone(),
        )
    }

    fn into_parts(self) -> Vec<ArchivePart> {
        self.parts
            .into_iter()
            .map(|((kind, patient_id, day), part_id)| ArchivePart {
                part_id,
                kind,
                patient_id,
                day,
            })
            .collect()
    }
}

fn seq_i64(seq: u64) -> Result<i64, StorageError> {
    i64::try_from(seq).map_err(|_| {
        StorageError::Unstorable(format!("seq {seq} exceeds the stored range (2^63 - 1)"))
    })
}

fn nan_to_none(p: f32) -> Option<f32> {
    (!p.is_nan()).then_some(p)
}

fn hr_source_str(source: HrSource) -> &'static str {
    match source {
        HrSource::Ecg => "ecg",
        HrSource::Ppg => "ppg",
        HrSource::ChestStrap => "chest_strap",
        HrSource::Other => "other",
    }
}

fn parse_hr_source(s: &str) -> Option<HrSource> {
    Some(match s {
        "ecg" => HrSource::Ecg,
        "ppg" => HrSource::Ppg,
        "chest_strap" => HrSource::ChestStrap,
        "other" => HrSource::Other,
        _ => return None,
    })
}

fn enum_str<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_value(value)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

fn parse_enum<T: serde::de::DeserializeOwned>(
    table: &'static str,
    id: i64,
    s: &str,
) -> Result<T, StorageError> {
    serde_json::from_value(serde_json::Value::String(s.to_owned())).map_err(|e| {
        StorageError::CorruptRow {
            table,
            id,
            reason: format!("{s:?}: {e}"),
        }
    })
}

/// Compresses chunks into rows (CPU work: run off the async runtime).
fn prepare_eeg(
    chunks: Vec<EegChunk>,
    part_ids: Vec<Option<String>>,
) -> Result<Vec<EegRowIn>, StorageError> {
    chunks
        .into_iter()
        .zip(part_ids)
        .map(|(chunk, archive_part)| {
            let encoded =
                codec::encode(&chunk).map_err(|e| StorageError::Unstorable(e.to_string()))?;
            let blob = zstd::bulk::compress(&encoded, ZSTD_LEVEL)
                .map_err(|e| StorageError::Unstorable(format!("zstd: {e}")))?;
            Ok(EegRowIn {
                seq: seq_i64(chunk.seq)?,
                end_ns: chunk.start_ns.saturating_add(chunk.duration_ns()),
                n_samples: chunk.samples_per_channel() as i64,
                channels: serde_json::to_string(&chunk.channels).unwrap_or_default(),
                patient_id: chunk.patient_id,
                device_id: chunk.device_id,
                stream_id: chunk.stream_id.to_string(),
                start_ns: chunk.start_ns,
                received_ns: chunk.received_ns,
                sample_rate_hz: chunk.sample_rate_hz,
                raw_len: encoded.len(),
                blob,
                archive_part,
            })
        })
        .collect()
}

/// Decodes a stored EEG blob back into the chunk.
fn decode_eeg_blob(id: i64, format: &str, blob: &[u8]) -> Result<EegChunk, StorageError> {
    let corrupt = |reason: String| StorageError::CorruptRow {
        table: "eeg_chunks",
        id,
        reason,
    };
    if format != EEG_BLOB_FORMAT {
        return Err(corrupt(format!("unknown blob format {format:?}")));
    }
    // Stored records were valid when written; the caps only guard against corruption.
    let limits = DecodeLimits {
        max_record_bytes: 256 * 1024 * 1024,
        record: RecordLimits {
            max_samples: 64 * 1024 * 1024,
            ..RecordLimits::default()
        },
    };
    let raw = zstd::bulk::decompress(blob, limits.max_record_bytes)
        .map_err(|e| corrupt(format!("zstd: {e}")))?;
    codec::decode::<EegChunk>(&raw, &limits).map_err(|e| corrupt(e.to_string()))
}

// ---- rows as read ---------------------------------------------------------------------

#[derive(sqlx::FromRow)]
struct UserRow {
    id: i64,
    username: String,
    role: String,
    password_hash: String,
}

impl UserRow {
    fn into_user(self) -> Result<User, StorageError> {
        Ok(User {
            role: Role::from_str(&self.role).map_err(|e| StorageError::CorruptRow {
                table: "users",
                id: self.id,
                reason: e.to_string(),
            })?,
            id: self.id,
            username: self.username,
        })
    }
}

#[derive(sqlx::FromRow)]
struct EegRowOut {
    id: i64,
    start_ns: i64,
    blob_format: String,
    samples: Vec<u8>,
}

#[derive(sqlx::FromRow)]
struct HrRowOut {
    id: i64,
    t_ns: i64,
    bpm: f32,
    rr_ms: Option<f32>,
    source: String,
    stream_id: String,
    seq: i64,
}

impl HrRowOut {
    fn into_sample(self) -> Result<HrSample, StorageError> {
        let corrupt = |reason: String| StorageError::CorruptRow {
            table: "hr_points",
            id: self.id,
            reason,
        };
        Ok(HrSample {
            t_ns: self.t_ns,
            bpm: self.bpm,
            rr_ms: self.rr_ms,
            source: parse_hr_source(&self.source)
                .ok_or_else(|| corrupt(format!("source {:?}", self.source)))?,
            stream_id: Uuid::parse_str(&self.stream_id).map_err(|e| corrupt(e.to_string()))?,
            seq: u64::try_from(self.seq).map_err(|e| corrupt(e.to_string()))?,
        })
    }
}

/// A stored heart-rate point with its origin, for the archive.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct HrArchiveRow {
    /// Row id.
    pub id: i64,
    /// Patient.
    pub patient_id: String,
    /// Device.
    pub device_id: String,
    /// Stream (uuid text).
    pub stream_id: String,
    /// Batch sequence number.
    pub seq: i64,
    /// Point index in the batch.
    pub idx: i64,
    /// Time, UTC ns.
    pub t_ns: i64,
    /// Beats per minute.
    pub bpm: f32,
    /// RR interval, ms.
    pub rr_ms: Option<f32>,
    /// Sensor kind.
    pub source: String,
}

/// A stored probability point (one 0.5 s grid point).
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct ProbRow {
    /// Row id.
    pub id: i64,
    /// Patient.
    pub patient_id: String,
    /// Start of the point, UTC ns.
    pub t_ns: i64,
    /// Grid step, ns.
    pub step_ns: i64,
    /// Aggregate probability; `None` = not evaluated.
    pub p: Option<f32>,
    /// Channel labels (JSON list).
    pub channels: String,
    /// Per-channel probabilities (JSON list, `null` = not evaluated).
    pub channel_p: String,
    /// Model id.
    pub model_id: String,
    /// Model weights SHA-256.
    pub model_sha256: String,
    /// When inference emitted the point, UTC ns.
    pub emitted_ns: i64,
}

impl ProbRow {
    /// Channel labels and per-channel values (NaN = not evaluated).
    pub fn channel_values(&self) -> Result<(Vec<String>, Vec<f32>), StorageError> {
        let corrupt = |reason: String| StorageError::CorruptRow {
            table: "seizure_prob",
            id: self.id,
            reason,
        };
        let channels: Vec<String> =
            serde_json::from_str(&self.channels).map_err(|e| corrupt(e.to_string()))?;
        let values: Vec<Option<f32>> =
            serde_json::from_str(&self.channel_p).map_err(|e| corrupt(e.to_string()))?;
        if values.len() != channels.len() {
            return Err(corrupt(format!(
                "{} channel values for {} channels",
                values.len(),
                channels.len()
            )));
        }
        Ok((
            channels,
            values.into_iter().map(|v| v.unwrap_or(f32::NAN)).collect(),
        ))
    }
}

#[derive(sqlx::FromRow)]
struct AlertRowOut {
    id: i64,
    alert_id: String,
    patient_id: String,
    kind: String,
    onset_ns: i64,
    last_at_ns: i64,
    state: String,
}

#[derive(sqlx::FromRow)]
struct AlertEventRowOut {
    id: i64,
    alert_id: String,
    patient_id: String,
    kind: String,
    transition: String,
    onset_ns: i64,
    at_ns: i64,
    by_user: Option<String>,
    p: Option<f32>,
    burden: Option<f32>,
    bpm: Option<f32>,
    baseline_bpm: Option<f32>,
    hr_rise_bpm: Option<f32>,
    rmssd_ms: Option<f32>,
}

impl AlertEventRowOut {
    fn into_event(self) -> Result<AlertEvent, StorageError> {
        Ok(AlertEvent {
            alert_id: Uuid::parse_str(&self.alert_id).map_err(|e| StorageError::CorruptRow {
                table: "alert_events",
                id: self.id,
                reason: e.to_string(),
            })?,
            kind: parse_enum("alert_events", self.id, &self.kind)?,
            transition: parse_enum("alert_events", self.id, &self.transition)?,
            patient_id: self.patient_id,
            onset_ns: self.onset_ns,
            at_ns: self.at_ns,
            by: self.by_user,
            evidence: AlertEvidence {
                p: self.p,
                burden: self.burden,
                bpm: self.bpm,
                baseline_bpm: self.baseline_bpm,
                hr_rise_bpm: self.hr_rise_bpm,
                rmssd_ms: self.rmssd_ms,
            },
        })
    }
}

#[derive(sqlx::FromRow)]
struct PartRow {
    part_id: String,
    kind: String,
    patient_id: String,
    utc_day: String,
}

/// Checks a history query and returns its cursor.
fn check_query(kind: &str, q: &HistoryQuery) -> Result<Cursor, StorageError> {
    auth::check_identifier("patient_id", &q.patient_id)?;
    if q.from_ns >= q.to_ns {
        return Err(StorageError::BadQuery(format!(
            "from_ns ({}) must be before to_ns ({})",
            q.from_ns, q.to_ns
        )));
    }
    if q.limit == 0 || q.limit > MAX_PAGE_ITEMS {
        return Err(StorageError::BadQuery(format!(
            "limit must be in 1..={MAX_PAGE_ITEMS}, got {}",
            q.limit
        )));
    }
    Cursor::decode(kind, q.cursor.as_deref())
}

/// Cuts the `limit + 1` rows fetched to a page and the cursor after its last row.
fn page_of<R>(
    kind: &str,
    mut rows: Vec<R>,
    limit: u32,
    key: impl Fn(&R) -> Cursor,
) -> (Vec<R>, Option<String>) {
    let limit = limit as usize;
    let next = if rows.len() > limit {
        rows.truncate(limit);
        rows.last().map(|r| key(r).encode(kind))
    } else {
        None
    };
    (rows, next)
}

/// Regroups consecutive probability points (same model, channels and step, contiguous in
/// time) into `SeizureProbability` records.
pub fn regroup_probabilities(rows: &[ProbRow]) -> Result<Vec<SeizureProbability>, StorageError> {
    let mut out: Vec<SeizureProbability> = Vec::new();
    let mut last_t: Option<i64> = None;
    for row in rows {
        let (channels, values) = row.channel_values()?;
        let p = row.p.unwrap_or(f32::NAN);
        let extend = match (out.last(), last_t) {
            (Some(rec), Some(t)) => {
                rec.model.id == row.model_id
                    && rec.model.sha256 == row.model_sha256
                    && rec.step_ns == row.step_ns
                    && rec.channels == channels
                    && t.checked_add(row.step_ns) == Some(row.t_ns)
            }
            _ => false,
        };
        if extend {
            if let Some(rec) = out.last_mut() {
                rec.aggregate_p.push(p);
                for (series, v) in rec.channel_p.iter_mut().zip(&values) {
                    series.push(*v);
                }
                rec.emitted_ns = rec.emitted_ns.max(row.emitted_ns);
            }
        } else {
            out.push(SeizureProbability {
                patient_id: row.patient_id.clone(),
                start_ns: row.t_ns,
                step_ns: row.step_ns,
                channel_p: values.iter().map(|v| vec![*v]).collect(),
                channels,
                aggregate_p: vec![p],
                model: ModelRef {
                    id: row.model_id.clone(),
                    sha256: row.model_sha256.clone(),
                },
                emitted_ns: row.emitted_ns,
            });
        }
        last_t = Some(row.t_ns);
    }
    Ok(out)
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

    // ---- users -------------------------------------------------------------------------

    /// Creates a user with an argon2id password hash.
    pub async fn create_user(
        &self,
        username: &str,
        password: &str,
        role: Role,
    ) -> Result<User, StorageError> {
        auth::check_identifier("username", username)?;
        auth::check_password(password)?;
        let password = password.to_owned();
        let hash = tokio::task::spawn_blocking(move || auth::hash_password(&password))
            .await
            .map_err(|e| StorageError::Task(e.to_string()))??;
        let now = vigil_core::time::now_ns();
        let sql =
            "INSERT INTO users (username, password_hash, role, created_ns) VALUES (?, ?, ?, ?)";
        let result = on_pool!(&self.pool, |p| sqlx::query(sql)
            .bind(username)
            .bind(&hash)
            .bind(role.as_str())
            .bind(now)
            .execute(p)
            .await
            .map(|_| ()));
        match result {
            Ok(()) => {}
            Err(sqlx::Error::Database(db)) if db.is_unique_violation() => {
                return Err(StorageError::UserExists(username.to_owned()))
            }
            Err(err) => return Err(err.into()),
        }
        self.user_row_by_name(username)
            .await?
            .ok_or_else(|| StorageError::UnknownUser(username.to_owned()))?
            .into_user()
    }

    async fn user_row_by_name(&self, username: &str) -> Result<Option<UserRow>, StorageError> {
        let sql = "SELECT id, username, role, password_hash FROM users WHERE username = ?";
        Ok(on_pool!(&self.pool, |p| sqlx::query_as::<_, UserRow>(sql)
            .bind(username)
            .fetch_optional(p)
            .await)?)
    }

    /// The user with `username`, if any.
    pub async fn user_by_name(&self, username: &str) -> Result<Option<User>, StorageError> {
        self.user_row_by_name(username)
            .await?
            .map(UserRow::into_user)
            .transpose()
    }

    /// The user if `password` is theirs; `None` for an unknown user or a wrong password.
    /// An unknown user is checked against a dummy hash, so both cases take the same time.
    pub async fn verify_login(
        &self,
        username: &str,
        password: &str,
    ) -> Result<Option<User>, StorageError> {
        let row = if auth::check_identifier("username", username).is_ok() {
            self.user_row_by_name(username).await?
        } else {
            None
        };
        let hash = row.as_ref().map_or_else(
            || auth::dummy_hash().to_owned(),
            |r| r.password_hash.clone(),
        );
        let password = password.to_owned();
        let matches = tokio::task::spawn_blocking(move || auth::verify_password(&hash, &password))
            .await
            .map_err(|e| StorageError::Task(e.to_string()))?;
        match row {
            Some(row) if matches => Ok(Some(row.into_user()?)),
            _ => Ok(None),
        }
    }

    /// The user with id `user_id`, if any.
    pub async fn user(&self, user_id: i64) -> Result<Option<User>, StorageError> {
        let sql = "SELECT id, username, role, password_hash FROM users WHERE id = ?";
        on_pool!(&self.pool, |p| sqlx::query_as::<_, UserRow>(sql)
            .bind(user_id)
            .fetch_optional(p)
            .await)?
        .map(UserRow::into_user)
        .transpose()
    }

    /// Creates an API token for the user and returns it; only its SHA-256 is stored, so it
    /// can be shown once.
    pub async fn create_api_token(&self, user_id: i64) -> Result<String, StorageError> {
        if self.user(user_id).await?.is_none() {
            return Err(StorageError::UnknownUser(format!("id {user_id}")));
        }
        let token = auth::new_api_token();
        let sql = "INSERT INTO api_tokens (token_sha256, user_id, created_ns) VALUES (?, ?, ?)";
        on_pool!(&self.pool, |p| sqlx::query(sql)
            .bind(auth::token_sha256(&token))
            .bind(user_id)
            .bind(vigil_core::time::now_ns())
            .execute(p)
            .await
            .map(|r| r.rows_affected()))?;
        Ok(token)
    }

    /// The user holding the (not revoked) API token.
    pub async fn authenticate_token(&self, token: &str) -> Result<Option<User>, StorageError> {
        let sql = "SELECT u.id, u.username, u.role, u.password_hash FROM api_tokens t \
                   JOIN users u ON u.id = t.user_id \
                   WHERE t.token_sha256 = ? AND t.revoked_ns IS NULL";
        on_pool!(&self.pool, |p| sqlx::query_as::<_, UserRow>(sql)
            .bind(auth::token_sha256(token))
            .fetch_optional(p)
            .await)?
        .map(UserRow::into_user)
        .transpose()
    }

    /// Revokes every API token of the user; returns how many were active.
    pub async fn revoke_api_tokens(&self, user_id: i64) -> Result<u64, StorageError> {
        let sql = "UPDATE api_tokens SET revoked_ns = ? WHERE user_id = ? AND revoked_ns IS NULL";
        Ok(on_pool!(&self.pool, |p| sqlx::query(sql)
            .bind(vigil_core::time::now_ns())
            .bind(user_id)
            .execute(p)
            .await
            .map(|r| r.rows_affected()))?)
    }

    /// Assigns a patient to a user (idempotent).
    pub async fn assign(&self, user_id: i64, patient_id: &str) -> Result<(), StorageError> {
        auth::check_identifier("patient_id", patient_id)?;
        if self.user(user_id).await?.is_none() {
            return Err(StorageError::UnknownUser(format!("id {user_id}")));
        }
        let sql = format!(
            "INSERT INTO patient_assignments (user_id, patient_id, created_ns) VALUES (?, ?, ?){}",
            self.dialect().ignore_duplicates("user_id")
        );
        on_pool!(&self.pool, |p| sqlx::query(&sql)
            .bind(user_id)
            .bind(patient_id)
            .bind(vigil_core::time::now_ns())
            .execute(p)
            .await
            .map(|r| r.rows_affected()))?;
        Ok(())
    }

    /// Patients assigned to the user, sorted.
    pub async fn assigned_patients(&self, user_id: i64) -> Result<Vec<String>, StorageError> {
        let sql =
            "SELECT patient_id FROM patient_assignments WHERE user_id = ? ORDER BY patient_id";
        Ok(on_pool!(&self.pool, |p| sqlx::query_scalar::<_, String>(
            sql
        )
        .bind(user_id)
        .fetch_all(p)
        .await)?)
    }

    /// Whether the user may read the patient's data: researchers and admins always,
    /// clinicians only for assigned patients.
    pub async fn may_read(&self, user: &User, patient_id: &str) -> Result<bool, StorageError> {
        if user.role.sees_all_patients() {
            return Ok(true);
        }
        let sql = "SELECT COUNT(*) FROM patient_assignments WHERE user_id = ? AND patient_id = ?";
        let n: i64 = on_pool!(&self.pool, |p| sqlx::query_scalar(sql)
            .bind(user.id)
            .bind(patient_id)
            .fetch_one(p)
            .await)?;
        Ok(n > 0)
    }

    /// Patients visible to the user (all known patients for researchers and admins), by id.
    pub async fn patients(&self, user: &User) -> Result<Vec<PatientSummary>, StorageError> {
        #[derive(sqlx::FromRow)]
        struct Row {
            patient_id: String,
            first_seen_ns: i64,
        }
        let rows: Vec<Row> = if user.role.sees_all_patients() {
            let sql = "SELECT patient_id, created_ns AS first_seen_ns FROM patients \
                       ORDER BY patient_id";
            on_pool!(&self.pool, |p| sqlx::query_as(sql).fetch_all(p).await)?
        } else {
            // Assigned patients, also those without data yet.
            let sql = "SELECT a.patient_id AS patient_id, \
                       COALESCE(p.created_ns, a.created_ns) AS first_seen_ns \
                       FROM patient_assignments a \
                       LEFT JOIN patients p ON p.patient_id = a.patient_id \
                       WHERE a.user_id = ? ORDER BY a.patient_id";
            on_pool!(&self.pool, |p| sqlx::query_as(sql)
                .bind(user.id)
                .fetch_all(p)
                .await)?
        };
        Ok(rows
            .into_iter()
            .map(|r| PatientSummary {
                patient_id: r.patient_id,
                first_seen_ns: r.first_seen_ns,
            })
            .collect())
    }

    // ---- audit -------------------------------------------------------------------------

    /// Appends a row to the audit log.
    pub async fn audit(&self, entry: &AuditEntry) -> Result<(), StorageError> {
        let sql = "INSERT INTO audit_log (at_ns, user_id, patient_id, action, detail) \
                   VALUES (?, ?, ?, ?, ?)";
        on_pool!(&self.pool, |p| sqlx::query(sql)
            .bind(vigil_core::time::now_ns())
            .bind(entry.user_id)
            .bind(&entry.patient_id)
            .bind(&entry.action)
            .bind(&entry.detail)
            .execute(p)
            .await
            .map(|r| r.rows_affected()))?;
        Ok(())
    }

    /// Audit rows about a patient (all patients when `None`), oldest first.
    pub async fn audit_log(
        &self,
        patient_id: Option<&str>,
    ) -> Result<Vec<AuditRecord>, StorageError> {
        #[derive(sqlx::FromRow)]
        struct Row {
            id: i64,
            at_ns: i64,
            user_id: i64,
            patient_id: String,
            action: String,
            detail: String,
        }
        let rows: Vec<Row> = match patient_id {
            Some(pid) => {
                let sql = "SELECT id, at_ns, user_id, patient_id, action, detail FROM audit_log \
                           WHERE patient_id = ? ORDER BY id";
                on_pool!(&self.pool, |p| sqlx::query_as(sql)
                    .bind(pid)
                    .fetch_all(p)
                    .await)?
            }
            None => {
                let sql = "SELECT id, at_ns, user_id, patient_id, action, detail FROM audit_log \
                           ORDER BY id";
                on_pool!(&self.pool, |p| sqlx::query_as(sql).fetch_all(p).await)?
            }
        };
        Ok(rows
            .into_iter()
            .map(|r| AuditRecord {
                id: r.id,
                at_ns: r.at_ns,
                user_id: r.user_id,
                patient_id: r.patient_id,
                action: r.action,
                detail: r.detail,
            })
            .collect())
    }

    // ---- writes ------------------------------------------------------------------------

    /// Writes the batch in one transaction, idempotently: rows whose natural key exists are
    /// left as they are. When `batch.archive` is set, the rows this transaction newly inserts
    /// are assigned to archive parts planned in the same transaction (see `crate::archive`).
    pub async fn write_batch(&self, batch: &WriteBatch) -> Result<WriteSummary, StorageError> {
        let mut planner = PartPlanner {
            enabled: batch.archive,
            ..PartPlanner::default()
        };
        let mut prepared = PreparedBatch::default();
        let mut patients = BTreeSet::new();

        let eeg_parts: Vec<Option<String>> = batch
            .eeg
            .iter()
            .map(|c| {
                patients.insert(c.patient_id.clone());
                planner.part(ArchiveKind::Eeg, &c.patient_id, c.start_ns)
            })
            .collect();
        if !batch.eeg.is_empty() {
            let chunks = batch.eeg.clone();
            prepared.eeg = tokio::task::spawn_blocking(move || prepare_eeg(chunks, eeg_parts))
                .await
                .map_err(|e| StorageError::Task(e.to_string()))??;
        }
        for hr in &batch.hr {
            patients.insert(hr.patient_id.clone());
            let seq = seq_i64(hr.seq)?;
            for (idx, point) in hr.points.iter().enumerate() {
                prepared.hr.push(HrRowIn {
                    patient_id: hr.patient_id.clone(),
                    device_id: hr.device_id.clone(),
                    stream_id: hr.stream_id.to_string(),
                    seq,
                    idx: idx as i64,
                    t_ns: point.t_ns,
                    bpm: point.bpm,
                    rr_ms: point.rr_ms,
                    source: hr_source_str(hr.source),
                    archive_part: planner.part(ArchiveKind::Hr, &hr.patient_id, point.t_ns),
                });
            }
        }
        for rec in &batch.probabilities {
            patients.insert(rec.patient_id.clone());
            let channels = serde_json::to_string(&rec.channels).unwrap_or_default();
            for (i, p) in rec.aggregate_p.iter().enumerate() {
                let t_ns = rec
                    .start_ns
                    .checked_add(rec.step_ns.saturating_mul(i as i64))
                    .ok_or_else(|| StorageError::Unstorable("point time overflows".into()))?;
                let per_channel: Vec<Option<f32>> = rec
                    .channel_p
                    .iter()
                    .map(|row| row.get(i).copied().and_then(nan_to_none))
                    .collect();
                prepared.prob.push(ProbRowIn {
                    patient_id: rec.patient_id.clone(),
                    t_ns,
                    step_ns: rec.step_ns,
                    p: nan_to_none(*p),
                    channels: channels.clone(),
                    channel_p: serde_json::to_string(&per_channel).unwrap_or_default(),
                    model_id: rec.model.id.clone(),
                    model_sha256: rec.model.sha256.clone(),
                    emitted_ns: rec.emitted_ns,
                    archive_part: planner.part(ArchiveKind::Prob, &rec.patient_id, t_ns),
                });
            }
        }
        for alert in &batch.alerts {
            patients.insert(alert.patient_id.clone());
        }
        prepared.patients = patients.into_iter().collect();
        prepared.parts = planner.into_parts();

        let summary = WriteSummary {
            eeg_chunks: prepared.eeg.len(),
            hr_points: prepared.hr.len(),
            prob_points: prepared.prob.len(),
            alert_events: batch.alerts.len(),
            dead_letters: batch.dead_letters.len(),
            eeg_raw_bytes: prepared.eeg.iter().map(|r| r.raw_len).sum(),
            eeg_stored_bytes: prepared.eeg.iter().map(|r| r.blob.len()).sum(),
            archive_parts: prepared.parts.clone(),
        };
        self.write_prepared(&prepared, batch).await?;
        Ok(summary)
    }

    async fn write_prepared(
        &self,
        prepared: &PreparedBatch,
        batch: &WriteBatch,
    ) -> Result<(), StorageError> {
        let dialect = self.dialect();
        let now = vigil_core::time::now_ns();
        let ignore_id = dialect.ignore_duplicates("id");
        let alert_rows: Vec<&AlertEvent> = batch.alerts.iter().collect();
        on_pool!(&self.pool, |p| {
            let mut tx = p.begin().await?;
            insert_rows!(
                tx,
                "INSERT INTO patients (patient_id, created_ns) ",
                &prepared.patients,
                |_| 0,
                dialect.ignore_duplicates("patient_id"),
                |b, r| {
                    b.push_bind(r.as_str()).push_bind(now);
                }
            );
            insert_rows!(
                tx,
                "INSERT INTO eeg_chunks (patient_id, device_id, stream_id, seq, start_ns, \
                 end_ns, received_ns, sample_rate_hz, channels, n_samples, blob_format, \
                 samples, archive_part, stored_ns) ",
                &prepared.eeg,
                |r: &EegRowIn| r.blob.len(),
                &ignore_id,
                |b, r| {
                    b.push_bind(r.patient_id.as_str())
                        .push_bind(r.device_id.as_str())
                        .push_bind(r.stream_id.as_str())
                        .push_bind(r.seq)
                        .push_bind(r.start_ns)
                        .push_bind(r.end_ns)
                        .push_bind(r.received_ns)
                        .push_bind(r.sample_rate_hz)
                        .push_bind(r.channels.as_str())
                        .push_bind(r.n_samples)
                        .push_bind(EEG_BLOB_FORMAT)
                        .push_bind(r.blob.as_slice())
                        .push_bind(r.archive_part.as_deref())
                        .push_bind(now);
                }
            );
            insert_rows!(
                tx,
                "INSERT INTO hr_points (patient_id, device_id, stream_id, seq, idx, t_ns, bpm, \
                 rr_ms, source, archive_part, stored_ns) ",
                &prepared.hr,
                |_| 0,
                &ignore_id,
                |b, r| {
                    b.push_bind(r.patient_id.as_str())
                        .push_bind(r.device_id.as_str())
                        .push_bind(r.stream_id.as_str())
                        .push_bind(r.seq)
                        .push_bind(r.idx)
                        .push_bind(r.t_ns)
                        .push_bind(r.bpm)
                        .push_bind(r.rr_ms)
                        .push_bind(r.source)
                        .push_bind(r.archive_part.as_deref())
                        .push_bind(now);
                }
            );
            insert_rows!(
                tx,
                "INSERT INTO seizure_prob (patient_id, t_ns, step_ns, p, channels, channel_p, \
                 model_id, model_sha256, emitted_ns, archive_part, stored_ns) ",
                &prepared.prob,
                |r: &ProbRowIn| r.channel_p.len() + r.channels.len(),
                &ignore_id,
                |b, r| {
                    b.push_bind(r.patient_id.as_str())
                        .push_bind(r.t_ns)
                        .push_bind(r.step_ns)
                        .push_bind(r.p)
                        .push_bind(r.channels.as_str())
                        .push_bind(r.channel_p.as_str())
                        .push_bind(r.model_id.as_str())
                        .push_bind(r.model_sha256.as_str())
                        .push_bind(r.emitted_ns)
                        .push_bind(r.archive_part.as_deref())
                        .push_bind(now);
                }
            );
            insert_rows!(
                tx,
                "INSERT INTO alerts (alert_id, patient_id, kind, onset_ns, first_at_ns, \
                 last_at_ns, state) ",
                &alert_rows,
                |_| 0,
                dialect.alert_upsert_suffix(),
                |b, e| {
                    b.push_bind(e.alert_id.to_string())
                        .push_bind(e.patient_id.as_str())
                        .push_bind(enum_str(&e.kind))
                        .push_bind(e.onset_ns)
                        .push_bind(e.at_ns)
                        .push_bind(e.at_ns)
                        .push_bind(enum_str(&e.transition));
                }
            );
            insert_rows!(
                tx,
                "INSERT INTO alert_events (alert_id, patient_id, kind, transition, onset_ns, \
                 at_ns, by_user, p, burden, bpm, baseline_bpm, hr_rise_bpm, rmssd_ms, \
                 stored_ns) ",
                &alert_rows,
                |_| 0,
                &ignore_id,
                |b, e| {
                    b.push_bind(e.alert_id.to_string())
                        .push_bind(e.patient_id.as_str())
                        .push_bind(enum_str(&e.kind))
                        .push_bind(enum_str(&e.transition))
                        .push_bind(e.onset_ns)
                        .push_bind(e.at_ns)
                        .push_bind(e.by.as_deref())
                        .push_bind(e.evidence.p)
                        .push_bind(e.evidence.burden)
                        .push_bind(e.evidence.bpm)
                        .push_bind(e.evidence.baseline_bpm)
                        .push_bind(e.evidence.hr_rise_bpm)
                        .push_bind(e.evidence.rmssd_ms)
                        .push_bind(now);
                }
            );
            insert_rows!(
                tx,
                "INSERT INTO dead_letters (dlq_topic, dlq_partition, dlq_offset, stage, \
                 source_topic, source_partition, source_offset, record_key, payload, \
                 truncated, reason, at_ns, stored_ns) ",
                &batch.dead_letters,
                |d: &crate::types::StoredDeadLetter| d.letter.payload.len(),
                &ignore_id,
                |b, d| {
                    let l: &DeadLetter = &d.letter;
                    b.push_bind(d.dlq_topic.as_str())
                        .push_bind(d.dlq_partition)
                        .push_bind(d.dlq_offset)
                        .push_bind(l.stage.as_str())
                        .push_bind(l.source_topic.as_str())
                        .push_bind(l.partition)
                        .push_bind(l.offset)
                        .push_bind(l.key.as_slice())
                        .push_bind(l.payload.as_slice())
                        .push_bind(i32::from(l.truncated))
                        .push_bind(l.reason.as_str())
                        .push_bind(l.at_ns)
                        .push_bind(now);
                }
            );
            insert_rows!(
                tx,
                "INSERT INTO archive_parts (part_id, kind, patient_id, utc_day, created_ns) ",
                &prepared.parts,
                |_| 0,
                dialect.ignore_duplicates("part_id"),
                |b, part| {
                    b.push_bind(part.part_id.as_str())
                        .push_bind(part.kind.as_str())
                        .push_bind(part.patient_id.as_str())
                        .push_bind(part.day.as_str())
                        .push_bind(now);
                }
            );
            tx.commit().await?;
        });
        Ok(())
    }

    // ---- history -----------------------------------------------------------------------

    /// EEG chunks of the patient overlapping `[from_ns, to_ns)`, by start time.
    pub async fn eeg(&self, q: &HistoryQuery) -> Result<Page<EegChunk>, StorageError> {
        let cursor = check_query("eeg", q)?;
        let sql = "SELECT id, start_ns, blob_format, samples FROM eeg_chunks \
                   WHERE patient_id = ? AND start_ns < ? AND end_ns > ? \
                   AND (start_ns > ? OR (start_ns = ? AND id > ?)) \
                   ORDER BY start_ns, id LIMIT ?";
        let rows: Vec<EegRowOut> = on_pool!(&self.pool, |p| sqlx::query_as(sql)
            .bind(&q.patient_id)
            .bind(q.to_ns)
            .bind(q.from_ns)
            .bind(cursor.time)
            .bind(cursor.time)
            .bind(cursor.id)
            .bind(i64::from(q.limit) + 1)
            .fetch_all(p)
            .await)?;
        let (rows, next_cursor) = page_of("eeg", rows, q.limit, |r| Cursor {
            time: r.start_ns,
            id: r.id,
        });
        let items = tokio::task::spawn_blocking(move || {
            rows.iter()
                .map(|r| decode_eeg_blob(r.id, &r.blob_format, &r.samples))
                .collect::<Result<Vec<_>, _>>()
        })
        .await
        .map_err(|e| StorageError::Task(e.to_string()))??;
        Ok(Page { items, next_cursor })
    }

    /// Heart-rate points of the patient in `[from_ns, to_ns)`, by time.
    pub async fn heart_rate(&self, q: &HistoryQuery) -> Result<Page<HrSample>, StorageError> {
        let cursor = check_query("hr", q)?;
        let sql = "SELECT id, t_ns, bpm, rr_ms, source, stream_id, seq FROM hr_points \
                   WHERE patient_id = ? AND t_ns >= ? AND t_ns < ? \
                   AND (t_ns > ? OR (t_ns = ? AND id > ?)) \
                   ORDER BY t_ns, id LIMIT ?";
        let rows: Vec<HrRowOut> = on_pool!(&self.pool, |p| sqlx::query_as(sql)
            .bind(&q.patient_id)
            .bind(q.from_ns)
            .bind(q.to_ns)
            .bind(cursor.time)
            .bind(cursor.time)
            .bind(cursor.id)
            .bind(i64::from(q.limit) + 1)
            .fetch_all(p)
            .await)?;
        let (rows, next_cursor) = page_of("hr", rows, q.limit, |r| Cursor {
            time: r.t_ns,
            id: r.id,
        });
        let items = rows
            .into_iter()
            .map(HrRowOut::into_sample)
            .collect::<Result<_, _>>()?;
        Ok(Page { items, next_cursor })
    }

    /// Raw probability points of the patient in `[from_ns, to_ns)`; `limit` counts points.
    pub async fn probability_points(
        &self,
        q: &HistoryQuery,
    ) -> Result<Page<ProbRow>, StorageError> {
        let cursor = check_query("prob", q)?;
        let sql = "SELECT id, patient_id, t_ns, step_ns, p, channels, channel_p, model_id, \
                   model_sha256, emitted_ns FROM seizure_prob \
                   WHERE patient_id = ? AND t_ns >= ? AND t_ns < ? \
                   AND (t_ns > ? OR (t_ns = ? AND id > ?)) \
                   ORDER BY t_ns, id LIMIT ?";
        let rows: Vec<ProbRow> = on_pool!(&self.pool, |p| sqlx::query_as(sql)
            .bind(&q.patient_id)
            .bind(q.from_ns)
            .bind(q.to_ns)
            .bind(cursor.time)
            .bind(cursor.time)
            .bind(cursor.id)
            .bind(i64::from(q.limit) + 1)
            .fetch_all(p)
            .await)?;
        let (items, next_cursor) = page_of("prob", rows, q.limit, |r| Cursor {
            time: r.t_ns,
            id: r.id,
        });
        Ok(Page { items, next_cursor })
    }

    /// Seizure probabilities of the patient in `[from_ns, to_ns)`: the stored 0.5 s points
    /// regrouped into records of contiguous points (same model and channels). `limit` counts
    /// points; NaN (not evaluated) comes back as NaN.
    pub async fn probabilities(
        &self,
        q: &HistoryQuery,
    ) -> Result<Page<SeizureProbability>, StorageError> {
        let page = self.probability_points(q).await?;
        Ok(Page {
            items: regroup_probabilities(&page.items)?,
            next_cursor: page.next_cursor,
        })
    }

    /// Alerts of the patient active at some time in `[from_ns, to_ns)` (onset before the
    /// end, last transition at or after the start), by onset, each with all its events.
    pub async fn alerts(&self, q: &HistoryQuery) -> Result<Page<AlertHistory>, StorageError> {
        let cursor = check_query("alerts", q)?;
        let sql = "SELECT id, alert_id, patient_id, kind, onset_ns, last_at_ns, state \
                   FROM alerts WHERE patient_id = ? AND onset_ns < ? AND last_at_ns >= ? \
                   AND (onset_ns > ? OR (onset_ns = ? AND id > ?)) \
                   ORDER BY onset_ns, id LIMIT ?";
        let rows: Vec<AlertRowOut> = on_pool!(&self.pool, |p| sqlx::query_as(sql)
            .bind(&q.patient_id)
            .bind(q.to_ns)
            .bind(q.from_ns)
            .bind(cursor.time)
            .bind(cursor.time)
            .bind(cursor.id)
            .bind(i64::from(q.limit) + 1)
            .fetch_all(p)
            .await)?;
        let (rows, next_cursor) = page_of("alerts", rows, q.limit, |r| Cursor {
            time: r.onset_ns,
            id: r.id,
        });
        let mut events: BTreeMap<String, Vec<AlertEvent>> = BTreeMap::new();
        if !rows.is_empty() {
            let ids: Vec<&str> = rows.iter().map(|r| r.alert_id.as_str()).collect();
            let event_rows: Vec<AlertEventRowOut> = on_pool!(&self.pool, |p| {
                let mut qb = QueryBuilder::new(
                    "SELECT id, alert_id, patient_id, kind, transition, onset_ns, at_ns, \
                     by_user, p, burden, bpm, baseline_bpm, hr_rise_bpm, rmssd_ms \
                     FROM alert_events WHERE alert_id IN (",
                );
                let mut list = qb.separated(", ");
                for id in &ids {
                    list.push_bind(*id);
                }
                qb.push(") ORDER BY at_ns, id");
                qb.build_query_as().fetch_all(p).await
            })?;
            for row in event_rows {
                let key = row.alert_id.clone();
                events.entry(key).or_default().push(row.into_event()?);
            }
        }
        let items = rows
            .into_iter()
            .map(|r| {
                Ok(AlertHistory {
                    alert_id: Uuid::parse_str(&r.alert_id).map_err(|e| {
                        StorageError::CorruptRow {
                            table: "alerts",
                            id: r.id,
                            reason: e.to_string(),
                        }
                    })?,
                    kind: parse_enum::<AlertKind>("alerts", r.id, &r.kind)?,
                    state: parse_enum::<AlertTransition>("alerts", r.id, &r.state)?,
                    events: events.remove(&r.alert_id).unwrap_or_default(),
                    patient_id: r.patient_id,
                    onset_ns: r.onset_ns,
                    last_at_ns: r.last_at_ns,
                })
            })
            .collect::<Result<_, StorageError>>()?;
        Ok(Page { items, next_cursor })
    }

    /// Rows per table, for tests and operators: `(table, rows)`.
    pub async fn row_counts(&self) -> Result<BTreeMap<&'static str, i64>, StorageError> {
        let mut out = BTreeMap::new();
        for table in TABLES {
            let sql = format!("SELECT COUNT(*) FROM {table}");
            let n: i64 = on_pool!(&self.pool, |p| sqlx::query_scalar(&sql).fetch_one(p).await)?;
            out.insert(*table, n);
        }
        Ok(out)
    }

    // ---- archive support ---------------------------------------------------------------

    /// Archive parts planned but not yet written (oldest first).
    pub async fn pending_archive_parts(&self) -> Result<Vec<ArchivePart>, StorageError> {
        let sql = "SELECT part_id, kind, patient_id, utc_day FROM archive_parts \
                   WHERE written_ns IS NULL ORDER BY created_ns, part_id";
        let rows: Vec<PartRow> = on_pool!(&self.pool, |p| sqlx::query_as(sql).fetch_all(p).await)?;
        rows.into_iter()
            .map(|r| {
                Ok(ArchivePart {
                    kind: ArchiveKind::parse(&r.kind).ok_or_else(|| StorageError::CorruptRow {
                        table: "archive_parts",
                        id: 0,
                        reason: format!("kind {:?}", r.kind),
                    })?,
                    part_id: r.part_id,
                    patient_id: r.patient_id,
                    day: r.utc_day,
                })
            })
            .collect()
    }

    /// Marks an archive part written.
    pub async fn mark_archive_part_written(&self, part_id: &str) -> Result<(), StorageError> {
        let sql = "UPDATE archive_parts SET written_ns = ? WHERE part_id = ?";
        on_pool!(&self.pool, |p| sqlx::query(sql)
            .bind(vigil_core::time::now_ns())
            .bind(part_id)
            .execute(p)
            .await
            .map(|r| r.rows_affected()))?;
        Ok(())
    }

    /// EEG chunks assigned to an archive part, by start time.
    pub async fn archive_eeg(&self, part_id: &str) -> Result<Vec<EegChunk>, StorageError> {
        let sql = "SELECT id, start_ns, blob_format, samples FROM eeg_chunks \
                   WHERE archive_part = ? ORDER BY start_ns, id";
        let rows: Vec<EegRowOut> = on_pool!(&self.pool, |p| sqlx::query_as(sql)
            .bind(part_id)
            .fetch_all(p)
            .await)?;
        tokio::task::spawn_blocking(move || {
            rows.iter()
                .map(|r| decode_eeg_blob(r.id, &r.blob_format, &r.samples))
                .collect()
        })
        .await
        .map_err(|e| StorageError::Task(e.to_string()))?
    }

    /// Heart-rate points assigned to an archive part, by time.
    pub async fn archive_hr(&self, part_id: &str) -> Result<Vec<HrArchiveRow>, StorageError> {
        let sql = "SELECT id, patient_id, device_id, stream_id, seq, idx, t_ns, bpm, rr_ms, \
                   source FROM hr_points WHERE archive_part = ? ORDER BY t_ns, id";
        Ok(on_pool!(&self.pool, |p| sqlx::query_as(sql)
            .bind(part_id)
            .fetch_all(p)
            .await)?)
    }

    /// Probability points assigned to an archive part, by time.
    pub async fn archive_prob(&self, part_id: &str) -> Result<Vec<ProbRow>, StorageError> {
        let sql = "SELECT id, patient_id, t_ns, step_ns, p, channels, channel_p, model_id, \
                   model_sha256, emitted_ns FROM seizure_prob WHERE archive_part = ? \
                   ORDER BY t_ns, id";
        Ok(on_pool!(&self.pool, |p| sqlx::query_as(sql)
            .bind(part_id)
            .fetch_all(p)
            .await)?)
    }

    // ---- retention ---------------------------------------------------------------------

    /// Deletes rows of `table` whose `column` is before `cutoff_ns`, in bounded chunks.
    /// Returns the rows deleted.
    pub(crate) async fn delete_before(
        &self,
        table: &str,
        column: &str,
        cutoff_ns: i64,
    ) -> Result<u64, StorageError> {
        let sql = self.dialect().bounded_delete(table, column);
        let mut total = 0;
        loop {
            let n = on_pool!(&self.pool, |p| sqlx::query(&sql)
                .bind(cutoff_ns)
                .execute(p)
                .await
                .map(|r| r.rows_affected()))?;
            total += n;
            if n < DELETE_CHUNK as u64 {
                return Ok(total);
            }
        }
    }

    /// Deletes alerts whose last transition is before `cutoff_ns`, with their events, in one
    /// transaction. Returns the alert rows deleted.
    pub(crate) async fn delete_alerts_before(&self, cutoff_ns: i64) -> Result<u64, StorageError> {
        let events = "DELETE FROM alert_events WHERE alert_id IN \
                      (SELECT alert_id FROM alerts WHERE last_at_ns < ?)";
        let alerts = "DELETE FROM alerts WHERE last_at_ns < ?";
        Ok(on_pool!(&self.pool, |p| {
            let mut tx = p.begin().await?;
            sqlx::query(events)
                .bind(cutoff_ns)
                .execute(&mut *tx)
                .await?;
            let n = sqlx::query(alerts)
                .bind(cutoff_ns)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            tx.commit().await?;
            n
        }))
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
    fn statement_groups_split_by_rows_and_bytes() {
        let rows: Vec<usize> = vec![1; 2500];
        let groups = statement_groups(&rows, |_| 0);
        assert_eq!(
            groups.iter().map(|g| g.len()).collect::<Vec<_>>(),
            vec![1000, 1000, 500]
        );
        let big: Vec<usize> = vec![3 * 1024 * 1024; 3];
        let groups = statement_groups(&big, |b| *b);
        assert_eq!(groups.len(), 3, "each 3 MiB blob in its own statement");
        let one_huge = vec![64 * 1024 * 1024_usize];
        assert_eq!(statement_groups(&one_huge, |b| *b).len(), 1);
        assert!(statement_groups::<usize>(&[], |_| 0).is_empty());
    }

    #[test]
    fn regrouping_splits_on_gaps_and_keeps_nan() {
        let row = |id: i64, t: i64, p: Option<f32>| ProbRow {
            id,
            patient_id: "p".into(),
            t_ns: t,
            step_ns: 500,
            p,
            channels: r#"["a","b"]"#.into(),
            channel_p: r#"[0.5,null]"#.into(),
            model_id: "m".into(),
            model_sha256: "s".into(),
            emitted_ns: 9,
        };
        let rows = vec![
            row(1, 1000, Some(0.5)),
            row(2, 1500, None),
            row(3, 3000, Some(0.25)),
        ];
        let recs = regroup_probabilities(&rows).expect("regroup");
        assert_eq!(recs.len(), 2);
        assert_eq!(recs[0].start_ns, 1000);
        assert_eq!(recs[0].aggregate_p.len(), 2);
        assert!(recs[0].aggregate_p[1].is_nan(), "NULL comes back as NaN");
        assert!(recs[0].channel_p[1][0].is_nan());
        assert_eq!(recs[0].channel_p[0], vec![0.5, 0.5]);
        assert_eq!(recs[1].start_ns, 3000);
    }

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
