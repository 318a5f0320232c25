//! What the dashboard needs from the clinical database, as two narrow traits:
//!
//! - [`ClinicalDirectory`]: staff logins, roles, patient assignments and the audit log;
//! - [`HistorySource`]: stored probabilities, heart rate, alert events, EEG and qEEG trends
//!   for scroll-back.
//!
//! Production implements both with `vigil_storage::Store` (see [`crate::storage`]); the
//! [`memory`] implementation serves unit tests.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use vigil_core::record::{AlertEvent, EegChunk, EegTrends, SeizureProbability};

/// A staff member's role (storage's): clinician, researcher or admin.
pub use vigil_storage::Role;

/// Whether a role may acknowledge alerts: only clinicians (a clinical act).
pub fn may_acknowledge(role: Role) -> bool {
    matches!(role, Role::Clinician)
}

/// A logged-in staff member.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StaffUser {
    /// Database id (goes into the session cookie).
    pub id: i64,
    /// Login name; also the `by` of acknowledgements.
    pub username: String,
    /// Role.
    pub role: Role,
}

/// One entry of the audit log: who read or changed which patient's data (`action`:
/// `live_view`, `history_read`, `acknowledge_alert`). Storage's type, written as it is.
pub use vigil_storage::AuditEntry;

/// A database failure (message only: the adapters wrap their own error types).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct DirectoryError(pub String);

/// Staff, assignments and the audit log.
#[async_trait]
pub trait ClinicalDirectory: Send + Sync + 'static {
    /// The user when `password` is theirs (storage checks the argon2 hash), else `None`.
    async fn verify_login(
        &self,
        username: &str,
        password: &str,
    ) -> Result<Option<StaffUser>, DirectoryError>;
    /// The user with this id, if they still exist.
    async fn user(&self, id: i64) -> Result<Option<StaffUser>, DirectoryError>;
    /// Patients assigned to the user, for the ward overview.
    async fn assigned_patients(&self, user: &StaffUser) -> Result<Vec<String>, DirectoryError>;
    /// Whether the user may read the patient's data.
    async fn may_read(&self, user: &StaffUser, patient_id: &str) -> Result<bool, DirectoryError>;
    /// Appends an audit row; a read is refused when it cannot be audited.
    async fn audit(&self, record: &AuditEntry) -> Result<(), DirectoryError>;
}

/// A time range of one patient's stored data, paged (storage's query type).
pub use vigil_storage::HistoryQuery;
/// One page of history, oldest first, with the cursor of the next (storage's page type).
pub use vigil_storage::Page;

/// A stored heart-rate observation.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct HrSample {
    /// UTC ns.
    pub t_ns: i64,
    /// Beats per minute.
    pub bpm: f32,
    /// RR interval in ms when measured.
    pub rr_ms: Option<f32>,
}

/// Stored data for scroll-back.
#[async_trait]
pub trait HistorySource: Send + Sync + 'static {
    /// Seizure probability records overlapping the range.
    async fn probabilities(
        &self,
        query: &HistoryQuery,
    ) -> Result<Page<SeizureProbability>, DirectoryError>;
    /// Heart-rate points in the range.
    async fn heart_rate(&self, query: &HistoryQuery) -> Result<Page<HrSample>, DirectoryError>;
    /// Alert events in the range.
    async fn alerts(&self, query: &HistoryQuery) -> Result<Page<AlertEvent>, DirectoryError>;
    /// Raw EEG chunks in the range.
    async fn eeg(&self, query: &HistoryQuery) -> Result<Page<EegChunk>, DirectoryError>;
    /// qEEG trend intervals starting in the range.
    async fn trends(&self, query: &HistoryQuery) -> Result<Page<EegTrends>, DirectoryError>;
}

pub mod memory {
    //! An in-memory [`ClinicalDirectory`] + [`HistorySource`] for unit tests. Passwords are
    //! kept in plain memory: never use it for real staff.

    use std::collections::{BTreeMap, BTreeSet};
    use std::sync::Mutex;

    use super::*;

    #[derive(Debug, Default)]
    struct Tables {
        users: BTreeMap<i64, (StaffUser, String)>,
        assignments: BTreeSet<(i64, String)>,
        audit: Vec<AuditEntry>,
        probabilities: Vec<SeizureProbability>,
        heart_rate: Vec<(String, HrSample)>,
        alerts: Vec<AlertEvent>,
        trends: Vec<EegTrends>,
        fail: bool,
    }

    /// Users, assignments, audit rows and history in memory.
    #[derive(Debug, Default)]
    pub struct MemoryClinicalStore {
        tables: Mutex<Tables>,
    }

    impl MemoryClinicalStore {
        fn tables(&self) -> std::sync::MutexGuard<'_, Tables> {
            self.tables.lock().unwrap_or_else(|p| p.into_inner())
        }

        fn check(&self) -> Result<std::sync::MutexGuard<'_, Tables>, DirectoryError> {
            let tables = self.tables();
            if tables.fail {
                return Err(DirectoryError("memory store set to fail".to_owned()));
            }
            Ok(tables)
        }

        /// Adds a user and returns it.
        pub fn add_user(&self, username: &str, password: &str, role: Role) -> StaffUser {
            let mut tables = self.tables();
            let id = tables.users.len() as i64 + 1;
            let user = StaffUser {
                id,
                username: username.to_owned(),
                role,
            };
            tables.users.insert(id, (user.clone(), password.to_owned()));
            user
        }

        /// Removes a user (their sessions stop working).
        pub fn remove_user(&self, id: i64) {
            self.tables().users.remove(&id);
        }

        /// Assigns a patient to a user.
        pub fn assign(&self, user_id: i64, patient_id: &str) {
            self.tables()
                .assignments
                .insert((user_id, patient_id.to_owned()));
        }

        /// Removes an assignment.
        pub fn unassign(&self, user_id: i64, patient_id: &str) {
            self.tables()
                .assignments
                .remove(&(user_id, patient_id.to_owned()));
        }

        /// Audit rows written so far.
        pub fn audit_log(&self) -> Vec<AuditEntry> {
            self.tables().audit.clone()
        }

        /// Makes every call fail (outage tests).
        pub fn set_failing(&self, fail: bool) {
            self.tables().fail = fail;
        }

        /// Stores a probability record.
        pub fn add_probability(&self, record: SeizureProbability) {
            self.tables().probabilities.push(record);
        }

        /// Stores heart-rate points.
        pub fn add_heart_rate(&self, patient_id: &str, samples: &[HrSample]) {
            let mut tables = self.tables();
            for s in samples {
                tables.heart_rate.push((patient_id.to_owned(), *s));
            }
        }

        /// Stores an alert event.
        pub fn add_alert(&self, event: AlertEvent) {
            self.tables().alerts.push(event);
        }

        /// Stores a trend interval.
        pub fn add_trends(&self, trends: EegTrends) {
            self.tables().trends.push(trends);
        }
    }

    fn page<T: Clone>(
        mut matching: Vec<(i64, T)>,
        query: &HistoryQuery,
    ) -> Result<Page<T>, DirectoryError> {
        matching.sort_by_key(|(t, _)| *t);
        let skip = match &query.cursor {
            None => 0,
            Some(c) => c
                .parse::<usize>()
                .map_err(|_| DirectoryError(format!("bad cursor {c:?}")))?,
        };
        let limit = query.limit as usize;
        let items: Vec<T> = matching
            .iter()
            .skip(skip)
            .take(limit)
            .map(|(_, v)| v.clone())
            .collect();
        let next = skip + items.len();
        Ok(Page {
            next_cursor: (next < matching.len()).then(|| next.to_string()),
            items,
        })
    }

    #[async_trait]
    impl ClinicalDirectory for MemoryClinicalStore {
        async fn verify_login(
            &self,
            username: &str,
            password: &str,
        ) -> Result<Option<StaffUser>, DirectoryError> {
            Ok(self
                .check()?
                .users
                .values()
                .find(|(u, p)| u.username == username && p == password)
                .map(|(u, _)| u.clone()))
        }

        async fn user(&self, id: i64) -> Result<Option<StaffUser>, DirectoryError> {
            Ok(self.check()?.users.get(&id).map(|(u, _)| u.clone()))
        }

        async fn assigned_patients(&self, user: &StaffUser) -> Result<Vec<String>, DirectoryError> {
            Ok(self
                .check()?
                .assignments
                .iter()
                .filter(|(u, _)| *u == user.id)
                .map(|(_, p)| p.clone())
                .collect())
        }

        async fn may_read(
            &self,
            user: &StaffUser,
            patient_id: &str,
        ) -> Result<bool, DirectoryError> {
            Ok(self
                .check()?
                .assignments
                .contains(&(user.id, patient_id.to_owned())))
        }

        async fn audit(&self, record: &AuditEntry) -> Result<(), DirectoryError> {
            self.check()?.audit.push(record.clone());
            Ok(())
        }
    }

    #[async_trait]
    impl HistorySource for MemoryClinicalStore {
        async fn probabilities(
            &self,
            query: &HistoryQuery,
        ) -> Result<Page<SeizureProbability>, DirectoryError> {
            let matching = self
                .check()?
                .probabilities
                .iter()
                .filter(|r| {
                    let end = r.start_ns + r.step_ns * r.aggregate_p.len() as i64;
                    r.patient_id == query.patient_id
                        && end > query.from_ns
                        && r.start_ns < query.to_ns
                })
                .map(|r| (r.start_ns, r.clone()))
                .collect();
            page(matching, query)
        }

        async fn heart_rate(&self, query: &HistoryQuery) -> Result<Page<HrSample>, DirectoryError> {
            let matching = self
                .check()?
                .heart_rate
                .iter()
                .filter(|(p, s)| {
                    *p == query.patient_id && s.t_ns >= query.from_ns && s.t_ns < query.to_ns
                })
                .map(|(_, s)| (s.t_ns, *s))
                .collect();
            page(matching, query)
        }

        async fn alerts(&self, query: &HistoryQuery) -> Result<Page<AlertEvent>, DirectoryError> {
            let matching = self
                .check()?
                .alerts
                .iter()
                .filter(|e| {
                    e.patient_id == query.patient_id
                        && e.at_ns >= query.from_ns
                        && e.at_ns < query.to_ns
                })
                .map(|e| (e.at_ns, e.clone()))
                .collect();
            page(matching, query)
        }

        async fn eeg(&self, _query: &HistoryQuery) -> Result<Page<EegChunk>, DirectoryError> {
            Ok(Page {
                items: Vec::new(),
                next_cursor: None,
            })
        }

        async fn trends(&self, query: &HistoryQuery) -> Result<Page<EegTrends>, DirectoryError> {
            let matching = self
                .check()?
                .trends
                .iter()
                .filter(|t| {
                    t.patient_id == query.patient_id
                        && t.start_ns >= query.from_ns
                        && t.start_ns < query.to_ns
                })
                .map(|t| (t.start_ns, t.clone()))
                .collect();
            page(matching, query)
        }
    }
}
