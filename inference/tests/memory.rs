//! What inference keeps per patient between chunks, counted by an instrumented allocator:
//! the memory of a patient is bounded by what its windows need and is all given back when
//! the patient is dropped.
//!
//! One test in this binary: the allocator's counters are process-wide.

use std::alloc::System;

use stats_alloc::{Region, StatsAlloc, INSTRUMENTED_SYSTEM};
use uuid::Uuid;
use vigil_core::config::TrendsConfig;
use vigil_core::record::{EegChunk, SignalUnit};
use vigil_inference::display::Mains;
use vigil_inference::patient::PatientStream;
use vigil_inference::synthetic::SyntheticChannel;
use vigil_inference::windowing::WindowParams;

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// CHB-MIT's 23 bipolar channels, as the bench and the demo send them.
const CHANNELS: [&str; 23] = [
    "FP1-F7", "F7-T7", "T7-P7", "P7-O1", "FP1-F3", "F3-C3", "C3-P3", "P3-O1", "FP2-F4", "F4-C4",
    "C4-P4", "P4-O2", "FP2-F8", "F8-T8", "T8-P8-0", "P8-O2", "FZ-CZ", "CZ-PZ", "P7-T7", "T7-FT9",
    "FT9-FT10", "FT10-T8", "T8-P8-1",
];
const FS: usize = 256;
const SECONDS: usize = 360;
const CHUNK: usize = FS / 2;

fn live_bytes(region: &Region<'_, System>) -> i64 {
    let s = region.change();
    // A realloc is already counted in allocated / deallocated by its difference.
    s.bytes_allocated as i64 - s.bytes_deallocated as i64
}

/// Every channel's signal; channel 3 has a 10 s gap and channel 5 a 5 s flat line, so the
/// raw samples of invalid segments are kept for a while, as a real stream's would be.
fn signals(seed: u64) -> Vec<Vec<f32>> {
    (0..CHANNELS.len())
        .map(|ch| {
            SyntheticChannel {
                seed: seed * 100 + ch as u64,
                burst: (ch == 0).then_some((200.0, 230.0)),
                gap: (ch == 3).then_some((330.0, 340.0)),
                flat: (ch == 5).then_some((345.0, 350.0)),
            }
            .generate(FS as f64, SECONDS as f64)
        })
        .collect()
}

fn chunk(stream_id: Uuid, seq: usize, rows: &[Vec<f32>]) -> EegChunk {
    let start_ns = 1_800_000_000_000_000_000 + seq as i64 * 500_000_000;
    EegChunk {
        patient_id: format!("p-{stream_id}"),
        device_id: "headset".into(),
        stream_id,
        seq: seq as u64,
        start_ns,
        received_ns: start_ns,
        sample_rate_hz: FS as f64,
        channels: CHANNELS.iter().map(|c| (*c).to_owned()).collect(),
        unit: SignalUnit::Microvolt,
        samples: rows
            .iter()
            .map(|row| row[seq * CHUNK..(seq + 1) * CHUNK].to_vec())
            .collect(),
    }
}

/// Feeds a patient's whole signal as the shard does (trace, trends, windows, inputs built as
/// jobs are batched) and completes each chunk's windows at once; the model's outputs are not
/// state, so none are produced.
fn run_patient(stream: &mut PatientStream, stream_id: Uuid, rows: &[Vec<f32>]) {
    for seq in 0..SECONDS * FS / CHUNK {
        let chunk = chunk(stream_id, seq, rows);
        let patient_id = chunk.patient_id.clone();
        drop(stream.trace(&patient_id, &chunk, 0));
        drop(stream.trends(&patient_id, &chunk, 0));
        let pushed = stream.push_samples(&chunk, 0);
        let final_ends: Vec<usize> = pushed.iter().map(|p| p.final_end).collect();
        let mut results = Vec::new();
        for (ch, p) in pushed.into_iter().enumerate() {
            for job in &p.jobs {
                if job.evaluate {
                    let input = stream.take_input(ch, job.start).expect("input");
                    assert_eq!(input.n_cols(), 599);
                }
            }
            results.push(p.jobs.iter().map(|job| (job.start, None)).collect());
        }
        drop(stream.complete(results, &final_ends));
    }
}

#[test]
fn patient_state_is_bounded_and_freed_when_dropped() {
    const PATIENTS: usize = 3;
    // A window of raw f32 samples, plus at most a block and a page (about 77,000 x 4 B x 23
    // channels = 6.8 MiB: the window's mean and std must be numpy's to the bit, see
    // windowing.rs); blocks, display filters and trends add about 0.8 MiB. Spectrogram
    // columns are built per window, not kept. Issue 12's target is the limit: 8 MiB. The
    // same count with a window and a step of samples and of f32 columns: 13.7 MiB.
    const LIMIT: i64 = 8 * 1024 * 1024;
    let inputs: Vec<(Uuid, Vec<Vec<f32>>)> = (0..PATIENTS)
        .map(|p| (Uuid::new_v4(), signals(p as u64 + 1)))
        .collect();
    let trends = TrendsConfig::default();

    let region = Region::new(GLOBAL);
    let mut streams = Vec::new();
    for (stream_id, rows) in &inputs {
        let before = live_bytes(&region);
        let first = chunk(*stream_id, 0, rows);
        let mut stream =
            PatientStream::start(&first, WindowParams::default(), Mains::Hz50, Some(&trends))
                .expect("stream");
        let started = live_bytes(&region);
        run_patient(&mut stream, *stream_id, rows);
        eprintln!(
            "patient {}: {:.2} MiB when started, {:.2} MiB after {SECONDS} s",
            streams.len(),
            (started - before) as f64 / 1048576.0,
            (live_bytes(&region) - before) as f64 / 1048576.0
        );
        streams.push(stream);
    }
    let per_patient = live_bytes(&region) / PATIENTS as i64;
    eprintln!(
        "live state per patient after {SECONDS} s: {:.2} MiB (limit {:.1} MiB)",
        per_patient as f64 / 1048576.0,
        LIMIT as f64 / 1048576.0
    );
    assert!(
        per_patient <= LIMIT,
        "a patient keeps {per_patient} bytes, over {LIMIT}"
    );
    drop(streams);
    let left = live_bytes(&region);
    assert!(
        left.abs() < 64 * 1024,
        "{left} bytes still allocated after every patient was dropped"
    );
}
