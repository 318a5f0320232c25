//! The subcommands. Each builds what it needs from the layered config.

use anyhow::Context;
use vigil_core::bus::Bus;
use vigil_core::config::VigilConfig;
use vigil_core::model::{self, FetchOutcome, ModelManifest, PackageOrigin};
use vigil_core::telemetry::{self, Readiness};

use crate::{Cli, Command, DeviceAction, ModelsAction, TopicsAction};

pub fn run(cli: Cli) -> anyhow::Result<()> {
    let config = VigilConfig::load(cli.config.as_deref())?;
    match cli.command {
        Command::Config => {
            print!("{}", toml::to_string_pretty(&config)?);
            Ok(())
        }
        Command::Models { action } => match action {
            ModelsAction::Fetch { model, package } => {
                let origin = match package {
                    Some(path) => PackageOrigin::File(path),
                    None => PackageOrigin::Pip {
                        python: std::env::var("VIGIL_PYTHON").unwrap_or_else(|_| "python3".into()),
                    },
                };
                fetch_model(&config, model.as_deref(), &origin).map(|_| ())
            }
            ModelsAction::Verify { model } => {
                let manifest = ModelManifest::load(&config.models.manifest)?;
                let entry = manifest.model(model.as_deref())?;
                let path = entry.verify(&config.models.dir)?;
                println!(
                    "{}: {} verified (sha256 {})",
                    entry.id,
                    path.display(),
                    entry.sha256
                );
                Ok(())
            }
        },
        Command::Topics {
            action: TopicsAction::Create,
        } => runtime()?.block_on(async {
            telemetry::init(&config.telemetry);
            let bus = Bus::connect(&config.bus).await?;
            bus.create_vigil_topics().await?;
            println!(
                "created Vigil topics on {} ({} partitions, prefix {:?})",
                config.bus.url, config.bus.partitions, config.bus.topic_prefix
            );
            Ok(())
        }),
        Command::Demo => runtime()?.block_on(demo(config)),
        Command::Ingest => runtime()?.block_on(async {
            telemetry::init(&config.telemetry);
            let shutdown = vigil_core::shutdown::on_signals();
            vigil_ingest::serve(&config, shutdown).await?;
            Ok(())
        }),
        Command::Device { action } => runtime()?.block_on(device(&config, action)),
    }
}

/// `vigil device register|revoke` against `ingest.database_url`.
async fn device(config: &VigilConfig, action: DeviceAction) -> anyhow::Result<()> {
    use vigil_ingest::{DeviceDirectory, NewDevice, SqlDeviceDirectory};
    let directory = SqlDeviceDirectory::connect(&config.ingest.database_url).await?;
    let result = match action {
        DeviceAction::Register {
            device_id,
            patient_id,
            sample_rate_hz,
            channels,
        } => directory
            .register(&NewDevice {
                device_id: device_id.clone(),
                patient_id: patient_id.clone(),
                sample_rate_hz,
                channels,
            })
            .await
            .map(|token| {
                eprintln!(
                    "registered device {device_id} for patient {patient_id}; its token is shown \
                     once, store it on the device now:"
                );
                println!("{}", token.expose());
            }),
        DeviceAction::Revoke { device_id } => {
            directory.revoke(&device_id).await.and_then(|revoked| {
                if revoked {
                    println!(
                        "revoked device {device_id} (effective within {} ms)",
                        config.ingest.auth_cache_ttl_ms
                    );
                    Ok(())
                } else {
                    Err(vigil_ingest::devices::DirectoryError::UnknownDevice(
                        device_id.clone(),
                    ))
                }
            })
        }
    };
    directory.close().await;
    Ok(result?)
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("start the async runtime")
}

/// Brings the model in if missing and returns its verified path.
fn fetch_model(
    config: &VigilConfig,
    id: Option<&str>,
    origin: &PackageOrigin,
) -> anyhow::Result<std::path::PathBuf> {
    let manifest = ModelManifest::load(&config.models.manifest)?;
    let entry = manifest.model(id)?;
    let outcome = model::fetch(entry, &config.models.dir, origin)?;
    let (verb, path) = match outcome {
        FetchOutcome::AlreadyPresent(p) => ("already present", p),
        FetchOutcome::Installed(p) => ("installed", p),
    };
    println!(
        "{}: {} {} (sha256 {} verified; {} {} from {}, licence {})",
        entry.id,
        path.display(),
        verb,
        entry.sha256,
        entry.source.package,
        entry.source.version,
        entry.source.registry,
        entry.licence.spdx
    );
    Ok(path)
}

/// `vigil demo`: today the embedded bus with every Vigil topic, the verified model, and the
/// operations endpoints. Stages join as they are built (see README "What runs today").
async fn demo(mut config: VigilConfig) -> anyhow::Result<()> {
    let metrics = telemetry::init(&config.telemetry);
    if !config.bus.url.starts_with("memory://") {
        tracing::info!(url = %config.bus.url, "demo runs on the embedded bus; ignoring bus.url");
        config.bus.url = "memory://demo".into();
    }
    let shutdown = vigil_core::shutdown::on_signals();
    let readiness = Readiness::default();

    let origin = PackageOrigin::Pip {
        python: std::env::var("VIGIL_PYTHON").unwrap_or_else(|_| "python3".into()),
    };
    let cfg = config.clone();
    let model_path = tokio::task::spawn_blocking(move || fetch_model(&cfg, None, &origin))
        .await
        .context("model fetch task")??;
    readiness.set("model", true, model_path.display().to_string());

    let bus = Bus::connect(&config.bus).await?;
    bus.create_vigil_topics().await?;
    readiness.set("bus", true, config.bus.url.clone());

    let listener = tokio::net::TcpListener::bind(config.demo.listen)
        .await
        .with_context(|| format!("bind {}", config.demo.listen))?;
    let addr = listener.local_addr()?;
    println!("Vigil demo on http://{addr}  (/healthz /readyz /metrics; Ctrl-C to stop)");
    println!("Running today: embedded bus with every topic, verified model. Not yet built: ingest, inference, storage, dashboard, replay.");

    let router = telemetry::ops_router(readiness, metrics);
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
        .context("demo HTTP server")?;
    tracing::info!("demo stopped");
    Ok(())
}
