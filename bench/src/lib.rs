//! # vigil-bench
//!
//! The end-to-end load benchmark of Vigil (targets in docs/ARCHITECTURE.md "Targets"), run by
//! hand, never in CI:
//!
//! ```sh
//! CARGO_TARGET_DIR=target cargo build --release --workspace --bins
//! scripts/fetch-data && target/release/vigil models fetch
//! target/release/vigil-loadbench --vigil target/release/vigil --out bench-results.json
//! ```
//!
//! `vigil-loadbench` starts the tansu broker (or uses `--kafka`), creates a fresh
//! `vigil_bench_<id>` MariaDB database, writes one configuration, starts `vigil ingest`,
//! `vigil infer`, `vigil store` and `vigil dashboard` as separate processes and waits for
//! their `/readyz`. It then ramps the number of simulated patients (the replay simulator of
//! `vigil-replay` over a real recording: 23 channels resampled to 256 Hz, plus one heart-rate
//! point per second from a second device per patient) and measures, per step: consumer lag
//! of the inference and storage groups, sample-receipt-to-browser latency from the
//! dashboard's push histogram (a logged-in WebSocket client subscribed to every patient),
//! CPU and RSS of every process; and seizure-onset-to-alert latency on injected synthetic
//! bursts. See bench/README.md for what each number means.
//!
//! This library holds the measurement arithmetic (unit-tested without services); the binary
//! holds the orchestration.

pub mod faults;
pub mod histogram;
pub mod lag;
pub mod plot;
pub mod probes;
pub mod proc_stats;
pub mod services;
