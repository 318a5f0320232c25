//! # vigil-inference
//!
//! Turns EEG samples into seizure probabilities with the reference semantics of
//! `brainmaze-eeg-models` 0.1.0 (docs/ARCHITECTURE.md "Inference contract"), computed as a
//! stream:
//!
//! - [`spectrogram`]: the model input (1 s / 0.5 s hop power spectrogram, bins 0..99 Hz,
//!   per-window per-bin z-score), built per window from its raw samples;
//! - [`model`]: the ONNX model on tract, plans optimised once per shape and shared;
//! - [`windowing`]: overlapping windows, edge discard, NaN-aware max, validity mask, and which
//!   points are final, incrementally per channel ([`windowing::ChannelStream`]);
//! - [`alerts`]: the alert state machines of docs/ALERTS.md (seizure, burden, signal loss,
//!   brady/tachycardia, acknowledgement and escalation), rebuilt from `vigil.alerts`;
//! - [`trends`]: per-patient qEEG trends for review over hours (regional CSA, asymmetry,
//!   aEEG, burst suppression), one point per 2 s (docs/TRENDS.md);
//! - [`heart_rate`]: plausibility, RMSSD and ictal-tachycardia rises from heart-rate samples;
//! - [`stage`]: `vigil infer`, the consumer group on `vigil.eeg.raw` and `vigil.hr.raw`:
//!   a dispatcher, shards that own patients and batch the model ([`patient`]), and
//!   pipelined publishing with exact offsets; [`serve()`] builds and runs it from the
//!   configuration.
//!
//! NaN in any output means "not evaluated" (missing or flat signal, or not covered by a
//! window yet), never "no seizure". Parity with the Python reference is tested against golden
//! files made by `scripts/reference/run` (`tests/parity.rs`).

pub mod alerts;
mod catch_up;
pub mod display;
mod handover;
pub mod heart_rate;
pub mod model;
mod model_thread;
mod output;
pub mod patient;
mod raw_samples;
pub mod runtime;
pub mod serve;
mod shard;
pub mod spectrogram;
pub mod stage;
pub mod synthetic;
pub mod trends;
pub mod windowing;

pub use serve::{serve, ServeError};

/// Inference failures.
#[derive(Debug, thiserror::Error)]
pub enum InferenceError {
    /// The model cannot use this sampling rate.
    #[error("sample rate {0} Hz is not accepted by the model: it needs an even whole number of Hz >= 200 (resample first)")]
    SampleRate(f64),
    /// Inconsistent window parameters.
    #[error("invalid window parameters: {0}")]
    Params(String),
    /// A model input of the wrong size (a bug in the caller).
    #[error("model input has {found} values, expected {expected}")]
    Shape {
        /// Values expected.
        expected: usize,
        /// Values given.
        found: usize,
    },
    /// The bus refused a publish or subscribe (outputs not durable: the input is not acked).
    #[error("bus: {0}")]
    Bus(String),
    /// tract failed to load, optimise or run the model.
    #[error("model: {context}: {reason}")]
    Model {
        /// Step that failed.
        context: &'static str,
        /// tract's message.
        reason: String,
    },
    /// A shard's model thread could not start, or stopped.
    #[error("model thread: {0}")]
    ModelThread(String),
}

impl From<vigil_core::bus::BusError> for InferenceError {
    fn from(err: vigil_core::bus::BusError) -> Self {
        Self::Bus(err.to_string())
    }
}
