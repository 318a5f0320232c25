//! # vigil-replay
//!
//! Real recordings into Vigil, for researchers and for testing the pipeline end to end:
//!
//! - [`edf`]: a checked, read-only EDF / EDF+ / BDF reader ([`Recording::open`]): header,
//!   physical samples, EDF+ annotations, discontinuous records as NaN gaps;
//! - [`archive`]: EEG from Vigil's own Parquet research archive as a [`Recording`] (gaps as
//!   NaN), so archived sessions replay like files;
//! - [`annotations`]: seizure annotations from EDF+, CHB-MIT summaries, TUH `.csv_bi` and
//!   BIDS `events.tsv` as one [`SeizureEvent`] list per recording;
//! - [`resample`]: anti-aliased rational resampling (Kaiser-windowed polyphase FIR, the
//!   method of `scipy.signal.resample_poly`) to a rate the model accepts;
//! - [`simulator`]: a recording as one or many simulated devices ([`PatientSimulator`]):
//!   montage, units, resampling, injected synthetic seizure-like bursts, chunking, clock
//!   offsets, dropouts, jitter;
//! - [`replay`](mod@replay): streaming simulated devices through a real ingest gateway
//!   ([`replay()`] -> [`ReplaySummary`]);
//! - [`eval`] and [`scoring`]: the inference code and alert policy run offline on annotated
//!   recordings, scored SzCORE-style (event-based, 30 s / 60 s tolerance, merge < 90 s,
//!   split > 5 min); [`plot`] draws the probability trace with the events.
//!
//! The real recordings come from `scripts/fetch-data` (pinned packages, checksums; see
//! `data/manifest.toml`). None contains a real seizure: sensitivity and latency are measured
//! on injected synthetic bursts, which says nothing about clinical performance.

pub mod annotations;
pub mod archive;
pub mod edf;
pub mod eval;
pub mod plot;
pub mod replay;
pub mod resample;
pub mod scoring;
pub mod simulator;

pub use annotations::{RecordingAnnotations, SeizureEvent};
pub use edf::Recording;
pub use replay::{replay, ReplayConfig, ReplayDevice, ReplaySummary, Speed};
pub use simulator::{DeviceProfile, Montage, PatientSimulator, SimulatorConfig};
