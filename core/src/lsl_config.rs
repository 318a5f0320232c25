//! `[lsl]`: the LSL bridge (`vigil lsl`, crate `vigil-lsl`, docs/LSL.md). Lives apart from
//! `config.rs` only to keep that file readable; [`crate::config`] re-exports it.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::config::ConfigError;
use crate::record::HrSource;

/// LSL bridge settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LslConfig {
    /// Gateway stream URL; empty = `ws://<ingest.listen>/v1/stream`.
    pub url: String,
    /// Length of the EEG chunks sent, in ms (heart-rate points are batched over as long).
    pub chunk_ms: u64,
    /// How long one LSL resolve waits for a configured stream that is not found yet, in ms;
    /// the bridge keeps resolving until the stream appears.
    pub resolve_wait_ms: u64,
    /// Seconds of samples liblsl buffers per inlet while the bridge is behind (the gateway
    /// slow or down); older samples are dropped by liblsl, which the bridge reports as a gap.
    pub buffer_s: u32,
    /// A jump between consecutive EEG timestamps larger than one sample period plus this is
    /// a gap (filled with NaN or a new stream, as `inference.max_gap_s` rules); smaller jumps
    /// are timestamp jitter, in ms.
    pub gap_tolerance_ms: u64,
    /// Interval between two `time_correction` measurements of each inlet, in ms.
    pub correction_interval_ms: u64,
    /// Frames per stream sent but not yet acknowledged by the gateway.
    pub max_in_flight: usize,
    /// On SIGTERM, how long the bridge waits for the gateway to acknowledge what it sent,
    /// in ms.
    pub drain_timeout_ms: u64,
    /// The streams to forward, keyed by a name of your choice (used in logs).
    pub streams: BTreeMap<String, LslStreamConfig>,
}

impl Default for LslConfig {
    fn default() -> Self {
        Self {
            url: String::new(),
            chunk_ms: 250,
            resolve_wait_ms: 1_000,
            buffer_s: 60,
            gap_tolerance_ms: 50,
            correction_interval_ms: 5_000,
            max_in_flight: 64,
            drain_timeout_ms: 10_000,
            streams: BTreeMap::new(),
        }
    }
}

/// What an LSL stream carries, as Vigil reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LslKind {
    /// EEG: the stream's `type` is `EEG`; becomes `EegChunk`s.
    #[default]
    Eeg,
    /// Heart rate: the stream's `type` is `HR`; channels bpm and (optionally) RR, becomes
    /// `HrBatch`es.
    Hr,
}

impl LslKind {
    /// The LSL stream `type` this kind matches.
    pub fn lsl_type(self) -> &'static str {
        match self {
            Self::Eeg => "EEG",
            Self::Hr => "HR",
        }
    }
}

/// One forwarded stream: which LSL stream (predicates, all given ones must match) and which
/// Vigil device it is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LslStreamConfig {
    /// `eeg` or `hr`; the LSL stream's `type` must be `EEG` or `HR` accordingly.
    pub kind: LslKind,
    /// The LSL stream's `name` must equal this; empty = any name.
    pub name: String,
    /// The LSL stream's `source_id` must equal this; empty = any. Set it when the outlet
    /// has one: liblsl then re-attaches to the outlet after it restarts.
    pub source_id: String,
    /// The Vigil device id (`vigil device register --device-id`).
    pub device_id: String,
    /// The patient the device is registered to.
    pub patient_id: String,
    /// Name of the environment variable holding the device token.
    pub token_env: String,
    /// File whose first line is the device token (used when `token_env` is empty).
    pub token_file: PathBuf,
    /// Unit of channels whose description has none (`uV`, `mV`, `V`); empty = refuse such
    /// channels.
    pub default_unit: String,
    /// Heart-rate sensor kind (`ecg`, `ppg`, `chest_strap`, `other`).
    pub hr_source: HrSource,
}

impl Default for LslStreamConfig {
    fn default() -> Self {
        Self {
            kind: LslKind::Eeg,
            name: String::new(),
            source_id: String::new(),
            device_id: String::new(),
            patient_id: String::new(),
            token_env: String::new(),
            token_file: PathBuf::new(),
            default_unit: String::new(),
            hr_source: HrSource::Other,
        }
    }
}

impl LslConfig {
    /// Range and completeness checks.
    pub fn check(&self) -> Result<(), ConfigError> {
        let invalid = |problem: String| {
            Err(ConfigError::Invalid {
                key: "lsl",
                problem,
            })
        };
        if self.chunk_ms == 0 || self.resolve_wait_ms == 0 || self.max_in_flight == 0 {
            return invalid("chunk_ms, resolve_wait_ms and max_in_flight must be positive".into());
        }
        if self.buffer_s == 0 || self.correction_interval_ms == 0 {
            return invalid("buffer_s and correction_interval_ms must be positive".into());
        }
        for (key, stream) in &self.streams {
            if stream.device_id.is_empty() || stream.patient_id.is_empty() {
                return invalid(format!(
                    "streams.{key}: device_id and patient_id are required"
                ));
            }
            if stream.token_env.is_empty() == stream.token_file.as_os_str().is_empty() {
                return invalid(format!(
                    "streams.{key}: give exactly one of token_env and token_file"
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
// figment::Jail closures must return figment::Error, which is large by figment's design.
#[allow(clippy::result_large_err)]
mod tests {
    use figment::Jail;

    use crate::config::{LslKind, VigilConfig};

    #[test]
    fn a_stream_can_be_configured_from_the_environment_alone() {
        // The docs/LSL.md quick start configures the bridge this way.
        Jail::expect_with(|jail| {
            jail.set_env("VIGIL__LSL__URL", "ws://127.0.0.1:8080/v1/stream");
            jail.set_env("VIGIL__LSL__STREAMS__AMP__NAME", "obci_eeg1");
            jail.set_env("VIGIL__LSL__STREAMS__AMP__DEVICE_ID", "your-headset");
            jail.set_env("VIGIL__LSL__STREAMS__AMP__PATIENT_ID", "your-patient");
            jail.set_env("VIGIL__LSL__STREAMS__AMP__TOKEN_ENV", "VIGIL_LSL_TOKEN");
            let config = VigilConfig::load(None).map_err(|e| e.to_string())?;
            let amp = &config.lsl.streams["amp"];
            assert_eq!(amp.kind, LslKind::Eeg);
            assert_eq!(amp.name, "obci_eeg1");
            assert_eq!(amp.token_env, "VIGIL_LSL_TOKEN");
            assert_eq!(config.lsl.url, "ws://127.0.0.1:8080/v1/stream");
            Ok(())
        });
    }

    #[test]
    fn a_stream_needs_its_device_and_exactly_one_token_source() {
        Jail::expect_with(|jail| {
            jail.set_env("VIGIL__LSL__STREAMS__AMP__DEVICE_ID", "amp-1");
            jail.set_env("VIGIL__LSL__STREAMS__AMP__PATIENT_ID", "pat-1");
            let err = VigilConfig::load(None).expect_err("no token source");
            assert!(err
                .to_string()
                .contains("exactly one of token_env and token_file"));
            jail.set_env("VIGIL__LSL__STREAMS__AMP__TOKEN_FILE", "/run/secrets/amp-1");
            VigilConfig::load(None).map_err(|e| e.to_string())?;
            jail.set_env("VIGIL__LSL__STREAMS__AMP__TOKEN_ENV", "AMP_TOKEN");
            let err = VigilConfig::load(None).expect_err("two token sources");
            assert!(err.to_string().contains("exactly one"), "{err}");
            Ok(())
        });
    }
}
