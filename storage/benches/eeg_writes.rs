//! EEG chunk write throughput on MySQL/MariaDB (and SQLite for comparison): rows/s and MB/s
//! of `Store::write_batch` with batches of 1 s, 23-channel, 256 Hz chunks (the pipeline's
//! reference load), each batch one transaction of new rows.
//!
//! MariaDB needs `VIGIL_TEST_MYSQL=mysql://vigil:vigil@127.0.0.1:3306`; without it only the
//! SQLite case runs (a note is printed). Run:
//! `VIGIL_TEST_MYSQL=mysql://vigil:vigil@127.0.0.1:3306 cargo bench -p vigil-storage --bench eeg_writes`

#![allow(missing_docs)] // criterion_group! generates undocumented items

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use sqlx::Connection;
use uuid::Uuid;
use vigil_core::codec;
use vigil_core::record::{EegChunk, SignalUnit};
use vigil_storage::{Store, WriteBatch};

const CHANNELS: usize = 23;
const RATE: usize = 256;
const BATCH: usize = 100;

fn chunk(stream_id: Uuid, seq: u64) -> EegChunk {
    EegChunk {
        patient_id: format!("bench-{}", seq % 50),
        device_id: "bench-dev".into(),
        stream_id,
        seq,
        start_ns: 1_709_251_200_000_000_000 + seq as i64 * 1_000_000_000,
        received_ns: 0,
        sample_rate_hz: RATE as f64,
        channels: (0..CHANNELS).map(|c| format!("ch{c}")).collect(),
        unit: SignalUnit::Microvolt,
        // EEG-like: a few sines plus deterministic noise, as f32 microvolts.
        samples: (0..CHANNELS)
            .map(|c| {
                (0..RATE)
                    .map(|i| {
                        let t = (seq as usize * RATE + i) as f32 / RATE as f32;
                        let noise = ((i * 7919 + c * 104_729) % 1000) as f32 / 100.0 - 5.0;
                        30.0 * (t * 10.0 + c as f32).sin() + 10.0 * (t * 23.0).sin() + noise
                    })
                    .collect()
            })
            .collect(),
    }
}

fn bench_store(c: &mut Criterion, name: &str, url: &str, rt: &tokio::runtime::Runtime) {
    let store: Store = rt.block_on(Store::connect(url)).expect("connect");
    let sample = chunk(Uuid::nil(), 0);
    let raw_bytes = codec::encode(&sample).expect("encode").len() * BATCH;
    let mut group = c.benchmark_group(format!("eeg_writes/{name}"));
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(20));
    group.throughput(Throughput::Elements(BATCH as u64));
    let mut seq = 0_u64;
    let stream = Uuid::new_v4();
    group.bench_function(BenchmarkId::new("rows", BATCH), |b| {
        b.iter_custom(|iters| {
            let batches: Vec<WriteBatch> = (0..iters)
                .map(|_| WriteBatch {
                    eeg: (0..BATCH)
                        .map(|_| {
                            seq += 1;
                            chunk(stream, seq)
                        })
                        .collect(),
                    ..WriteBatch::default()
                })
                .collect();
            let start = Instant::now();
            for batch in &batches {
                rt.block_on(store.write_batch(batch)).expect("write");
            }
            start.elapsed()
        })
    });
    group.throughput(Throughput::Bytes(raw_bytes as u64));
    group.bench_function(BenchmarkId::new("bytes", BATCH), |b| {
        b.iter_custom(|iters| {
            let batches: Vec<WriteBatch> = (0..iters)
                .map(|_| WriteBatch {
                    eeg: (0..BATCH)
                        .map(|_| {
                            seq += 1;
                            chunk(stream, seq)
                        })
                        .collect(),
                    ..WriteBatch::default()
                })
                .collect();
            let start = Instant::now();
            for batch in &batches {
                rt.block_on(store.write_batch(batch)).expect("write");
            }
            start.elapsed()
        })
    });
    group.finish();
    rt.block_on(store.close());
}

fn eeg_writes(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    match std::env::var("VIGIL_TEST_MYSQL") {
        Ok(server) if !server.is_empty() => {
            let server = server.trim_end_matches('/').to_owned();
            let name = format!("vigil_bench_{}", Uuid::new_v4().simple());
            rt.block_on(async {
                let mut conn = sqlx::MySqlConnection::connect(&server)
                    .await
                    .expect("mysql");
                sqlx::query(&format!("CREATE DATABASE {name}"))
                    .execute(&mut conn)
                    .await
                    .expect("create database");
            });
            bench_store(c, "mariadb", &format!("{server}/{name}"), &rt);
            rt.block_on(async {
                let mut conn = sqlx::MySqlConnection::connect(&server)
                    .await
                    .expect("mysql");
                sqlx::query(&format!("DROP DATABASE {name}"))
                    .execute(&mut conn)
                    .await
                    .expect("drop database");
            });
        }
        _ => eprintln!(
            "eeg_writes: VIGIL_TEST_MYSQL is not set, skipping the MariaDB case \
             (set it to mysql://vigil:vigil@127.0.0.1:3306)"
        ),
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("bench.db").display()
    );
    bench_store(c, "sqlite", &url, &rt);
}

criterion_group!(benches, eeg_writes);
criterion_main!(benches);
