//! Hub throughput: one update serialized and fanned out to N subscribed browsers' queues
//! (what the bus feed does per record). `cargo bench -p vigil-dashboard --bench hub`.
#![allow(missing_docs, clippy::unwrap_used)]

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use uuid::Uuid;
use vigil_core::record::EegTrace;
use vigil_dashboard::live::{ClientSink, LiveHub};

/// One second of 23-channel EEG at 256 Hz: the design's load unit per patient.
fn trace() -> EegTrace {
    EegTrace {
        patient_id: "p1".into(),
        stream_id: Uuid::nil(),
        start_ns: 1_700_000_000_000_000_000,
        received_ns: 1_700_000_000_000_000_000,
        sample_rate_hz: 256.0,
        channels: (0..23).map(|c| format!("ch{c}")).collect(),
        samples: (0..23)
            .map(|c| {
                (0..256)
                    .map(|i| ((i * 7 + c) % 200) as f32 * 0.37 - 37.0)
                    .collect()
            })
            .collect(),
    }
}

fn fan_out(c: &mut Criterion) {
    let record = trace();
    let mut group = c.benchmark_group("hub_push_trace_23ch_1s");
    for subscribers in [1usize, 10, 50] {
        let hub = LiveHub::new(60.0, 64);
        let mut receivers = Vec::new();
        for _ in 0..subscribers {
            let (sink, rx, _) = ClientSink::new(1 << 20, true);
            hub.subscribe("p1", None, &sink, 0);
            receivers.push((sink, rx));
        }
        group.throughput(Throughput::Elements(1));
        group.bench_with_input(
            BenchmarkId::from_parameter(subscribers),
            &subscribers,
            |b, _| {
                b.iter(|| {
                    hub.push_trace(&record, 0);
                    for (_, rx) in &mut receivers {
                        while rx.try_recv().is_ok() {}
                    }
                })
            },
        );
    }
    group.finish();
}

criterion_group!(benches, fan_out);
criterion_main!(benches);
