//! A session archived by `vigil store` (its Parquet writer, `vigil_storage::archive`) reads
//! back as a recording equal to the original EEG, with a lost chunk as a NaN gap, whatever
//! the files' order; archives that cannot be one recording are refused with the reason.

use std::fs::File;
use std::path::Path;

use parquet::arrow::ArrowWriter;
use uuid::Uuid;
use vigil_core::datasets;
use vigil_core::record::{EegChunk, SignalUnit};
use vigil_replay::Recording;

const START_NS: i64 = 1_795_000_000_000_000_000;

/// The sample file cut into 1 s chunks of one stream.
fn chunks(recording: &Recording, stream: Uuid) -> Vec<EegChunk> {
    let rate = recording.signals[0].sample_rate_hz;
    let per = rate as usize;
    (0..recording.signals[0].samples.len() / per)
        .map(|i| EegChunk {
            patient_id: "pat-a".into(),
            device_id: "dev-a".into(),
            stream_id: stream,
            seq: i as u64,
            start_ns: START_NS + i as i64 * 1_000_000_000,
            received_ns: START_NS + i as i64 * 1_000_000_000 + 5_000_000,
            sample_rate_hz: rate,
            channels: recording
                .signals
                .iter()
                .map(|s| s.header.label.trim().to_owned())
                .collect(),
            unit: SignalUnit::Microvolt,
            samples: recording
                .signals
                .iter()
                .map(|s| {
                    s.samples[i * per..(i + 1) * per]
                        .iter()
                        .map(|&v| v as f32)
                        .collect()
                })
                .collect(),
        })
        .collect()
}

fn write_part(path: &Path, chunks: &[EegChunk]) {
    std::fs::create_dir_all(path.parent().expect("parent")).expect("dirs");
    let batch = vigil_storage::archive::eeg_batch(chunks).expect("batch");
    let mut writer =
        ArrowWriter::try_new(File::create(path).expect("create"), batch.schema(), None)
            .expect("writer");
    writer.write(&batch).expect("write");
    writer.close().expect("close");
}

#[test]
fn an_archived_session_reads_back_as_the_recording_with_gaps_as_nan() {
    let Some(path) = datasets::for_test("edfjs/sample.edf") else {
        return;
    };
    let original = Recording::open(path).expect("sample.edf");
    let all = chunks(&original, Uuid::new_v4());
    assert_eq!(all.len(), 100);
    let dir = tempfile::tempdir().expect("tempdir");
    let day = dir.path().join("kind=eeg/patient=pat-a/date=2026-11-18");
    // Two parts written in the opposite order of time, and chunk 40 never stored.
    write_part(&day.join("part-b.parquet"), &all[..40]);
    write_part(&day.join("part-a.parquet"), &all[41..]);

    let archived = Recording::open(dir.path().join("kind=eeg")).expect("archive");
    assert_eq!(archived.signals.len(), original.signals.len());
    assert_eq!(archived.header.patient, "pat-a");
    assert_eq!(
        archived.header.start_ns(),
        Some(START_NS / 1_000_000_000 * 1_000_000_000)
    );
    for (a, o) in archived.signals.iter().zip(&original.signals) {
        assert_eq!(a.header.label, o.header.label.trim());
        assert_eq!(a.sample_rate_hz, 256.0);
        assert_eq!(a.samples.len(), o.samples.len(), "gap kept as samples");
        for (i, (x, y)) in a.samples.iter().zip(&o.samples).enumerate() {
            if (40 * 256..41 * 256).contains(&i) {
                assert!(x.is_nan(), "lost chunk is missing, not zero: sample {i}");
            } else {
                assert_eq!(*x, f64::from(*y as f32), "sample {i}");
            }
        }
    }
    // One file alone is a recording too.
    let part = Recording::open(day.join("part-b.parquet")).expect("one part");
    assert_eq!(part.signals[0].samples.len(), 40 * 256);

    // A second stream at the same time cannot be one recording.
    write_part(
        &day.join("part-c.parquet"),
        &chunks(&original, Uuid::new_v4())[..2],
    );
    let err = Recording::open(dir.path()).expect_err("overlap refused");
    assert!(err.to_string().contains("overlapping"), "{err}");
}
