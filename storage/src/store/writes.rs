//! Batched, idempotent writes of the pipeline's records in one transaction per batch.

use super::*;

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

/// Inserts a batch's signals in `$tx`: patients, EEG chunks, heart-rate points, seizure
/// probabilities, trend intervals.
macro_rules! insert_signals {
    ($tx:ident, $prepared:expr, $dialect:expr, $ignore_id:expr, $now:expr) => {{
        let (prepared, dialect, ignore_id, now) = ($prepared, $dialect, &$ignore_id, $now);
        insert_rows!(
            $tx,
            "INSERT INTO patients (patient_id, created_ns) ",
            &prepared.patients,
            |_| 0,
            dialect.ignore_duplicates("patient_id"),
            |b, r| {
                b.push_bind(r.as_str()).push_bind(now);
            }
        );
        insert_rows!(
            $tx,
            "INSERT INTO eeg_chunks (patient_id, device_id, stream_id, seq, start_ns, \
             end_ns, received_ns, sample_rate_hz, channels, n_samples, blob_format, \
             samples, archive_part, stored_ns) ",
            &prepared.eeg,
            |r: &EegRowIn| r.blob.len(),
            ignore_id,
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
            $tx,
            "INSERT INTO hr_points (patient_id, device_id, stream_id, seq, idx, t_ns, bpm, \
             rr_ms, source, archive_part, stored_ns) ",
            &prepared.hr,
            |_| 0,
            ignore_id,
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
            $tx,
            "INSERT INTO seizure_prob (patient_id, t_ns, step_ns, p, channels, channel_p, \
             model_id, model_sha256, emitted_ns, archive_part, stored_ns) ",
            &prepared.prob,
            |r: &ProbRowIn| r.channel_p.len() + r.channels.len(),
            ignore_id,
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
            $tx,
            "INSERT INTO eeg_trends (patient_id, stream_id, start_ns, duration_ns, record, \
             emitted_ns, stored_ns) ",
            &prepared.trends,
            |r: &TrendRowIn| r.record.len(),
            ignore_id,
            |b, r| {
                b.push_bind(r.patient_id.as_str())
                    .push_bind(r.stream_id.as_str())
                    .push_bind(r.start_ns)
                    .push_bind(r.duration_ns)
                    .push_bind(r.record.as_slice())
                    .push_bind(r.emitted_ns)
                    .push_bind(now);
            }
        );
    }};
}

/// Inserts a batch's alert transitions (summary row and event), dead letters and the
/// archive parts it planned in `$tx`. An onset refinement is an event, not a state: it only
/// moves its summary row's onset back.
macro_rules! insert_events {
    ($tx:ident, $batch:expr, $prepared:expr, $alert_rows:expr, $dialect:expr, $ignore_id:expr, $now:expr) => {{
        let (batch, prepared, alert_rows, dialect, ignore_id, now) =
            ($batch, $prepared, &$alert_rows, $dialect, &$ignore_id, $now);
        let (refinements, state_rows): (Vec<&AlertEvent>, Vec<&AlertEvent>) = alert_rows
            .iter()
            .partition(|e| e.transition == AlertTransition::OnsetRefined);
        insert_rows!(
            $tx,
            "INSERT INTO alerts (alert_id, patient_id, kind, onset_ns, first_at_ns, \
             last_at_ns, state) ",
            &state_rows,
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
        for e in refinements {
            sqlx::query(dialect.alert_onset_refine())
                .bind(e.onset_ns)
                .bind(e.alert_id.to_string())
                .execute(&mut *$tx)
                .await?;
        }
        insert_rows!(
            $tx,
            "INSERT INTO alert_events (alert_id, patient_id, kind, transition, onset_ns, \
             at_ns, by_user, p, burden, bpm, baseline_bpm, hr_rise_bpm, rmssd_ms, \
             stored_ns) ",
            alert_rows,
            |_| 0,
            ignore_id,
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
            $tx,
            "INSERT INTO dead_letters (dlq_topic, dlq_partition, dlq_offset, stage, \
             source_topic, source_partition, source_offset, record_key, payload, \
             truncated, reason, at_ns, stored_ns) ",
            &batch.dead_letters,
            |d: &crate::types::StoredDeadLetter| d.letter.payload.len(),
            ignore_id,
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
            $tx,
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
    }};
}

/// Everything a batch inserts, computed before the transaction opens.
#[derive(Default)]
struct PreparedBatch {
    patients: Vec<String>,
    eeg: Vec<EegRowIn>,
    hr: Vec<HrRowIn>,
    prob: Vec<ProbRowIn>,
    trends: Vec<TrendRowIn>,
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

impl Store {
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
        for trends in &batch.trends {
            patients.insert(trends.patient_id.clone());
            prepared.trends.push(TrendRowIn::new(trends)?);
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
            trend_intervals: prepared.trends.len(),
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
            insert_signals!(tx, prepared, dialect, ignore_id, now);
            insert_events!(tx, batch, prepared, alert_rows, dialect, ignore_id, now);
            tx.commit().await?;
        });
        Ok(())
    }
}

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
}
