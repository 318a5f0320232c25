//! Fault injection on real processes: tansu on sqlite storage, MariaDB, `vigil ingest` and
//! `vigil store` started as an operator starts them, devices streaming through the gateway's
//! WebSocket, and one part killed or stopped mid-stream. A scenario ends with an [`Outcome`]:
//! what was sent, acknowledged, produced and stored (docs/RELIABILITY.md, "Fault injection").

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, ensure, Context};
use tokio::process::Command;
use tokio::time::Instant;
use uuid::Uuid;
use vigil_core::bus::Topic;
use vigil_core::config::BusConfig;
use vigil_core::record::EegChunk;
use vigil_core::CancellationToken;
use vigil_ingest::client::{ClientConfig, ClientStats, IngestClient};
use vigil_ingest::{DeviceDirectory, NewDevice, SqlDeviceDirectory};

use crate::probes;
use crate::services::{self, Service};

mod database;

pub use database::{Database, PrivateMariaDb};

/// EEG rate of the fault devices.
const RATE_HZ: f64 = 256.0;
/// Samples per channel per chunk (0.5 s).
const CHUNK_SAMPLES: usize = 128;
/// Channels per chunk: enough to make a chunk a realistic size without slowing the rig.
const CHANNELS: [&str; 8] = [
    "Fp1-F7", "F7-T7", "T7-P7", "P7-O1", "Fp2-F8", "F8-T8", "T8-P8", "P8-O2",
];
/// Partitions per topic (the bus default, stated so the probes read every partition).
const PARTITIONS: i32 = 12;
/// The store's static group membership id (docs/RELIABILITY.md, consumer crash).
const STORE_INSTANCE: &str = "store-0";
/// `bus.instance_id` of the rig's `vigil infer` (static membership, as for the store).
const INFER_INSTANCE: &str = "infer-0";

/// Kills the service in `slot` (if any) with SIGKILL.
async fn kill(slot: &mut Option<Service>) {
    if let Some(s) = slot.take() {
        s.kill().await;
    }
}

/// The binaries a rig runs.
#[derive(Debug, Clone)]
pub struct Binaries {
    /// `vigil`.
    pub vigil: PathBuf,
    /// tansu, built with libsql storage.
    pub tansu: PathBuf,
}

/// A registered device of the rig.
#[derive(Debug, Clone)]
pub struct Device {
    /// Device id.
    pub device_id: String,
    /// Patient it is bound to.
    pub patient_id: String,
    /// Its token.
    pub token: String,
}

/// A broker, a database, `vigil ingest` and `vigil store` (and `vigil infer` when a scenario
/// starts it), each a process of its own.
pub struct Rig {
    work: tempfile::TempDir,
    bins: Binaries,
    config: PathBuf,
    kafka_port: u16,
    ingest_addr: String,
    store_addr: String,
    infer_addr: String,
    broker: Option<Service>,
    ingest: Option<Service>,
    store: Option<Service>,
    infer: Option<Service>,
    /// `vigil infer` instances started as dynamic members of one group, by index.
    infer_instances: Vec<Option<Service>>,
    /// The database the stages write.
    pub database: Database,
    /// Registered EEG devices, one per patient.
    pub devices: Vec<Device>,
}

impl Rig {
    /// Starts everything with `patients` EEG devices registered; `private_database` gives the
    /// rig a MariaDB server of its own.
    pub async fn start(
        bins: Binaries,
        patients: usize,
        private_database: bool,
    ) -> anyhow::Result<Rig> {
        let work = tempfile::Builder::new().prefix("vigil-faults-").tempdir()?;
        let run = Uuid::new_v4().simple().to_string()[..8].to_owned();
        let database = if private_database {
            Database::Private(PrivateMariaDb::start_new(&work.path().join("mariadb")).await?)
        } else {
            let (name, _) = services::create_database(&format!("faults_{run}"))?;
            Database::Shared { name }
        };
        let mut rig = Rig {
            config: work.path().join("vigil.toml"),
            work,
            bins,
            kafka_port: services::free_port()?,
            ingest_addr: format!("127.0.0.1:{}", services::free_port()?),
            store_addr: format!("127.0.0.1:{}", services::free_port()?),
            infer_addr: format!("127.0.0.1:{}", services::free_port()?),
            broker: None,
            ingest: None,
            store: None,
            infer: None,
            infer_instances: Vec::new(),
            database,
            devices: Vec::new(),
        };
        rig.write_config()?;
        rig.start_broker().await?;
        let status = Command::new(&rig.bins.vigil)
            .arg("--config")
            .arg(&rig.config)
            .args(["topics", "create"])
            .status()
            .await?;
        ensure!(status.success(), "vigil topics create failed");
        let url = rig.database.url();
        vigil_storage::Store::connect(&url)
            .await
            .context("storage schema")?
            .close()
            .await;
        let directory = SqlDeviceDirectory::connect(&url).await?;
        for i in 0..patients {
            let device = NewDevice {
                device_id: format!("fault-{run}-eeg{i}"),
                patient_id: format!("fault-{run}-p{i}"),
                sample_rate_hz: Some(RATE_HZ),
                channels: None,
            };
            let token = directory.register(&device).await?;
            rig.devices.push(Device {
                device_id: device.device_id,
                patient_id: device.patient_id,
                token: token.expose().to_owned(),
            });
        }
        directory.close().await;
        rig.start_ingest().await?;
        rig.start_store().await?;
        Ok(rig)
    }

    /// The work directory (logs of every process).
    pub fn work_dir(&self) -> &Path {
        self.work.path()
    }

    /// Keeps the work directory after the rig is dropped; its path.
    pub fn keep(self) -> PathBuf {
        self.work.keep()
    }

    fn write_config(&self) -> anyhow::Result<()> {
        let text = format!(
            r#"# Written by the fault-injection rig (bench/src/faults/) for one scenario.
[bus]
url = "kafka://127.0.0.1:{kafka}"
partitions = {PARTITIONS}

[ingest]
listen = "{ingest}"
database_url = "{db}"

[storage]
listen = "{store}"
database_url = "{db}"

[inference]
listen = "{infer}"
# A device that stopped is finished soon, so a scenario's last chunks are evaluated quickly.
idle_evict_s = 5.0
"#,
            kafka = self.kafka_port,
            ingest = self.ingest_addr,
            store = self.store_addr,
            infer = self.infer_addr,
            db = self.database.url(),
        );
        std::fs::write(&self.config, text).context("write the rig's config")
    }

    fn spawn_stage(&self, name: &str, env: &[(&str, &str)]) -> anyhow::Result<Service> {
        let addr = match name {
            "ingest" => &self.ingest_addr,
            "infer" => &self.infer_addr,
            _ => &self.store_addr,
        };
        let config = self.config.display().to_string();
        Service::spawn_with_env(
            name,
            &self.bins.vigil,
            &["--config", &config, name],
            env,
            self.work.path(),
            Some(addr.clone()),
        )
    }

    /// Starts tansu (again) on the rig's port and data.
    pub async fn start_broker(&mut self) -> anyhow::Result<()> {
        let dir = self.work.path().join("broker");
        std::fs::create_dir_all(&dir)?;
        let mut broker = services::start_broker(&self.bins.tansu, &dir, self.kafka_port)?;
        broker.wait_ready(Duration::from_secs(30), false).await?;
        self.broker = Some(broker);
        Ok(())
    }

    /// Kills the broker with SIGKILL.
    pub async fn kill_broker(&mut self) {
        kill(&mut self.broker).await;
    }

    /// Starts stage `name` and waits up to `within` for its readiness.
    async fn start_stage(
        &self,
        name: &str,
        env: &[(&str, &str)],
        within: Duration,
    ) -> anyhow::Result<Service> {
        let mut s = self.spawn_stage(name, env)?;
        s.wait_ready(within, true).await?;
        Ok(s)
    }

    /// Starts `vigil ingest` and waits for its readiness.
    pub async fn start_ingest(&mut self) -> anyhow::Result<()> {
        self.ingest = Some(
            self.start_stage("ingest", &[], Duration::from_secs(60))
                .await?,
        );
        Ok(())
    }

    /// Starts `vigil store` (a static group member) and waits for its readiness.
    pub async fn start_store(&mut self) -> anyhow::Result<()> {
        let env = [("VIGIL__BUS__INSTANCE_ID", STORE_INSTANCE)];
        self.store = Some(
            self.start_stage("store", &env, Duration::from_secs(60))
                .await?,
        );
        Ok(())
    }

    /// Kills `vigil store` with SIGKILL.
    pub async fn kill_store(&mut self) {
        kill(&mut self.store).await;
    }

    /// Starts `vigil infer` (a static group member) with the model weights in `models` (the
    /// workspace's `models/`, with its `manifest.toml`) and waits for its readiness.
    pub async fn start_infer(&mut self, models: &Path) -> anyhow::Result<()> {
        let [(dir_key, dir), (manifest_key, manifest)] = model_env(models);
        let env = [
            ("VIGIL__BUS__INSTANCE_ID", INFER_INSTANCE),
            (dir_key, dir.as_str()),
            (manifest_key, manifest.as_str()),
        ];
        self.infer = Some(
            self.start_stage("infer", &env, Duration::from_secs(120))
                .await?,
        );
        Ok(())
    }

    /// Kills `vigil infer` with SIGKILL.
    pub async fn kill_infer(&mut self) {
        kill(&mut self.infer).await;
    }

    /// Starts `n` `vigil infer` instances as dynamic members of the inference group, each on
    /// a port of its own, with the orphaned-partition watch after `stall_rejoin_s`, and waits
    /// for each one's readiness.
    pub async fn start_infer_instances(
        &mut self,
        models: &Path,
        n: usize,
        stall_rejoin_s: u64,
    ) -> anyhow::Result<()> {
        let [(dir_key, dir), (manifest_key, manifest)] = model_env(models);
        let stall = stall_rejoin_s.to_string();
        let config = self.config.display().to_string();
        for _ in 0..n {
            let addr = format!("127.0.0.1:{}", services::free_port()?);
            let env = [
                ("VIGIL__INFERENCE__LISTEN", addr.as_str()),
                ("VIGIL__BUS__STALL_REJOIN_S", stall.as_str()),
                (dir_key, dir.as_str()),
                (manifest_key, manifest.as_str()),
            ];
            let mut instance = Service::spawn_with_env(
                &format!("infer-{}", self.infer_instances.len()),
                &self.bins.vigil,
                &["--config", &config, "infer"],
                &env,
                self.work.path(),
                Some(addr.clone()),
            )?;
            instance.wait_ready(Duration::from_secs(120), true).await?;
            self.infer_instances.push(Some(instance));
        }
        Ok(())
    }

    /// Kills instance `k` of [`Rig::start_infer_instances`] with SIGKILL.
    pub async fn kill_infer_instance(&mut self, k: usize) {
        if let Some(slot) = self.infer_instances.get_mut(k) {
            kill(slot).await;
        }
    }

    /// The sum of every series of metric `name` on instance `k`'s `/metrics`; None when the
    /// instance is not running or has no such series yet.
    pub async fn infer_instance_metric(&self, k: usize, name: &str) -> Option<f64> {
        let addr = self.infer_instances.get(k)?.as_ref()?.addr.clone()?;
        let (_, page) = services::get(&addr, "/metrics").await.ok()?;
        let values: Vec<f64> = page
            .lines()
            .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
            .filter_map(|l| l.rsplit_once(' ')?.1.parse().ok())
            .collect();
        (!values.is_empty()).then(|| values.iter().sum())
    }

    /// The broker's `host:port`.
    fn brokers(&self) -> String {
        format!("127.0.0.1:{}", self.kafka_port)
    }

    /// The rig's bus, as a stage sees it.
    pub fn bus_config(&self) -> BusConfig {
        BusConfig {
            url: format!("kafka://{}", self.brokers()),
            partitions: PARTITIONS,
            ..BusConfig::default()
        }
    }

    /// A probe of `group`'s lag on `topics` (full names).
    fn lag_probe(&self, group: &str, topics: Vec<String>) -> anyhow::Result<probes::LagProbe> {
        probes::LagProbe::new(&self.brokers(), &[(group, topics)], PARTITIONS)
    }

    /// Records `group` has not committed on `topics` (blocking: call from a blocking thread).
    pub fn group_lag(&self, group: &str, topics: &[String]) -> anyhow::Result<f64> {
        let probe = self.lag_probe(group, topics.to_vec())?;
        Ok(probe.sample()?.first().map_or(0.0, |(_, lag)| *lag))
    }

    /// The private database server (None on the shared one).
    pub fn private_database(&mut self) -> Option<&mut PrivateMariaDb> {
        match &mut self.database {
            Database::Private(db) => Some(db),
            Database::Shared { .. } => None,
        }
    }

    /// Streams from every device: `chunks` chunks of 0.5 s each, one every `interval`.
    pub fn stream(&self, chunks: u64, interval: Duration) -> Traffic {
        Traffic::start(
            &format!("ws://{}/v1/stream", self.ingest_addr),
            &self.devices,
            chunks,
            interval,
        )
    }

    /// Stored EEG rows: (rows, distinct `(stream_id, seq)`).
    pub async fn stored(&self) -> anyhow::Result<(u64, u64)> {
        let rows = self
            .database
            .query("SELECT COUNT(*), COUNT(DISTINCT stream_id, seq) FROM eeg_chunks")
            .await?;
        let cell = |i: usize| -> anyhow::Result<u64> {
            Ok(rows
                .first()
                .and_then(|r| r.get(i))
                .context("no count")?
                .parse()?)
        };
        Ok((cell(0)?, cell(1)?))
    }

    /// Polls until `distinct` rows are stored or `within` passed; the time it took.
    pub async fn wait_stored(&self, distinct: u64, within: Duration) -> anyhow::Result<Duration> {
        let t0 = Instant::now();
        loop {
            match self.stored().await {
                Ok((_, n)) if n >= distinct => return Ok(t0.elapsed()),
                Ok(_) | Err(_) if t0.elapsed() < within => {}
                Ok((_, n)) => bail!("{n} of {distinct} chunks stored after {within:?}"),
                Err(e) => return Err(e),
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// Checks every stream's stored seqs against what its device sent, counts the records on
    /// the EEG topic and the storage group's lag, and returns the outcome.
    pub async fn outcome(&self, devices: &[DeviceReport]) -> anyhow::Result<Outcome> {
        let mut per_stream: BTreeMap<String, (u64, u64, u64)> = BTreeMap::new();
        for row in self
            .database
            .query(
                "SELECT stream_id, COUNT(DISTINCT seq), MIN(seq), MAX(seq) FROM eeg_chunks \
                 GROUP BY stream_id",
            )
            .await?
        {
            let n = |i: usize| row.get(i).and_then(|v| v.parse().ok()).unwrap_or(0);
            per_stream.insert(row[0].clone(), (n(1), n(2), n(3)));
        }
        let mut lost = 0;
        for d in devices {
            let exact = match per_stream.get(&d.stream_id.to_string()) {
                // Distinct seqs spanning exactly 0..sent: the very set that was sent.
                Some(&(count, 0, max)) if count == d.sent && max + 1 == d.sent => 0,
                Some(&(count, ..)) => d.sent.saturating_sub(count).max(1),
                None => d.sent,
            };
            lost += exact;
        }
        let (rows, distinct) = self.stored().await?;
        let topic = Topic::EegRaw.base_name().to_owned();
        let lag = self.lag_probe("vigil-storage", vec![topic.clone()])?;
        let (produced, storage_lag) = tokio::task::spawn_blocking(move || {
            anyhow::Ok((lag.topic_records(&topic)?, lag.sample()?))
        })
        .await??;
        let sum = |f: fn(&ClientStats) -> u64| devices.iter().map(|d| f(&d.stats)).sum();
        Ok(Outcome {
            sent: devices.iter().map(|d| d.sent).sum(),
            accepted: sum(|s| s.accepted),
            duplicates: sum(|s| s.duplicates),
            rejected: sum(|s| s.rejected),
            resent: sum(|s| s.resent),
            reconnects: sum(|s| s.reconnects),
            produced,
            stored_rows: rows,
            stored_distinct: distinct,
            lost,
            storage_lag: storage_lag.first().map_or(0.0, |(_, l)| *l),
            errors: devices.iter().flat_map(|d| d.errors.clone()).collect(),
        })
    }

    /// Stops every process cleanly (SIGTERM) and drops a shared database.
    pub async fn stop(mut self) -> PathBuf {
        let instances = std::mem::take(&mut self.infer_instances);
        let stages = [
            self.infer.take(),
            self.store.take(),
            self.ingest.take(),
            self.broker.take(),
        ];
        for s in instances.into_iter().chain(stages).flatten() {
            s.stop(Duration::from_secs(30)).await;
        }
        if let Some(db) = self.private_database() {
            let _ = db.stop().await;
        }
        if let Database::Shared { name } = &self.database {
            if let Err(e) = services::mysql_root(&format!("DROP DATABASE `{name}`")) {
                eprintln!("could not drop database {name}: {e:#}");
            }
        }
        self.work.path().to_owned()
    }
}

/// What one device sent and what the gateway answered.
#[derive(Debug, Clone)]
pub struct DeviceReport {
    /// Its stream id.
    pub stream_id: Uuid,
    /// Chunks handed to its client (seqs `0..sent`).
    pub sent: u64,
    /// Its client's counters after the final flush.
    pub stats: ClientStats,
    /// Client errors.
    pub errors: Vec<String>,
}

/// Devices streaming synthetic EEG through the gateway's WebSocket with the Rust client,
/// which resends whatever was not acknowledged after a reconnect.
pub struct Traffic {
    stop: CancellationToken,
    tasks: Vec<tokio::task::JoinHandle<DeviceReport>>,
}

impl Traffic {
    fn start(url: &str, devices: &[Device], chunks: u64, interval: Duration) -> Traffic {
        let stop = CancellationToken::new();
        let start_ns = vigil_core::time::now_ns();
        let tasks = devices
            .iter()
            .cloned()
            .map(|device| {
                let client = IngestClient::start(ClientConfig::new(url, device.token.clone()));
                tokio::spawn(stream_device(
                    client,
                    device,
                    start_ns,
                    chunks,
                    interval,
                    stop.clone(),
                ))
            })
            .collect();
        Traffic { stop, tasks }
    }

    /// Waits until every device sent its chunks and its client flushed; each device's report.
    pub async fn finish(self) -> Vec<DeviceReport> {
        let mut out = Vec::new();
        for task in self.tasks {
            match task.await {
                Ok(report) => out.push(report),
                Err(e) => out.push(DeviceReport {
                    stream_id: Uuid::nil(),
                    sent: 0,
                    stats: ClientStats::default(),
                    errors: vec![format!("device task failed: {e}")],
                }),
            }
        }
        out
    }

    /// Stops sending new chunks (those sent are still flushed).
    pub fn stop(&self) {
        self.stop.cancel();
    }
}

/// Longest a device waits for its last acknowledgements.
const FLUSH: Duration = Duration::from_secs(120);

async fn stream_device(
    client: IngestClient,
    device: Device,
    start_ns: i64,
    chunks: u64,
    interval: Duration,
    stop: CancellationToken,
) -> DeviceReport {
    let stream_id = Uuid::new_v4();
    let t0 = Instant::now();
    let mut report = DeviceReport {
        stream_id,
        sent: 0,
        stats: ClientStats::default(),
        errors: Vec::new(),
    };
    let chunk_ns = (CHUNK_SAMPLES as f64 * 1e9 / RATE_HZ) as i64;
    for seq in 0..chunks {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tokio::time::sleep_until(t0 + interval * seq as u32) => {}
        }
        let chunk = EegChunk {
            patient_id: device.patient_id.clone(),
            device_id: device.device_id.clone(),
            stream_id,
            seq,
            start_ns: start_ns + seq as i64 * chunk_ns,
            received_ns: 0,
            sample_rate_hz: RATE_HZ,
            channels: CHANNELS.iter().map(|c| (*c).to_owned()).collect(),
            unit: Default::default(),
            samples: (0..CHANNELS.len())
                .map(|c| {
                    (0..CHUNK_SAMPLES)
                        .map(|i| {
                            let t = (seq as usize * CHUNK_SAMPLES + i) as f32 / RATE_HZ as f32;
                            20.0 * (t * (3.0 + c as f32)).sin()
                        })
                        .collect()
                })
                .collect(),
        };
        if let Err(e) = client.send(&chunk).await {
            report.errors.push(format!("{}: {e}", device.device_id));
            break;
        }
        report.sent += 1;
    }
    match client.close(FLUSH).await {
        Ok(stats) => report.stats = stats,
        Err(e) => report.errors.push(format!("{}: {e}", device.device_id)),
    }
    report
}

/// What a scenario sent, had acknowledged, produced and stored.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Outcome {
    /// EEG chunks the devices sent.
    pub sent: u64,
    /// Acknowledged `accepted` by the gateway.
    pub accepted: u64,
    /// Acknowledged `duplicate` (resends of chunks already produced).
    pub duplicates: u64,
    /// Refused by the gateway.
    pub rejected: u64,
    /// Frames the clients resent after a reconnect.
    pub resent: u64,
    /// Reconnects of the clients.
    pub reconnects: u64,
    /// Records on the EEG topic (a chunk produced twice counts twice).
    pub produced: u64,
    /// EEG rows stored.
    pub stored_rows: u64,
    /// Distinct `(stream_id, seq)` stored.
    pub stored_distinct: u64,
    /// Chunks sent but not stored.
    pub lost: u64,
    /// Records of the EEG topic the storage group has not committed.
    pub storage_lag: f64,
    /// Client errors.
    pub errors: Vec<String>,
}

impl Outcome {
    /// One line for the test log and docs/RELIABILITY.md.
    pub fn line(&self, scenario: &str) -> String {
        format!(
            "{scenario}: sent {} | acknowledged {} ({} accepted, {} duplicate), refused {} | \
             resent {} after {} reconnects | produced {} ({} twice) | stored {} rows, {} distinct, \
             {} lost | storage lag {}",
            self.sent,
            self.accepted + self.duplicates,
            self.accepted,
            self.duplicates,
            self.rejected,
            self.resent,
            self.reconnects,
            self.produced,
            self.produced.saturating_sub(self.sent),
            self.stored_rows,
            self.stored_distinct,
            self.lost,
            self.storage_lag,
        )
    }

    /// Sent = acknowledged = stored, none refused, no row twice, no client error.
    pub fn check(&self) -> anyhow::Result<()> {
        ensure!(self.errors.is_empty(), "client errors: {:?}", self.errors);
        ensure!(self.sent > 0, "nothing was sent");
        ensure!(self.rejected == 0, "{} chunks refused", self.rejected);
        ensure!(
            self.accepted + self.duplicates == self.sent,
            "{} sent, {} acknowledged",
            self.sent,
            self.accepted + self.duplicates
        );
        ensure!(self.lost == 0, "{} chunks lost", self.lost);
        ensure!(
            self.stored_rows == self.stored_distinct && self.stored_distinct == self.sent,
            "{} sent, {} rows, {} distinct",
            self.sent,
            self.stored_rows,
            self.stored_distinct
        );
        ensure!(self.produced >= self.sent, "fewer records than chunks");
        Ok(())
    }
}

/// The environment naming the model weights in `models` (the workspace's `models/`, with its
/// `manifest.toml`).
fn model_env(models: &Path) -> [(&'static str, String); 2] {
    [
        ("VIGIL__MODELS__DIR", models.display().to_string()),
        (
            "VIGIL__MODELS__MANIFEST",
            models.join("manifest.toml").display().to_string(),
        ),
    ]
}
