//! `--single-process`: every stage in one `vigil standalone` process on its embedded bus
//! (memory://), no broker. The bench drives it as it drives the four processes: devices into
//! the ingest address, the live view on the dashboard's; it reads the consumer groups' lag from
//! the process's `/metrics` and the seizure alerts from the live view.

use std::path::Path;
use std::time::Duration;

use vigil_bench::services::Service;

use crate::config::ConfigValues;

/// The process's name in the report.
pub const NAME: &str = "standalone";

/// Starts `vigil standalone` with the run's config; returns once all four stages answer
/// `/readyz` with 200 (stopping it if one does not within two minutes).
pub async fn start(
    vigil: &Path,
    config_arg: &str,
    work: &Path,
    values: &ConfigValues,
) -> anyhow::Result<Service> {
    let mut process = Service::spawn(
        NAME,
        vigil,
        &["--config", config_arg, "standalone"],
        work,
        Some(values.ingest.clone()),
    )?;
    for addr in [
        &values.ingest,
        &values.infer,
        &values.store,
        &values.dashboard,
    ] {
        let ready = process
            .wait_answer(addr, Duration::from_secs(120), Some("/readyz"))
            .await;
        if let Err(e) = ready {
            process.stop(Duration::from_secs(10)).await;
            return Err(e);
        }
    }
    eprintln!(
        "{NAME} ready: ingest {}, inference {}, storage {}, dashboard {}",
        values.ingest, values.infer, values.store, values.dashboard
    );
    Ok(process)
}
