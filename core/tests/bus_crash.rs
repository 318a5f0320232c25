//! A consumer-group member killed with SIGKILL, on a real Kafka-protocol broker (tansu in
//! `scripts/test`, `VIGIL_TEST_KAFKA=host:port`; skipped locally without it, failed under CI).
//!
//! The members are separate processes: this test binary re-runs itself with
//! `VIGIL_BUS_MEMBER` set, and the `member_process` test then acts as one group member
//! (see [`member_main`]), reporting on stdout what it committed and what it holds.
//! Run with `--nocapture` to see the measured times.

mod common;

use std::collections::BTreeSet;
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};
use tokio::time::timeout;
use uuid::Uuid;
use vigil_core::bus::{Bus, BusError};
use vigil_core::config::BusConfig;
use vigil_core::testenv;

/// Set in a member process: the bus config as TOML.
const MEMBER_BUS: &str = "VIGIL_BUS_MEMBER";
const MEMBER_GROUP: &str = "VIGIL_BUS_MEMBER_GROUP";
const MEMBER_TOPIC: &str = "VIGIL_BUS_MEMBER_TOPIC";
/// Records to acknowledge and commit one by one; unset = every record.
const MEMBER_COMMIT: &str = "VIGIL_BUS_MEMBER_COMMIT";
/// Records to receive without acknowledging after the committed ones.
const MEMBER_HOLD: &str = "VIGIL_BUS_MEMBER_HOLD";
/// Prefix of the member's protocol lines (libtest prints its own lines too).
const LINE: &str = "bus-member:";

const PARTITIONS: i32 = 4;
const RECORDS: usize = 120;
const PUBLISH_EVERY: Duration = Duration::from_millis(100);
/// Longer than librdkafka's auto-commit interval (1 s) plus a commit round trip.
const AUTO_COMMIT_SETTLE: Duration = Duration::from_millis(2500);
/// The restart delay of issue 17's manual run, where the dynamic member stalled for good.
const RESTART_AFTER: Duration = Duration::from_secs(5);
/// How long the new member must keep receiving after it resumed.
const OBSERVE: Duration = Duration::from_secs(10);
/// librdkafka's default `session.timeout.ms`.
const SESSION_TIMEOUT: Duration = Duration::from_secs(45);
/// The survivor's `bus.stall_rejoin_s`: past the session timeout, so one rejoin finds the dead
/// member gone.
const STALL_REJOIN: Duration = Duration::from_secs(50);

/// A record as `(partition, offset)`.
type Pos = (i32, i64);

/// The member side: runs only in a process started by [`spawn_member`].
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn member_process() {
    let Ok(bus) = std::env::var(MEMBER_BUS) else {
        return;
    };
    member_main(toml::from_str(&bus).expect("member bus config")).await;
}

/// Subscribes, commits `MEMBER_COMMIT` records one by one, receives `MEMBER_HOLD` more
/// without acknowledging them, prints `ready`, and then waits: it leaves the group cleanly
/// when its stdin closes, and otherwise until it is killed.
async fn member_main(config: BusConfig) {
    let env = |name| std::env::var(name).expect(name);
    let commit_limit: Option<usize> = std::env::var(MEMBER_COMMIT)
        .ok()
        .map(|n| n.parse().expect("n"));
    let hold: usize = std::env::var(MEMBER_HOLD).map_or(0, |n| n.parse().expect("n"));
    if config.kafka.contains_key("debug") {
        vigil_core::telemetry::init(&vigil_core::config::TelemetryConfig {
            log_filter: "debug".into(),
            ..Default::default()
        });
    }
    let bus = Bus::connect(&config).await.expect("connect");
    let mut consumer = bus
        .subscribe(&env(MEMBER_GROUP), &[env(MEMBER_TOPIC)])
        .await
        .expect("subscribe");
    println!("{LINE} subscribed");
    // tokio's stdin needs a feature the workspace does not enable; a thread waits instead.
    let (eof_tx, mut eof) = tokio::sync::oneshot::channel::<()>();
    std::thread::spawn(move || {
        let _ = std::io::Read::read_to_end(&mut std::io::stdin(), &mut Vec::new());
        let _ = eof_tx.send(());
    });
    let (mut committed, mut held) = (0, 0);
    let mut ready = false;
    loop {
        if !ready && commit_limit.is_some_and(|n| committed == n) && held == hold {
            // Acknowledged offsets are committed by librdkafka's auto-commit (every 1 s).
            tokio::time::sleep(AUTO_COMMIT_SETTLE).await;
            println!("{LINE} ready");
            ready = true;
        }
        tokio::select! {
            _ = &mut eof => break,
            msg = consumer.recv(), if !ready => {
                let msg = msg.expect("recv");
                if commit_limit.is_none_or(|n| committed < n) {
                    consumer.ack(&msg).expect("ack");
                    committed += 1;
                    println!("{LINE} committed {} {}", msg.partition, msg.offset);
                } else {
                    held += 1;
                    println!("{LINE} held {} {}", msg.partition, msg.offset);
                }
            }
        }
    }
    consumer.close().await.expect("close");
}

/// What a member reported.
enum Report {
    Subscribed,
    Committed(Pos),
    Held,
    Ready,
}

struct Member {
    child: Child,
    lines: Lines<BufReader<ChildStdout>>,
}

impl Member {
    /// The next report, or `None` when the member's stdout closed.
    async fn next(&mut self) -> Option<Report> {
        while let Some(line) = self.lines.next_line().await.expect("member stdout") {
            let Some(report) = line.strip_prefix(LINE) else {
                continue;
            };
            let words: Vec<&str> = report.split_whitespace().collect();
            let pos = || -> Pos {
                (
                    words[1].parse().expect("partition"),
                    words[2].parse().expect("offset"),
                )
            };
            return Some(match words[0] {
                "subscribed" => Report::Subscribed,
                "committed" => Report::Committed(pos()),
                "held" => Report::Held,
                "ready" => Report::Ready,
                other => panic!("unknown member report {other:?}"),
            });
        }
        None
    }
}

/// Starts a member process; its stderr (librdkafka's logs with `VIGIL_TEST_KAFKA_DEBUG`)
/// goes to `log`.
fn spawn_member(
    config: &BusConfig,
    group: &str,
    topic: &str,
    commit: Option<usize>,
    hold: usize,
    log: &std::path::Path,
) -> Member {
    let mut cmd = Command::new(std::env::current_exe().expect("test binary"));
    cmd.args([
        "member_process",
        "--exact",
        "--nocapture",
        "--test-threads=1",
    ])
    .env(
        MEMBER_BUS,
        toml::to_string(config).expect("bus config as TOML"),
    )
    .env(MEMBER_GROUP, group)
    .env(MEMBER_TOPIC, topic)
    .env(MEMBER_HOLD, hold.to_string())
    .env_remove("CI")
    .stdin(Stdio::piped())
    .stdout(Stdio::piped())
    .stderr(std::fs::File::create(log).expect("member log"))
    .kill_on_drop(true);
    match commit {
        Some(n) => cmd.env(MEMBER_COMMIT, n.to_string()),
        None => cmd.env_remove(MEMBER_COMMIT),
    };
    let mut child = cmd.spawn().expect("spawn member");
    let stdout = child.stdout.take().expect("piped stdout");
    Member {
        child,
        lines: BufReader::new(stdout).lines(),
    }
}

/// The broker config for a test, or `None` in a member process (where only
/// `member_process` acts) and without a broker (see `testenv`).
fn kafka_config() -> Option<BusConfig> {
    if std::env::var_os(MEMBER_BUS).is_some() {
        return None;
    }
    let mut config = testenv::kafka_bus(PARTITIONS)?;
    if let Ok(debug) = std::env::var("VIGIL_TEST_KAFKA_DEBUG") {
        config.kafka.insert("debug".into(), debug);
    }
    Some(config)
}

/// Publishes `n` records spread over every partition; returns where they landed.
async fn publish(bus: &Bus, topic: &str, from: usize, n: usize) -> BTreeSet<Pos> {
    let mut landed = BTreeSet::new();
    for i in from..from + n {
        let key = format!("patient-{}", i % 24);
        let d = bus
            .publish(topic, key.as_bytes(), format!("{i}").as_bytes())
            .await
            .expect("publish");
        landed.insert((d.partition, d.offset));
    }
    landed
}

/// Keeps publishing (one record per `PUBLISH_EVERY`) until `stop`; returns every position.
fn keep_publishing(
    bus: Bus,
    topic: String,
    stop: tokio_util::sync::CancellationToken,
) -> tokio::task::JoinHandle<BTreeSet<Pos>> {
    tokio::spawn(async move {
        let mut landed = BTreeSet::new();
        let mut i = RECORDS;
        while !stop.is_cancelled() {
            landed.extend(publish(&bus, &topic, i, 1).await);
            i += 1;
            tokio::time::sleep(PUBLISH_EVERY).await;
        }
        landed
    })
}

/// A member killed with SIGKILL after committing part of its partitions' records (and
/// holding a few more unacknowledged) is replaced by a new process in the same group while
/// records keep arriving. The new member must resume within the session timeout, keep
/// receiving afterwards, and get every record the dead one did not commit, and none it did.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_member_is_replaced_within_the_session_timeout() {
    let Some(mut config) = kafka_config() else {
        return;
    };
    // The restarted process is the same instance: it takes over the dead member's identity.
    // VIGIL_TEST_DYNAMIC_MEMBERS=1 shows tansu 0.6.0's stall with dynamic membership.
    if std::env::var_os("VIGIL_TEST_DYNAMIC_MEMBERS").is_none() {
        config.instance_id = "crash-test-0".into();
    }
    let logs = tempfile::Builder::new()
        .prefix("vigil-bus-crash.")
        .tempdir()
        .expect("log dir")
        .keep();
    eprintln!("member logs in {}", logs.display());
    let (bus, topic) = common::bus_with_topic(&config, PARTITIONS).await;
    let mut all = publish(&bus, &topic, 0, RECORDS).await;
    let group = format!("crash-{}", Uuid::new_v4().simple());
    let stop = tokio_util::sync::CancellationToken::new();
    let producer = keep_publishing(bus.clone(), topic.clone(), stop.clone());

    let (commit, hold) = (RECORDS / 3, 5);
    let mut first = spawn_member(
        &config,
        &group,
        &topic,
        Some(commit),
        hold,
        &logs.join("first.log"),
    );
    let mut committed = BTreeSet::new();
    let started = Instant::now();
    timeout(Duration::from_secs(60), async {
        loop {
            match first.next().await.expect("first member exited") {
                Report::Committed(pos) => assert!(committed.insert(pos), "{pos:?} twice"),
                Report::Ready => break,
                Report::Subscribed | Report::Held => {}
            }
        }
    })
    .await
    .expect("the first member commits its share within 60 s");
    eprintln!(
        "first member committed {} records in {:?}",
        committed.len(),
        started.elapsed()
    );

    first.child.start_kill().expect("SIGKILL");
    let status = first.child.wait().await.expect("wait");
    let killed = Instant::now();
    assert!(!status.success(), "killed, not exited: {status}");
    tokio::time::sleep(RESTART_AFTER).await;

    let mut second = spawn_member(&config, &group, &topic, None, 0, &logs.join("second.log"));
    let mut got = BTreeSet::new();
    let mut first_record = None;
    let mut receive = async |second: &mut Member, got: &mut BTreeSet<Pos>| match second
        .next()
        .await
        .expect("second member exited")
    {
        Report::Committed(pos) => {
            assert!(
                !committed.contains(&pos),
                "{pos:?} was committed by the killed member and came again"
            );
            first_record.get_or_insert_with(|| killed.elapsed());
            got.insert(pos);
        }
        Report::Subscribed | Report::Held | Report::Ready => {}
    };
    let resumed = timeout(SESSION_TIMEOUT - RESTART_AFTER, async {
        while got.is_empty() {
            receive(&mut second, &mut got).await;
        }
    })
    .await;
    if resumed.is_ok() {
        // Keep it busy for a while: resuming and then stalling is a failure too.
        let _ = timeout(OBSERVE, async {
            loop {
                receive(&mut second, &mut got).await;
            }
        })
        .await;
    }
    stop.cancel();
    all.extend(producer.await.expect("producer"));
    let missing: BTreeSet<Pos> = all.difference(&committed).copied().collect();
    let caught_up = timeout(Duration::from_secs(20), async {
        while !missing.is_subset(&got) {
            receive(&mut second, &mut got).await;
        }
    })
    .await;
    eprintln!(
        "after SIGKILL: first record after {first_record:?}, {} of {} records after {:?}",
        got.len(),
        missing.len(),
        killed.elapsed(),
    );
    assert!(
        resumed.is_ok() && caught_up.is_ok(),
        "the new member resumes within the session timeout and keeps up: {} of {} records \
         after {:?} (member logs in {})",
        got.len(),
        missing.len(),
        killed.elapsed(),
        logs.display()
    );
    drop(second.child.stdin.take());
    let status = timeout(Duration::from_secs(40), second.child.wait())
        .await
        .expect("the second member closes")
        .expect("wait");
    assert!(status.success(), "second member: {status}");
    if std::env::var_os("VIGIL_TEST_KAFKA_DEBUG").is_none() {
        let _ = std::fs::remove_dir_all(&logs);
    }
}

/// With `bus.instance_id`, one process holds one consumer per group: a second would share
/// the first one's static membership. Closing the first frees the group.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn static_instance_has_one_consumer_per_group() {
    let Some(mut config) = kafka_config() else {
        return;
    };
    config.instance_id = "one-per-group".into();
    let (bus, topic) = common::bus_with_topic(&config, 1).await;
    let topics = [topic];
    let group = format!("g-{}", Uuid::new_v4().simple());
    let first = bus.subscribe(&group, &topics).await.expect("first");
    let err = bus
        .subscribe(&group, &topics)
        .await
        .err()
        .expect("a second consumer of the group is refused");
    assert!(matches!(err, BusError::InstanceInUse { .. }), "{err}");
    let other = bus
        .subscribe("g-other", &topics)
        .await
        .expect("other group");
    first.close().await.expect("close");
    let again = bus.subscribe(&group, &topics).await.expect("after close");
    again.close().await.expect("close");
    other.close().await.expect("close");
}

/// A member of a two-member group killed with SIGKILL and never restarted: the survivor
/// takes over its partitions once its session expired. tansu 0.6.0 keeps the dead member's
/// assignment for good, so on it the survivor's orphaned-partition watch (`bus.stall_rejoin_s`,
/// here [`STALL_REJOIN`]) has to rejoin the group (docs/RELIABILITY.md "Orphaned partitions").
/// With `VIGIL_TEST_NO_REJOIN=1` the watch is off and the test shows tansu's behaviour.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn survivor_takes_over_a_killed_members_partitions() {
    let Some(mut config) = kafka_config() else {
        return;
    };
    config.stall_rejoin_s = if std::env::var_os("VIGIL_TEST_NO_REJOIN").is_some() {
        0
    } else {
        STALL_REJOIN.as_secs()
    };
    let logs = tempfile::Builder::new()
        .prefix("vigil-bus-survivor.")
        .tempdir()
        .expect("log dir")
        .keep();
    let (bus, topic) = common::bus_with_topic(&config, PARTITIONS).await;
    let group = format!("survivor-{}", Uuid::new_v4().simple());
    let stop = tokio_util::sync::CancellationToken::new();
    let producer = keep_publishing(bus.clone(), topic.clone(), stop.clone());
    let member = |name: &str| {
        spawn_member(
            &config,
            &group,
            &topic,
            None,
            0,
            &logs.join(format!("{name}.log")),
        )
    };
    let (mut survivor, mut doomed) = (member("survivor"), member("doomed"));
    // Settled once both have received records.
    let mut got = BTreeSet::new();
    timeout(Duration::from_secs(60), async {
        let (mut a, mut b) = (false, false);
        while !(a && b) {
            tokio::select! {
                r = survivor.next() => if let Some(Report::Committed(pos)) = r {
                    got.insert(pos);
                    a = true;
                },
                r = doomed.next() => b |= matches!(r, Some(Report::Committed(_))),
            }
        }
    })
    .await
    .expect("both members receive records within 60 s");
    doomed.child.start_kill().expect("SIGKILL");
    doomed.child.wait().await.expect("wait");
    let killed = Instant::now();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let since_kill = bus.watermarks(&topic).await.expect("watermarks");
    // Everything published from one second after the kill must reach the survivor.
    let taken_over = timeout(
        SESSION_TIMEOUT + STALL_REJOIN + Duration::from_secs(30),
        async {
            let mut pending: BTreeSet<i32> = since_kill.iter().map(|w| w.partition).collect();
            while !pending.is_empty() {
                if let Some(Report::Committed((p, o))) = survivor.next().await {
                    let start = since_kill.iter().find(|w| w.partition == p).map(|w| w.high);
                    if start.is_some_and(|high| o >= high) {
                        pending.remove(&p);
                    }
                }
            }
        },
    )
    .await;
    stop.cancel();
    let _ = producer.await;
    eprintln!(
        "survivor has every partition: {} after {:?} (logs in {})",
        taken_over.is_ok(),
        killed.elapsed(),
        logs.display()
    );
    assert!(
        taken_over.is_ok(),
        "the survivor takes over every partition"
    );
    drop(survivor.child.stdin.take());
    let _ = survivor.child.wait().await;
}
