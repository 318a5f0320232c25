//! Bus scenarios written once and run against every backend: the in-process `memory://` bus
//! and a real Kafka-protocol broker (tansu, started by `scripts/test`).
//!
//! The Kafka run needs `VIGIL_TEST_KAFKA=host:port`. Without it the Kafka cases are skipped
//! locally, and fail when `CI` is set, so CI can never pass without exercising the broker.

#[macro_use]
mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::timeout;
use uuid::Uuid;
use vigil_core::bus::{Bus, BusConsumer, BusError, BusMessage, Topic};
use vigil_core::codec::{self, DecodeLimits};
use vigil_core::config::BusConfig;
use vigil_core::record::{EegChunk, SignalUnit};

const WAIT: Duration = Duration::from_secs(45);

/// A fresh bus and one topic with `partitions` partitions.
async fn setup(config: BusConfig, partitions: i32) -> (Bus, String) {
    common::bus_with_topic(&config, partitions).await
}

fn group() -> String {
    format!("g-{}", Uuid::new_v4().simple())
}

async fn recv(consumer: &mut Box<dyn BusConsumer>) -> BusMessage {
    timeout(WAIT, consumer.recv())
        .await
        .expect("a record within the wait")
        .expect("recv")
}

/// Publishes `(key, payload)` pairs in order, each acknowledged by the broker.
async fn publish_all(bus: &Bus, topic: &str, records: impl IntoIterator<Item = (String, String)>) {
    for (key, payload) in records {
        bus.publish(topic, key.as_bytes(), payload.as_bytes())
            .await
            .expect("publish");
    }
}

/// Receives until `n` records arrived, acknowledging each.
async fn recv_n_acked(consumer: &mut Box<dyn BusConsumer>, n: usize) -> Vec<BusMessage> {
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let msg = recv(consumer).await;
        consumer.ack(&msg).expect("ack");
        out.push(msg);
    }
    out
}

/// Asserts nothing more arrives for a while.
async fn assert_quiet(consumer: &mut Box<dyn BusConsumer>, for_: Duration) {
    if let Ok(Ok(msg)) = timeout(for_, consumer.recv()).await {
        panic!(
            "unexpected record at {}:{} offset {}",
            msg.topic, msg.partition, msg.offset
        );
    }
}

async fn per_key_ordering(config: BusConfig) {
    let (bus, topic) = setup(config, 4).await;
    let keys = [
        "patient-a",
        "patient-b",
        "patient-c",
        "patient-d",
        "patient-e",
    ];
    let per_key = 40;
    let interleaved =
        (0..per_key).flat_map(|i| keys.map(|key| (key.to_owned(), format!("{key}:{i}"))));
    publish_all(&bus, &topic, interleaved).await;
    let mut consumer = bus.subscribe(&group(), &[topic]).await.expect("subscribe");
    let got = recv_n_acked(&mut consumer, keys.len() * per_key).await;
    let mut seen: HashMap<String, Vec<usize>> = HashMap::new();
    let mut partition_of: HashMap<String, i32> = HashMap::new();
    for msg in &got {
        let key = String::from_utf8(msg.key.clone()).expect("utf8 key");
        let text = String::from_utf8(msg.payload.clone()).expect("utf8 payload");
        let (k, i) = text.split_once(':').expect("key:i");
        assert_eq!(k, key);
        seen.entry(key.clone())
            .or_default()
            .push(i.parse().expect("index"));
        let p = *partition_of.entry(key.clone()).or_insert(msg.partition);
        assert_eq!(p, msg.partition, "one key, one partition");
    }
    for key in keys {
        assert_eq!(
            seen[key],
            (0..per_key).collect::<Vec<_>>(),
            "records of {key} arrive complete and in order"
        );
    }
    let partitions: BTreeSet<i32> = partition_of.values().copied().collect();
    assert!(
        partitions.len() > 1,
        "5 keys spread over several of 4 partitions"
    );
    consumer.close().await.expect("close");
}

async fn unacked_record_is_redelivered(config: BusConfig) {
    let (bus, topic) = setup(config, 1).await;
    publish_all(&bus, &topic, (0..10).map(|i| ("p".into(), format!("{i}")))).await;
    let group = group();
    let mut first = bus
        .subscribe(&group, std::slice::from_ref(&topic))
        .await
        .expect("subscribe");
    let mut received = Vec::new();
    for _ in 0..10 {
        received.push(recv(&mut first).await);
    }
    // Only the first four are processed; the consumer then dies without committing the rest.
    for msg in &received[..4] {
        first.ack(msg).expect("ack");
    }
    drop(first);

    let mut second = bus.subscribe(&group, &[topic]).await.expect("resubscribe");
    let mut offsets = BTreeSet::new();
    while !(4..10).all(|o| offsets.contains(&o)) {
        let msg = recv(&mut second).await;
        offsets.insert(msg.offset);
        second.ack(&msg).expect("ack");
    }
    // The loop above proves the unacknowledged records 4..10 came back; the acknowledged ones
    // must not.
    assert_eq!(
        offsets.first(),
        Some(&4),
        "acknowledged records are not redelivered"
    );
    second.close().await.expect("close");
}

/// Publishes 10 records "before", consumes and commits them all in `group`, and returns a
/// new bus handle from the same config: a restarted process.
async fn commit_all_then_restart(config: &BusConfig, topic: &str, group: &str) -> Bus {
    let bus = Bus::connect(config).await.expect("connect");
    publish_all(
        &bus,
        topic,
        (0..10).map(|i| (format!("k{}", i % 3), "before".into())),
    )
    .await;
    let mut consumer = bus
        .subscribe(group, &[topic.to_owned()])
        .await
        .expect("subscribe");
    recv_n_acked(&mut consumer, 10).await;
    consumer.close().await.expect("close commits");
    Bus::connect(config).await.expect("reconnect")
}

async fn resume_from_committed_offset_after_restart(config: BusConfig) {
    let (_bus, topic) = setup(config.clone(), 2).await;
    let group = group();
    let restarted = commit_all_then_restart(&config, &topic, &group).await;
    let consumer = restarted
        .subscribe(&group, std::slice::from_ref(&topic))
        .await
        .expect("subscribe again");
    gets_only_records_after_the_commit(&restarted, &topic, consumer).await;
}

/// Publishes 5 records "after" and checks that `consumer` gets exactly those.
async fn gets_only_records_after_the_commit(
    bus: &Bus,
    topic: &str,
    mut consumer: Box<dyn BusConsumer>,
) {
    publish_all(
        bus,
        topic,
        (0..5).map(|i| (format!("k{}", i % 3), "after".into())),
    )
    .await;
    let got = recv_n_acked(&mut consumer, 5).await;
    assert!(
        got.iter().all(|m| m.payload == b"after"),
        "only records after the committed offsets are delivered"
    );
    assert_quiet(&mut consumer, Duration::from_secs(2)).await;
    consumer.close().await.expect("close");
}

/// Runs one group member in a task, reporting its assignment and the records it got.
fn spawn_member(
    mut consumer: Box<dyn BusConsumer>,
    assignment_tx: watch::Sender<Vec<(String, i32)>>,
    seen: watch::Sender<BTreeSet<Vec<u8>>>,
    stop: tokio_util::sync::CancellationToken,
) -> tokio::task::JoinHandle<Vec<BusMessage>> {
    tokio::spawn(async move {
        let mut got = Vec::new();
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                res = timeout(Duration::from_millis(100), consumer.recv()) => {
                    if let Ok(Ok(msg)) = res {
                        consumer.ack(&msg).expect("ack");
                        seen.send_modify(|s| { s.insert(msg.payload.clone()); });
                        got.push(msg);
                    }
                }
            }
            let mut now = consumer.assignment().expect("assignment");
            now.sort();
            assignment_tx.send_if_modified(|a| {
                let changed = *a != now;
                *a = now.clone();
                changed
            });
        }
        consumer.close().await.expect("close");
        got
    })
}

async fn two_consumers_split_partitions(config: BusConfig) {
    let partitions = 4;
    let (bus, topic) = setup(config, partitions).await;
    let group = group();
    let stop = tokio_util::sync::CancellationToken::new();
    let (seen_tx, mut seen_rx) = watch::channel(BTreeSet::new());
    let (a_tx, mut a_rx) = watch::channel(Vec::new());
    let (b_tx, mut b_rx) = watch::channel(Vec::new());
    let a = bus
        .subscribe(&group, std::slice::from_ref(&topic))
        .await
        .expect("a");
    let a = spawn_member(a, a_tx, seen_tx.clone(), stop.clone());
    let b = bus
        .subscribe(&group, std::slice::from_ref(&topic))
        .await
        .expect("b");
    let b = spawn_member(b, b_tx, seen_tx, stop.clone());

    // Wait until the group settles: both members own partitions, disjoint, covering all.
    let settled = async {
        loop {
            let (pa, pb) = (
                a_rx.borrow_and_update().clone(),
                b_rx.borrow_and_update().clone(),
            );
            let all: BTreeSet<_> = pa.iter().chain(&pb).cloned().collect();
            if !pa.is_empty()
                && !pb.is_empty()
                && all.len() == pa.len() + pb.len()
                && all.len() == partitions as usize
            {
                return (pa, pb);
            }
            tokio::select! {
                _ = a_rx.changed() => {},
                _ = b_rx.changed() => {},
            }
        }
    };
    let (pa, pb) = timeout(WAIT, settled).await.expect("group settles");

    let n = 200;
    publish_all(
        &bus,
        &topic,
        (0..n).map(|i| (format!("patient-{i}"), format!("{i}"))),
    )
    .await;
    timeout(WAIT, seen_rx.wait_for(|seen| seen.len() == n))
        .await
        .expect("every record is read within the wait")
        .expect("members alive");
    stop.cancel();
    let got_a = a.await.expect("member a");
    let got_b = b.await.expect("member b");

    let owner: BTreeMap<i32, &str> = pa
        .iter()
        .map(|(_, p)| (*p, "a"))
        .chain(pb.iter().map(|(_, p)| (*p, "b")))
        .collect();
    for msg in &got_a {
        assert_eq!(
            owner[&msg.partition], "a",
            "a only reads its own partitions"
        );
    }
    for msg in &got_b {
        assert_eq!(
            owner[&msg.partition], "b",
            "b only reads its own partitions"
        );
    }
    let payloads: BTreeSet<Vec<u8>> = got_a
        .iter()
        .chain(&got_b)
        .map(|m| m.payload.clone())
        .collect();
    assert_eq!(payloads.len(), n, "together they read every record");
    assert!(!got_a.is_empty() && !got_b.is_empty(), "both did work");
}

async fn oversize_record_rejected(mut config: BusConfig) {
    config.max_record_bytes = 4096;
    let (bus, topic) = setup(config, 1).await;
    let err = bus
        .publish(&topic, b"p", &vec![0u8; 5000])
        .await
        .expect_err("oversize must be refused");
    assert!(
        matches!(
            err,
            BusError::RecordTooLarge {
                size: 5001,
                max: 4096,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(
        err.to_string().contains("exceeds the 4096-byte limit"),
        "{err}"
    );
    // A record at the limit still goes through, and the refused one never reached the topic.
    bus.publish(&topic, b"p", &vec![7u8; 4095])
        .await
        .expect("record at the limit");
    let mut consumer = bus.subscribe(&group(), &[topic]).await.expect("subscribe");
    let msg = recv(&mut consumer).await;
    assert_eq!(msg.payload.len(), 4095);
    consumer.ack(&msg).expect("ack");
    assert_quiet(&mut consumer, Duration::from_secs(1)).await;
    consumer.close().await.expect("close");
}

async fn typed_record_round_trips(config: BusConfig) {
    let bus = Bus::connect(&config).await.expect("connect");
    bus.create_vigil_topics()
        .await
        .expect("create vigil topics");
    let chunk = EegChunk {
        patient_id: "patient-7".into(),
        device_id: "headset-1".into(),
        stream_id: Uuid::new_v4(),
        seq: 42,
        start_ns: 1_700_000_000_000_000_000,
        received_ns: 1_700_000_000_100_000_000,
        sample_rate_hz: 256.0,
        channels: vec!["Fp1-F7".into(), "F7-T7".into()],
        unit: SignalUnit::Microvolt,
        samples: vec![vec![1.5, f32::NAN, -3.25], vec![0.0, 2.0, 4.0]],
    };
    let delivery = bus
        .publish_record(Topic::EegRaw, &chunk.patient_id, &chunk)
        .await
        .expect("publish");
    let mut consumer = bus
        .subscribe(&group(), &[bus.topic(Topic::EegRaw)])
        .await
        .expect("subscribe");
    let msg = recv(&mut consumer).await;
    assert_eq!(
        (msg.partition, msg.offset),
        (delivery.partition, delivery.offset)
    );
    assert_eq!(msg.key, b"patient-7");
    let back: EegChunk = codec::decode(&msg.payload, &DecodeLimits::default()).expect("decode");
    assert_eq!(back.samples[0][0], 1.5);
    assert!(
        back.samples[0][1].is_nan(),
        "NaN (missing) survives the bus"
    );
    assert_eq!(back.samples[1], chunk.samples[1]);
    assert_eq!((back.seq, back.stream_id), (chunk.seq, chunk.stream_id));
    consumer.ack(&msg).expect("ack");
    consumer.close().await.expect("close");
}

/// Watermarks bound what was written: a reader that passed every end offset taken before it
/// subscribed has seen every earlier record (how the inference stage rebuilds alert state).
async fn watermarks_bound_what_was_written(config: BusConfig) {
    let (bus, topic) = setup(config, 3).await;
    let empty = bus.watermarks(&topic).await.expect("watermarks");
    assert_eq!(empty.len(), 3);
    assert!(empty.iter().all(|w| w.high == w.low), "{empty:?}");
    publish_all(
        &bus,
        &topic,
        (0..30).map(|i| (format!("key-{}", i % 7), format!("record-{i}"))),
    )
    .await;
    let marks = bus.watermarks(&topic).await.expect("watermarks");
    let total: i64 = marks.iter().map(|w| w.high - w.low).sum();
    assert_eq!(total, 30);
    let mut consumer = bus
        .subscribe(
            &format!("wm-{}", Uuid::new_v4().simple()),
            std::slice::from_ref(&topic),
        )
        .await
        .expect("subscribe");
    let mut pending: std::collections::HashMap<i32, i64> = marks
        .iter()
        .filter(|w| w.high > w.low)
        .map(|w| (w.partition, w.high))
        .collect();
    let mut seen = 0;
    while !pending.is_empty() {
        let msg = recv(&mut consumer).await;
        seen += 1;
        if pending
            .get(&msg.partition)
            .is_some_and(|end| msg.offset + 1 >= *end)
        {
            pending.remove(&msg.partition);
        }
    }
    assert_eq!(seen, 30, "every record written before the watermarks, once");
    consumer.close().await.expect("close");
}

/// A range read returns exactly one partition's records in `from..until`, in order, stops at
/// the end of what was written, and commits nothing: a group still starts from the first
/// record afterwards.
async fn range_read_takes_a_partition_slice_outside_any_group(config: BusConfig) {
    let (bus, topic) = setup(config, 2).await;
    publish_all(
        &bus,
        &topic,
        (0..40).map(|i| (format!("key-{}", i % 5), format!("record-{i}"))),
    )
    .await;
    let marks = bus.watermarks(&topic).await.expect("watermarks");
    let fullest = marks
        .iter()
        .max_by_key(|w| w.high - w.low)
        .expect("a partition");
    let (p, high) = (fullest.partition, fullest.high);
    assert!(high >= 8, "{marks:?}");
    let slice = bus.read_range(&topic, p, 2, high - 3).await.expect("range");
    let offsets: Vec<i64> = slice.iter().map(|m| m.offset).collect();
    assert_eq!(offsets, (2..high - 3).collect::<Vec<_>>());
    assert!(slice.iter().all(|m| m.partition == p && m.topic == topic));
    let past_end = bus
        .read_range(&topic, p, high - 2, high + 100)
        .await
        .expect("range");
    assert_eq!(past_end.len(), 2, "up to the end of what was written");
    assert!(bus
        .read_range(&topic, p, 5, 5)
        .await
        .expect("range")
        .is_empty());
    // The payloads are the partition's, in publishing order.
    let mut consumer = bus
        .subscribe(&group(), std::slice::from_ref(&topic))
        .await
        .expect("subscribe");
    let mut from_group = Vec::new();
    while from_group.len() < 40 {
        let msg = recv(&mut consumer).await;
        if msg.partition == p {
            from_group.push(msg.payload);
        }
        if from_group.len() as i64 == high {
            break;
        }
    }
    assert_eq!(
        from_group.len() as i64,
        high,
        "the group reads the partition from offset 0"
    );
    let ranged: Vec<Vec<u8>> = slice.into_iter().map(|m| m.payload).collect();
    assert_eq!(ranged, from_group[2..(high - 3) as usize].to_vec());
    consumer.close().await.expect("close");
}

/// A consumer that went quiet (on Kafka: its partitions paused between checks, the idle
/// pause) still gets every record of each burst that follows, in order, once. (How soon is
/// measured, not asserted: docs/RELIABILITY.md "Idle broker load".)
async fn quiet_consumer_gets_every_later_burst(mut config: BusConfig) {
    config.idle_pause_ms = 200;
    let (bus, topic) = setup(config, 2).await;
    let mut consumer = bus
        .subscribe(&group(), std::slice::from_ref(&topic))
        .await
        .expect("subscribe");
    publish_all(&bus, &topic, [("k".to_owned(), "warm-up".to_owned())]).await;
    recv_n_acked(&mut consumer, 1).await;
    let mut received = Vec::new();
    for burst in 0..3 {
        // Quiet for longer than QUIET_AFTER (1 s): the consumer is resting when records come.
        assert_quiet(&mut consumer, Duration::from_millis(1500)).await;
        publish_all(
            &bus,
            &topic,
            (0..5).map(|i| ("k".to_owned(), format!("burst-{burst}-{i}"))),
        )
        .await;
        // A consumer left paused would never get them: `recv` fails after WAIT.
        let got = recv_n_acked(&mut consumer, 5).await;
        received.extend(
            got.into_iter()
                .map(|m| String::from_utf8(m.payload).expect("utf8")),
        );
    }
    let expected: Vec<String> = (0..3)
        .flat_map(|b| (0..5).map(move |i| format!("burst-{b}-{i}")))
        .collect();
    assert_eq!(received, expected, "every record once, in key order");
    assert_quiet(&mut consumer, Duration::from_millis(1500)).await;
    consumer.close().await.expect("close");
}

/// A restarted consumer that rests before it has read anything, and while members come and
/// go, keeps its committed position: nothing committed is delivered again, nothing new is
/// missed (docs/RELIABILITY.md "Idle broker load").
async fn quiet_restarted_consumer_keeps_its_committed_position(mut config: BusConfig) {
    config.idle_pause_ms = 200;
    let (_bus, topic) = setup(config.clone(), 2).await;
    let group = group();
    let restarted = commit_all_then_restart(&config, &topic, &group).await;
    let mut consumer = restarted
        .subscribe(&group, std::slice::from_ref(&topic))
        .await
        .expect("subscribe again");
    // Quiet from the start, well past the 1 s after which it rests.
    assert_quiet(&mut consumer, Duration::from_secs(7)).await;
    // A member comes and goes while it rests: the partitions handed back to it are new
    // assignments, with offsets still to fetch.
    let mut visitor = restarted
        .subscribe(&group, std::slice::from_ref(&topic))
        .await
        .expect("second member");
    let (rest, visit) = tokio::join!(
        assert_quiet(&mut consumer, Duration::from_secs(4)),
        assert_quiet(&mut visitor, Duration::from_secs(4)),
    );
    let ((), ()) = (rest, visit);
    visitor.close().await.expect("second member leaves");
    assert_quiet(&mut consumer, Duration::from_secs(7)).await;
    gets_only_records_after_the_commit(&restarted, &topic, consumer).await;
}

scenarios!(
    memory,
    crate::common::memory_config,
    [
        per_key_ordering,
        unacked_record_is_redelivered,
        resume_from_committed_offset_after_restart,
        two_consumers_split_partitions,
        oversize_record_rejected,
        typed_record_round_trips,
        watermarks_bound_what_was_written,
        quiet_consumer_gets_every_later_burst,
        quiet_restarted_consumer_keeps_its_committed_position,
        range_read_takes_a_partition_slice_outside_any_group,
    ]
);

scenarios!(
    kafka,
    crate::common::kafka_config,
    [
        per_key_ordering,
        unacked_record_is_redelivered,
        resume_from_committed_offset_after_restart,
        two_consumers_split_partitions,
        oversize_record_rejected,
        typed_record_round_trips,
        watermarks_bound_what_was_written,
        quiet_consumer_gets_every_later_burst,
        quiet_restarted_consumer_keeps_its_committed_position,
        range_read_takes_a_partition_slice_outside_any_group,
    ]
);
