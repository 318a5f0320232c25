//! Fault injection (docs/RELIABILITY.md, "Fault injection"): devices stream EEG through
//! `vigil ingest` -> tansu -> `vigil store` -> MariaDB, each a real process, while one part is
//! killed or stopped. Every scenario asserts sent = acknowledged = stored, no chunk refused,
//! none lost and none stored twice, and prints its numbers. One more kills `vigil infer` right
//! after it raised a seizure alert: its successor commits every record and raises nothing
//! twice. Two `vigil infer` instances share the patients, and when one is killed the other
//! takes over its partitions and raises no alert twice.
//!
//! Needs `VIGIL_TEST_TANSU` (the tansu binary; scripts/test sets it) and MariaDB as
//! scripts/test sets it up (`VIGIL_TEST_MYSQL`, root over the local socket). Scenarios run one
//! at a time: each starts its own broker, and two at once would share the 2 cores.

use std::path::PathBuf;
use std::time::Duration;

use tokio::sync::Mutex;
use tokio::time::{sleep, Instant};
use uuid::Uuid;
use vigil_bench::faults::{Binaries, Outcome, Rig};
use vigil_core::bus::{Bus, BusConsumer, Topic};
use vigil_core::codec::{self, DecodeLimits};
use vigil_core::record::{AlertEvent, AlertKind, AlertTransition};
use vigil_core::testenv::unavailable;
use vigil_inference::synthetic::{SyntheticChannel, SyntheticStream};

static ONE_AT_A_TIME: Mutex<()> = Mutex::const_new(());

/// Devices streaming at once, one per patient.
const DEVICES: usize = 4;
/// Chunks per device: 40 s of streaming at one 0.5 s chunk every 0.5 s.
const CHUNKS: u64 = 80;
const INTERVAL: Duration = Duration::from_millis(500);
/// Longest the store may take to store everything after the last acknowledgement.
const CATCH_UP: Duration = Duration::from_secs(120);

fn binaries() -> Option<Binaries> {
    let tansu = match std::env::var_os("VIGIL_TEST_TANSU") {
        Some(path) if PathBuf::from(&path).is_file() => PathBuf::from(path),
        _ => return unavailable("VIGIL_TEST_TANSU is not the tansu binary (scripts/test sets it)"),
    };
    if std::env::var_os("VIGIL_TEST_MYSQL").is_none() {
        return unavailable("VIGIL_TEST_MYSQL is not set (scripts/test sets up MariaDB)");
    }
    Some(Binaries {
        vigil: PathBuf::from(env!("CARGO_BIN_EXE_vigil")),
        tansu,
    })
}

/// Ends the streaming, waits until everything acknowledged is stored, checks the outcome;
/// keeps the logs of a failed scenario.
async fn settle(rig: Rig, traffic: vigil_bench::faults::Traffic, scenario: &str) -> Outcome {
    let devices = traffic.finish().await;
    let sent: u64 = devices.iter().map(|d| d.sent).sum();
    let waited = rig.wait_stored(sent, CATCH_UP).await;
    let outcome = rig.outcome(&devices).await;
    let verdict = match (&waited, &outcome) {
        (Ok(_), Ok(o)) => o.check(),
        (Err(e), _) | (_, Err(e)) => Err(anyhow::anyhow!("{e:#}")),
    };
    match verdict {
        Ok(()) => {
            let outcome = outcome.expect("checked");
            println!("{}", outcome.line(scenario));
            rig.stop().await;
            outcome
        }
        Err(e) => {
            if let Ok(o) = &outcome {
                println!("{}", o.line(scenario));
            }
            let logs = rig.keep();
            panic!("{scenario}: {e:#} (logs in {})", logs.display());
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_killed_mid_stream_loses_nothing() {
    let Some(bins) = binaries() else { return };
    let _one = ONE_AT_A_TIME.lock().await;
    let mut rig = Rig::start(bins, DEVICES, false).await.expect("rig");
    let traffic = rig.stream(CHUNKS, INTERVAL);
    sleep(Duration::from_secs(12)).await;
    rig.kill_broker().await;
    sleep(Duration::from_secs(8)).await;
    rig.start_broker().await.expect("restart tansu");
    let outcome = settle(rig, traffic, "tansu SIGKILL 12 s in, restarted 8 s later").await;
    assert_eq!(outcome.sent, DEVICES as u64 * CHUNKS);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_stopped_for_60_s_loses_nothing() {
    let Some(bins) = binaries() else { return };
    let _one = ONE_AT_A_TIME.lock().await;
    let mut rig = Rig::start(bins, DEVICES, true).await.expect("rig");
    let traffic = rig.stream(CHUNKS, INTERVAL);
    sleep(Duration::from_secs(10)).await;
    let (_, before) = rig.stored().await.expect("stored before the outage");
    assert!(before > 0, "the store was writing before the outage");
    let db = rig.private_database().expect("private database");
    db.stop().await.expect("stop MariaDB");
    sleep(Duration::from_secs(60)).await;
    db.start().await.expect("start MariaDB again");
    let outcome = settle(rig, traffic, "MariaDB stopped 10 s in for 60 s").await;
    assert_eq!(outcome.sent, DEVICES as u64 * CHUNKS);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_killed_mid_stream_resumes_and_stores_everything() {
    let Some(bins) = binaries() else { return };
    let _one = ONE_AT_A_TIME.lock().await;
    let mut rig = Rig::start(bins, DEVICES, false).await.expect("rig");
    let traffic = rig.stream(CHUNKS, INTERVAL);
    sleep(Duration::from_secs(12)).await;
    rig.kill_store().await;
    let (_, at_kill) = rig.stored().await.expect("stored at the kill");
    sleep(Duration::from_secs(5)).await;
    rig.start_store().await.expect("restart vigil store");
    let restarted = Instant::now();
    // Resumed: rows beyond those stored when it died (devices kept streaming meanwhile).
    let resumed = rig
        .wait_stored(at_kill + 1, Duration::from_secs(45))
        .await
        .map(|_| restarted.elapsed());
    let outcome = settle(
        rig,
        traffic,
        "vigil store SIGKILL 12 s in, restarted 5 s later",
    )
    .await;
    let resumed = resumed.expect("the restarted store resumes within the 45 s session timeout");
    println!(
        "vigil store resumed {:.1} s after its restart",
        resumed.as_secs_f64()
    );
    assert_eq!(outcome.sent, DEVICES as u64 * CHUNKS);
}

/// Seconds of EEG in the `vigil infer` scenario: a 300 s model window plus five 20 s steps.
const INFER_SECONDS: usize = 400;
/// The synthetic seizure-like burst on C3, seconds into the stream.
const INFER_BURST: (f64, f64) = (20.0, 45.0);

/// The model weights directory (the workspace's `models/`), or None where they are missing.
fn models_dir() -> Option<PathBuf> {
    let weights = vigil_core::testenv::model_weights()?;
    Some(
        weights
            .parent()
            .expect("the models directory")
            .to_path_buf(),
    )
}

/// A reader of every alert event published from now on (a group of its own).
async fn alerts_reader(bus: &Bus) -> Box<dyn BusConsumer> {
    bus.subscribe(
        &format!("faults-alerts-{}", Uuid::new_v4().simple()),
        &[bus.topic(Topic::Alerts)],
    )
    .await
    .expect("alerts reader")
}

/// `seconds` of two channels at 256 Hz: C3 with the seizure-like burst, C4 background.
fn burst_rows(seconds: usize) -> [Vec<f32>; 2] {
    [
        SyntheticChannel {
            seed: 2,
            burst: Some(INFER_BURST),
            ..Default::default()
        }
        .generate(256.0, seconds as f64),
        SyntheticChannel {
            seed: 1,
            ..Default::default()
        }
        .generate(256.0, seconds as f64),
    ]
}

/// The next alert event on `reader`, or None after `quiet` without one.
async fn next_alert(reader: &mut Box<dyn BusConsumer>, quiet: Duration) -> Option<AlertEvent> {
    let msg = tokio::time::timeout(quiet, reader.recv()).await.ok()?;
    let msg = msg.expect("read vigil.alerts");
    Some(codec::decode(&msg.payload, &DecodeLimits::default()).expect("an alert event"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn infer_killed_after_raising_an_alert_neither_loses_nor_repeats_it() {
    let Some(bins) = binaries() else { return };
    let Some(models) = models_dir() else {
        return;
    };
    let _one = ONE_AT_A_TIME.lock().await;
    let mut rig = Rig::start(bins, 0, false).await.expect("rig");
    rig.start_infer(&models).await.expect("start vigil infer");
    let bus = Bus::connect(&rig.bus_config()).await.expect("bus");
    let mut alerts = alerts_reader(&bus).await;
    let rows = burst_rows(INFER_SECONDS);
    let t0_ns = vigil_core::time::now_ns();
    let stream = SyntheticStream {
        patient_id: "infer-p1",
        device_id: "infer-headset",
        stream_id: Uuid::new_v4(),
        t0_ns,
        channels: &["C3", "C4"],
    };
    for seq in 0..INFER_SECONDS {
        bus.publish_record(Topic::EegRaw, "infer-p1", &stream.chunk(seq, &rows))
            .await
            .expect("publish EEG");
    }

    // The first seizure alert, then SIGKILL: whatever the dead process had not committed is
    // read again by its successor.
    let started = Instant::now();
    let eeg = [bus.topic(Topic::EegRaw)];
    let raised = loop {
        let event = next_alert(&mut alerts, Duration::from_secs(300))
            .await
            .expect("a seizure alert within 300 s");
        if event.kind == AlertKind::Seizure && event.transition == AlertTransition::Raised {
            break event;
        }
    };
    let raised_after = started.elapsed();
    rig.kill_infer().await;
    let lag_at_kill = tokio::task::block_in_place(|| rig.group_lag("vigil-inference", &eeg))
        .expect("the inference group's lag at the kill");
    sleep(Duration::from_secs(2)).await;
    rig.start_infer(&models).await.expect("restart vigil infer");
    let restarted = Instant::now();

    // The successor evaluates to the end of the stream and commits every record.
    let lag = loop {
        let lag = tokio::task::block_in_place(|| rig.group_lag("vigil-inference", &eeg))
            .expect("the inference group's lag");
        if lag == 0.0 || restarted.elapsed() > Duration::from_secs(300) {
            break lag;
        }
        sleep(Duration::from_secs(2)).await;
    };
    let caught_up = restarted.elapsed();
    let mut later = Vec::new();
    while let Some(event) = next_alert(&mut alerts, Duration::from_secs(10)).await {
        later.push(event);
    }
    let raised_again: Vec<&AlertEvent> = later
        .iter()
        .filter(|e| e.kind == AlertKind::Seizure && e.transition == AlertTransition::Raised)
        .collect();
    println!(
        "vigil infer SIGKILL after its first alert ({:.1} s), {lag_at_kill} of {INFER_SECONDS} \
         records uncommitted; restarted 2 s later: every EEG record committed {:.1} s after the \
         restart (lag {lag}); alert events since: {:?}; seizure alerts raised again: {}",
        raised_after.as_secs_f64(),
        caught_up.as_secs_f64(),
        later
            .iter()
            .map(|e| (e.kind, e.transition))
            .collect::<Vec<_>>(),
        raised_again.len()
    );
    let onset_s = (raised.onset_ns - t0_ns) as f64 / 1e9;
    let verdict = (|| {
        anyhow::ensure!(
            lag == 0.0,
            "the restarted stage left {lag} records uncommitted"
        );
        anyhow::ensure!(
            (INFER_BURST.0 - 5.0..=INFER_BURST.1).contains(&onset_s),
            "onset {onset_s:.1} s is not in the burst"
        );
        anyhow::ensure!(
            raised_again.is_empty(),
            "the restarted stage raised the open alert again: {raised_again:?}"
        );
        Ok(())
    })();
    alerts.close().await.expect("close the reader");
    if let Err(e) = verdict {
        let logs = rig.keep();
        panic!("vigil infer killed: {e:#} (logs in {})", logs.display());
    }
    rig.stop().await;
}

/// Seconds of EEG the scale-out scenario sends before the kill (the first window, at 300 s,
/// alerts on the burst) and in all.
const SCALE_OUT_SPLIT: usize = 340;
const SCALE_OUT_SECONDS: usize = 400;
/// The instances' orphaned-partition watch (`bus.stall_rejoin_s`): past tansu's 45 s session
/// timeout, so one rejoin finds the dead member gone.
const SCALE_OUT_STALL_REJOIN_S: u64 = 50;

/// Two patients on each half of the partitions: with two members, the range assignor gives
/// each half to one of them.
fn scale_out_patients() -> Vec<String> {
    let (mut low, mut high) = (Vec::new(), Vec::new());
    for i in 0.. {
        let id = format!("scale-p{i}");
        let half = vigil_core::bus::partitioner::partition_for(id.as_bytes(), 12) < 6;
        let side = if half { &mut low } else { &mut high };
        if side.len() < 2 {
            side.push(id);
        }
        if low.len() == 2 && high.len() == 2 {
            break;
        }
    }
    low.into_iter().chain(high).collect()
}

/// Seizure alerts raised per patient among `events`.
fn raised_per_patient(events: &[AlertEvent]) -> std::collections::BTreeMap<String, usize> {
    let mut raised = std::collections::BTreeMap::new();
    for e in events
        .iter()
        .filter(|e| e.kind == AlertKind::Seizure && e.transition == AlertTransition::Raised)
    {
        *raised.entry(e.patient_id.clone()).or_insert(0) += 1;
    }
    raised
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_infer_instances_split_patients_and_the_survivor_takes_over() {
    let Some(bins) = binaries() else { return };
    let Some(models) = models_dir() else {
        return;
    };
    let _one = ONE_AT_A_TIME.lock().await;
    let mut rig = Rig::start(bins, 0, false).await.expect("rig");
    rig.start_infer_instances(&models, 2, SCALE_OUT_STALL_REJOIN_S)
        .await
        .expect("start two vigil infer instances");
    // The streams start while the second member's join still moves half the partitions: the
    // new owner replays what their windows need (checked point for point by
    // inference/tests/stage.rs), and the rebalance pause, longer than the rig's 5 s idle
    // timeout, finishes no stream (idle time runs against the read horizon, docs/RELIABILITY.md).
    let bus = Bus::connect(&rig.bus_config()).await.expect("bus");
    let mut alerts = alerts_reader(&bus).await;
    let patients = scale_out_patients();
    let rows = burst_rows(SCALE_OUT_SECONDS);
    let t0_ns = vigil_core::time::now_ns();
    let streams: Vec<SyntheticStream> = patients
        .iter()
        .map(|p| SyntheticStream {
            patient_id: p,
            device_id: p,
            stream_id: Uuid::new_v4(),
            t0_ns,
            channels: &["C3", "C4"],
        })
        .collect();
    let publish = |seqs: std::ops::Range<usize>| {
        let (bus, streams, rows) = (&bus, &streams, &rows);
        async move {
            for seq in seqs {
                for s in streams {
                    bus.publish_record(Topic::EegRaw, s.patient_id, &s.chunk(seq, rows))
                        .await
                        .expect("publish EEG");
                }
            }
        }
    };
    publish(0..SCALE_OUT_SPLIT).await;

    // Every patient's burst alerted, with the patients split over both instances.
    let mut events = Vec::new();
    let started = Instant::now();
    while raised_per_patient(&events).len() < patients.len() {
        let event = next_alert(&mut alerts, Duration::from_secs(300))
            .await
            .expect("every patient's seizure alert within 300 s");
        events.push(event);
    }
    let held = [
        rig.infer_instance_metric(0, "vigil_inference_patients")
            .await,
        rig.infer_instance_metric(1, "vigil_inference_patients")
            .await,
    ];
    println!(
        "both instances ready; every burst alerted after {:.1} s; patients held: {held:?}",
        started.elapsed().as_secs_f64()
    );
    let doomed = held
        .iter()
        .position(|h| h.is_some_and(|n| n > 0.0))
        .expect("an instance holds patients");
    let survivor = 1 - doomed;
    let replayed_before = rig
        .infer_instance_metric(survivor, "vigil_inference_replayed_chunks_total")
        .await
        .unwrap_or(0.0);
    rig.kill_infer_instance(doomed).await;
    let killed = Instant::now();

    // The rest of every stream, half of it on the dead instance's partitions.
    publish(SCALE_OUT_SPLIT..SCALE_OUT_SECONDS).await;
    let eeg = [bus.topic(Topic::EegRaw)];
    let lag = loop {
        let lag = tokio::task::block_in_place(|| rig.group_lag("vigil-inference", &eeg))
            .expect("the inference group's lag");
        if lag == 0.0 || killed.elapsed() > Duration::from_secs(420) {
            break lag;
        }
        sleep(Duration::from_secs(2)).await;
    };
    let caught_up = killed.elapsed();
    while let Some(event) = next_alert(&mut alerts, Duration::from_secs(10)).await {
        events.push(event);
    }
    let rejoins = rig
        .infer_instance_metric(survivor, "vigil_bus_group_rejoins_total")
        .await;
    let replayed = rig
        .infer_instance_metric(survivor, "vigil_inference_replayed_chunks_total")
        .await
        .unwrap_or(0.0)
        - replayed_before;
    let raised = raised_per_patient(&events);
    println!(
        "instance {doomed} SIGKILLed holding {:?} patients; instance {survivor} replayed \
         {replayed} earlier chunks to rebuild their windows ({replayed_before} before the kill) \
         and committed every EEG record {:.1} s later (lag {lag}) after {rejoins:?} group \
         rejoins; seizure alerts raised per patient: {raised:?}",
        held[doomed],
        caught_up.as_secs_f64()
    );
    let verdict = (|| {
        anyhow::ensure!(
            lag == 0.0,
            "{lag} EEG records left uncommitted: the survivor did not take over"
        );
        anyhow::ensure!(
            replayed > 0.0,
            "the survivor took the dead instance's patients over without replaying their windows"
        );
        anyhow::ensure!(
            raised.len() == patients.len() && raised.values().all(|n| *n == 1),
            "each patient's seizure alert must be raised exactly once: {raised:?}"
        );
        Ok(())
    })();
    alerts.close().await.expect("close the reader");
    if let Err(e) = verdict {
        let logs = rig.keep();
        panic!("scale-out: {e:#} (logs in {})", logs.display());
    }
    rig.stop().await;
}
