//! `--ingest-only`: the ingest path alone under an open-loop HTTP load, against Vigil
//! (`vigil ingest` -> tansu -> `vigil store` -> MariaDB) or against the comparison peer in
//! bench/peer (Flask behind gunicorn, writing each chunk to MariaDB).
//!
//! Each patient is one EEG device that POSTs a 1 s chunk (the recording's channels at the
//! bench rate, as JSON) every second on its own schedule, whether or not its earlier requests
//! were answered: open loop, as devices do, so a slow server shows as latency and overlapping
//! requests rather than as a slower sender. A step is sustained when every request sent in its
//! window was accepted, p99 latency stayed within the 1 s chunk period, and the database stored
//! chunks as fast as they were accepted. After the ramp, every accepted chunk must be stored
//! exactly once.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Context};
use serde::Serialize;
use tokio::time::Instant;
use vigil_bench::proc_stats;
use vigil_bench::services::{self, Service};
use vigil_core::CancellationToken;
use vigil_ingest::{DeviceDirectory, NewDevice, SqlDeviceDirectory};

use crate::report::ProcUsage;
use crate::{loadavg, ticks_per_s, Args};

/// Seconds of signal per chunk, and the period of each device's requests.
const CHUNK_S: f64 = 1.0;
/// Distinct chunk bodies cycled through (seconds of the recording).
const DISTINCT_CHUNKS: usize = 60;
/// How long requests sent in a window may take before they count as unanswered.
const ANSWER_GRACE: Duration = Duration::from_secs(30);
/// Settling time after devices are added, before a window opens.
const SETTLE: Duration = Duration::from_secs(10);

/// What a request got back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Answer {
    Accepted,
    /// `"duplicate"`: never right here, since no chunk is sent twice.
    Duplicate,
    /// Any other HTTP status.
    Status(u16),
    /// No HTTP answer (connection refused or reset, timeout).
    Failed,
}

/// One answered request.
struct Done {
    sent: Instant,
    latency_s: f64,
    answer: Answer,
}

/// What the device tasks share.
struct Load {
    client: reqwest::Client,
    url: String,
    done: Mutex<Vec<Done>>,
    /// Each request's send instant and how many seconds after its scheduled instant it went:
    /// one entry per request sent.
    lateness: Mutex<Vec<(Instant, f64)>>,
}

impl Load {
    /// Requests sent so far.
    fn sent(&self) -> usize {
        self.lateness.lock().map_or(0, |l| l.len())
    }

    /// Requests answered so far, and how many of them "accepted".
    fn answered(&self) -> (usize, u64) {
        self.done.lock().map_or((0, 0), |d| {
            let accepted = d.iter().filter(|x| x.answer == Answer::Accepted).count();
            (d.len(), accepted as u64)
        })
    }
}

/// The service under load.
pub enum Target {
    /// `vigil ingest` + `vigil store` on tansu (whose pid is measured too); rows in
    /// `eeg_chunks`.
    Vigil {
        stages: Vec<Service>,
        broker: Option<u32>,
    },
    /// bench/peer's gunicorn; rows in `peer_eeg_chunks`.
    Peer { server: Box<Service> },
}

impl Target {
    /// Where devices send.
    fn addr(&self) -> Option<String> {
        match self {
            Target::Vigil { stages, .. } => stages
                .iter()
                .find(|s| s.name == "ingest")
                .and_then(|s| s.addr.clone()),
            Target::Peer { server } => server.addr.clone(),
        }
    }

    fn table(&self) -> &'static str {
        match self {
            Target::Vigil { .. } => "eeg_chunks",
            Target::Peer { .. } => "peer_eeg_chunks",
        }
    }

    fn name(&self) -> &'static str {
        match self {
            Target::Vigil { .. } => "vigil",
            Target::Peer { .. } => "peer",
        }
    }

    /// `(name, pid, whole process tree)` of every server process.
    fn processes(&self) -> Vec<(String, u32, bool)> {
        match self {
            Target::Vigil { stages, broker } => stages
                .iter()
                .filter_map(|s| Some((s.name.clone(), s.pid()?, false)))
                .chain(broker.map(|pid| ("broker".to_owned(), pid, false)))
                .collect(),
            Target::Peer { server } => server
                .pid()
                .map(|pid| ("peer (gunicorn, all workers)".to_owned(), pid, true))
                .into_iter()
                .collect(),
        }
    }

    async fn stop(self) {
        match self {
            Target::Vigil { stages, .. } => {
                for s in stages.into_iter().rev() {
                    s.stop(Duration::from_secs(30)).await;
                }
            }
            Target::Peer { server } => server.stop(Duration::from_secs(10)).await,
        }
    }
}

/// Starts the peer (`--peer`, bench/peer/run) on a free port against `db_url`.
pub async fn start_peer(run_script: &Path, work: &Path, db_url: &str) -> anyhow::Result<Target> {
    let addr = format!("127.0.0.1:{}", services::free_port()?);
    let mut server = Service::spawn_with_env(
        "peer",
        run_script,
        &[],
        &[("PEER_BIND", &addr), ("PEER_DATABASE_URL", db_url)],
        work,
        Some(addr.clone()),
    )?;
    // The first start builds the peer's virtualenv.
    server
        .wait_ready_at(Duration::from_secs(300), Some("/healthz"))
        .await?;
    eprintln!("peer ready on {addr}");
    Ok(Target::Peer {
        server: Box::new(server),
    })
}

/// One measured step.
#[derive(Debug, Serialize)]
struct IngestStep {
    patients: usize,
    sustained: bool,
    reasons: Vec<String>,
    measure_s: f64,
    sent: u64,
    accepted: u64,
    duplicate: u64,
    refused: Vec<(u16, u64)>,
    failed: u64,
    unanswered: u64,
    /// Accepted samples per second (chunks x channels x samples per chunk).
    samples_per_s: f64,
    latency_p50_ms: Option<f64>,
    latency_p99_ms: Option<f64>,
    latency_max_ms: Option<f64>,
    send_lateness_p99_ms: Option<f64>,
    /// Rows the database gained per second in the window, against chunks accepted per second.
    stored_per_s: f64,
    accepted_per_s: f64,
    processes: Vec<ProcUsage>,
    loadavg: String,
}

fn quantile(sorted: &[f64], q: f64) -> Option<f64> {
    (!sorted.is_empty()).then(|| sorted[((sorted.len() - 1) as f64 * q).round() as usize])
}

/// The recording's first [`DISTINCT_CHUNKS`] seconds as JSON `samples` arrays.
fn chunk_bodies(args: &Args) -> anyhow::Result<(Vec<String>, Vec<String>, usize)> {
    let (_, sim) = crate::ramp::simulator(args)?;
    let per_chunk = (sim.rate_hz() * CHUNK_S).round() as usize;
    let rows = sim.samples();
    let mut bodies = Vec::new();
    for k in 0..DISTINCT_CHUNKS {
        let from = (k * per_chunk) % (sim.len() - per_chunk);
        let chunk: Vec<&[f32]> = rows.iter().map(|r| &r[from..from + per_chunk]).collect();
        bodies.push(serde_json::to_string(&chunk)?);
    }
    Ok((bodies, sim.channels().to_vec(), per_chunk))
}

/// A registered EEG device.
struct Device {
    patient_id: String,
    device_id: String,
    token: String,
}

/// Streams one device until `cancel`: a request every [`CHUNK_S`], first at `phase`.
fn spawn_device(
    load: Arc<Load>,
    device: Device,
    prefix: Arc<String>,
    bodies: Arc<Vec<String>>,
    phase: Duration,
    cancel: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let stream_id = uuid::Uuid::new_v4();
        let auth = format!("Bearer {}", device.token);
        let start = Instant::now() + phase;
        let t0_ns = vigil_core::time::now_ns() + phase.as_nanos() as i64;
        for seq in 0u64.. {
            let due = start + Duration::from_secs_f64(seq as f64 * CHUNK_S);
            tokio::select! {
                () = cancel.cancelled() => return,
                () = tokio::time::sleep_until(due) => {}
            }
            let now = Instant::now();
            if let Ok(mut l) = load.lateness.lock() {
                l.push((now, (now - due).as_secs_f64()));
            }
            // The chunk's last sample is "now": it starts one chunk earlier.
            let start_ns = t0_ns + ((seq as f64 - 1.0) * CHUNK_S * 1e9) as i64;
            let body = format!(
                r#"{{"patient_id":"{}","device_id":"{}","stream_id":"{stream_id}","seq":{seq},"start_ns":{start_ns},{prefix}"samples":{}}}"#,
                device.patient_id,
                device.device_id,
                bodies[seq as usize % bodies.len()],
            );
            let request = load
                .client
                .post(&load.url)
                .header("authorization", &auth)
                .header("content-type", "application/json")
                .body(body);
            let load = load.clone();
            tokio::spawn(async move {
                let answer = match request.send().await {
                    Ok(r) if r.status().as_u16() == 202 => {
                        let text = r.text().await.unwrap_or_default();
                        if text.contains(r#""status":"accepted""#)
                            || text.contains(r#""status": "accepted""#)
                        {
                            Answer::Accepted
                        } else {
                            Answer::Duplicate
                        }
                    }
                    Ok(r) => Answer::Status(r.status().as_u16()),
                    Err(_) => Answer::Failed,
                };
                let latency_s = now.elapsed().as_secs_f64();
                if let Ok(mut d) = load.done.lock() {
                    d.push(Done {
                        sent: now,
                        latency_s,
                        answer,
                    });
                }
            });
        }
    })
}

/// Rows and distinct `(stream_id, seq)` in the target's chunk table.
async fn stored(db: &sqlx::MySqlPool, table: &str) -> anyhow::Result<(u64, u64)> {
    let (rows, distinct): (i64, i64) = sqlx::query_as(&format!(
        "SELECT COUNT(*), COUNT(DISTINCT stream_id, seq) FROM {table}"
    ))
    .fetch_one(db)
    .await
    .with_context(|| format!("count {table}"))?;
    Ok((rows as u64, distinct as u64))
}

/// CPU (cores) and RSS of `processes` between two readings.
struct CpuMeter {
    ticks_per_s: f64,
    processes: Vec<(String, u32, bool)>,
    first: Vec<Option<proc_stats::ProcSample>>,
    started: Instant,
}

impl CpuMeter {
    fn start(processes: Vec<(String, u32, bool)>) -> Self {
        let ticks_per_s = ticks_per_s();
        let first = processes
            .iter()
            .map(|(_, pid, tree)| read(*pid, *tree, ticks_per_s))
            .collect();
        CpuMeter {
            ticks_per_s,
            processes,
            first,
            started: Instant::now(),
        }
    }

    fn finish(self) -> Vec<ProcUsage> {
        let elapsed = self.started.elapsed().as_secs_f64();
        self.processes
            .iter()
            .zip(self.first)
            .map(|((name, pid, tree), first)| {
                let last = read(*pid, *tree, self.ticks_per_s);
                let cores = match (first, last) {
                    (Some(a), Some(b)) => (b.cpu_s - a.cpu_s) / elapsed,
                    _ => f64::NAN,
                };
                let rss = last.map_or(f64::NAN, |p| p.rss_bytes as f64 / 1024.0 / 1024.0);
                ProcUsage {
                    name: name.clone(),
                    cores,
                    avg_rss_mib: rss,
                    peak_rss_mib: rss,
                }
            })
            .collect()
    }
}

fn read(pid: u32, tree: bool, ticks_per_s: f64) -> Option<proc_stats::ProcSample> {
    if tree {
        proc_stats::read_tree(pid, ticks_per_s)
    } else {
        proc_stats::read(pid, ticks_per_s)
    }
}

/// Every answer to a request sent in `[from, to)`.
fn window_answers(load: &Load, from: Instant, to: Instant) -> Vec<(f64, Answer)> {
    load.done
        .lock()
        .map(|d| {
            d.iter()
                .filter(|x| x.sent >= from && x.sent < to)
                .map(|x| (x.latency_s, x.answer))
                .collect()
        })
        .unwrap_or_default()
}

/// The step's numbers from its window's answers.
#[allow(clippy::too_many_arguments)]
fn judge_step(
    patients: usize,
    measure_s: f64,
    sent: u64,
    answers: &[(f64, Answer)],
    lateness: &mut [f64],
    samples_per_chunk: f64,
    stored_per_s: f64,
    processes: Vec<ProcUsage>,
) -> IngestStep {
    let count = |a: Answer| answers.iter().filter(|(_, x)| *x == a).count() as u64;
    let accepted = count(Answer::Accepted);
    let duplicate = count(Answer::Duplicate);
    let failed = count(Answer::Failed);
    let mut refused: Vec<(u16, u64)> = Vec::new();
    for (_, a) in answers {
        if let Answer::Status(s) = a {
            match refused.iter_mut().find(|(c, _)| c == s) {
                Some((_, n)) => *n += 1,
                None => refused.push((*s, 1)),
            }
        }
    }
    let unanswered = sent.saturating_sub(answers.len() as u64);
    let mut latencies: Vec<f64> = answers.iter().map(|(l, _)| *l * 1e3).collect();
    latencies.sort_by(f64::total_cmp);
    lateness.sort_by(f64::total_cmp);
    let p99 = quantile(&latencies, 0.99);
    let accepted_per_s = accepted as f64 / measure_s;
    let mut reasons = Vec::new();
    if accepted < sent {
        reasons.push(format!(
            "{} of {sent} requests not accepted (duplicate {duplicate}, refused {refused:?}, failed {failed}, unanswered after {ANSWER_GRACE:?} {unanswered})",
            sent - accepted
        ));
    }
    if p99.is_some_and(|p| p > CHUNK_S * 1e3) {
        reasons.push(format!(
            "p99 latency {:.0} ms is over the {:.0} ms chunk period",
            p99.unwrap_or(0.0),
            CHUNK_S * 1e3
        ));
    }
    if stored_per_s < 0.95 * accepted_per_s {
        reasons.push(format!(
            "the database stored {stored_per_s:.0} chunks/s against {accepted_per_s:.0} accepted"
        ));
    }
    let send_lateness_p99_ms = quantile(lateness, 0.99).map(|s| s * 1e3);
    if send_lateness_p99_ms.is_some_and(|l| l > 250.0) {
        reasons.push(format!(
            "the load generator fell behind its schedule (p99 {:.0} ms late): the result is \
             not valid for this count",
            send_lateness_p99_ms.unwrap_or(0.0)
        ));
    }
    IngestStep {
        patients,
        sustained: reasons.is_empty(),
        reasons,
        measure_s,
        sent,
        accepted,
        duplicate,
        refused,
        failed,
        unanswered,
        samples_per_s: accepted as f64 * samples_per_chunk / measure_s,
        latency_p50_ms: quantile(&latencies, 0.5),
        latency_p99_ms: p99,
        latency_max_ms: latencies.last().copied(),
        send_lateness_p99_ms,
        stored_per_s,
        accepted_per_s,
        processes,
        loadavg: loadavg(),
    }
}

fn print_step(s: &IngestStep) {
    let f = |v: Option<f64>| v.map_or("-".into(), |v| format!("{v:.0}"));
    println!(
        "{:>5} patients: {} | sent {} accepted {} | {:.0} samples/s | latency p50 {} p99 {} max {} ms | stored {:.0}/s of {:.0}/s",
        s.patients,
        if s.sustained { "sustained" } else { "NOT sustained" },
        s.sent,
        s.accepted,
        s.samples_per_s,
        f(s.latency_p50_ms),
        f(s.latency_p99_ms),
        f(s.latency_max_ms),
        s.stored_per_s,
        s.accepted_per_s,
    );
    for p in &s.processes {
        println!(
            "        {:<30} {:>5.2} cores  {:>7.0} MiB",
            p.name, p.cores, p.avg_rss_mib
        );
    }
    for r in &s.reasons {
        println!("        not sustained: {r}");
    }
}

/// Registers `from..to` EEG devices (1-based patient numbers).
async fn register(
    directory: &SqlDeviceDirectory,
    run: &str,
    rate_hz: f64,
    from: usize,
    to: usize,
) -> anyhow::Result<Vec<Device>> {
    let mut out = Vec::with_capacity(to - from);
    for i in from..to {
        let device = Device {
            patient_id: format!("ingest-{run}-p{}", i + 1),
            device_id: format!("ingest-{run}-eeg{}", i + 1),
            token: String::new(),
        };
        let token = directory
            .register(&NewDevice {
                device_id: device.device_id.clone(),
                patient_id: device.patient_id.clone(),
                sample_rate_hz: Some(rate_hz),
                channels: None,
            })
            .await?;
        out.push(Device {
            token: token.expose().to_owned(),
            ..device
        });
    }
    Ok(out)
}

/// The ramp over `--patients` against `target`; returns the report.
pub async fn ramp(
    args: &Args,
    run: &str,
    target: Target,
    db_url: &str,
) -> anyhow::Result<serde_json::Value> {
    let result = match target.addr() {
        Some(addr) => ramp_inner(args, run, &target, &addr, db_url).await,
        None => Err(anyhow::anyhow!("the ingest path has no address")),
    };
    target.stop().await;
    result
}

async fn ramp_inner(
    args: &Args,
    run: &str,
    target: &Target,
    addr: &str,
    db_url: &str,
) -> anyhow::Result<serde_json::Value> {
    let (bodies, channels, per_chunk) = chunk_bodies(args)?;
    let prefix = Arc::new(format!(
        r#""sample_rate_hz":{:?},"channels":{},"#,
        args.rate_hz,
        serde_json::to_string(&channels)?
    ));
    let bodies = Arc::new(bodies);
    let samples_per_chunk = (channels.len() * per_chunk) as f64;
    let directory = SqlDeviceDirectory::connect(db_url).await?;
    let db = sqlx::MySqlPool::connect(db_url).await?;
    let load = Arc::new(Load {
        client: reqwest::Client::builder()
            .timeout(ANSWER_GRACE)
            .pool_max_idle_per_host(4096)
            .build()?,
        url: format!("http://{addr}/v1/eeg"),
        done: Mutex::new(Vec::new()),
        lateness: Mutex::new(Vec::new()),
    });
    let mut processes = target.processes();
    if let Some(pid) = proc_stats::find_by_name("mariadbd") {
        processes.push(("mariadbd".to_owned(), pid, false));
    }
    processes.push((
        "vigil-loadbench (load)".to_owned(),
        std::process::id(),
        false,
    ));
    let cancel = CancellationToken::new();
    let mut devices = Vec::new();
    let mut steps = Vec::new();
    let mut best = None;
    for &n in &args.patients {
        let new = register(
            &directory,
            run,
            args.rate_hz,
            devices.len(),
            n.max(devices.len()),
        )
        .await?;
        eprintln!("--- {n} patients ({} new)", new.len());
        for (k, d) in new.into_iter().enumerate() {
            // Spread the devices' instants over the chunk period.
            let phase = Duration::from_secs_f64(((k as f64 * 0.618_034) % 1.0) * CHUNK_S);
            devices.push(spawn_device(
                load.clone(),
                d,
                prefix.clone(),
                bodies.clone(),
                phase,
                cancel.child_token(),
            ));
        }
        tokio::time::sleep(SETTLE).await;
        let from = Instant::now();
        let (rows0, _) = stored(&db, target.table()).await?;
        let meter = CpuMeter::start(processes.clone());
        tokio::time::sleep(Duration::from_secs_f64(args.measure_s)).await;
        let usage = meter.finish();
        let (rows1, _) = stored(&db, target.table()).await?;
        let to = Instant::now();
        let measure_s = (to - from).as_secs_f64();
        // Every request's send instant is in `lateness`, as in the answers: count both alike.
        let mut lateness: Vec<f64> = load
            .lateness
            .lock()
            .map(|l| {
                l.iter()
                    .filter(|(t, _)| *t >= from && *t < to)
                    .map(|(_, s)| *s)
                    .collect()
            })
            .unwrap_or_default();
        let sent = lateness.len() as u64;
        // Let the window's slowest requests finish (they are counted by send time).
        let deadline = to + ANSWER_GRACE;
        while window_answers(&load, from, to).len() < sent as usize && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        let answers = window_answers(&load, from, to);
        let step = judge_step(
            n,
            measure_s,
            sent,
            &answers,
            &mut lateness,
            samples_per_chunk,
            (rows1 - rows0) as f64 / measure_s,
            usage,
        );
        print_step(&step);
        let sustained = step.sustained;
        steps.push(step);
        if !sustained {
            break;
        }
        best = Some(n);
    }
    cancel.cancel();
    for d in devices {
        let _ = d.await;
    }
    let in_flight = Instant::now() + ANSWER_GRACE;
    while load.answered().0 < load.sent() && Instant::now() < in_flight {
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let (_, accepted) = load.answered();
    let drain = verify_stored(&db, target.table(), accepted, args.drain_timeout_s).await?;
    let (rows, distinct) = drain.counts;
    println!(
        "{}: largest sustained {} patients; {accepted} chunks accepted, {rows} rows stored ({distinct} distinct) {:.1} s after the load stopped",
        target.name(),
        best.map_or("none".into(), |n: usize| n.to_string()),
        drain.waited_s
    );
    directory.close().await;
    db.close().await;
    let stored_all = distinct == accepted && rows == distinct;
    if !stored_all {
        println!(
            "{}: NOT ALL STORED: {accepted} chunks accepted but {rows} rows stored ({distinct} distinct) after {:.0} s",
            target.name(),
            drain.waited_s
        );
    }
    Ok(serde_json::json!({
        "stored_all": stored_all,
        "mode": "ingest-only",
        "target": target.name(),
        "run": run,
        "machine": {
            "cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        },
        "settings": {
            "recording": args.recording,
            "channels": channels.len(),
            "rate_hz": args.rate_hz,
            "chunk_s": CHUNK_S,
            "measure_s": args.measure_s,
            "encoding": "json",
        },
        "largest_sustained_patients": best,
        "steps": steps,
        "accepted": accepted,
        "stored_rows": rows,
        "stored_distinct": distinct,
        "stored_after_s": drain.waited_s,
    }))
}

/// How the final count went.
struct Drained {
    counts: (u64, u64),
    waited_s: f64,
}

/// Waits until the table holds `accepted` distinct chunks (or `timeout_s` passed).
async fn verify_stored(
    db: &sqlx::MySqlPool,
    table: &str,
    accepted: u64,
    timeout_s: f64,
) -> anyhow::Result<Drained> {
    let started = Instant::now();
    loop {
        let counts = stored(db, table).await?;
        let waited_s = started.elapsed().as_secs_f64();
        if counts.1 >= accepted || waited_s > timeout_s {
            return Ok(Drained { counts, waited_s });
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

/// The peer's run script given to `--peer`, checked.
pub fn peer_script(path: &Path) -> anyhow::Result<PathBuf> {
    let path = crate::absolute(path)?;
    if !path.is_file() {
        bail!("{} not found (bench/peer/run)", path.display());
    }
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `n` answers of `answer` at `latency_s`.
    fn answers(n: usize, latency_s: f64, answer: Answer) -> Vec<(f64, Answer)> {
        vec![(latency_s, answer); n]
    }

    fn judge(answers: &[(f64, Answer)], sent: u64, stored_per_s: f64) -> IngestStep {
        let mut lateness = vec![0.001; sent as usize];
        judge_step(
            10,
            10.0,
            sent,
            answers,
            &mut lateness,
            5888.0,
            stored_per_s,
            Vec::new(),
        )
    }

    #[test]
    fn a_step_is_sustained_when_everything_is_accepted_in_time_and_stored() {
        let step = judge(&answers(100, 0.05, Answer::Accepted), 100, 10.0);
        assert!(step.sustained, "{:?}", step.reasons);
        assert_eq!(step.accepted, 100);
        assert_eq!(step.samples_per_s, 100.0 * 5888.0 / 10.0);
        assert_eq!(step.latency_p99_ms, Some(50.0));
    }

    #[test]
    fn refusals_duplicates_failures_and_silence_each_fail_a_step() {
        let mut mixed = answers(96, 0.05, Answer::Accepted);
        mixed.push((0.05, Answer::Duplicate));
        mixed.push((0.05, Answer::Status(503)));
        mixed.push((30.0, Answer::Failed));
        let step = judge(&mixed, 100, 10.0);
        assert!(!step.sustained);
        assert_eq!(
            (
                step.duplicate,
                step.refused.clone(),
                step.failed,
                step.unanswered
            ),
            (1, vec![(503, 1)], 1, 1)
        );
        assert!(
            step.reasons[0].starts_with("4 of 100"),
            "{:?}",
            step.reasons
        );
    }

    #[test]
    fn slow_answers_or_a_lagging_database_fail_a_step() {
        let mut slow = answers(98, 0.05, Answer::Accepted);
        slow.extend(answers(2, 1.5, Answer::Accepted));
        let step = judge(&slow, 100, 10.0);
        assert!(!step.sustained);
        assert!(
            step.reasons[0].contains("p99 latency 1500 ms"),
            "{:?}",
            step.reasons
        );

        let step = judge(&answers(100, 0.05, Answer::Accepted), 100, 9.0);
        assert!(!step.sustained);
        assert!(
            step.reasons[0].contains("stored 9 chunks/s against 10"),
            "{:?}",
            step.reasons
        );
    }

    #[test]
    fn a_late_load_generator_invalidates_the_step() {
        let mut lateness = vec![0.5; 100];
        let step = judge_step(
            10,
            10.0,
            100,
            &answers(100, 0.05, Answer::Accepted),
            &mut lateness,
            5888.0,
            10.0,
            Vec::new(),
        );
        assert!(!step.sustained);
        assert!(
            step.reasons[0].contains("load generator fell behind"),
            "{:?}",
            step.reasons
        );
    }
}
