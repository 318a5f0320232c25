//! The subcommands. Each builds what it needs from the layered config.

use std::sync::Arc;

use anyhow::Context;
use vigil_core::bus::Bus;
use vigil_core::config::VigilConfig;
use vigil_core::model::{self, FetchOutcome, ModelManifest, PackageOrigin};
use vigil_core::record::ModelRef;
use vigil_core::telemetry::{self, Readiness};
use vigil_core::CancellationToken;
use vigil_inference::display::Mains;
use vigil_inference::model::SeizureModel;
use vigil_inference::stage::InferenceStage;
use vigil_inference::windowing::WindowParams;
use vigil_ingest::{DeviceDirectory, IngestState, NewDevice, SqlDeviceDirectory};

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
        Command::Infer => runtime()?.block_on(infer(config)),
        Command::Ingest => runtime()?.block_on(async {
            telemetry::init(&config.telemetry);
            let shutdown = vigil_core::shutdown::on_signals();
            vigil_ingest::serve(&config, shutdown).await?;
            Ok(())
        }),
        Command::Device { action } => runtime()?.block_on(device(&config, action)),
        Command::Replay(args) => runtime()?.block_on(async {
            telemetry::init(&config.telemetry);
            crate::research::replay_command(&config, args).await
        }),
        Command::Eval(args) => {
            telemetry::init(&config.telemetry);
            crate::research::eval_command(&config, args)
        }
        Command::Dashboard => runtime()?.block_on(async {
            telemetry::init(&config.telemetry);
            let shutdown = vigil_core::shutdown::on_signals();
            vigil_dashboard::serve(&config, shutdown).await?;
            Ok(())
        }),
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

/// Loads the verified model for the inference stage (refuses unverified weights).
async fn load_model(config: &VigilConfig) -> anyhow::Result<(Arc<SeizureModel>, ModelRef)> {
    let manifest = ModelManifest::load(&config.models.manifest)?;
    let entry = manifest.model(Some(&config.inference.model_id))?.clone();
    let path = entry.verify(&config.models.dir)?;
    let model = tokio::task::spawn_blocking(move || SeizureModel::load(&path))
        .await
        .context("model loading task")??;
    Ok((
        Arc::new(model),
        ModelRef {
            id: entry.id.clone(),
            sha256: entry.sha256.clone(),
        },
    ))
}

fn inference_stage(
    config: &VigilConfig,
    bus: Bus,
    model: Arc<SeizureModel>,
    model_ref: ModelRef,
    readiness: Readiness,
) -> anyhow::Result<InferenceStage> {
    let c = &config.inference;
    Ok(InferenceStage {
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
        readiness,
        alert_policies: c.alert_policies()?,
        mains: if c.mains_hz == 60 {
            Mains::Hz60
        } else {
            Mains::Hz50
        },
    })
}

/// Serves the ops endpoints until `shutdown`.
async fn serve_ops(
    listen: std::net::SocketAddr,
    readiness: Readiness,
    metrics: metrics_exporter_prometheus::PrometheusHandle,
    shutdown: CancellationToken,
) -> anyhow::Result<std::net::SocketAddr> {
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("bind {listen}"))?;
    let addr = listener.local_addr()?;
    let router = telemetry::ops_router(readiness, metrics);
    tokio::spawn(async move {
        if let Err(err) = axum::serve(listener, router)
            .with_graceful_shutdown(shutdown.cancelled_owned())
            .await
        {
            tracing::error!(%err, "ops server failed");
        }
    });
    Ok(addr)
}

/// `vigil infer`: the inference stage on the configured bus.
async fn infer(config: VigilConfig) -> anyhow::Result<()> {
    let metrics = telemetry::init(&config.telemetry);
    let shutdown = vigil_core::shutdown::on_signals();
    let readiness = Readiness::default();
    readiness.set("model", false, "loading");
    readiness.set("bus", false, "connecting");
    let addr = serve_ops(
        config.inference.listen,
        readiness.clone(),
        metrics,
        shutdown.clone(),
    )
    .await?;
    tracing::info!(%addr, "inference ops endpoints");
    let (model, model_ref) = load_model(&config).await?;
    readiness.set(
        "model",
        true,
        format!("{} sha256 {}", model_ref.id, model_ref.sha256),
    );
    let bus = Bus::connect(&config.bus).await?;
    bus.create_vigil_topics().await?;
    inference_stage(&config, bus, model, model_ref, readiness)?
        .run(shutdown)
        .await?;
    tracing::info!("inference stopped");
    Ok(())
}

/// `vigil demo`: the built stages in one process on the embedded bus: simulated devices stream
/// through the ingest gateway into inference, and probabilities are printed as they become
/// final.
async fn demo(mut config: VigilConfig) -> anyhow::Result<()> {
    telemetry::init(&config.telemetry);
    if !config.bus.url.starts_with("memory://") {
        tracing::info!(url = %config.bus.url, "demo runs on the embedded bus; ignoring bus.url");
        config.bus.url = "memory://demo".into();
    }
    let shutdown = vigil_core::shutdown::on_signals();

    let origin = PackageOrigin::Pip {
        python: std::env::var("VIGIL_PYTHON").unwrap_or_else(|_| "python3".into()),
    };
    let cfg = config.clone();
    tokio::task::spawn_blocking(move || fetch_model(&cfg, Some(&cfg.inference.model_id), &origin))
        .await
        .context("model fetch task")??;
    let (model, model_ref) = load_model(&config).await?;

    let bus = Bus::connect(&config.bus).await?;
    bus.create_vigil_topics().await?;

    // A throwaway device directory with one registered headset per simulated patient.
    let scratch = tempfile::tempdir().context("demo scratch directory")?;
    let db = format!(
        "sqlite://{}?mode=rwc",
        scratch.path().join("devices.db").display()
    );
    let directory = SqlDeviceDirectory::connect(&db).await?;
    let mut tokens = Vec::new();
    for p in 0..config.demo.patients {
        let (patient_id, device_id) = crate::demo::patient_ids(p);
        let token = directory
            .register(&NewDevice {
                device_id,
                patient_id,
                sample_rate_hz: Some(256.0),
                channels: Some(crate::demo::channels()),
            })
            .await?;
        tokens.push(token.expose().to_owned());
    }
    // A device for the person running the demo, so their own records do not disturb the
    // simulated patients' streams.
    let your_token = directory
        .register(&NewDevice {
            device_id: "your-headset".into(),
            patient_id: "your-patient".into(),
            sample_rate_hz: None,
            channels: None,
        })
        .await?;
    let gateway = IngestState::new(
        bus.clone(),
        Arc::new(directory),
        &config.ingest,
        std::time::Duration::from_millis(config.bus.publish_timeout_ms),
    );
    let readiness = gateway.readiness().clone();
    readiness.set(
        "model",
        true,
        format!("{} sha256 {}", model_ref.id, model_ref.sha256),
    );
    gateway.probe_bus().await;
    let probe = gateway.spawn_bus_probe(std::time::Duration::from_secs(1), shutdown.clone());
    let listener = tokio::net::TcpListener::bind(config.demo.listen)
        .await
        .with_context(|| format!("bind {}", config.demo.listen))?;
    let addr = listener.local_addr()?;
    // The gateway stops after the simulated devices have closed, so their last frames are
    // acknowledged instead of timing out.
    let gateway_stop = CancellationToken::new();
    let server = {
        let stop = gateway_stop.clone();
        tokio::spawn(async move {
            axum::serve(listener, vigil_ingest::app(gateway))
                .with_graceful_shutdown(stop.cancelled_owned())
                .await
        })
    };

    println!("Vigil demo on http://{addr}  (device API /v1/eeg /v1/hr /v1/stream, /openapi.json, /healthz /readyz /metrics; Ctrl-C to stop)");
    println!(
        "Running: {} simulated headsets (synthetic EEG; patient 1 has seizure-like bursts) at {}x -> ingest -> inference (model {}).",
        config.demo.patients, config.demo.speed, model_ref.id
    );
    println!("Send your own EEG chunk (device your-headset, patient your-patient):");
    println!(
        "  curl -X POST http://{addr}/v1/eeg -H 'Authorization: Bearer {}' -H 'Content-Type: application/json' \\\n    -d '{{\"patient_id\":\"your-patient\",\"device_id\":\"your-headset\",\"stream_id\":\"{}\",\"seq\":0,\"start_ns\":{},\"sample_rate_hz\":256,\"channels\":[\"Cz\"],\"samples\":[[1.5,null,-2.0]]}}'",
        your_token.expose(),
        uuid::Uuid::new_v4(),
        vigil_core::time::now_ns()
    );
    println!("The model needs 300 s of signal, and a point is final 270 s later: first lines appear after ~{:.0} s.", 330.0 / config.demo.speed);
    println!(
        "Not yet built: alerts on the dashboard, storage, the dashboard, replay of recordings."
    );

    let stage = inference_stage(&config, bus.clone(), model, model_ref, readiness)?;
    let stage = tokio::spawn(stage.run(shutdown.clone()));
    let feeder = tokio::spawn(crate::demo::feed_patients(
        format!("ws://{addr}/v1/stream"),
        tokens,
        config.demo.speed,
        shutdown.clone(),
    ));
    let printer = tokio::spawn(crate::demo::print_probabilities(bus, shutdown.clone()));
    shutdown.cancelled().await;
    feeder.await.context("demo feeder")?;
    gateway_stop.cancel();
    printer.await.context("demo printer")??;
    stage.await.context("inference stage")??;
    server.await.context("gateway")?.context("gateway server")?;
    probe.abort();
    tracing::info!("demo stopped");
    Ok(())
}
