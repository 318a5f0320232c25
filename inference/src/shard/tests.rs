//! Shard tests: backpressure, eviction, release and the model thread.

use super::*;
use crate::synthetic::SyntheticChannel;
use vigil_core::bus::Bus;
use vigil_core::config::BusConfig;

const T0: i64 = 1_700_000_000_000_000_000;

fn chunk(patient: usize, seq: usize, rows: &[Vec<f32>]) -> EegChunk {
    crate::synthetic::SyntheticStream {
        patient_id: &format!("patient-{patient}"),
        device_id: &format!("headset-{patient}"),
        stream_id: uuid::Uuid::from_u128(patient as u128 + 1),
        t0_ns: T0,
        channels: &["C3", "C4"],
    }
    .chunk(seq, rows)
}

/// The model, or `None` (the test is skipped) when its weights are not fetched.
fn model() -> Option<Arc<SeizureModel>> {
    let weights = vigil_core::testenv::model_weights()?;
    Some(Arc::new(SeizureModel::load(&weights).expect("model")))
}

/// A fresh in-process bus with the Vigil topics (lanes publish to them).
async fn memory_bus() -> Bus {
    let bus = Bus::connect(&BusConfig {
        url: format!("memory://{}", uuid::Uuid::new_v4()),
        ..BusConfig::default()
    })
    .await
    .expect("bus");
    bus.create_vigil_topics().await.expect("topics");
    bus
}

/// One window per batch, at most 2 queued, patients kept for 10 minutes without EEG.
fn test_config(model: Arc<SeizureModel>) -> ShardConfig {
    ShardConfig {
        model,
        model_ref: ModelRef {
            id: "brainmaze-seizure-modelA".into(),
            sha256: "0".repeat(64),
        },
        params: WindowParams::default(),
        max_gap_s: 30.0,
        mains: Mains::Hz50,
        alert_policies: AlertPolicies::default(),
        batch_windows: 1,
        max_queued_windows: 2,
        idle_evict_s: 600.0,
        trends: None,
    }
}

/// Two background channels of `seconds` at 256 Hz.
fn two_channels(seconds: f64) -> Vec<Vec<f32>> {
    (0..2)
        .map(|seed| {
            SyntheticChannel {
                seed,
                ..Default::default()
            }
            .generate(256.0, seconds)
        })
        .collect()
}

/// One lane on a fresh memory bus, whose completed tickets nobody reads.
async fn lanes_nobody_completes() -> (Lanes, Bus) {
    let bus = memory_bus().await;
    let (done_tx, _done_rx) = vigil_core::stage::Completions::channel();
    let (lanes, _lane_tasks) = Lanes::spawn(&bus, 1, done_tx, &CancellationToken::new());
    (lanes, bus)
}

/// Each shard reports its own patients under its `shard` label, so a sum over shards is
/// the instance's total (one unlabelled gauge would show only the shard that wrote last).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_shard_reports_its_own_patients() {
    let Some(model) = model() else { return };
    let metrics = vigil_core::telemetry::metrics_handle();
    let (lanes, _bus) = lanes_nobody_completes().await;
    let config = test_config(model);
    let rows = two_channels(2.0);
    let mut busy = Shard::new(7, config.clone(), AlertBook::default(), lanes.clone());
    let mut idle = Shard::new(8, config, AlertBook::default(), lanes);
    tokio::task::spawn_blocking(move || {
        for patient in 0..2 {
            let input = ShardInput::Eeg(patient as u64, Box::new(chunk(patient, 0, &rows)));
            busy.take(input).expect("take a chunk");
        }
        busy.evict_idle(None).expect("report");
        idle.evict_idle(None).expect("report");
    })
    .await
    .expect("join");
    let text = metrics.render();
    for series in [
        r#"vigil_inference_patients{shard="7"} 2"#,
        r#"vigil_inference_patients{shard="8"} 0"#,
    ] {
        assert!(text.contains(series), "{series} missing from:\n{text}");
    }
}

/// A patient is finished once the read horizon is an idle timeout past its last chunk,
/// however long ago that was on the wall clock: while the horizon stands still (a paused
/// consumer, a backlog) nobody is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_patient_is_finished_only_once_its_partitions_are_read_past_the_timeout() {
    let Some(model) = model() else { return };
    let (lanes, _bus) = lanes_nobody_completes().await;
    let config = ShardConfig {
        idle_evict_s: 1.0,
        ..test_config(model)
    };
    let rows = two_channels(2.0);
    let mut shard = Shard::new(9, config, AlertBook::default(), lanes);
    let held = tokio::task::spawn_blocking(move || {
        let before = Instant::now();
        shard
            .take(ShardInput::Eeg(1, Box::new(chunk(0, 0, &rows))))
            .expect("take a chunk");
        std::thread::sleep(std::time::Duration::from_millis(1100));
        let mut held = Vec::new();
        for horizon in [
            None,
            Some(before),
            Some(Instant::now() - std::time::Duration::from_millis(500)),
            Some(Instant::now()),
        ] {
            shard.take(ShardInput::Tick(horizon)).expect("tick");
            held.push(shard.patients.len());
        }
        held
    })
    .await
    .expect("join");
    assert_eq!(
        held,
        [1, 1, 1, 0],
        "kept while the horizon is unknown or short of the timeout, finished past it"
    );
}

/// A released patient's queued windows are skipped, and its chunk still in the queue
/// completes its ticket without touching the stream the partition's return starts anew.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_released_patients_queued_windows_are_skipped() {
    let Some(model) = model() else { return };
    let bus = memory_bus().await;
    let (done_tx, mut done_rx) = vigil_core::stage::Completions::channel();
    let (lanes, lane_tasks) = Lanes::spawn(&bus, 1, done_tx, &CancellationToken::new());
    let rows = two_channels(300.0);
    let mut shard = Shard::new(10, test_config(model), AlertBook::default(), lanes);
    let (queued, after_release, seen) = tokio::task::spawn_blocking(move || {
        // The 300th second completes the first window of both channels.
        for seq in 0..300 {
            let input = ShardInput::Eeg(seq as u64, Box::new(chunk(0, seq, &rows)));
            shard.take(input).expect("take a chunk");
        }
        let queued = shard.queued_windows();
        shard
            .take(ShardInput::Release(vec!["patient-0".into()]))
            .expect("release");
        let after_release = shard.queued_windows();
        // The partition comes back: a new stream of the patient, then the queue runs.
        let mut again = chunk(0, 0, &rows);
        again.stream_id = uuid::Uuid::from_u128(99);
        shard
            .take(ShardInput::Eeg(1000, Box::new(again)))
            .expect("take");
        shard.drain().expect("drain");
        let seen = shard.patients["patient-0"].stream.samples_seen;
        drop(shard);
        (queued, after_release, seen)
    })
    .await
    .expect("join");
    assert_eq!(
        (queued, after_release),
        (2, 0),
        "queued windows skipped on release"
    );
    assert_eq!(seen, 256, "the new stream holds only its own chunk");
    for task in lane_tasks {
        task.await.expect("lane");
    }
    let mut done = Vec::new();
    while let Ok(t) = done_rx.try_recv() {
        done.push(t);
    }
    assert!(
        done.contains(&299) && done.contains(&1000),
        "every ticket completes: {done:?}"
    );
}

/// A chunk that arrives while the model thread runs a batch has its trace sent at once,
/// ahead of that batch's probabilities.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trace_is_sent_while_the_model_runs_a_batch() {
    let Some(model) = model() else { return };
    let metrics = vigil_core::telemetry::metrics_handle();
    let (lanes, mut outputs) = Lanes::captured(4096);
    let config = ShardConfig {
        batch_windows: 2,
        max_queued_windows: 64,
        ..test_config(model)
    };
    let rows = two_channels(300.0);
    let (inbox, rx) = mpsc::channel(512);
    for seq in 0..300 {
        let input = ShardInput::Eeg(seq as u64, Box::new(chunk(0, seq, &rows)));
        inbox.send(input).await.expect("inbox");
    }
    let shard = Shard::new(11, config, AlertBook::default(), lanes);
    let running = tokio::task::spawn_blocking(move || shard.run(rx, CancellationToken::new()));
    // The 300th second completes one window per channel: both go out in one batch.
    let in_flight = r#"vigil_inference_queued_windows{shard="11"} 2"#;
    let deadline = Instant::now() + std::time::Duration::from_secs(60);
    while !metrics.render().contains(in_flight) {
        assert!(Instant::now() < deadline, "no model batch seen in flight");
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
    }
    // A display filter's first second is its delay: the trace starts with the second.
    for seq in 0..3 {
        let other = ShardInput::Eeg(1000 + seq as u64, Box::new(chunk(1, seq, &rows)));
        inbox.send(other).await.expect("inbox");
    }
    drop(inbox);
    running.await.expect("join").expect("shard");
    let mut order = Vec::new();
    while let Ok(batch) = outputs.try_recv() {
        for (topic, _) in &batch.records {
            order.push((batch.patient_id.clone(), *topic));
        }
    }
    let at = |patient: &str, topic: Topic| {
        order
            .iter()
            .position(|(p, t)| p == patient && *t == topic)
            .unwrap_or_else(|| panic!("no {topic:?} of {patient}"))
    };
    assert!(
        at("patient-1", Topic::EegTrace) < at("patient-0", Topic::EegProb),
        "the trace waited for the batch"
    );
}

/// A backlog already in the inbox: the shard takes records only while fewer than
/// `max_queued_windows` windows wait, and still finishes every record.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlog_is_taken_only_up_to_the_queued_window_bound() {
    let Some(model) = model() else { return };
    let bus = memory_bus().await;
    let shutdown = CancellationToken::new();
    let (done_tx, mut done_rx) = vigil_core::stage::Completions::channel();
    let (lanes, lane_tasks) = Lanes::spawn(&bus, 2, done_tx, &shutdown);
    let config = test_config(model);
    // Two patients, two channels, 340 s: windows end at 300, 320 and 340 s, so 12 windows
    // in all, every one of them queued at once if the shard took the whole inbox.
    let seconds = 340;
    let rows = two_channels(seconds as f64);
    let (inbox, rx) = mpsc::channel(2 * seconds);
    let mut ticket = 0;
    for seq in 0..seconds {
        for patient in 0..2 {
            ticket += 1;
            let input = ShardInput::Eeg(ticket, Box::new(chunk(patient, seq, &rows)));
            inbox.try_send(input).expect("room for the backlog");
        }
    }
    drop(inbox);
    let shard = Shard::new(0, config, AlertBook::default(), lanes);
    let report = tokio::task::spawn_blocking(move || shard.run(rx, CancellationToken::new()))
        .await
        .expect("join")
        .expect("shard");
    // Two channels: a record that completes a window adds one per channel.
    assert!(
        (2..=3).contains(&report.peak_queued_windows),
        "peak {} queued windows",
        report.peak_queued_windows
    );
    for task in lane_tasks {
        task.await.expect("lane");
    }
    let mut done = Vec::new();
    while let Ok(t) = done_rx.try_recv() {
        done.push(t);
    }
    done.sort_unstable();
    assert_eq!(done, (1..=ticket).collect::<Vec<_>>(), "every record done");
}
