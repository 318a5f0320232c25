//! Fault injection (docs/RELIABILITY.md, "Fault injection"): devices stream EEG through
//! `vigil ingest` -> tansu -> `vigil store` -> MariaDB, each a real process, while one part is
//! killed or stopped. Every scenario asserts sent = acknowledged = stored, no chunk refused,
//! none lost and none stored twice, and prints its numbers.
//!
//! Needs `VIGIL_TEST_TANSU` (the tansu binary; scripts/test sets it) and MariaDB as
//! scripts/test sets it up (`VIGIL_TEST_MYSQL`, root over the local socket). Scenarios run one
//! at a time: each starts its own broker, and two at once would share the 2 cores.

use std::path::PathBuf;
use std::time::Duration;

use tokio::sync::Mutex;
use tokio::time::{sleep, Instant};
use vigil_bench::faults::{Binaries, Outcome, Rig};
use vigil_core::testenv::unavailable;

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
