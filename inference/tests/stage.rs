//! The inference stage end to end on a bus: EEG chunks in, probabilities out, equal to the
//! parity-tested offline path; duplicates skipped; garbage dead-lettered; offsets committed.
//! Runs on memory:// and on a real Kafka-protocol broker (`VIGIL_TEST_KAFKA`, see
//! core/tests/bus_scenarios.rs for the skip/CI rule).

use std::sync::Arc;
use std::time::Duration;

use tokio::time::timeout;
use uuid::Uuid;
use vigil_core::bus::{Bus, BusConsumer, BusMessage, Topic};
use vigil_core::codec::{self, DecodeLimits, ProbabilityRecord as Probability, Record};
use vigil_core::config::BusConfig;
use vigil_core::config::{AlertPolicies, TrendsConfig};
use vigil_core::record::{
    AlertEvent, AlertKind, AlertTransition, DeadLetter, EegChunk, EegTrace, EegTrends, HrBatch,
    HrPoint, HrSource, ModelRef, MontageKind, ProvisionalProbability, SeizureProbability,
};
use vigil_core::telemetry::Readiness;
use vigil_core::CancellationToken;
use vigil_inference::display::{DisplayFilter, Mains};
use vigil_inference::model::SeizureModel;
use vigil_inference::synthetic::SyntheticStream;

const MAINS: Mains = Mains::Hz50;
use vigil_inference::stage::{InferenceStage, STEP_NS};
use vigil_inference::synthetic::SyntheticChannel;
use vigil_inference::trends::TrendEngine;
use vigil_inference::windowing::{predict_channel, WindowParams};

const WAIT: Duration = Duration::from_secs(120);
const T0: i64 = 1_700_000_000_000_000_000;

fn model() -> Option<Arc<SeizureModel>> {
    let path = vigil_core::testenv::model_weights()?;
    Some(Arc::new(SeizureModel::load(&path).expect("model")))
}

fn memory() -> Option<BusConfig> {
    Some(BusConfig {
        url: format!("memory://{}", Uuid::new_v4()),
        ..BusConfig::default()
    })
}

fn kafka() -> Option<BusConfig> {
    vigil_core::testenv::kafka_bus(2)
}

/// A reader of `topic` in a consumer group of its own (so it reads from the beginning).
async fn reader(bus: &Bus, topic: Topic) -> Box<dyn BusConsumer> {
    bus.subscribe(
        &format!("reader-{}", Uuid::new_v4().simple()),
        &[bus.topic(topic)],
    )
    .await
    .expect("subscribe")
}

/// The next record on `consumer`, with its message.
async fn next_record<R: Record>(consumer: &mut Box<dyn BusConsumer>) -> (BusMessage, R) {
    let msg = timeout(WAIT, consumer.recv())
        .await
        .expect("a record in time")
        .expect("recv");
    let record = codec::decode(&msg.payload, &DecodeLimits::default()).expect("valid record");
    (msg, record)
}

/// The next record of `vigil.eeg.prob`, final or provisional.
async fn next_probability(consumer: &mut Box<dyn BusConsumer>) -> (BusMessage, Probability) {
    let msg = timeout(WAIT, consumer.recv())
        .await
        .expect("a record in time")
        .expect("recv");
    let record =
        codec::decode_probability(&msg.payload, &DecodeLimits::default()).expect("probability");
    (msg, record)
}

/// The next final probability record; provisional ones before it are passed over.
async fn next_final(consumer: &mut Box<dyn BusConsumer>) -> (BusMessage, SeizureProbability) {
    loop {
        if let (msg, Probability::Final(record)) = next_probability(consumer).await {
            return (msg, record);
        }
    }
}

/// One second (`seq`) of `rows` as a chunk of `patient_id`'s stream at 256 Hz.
fn eeg_chunk(
    patient_id: &str,
    stream_id: Uuid,
    seq: usize,
    channels: &[&str],
    rows: &[Vec<f32>],
) -> EegChunk {
    SyntheticStream {
        patient_id,
        device_id: "headset-1",
        stream_id,
        t0_ns: T0,
        channels,
    }
    .chunk(seq, rows)
}

/// Publishes seconds `seqs` of a one-channel (Cz) stream of `patient_id`.
async fn publish_cz(
    bus: &Bus,
    patient_id: &str,
    stream_id: Uuid,
    signal: &[Vec<f32>],
    seqs: std::ops::Range<usize>,
) {
    for seq in seqs {
        let chunk = eeg_chunk(patient_id, stream_id, seq, &["Cz"], signal);
        bus.publish_record(Topic::EegRaw, patient_id, &chunk)
            .await
            .expect("publish");
    }
}

/// Stops a running stage and checks it stopped cleanly.
async fn stop(
    shutdown: &CancellationToken,
    running: tokio::task::JoinHandle<Result<(), vigil_inference::InferenceError>>,
) {
    shutdown.cancel();
    timeout(WAIT, running)
        .await
        .expect("stage stops")
        .expect("join")
        .expect("clean stop");
}

async fn stage_turns_chunks_into_reference_probabilities(config: BusConfig) {
    let Some(model) = model() else { return };
    let bus = Bus::connect(&config).await.expect("bus");
    bus.create_vigil_topics().await.expect("topics");

    let fs = 256.0;
    let seconds = 330;
    // 660 s generated: the second half feeds the restarted stage, with a second burst at
    // 350-375 s on C3.
    let c3 = |burst| SyntheticChannel {
        seed: 2,
        burst: Some(burst),
        ..Default::default()
    };
    let mut signals = [
        c3((20.0, 45.0)).generate(fs, 660.0),
        SyntheticChannel {
            seed: 1,
            ..Default::default()
        }
        .generate(fs, 660.0),
    ];
    let second_burst = c3((350.0, 375.0)).generate(fs, 660.0);
    signals[0][seconds * 256..].copy_from_slice(&second_burst[seconds * 256..]);
    let stream_id = Uuid::new_v4();
    let chunk = |seq: usize| eeg_chunk("patient-1", stream_id, seq, &["C3", "C4"], &signals);
    let raw = bus.topic(Topic::EegRaw);
    for seq in 0..seconds {
        bus.publish_record(Topic::EegRaw, "patient-1", &chunk(seq))
            .await
            .expect("publish");
        if seq == 5 {
            // A device resend: must not be processed twice.
            bus.publish_record(Topic::EegRaw, "patient-1", &chunk(seq))
                .await
                .expect("resend");
        }
    }
    bus.publish(&raw, b"patient-1", b"definitely not a record")
        .await
        .expect("garbage");

    let model_ref = ModelRef {
        id: "brainmaze-seizure-modelA".into(),
        sha256: "0".repeat(64),
    };
    let shutdown = CancellationToken::new();
    let group = format!("inference-{}", Uuid::new_v4().simple());
    let new_stage = || InferenceStage {
        bus: bus.clone(),
        model: model.clone(),
        model_ref: model_ref.clone(),
        params: WindowParams::default(),
        group: group.clone(),
        max_gap_s: 30.0,
        workers: 2,
        batch_windows: 23,
        // Two channels: the shard stops taking records at every window, so the outputs below
        // also check that intake paused under a backlog loses and reorders nothing.
        max_queued_windows: 2,
        idle_evict_s: 60.0,
        readiness: Readiness::default(),
        alert_policies: AlertPolicies::default(),
        mains: MAINS,
        trends: TrendsConfig::default(),
    };
    let stage = new_stage();
    let running = tokio::spawn(stage.run(shutdown.clone()));

    // Windows start at 0 s and 20 s; with 330 s of signal points 0..=100 are final.
    let expected_points = 101;
    let mut probs = reader(&bus, Topic::EegProb).await;
    let mut got: Vec<SeizureProbability> = Vec::new();
    let mut provisional: Vec<ProvisionalProbability> = Vec::new();
    let mut final_end = T0;
    while got.iter().map(|p| p.aggregate_p.len()).sum::<usize>() < expected_points {
        let (msg, record) = next_probability(&mut probs).await;
        assert_eq!(msg.key, b"patient-1");
        match record {
            Probability::Final(record) => {
                final_end = record.start_ns + record.aggregate_p.len() as i64 * STEP_NS;
                got.push(record);
            }
            Probability::Provisional(record) => {
                assert_eq!(
                    record.start_ns, final_end,
                    "a provisional record starts at the first point not final yet"
                );
                provisional.push(record);
            }
        }
        probs.ack(&msg).expect("ack");
    }
    let mut dlq = reader(&bus, Topic::Dlq).await;
    let (_, letter) = next_record::<DeadLetter>(&mut dlq).await;
    assert_eq!(letter.stage, "inference");
    assert_eq!(letter.payload, b"definitely not a record");
    assert!(letter.reason.contains("magic"), "{}", letter.reason);

    // Display traces: filtered, delay removed (the first trace starts at the first sample),
    // contiguous in time, and sample for sample the display filter of the raw signal.
    let mut traces = reader(&bus, Topic::EegTrace).await;
    let mut next_ns = T0;
    let mut c4 = Vec::new();
    while c4.len() < 100 * 256 {
        let (_, trace) = next_record::<EegTrace>(&mut traces).await;
        assert_eq!(trace.channels, ["C3", "C4"]);
        assert_eq!(trace.sample_rate_hz, 256.0);
        assert_eq!(
            trace.start_ns, next_ns,
            "traces are contiguous from the first sample"
        );
        next_ns += trace.samples[0].len() as i64 * 1_000_000_000 / 256;
        c4.extend(trace.samples[1].iter().copied());
    }
    let mut offline = DisplayFilter::new(256, MAINS);
    let filtered = offline.push(&signals[1][..seconds * 256]);
    let delay = offline.delay();
    for (i, got) in c4.iter().enumerate() {
        let want = filtered[i + delay];
        assert!(
            (got - want).abs() < 1e-5,
            "trace sample {i}: {got} vs {want}"
        );
    }
    traces.close().await.expect("close");

    // qEEG trends: one record per 2 s from the first sample, equal to the offline engine fed
    // the whole signal at once (chunking does not change a bit). C3 and C4 alone form no
    // double-banana derivation, so every channel is one region, and the record says so.
    let mut engine = TrendEngine::new(
        &["C3".to_owned(), "C4".to_owned()],
        fs,
        T0,
        Default::default(),
        None,
    )
    .expect("engine");
    let mut offline_points = Vec::new();
    let whole: Vec<&[f32]> = signals.iter().map(|s| &s[..seconds * 256]).collect();
    engine
        .push(&whole, &mut offline_points)
        .expect("offline trends");
    assert_eq!(offline_points.len(), seconds / 2);
    let mut trends = reader(&bus, Topic::EegTrends).await;
    for point in &offline_points {
        let (msg, got) = next_record::<EegTrends>(&mut trends).await;
        assert_eq!(msg.key, b"patient-1");
        assert_eq!(
            (got.montage, got.regions.as_slice()),
            (MontageKind::ChannelGroups, &["all".to_owned()][..])
        );
        let mut want = engine.record(point, "patient-1", stream_id, got.emitted_ns);
        want.emitted_ns = got.emitted_ns;
        assert_eq!(
            format!("{:?}", got),
            format!("{:?}", want),
            "trend interval at {} s",
            (point.start_ns - T0) / 1_000_000_000
        );
    }
    let evaluated = offline_points
        .iter()
        .filter(|p| p.global.aeeg_max_uv.is_finite())
        .count();
    assert!(
        evaluated > seconds / 2 - 10,
        "aEEG evaluated after the warm-up: {evaluated}"
    );
    trends.close().await.expect("close");

    // The burst raised a seizure alert, with its onset inside the burst. (All chunks arrive at
    // once, so a signal-loss alert may come first on a slow machine: the device did stop.)
    let mut alerts = reader(&bus, Topic::Alerts).await;
    let alert = loop {
        let (_, alert) = next_record::<AlertEvent>(&mut alerts).await;
        if alert.kind != AlertKind::SignalLoss {
            break alert;
        }
    };
    assert_eq!(
        (alert.kind, alert.transition),
        (AlertKind::Seizure, AlertTransition::Raised)
    );
    assert_eq!(alert.patient_id, "patient-1");
    let onset_s = (alert.onset_ns - T0) as f64 / 1e9;
    assert!(
        (20.0..45.0).contains(&onset_s),
        "onset {onset_s} s inside the 20-45 s burst"
    );
    alerts.close().await.expect("close");

    stop(&shutdown, running).await;

    // Points arrive in order on the 0.5 s grid starting at the first sample.
    let mut next = T0;
    for record in &got {
        assert_eq!(record.start_ns, next, "contiguous grid");
        assert_eq!(record.step_ns, STEP_NS);
        assert_eq!(record.model, model_ref);
        next += record.aggregate_p.len() as i64 * STEP_NS;
    }
    let expected: Vec<Vec<f32>> = signals
        .iter()
        .map(|s| {
            predict_channel(&model, &s[..seconds * 256], fs, WindowParams::default())
                .expect("offline")
        })
        .collect();
    for (ch, offline) in expected.iter().enumerate() {
        let stream: Vec<f32> = got.iter().flat_map(|r| r.channel_p[ch].clone()).collect();
        for (k, (a, b)) in stream.iter().zip(offline).enumerate() {
            assert!(
                a.is_nan() == b.is_nan() && (a.is_nan() || (a - b).abs() < 1e-6),
                "ch {ch} point {k}: {a} vs {b}"
            );
        }
    }
    // Final points cover 0..50 s: the burst (20-45 s) on C3, background only on C4.
    let aggregate: Vec<f32> = got.iter().flat_map(|r| r.aggregate_p.clone()).collect();
    assert_eq!(aggregate.len(), expected_points);
    assert!(aggregate[0].is_nan(), "point 0 is never evaluated");
    let burst_peak = aggregate[44..90].iter().copied().fold(0.0f32, f32::max);
    let background: Vec<f32> = got.iter().flat_map(|r| r.channel_p[1].clone()).collect();
    let background_peak = background[1..].iter().copied().fold(0.0f32, f32::max);
    assert!(burst_peak > 0.9, "burst detected: {burst_peak}");
    assert!(
        background_peak < 0.2,
        "background stays low: {background_peak}"
    );
    // Provisional values were published ahead of the final ones, and each is a lower bound:
    // at or below the value of its point over every window of the recording (the offline
    // reference), which is evaluated, and at or below its streamed final value.
    assert!(
        provisional
            .iter()
            .any(|r| r.aggregate_p.iter().any(|&p| p > 0.9)),
        "the burst was shown provisionally before its points were final"
    );
    let (mut bounded, mut bounded_by_final) = (0, 0);
    for record in &provisional {
        for (k, &lower) in record.aggregate_p.iter().enumerate() {
            if lower.is_nan() {
                continue;
            }
            let index = (record.start_ns - T0) / STEP_NS + k as i64;
            let index = usize::try_from(index).expect("after the stream's start");
            let whole = expected.iter().map(|ch| ch[index]).fold(f32::NAN, f32::max);
            assert!(
                whole >= lower - 1e-6,
                "point {index}: provisional {lower} above the whole recording's {whole}"
            );
            bounded += 1;
            if let Some(&last) = aggregate.get(index) {
                assert!(
                    last >= lower - 1e-6,
                    "point {index}: provisional {lower} above final {last}"
                );
                bounded_by_final += 1;
            }
        }
    }
    assert!(
        bounded > 400 && bounded_by_final > 20,
        "provisional points checked: {bounded}, against final values {bounded_by_final}"
    );

    // Every input was acknowledged: the group has nothing left to read.
    let mut again = bus.subscribe(&group, &[raw]).await.expect("resubscribe");
    if let Ok(Ok(msg)) = timeout(Duration::from_secs(3), again.recv()).await {
        panic!("offset {} was not committed", msg.offset);
    }
    again.close().await.expect("close");
    dlq.close().await.expect("close");

    // Restart: a new stage instance in the same group. It first replays, publishing nothing,
    // the earlier records its windows need, so its points continue the first instance's grid
    // exactly (equal to the offline reference of the whole signal), and its alert state is
    // rebuilt from vigil.alerts: the first burst's alert is never raised again, the calm after
    // it resolves it, and the second burst raises a new one.
    for seq in seconds..2 * seconds {
        bus.publish_record(Topic::EegRaw, "patient-1", &chunk(seq))
            .await
            .expect("publish");
    }
    let shutdown = CancellationToken::new();
    let restarted = new_stage();
    let running = tokio::spawn(restarted.run(shutdown.clone()));
    // Windows end every 20 s up to 660 s: points before 370 s are final.
    let final_until = T0 + 370_000_000_000;
    let mut next = T0 + expected_points as i64 * STEP_NS;
    let mut second: Vec<SeizureProbability> = Vec::new();
    while next < final_until {
        let (msg, record) = next_final(&mut probs).await;
        probs.ack(&msg).expect("ack");
        assert_eq!(
            record.start_ns, next,
            "the restarted stage continues the grid where the first one stopped"
        );
        next += record.aggregate_p.len() as i64 * STEP_NS;
        second.push(record);
    }
    stop(&shutdown, running).await;
    for (ch, signal) in signals.iter().enumerate() {
        let offline =
            predict_channel(&model, signal, fs, WindowParams::default()).expect("offline");
        let stream: Vec<f32> = second
            .iter()
            .flat_map(|r| r.channel_p[ch].clone())
            .collect();
        for (k, (a, b)) in stream.iter().zip(&offline[expected_points..]).enumerate() {
            assert!(
                a.is_nan() == b.is_nan() && (a.is_nan() || (a - b).abs() < 1e-6),
                "after the restart, ch {ch} point {}: {a} vs {b}",
                expected_points + k
            );
        }
    }
    let aggregate: Vec<f32> = second.iter().flat_map(|r| r.aggregate_p.clone()).collect();
    // 350..370 s: the final part of the second burst.
    let second_peak = aggregate[700 - expected_points..740 - expected_points]
        .iter()
        .copied()
        .fold(0.0f32, f32::max);
    assert!(second_peak > 0.9, "the second burst is seen: {second_peak}");
    let mut all_alerts = reader(&bus, Topic::Alerts).await;
    let (mut raised, mut resolved) = (Vec::new(), Vec::new());
    while let Ok(Ok(msg)) = timeout(Duration::from_secs(3), all_alerts.recv()).await {
        let event: AlertEvent =
            codec::decode(&msg.payload, &DecodeLimits::default()).expect("alert");
        match (event.kind, event.transition) {
            (AlertKind::Seizure, AlertTransition::Raised) => raised.push(event),
            (AlertKind::Seizure, AlertTransition::Resolved) => resolved.push(event.alert_id),
            _ => {}
        }
    }
    assert_eq!(raised.len(), 2, "one alert per burst: {raised:?}");
    assert_eq!(
        raised[0].alert_id, alert.alert_id,
        "the first burst's, raised once"
    );
    assert_eq!(
        resolved,
        vec![alert.alert_id],
        "resolved by the calm after it"
    );
    let second_onset_s = (raised[1].onset_ns - T0) as f64 / 1e9;
    assert!(
        (350.0..375.0).contains(&second_onset_s),
        "second onset {second_onset_s} s inside the 350-375 s burst"
    );
    all_alerts.close().await.expect("close");
    probs.close().await.expect("close");
}

/// Runs each scenario once per backend: `<backend>_<scenario>` tests.
macro_rules! on_every_bus {
    ($($scenario:ident),* $(,)?) => {
        mod memory {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $scenario() {
                    if let Some(config) = super::memory() {
                        super::$scenario(config).await;
                    }
                }
            )*
        }
        mod kafka {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $scenario() {
                    if let Some(config) = super::kafka() {
                        super::$scenario(config).await;
                    }
                }
            )*
        }
    };
}

/// Heart rate through the stage: a per-patient band override, a sustained tachycardia raised
/// once (a redelivered batch is skipped), resolved when the rate returns, and a batch that
/// fails validation dead-lettered.
async fn stage_turns_heart_rate_into_alerts(config: BusConfig) {
    let Some(model) = model() else { return };
    let bus = Bus::connect(&config).await.expect("bus");
    bus.create_vigil_topics().await.expect("topics");
    let stream_id = Uuid::new_v4();
    let batch = |seq: u64, bpm: f32| HrBatch {
        patient_id: "patient-hr".into(),
        device_id: "watch-1".into(),
        stream_id,
        seq,
        points: (0..5)
            .map(|i| HrPoint {
                t_ns: T0 + (seq as i64 * 5 + i) * 1_000_000_000,
                bpm,
                rr_ms: Some(60_000.0 / bpm),
            })
            .collect(),
        source: HrSource::Ppg,
    };
    // 20 s at 110 bpm (above this patient's 100 bpm limit, below the default 120), then 20 s
    // at 80: raise after 10 s, resolve after 10 s back inside.
    for seq in 0..8u64 {
        let bpm = if seq < 4 { 110.0 } else { 80.0 };
        bus.publish_record(Topic::HrRaw, "patient-hr", &batch(seq, bpm))
            .await
            .expect("publish");
        if seq == 2 {
            bus.publish_record(Topic::HrRaw, "patient-hr", &batch(seq, bpm))
                .await
                .expect("resend");
        }
    }
    let mut bad = batch(8, 80.0);
    bad.points[1].t_ns = bad.points[0].t_ns; // times must increase
                                             // The codec encodes without validating (a device could send this); decoding refuses it.
    bus.publish_record(Topic::HrRaw, "patient-hr", &bad)
        .await
        .expect("publish invalid");

    let overrides = [("tachy_above_bpm".to_owned(), 100.0)]
        .into_iter()
        .collect();
    let config = vigil_core::config::InferenceConfig {
        patient_alerts: [("patient-hr".to_owned(), overrides)].into_iter().collect(),
        ..Default::default()
    };
    let shutdown = CancellationToken::new();
    let stage = InferenceStage {
        bus: bus.clone(),
        model,
        model_ref: ModelRef {
            id: "brainmaze-seizure-modelA".into(),
            sha256: "0".repeat(64),
        },
        params: WindowParams::default(),
        group: format!("inference-{}", Uuid::new_v4().simple()),
        max_gap_s: 30.0,
        workers: 2,
        batch_windows: 23,
        max_queued_windows: 2048,
        idle_evict_s: 60.0,
        readiness: Readiness::default(),
        alert_policies: config.alert_policies().expect("policies"),
        mains: MAINS,
        trends: TrendsConfig::default(),
    };
    let running = tokio::spawn(stage.run(shutdown.clone()));

    let mut alerts = reader(&bus, Topic::Alerts).await;
    let (_, raised) = next_record::<AlertEvent>(&mut alerts).await;
    assert_eq!(
        (raised.kind, raised.transition),
        (AlertKind::Tachycardia, AlertTransition::Raised)
    );
    assert_eq!(raised.onset_ns, T0);
    assert_eq!(raised.evidence.bpm, Some(110.0));
    let (_, resolved) = next_record::<AlertEvent>(&mut alerts).await;
    assert_eq!(
        (resolved.alert_id, resolved.transition),
        (raised.alert_id, AlertTransition::Resolved)
    );
    let mut dlq = reader(&bus, Topic::Dlq).await;
    let (_, letter) = next_record::<DeadLetter>(&mut dlq).await;
    assert!(letter.source_topic.ends_with("vigil.hr.raw"), "{letter:?}");
    assert!(
        letter.reason.contains("not later than"),
        "{}",
        letter.reason
    );
    // Nothing else: the resent batch raised nothing twice.
    assert!(timeout(Duration::from_secs(3), alerts.recv())
        .await
        .is_err());
    stop(&shutdown, running).await;
    alerts.close().await.expect("close");
    dlq.close().await.expect("close");
}

/// A device that just stops: after the idle timeout the stage finishes its stream, so every
/// point of the recording is published, equal to the whole-recording reference (which applies
/// the end-of-recording rules), and the patient's state is freed.
async fn stage_finishes_a_stopped_device(config: BusConfig) {
    let Some(model) = model() else { return };
    let bus = Bus::connect(&config).await.expect("bus");
    bus.create_vigil_topics().await.expect("topics");
    let fs = 256.0;
    let seconds = 331;
    let signal = SyntheticChannel {
        seed: 3,
        burst: Some((200.0, 230.0)),
        ..Default::default()
    }
    .generate(fs, seconds as f64);
    publish_cz(
        &bus,
        "patient-stop",
        Uuid::new_v4(),
        std::slice::from_ref(&signal),
        0..seconds,
    )
    .await;
    let shutdown = CancellationToken::new();
    let group = format!("inference-{}", Uuid::new_v4().simple());
    let stage = stage_of(&bus, &model, &group, 2.0);
    let running = tokio::spawn(stage.run(shutdown.clone()));
    let expected = predict_channel(&model, &signal, fs, WindowParams::default()).expect("offline");
    assert_eq!(
        expected.len(),
        seconds * 2,
        "every 0.5 s point of the recording"
    );
    let mut probs = reader(&bus, Topic::EegProb).await;
    let mut got: Vec<f32> = Vec::new();
    let mut next = T0;
    while got.len() < expected.len() {
        let (_, record) = next_final(&mut probs).await;
        assert_eq!(record.start_ns, next, "contiguous grid");
        next += record.aggregate_p.len() as i64 * STEP_NS;
        got.extend(record.channel_p[0].iter().copied());
    }
    assert_eq!(got.len(), expected.len(), "no point published twice");
    for (k, (a, b)) in got.iter().zip(&expected).enumerate() {
        assert!(
            a.is_nan() == b.is_nan() && (a.is_nan() || (a - b).abs() < 1e-6),
            "point {k}: {a} vs {b}"
        );
    }
    if let Ok(Ok(msg)) = timeout(Duration::from_secs(3), probs.recv()).await {
        panic!(
            "unexpected record at offset {} after the stream ended",
            msg.offset
        );
    }
    probs.close().await.expect("close");
    stop(&shutdown, running).await;
}

/// An inference stage of `group` with default windows, finishing a patient after
/// `idle_evict_s` without EEG.
fn stage_of(
    bus: &Bus,
    model: &Arc<SeizureModel>,
    group: &str,
    idle_evict_s: f64,
) -> InferenceStage {
    InferenceStage {
        bus: bus.clone(),
        model: model.clone(),
        model_ref: ModelRef {
            id: "m".into(),
            sha256: "0".repeat(64),
        },
        params: WindowParams::default(),
        group: group.to_owned(),
        max_gap_s: 30.0,
        workers: 2,
        batch_windows: 7,
        max_queued_windows: 2048,
        idle_evict_s,
        readiness: Readiness::default(),
        alert_policies: AlertPolicies::default(),
        mains: MAINS,
        trends: TrendsConfig::default(),
    }
}

/// Reads probability records until a point at or after `until_ns` arrived; folds every point
/// into `points` (time -> value of the one channel), asserting that a point published twice
/// (by two owners) has one value.
async fn collect_points(
    probs: &mut Box<dyn BusConsumer>,
    points: &mut std::collections::BTreeMap<i64, f32>,
    until_ns: i64,
) {
    while points.last_key_value().is_none_or(|(t, _)| *t < until_ns) {
        let (_, record) = next_final(probs).await;
        for (k, &p) in record.channel_p[0].iter().enumerate() {
            let t = record.start_ns + k as i64 * STEP_NS;
            if let Some(before) = points.insert(t, p) {
                assert!(
                    before.is_nan() == p.is_nan() && (p.is_nan() || (before - p).abs() < 1e-6),
                    "point at {} s published twice with {before} and {p}",
                    (t - T0) as f64 / 1e9
                );
            }
        }
    }
}

/// A partition moves between two instances of the group mid-stream (the first one stops
/// after 340 s of EEG, the second takes over): the second replays the earlier records its
/// windows need, so together they publish every point of the recording exactly as one
/// instance would have (equal to the whole-recording reference), and no alert twice.
async fn stage_takes_a_patient_over_with_its_windows(config: BusConfig) {
    let Some(model) = model() else { return };
    let bus = Bus::connect(&config).await.expect("bus");
    bus.create_vigil_topics().await.expect("topics");
    let (fs, seconds, moved_at) = (256.0, 400, 340);
    let signal = SyntheticChannel {
        seed: 5,
        burst: Some((200.0, 230.0)),
        ..Default::default()
    }
    .generate(fs, seconds as f64);
    let stream_id = Uuid::new_v4();
    let publish = |seqs| {
        publish_cz(
            &bus,
            "patient-moved",
            stream_id,
            std::slice::from_ref(&signal),
            seqs,
        )
    };
    let group = format!("inference-{}", Uuid::new_v4().simple());
    let mut probs = reader(&bus, Topic::EegProb).await;
    let mut points = std::collections::BTreeMap::new();

    publish(0..moved_at).await;
    let first = CancellationToken::new();
    let running = tokio::spawn(stage_of(&bus, &model, &group, 600.0).run(first.clone()));
    // Windows end at 300, 320 and 340 s: points before 50 s are final.
    collect_points(&mut probs, &mut points, T0 + 49_500_000_000).await;
    stop(&first, running).await;
    let before_move = points.len();

    publish(moved_at..seconds).await;
    let second = CancellationToken::new();
    let running = tokio::spawn(stage_of(&bus, &model, &group, 2.0).run(second.clone()));
    let last_ns = T0 + (seconds as i64 * 2 - 1) * STEP_NS;
    collect_points(&mut probs, &mut points, last_ns).await;
    stop(&second, running).await;

    let expected = predict_channel(&model, &signal, fs, WindowParams::default()).expect("offline");
    let got: Vec<(i64, f32)> = points.into_iter().collect();
    assert_eq!(
        got.len(),
        expected.len(),
        "every 0.5 s point once ({before_move} before the move)"
    );
    for (k, ((t, a), b)) in got.iter().zip(&expected).enumerate() {
        assert_eq!(*t, T0 + k as i64 * STEP_NS, "contiguous grid");
        assert!(
            a.is_nan() == b.is_nan() && (a.is_nan() || (a - b).abs() < 1e-6),
            "point {k}: {a} vs {b}"
        );
    }
    let mut alerts = reader(&bus, Topic::Alerts).await;
    let mut raised = 0;
    while let Ok(Ok(msg)) = timeout(Duration::from_secs(3), alerts.recv()).await {
        let event: AlertEvent =
            codec::decode(&msg.payload, &DecodeLimits::default()).expect("alert");
        if event.kind == AlertKind::Seizure && event.transition == AlertTransition::Raised {
            raised += 1;
        }
    }
    assert!(
        raised <= 1,
        "the burst's seizure alert raised {raised} times"
    );
    alerts.close().await.expect("close");
    probs.close().await.expect("close");
}

on_every_bus!(
    stage_turns_chunks_into_reference_probabilities,
    stage_turns_heart_rate_into_alerts,
    stage_finishes_a_stopped_device,
    stage_takes_a_patient_over_with_its_windows,
);
