//! # vigil-core
//!
//! What every Vigil stage shares, so that ingest, inference, storage and the dashboard agree
//! on one contract (see `docs/ARCHITECTURE.md`):
//!
//! - [`open_alerts`]: the alert lifecycle as one fold of `vigil.alerts` events;
//! - [`record`]: the records on the bus (`EegChunk`, `HrBatch`, `SeizureProbability`,
//!   `AlertEvent`, `DeadLetter`) and their validation rules;
//! - [`codec`]: one versioned binary wire format plus JSON for each record; decoders check
//!   size first, never panic, and return only valid records;
//! - [`bus`]: the message bus chosen by URL (`memory://` in-process, `kafka://` via rdkafka)
//!   with at-least-once consumer groups whose offsets advance only on acknowledgement;
//! - [`config`]: layered configuration (defaults, TOML, `VIGIL__` env; `[lsl]` in
//!   [`lsl_config`]);
//! - [`problem`]: RFC 9457 problem+json, the one HTTP error body of every server;
//! - [`telemetry`]: logs, Prometheus metrics, typed events, `/healthz` `/readyz` `/metrics`;
//! - [`shutdown`]: a cancellation token fired by SIGINT/SIGTERM;
//! - [`stage`]: the one consume -> decode -> dead-letter -> handle -> acknowledge loop of every
//!   consumer-group stage;
//! - [`model`]: the model manifest and the checksum-verified weight fetch;
//! - [`datasets`]: where the recordings fetched by `scripts/fetch-data` are (tests, replay);
//! - [`time`]: wall-clock helpers (UTC ns);
//! - [`testenv`]: the skip-locally / fail-under-CI rule for tests that need real components.

pub mod bus;
pub mod codec;
pub mod config;
pub mod datasets;
pub mod lsl_config;
pub mod model;
pub mod open_alerts;
pub mod problem;
pub mod record;
pub mod serde_fields;
pub mod shutdown;
pub mod stage;
pub mod telemetry;
pub mod testenv;
pub mod time;

pub use tokio_util::sync::CancellationToken;
