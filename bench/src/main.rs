//! `vigil-loadbench`: the end-to-end load benchmark (see the crate documentation in lib.rs and
//! bench/README.md). A manual command: it starts a broker, a database and four Vigil
//! processes, and takes about 15-25 minutes.

mod config;
mod hops;
mod ingest_only;
mod load;
mod ramp;
mod report;
mod standalone;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Parser;
use tokio::time::Instant;
use vigil_bench::histogram::Histogram;
use vigil_bench::lag::{judge, LagCriterion, LagSample};
use vigil_bench::plot;
use vigil_bench::probes;
use vigil_bench::proc_stats::{self, ProcSample};
use vigil_bench::services::{self, Service};
use vigil_core::bus::{Bus, Topic};
use vigil_core::config::BusConfig;
use vigil_ingest::{DeviceDirectory, NewDevice, SqlDeviceDirectory};
use vigil_storage::{Role, Store};

use config::{configure, ConfigValues};
use load::{Observed, PatientSpec, RECORDS_PER_PATIENT_S};
use report::{ProcUsage, StepResult};

/// End-to-end load benchmark of Vigil (manual; never run in CI).
#[derive(Debug, Parser)]
#[command(name = "vigil-loadbench", version)]
struct Args {
    /// The release `vigil` binary.
    #[arg(long, default_value = "target/release/vigil")]
    vigil: PathBuf,
    /// tansu binary (started on sqlite storage in the work dir), unless --kafka is given.
    #[arg(long)]
    tansu: Option<PathBuf>,
    /// Use this running broker (host:port) instead of starting tansu.
    #[arg(long)]
    kafka: Option<String>,
    /// Use this MySQL/MariaDB database URL instead of a fresh `vigil_bench_<id>` database
    /// created as root over the local socket.
    #[arg(long)]
    database_url: Option<String>,
    /// Recording (absolute, or relative to the scripts/fetch-data dir).
    #[arg(long, default_value = "biosignalsnotebooks/S001R02.edf")]
    recording: PathBuf,
    /// EEG channels per patient (the first N signals of the recording).
    #[arg(long, default_value_t = 23)]
    channels: usize,
    /// EEG rate sent (the recording is resampled to it).
    #[arg(long, default_value_t = 256.0)]
    rate_hz: f64,
    /// Patient counts of the ramp, ascending; it stops at the first step not sustained.
    #[arg(long, value_delimiter = ',', default_value = "2,4,8,12,16,24,32,48")]
    patients: Vec<usize>,
    /// Measuring period per step, seconds (a multiple of the model step works best).
    #[arg(long, default_value_t = 120.0)]
    measure_s: f64,
    /// Speed of each new patient's warm-up (the model's first 300 s of context).
    #[arg(long, default_value_t = 10.0)]
    warmup_speed: f64,
    /// Longest wait for the warm-up backlog to drain before a step is measured, seconds.
    #[arg(long, default_value_t = 240.0)]
    drain_timeout_s: f64,
    /// After the ramp, keep the largest sustained load this long (seconds) and measure it
    /// again; the seizure alerts of the injected bursts arrive in this phase (0 = skip).
    #[arg(long, default_value_t = 330.0)]
    final_s: f64,
    /// Synthetic burst, seconds of signal after the warm-up (real-time phase).
    #[arg(long, default_value_t = 20.0)]
    burst_after_s: f64,
    /// Burst length, seconds.
    #[arg(long, default_value_t = 30.0)]
    burst_s: f64,
    /// Start every patient of a ramp step at the same instant, so all their model windows
    /// fall due together every 20 s (the worst case). By default each patient's stream starts
    /// at its own point of the 20 s step, as devices connected at independent times do.
    #[arg(long)]
    aligned_windows: bool,
    /// Models manifest and weights directory (`vigil models fetch`).
    #[arg(long, default_value = "models")]
    models_dir: PathBuf,
    /// Write the results here as JSON.
    #[arg(long, default_value = "loadbench-results.json")]
    out: PathBuf,
    /// Stages to start (all four by default; a subset measures less of the pipeline, and the
    /// storage group's lag only counts when `store` runs).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "ingest,infer,store,dashboard"
    )]
    stages: Vec<String>,
    /// Keep the work directory (logs, config, broker data) and the database.
    #[arg(long)]
    keep: bool,
    /// Draw the final phase's consumer lag and per-process memory over time into this SVG
    /// (the soak chart of docs/RELIABILITY.md).
    #[arg(long)]
    plot: Option<PathBuf>,
    /// Before the ramp, measure this many seconds with no device connected: the CPU every
    /// process spends idle (docs/RELIABILITY.md "Idle broker load"); 0 = skip.
    #[arg(long, default_value_t = 0.0)]
    idle_s: f64,
    /// Only the idle measurement, no ramp.
    #[arg(long)]
    idle_only: bool,
    /// After the ramp, with every device disconnected and every patient evicted from
    /// inference (`inference.idle_evict_s` of the bench's config plus a margin), measure this
    /// many seconds: the idle cost of consumers whose partitions had traffic (what
    /// `bus.idle_pause_ms` can save, docs/RELIABILITY.md "Idle broker load"); 0 = skip.
    #[arg(long, default_value_t = 0.0)]
    quiet_s: f64,
    /// Partitions per topic (`bus.partitions` of every stage and of `vigil topics create`).
    #[arg(long, default_value_t = BusConfig::default().partitions)]
    partitions: i32,
    /// Load the ingest path alone: every patient one device POSTing a 1 s JSON chunk per
    /// second, open loop, to `vigil ingest` with `vigil store` behind it (bench/README.md
    /// "Ingest only").
    #[arg(long)]
    ingest_only: bool,
    /// With --ingest-only: load the comparison peer started by this script (bench/peer/run)
    /// instead of Vigil.
    #[arg(long, requires = "ingest_only")]
    peer: Option<PathBuf>,
    /// Run every stage in one `vigil standalone` process on its embedded bus (memory://)
    /// instead of four processes and a broker; lag is read from its `/metrics` and seizure
    /// alerts from the dashboard's live view (bench/README.md "One process").
    #[arg(long, conflicts_with_all = ["kafka", "tansu", "ingest_only", "stages"])]
    single_process: bool,
}

/// The idle phase (`--idle-s`): CPU and memory of every process with no device connected.
async fn measure_idle(bench: &Bench) -> anyhow::Result<Option<StepResult>> {
    if bench.args.idle_s <= 0.0 {
        return Ok(None);
    }
    eprintln!("--- idle: {} s with no device connected", bench.args.idle_s);
    let step = bench.measure(0, "idle", bench.args.idle_s, 0.0).await?;
    report::print_step(&step);
    Ok(Some(step))
}

const WARMUP_S: f64 = 300.0;
const MODEL_STEP_S: f64 = 20.0;
/// Bursts younger than this at the end are not counted: their alert is not due yet.
const ALERT_HORIZON_S: f64 = 330.0;
const SAMPLE_EVERY: Duration = Duration::from_secs(2);

/// What [`Bench::sample`] collected over a measuring period.
struct Sampled {
    inference: Vec<LagSample>,
    storage: Vec<LagSample>,
    rss_sum: Vec<f64>,
    rss_peak: Vec<u64>,
    rss_n: usize,
    rss_samples: Vec<(f64, Vec<f64>)>,
    vigil_rss_sum: f64,
}

struct Bench {
    args: Args,
    run: String,
    stages: Vec<Service>,
    extra_pids: Vec<(String, u32)>,
    store: Store,
    directory: SqlDeviceDirectory,
    clinician: (i64, String, String),
    ingest_addr: String,
    dashboard_addr: String,
    lag: probes::LagSource,
    ticks_per_s: f64,
    observed: Arc<Observed>,
    idle_rss: u64,
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn ticks_per_s() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

fn mib(bytes: f64) -> f64 {
    bytes / 1024.0 / 1024.0
}

fn quantile_ms(h: &Option<Histogram>, q: f64) -> Option<f64> {
    h.as_ref().and_then(|h| h.quantile(q)).map(|s| s * 1e3)
}

impl Bench {
    fn monitored(&self) -> Vec<(String, u32)> {
        self.stages
            .iter()
            .filter_map(|s| Some((s.name.clone(), s.pid()?)))
            .chain(self.extra_pids.iter().cloned())
            .collect()
    }

    fn vigil_rss(&self) -> u64 {
        self.stages
            .iter()
            .filter(|s| s.name != "broker")
            .filter_map(|s| proc_stats::read(s.pid()?, self.ticks_per_s))
            .map(|p| p.rss_bytes)
            .sum()
    }

    async fn lag_now(&self) -> anyhow::Result<(f64, f64)> {
        let lags = self
            .lag
            .sample(&["vigil-inference", "vigil-storage"])
            .await?;
        Ok((lags[0], lags[1]))
    }

    /// Where `stage` (`ingest`, `infer`, `store`, `dashboard`) serves `/metrics`: its own
    /// process, or the one process of `--single-process` (every stage's metrics on each page).
    fn metrics_addr(&self, stage: &str) -> Option<String> {
        self.stages
            .iter()
            .find(|s| s.name == stage || s.name == standalone::NAME)
            .and_then(|s| s.addr.clone())
    }

    async fn dashboard_metrics(&self) -> (Option<Histogram>, Option<Histogram>) {
        let page = services::get(&self.dashboard_addr, "/metrics")
            .await
            .map(|(_, body)| body)
            .unwrap_or_default();
        let name = "vigil_dashboard_push_latency_seconds";
        (
            Histogram::parse(&page, name, &[("record", "trace")]),
            Histogram::parse(&page, name, &[("record", "hr")]),
        )
    }

    /// Registers devices and assigns the clinician for patients `from..to` (1-based ids).
    async fn add_patients(&self, from: usize, to: usize) -> anyhow::Result<Vec<PatientSpec>> {
        let mut out = Vec::new();
        for i in from..to {
            let patient_id = format!("bench-{}-p{}", self.run, i + 1);
            let offset_s = (i as f64 * 0.5) % MODEL_STEP_S;
            let device = |kind: &str, eeg: bool| {
                let device_id = format!("bench-{}-{kind}{}", self.run, i + 1);
                let new = NewDevice {
                    device_id: device_id.clone(),
                    patient_id: patient_id.clone(),
                    sample_rate_hz: eeg.then_some(self.args.rate_hz),
                    channels: None,
                };
                async move {
                    let token = self.directory.register(&new).await?;
                    anyhow::Ok((device_id, token.expose().to_owned()))
                }
            };
            let eeg_device = device("eeg", true).await?;
            let hr_device = device("hr", false).await?;
            self.store.assign(self.clinician.0, &patient_id).await?;
            out.push(PatientSpec {
                patient_id,
                eeg_device,
                hr_device,
                // Distinct samples per patient, bursts still inside the real-time phase.
                offset_s,
                phase_s: if self.args.aligned_windows {
                    0.0
                } else {
                    MODEL_STEP_S - offset_s
                },
            });
        }
        Ok(out)
    }

    /// Waits until both groups' lag is below `limit` records; seconds waited, or an error.
    async fn drain(&self, limit: f64) -> anyhow::Result<f64> {
        let started = Instant::now();
        loop {
            let (inference, storage) = self.lag_now().await?;
            if inference <= limit && storage <= limit {
                return Ok(started.elapsed().as_secs_f64());
            }
            if started.elapsed().as_secs_f64() > self.args.drain_timeout_s {
                bail!(
                    "warm-up backlog not drained in {} s (lag: inference {inference}, storage {storage}, limit {limit:.0})",
                    self.args.drain_timeout_s
                );
            }
            tokio::time::sleep(SAMPLE_EVERY).await;
        }
    }

    /// Samples lag and memory every [`SAMPLE_EVERY`] from `start` until `period_s` passed.
    async fn sample(&self, pids: &[(String, u32)], start: Instant, period_s: f64) -> Sampled {
        let mut rss_sum = vec![0f64; pids.len()];
        let mut rss_peak = vec![0u64; pids.len()];
        let mut rss_n = 0usize;
        let mut rss_samples = Vec::new();
        let mut inference = Vec::new();
        let mut storage = Vec::new();
        let mut vigil_rss_sum = 0f64;
        while start.elapsed().as_secs_f64() < period_s {
            let t_s = start.elapsed().as_secs_f64();
            match self.lag_now().await {
                Ok((i, s)) => {
                    inference.push(LagSample { t_s, lag: i });
                    storage.push(LagSample { t_s, lag: s });
                }
                Err(e) => eprintln!("lag sample failed: {e:#}"),
            }
            let mut rss_now = Vec::new();
            for (k, (_, pid)) in pids.iter().enumerate() {
                let sample = proc_stats::read(*pid, self.ticks_per_s);
                if let Some(p) = sample {
                    rss_sum[k] += p.rss_bytes as f64;
                    rss_peak[k] = rss_peak[k].max(p.rss_bytes);
                }
                rss_now.push(sample.map_or(f64::NAN, |p| mib(p.rss_bytes as f64)));
            }
            rss_samples.push((t_s, rss_now));
            vigil_rss_sum += self.vigil_rss() as f64;
            rss_n += 1;
            tokio::time::sleep(SAMPLE_EVERY).await;
        }
        Sampled {
            inference,
            storage,
            rss_sum,
            rss_peak,
            rss_n,
            rss_samples,
            vigil_rss_sum,
        }
    }

    /// p99 of how late devices sent their chunks within the last `elapsed` seconds.
    fn send_lateness_p99(&self, elapsed: f64) -> Option<f64> {
        let window_start = Instant::now() - Duration::from_secs_f64(elapsed);
        let mut lateness: Vec<f64> = self
            .observed
            .lateness
            .lock()
            .map(|l| {
                l.iter()
                    .filter(|(t, _)| *t >= window_start)
                    .map(|(_, s)| *s)
                    .collect()
            })
            .unwrap_or_default();
        lateness.sort_by(f64::total_cmp);
        (!lateness.is_empty()).then(|| lateness[((lateness.len() - 1) as f64 * 0.99) as usize])
    }

    /// Measures `period_s` of steady load at `n` patients.
    async fn measure(
        &self,
        n: usize,
        phase: &'static str,
        period_s: f64,
        drain_s: f64,
    ) -> anyhow::Result<StepResult> {
        let pids = self.monitored();
        let (trace0, hr0) = self.dashboard_metrics().await;
        let hops0 = hops::scrape(|stage| self.metrics_addr(stage), &hops::HOPS).await;
        let provisional0 = hops::scrape(|stage| self.metrics_addr(stage), &hops::PROVISIONAL).await;
        let start = Instant::now();
        let first: Vec<Option<ProcSample>> = pids
            .iter()
            .map(|(_, pid)| proc_stats::read(*pid, self.ticks_per_s))
            .collect();
        let sampled = self.sample(&pids, start, period_s).await;
        let Sampled {
            inference,
            storage,
            rss_sum,
            rss_peak,
            rss_n,
            rss_samples,
            vigil_rss_sum,
        } = sampled;
        let elapsed = start.elapsed().as_secs_f64();
        let (trace1, hr1) = self.dashboard_metrics().await;
        let hops = hops::between(
            &hops::HOPS,
            &hops0,
            hops::scrape(|stage| self.metrics_addr(stage), &hops::HOPS).await,
        );
        let provisional = hops::between(
            &hops::PROVISIONAL,
            &provisional0,
            hops::scrape(|stage| self.metrics_addr(stage), &hops::PROVISIONAL).await,
        );
        let trace = trace1.map(|h| h.since(trace0.as_ref()));
        let hr = hr1.map(|h| h.since(hr0.as_ref()));
        let mut processes = Vec::new();
        let mut vigil_cores = 0.0;
        for (k, (name, pid)) in pids.iter().enumerate() {
            let last = proc_stats::read(*pid, self.ticks_per_s);
            let cores = match (first[k], last) {
                (Some(a), Some(b)) => (b.cpu_s - a.cpu_s) / elapsed,
                _ => f64::NAN,
            };
            if !matches!(name.as_str(), "broker" | "mariadbd") {
                vigil_cores += cores;
            }
            processes.push(ProcUsage {
                name: name.clone(),
                cores,
                avg_rss_mib: mib(rss_sum[k] / rss_n.max(1) as f64),
                peak_rss_mib: mib(rss_peak[k] as f64),
            });
        }
        let criterion = LagCriterion::for_patients(n, RECORDS_PER_PATIENT_S, 3.0, MODEL_STEP_S);
        let inference_lag = judge(&inference, elapsed, MODEL_STEP_S, criterion);
        let storage_lag = judge(&storage, elapsed, MODEL_STEP_S, criterion);
        let send_lateness_p99_s = self.send_lateness_p99(elapsed);
        let mut reasons = Vec::new();
        for (name, v) in [("inference", &inference_lag), ("storage", &storage_lag)] {
            if let Some(r) = &v.reason {
                reasons.push(format!("{name}: {r}"));
            }
        }
        if send_lateness_p99_s.is_some_and(|l| l > 2.0) {
            reasons.push(format!(
                "devices could not send in time (p99 {:.1} s late): ingest back-pressure",
                send_lateness_p99_s.unwrap_or(0.0)
            ));
        }
        let vigil_rss_avg = vigil_rss_sum / rss_n.max(1) as f64;
        let rss_growth_mib_per_min = pids
            .iter()
            .enumerate()
            .map(|(k, (name, _))| {
                let points: Vec<(f64, f64)> = rss_samples
                    .iter()
                    .map(|(t, v)| (*t, v[k]))
                    .filter(|(_, v)| v.is_finite())
                    .collect();
                (name.clone(), plot::slope(&points).map(|s| s * 60.0))
            })
            .collect();
        Ok(StepResult {
            patients: n,
            phase,
            sustained: reasons.is_empty(),
            reasons,
            drain_s,
            measure_s: elapsed,
            lag_samples: inference
                .iter()
                .zip(&storage)
                .map(|(i, s)| (i.t_s, i.lag, s.lag))
                .collect(),
            inference_lag,
            storage_lag,
            trace_latency_p50_ms: quantile_ms(&trace, 0.5),
            trace_latency_p99_ms: quantile_ms(&trace, 0.99),
            trace_latency_p99_bucket_ms: trace
                .as_ref()
                .and_then(|h| h.quantile_bound(0.99))
                .map(|s| s * 1e3),
            trace_pushes: trace.as_ref().map_or(0.0, |h| h.count),
            hops,
            provisional_to_final: provisional,
            hr_latency_p50_ms: quantile_ms(&hr, 0.5),
            hr_latency_p99_ms: quantile_ms(&hr, 0.99),
            send_lateness_p99_s,
            processes,
            rss_samples,
            rss_growth_mib_per_min,
            vigil_cores_per_patient: vigil_cores / n as f64,
            vigil_rss_mib_per_patient: mib(vigil_rss_avg) / n as f64,
            vigil_rss_mib_per_patient_marginal: mib(vigil_rss_avg - self.idle_rss as f64)
                / n as f64,
            loadavg: loadavg(),
        })
    }
}

fn absolute(p: &Path) -> anyhow::Result<PathBuf> {
    Ok(if p.is_absolute() {
        p.to_owned()
    } else {
        std::env::current_dir()?.join(p)
    })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let run = uuid::Uuid::new_v4().simple().to_string()[..8].to_owned();
    let work_dir = tempfile::Builder::new()
        .prefix("vigil-loadbench-")
        .tempdir()?;
    let work = work_dir.path().to_owned();
    eprintln!("run {run}, work dir {}", work.display());
    let vigil = absolute(&args.vigil)?;
    if !vigil.is_file() && args.peer.is_none() {
        bail!(
            "{} not found: build it with `cargo build --release --workspace --bins`",
            vigil.display()
        );
    }

    // Broker.
    let mut infra = Vec::new();
    let kafka = match &args.kafka {
        Some(k) => k.clone(),
        // The peer has no broker, and one process has its own.
        None if args.peer.is_some() || args.single_process => String::new(),
        None => {
            let port = services::free_port()?;
            let tansu = args.tansu.clone().unwrap_or_else(services::default_tansu);
            let dir = work.join("broker");
            std::fs::create_dir_all(&dir)?;
            let mut broker = services::start_broker(&tansu, &dir, port)?;
            broker.wait_ready(Duration::from_secs(30), false).await?;
            infra.push(broker);
            format!("127.0.0.1:{port}")
        }
    };
    // Database.
    let (db_name, db_url) = match &args.database_url {
        Some(url) => (None, url.clone()),
        None => {
            let (name, url) = services::create_database(&run)?;
            (Some(name), url)
        }
    };

    let result = if args.ingest_only {
        run_ingest_only(args, run, work.clone(), vigil, kafka, db_url, infra).await
    } else {
        run_bench(args, run, work.clone(), vigil, kafka, db_url, infra).await
    };
    if let Some(name) = db_name {
        if result.as_ref().is_ok_and(|keep| *keep) {
            eprintln!("kept database {name}");
        } else if let Err(e) = services::mysql_root(&format!("DROP DATABASE `{name}`")) {
            eprintln!("could not drop database {name}: {e:#}");
        }
    }
    match result {
        Ok(true) => {
            let kept = work_dir.keep();
            eprintln!("kept work dir {}", kept.display());
            Ok(())
        }
        Ok(false) => Ok(()),
        Err(e) => {
            let kept = work_dir.keep();
            eprintln!("logs kept in {}", kept.display());
            Err(e)
        }
    }
}

/// Starts the selected stages, each once it is ready; on failure stops those started.
async fn start_stages(
    args: &Args,
    vigil: &Path,
    config_arg: &str,
    work: &Path,
    values: &ConfigValues,
) -> anyhow::Result<Vec<Service>> {
    if args.single_process {
        return Ok(vec![
            standalone::start(vigil, config_arg, work, values).await?,
        ]);
    }
    let mut stages = Vec::new();
    for (name, sub, addr) in [
        ("ingest", "ingest", &values.ingest),
        ("infer", "infer", &values.infer),
        ("store", "store", &values.store),
        ("dashboard", "dashboard", &values.dashboard),
    ] {
        if !args.stages.iter().any(|s| s == name) {
            continue;
        }
        let mut s = Service::spawn(
            name,
            vigil,
            &["--config", config_arg, sub],
            work,
            Some(addr.clone()),
        )?;
        if let Err(e) = s.wait_ready(Duration::from_secs(120), true).await {
            s.stop(Duration::from_secs(5)).await;
            for s in stages {
                Service::stop(s, Duration::from_secs(10)).await;
            }
            return Err(e);
        }
        eprintln!("{name} ready on {addr}");
        stages.push(s);
    }
    Ok(stages)
}

/// The consumer groups whose lag the bench follows: inference, and storage when it runs.
fn lag_groups(bus: &Bus, stages: &[String]) -> Vec<(&'static str, Vec<String>)> {
    let mut groups = vec![(
        "vigil-inference",
        vec![bus.topic(Topic::EegRaw), bus.topic(Topic::HrRaw)],
    )];
    if stages.iter().any(|s| s == "store") {
        groups.push((
            "vigil-storage",
            vigil_storage::consumer::CONSUMED_TOPICS
                .iter()
                .map(|t| bus.topic(*t))
                .collect(),
        ));
    }
    groups
}

/// `--ingest-only`: Vigil's ingest and store stages, or the peer, under the HTTP ramp.
async fn run_ingest_only(
    mut args: Args,
    run: String,
    work: PathBuf,
    vigil: PathBuf,
    kafka: String,
    db_url: String,
    mut infra: Vec<Service>,
) -> anyhow::Result<bool> {
    let target = match &args.peer {
        Some(script) => {
            let script = ingest_only::peer_script(script)?;
            ingest_only::start_peer(&script, &work, &db_url).await?
        }
        None => {
            args.stages = vec!["ingest".to_owned(), "store".to_owned()];
            let (values, config_arg) = configure(&args, &work, &vigil, &kafka, &db_url).await?;
            Store::connect(&db_url)
                .await
                .context("storage schema")?
                .close()
                .await;
            let stages = start_stages(&args, &vigil, &config_arg, &work, &values).await?;
            ingest_only::Target::Vigil {
                stages,
                broker: infra.first().and_then(Service::pid),
            }
        }
    };
    let outcome = ingest_only::ramp(&args, &run, target, &db_url).await;
    for s in infra.drain(..) {
        s.stop(Duration::from_secs(10)).await;
    }
    let report = outcome?;
    std::fs::write(&args.out, serde_json::to_string_pretty(&report)?)
        .with_context(|| format!("write {}", args.out.display()))?;
    eprintln!("wrote {}", args.out.display());
    if report["stored_all"] != serde_json::Value::Bool(true) {
        bail!(
            "not every accepted chunk was stored (see {})",
            args.out.display()
        );
    }
    Ok(args.keep)
}

async fn run_bench(
    args: Args,
    run: String,
    work: PathBuf,
    vigil: PathBuf,
    kafka: String,
    db_url: String,
    mut infra: Vec<Service>,
) -> anyhow::Result<bool> {
    let (values, config_arg) = configure(&args, &work, &vigil, &kafka, &db_url).await?;
    let store = Store::connect(&db_url).await.context("storage schema")?;
    let directory = SqlDeviceDirectory::connect(&db_url).await?;
    let password = format!("{}", uuid::Uuid::new_v4().simple());
    let username = format!("bench-clinician-{run}");
    let user = store
        .create_user(&username, &password, Role::Clinician)
        .await?;

    let stages = start_stages(&args, &vigil, &config_arg, &work, &values).await?;
    let mut extra_pids = Vec::new();
    if let Some(pid) = infra.first().and_then(Service::pid) {
        extra_pids.push(("broker".to_owned(), pid));
    }
    if let Some(pid) = proc_stats::find_by_name("mariadbd") {
        extra_pids.push(("mariadbd".to_owned(), pid));
    }

    let (bus, lag) = if args.single_process {
        let lag = probes::LagSource::Metrics(values.infer.clone());
        (None, lag)
    } else {
        let bus_config = BusConfig {
            url: format!("kafka://{kafka}"),
            partitions: args.partitions,
            ..BusConfig::default()
        };
        let bus = Bus::connect(&bus_config).await?;
        let groups = lag_groups(&bus, &args.stages);
        let probe = probes::LagProbe::new(&kafka, &groups, bus_config.partitions)?;
        (Some(bus), probes::LagSource::Kafka(Arc::new(probe)))
    };
    let mut bench = Bench {
        ticks_per_s: ticks_per_s(),
        args,
        run: run.clone(),
        ingest_addr: values.ingest.clone(),
        dashboard_addr: values.dashboard.clone(),
        stages,
        extra_pids,
        store,
        directory,
        clinician: (user.id, username, password),
        lag,
        observed: Arc::new(Observed::default()),
        idle_rss: 0,
    };
    bench.idle_rss = bench.vigil_rss();
    let outcome = measure_idle(&bench).await;
    let outcome = match outcome {
        Ok(idle) if bench.args.idle_only => Ok(serde_json::json!({ "idle": idle })),
        Ok(idle) => ramp::ramp(&bench, bus).await.map(|mut report| {
            report["idle"] = serde_json::to_value(idle).unwrap_or_default();
            report
        }),
        Err(e) => Err(e),
    };
    // Stop the stages cleanly whatever happened.
    for s in std::mem::take(&mut bench.stages).into_iter().rev() {
        s.stop(Duration::from_secs(30)).await;
    }
    for s in infra.drain(..) {
        s.stop(Duration::from_secs(10)).await;
    }
    bench.directory.close().await;
    let report = outcome?;
    std::fs::write(&bench.args.out, serde_json::to_string_pretty(&report)?)
        .with_context(|| format!("write {}", bench.args.out.display()))?;
    eprintln!("wrote {}", bench.args.out.display());
    Ok(bench.args.keep)
}
