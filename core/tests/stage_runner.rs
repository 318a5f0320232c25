//! The shared stage runner (`vigil_core::stage`), written once and run on every bus backend:
//! offsets advance only over completed records, refused records reach `vigil.dlq` with the
//! reason, batches hold what arrives within the wait, and every record's delay since it was
//! produced is measured.
//!
//! The Kafka run needs `VIGIL_TEST_KAFKA=host:port` (scripts/test starts tansu); without it
//! the Kafka cases are skipped locally and fail when `CI` is set.

#[macro_use]
mod common;

use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::mpsc;
use tokio::time::timeout;
use uuid::Uuid;
use vigil_core::bus::{Bus, BusError, BusMessage, Topic};
use vigil_core::codec::{self, DecodeLimits};
use vigil_core::config::BusConfig;
use vigil_core::record::DeadLetter;
use vigil_core::stage::{
    Completions, Decoded, Delivery, Refusals, StageHandler, StageOptions, StageRunner,
};
use vigil_core::telemetry::Readiness;
use vigil_core::CancellationToken;

const WAIT: Duration = Duration::from_secs(45);

/// A test stage: payloads are text; "bad..." is refused; a payload in `hold` is never
/// completed; every batch is reported.
struct TextStage {
    completions: Completions,
    hold: Vec<&'static str>,
    batches: mpsc::UnboundedSender<Vec<String>>,
    revoked: mpsc::UnboundedSender<Vec<(String, i32)>>,
}

#[async_trait]
impl StageHandler for TextStage {
    type Record = String;
    type Error = BusError;

    fn decode(&self, msg: &BusMessage, _limits: &DecodeLimits) -> Decoded<String> {
        let text = String::from_utf8_lossy(&msg.payload).into_owned();
        if text.starts_with("bad") {
            Decoded::Refuse(format!("{text} is not usable"))
        } else if text.starts_with("skip") {
            Decoded::Skip
        } else {
            Decoded::Record(text)
        }
    }

    async fn handle(&mut self, batch: Vec<Delivery<String>>) -> Result<(), BusError> {
        let texts = batch.iter().map(|d| d.record.clone()).collect();
        // Completed in reverse, so out-of-order completion is what every batch exercises.
        for delivery in batch.iter().rev() {
            if !self.hold.contains(&delivery.record.as_str()) {
                self.completions.complete(delivery.ticket);
            }
        }
        let _ = self.batches.send(texts);
        Ok(())
    }

    async fn revoked(&mut self, partitions: Vec<(String, i32)>) -> Result<(), BusError> {
        let _ = self.revoked.send(partitions);
        Ok(())
    }
}

struct Running {
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<Result<(), BusError>>,
    batches: mpsc::UnboundedReceiver<Vec<String>>,
    revoked: mpsc::UnboundedReceiver<Vec<(String, i32)>>,
}

impl Running {
    /// Waits until `n` records reached the stage; returns its batches.
    async fn handled(&mut self, n: usize) -> Vec<Vec<String>> {
        let mut batches = Vec::new();
        while batches.iter().map(Vec::len).sum::<usize>() < n {
            let batch = timeout(WAIT, self.batches.recv())
                .await
                .expect("records reach the stage within the wait")
                .expect("stage running");
            batches.push(batch);
        }
        batches
    }

    async fn stop(self) {
        self.shutdown.cancel();
        timeout(WAIT, self.task)
            .await
            .expect("stops")
            .expect("joins")
            .expect("runs without error");
    }
}

async fn start(bus: &Bus, group: &str, options: StageOptions, hold: Vec<&'static str>) -> Running {
    let runner = StageRunner::subscribe(
        bus,
        "test",
        group,
        &[Topic::EegProb],
        Readiness::default(),
        options,
    )
    .await
    .expect("subscribe");
    let (tx, batches) = mpsc::unbounded_channel();
    let (revoked_tx, revoked) = mpsc::unbounded_channel();
    let stage = TextStage {
        completions: runner.completions(),
        hold,
        batches: tx,
        revoked: revoked_tx,
    };
    let shutdown = CancellationToken::new();
    let task = tokio::spawn({
        let shutdown = shutdown.clone();
        async move { runner.run(stage, &shutdown).await }
    });
    Running {
        shutdown,
        task,
        batches,
        revoked,
    }
}

/// A stage taking one record at a time, completing every one.
async fn start_plain(bus: &Bus, group: &str) -> Running {
    start(
        bus,
        group,
        StageOptions::one_at_a_time(Refusals::DeadLetter),
        Vec::new(),
    )
    .await
}

async fn bus_with_records(config: &BusConfig, payloads: &[&str]) -> Bus {
    let bus = Bus::connect(config).await.expect("connect");
    bus.create_vigil_topics().await.expect("topics");
    let topic = bus.topic(Topic::EegProb);
    for payload in payloads {
        // One key: one partition, so offsets order every record.
        bus.publish(&topic, b"patient-1", payload.as_bytes())
            .await
            .expect("publish");
    }
    bus
}

fn group() -> String {
    format!("g-{}", Uuid::new_v4().simple())
}

async fn offsets_advance_only_over_completed_records(config: BusConfig) {
    let bus = bus_with_records(&config, &["r0", "r1", "r2", "r3", "r4"]).await;
    let stage_group = group();
    let mut first = start(
        &bus,
        &stage_group,
        StageOptions::one_at_a_time(Refusals::DeadLetter),
        vec!["r2"],
    )
    .await;
    first.handled(5).await;
    first.stop().await;

    let restarted = Bus::connect(&config).await.expect("reconnect");
    let mut second = start_plain(&restarted, &stage_group).await;
    let redelivered: Vec<String> = second.handled(3).await.concat();
    assert_eq!(
        redelivered,
        ["r2", "r3", "r4"],
        "r2 was never completed: the commit stops before it, though r3 and r4 were done"
    );
    second.stop().await;
}

async fn refused_records_are_dead_lettered_with_the_reason(config: BusConfig) {
    let bus = bus_with_records(&config, &["r0", "bad-1", "skip-me", "r1"]).await;
    let stage_group = group();
    let mut running = start_plain(&bus, &stage_group).await;
    let handled = running.handled(2).await.concat();
    assert_eq!(
        handled,
        ["r0", "r1"],
        "refused and skipped records never reach the stage"
    );
    running.stop().await;

    let mut dlq = bus
        .subscribe(&group(), &[bus.topic(Topic::Dlq)])
        .await
        .expect("subscribe dlq");
    let msg = timeout(WAIT, dlq.recv())
        .await
        .expect("a dead letter")
        .expect("recv");
    let letter: DeadLetter = codec::decode(&msg.payload, &DecodeLimits::default()).expect("decode");
    assert_eq!(letter.stage, "test");
    assert_eq!(letter.reason, "bad-1 is not usable");
    assert_eq!(letter.source_topic, bus.topic(Topic::EegProb));
    assert_eq!(letter.offset, 1);
    assert_eq!(letter.payload, b"bad-1");
    assert!(
        timeout(Duration::from_secs(2), dlq.recv()).await.is_err(),
        "one dead letter: the skipped record is not one"
    );
    dlq.close().await.expect("close");

    let mut again = start_plain(&bus, &stage_group).await;
    assert!(
        timeout(Duration::from_secs(3), again.batches.recv())
            .await
            .is_err(),
        "everything was acknowledged, the refused and skipped records too"
    );
    again.stop().await;
}

async fn skipped_refusals_are_not_dead_lettered(config: BusConfig) {
    let bus = bus_with_records(&config, &["bad-1", "r0"]).await;
    let mut running = start(
        &bus,
        &group(),
        StageOptions::one_at_a_time(Refusals::Skip),
        Vec::new(),
    )
    .await;
    assert_eq!(running.handled(1).await.concat(), ["r0"]);
    running.stop().await;
    let dlq = bus
        .watermarks(&bus.topic(Topic::Dlq))
        .await
        .expect("watermarks");
    assert!(
        dlq.iter().all(|w| w.high == w.low),
        "nothing on vigil.dlq: {dlq:?}"
    );
}

async fn a_batch_holds_what_arrives_within_the_wait(config: BusConfig) {
    let payloads: Vec<String> = (0..10).map(|i| format!("r{i}")).collect();
    let refs: Vec<&str> = payloads.iter().map(String::as_str).collect();
    let bus = bus_with_records(&config, &refs).await;
    let options = StageOptions {
        batch_max_records: 4,
        batch_max_wait: Duration::from_millis(500),
        ..StageOptions::one_at_a_time(Refusals::DeadLetter)
    };
    let mut running = start(&bus, &group(), options, Vec::new()).await;
    let batches = running.handled(10).await;
    running.stop().await;
    assert!(batches.iter().all(|b| b.len() <= 4), "{batches:?}");
    assert!(
        batches.iter().any(|b| b.len() > 1),
        "records waiting are batched: {batches:?}"
    );
    assert_eq!(batches.concat(), payloads, "in consumption order");
}

/// The `_sum` and `_count` of the consume-delay histogram for `topic` on the metrics page.
fn consume_delay(topic: &str) -> Option<(f64, f64)> {
    let page = vigil_core::telemetry::metrics_handle().render();
    let series = format!("{{stage=\"test\",topic=\"{topic}\"}} ");
    let value = |name: &str| {
        page.lines()
            .find_map(|l| {
                l.strip_prefix(&format!("vigil_bus_consume_delay_seconds_{name}{series}"))
            })
            .and_then(|v| v.trim().parse::<f64>().ok())
    };
    Some((value("sum")?, value("count")?))
}

async fn every_consumed_record_has_its_delay_since_produced(config: BusConfig) {
    // A topic of its own: the histogram is process-wide and other scenarios run alongside.
    let config = BusConfig {
        topic_prefix: format!("delay-{}.", Uuid::new_v4().simple()),
        ..config
    };
    let bus = bus_with_records(&config, &["r0", "r1", "r2"]).await;
    let topic = bus.topic(Topic::EegProb);
    assert_eq!(
        consume_delay(&topic),
        None,
        "nothing consumed from {topic} yet"
    );
    tokio::time::sleep(Duration::from_millis(400)).await;
    let mut running = start_plain(&bus, &group()).await;
    running.handled(3).await;
    running.stop().await;
    let (sum, count) = consume_delay(&topic).expect("the delay histogram of the topic");
    assert_eq!(count, 3.0, "one observation per record");
    assert!(
        (3.0 * 0.39..3.0 * 45.0).contains(&sum),
        "each record waited at least the 400 ms before the stage started: sum {sum} s"
    );
}

/// A member that loses partitions to a new member of its group is told which, at its next
/// tick, and the new member then gets their records.
async fn a_member_is_told_which_partitions_it_lost(config: BusConfig) {
    let bus = Bus::connect(&config).await.expect("connect");
    bus.create_vigil_topics().await.expect("topics");
    let topic = bus.topic(Topic::EegProb);
    let options = StageOptions {
        tick: Some(Duration::from_millis(200)),
        ..StageOptions::one_at_a_time(Refusals::DeadLetter)
    };
    let stage_group = group();
    let mut first = start(&bus, &stage_group, options.clone(), Vec::new()).await;
    // Keys over every partition, until the first member has handled some.
    let publish_round = |round: usize| {
        let (bus, topic) = (bus.clone(), topic.clone());
        async move {
            for k in 0..16 {
                bus.publish(
                    &topic,
                    format!("patient-{k}").as_bytes(),
                    format!("r{round}-{k}").as_bytes(),
                )
                .await
                .expect("publish");
            }
        }
    };
    publish_round(0).await;
    first.handled(16).await;
    let mut second = start(&bus, &stage_group, options, Vec::new()).await;
    let lost = timeout(WAIT, first.revoked.recv())
        .await
        .expect("told within the wait")
        .expect("stage running");
    assert!(
        !lost.is_empty() && lost.iter().all(|(t, _)| *t == topic),
        "{lost:?}"
    );
    // Records keep coming on every partition: the new member gets those of the lost ones.
    let mut round = 1;
    let got = loop {
        publish_round(round).await;
        round += 1;
        if let Ok(Some(batch)) = timeout(Duration::from_secs(2), second.batches.recv()).await {
            break batch;
        }
        assert!(round < 30, "the new member got no record");
    };
    assert!(!got.is_empty());
    second.stop().await;
    first.stop().await;
}

scenarios!(
    memory,
    crate::common::memory_config,
    [
        offsets_advance_only_over_completed_records,
        refused_records_are_dead_lettered_with_the_reason,
        skipped_refusals_are_not_dead_lettered,
        a_batch_holds_what_arrives_within_the_wait,
        every_consumed_record_has_its_delay_since_produced,
        a_member_is_told_which_partitions_it_lost,
    ]
);
scenarios!(
    kafka,
    crate::common::kafka_config,
    [
        offsets_advance_only_over_completed_records,
        refused_records_are_dead_lettered_with_the_reason,
        skipped_refusals_are_not_dead_lettered,
        a_batch_holds_what_arrives_within_the_wait,
        every_consumed_record_has_its_delay_since_produced,
        a_member_is_told_which_partitions_it_lost,
    ]
);
