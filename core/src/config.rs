//! Layered configuration: built-in defaults, then a TOML file, then `VIGIL__SECTION__KEY`
//! environment variables (e.g. `VIGIL__BUS__URL=kafka://127.0.0.1:9092`). Unknown keys are
//! errors, so a typo never silently falls back to a default. `vigil.example.toml` at the
//! repository root documents every key.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};

use crate::codec::DEFAULT_MAX_RECORD_BYTES;

/// Configuration errors.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A layer did not parse, or has an unknown key or a wrong type.
    #[error("configuration: {0}")]
    Load(#[from] Box<figment::Error>),
    /// An explicitly named config file does not exist.
    #[error("configuration file {0} does not exist")]
    MissingFile(PathBuf),
    /// Parsed, but a value is out of range.
    #[error("configuration: {key} {problem}")]
    Invalid {
        /// Dotted key.
        key: &'static str,
        /// What is wrong.
        problem: String,
    },
}

/// Everything a Vigil process reads at start.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct VigilConfig {
    /// The message bus all stages talk through.
    pub bus: BusConfig,
    /// Logs and metrics.
    pub telemetry: TelemetryConfig,
    /// Where the model manifest and weights live.
    pub models: ModelsConfig,
    /// The inference stage (`vigil infer`).
    pub inference: InferenceConfig,
    /// The single-process demo.
    pub demo: DemoConfig,
    /// The device ingest gateway (`vigil ingest`).
    pub ingest: IngestConfig,
}

/// Inference stage settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct InferenceConfig {
    /// Consumer group on `vigil.eeg.raw`; instances of one group share the partitions.
    pub group: String,
    /// Model id from the manifest.
    pub model_id: String,
    /// Model window in seconds (the model was designed for 300 s).
    pub window_s: f64,
    /// Step between windows in seconds: smaller = lower latency, more compute.
    pub step_s: f64,
    /// Seconds discarded at each window edge.
    pub discard_edges_s: f64,
    /// Longest gap in a stream (missing chunks) filled with NaN, in seconds; a longer gap
    /// restarts the patient's windows.
    pub max_gap_s: f64,
    /// Mains frequency notched in the display traces: 50 or 60 (Hz).
    pub mains_hz: u32,
    /// Address of `/healthz`, `/readyz`, `/metrics`.
    pub listen: SocketAddr,
}

impl Default for InferenceConfig {
    fn default() -> Self {
        Self {
            group: "vigil-inference".to_owned(),
            model_id: "brainmaze-seizure-modelA".to_owned(),
            window_s: 300.0,
            step_s: 20.0,
            discard_edges_s: 10.0,
            max_gap_s: 30.0,
            mains_hz: 50,
            listen: SocketAddr::from(([127, 0, 0, 1], 8082)),
        }
    }
}

/// Message bus settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BusConfig {
    /// `memory://[name]` (in-process) or `kafka://host:port[,host:port]`.
    pub url: String,
    /// Prepended to every topic name (e.g. `staging.`); tests use random prefixes.
    pub topic_prefix: String,
    /// Partitions per topic when Vigil creates topics. Caps consumer parallelism per group.
    pub partitions: i32,
    /// Replication factor when Vigil creates topics on Kafka (3 in production).
    pub replication_factor: i32,
    /// Largest key + payload of one record, in bytes. Larger records are refused before
    /// they reach the broker.
    pub max_record_bytes: usize,
    /// How long a publish may wait for the broker's acknowledgement, in ms.
    pub publish_timeout_ms: u64,
    /// memory:// only: records kept per partition before the oldest are dropped.
    pub memory_retention_records: usize,
    /// Extra librdkafka properties for every Kafka client (e.g. `security.protocol`).
    pub kafka: BTreeMap<String, String>,
}

impl Default for BusConfig {
    fn default() -> Self {
        Self {
            url: "memory://".to_owned(),
            topic_prefix: String::new(),
            partitions: 12,
            replication_factor: 1,
            max_record_bytes: DEFAULT_MAX_RECORD_BYTES,
            publish_timeout_ms: 30_000,
            memory_retention_records: 100_000,
            kafka: BTreeMap::new(),
        }
    }
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    /// Readable lines for a terminal.
    #[default]
    Human,
    /// One JSON object per line, for log collectors.
    Json,
}

/// Logs and metrics settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TelemetryConfig {
    /// `human` or `json`.
    pub log_format: LogFormat,
    /// tracing filter directives, e.g. `info,vigil_core=debug`. `RUST_LOG` overrides it.
    pub log_filter: String,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        Self {
            log_format: LogFormat::Human,
            log_filter: "info".to_owned(),
        }
    }
}

/// Model files.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelsConfig {
    /// The manifest listing each model's source, checksum and input contract.
    pub manifest: PathBuf,
    /// Directory the weights are fetched into.
    pub dir: PathBuf,
}

impl Default for ModelsConfig {
    fn default() -> Self {
        Self {
            manifest: PathBuf::from("models/manifest.toml"),
            dir: PathBuf::from("models"),
        }
    }
}

/// `vigil demo` settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DemoConfig {
    /// Address of the demo's HTTP endpoints.
    pub listen: SocketAddr,
    /// Simulated patients (synthetic EEG; the first has seizure-like bursts).
    pub patients: usize,
    /// Replay speed: 1.0 = real time. The model needs 300 s of signal before its first
    /// output, so the default shows results within about a minute.
    pub speed: f64,
}

impl Default for DemoConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            patients: 3,
            speed: 10.0,
        }
    }
}

/// Ingest gateway settings (`vigil ingest`, `vigil device ...`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IngestConfig {
    /// Address of the device API (`/v1/eeg`, `/v1/hr`, `/v1/stream`) and the ops endpoints.
    pub listen: SocketAddr,
    /// Device directory database: `sqlite://path?mode=rwc` or `mysql://user:pass@host/db`.
    pub database_url: String,
    /// Largest request body or WebSocket message, in bytes; larger ones get 413.
    pub max_body_bytes: usize,
    /// Sustained requests (or WebSocket frames) per second allowed per device.
    pub rate_limit_per_s: f64,
    /// Requests a device may send in a burst above the sustained rate.
    pub rate_limit_burst: u32,
    /// Streams whose sequence and clock state is kept in memory; the least recently used
    /// stream is forgotten beyond this.
    pub max_streams: usize,
    /// How long a device token lookup is cached, in ms. A revocation takes effect within it.
    pub auth_cache_ttl_ms: u64,
    /// Sliding window of the per-stream device clock offset estimate, in ms.
    pub clock_window_ms: u64,
    /// Interval of the background bus probe behind `/readyz`, in ms.
    pub probe_interval_ms: u64,
    /// `Retry-After` sent with 503 when the bus does not acknowledge, in seconds.
    pub retry_after_s: u64,
}

impl Default for IngestConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8081)),
            database_url: "sqlite://vigil-devices.db?mode=rwc".to_owned(),
            max_body_bytes: DEFAULT_MAX_RECORD_BYTES,
            rate_limit_per_s: 20.0,
            rate_limit_burst: 40,
            max_streams: 10_000,
            auth_cache_ttl_ms: 5_000,
            clock_window_ms: 120_000,
            probe_interval_ms: 5_000,
            retry_after_s: 2,
        }
    }
}

impl VigilConfig {
    /// The layers in order: defaults, the TOML file (if given), then `VIGIL__` env vars.
    pub fn figment(file: Option<&Path>) -> Figment {
        let mut figment = Figment::from(Serialized::defaults(VigilConfig::default()));
        if let Some(path) = file {
            figment = figment.merge(Toml::file(path));
        }
        figment.merge(Env::prefixed("VIGIL__").split("__"))
    }

    /// Loads and checks the configuration.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        if let Some(path) = file {
            if !path.exists() {
                return Err(ConfigError::MissingFile(path.to_owned()));
            }
        }
        let config: VigilConfig = Self::figment(file).extract().map_err(Box::new)?;
        config.check()?;
        Ok(config)
    }

    /// Range checks that types cannot express.
    pub fn check(&self) -> Result<(), ConfigError> {
        let bus = &self.bus;
        if !(1..=10_000).contains(&bus.partitions) {
            return Err(ConfigError::Invalid {
                key: "bus.partitions",
                problem: format!("must be in 1..=10000, got {}", bus.partitions),
            });
        }
        if bus.replication_factor < 1 {
            return Err(ConfigError::Invalid {
                key: "bus.replication_factor",
                problem: format!("must be at least 1, got {}", bus.replication_factor),
            });
        }
        if !(1024..=64 * 1024 * 1024).contains(&bus.max_record_bytes) {
            return Err(ConfigError::Invalid {
                key: "bus.max_record_bytes",
                problem: format!("must be in 1 KiB..=64 MiB, got {}", bus.max_record_bytes),
            });
        }
        if bus.publish_timeout_ms == 0 {
            return Err(ConfigError::Invalid {
                key: "bus.publish_timeout_ms",
                problem: "must be positive".to_owned(),
            });
        }
        if !matches!(self.inference.mains_hz, 50 | 60) {
            return Err(ConfigError::Invalid {
                key: "inference.mains_hz",
                problem: format!("must be 50 or 60, got {}", self.inference.mains_hz),
            });
        }
        if !(self.demo.speed.is_finite() && self.demo.speed > 0.0 && self.demo.speed <= 1000.0) {
            return Err(ConfigError::Invalid {
                key: "demo.speed",
                problem: format!("must be in (0, 1000], got {}", self.demo.speed),
            });
        }
        let ingest = &self.ingest;
        if !(ingest.rate_limit_per_s.is_finite() && ingest.rate_limit_per_s > 0.0) {
            return Err(ConfigError::Invalid {
                key: "ingest.rate_limit_per_s",
                problem: format!("must be positive, got {}", ingest.rate_limit_per_s),
            });
        }
        if ingest.rate_limit_burst == 0 || ingest.max_streams == 0 || ingest.max_body_bytes < 1024 {
            return Err(ConfigError::Invalid {
                key: "ingest",
                problem: "rate_limit_burst and max_streams must be positive, max_body_bytes at least 1024".to_owned(),
            });
        }
        if !(bus.url.starts_with("memory://") || bus.url.starts_with("kafka://")) {
            return Err(ConfigError::Invalid {
                key: "bus.url",
                problem: format!(
                    "{:?} is neither memory://[name] nor kafka://host:port",
                    bus.url
                ),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
// figment::Jail closures must return figment::Error, which is large by figment's design.
#[allow(clippy::result_large_err)]
mod tests {
    use super::*;
    use figment::Jail;

    #[test]
    fn layers_apply_in_order_defaults_file_env() {
        Jail::expect_with(|jail| {
            jail.create_file(
                "vigil.toml",
                r#"
                [bus]
                url = "kafka://file:9092"
                partitions = 6
                [telemetry]
                log_format = "json"
                "#,
            )?;
            jail.set_env("VIGIL__BUS__URL", "kafka://env:9092");
            let config =
                VigilConfig::load(Some(Path::new("vigil.toml"))).map_err(|e| e.to_string())?;
            assert_eq!(config.bus.url, "kafka://env:9092", "env beats file");
            assert_eq!(config.bus.partitions, 6, "file beats default");
            assert_eq!(config.telemetry.log_format, LogFormat::Json);
            assert_eq!(
                config.bus.max_record_bytes, DEFAULT_MAX_RECORD_BYTES,
                "default kept"
            );
            Ok(())
        });
    }

    #[test]
    fn unknown_keys_are_refused() {
        Jail::expect_with(|jail| {
            jail.create_file("vigil.toml", "[bus]\nurll = \"memory://\"\n")?;
            let err =
                VigilConfig::load(Some(Path::new("vigil.toml"))).expect_err("typo must be refused");
            assert!(err.to_string().contains("urll"), "{err}");
            Ok(())
        });
    }

    #[test]
    fn out_of_range_values_are_refused() {
        Jail::expect_with(|jail| {
            jail.set_env("VIGIL__BUS__PARTITIONS", "0");
            let err = VigilConfig::load(None).expect_err("0 partitions must be refused");
            assert!(err.to_string().contains("bus.partitions"), "{err}");
            Ok(())
        });
    }

    #[test]
    fn missing_explicit_file_is_an_error() {
        let err = VigilConfig::load(Some(Path::new("/nonexistent/vigil.toml")))
            .expect_err("missing file");
        assert!(matches!(err, ConfigError::MissingFile(_)));
    }

    #[test]
    fn example_config_parses_and_equals_defaults() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../vigil.example.toml");
        let text = std::fs::read_to_string(&path).expect("vigil.example.toml exists");
        let parsed: VigilConfig = toml::from_str(&text).expect("example parses");
        assert_eq!(
            parsed,
            VigilConfig::default(),
            "vigil.example.toml documents the built-in defaults"
        );
    }
}
