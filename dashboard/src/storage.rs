//! `vigil_storage::Store` as the dashboard's [`ClinicalDirectory`] and [`HistorySource`]: a
//! thin adapter (types mapped, errors wrapped). The store does the real work: argon2 login
//! checks, assignments, the audit log and the history queries.
//!
//! One deliberate difference: the dashboard shows every role only the patients assigned to
//! them (docs/ARCHITECTURE.md "Storage and security contract"), while the store's `may_read` also lets researchers and admins
//! read any patient through the history API.

use async_trait::async_trait;
use vigil_core::record::{AlertEvent, EegChunk, EegTrends, SeizureProbability};
use vigil_storage::{StorageError, Store};

use crate::directory::{
    AuditEntry, ClinicalDirectory, DirectoryError, HistoryQuery, HistorySource, HrSample, Page,
    StaffUser,
};

fn wrap(err: StorageError) -> DirectoryError {
    DirectoryError(err.to_string())
}

fn staff(user: vigil_storage::User) -> StaffUser {
    StaffUser {
        id: user.id,
        username: user.username,
        role: user.role,
    }
}

fn page<T, U>(page: vigil_storage::Page<T>, map: impl FnMut(T) -> U) -> Page<U> {
    Page {
        items: page.items.into_iter().map(map).collect(),
        next_cursor: page.next_cursor,
    }
}

#[async_trait]
impl ClinicalDirectory for Store {
    async fn verify_login(
        &self,
        username: &str,
        password: &str,
    ) -> Result<Option<StaffUser>, DirectoryError> {
        match Store::verify_login(self, username, password).await {
            Ok(user) => Ok(user.map(staff)),
            // A username the store cannot even hold is just a failed login.
            Err(StorageError::Invalid { .. }) => Ok(None),
            Err(err) => Err(wrap(err)),
        }
    }

    async fn user(&self, id: i64) -> Result<Option<StaffUser>, DirectoryError> {
        Store::user(self, id)
            .await
            .map(|u| u.map(staff))
            .map_err(wrap)
    }

    async fn assigned_patients(&self, user: &StaffUser) -> Result<Vec<String>, DirectoryError> {
        Store::assigned_patients(self, user.id).await.map_err(wrap)
    }

    async fn may_read(&self, user: &StaffUser, patient_id: &str) -> Result<bool, DirectoryError> {
        Ok(Store::assigned_patients(self, user.id)
            .await
            .map_err(wrap)?
            .iter()
            .any(|p| p == patient_id))
    }

    async fn audit(&self, entry: &AuditEntry) -> Result<(), DirectoryError> {
        Store::audit(self, entry).await.map_err(wrap)
    }
}

#[async_trait]
impl HistorySource for Store {
    async fn probabilities(
        &self,
        q: &HistoryQuery,
    ) -> Result<Page<SeizureProbability>, DirectoryError> {
        Store::probabilities(self, q).await.map_err(wrap)
    }

    async fn heart_rate(&self, q: &HistoryQuery) -> Result<Page<HrSample>, DirectoryError> {
        Ok(page(Store::heart_rate(self, q).await.map_err(wrap)?, |s| {
            HrSample {
                t_ns: s.t_ns,
                bpm: s.bpm,
                rr_ms: s.rr_ms,
            }
        }))
    }

    async fn alerts(&self, q: &HistoryQuery) -> Result<Page<AlertEvent>, DirectoryError> {
        // The store pages alerts; the page shows their transitions.
        let alerts = Store::alerts(self, q).await.map_err(wrap)?;
        Ok(Page {
            items: alerts.items.into_iter().flat_map(|a| a.events).collect(),
            next_cursor: alerts.next_cursor,
        })
    }

    async fn eeg(&self, q: &HistoryQuery) -> Result<Page<EegChunk>, DirectoryError> {
        Store::eeg(self, q).await.map_err(wrap)
    }

    async fn trends(&self, q: &HistoryQuery) -> Result<Page<EegTrends>, DirectoryError> {
        Store::trends(self, q).await.map_err(wrap)
    }
}
