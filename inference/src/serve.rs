//! `vigil infer` built from its configuration: the verified model, the bus, the ops endpoints
//! (`/healthz`, `/readyz`, `/metrics` on `inference.listen`) and the stage.

use std::future::IntoFuture;
use std::net::SocketAddr;
use std::sync::Arc;

use vigil_core::bus::{Bus, BusError};
use vigil_core::config::{ConfigError, VigilConfig};
use vigil_core::model::{ModelError, ModelManifest};
use vigil_core::record::ModelRef;
use vigil_core::telemetry::{self, Readiness};
use vigil_core::CancellationToken;

use crate::display::Mains;
use crate::model::SeizureModel;
use crate::stage::InferenceStage;
use crate::windowing::WindowParams;
use crate::InferenceError;

/// Why `vigil infer` could not start, or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The configured model's weights are missing or fail their checksum.
    #[error("model weights (run `vigil models fetch`): {0}")]
    Weights(#[from] ModelError),
    /// The configuration is not usable.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The bus could not be reached or set up.
    #[error("bus: {0}")]
    Bus(#[from] BusError),
    /// The model failed to load, or the stage failed.
    #[error(transparent)]
    Inference(#[from] InferenceError),
    /// The ops endpoints could not listen.
    #[error("ops endpoints on {addr}: {source}")]
    Io {
        /// Address.
        addr: SocketAddr,
        /// Cause.
        source: std::io::Error,
    },
}

/// Loads `inference.model_id` from `models.dir` once its checksum matches the manifest
/// (unverified weights are refused), on the engine `inference.engine` asks for. Blocking.
pub fn load_verified_model(config: &VigilConfig) -> Result<(SeizureModel, ModelRef), ServeError> {
    let manifest = ModelManifest::load(&config.models.manifest)?;
    let entry = manifest.model(Some(&config.inference.model_id))?;
    let path = entry.verify(&config.models.dir)?;
    let model = SeizureModel::load_with(&path, config.inference.engine)?;
    let model_ref = ModelRef {
        id: entry.id.clone(),
        sha256: entry.sha256.clone(),
    };
    Ok((model, model_ref))
}

/// [`load_verified_model`] off the async runtime.
pub async fn load_verified_model_async(
    config: &VigilConfig,
) -> Result<(Arc<SeizureModel>, ModelRef), ServeError> {
    let config = config.clone();
    let (model, model_ref) = tokio::task::spawn_blocking(move || load_verified_model(&config))
        .await
        .map_err(|err| InferenceError::Model {
            context: "model loading task",
            reason: err.to_string(),
        })??;
    Ok((Arc::new(model), model_ref))
}

impl InferenceStage {
    /// The stage as `[inference]` configures it.
    pub fn from_config(
        config: &VigilConfig,
        bus: Bus,
        model: Arc<SeizureModel>,
        model_ref: ModelRef,
        readiness: Readiness,
    ) -> Result<Self, ConfigError> {
        let c = &config.inference;
        Ok(Self {
            bus,
            model,
            model_ref,
            params: WindowParams {
                window_s: c.window_s,
                step_s: c.step_s,
                discard_edges_s: c.discard_edges_s,
            },
            group: c.group.clone(),
            max_gap_s: c.max_gap_s,
            workers: c.workers,
            batch_windows: c.batch_windows,
            max_queued_windows: c.max_queued_windows,
            idle_evict_s: c.idle_evict_s,
            readiness,
            alert_policies: c.alert_policies()?,
            mains: if c.mains_hz == 60 {
                Mains::Hz60
            } else {
                Mains::Hz50
            },
            trends: c.trends.clone(),
        })
    }
}

/// `vigil infer`: serves the ops endpoints, loads the verified model, connects the bus
/// (creating the Vigil topics if missing) and runs the stage until `shutdown`.
pub async fn serve(config: &VigilConfig, shutdown: CancellationToken) -> Result<(), ServeError> {
    let readiness = Readiness::default();
    readiness.set("model", false, "loading");
    readiness.set("bus", false, "connecting");
    let addr = config.inference.listen;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| ServeError::Io { addr, source })?;
    let local = listener.local_addr().unwrap_or(addr);
    let router = telemetry::ops_router(readiness.clone(), telemetry::metrics_handle());
    let ops_stop = shutdown.child_token();
    let ops = tokio::spawn(
        axum::serve(listener, router)
            .with_graceful_shutdown(ops_stop.clone().cancelled_owned())
            .into_future(),
    );
    tracing::info!(addr = %local, "inference ops endpoints");
    let result = run_stage(config, readiness, shutdown).await;
    // The ops endpoints stop with the stage, even when it failed to start.
    ops_stop.cancel();
    let _ = ops.await;
    result
}

async fn run_stage(
    config: &VigilConfig,
    readiness: Readiness,
    shutdown: CancellationToken,
) -> Result<(), ServeError> {
    let (model, model_ref) = load_verified_model_async(config).await?;
    readiness.set(
        "model",
        true,
        format!("{} sha256 {}", model_ref.id, model_ref.sha256),
    );
    let bus = Bus::connect(&config.bus).await?;
    bus.create_vigil_topics().await?;
    InferenceStage::from_config(config, bus, model, model_ref, readiness)?
        .run(shutdown)
        .await?;
    tracing::info!("inference stopped");
    Ok(())
}
