//! Bounded deletes for retention.

use super::*;

impl Store {
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
