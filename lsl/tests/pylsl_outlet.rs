//! The bridge against a real LSL peer: `tests/outlet.py` (pylsl, whose wheel ships liblsl)
//! pushes the first 30 s of the real `edfjs/sample.edf` (5 channels, 256 Hz) as an LSL EEG
//! stream in millivolts, plus a heart-rate stream (bpm, RR). The bridge forwards both through
//! a real gateway (`vigil_ingest::app` on a socket) onto the bus, while the outlet is stopped
//! and restarted and the gateway is restarted. The records on the bus must carry every sample
//! bit-equal after the mV -> µV scaling, in order, none lost or duplicated (after dropping
//! re-produced `(stream_id, seq)` copies, as storage and inference do), the outlet's absence
//! as a NaN-filled gap of exactly its length, and times within the bridge's stated error of
//! the outlet's clock.
//!
//! Needs `VIGIL_PYLSL_PYTHON` (a Python with pylsl; scripts/test sets it up) and
//! `scripts/fetch-data`; on Kafka also `VIGIL_TEST_KAFKA`. Without them the tests skip
//! locally and fail under CI.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpSocket;
use uuid::Uuid;
use vigil_core::bus::{Bus, BusConsumer, Topic};
use vigil_core::codec::{self, DecodeLimits};
use vigil_core::config::{
    BusConfig, IngestConfig, LslConfig, LslKind, LslStreamConfig, VigilConfig,
};
use vigil_core::record::{EegChunk, HrBatch};
use vigil_core::{datasets, testenv, CancellationToken};
use vigil_ingest::pipeline::IngestRecord;
use vigil_ingest::{app, DeviceDirectory, IngestState, NewDevice, SqlDeviceDirectory};
use vigil_lsl::{LslBridge, RunningBridge, StreamStats};
use vigil_replay::Recording;

const SECONDS: usize = 30;
const RATE: f64 = 256.0;
const BEATS: usize = 40;

/// One test at a time: each pushes real-time streams, and on two cores several outlets at
/// once would measure their contention rather than the bridge.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn python() -> Option<String> {
    match std::env::var("VIGIL_PYLSL_PYTHON") {
        Ok(p) if !p.is_empty() => Some(p),
        _ => testenv::unavailable(
            "VIGIL_PYLSL_PYTHON is not set (a Python with pylsl; scripts/test installs it)",
        ),
    }
}

/// One outlet process.
struct Outlet {
    child: Child,
}

impl Outlet {
    fn start(python: &str, args: &[String]) -> Self {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/outlet.py");
        let child = Command::new(python)
            .arg(script)
            .args(args)
            .spawn()
            .expect("start outlet.py");
        Self { child }
    }

    /// SIGTERM, then wait for the outlet to write its state and exit.
    fn stop(mut self) {
        // The shell's builtin kill: no procps needed on a minimal machine.
        let status = Command::new("sh")
            .args(["-c", &format!("kill -TERM {}", self.child.id())])
            .status()
            .expect("kill");
        assert!(status.success());
        let exit = self.child.wait().expect("wait outlet");
        assert!(exit.success(), "outlet exited with {exit}");
    }

    async fn finish(mut self, within: Duration) {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if let Some(exit) = self.child.try_wait().expect("try_wait") {
                assert!(exit.success(), "outlet exited with {exit}");
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "outlet did not finish"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// A gateway that can be restarted on the same address, forgetting its stream state. It
/// runs on a runtime of its own, so that stopping it ends its open WebSockets too (dropping a
/// runtime cancels every task, connection tasks included), as a killed process would.
struct Gateway {
    addr: SocketAddr,
    bus: Bus,
    directory: Arc<SqlDeviceDirectory>,
    running: Option<(
        tokio::sync::oneshot::Sender<()>,
        std::thread::JoinHandle<()>,
    )>,
}

impl Gateway {
    fn start(bus: Bus, directory: Arc<SqlDeviceDirectory>) -> Self {
        let mut gateway = Self {
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            bus,
            directory,
            running: None,
        };
        gateway.serve();
        gateway
    }

    fn serve(&mut self) {
        let config = IngestConfig {
            rate_limit_per_s: 10_000.0,
            rate_limit_burst: 10_000,
            // The test checks the bridge's own UTC mapping, so the gateway must not shift it.
            correct_device_clock: false,
            ..IngestConfig::default()
        };
        let (bus, directory, addr) = (self.bus.clone(), self.directory.clone(), self.addr);
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .expect("gateway runtime");
            runtime.block_on(async move {
                let state = IngestState::new(bus, directory, &config, Duration::from_secs(30));
                state.probe_bus().await;
                // SO_REUSEADDR: the old connections' TIME_WAIT must not block the restart.
                let socket = TcpSocket::new_v4().expect("socket");
                socket.set_reuseaddr(true).expect("reuseaddr");
                socket.bind(addr).expect("bind");
                let listener = socket.listen(1024).expect("listen");
                ready_tx
                    .send(listener.local_addr().expect("addr"))
                    .expect("ready");
                tokio::spawn(async move {
                    let _ = axum::serve(listener, app(state)).await;
                });
                let _ = stop_rx.await;
            });
        });
        self.addr = ready_rx.recv().expect("gateway started");
        self.running = Some((stop_tx, thread));
    }

    fn stop(&mut self) {
        if let Some((stop, thread)) = self.running.take() {
            let _ = stop.send(());
            thread.join().expect("gateway thread");
        }
    }

    /// Kills the server and its connections, then serves again on the same address after
    /// `down` (during which the bridge's frames pile up unacknowledged).
    async fn restart(&mut self, down: Duration) {
        self.stop();
        tokio::time::sleep(down).await;
        self.serve();
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.stop();
    }
}

/// `tests/outlet.py`'s arguments: its files in `dir` (samples.f64 written by the test,
/// state.json, runs.jsonl), the stream's labels, rate and name, and `extra`.
fn outlet_args(
    dir: &Path,
    labels: &[String],
    rate: &str,
    name: &str,
    extra: &[&str],
) -> Vec<String> {
    let file = |name: &str| dir.join(name).display().to_string();
    let mut args = vec![
        "--samples".to_owned(),
        file("samples.f64"),
        "--state".to_owned(),
        file("state.json"),
        "--log".to_owned(),
        file("runs.jsonl"),
        "--channels".to_owned(),
        labels.join(","),
        "--rate".to_owned(),
        rate.to_owned(),
        "--name".to_owned(),
        name.to_owned(),
        "--source-id".to_owned(),
        format!("{name}-src"),
    ];
    args.extend(extra.iter().map(|s| (*s).to_owned()));
    args
}

/// What the outlet logged at the start of each run.
#[derive(Debug, serde::Deserialize)]
struct Run {
    first: usize,
    t0: f64,
    rate: f64,
    utc_minus_local_ns: i64,
    utc_err_ns: i64,
}

fn runs(log: &Path) -> Vec<Run> {
    std::fs::read_to_string(log)
        .expect("outlet log")
        .lines()
        .map(|l| serde_json::from_str(l).expect("run line"))
        .collect()
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(i).copied().unwrap_or(f64::NAN)
}

/// p50 and p99 of the push -> ack latencies, in ms.
fn latency_ms(stats: &StreamStats) -> (f64, f64, usize) {
    let mut l: Vec<f64> = stats.latencies_s.iter().map(|s| s * 1e3).collect();
    l.sort_by(f64::total_cmp);
    (percentile(&l, 0.5), percentile(&l, 0.99), l.len())
}

async fn wait_for_samples(bridge: &RunningBridge, key: &str, at_least: u64) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        let stats = bridge.stats();
        let s = stats.iter().find(|s| s.key == key).expect("stream");
        if s.samples >= at_least {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{key}: only {} samples pulled",
            s.samples
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn stream_config(kind: LslKind, name: &str, device: &str, token_file: &Path) -> LslStreamConfig {
    LslStreamConfig {
        kind,
        name: name.to_owned(),
        device_id: device.to_owned(),
        patient_id: "lsl-pat".to_owned(),
        token_file: token_file.to_owned(),
        ..LslStreamConfig::default()
    }
}

/// The bridge's configuration: `streams` forwarded to the gateway at `addr`.
fn bridge_config<const N: usize>(
    addr: SocketAddr,
    streams: [(&str, LslStreamConfig); N],
) -> VigilConfig {
    VigilConfig {
        lsl: LslConfig {
            url: format!("ws://{addr}/v1/stream"),
            streams: streams
                .into_iter()
                .map(|(key, stream)| (key.to_owned(), stream))
                .collect(),
            ..LslConfig::default()
        },
        ..VigilConfig::default()
    }
}

/// A SQLite device directory in `dir`.
async fn device_directory(dir: &Path) -> Arc<SqlDeviceDirectory> {
    let db = format!("sqlite://{}?mode=rwc", dir.join("devices.db").display());
    Arc::new(SqlDeviceDirectory::connect(&db).await.expect("directory"))
}

/// A consumer of `topic` in a group of its own.
async fn subscribe(bus: &Bus, topic: Topic) -> Box<dyn BusConsumer> {
    let group = format!("lsl-test-{}", Uuid::new_v4().simple());
    bus.subscribe(&group, &[bus.topic(topic)])
        .await
        .expect("subscribe")
}

/// Whatever still arrives within 2 s is a re-produced copy of a record already seen.
async fn assert_only_copies_follow(consumer: &mut dyn BusConsumer, chunks: &[EegChunk]) {
    while let Ok(next) = tokio::time::timeout(Duration::from_secs(2), consumer.recv()).await {
        let msg = next.expect("recv");
        let chunk: EegChunk =
            codec::decode(&msg.payload, &DecodeLimits::default()).expect("decode");
        assert!(
            chunks.contains(&chunk),
            "only re-produced copies may follow: seq {}",
            chunk.seq
        );
    }
}

async fn register(dir: &Path, directory: &SqlDeviceDirectory, device: &str) -> PathBuf {
    let token = directory
        .register(&NewDevice {
            device_id: device.into(),
            patient_id: "lsl-pat".into(),
            sample_rate_hz: None,
            channels: None,
        })
        .await
        .expect("register")
        .expose()
        .to_owned();
    let path = dir.join(format!("{device}.token"));
    std::fs::write(&path, format!("{token}\n")).expect("token file");
    path
}

/// Consumes until `done` says everything arrived; distinct `(stream_id, seq)` records only,
/// checking that every re-produced copy carries what the first did.
async fn consume<R, F>(consumer: &mut dyn BusConsumer, done: F) -> Vec<R>
where
    R: IngestRecord + Clone + PartialEq + std::fmt::Debug,
    F: Fn(&[R]) -> bool,
{
    let mut seen: BTreeMap<(Uuid, u64), R> = BTreeMap::new();
    let mut order = Vec::new();
    while !done(&order.iter().map(|k| seen[k].clone()).collect::<Vec<R>>()) {
        let msg = tokio::time::timeout(Duration::from_secs(30), consumer.recv())
            .await
            .expect("record within 30 s")
            .expect("recv");
        let record: R = codec::decode(&msg.payload, &DecodeLimits::default()).expect("decode");
        let key = (record.stream_id(), record.seq());
        match seen.get(&key) {
            // A resend that a restarted gateway produced again carries that gateway's own
            // `received_ns`; everything the device sent must be the same.
            Some(first) => assert_eq!(
                first.content_hash(),
                record.content_hash(),
                "a re-produced copy differs: {first:?} vs {record:?}"
            ),
            None => {
                order.push(key);
                seen.insert(key, record);
            }
        }
        consumer.ack(&msg).expect("ack");
    }
    order.into_iter().filter_map(|k| seen.remove(&k)).collect()
}

/// The recording's first `SECONDS` as the outlet pushes them (sample-major f64) and as the
/// bus must carry them (channel-major f32 µV after the mV round trip).
fn excerpt(recording: &Recording, dir: &Path) -> (Vec<String>, Vec<Vec<f32>>) {
    let n = SECONDS * RATE as usize;
    let signals = &recording.signals[..5];
    let mut bytes = Vec::with_capacity(n * 5 * 8);
    for i in 0..n {
        for s in signals {
            bytes.extend_from_slice(&s.samples[i].to_le_bytes());
        }
    }
    std::fs::write(dir.join("samples.f64"), bytes).expect("samples file");
    let labels = signals
        .iter()
        .map(|s| s.header.label.trim().to_owned())
        .collect();
    // What the outlet pushes is x / 1000 (mV); the bridge multiplies by 1000.
    let expected = signals
        .iter()
        .map(|s| {
            s.samples[..n]
                .iter()
                .map(|x| ((x / 1000.0) * 1000.0) as f32)
                .collect()
        })
        .collect();
    (labels, expected)
}

/// The outlet's heart rate, as `tests/outlet.py` computes it (f32 on the wire).
fn beat(i: usize) -> (f32, f32) {
    let bpm = 70.0 + 12.0 * (2.0 * std::f64::consts::PI * i as f64 / 40.0).sin();
    (bpm as f32, (60000.0 / bpm) as f32)
}

async fn forward_real_outlet_across_restarts(bus_config: BusConfig) {
    let _serial = SERIAL.lock().await;
    let (Some(python), Some(edf)) = (python(), datasets::for_test("edfjs/sample.edf")) else {
        return;
    };
    let recording = Recording::open(edf).expect("sample.edf");
    let dir = tempfile::tempdir().expect("tempdir");
    let (labels, expected) = excerpt(&recording, dir.path());
    let total = expected[0].len();

    let directory = device_directory(dir.path()).await;
    let amp_token = register(dir.path(), &directory, "lsl-amp").await;
    let hr_token = register(dir.path(), &directory, "lsl-hr").await;
    let bus = Bus::connect(&bus_config).await.expect("bus");
    bus.create_vigil_topics().await.expect("topics");
    let mut eeg_rx = subscribe(&bus, Topic::EegRaw).await;
    let mut hr_rx = subscribe(&bus, Topic::HrRaw).await;
    let mut gateway = Gateway::start(bus.clone(), directory.clone());

    // Unique names: tests running at once on this host must not see each other's outlets.
    let name = format!("VigilTest-{}", Uuid::new_v4().simple());
    let config = bridge_config(
        gateway.addr,
        [
            (
                "amp",
                stream_config(LslKind::Eeg, &name, "lsl-amp", &amp_token),
            ),
            (
                "hr",
                stream_config(LslKind::Hr, &format!("{name}_HR"), "lsl-hr", &hr_token),
            ),
        ],
    );
    let log = dir.path().join("runs.jsonl");
    let hr_beats = BEATS.to_string();
    let outlet_args = |resume: bool| {
        let mut extra = vec!["--unit", "mV", "--divide", "1000", "--hr-beats", &hr_beats];
        if resume {
            extra.push("--resume");
        }
        outlet_args(dir.path(), &labels, "256", &name, &extra)
    };

    let shutdown = CancellationToken::new();
    let bridge = LslBridge::build(&config)
        .expect("bridge config")
        .start(shutdown.clone())
        .expect("bridge");
    let outlet = Outlet::start(&python, &outlet_args(false));
    wait_for_samples(&bridge, "amp", (total as f64 * 0.3) as u64).await;
    outlet.stop();
    let outlet = Outlet::start(&python, &outlet_args(true));
    let before_restart = runs(&log).len();
    assert_eq!(before_restart, 1);
    wait_for_samples(&bridge, "amp", (total as f64 * 0.65) as u64).await;
    gateway.restart(Duration::from_secs(2)).await;
    outlet.finish(Duration::from_secs(60)).await;
    // The last partial chunk goes out once the outlet is quiet for chunk_ms.
    tokio::time::sleep(Duration::from_millis(800)).await;
    shutdown.cancel();
    let stats = bridge.wait().await.expect("bridge stopped cleanly");
    let (amp, hr) = (&stats[0], &stats[1]);
    let (p50, p99, n) = latency_ms(amp);
    eprintln!(
        "lsl bridge on {}: {} EEG samples, {} records, NaN-filled {}, {:?}; push -> ack p50 {p50:.1} ms, p99 {p99:.1} ms over {n} chunks; time error bound {} us",
        bus_config.url, amp.samples, amp.records_sent, amp.counts.nan_filled, amp.client,
        amp.time_error_ns / 1000
    );
    assert_clean_stop(amp);
    assert_clean_stop(hr);
    assert_eq!(
        amp.counts.new_streams, 0,
        "a 1-2 s absence stays one stream"
    );

    let chunks: Vec<EegChunk> = consume(eeg_rx.as_mut(), |c: &[EegChunk]| {
        c.len() as u64 >= amp.records_sent
    })
    .await;
    let hr_batches: Vec<HrBatch> = consume(hr_rx.as_mut(), |b: &[HrBatch]| {
        b.iter().map(|b| b.points.len()).sum::<usize>() >= BEATS
    })
    .await;
    assert_only_copies_follow(eeg_rx.as_mut(), &chunks).await;

    check_eeg(&chunks, &expected, &labels, &runs(&log), amp.time_error_ns);
    check_hr(&hr_batches);
}

/// Everything sent was acknowledged, nothing refused, and the gateway restart was seen.
fn assert_clean_stop(s: &StreamStats) {
    assert_eq!(s.unacknowledged, 0, "{}: all sent was acknowledged", s.key);
    assert_eq!(
        s.client.rejected, 0,
        "{}: {:?}",
        s.key, s.client.last_rejection
    );
    assert!(
        s.client.reconnects >= 1,
        "{}: the gateway restart was seen",
        s.key
    );
}

/// The heartbeats: every one once, in order, bpm and RR bit-equal.
fn check_hr(batches: &[HrBatch]) {
    let points: Vec<_> = batches.iter().flat_map(|b| b.points.clone()).collect();
    let got: Vec<(f32, Option<f32>)> = points.iter().map(|p| (p.bpm, p.rr_ms)).collect();
    let want: Vec<(f32, Option<f32>)> = (0..BEATS).map(|i| (beat(i).0, Some(beat(i).1))).collect();
    assert_eq!(got, want, "every beat once, in order, bit-equal");
    assert!(points.windows(2).all(|w| w[0].t_ns < w[1].t_ns));
}

/// The chunks rebuild the recording with one NaN run where the outlet was away.
fn check_eeg(
    chunks: &[EegChunk],
    expected: &[Vec<f32>],
    labels: &[String],
    runs: &[Run],
    error_ns: i64,
) {
    assert_eq!(runs.len(), 2, "two outlet runs");
    let stream = chunks[0].stream_id;
    assert!(chunks
        .iter()
        .all(|c| c.stream_id == stream && c.channels == labels));
    let seqs: Vec<u64> = chunks.iter().map(|c| c.seq).collect();
    assert_eq!(
        seqs,
        (0..chunks.len() as u64).collect::<Vec<_>>(),
        "gapless seqs"
    );

    let rebuilt: Vec<Vec<f32>> = (0..labels.len())
        .map(|c| chunks.iter().flat_map(|k| k.samples[c].clone()).collect())
        .collect();
    // The NaN run: exactly the outlet's absence, from its own timestamps.
    let resumed = runs[1].first;
    let last_before = runs[0].t0 + (resumed - 1 - runs[0].first) as f64 / RATE;
    let gap_ns = ((runs[1].t0 - last_before) * 1e9).round();
    let missing = ((gap_ns - 1e9 / RATE) / (1e9 / RATE)).round() as usize;
    for (c, row) in rebuilt.iter().enumerate() {
        let nan: Vec<usize> = (0..row.len()).filter(|&i| row[i].is_nan()).collect();
        assert!(
            nan.len().abs_diff(missing) <= 1 && nan.first() == Some(&resumed),
            "channel {c}: {} NaN from {:?}, expected {missing} from {resumed}",
            nan.len(),
            nan.first()
        );
        assert!(nan.windows(2).all(|w| w[1] == w[0] + 1), "one NaN run");
        let real: Vec<u32> = row
            .iter()
            .filter(|v| !v.is_nan())
            .map(|v| v.to_bits())
            .collect();
        let want: Vec<u32> = expected[c].iter().map(|v| v.to_bits()).collect();
        assert_eq!(real.len(), want.len(), "channel {c}: sample count");
        assert!(
            real == want,
            "channel {c}: samples differ from the recording"
        );
    }

    // Each chunk's start is the outlet's stamp of its first sample, mapped to UTC.
    let nan_len = rebuilt[0].iter().filter(|v| v.is_nan()).count();
    let mut index = 0usize; // position in the rebuilt row
    for chunk in chunks {
        let first_real = !chunk.samples[0][0].is_nan();
        if first_real {
            let sample = if index < resumed {
                index
            } else {
                index - nan_len
            };
            let run = if sample < resumed { &runs[0] } else { &runs[1] };
            let stamp = run.t0 + (sample - run.first) as f64 / run.rate;
            let outlet_utc = (stamp * 1e9).round() as i64 + run.utc_minus_local_ns;
            let bound = error_ns + run.utc_err_ns + 1_000;
            assert!(
                (chunk.start_ns - outlet_utc).abs() <= bound,
                "seq {}: start {} vs outlet {outlet_utc}: off by {} ns, bound {bound}",
                chunk.seq,
                chunk.start_ns,
                chunk.start_ns - outlet_utc
            );
        }
        index += chunk.samples_per_channel();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_outlet_through_the_gateway_on_memory_bus() {
    forward_real_outlet_across_restarts(BusConfig {
        url: format!("memory://lsl-{}", Uuid::new_v4().simple()),
        partitions: 3,
        ..BusConfig::default()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_outlet_through_the_gateway_on_kafka() {
    if let Some(bus) = testenv::kafka_bus(3) {
        forward_real_outlet_across_restarts(bus).await;
    }
}

/// 64 channels at 1000 Hz from one outlet for 20 s, in real time: every sample arrives, and
/// the push -> acknowledgement latency and this process's CPU (bridge + gateway + in-process
/// bus) are printed. docs/LSL.md quotes the numbers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_four_channels_at_1000_hz_in_real_time() {
    const CHANNELS: usize = 64;
    const HZ: usize = 1000;
    const SECS: usize = 20;
    let _serial = SERIAL.lock().await;
    let (Some(python), Some(edf)) = (python(), datasets::for_test("edfjs/sample.edf")) else {
        return;
    };
    let recording = Recording::open(edf).expect("sample.edf");
    let dir = tempfile::tempdir().expect("tempdir");
    // Real EEG values, the file's 5 channels repeated over 64 (declared at 1000 Hz).
    let n = HZ * SECS;
    let mut bytes = Vec::with_capacity(n * CHANNELS * 8);
    for i in 0..n {
        for c in 0..CHANNELS {
            let s = &recording.signals[c % 5].samples;
            bytes.extend_from_slice(&s[i % s.len()].to_le_bytes());
        }
    }
    let samples = dir.path().join("samples.f64");
    std::fs::write(&samples, bytes).expect("samples");
    let labels: Vec<String> = (1..=CHANNELS).map(|c| format!("E{c}")).collect();

    let directory = device_directory(dir.path()).await;
    let token = register(dir.path(), &directory, "lsl-amp64").await;
    let bus = Bus::connect(&BusConfig {
        url: format!("memory://lsl64-{}", Uuid::new_v4().simple()),
        partitions: 1,
        ..BusConfig::default()
    })
    .await
    .expect("bus");
    bus.create_vigil_topics().await.expect("topics");
    let gateway = Gateway::start(bus.clone(), directory);
    let name = format!("VigilTest64-{}", Uuid::new_v4().simple());
    let config = bridge_config(
        gateway.addr,
        [(
            "amp",
            stream_config(LslKind::Eeg, &name, "lsl-amp64", &token),
        )],
    );
    let shutdown = CancellationToken::new();
    let bridge = LslBridge::build(&config)
        .expect("config")
        .start(shutdown.clone())
        .expect("bridge");
    let args = outlet_args(
        dir.path(),
        &labels,
        &HZ.to_string(),
        &name,
        &["--unit", "uV", "--block", "10"],
    );
    let outlet = Outlet::start(&python, &args);
    wait_for_samples(&bridge, "amp", 1).await;
    let (cpu0, wall0) = (testenv::process_cpu_seconds(), std::time::Instant::now());
    outlet.finish(Duration::from_secs(SECS as u64 + 40)).await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    let (cpu, wall) = (
        testenv::process_cpu_seconds() - cpu0,
        wall0.elapsed().as_secs_f64(),
    );
    shutdown.cancel();
    let stats = bridge.wait().await.expect("bridge");
    let amp = &stats[0];
    let (p50, p99, chunks) = latency_ms(amp);
    eprintln!(
        "lsl throughput: {CHANNELS} ch x {HZ} Hz for {SECS} s: {} samples in {wall:.1} s, \
         push -> ack p50 {p50:.1} ms, p99 {p99:.1} ms over {chunks} chunks; CPU {:.0}% of one \
         core (bridge + gateway + in-process bus)",
        amp.samples,
        100.0 * cpu / wall
    );
    assert_eq!(amp.samples, n as u64, "every sample pulled");
    assert_eq!(amp.counts.nan_filled, 0, "no gap at full rate");
    assert_eq!(amp.unacknowledged, 0);
    assert_eq!(amp.client.accepted, amp.records_sent);
    assert!(
        wall < SECS as f64 + 10.0,
        "kept up with real time: {wall:.1} s"
    );
    assert!(p99 < 1000.0, "p99 {p99:.1} ms: the bridge fell behind");
}
