//! The run's `vigil.toml`: every stage's address, the bus, the database and the models.

use std::path::Path;
use std::path::PathBuf;

use anyhow::{bail, Context};
use vigil_bench::services;

use crate::{absolute, Args};

/// The bus of `--single-process`: the broker inside `vigil standalone`.
pub const EMBEDDED_BUS: &str = "memory://loadbench";
/// Records the embedded broker keeps per partition: many times a step's warm-up backlog
/// (300 s of signal of 8 new patients is about 400 EEG chunks per partition), so a consumer
/// that keeps up never loses one, while the process's memory stays flat instead of holding
/// the whole run (about 35 MB per partition of EEG at 0.5 s chunks of 23 channels).
const EMBEDDED_RETENTION: usize = 3_000;

fn write_config(path: &Path, a: &ConfigValues) -> anyhow::Result<()> {
    let text = format!(
        r#"# Written by vigil-loadbench for one run.
[bus]
url = "{bus}"
partitions = {partitions}
{retention}
[telemetry]
log_filter = "info"

[models]
manifest = "{manifest}"
dir = "{models}"

[inference]
listen = "{infer}"

[ingest]
listen = "{ingest}"
database_url = "{db}"
# Warm-up streams at 10x real time: 20 chunks/s per device, over the default limit of 20/s.
rate_limit_per_s = 1000.0
rate_limit_burst = 2000

[storage]
database_url = "{db}"
listen = "{store}"

[dashboard]
listen = "{dashboard}"
database_url = "{db}"
session_key = "{session_key}"
"#,
        bus = a.bus_url,
        retention = if a.bus_url.starts_with("memory://") {
            format!("memory_retention_records = {EMBEDDED_RETENTION}\n")
        } else {
            String::new()
        },
        partitions = a.partitions,
        manifest = a.manifest.display(),
        models = a.models.display(),
        infer = a.infer,
        ingest = a.ingest,
        db = a.db,
        store = a.store,
        dashboard = a.dashboard,
        session_key = a.session_key,
    );
    std::fs::write(path, text).with_context(|| format!("write {}", path.display()))
}

pub struct ConfigValues {
    /// `kafka://host:port`, or `memory://...` for `--single-process`.
    pub bus_url: String,
    pub partitions: i32,
    pub manifest: PathBuf,
    pub models: PathBuf,
    pub infer: String,
    pub ingest: String,
    pub store: String,
    pub dashboard: String,
    pub db: String,
    pub session_key: String,
}

/// Writes the run's `vigil.toml` and creates the topics; the values and the `--config` path.
pub async fn configure(
    args: &Args,
    work: &Path,
    vigil: &Path,
    kafka: &str,
    db_url: &str,
) -> anyhow::Result<(ConfigValues, String)> {
    let models = absolute(&args.models_dir)?;
    let values = ConfigValues {
        bus_url: if args.single_process {
            EMBEDDED_BUS.to_owned()
        } else {
            format!("kafka://{kafka}")
        },
        partitions: args.partitions,
        manifest: models.join("manifest.toml"),
        models: models.clone(),
        infer: format!("127.0.0.1:{}", services::free_port()?),
        ingest: format!("127.0.0.1:{}", services::free_port()?),
        store: format!("127.0.0.1:{}", services::free_port()?),
        dashboard: format!("127.0.0.1:{}", services::free_port()?),
        db: db_url.to_owned(),
        // A fresh random signing key per run (the dashboard refuses short keys).
        session_key: format!(
            "{}{}",
            uuid::Uuid::new_v4().simple(),
            uuid::Uuid::new_v4().simple()
        ),
    };
    let config_path = work.join("vigil.toml");
    write_config(&config_path, &values)?;
    let config_arg = config_path.to_string_lossy().into_owned();

    if args.single_process {
        // The embedded broker lives in `vigil standalone`, which creates the topics itself.
        return Ok((values, config_arg));
    }
    let status = tokio::process::Command::new(vigil)
        .args(["--config", &config_arg, "topics", "create"])
        .status()
        .await?;
    if !status.success() {
        bail!("vigil topics create failed");
    }
    Ok((values, config_arg))
}
