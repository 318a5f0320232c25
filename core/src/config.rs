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
pub use crate::lsl_config::{LslConfig, LslKind, LslStreamConfig};

mod trends;
pub use trends::{RegionMap, TrendParams, TrendsConfig};

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
    /// Persistence, research archive and history API (`vigil store`, `vigil migrate`,
    /// `vigil user`).
    pub storage: StorageConfig,
    /// The clinician dashboard (`vigil dashboard`).
    pub dashboard: DashboardConfig,
    /// The LSL bridge (`vigil lsl`): research amplifiers' LSL outlets into the gateway.
    pub lsl: LslConfig,
}

/// Inference stage settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct InferenceConfig {
    /// Consumer group on `vigil.eeg.raw`; instances of one group share the partitions.
    pub group: String,
    /// Model id from the manifest.
    pub model_id: String,
    /// Which implementation runs the model: `native` (Vigil's runtime when it recognises the
    /// model's structure, otherwise tract with a warning) or `tract`.
    pub engine: ModelEngine,
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
    /// Worker threads (shards) for DSP and the model; each owns the patients routed to it.
    /// 0 = one per available core.
    pub workers: usize,
    /// Model windows evaluated per call, across channels and patients. Larger batches amortise
    /// the model's fixed costs; smaller ones let a shard look at new chunks sooner.
    pub batch_windows: usize,
    /// Model windows a shard may hold queued before it stops taking records. Under a backlog
    /// this bounds the stage's memory (each queued patient step keeps 20 s of samples and
    /// columns) and leaves the rest in the broker, where it shows as consumer lag. Keep it above
    /// one step's windows per shard (channels x patients per shard), or traces wait at every
    /// step.
    pub max_queued_windows: usize,
    /// Seconds without EEG after which a patient's stream is finished (its remaining points
    /// published) and its state freed. Keep it above `max_gap_s`: a shorter gap continues the
    /// stream.
    pub idle_evict_s: f64,
    /// Address of `/healthz`, `/readyz`, `/metrics`.
    pub listen: SocketAddr,
    /// Alert thresholds and timers for every patient without an override.
    pub alerts: AlertPolicy,
    /// Per-patient overrides of `alerts`, keyed by patient id: only the keys given change,
    /// e.g. `[inference.patient_alerts."patient-7"]` with `tachy_above_bpm = 140` for a child.
    pub patient_alerts: BTreeMap<String, BTreeMap<String, f64>>,
    /// qEEG trends published on `vigil.eeg.trends` (docs/TRENDS.md).
    pub trends: TrendsConfig,
}

/// Which implementation runs the seizure model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ModelEngine {
    /// Vigil's native runtime for the recognised graph family (faster, same outputs); a model
    /// it does not recognise falls back to tract.
    #[default]
    Native,
    /// tract, the general ONNX interpreter.
    Tract,
}

impl std::fmt::Display for ModelEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Native => "native",
            Self::Tract => "tract",
        })
    }
}

/// Alert thresholds and timers (docs/ALERTS.md). The defaults are conservative starting
/// points, not clinically validated values: a care team sets them per patient.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlertPolicy {
    /// Seizure probability at or above which a 0.5 s point counts as seizure.
    pub on_threshold: f32,
    /// How long p must stay at or above `on_threshold` to raise a seizure alert, in seconds.
    pub on_duration_s: f64,
    /// Probability below which a point counts as seizure-free.
    pub off_threshold: f32,
    /// How long p must stay below `off_threshold` to resolve, in seconds.
    pub off_duration_s: f64,
    /// Window of the sustained-burden alert, in seconds.
    pub burden_window_s: f64,
    /// Burden (fraction of evaluated points at or above `on_threshold`) that raises
    /// `sustained_seizure_burden`.
    pub burden_threshold: f32,
    /// Seconds without EEG samples before `signal_loss` is raised.
    pub signal_loss_s: f64,
    /// Seconds an alert may stay unacknowledged before it is escalated.
    pub escalate_after_s: f64,
    /// Heart rate below which (sustained) `bradycardia` is raised, in bpm.
    pub brady_below_bpm: f32,
    /// Heart rate above which (sustained) `tachycardia` is raised, in bpm.
    pub tachy_above_bpm: f32,
    /// How long heart rate must stay outside (to raise) or inside (to resolve) the band, in s.
    pub hr_band_duration_s: f64,
    /// Heart rates outside `[hr_valid_min_bpm, hr_valid_max_bpm]` are treated as artefacts
    /// (not evaluated), never as brady- or tachycardia.
    pub hr_valid_min_bpm: f32,
    /// Upper bound of plausible heart rate, in bpm.
    pub hr_valid_max_bpm: f32,
    /// Rise over the baseline that counts as ictal tachycardia, in bpm.
    pub ictal_rise_bpm: f32,
    /// Length of the baseline before a rise, in seconds.
    pub ictal_baseline_s: f64,
    /// The rise must happen within this many seconds.
    pub ictal_rise_within_s: f64,
    /// Window of the RMSSD (heart-rate variability) reported as evidence, in seconds.
    pub rmssd_window_s: f64,
}

impl Default for AlertPolicy {
    fn default() -> Self {
        Self {
            on_threshold: 0.8,
            on_duration_s: 10.0,
            off_threshold: 0.5,
            off_duration_s: 30.0,
            burden_window_s: 300.0,
            burden_threshold: 0.9,
            signal_loss_s: 10.0,
            escalate_after_s: 300.0,
            brady_below_bpm: 50.0,
            tachy_above_bpm: 120.0,
            hr_band_duration_s: 10.0,
            hr_valid_min_bpm: 25.0,
            hr_valid_max_bpm: 250.0,
            ictal_rise_bpm: 10.0,
            ictal_baseline_s: 60.0,
            ictal_rise_within_s: 10.0,
            rmssd_window_s: 300.0,
        }
    }
}

impl AlertPolicy {
    /// Range checks; `key` names the table in errors.
    pub fn check(&self, key: &'static str) -> Result<(), ConfigError> {
        let invalid = |problem: String| Err(ConfigError::Invalid { key, problem });
        let unit = |x: f32| (0.0..=1.0).contains(&x);
        if !(unit(self.on_threshold) && unit(self.off_threshold) && unit(self.burden_threshold)) {
            return invalid("thresholds must be in [0, 1]".to_owned());
        }
        if self.off_threshold > self.on_threshold {
            return invalid(format!(
                "off_threshold {} above on_threshold {} leaves no hysteresis",
                self.off_threshold, self.on_threshold
            ));
        }
        let durations = [
            self.on_duration_s,
            self.off_duration_s,
            self.burden_window_s,
            self.signal_loss_s,
            self.escalate_after_s,
            self.hr_band_duration_s,
            self.ictal_baseline_s,
            self.ictal_rise_within_s,
            self.rmssd_window_s,
        ];
        if durations.iter().any(|d| !(d.is_finite() && *d > 0.0)) {
            return invalid("durations must be positive seconds".to_owned());
        }
        if !(self.hr_valid_min_bpm < self.brady_below_bpm
            && self.brady_below_bpm < self.tachy_above_bpm
            && self.tachy_above_bpm < self.hr_valid_max_bpm)
        {
            return invalid(format!(
                "need hr_valid_min_bpm < brady_below_bpm < tachy_above_bpm < hr_valid_max_bpm, got {} {} {} {}",
                self.hr_valid_min_bpm, self.brady_below_bpm, self.tachy_above_bpm, self.hr_valid_max_bpm
            ));
        }
        if !(self.ictal_rise_bpm.is_finite() && self.ictal_rise_bpm > 0.0) {
            return invalid("ictal_rise_bpm must be positive".to_owned());
        }
        Ok(())
    }

    /// This policy with `overrides` (field name -> value) applied; unknown names are errors.
    pub fn with_overrides(&self, overrides: &BTreeMap<String, f64>) -> Result<Self, String> {
        let mut fields = match serde_json::to_value(self) {
            Ok(serde_json::Value::Object(fields)) => fields,
            _ => return Err("alert policy does not serialize to a table".to_owned()),
        };
        for (name, value) in overrides {
            if !fields.contains_key(name) {
                return Err(format!("unknown alert policy key {name:?}"));
            }
            fields.insert(name.clone(), serde_json::json!(value));
        }
        serde_json::from_value(serde_json::Value::Object(fields)).map_err(|e| e.to_string())
    }
}

/// The alert policy of every patient: the default and the per-patient overrides.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct AlertPolicies {
    default: AlertPolicy,
    patients: BTreeMap<String, AlertPolicy>,
}

impl AlertPolicies {
    /// One policy for everybody.
    pub fn uniform(default: AlertPolicy) -> Self {
        Self {
            default,
            patients: BTreeMap::new(),
        }
    }

    /// The policy that applies to `patient_id`.
    pub fn for_patient(&self, patient_id: &str) -> AlertPolicy {
        self.patients
            .get(patient_id)
            .copied()
            .unwrap_or(self.default)
    }
}

impl InferenceConfig {
    /// The checked default policy with every patient's overrides applied.
    pub fn alert_policies(&self) -> Result<AlertPolicies, ConfigError> {
        self.alerts.check("inference.alerts")?;
        let mut patients = BTreeMap::new();
        for (patient, overrides) in &self.patient_alerts {
            let policy =
                self.alerts
                    .with_overrides(overrides)
                    .map_err(|problem| ConfigError::Invalid {
                        key: "inference.patient_alerts",
                        problem: format!("patient {patient:?}: {problem}"),
                    })?;
            policy
                .check("inference.patient_alerts")
                .map_err(|e| match e {
                    ConfigError::Invalid { key, problem } => ConfigError::Invalid {
                        key,
                        problem: format!("patient {patient:?}: {problem}"),
                    },
                    other => other,
                })?;
            patients.insert(patient.clone(), policy);
        }
        Ok(AlertPolicies {
            default: self.alerts,
            patients,
        })
    }
}

impl Default for InferenceConfig {
    fn default() -> Self {
        Self {
            group: "vigil-inference".to_owned(),
            model_id: "brainmaze-seizure-modelA".to_owned(),
            engine: ModelEngine::Native,
            window_s: 300.0,
            step_s: 20.0,
            discard_edges_s: 10.0,
            max_gap_s: 30.0,
            mains_hz: 50,
            workers: 0,
            batch_windows: 4,
            max_queued_windows: 2048,
            idle_evict_s: 60.0,
            listen: SocketAddr::from(([127, 0, 0, 1], 8082)),
            alerts: AlertPolicy::default(),
            patient_alerts: BTreeMap::new(),
            trends: TrendsConfig::default(),
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
    /// Kafka only: when set, every consumer of this process joins its group as a static
    /// member with this `group.instance.id`, so a restarted process takes its partitions
    /// back at once instead of waiting for its dead predecessor's session to expire (on
    /// tansu 0.6.0 it may otherwise never get them: docs/RELIABILITY.md). Unique per
    /// process within a group and stable across restarts (e.g. `store-0`); empty =
    /// dynamic membership.
    pub instance_id: String,
    /// Kafka only: once a consumer has received nothing for a second, it stops fetching for
    /// this many ms between short checks, so idle consumers do not keep the broker busy
    /// (tansu answers every fetch after its full wait, 10 ms: docs/RELIABILITY.md "Idle
    /// broker load"). 0 (the default) = always fetch: on tansu a consumer paused before it
    /// read anything from a partition can starve, so this stays off until that is solved.
    pub idle_pause_ms: u64,
    /// Kafka only, dynamic members only (`instance_id` empty): when a partition of a
    /// consumer's topics that it does not hold keeps records past the group's committed
    /// offset, unchanged, for this many seconds, the consumer leaves and rejoins its group so
    /// the partition is assigned again. tansu 0.6.0 never reassigns a dead member's
    /// partitions by itself (docs/RELIABILITY.md "Orphaned partitions"). Longer than the
    /// broker's session timeout (45 s), or the dead member may be assigned again. 0 = off.
    pub stall_rejoin_s: u64,
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
            instance_id: String::new(),
            idle_pause_ms: 0,
            stall_rejoin_s: 90,
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
    /// Address of the demo's device API (the ingest gateway) and its ops endpoints. The
    /// dashboard listens on `dashboard.listen`, the history API on `storage.listen`.
    pub listen: SocketAddr,
    /// Simulated patients. Each replays `recording` (real EEG) with its own synthetic
    /// seizure-like bursts (every third patient has none) and a synthetic heart rate.
    pub patients: usize,
    /// Replay speed: 1.0 = real time. The model needs 300 s of signal before its first
    /// output, so the default shows results within about a minute.
    pub speed: f64,
    /// The EDF recording the patients replay, relative to the data dir of
    /// `scripts/fetch-data` (fetched on first run when missing) or absolute.
    pub recording: PathBuf,
}

impl Default for DemoConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            patients: 3,
            speed: 10.0,
            recording: PathBuf::from("edfjs/sample.edf"),
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
    /// Sequence numbers per stream, counted back from the highest received, whose receipt
    /// and content hash the gateway remembers (1..=[`MAX_SEQ_WINDOW`], about 8 bytes each per
    /// stream). Inside it a missing seq is accepted late, a resend is told apart from a
    /// conflicting one; older seqs are refused as below the window (docs/INGEST.md).
    pub seq_window: usize,
    /// How long a device token lookup is cached, in ms. A revocation takes effect within it.
    pub auth_cache_ttl_ms: u64,
    /// Sliding window of the per-stream device clock offset estimate, in ms.
    pub clock_window_ms: u64,
    /// Shift record times by the estimated device clock offset (docs/INGEST.md). Turn it off
    /// only for devices that replay recorded signal faster than real time (`vigil demo`,
    /// `vigil replay --speed k`, load tests): their times are simulation time, which the
    /// correction would squeeze onto the wall clock.
    pub correct_device_clock: bool,
    /// Interval of the background bus probe behind `/readyz`, in ms.
    pub probe_interval_ms: u64,
    /// `Retry-After` sent with 503 when the bus does not acknowledge, in seconds.
    pub retry_after_s: u64,
    /// How long the gateway's Kafka producer waits to fill a produce request (librdkafka
    /// `linger.ms`), in ms; for the gateway it replaces `bus.kafka`'s `linger.ms`. Longer
    /// puts more chunks in each request, which cuts the broker's cost per chunk, and adds up
    /// to this much to every chunk's acknowledgement and to its live trace
    /// (docs/PERFORMANCE.md "The producer's linger on tansu"). No effect on `memory://`.
    pub linger_ms: u64,
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
            seq_window: 256,
            auth_cache_ttl_ms: 5_000,
            clock_window_ms: 120_000,
            correct_device_clock: true,
            probe_interval_ms: 5_000,
            retry_after_s: 2,
            linger_ms: 5,
        }
    }
}

/// Largest `ingest.seq_window`: 64 Ki seqs, 512 KiB of content hashes per stream.
pub const MAX_SEQ_WINDOW: usize = 65_536;

/// Clinician dashboard settings (`vigil dashboard`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DashboardConfig {
    /// Address of the web page, its API and WebSocket, and the ops endpoints.
    pub listen: SocketAddr,
    /// Clinical database (users, assignments, audit log, history) written by storage:
    /// `sqlite://path?mode=rwc` or `mysql://user:pass@host/db`.
    pub database_url: String,
    /// Secret that signs session cookies and CSRF tokens, at least 32 bytes. Set it through
    /// `VIGIL__DASHBOARD__SESSION_KEY` in production and share it between replicas. Empty =
    /// a random key per process (sessions end when it restarts; a warning is logged).
    pub session_key: String,
    /// How long a login lasts, in seconds (a shift plus handover by default).
    pub session_ttl_s: u64,
    /// Mark the session cookie `Secure` (browser sends it only over HTTPS) and send HSTS.
    /// Turn it on whenever the dashboard is reached over TLS (directly or via a proxy).
    pub cookie_secure: bool,
    /// Updates queued per browser connection; a browser that falls this far behind is
    /// disconnected (close code 1013) so it never slows the others, and it reconnects.
    pub client_queue_len: usize,
    /// A WebSocket send that takes longer than this (ms) disconnects the browser.
    pub send_timeout_ms: u64,
    /// Seconds of recent updates kept per patient in memory and sent on (re)connect;
    /// older data comes from storage.
    pub history_window_s: f64,
    /// Most recent updates kept per patient, whatever their age (memory bound).
    pub max_recent_items: usize,
    /// Prefix of the consumer group; each dashboard process appends a random id, because
    /// every instance must see every patient's updates.
    pub group_prefix: String,
    /// Most records one history request may return.
    pub max_history_limit: u32,
}

impl Default for DashboardConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8084)),
            database_url: "sqlite://vigil.db?mode=rwc".to_owned(),
            session_key: String::new(),
            session_ttl_s: 14 * 3600,
            cookie_secure: false,
            client_queue_len: 1024,
            send_timeout_ms: 5_000,
            history_window_s: 60.0,
            max_recent_items: 4096,
            group_prefix: "vigil-dashboard".to_owned(),
            max_history_limit: 5_000,
        }
    }
}

/// Storage stage settings (`vigil store`, `vigil migrate`, `vigil user ...`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    /// Clinical database: `sqlite://path?mode=rwc` (embedded) or
    /// `mysql://user:password@host:3306/db` (MySQL / MariaDB). May be the same database as
    /// `ingest.database_url`: both create the same `devices` table.
    pub database_url: String,
    /// Address of the history + FHIR API, `/openapi.json` and the ops endpoints.
    pub listen: SocketAddr,
    /// Consumer group on the raw, probability, alert and dead-letter topics.
    pub group: String,
    /// Most records written in one database transaction.
    pub batch_max_records: usize,
    /// Longest a batch waits for more records after its first one, in ms.
    pub batch_max_wait_ms: u64,
    /// Root of the Parquet research archive; empty = no archive.
    pub archive_dir: PathBuf,
    /// First wait before retrying a failed database write, in ms (doubles per failure).
    pub retry_initial_ms: u64,
    /// Longest wait between database retries, in ms.
    pub retry_max_ms: u64,
    /// On SIGTERM, how long the stage keeps trying to flush its current batch, in ms.
    /// Unflushed records are not acknowledged, so they are redelivered after a restart.
    pub shutdown_flush_ms: u64,
    /// Largest page the history API returns (`limit` is capped to it).
    pub max_page_items: u32,
    /// Most heart-rate points one FHIR export may hold; larger ranges get 422.
    pub max_fhir_entries: u32,
    /// How long rows are kept, per table.
    pub retention: RetentionConfig,
}

impl Default for StorageConfig {
    fn default() -> Self {
        Self {
            database_url: "sqlite://vigil.db?mode=rwc".to_owned(),
            listen: SocketAddr::from(([127, 0, 0, 1], 8083)),
            group: "vigil-storage".to_owned(),
            batch_max_records: 500,
            batch_max_wait_ms: 200,
            archive_dir: PathBuf::new(),
            retry_initial_ms: 200,
            retry_max_ms: 10_000,
            shutdown_flush_ms: 10_000,
            max_page_items: 5_000,
            max_fhir_entries: 10_000,
            retention: RetentionConfig::default(),
        }
    }
}

/// Days each table keeps rows (by the row's signal time); 0 keeps rows forever. The
/// retention job deletes older rows every `interval_s`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionConfig {
    /// Seconds between retention runs.
    pub interval_s: u64,
    /// Raw EEG chunks (`eeg_chunks`, by chunk start).
    pub eeg_chunks_days: u32,
    /// Heart-rate points (`hr_points`).
    pub hr_points_days: u32,
    /// Seizure probability points (`seizure_prob`).
    pub seizure_prob_days: u32,
    /// qEEG trend intervals (`eeg_trends`, by interval start).
    pub eeg_trends_days: u32,
    /// Alerts and their events (`alerts`, `alert_events`, by the alert's last transition).
    pub alerts_days: u32,
    /// Dead letters (`dead_letters`).
    pub dead_letters_days: u32,
    /// Audit log (`audit_log`, by the time of the read).
    pub audit_log_days: u32,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        Self {
            interval_s: 3_600,
            eeg_chunks_days: 0,
            hr_points_days: 0,
            seizure_prob_days: 0,
            eeg_trends_days: 0,
            alerts_days: 0,
            dead_letters_days: 0,
            audit_log_days: 0,
        }
    }
}

impl VigilConfig {
    /// The layers in order: defaults, the TOML file (if given), then `VIGIL__` env vars.
    /// `VIGIL__BUS__KAFKA__<property>` sets one librdkafka property, dots and all (e.g.
    /// `VIGIL__BUS__KAFKA__SASL.PASSWORD`): figment would read the dots as nested keys.
    pub fn figment(file: Option<&Path>) -> Figment {
        const PREFIX: &str = "VIGIL__";
        const KAFKA: &str = "BUS__KAFKA__";
        let mut figment = Figment::from(Serialized::defaults(VigilConfig::default()));
        if let Some(path) = file {
            figment = figment.merge(Toml::file(path));
        }
        // figment's own reading, prefix matched and keys lowercased as for every other key.
        let kafka: BTreeMap<String, String> = Env::prefixed(&format!("{PREFIX}{KAFKA}"))
            .iter()
            .map(|(property, value)| (property.into_string(), value))
            .collect();
        figment = figment.merge(
            Env::prefixed(PREFIX)
                .filter(|key| !key.starts_with(KAFKA))
                .split("__"),
        );
        if kafka.is_empty() {
            figment
        } else {
            figment.merge(Serialized::default("bus.kafka", kafka))
        }
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
        self.inference.alert_policies()?;
        self.lsl.check()?;
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
        if !(1..=MAX_SEQ_WINDOW).contains(&ingest.seq_window) {
            return Err(ConfigError::Invalid {
                key: "ingest.seq_window",
                problem: format!("must be in 1..={MAX_SEQ_WINDOW}, got {}", ingest.seq_window),
            });
        }
        self.dashboard.check()?;
        self.storage.check()?;
        self.inference.trends.check()?;
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

impl DashboardConfig {
    /// Range checks that types cannot express.
    fn check(&self) -> Result<(), ConfigError> {
        if !self.session_key.is_empty() && self.session_key.len() < 32 {
            return Err(ConfigError::Invalid {
                key: "dashboard.session_key",
                problem: format!(
                    "must be empty (random per process) or at least 32 bytes, got {}",
                    self.session_key.len()
                ),
            });
        }
        if !(self.history_window_s.is_finite()
            && self.history_window_s > 0.0
            && self.history_window_s <= 3600.0)
        {
            return Err(ConfigError::Invalid {
                key: "dashboard.history_window_s",
                problem: format!("must be in (0, 3600], got {}", self.history_window_s),
            });
        }
        if self.client_queue_len == 0
            || self.max_recent_items == 0
            || self.session_ttl_s == 0
            || self.send_timeout_ms == 0
            || self.max_history_limit == 0
        {
            return Err(ConfigError::Invalid {
                key: "dashboard",
                problem: "client_queue_len, max_recent_items, session_ttl_s, send_timeout_ms and max_history_limit must be positive".to_owned(),
            });
        }
        Ok(())
    }
}

impl StorageConfig {
    /// Range checks that types cannot express.
    fn check(&self) -> Result<(), ConfigError> {
        if self.batch_max_records == 0
            || self.max_page_items == 0
            || self.retry_initial_ms == 0
            || self.retry_max_ms < self.retry_initial_ms
            || self.retention.interval_s == 0
        {
            return Err(ConfigError::Invalid {
                key: "storage",
                problem: "batch_max_records, max_page_items, retry_initial_ms and \
                    retention.interval_s must be positive, retry_max_ms >= retry_initial_ms"
                    .to_owned(),
            });
        }
        if !(self.database_url.starts_with("sqlite:")
            || self.database_url.starts_with("mysql:")
            || self.database_url.starts_with("mariadb:"))
        {
            return Err(ConfigError::Invalid {
                key: "storage.database_url",
                problem: "must start with sqlite:, mysql: or mariadb:".to_owned(),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
// figment::Jail closures must return figment::Error, which is large by figment's design.
#[allow(clippy::result_large_err)]
mod tests;
