//! EEG from Vigil's Parquet research archive (`kind=eeg`, written by `vigil store`; layout in
//! docs/STORAGE.md) as a [`Recording`], so archived sessions replay like EDF files.
//!
//! The input is one `.parquet` file or a directory searched recursively (e.g.
//! `archive/kind=eeg/patient=pat-0042`). Rows are one chunk and channel each. Chunks are put
//! in time order (by `start_time`, then `stream_id` and `seq`) and concatenated; a gap
//! between a chunk's end and the next chunk's start becomes NaN samples (missing, as on the
//! bus), so a replay keeps the recording's timing. Every chunk must have the same rate and
//! channels, and chunks must not overlap (two devices of one patient at once): such an
//! archive is refused with the reason rather than merged.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use arrow::array::{
    Array, AsArray, Float64Array, Int32Array, Int64Array, StringArray, TimestampNanosecondArray,
};
use arrow::datatypes::Float32Type;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use crate::edf::{EdfError, EdfHeader, EdfVariant, Recording, Signal, SignalHeader};

/// One archived chunk: its channels in `channel_index` order.
#[derive(Debug, Default)]
struct ArchivedChunk {
    patient_id: String,
    sample_rate_hz: f64,
    channels: BTreeMap<i32, (String, Vec<f32>)>,
}

fn archive_error(path: &Path, problem: impl Into<String>) -> EdfError {
    EdfError::Archive {
        path: path.display().to_string(),
        problem: problem.into(),
    }
}

fn parquet_files(path: &Path) -> Result<Vec<PathBuf>, EdfError> {
    if path.is_file() {
        return Ok(vec![path.to_owned()]);
    }
    let mut files = Vec::new();
    let mut dirs = vec![path.to_owned()];
    while let Some(dir) = dirs.pop() {
        let entries = std::fs::read_dir(&dir).map_err(|source| EdfError::Io {
            path: dir.display().to_string(),
            source,
        })?;
        for entry in entries {
            let entry = entry.map_err(|source| EdfError::Io {
                path: dir.display().to_string(),
                source,
            })?;
            let p = entry.path();
            if p.is_dir() {
                dirs.push(p);
            } else if p.extension().is_some_and(|e| e == "parquet") {
                files.push(p);
            }
        }
    }
    files.sort();
    if files.is_empty() {
        return Err(archive_error(path, "no .parquet files"));
    }
    Ok(files)
}

fn column<'a, T: 'static>(
    batch: &'a arrow::record_batch::RecordBatch,
    name: &str,
    file: &Path,
) -> Result<&'a T, EdfError> {
    batch
        .column_by_name(name)
        .and_then(|c| c.as_any().downcast_ref::<T>())
        .ok_or_else(|| archive_error(file, format!("no column {name:?} of the EEG layout")))
}

/// Reads the chunks of `file` into `chunks`, keyed by (start, stream, seq).
fn read_file(
    file: &Path,
    chunks: &mut BTreeMap<(i64, String, i64), ArchivedChunk>,
) -> Result<(), EdfError> {
    let handle = File::open(file).map_err(|source| EdfError::Io {
        path: file.display().to_string(),
        source,
    })?;
    let reader = ParquetRecordBatchReaderBuilder::try_new(handle)
        .and_then(|b| b.build())
        .map_err(|e| archive_error(file, e.to_string()))?;
    for batch in reader {
        let batch = batch.map_err(|e| archive_error(file, e.to_string()))?;
        let patient: &StringArray = column(&batch, "patient_id", file)?;
        let stream: &StringArray = column(&batch, "stream_id", file)?;
        let seq: &Int64Array = column(&batch, "seq", file)?;
        let start: &TimestampNanosecondArray = column(&batch, "start_time", file)?;
        let rate: &Float64Array = column(&batch, "sample_rate_hz", file)?;
        let index: &Int32Array = column(&batch, "channel_index", file)?;
        let label: &StringArray = column(&batch, "channel", file)?;
        let samples = batch
            .column_by_name("samples")
            .and_then(|c| c.as_list_opt::<i32>())
            .ok_or_else(|| archive_error(file, "no list column \"samples\""))?;
        for row in 0..batch.num_rows() {
            let values = samples.value(row);
            let values = values
                .as_primitive_opt::<Float32Type>()
                .ok_or_else(|| archive_error(file, "samples are not float32"))?;
            let chunk = chunks
                .entry((
                    start.value(row),
                    stream.value(row).to_owned(),
                    seq.value(row),
                ))
                .or_default();
            chunk.patient_id = patient.value(row).to_owned();
            chunk.sample_rate_hz = rate.value(row);
            chunk.channels.insert(
                index.value(row),
                (label.value(row).to_owned(), values.values().to_vec()),
            );
        }
    }
    Ok(())
}

/// Reads the EEG of a Vigil archive file or directory as one continuous recording.
pub fn read_eeg(path: &Path) -> Result<Recording, EdfError> {
    let mut chunks = BTreeMap::new();
    for file in parquet_files(path)? {
        read_file(&file, &mut chunks)?;
    }
    let Some(((first_start, _, _), first)) = chunks.iter().next() else {
        return Err(archive_error(path, "no EEG rows"));
    };
    let (first_start, rate) = (*first_start, first.sample_rate_hz);
    let labels: Vec<String> = first.channels.values().map(|(l, _)| l.clone()).collect();
    let patient = first.patient_id.clone();
    let ns_per_sample = 1e9 / rate;
    let mut rows: Vec<Vec<f32>> = vec![Vec::new(); labels.len()];
    for ((start, stream, seq), chunk) in &chunks {
        let here: Vec<&String> = chunk.channels.values().map(|(l, _)| l).collect();
        if chunk.sample_rate_hz != rate || here != labels.iter().collect::<Vec<_>>() {
            return Err(archive_error(
                path,
                format!(
                    "stream {stream} seq {seq} has {} Hz and channels {here:?}, the recording \
                     {rate} Hz and {labels:?}: replay one patient's session at a time",
                    chunk.sample_rate_hz
                ),
            ));
        }
        // Where this chunk belongs on the recording's sample grid.
        let at = ((start - first_start) as f64 / ns_per_sample).round();
        let filled = rows[0].len() as f64;
        if at < filled - 0.5 {
            return Err(archive_error(
                path,
                format!(
                    "stream {stream} seq {seq} starts {:.3} s before the previous chunk ends: \
                     overlapping chunks (two streams at once?)",
                    (filled - at) / rate
                ),
            ));
        }
        let gap = (at - filled) as usize;
        for (row, (_, values)) in rows.iter_mut().zip(chunk.channels.values()) {
            row.extend(std::iter::repeat_n(f32::NAN, gap));
            row.extend_from_slice(values);
        }
    }
    let n = rows[0].len();
    let start_s = first_start.div_euclid(1_000_000_000);
    let (days, secs) = (start_s.div_euclid(86_400), start_s.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    let header = EdfHeader {
        variant: EdfVariant::VigilArchive,
        patient,
        recording: format!("Vigil archive {}", path.display()),
        start_date: format!("{d:02}.{m:02}.{:02}", y.rem_euclid(100)),
        start_time: format!(
            "{:02}.{:02}.{:02}",
            secs / 3600,
            secs % 3600 / 60,
            secs % 60
        ),
        n_records: 1,
        record_duration_s: n as f64 / rate,
        signals: labels.iter().map(|label| signal_header(label, n)).collect(),
    };
    let signals = rows
        .into_iter()
        .zip(&header.signals)
        .map(|(row, h)| Signal {
            header: h.clone(),
            sample_rate_hz: rate,
            samples: row.into_iter().map(f64::from).collect(),
        })
        .collect();
    Ok(Recording {
        header,
        signals,
        annotations: Vec::new(),
        record_onsets_s: vec![0.0],
    })
}

fn signal_header(label: &str, samples: usize) -> SignalHeader {
    SignalHeader {
        label: label.to_owned(),
        transducer: String::new(),
        physical_dimension: "uV".to_owned(),
        physical_min: f64::from(f32::MIN),
        physical_max: f64::from(f32::MAX),
        digital_min: i32::MIN,
        digital_max: i32::MAX,
        prefilter: String::new(),
        samples_per_record: samples,
    }
}

/// Proleptic Gregorian date of a day count since 1970-01-01 (H. Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates_round_trip_with_the_header_parser() {
        for days in [-1, 0, 11_016, 19_000, 20_414, 30_000] {
            let (y, m, d) = civil_from_days(days);
            let header = EdfHeader {
                variant: EdfVariant::Edf,
                patient: String::new(),
                recording: String::new(),
                start_date: format!("{d:02}.{m:02}.{:02}", y.rem_euclid(100)),
                start_time: "00.00.00".into(),
                n_records: 0,
                record_duration_s: 1.0,
                signals: Vec::new(),
            };
            if (1985..2085).contains(&y) {
                assert_eq!(
                    header.start_ns(),
                    Some(days * 86_400 * 1_000_000_000),
                    "{y}-{m}-{d}"
                );
            }
        }
    }
}
