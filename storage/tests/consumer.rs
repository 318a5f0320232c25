//! The storage stage end to end: records published to the bus (memory://, and a real Kafka
//! broker when `VIGIL_TEST_KAFKA` is set) -> `StoreStage` -> rows equal to what was
//! published, exactly once; offsets committed only after the commit (a restart redelivers
//! nothing stored and loses nothing); poison records to the DLQ; a database outage mid-stream
//! on MariaDB (TCP proxy cut, and `KILL` of the store's connections) with zero loss and zero
//! duplicates; the Parquet archive read back with arrow.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arrow::array::{Array, AsArray};
use arrow::datatypes::Float32Type;
use common::{alert, chunk, hr, prob, TestDb, PATIENT};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use uuid::Uuid;
use vigil_core::bus::{Bus, Topic};
use vigil_core::codec;
use vigil_core::config::{BusConfig, StorageConfig};
use vigil_core::record::{AlertKind, AlertTransition, HrBatch, ProvisionalProbability};
use vigil_core::telemetry::Readiness;
use vigil_core::CancellationToken;
use vigil_storage::archive::Archive;
use vigil_storage::consumer::{StageError, StoreStage};
use vigil_storage::{HistoryQuery, Store, WriteBatch};

fn memory_bus() -> BusConfig {
    BusConfig {
        url: format!("memory://{}", Uuid::new_v4()),
        partitions: 3,
        publish_timeout_ms: 5_000,
        ..BusConfig::default()
    }
}

fn kafka_bus() -> Option<BusConfig> {
    vigil_core::testenv::kafka_bus(3)
}

fn stage_config(group: &str, archive: Option<&Path>) -> StorageConfig {
    StorageConfig {
        group: group.to_owned(),
        batch_max_records: 7,
        batch_max_wait_ms: 50,
        retry_initial_ms: 50,
        retry_max_ms: 400,
        shutdown_flush_ms: 500,
        archive_dir: archive.map(Path::to_path_buf).unwrap_or_default(),
        ..StorageConfig::default()
    }
}

struct Running {
    handle: JoinHandle<Result<(), StageError>>,
    shutdown: CancellationToken,
    readiness: Readiness,
}

fn start(store: &Store, bus: &Bus, config: StorageConfig) -> Running {
    let shutdown = CancellationToken::new();
    let readiness = Readiness::default();
    let stage = StoreStage {
        store: store.clone(),
        bus: bus.clone(),
        config,
        readiness: readiness.clone(),
    };
    Running {
        handle: tokio::spawn(stage.run(shutdown.clone())),
        shutdown,
        readiness,
    }
}

impl Running {
    async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(60), self.handle)
            .await
            .expect("stage stops in time")
            .expect("stage task")
            .expect("stage ran cleanly");
    }
}

/// Polls `table`'s row count (on `store`) until it equals `rows`.
async fn wait_rows(store: &Store, table: &str, rows: i64, within: Duration) {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let n = store.row_counts().await.map(|c| c[table]).unwrap_or(-1);
        if n == rows {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{table}: {n} rows, expected {rows}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn all(patient: &str) -> HistoryQuery {
    HistoryQuery {
        patient_id: patient.into(),
        from_ns: 0,
        to_ns: i64::MAX,
        limit: 10_000,
        cursor: None,
    }
}

/// Publishes the fixture records; returns the EEG chunks sent.
async fn publish_fixture(
    bus: &Bus,
    stream: Uuid,
    seqs: std::ops::Range<u64>,
) -> Vec<vigil_core::record::EegChunk> {
    let mut sent = Vec::new();
    for seq in seqs {
        let c = chunk(PATIENT, stream, seq);
        bus.publish_record(Topic::EegRaw, PATIENT, &c)
            .await
            .expect("publish eeg");
        bus.publish_record(Topic::HrRaw, PATIENT, &hr(PATIENT, stream, seq))
            .await
            .expect("publish hr");
        sent.push(c);
    }
    sent
}

async fn end_to_end(db: &TestDb, bus_config: BusConfig, label: &str) {
    let store = db.store().await;
    let bus = Bus::connect(&bus_config).await.expect("bus");
    bus.create_vigil_topics().await.expect("topics");
    let group = format!("storage-{}", Uuid::new_v4().simple());
    let stream = Uuid::new_v4();
    let alert_id = Uuid::new_v4();

    let mut sent = publish_fixture(&bus, stream, 0..12).await;
    bus.publish_record(Topic::EegProb, PATIENT, &prob(PATIENT, 0, 10))
        .await
        .expect("prob");
    // A provisional lower bound on the same topic: skipped, neither stored nor dead-lettered.
    let later = prob(PATIENT, 10, 6);
    let provisional = ProvisionalProbability {
        patient_id: later.patient_id,
        start_ns: later.start_ns,
        step_ns: later.step_ns,
        aggregate_p: later.aggregate_p,
        model: later.model,
        emitted_ns: later.emitted_ns,
    };
    bus.publish_record(Topic::EegProb, PATIENT, &provisional)
        .await
        .expect("provisional");
    let trends = common::trends(PATIENT, stream, 0, 4);
    for t in &trends {
        bus.publish_record(Topic::EegTrends, PATIENT, t)
            .await
            .expect("trends");
    }
    for (t, at) in [
        (AlertTransition::Raised, 20),
        (AlertTransition::Acknowledged, 30),
    ] {
        bus.publish_record(
            Topic::Alerts,
            PATIENT,
            &alert(PATIENT, alert_id, AlertKind::Seizure, t, at),
        )
        .await
        .expect("alert");
    }
    // Poison: garbage on the EEG topic, and a valid record of the wrong kind.
    let eeg_topic = bus.topic(Topic::EegRaw);
    bus.publish(&eeg_topic, PATIENT.as_bytes(), b"\x00\x01not a record")
        .await
        .expect("garbage");
    let wrong: HrBatch = hr(PATIENT, stream, 99);
    bus.publish(
        &eeg_topic,
        PATIENT.as_bytes(),
        &codec::encode(&wrong).expect("encode"),
    )
    .await
    .expect("wrong kind");

    let running = start(&store, &bus, stage_config(&group, None));
    wait_rows(&store, "eeg_chunks", 12, Duration::from_secs(60)).await;
    wait_rows(&store, "hr_points", 48, Duration::from_secs(30)).await;
    wait_rows(&store, "seizure_prob", 10, Duration::from_secs(30)).await;
    wait_rows(&store, "eeg_trends", 4, Duration::from_secs(30)).await;
    wait_rows(&store, "alert_events", 2, Duration::from_secs(30)).await;
    // The two poison records went to the DLQ and came back as dead letters.
    wait_rows(&store, "dead_letters", 2, Duration::from_secs(30)).await;
    assert!(
        running.readiness.is_ready(),
        "{label}: {:?}",
        running.readiness.snapshot()
    );

    // More records while it runs, including a producer retry of records already stored.
    // The retry goes first: duplicates add no rows, so only records published after them
    // (same key, same partition, in order) show when the stage has consumed past them.
    publish_fixture(&bus, stream, 5..8).await;
    sent.extend(publish_fixture(&bus, stream, 12..20).await);
    wait_rows(&store, "eeg_chunks", 20, Duration::from_secs(60)).await;
    wait_rows(&store, "hr_points", 80, Duration::from_secs(30)).await;
    running.stop().await;

    // Rows equal what was published.
    let stored = store.eeg(&all(PATIENT)).await.expect("eeg");
    assert_eq!(stored.items.len(), 20);
    for (s, p) in stored.items.iter().zip(&sent) {
        assert_eq!(
            codec::encode(s).expect("enc"),
            codec::encode(p).expect("enc"),
            "{label}: seq {}",
            p.seq
        );
    }
    let stored_trends = store.trends(&all(PATIENT)).await.expect("trends").items;
    assert_eq!(
        stored_trends
            .iter()
            .map(|t| codec::encode(t).expect("enc"))
            .collect::<Vec<_>>(),
        trends
            .iter()
            .map(|t| codec::encode(t).expect("enc"))
            .collect::<Vec<_>>(),
        "{label}: trends stored as published"
    );
    let hr_points = store.heart_rate(&all(PATIENT)).await.expect("hr").items;
    let expected: Vec<(i64, f32)> = (0..20)
        .flat_map(|s| {
            hr(PATIENT, stream, s)
                .points
                .into_iter()
                .map(|p| (p.t_ns, p.bpm))
        })
        .collect();
    assert_eq!(
        hr_points
            .iter()
            .map(|p| (p.t_ns, p.bpm))
            .collect::<Vec<_>>(),
        expected
    );
    let alerts = store.alerts(&all(PATIENT)).await.expect("alerts").items;
    assert_eq!(alerts[0].state, AlertTransition::Acknowledged);
    let counts = store.row_counts().await.expect("counts");
    assert_eq!(
        (counts["seizure_prob"], counts["dead_letters"]),
        (10, 2),
        "{label}: final points only, the provisional record not dead-lettered"
    );

    // Restart: nothing that was stored is redelivered (offsets were committed), and
    // records published while the stage was down arrive exactly once.
    let probe = bus
        .subscribe(&group, &[bus.topic(Topic::EegRaw), bus.topic(Topic::HrRaw)])
        .await
        .expect("probe consumer");
    let mut probe = probe;
    let redelivered = tokio::time::timeout(Duration::from_secs(3), probe.recv()).await;
    assert!(
        redelivered.is_err(),
        "{label}: committed records were redelivered: {redelivered:?}"
    );
    probe.close().await.expect("close probe");
    publish_fixture(&bus, stream, 20..23).await;
    let running = start(&store, &bus, stage_config(&group, None));
    wait_rows(&store, "eeg_chunks", 23, Duration::from_secs(60)).await;
    wait_rows(&store, "hr_points", 92, Duration::from_secs(30)).await;
    running.stop().await;
    let after = store.row_counts().await.expect("counts");
    assert_eq!(
        after["dead_letters"], counts["dead_letters"],
        "no poison redelivered"
    );
    assert_eq!(after["seizure_prob"], counts["seizure_prob"]);
    store.close().await;
}

async fn end_to_end_memory(db: &TestDb) {
    end_to_end(db, memory_bus(), "memory").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn end_to_end_memory_bus_on_both_databases() {
    on_both_databases!(end_to_end_memory);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn end_to_end_kafka_broker() {
    let Some(bus) = kafka_bus() else { return };
    let db = TestDb::sqlite();
    end_to_end(&db, bus.clone(), "kafka/sqlite").await;
    db.cleanup().await;
    if let Some(server) = common::mysql_server() {
        let db = TestDb::mysql(&server).await;
        let bus = BusConfig {
            topic_prefix: format!("st{}.", Uuid::new_v4().simple()),
            ..bus
        };
        end_to_end(&db, bus, "kafka/mariadb").await;
        db.cleanup().await;
    }
}

/// A TCP proxy in front of MariaDB that a test can cut (every connection dropped, new ones
/// refused) and restore, to take the database away from the store mid-stream.
struct CuttableProxy {
    addr: SocketAddr,
    up: Arc<AtomicBool>,
    generation: tokio::sync::watch::Sender<u64>,
    task: JoinHandle<()>,
}

impl CuttableProxy {
    async fn start(upstream: String) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().expect("addr");
        let up = Arc::new(AtomicBool::new(true));
        let (generation, _) = tokio::sync::watch::channel(0_u64);
        let task = {
            let up = up.clone();
            let generation = generation.clone();
            tokio::spawn(async move {
                while let Ok((mut client, _)) = listener.accept().await {
                    if !up.load(Ordering::SeqCst) {
                        drop(client);
                        continue;
                    }
                    let upstream = upstream.clone();
                    let mut cut = generation.subscribe();
                    tokio::spawn(async move {
                        let Ok(mut server) = TcpStream::connect(&upstream).await else {
                            return;
                        };
                        tokio::select! {
                            _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                            _ = cut.changed() => {}
                        }
                    });
                }
            })
        };
        Self {
            addr,
            up,
            generation,
            task,
        }
    }

    fn cut(&self) {
        self.up.store(false, Ordering::SeqCst);
        self.generation.send_modify(|g| *g += 1);
    }

    fn restore(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_outage_mid_stream_loses_nothing_and_duplicates_nothing() {
    let Some(server) = common::mysql_server() else {
        return;
    };
    let db = TestDb::mysql(&server).await;
    let direct = db.store().await; // schema, and a view that bypasses the proxy
    let (creds_host, name) = (server.clone(), db.mysql_name().expect("mysql").to_owned());
    let upstream = creds_host.rsplit('@').next().expect("host:port").to_owned();
    let proxy = CuttableProxy::start(upstream.clone()).await;
    let via_proxy = format!(
        "{}/{name}",
        creds_host.replace(&upstream, &proxy.addr.to_string())
    );
    let store = Store::connect(&via_proxy).await.expect("store via proxy");

    let bus = Bus::connect(&memory_bus()).await.expect("bus");
    bus.create_vigil_topics().await.expect("topics");
    let group = "storage-outage";
    let stream = Uuid::new_v4();
    publish_fixture(&bus, stream, 0..10).await;
    let running = start(&store, &bus, stage_config(group, None));
    wait_rows(&direct, "eeg_chunks", 10, Duration::from_secs(30)).await;

    // Outage 1: the network path to the database is cut while records keep coming.
    proxy.cut();
    publish_fixture(&bus, stream, 10..20).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while running.readiness.is_ready() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "readiness never dropped"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let snapshot = running.readiness.snapshot();
    assert!(!snapshot["database"].ok, "{snapshot:?}");
    assert_eq!(direct.row_counts().await.expect("counts")["eeg_chunks"], 10);
    tokio::time::sleep(Duration::from_secs(1)).await;
    proxy.restore();
    wait_rows(&direct, "eeg_chunks", 20, Duration::from_secs(60)).await;
    wait_rows(&direct, "hr_points", 80, Duration::from_secs(30)).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !running.readiness.is_ready() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "readiness never came back"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Outage 2: the server kills the store's connections (as a fail-over or an operator
    // would) between batches.
    let kill_all = || async {
        use sqlx::Connection;
        let mut admin = sqlx::MySqlConnection::connect(&db.url)
            .await
            .expect("admin");
        let ids: Vec<i64> = sqlx::query_scalar(
            "SELECT ID FROM information_schema.PROCESSLIST WHERE DB = ? AND ID <> CONNECTION_ID()",
        )
        .bind(&name)
        .fetch_all(&mut admin)
        .await
        .expect("processlist");
        for id in &ids {
            // A connection may end by itself meanwhile.
            let _ = sqlx::query(&format!("KILL {id}")).execute(&mut admin).await;
        }
        ids.len()
    };
    let killed = kill_all().await;
    assert!(killed > 0, "the store holds connections");
    publish_fixture(&bus, stream, 20..30).await;
    wait_rows(&direct, "eeg_chunks", 30, Duration::from_secs(60)).await;

    // Outage 3: shutdown while the database is away: the batch is not acknowledged, and a
    // new stage after the recovery stores it.
    proxy.cut();
    publish_fixture(&bus, stream, 30..35).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    running.stop().await;
    assert_eq!(direct.row_counts().await.expect("counts")["eeg_chunks"], 30);
    proxy.restore();
    let running = start(&store, &bus, stage_config(group, None));
    wait_rows(&direct, "eeg_chunks", 35, Duration::from_secs(60)).await;
    wait_rows(&direct, "hr_points", 140, Duration::from_secs(30)).await;
    running.stop().await;

    // Exactly once: every seq once, nothing else.
    let seqs: Vec<u64> = direct
        .eeg(&all(PATIENT))
        .await
        .expect("eeg")
        .items
        .iter()
        .map(|c| c.seq)
        .collect();
    assert_eq!(seqs, (0..35).collect::<Vec<_>>());
    store.close().await;
    direct.close().await;
    proxy.task.abort();
    db.cleanup().await;
}

fn parquet_files(root: &Path, kind: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.join(format!("kind={kind}"))];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

fn read_parquet(path: &Path) -> Vec<arrow::record_batch::RecordBatch> {
    let file = std::fs::File::open(path).expect("open parquet");
    ParquetRecordBatchReaderBuilder::try_new(file)
        .expect("parquet")
        .build()
        .expect("reader")
        .collect::<Result<Vec<_>, _>>()
        .expect("batches")
}

fn total_rows(files: &[PathBuf]) -> usize {
    files
        .iter()
        .flat_map(|f| read_parquet(f))
        .map(|b| b.num_rows())
        .sum()
}

async fn parquet_archive_round_trip(db: &TestDb) {
    let store = db.store().await;
    let dir = tempfile::tempdir().expect("archive dir");
    let bus = Bus::connect(&memory_bus()).await.expect("bus");
    bus.create_vigil_topics().await.expect("topics");
    let stream = Uuid::new_v4();
    let sent = publish_fixture(&bus, stream, 0..6).await;
    bus.publish_record(Topic::EegProb, PATIENT, &prob(PATIENT, 0, 10))
        .await
        .expect("prob");
    // A chunk on the next UTC day goes to another date directory.
    let mut late = chunk(PATIENT, stream, 6);
    late.start_ns += 86_400 * 1_000_000_000;
    bus.publish_record(Topic::EegRaw, PATIENT, &late)
        .await
        .expect("late");

    let running = start(
        &store,
        &bus,
        stage_config("storage-archive", Some(dir.path())),
    );
    wait_rows(&store, "eeg_chunks", 7, Duration::from_secs(30)).await;
    wait_rows(&store, "seizure_prob", 10, Duration::from_secs(30)).await;
    running.stop().await;

    let eeg_files = parquet_files(dir.path(), "eeg");
    assert!(
        eeg_files
            .iter()
            .all(|f| f.extension().is_some_and(|e| e == "parquet")),
        "no temp files left: {eeg_files:?}"
    );
    let days: std::collections::BTreeSet<String> = eeg_files
        .iter()
        .filter_map(|f| f.parent()?.file_name()?.to_str().map(str::to_owned))
        .collect();
    assert_eq!(
        days.into_iter().collect::<Vec<_>>(),
        vec!["date=2024-03-01", "date=2024-03-02"]
    );
    assert!(eeg_files[0]
        .to_string_lossy()
        .contains(&format!("kind=eeg/patient={PATIENT}/date=")));
    assert_eq!(
        total_rows(&eeg_files),
        7 * 2,
        "one row per chunk and channel"
    );
    assert_eq!(total_rows(&parquet_files(dir.path(), "hr")), 24);
    assert_eq!(total_rows(&parquet_files(dir.path(), "prob")), 10);

    // Values read back with arrow equal what was sent (NaN kept in EEG samples, null for
    // not-evaluated probabilities).
    let mut found = false;
    for file in &eeg_files {
        for batch in read_parquet(file) {
            let seq = batch
                .column_by_name("seq")
                .expect("seq")
                .as_primitive::<arrow::datatypes::Int64Type>();
            let ch = batch
                .column_by_name("channel_index")
                .expect("ch")
                .as_primitive::<arrow::datatypes::Int32Type>();
            let samples = batch
                .column_by_name("samples")
                .expect("samples")
                .as_list::<i32>();
            for row in 0..batch.num_rows() {
                if seq.value(row) == 2 && ch.value(row) == 1 {
                    let values = samples.value(row);
                    let values = values.as_primitive::<Float32Type>();
                    let expected = &sent[2].samples[1];
                    assert_eq!(values.len(), expected.len());
                    for (i, e) in expected.iter().enumerate() {
                        assert_eq!(values.value(i).to_bits(), e.to_bits(), "sample {i}");
                    }
                    found = true;
                }
            }
        }
    }
    assert!(found, "chunk 2 channel 1 archived");
    let prob_batch = read_parquet(&parquet_files(dir.path(), "prob")[0]).remove(0);
    let p = prob_batch
        .column_by_name("p")
        .expect("p")
        .as_primitive::<Float32Type>();
    assert_eq!(p.null_count(), 1, "NaN stored as null");
    assert!(p.is_null(1));

    // Redelivery of archived records (after a crash before the ack) writes no second copy.
    let archive = Archive::new(dir.path());
    let again = WriteBatch {
        eeg: sent.clone(),
        archive: true,
        ..WriteBatch::default()
    };
    let summary = store.write_batch(&again).await.expect("redelivery");
    assert!(!summary.archive_parts.is_empty(), "parts are planned");
    let written = archive.write_pending(&store).await.expect("write pending");
    assert!(written.is_empty(), "no new rows, no new file");
    assert_eq!(total_rows(&parquet_files(dir.path(), "eeg")), 14);

    // A crash between commit and file: the part stays pending and is written once later;
    // writing it again (crash after rename, before marking) rewrites the same file.
    let new = WriteBatch {
        eeg: (10..13).map(|s| chunk(PATIENT, stream, s)).collect(),
        archive: true,
        ..WriteBatch::default()
    };
    let summary = store.write_batch(&new).await.expect("write");
    assert_eq!(
        store.pending_archive_parts().await.expect("pending").len(),
        1
    );
    let part = summary.archive_parts[0].clone();
    let path = archive
        .write_part(&store, &part)
        .await
        .expect("write")
        .expect("file");
    let first = std::fs::read(&path).expect("read");
    archive.write_part(&store, &part).await.expect("rewrite");
    assert_eq!(total_rows(std::slice::from_ref(&path)), 6);
    assert_eq!(std::fs::read(&path).expect("read").len(), first.len());
    assert!(store
        .pending_archive_parts()
        .await
        .expect("pending")
        .is_empty());
    assert_eq!(total_rows(&parquet_files(dir.path(), "eeg")), 20);
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parquet_archive_round_trip_on_both_databases() {
    on_both_databases!(parquet_archive_round_trip);
}
