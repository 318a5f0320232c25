//! Codec behaviour: every record round-trips through the binary codec and JSON (NaN intact),
//! the wire format is pinned by a golden file, and each validation rule refuses with a typed
//! error.

mod common;

use common::*;
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use uuid::Uuid;
use vigil_core::codec::{self, CodecError, DecodeLimits, RecordKind};
use vigil_core::record::*;

fn limits() -> DecodeLimits {
    DecodeLimits::default()
}

fn chunk_eq(a: &EegChunk, b: &EegChunk) -> bool {
    let mut a2 = a.clone();
    let mut b2 = b.clone();
    a2.samples.clear();
    b2.samples.clear();
    a2 == b2 && same_matrix(&a.samples, &b.samples)
}

fn prob_eq(a: &SeizureProbability, b: &SeizureProbability) -> bool {
    let (mut a2, mut b2) = (a.clone(), b.clone());
    for x in [&mut a2, &mut b2] {
        x.channel_p.clear();
        x.aggregate_p.clear();
    }
    a2 == b2
        && same_matrix(&a.channel_p, &b.channel_p)
        && same_floats(&a.aggregate_p, &b.aggregate_p)
}

/// A provisional record with a final record's header fields and aggregate.
fn provisional(p: &SeizureProbability) -> ProvisionalProbability {
    ProvisionalProbability {
        patient_id: p.patient_id.clone(),
        start_ns: p.start_ns,
        step_ns: p.step_ns,
        aggregate_p: p.aggregate_p.clone(),
        model: p.model.clone(),
        emitted_ns: p.emitted_ns,
    }
}

fn provisional_eq(a: &ProvisionalProbability, b: &ProvisionalProbability) -> bool {
    let (mut a2, mut b2) = (a.clone(), b.clone());
    a2.aggregate_p.clear();
    b2.aggregate_p.clear();
    a2 == b2 && same_floats(&a.aggregate_p, &b.aggregate_p)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn eeg_chunk_round_trips(chunk in eeg_chunk()) {
        let bin: EegChunk = codec::decode(&codec::encode(&chunk).unwrap(), &limits()).unwrap();
        prop_assert!(chunk_eq(&chunk, &bin));
        let json: EegChunk = codec::from_json(&codec::to_json(&chunk).unwrap(), &limits()).unwrap();
        prop_assert!(chunk_eq(&chunk, &json));
    }

    #[test]
    fn hr_batch_round_trips(batch in hr_batch()) {
        prop_assert_eq!(&codec::decode::<HrBatch>(&codec::encode(&batch).unwrap(), &limits()).unwrap(), &batch);
        prop_assert_eq!(&codec::from_json::<HrBatch>(&codec::to_json(&batch).unwrap(), &limits()).unwrap(), &batch);
    }

    #[test]
    fn seizure_probability_round_trips(p in seizure_probability()) {
        let bin: SeizureProbability = codec::decode(&codec::encode(&p).unwrap(), &limits()).unwrap();
        prop_assert!(prob_eq(&p, &bin));
        let json: SeizureProbability = codec::from_json(&codec::to_json(&p).unwrap(), &limits()).unwrap();
        prop_assert!(prob_eq(&p, &json));
    }

    #[test]
    fn provisional_probability_round_trips(p in seizure_probability()) {
        let p = provisional(&p);
        let bin: ProvisionalProbability = codec::decode(&codec::encode(&p).unwrap(), &limits()).unwrap();
        prop_assert!(provisional_eq(&p, &bin));
        let json: ProvisionalProbability = codec::from_json(&codec::to_json(&p).unwrap(), &limits()).unwrap();
        prop_assert!(provisional_eq(&p, &json));
    }

    #[test]
    fn alert_event_round_trips(event in alert_event()) {
        prop_assert_eq!(&codec::decode::<AlertEvent>(&codec::encode(&event).unwrap(), &limits()).unwrap(), &event);
        prop_assert_eq!(&codec::from_json::<AlertEvent>(&codec::to_json(&event).unwrap(), &limits()).unwrap(), &event);
    }

    #[test]
    fn dead_letter_round_trips(dl in dead_letter()) {
        prop_assert_eq!(&codec::decode::<DeadLetter>(&codec::encode(&dl).unwrap(), &limits()).unwrap(), &dl);
        prop_assert_eq!(&codec::from_json::<DeadLetter>(&codec::to_json(&dl).unwrap(), &limits()).unwrap(), &dl);
    }

    #[test]
    fn eeg_trace_round_trips(trace in eeg_trace()) {
        let bin: EegTrace = codec::decode(&codec::encode(&trace).unwrap(), &limits()).unwrap();
        prop_assert!(same_matrix(&trace.samples, &bin.samples));
        prop_assert_eq!((&bin.patient_id, bin.start_ns, &bin.channels), (&trace.patient_id, trace.start_ns, &trace.channels));
        let json: EegTrace = codec::from_json(&codec::to_json(&trace).unwrap(), &limits()).unwrap();
        prop_assert!(same_matrix(&trace.samples, &json.samples));
    }

    #[test]
    fn eeg_trends_round_trip_with_nan_kept(trends in eeg_trends()) {
        for decoded in [
            codec::decode::<EegTrends>(&codec::encode(&trends).unwrap(), &limits()).unwrap(),
            codec::from_json::<EegTrends>(&codec::to_json(&trends).unwrap(), &limits()).unwrap(),
        ] {
            prop_assert!(same_matrix(&trends.csa_db, &decoded.csa_db));
            prop_assert!(same_floats(&trends.asymmetry, &decoded.asymmetry));
            let scalars = |t: &EegTrends| {
                let mut v = vec![t.asymmetry_index];
                for s in [t.left, t.right, t.global] {
                    v.extend([s.aeeg_min_uv, s.aeeg_max_uv, s.bsr_percent]);
                }
                v
            };
            prop_assert!(same_floats(&scalars(&trends), &scalars(&decoded)));
            prop_assert_eq!(
                (&decoded.patient_id, decoded.stream_id, decoded.start_ns, decoded.duration_ns, decoded.montage, &decoded.regions),
                (&trends.patient_id, trends.stream_id, trends.start_ns, trends.duration_ns, trends.montage, &trends.regions)
            );
        }
    }

    #[test]
    fn binary_sample_block_is_raw_little_endian_f32(chunk in eeg_chunk()) {
        // The samples occupy one contiguous channel-major LE f32 block at the end of the body.
        let bytes = codec::encode(&chunk).unwrap();
        let block: Vec<u8> = chunk.samples.iter().flatten().flat_map(|x| x.to_le_bytes()).collect();
        prop_assert!(bytes.ends_with(&block));
    }
}

fn example_chunk() -> EegChunk {
    EegChunk {
        patient_id: "patient-001".into(),
        device_id: "headset-a".into(),
        stream_id: Uuid::from_u128(0x0123_4567_89ab_cdef_0123_4567_89ab_cdef),
        seq: 7,
        start_ns: 1_700_000_000_000_000_000,
        received_ns: 1_700_000_000_250_000_000,
        sample_rate_hz: 256.0,
        channels: vec!["Fp1-F7".into(), "F7-T7".into()],
        unit: SignalUnit::Microvolt,
        samples: vec![vec![12.5, f32::NAN, -3.0], vec![0.25, 1.0, 2.0]],
    }
}

/// The wire format is a contract with devices: any change to these bytes needs a new
/// wire version. Regenerate only deliberately: `VIGIL_BLESS=1 cargo test -p vigil-core --test codec`.
#[test]
fn wire_format_matches_golden_file() {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/eeg_chunk_v1.hex");
    let encoded = hex::encode(codec::encode(&example_chunk()).expect("encode"));
    if std::env::var_os("VIGIL_BLESS").is_some() {
        std::fs::write(&path, format!("{encoded}\n")).expect("bless");
    }
    let golden = std::fs::read_to_string(&path).expect("golden file");
    assert_eq!(encoded, golden.trim(), "binary wire format changed");
    assert!(
        encoded.starts_with("56470101"),
        "magic VG, version 1, kind EegChunk"
    );
}

/// Provisional values share `vigil.eeg.prob` with final ones: a reader of final values must
/// refuse them by kind (older builds: as an unknown kind), never read them as final.
#[test]
fn a_provisional_record_is_never_read_as_a_final_one() {
    let record = ProvisionalProbability {
        patient_id: "p1".into(),
        start_ns: 1_000_000_000,
        step_ns: 500_000_000,
        aggregate_p: vec![0.25, f32::NAN, 0.75],
        model: ModelRef {
            id: "m".into(),
            sha256: "0".repeat(64),
        },
        emitted_ns: 2_000_000_000,
    };
    let bytes = codec::encode(&record).expect("encode");
    assert_eq!(
        &bytes[..4],
        b"VG\x01\x08",
        "kind byte 8 within wire version 1"
    );
    assert!(matches!(
        codec::decode::<SeizureProbability>(&bytes, &limits()),
        Err(CodecError::WrongKind {
            expected: "SeizureProbability",
            found: "ProvisionalProbability"
        })
    ));
    assert!(matches!(
        codec::decode_any(&bytes, &limits()),
        Ok(codec::AnyRecord::ProvisionalProbability(_))
    ));
    let mut above = record.clone();
    above.aggregate_p[0] = 1.5;
    assert!(matches!(
        codec::decode::<ProvisionalProbability>(&codec::encode(&above).expect("encode"), &limits()),
        Err(CodecError::Invalid { .. })
    ));
}

#[test]
fn json_uses_null_for_missing_samples_and_nested_channels() {
    let json = String::from_utf8(codec::to_json(&example_chunk()).expect("json")).expect("utf8");
    assert!(
        json.contains(r#""samples":[[12.5,null,-3.0],[0.25,1.0,2.0]]"#),
        "{json}"
    );
    assert!(json.contains(r#""unit":"uV""#), "{json}");
}

#[test]
fn device_json_without_optional_fields_is_accepted() {
    let body =
        br#"{"patient_id":"p1","device_id":"d1","stream_id":"0b0c8a52-7d5e-4d0a-9a43-3f5f0e1c2d3e",
        "seq":0,"start_ns":1700000000000000000,"sample_rate_hz":256,"channels":["Cz"],
        "samples":[[1.0,null,3.0]]}"#;
    let chunk: EegChunk = codec::from_json(body, &limits()).expect("valid device JSON");
    assert_eq!(chunk.received_ns, 0);
    assert!(chunk.samples[0][1].is_nan());
}

fn invalid(chunk: &EegChunk) -> ValidationError {
    match codec::decode::<EegChunk>(&codec::encode(chunk).expect("encode"), &limits()) {
        Err(CodecError::Invalid { source, .. }) => source,
        other => panic!("expected a validation error, got {other:?}"),
    }
}

#[test]
fn each_eeg_rule_is_enforced_with_a_typed_error() {
    let base = example_chunk();

    let mut c = base.clone();
    c.samples[1][2] = f32::INFINITY;
    assert_eq!(
        invalid(&c),
        ValidationError::InfiniteSample {
            channel: 1,
            index: 2
        }
    );

    let mut c = base.clone();
    c.sample_rate_hz = 0.0;
    assert!(matches!(invalid(&c), ValidationError::SampleRate { .. }));
    c.sample_rate_hz = f64::NAN;
    assert!(matches!(invalid(&c), ValidationError::SampleRate { .. }));
    c.sample_rate_hz = 1e6;
    assert!(matches!(invalid(&c), ValidationError::SampleRate { .. }));

    let mut c = base.clone();
    c.channels.push("Cz".into());
    assert_eq!(
        invalid(&c),
        ValidationError::ChannelCountMismatch { rows: 2, labels: 3 }
    );

    let mut c = base.clone();
    c.channels[1] = c.channels[0].clone();
    assert!(matches!(
        invalid(&c),
        ValidationError::BadChannelLabel { .. }
    ));

    let mut c = base.clone();
    c.start_ns = -1;
    assert!(matches!(
        invalid(&c),
        ValidationError::NegativeTimestamp {
            field: "start_ns",
            ..
        }
    ));

    let mut c = base.clone();
    c.patient_id = "robert'); DROP TABLE".into();
    assert!(matches!(
        invalid(&c),
        ValidationError::BadIdentifier {
            field: "patient_id",
            ..
        }
    ));

    let mut c = base.clone();
    c.channels.clear();
    c.samples.clear();
    assert_eq!(invalid(&c), ValidationError::NoChannels);

    let mut c = base.clone();
    c.samples = vec![vec![], vec![]];
    assert_eq!(invalid(&c), ValidationError::NoSamples);

    let mut c = base.clone();
    c.channels = (0..300).map(|i| format!("C{i}")).collect();
    c.samples = vec![vec![0.0]; 300];
    assert!(matches!(
        invalid(&c),
        ValidationError::TooManyChannels { found: 300, .. }
    ));

    let mut c = base;
    c.samples = vec![vec![0.0; 200_000]; 2];
    let tight = DecodeLimits {
        max_record_bytes: 8 << 20,
        ..limits()
    };
    let err = codec::decode::<EegChunk>(&codec::encode(&c).expect("encode"), &tight)
        .expect_err("too many");
    assert!(
        matches!(
            err,
            CodecError::Invalid {
                source: ValidationError::TooManySamples { .. },
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn ragged_channels_are_refused_in_json() {
    let body = br#"{"patient_id":"p1","device_id":"d1","stream_id":"0b0c8a52-7d5e-4d0a-9a43-3f5f0e1c2d3e",
        "seq":0,"start_ns":1,"sample_rate_hz":256,"channels":["A","B"],"samples":[[1.0,2.0],[3.0]]}"#;
    let err = codec::from_json::<EegChunk>(body, &limits()).expect_err("ragged");
    assert!(
        matches!(
            err,
            CodecError::Invalid {
                source: ValidationError::RaggedChannels {
                    channel: 1,
                    expected: 2,
                    found: 1
                },
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn heart_rate_rules_are_enforced() {
    let mut batch = HrBatch {
        patient_id: "p1".into(),
        device_id: "watch".into(),
        stream_id: Uuid::nil(),
        seq: 0,
        points: vec![
            HrPoint {
                t_ns: 10,
                bpm: 70.0,
                rr_ms: Some(850.0),
            },
            HrPoint {
                t_ns: 20,
                bpm: 72.0,
                rr_ms: None,
            },
        ],
        source: HrSource::ChestStrap,
    };
    let check = |b: &HrBatch| match codec::from_json::<HrBatch>(
        &codec::to_json(b).expect("json"),
        &limits(),
    ) {
        Err(CodecError::Invalid { source, .. }) => Some(source),
        Ok(_) => None,
        Err(other) => panic!("{other}"),
    };
    assert_eq!(check(&batch), None);
    batch.points[1].t_ns = 10;
    assert_eq!(
        check(&batch),
        Some(ValidationError::NonIncreasingTime { index: 1 })
    );
    batch.points[1].t_ns = 20;
    batch.points[1].bpm = 0.0;
    assert!(matches!(
        check(&batch),
        Some(ValidationError::HeartValue { field: "bpm", .. })
    ));
    batch.points[1].bpm = 70.0;
    batch.points[0].rr_ms = Some(-5.0);
    assert!(matches!(
        check(&batch),
        Some(ValidationError::HeartValue { field: "rr_ms", .. })
    ));
    batch.points.clear();
    assert!(matches!(
        check(&batch),
        Some(ValidationError::NoPoints { .. })
    ));
}

#[test]
fn probability_and_alert_rules_are_enforced() {
    let mut p = SeizureProbability {
        patient_id: "p1".into(),
        start_ns: 0,
        step_ns: 500_000_000,
        channels: vec!["Cz".into()],
        channel_p: vec![vec![0.1, f32::NAN]],
        aggregate_p: vec![0.1, f32::NAN],
        model: ModelRef {
            id: "m".into(),
            sha256: "ab".repeat(32),
        },
        emitted_ns: 0,
    };
    let encode_decode = |p: &SeizureProbability| {
        codec::decode::<SeizureProbability>(&codec::encode(p).expect("e"), &limits())
    };
    encode_decode(&p).expect("valid: NaN means not evaluated");
    p.aggregate_p[0] = 1.5;
    assert!(matches!(
        encode_decode(&p),
        Err(CodecError::Invalid {
            source: ValidationError::Probability {
                field: "aggregate_p",
                index: 0,
                ..
            },
            ..
        })
    ));
    p.aggregate_p = vec![0.1];
    assert!(matches!(
        encode_decode(&p),
        Err(CodecError::Invalid {
            source: ValidationError::LengthMismatch { .. },
            ..
        })
    ));

    let ack = AlertEvent {
        alert_id: Uuid::nil(),
        patient_id: "p1".into(),
        kind: AlertKind::Seizure,
        transition: AlertTransition::Acknowledged,
        onset_ns: 1,
        at_ns: 2,
        by: None,
        evidence: AlertEvidence::default(),
    };
    let err = codec::decode::<AlertEvent>(&codec::encode(&ack).expect("e"), &limits())
        .expect_err("no user");
    assert!(matches!(
        err,
        CodecError::Invalid {
            source: ValidationError::AckWithoutUser,
            ..
        }
    ));
}

#[test]
fn header_errors_are_specific() {
    let good = codec::encode(&example_chunk()).expect("encode");
    let l = limits();
    assert!(matches!(
        codec::decode::<EegChunk>(&good[..3], &l),
        Err(CodecError::Truncated(3))
    ));
    let mut bad = good.clone();
    bad[0] = b'X';
    assert!(matches!(
        codec::decode::<EegChunk>(&bad, &l),
        Err(CodecError::BadMagic(_))
    ));
    let mut bad = good.clone();
    bad[2] = 9;
    assert!(matches!(
        codec::decode::<EegChunk>(&bad, &l),
        Err(CodecError::UnsupportedVersion(9))
    ));
    let mut bad = good.clone();
    bad[3] = 200;
    assert!(matches!(
        codec::decode::<EegChunk>(&bad, &l),
        Err(CodecError::UnknownKind(200))
    ));
    assert!(matches!(
        codec::decode::<HrBatch>(&good, &l),
        Err(CodecError::WrongKind {
            expected: "HrBatch",
            found: "EegChunk"
        })
    ));
    let mut long = good.clone();
    long.push(0);
    assert!(matches!(
        codec::decode::<EegChunk>(&long, &l),
        Err(CodecError::TrailingBytes(1))
    ));
    let small = DecodeLimits {
        max_record_bytes: 16,
        ..l
    };
    assert!(matches!(
        codec::decode::<EegChunk>(&good, &small),
        Err(CodecError::TooLarge { max: 16, .. })
    ));
    assert_eq!(
        codec::peek_kind(&good, &l).expect("kind"),
        RecordKind::EegChunk
    );
    assert!(matches!(
        codec::decode_any(&good, &l),
        Ok(codec::AnyRecord::EegChunk(_))
    ));
}

#[test]
fn dead_letter_cuts_oversize_payload_and_reason() {
    let payload = vec![1u8; DeadLetter::MAX_PAYLOAD + 10];
    let reason = "é".repeat(DeadLetter::MAX_REASON);
    let dl = DeadLetter::new("ingest", None, b"k", &payload, &reason, 5);
    assert!(dl.truncated);
    assert_eq!(dl.payload.len(), DeadLetter::MAX_PAYLOAD);
    assert!(
        dl.reason.len() <= DeadLetter::MAX_REASON,
        "cut at a char boundary"
    );
    assert_eq!((dl.partition, dl.offset), (-1, -1));
    codec::decode::<DeadLetter>(&codec::encode(&dl).expect("encode"), &limits())
        .expect("fits a record");
}

/// Trend values outside their ranges, or of the wrong shape, are refused with the field named.
#[test]
fn invalid_trends_are_refused_with_the_field_named() {
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let valid = eeg_trends().new_tree(&mut runner).unwrap().current();
    type Breaker = Box<dyn Fn(&mut EegTrends)>;
    let cases: Vec<(&str, Breaker)> = vec![
        ("asymmetry[3] = 1.5", Box::new(|t| t.asymmetry[3] = 1.5)),
        (
            "asymmetry_index[0] = -2",
            Box::new(|t| t.asymmetry_index = -2.0),
        ),
        (
            "left.bsr_percent[0] = 101",
            Box::new(|t| t.left.bsr_percent = 101.0),
        ),
        (
            "right.aeeg_min_uv[0] = -1",
            Box::new(|t| {
                t.right.aeeg_min_uv = -1.0;
                t.right.aeeg_max_uv = 1.0;
            }),
        ),
        (
            "global.aeeg_min_uv[0] = 20",
            Box::new(|t| {
                t.global.aeeg_min_uv = 20.0;
                t.global.aeeg_max_uv = 10.0;
            }),
        ),
        (
            "csa_db[0] = inf",
            Box::new(|t| t.csa_db[0][0] = f32::INFINITY),
        ),
        (
            "csa_db row has 29 entries",
            Box::new(|t| {
                t.csa_db[0].pop();
            }),
        ),
        (
            "asymmetry has 31 entries",
            Box::new(|t| t.asymmetry.push(0.0)),
        ),
        (
            "rows but",
            Box::new(|t| t.regions.push("extra region".into())),
        ),
        (
            "duration_ns must be positive",
            Box::new(|t| t.duration_ns = 0),
        ),
    ];
    for (expect, break_it) in cases {
        let mut t = valid.clone();
        break_it(&mut t);
        // The binary matrix cannot even carry a ragged row: that case goes through JSON.
        let err = match codec::encode(&t) {
            Ok(bytes) => codec::decode::<EegTrends>(&bytes, &limits()),
            Err(_) => codec::from_json::<EegTrends>(&codec::to_json(&t).expect("json"), &limits()),
        }
        .expect_err(expect)
        .to_string();
        assert!(err.contains(expect), "expected {expect:?} in: {err}");
    }
}
