//! `vigil store` as one running service: the consumer stage, the history/FHIR API with the
//! ops endpoints, and the retention job, over one [`Store`] and one [`Bus`].
//!
//! The API keeps answering while the stage drains on shutdown, so a rolling restart never
//! serves 503s for history that is already durable; the server stops after the stage has
//! flushed its batch and committed.

use std::net::SocketAddr;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use vigil_core::bus::{Bus, BusError};
use vigil_core::config::StorageConfig;
use vigil_core::telemetry::Readiness;

use crate::api::{self, ApiState};
use crate::consumer::{StageError, StoreStage};
use crate::{retention, StorageError, Store};

/// Why the storage service could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The database could not be opened or migrated.
    #[error("clinical database: {0}")]
    Storage(#[from] StorageError),
    /// The bus could not be reached.
    #[error("bus: {0}")]
    Bus(#[from] BusError),
    /// The consumer stage failed for good.
    #[error("storage stage: {0}")]
    Stage(#[from] StageError),
    /// The API listener could not be bound or the server failed.
    #[error("listen on {addr}: {source}")]
    Io {
        /// Address.
        addr: SocketAddr,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
}

/// A running storage service.
pub struct RunningStore {
    /// Address of the history API and ops endpoints.
    pub addr: SocketAddr,
    /// Readiness checks (`bus`, `database`) the stage maintains.
    pub readiness: Readiness,
    stage: JoinHandle<Result<(), StageError>>,
    server: JoinHandle<std::io::Result<()>>,
    retention: JoinHandle<()>,
    server_stop: CancellationToken,
}

impl RunningStore {
    /// Waits until the stage has stopped (after `shutdown` fired), then stops the API.
    pub async fn wait(self) -> Result<(), ServeError> {
        let addr = self.addr;
        let stage = self.stage.await;
        self.server_stop.cancel();
        let served = self.server.await;
        let _ = self.retention.await;
        match stage {
            Ok(result) => result?,
            Err(err) => return Err(join_error(addr, err)),
        }
        match served {
            Ok(result) => result.map_err(|source| ServeError::Io { addr, source }),
            Err(err) => Err(join_error(addr, err)),
        }
    }
}

fn join_error(addr: SocketAddr, err: tokio::task::JoinError) -> ServeError {
    ServeError::Io {
        addr,
        source: std::io::Error::other(err),
    }
}

/// Starts the stage, the API on `listener` and the retention job; they run until
/// `shutdown`. Topics must exist on `bus`.
pub async fn start(
    store: Store,
    bus: Bus,
    config: &StorageConfig,
    listener: tokio::net::TcpListener,
    shutdown: CancellationToken,
) -> Result<RunningStore, ServeError> {
    let addr = listener.local_addr().map_err(|source| ServeError::Io {
        addr: config.listen,
        source,
    })?;
    let readiness = Readiness::default();
    readiness.set("database", true, "connected");
    readiness.set("bus", false, "joining the consumer group");
    let state = ApiState::new(store.clone(), readiness.clone(), config);
    let server_stop = CancellationToken::new();
    let server = {
        let stop = server_stop.clone();
        let router = api::app(state);
        tokio::spawn(async move {
            axum::serve(listener, router)
                .with_graceful_shutdown(stop.cancelled_owned())
                .await
        })
    };
    let retention = tokio::spawn(retention::run(
        store.clone(),
        config.retention.clone(),
        shutdown.clone(),
    ));
    let stage = StoreStage {
        store,
        bus,
        config: config.clone(),
        readiness: readiness.clone(),
    };
    let stage = tokio::spawn(stage.run(shutdown));
    tracing::info!(%addr, "storage API listening");
    Ok(RunningStore {
        addr,
        readiness,
        stage,
        server,
        retention,
        server_stop,
    })
}

/// `vigil store`: opens (and migrates) `storage.database_url`, connects the bus, creates the
/// Vigil topics if missing, and runs until `shutdown`.
pub async fn serve(
    config: &vigil_core::config::VigilConfig,
    shutdown: CancellationToken,
) -> Result<(), ServeError> {
    let store = Store::connect(&config.storage.database_url).await?;
    let bus = Bus::connect(&config.bus).await?;
    bus.create_vigil_topics().await?;
    let addr = config.storage.listen;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| ServeError::Io { addr, source })?;
    let running = start(store.clone(), bus, &config.storage, listener, shutdown).await?;
    let result = running.wait().await;
    store.close().await;
    result
}
