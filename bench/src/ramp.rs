//! The ramp: patients added cohort by cohort (each warmed up, then released into real time)
//! until a step is not sustained, then the largest sustained load held for the final phase,
//! with the seizure bursts' onset-to-alert latencies.

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use tokio::time::Instant;
use vigil_bench::probes;
use vigil_core::bus::Bus;
use vigil_core::CancellationToken;
use vigil_replay::{Montage, PatientSimulator, Recording, SimulatorConfig};

use crate::load::{self, Cohort, RECORDS_PER_PATIENT_S};
use crate::report::{print_step, soak_chart, AlertLatency, StepResult};
use crate::{loadavg, Args, Bench, ALERT_HORIZON_S, MODEL_STEP_S, WARMUP_S};

/// Waits until every patient of `cohort` sent its warm-up (or a generous limit passed).
async fn wait_warm(cohort: &Cohort, warmup_speed: f64, n: usize) {
    let mut warmed = cohort.warmed.clone();
    let size = cohort.patients.len();
    let warm_limit = Duration::from_secs_f64(WARMUP_S / warmup_speed * 4.0 + 120.0);
    if tokio::time::timeout(warm_limit, warmed.wait_for(|w| *w >= size))
        .await
        .is_err()
    {
        eprintln!("warm-up of {n} patients did not finish in {warm_limit:?}");
    }
}

/// Every patient of the cohorts.
fn patient_ids(cohorts: &[Cohort]) -> Vec<String> {
    cohorts
        .iter()
        .flat_map(|c| c.patients.iter().map(|p| p.patient_id.clone()))
        .collect()
}

/// Stops the newest cohorts until at most `n` patients stream; their bursts are forgotten.
async fn shrink_to(cohorts: &mut Vec<Cohort>, onsets: &mut Vec<(String, i64)>, n: usize) {
    while cohorts.iter().map(|c| c.patients.len()).sum::<usize>() > n {
        if let Some(c) = cohorts.pop() {
            let gone: Vec<String> = c.patients.iter().map(|p| p.patient_id.clone()).collect();
            onsets.retain(|(p, _)| !gone.contains(p));
            c.finish().await;
        }
    }
}

/// Draws the final phase into `--plot`, if given.
fn write_plot(args: &Args, step: &StepResult) -> anyhow::Result<()> {
    if let Some(path) = &args.plot {
        std::fs::write(path, soak_chart(step))
            .with_context(|| format!("write {}", path.display()))?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}

/// What a ramp found, for its summary.
struct RampOutcome {
    best: Option<usize>,
    steps: Vec<serde_json::Value>,
    final_step: Option<StepResult>,
    latencies: Vec<AlertLatency>,
    device_results: Vec<load::PatientResult>,
}

/// Prints the run's headline numbers and returns the whole result as JSON.
fn summarize(
    bench: &Bench,
    path: &Path,
    sim: &PatientSimulator,
    o: RampOutcome,
) -> serde_json::Value {
    let args = &bench.args;
    let mut measured: Vec<f64> = o.latencies.iter().filter_map(|l| l.latency_s).collect();
    measured.sort_by(f64::total_cmp);
    let median = (!measured.is_empty()).then(|| measured[measured.len() / 2]);
    println!(
        "onset -> alert: {} of {} bursts (older than {ALERT_HORIZON_S} s at the end) alerted, median {} s (min {}, max {})",
        measured.len(),
        o.latencies.len(),
        median.map_or("-".into(), |m| format!("{m:.1}")),
        measured.first().map_or("-".into(), |m| format!("{m:.1}")),
        measured.last().map_or("-".into(), |m| format!("{m:.1}")),
    );
    let refused: u64 = o.device_results.iter().map(|r| r.rejected).sum();
    let errors: Vec<&String> = o.device_results.iter().flat_map(|r| &r.errors).collect();
    println!(
        "largest sustained: {} patients; devices: {} EEG chunks, {} HR batches sent, {} refused, {} errors",
        o.best.map_or("none".into(), |n| n.to_string()),
        o.device_results.iter().map(|r| r.eeg_sent).sum::<u64>(),
        o.device_results.iter().map(|r| r.hr_sent).sum::<u64>(),
        refused,
        errors.len()
    );
    serde_json::json!({
        "run": bench.run,
        "machine": {
            "cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
            "loadavg_end": loadavg(),
        },
        "settings": {
            "recording": path,
            "channels": sim.channels(),
            "rate_hz": sim.rate_hz(),
            "measure_s": args.measure_s,
            "warmup_s": WARMUP_S,
            "warmup_speed": args.warmup_speed,
            "burst_after_s": args.burst_after_s,
            "burst_s": args.burst_s,
            "aligned_windows": args.aligned_windows,
            "partitions": args.partitions,
            "records_per_patient_s": RECORDS_PER_PATIENT_S,
        },
        "largest_sustained_patients": o.best,
        "steps": o.steps,
        "final": o.final_step,
        "onset_to_alert": {
            "median_s": median,
            "alerted": measured.len(),
            "bursts": o.latencies.len(),
            "each": o.latencies,
        },
        "devices": {
            "refused": refused,
            "errors": errors,
        },
    })
}

/// The replay simulator over a real recording: first `channels` signals, resampled, the
/// recording repeated to 10 min so a burst recurs every 10 min of signal.
pub(crate) fn simulator(args: &Args) -> anyhow::Result<(PathBuf, Arc<PatientSimulator>)> {
    let path = if args.recording.is_file() || args.recording.is_absolute() {
        args.recording.clone()
    } else {
        vigil_core::datasets::data_dir().join(&args.recording)
    };
    let recording = Recording::open(&path)
        .with_context(|| format!("read {} (run scripts/fetch-data)", path.display()))?;
    let labels: Vec<String> = recording
        .signals
        .iter()
        .map(|s| s.header.label.clone())
        .filter(|l| !l.contains("Annotations"))
        .take(args.channels)
        .collect();
    if labels.len() < args.channels {
        bail!(
            "{} has {} signals, {} wanted",
            path.display(),
            labels.len(),
            args.channels
        );
    }
    // A patient starting `offset_s` into the recording with `phase_s = step - offset_s`
    // reaches real time at recording second WARMUP_S + MODEL_STEP_S, so the burst comes
    // `burst_after_s` into every patient's real time (40 - offset_s s with --aligned-windows).
    let burst_from = WARMUP_S + MODEL_STEP_S + args.burst_after_s;
    let repeat = (600.0 / recording.duration_s()).ceil().max(1.0) as usize;
    let sim = Arc::new(PatientSimulator::new(
        &recording,
        &SimulatorConfig {
            montage: Montage::Select(labels),
            rate_hz: Some(args.rate_hz),
            repeat,
            bursts: vec![(burst_from, burst_from + args.burst_s)],
            ..SimulatorConfig::default()
        },
    )?);
    eprintln!(
        "simulated patient: {} ch @ {} Hz, {:.0} s of signal looped, burst at {burst_from} s",
        sim.channels().len(),
        sim.rate_hz(),
        sim.duration_s()
    );
    Ok((path, sim))
}

/// Releases a warmed-up cohort into real time; the (patient, onset UTC ns) of every burst its
/// patients will stream.
fn release(cohort: &Cohort, sim: &PatientSimulator) -> Vec<(String, i64)> {
    let t1 = Instant::now();
    let t1_ns = vigil_core::time::now_ns();
    cohort.go.send_replace(Some((t1, t1_ns)));
    let mut onsets = Vec::new();
    for p in &cohort.patients {
        let warmup_s = p.warmup_s(WARMUP_S);
        for onset_s in load::burst_onsets_s(sim, p.offset_s, 8.0 * 3600.0) {
            if onset_s > warmup_s {
                onsets.push((
                    p.patient_id.clone(),
                    t1_ns + ((onset_s - warmup_s) * 1e9) as i64,
                ));
            }
        }
    }
    onsets
}

/// The first seizure alert after each burst onset old enough to have been alerted by `now`
/// (final points lag ~270 s by design).
fn onset_latencies(
    onsets: &[(String, i64)],
    seen: &[probes::SeenAlert],
    now: i64,
) -> Vec<AlertLatency> {
    let mut latencies = Vec::new();
    // Only bursts old enough to have been alerted by now: final points lag ~270 s by design.
    let horizon_ns = (ALERT_HORIZON_S * 1e9) as i64;
    for (patient, onset_ns) in onsets.iter().filter(|(_, t)| *t < now - horizon_ns) {
        let alert = seen
            .iter()
            .filter(|a| &a.patient_id == patient && a.at_ns >= *onset_ns)
            .min_by_key(|a| a.at_ns);
        latencies.push(AlertLatency {
            patient_id: patient.clone(),
            onset_ns: *onset_ns,
            alert_ns: alert.map(|a| a.at_ns),
            latency_s: alert.map(|a| (a.at_ns - onset_ns) as f64 / 1e9),
            patients_running: alert.map(|a| a.patients_running),
        });
    }
    latencies
}

/// Margin past `inference.idle_evict_s` for its watermark poll, tick and the finished
/// streams' last publishes.
const IDLE_EVICT_MARGIN_S: f64 = 15.0;

/// The ramp, then the final phase. Seizure alerts are read on `vigil.alerts` through `bus`,
/// or, without one (the bus is inside `vigil standalone`), from the dashboard's live view.
pub async fn ramp(bench: &Bench, bus: Option<Bus>) -> anyhow::Result<serde_json::Value> {
    let args = &bench.args;
    let (path, sim) = simulator(args)?;

    let stop = CancellationToken::new();
    let alerts = probes::AlertLog::default();
    let alerts_in_view = match bus {
        Some(bus) => {
            let group = format!("vigil-loadbench-{}", bench.run);
            probes::watch_alerts(bus, group, alerts.clone(), stop.clone()).await?;
            None
        }
        None => Some(alerts.clone()),
    };
    let cookie = probes::login(
        &bench.dashboard_addr,
        &bench.clinician.1,
        &bench.clinician.2,
    )
    .await?;
    let stream_url = format!("ws://{}/v1/stream", bench.ingest_addr);
    let mut cohorts: Vec<Cohort> = Vec::new();
    // (patient, onset UTC ns) of every burst in a real-time phase.
    let mut onsets: Vec<(String, i64)> = Vec::new();
    let mut steps = Vec::new();
    let mut live_stop = CancellationToken::new();
    let mut best: Option<usize> = None;
    let mut last_n = 0;
    for &n in &args.patients {
        if n <= last_n {
            continue;
        }
        eprintln!("--- {n} patients: warming up {} new", n - last_n);
        let specs = bench.add_patients(last_n, n).await?;
        let cohort = Cohort::start(
            sim.clone(),
            specs,
            &stream_url,
            WARMUP_S,
            args.warmup_speed,
            bench.observed.clone(),
        );
        wait_warm(&cohort, args.warmup_speed, n).await;
        cohorts.push(cohort);
        last_n = n;
        alerts.running.store(n, Ordering::SeqCst);
        let limit = n as f64 * RECORDS_PER_PATIENT_S * 2.0;
        let drain_s = match bench.drain(limit).await {
            Ok(s) => s,
            Err(e) => {
                eprintln!("{n} patients: {e:#}");
                steps.push(serde_json::json!({"patients": n, "sustained": false, "reasons": [format!("{e:#}")]}));
                break;
            }
        };
        // Release the new cohort into real time.
        if let Some(c) = cohorts.last() {
            onsets.extend(release(c, &sim));
        }
        live_stop.cancel();
        live_stop = stop.child_token();
        let patients = patient_ids(&cohorts);
        let view = alerts_in_view.clone();
        probes::live_view(
            &bench.dashboard_addr,
            &cookie,
            &patients,
            live_stop.clone(),
            view,
        )
        .await?;
        // Let the new streams and the new socket settle before measuring.
        tokio::time::sleep(Duration::from_secs(5)).await;
        let step = bench.measure(n, "ramp", args.measure_s, drain_s).await?;
        print_step(&step);
        let ok = step.sustained;
        steps.push(serde_json::to_value(&step)?);
        if !ok {
            break;
        }
        best = Some(n);
    }

    // Final phase: back to the largest sustained load, measured longer; the bursts' alerts
    // (about 300 s after onset by the model's design) arrive here.
    let mut final_step = None;
    if let (Some(n), true) = (best, args.final_s > 0.0) {
        shrink_to(&mut cohorts, &mut onsets, n).await;
        alerts.running.store(n, Ordering::SeqCst);
        eprintln!("--- final: {n} patients for {} s", args.final_s);
        let live = patient_ids(&cohorts);
        live_stop.cancel();
        live_stop = stop.child_token();
        let view = alerts_in_view.clone();
        probes::live_view(
            &bench.dashboard_addr,
            &cookie,
            &live,
            live_stop.clone(),
            view,
        )
        .await?;
        // Dropped cohorts leave a backlog and signal-loss alerts; let that settle.
        let drain_s = bench
            .drain(n as f64 * RECORDS_PER_PATIENT_S * 2.0)
            .await
            .unwrap_or(f64::NAN);
        let step = bench.measure(n, "final", args.final_s, drain_s).await?;
        print_step(&step);
        write_plot(args, &step)?;
        final_step = Some(step);
    }
    live_stop.cancel();
    let mut device_results = Vec::new();
    for c in cohorts {
        device_results.extend(c.finish().await);
    }
    // Give the last alerts a moment to be read.
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.cancel();
    let quiet = if args.quiet_s > 0.0 {
        // The bench's stages run inference's default idle eviction.
        let evicted =
            vigil_core::config::InferenceConfig::default().idle_evict_s + IDLE_EVICT_MARGIN_S;
        eprintln!(
            "--- quiet: {evicted} s for inference to evict every patient, then {} s measured",
            args.quiet_s
        );
        tokio::time::sleep(Duration::from_secs_f64(evicted)).await;
        let step = bench.measure(0, "quiet", args.quiet_s, 0.0).await?;
        print_step(&step);
        Some(step)
    } else {
        None
    };

    let seen = alerts.seen.lock().map(|a| a.clone()).unwrap_or_default();
    let mut report = summarize(
        bench,
        &path,
        &sim,
        RampOutcome {
            best,
            steps,
            final_step,
            latencies: onset_latencies(&onsets, &seen, vigil_core::time::now_ns()),
            device_results,
        },
    );
    if let Some(quiet) = quiet {
        report["quiet"] = serde_json::to_value(quiet)?;
    }
    Ok(report)
}
