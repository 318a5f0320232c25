//! `vigil replay` and `vigil eval`: real recordings through the live gateway, or through the
//! inference code offline with SzCORE-style scoring. The work is done by `vigil_replay`;
//! this module turns arguments and plans into its calls and prints the results.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context};
use serde::Deserialize;
use vigil_core::config::VigilConfig;
use vigil_core::datasets;
use vigil_inference::alerts::AlertPolicy;
use vigil_inference::model::SeizureModel;
use vigil_inference::windowing::WindowParams;
use vigil_ingest::{DeviceDirectory, NewDevice, SqlDeviceDirectory};
use vigil_replay::annotations::{
    from_edf_annotations, parse_bids_events, parse_chbmit_summary, parse_tuh_csv_bi,
};
use vigil_replay::eval::{evaluate, table, EvalSettings, RecordingEval};
use vigil_replay::scoring::{EventScore, Interval, ScoringParams};
use vigil_replay::{
    replay, DeviceProfile, Montage, PatientSimulator, Recording, ReplayConfig, ReplayDevice,
    SimulatorConfig,
};

use crate::{EvalArgs, ReplayArgs, SignalArgs};

/// A path as given, or relative to the data dir of `scripts/fetch-data` when nothing is
/// there (a directory is a Parquet archive of `vigil store`).
fn data_path(path: &Path) -> PathBuf {
    if path.exists() || path.is_absolute() {
        path.to_owned()
    } else {
        datasets::data_dir().join(path)
    }
}

fn parse_interval(s: &str) -> anyhow::Result<(f64, f64)> {
    let (a, b) = s
        .split_once(':')
        .with_context(|| format!("{s:?}: expected FROM:TO in seconds, e.g. 40:70"))?;
    let (a, b): (f64, f64) = (a.trim().parse()?, b.trim().parse()?);
    if !(a.is_finite() && b.is_finite() && b > a && a >= 0.0) {
        bail!("{s:?}: need 0 <= FROM < TO");
    }
    Ok((a, b))
}

fn simulator_config(args: &SignalArgs) -> anyhow::Result<SimulatorConfig> {
    let montage = if let Some(pairs) = &args.bipolar {
        Montage::Bipolar(
            pairs
                .iter()
                .map(|p| {
                    p.split_once('-')
                        .map(|(a, b)| (a.to_owned(), b.to_owned()))
                        .with_context(|| format!("{p:?}: expected A-B"))
                })
                .collect::<anyhow::Result<_>>()?,
        )
    } else if let Some(channels) = &args.channels {
        Montage::Select(channels.clone())
    } else {
        Montage::AsRecorded
    };
    Ok(SimulatorConfig {
        montage,
        rate_hz: args.rate_hz,
        unit_scale: args.unit_scale,
        repeat: args.repeat.max(1),
        bursts: args
            .burst
            .iter()
            .map(|b| parse_interval(b))
            .collect::<anyhow::Result<_>>()?,
        ..SimulatorConfig::default()
    })
}

fn prepare(path: &Path, config: &SimulatorConfig) -> anyhow::Result<(Recording, PatientSimulator)> {
    let path = data_path(path);
    let recording = Recording::open(&path).with_context(|| format!("read {}", path.display()))?;
    let sim = PatientSimulator::new(&recording, config)
        .with_context(|| format!("prepare {}", path.display()))?;
    Ok((recording, sim))
}

/// `vigil replay`.
pub async fn replay_command(config: &VigilConfig, args: ReplayArgs) -> anyhow::Result<()> {
    let sim_config = simulator_config(&args.signal)?;
    let (_, sim) = prepare(&args.recording, &sim_config)?;
    let url = args
        .url
        .clone()
        .unwrap_or_else(|| format!("ws://{}/v1/stream", config.ingest.listen));
    let mut devices = Vec::new();
    for spec in &args.device {
        let parts: Vec<&str> = spec.splitn(3, ':').collect();
        let [device_id, patient_id, token] = parts.as_slice() else {
            bail!("--device {spec:?}: expected DEVICE_ID:PATIENT_ID:TOKEN");
        };
        devices.push((
            (*device_id).to_owned(),
            (*patient_id).to_owned(),
            (*token).to_owned(),
        ));
    }
    if args.register > 0 {
        let directory = SqlDeviceDirectory::connect(&config.ingest.database_url).await?;
        let run = uuid::Uuid::new_v4().simple().to_string();
        for i in 0..args.register {
            let device_id = format!("replay-{}-{}", &run[..8], i + 1);
            let patient_id = format!("{}{}", args.patient_prefix, i + 1);
            let token = directory
                .register(&NewDevice {
                    device_id: device_id.clone(),
                    patient_id: patient_id.clone(),
                    sample_rate_hz: Some(sim.rate_hz()),
                    channels: Some(sim.channels().to_vec()),
                })
                .await?;
            devices.push((device_id, patient_id, token.expose().to_owned()));
        }
        directory.close().await;
    }
    if devices.is_empty() {
        bail!("no devices: give --device DEVICE_ID:PATIENT_ID:TOKEN or --register N");
    }
    let start_ns = vigil_core::time::now_ns();
    let n = devices.len();
    let replay_devices: Vec<ReplayDevice> = devices
        .into_iter()
        .enumerate()
        .map(|(i, (device_id, patient_id, token))| ReplayDevice {
            profile: DeviceProfile {
                chunk_s: args.chunk_s,
                loops: args.loops.max(1),
                // Patients start at different places of the recording.
                offset_s: sim.duration_s() * i as f64 / n as f64,
                clock_offset_ns: (args.clock_offset_ms * 1e6) as i64,
                dropout_probability: args.dropout,
                jitter_s: args.jitter_ms / 1e3,
                seed: i as u64,
                ..DeviceProfile::new(patient_id, device_id, start_ns)
            },
            token,
        })
        .collect();
    eprintln!(
        "replaying {} ({} ch, {} Hz, {:.1} s{}) as {} devices to {url} at {}",
        args.recording.display(),
        sim.channels().len(),
        sim.rate_hz(),
        sim.duration_s(),
        if sim.bursts().is_empty() {
            String::new()
        } else {
            format!(", synthetic bursts {:?}", sim.bursts())
        },
        replay_devices.len(),
        args.speed
    );
    let replay_config = ReplayConfig {
        speed: args.speed,
        progress: !args.no_progress,
        ..ReplayConfig::new(url)
    };
    let summary = replay(
        Arc::new(sim),
        replay_devices,
        &replay_config,
        vigil_core::shutdown::on_signals(),
    )
    .await;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        println!("{}", summary.line());
        for e in &summary.errors {
            println!("  error: {e}");
        }
    }
    // A conflicting resend or a chunk below the gateway's window was not stored: the replay
    // did not deliver the recording, so it fails like a lost chunk.
    if summary.lost > 0
        || summary.conflicts > 0
        || summary.below_window > 0
        || !summary.errors.is_empty()
    {
        bail!(
            "{} chunks lost, {} conflicting resends, {} below the gateway's window, {} device errors",
            summary.lost,
            summary.conflicts,
            summary.below_window,
            summary.errors.len()
        );
    }
    Ok(())
}

/// One recording of an eval plan (TOML `[[recording]]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanRecording {
    /// Name in the report (default: the file name).
    pub name: Option<String>,
    /// EDF file, absolute or relative to the data dir.
    pub path: PathBuf,
    /// Channels to use (default: all).
    pub channels: Option<Vec<String>>,
    /// Bipolar derivations `A-B` (instead of `channels`).
    pub bipolar: Option<Vec<String>>,
    /// Rate fed to the model.
    pub rate_hz: Option<f64>,
    /// Physical unit to microvolts.
    pub unit_scale: Option<f64>,
    /// Times the recording is played end to end (default 1).
    pub repeat: Option<usize>,
    /// Synthetic bursts `[from_s, to_s]` (reference events).
    #[serde(default)]
    pub bursts: Vec<[f64; 2]>,
    /// Annotation file (absolute or relative to the data dir).
    pub annotations: Option<PathBuf>,
    /// `edf` (this file's EDF+ annotations), `chbmit`, `tuh` or `bids`.
    pub format: Option<String>,
    /// For `chbmit`: the file name within the summary.
    pub annotation_recording: Option<String>,
    /// For `edf`: case-insensitive text that marks a seizure annotation (default `seiz`).
    pub seizure_text: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Plan {
    recording: Vec<PlanRecording>,
}

fn annotated_events(item: &PlanRecording, recording: &Recording) -> anyhow::Result<Vec<Interval>> {
    let events = match item.format.as_deref() {
        None => return Ok(Vec::new()),
        Some("edf") => {
            let text = item
                .seizure_text
                .clone()
                .unwrap_or_else(|| "seiz".into())
                .to_lowercase();
            from_edf_annotations("", recording.duration_s(), &recording.annotations, |t| {
                t.to_lowercase().contains(&text)
            })
            .events
        }
        Some(format) => {
            let path = data_path(
                item.annotations
                    .as_deref()
                    .with_context(|| format!("format {format} needs `annotations = <file>`"))?,
            );
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("read {}", path.display()))?;
            match format {
                "tuh" => parse_tuh_csv_bi(&text)?.events,
                "bids" => parse_bids_events("", &text)?.events,
                "chbmit" => {
                    let name = item
                        .annotation_recording
                        .as_deref()
                        .context("format chbmit needs `annotation_recording`")?;
                    parse_chbmit_summary(&text)?
                        .into_iter()
                        .find(|r| r.recording == name)
                        .with_context(|| format!("{name} is not in {}", path.display()))?
                        .events
                }
                other => bail!("unknown annotation format {other:?} (edf, chbmit, tuh, bids)"),
            }
        }
    };
    Ok(events
        .iter()
        .map(|e| Interval::new(e.onset_s, e.end_s()))
        .collect())
}

fn load_model(config: &VigilConfig) -> anyhow::Result<SeizureModel> {
    Ok(vigil_inference::serve::load_verified_model(config)?.0)
}

/// `vigil eval`.
pub fn eval_command(config: &VigilConfig, args: EvalArgs) -> anyhow::Result<()> {
    let items: Vec<PlanRecording> = match (&args.plan, &args.recording) {
        (Some(plan), None) => {
            let text = std::fs::read_to_string(plan)
                .with_context(|| format!("read plan {}", plan.display()))?;
            toml::from_str::<Plan>(&text)
                .with_context(|| format!("plan {}", plan.display()))?
                .recording
        }
        (None, Some(path)) => vec![PlanRecording {
            name: None,
            path: path.clone(),
            channels: args.signal.channels.clone(),
            bipolar: args.signal.bipolar.clone(),
            rate_hz: args.signal.rate_hz,
            unit_scale: args.signal.unit_scale,
            repeat: Some(args.signal.repeat),
            bursts: args
                .signal
                .burst
                .iter()
                .map(|b| parse_interval(b).map(|(a, b)| [a, b]))
                .collect::<anyhow::Result<_>>()?,
            annotations: args.annotations.clone(),
            format: args.format.clone(),
            annotation_recording: args.annotation_recording.clone(),
            seizure_text: None,
        }],
        _ => bail!("give either --plan FILE or --recording FILE"),
    };
    let settings = EvalSettings {
        windows: WindowParams {
            window_s: args.window_s.unwrap_or(config.inference.window_s),
            step_s: args.step_s.unwrap_or(config.inference.step_s),
            discard_edges_s: args
                .discard_edges_s
                .unwrap_or(config.inference.discard_edges_s),
        },
        policy: AlertPolicy::default(),
        scoring: ScoringParams::default(),
    };
    let model = load_model(config)?;
    std::fs::create_dir_all(&args.out).with_context(|| format!("create {}", args.out.display()))?;
    let mut results: Vec<RecordingEval> = Vec::new();
    for item in &items {
        let signal = SignalArgs {
            channels: item.channels.clone(),
            bipolar: item.bipolar.clone(),
            rate_hz: item.rate_hz,
            unit_scale: item.unit_scale,
            repeat: item.repeat.unwrap_or(1),
            burst: item
                .bursts
                .iter()
                .map(|[a, b]| format!("{a}:{b}"))
                .collect(),
        };
        let (recording, sim) = prepare(&item.path, &simulator_config(&signal)?)?;
        let name = item.name.clone().unwrap_or_else(|| {
            item.path.file_name().map_or_else(
                || item.path.display().to_string(),
                |n| n.to_string_lossy().into(),
            )
        });
        let annotated = annotated_events(item, &recording)?;
        eprintln!(
            "evaluating {name}: {} ch @ {} Hz, {:.1} s, {} annotated + {} synthetic events",
            sim.channels().len(),
            sim.rate_hz(),
            sim.duration_s(),
            annotated.len(),
            sim.bursts().len()
        );
        let result = evaluate(&model, &name, &sim, &annotated, &settings)?;
        let svg = args.out.join(format!("{}.svg", sanitize(&name)));
        vigil_replay::plot::write_svg(&result, &settings.policy, &svg)?;
        results.push(result);
    }
    let total = EventScore::sum(results.iter().map(|r| &r.score));
    let report = serde_json::json!({
        "settings": {
            "window_s": settings.windows.window_s,
            "step_s": settings.windows.step_s,
            "discard_edges_s": settings.windows.discard_edges_s,
            "on_threshold": settings.policy.on_threshold,
            "on_duration_s": settings.policy.on_duration_s,
            "off_threshold": settings.policy.off_threshold,
            "off_duration_s": settings.policy.off_duration_s,
            "scoring": settings.scoring,
        },
        "recordings": results,
        "total": {
            "counts": total,
            "sensitivity": finite(total.sensitivity()),
            "precision": finite(total.precision()),
            "f1": finite(total.f1()),
            "false_alarms_per_24h": finite(total.false_alarms_per_24h()),
            "median_latency_s": finite(total.median_latency_s()),
        },
    });
    let json_path = args.out.join("eval.json");
    std::fs::write(&json_path, serde_json::to_string_pretty(&report)?)
        .with_context(|| format!("write {}", json_path.display()))?;
    print!("{}", table(&results));
    println!(
        "windows {}/{}/{} s, alert on p >= {} for {} s, off p < {} for {} s; SzCORE event scoring (30 s before / 60 s after, merge < 90 s, split > 300 s). n/a = undefined.",
        settings.windows.window_s,
        settings.windows.step_s,
        settings.windows.discard_edges_s,
        settings.policy.on_threshold,
        settings.policy.on_duration_s,
        settings.policy.off_threshold,
        settings.policy.off_duration_s
    );
    println!("wrote {} and one SVG per recording", json_path.display());
    Ok(())
}

/// NaN as JSON null ("undefined"), never 0.
fn finite(v: f64) -> Option<f64> {
    v.is_finite().then_some(v)
}

fn sanitize(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect()
}
