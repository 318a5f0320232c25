//! The audit log of patient-data reads.

use super::*;

impl Store {
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
}
