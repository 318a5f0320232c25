//! What the store takes and returns: users and roles, history queries and pages, the write
//! batch the consumer builds, and the row shapes the history API serves.

use serde::{Deserialize, Serialize};
use uuid::Uuid;
use vigil_core::record::{
    AlertEvent, AlertKind, AlertTransition, DeadLetter, EegChunk, EegTrends, HrBatch, HrSource,
    SeizureProbability,
};

use crate::error::StorageError;

/// What a user may see.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Sees only the patients assigned to them.
    Clinician,
    /// Sees every patient (research access; every read is audited).
    Researcher,
    /// Sees every patient and manages users.
    Admin,
}

impl Role {
    /// The value stored in `users.role`.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Clinician => "clinician",
            Role::Researcher => "researcher",
            Role::Admin => "admin",
        }
    }

    /// True when the role sees every patient without assignments.
    pub fn sees_all_patients(self) -> bool {
        matches!(self, Role::Researcher | Role::Admin)
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Role {
    type Err = StorageError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "clinician" => Ok(Role::Clinician),
            "researcher" => Ok(Role::Researcher),
            "admin" => Ok(Role::Admin),
            other => Err(StorageError::Invalid {
                field: "role",
                reason: format!("{other:?} is not clinician, researcher or admin"),
            }),
        }
    }
}

/// A person who reads patient data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct User {
    /// Row id.
    pub id: i64,
    /// Login name.
    pub username: String,
    /// What the user may see.
    pub role: Role,
}

/// One read of patient data, for the audit log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    /// Who read.
    pub user_id: i64,
    /// Whose data (`*` for a listing of patients).
    pub patient_id: String,
    /// What kind of read, e.g. `read_hr`, `fhir_export`.
    pub action: String,
    /// Parameters of the read (time range, cursor), for reconstruction.
    pub detail: String,
}

/// A row of the audit log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// Row id.
    pub id: i64,
    /// When, UTC ns.
    pub at_ns: i64,
    /// The entry.
    pub user_id: i64,
    /// Whose data.
    pub patient_id: String,
    /// What kind of read.
    pub action: String,
    /// Parameters.
    pub detail: String,
}

/// A page request over one patient's data in `[from_ns, to_ns)`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryQuery {
    /// Patient.
    pub patient_id: String,
    /// Start of the time range, UTC ns, inclusive.
    pub from_ns: i64,
    /// End of the time range, UTC ns, exclusive.
    pub to_ns: i64,
    /// Most items (points for probabilities and heart rate) on the page, 1..=10,000.
    pub limit: u32,
    /// `next_cursor` of the previous page; `None` for the first page.
    pub cursor: Option<String>,
}

/// Most items one page may hold, whatever the caller asks.
pub const MAX_PAGE_ITEMS: u32 = 10_000;

/// One page of results.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Page<T> {
    /// Items in time order.
    pub items: Vec<T>,
    /// Opaque cursor for the next page; `None` on the last page.
    pub next_cursor: Option<String>,
}

/// One stored heart-rate point with where it came from.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct HrSample {
    /// UTC time of the observation, ns.
    pub t_ns: i64,
    /// Beats per minute.
    pub bpm: f32,
    /// RR interval in ms, when the sensor reported it.
    pub rr_ms: Option<f32>,
    /// Kind of sensor.
    pub source: HrSource,
    /// Device stream.
    pub stream_id: Uuid,
    /// Batch sequence number within the stream.
    pub seq: u64,
}

/// An alert with every transition stored for it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertHistory {
    /// Alert id.
    pub alert_id: Uuid,
    /// Patient.
    pub patient_id: String,
    /// Condition.
    pub kind: AlertKind,
    /// When the condition began (signal time), UTC ns.
    pub onset_ns: i64,
    /// The latest transition (by `at_ns`): the alert's current state.
    pub state: AlertTransition,
    /// Time of the latest transition, UTC ns.
    pub last_at_ns: i64,
    /// Every transition, oldest first.
    pub events: Vec<AlertEvent>,
}

/// A patient the store has data or assignments for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PatientSummary {
    /// Patient id.
    pub patient_id: String,
    /// When the store first saw the patient, UTC ns.
    pub first_seen_ns: i64,
}

/// A dead letter with the position it had on the DLQ topic (its idempotency key).
#[derive(Debug, Clone, PartialEq)]
pub struct StoredDeadLetter {
    /// Full DLQ topic name.
    pub dlq_topic: String,
    /// Partition on the DLQ topic.
    pub dlq_partition: i32,
    /// Offset on the DLQ topic.
    pub dlq_offset: i64,
    /// The dead letter.
    pub letter: DeadLetter,
}

/// Records to make durable in one transaction. Writing the same batch again (redelivery)
/// changes nothing: every table is keyed by the record's natural key.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WriteBatch {
    /// Raw EEG chunks, keyed by `(stream_id, seq)`.
    pub eeg: Vec<EegChunk>,
    /// Heart-rate batches, keyed by `(stream_id, seq, point index)`.
    pub hr: Vec<HrBatch>,
    /// Seizure probabilities, one row per point, keyed by `(patient_id, model.id, t_ns)`.
    pub probabilities: Vec<SeizureProbability>,
    /// qEEG trend intervals, keyed by `(patient_id, start_ns)`.
    pub trends: Vec<EegTrends>,
    /// Alert transitions, keyed by `(alert_id, transition, at_ns)`.
    pub alerts: Vec<AlertEvent>,
    /// Dead letters, keyed by their DLQ position.
    pub dead_letters: Vec<StoredDeadLetter>,
    /// Plan Parquet archive parts for the rows this batch newly inserts.
    pub archive: bool,
}

impl WriteBatch {
    /// Records in the batch.
    pub fn len(&self) -> usize {
        self.eeg.len()
            + self.hr.len()
            + self.probabilities.len()
            + self.trends.len()
            + self.alerts.len()
            + self.dead_letters.len()
    }

    /// True when the batch holds no record.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// What a committed batch holds, in rows per table (new rows and rows already present from
/// an earlier delivery alike: after the commit all of them are durable).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WriteSummary {
    /// `eeg_chunks` rows.
    pub eeg_chunks: usize,
    /// `hr_points` rows.
    pub hr_points: usize,
    /// `seizure_prob` rows.
    pub prob_points: usize,
    /// `eeg_trends` rows.
    pub trend_intervals: usize,
    /// `alert_events` rows.
    pub alert_events: usize,
    /// `dead_letters` rows.
    pub dead_letters: usize,
    /// Encoded EEG sample bytes before compression.
    pub eeg_raw_bytes: usize,
    /// Compressed EEG bytes written.
    pub eeg_stored_bytes: usize,
    /// Archive parts planned in this transaction (to be written by the archiver).
    pub archive_parts: Vec<ArchivePart>,
}

/// Which dataset an archive part belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ArchiveKind {
    /// Raw EEG.
    Eeg,
    /// Heart rate.
    Hr,
    /// Seizure probabilities.
    Prob,
}

impl ArchiveKind {
    /// Directory label (`kind=<label>`).
    pub fn as_str(self) -> &'static str {
        match self {
            ArchiveKind::Eeg => "eeg",
            ArchiveKind::Hr => "hr",
            ArchiveKind::Prob => "prob",
        }
    }

    /// Parses a stored label.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "eeg" => Some(ArchiveKind::Eeg),
            "hr" => Some(ArchiveKind::Hr),
            "prob" => Some(ArchiveKind::Prob),
            _ => None,
        }
    }
}

/// One Parquet file of the research archive: the rows of one kind, patient and UTC day that
/// one transaction inserted. Planned inside the transaction, written after it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ArchivePart {
    /// Part id (uuid), also the file name stem.
    pub part_id: String,
    /// Dataset.
    pub kind: ArchiveKind,
    /// Patient.
    pub patient_id: String,
    /// UTC day, `YYYY-MM-DD`.
    pub day: String,
}
