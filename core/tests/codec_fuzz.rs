//! Bounded fuzzing of every decoder, run in CI: arbitrary bytes, and valid encodings with
//! bytes flipped, cut, inserted or length fields forged. A decoder must return `Ok` with a
//! valid record or a typed `Err`, never panic, and never allocate beyond the input's worth.
//! (`cargo test` turns a panic into a failure; proptest shrinks it to a minimal input.)
//!
//! Case count: `PROPTEST_CASES` (default 2000 per property here).

mod common;

use common::*;
use proptest::prelude::*;
use vigil_core::codec::{self, DecodeLimits, Record};
use vigil_core::record::*;

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000)
}

/// Decodes with every decoder; any panic fails the test.
fn decode_everything(bytes: &[u8]) {
    let limits = DecodeLimits::default();
    if let Ok(any) = codec::decode_any(bytes, &limits) {
        // Whatever decodes must satisfy the invariants.
        let ok = match any {
            codec::AnyRecord::EegChunk(r) => r.validate(&limits.record),
            codec::AnyRecord::HrBatch(r) => r.validate(&limits.record),
            codec::AnyRecord::SeizureProbability(r) => r.validate(&limits.record),
            codec::AnyRecord::AlertEvent(r) => r.validate(&limits.record),
            codec::AnyRecord::DeadLetter(r) => r.validate(&limits.record),
            codec::AnyRecord::EegTrace(r) => r.validate(&limits.record),
            codec::AnyRecord::EegTrends(r) => r.validate(&limits.record),
            codec::AnyRecord::ProvisionalProbability(r) => r.validate(&limits.record),
        };
        assert!(ok.is_ok(), "decoder returned an invalid record");
    }
    let _ = codec::from_json::<EegChunk>(bytes, &limits);
    let _ = codec::from_json::<HrBatch>(bytes, &limits);
    let _ = codec::from_json::<SeizureProbability>(bytes, &limits);
    let _ = codec::from_json::<AlertEvent>(bytes, &limits);
    let _ = codec::from_json::<DeadLetter>(bytes, &limits);
    let _ = codec::from_json::<EegTrace>(bytes, &limits);
    let _ = codec::from_json::<EegTrends>(bytes, &limits);
    let _ = codec::from_json::<ProvisionalProbability>(bytes, &limits);
}

#[derive(Debug, Clone)]
enum Mutation {
    Flip {
        at: usize,
        bit: u8,
    },
    Set {
        at: usize,
        value: u8,
    },
    Truncate {
        at: usize,
    },
    Insert {
        at: usize,
        bytes: Vec<u8>,
    },
    /// Forge a varint length to a huge value (tests allocation guards).
    HugeVarint {
        at: usize,
    },
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), 0u8..8).prop_map(|(at, bit)| Mutation::Flip { at, bit }),
        (any::<usize>(), any::<u8>()).prop_map(|(at, value)| Mutation::Set { at, value }),
        any::<usize>().prop_map(|at| Mutation::Truncate { at }),
        (any::<usize>(), prop::collection::vec(any::<u8>(), 1..8))
            .prop_map(|(at, bytes)| Mutation::Insert { at, bytes }),
        any::<usize>().prop_map(|at| Mutation::HugeVarint { at }),
    ]
}

fn mutate(mut bytes: Vec<u8>, mutations: &[Mutation]) -> Vec<u8> {
    for m in mutations {
        if bytes.is_empty() {
            break;
        }
        let n = bytes.len();
        match m {
            Mutation::Flip { at, bit } => bytes[at % n] ^= 1 << bit,
            Mutation::Set { at, value } => bytes[at % n] = *value,
            Mutation::Truncate { at } => bytes.truncate(at % n),
            Mutation::Insert { at, bytes: ins } => {
                let at = at % n;
                bytes.splice(at..at, ins.iter().copied());
            }
            Mutation::HugeVarint { at } => {
                let at = at % n;
                bytes.splice(at..at, [0xff, 0xff, 0xff, 0xff, 0x0f]);
            }
        }
    }
    bytes
}

fn encoded<R: Record>(r: &R) -> Vec<u8> {
    codec::encode(r).expect("encode")
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
        decode_everything(&bytes);
    }

    #[test]
    fn arbitrary_bytes_behind_a_valid_header_never_panic(
        kind in 1u8..=6,
        body in prop::collection::vec(any::<u8>(), 0..2048),
    ) {
        let mut bytes = vec![b'V', b'G', 1, kind];
        bytes.extend(body);
        decode_everything(&bytes);
    }

    #[test]
    fn mutated_eeg_chunks_never_panic(r in eeg_chunk(), m in prop::collection::vec(mutation(), 1..4)) {
        decode_everything(&mutate(encoded(&r), &m));
        decode_everything(&mutate(codec::to_json(&r).expect("json"), &m));
    }

    #[test]
    fn mutated_hr_batches_never_panic(r in hr_batch(), m in prop::collection::vec(mutation(), 1..4)) {
        decode_everything(&mutate(encoded(&r), &m));
        decode_everything(&mutate(codec::to_json(&r).expect("json"), &m));
    }

    #[test]
    fn mutated_probabilities_never_panic(r in seizure_probability(), m in prop::collection::vec(mutation(), 1..4)) {
        decode_everything(&mutate(encoded(&r), &m));
        decode_everything(&mutate(codec::to_json(&r).expect("json"), &m));
    }

    #[test]
    fn mutated_alerts_never_panic(r in alert_event(), m in prop::collection::vec(mutation(), 1..4)) {
        decode_everything(&mutate(encoded(&r), &m));
        decode_everything(&mutate(codec::to_json(&r).expect("json"), &m));
    }

    #[test]
    fn mutated_traces_never_panic(r in eeg_trace(), m in prop::collection::vec(mutation(), 1..4)) {
        decode_everything(&mutate(encoded(&r), &m));
        decode_everything(&mutate(codec::to_json(&r).expect("json"), &m));
    }

    #[test]
    fn mutated_trends_never_panic(r in eeg_trends(), m in prop::collection::vec(mutation(), 1..4)) {
        decode_everything(&mutate(encoded(&r), &m));
        decode_everything(&mutate(codec::to_json(&r).expect("json"), &m));
    }

    #[test]
    fn mutated_dead_letters_never_panic(r in dead_letter(), m in prop::collection::vec(mutation(), 1..4)) {
        decode_everything(&mutate(encoded(&r), &m));
        decode_everything(&mutate(codec::to_json(&r).expect("json"), &m));
    }
}

/// A 9-byte input that declares a 4096 x 4_000_000 matrix must be refused by the shape check,
/// not by running out of memory.
#[test]
fn forged_matrix_shape_is_refused_without_allocating() {
    let mut chunk = encoded(&EegChunk {
        patient_id: "p".into(),
        device_id: "d".into(),
        stream_id: uuid::Uuid::nil(),
        seq: 0,
        start_ns: 0,
        received_ns: 0,
        sample_rate_hz: 256.0,
        channels: vec!["A".into()],
        unit: SignalUnit::Microvolt,
        samples: vec![vec![1.0]],
    });
    // Replace the trailing (rows=1, cols=1, len=4, 4 bytes) with a forged shape and no data.
    chunk.truncate(chunk.len() - 7);
    chunk.extend([0x80, 0x20, 0x80, 0xa4, 0xe8, 0x03, 0x00]);
    let err = codec::decode::<EegChunk>(&chunk, &DecodeLimits::default()).expect_err("forged");
    assert!(matches!(err, codec::CodecError::Body { .. }), "{err}");
}
