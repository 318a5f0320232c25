//! What the Parquet archive reads: pending parts and their rows.

use super::*;

impl Store {
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
}
