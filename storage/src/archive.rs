//! The research archive: Parquet files per dataset, patient and UTC day, in hive-style
//! directories that pandas, polars, duckdb and Spark read directly:
//!
//! ```text
//! <archive_dir>/kind=eeg/patient=<patient_id>/date=<YYYY-MM-DD>/part-<uuid>.parquet
//! <archive_dir>/kind=hr/...
//! <archive_dir>/kind=prob/...
//! ```
//!
//! Exactly-once: when a batch is written with `archive` on, every row the transaction newly
//! inserts is tagged with an archive part id (per kind, patient and day), and the part is
//! recorded in `archive_parts` in the same transaction. After the commit the part's file is
//! built from exactly the rows tagged with its id (so a row that was already stored by an
//! earlier delivery is never archived twice), written to a temporary name, fsynced, renamed
//! into place and the directory fsynced; only then is the part marked written and the batch
//! acknowledged. A crash at any point leaves the part pending; it is rewritten (same rows,
//! same name) at the next start.
//!
//! Columns (times are `timestamp[ns, UTC]`; NaN in EEG samples = missing sample; a null
//! probability = not evaluated, never 0):
//!
//! - eeg, one row per chunk and channel: `patient_id, device_id, stream_id, seq, start_time,
//!   sample_rate_hz, channel_index, channel, samples (list<float32>)`;
//! - hr, one row per point: `patient_id, device_id, stream_id, seq, idx, time, bpm,
//!   rr_ms (nullable), source`;
//! - prob, one row per 0.5 s point: `patient_id, time, step_ns, p (nullable), model_id,
//!   model_sha256, emitted_time, channels (list<utf8>), channel_p (list<float32>, null = not
//!   evaluated)`.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{
    ArrayRef, Float32Builder, Float64Builder, Int32Builder, Int64Builder, ListBuilder,
    StringBuilder, TimestampNanosecondBuilder,
};
use arrow::record_batch::RecordBatch;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use vigil_core::record::EegChunk;

use crate::error::StorageError;
use crate::store::{HrArchiveRow, ProbRow, Store};
use crate::types::{ArchiveKind, ArchivePart};

/// The archive root and its writer.
#[derive(Debug, Clone)]
pub struct Archive {
    root: PathBuf,
}

fn archive_err(path: &Path, reason: impl std::fmt::Display) -> StorageError {
    StorageError::Archive {
        path: path.display().to_string(),
        reason: reason.to_string(),
    }
}

fn utc_timestamps() -> TimestampNanosecondBuilder {
    TimestampNanosecondBuilder::new().with_timezone("UTC")
}

/// Builds the Arrow record batch of EEG chunks (one row per chunk and channel).
pub fn eeg_batch(chunks: &[EegChunk]) -> Result<RecordBatch, arrow::error::ArrowError> {
    let mut patient = StringBuilder::new();
    let mut device = StringBuilder::new();
    let mut stream = StringBuilder::new();
    let mut seq = Int64Builder::new();
    let mut start = utc_timestamps();
    let mut rate = Float64Builder::new();
    let mut channel_index = Int32Builder::new();
    let mut channel = StringBuilder::new();
    let mut samples = ListBuilder::new(Float32Builder::new());
    for chunk in chunks {
        for (i, (label, row)) in chunk.channels.iter().zip(&chunk.samples).enumerate() {
            patient.append_value(&chunk.patient_id);
            device.append_value(&chunk.device_id);
            stream.append_value(chunk.stream_id.to_string());
            seq.append_value(i64::try_from(chunk.seq).unwrap_or(i64::MAX));
            start.append_value(chunk.start_ns);
            rate.append_value(chunk.sample_rate_hz);
            channel_index.append_value(i as i32);
            channel.append_value(label);
            samples.values().append_slice(row);
            samples.append(true);
        }
    }
    RecordBatch::try_from_iter([
        ("patient_id", Arc::new(patient.finish()) as ArrayRef),
        ("device_id", Arc::new(device.finish())),
        ("stream_id", Arc::new(stream.finish())),
        ("seq", Arc::new(seq.finish())),
        ("start_time", Arc::new(start.finish())),
        ("sample_rate_hz", Arc::new(rate.finish())),
        ("channel_index", Arc::new(channel_index.finish())),
        ("channel", Arc::new(channel.finish())),
        ("samples", Arc::new(samples.finish())),
    ])
}

/// Builds the Arrow record batch of heart-rate points.
pub fn hr_batch(rows: &[HrArchiveRow]) -> Result<RecordBatch, arrow::error::ArrowError> {
    let mut patient = StringBuilder::new();
    let mut device = StringBuilder::new();
    let mut stream = StringBuilder::new();
    let mut seq = Int64Builder::new();
    let mut idx = Int32Builder::new();
    let mut time = utc_timestamps();
    let mut bpm = Float32Builder::new();
    let mut rr = Float32Builder::new();
    let mut source = StringBuilder::new();
    for r in rows {
        patient.append_value(&r.patient_id);
        device.append_value(&r.device_id);
        stream.append_value(&r.stream_id);
        seq.append_value(r.seq);
        idx.append_value(i32::try_from(r.idx).unwrap_or(i32::MAX));
        time.append_value(r.t_ns);
        bpm.append_value(r.bpm);
        rr.append_option(r.rr_ms);
        source.append_value(&r.source);
    }
    RecordBatch::try_from_iter([
        ("patient_id", Arc::new(patient.finish()) as ArrayRef),
        ("device_id", Arc::new(device.finish())),
        ("stream_id", Arc::new(stream.finish())),
        ("seq", Arc::new(seq.finish())),
        ("idx", Arc::new(idx.finish())),
        ("time", Arc::new(time.finish())),
        ("bpm", Arc::new(bpm.finish())),
        ("rr_ms", Arc::new(rr.finish())),
        ("source", Arc::new(source.finish())),
    ])
}

/// Builds the Arrow record batch of probability points (NaN stored as null).
pub fn prob_batch(rows: &[ProbRow]) -> Result<RecordBatch, StorageError> {
    let mut patient = StringBuilder::new();
    let mut time = utc_timestamps();
    let mut step = Int64Builder::new();
    let mut p = Float32Builder::new();
    let mut model_id = StringBuilder::new();
    let mut model_sha = StringBuilder::new();
    let mut emitted = utc_timestamps();
    let mut channels = ListBuilder::new(StringBuilder::new());
    let mut channel_p = ListBuilder::new(Float32Builder::new());
    for r in rows {
        let (labels, values) = r.channel_values()?;
        patient.append_value(&r.patient_id);
        time.append_value(r.t_ns);
        step.append_value(r.step_ns);
        p.append_option(r.p);
        model_id.append_value(&r.model_id);
        model_sha.append_value(&r.model_sha256);
        emitted.append_value(r.emitted_ns);
        for label in &labels {
            channels.values().append_value(label);
        }
        channels.append(true);
        for v in values {
            channel_p.values().append_option((!v.is_nan()).then_some(v));
        }
        channel_p.append(true);
    }
    RecordBatch::try_from_iter([
        ("patient_id", Arc::new(patient.finish()) as ArrayRef),
        ("time", Arc::new(time.finish())),
        ("step_ns", Arc::new(step.finish())),
        ("p", Arc::new(p.finish())),
        ("model_id", Arc::new(model_id.finish())),
        ("model_sha256", Arc::new(model_sha.finish())),
        ("emitted_time", Arc::new(emitted.finish())),
        ("channels", Arc::new(channels.finish())),
        ("channel_p", Arc::new(channel_p.finish())),
    ])
    .map_err(|e| archive_err(Path::new("prob"), e))
}

/// Writes `batch` to `path` atomically: temporary file in the same directory, fsync, rename,
/// fsync of the directory. A reader never sees a partial file.
pub fn write_parquet_atomic(path: &Path, batch: &RecordBatch) -> Result<(), StorageError> {
    let dir = path
        .parent()
        .ok_or_else(|| archive_err(path, "no parent directory"))?;
    std::fs::create_dir_all(dir).map_err(|e| archive_err(dir, e))?;
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| archive_err(path, "no file name"))?;
    // A leading dot keeps readers that glob `*.parquet` or skip hidden files off it; the
    // random suffix keeps two writers of the same part (crash recovery racing a live
    // instance) off each other's temporary file.
    let tmp = dir.join(format!(".{name}.{}.tmp", uuid::Uuid::new_v4().simple()));
    let file = File::create(&tmp).map_err(|e| archive_err(&tmp, e))?;
    let props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(
            ZstdLevel::try_new(3).map_err(|e| archive_err(path, e))?,
        ))
        .build();
    let mut writer = ArrowWriter::try_new(file, batch.schema(), Some(props))
        .map_err(|e| archive_err(&tmp, e))?;
    writer.write(batch).map_err(|e| archive_err(&tmp, e))?;
    let file = writer.into_inner().map_err(|e| archive_err(&tmp, e))?;
    file.sync_all().map_err(|e| archive_err(&tmp, e))?;
    drop(file);
    std::fs::rename(&tmp, path).map_err(|e| archive_err(path, e))?;
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| archive_err(dir, e))?;
    Ok(())
}

impl Archive {
    /// An archive rooted at `root` (created on first write).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// The archive root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where a part's file goes.
    pub fn part_path(&self, part: &ArchivePart) -> PathBuf {
        self.root
            .join(format!("kind={}", part.kind.as_str()))
            .join(format!("patient={}", part.patient_id))
            .join(format!("date={}", part.day))
            .join(format!("part-{}.parquet", part.part_id))
    }

    /// Writes one part from the rows tagged with its id and marks it written. Returns the
    /// file written, or `None` when no row was new (every row came from an earlier delivery).
    pub async fn write_part(
        &self,
        store: &Store,
        part: &ArchivePart,
    ) -> Result<Option<PathBuf>, StorageError> {
        let path = self.part_path(part);
        let batch = match part.kind {
            ArchiveKind::Eeg => {
                let chunks = store.archive_eeg(&part.part_id).await?;
                if chunks.is_empty() {
                    None
                } else {
                    Some(
                        tokio::task::spawn_blocking(move || eeg_batch(&chunks))
                            .await
                            .map_err(|e| StorageError::Task(e.to_string()))?
                            .map_err(|e| archive_err(&path, e))?,
                    )
                }
            }
            ArchiveKind::Hr => {
                let rows = store.archive_hr(&part.part_id).await?;
                if rows.is_empty() {
                    None
                } else {
                    Some(hr_batch(&rows).map_err(|e| archive_err(&path, e))?)
                }
            }
            ArchiveKind::Prob => {
                let rows = store.archive_prob(&part.part_id).await?;
                if rows.is_empty() {
                    None
                } else {
                    Some(prob_batch(&rows)?)
                }
            }
        };
        let written = match batch {
            Some(batch) => {
                let target = path.clone();
                tokio::task::spawn_blocking(move || write_parquet_atomic(&target, &batch))
                    .await
                    .map_err(|e| StorageError::Task(e.to_string()))??;
                Some(path)
            }
            None => None,
        };
        store.mark_archive_part_written(&part.part_id).await?;
        Ok(written)
    }

    /// Writes every pending part (after a batch, and at start to finish parts a crash left
    /// behind). Returns the files written.
    pub async fn write_pending(&self, store: &Store) -> Result<Vec<PathBuf>, StorageError> {
        let mut written = Vec::new();
        for part in store.pending_archive_parts().await? {
            if let Some(path) = self.write_part(store, &part).await? {
                written.push(path);
            }
        }
        Ok(written)
    }
}
