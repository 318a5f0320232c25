//! Shared by the integration tests: proptest strategies producing valid records (codec and
//! fuzz tests), and bus configurations and a bus with a fresh topic (bus and runner tests).

#![allow(dead_code)]

use proptest::prelude::*;
use uuid::Uuid;
use vigil_core::bus::{Bus, TopicSpec};
use vigil_core::config::BusConfig;
use vigil_core::record::*;

pub fn ident() -> impl Strategy<Value = String> {
    "[A-Za-z0-9._:-]{1,32}"
}

/// A float that may be NaN (missing / not evaluated) but never infinite.
pub fn sample() -> impl Strategy<Value = f32> {
    prop_oneof![
        8 => -5000.0f32..5000.0,
        1 => Just(f32::NAN),
        1 => Just(0.0f32),
    ]
}

pub fn probability() -> impl Strategy<Value = f32> {
    prop_oneof![4 => 0.0f32..=1.0, 1 => Just(f32::NAN)]
}

pub fn uuid() -> impl Strategy<Value = Uuid> {
    any::<u128>().prop_map(Uuid::from_u128)
}

fn labels(n: usize) -> impl Strategy<Value = Vec<String>> {
    Just((0..n).map(|i| format!("CH{i}")).collect())
}

pub fn eeg_chunk() -> impl Strategy<Value = EegChunk> {
    (1usize..6, 1usize..64).prop_flat_map(|(channels, n)| {
        (
            ident(),
            ident(),
            uuid(),
            any::<u64>(),
            0i64..i64::MAX / 2,
            0i64..i64::MAX / 2,
            prop_oneof![Just(200.0f64), Just(256.0), Just(250.0), 1.0f64..4096.0],
            labels(channels),
            prop::collection::vec(prop::collection::vec(sample(), n), channels),
        )
            .prop_map(
                |(
                    patient_id,
                    device_id,
                    stream_id,
                    seq,
                    start_ns,
                    received_ns,
                    rate,
                    channels,
                    samples,
                )| {
                    EegChunk {
                        patient_id,
                        device_id,
                        stream_id,
                        seq,
                        start_ns,
                        received_ns,
                        sample_rate_hz: rate,
                        channels,
                        unit: SignalUnit::Microvolt,
                        samples,
                    }
                },
            )
    })
}

pub fn hr_batch() -> impl Strategy<Value = HrBatch> {
    (
        ident(),
        ident(),
        uuid(),
        any::<u64>(),
        0i64..1_000_000_000_000_000_000,
        prop::collection::vec(
            (
                1i64..2_000_000_000,
                20.0f32..250.0,
                prop::option::of(200.0f32..3000.0),
            ),
            1..50,
        ),
        prop_oneof![
            Just(HrSource::Ecg),
            Just(HrSource::Ppg),
            Just(HrSource::ChestStrap),
            Just(HrSource::Other)
        ],
    )
        .prop_map(
            |(patient_id, device_id, stream_id, seq, t0, steps, source)| {
                let mut t = t0;
                let points = steps
                    .into_iter()
                    .map(|(dt, bpm, rr_ms)| {
                        t += dt;
                        HrPoint {
                            t_ns: t,
                            bpm,
                            rr_ms,
                        }
                    })
                    .collect();
                HrBatch {
                    patient_id,
                    device_id,
                    stream_id,
                    seq,
                    points,
                    source,
                }
            },
        )
}

pub fn seizure_probability() -> impl Strategy<Value = SeizureProbability> {
    (0usize..5, 1usize..40).prop_flat_map(|(channels, points)| {
        (
            ident(),
            0i64..i64::MAX / 2,
            labels(channels),
            prop::collection::vec(prop::collection::vec(probability(), points), channels),
            prop::collection::vec(probability(), points),
            ident(),
            "[0-9a-f]{64}",
            0i64..i64::MAX / 2,
        )
            .prop_map(
                |(
                    patient_id,
                    start_ns,
                    channels,
                    channel_p,
                    aggregate_p,
                    id,
                    sha256,
                    emitted_ns,
                )| {
                    SeizureProbability {
                        patient_id,
                        start_ns,
                        step_ns: 500_000_000,
                        channels,
                        channel_p,
                        aggregate_p,
                        model: ModelRef { id, sha256 },
                        emitted_ns,
                    }
                },
            )
    })
}

pub fn alert_event() -> impl Strategy<Value = AlertEvent> {
    (
        uuid(),
        ident(),
        prop_oneof![
            Just(AlertKind::Seizure),
            Just(AlertKind::SustainedSeizureBurden),
            Just(AlertKind::Tachycardia),
            Just(AlertKind::Bradycardia),
            Just(AlertKind::SignalLoss)
        ],
        prop_oneof![
            Just(AlertTransition::Raised),
            Just(AlertTransition::Acknowledged),
            Just(AlertTransition::Escalated),
            Just(AlertTransition::Resolved)
        ],
        0i64..i64::MAX / 2,
        0i64..i64::MAX / 2,
        ident(),
        prop::option::of(0.0f32..=1.0),
        prop::option::of(0.0f32..=1.0),
        prop::option::of(20.0f32..250.0),
        prop::option::of((20.0f32..250.0, -50.0f32..100.0, 0.0f32..500.0)),
    )
        .prop_map(
            |(
                alert_id,
                patient_id,
                kind,
                transition,
                onset_ns,
                at_ns,
                user,
                p,
                burden,
                bpm,
                hr,
            )| {
                AlertEvent {
                    alert_id,
                    patient_id,
                    kind,
                    transition,
                    onset_ns,
                    at_ns,
                    by: (transition == AlertTransition::Acknowledged).then_some(user),
                    evidence: AlertEvidence {
                        p,
                        burden,
                        bpm,
                        baseline_bpm: hr.map(|h| h.0),
                        hr_rise_bpm: hr.map(|h| h.1),
                        rmssd_ms: hr.map(|h| h.2),
                    },
                }
            },
        )
}

pub fn dead_letter() -> impl Strategy<Value = DeadLetter> {
    (
        ident(),
        prop::option::of(("[a-z.]{1,40}", 0i32..100, 0i64..1_000_000)),
        prop::collection::vec(any::<u8>(), 0..64),
        prop::collection::vec(any::<u8>(), 0..512),
        ".{0,200}",
        0i64..i64::MAX / 2,
    )
        .prop_map(|(stage, source, key, payload, reason, at_ns)| {
            DeadLetter::new(
                &stage,
                source.as_ref().map(|(t, p, o)| (t.as_str(), *p, *o)),
                &key,
                &payload,
                &reason,
                at_ns,
            )
        })
}

/// Bitwise float equality, so NaN equals NaN (NaN carries meaning and must survive).
pub fn same_floats(a: &[f32], b: &[f32]) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|(x, y)| x.to_bits() == y.to_bits() || (x.is_nan() && y.is_nan()))
}

pub fn same_matrix(a: &[Vec<f32>], b: &[Vec<f32>]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| same_floats(x, y))
}

pub fn eeg_trace() -> impl Strategy<Value = EegTrace> {
    eeg_chunk().prop_map(|c| EegTrace {
        patient_id: c.patient_id,
        stream_id: c.stream_id,
        start_ns: c.start_ns,
        received_ns: c.received_ns,
        sample_rate_hz: c.sample_rate_hz,
        channels: c.channels,
        samples: c.samples,
    })
}

fn maybe(range: std::ops::RangeInclusive<f32>) -> impl Strategy<Value = f32> {
    prop_oneof![4 => range, 1 => Just(f32::NAN)]
}

pub fn side_trends() -> impl Strategy<Value = SideTrends> {
    (
        maybe(0.0..=200.0),
        0.0f32..=300.0,
        maybe(0.0..=100.0),
        any::<bool>(),
    )
        .prop_map(|(lo, extra, bsr, missing)| SideTrends {
            aeeg_min_uv: lo,
            // Lower margin <= upper margin; either may be "not evaluated".
            aeeg_max_uv: if missing || lo.is_nan() {
                f32::NAN
            } else {
                lo + extra
            },
            bsr_percent: bsr,
        })
}

pub fn eeg_trends() -> impl Strategy<Value = EegTrends> {
    let montage = prop_oneof![
        Just(MontageKind::DoubleBanana),
        Just(MontageKind::ReferentialToBipolar),
        Just(MontageKind::Configured),
        Just(MontageKind::ChannelGroups),
    ];
    (
        (
            ident(),
            uuid(),
            0i64..=4_000_000_000_000_000_000,
            1i64..=10_000_000_000,
        ),
        montage,
        prop::collection::btree_set("[a-z ]{1,20}", 1..6),
        prop::collection::vec(maybe(-40.0..=60.0), TREND_BINS * 6),
        prop::collection::vec(maybe(-1.0..=1.0), TREND_BINS + 1),
        (side_trends(), side_trends(), side_trends()),
    )
        .prop_map(
            |(
                (patient_id, stream_id, start_ns, duration_ns),
                montage,
                regions,
                csa,
                asym,
                (left, right, global),
            )| {
                let regions: Vec<String> = regions.into_iter().collect();
                EegTrends {
                    patient_id,
                    stream_id,
                    start_ns,
                    duration_ns,
                    montage,
                    csa_db: csa
                        .chunks(TREND_BINS)
                        .take(regions.len())
                        .map(<[f32]>::to_vec)
                        .collect(),
                    regions,
                    asymmetry: asym[..TREND_BINS].to_vec(),
                    asymmetry_index: asym[TREND_BINS],
                    left,
                    right,
                    global,
                    emitted_ns: start_ns,
                }
            },
        )
}

/// A bus for `config` and a fresh topic with `partitions` partitions on it.
pub async fn bus_with_topic(config: &BusConfig, partitions: i32) -> (Bus, String) {
    let bus = Bus::connect(config).await.expect("connect");
    let topic = format!("{}test.{}", config.topic_prefix, Uuid::new_v4().simple());
    bus.create_topics(&[TopicSpec {
        name: topic.clone(),
        partitions,
    }])
    .await
    .expect("create topic");
    (bus, topic)
}

/// A fresh in-process bus.
pub fn memory_config() -> Option<BusConfig> {
    Some(BusConfig {
        url: format!("memory://{}", Uuid::new_v4()),
        ..BusConfig::default()
    })
}

/// The test broker named by `VIGIL_TEST_KAFKA`, with topics of a fresh prefix (the testenv rule:
/// skipped locally without it, a failure under CI).
pub fn kafka_config() -> Option<BusConfig> {
    let mut config = vigil_core::testenv::kafka_bus(BusConfig::default().partitions)?;
    // e.g. VIGIL_TEST_KAFKA_DEBUG=cgrp,fetch to see librdkafka's group protocol.
    if let Ok(debug) = std::env::var("VIGIL_TEST_KAFKA_DEBUG") {
        vigil_core::telemetry::init(&vigil_core::config::TelemetryConfig {
            log_filter: "debug".into(),
            ..Default::default()
        });
        config.kafka.insert("debug".to_owned(), debug);
    }
    Some(config)
}

/// `scenarios!(backend, config_fn, [scenario, ...])`: one `#[tokio::test]` per scenario in
/// `mod backend`, each run with `config_fn()` when it gives a config (bus and runner tests).
#[allow(unused_macros)]
macro_rules! scenarios {
    ($backend:ident, $config:path, [$($scenario:ident),* $(,)?]) => {
        mod $backend {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $scenario() {
                    if let Some(config) = $config() {
                        super::$scenario(config).await;
                    }
                }
            )*
        }
    };
}
