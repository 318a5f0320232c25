//! History queries: time ranges, keyset pages, probabilities regrouped into records.

use super::*;

/// Checks a history query and returns its cursor.
pub(super) fn check_query(kind: &str, q: &HistoryQuery) -> Result<Cursor, StorageError> {
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
pub(super) fn page_of<R>(
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

/// A row type every history query can read on both backends.
pub(super) trait PageRow:
    Send
    + Unpin
    + for<'r> sqlx::FromRow<'r, sqlx::sqlite::SqliteRow>
    + for<'r> sqlx::FromRow<'r, sqlx::mysql::MySqlRow>
{
}

impl<R> PageRow for R where
    R: Send
        + Unpin
        + for<'r> sqlx::FromRow<'r, sqlx::sqlite::SqliteRow>
        + for<'r> sqlx::FromRow<'r, sqlx::mysql::MySqlRow>
{
}

impl Store {
    // ---- history -----------------------------------------------------------------------

    /// Runs one keyset-page query: `sql` binds the patient, two range bounds, the cursor
    /// (time, time, id) and the row limit, in that order; returns up to `limit + 1` rows.
    async fn page_rows<R: PageRow>(
        &self,
        sql: &str,
        q: &HistoryQuery,
        bounds: (i64, i64),
        cursor: &Cursor,
    ) -> Result<Vec<R>, StorageError> {
        Ok(on_pool!(&self.pool, |p| sqlx::query_as(sql)
            .bind(&q.patient_id)
            .bind(bounds.0)
            .bind(bounds.1)
            .bind(cursor.time)
            .bind(cursor.time)
            .bind(cursor.id)
            .bind(i64::from(q.limit) + 1)
            .fetch_all(p)
            .await)?)
    }

    /// EEG chunks of the patient overlapping `[from_ns, to_ns)`, by start time.
    pub async fn eeg(&self, q: &HistoryQuery) -> Result<Page<EegChunk>, StorageError> {
        let cursor = check_query("eeg", q)?;
        let sql = "SELECT id, start_ns, blob_format, samples FROM eeg_chunks \
                   WHERE patient_id = ? AND start_ns < ? AND end_ns > ? \
                   AND (start_ns > ? OR (start_ns = ? AND id > ?)) \
                   ORDER BY start_ns, id LIMIT ?";
        let rows: Vec<EegRowOut> = self
            .page_rows(sql, q, (q.to_ns, q.from_ns), &cursor)
            .await?;
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
        let rows: Vec<HrRowOut> = self
            .page_rows(sql, q, (q.from_ns, q.to_ns), &cursor)
            .await?;
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
        let rows: Vec<ProbRow> = self
            .page_rows(sql, q, (q.from_ns, q.to_ns), &cursor)
            .await?;
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

    /// qEEG trend intervals of the patient starting in `[from_ns, to_ns)`, by start; `limit`
    /// counts intervals. NaN (not evaluated) comes back as NaN.
    pub async fn trends(&self, q: &HistoryQuery) -> Result<Page<EegTrends>, StorageError> {
        let cursor = check_query("trends", q)?;
        let sql = "SELECT id, start_ns, record FROM eeg_trends \
                   WHERE patient_id = ? AND start_ns >= ? AND start_ns < ? \
                   AND (start_ns > ? OR (start_ns = ? AND id > ?)) \
                   ORDER BY start_ns, id LIMIT ?";
        let rows: Vec<TrendRowOut> = self
            .page_rows(sql, q, (q.from_ns, q.to_ns), &cursor)
            .await?;
        let (rows, next_cursor) = page_of("trends", rows, q.limit, |r| Cursor {
            time: r.start_ns,
            id: r.id,
        });
        let items = rows
            .iter()
            .map(TrendRowOut::decode)
            .collect::<Result<_, _>>()?;
        Ok(Page { items, next_cursor })
    }

    /// Alerts of the patient active at some time in `[from_ns, to_ns)` (onset before the
    /// end, last transition at or after the start), by onset, each with all its events.
    pub async fn alerts(&self, q: &HistoryQuery) -> Result<Page<AlertHistory>, StorageError> {
        let cursor = check_query("alerts", q)?;
        let sql = "SELECT id, alert_id, patient_id, kind, onset_ns, last_at_ns, state \
                   FROM alerts WHERE patient_id = ? AND onset_ns < ? AND last_at_ns >= ? \
                   AND (onset_ns > ? OR (onset_ns = ? AND id > ?)) \
                   ORDER BY onset_ns, id LIMIT ?";
        let rows: Vec<AlertRowOut> = self
            .page_rows(sql, q, (q.to_ns, q.from_ns), &cursor)
            .await?;
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
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
